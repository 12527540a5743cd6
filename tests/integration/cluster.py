# Cluster harness for the integration tests: Redis, several vspcd nodes
# sharing it, and HAProxy in front of them running deploy/haproxy.cfg with
# only its addresses replaced by loopback ports.  Everything runs on free
# 127.0.0.1 ports in a temporary directory; every process is started in
# its own process group and killed (group and all) when the test ends,
# also on failure or when the test runner is interrupted.  Every wait is
# bounded.

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import free_port, wait_for  # noqa: E402

REDIS_SERVER = os.environ.get("REDIS_SERVER") or "/usr/bin/redis-server"
HAPROXY = os.environ.get("HAPROXY") or "/usr/sbin/haproxy"
HAPROXY_EXAMPLE = os.path.join(harness.TOP_SRCDIR, "deploy", "haproxy.cfg")

# The example's placeholders: the address in front (VIP) and the nodes.
VIP = "10.0.0.10"
SOURCE = "10.0.0.9"            # HAProxy's own address in the example.
TEST_SOURCE = "127.0.0.2"      # ...and in the rendered copy.
PORT_HTTP = 13374
NODE_ADDRS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
PORT_VM, PORT_COMPAT, PORT_CONSOLE = 13370, 13371, 13372
PORT_CONTROL = 13375
STATS_SOCKET = "/run/haproxy/vspcd.sock"

# Process groups still alive, killed at exit whatever happened, and
# directories to remove then.
_live = {}
_dirs = set()


def _spawn(args, out, **kw):
    """Start args in a new process group, output to the file out."""
    f = open(out, "ab")
    try:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT,
                             start_new_session=True, **kw)
    finally:
        f.close()
    _live[p.pid] = p
    return p


def _reap(p, sig=signal.SIGTERM, timeout=10.0):
    """Signal p's process group, wait (bounded), SIGKILL if needed.
    Returns p's exit status."""
    if p is None:
        return None
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        p.wait(5)
    # The group may outlive its leader.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _live.pop(p.pid, None)
    return p.returncode


def _kill_all():
    for p in list(_live.values()):
        _reap(p, signal.SIGKILL, 5)


atexit.register(_kill_all)


def _on_term(signum, frame):
    # make(1) or the test driver stopping us: unittest would catch an
    # exception and go on with the next test, so clean up and leave now.
    _kill_all()
    for d in list(_dirs):
        shutil.rmtree(d, ignore_errors=True)
    os._exit(128 + signum)


if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_term)


def tail(path, n=200):
    """The last n lines of a file, as text ("" if none)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


class Redis:
    """A redis-server on a fixed free port, no persistence.  (A minimal
    starter of our own: tests/integration/redis_util.py, with Sentinel,
    is for the Redis store's own tests.)"""

    def __init__(self, dir, port=None):
        self.dir = dir
        self.port = port or free_port()
        self.log_path = os.path.join(dir, "redis.log")
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self, timeout=10):
        self.proc = _spawn([REDIS_SERVER, "--port", str(self.port),
                            "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", self.dir,
                            "--daemonize", "no", "--protected-mode", "no",
                            "--logfile", ""], self.log_path)
        wait_for(self._up, timeout, "redis-server to answer PING")
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited with %s:\n%s" %
                                 (self.proc.returncode,
                                  tail(self.log_path, 30)))
        try:
            return self.cmd("PING") == "PONG"
        except OSError:
            return False

    def stop(self):
        rc = _reap(self.proc)
        self.proc = None
        return rc

    def restart(self, down=0.0):
        """Stop, stay down for down seconds, start on the same port: an
        empty Redis, as after a crash without persistence."""
        self.stop()
        if down:
            time.sleep(down)
        return self.start()

    def cmd(self, *args, timeout=2.0):
        """One command in RESP; returns str, int, list or None."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout)
        try:
            req = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                req += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(req)
            f = s.makefile("rb")
            return self._reply(f)
        finally:
            s.close()

    def _reply(self, f):
        line = f.readline()
        if not line:
            raise OSError("redis: connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise OSError("redis: " + rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            return f.read(n + 2)[:-2].decode("utf-8", "replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply(f) for _ in range(n)]
        raise OSError("redis: bad reply %r" % line)


class ClusterNode(harness.Node):
    """A harness.Node with a peer port, its own process group, kill -9
    and restart with the same configuration."""

    def __init__(self, name, cluster_extra=None, extra=None, options=None):
        self.peer_port = free_port() if cluster_extra is not None else None
        self.http_port = free_port()
        self.control_port = free_port()
        # HAProxy (rendered from deploy/haproxy.cfg) connects from
        # TEST_SOURCE with a PROXY header and checks /healthz.
        merged = {"http.listen": "127.0.0.1:%d" % self.http_port,
                  "vm.proxy_protocol_from": TEST_SOURCE,
                  "control.listen": "127.0.0.1:%d" % self.control_port}
        if cluster_extra is not None:
            merged.update(cluster_extra)
            merged["cluster.peer_listen"] = "127.0.0.1:%d" % self.peer_port
        merged.update(extra or {})
        super().__init__(name=name, extra=merged, options=options)

    def start(self, timeout=10):
        for attempt in range(3):
            args = [harness.VSPCD, "-d", "-v", "-f", self.conf]
            for o in self.options:
                args += ["-o", o]
            self.proc = _spawn(args, self.stderr_path)
            self.stderr = open(os.devnull, "wb")    # For Node.stop().
            try:
                wait_for(self.ready, timeout, "vspcd %s to listen on its "
                         "vm, console, compat%s ports" %
                         (self.name, " and peer" if self.peer_port
                          else ""))
                self.started_once = True
                return self
            except AssertionError as e:
                # A free port taken by a test running beside this one
                # before vspcd bound it: other ports, on the first start
                # only (a restart must keep its addresses).
                if getattr(self, "started_once", False) or \
                        attempt == 2 or "Address already in use" not in \
                        str(e):
                    raise
                self.repick_ports()
        return self

    def repick_ports(self):
        self.vm_port = free_port()
        self.console_port = free_port()
        self.compat_port = free_port()
        self.http_port = free_port()
        self.control_port = free_port()
        self.extra["http.listen"] = "127.0.0.1:%d" % self.http_port
        self.extra["control.listen"] = "127.0.0.1:%d" % self.control_port
        if self.peer_port is not None:
            self.peer_port = free_port()
            self.extra["cluster.peer_listen"] = \
                "127.0.0.1:%d" % self.peer_port
        self.write_config()

    def ready(self):
        if not super().ready():
            return False
        if self.peer_port is None:
            return True
        try:
            socket.create_connection(("127.0.0.1", self.peer_port),
                                     0.5).close()
        except OSError:
            return False
        return True

    @property
    def running(self):
        if self.proc is not None and self.proc.poll() is None:
            return True
        # After a hot upgrade the process serving is not our child.
        pid = getattr(self, "served_pid", None)
        if pid is None or self.proc is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self):
        """SIGTERM, bounded wait; returns the exit status."""
        if self.proc is None:
            return None
        # A process that took over by hot upgrade stops cleanly first.
        rc_served = self.stop_served()
        rc = _reap(self.proc)
        if rc_served is not None:
            rc = rc_served
        self.stderr.close()
        self.proc = None
        return rc

    def kill9(self):
        """kill -9: no clean-up of any kind in the node."""
        if self.proc is None:
            return
        _reap(self.proc, signal.SIGKILL)
        self.stderr.close()
        self.proc = None
        # A process that took over by hot upgrade died with the group.
        self.served_pid = None

    def restart(self):
        self.stop()
        return self.start()

    def log_since(self, mark):
        """The node's log after the byte offset mark (from log_mark())."""
        return self.log()[mark:]

    def log_mark(self):
        return len(self.log())


class HAProxy:
    """HAProxy running a copy of deploy/haproxy.cfg whose addresses and
    ports, and nothing else, are replaced by loopback ones."""

    def __init__(self, dir, nodes):
        self.dir = dir
        self.nodes = nodes
        self.vm_port = free_port()
        self.compat_port = free_port()
        self.console_port = free_port()
        self.control_port = free_port()
        self.stats_path = os.path.join(dir, "haproxy.sock")
        self.conf = os.path.join(dir, "haproxy.cfg")
        self.log_path = os.path.join(dir, "haproxy.log")
        self.proc = None

    def address_map(self):
        m = {"%s:%d" % (VIP, PORT_VM): "127.0.0.1:%d" % self.vm_port,
             "%s:%d" % (VIP, PORT_COMPAT): "127.0.0.1:%d" % self.compat_port,
             "%s:%d" % (VIP, PORT_CONSOLE):
                 "127.0.0.1:%d" % self.console_port,
             "%s:%d" % (VIP, PORT_CONTROL):
                 "127.0.0.1:%d" % self.control_port}
        for addr, n in zip(NODE_ADDRS, self.nodes):
            m["%s:%d" % (addr, PORT_VM)] = "127.0.0.1:%d" % n.vm_port
            m["%s:%d" % (addr, PORT_COMPAT)] = "127.0.0.1:%d" % n.compat_port
            m["%s:%d" % (addr, PORT_CONSOLE)] = \
                "127.0.0.1:%d" % n.console_port
            m["%s:%d" % (addr, PORT_CONTROL)] = \
                "127.0.0.1:%d" % n.control_port
        return m

    def render(self, example=HAPROXY_EXAMPLE):
        """Write the test copy.  Only the part of a line before "#" is
        rewritten; every ADDRESS:PORT of the example must be known, each
        used once; server lines for nodes beyond len(nodes) are dropped
        (none with three nodes)."""
        amap = self.address_map()
        used = set()
        out = []
        rx = re.compile(r"\b(\d+\.\d+\.\d+\.\d+:\d+)\b")
        with open(example) as f:
            lines = f.read().split("\n")
        for line in lines:
            code, hash_, comment = line.partition("#")
            if STATS_SOCKET in code:
                code = code.replace(STATS_SOCKET, self.stats_path)
            skip = False

            def sub(m):
                nonlocal skip
                a = m.group(1)
                if a in amap:
                    if a in used:
                        raise ValueError("%s: %s used twice" % (example, a))
                    used.add(a)
                    return amap[a]
                if a.rsplit(":", 1)[0] in NODE_ADDRS:
                    skip = True     # A node this cluster does not have.
                    return a
                raise ValueError("%s: unknown address %s" % (example, a))
            code = rx.sub(sub, code)
            code = re.sub(r"\bsource %s\b" % re.escape(SOURCE),
                          "source " + TEST_SOURCE, code)
            if " port %d" % PORT_HTTP in code:
                # A server line: its node's HTTP port for the check.
                node = [n for a, n in zip(NODE_ADDRS, self.nodes)
                        if amap.get("%s:%d" % (a, PORT_VM)) in code or
                        amap.get("%s:%d" % (a, PORT_COMPAT)) in code or
                        amap.get("%s:%d" % (a, PORT_CONSOLE)) in code or
                        amap.get("%s:%d" % (a, PORT_CONTROL)) in code]
                if node:
                    code = code.replace(" port %d" % PORT_HTTP,
                                        " port %d" % node[0].http_port)
            if not skip:
                out.append(code + hash_ + comment)
        missing = set(amap) - used
        if missing:
            raise ValueError("%s: no %s" % (example, sorted(missing)))
        with open(self.conf, "w") as f:
            f.write("\n".join(out))
        return self.conf

    def check(self):
        """haproxy -c: returns (exit status, output)."""
        p = subprocess.run([HAPROXY, "-c", "-f", self.conf],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def start(self, timeout=10):
        self.render()
        rc, out = self.check()
        if rc != 0:
            raise AssertionError("haproxy -c -f %s failed (%d):\n%s" %
                                 (self.conf, rc, out))
        self.proc = _spawn([HAPROXY, "-f", self.conf, "-db"], self.log_path)
        wait_for(self._up, timeout, "haproxy to listen")
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("haproxy exited with %s:\n%s" %
                                 (self.proc.returncode,
                                  tail(self.log_path, 30)))
        for port in (self.vm_port, self.compat_port, self.console_port):
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError:
                return False
        # The socket's file is there once haproxy has bound it, before it
        # listens: only a connection that succeeds says it is ready.
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.stats_path)
        except OSError:
            return False
        finally:
            s.close()
        return True

    def stop(self):
        rc = _reap(self.proc)
        self.proc = None
        return rc

    def admin(self, command, timeout=5.0):
        """One command on the runtime API (stats socket); its answer."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        try:
            s.connect(self.stats_path)
            s.sendall(command.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        return data.decode("utf-8", "replace")

    def server_status(self):
        """{(backend, server): status} from "show stat" (UP, DOWN...)."""
        out = self.admin("show stat")
        lines = out.strip().split("\n")
        if not lines or not lines[0].startswith("# "):
            return {}
        hdr = lines[0][2:].split(",")
        ip, isv, ist = hdr.index("pxname"), hdr.index("svname"), \
            hdr.index("status")
        res = {}
        for line in lines[1:]:
            f = line.split(",")
            if len(f) > ist and f[isv] not in ("FRONTEND", "BACKEND"):
                res[(f[ip], f[isv])] = f[ist]
        return res

    def sessions(self, frontend=None):
        """The servers (node names) HAProxy's live sessions go to, as a
        list of (frontend, server), in no particular order."""
        out = self.admin("show sess")
        res = []
        for line in out.split("\n"):
            fe = re.search(r"\bfe=(\S+)", line)
            srv = re.search(r"\bsrv=(\S+)", line)
            if not fe or not srv or fe.group(1) == "GLOBAL":
                continue
            if frontend is None or fe.group(1) == frontend:
                res.append((fe.group(1), srv.group(1)))
        return res

    def server_of_new(self, frontend, before):
        """The server of the one session of frontend that is not in
        before (a sessions() result taken earlier)."""
        def new():
            now = self.sessions(frontend)
            for x in before:
                if x in now:
                    now.remove(x)
            return now[0][1] if len(now) == 1 else None
        return wait_for(new, 5, "one new %s session in haproxy" % frontend)


class Cluster:
    """n vspcd nodes sharing one Redis, HAProxy in front.

    clustered=False starts the nodes standalone (no Redis, no [cluster]
    section): for tests of the HAProxy example alone."""

    def __init__(self, n=3, node_extra=None, clustered=True, haproxy=True):
        self.dir = tempfile.mkdtemp(prefix="vspcd-cluster-")
        self.clustered = clustered
        self.name = "test-" + os.urandom(4).hex()
        self.redis = Redis(self.dir) if clustered else None
        self.secret_file = os.path.join(self.dir, "secret")
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, os.urandom(16).hex().encode())
        os.close(fd)
        cx = None
        if clustered:
            cx = {"cluster.redis": self.redis.url,
                  "cluster.name": self.name,
                  "cluster.secret_file": self.secret_file,
                  "cluster.heartbeat": "1",
                  "cluster.node_timeout": "3"}
        self.nodes = [ClusterNode("n%d" % (i + 1), cx, dict(node_extra or {}))
                      for i in range(n)]
        self.haproxy = HAProxy(self.dir, self.nodes) if haproxy else None
        _dirs.add(self.dir)
        _dirs.update(n.dir for n in self.nodes)

    def __getitem__(self, i):
        return self.nodes[i]

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def start(self):
        if self.redis:
            self.redis.start()
        for n in self.nodes:
            n.start()
        if self.haproxy:
            self.haproxy.start()
            # Round robin is only round while every server is UP.
            hp = self.haproxy
            wait_for(lambda: hp.server_status() and all(
                v.startswith("UP") for v in hp.server_status().values()),
                15, "haproxy to see every node UP")
        if self.clustered:
            self.settle()
        return self

    def settle(self, timeout=3):
        """Give the nodes a moment to find each other: wait (bounded, not
        an error if it does not happen) until every node's record is in
        Redis.  Tests wait for what they need themselves."""
        ids = [n.name for n in self.nodes if n.running]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                keys = self.redis.cmd("KEYS", "*node*") or []
            except OSError:
                keys = []
            if all(any(k.endswith(":" + i) for k in keys) for i in ids):
                return True
            time.sleep(0.1)
        return False

    # Addresses of the HAProxy frontends, as esxisim -s wants them.
    @property
    def vm_target(self):
        return "127.0.0.1:%d" % self.haproxy.vm_port

    @property
    def console_port(self):
        return self.haproxy.console_port

    @property
    def compat_port(self):
        return self.haproxy.compat_port

    @property
    def control_target(self):
        """HAProxy's control frontend, as vspcctl -c wants it."""
        return "127.0.0.1:%d" % self.haproxy.control_port

    def stop(self):
        """Stop everything; returns {node name: exit status}."""
        rcs = {}
        if self.haproxy:
            self.haproxy.stop()
        for n in self.nodes:
            rcs[n.name] = n.stop()
        if self.redis:
            self.redis.stop()
        return rcs

    def logs(self):
        """Every log of the cluster, for a failed test."""
        out = []
        for n in self.nodes:
            out.append("---- vspcd %s log ----\n%s" % (n.name, n.log()))
        if self.haproxy:
            out.append("---- haproxy log (tail) ----\n%s" %
                       tail(self.haproxy.log_path, 60))
        if self.redis:
            out.append("---- redis log (tail) ----\n%s" %
                       tail(self.redis.log_path, 30))
        return "\n".join(out)

    def cleanup(self):
        try:
            self.stop()
        finally:
            for n in self.nodes:
                n.cleanup()
                _dirs.discard(n.dir)
            if os.environ.get("KEEP_DIR"):
                sys.stderr.write("kept %s\n" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            _dirs.discard(self.dir)


def sim_recv(sim, i, n, timeout=5.0):
    """Collect what people typed to VM i (esxisim recv events) until n
    bytes arrived or timeout; returns the bytes."""
    got = b""
    rx = re.compile(r"^recv %d (\w+)" % i)
    end = time.monotonic() + timeout
    while len(got) < n:
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            m = sim.expect(rx.pattern, timeout=left)
        except AssertionError:
            break
        got += bytes.fromhex(m.group(1))
    return got


NOTICE = re.compile(rb"\r\n\[-- [^\r\n]{0,200} --\]\r\n")
PROMPT = b"? lists): "
ANSWER = re.compile(rb"\[(attached|spy|read-only)[^\]\r\n]*\]\r\n|"
                    rb"\? lists\): ")


def strip_notices(data):
    """Split console output into the VM's bytes and the node's notices
    ("[-- ... --]" lines, e.g. about a console that moved)."""
    return NOTICE.sub(b"", bytes(data)), NOTICE.findall(bytes(data))


def ask(console, line, timeout=10.0):
    """At the console prompt, type line; return the answer: an attach
    header ("[attached ...]", "[spy ...]", "[read-only ...]") or
    whatever came before the next prompt (a refusal)."""
    console.read_until(PROMPT, timeout)
    console.send(line + "\r")
    out = console.read_until(ANSWER, timeout)
    if out.endswith(PROMPT):
        # Leave the prompt for the next ask().
        console.buf[:0] = PROMPT
    return out


def sim_stats(sim, i=0):
    """esxisim's counters for VM i: (sent, recv, off)."""
    sim.cmd("stats %d" % i)
    m = sim.expect(r"^stats %d sent=(\d+) recv=(\d+) off=(\d+)" % i)
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


class ClusterTest(unittest.TestCase):
    """A test case with a fresh cluster per test.  On failure the logs of
    every node (and HAProxy and Redis) are printed."""

    n_nodes = 3
    node_extra = {}
    clustered = True

    def setUp(self):
        self.sims = []
        self.consoles = []
        self.cluster = Cluster(self.n_nodes, dict(self.node_extra),
                               clustered=self.clustered)
        try:
            self.cluster.start()
        except BaseException:
            sys.stderr.write(self.cluster.logs() + "\n")
            self.cluster.cleanup()
            raise

    def _failed(self):
        """Whether this test has failed so far (Python 3.11 reports to
        the result at once; older versions collect in _outcome.errors)."""
        o = getattr(self, "_outcome", None)
        if o is None:
            return False
        if any(e for _, e in (getattr(o, "errors", None) or []) if e):
            return True
        r = getattr(o, "result", None)
        for lst in (getattr(r, "failures", []), getattr(r, "errors", [])):
            if any(t is self for t, _ in lst):
                return True
        return False

    def tearDown(self):
        for s in self.sims:
            try:
                s.stop()
            except Exception:
                pass
        for c in self.consoles:
            c.close()
        for v in harness.FakeVM.live:
            v.close()
        harness.FakeVM.live.clear()
        failed = self._failed()
        logs = self.cluster.logs()
        rcs = self.cluster.stop()
        bad = {k: v for k, v in rcs.items() if v not in (0, None)}
        if failed or bad or os.environ.get("KEEP_LOG"):
            sys.stderr.write("\n==== %s ====\n%s\n" % (self.id(), logs))
        self.cluster.cleanup()
        self.assertEqual(bad, {}, "vspcd did not exit cleanly")

    # Helpers.

    def sim(self, target, args=None):
        """esxisim against a node (ClusterNode) or "haproxy"."""
        if target == "haproxy":
            s = harness.Sim(None, args, host=self.cluster.vm_target)
        else:
            s = harness.Sim(target, args)
        self.sims.append(s)
        return s

    def console(self, target, **kw):
        """A person on a node's console port, or "haproxy"'s."""
        port = (self.cluster.console_port if target == "haproxy"
                else target.console_port)
        c = harness.Console(None, port=port, **kw)
        self.consoles.append(c)
        return c

    def fakevm(self, target, **kw):
        port = (self.cluster.haproxy.vm_port if target == "haproxy"
                else target.vm_port)
        return harness.FakeVM(None, port=port, **kw).ready()

    def wait_listed_everywhere(self, name, count=1, timeout=15):
        for n in self.cluster.nodes:
            if n.running:
                n.wait_listed(name, count, timeout)

    def listing_via(self, port):
        c = harness.Console(None, port=port)
        try:
            c.read_until(b"? lists): ")
            c.send("?\r")
            return c.read_until(b"? lists): ")
        finally:
            c.close()
