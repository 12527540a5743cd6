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
"""Security rules, each with a case refused and a case served: allow
lists on the real source, PROXY headers from untrusted addresses,
per-source and global connection limits (error line, metric), console
logins and per-console rights, telnets toward ESXi and the console port
(thumbprint, certificate reload, TLS 1.1 refused), slow-loris clients.
Throughout, a well-behaved VM streams to an attached person and the
person receives every byte.

Sources other than 127.0.0.1 are other loopback addresses (127.0.0.2,
127.0.0.3), which Linux routes to lo."""

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM, wait_for  # noqa: E402

TLSDIR = os.path.join(harness.TOP_SRCDIR, "tests", "data", "tls")
CERT = os.path.join(TLSDIR, "cert.pem")
KEY = os.path.join(TLSDIR, "key.pem")
CERT2 = os.path.join(TLSDIR, "cert2.pem")
KEY2 = os.path.join(TLSDIR, "key2.pem")
PROMPT = b"? lists): "
PASSWORD = "s3cret pass"


def client_ctx(maximum=None):
    """What vSphere does: TLS, without checking the server's name or CA
    (it pins the thumbprint instead)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = maximum
        try:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError:
            pass
    return ctx


def thumbprint(der):
    h = hashlib.sha1(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def file_thumbprint(path):
    with open(path) as f:
        return thumbprint(ssl.PEM_cert_to_DER_cert(f.read()))


def crypt_hash(password):
    """A crypt(3) hash, from openssl passwd (Python's crypt is gone)."""
    return subprocess.run(["openssl", "passwd", "-6", password],
                          capture_output=True, check=True,
                          text=True).stdout.strip()


metrics = harness.metrics
refused_count = harness.refused_count


# A refused connection is closed after at most an error line.
closed_without_service = harness.read_to_close


class Streamer:
    """A well-behaved VM writing numbered lines all along, and a person
    attached to it who must receive every line in order."""

    def __init__(self, node, name="vm-stream", person=None, vm=None,
                 src=None):
        self.vm = vm or FakeVM(node, name=name, src=src).ready()
        self.person = person or harness.Console(node)
        self.name = name
        self.sent = 0
        self.stop = threading.Event()
        self.thread = None

    def attach(self):
        r = self.person.attach(self.name)
        assert b"attached" in r, r
        return self

    def start(self):
        def run():
            while not self.stop.is_set():
                self.vm.send(b"line %08d\r\n" % self.sent)
                self.sent += 1
                time.sleep(0.005)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def check(self):
        """Stop writing and check the person got every line, in order."""
        self.stop.set()
        self.thread.join(5)
        last = b"line %08d\r\n" % (self.sent - 1)
        got = self.person.read_until(last, timeout=10)
        lines = re.findall(rb"line (\d{8})\r\n", got)
        nums = [int(x) for x in lines]
        assert nums == list(range(nums[0], self.sent)), \
            "lost or reordered lines: %d received of %d" % (
                len(nums), self.sent - nums[0])
        assert nums[0] == 0, "first line %d" % nums[0]


class SecurityTest(harness.NodeTest):
    """A node with its HTTP listener for the metrics."""

    node_extra = {}

    def setUp(self):
        self.http_port = harness.free_port()
        extra = dict(self.node_extra)
        extra.setdefault("http.listen", "127.0.0.1:%d" % self.http_port)
        self.tmp = harness.tempfile.mkdtemp(prefix="vspcd-sec-")
        for k, v in list(extra.items()):
            if isinstance(v, str) and "@TMP@" in v:
                extra[k] = v.replace("@TMP@", self.tmp)
        self.prepare(extra)
        self.node = harness.Node(extra=extra,
                                 options=list(self.node_options)).start()
        self.node.http_port = self.http_port
        self.sims = []
        self.consoles = []

    def prepare(self, extra):
        pass

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.tmp, ignore_errors=True)


class AllowTest(SecurityTest):
    """allow = lists, on every listener, on the real source."""

    node_extra = {
        "vm.allow": "127.0.0.1/32",
        "console.allow": "127.0.0.1/32",
        "compat.allow": "127.0.0.1/32",
        "http.allow": "127.0.0.1/32",
    }

    def test_each_listener(self):
        s = Streamer(self.node).attach().start()
        for listener, port in (("vm", self.node.vm_port),
                               ("console", self.node.console_port),
                               ("compat", self.node.compat_port)):
            before = refused_count(self.node, listener, "allow")
            bad = socket.create_connection(("127.0.0.1", port), 5,
                                           source_address=("127.0.0.2", 0))
            # ESXi reads no text; people are told.
            said = b"" if listener == "vm" else (
                b"vspcd: connections from 127.0.0.2 are not allowed here "
                b"([%s] allow)\r\n" % listener.encode())
            self.assertEqual(closed_without_service(bad), said, listener)
            bad.close()
            wait_for(lambda: refused_count(self.node, listener, "allow") ==
                     before + 1, 5, "%s allow refusal counted" % listener)
            self.assertRegex(self.node.log(), r"%s listener \S+: connection "
                             r"from 127\.0\.0\.2:\d+ refused by \[%s\] allow"
                             % (listener, listener))
        # HTTP: 403 from elsewhere, counted.
        import http.client
        h = http.client.HTTPConnection("127.0.0.1", self.http_port, 5,
                                       source_address=("127.0.0.2", 0))
        h.request("GET", "/metrics")
        self.assertEqual(h.getresponse().status, 403)
        h.close()
        self.assertEqual(refused_count(self.node, "http", "allow"), 1)
        # Served from the allowed source.
        FakeVM(self.node, name="vm-ok").ready()
        c = self.console()
        c.read_until(PROMPT)
        s.check()


class ProxyTest(SecurityTest):
    """A PROXY header counts only from [vm] proxy_protocol_from."""

    node_extra = {
        "vm.allow": "10.0.0.0/8, 127.0.0.3/32",
        "vm.proxy_protocol_from": "127.0.0.1/32",
    }

    def header_vm(self, src):
        sock = socket.create_connection(("127.0.0.1", self.node.vm_port), 5,
                                        source_address=(src, 0))
        sock.sendall(b"PROXY TCP4 10.9.9.9 127.0.0.1 40000 13370\r\n")
        return sock

    def test_untrusted_header_gives_no_access(self):
        # The streaming VM and its person are not behind the balancer.
        s = Streamer(self.node, src="127.0.0.3",
                     person=self.console(src="127.0.0.3")).attach()
        # From the balancer: served as 10.9.9.9, which [vm] allow admits.
        good = self.header_vm("127.0.0.1")
        good.sendall(harness.sb(0x46, b"SvSPC.py"))
        good.settimeout(5)
        self.assertTrue(good.recv(100))
        wait_for(lambda: "10.9.9.9" in self.node.log(), 5,
                 "balancer's source used")
        s.start()
        # From anyone else the header is not believed: the real source
        # 127.0.0.2 is outside [vm] allow, refused at once.
        bad = self.header_vm("127.0.0.2")
        self.assertEqual(closed_without_service(bad), b"")
        self.assertRegex(self.node.log(), r"vm listener \S+: connection "
                         r"from 127\.0\.0\.2:\d+ refused by \[vm\] allow")
        good.close()
        s.check()
        s.person.close()


class LimitTest(SecurityTest):
    """max_per_source and max_connections, with an error line and a
    metric; the slot is given back when a connection closes."""

    node_extra = {
        "console.max_per_source": "2",
        "console.max_connections": "4",
        "compat.max_per_source": "1",
        "vm.max_per_source": "3",
        # The tests connect from loopback, exempt by default.
        "console.max_per_source_exempt": "",
        "compat.max_per_source_exempt": "",
        "vm.max_per_source_exempt": "",
    }

    def test_per_source(self):
        s = Streamer(self.node).attach().start()    # One console slot.
        a = self.console()
        a.read_until(PROMPT)
        sock = socket.create_connection(("127.0.0.1",
                                         self.node.console_port), 5)
        self.assertEqual(closed_without_service(sock),
                         b"vspcd: too many connections from 127.0.0.1 "
                         b"(max_per_source 2)\r\n")
        self.assertEqual(refused_count(self.node, "console",
                                       "max_per_source"), 1)
        self.assertRegex(self.node.log(), r"connection from 127\.0\.0\.1:"
                         r"\d+ refused: \[console\] max_per_source \(2\)")
        # Another source is served; a closed connection frees its slot.
        b = self.console(src="127.0.0.2")
        b.read_until(PROMPT)
        a.close()
        wait_for(lambda: self.reconnect_ok(), 5, "slot given back")
        # The compatibility port has its own limit.
        c1 = socket.create_connection(("127.0.0.1", self.node.compat_port))
        c2 = socket.create_connection(("127.0.0.1", self.node.compat_port))
        self.assertIn(b"max_per_source 1", closed_without_service(c2))
        c1.close()
        # VMs: two more from 127.0.0.1 (the streamer is one), then no.
        FakeVM(self.node, name="vm-2").ready()
        FakeVM(self.node, name="vm-3").ready()
        over = FakeVM(self.node, name="vm-4")
        self.assertTrue(over.wait_closed())
        self.assertIsNone(over.wait_sb(0x47, 0.2))
        self.assertEqual(refused_count(self.node, "vm", "max_per_source"), 1)
        s.check()

    def reconnect_ok(self):
        c = harness.Console(self.node)
        try:
            c.read_until(PROMPT, timeout=2)
            self.consoles.append(c)
            return True
        except AssertionError:
            c.close()
            return False

    def test_global(self):
        s = Streamer(self.node).attach().start()
        people = []
        for src in ("127.0.0.1", "127.0.0.2", "127.0.0.2"):
            c = self.console(src=src)
            c.read_until(PROMPT)
            people.append(c)
        sock = socket.create_connection(("127.0.0.1",
                                         self.node.console_port), 5,
                                        source_address=("127.0.0.3", 0))
        self.assertEqual(closed_without_service(sock),
                         b"vspcd: too many connections "
                         b"(max_connections 4)\r\n")
        self.assertEqual(refused_count(self.node, "console",
                                       "max_connections"), 1)
        s.check()


class LoginBase(SecurityTest):
    """A node with a users file: alice (read-write, admin), bob (group
    ops: read-only), carol (locked), dave (no rule)."""

    node_extra = {
        "console.users_file": "@TMP@/users",
        "console.login_timeout": "3",
        "console.login_attempts": "3",
    }

    def prepare(self, extra):
        h = crypt_hash(PASSWORD)
        with open(os.path.join(self.tmp, "users"), "w") as f:
            f.write("user alice %s\nuser bob %s ops\nuser carol *\n"
                    "user dave %s\n"
                    "rw vm-* alice\nro vm-* @ops\nadmin alice\n" % (h, h, h))

    def login(self, user, password=PASSWORD, c=None):
        c = c or self.console()
        c.read_until(b"login: ")
        c.send(user + "\r")
        c.read_until(b"password: ")
        c.send(password + "\r")
        return c

    def logged_in(self, user):
        """Logged in, before the console prompt."""
        c = self.login(user)
        c.read_until(b"welcome, %s\r\n" % user.encode())
        return c


class LoginTest(LoginBase):
    """[console] users_file: logins, read-only and no access."""

    def test_wrong_unknown_locked_same_answer(self):
        s = Streamer(self.node, person=self.logged_in("alice"))
        s.attach().start()
        answers = []
        for user, pw in (("alice", "wrong"), ("nobody", PASSWORD),
                         ("carol", PASSWORD)):
            c = self.login(user, pw)
            got = c.read_until(b"login: ")
            answers.append(got)
            c.close()
        self.assertEqual(answers[0], b"\r\nLogin incorrect\r\nlogin: ")
        self.assertEqual(set(answers), {answers[0]})
        # The password is not echoed.
        self.assertNotIn(b"wrong", answers[0])
        # Three failures close the connection.
        c = self.console()
        for i in range(3):
            self.login("alice", "bad%d" % i, c=c)
        c.read_until(b"too many failed logins\r\n")
        self.assertEqual(c.read_for(1.0), b"")
        self.assertTrue(c.closed)
        self.assertRegex(metrics(self.node),
                         r"(?m)^vspcd_login_failures_total 6$")
        s.check()

    def test_login_timeout(self):
        c = self.console()
        c.read_until(b"login: ")
        c.read_until(b"login timed out\r\n", timeout=10)
        c.read_for(1)
        self.assertTrue(c.closed)
        # A person who logs in in time stays.
        self.logged_in("alice").read_until(PROMPT)

    def test_read_only_user(self):
        s = Streamer(self.node, person=self.logged_in("alice"))
        s.attach().start()
        bob = self.logged_in("bob")
        bob.read_until(PROMPT)
        # Forcing needs read-write.
        bob.send("force vm-stream\r")
        bob.read_until(b"permission denied: read-only access\r\n")
        r = bob.attach("vm-stream", "")
        self.assertIn(b"read-only", r)
        bob.send("rm -rf /\r")
        bob.read_until(b"[-- read-only access: input discarded --]")
        bob.send("\x1d")
        bob.read_until(b"> ")
        bob.send("force\r")
        bob.read_until(b"[permission denied: read-only access]")
        self.assertEqual(s.vm.wait_data(1, 0.5), b"")
        self.assertRegex(metrics(self.node),
                         r"(?m)^vspcd_readonly_input_dropped_bytes_total "
                         r"[1-9]")
        s.check()

    def test_no_access(self):
        s = Streamer(self.node, person=self.logged_in("alice"))
        s.attach().start()
        dave = self.logged_in("dave")
        dave.read_until(PROMPT)
        dave.send("?\r")
        listing = dave.read_until(PROMPT)
        self.assertNotIn(b"vm-stream", listing)
        dave.send("vm-stream\r")
        dave.read_until(b"permission denied\r\n")
        dave.send("force vm-stream\r")
        dave.read_until(b"permission denied\r\n")
        self.assertRegex(self.node.log(), r"dave@127\.0\.0\.1:\d+: attach "
                         r"to \S+ refused: no access")
        # Attaches are logged with user and source.
        self.assertRegex(self.node.log(), r"console \S+: alice@127\.0\.0\.1:"
                         r"\d+ attached")
        s.check()


def vspcctl(args, password=None, timeout=20):
    env = dict(os.environ)
    env.pop("VSPCCTL_PASSWORD", None)
    if password is not None:
        env["VSPCCTL_PASSWORD"] = password
    return subprocess.run([harness.VSPCCTL] + args, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


class ControlTest(LoginBase):
    """The control protocol on TCP with a users file: LOGIN first, the
    admin role for admin commands, console rights for attach.  The Unix
    socket stays governed by its file permissions."""

    node_extra = dict(LoginBase.node_extra)
    node_extra["control.listen"] = "127.0.0.1:@CTL@"

    def prepare(self, extra):
        super().prepare(extra)
        self.ctl_port = harness.free_port()
        extra["control.listen"] = extra["control.listen"].replace(
            "@CTL@", str(self.ctl_port))

    def ctl(self, user, password, *args):
        a = ["-c", "127.0.0.1:%d" % self.ctl_port]
        if user is not None:
            a += ["-u", user]
        return vspcctl(a + list(args), password)

    def test_login_admin_and_rights(self):
        s = Streamer(self.node, person=self.logged_in("alice"))
        s.attach().start()
        r = self.ctl(None, None, "vm", "list")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("login required", r.stderr)
        r = self.ctl("alice", "wrong", "vm", "list")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Login incorrect", r.stderr)
        r = self.ctl("carol", PASSWORD, "vm", "list")
        self.assertIn("Login incorrect", r.stderr)
        r = self.ctl("alice", PASSWORD, "vm", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("vm-stream", r.stdout)
        # Admin commands need the admin role.
        r = self.ctl("bob", PASSWORD, "node", "drain")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("permission denied: bob has no admin role", r.stderr)
        self.assertRegex(metrics(self.node), r"(?m)^vspcd_draining 0$")
        r = self.ctl("alice", PASSWORD, "node", "drain")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(metrics(self.node), r"(?m)^vspcd_draining 1$")
        r = self.ctl("alice", PASSWORD, "node", "undrain")
        self.assertEqual(r.returncode, 0, r.stderr)
        # Attach rights as on the console port.
        r = self.ctl("bob", PASSWORD, "attach", "vm-stream", "--force")
        self.assertIn("permission denied: read-only access", r.stderr)
        r = self.ctl("dave", PASSWORD, "attach", "vm-stream")
        self.assertIn("permission denied", r.stderr)
        # Nor may dave see the console exists, or read its log.
        r = self.ctl("dave", PASSWORD, "vm", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("vm-stream", r.stdout)
        for args in (["vm", "show", "vm-stream"], ["log", "vm-stream"],
                     ["who", "vm-stream"]):
            r = self.ctl("dave", PASSWORD, *args)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn("vm-stream: permission denied", r.stderr)
        r = self.ctl("bob", PASSWORD, "log", "vm-stream")
        self.assertEqual(r.returncode, 0, r.stderr)
        # The Unix socket needs no login: its permissions decide.
        r = vspcctl(["-s", self.node.ctl_socket(), "vm", "list"])
        self.assertEqual(r.returncode, 0, r.stderr)
        s.check()


class TlsTest(SecurityTest):
    """telnets toward ESXi and on the console port."""

    node_extra = {
        "vm.tls_listen": "127.0.0.1:@VMTLS@",
        "vm.tls_cert": "@TMP@/cert.pem",
        "vm.tls_key": "@TMP@/key.pem",
        "vm.negotiation_timeout": "2",
        "console.tls_listen": "127.0.0.1:@CONTLS@",
    }

    def prepare(self, extra):
        self.vm_tls = harness.free_port()
        self.con_tls = harness.free_port()
        for k in list(extra):
            extra[k] = extra[k].replace("@VMTLS@", str(self.vm_tls)) \
                .replace("@CONTLS@", str(self.con_tls))
        shutil.copy(CERT, os.path.join(self.tmp, "cert.pem"))
        shutil.copy(KEY, os.path.join(self.tmp, "key.pem"))

    def tls_vm(self, name, ctx=None):
        return FakeVM(self.node, name=name, port=self.vm_tls,
                      tls=ctx or client_ctx())

    def test_esxi_over_tls_and_thumbprint(self):
        s = Streamer(self.node, vm=self.tls_vm("vm-tls").ready(),
                     name="vm-tls")
        s.attach().start()
        der = s.vm.sock.getpeercert(binary_form=True)
        self.assertEqual(thumbprint(der), file_thumbprint(CERT))
        self.assertIn("SHA-1 thumbprint %s" % file_thumbprint(CERT),
                      self.node.log())
        self.assertIn(s.vm.sock.version(), ("TLSv1.2", "TLSv1.3"))
        r = vspcctl(["-s", self.node.ctl_socket(), "tls"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("telnets certificate SHA-1 thumbprint: %s" %
                      file_thumbprint(CERT), r.stdout)
        # A person over telnets on the console port.
        p = self.console(port=self.con_tls, tls=client_ctx())
        p.read_until(PROMPT)
        s.check()

    def test_tls11_refused(self):
        s = Streamer(self.node).attach().start()
        with self.assertRaises((ssl.SSLError, OSError)):
            self.tls_vm("vm-old", client_ctx(ssl.TLSVersion.TLSv1_1))
        wait_for(lambda: refused_count(self.node, "vm_tls", "tls") >= 1, 5,
                 "failed handshake counted")
        self.assertRegex(self.node.log(), r"tls \d+: 127\.0\.0\.1:\d+: "
                         r".*(unsupported protocol|version)")
        self.tls_vm("vm-new").ready()
        s.check()

    def test_reload_certificate(self):
        s = Streamer(self.node, vm=self.tls_vm("vm-tls").ready(),
                     name="vm-tls")
        s.attach().start()
        shutil.copy(CERT2, os.path.join(self.tmp, "cert.pem"))
        shutil.copy(KEY2, os.path.join(self.tmp, "key.pem"))
        self.node.signal(signal.SIGHUP)
        wait_for(lambda: file_thumbprint(CERT2) in self.node.log(), 5,
                 "new thumbprint logged")
        v2 = self.tls_vm("vm-2").ready()
        self.assertEqual(thumbprint(v2.sock.getpeercert(True)),
                         file_thumbprint(CERT2))
        # A broken certificate: the one in use stays.
        with open(os.path.join(self.tmp, "cert.pem"), "w") as f:
            f.write("not a certificate\n")
        self.node.signal(signal.SIGHUP)
        wait_for(lambda: "keeping the certificate in use" in
                 self.node.log(), 5, "broken certificate refused")
        v3 = self.tls_vm("vm-3").ready()
        self.assertEqual(thumbprint(v3.sock.getpeercert(True)),
                         file_thumbprint(CERT2))
        s.check()

    def test_hot_upgrade_keeps_tls_sessions(self):
        s = Streamer(self.node, vm=self.tls_vm("vm-tls").ready(),
                     name="vm-tls")
        s.attach().start()
        p = self.console(port=self.con_tls, tls=client_ctx())
        p.read_until(PROMPT)
        old = self.node.pid()
        r = vspcctl(["-s", self.node.ctl_socket(), "node", "upgrade"],
                    timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        wait_for(lambda: self.node.pid() != old, 15, "a new pid")
        self.assertIn("TLS process", self.node.log())
        self.assertRegex(self.node.log(), r"tls: TLS process \d+ adopted")
        # The person on telnets is still served by the new process.
        p.send("?\r")
        self.assertIn(b"vm-tls", p.read_until(PROMPT))
        # New telnets connections work too.
        self.tls_vm("vm-after").ready()
        s.check()

    def test_slow_loris(self):
        s = Streamer(self.node).attach().start()
        # A TLS client that never finishes its handshake.
        raw = socket.create_connection(("127.0.0.1", self.vm_tls), 5)
        raw.sendall(b"\x16\x03\x01")
        # A telnet VM that never negotiates.
        mute = socket.create_connection(("127.0.0.1", self.node.vm_port), 5)
        self.assertEqual(closed_without_service(raw, 10), b"")
        got = closed_without_service(mute, 10)
        self.assertNotIn(b"\xff\xfa\xe8\x47", got)   # Never WILL-PROXY.
        self.assertRegex(self.node.log(), r"handshake timed out")
        s.check()


class PeerTlsTest(unittest.TestCase):
    """Peer link mutual TLS against the cluster CA, on top of the HMAC
    Hello: a node whose certificate the CA did not sign, or whose
    certificate names another node, or with the wrong secret, is
    refused; the good link stays up."""

    def start(self, third_cert, third_key, third_secret=None):
        import cluster
        if not os.path.exists(cluster.REDIS_SERVER):
            self.skipTest("no redis-server")
        self.cl = cluster.Cluster(3, haproxy=False)
        certs = {"n1": ("n1.pem", "n1-key.pem"), "n2": ("n2.pem",
                                                      "n2-key.pem"),
                 "n3": (third_cert, third_key)}
        for n in self.cl.nodes:
            c, k = certs[n.name]
            n.extra.update({
                "cluster.tls_cert": os.path.join(TLSDIR, c),
                "cluster.tls_key": os.path.join(TLSDIR, k),
                "cluster.tls_ca": os.path.join(TLSDIR, "ca.pem")})
            if n.name == "n3" and third_secret is not None:
                n.extra["cluster.secret_file"] = third_secret
            n.write_config()
        try:
            self.cl.start()
        except BaseException:
            sys.stderr.write(self.cl.logs() + "\n")
            self.cl.cleanup()
            raise

    def tearDown(self):
        cl = getattr(self, "cl", None)
        if cl is None:
            return
        for v in FakeVM.live:
            v.close()
        FakeVM.live.clear()
        if os.environ.get("KEEP_LOG"):
            sys.stderr.write(cl.logs())
        cl.stop()
        cl.cleanup()

    def check_refused(self, why):
        n1, n2, n3 = self.cl.nodes
        wait_for(lambda: "peer n2: link up" in n1.log() and
                 "peer n1: link up" in n2.log(), 15, "n1-n2 link up")
        wait_for(lambda: re.search(why, n1.log() + n2.log()), 15,
                 "n3 refused (%s)" % why)
        self.assertNotIn("peer n3: link up", n1.log() + n2.log())
        self.assertIn("certificate n2", n1.log())
        # The good link carries people: attach on n2 to a VM on n1.
        FakeVM(n1, name="vm-peer").ready()
        n1.wait_listed("vm-peer")
        n2.wait_listed("vm-peer")
        c = harness.Console(n2)
        try:
            r = c.attach("vm-peer")
            self.assertIn(b"attached", r)
        finally:
            c.close()

    def test_rogue_certificate(self):
        self.start("rogue.pem", "rogue-key.pem")
        self.check_refused(r"tls \d+: 127\.0\.0\.1:\d+: .*certificate "
                           r"verify failed|tls \d+: .*(alert|certificate)")

    def test_certificate_of_another_node(self):
        self.start("n2.pem", "n2-key.pem")
        self.check_refused(r"certificate of \S+ names node n2 but its "
                           r"Hello says n3|names node n2")

    def test_wrong_secret(self):
        tmp = harness.tempfile.mkdtemp(prefix="vspcd-sec-")
        self.addCleanup(shutil.rmtree, tmp, True)
        bad = os.path.join(tmp, "secret")
        with open(bad, "w") as f:
            f.write("not the cluster's secret\n")
        os.chmod(bad, 0o600)
        # A certificate for n3 from the cluster CA: TLS lets it by, the
        # HMAC Hello refuses it.
        key, csr = os.path.join(tmp, "n3-key.pem"), os.path.join(tmp, "n3.csr")
        crt = os.path.join(tmp, "n3.pem")
        subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                        "-out", csr, "-subj", "/CN=n3"], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA",
                        os.path.join(TLSDIR, "ca.pem"), "-CAkey",
                        os.path.join(TLSDIR, "ca-key.pem"), "-out", crt,
                        "-days", "2", "-CAcreateserial", "-CAserial",
                        os.path.join(tmp, "ca.srl")], check=True,
                       capture_output=True)
        self.start(crt, key, bad)
        self.check_refused(r"authentication failed")


if __name__ == "__main__":
    unittest.main()
