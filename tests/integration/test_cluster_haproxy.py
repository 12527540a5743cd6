# The HAProxy example (deploy/haproxy.cfg) in front of three nodes: it
# passes haproxy -c, the test copy differs from it only in addresses,
# consecutive connections on every frontend land on different nodes, a
# stopped node is skipped at once (redispatch) and taken out by the TCP
# checks, and it comes back when it returns.  The nodes run standalone
# here: this is about the load balancer's configuration alone.

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cluster  # noqa: E402
import harness  # noqa: E402
from harness import wait_for  # noqa: E402

ADDR = re.compile(r"\b\d+\.\d+\.\d+\.\d+(:\d+)?\b|\bport \d+\b")


def seconds(v):
    m = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", v)
    mult = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1, "m": 60,
            "h": 3600, "d": 86400}
    return int(m.group(1)) * mult[m.group(2)]


class Example(unittest.TestCase):
    """What the example promises operators, read from the file."""

    def setUp(self):
        with open(cluster.HAPROXY_EXAMPLE) as f:
            self.lines = [ln.split("#", 1)[0].strip() for ln in f]

    def test_idle_consoles_are_not_cut(self):
        # Consoles stay silent for hours: no timeout below an hour on an
        # established connection, and TCP keepalives on.
        t = {}
        for ln in self.lines:
            w = ln.split()
            if len(w) == 3 and w[0] == "timeout":
                t[w[1]] = seconds(w[2])
        for k in ("client", "server", "tunnel"):
            self.assertGreaterEqual(t.get(k, 0), 3600, k)
        self.assertIn("option tcpka", self.lines)

    def test_every_backend_round_robin_with_checks(self):
        backends = {}
        cur = None
        for ln in self.lines:
            w = ln.split()
            if not w:
                continue
            if w[0] in ("frontend", "backend", "defaults", "global",
                        "listen"):
                cur = (w[0], w[1] if len(w) > 1 else "")
                if w[0] == "backend":
                    backends[w[1]] = []
            elif cur and cur[0] == "backend":
                backends[cur[1]].append(ln)
        self.assertEqual(sorted(backends), ["vspcd-compat", "vspcd-console",
                                            "vspcd-control", "vspcd-vm"])
        for name, body in backends.items():
            self.assertIn("balance roundrobin", body, name)
            self.assertEqual(len([b for b in body
                                  if b.startswith("server ")]), 3, name)
        defaults = [ln for ln in self.lines if ln.startswith("default-server")]
        self.assertTrue(defaults and " check" in " " + defaults[0])
        self.assertIn("mode tcp", self.lines)


class HAProxyFront(cluster.ClusterTest):

    clustered = False

    def node_of(self, port):
        """Which node a new console-port connection on port reaches."""
        c = harness.Console(None, port=port)
        self.consoles.append(c)
        banner = c.read_until(cluster.PROMPT)
        return re.search(rb"\(node (\w+)\)", banner).group(1).decode()

    def test_rendered_copy_only_changes_addresses(self):
        hp = self.cluster.haproxy
        with open(cluster.HAPROXY_EXAMPLE) as f:
            example = f.read().split("\n")
        with open(hp.conf) as f:
            rendered = f.read().split("\n")
        self.assertEqual(len(example), len(rendered))
        for a, b in zip(example, rendered):
            self.assertEqual(ADDR.sub("ADDR", a.replace(
                cluster.STATS_SOCKET, "SOCK")),
                ADDR.sub("ADDR", b.replace(hp.stats_path, "SOCK")))
        for b in rendered:
            code = b.split("#", 1)[0]
            for a in re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", code):
                self.assertIn(a, ("127.0.0.1", cluster.TEST_SOURCE), b)
        rc, out = hp.check()
        self.assertEqual(rc, 0, out)
        self.assertNotIn("WARNING", out)
        # The example itself is valid as shipped.
        p = cluster.subprocess.run(
            [cluster.HAPROXY, "-c", "-f", cluster.HAPROXY_EXAMPLE],
            stdout=cluster.subprocess.PIPE, stderr=cluster.subprocess.STDOUT,
            timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout)

    def test_round_robin_on_every_frontend(self):
        hp = self.cluster.haproxy
        names = sorted(n.name for n in self.cluster.nodes)
        # Round robin: six consecutive connections reach every node.  (On
        # a loaded machine HAProxy may now and then pass a node over for
        # one connection, so not exactly twice each.)
        got = [self.node_of(self.cluster.console_port) for _ in range(6)]
        self.assertEqual(sorted(set(got)), names, got)
        self.assertLessEqual(max(got.count(n) for n in names), 3, got)
        # ESXi and compat frontends: see where HAProxy sent each session.
        for fe, port in (("vspcd-vm", hp.vm_port),
                         ("vspcd-compat", hp.compat_port)):
            servers = []
            for i in range(6):
                before = hp.sessions(fe)
                if fe == "vspcd-vm":
                    self.fakevm("haproxy", name="rr-%d" % i)
                else:
                    c = harness.Console(None, port=port)
                    self.consoles.append(c)
                servers.append(hp.server_of_new(fe, before))
            self.assertEqual(sorted(set(servers)), names, (fe, servers))
            self.assertLessEqual(max(servers.count(n) for n in names), 3,
                                 (fe, servers))
            if fe == "vspcd-vm":
                # Each VM is served by the node HAProxy chose.
                for i, srv in enumerate(servers):
                    self.cluster.node(srv).wait_listed("rr-%d" % i)

    def test_stopped_node_skipped_then_back(self):
        hp = self.cluster.haproxy
        n2 = self.cluster.node("n2")
        n2.stop()
        # Refused connections are redispatched: nothing fails, nothing
        # reaches n2, even before the checks notice.
        got = [self.node_of(self.cluster.console_port) for _ in range(6)]
        self.assertNotIn("n2", got)
        self.assertEqual(set(got), {"n1", "n3"})
        wait_for(lambda: hp.server_status().get(("vspcd-console", "n2"),
                                                "").startswith("DOWN"),
                 15, "the checks to mark n2 down")
        n2.start()
        wait_for(lambda: all(v == "UP" for v in
                             hp.server_status().values()),
                 15, "the checks to bring n2 back")
        got = [self.node_of(self.cluster.console_port) for _ in range(3)]
        self.assertEqual(sorted(got), ["n1", "n2", "n3"])


if __name__ == "__main__":
    unittest.main()
