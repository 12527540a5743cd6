# Shared helpers for the integration tests: start vspcd nodes and the ESXi
# simulator on loopback with their own ports and directories, talk to the
# console port, and clean up afterwards.  Every wait is bounded.

import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

TOP_SRCDIR = os.environ.get("TOP_SRCDIR", os.path.join(
    os.path.dirname(__file__), "..", ".."))
TOP_BUILDDIR = os.environ.get("TOP_BUILDDIR", ".")
VSPCD = os.environ.get("VSPCD", os.path.join(TOP_BUILDDIR, "vspcd"))
ESXISIM = os.environ.get("ESXISIM", os.path.join(TOP_BUILDDIR, "esxisim"))
VSPCCTL = os.environ.get("VSPCCTL", os.path.join(TOP_BUILDDIR, "vspcctl"))

sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "clients"))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "sim"))

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240


_given_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Chosen at random below the kernel's ephemeral range (32768 and up on
    Linux), so that the outgoing connections of tests running in parallel
    cannot take it between now and the moment a server binds it; never
    the same one twice in one process."""
    import random
    for _ in range(1000):
        port = random.randint(10000, 32000)
        if port in _given_ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _given_ports.add(port)
        return port
    raise AssertionError("no free TCP port found")


def wait_for(pred, timeout=10.0, what="condition"):
    """Poll pred() until it is true; fail the test after timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out after %.1fs waiting for %s" %
                         (timeout, what))



def metrics(node):
    """The node's /metrics (it needs node.http_port)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" %
                                node.http_port, timeout=5) as r:
        return r.read().decode()


def refused_count(node, listener, reason):
    m = re.search(r'^vspcd_connections_refused_total\{listener="%s",'
                  r'reason="%s"\} (\d+)$' % (listener, reason),
                  metrics(node), re.M)
    return int(m.group(1)) if m else 0


def read_to_close(sock, timeout=5.0):
    """Everything the server sends on sock until it closes (sock is closed
    afterwards); fails if it is not closed within timeout."""
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            d = sock.recv(4096)
            if not d:
                return out
            out += d
    except socket.timeout:
        raise AssertionError("connection not closed; got %r" % out)
    except OSError:
        return out
    finally:
        sock.close()

class Node:
    """One vspcd process with its own ports, config and directories."""

    def __init__(self, name="n1", extra=None, options=None):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="vspcd-test-")
        self.vm_port = free_port()
        self.console_port = free_port()
        self.compat_port = free_port()
        self.logdir = os.path.join(self.dir, "consoles")
        self.conf = os.path.join(self.dir, "vspcd.conf")
        self.stderr_path = os.path.join(self.dir, "vspcd.stderr")
        self.extra = extra or {}
        self.options = options or []
        self.proc = None
        self.write_config()

    def write_config(self, extra=None):
        if extra is not None:
            self.extra = extra
        sections = {
            "node": {"id": self.name},
            "vm": {"listen": "127.0.0.1:%d" % self.vm_port,
                   "allow": "127.0.0.0/8"},
            "console": {"listen": "127.0.0.1:%d" % self.console_port},
            "compat": {"listen": "127.0.0.1:%d" % self.compat_port},
            "log": {"dir": self.logdir},
            "http": {"listen": ""},
            "control": {"socket": os.path.join(self.dir, "control.sock")},
        }
        for k, v in self.extra.items():
            sec, key = k.split(".", 1)
            sections.setdefault(sec, {})[key] = v
        with open(self.conf, "w") as f:
            for sec, kv in sections.items():
                f.write("[%s]\n" % sec)
                for k, v in kv.items():
                    f.write("%s = %s\n" % (k, v))

    def start(self):
        args = [VSPCD, "-d", "-v", "-f", self.conf]
        for o in self.options:
            args += ["-o", o]
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)
        wait_for(self.ready, 10, "vspcd to listen")
        return self

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("vspcd exited with %s:\n%s" %
                                 (self.proc.returncode, self.log()))
        for port in (self.vm_port, self.console_port, self.compat_port):
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError:
                return False
        # The HTTP, TLS and control listeners start after these, the
        # control socket last: once it answers, every listener does.
        path = self.extra.get("control.socket", self.ctl_socket())
        if path:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.settimeout(0.5)
                s.connect(path)
            except OSError:
                return False
            finally:
                s.close()
        return True

    def listing(self):
        """The console port's list of consoles, as bytes."""
        c = Console(self)
        try:
            c.read_until(b"? lists): ")
            c.send("?\r")
            return c.read_until(b"? lists): ")
        finally:
            c.close()

    def wait_listed(self, name, count=1, timeout=10):
        """Wait until name appears count times in the console list.  An
        ESXi host is told WILL-PROXY before it has sent its VM's name, so
        a simulator's "ready" comes a moment before the console exists."""
        if isinstance(name, str):
            name = name.encode()
        wait_for(lambda: self.listing().count(name) >= count, timeout,
                 "%r listed %d times" % (name, count))

    def log(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def ctl_socket(self):
        return os.path.join(self.dir, "control.sock")

    def pid(self):
        """The serving process's ID, from vspcctl -j cluster status: it
        changes with a hot upgrade (the new process serves, the old one
        that this object started has left)."""
        import json
        p = subprocess.run([VSPCCTL, "-s", self.ctl_socket(), "-j",
                            "cluster", "status"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=10)
        if p.returncode != 0:
            raise AssertionError("cluster status: %s" % p.stderr)
        st = json.loads(p.stdout.decode())
        for n in st.get("nodes", []):
            if n.get("id") == self.name and n.get("pid"):
                self.served_pid = n["pid"]
                return n["pid"]
        raise AssertionError("no pid for %s in %r" % (self.name, st))

    def stop_served(self):
        """Stop a process that took over by hot upgrade (not our child)."""
        pid = getattr(self, "served_pid", None)
        if pid is None or (self.proc is not None and pid == self.proc.pid):
            return None
        self.served_pid = None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return None
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return 0
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        return -9

    def stop(self):
        rc_served = self.stop_served()
        if self.proc is None:
            return rc_served
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def cleanup(self):
        self.stop()
        if os.environ.get("KEEP_DIR"):
            sys.stderr.write("kept %s\n" % self.dir)
            return
        subprocess.call(["rm", "-rf", self.dir])


class Sim:
    """The ESXi simulator, driven through its stdin/stdout protocol."""

    def __init__(self, node, args=None, host=None, prefix=None):
        # prefix: a command to run esxisim under (e.g. ip netns exec NS).
        target = host or "127.0.0.1:%d" % node.vm_port
        self.proc = subprocess.Popen(
            list(prefix or []) + [ESXISIM, "-s", target] + (args or []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, bufsize=0)
        self.events = queue.Queue()
        self.seen = []
        self.err = []
        self._threads = [
            threading.Thread(target=self._reader, daemon=True),
            threading.Thread(target=self._errreader, daemon=True)]
        for t in self._threads:
            t.start()

    def _reader(self):
        for line in self.proc.stdout:
            self.events.put(line.decode("utf-8", "replace").rstrip("\n"))
        self.events.put(None)

    def _errreader(self):
        for line in self.proc.stderr:
            self.err.append(line.decode("utf-8", "replace"))

    def cmd(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def expect(self, pattern, timeout=10.0):
        """Wait for an event line matching pattern (regex); return match.
        Lines seen on the way are kept in self.seen."""
        rx = re.compile(pattern)
        for line in self.seen:
            m = rx.search(line)
            if m:
                self.seen.remove(line)
                return m
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("simulator: no event /%s/ in %.1fs; "
                                     "seen: %s; stderr: %s" %
                                     (pattern, timeout, self.seen[-20:],
                                      "".join(self.err[-20:])))
            try:
                line = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("simulator exited; seen: %s; "
                                     "stderr: %s" % (self.seen[-20:],
                                                     "".join(self.err)))
            m = rx.search(line)
            if m:
                return m
            self.seen.append(line)

    def drain(self):
        """Events received so far, without waiting."""
        while True:
            try:
                line = self.events.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return self.seen

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.cmd("quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        # The readers end at EOF; then the pipes can be closed.
        for t in self._threads:
            t.join(2)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None and not any(t.is_alive()
                                         for t in self._threads):
                try:
                    f.close()
                except OSError:
                    pass


def telnet_strip(data, state):
    """Remove telnet commands from data read from a vspcd telnet port;
    state is a dict kept across calls.  Returns (plain bytes, commands)."""
    out = bytearray()
    cmds = []
    buf = state.get("pending", b"") + data
    i = 0
    while i < len(buf):
        # Plain runs are copied whole: people read megabytes.
        k = buf.find(IAC, i)
        if k < 0:
            out += buf[i:]
            i = len(buf)
            break
        if k > i:
            out += buf[i:k]
            i = k
        if i + 1 >= len(buf):
            break
        c = buf[i + 1]
        if c == IAC:
            out.append(IAC)
            i += 2
        elif c in (WILL, WONT, DO, DONT):
            if i + 2 >= len(buf):
                break
            cmds.append((c, buf[i + 2]))
            i += 3
        elif c == SB:
            end = buf.find(bytes([IAC, SE]), i)
            if end < 0:
                break
            cmds.append((SB, buf[i + 2:end]))
            i = end + 2
        else:
            cmds.append((c, None))
            i += 2
    state["pending"] = bytes(buf[i:])
    return bytes(out), cmds


class Console:
    """A person on the console port (telnet)."""

    def __init__(self, node, port=None, rcvbuf=None, src=None, tls=None):
        # src: a loopback source address to connect from (127.0.0.2...);
        # tls: an ssl.SSLContext for a telnets console listener.
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if src:
            self.sock.bind((src, 0))
        self.sock.connect(("127.0.0.1", port or node.console_port))
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock)
        self.buf = bytearray()
        self.state = {}
        self.closed = False

    def fill(self, timeout):
        pending = getattr(self.sock, "pending", None)
        if not (pending and pending()):
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return False
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        plain, _ = telnet_strip(data, self.state)
        self.buf += plain
        return True

    def read_until(self, what, timeout=10.0):
        """Read until the bytes what (or regex if compiled) appear; return
        everything up to and including it, consumed from the buffer."""
        end = time.monotonic() + timeout
        # Only what came since the last look is searched again (with an
        # overlap longer than any marker looked for): a search of the
        # whole buffer at every read is quadratic, and people who read
        # megabytes before their marker timed out on a loaded machine.
        start = 0
        while True:
            if isinstance(what, bytes):
                k = self.buf.find(what, start)
                if k >= 0:
                    out = bytes(self.buf[:k + len(what)])
                    del self.buf[:k + len(what)]
                    return out
            else:
                m = what.search(self.buf, start)
                if m:
                    out = bytes(self.buf[:m.end()])
                    del self.buf[:m.end()]
                    return out
            start = max(0, len(self.buf) - 4096)
            left = end - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError("console: %r not seen in %.1fs; got %r"
                                     % (what, timeout, bytes(self.buf[-400:])))
            self.fill(min(left, 0.5))

    def read_bytes(self, n, timeout=10.0):
        end = time.monotonic() + timeout
        while len(self.buf) < n:
            left = end - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError("console: wanted %d bytes, got %d"
                                     % (n, len(self.buf)))
            self.fill(min(left, 0.5))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.closed:
            self.fill(max(0.0, min(0.2, end - time.monotonic())))
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data.replace(b"\xff", b"\xff\xff"))

    def attach(self, vm, mode=None):
        self.read_until(b"? lists): ")
        self.send(((mode + " ") if mode else "") + vm + "\r")
        return self.read_until(re.compile(rb"\[[^\]\r\n]*\]\r\n"))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def test_failed(case):
    """Whether the running test case has failed (for printing logs)."""
    outcome = getattr(case, "_outcome", None)
    result = getattr(outcome, "result", None)
    if result is not None and hasattr(result, "failures"):
        return any(t is case for t, _ in result.failures + result.errors)
    return any(e for _, e in (getattr(outcome, "errors", None) or []) if e)


class NodeTest(unittest.TestCase):
    """A test case with one node started per test."""

    node_extra = {}
    node_options = []

    def setUp(self):
        self.node = Node(extra=dict(self.node_extra),
                         options=list(self.node_options)).start()
        self.sims = []
        self.consoles = []

    def tearDown(self):
        for s in self.sims:
            s.stop()
        for c in self.consoles:
            c.close()
        for v in FakeVM.live:
            v.close()
        FakeVM.live.clear()
        failed = test_failed(self)
        rc = self.node.stop()
        if failed or rc not in (0, None):
            sys.stderr.write("---- vspcd log ----\n%s\n" % self.node.log())
        if os.environ.get("KEEP_LOG"):
            sys.stderr.write(self.node.log())
        self.node.cleanup()
        self.assertIn(rc, (0, None), "vspcd did not exit cleanly")

    def sim(self, args=None):
        s = Sim(self.node, args)
        self.sims.append(s)
        return s

    def console(self, **kw):
        c = Console(self.node, **kw)
        self.consoles.append(c)
        return c


KS1 = bytes.fromhex("fffae8000001020328292b2c2d2e30464749505154555657"
                    "5253fff0")


def esxi_uuid(u):
    """ESXi's spelling of a 16-byte UUID: 16 hex pairs, '-' after 8."""
    h = ["%02x" % b for b in u]
    return " ".join(h[:8]) + "-" + " ".join(h[8:])


def sb(cmd, payload=b""):
    return b"\xff\xfa\xe8" + bytes([cmd]) + payload.replace(
        b"\xff", b"\xff\xff") + b"\xff\xf0"


class FakeVM:
    """A scripted ESXi connection in Python, for tests that need exact
    control of the bytes (bad input, vMotion corner cases)."""

    live = []

    def __init__(self, node, uuid=None, name="vm-test", uri=b"vSPC.py",
                 port=None, identify=True, peer=None, src=None, tls=None):
        # src: a loopback source address; tls: an ssl.SSLContext (ESXi's
        # telnets://, TLS from the first byte).
        FakeVM.live.append(self)
        if src:
            self.sock = socket.create_connection(
                ("127.0.0.1", port or node.vm_port), 5,
                source_address=(src, 0))
        else:
            self.sock = socket.create_connection(
                ("127.0.0.1", port or node.vm_port), 5)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock)
        self.uuid = uuid or os.urandom(16)
        self.name = name
        self.rx = bytearray()      # raw bytes from the node
        self.data = bytearray()    # in-band data from the node (unescaped)
        self.sbs = []              # (cmd, payload) received
        self.pending = b""
        self.closed = False
        hello = b"\xff\xfb\x25" + bytes.fromhex(
            "fffd00fffd03fffd01fffb00fffb03fffbe8") + KS1
        if peer is not None:
            hello += sb(0x2c, peer) + b"\xff\xfb\x2c"
        elif identify:
            hello += sb(0x46, b"S" + uri)
        if identify:
            hello += sb(0x50, esxi_uuid(self.uuid).encode())
            hello += sb(0x52, name.encode() if isinstance(name, str)
                        else name)
        if peer is None and identify:
            hello += b"\xff\xfb\x2c"
        self.sock.sendall(hello)

    def send_raw(self, b):
        self.sock.sendall(b)

    def send(self, data):
        self.sock.sendall(data.replace(b"\xff", b"\xff\xff"))

    def sbcmd(self, cmd, payload=b""):
        self.sock.sendall(sb(cmd, payload))

    def _parse(self):
        buf = self.pending
        i = 0
        while i < len(buf):
            b = buf[i]
            if b != IAC:
                k = buf.find(b"\xff", i)
                k = len(buf) if k < 0 else k
                self.data += buf[i:k]
                i = k
                continue
            if i + 1 >= len(buf):
                break
            c = buf[i + 1]
            if c == IAC:
                self.data.append(IAC)
                i += 2
            elif c in (WILL, WONT, DO, DONT):
                if i + 2 >= len(buf):
                    break
                i += 3
            elif c == SB:
                j = i + 2
                body = bytearray()
                done = False
                while j < len(buf):
                    if buf[j] == IAC:
                        if j + 1 >= len(buf):
                            break
                        if buf[j + 1] == SE:
                            done = True
                            break
                        body.append(IAC)
                        j += 2
                        continue
                    body.append(buf[j])
                    j += 1
                if not done:
                    break
                if body and body[0] == 0xe8:
                    self.sbs.append((body[1], bytes(body[2:])))
                i = j + 2
            else:
                i += 2
        self.pending = buf[i:]

    def poll(self, timeout=0.0):
        pending = getattr(self.sock, "pending", None)
        if not (pending and pending()):
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return False
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.rx += chunk
        self.pending += chunk
        self._parse()
        return True

    def wait_sb(self, cmd, timeout=5.0):
        """Wait for a sub-command from the node; return its payload."""
        end = time.monotonic() + timeout
        while True:
            for k, (c, p) in enumerate(self.sbs):
                if c == cmd:
                    del self.sbs[k]
                    return p
            left = end - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self.poll(min(left, 0.2))

    def wait_closed(self, timeout=5.0):
        end = time.monotonic() + timeout
        while not self.closed and time.monotonic() < end:
            self.poll(0.1)
        return self.closed

    def wait_data(self, n, timeout=5.0):
        end = time.monotonic() + timeout
        while len(self.data) < n and time.monotonic() < end:
            if self.closed:
                break
            self.poll(0.1)
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    def ready(self, timeout=5.0):
        """Wait until the node said WILL-PROXY."""
        p = self.wait_sb(0x47, timeout)
        if p is None:
            raise AssertionError("no WILL-PROXY; got %r" % self.sbs)
        return self

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True
