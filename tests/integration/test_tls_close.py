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
"""The end of a TLS connection, on the telnets listeners ([vm] tls_listen,
[console] tls_listen), over real TLS on loopback: every way a peer can
end it (close_notify then FIN, FIN without close_notify, RST, and
close_notify with the TCP connection left open) is noticed within a
second, logged once with its cause and counted in
vspcd_tls_closes_total; the last bytes sent before a clean close reach
the console log; after CYCLES connect/identify/close cycles of each
kind, descriptors (main and TLS process), socket states (no CLOSE-WAIT)
and memory are back to their baseline; and a VM that reconnects while a
person types gets every keystroke typed after it was identified, even
when the person was paused on the stale connection's full queue."""

import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM, wait_for  # noqa: E402

TLSDIR = os.path.join(harness.TOP_SRCDIR, "tests", "data", "tls")
PROMPT = b"? lists): "
# Connect/identify/close cycles per kind of close in test_cycles: 200 of
# each (800 TLS connections) keeps the test well under a minute.
CYCLES = int(os.environ.get("TLS_CLOSE_CYCLES", "200"))
# How a peer ends its connection, and the cause the node must count.
KINDS = (("notify", "close_notify"), ("notify_open", "close_notify"),
         ("fin", "eof"), ("reset", "reset"))


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def read_to_eof(sock, timeout):
    """Read (and drop) until the other side closes; False on timeout."""
    sock.settimeout(timeout)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True
    return False


def end_tls(sock, how):
    """End a TLS connection the way how says.  Returns the raw socket
    still open (notify_open: the node must close it), else None."""
    if how == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
        sock.close()
        return None
    if how == "fin":
        # FIN without close_notify; then drain, so that closing does
        # not turn into a reset.
        sock.shutdown(socket.SHUT_WR)
        read_to_eof(sock, 5)
        sock.close()
        return None
    sock.settimeout(5)
    try:
        raw = sock.unwrap()      # close_notify, and the node's answer.
    except ssl.SSLError:
        # Bytes from the node crossed our close_notify, which OpenSSL
        # calls an error; close_notify went out all the same.
        raw = socket.socket(fileno=sock.detach())
    if how == "notify_open":
        return raw
    raw.shutdown(socket.SHUT_WR)
    read_to_eof(raw, 5)
    raw.close()
    return None


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tcp_states(ports):
    """(local port, state) of the sockets on these local ports."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if port in ports:
                out.append((port, int(fields[3], 16)))
    return out


CLOSE_WAIT = 8
LISTEN = 10


class TlsCloseTest(harness.NodeTest):

    def setUp(self):
        self.http_port = harness.free_port()
        self.vm_tls = harness.free_port()
        self.con_tls = harness.free_port()
        self.tmp = tempfile.mkdtemp(prefix="vspcd-tlsclose-")
        extra = {
            "vm.tls_listen": "127.0.0.1:%d" % self.vm_tls,
            "vm.tls_cert": os.path.join(TLSDIR, "cert.pem"),
            "vm.tls_key": os.path.join(TLSDIR, "key.pem"),
            "console.tls_listen": "127.0.0.1:%d" % self.con_tls,
            "http.listen": "127.0.0.1:%d" % self.http_port,
        }
        extra.update(getattr(self, "more_extra", {}))
        saved = os.environ.get("ASAN_OPTIONS")
        if self._testMethodName == "test_cycles":
            os.environ["ASAN_OPTIONS"] = ":".join(
                x for x in (saved, "quarantine_size_mb=0",
                            "thread_local_quarantine_size_kb=0") if x)
        try:
            self.node = harness.Node(extra=extra).start()
            self.node.http_port = self.http_port
        finally:
            if saved is None:
                os.environ.pop("ASAN_OPTIONS", None)
            else:
                os.environ["ASAN_OPTIONS"] = saved
        self.sims = []
        self.consoles = []

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # What the node says.

    def metrics(self):
        return harness.metrics(self.node)

    def closes(self, listener, kind):
        m = re.search(r'^vspcd_tls_closes_total\{listener="%s",kind="%s"\} '
                      r'(\d+)$' % (listener, kind), self.metrics(), re.M)
        self.assertIsNotNone(m, "no vspcd_tls_closes_total for %s %s" %
                             (listener, kind))
        return int(m.group(1))

    def people(self):
        m = re.search(r'^vspcd_people_connected\{kind="console"\} (\d+)$',
                      self.metrics(), re.M)
        return int(m.group(1))

    def vm_state(self, name):
        r = subprocess.run([harness.VSPCCTL, "-s", self.node.ctl_socket(),
                            "-j", "vm", "list"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        for c in json.loads(r.stdout)["consoles"]:
            if c["name"] == name:
                return c["state"]
        return None

    def tls_pid(self):
        pid = self.node.proc.pid
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = [int(x) for x in f.read().split()]
        self.assertEqual(len(kids), 1, "one TLS process")
        return kids[0]

    def console_log(self, name):
        for f in os.listdir(self.node.logdir):
            if f.startswith(name + "-") and f.endswith(".log"):
                with open(os.path.join(self.node.logdir, f), "rb") as fh:
                    return fh.read()
        return b""

    def tls_vm(self, name, uuid=None):
        return FakeVM(self.node, name=name, uuid=uuid, port=self.vm_tls,
                      tls=client_ctx())

    def settle(self, vm):
        """Read what the node sent until it is quiet (nothing unread left
        behind: closing over unread bytes would send a reset)."""
        while vm.poll(0.1):
            pass

    def no_close_wait(self):
        ports = (self.vm_tls, self.con_tls)
        return not any(st == CLOSE_WAIT for _, st in tcp_states(ports))

    # The tests.

    def test_vm_each_kind(self):
        """ESXi side: noticed within 1 s, last bytes kept, one log line
        with the cause, counted by kind."""
        for how, kind in KINDS:
            with self.subTest(how=how):
                name = "vm-%s" % how.replace("_", "-")
                before = self.closes("vm", kind)
                vm = self.tls_vm(name).ready()
                wait_for(lambda: self.vm_state(name) == "connected", 5,
                         "%s connected" % name)
                last = ("last words of %s\r\n" % name).encode()
                vm.send(last)
                if how != "reset":
                    # The bytes are on the node before the reset (it
                    # would destroy them in the kernel's buffers).
                    wait_for(lambda: last in self.console_log(name), 5,
                             "last bytes logged")
                self.settle(vm)
                t0 = time.monotonic()
                raw = end_tls(vm.sock, how)
                vm.closed = True
                wait_for(lambda: self.vm_state(name) == "disconnected", 5,
                         "%s noticed" % name)
                took = time.monotonic() - t0
                self.assertLess(took, 1.0, "%s noticed after %.2fs" %
                                (how, took))
                if raw is not None:
                    # close_notify, TCP left open: the node closes it.
                    self.assertTrue(read_to_eof(raw, 1.0),
                                    "node kept the TCP connection open")
                    raw.close()
                self.assertIn(last, self.console_log(name))
                wait_for(lambda: self.closes("vm", kind) == before + 1, 2,
                         "close counted as %s" % kind)
                log = self.node.log()
                ends = re.findall(r"tls \d+: 127\.0\.0\.1:\d+: [^\n]*\(%s\)"
                                  % kind, log)
                self.assertEqual(len(ends), before + 1, ends)
        wait_for(self.no_close_wait, 2, "no CLOSE-WAIT on the node's ports")
        # Nothing ended any other way.
        for k in ("error", "local"):
            self.assertEqual(self.closes("vm", k), 0)

    def test_console_each_kind(self):
        """The console port over telnets: the person's session ends."""
        for how, kind in KINDS:
            with self.subTest(how=how):
                before = self.closes("console", kind)
                p = harness.Console(self.node, port=self.con_tls,
                                    tls=client_ctx())
                p.read_until(PROMPT)
                wait_for(lambda: self.people() == 1, 5, "person counted")
                # The prompt may come with more; read it all first.
                p.read_for(0.1)
                t0 = time.monotonic()
                raw = end_tls(p.sock, how)
                wait_for(lambda: self.people() == 0, 5, "session ended")
                took = time.monotonic() - t0
                self.assertLess(took, 1.0, "%s noticed after %.2fs" %
                                (how, took))
                if raw is not None:
                    self.assertTrue(read_to_eof(raw, 1.0))
                    raw.close()
                wait_for(lambda: self.closes("console", kind) ==
                         before + 1, 2, "close counted as %s" % kind)
        wait_for(self.no_close_wait, 2, "no CLOSE-WAIT on the node's ports")

    def test_node_closes(self):
        """The node ends the connection (kicked, replaced): what it sent
        arrives, then close_notify; counted as local."""
        uuid = os.urandom(16)
        old = self.tls_vm("vm-replaced", uuid).ready()
        self.settle(old)
        new = self.tls_vm("vm-replaced", uuid).ready()
        self.assertTrue(old.wait_closed(2), "replaced connection closed")
        wait_for(lambda: self.closes("vm", "local") == 1, 2,
                 "close counted as local")
        new.close()

    def cycle(self, how, uuid):
        vm = self.tls_vm("vm-cycle", uuid)
        vm.ready()
        raw = end_tls(vm.sock, how)
        vm.closed = True
        if raw is not None:
            self.assertTrue(read_to_eof(raw, 2))
            raw.close()
        FakeVM.live.remove(vm)

    def test_cycles(self):
        """CYCLES connect/identify/close cycles of each kind: descriptors,
        socket states and memory come back to the baseline.  (In the
        AddressSanitizer build the node runs without ASan's quarantine,
        which keeps freed memory on purpose: the bound is the same.)"""
        main, child = self.node.proc.pid, self.tls_pid()
        uuid = os.urandom(16)
        # Warm up (allocator pools, the console, its log file).
        for how, _ in KINDS:
            for _ in range(5):
                self.cycle(how, uuid)
        wait_for(lambda: self.vm_state("vm-cycle") == "disconnected", 5,
                 "warm-up done")
        time.sleep(0.2)
        base_fds = (proc_fds(main), proc_fds(child))
        base_rss = (proc_rss_kb(main), proc_rss_kb(child))
        before = {k: self.closes("vm", k) for _, k in KINDS}
        for how, _ in KINDS:
            for _ in range(CYCLES):
                self.cycle(how, uuid)
        wait_for(lambda: self.vm_state("vm-cycle") == "disconnected", 5,
                 "last cycle noticed")
        wait_for(lambda: proc_fds(main) <= base_fds[0] and
                 proc_fds(child) <= base_fds[1], 5,
                 "descriptors back to baseline %s (at the start of the wait: %s)" % (
                     base_fds, (proc_fds(main), proc_fds(child))))
        wait_for(self.no_close_wait, 5, "no CLOSE-WAIT on the node's ports")
        states = [st for _, st in tcp_states((self.vm_tls,))
                  if st != LISTEN]
        # Only TIME-WAIT (6) may remain, on our side of closes.
        self.assertTrue(all(st == 6 for st in states), states)
        rss = (proc_rss_kb(main), proc_rss_kb(child))
        for now, was, who in zip(rss, base_rss, ("main", "TLS")):
            self.assertLess(now - was, 2048, "%s process grew from %d to "
                            "%d kB" % (who, was, now))
        got = {k: self.closes("vm", k) - before[k] for _, k in KINDS}
        self.assertEqual(got, {"close_notify": 2 * CYCLES, "eof": CYCLES,
                               "reset": CYCLES})


class TlsReconnectTest(TlsCloseTest):
    """A VM reconnecting over TLS while a person types."""

    # A small queue toward the VM, so that a stale connection fills it.
    more_extra = {"vm.input_buffer": "4k"}

    def typist(self, p, stop, sent):
        n = 0
        while not stop.is_set():
            # Counted before it is sent: a keystroke already on its way
            # when the test reads len(sent) must not count as typed after.
            sent.append(n)
            p.send(b"k%06d." % n)
            n += 1
            time.sleep(0.003)

    def received(self, vm):
        return [int(x) for x in re.findall(rb"k(\d{6})\.", bytes(vm.data))]

    def check_after_identified(self, how):
        uuid = os.urandom(16)
        name = "vm-typed-%s" % how
        old = self.tls_vm(name, uuid).ready()
        self.settle(old)
        p = self.console()
        r = p.attach(name)
        self.assertIn(b"attached", r)
        stop, sent = threading.Event(), []
        t = threading.Thread(target=self.typist, args=(p, stop, sent),
                             daemon=True)
        t.start()
        try:
            time.sleep(0.2)
            if how == "stale":
                pass             # The old one stays, silent.
            else:
                raw = end_tls(old.sock, how)
                if raw is not None:
                    raw.close()
                old.closed = True
            new = self.tls_vm(name, uuid).ready()
            p.read_until(b"VM connected", 5)
            first = len(sent)    # Typed after the new one was identified.
            time.sleep(0.5)
        finally:
            stop.set()
            t.join(5)
        last = sent[-1]
        end = time.monotonic() + 5
        while time.monotonic() < end:
            new.poll(0.1)
            got = self.received(new)
            if got and got[-1] == last:
                break
        got = self.received(new)
        self.assertTrue(got and got[-1] == last, "last keystroke %d not "
                        "received; got up to %r" % (last, got[-3:]))
        want = list(range(first, last + 1))
        tail = [n for n in got if n >= first]
        self.assertEqual(tail, want, "keystrokes lost after the new "
                         "connection was identified")
        new.close()

    def test_reconnect_each_kind(self):
        for how in ("stale", "notify", "fin", "reset"):
            with self.subTest(how=how):
                self.check_after_identified(how)

    def test_paused_on_stale_connection(self):
        """The person filled the stale connection's queue and was
        paused: the new connection must take their typing at once."""
        uuid = os.urandom(16)
        name = "vm-stuck"
        # A VM that stops reading, with a small receive buffer.
        old = self.tls_vm(name, uuid).ready()
        old.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.settle(old)
        p = self.console()
        self.assertIn(b"attached", p.attach(name))
        # Paste until the node stops reading the person.
        blob = b"x" * 65536
        p.sock.settimeout(0.5)
        pasted = 0
        try:
            for _ in range(400):
                p.sock.sendall(blob)
                pasted += len(blob)
        except socket.timeout:
            pass
        self.assertLess(pasted, 400 * len(blob), "the person was never "
                        "paused")
        p.sock.settimeout(None)
        # ESXi identifies over several round trips; the last answer (the
        # name) binds the connection and makes the node say nothing.
        new = FakeVM(self.node, name=name, uuid=uuid, port=self.vm_tls,
                     tls=client_ctx(), identify=False)
        new.sbcmd(0x46, b"SvSPC.py")
        new.ready()
        new.sbcmd(0x50, harness.esxi_uuid(uuid).encode())
        self.settle(new)
        new.sbcmd(0x52, name.encode())
        p.read_until(b"VM connected", 5)
        # Whatever sat in the person's socket, then a marker.
        p.sock.settimeout(3)
        try:
            p.sock.sendall(b"MARK-AFTER-RECONNECT")
        except socket.timeout:
            self.fail("the node stopped reading the person for good")
        end = time.monotonic() + 3
        while time.monotonic() < end and \
                b"MARK-AFTER-RECONNECT" not in new.data[-64:]:
            new.poll(0.1)
            del new.data[:-64]
        self.assertIn(b"MARK-AFTER-RECONNECT", bytes(new.data),
                      "typing did not reach the new connection in 3 s")
        new.close()
        old.close()

    test_vm_each_kind = None
    test_console_each_kind = None
    test_node_closes = None
    test_cycles = None


if __name__ == "__main__":
    unittest.main()
