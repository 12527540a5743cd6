# Redis for the integration tests: start, stop, restart, pause and query
# redis-server processes (a master, replicas, Sentinels) on loopback, each
# on its own free port and in its own directory, with no persistence.
# Standard library only; every wait is bounded.
#
#   from redis_util import Redis, SentinelSet
#   r = Redis(tmpdir).start()             # r.port, r.url, r.cmd("PING")
#   r.restart()                           # same port, empty data
#   s = SentinelSet(tmpdir, sentinels=3).start()
#   s.sentinel_list    # "127.0.0.1:P1, 127.0.0.1:P2, 127.0.0.1:P3"
#   s.failover()       # returns the new master (a Redis)
#   s.stop()
#
# The redis-server binary is $REDIS_SERVER (as "make check" exports it),
# else redis-server on $PATH.  Sentinels run as "redis-server FILE
# --sentinel", so redis-sentinel need not be installed.

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REDIS_SERVER = os.environ.get("REDIS_SERVER") or \
    shutil.which("redis-server") or ""
MASTER_NAME = "vspc"


def available():
    """Whether a redis-server binary is there to run."""
    return bool(REDIS_SERVER) and os.access(REDIS_SERVER, os.X_OK)


_ports_given = set()


def free_port():
    """A TCP port on 127.0.0.1 in 20000-29999, free a moment ago and not
    given out before by this process."""
    for _ in range(500):
        port = random.randint(20000, 29999)
        if port in _ports_given:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _ports_given.add(port)
        return port
    raise RuntimeError("no free port in 20000-29999")


def wait_for(pred, timeout=10.0, what="condition"):
    """Poll pred() until it is true; raise AssertionError after timeout."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            raise AssertionError("timed out after %.1fs waiting for %s" %
                                 (timeout, what))
        time.sleep(0.05)


class RedisError(Exception):
    """An error reply (-ERR ...) from a server."""


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _read_reply(f, raw=False):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("redis: connection closed")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RedisError(rest.decode("utf-8", "replace"))
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data if raw else data.decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f, raw) for _ in range(n)]
    raise OSError("redis: bad reply %r" % line)


def command(port, *args, password=None, user=None, timeout=2.0, raw=False):
    """Run one command on 127.0.0.1:port (AUTH first if a password is
    given).  Returns str, int, list or None; bytes for bulk strings with
    raw=True.  Raises RedisError on an error reply, OSError if the server
    cannot be reached."""
    s = socket.create_connection(("127.0.0.1", port), timeout)
    try:
        s.settimeout(timeout)
        f = s.makefile("rb")
        if password is not None:
            auth = ["AUTH", user, password] if user else ["AUTH", password]
            s.sendall(_encode(auth))
            _read_reply(f)
        s.sendall(_encode(args))
        return _read_reply(f, raw)
    finally:
        s.close()


class _Server:
    """A redis-server process (a data server or a Sentinel)."""

    def __init__(self, dir=None, port=None, password=None, name="redis"):
        self.own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="vspcd-redis-")
        self.port = port or free_port()
        self.password = password
        self.name = name
        self.proc = None
        self.log_path = os.path.join(self.dir, "%s-%d.log" %
                                     (name, self.port))

    def argv(self):
        raise NotImplementedError

    def start(self, timeout=10.0):
        """Start the server and wait until it answers PING."""
        if not available():
            raise RuntimeError("no redis-server (set REDIS_SERVER)")
        if self.proc is not None:
            raise RuntimeError("%s already running" % self.name)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.dir,
                start_new_session=True)
        finally:
            log.close()
        self.wait_ready(timeout)
        return self

    def ready(self):
        """Whether the server answers PING now."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError("%s on port %d exited with %s:\n%s" %
                                 (self.name, self.port, self.proc.returncode,
                                  self.log()))
        try:
            return self.cmd("PING", timeout=0.5) == "PONG"
        except (OSError, RedisError):
            return False

    def wait_ready(self, timeout=10.0):
        wait_for(self.ready, timeout, "%s on port %d to answer PING" %
                 (self.name, self.port))

    def cmd(self, *args, timeout=2.0, raw=False):
        """One command, with this server's password."""
        return command(self.port, *args, password=self.password,
                       timeout=timeout, raw=raw)

    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGKILL):
        """Stop the server (SIGKILL by default: a crash, no goodbye)."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, sig)
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
        except ProcessLookupError:
            rc = self.proc.wait(10)
        self.proc = None
        return rc

    def restart(self, down=0.0, timeout=10.0):
        """Stop, stay down for down seconds, start on the same port."""
        self.stop()
        if down:
            time.sleep(down)
        return self.start(timeout)

    def pause(self):
        """SIGSTOP: the server accepts connections but never answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def log(self, n=40):
        """The last n lines of the server's log."""
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class Redis(_Server):
    """A Redis data server: no persistence, loopback only.

    password sets requirepass; replicaof (a Redis) makes it a replica;
    extra is a list of more "--name value" words."""

    def __init__(self, dir=None, port=None, password=None, replicaof=None,
                 extra=None, name="redis"):
        super().__init__(dir, port, password, name)
        self.replicaof = replicaof
        self.extra = list(extra or [])

    def argv(self):
        a = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", self.dir, "--logfile", ""]
        if self.password is not None:
            a += ["--requirepass", self.password]
        if self.replicaof is not None:
            a += ["--replicaof", "127.0.0.1", str(self.replicaof.port)]
            if self.replicaof.password is not None:
                a += ["--masterauth", self.replicaof.password]
        return a + self.extra

    def url(self, db=0, user=None):
        """The [cluster] redis URL of this server."""
        auth = ""
        if self.password is not None:
            auth = "%s:%s@" % (user or "", self.password)
        return "redis://%s127.0.0.1:%d/%d" % (auth, self.port, db)

    def role(self):
        """"master" or "slave" (ROLE's first word)."""
        try:
            return self.cmd("ROLE")[0]
        except (OSError, RedisError):
            return None

    def keys(self, pattern="*"):
        """Every key matching pattern (SCAN, so a big keyspace is fine)."""
        cursor, out = "0", []
        while True:
            cursor, batch = self.cmd("SCAN", cursor, "MATCH", pattern,
                                     "COUNT", 1000)
            out += batch
            if cursor == "0":
                return sorted(set(out))

    def hgetall(self, key):
        flat = self.cmd("HGETALL", key) or []
        return dict(zip(flat[0::2], flat[1::2]))

    def flushall(self):
        return self.cmd("FLUSHALL")


class Sentinel(_Server):
    """A Sentinel watching master (a Redis) as MASTER_NAME, quorum
    quorum, with short timeouts so that failovers are quick in tests."""

    def __init__(self, master, dir=None, port=None, password=None,
                 quorum=1, down_after_ms=1000, failover_timeout_ms=10000,
                 name="sentinel"):
        super().__init__(dir, port, password, name)
        self.master = master
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.conf_path = os.path.join(self.dir, "sentinel-%d.conf" %
                                      self.port)

    def write_conf(self):
        # Sentinel rewrites its file: it must be writable and its own.
        lines = ["port %d" % self.port,
                 "bind 127.0.0.1",
                 "daemonize no",
                 'dir "%s"' % self.dir,
                 "sentinel monitor %s 127.0.0.1 %d %d" %
                 (MASTER_NAME, self.master.port, self.quorum),
                 "sentinel down-after-milliseconds %s %d" %
                 (MASTER_NAME, self.down_after_ms),
                 "sentinel failover-timeout %s %d" %
                 (MASTER_NAME, self.failover_timeout_ms),
                 "sentinel parallel-syncs %s 1" % MASTER_NAME]
        if self.master.password is not None:
            lines.append("sentinel auth-pass %s %s" %
                         (MASTER_NAME, self.master.password))
        if self.password is not None:
            lines.append("requirepass %s" % self.password)
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=10.0):
        if not os.path.exists(self.conf_path):
            self.write_conf()
        return super().start(timeout)

    def argv(self):
        return [REDIS_SERVER, self.conf_path, "--sentinel"]

    def master_addr(self):
        """(host, port) of the master as this Sentinel sees it."""
        r = self.cmd("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return (r[0], int(r[1])) if r else None

    def replicas_ok(self):
        """How many replicas it knows with their link to the master up."""
        n = 0
        for r in self.cmd("SENTINEL", "REPLICAS", MASTER_NAME) or []:
            d = dict(zip(r[0::2], r[1::2]))
            if d.get("master-link-status") == "ok" and \
                    "s_down" not in d.get("flags", ""):
                n += 1
        return n

    def sentinels_known(self):
        """How many other Sentinels it has discovered."""
        return len(self.cmd("SENTINEL", "SENTINELS", MASTER_NAME) or [])


class SentinelSet:
    """A master, replicas and Sentinels watching them: what a cluster
    needs for Redis with automatic failover.

    start() waits until every Sentinel knows every replica and the other
    Sentinels, so that a failover can be asked for at once."""

    def __init__(self, dir=None, replicas=1, sentinels=3, quorum=None,
                 password=None, sentinel_password=None, down_after_ms=1000):
        self.own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="vspcd-sentinel-")
        self.master = Redis(self.dir, password=password, name="master")
        self.replicas = [Redis(self.dir, password=password,
                               replicaof=self.master, name="replica")
                         for _ in range(replicas)]
        if quorum is None:
            quorum = sentinels // 2 + 1
        self.sentinels = [Sentinel(self.master, self.dir,
                                   password=sentinel_password,
                                   quorum=quorum,
                                   down_after_ms=down_after_ms)
                          for _ in range(sentinels)]
        self.password = password
        self.sentinel_password = sentinel_password

    @property
    def servers(self):
        return [self.master] + self.replicas

    @property
    def sentinel_list(self):
        """The [cluster] sentinels value."""
        return ", ".join("127.0.0.1:%d" % s.port for s in self.sentinels)

    def config(self):
        """[cluster] keys as "section.key" -> value, for -o overrides."""
        c = {"cluster.sentinels": self.sentinel_list,
             "cluster.master_name": MASTER_NAME}
        if self.sentinel_password is not None:
            c["cluster.sentinel_password"] = self.sentinel_password
        return c

    def start(self, timeout=30.0):
        self.master.start()
        for r in self.replicas:
            r.start()
        for s in self.sentinels:
            s.start()
        self.wait_settled(timeout)
        return self

    def wait_settled(self, timeout=30.0):
        """Wait until the Sentinels agree on the master and know every
        replica and each other."""
        want_r = len(self.replicas)
        want_s = len(self.sentinels) - 1

        def settled():
            try:
                return all(s.replicas_ok() >= want_r and
                           s.sentinels_known() >= want_s
                           for s in self.sentinels if s.running())
            except (OSError, RedisError):
                return False
        wait_for(settled, timeout, "the Sentinels to know every replica "
                 "and each other")

    def current_master(self):
        """The server the (first reachable) Sentinel names as master."""
        for s in self.sentinels:
            try:
                addr = s.master_addr()
            except (OSError, RedisError):
                continue
            for srv in self.servers:
                if addr is not None and addr[1] == srv.port:
                    return srv
        return None

    def failover(self, timeout=30.0):
        """Ask for a failover and wait until it is done (the new master
        says so and a Sentinel names it); return the new master."""
        self.wait_settled(timeout)
        old = self.current_master()
        for s in self.sentinels:
            try:
                s.cmd("SENTINEL", "FAILOVER", MASTER_NAME)
                break
            except (OSError, RedisError):
                continue
        else:
            raise AssertionError("no Sentinel accepted FAILOVER")

        def moved():
            m = self.current_master()
            return m if m is not None and m is not old and \
                m.role() == "master" else None
        return wait_for(moved, timeout, "the failover")

    def kill_master(self, timeout=30.0):
        """Kill the master (SIGKILL) and wait for the Sentinels to elect
        another; return it."""
        self.wait_settled(timeout)
        old = self.current_master()
        old.stop()

        def moved():
            m = self.current_master()
            return m if m is not None and m is not old and \
                m.role() == "master" else None
        return wait_for(moved, timeout, "the Sentinels to elect a master")

    def stop(self):
        for s in self.sentinels + self.replicas + [self.master]:
            s.stop()

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


if __name__ == "__main__":
    # A quick check of this module by hand: python3 redis_util.py
    import sys
    if not available():
        print("no redis-server")
        sys.exit(77)
    with Redis(password="pw") as r:
        assert r.cmd("SET", "k", "v") == "OK"
        r.restart()
        assert r.cmd("GET", "k") is None
        print("redis ok:", r.url())
    with SentinelSet(sentinels=3, sentinel_password="spw") as s:
        first = s.current_master()
        m = s.failover()
        assert m is not first and m.role() == "master"
        m2 = s.kill_master()
        assert m2 is not m
        print("sentinels ok:", s.sentinel_list)
