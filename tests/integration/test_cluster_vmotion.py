# vMotion across nodes: the source host is on one node, the destination
# host reconnects to another (directly or through HAProxy), the token is
# matched through the shared store and the console moves.  A writer
# attached through a third node keeps its connection and sees the VM's
# sequence-numbered output with nothing lost, duplicated or reordered,
# in every ordering of the source's FIN and COMPLETE; what it types while
# the VM is between hosts reaches the VM.  And 100 of them at once.

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cluster  # noqa: E402
import pattern  # noqa: E402
from cluster import ask, sim_stats  # noqa: E402

UUID = "0123456789abcdeffedcba9800000000"
ORDERS = ("fin-first", "complete-first", "simultaneous")


class CrossNode(cluster.ClusterTest):

    def one_vm(self, target, mode="text"):
        s = self.sim(target)
        s.cmd("add 0 vm-00000 " + UUID)
        if mode != "text":
            s.cmd("pattern 0 " + mode)
        s.cmd("connect 0")
        s.expect(r"^ready 0 vm-00000")
        self.wait_listed_everywhere("vm-00000")
        return s

    def dest(self, target):
        if target == "haproxy":
            return self.cluster.vm_target
        return "127.0.0.1:%d" % target.vm_port

    def stream_through(self, s, writer_node, moves, mode):
        """Stream the pattern while vMotioning per moves, a list of
        (ORDER, destination); check what the writer on writer_node
        received and what it typed."""
        p = self.console(writer_node)
        self.assertIn(b"[attached", ask(p, "vm-00000"))
        p.read_for(0.2)
        s.cmd("stream 0 20000")
        received = bytearray()
        typed = bytearray()
        marks = []          # (move, bytes received when it started)
        for k, (order, dest) in enumerate(moves):
            received += p.read_for(0.3)
            marks.append(("%s to %s" % (order, dest if isinstance(dest, str)
                                        else dest.name), len(received)))
            s.cmd("vmotion 0 ok %s dest=%s seq=%02xff00%02x" %
                  (order, self.dest(dest), k, k))
            s.expect(r"^goahead 0 ", timeout=10)
            # Typed while the VM is between hosts (and nodes).
            line = b"typed-%d\xff\r" % k
            p.send(line)
            typed += line
            m = s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)", timeout=15)
            self.assertEqual(m.group(2), "ok", "%s to %s: %s" %
                             (order, dest if isinstance(dest, str)
                              else dest.name, m.group(0)))
        received += p.read_for(0.3)
        s.cmd("stream 0 0")
        time.sleep(0.3)
        sent, recv, off = sim_stats(s)
        received += p.read_for(0.5)
        self.assertFalse(p.closed, "the writer's connection was closed")
        data, notices = cluster.strip_notices(received)
        self.assertFalse([x for x in notices if b"skipped" in x], notices)
        res = pattern.check(data, name="vm-00000", index=0, mode=mode,
                            start=0, end=off)
        if not res["ok"]:
            # Say which move broke the stream first.
            culprit = "none (before the first move)"
            for i, (move, _) in enumerate(marks):
                n = marks[i + 1][1] if i + 1 < len(marks) else len(received)
                d, _ = cluster.strip_notices(received[:n])
                if not pattern.check(d, name="vm-00000", index=0,
                                     mode=mode)["ok"]:
                    culprit = move
                    break
            self.fail("stream broken, first by the move %s: %s; notices %r"
                      % (culprit, res, notices))
        self.assertGreater(off, 1000)
        got = cluster.sim_recv(s, 0, len(typed), timeout=10)
        self.assertEqual(got, bytes(typed))
        # After the moves the writer still writes.
        p.send(b"after")
        self.assertEqual(cluster.sim_recv(s, 0, 5), b"after")

    def test_text_every_order(self):
        n1, n2, n3 = self.cluster.nodes
        s = self.one_vm(n1)
        self.stream_through(s, n3, [("fin-first", n2),
                                    ("complete-first", n1),
                                    ("simultaneous", n2),
                                    ("fin-first", n1)], "text")

    def test_binary_every_order(self):
        n1, n2, n3 = self.cluster.nodes
        s = self.one_vm(n1, "binary")
        self.stream_through(s, n3, [(o, (n2, n1, n2)[k])
                                    for k, o in enumerate(ORDERS)],
                            "binary")

    def test_through_haproxy(self):
        hp = self.cluster.haproxy
        before = hp.sessions("vspcd-vm")
        s = self.one_vm("haproxy")
        owner = hp.server_of_new("vspcd-vm", before)
        names = [n.name for n in self.cluster.nodes]
        writer = self.cluster.node(names[(names.index(owner) + 2) % 3])
        # Destinations through HAProxy: round robin sends each one to
        # another node than the source's.
        self.stream_through(s, writer, [(o, "haproxy") for o in ORDERS],
                            "text")

    def test_hundred_in_parallel(self):
        nodes = self.cluster.nodes
        counts = (34, 33, 33)
        sims = []
        for k, node in enumerate(nodes):
            nxt = nodes[(k + 1) % 3]
            s = self.sim(node, ["-q", "-n", str(counts[k]),
                                "-p", "pv%d-" % k,
                                "-u", "aaaaaaaa%08x%016x" % (k, 0),
                                "--dest", "127.0.0.1:%d" % nxt.vm_port])
            sims.append(s)
        for k, s in enumerate(sims):
            m = s.expect(r"^allready (\d+) .*", timeout=30)
            self.assertEqual(int(m.group(1)), counts[k], m.group(0))
            self.assertNotIn("failed=", m.group(0).replace("failed=0", ""))
        self.wait_listed_everywhere(b"pv", 100, timeout=30)
        for k, s in enumerate(sims):
            for i in range(counts[k]):
                s.cmd("vmotion %d ok %s" % (i, ORDERS[i % 3]))
        results = []
        for k, s in enumerate(sims):
            for _ in range(counts[k]):
                m = s.expect(r"^vmotion-done \d+ \S+ (ok|fail).*",
                             timeout=60)
                results.append(m.group(0))
        self.assertEqual([r for r in results if " fail " in r], [])
        self.assertEqual(len(results), 100)
        # Every console still listed once on every node.
        for n in nodes:
            harness_listing = n.listing()
            self.assertEqual(harness_listing.count(b"pv"), 100, n.name)
        # And still alive: output of a moved VM reaches a person on the
        # node it left.
        s = sims[0]
        p = self.console(nodes[0])
        self.assertIn(b"[attached", ask(p, "pv0-00007"))
        s.cmd("send 7 %s" % b"moved and alive\r\n".hex())
        p.read_until(b"moved and alive\r\n")


class PeopleFollow(cluster.ClusterTest):
    """People on every node while the console moves between nodes: each
    gets every byte once, whether the console comes to their own node or
    leaves it, and keeps the role it had."""

    def watch(self, owner, people, moves):
        """VM on owner; people: [(node, mode)] attached before it
        streams; moves: destination nodes in turn.  Returns the people's
        consoles and data (notices removed) and notices."""
        s = self.sim(owner)
        s.cmd("add 0 vm-00000 " + UUID)
        s.cmd("connect 0")
        s.expect(r"^ready 0 vm-00000")
        self.wait_listed_everywhere("vm-00000")
        cons = []
        for node, mode in people:
            c = self.console(node)
            self.assertIn(b"[", ask(c, ("%s vm-00000" % mode) if mode
                                   else "vm-00000"))
            cons.append(c)
        s.cmd("stream 0 4000")
        got = [bytearray() for _ in cons]

        def read(t):
            end = time.monotonic() + t
            while time.monotonic() < end:
                for k, c in enumerate(cons):
                    got[k] += c.read_for(0.05)
        read(0.5)
        for k, dest in enumerate(moves):
            s.cmd("vmotion 0 ok fin-first dest=127.0.0.1:%d "
                  "seq=%02xee00%02x" % (dest.vm_port, k, k))
            m = s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)",
                         timeout=15)
            self.assertEqual(m.group(2), "ok", m.group(0))
            read(0.7)
        s.cmd("stream 0 0")
        time.sleep(0.3)
        _, _, off = sim_stats(s)
        read(0.7)
        out = []
        for k, c in enumerate(cons):
            self.assertFalse(c.closed, "person %d was disconnected" % k)
            data, notices = cluster.strip_notices(got[k])
            res = pattern.check(data, name="vm-00000", index=0,
                                mode="text", start=0, end=off)
            out.append((c, res, notices))
        self.assertGreater(off, 1000)
        return s, out

    def test_console_moves_onto_the_spy_node(self):
        # A spy on n2 forwarded to n3; the VM moves n3 -> n2: the spy,
        # local now, goes on from its byte (not the whole history again).
        n1, n2, n3 = self.cluster.nodes
        s, out = self.watch(n3, [(n1, None), (n2, "spy")], [n2, n1, n2])
        for k, (c, res, notices) in enumerate(out):
            self.assertTrue(res["ok"], "person %d: %s %r" %
                            (k, res, notices))

    def test_roles_kept_through_a_third_node(self):
        # The writer on n1 stays the writer when the console comes to n1
        # and leaves it again; a spy and a person waiting to write on n3
        # (a third node each time) stay spies: nobody is forced to spy
        # mode or promoted on the way.
        n1, n2, n3 = self.cluster.nodes
        s, out = self.watch(n2, [(n1, None), (n3, "spy"), (n3, None)],
                            [n1, n2, n1])
        for k, (c, res, notices) in enumerate(out):
            self.assertTrue(res["ok"], "person %d: %s" % (k, res))
            self.assertFalse([x for x in notices if b"forced" in x or
                              b"now the writer" in x], (k, notices))
        for k, (c, res, notices) in enumerate(out[1:]):
            c.send(b"from-spy")
            self.assertEqual(cluster.sim_recv(s, 0, 8, timeout=1.5), b"",
                             "person %d on n3 writes" % (k + 1))
        out[0][0].send(b"from-writer")
        self.assertEqual(cluster.sim_recv(s, 0, 11, timeout=10),
                         b"from-writer")


class CrossNodeFailures(cluster.ClusterTest):
    """Every failure path of a vMotion whose destination host reaches
    another node: the console stays on the source, the person attached
    through a third node sees it go on, and a later vMotion works."""

    node_extra = {"vm.vmotion_token_ttl": "3"}

    def setUp(self):
        super().setUp()
        self.n1, self.n2, self.n3 = self.cluster.nodes
        self.s = self.sim(self.n1)
        self.s.cmd("add 0 vm-00000 " + UUID)
        self.s.cmd("connect 0")
        self.s.expect(r"^ready 0 vm-00000")
        self.wait_listed_everywhere("vm-00000")
        self.p = self.console(self.n3)
        self.assertIn(b"[attached", ask(self.p, "vm-00000"))

    def still_on_source(self, tag):
        line = b"after %s\r\n" % tag.encode()
        self.s.cmd("send 0 %s" % line.hex())
        self.p.read_until(line, timeout=10)
        self.p.send(b"k-" + tag.encode())
        self.assertEqual(cluster.sim_recv(self.s, 0, 2 + len(tag)),
                         b"k-" + tag.encode())

    def variant(self, name, extra=""):
        self.s.cmd("vmotion 0 %s dest=127.0.0.1:%d %s" %
                   (name, self.n2.vm_port, extra))
        m = self.s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)",
                          timeout=20)
        self.assertEqual(m.group(2), "ok", "%s: %s" % (name, m.group(0)))
        self.still_on_source(name)

    def test_abort_without_destination(self):
        self.variant("no-dest", "delay=300")

    def test_bad_secret_on_another_node(self):
        self.variant("bad-secret", "timeout=1500")
        self.assertIn("VMOTION-PEER with an unknown", self.n2.log())

    def test_destination_lost_after_peer_ok(self):
        self.variant("dest-drop")

    def test_second_begin(self):
        self.variant("double-begin")

    def test_replayed_token(self):
        # A successful move to n2, then its token again: refused.
        self.s.cmd("vmotion 0 ok fin-first dest=127.0.0.1:%d" %
                   self.n2.vm_port)
        m = self.s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)",
                          timeout=20)
        self.assertEqual(m.group(2), "ok", m.group(0))
        self.s.cmd("vmotion 0 replay dest=127.0.0.1:%d" % self.n3.vm_port)
        m = self.s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)",
                          timeout=20)
        self.assertEqual(m.group(2), "ok", m.group(0))
        line = b"on n2 now\r\n"
        self.s.cmd("send 0 %s" % line.hex())
        self.p.read_until(line, timeout=10)

    def test_same_node_destination(self):
        self.s.cmd("vmotion 0 ok fin-first dest=127.0.0.1:%d" %
                   self.n1.vm_port)
        m = self.s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)",
                          timeout=20)
        self.assertEqual(m.group(2), "ok", m.group(0))
        self.still_on_source("same-node")

    def test_timeout_returns_to_source(self):
        # The source host never hears back from its destination and
        # sends nothing: after [vm] vmotion_token_ttl (3 s here) the node
        # gives up on the vMotion, and a new one is possible.
        self.s.cmd("vmotion 0 no-dest delay=5000")
        self.s.expect(r"^goahead 0 ", timeout=10)
        cluster.wait_for(lambda: "timed out" in self.n1.log(), 10,
                         "the vMotion to time out on n1")
        # The host's late ABORT is harmless.
        m = self.s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)",
                          timeout=20)
        self.assertEqual(m.group(2), "ok", m.group(0))
        self.s.cmd("vmotion 0 ok fin-first dest=127.0.0.1:%d" %
                   self.n2.vm_port)
        m = self.s.expect(r"^vmotion-done 0 ok (ok|fail) (.*)", timeout=20)
        self.assertEqual(m.group(1), "ok", m.group(0))
        line = b"moved after a timeout\r\n"
        self.s.cmd("send 0 %s" % line.hex())
        self.p.read_until(line, timeout=10)


if __name__ == "__main__":
    unittest.main()
