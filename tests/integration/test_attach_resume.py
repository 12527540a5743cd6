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
"""People who never lose their place.

Single node: the TCP control listener ([control] listen); attach replies
carry the stream and the offset of their first byte; ATTACH with resume
continues at exactly the byte asked for, or says why not and starts at
the oldest byte held; admin commands are refused over TCP.

Cluster: vspcctl -c (through HAProxy) attached to a VM streaming its
pattern; the node its connection went to is killed and vspcctl comes back
through HAProxy with every byte exactly once; then the owner is killed
and the person stays attached, is told, and output goes on once the VM
is back on another node (the bytes in flight then are reported).
"""

import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM, free_port, wait_for  # noqa: E402
import ctlclient  # noqa: E402
from ctlclient import CtlConn  # noqa: E402

REFUSED = "not allowed over TCP: use the control socket"


def attach(conn, vm, **kw):
    """Attach; returns the first reply (checked ok)."""
    conn.send(ctlclient.ATTACH, target=vm, **kw)
    r = conn.recv()
    assert r is not None and r.ok, (r.error if r else "closed")
    return r


def collect(conn, want, timeout=10.0):
    """Read replies until want stream bytes came; (replies, data)."""
    replies, data = [], bytearray()
    end = time.monotonic() + timeout
    while len(data) < want:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError("wanted %d bytes, got %d: %r" %
                                 (want, len(data), bytes(data[-200:])))
        r = conn.recv(left)
        if r is None:
            raise AssertionError("connection closed")
        replies.append(r)
        data += r.data
    return replies, bytes(data)


class ResumeSingle(harness.NodeTest):

    def setUp(self):
        self.port = free_port()
        self.node_extra = {"control.listen": "127.0.0.1:%d" % self.port,
                           "console.history": "4k",
                           "console.replay_lines": "0"}
        super().setUp()
        wait_for(lambda: os.path.exists(self.node.ctl_socket()), 5,
                 "control socket")

    def tcp(self):
        c = CtlConn(("127.0.0.1", self.port))
        self.addCleanup(c.close)
        return c

    def vm(self, name="vm-res"):
        v = FakeVM(self.node, name=name).ready()
        self.node.wait_listed(name)
        return v

    def check_offsets(self, replies, sent):
        """Every data reply: the stream set, offsets contiguous, bytes
        equal to what the VM sent at those offsets."""
        stream, nxt = None, None
        for r in replies:
            if not r.data:
                continue
            self.assertNotEqual(r.stream, 0)
            if stream is None:
                stream = r.stream
            self.assertEqual(r.stream, stream)
            if nxt is not None:
                self.assertEqual(r.offset, nxt)
            self.assertEqual(r.data, sent[r.offset:r.offset + len(r.data)])
            nxt = r.offset + len(r.data)
        return stream, nxt

    def test_offsets_and_resume(self):
        v = self.vm()
        sent = b"".join(b"line %04d of the guest\r\n" % i
                        for i in range(100))
        self.assertLess(len(sent), 4096)
        v.send(sent)
        c = self.tcp()
        attach(c, "vm-res")
        # replay_lines = 0: nothing before now; new output from here.
        more = b"after the attach\r\n"
        sent += more
        v.send(more)
        replies, got = collect(c, len(more))
        self.assertEqual(got, more)
        stream, end = self.check_offsets(replies, sent)
        self.assertEqual(end, len(sent))
        self.assertEqual(replies[0].offset, len(sent) - len(more))
        c.close()

        # Resume in the middle: exactly the bytes after that offset.
        at = 1000
        c2 = self.tcp()
        attach(c2, "vm-res", resume=True, resume_stream=stream,
               resume_offset=at)
        r = c2.recv()
        self.assertEqual(r.text, "resumed at offset %d" % at)
        self.assertFalse(r.data)
        replies, got = collect(c2, len(sent) - at)
        self.assertEqual(got, sent[at:])
        self.assertEqual(replies[0].offset, at)
        self.check_offsets(replies, sent)
        # Live output goes on from there, without a gap.
        v.send(b"live\r\n")
        sent += b"live\r\n"
        replies, got = collect(c2, 6)
        self.assertEqual(got, b"live\r\n")
        self.assertEqual(replies[0].offset, len(sent) - 6)

        # Resume at the end: nothing replayed, nothing missed.
        c3 = self.tcp()
        attach(c3, "vm-res", resume=True, resume_stream=stream,
               resume_offset=len(sent))
        self.assertEqual(c3.recv().text, "resumed at offset %d" % len(sent))
        v.send(b"next\r\n")
        sent += b"next\r\n"
        replies, got = collect(c3, 6)
        self.assertEqual(got, b"next\r\n")
        self.assertEqual(replies[0].offset, len(sent) - 6)

    def test_stale_offset_and_other_stream(self):
        v = self.vm()
        sent = b"".join(b"%07d history line\r\n" % i for i in range(600))
        v.send(sent)
        self.assertGreater(len(sent), 3 * 4096)
        # Learn the stream (and wait until all is in the history).
        c = self.tcp()
        attach(c, "vm-res")
        v.send(b"mark\r\n")
        sent += b"mark\r\n"
        replies, _ = collect(c, 6)
        stream = replies[-1].stream
        start = len(sent) - 4096

        c2 = self.tcp()
        attach(c2, "vm-res", resume=True, resume_stream=stream,
               resume_offset=10)
        r = c2.recv()
        self.assertEqual(r.text, "%d bytes are no longer in the history"
                         % (start - 10))
        replies, got = collect(c2, 4096)
        self.assertEqual(replies[0].offset, start)
        self.assertEqual(got, sent[start:])
        self.check_offsets(replies, sent)

        c3 = self.tcp()
        attach(c3, "vm-res", resume=True, resume_stream=stream ^ 1,
               resume_offset=len(sent) - 6)
        r = c3.recv()
        self.assertEqual(r.text, "stream changed: output from the new "
                         "start")
        replies, got = collect(c3, 4096)
        self.assertEqual(replies[0].offset, start)
        self.assertEqual(got, sent[start:])

    def test_admin_refused_over_tcp(self):
        self.vm()
        c = self.tcp()
        for cmd, kw in ((ctlclient.DRAIN, {}), (ctlclient.UNDRAIN, {}),
                        (ctlclient.RELOAD, {}),
                        (ctlclient.UPGRADE, {}),
                        (ctlclient.DISCONNECT, {"target": "vm-res"})):
            r = c.request(cmd, **kw)
            self.assertFalse(r.ok, cmd)
            self.assertEqual(r.error, REFUSED)
        r = c.request(ctlclient.VM_LIST)
        self.assertTrue(r.ok)
        p = subprocess.run([ctlclient.VSPCCTL, "-c", "127.0.0.1:%d" %
                            self.port, "node", "drain"],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn(REFUSED.encode(), p.stderr)
        # Still active: the refusal changed nothing.
        p = subprocess.run([ctlclient.VSPCCTL, "-j", "-c", "127.0.0.1:%d"
                            % self.port, "vm", "list"],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"vm-res", p.stdout)

    def test_vspcctl_notices_apart(self):
        """vspcctl -c: console output on stdout, the node's notices on
        stderr; a detach at end of input exits 0."""
        v = self.vm()
        env = dict(os.environ, VSPCCTL_CONNECT="127.0.0.1:%d" % self.port)
        p = subprocess.Popen([ctlclient.VSPCCTL, "attach", "vm-res",
                              "--retry", "0"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env)
        wait_for(lambda: b"vm-res" in self.who(), 5, "vspcctl attached")
        other = self.tcp()
        attach(other, "vm-res", mode=ctlclient.MODE_FORCE)
        v.send(b"only guest bytes\r\n")
        time.sleep(0.5)
        out, err = p.communicate(b"", timeout=10)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out, b"only guest bytes\r\n")
        self.assertIn(b"spy", err)

    def who(self):
        return ctlclient.vspcctl(self.node.ctl_socket(), "who").stdout


import cluster  # noqa: E402
import pattern  # noqa: E402

VM = "rvm-0"
VM_UUID = "0123456789abcdeffedcba98000000aa"
LINE = len(VM) + 13


class Vspcctl:
    """vspcctl -c HOST:PORT attach, not on a terminal; its stdout and
    stderr collected by threads."""

    def __init__(self, target, vm, retry=30):
        self.proc = subprocess.Popen(
            [ctlclient.VSPCCTL, "-c", target, "attach", vm, "--spy",
             "--retry", str(retry)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = bytearray()
        self.err = bytearray()
        self.lock = threading.Lock()
        for f, buf in ((self.proc.stdout, self.out),
                       (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(f, buf),
                             daemon=True).start()

    def _read(self, f, buf):
        while True:
            d = os.read(f.fileno(), 65536)
            if not d:
                return
            with self.lock:
                buf += d

    def output(self):
        with self.lock:
            return bytes(self.out)

    def errors(self):
        with self.lock:
            return bytes(self.err).decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        return self.proc.returncode


def first_offset(data):
    """The pattern offset of data[0], from the first whole line."""
    i = data.index(b"\r\n") + 2
    k = int(data[i:i + LINE].split()[1])
    return k * LINE - i


class ResumeCluster(cluster.ClusterTest):

    node_extra = {"console.replay_lines": "0"}

    def vspcctl(self, avoid):
        """vspcctl through HAProxy, on a node that is not avoid; returns
        (Vspcctl, its node)."""
        hp = self.cluster.haproxy
        for _ in range(6):
            before = hp.sessions("vspcd-control")
            v = Vspcctl(self.cluster.control_target, VM)
            self.addCleanup(v.stop)
            wait_for(lambda: "escape key" in v.errors(), 10,
                     "vspcctl attached: %r" % v.errors())
            node = self.cluster.node(hp.server_of_new("vspcd-control",
                                                      before))
            if node is not avoid:
                return v, node
            v.stop()
        raise AssertionError("HAProxy never chose another node")

    def wait_end(self, s, v, start, timeout=15):
        """Stop the stream; wait until vspcctl showed up to its end."""
        s.cmd("stream 0 0")
        time.sleep(0.3)
        end = cluster.sim_stats(s)[2]
        tail = pattern.expected(end - 32, 32, name=VM)
        wait_for(lambda: v.output().endswith(tail), timeout,
                 "vspcctl to show up to offset %d (at %d)" %
                 (end, start + len(v.output())))
        time.sleep(0.3)
        return end

    def test_node_loss(self):
        hp = self.cluster.haproxy
        s = self.sim("haproxy")
        before = hp.sessions("vspcd-vm")
        s.cmd("add 0 %s %s" % (VM, VM_UUID))
        s.cmd("connect 0")
        s.expect(r"^ready 0 %s" % VM)
        owner = self.cluster.node(hp.server_of_new("vspcd-vm", before))
        self.wait_listed_everywhere(VM)
        s.cmd("send 0 %s" % pattern.expected(0, LINE, name=VM).hex())
        s.cmd("stream 0 20000")

        # 1. The node vspcctl's connection went to dies (not the owner):
        # vspcctl comes back through HAProxy and shows every byte once.
        v, via = self.vspcctl(owner)
        wait_for(lambda: len(v.output()) > 4 * LINE, 10, "output")
        third = [n for n in self.cluster.nodes
                 if n is not owner and n is not via][0]
        # Back through the third node (not the owner: step 2 kills it).
        hp.admin("disable server vspcd-control/%s" % owner.name)
        time.sleep(0.5)
        via.kill9()
        wait_for(lambda: "resumed at offset" in v.errors(), 20,
                 "vspcctl to reconnect: %r" % v.errors())
        self.assertIn("[connection lost; reconnecting]", v.errors())
        self.assertRegex(v.errors(),
                         r"\[reconnected; resumed at offset \d+\]")
        wait_for(lambda: len(v.output()) > 40 * LINE, 10, "more output")
        start = first_offset(v.output())
        end = self.wait_end(s, v, start)
        r = pattern.check(v.output(), name=VM, start=start, end=end)
        self.assertTrue(r["ok"], r)
        self.assertEqual((r["missing"], r["duplicated"], r["reordered"],
                          r["corrupt"]), (0, 0, 0, 0), r)
        self.assertEqual(v.proc.poll(), None)
        self.assertEqual(hp.sessions("vspcd-control"),
                         [("vspcd-control", third.name)])

        # 2. The owner dies: the person (forwarded through the third
        # node) stays attached, is told, and sees the output again once
        # the VM is back on a surviving node.
        s.cmd("stream 0 20000")
        mark = len(v.output())
        wait_for(lambda: len(v.output()) > mark + 10 * LINE, 10, "output")
        errs = len(v.errors())
        owner.kill9()
        s.expect(r"^closed 0 \S+ src", timeout=10)
        wait_for(lambda: len(v.errors()) > errs, 15, "a notice")
        s.cmd("connect 0")
        s.expect(r"^ready 0 %s" % VM, timeout=15)
        mark = len(v.output())
        wait_for(lambda: len(v.output()) > mark + 20 * LINE, 20,
                 "output after the VM came back: %r" % v.errors())
        end = self.wait_end(s, v, start)
        self.assertEqual(v.proc.poll(), None, v.errors())
        self.assertNotIn("connection lost", v.errors()[errs:])
        r = pattern.check(v.output(), name=VM, start=start, end=end)
        self.assertEqual((r["duplicated"], r["reordered"], r["corrupt"],
                          r["tail_missing"]), (0, 0, 0, 0), r)
        sys.stderr.write("\nowner killed: %d bytes lost in flight "
                         "(the VM sent %d in all); vspcctl said: %r\n" %
                         (r["missing"], end - start,
                          v.errors()[errs:].strip()))
        self.assertEqual(v.stop(), 0, v.errors())


if __name__ == "__main__":
    unittest.main()
