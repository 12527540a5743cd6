# Rolling upgrade of a cluster: three nodes sharing Redis behind
# HAProxy, a VM on each node streaming numbered lines, people attached
# through every node to the consoles of the other two (forwarded over
# the peer links), and cross-node vMotions left half-way.  Every node is
# hot-upgraded in turn, by SIGUSR2 and then all of them with `vspcctl
# cluster upgrade`.  After each step: no VM or person was disconnected,
# no peer link went down on any node (the other nodes saw only a pause),
# every person got every line exactly once and in order, what people
# type reaches the VM, and the vMotions complete afterwards.

import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cluster  # noqa: E402
import harness  # noqa: E402
from harness import FakeVM, wait_for  # noqa: E402

BEGIN, GOAHEAD, PEER_OK, COMPLETE = 0x28, 0x29, 0x2d, 0x2e


def lines(n, tag):
    return b"".join(b"%s-%06d\r\n" % (tag, i) for i in range(n))


class RollingUpgrade(cluster.ClusterTest):

    node_extra = {"vm.vmotion_token_ttl": "60"}

    def ctl(self, node, *args, timeout=120):
        p = subprocess.run([harness.VSPCCTL, "-s", node.ctl_socket()] +
                           list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).decode(errors="replace")

    def status(self, node):
        rc, out = self.ctl(node, "-j", "cluster", "status")
        self.assertEqual(rc, 0, out)
        return json.loads(out)

    def links_down(self, marks):
        """Peer links that went down on any node since marks."""
        out = []
        for n in self.cluster.nodes:
            for line in n.log_since(marks[n.name]).splitlines():
                if "link down" in line or "link to node" in line and \
                        "down" in line:
                    out.append("%s: %s" % (n.name, line))
        return out

    def setup_sessions(self):
        c = self.cluster
        self.vms = []
        for i, n in enumerate(c.nodes):
            self.vms.append(FakeVM(n, name="vm-%d" % i).ready())
        for i in range(len(c.nodes)):
            self.wait_listed_everywhere("vm-%d" % i)
        # On each node, a person on each console owned by another node.
        self.people = {i: [] for i in range(len(c.nodes))}
        for j, n in enumerate(c.nodes):
            for i in range(len(c.nodes)):
                if i == j:
                    continue
                p = self.console(n)
                self.assertRegex(p.attach("vm-%d" % i),
                                 rb"\[(attached|spy)")
                self.people[i].append(p)
        for ps in self.people.values():
            for p in ps:
                p.read_for(0.2)

    def stream(self, n, tag, moved=False):
        """Every VM sends n lines; each of its people must get exactly
        them, in order, nothing lost, nothing twice.  A hand-over tells
        people nothing; after a vMotion the writer's role is given back
        (a notice to the others), but nothing is ever skipped."""
        for i, vm in enumerate(self.vms):
            vm.send(lines(n, tag + b"%d" % i))
        for i, ps in self.people.items():
            want = lines(n, tag + b"%d" % i)
            for p in ps:
                got = p.read_until(want[-16:], timeout=20)
                data, notices = cluster.strip_notices(got)
                if moved:
                    notices = [x for x in notices if b"skipped" in x]
                self.assertEqual(notices, [], "a person was told "
                                 "something: %r" % notices)
                self.assertTrue(data.endswith(want), "lost or reordered "
                                "bytes: %r" % data[-300:])
                self.assertEqual(data.count(want[:14]), 1, "duplicated")

    def typing(self, tag):
        """The first person on each console (its writer, on another
        node) types a line; it reaches the VM once."""
        for i, ps in self.people.items():
            line = b"%s-%d\r" % (tag, i)
            ps[0].send(line)
            self.assertEqual(self.vms[i].wait_data(len(line), timeout=10),
                             line)

    def nobody_closed(self):
        for vm in self.vms:
            vm.poll(0.05)
            self.assertFalse(vm.closed, "a VM connection was closed")
        for ps in self.people.values():
            for p in ps:
                self.assertFalse(p.closed, "a person was disconnected")

    def upgrade_signal(self, node):
        old = node.pid()
        os.kill(old, signal.SIGUSR2)
        wait_for(lambda: node.pid() != old, 20, "%s: a new pid" % node.name)
        wait_for(lambda: "serves now" in node.log(), 10, "serves now")

    def test_rolling_upgrade(self):
        c = self.cluster
        self.setup_sessions()
        marks = {n.name: n.log_mark() for n in c.nodes}
        self.stream(100, b"s")

        # One by one with SIGUSR2, sessions in use between steps.
        for k, n in enumerate(c.nodes):
            self.upgrade_signal(n)
            self.stream(200, b"u%d-" % k)
            self.typing(b"t%d" % k)
            self.nobody_closed()
            self.assertEqual(self.links_down(marks), [])

        # The whole cluster with one command, from node n2.
        rc, out = self.ctl(c.nodes[1], "cluster", "upgrade", "--binary",
                           harness.VSPCD, "--timeout", "60")
        self.assertEqual(rc, 0, out)
        self.assertIn("cluster upgraded: 3 nodes", out)
        # By ID, the node answering last.
        order = [line.split()[2].rstrip(":") for line in out.splitlines()
                 if line.startswith("[")]
        self.assertEqual(order, ["n1", "n3", "n2"], out)
        self.stream(200, b"c")
        self.typing(b"tc")
        self.nobody_closed()
        self.assertEqual(self.links_down(marks), [])
        # Started times survive hand-overs: uptime is the node's.
        st = self.status(c.nodes[0])
        self.assertEqual(len([x for x in st["nodes"]
                              if x["state"] == "active"]), 3, st)

        # Every node's record carries its version and peer protocol.
        for n in c.nodes:
            rec = c.redis.cmd("HGETALL", "vspc:{%s}:node:%s" %
                              (c.name, n.name))
            rec = dict(zip(rec[::2], rec[1::2]))
            self.assertEqual(rec.get("protocol"), "1", rec)
            self.assertEqual(rec.get("version"), st["nodes"][0]["version"])
        # A node of another version (its record, as an older or newer
        # node writes it) shows in status: mixed versions are counted.
        c.redis.cmd("HSET", "vspc:{%s}:node:n9" % c.name, "peer", "",
                    "version", "9.9.9", "state", "active", "started",
                    str(int(time.time())), "heartbeat",
                    str(int(time.time()) + 5))
        c.redis.cmd("EXPIRE", "vspc:{%s}:node:n9" % c.name, "5")
        rc, out = self.ctl(c.nodes[0], "cluster", "status")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"versions: \S+ \(3\), 9\.9\.9 \(1\)")

    def test_vmotion_across_upgrades(self):
        c = self.cluster
        self.setup_sessions()
        # vm-0 (n1) moves to n2, vm-1 (n2) to n3: both left PEERED.
        moves = []
        for i, (dst, seq) in enumerate([(c.nodes[1], b"\x01\x02"),
                                        (c.nodes[2], b"\x03\x04")]):
            src = self.vms[i]
            src.sbcmd(BEGIN, seq)
            tok = src.wait_sb(GOAHEAD)
            self.assertIsNotNone(tok)
            d = FakeVM(dst, uuid=src.uuid, name=src.name, peer=tok)
            self.assertEqual(d.wait_sb(PEER_OK, timeout=10), seq)
            moves.append((i, src, d, seq))
        # Upgrade the source of one and the destination of the other
        # (n2 is both) and then the rest.
        for n in (c.nodes[1], c.nodes[0], c.nodes[2]):
            self.upgrade_signal(n)
        for i, src, d, seq in moves:
            src.close()
            d.sbcmd(COMPLETE, seq)
            self.vms[i] = d
        time.sleep(0.5)
        self.stream(100, b"after", moved=True)
        # Whoever is the writer after the moves: their line arrives once.
        for i in range(2):
            sent = [b"moved-%d-%d\r" % (i, k)
                    for k in range(len(self.people[i]))]
            for p, line in zip(self.people[i], sent):
                p.send(line)
            got = self.vms[i].wait_data(len(sent[0]), timeout=10)
            self.assertIn(got, sent)
            rest = self.vms[i].wait_data(10 ** 6, timeout=1.0)
            self.assertNotIn(got, rest, "input twice")
        for i in range(2):
            wait_for(lambda: b"vm-%d" % i in c.nodes[0].listing(), 10,
                     "vm-%d listed" % i)
        self.assertIn("vMotion complete", "".join(n.log()
                                                   for n in c.nodes))


if __name__ == "__main__":
    unittest.main(verbosity=2)
