# deploy/keepalived.conf at work: an HA pair of vspcd machines sharing a
# virtual address, failing over when vspcd dies.
#
# Three network namespaces stand for the two machines and their LAN: A
# and B, each with an eth0 (10.0.0.11, 10.0.0.12) plugged into a bridge
# in C, the client's namespace (10.0.0.1).  Each machine runs a real,
# standalone vspcd and keepalived with the example rendered for it (only
# what an operator changes: the lines marked "other machine:").  The
# addresses and eth0 are the example's own: nothing in these namespaces
# can reach or clash with this machine's network.
#
# Checked: one machine takes 10.0.0.10 and answers there (the console
# port's banner names the node); when its vspcd is killed the track
# script fails and the other machine takes the address and answers;
# when the first one's vspcd is back and the second's keepalived stops,
# the address comes back.  Through the address all along, as ESXi and
# people do: a simulated VM (esxisim, in the client's namespace) streams
# to whoever holds it, and a person attaching there reads what it sends;
# after the failover the VM, seeing its connection close, reconnects to
# the same address, lands on the other machine, and a person attaching
# there again reads its new output.  Every process is killed and every namespace
# deleted afterwards, also on failure.  Skipped (77) when network
# namespaces cannot be made here (not root, no CAP_NET_ADMIN) or
# keepalived or ip is missing; test_keepalived_config.py still runs.

import atexit
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keepalived_util as ku  # noqa: E402
import harness  # noqa: E402
from harness import VSPCD, wait_for  # noqa: E402

KEEPALIVED = ku.find("keepalived", "KEEPALIVED")
IP = ku.find("ip", "IP")
PYTHON3 = sys.executable or "python3"
CLIENT_ADDR = "10.0.0.1"
PORT_VM, PORT_CONSOLE = 13370, 13372

# What we made, undone at exit whatever happens.
_procs = []
_netns = []


def _kill(p, sig=signal.SIGTERM, timeout=10.0):
    """Signal p (its leader only: keepalived stops its children itself),
    wait (bounded), then SIGKILL its whole process group."""
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _cleanup():
    while _procs:
        _kill(_procs.pop(), signal.SIGTERM, 10)
    while _netns:
        subprocess.call([IP, "netns", "del", _netns.pop()],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


atexit.register(_cleanup)


def _on_term(signum, frame):
    _cleanup()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


def ip(*args):
    p = subprocess.run([IP] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    if p.returncode != 0:
        raise AssertionError("ip %s: %s" % (" ".join(args),
                                            p.stdout.decode().strip()))
    return p.stdout.decode()


def netns_unavailable():
    """Why network namespaces cannot be used here, or None."""
    if not KEEPALIVED or not os.access(KEEPALIVED, os.X_OK):
        return "keepalived not installed"
    if not IP:
        return "ip (iproute2) not installed"
    name = "vspck%dprobe" % os.getpid()
    p = subprocess.run([IP, "netns", "add", name], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    if p.returncode != 0:
        return ("cannot create a network namespace (needs root with "
                "CAP_NET_ADMIN): %s" % p.stdout.decode().strip())
    subprocess.call([IP, "netns", "del", name])
    return None


# Connect to ADDR PORT (from inside a namespace), print what the server
# says within a moment.
PROBE = r"""
import socket, sys, time
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)
except OSError as e:
    print("error: %s" % e)
    sys.exit(0)
s.settimeout(0.5)
data = b""
end = time.monotonic() + 2
while b"lists): " not in data and time.monotonic() < end:
    try:
        chunk = s.recv(4096)
    except OSError:
        continue
    if not chunk:
        break
    data += chunk
s.close()
sys.stdout.write(data.decode("latin-1"))
"""


# A person on the console port of ADDR PORT (from inside a namespace):
# attach to VM, print the banner's node and the attach line, then read
# until MARKER and print "got".
PERSON = r"""
import re, socket, sys, time
addr, port, vm, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
    sys.argv[4].encode()
s = socket.create_connection((addr, port), 5)
s.settimeout(0.5)
data = b""
def until(what, secs):
    global data
    end = time.monotonic() + secs
    while time.monotonic() < end:
        m = re.search(what, data)
        if m:
            return m
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    print("timeout waiting for %r; got %r" % (what, data[-300:]))
    sys.stdout.flush()
    sys.exit(1)
m = until(rb"\(node (\S+)\)", 5)
print("node %s" % m.group(1).decode())
until(rb"lists\): ", 5)
s.sendall(vm.encode() + b"\r")
m = until(rb"\[(attached|spy)[^\]\r\n]*\]", 10)
print("attach %s" % m.group(0).decode("latin-1"))
sys.stdout.flush()
data = data[m.end():]
until(re.escape(marker), 20)
print("got")
sys.stdout.flush()
"""


class Machine:
    """One of the pair: a namespace with eth0, vspcd and keepalived."""

    def __init__(self, test, n, ns, addr):
        self.test = test
        self.n = n
        self.ns = ns
        self.addr = addr
        self.node_id = "ka%d" % n
        self.dir = os.path.join(test.dir, "m%d" % n)
        os.mkdir(self.dir)
        self.vspcd = None
        self.keepalived = None
        self.ka_log = os.path.join(self.dir, "keepalived.log")
        self.conf = os.path.join(self.dir, "vspcd.conf")
        with open(self.conf, "w") as f:
            f.write("[node]\nid = %s\n"
                    "[vm]\nlisten = 0.0.0.0:%d\n"
                    "allow = 10.0.0.0/24, 127.0.0.0/8\n"
                    "[console]\nlisten = 0.0.0.0:%d\n"
                    "[compat]\nlisten = 127.0.0.1:13371\n"
                    "[log]\ndir = %s\n"
                    "[http]\nlisten =\n"
                    "[control]\nsocket = %s\n" %
                    (self.node_id, PORT_VM, PORT_CONSOLE,
                     os.path.join(self.dir, "consoles"),
                     os.path.join(self.dir, "control.sock")))
        self.ka_conf = os.path.join(self.dir, "keepalived.conf")
        with open(self.ka_conf, "w") as f:
            f.write(ku.render(n))

    def spawn(self, args, log):
        f = open(os.path.join(self.dir, log), "ab")
        try:
            p = subprocess.Popen([IP, "netns", "exec", self.ns] + args,
                                 stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT,
                                 start_new_session=True)
        finally:
            f.close()
        _procs.append(p)
        return p

    def reap(self, p, sig=signal.SIGTERM):
        _kill(p, sig)
        if p in _procs:
            _procs.remove(p)

    def probe(self, addr, port=PORT_CONSOLE):
        p = subprocess.run([IP, "netns", "exec", self.ns, PYTHON3, "-c",
                            PROBE, addr, str(port)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        return p.stdout.decode("latin-1")

    def start_vspcd(self):
        self.vspcd = self.spawn([VSPCD, "-d", "-v", "-f", self.conf],
                                "vspcd.log")

        def up():
            if self.vspcd.poll() is not None:
                raise AssertionError("vspcd %s exited:\n%s" %
                                     (self.node_id, self.log("vspcd.log")))
            return ("(node %s)" % self.node_id) in self.probe("127.0.0.1")
        wait_for(up, 15, "vspcd %s to answer" % self.node_id)

    def kill_vspcd(self):
        self.reap(self.vspcd, signal.SIGKILL)
        self.vspcd = None

    def start_keepalived(self):
        self.keepalived = self.spawn(
            [KEEPALIVED, "-n", "-l", "-D", "-f", self.ka_conf,
             "-p", os.path.join(self.dir, "keepalived.pid"),
             "-r", os.path.join(self.dir, "vrrp.pid"),
             "-c", os.path.join(self.dir, "checkers.pid")],
            "keepalived.log")

    def stop_keepalived(self):
        self.reap(self.keepalived)
        self.keepalived = None

    def holds_vip(self):
        out = ip("-n", self.ns, "-4", "-o", "addr", "show", "dev", "eth0")
        return (" %s/" % ku.VIP) in out

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class KeepalivedPairTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vspcd-keepalived-")
        tag = "vspck%s" % os.urandom(3).hex()
        self.ns = {k: tag + k for k in "abc"}
        for k in "abc":
            ip("netns", "add", self.ns[k])
            _netns.append(self.ns[k])
        c = self.ns["c"]
        ip("-n", c, "link", "add", "br0", "type", "bridge")
        ip("-n", c, "addr", "add", CLIENT_ADDR + "/24", "dev", "br0")
        ip("-n", c, "link", "set", "br0", "up")
        for k, addr in zip("ab", ku.MACHINE_ADDRS):
            ns = self.ns[k]
            ip("-n", ns, "link", "add", ku.IFACE, "type", "veth", "peer",
               "name", "p" + k, "netns", c)
            ip("-n", c, "link", "set", "p" + k, "master", "br0")
            ip("-n", c, "link", "set", "p" + k, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", addr + "/24", "dev", ku.IFACE)
            ip("-n", ns, "link", "set", ku.IFACE, "up")
        self.a = Machine(self, 1, self.ns["a"], ku.MACHINE_ADDRS[0])
        self.b = Machine(self, 2, self.ns["b"], ku.MACHINE_ADDRS[1])
        # The client is a third party: probes run in its namespace.
        self.client = Machine.__new__(Machine)
        self.client.ns = c
        self.sims = []

    def tearDown(self):
        failed = False
        o = getattr(self, "_outcome", None)
        r = getattr(o, "result", None)
        for lst in (getattr(r, "failures", []), getattr(r, "errors", [])):
            failed = failed or any(t is self for t, _ in lst)
        if failed or os.environ.get("KEEP_LOG"):
            for m in (self.a, self.b):
                sys.stderr.write("---- machine %d keepalived ----\n%s\n"
                                 "---- machine %d vspcd ----\n%s\n" %
                                 (m.n, m.log("keepalived.log")[-6000:],
                                  m.n, m.log("vspcd.log")[-3000:]))
        for sim in self.sims:
            sim.stop()
        _cleanup()
        subprocess.call(["rm", "-rf", self.dir])

    def answering(self):
        """The node id that answers on the virtual address, or None."""
        m = re.search(r"\(node (\S+)\)", self.client.probe(ku.VIP))
        return m.group(1) if m else None

    def wait_holder(self, m, other, timeout=30):
        wait_for(lambda: m.holds_vip() and not other.holds_vip(), timeout,
                 "machine %d alone to hold %s" % (m.n, ku.VIP))
        wait_for(lambda: self.answering() == m.node_id, 15,
                 "%s to answer on %s" % (m.node_id, ku.VIP))

    def vm_through_vip(self):
        """esxisim in the client's namespace, one VM, connected to the
        virtual address."""
        sim = harness.Sim(None, [], host="%s:%d" % (ku.VIP, PORT_VM),
                          prefix=[IP, "netns", "exec", self.client.ns])
        _procs.append(sim.proc)
        self.sims.append(sim)
        sim.cmd("add 0 ka-vm 0123456789abcdeffedcba9800000000")
        sim.cmd("connect 0")
        sim.expect(r"^ready 0 ka-vm", timeout=15)
        return sim

    def reconnect(self, sim, timeout=30):
        """connect 0 until the VM is ready again (the address may not
        answer for a moment)."""
        end = time.monotonic() + timeout
        while True:
            sim.cmd("connect 0")
            try:
                sim.expect(r"^ready 0 ka-vm", timeout=3)
                return
            except AssertionError:
                if time.monotonic() > end:
                    raise
            sim.seen.clear()

    def person_reads(self, sim, m, marker):
        """A person attaches to ka-vm through the virtual address, on
        machine m, and reads marker once the VM sends it."""
        p = subprocess.Popen([IP, "netns", "exec", self.client.ns, PYTHON3,
                              "-c", PERSON, ku.VIP, str(PORT_CONSOLE),
                              "ka-vm", marker.decode()],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        _procs.append(p)
        lines = []
        try:
            end = time.monotonic() + 30
            while len(lines) < 2 and time.monotonic() < end:
                line = p.stdout.readline().decode("latin-1").strip()
                if not line:
                    break
                lines.append(line)
            self.assertEqual(len(lines), 2, "person: %r" % lines)
            self.assertEqual(lines[0], "node %s" % m.node_id,
                             "the address is not on machine %d" % m.n)
            self.assertRegex(lines[1], r"^attach \[(attached|spy)")
            # Now attached: what the VM sends arrives.
            sim.cmd("send 0 %s" % (marker + b"\r\n").hex())
            out = p.stdout.read().decode("latin-1")
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            p.stdout.close()
            _procs.remove(p)
        self.assertEqual(p.returncode, 0, "person: %r %s" % (lines, out))
        self.assertIn("got", out)

    def test_failover(self):
        a, b = self.a, self.b
        for m in (a, b):
            m.start_vspcd()
        for m in (a, b):
            m.start_keepalived()
        wait_for(lambda: a.holds_vip() != b.holds_vip(), 30,
                 "one machine to take %s" % ku.VIP)
        master, backup = (a, b) if a.holds_vip() else (b, a)
        self.wait_holder(master, backup)

        # vspcd dies on the master: its track script fails, it gives the
        # address away, the other machine answers there.
        # A VM streaming through the address, a person reading it there.
        sim = self.vm_through_vip()
        self.person_reads(sim, master, b"before the failover")

        master.kill_vspcd()
        self.wait_holder(backup, master)
        self.assertIsNotNone(master.keepalived)
        self.assertIsNone(master.keepalived.poll(), "keepalived exited")

        # ESXi sees its connection end and connects to the address again:
        # the other machine takes the VM; people find it there.
        sim.expect(r"^closed 0 \S+ src", timeout=30)
        self.reconnect(sim)
        self.person_reads(sim, backup, b"after the failover")

        # Its vspcd back, the first machine is a backup again (nopreempt:
        # it does not take the address back by itself)...
        mark = master.log("keepalived.log").count("Entering BACKUP STATE")
        master.start_vspcd()
        wait_for(lambda: master.log("keepalived.log").count(
            "Entering BACKUP STATE") > mark, 30,
            "machine %d to leave FAULT state" % master.n)
        # ...and takes the address when the second machine's keepalived
        # stops.
        backup.stop_keepalived()
        self.wait_holder(master, backup)


if __name__ == "__main__":
    why = netns_unavailable()
    if why:
        print("SKIP: %s" % why)
        sys.exit(77)
    if not os.access(VSPCD, os.X_OK):
        print("vspcd not found at %s (set VSPCD)" % VSPCD)
        sys.exit(1)
    unittest.main()
