# Hostile or broken input on the ESXi port: each gets a clear log line,
# closes only the offending connection, and loses nothing that was already
# accepted from anyone else.

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM, sb  # noqa: E402


class BadInput(harness.NodeTest):

    node_extra = {"vm.negotiation_timeout": "2",
                  "vm.accept_uri": "vSPC.py, telnet://vspc:13370"}

    def setUp(self):
        super().setUp()
        # A healthy VM with a person attached, that must not notice.
        self.good = FakeVM(self.node, name="good").ready()
        self.person = self.console()
        self.person.attach("good")
        self.good.send(b"before\r\n")
        self.person.read_until(b"before\r\n")

    def still_fine(self):
        self.good.send(b"after\r\n")
        self.person.read_until(b"after\r\n")
        self.person.send(b"k")
        self.assertEqual(self.good.wait_data(1), b"k")

    def test_oversized_subnegotiation(self):
        vm = FakeVM(self.node, name="big")
        vm.send_raw(b"\xff\xfa\xe8\x52" + b"A" * 70000)
        self.assertTrue(vm.wait_closed())
        self.assertIn("subnegotiation", self.node.log())
        self.still_fine()

    def test_malformed_telnet(self):
        for bad in (b"\xff\xf0", b"\xff\xfa\xff\xf0",
                    b"\xff\xfa\xe8\x50\xff\x41\xff\xf0"):
            vm = FakeVM(self.node, name="bad")
            vm.send_raw(bad)
            self.assertTrue(vm.wait_closed(), bad)
        self.assertIn("telnet protocol error", self.node.log())
        self.still_fine()

    def test_unknown_subcommand_answered(self):
        vm = FakeVM(self.node, name="odd").ready()
        vm.sbcmd(0x99, b"xyz")
        self.assertEqual(vm.wait_sb(0x03), b"\x99")
        vm.sbcmd(0x29, b"\x01\x02")      # GOAHEAD is ours to send
        self.assertEqual(vm.wait_sb(0x03), b"\x29")
        vm.send(b"ok\r\n")
        p = self.console()
        p.attach("odd")
        p.read_until(b"ok\r\n")

    def test_malformed_uuid(self):
        vm = FakeVM(self.node, identify=False)
        vm.send_raw(sb(0x46, b"SvSPC.py") + sb(0x50, b"not a uuid") +
                    sb(0x52, b"x"))
        self.assertTrue(vm.wait_closed())
        self.assertIn("malformed VM-VC-UUID", self.node.log())
        self.still_fine()

    def test_uuid_change_on_connection(self):
        vm = FakeVM(self.node, name="flip").ready()
        vm.send_raw(sb(0x50, harness.esxi_uuid(os.urandom(16)).encode()))
        self.assertTrue(vm.wait_closed())
        self.still_fine()

    def test_unaccepted_uri(self):
        vm = FakeVM(self.node, name="other", uri=b"someone-else")
        self.assertIsNotNone(vm.wait_sb(0x49), "no WONT-PROXY")
        self.assertIn("not accepted", self.node.log())
        p = self.console()
        p.read_until(b"? lists): ")
        p.send("?\r")
        self.assertNotIn(b"other", p.read_until(b"? lists): "))
        # Accepted alternatives and port labels.
        a = FakeVM(self.node, name="multi",
                   uri=b"telnet://vspc:13370").ready()
        b = FakeVM(self.node, uuid=a.uuid, name="multi",
                   uri=b"vSPC.py?port=com2").ready()
        a.send(b"port-a\r\n")
        b.send(b"port-b\r\n")
        pa = self.console()
        hdr = pa.attach(harness.esxi_uuid(a.uuid).replace(" ", ""))
        self.assertNotIn(b".com2", hdr)
        pa.read_until(b"port-a\r\n")
        pb = self.console()
        key = hdr.split(b"(")[1].split(b")")[0].decode()
        self.assertIn(b".com2", pb.attach(key + ".com2"))
        pb.read_until(b"port-b\r\n")
        self.still_fine()

    def test_bad_port_label_refused(self):
        vm = FakeVM(self.node, name="lbl", uri=b"vSPC.py?port=../../x")
        self.assertIsNotNone(vm.wait_sb(0x49))
        self.still_fine()

    def test_never_identifies(self):
        vm = FakeVM(self.node, identify=False)
        self.assertTrue(vm.wait_closed(timeout=6), "not closed")
        self.assertIn("not identified after 2 seconds", self.node.log())
        self.still_fine()

    def test_plain_telnet_client_on_vm_port(self):
        s = socket.create_connection(("127.0.0.1", self.node.vm_port))
        s.sendall(b"\xff\xfc\xe8hello\r\n")
        s.settimeout(5)
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        s.close()
        self.assertIn(b"virtual serial port concentrator", data)
        self.still_fine()

    def test_vm_reconnects_replaces_connection(self):
        again = FakeVM(self.node, uuid=self.good.uuid, name="good").ready()
        self.assertTrue(self.good.wait_closed())
        again.send(b"new-conn\r\n")
        self.person.read_until(b"new-conn\r\n")
        self.assertIn("replaces the one from", self.node.log())

    def test_garbage_flood(self):
        vm = FakeVM(self.node, name="flood").ready()
        vm.send_raw(os.urandom(200000).replace(b"\xff", b"\x00"))
        p = self.console()
        p.attach("flood")
        self.still_fine()


class AllowList(harness.NodeTest):

    node_extra = {"vm.allow": "10.0.0.0/8"}

    def test_refused_source(self):
        vm = FakeVM(self.node, name="x")
        self.assertTrue(vm.wait_closed())
        self.assertIn("refused by [vm] allow", self.node.log())


if __name__ == "__main__":
    unittest.main()
