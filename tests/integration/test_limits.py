#!/usr/bin/env python3
#
# Copyright (c) 2026 The vspcd authors
#
# Permission to use, copy, modify, and distribute this software for any
# purpose with or without fee is hereby granted, provided that the above
# copyright notice and this permission notice appear in all copies.
#
# THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
# WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
# MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
# ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
# WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
# ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
# OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.

"""Connection limits as people meet them.

On the default limits, hundreds of sessions from one address are served
on the console and compatibility ports: vSPCClients started on the
concentrator host itself (the compatibility port listens on loopback),
people behind one jump host.  With small limits, a refused client is
told why in its own protocol (a text line on the console port; for
vSPCClient a pickle that makes it exit with the text; for VMware's
client a line of in-band text), and the refusal is counted in
vspcd_connections_refused_total by listener and reason.

Sources other than 127.0.0.1 are other loopback addresses, which Linux
routes to lo."""

import os
import pickle
import re
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM, wait_for  # noqa: E402

sys.path.insert(0, os.path.join(harness.TOP_SRCDIR, "tests", "clients"))
import vmwareclient  # noqa: E402
import vspcclient  # noqa: E402

CLIENTS = os.path.join(harness.TOP_SRCDIR, "tests", "clients")
PROMPT = b"? lists): "
SESSIONS = 260
VMS = 5                 # [console] max_clients is 64 people per console.


metrics = harness.metrics
REFUSED = re.compile(r'^vspcd_connections_refused_total\{listener="([^"]*)",'
                     r'reason="([^"]*)"\} (\d+)$', re.M)


def refused_counts(node):
    return {(m.group(1), m.group(2)): int(m.group(3))
            for m in REFUSED.finditer(metrics(node))}


def refused_count(node, listener, reason):
    """Refusals since the test began: the harness's readiness probes
    come from 127.0.0.1 and may be refused themselves where a test sets
    max_per_source 1 without exemptions (one probe still held while the
    next connects)."""
    return harness.refused_count(node, listener, reason) - \
        getattr(node, "refused_before", {}).get((listener, reason), 0)


def refused_total(node):
    before = sum(getattr(node, "refused_before", {}).values())
    return sum(refused_counts(node).values()) - before


read_to_close = harness.read_to_close


class LimitNodeTest(harness.NodeTest):
    """A node with its HTTP listener, for the metrics; node_extra sets
    nothing else unless a test case says so."""

    def setUp(self):
        http_port = harness.free_port()
        extra = dict(self.node_extra)
        extra["http.listen"] = "127.0.0.1:%d" % http_port
        self.node = harness.Node(extra=extra).start()
        self.node.http_port = http_port
        self.sims = []
        self.consoles = []
        self.vspc = []
        # The harness saw the node ready by connecting to each port; those
        # connections hold slots until the node has seen them close.  A
        # setUp that fails gets no tearDown: the node is stopped here.
        try:
            wait_for(self.probes_gone, 10, "the readiness probes to be "
                     "gone")
            self.node.refused_before = refused_counts(self.node)
        except BaseException:
            self.node.stop()
            self.node.cleanup()
            raise

    def probes_gone(self):
        # The HTTP listener may open after the ports the harness probes.
        try:
            m = metrics(self.node)
        except OSError:
            return False

        def value(name):
            return sum(int(n) for n in re.findall(
                r"^vspcd_%s(?:\{[^}]*\})? (\d+)$" % name, m, re.M))
        return (value("people_accepted_total") >= 2 and
                value("people_connected") == 0 and
                value("vm_connections") == 0)

    def tearDown(self):
        for c in self.vspc:
            c.close()
        super().tearDown()

    def vms(self, n=VMS):
        vms = [FakeVM(self.node, name="vm-%d" % i) for i in range(n)]
        for v in vms:
            v.ready()
        return vms

    def vspcclient(self, vm, src=None):
        """A vSPCClient session attached to vm (free for all)."""
        c = vspcclient.VspcClient("127.0.0.1", self.node.compat_port,
                                  source=src)
        self.vspc.append(c)
        status, _, _ = c.connect(vm, vspcclient.Q_LOCK_FFA)
        self.assertEqual(status, vspcclient.Q_OK)
        return c

    def vspcclient_command(self, *args):
        """Run tests/clients/vspcclient.py as vSPCClient would be run."""
        return subprocess.run(
            [sys.executable, os.path.join(CLIENTS, "vspcclient.py"), "-s",
             "127.0.0.1", "-a", str(self.node.compat_port)] + list(args),
            capture_output=True, text=True, timeout=30,
            stdin=subprocess.DEVNULL)


class DefaultLimitsTest(LimitNodeTest):
    """The default limits: 260 sessions from 127.0.0.1 on each port, all
    served, none refused."""

    node_extra = {}

    def test_defaults_in_use(self):
        with open(self.node.conf) as f:
            self.assertNotIn("max_", f.read())

    def test_console_port(self):
        vms = self.vms()
        people = []
        for i in range(SESSIONS):
            c = self.console()
            c.attach("vm-%d" % (i % VMS))
            people.append(c)
        for i, v in enumerate(vms):
            v.send(b"to all %d\r\n" % i)
        for i, c in enumerate(people):
            c.read_until(b"to all %d\r\n" % (i % VMS))
        self.assertEqual(refused_total(self.node), 0)
        self.assertNotIn("refused", self.node.log())

    def test_compat_port(self):
        vms = self.vms()
        sessions = []
        for i in range(SESSIONS):
            c = vspcclient.VspcClient("127.0.0.1", self.node.compat_port)
            self.vspc.append(c)
            status, _, _ = c.connect("vm-%d" % (i % VMS),
                                     vspcclient.Q_LOCK_FFA)
            self.assertEqual(status, vspcclient.Q_OK, "session %d" % i)
            sessions.append(c)
        for i, v in enumerate(vms):
            v.send(b"to all %d\r\n" % i)
        for i, c in enumerate(sessions):
            self.assertIn(b"to all %d\r\n" % (i % VMS),
                          c.read_until(b"to all %d\r\n" % (i % VMS), 10),
                          "session %d" % i)
        self.assertEqual(refused_total(self.node), 0)
        self.assertNotIn("refused", self.node.log())
        # One more, as a command: the listing.
        r = self.vspcclient_command()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("vm-0:", r.stdout)


class NetworkDefaultTest(LimitNodeTest):
    """The default max_per_source for a source on the network (no
    exemption): 256 people behind one jump host, and the 257th told."""

    node_extra = {"console.max_per_source_exempt": ""}

    def test_jump_host(self):
        for i in range(256):
            self.console(src="127.0.0.2").read_until(PROMPT)
        sock = socket.create_connection(("127.0.0.1",
                                         self.node.console_port), 5,
                                        source_address=("127.0.0.2", 0))
        self.assertEqual(read_to_close(sock),
                         b"vspcd: too many connections from 127.0.0.2 "
                         b"(max_per_source 256)\r\n")
        self.assertEqual(refused_count(self.node, "console",
                                       "max_per_source"), 1)
        # The node's own host is another source.
        self.console().read_until(PROMPT)


class ExemptTest(LimitNodeTest):
    """max_per_source_exempt: the exempt source is not limited, the
    others are."""

    node_extra = {
        "console.max_per_source": "1",
        "console.max_per_source_exempt": "127.0.0.1/32",
        "compat.max_per_source": "1",
        "compat.max_per_source_exempt": "127.0.0.1/32",
    }

    def test_exempt(self):
        self.vms(1)
        for i in range(3):
            self.console().read_until(PROMPT)
            self.vspcclient("vm-0")
        self.console(src="127.0.0.2").read_until(PROMPT)
        sock = socket.create_connection(("127.0.0.1",
                                         self.node.console_port), 5,
                                        source_address=("127.0.0.2", 0))
        self.assertIn(b"max_per_source 1", read_to_close(sock))
        self.assertEqual(refused_count(self.node, "console",
                                       "max_per_source"), 1)
        self.assertEqual(refused_count(self.node, "compat",
                                       "max_per_source"), 0)


class RefusalTest(LimitNodeTest):
    """A refused client is told why in its protocol, and counted.  The
    sources are 127.0.0.2 and up: the harness's readiness probes come
    from 127.0.0.1 and hold their slot until the node reaps them."""

    node_extra = {
        "console.max_per_source": "1",
        "console.max_per_source_exempt": "",
        "console.max_connections": "3",
        "console.allow": "127.0.0.0/29",
        "compat.max_per_source": "1",
        "compat.max_per_source_exempt": "",
        "compat.max_connections": "3",
        "compat.allow": "127.0.0.0/29",
    }
    PER_SOURCE = "vspcd: too many connections from 127.0.0.2 " \
                 "(max_per_source 1)"
    GLOBAL = "vspcd: too many connections (max_connections 3)"
    ALLOW = "vspcd: connections from 127.0.0.9 are not allowed here " \
            "([%s] allow)"

    def connect(self, port, src):
        return socket.create_connection(("127.0.0.1", port), 5,
                                        source_address=(src, 0))

    def test_console_port(self):
        port = self.node.console_port
        self.console(src="127.0.0.2").read_until(PROMPT)
        sock = self.connect(port, "127.0.0.2")
        sock.sendall(bytes([255, 253, 1]))     # A telnet client's DO ECHO.
        self.assertEqual(read_to_close(sock),
                         self.PER_SOURCE.encode() + b"\r\n")
        for src in ("127.0.0.3", "127.0.0.4"):
            self.console(src=src).read_until(PROMPT)
        self.assertEqual(read_to_close(self.connect(port, "127.0.0.5")),
                         self.GLOBAL.encode() + b"\r\n")
        self.assertEqual(read_to_close(self.connect(port, "127.0.0.9")),
                         (self.ALLOW % "console").encode() + b"\r\n")
        self.assertEqual(refused_count(self.node, "console",
                                       "max_per_source"), 1)
        self.assertEqual(refused_count(self.node, "console",
                                       "max_connections"), 1)
        self.assertEqual(refused_count(self.node, "console", "allow"), 1)
        self.assertRegex(self.node.log(), r"console listener \S+: "
                         r"connection from 127\.0\.0\.2:\d+ refused: "
                         r"\[console\] max_per_source \(1\) reached")

    def test_log_rate(self):
        """A flood of refusals is counted in full, logged in part."""
        port = self.node.console_port
        self.console(src="127.0.0.2").read_until(PROMPT)
        socks = [self.connect(port, "127.0.0.2") for _ in range(40)]
        for sock in socks:
            self.assertIn(b"max_per_source 1", read_to_close(sock))
        self.assertEqual(refused_count(self.node, "console",
                                       "max_per_source"), 40)

        def log_counts():
            log = self.node.log()
            return (len(re.findall(r"refused: \[console\] max_per_source",
                                   log)),
                    sum(int(n) for n in re.findall(
                        r"(\d+) more refused connections not logged", log)))
        # Each second's surplus is summed up once the second is over.
        wait_for(lambda: sum(log_counts()) == 40, 5,
                 "every refusal logged or summed up")
        self.assertLess(log_counts()[0], 40)

    def vspcclient_refused(self, want, src):
        """vSPCClient's own sequence (version, then int(load())): it must
        end by SystemExit with the text, not by a traceback."""
        sock = self.connect(self.node.compat_port, src)
        try:
            f = sock.makefile("rwb")
            pickle.dump(vspcclient.Q_VERS, f)
            f.flush()
            with self.assertRaises(SystemExit) as cm:
                int(pickle.Unpickler(f).load())
            self.assertEqual(cm.exception.code, want)
            f.close()
        finally:
            sock.close()

    def test_compat_vspcclient(self):
        self.vms(1)
        self.vspcclient("vm-0", src="127.0.0.2")
        # The module raises ProtocolError with the text.
        c = vspcclient.VspcClient("127.0.0.1", self.node.compat_port,
                                  source="127.0.0.2")
        with self.assertRaises(vspcclient.ProtocolError) as cm:
            c.connect("vm-0")
        c.close()
        self.assertEqual(str(cm.exception), self.PER_SOURCE)
        self.vspcclient_refused(self.PER_SOURCE, "127.0.0.2")
        # As a command: the text on stderr, status 1, no traceback.
        r = self.vspcclient_command("-b", "127.0.0.2", "vm-0")
        self.assertEqual(r.returncode, 1)
        self.assertIn(self.PER_SOURCE, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertEqual(refused_count(self.node, "compat",
                                       "max_per_source"), 3)
        # max_connections and allow.
        self.vspcclient("vm-0", src="127.0.0.3")
        self.vspcclient("vm-0", src="127.0.0.4")
        self.vspcclient_refused(self.GLOBAL, "127.0.0.5")
        self.vspcclient_refused(self.ALLOW % "compat", "127.0.0.9")
        self.assertEqual(refused_count(self.node, "compat",
                                       "max_connections"), 1)
        self.assertEqual(refused_count(self.node, "compat", "allow"), 1)
        self.assertRegex(self.node.log(), r"compat listener \S+: "
                         r"connection from 127\.0\.0\.2:\d+ refused: "
                         r"\[compat\] max_per_source \(1\) reached")

    def test_compat_vmware(self):
        self.vms(1)
        self.vspcclient("vm-0", src="127.0.0.2")
        c = vmwareclient.VmwareClient("127.0.0.1", self.node.compat_port,
                                      source="127.0.0.2")
        with self.assertRaises(vmwareclient.ProtocolError) as cm:
            c.handshake()
        c.close()
        self.assertIn(self.PER_SOURCE, str(cm.exception))
        # VMware's client prints in-band text: exactly the line.
        sock = self.connect(self.node.compat_port, "127.0.0.2")
        self.assertEqual(read_to_close(sock),
                         self.PER_SOURCE.encode() + b"\r\n")
        r = subprocess.run(
            [sys.executable, os.path.join(CLIENTS, "vmwareclient.py"), "-s",
             "127.0.0.1", "-a", str(self.node.compat_port), "-b",
             "127.0.0.2", "x"], capture_output=True, text=True, timeout=30,
            stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 1)
        self.assertIn(self.PER_SOURCE, r.stderr)
        self.assertEqual(refused_count(self.node, "compat",
                                       "max_per_source"), 3)


if __name__ == "__main__":
    unittest.main()
