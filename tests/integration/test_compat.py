# The compatibility port: vSPC.py's vSPCClient (pickles, four lock modes,
# listing, seed data) and VMware's reference client (telnet option 0xE9)
# on one port, told apart by their first bytes.

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM  # noqa: E402
import vspcclient  # noqa: E402
import vmwareclient  # noqa: E402

UUID = bytes.fromhex("0123456789abcdeffedcba9800000000")
VSPCPY_UUID = "0123456789abcdef-fedcba9800000000"
HEX_UUID = "0123456789ABCDEFFEDCBA9800000000"


class Compat(harness.NodeTest):

    def setUp(self):
        super().setUp()
        self.vm = FakeVM(self.node, uuid=UUID, name="vm-00000").ready()
        self.vm.send(b"".join(b"boot line %d\r\n" % i for i in range(30)))
        time.sleep(0.2)
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            try:
                c.close()
            except OSError:
                pass
        super().tearDown()

    def vspc(self, protocol=4):
        c = vspcclient.VspcClient(port=self.node.compat_port,
                                  protocol=protocol)
        self.clients.append(c)
        return c

    def vmware(self):
        c = vmwareclient.VmwareClient(port=self.node.compat_port)
        self.clients.append(c)
        return c

    def test_listing_every_pickle_protocol(self):
        FakeVM(self.node, name="other").ready()
        for proto in (0, 2, 3, 4, 5):
            c = self.vspc(proto)
            status, _, _ = c.connect(None)
            self.assertEqual(status, "vm_not_found", proto)
            lines = c.listing()
            self.assertIn("vm-00000:" + VSPCPY_UUID, lines)
            self.assertEqual(len(lines), 2)

    def test_unknown_vm_lists(self):
        status, _, _ = self.vspc().connect("no-such-vm")
        self.assertEqual(status, "vm_not_found")

    def test_attach_seed_and_data(self):
        c = self.vspc()
        status, mode, seed = c.connect("vm-00000")
        self.assertEqual(status, "vm_found")
        self.assertEqual(mode, "free_for_all")
        self.assertIn("boot line 29\r\n", seed)
        self.assertNotIn("boot line 9\r\n", seed)
        self.assertEqual(c.lost, b"")
        self.vm.send(b"live \xff output\r\n")
        self.assertIn(b"live \xff output\r\n",
                      c.read_until(b"output\r\n"))
        c.write(b"typed \xff\x00")
        self.assertEqual(self.vm.wait_data(8), b"typed \xff\x00")

    def test_attach_by_vspcpy_uuid(self):
        status, _, _ = self.vspc().connect(VSPCPY_UUID)
        self.assertEqual(status, "vm_found")

    def test_lock_modes(self):
        a = self.vspc()
        self.assertEqual(a.connect("vm-00000", "write")[:2],
                         ("vm_found", "write"))
        # A write lock held: default mode falls back to read-only,
        # free_for_all, write and exclusive fail.
        b = self.vspc()
        self.assertEqual(b.connect("vm-00000")[:2],
                         ("vm_found", "free_for_all_or_readonly"))
        for lock in ("free_for_all", "write", "exclusive"):
            self.assertEqual(self.vspc().connect("vm-00000", lock)[0],
                             "lock_failed", lock)
        self.assertEqual(self.vspc().connect("vm-00000", "bogus")[0],
                         "lock_invalid")
        b.write(b"ro-typing")
        a.write(b"holder")
        self.assertEqual(self.vm.wait_data(6), b"holder")
        self.assertEqual(self.vm.wait_data(1, timeout=0.5), b"")
        a.close()
        b.close()
        time.sleep(0.3)
        x = self.vspc()
        self.assertEqual(x.connect("vm-00000", "exclusive")[:2],
                         ("vm_found", "exclusive"))
        self.assertEqual(self.vspc().connect("vm-00000")[0], "lock_failed")

    def test_free_for_all_writers_share(self):
        a = self.vspc()
        b = self.vspc()
        self.assertEqual(a.connect("vm-00000", "free_for_all")[1],
                         "free_for_all")
        self.assertEqual(b.connect("vm-00000", "free_for_all")[1],
                         "free_for_all")
        a.write(b"A")
        self.assertEqual(self.vm.wait_data(1), b"A")
        b.write(b"B")
        self.assertEqual(self.vm.wait_data(1), b"B")
        self.assertEqual(self.vspc().connect("vm-00000", "write")[0],
                         "lock_failed")

    def test_vmware_client(self):
        c = self.vmware()
        c.handshake()
        vms = c.list_vms()
        self.assertIn((HEX_UUID, "vm-00000", ""), vms)
        self.assertFalse(c.attach("F" * 32))
        self.assertTrue(c.attach(HEX_UUID))
        self.assertIn(b"boot line 29\r\n", c.read_until(b"boot line 29\r\n"))
        self.vm.send(b"to-vmware\xff\r\n")
        self.assertIn(b"to-vmware\xff\r\n", c.read_until(b"\r\n"))
        c.write(b"from-vmware\xff")
        self.assertEqual(self.vm.wait_data(12), b"from-vmware\xff")
        self.assertEqual(c.detach(), vmwareclient.VM_PORT_DISCONNECTED)

    def test_vmware_read_only(self):
        c = self.vmware()
        c.handshake()
        self.assertTrue(c.attach(HEX_UUID, vmwareclient.MODE_READONLY))
        c.write(b"nope")
        self.assertEqual(self.vm.wait_data(1, timeout=0.5), b"")

    def test_hostile_pickle(self):
        import socket
        s = socket.create_connection(("127.0.0.1", self.node.compat_port))
        s.sendall(b"\x80\x04K\x03.cos\nsystem\n(S'id'\ntR.")
        s.settimeout(5)
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            self.fail("hostile pickle: connection not closed")
        s.close()
        self.assertIn("refused", self.node.log())
        # The port still serves honest clients.
        self.assertEqual(self.vspc().connect("vm-00000")[0], "vm_found")


if __name__ == "__main__":
    unittest.main()
