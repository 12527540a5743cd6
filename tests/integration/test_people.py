# The console port: finding a VM, attach modes (writer, spy, force,
# exclusive, read-only), replay, the escape menu, 8-bit clean data both
# ways, and slow or stuck people who must never slow the VM.

import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM  # noqa: E402

ESC = b"\x1d"
UUID = bytes.fromhex("0123456789abcdeffedcba9800000000")


class People(harness.NodeTest):

    node_extra = {"console.history": "64k"}

    def vm(self, name="web-01", uuid=UUID, **kw):
        return FakeVM(self.node, uuid=uuid, name=name, **kw).ready()

    def test_list_and_lookup_spellings(self):
        self.vm()
        self.vm(name="web-02", uuid=os.urandom(16))
        p = self.console()
        p.read_until(b"? lists): ")
        p.send("?\r")
        listing = p.read_until(b"? lists): ")
        self.assertIn(b"web-01", listing)
        self.assertIn(b"01234567-89ab-cdef-fedc-ba9800000000", listing)
        self.assertIn(b"web-02", listing)
        for spelling in ("01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00",
                         "0123456789abcdef-fedcba9800000000",
                         "0123456789ABCDEFFEDCBA9800000000",
                         "01234567-89ab-cdef-fedc-ba9800000000",
                         "web-01", "0123456"):
            q = self.console()
            hdr = q.attach(spelling)
            self.assertIn(b"web-01", hdr, spelling)
            q.close()
        # A prefix shared by two VMs is ambiguous; unknown is unknown.
        p.send("web\r")
        self.assertIn(b"matches 2 consoles", p.read_until(b"? lists): "))
        p.send("nope\r")
        self.assertIn(b"no console matches", p.read_until(b"? lists): "))

    def test_same_name_is_ambiguous(self):
        self.vm(name="twin", uuid=os.urandom(16))
        self.vm(name="twin", uuid=os.urandom(16))
        p = self.console()
        p.read_until(b"? lists): ")
        p.send("twin\r")
        self.assertIn(b"matches 2 consoles", p.read_until(b"? lists): "))

    def test_eight_bit_clean_both_ways(self):
        vm = self.vm()
        p = self.console()
        p.attach("web-01")
        every = bytes(range(256)) * 4
        vm.send(every)
        self.assertEqual(p.read_bytes(len(every)), every)
        typed = bytes(b for b in range(256) if b not in (0x1d, 0x0d)) * 2
        p.send(typed)
        self.assertEqual(vm.wait_data(len(typed)), typed)

    def test_writer_and_spies(self):
        vm = self.vm()
        a = self.console()
        self.assertIn(b"[attached", a.attach("web-01"))
        b = self.console()
        self.assertIn(b"[spy", b.attach("web-01"))
        b.send(b"spy-typing")
        a.send(b"writer")
        self.assertEqual(vm.wait_data(6), b"writer")
        self.assertEqual(vm.wait_data(1, timeout=0.5), b"")
        # The writer leaves: the waiting spy is promoted.
        a.close()
        b.read_until(b"now the writer")
        b.send(b"promoted")
        self.assertEqual(vm.wait_data(8), b"promoted")

    def test_force_bumps_writer(self):
        vm = self.vm()
        a = self.console()
        a.attach("web-01")
        b = self.console()
        self.assertIn(b"[attached", b.attach("web-01", "force"))
        a.read_until(b"forced to spy mode by")
        a.send(b"x")
        b.send(b"y")
        self.assertEqual(vm.wait_data(1), b"y")
        self.assertEqual(vm.wait_data(1, timeout=0.5), b"")

    def test_exclusive(self):
        self.vm()
        a = self.console()
        a.attach("web-01")
        b = self.console()
        b.read_until(b"? lists): ")
        b.send("exclusive web-01\r")
        self.assertIn(b"others are attached", b.read_until(b"? lists): "))
        a.close()
        time.sleep(0.2)
        b.send("exclusive web-01\r")
        b.read_until(b"[attached")
        c = self.console()
        c.read_until(b"? lists): ")
        c.send("web-01\r")
        self.assertIn(b"held exclusively", c.read_until(b"? lists): "))
        c.send("force web-01\r")
        self.assertIn(b"held exclusively", c.read_until(b"? lists): "))

    def test_read_only_never_writes(self):
        vm = self.vm()
        p = self.console()
        self.assertIn(b"[read-only", p.attach("web-01", "ro"))
        p.send(b"nope")
        p.send(ESC + b"w\r")
        p.read_until(b"[read-only access]")
        p.send(ESC + b"f\r")
        p.read_until(b"[read-only access]")
        p.send(b"still-nope")
        self.assertEqual(vm.wait_data(1, timeout=0.5), b"")

    def test_replay_on_attach_and_menu(self):
        vm = self.vm()
        vm.send(b"".join(b"line %02d\r\n" % i for i in range(40)))
        time.sleep(0.2)
        p = self.console()
        p.attach("web-01")
        got = p.read_until(b"line 39\r\n")
        self.assertIn(b"line 20\r\n", got)
        self.assertNotIn(b"line 19\r\n", got)
        p.send(ESC + b"replay 3\r")
        got = p.read_until(b"[end of replay]")
        self.assertEqual(re.findall(rb"line \d\d", got),
                         [b"line 37", b"line 38", b"line 39"])
        p.send(ESC + b"who\r")
        self.assertIn(b"writer", p.read_until(b"(you)"))
        p.send(ESC + b"h\r")
        p.read_until(b"escape key twice")
        # Escape twice sends the escape key itself.
        p.send(ESC + ESC)
        self.assertEqual(vm.wait_data(1), ESC)
        p.send(ESC + b"d\r")
        p.read_until(b"[detached]")
        harness.wait_for(lambda: p.fill(0.2) is False and p.closed, 5,
                         "detached session to close")

    def test_break_from_writer(self):
        vm = self.vm()
        p = self.console()
        p.attach("web-01")
        p.send(ESC + b"b\r")
        p.read_until(b"[break sent]")
        harness.wait_for(lambda: vm.poll(0.1) or b"\xff\xf3" in vm.rx, 5,
                         "IAC BRK at the VM")

    def test_slow_person_skips_and_never_slows_vm(self):
        vm = self.vm()
        fast = self.console()
        fast.attach("web-01")
        slow = self.console(rcvbuf=4096)
        slow.attach("web-01")
        # 12 MB of output, far more than the 64k history and the socket
        # buffers: the VM must be
        # able to send all of it while the slow person reads nothing.
        block = bytes(range(256)).replace(b"\xff", b"") * 256
        total = 0
        vm.sock.settimeout(10)
        sent = bytearray()
        t0 = time.monotonic()
        got = bytearray()
        while total < 12 * 1024 * 1024:
            vm.send(block)
            sent += block
            total += len(block)
            # The fast person keeps up; the slow one reads nothing.
            got += fast.read_bytes(len(block), timeout=10)
        self.assertLess(time.monotonic() - t0, 60)
        self.assertEqual(bytes(got), bytes(sent))
        # The slow one finally reads: a skip marker, then the tail.
        data = slow.read_until(re.compile(rb"\[-- (\d+) bytes skipped --\]"),
                               timeout=10)
        m = re.search(rb"\[-- (\d+) bytes skipped --\]", data)
        self.assertGreater(int(m.group(1)), 0)

    def test_input_when_vm_gone(self):
        vm = self.vm()
        p = self.console()
        p.attach("web-01")
        vm.close()
        p.read_until(b"VM disconnected")
        p.send(b"lost")
        p.read_until(b"input discarded")
        # The VM comes back (new connection): same console, same people.
        vm2 = self.vm()
        p.read_until(b"VM connected")
        p.send(b"back")
        self.assertEqual(vm2.wait_data(4), b"back")

    def test_data_before_identification_is_held(self):
        vm = FakeVM(self.node, uuid=UUID, name="early", identify=False)
        vm.send_raw(harness.sb(0x46, b"SvSPC.py"))
        vm.send(b"early bytes\r\n")
        time.sleep(0.2)
        vm.send_raw(harness.sb(0x50, harness.esxi_uuid(UUID).encode()) +
                    harness.sb(0x52, b"early"))
        vm.ready()
        p = self.console()
        p.attach("early")
        p.read_until(b"early bytes\r\n")

    def test_telnet_client_negotiation(self):
        # A real telnet client answers the node's offer; nothing loops.
        self.vm()
        s = socket.create_connection(("127.0.0.1", self.node.console_port))
        s.sendall(bytes.fromhex("fffd01fffd03fffd00fffb03fffb00fffb18"
                                "fffb1f"))
        s.settimeout(1)
        data = b""
        end = time.monotonic() + 1
        while time.monotonic() < end:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        s.close()
        # Unknown options (TTYPE 24, NAWS 31) refused, once each.
        self.assertEqual(data.count(b"\xff\xfe\x18"), 1)
        self.assertEqual(data.count(b"\xff\xfe\x1f"), 1)
        self.assertEqual(data.count(b"\xff\xfb\x01"), 1)


class StuckPeople(harness.NodeTest):

    node_extra = {"console.stuck_timeout": "2"}

    def vm(self, name="web-01", uuid=UUID, **kw):
        return FakeVM(self.node, uuid=uuid, name=name, **kw).ready()

    def test_stuck_person_is_disconnected(self):
        vm = self.vm()
        stuck = self.console(rcvbuf=4096)
        stuck.attach("web-01")
        block = b"x" * 65536
        for _ in range(64):
            vm.send(block)
        # [console] stuck_timeout is 2 s here.
        harness.wait_for(lambda: "stuck for" in self.node.log(), 10,
                         "stuck person to be disconnected")
        # The VM and the others are unaffected.
        other = self.console()
        other.attach("web-01")
        vm.send(b"after-stuck\r\n")
        other.read_until(b"after-stuck\r\n")


if __name__ == "__main__":
    unittest.main()
