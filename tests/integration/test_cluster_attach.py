# People on any node of a three-node cluster: every console of the cluster
# is listed on every node and through HAProxy, and can be attached to
# through any of them; the attach modes (writer then spy, spy, force,
# exclusive, read-only) hold cluster-wide because the owner enforces them;
# vSPCClient on a node that does not own the VM lists and attaches.

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cluster  # noqa: E402
import vspcclient  # noqa: E402
from cluster import ask  # noqa: E402
from harness import wait_for  # noqa: E402

ESC = b"\x1d"
UUID = bytes.fromhex("0123456789abcdeffedcba9800000000")
VSPCPY_UUID = "0123456789abcdef-fedcba9800000000"


class Listing(cluster.ClusterTest):

    def test_every_console_everywhere(self):
        hp = self.cluster.haproxy
        s = self.sim("haproxy")
        owners = []
        for i in range(3):
            before = hp.sessions("vspcd-vm")
            s.cmd("add %d lvm-%d %032x" % (i, i, 0xabc000 + i))
            s.cmd("connect %d" % i)
            s.expect(r"^ready %d lvm-%d" % (i, i))
            owners.append(hp.server_of_new("vspcd-vm", before))
        # Round robin: one VM on each node.
        self.assertEqual(sorted(owners), ["n1", "n2", "n3"])
        for i in range(3):
            self.wait_listed_everywhere("lvm-%d" % i)
        for port in [n.console_port for n in self.cluster.nodes] + \
                [self.cluster.console_port] * 3:
            listing = self.listing_via(port)
            for i in range(3):
                self.assertEqual(listing.count(b"lvm-%d" % i), 1, listing)
        # Attach to each VM through every node: the first person (on the
        # node after the owner) writes, the others spy; all see output.
        names = [n.name for n in self.cluster.nodes]
        for i in range(3):
            k = names.index(owners[i])
            order = [self.cluster.node(names[(k + j) % 3])
                     for j in (1, 2, 0)]
            people = []
            for j, node in enumerate(order):
                p = self.console(node)
                hdr = ask(p, "lvm-%d" % i)
                self.assertIn(b"[attached" if j == 0 else b"[spy", hdr,
                              "lvm-%d through %s" % (i, node.name))
                people.append(p)
            front = self.console("haproxy")
            self.assertIn(b"[spy", ask(front, "spy lvm-%d" % i))
            people.append(front)
            line = b"output of lvm-%d\r\n" % i
            s.cmd("send %d %s" % (i, line.hex()))
            for p in people:
                p.read_until(line)
            typed = b"typed at %s to lvm-%d" % (order[0].name.encode(), i)
            people[0].send(typed)
            self.assertEqual(cluster.sim_recv(s, i, len(typed)), typed)
            for p in people:
                p.close()


class Modes(cluster.ClusterTest):
    """web-01 is owned by n1; people come through n2 and n3."""

    def setUp(self):
        super().setUp()
        self.n1, self.n2, self.n3 = self.cluster.nodes
        self.vm = self.fakevm(self.n1, uuid=UUID, name="web-01")
        self.vm.send(b"".join(b"boot line %d\r\n" % i for i in range(30)))
        self.wait_listed_everywhere("web-01")

    def quiet(self):
        """Nothing more reaches the VM."""
        self.assertEqual(self.vm.wait_data(1, timeout=0.5), b"")

    def test_default_writer_then_spy(self):
        a = self.console(self.n3)
        hdr = ask(a, "web-01")
        self.assertIn(b"[attached", hdr)
        a.read_until(b"boot line 29\r\n")
        b = self.console(self.n2)
        self.assertIn(b"[spy", ask(b, "web-01"))
        b.send(b"spy-typing")
        a.send(b"writer")
        self.assertEqual(self.vm.wait_data(6), b"writer")
        self.quiet()
        self.vm.send(b"both see this\r\n")
        a.read_until(b"both see this\r\n")
        b.read_until(b"both see this\r\n")
        # The writer leaves: the spy on the other node is promoted.
        a.close()
        b.read_until(b"now the writer")
        b.send(b"promoted")
        self.assertEqual(self.vm.wait_data(8), b"promoted")

    def test_spy(self):
        p = self.console(self.n2)
        self.assertIn(b"[spy", ask(p, "spy web-01"))
        p.send(b"nope")
        self.quiet()
        self.vm.send(b"seen by the spy\r\n")
        p.read_until(b"seen by the spy\r\n")

    def test_force_bumps_writer_on_another_node(self):
        a = self.console(self.n2)
        self.assertIn(b"[attached", ask(a, "web-01"))
        b = self.console(self.n3)
        self.assertIn(b"[attached", ask(b, "force web-01"))
        a.read_until(b"forced to spy mode by")
        a.send(b"x")
        b.send(b"y")
        self.assertEqual(self.vm.wait_data(1), b"y")
        self.quiet()
        # The owner's own people obey the same writer.
        c = self.console(self.n1)
        self.assertIn(b"[spy", ask(c, "web-01"))

    def test_exclusive_cluster_wide(self):
        a = self.console(self.n1)          # Local to the owner.
        self.assertIn(b"[attached", ask(a, "web-01"))
        b = self.console(self.n3)
        self.assertIn(b"others are attached", ask(b, "exclusive web-01"))
        a.close()
        # Once the owner saw a leave, exclusive is granted.
        wait_for(lambda: b"[attached" in ask(b, "exclusive web-01"), 10,
                 "exclusive attach after the other person left")
        for node in (self.n2, self.n1, self.n3):
            c = self.console(node)
            self.assertIn(b"held exclusively", ask(c, "web-01"), node.name)
            self.assertIn(b"held exclusively", ask(c, "force web-01"),
                          node.name)
            self.assertIn(b"held exclusively", ask(c, "spy web-01"),
                          node.name)
            c.close()
        b.send(b"excl")
        self.assertEqual(self.vm.wait_data(4), b"excl")

    def test_read_only(self):
        p = self.console(self.n2)
        self.assertIn(b"[read-only", ask(p, "ro web-01"))
        p.send(b"nope")
        # Told so on the escape menu (the exact brackets are the person's
        # node's business).
        p.send(ESC + b"w\r")
        p.read_until(b"read-only access")
        p.send(ESC + b"f\r")
        p.read_until(b"read-only access")
        p.send(b"still-nope")
        self.quiet()
        self.vm.send(b"read by ro\r\n")
        p.read_until(b"read by ro\r\n")

    def test_vspcclient_on_a_non_owner(self):
        other = self.fakevm(self.n2, name="db-01")
        self.wait_listed_everywhere("db-01")
        clients = []

        def vspc(node):
            c = vspcclient.VspcClient(port=node.compat_port)
            clients.append(c)
            return c

        try:
            status, _, _ = vspc(self.n3).connect(None)
            self.assertEqual(status, "vm_not_found")
            lines = clients[-1].listing()
            self.assertIn("web-01:" + VSPCPY_UUID, lines)
            self.assertEqual(len([x for x in lines
                                  if x.startswith("db-01:")]), 1)
            self.assertEqual(len(lines), 2)
            c = vspc(self.n3)
            status, mode, seed = c.connect("web-01")
            self.assertEqual((status, mode), ("vm_found", "free_for_all"))
            self.assertIn("boot line 29\r\n", seed)
            self.vm.send(b"live \xff output\r\n")
            self.assertIn(b"live \xff output\r\n",
                          c.read_until(b"output\r\n"))
            c.write(b"typed \xff\x00")
            self.assertEqual(self.vm.wait_data(8), b"typed \xff\x00")
            # Lock modes are the owner's: a write lock taken through n3
            # is seen through n2.
            w = vspc(self.n3)
            c.close()
            self.assertEqual(w.connect("db-01", "write")[:2],
                             ("vm_found", "write"))
            self.assertEqual(vspc(self.n2).connect("db-01", "write")[0],
                             "lock_failed")
            self.assertEqual(vspc(self.n1).connect("db-01", "exclusive")[0],
                             "lock_failed")
            w.write(b"holder")
            self.assertEqual(other.wait_data(6), b"holder")
        finally:
            for c in clients:
                try:
                    c.close()
                except OSError:
                    pass


if __name__ == "__main__":
    unittest.main()
