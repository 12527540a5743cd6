# The ESXi simulator against a live node: a simulated VM is listed and
# can be attached to; its sequence-numbered output survives vMotions in
# every ordering with a writer attached, byte for byte; what the writer
# types during a vMotion reaches the destination; every failure variant
# leaves the console working; many VMs from one process migrate at once.

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import pattern  # noqa: E402

UUID = "0123456789abcdeffedcba9800000000"


class Sim(harness.NodeTest):

    def one_vm(self, mode="text"):
        s = self.sim()
        s.cmd("add 0 vm-00000 " + UUID)
        if mode != "text":
            s.cmd("pattern 0 " + mode)
        s.cmd("connect 0")
        s.expect(r"^ready 0 vm-00000")
        self.node.wait_listed("vm-00000")
        return s

    def stats(self, s, i=0):
        s.cmd("stats %d" % i)
        m = s.expect(r"^stats %d sent=(\d+) recv=(\d+) off=(\d+)" % i)
        return int(m.group(1)), int(m.group(2)), int(m.group(3))

    def test_listed_and_attached(self):
        s = self.one_vm()
        p = self.console()
        p.read_until(b"? lists): ")
        p.send("?\r")
        self.assertIn(b"vm-00000", p.read_until(b"? lists): "))
        p.send("vm-00000\r")
        p.read_until(b"[attached")
        p.send(b"hello vm")
        m = s.expect(r"^recv 0 (\w+)")
        got = bytes.fromhex(m.group(1))
        while len(got) < 8:
            got += bytes.fromhex(s.expect(r"^recv 0 (\w+)").group(1))
        self.assertEqual(got, b"hello vm")

    def stream_through_vmotions(self, orders, mode):
        s = self.one_vm(mode)
        p = self.console()
        p.attach("vm-00000")
        p.read_for(0.2)
        s.cmd("stream 0 20000")
        received = bytearray()
        typed = bytearray()
        for k, order in enumerate(orders):
            received += p.read_for(0.3)
            s.cmd("vmotion 0 ok %s seq=%02xff00%02x" % (order, k, k))
            s.expect(r"^goahead 0 ")
            # Typed while the VM is between hosts.
            line = b"typed-%d\xff\r" % k
            p.send(line)
            typed += line
            m = s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)")
            self.assertEqual(m.group(2), "ok", m.group(0))
        received += p.read_for(0.3)
        s.cmd("stream 0 0")
        time.sleep(0.3)
        sent, recv, off = self.stats(s)
        received += p.read_for(0.5)
        res = pattern.check(received, name="vm-00000", index=0, mode=mode,
                            start=0, end=off)
        self.assertTrue(res["ok"], res)
        self.assertGreater(off, 1000)
        # What the person typed arrived, in order, on whichever host.
        got = b""
        end = time.monotonic() + 5
        while len(got) < len(typed) and time.monotonic() < end:
            s.cmd("ping x")
            for line in s.drain():
                if line.startswith("recv 0 "):
                    got += bytes.fromhex(line.split()[2])
            s.seen = [x for x in s.seen if not x.startswith("recv 0 ")]
            time.sleep(0.1)
        self.assertEqual(got, bytes(typed))

    def test_text_stream_every_order(self):
        self.stream_through_vmotions(["fin-first", "complete-first",
                                      "simultaneous", "fin-first"], "text")

    def test_binary_stream(self):
        self.stream_through_vmotions(["fin-first", "simultaneous"],
                                     "binary")

    def test_failure_variants_keep_console(self):
        s = self.one_vm()
        p = self.console()
        p.attach("vm-00000")
        for variant, extra in (("no-dest", "delay=300"),
                               ("bad-secret", "timeout=1500"),
                               ("dest-drop", ""),
                               ("double-begin", ""),
                               ("replay", "")):
            s.cmd("vmotion 0 %s %s" % (variant, extra))
            m = s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)",
                         timeout=15)
            self.assertEqual(m.group(2), "ok", "%s: %s" % (variant,
                                                           m.group(0)))
            s.cmd("send 0 %s" % (b"after-%s\r\n" % variant.encode()).hex())
            p.read_until(b"after-%s\r\n" % variant.encode())

    def test_many_vms_one_process(self):
        n = 300
        s = self.sim(["-q", "-n", str(n), "-p", "bulk-"])
        m = s.expect(r"^allready (\d+) ", timeout=30)
        self.assertEqual(int(m.group(1)), n)
        self.node.wait_listed("bulk-", n)
        self.assertEqual(self.node.listing().count(b"bulk-"), n)
        for i in range(n):
            s.cmd("vmotion %d ok simultaneous" % i)
        ok = 0
        for _ in range(n):
            m = s.expect(r"^vmotion-done \d+ \S+ (ok|fail)", timeout=30)
            ok += m.group(1) == "ok"
        self.assertEqual(ok, n)
        self.assertEqual(self.node.log().count("complete: now on"), n)


if __name__ == "__main__":
    unittest.main()
