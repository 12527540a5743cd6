# deploy/demo-cluster as someone trying the cluster out uses it: start,
# status, a VM connected through the HAProxy front listed on every node,
# a person attached through a node's console port seeing its output and
# typing to it, a second start refused, then stop: every process gone,
# every port free.  Runs on free 127.0.0.1 ports in a temporary
# directory; whatever happens, the demo is stopped at the end.

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_for  # noqa: E402

DEMO = os.path.join(harness.TOP_SRCDIR, "deploy", "demo-cluster")
PYTHON3 = os.environ.get("PYTHON3") or sys.executable


def port_free(port):
    import socket
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_base():
    """A base port whose 45 ports above are all free a moment ago."""
    for _ in range(50):
        base = random.randrange(20000, 29900, 10)
        if all(port_free(base + i) for i in range(45)):
            return base
    raise AssertionError("no free port range found")


def pid_alive(pid):
    """Whether pid is a live process (a zombie is not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class DemoClusterTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vspcd-demo-")
        self.base = pick_base()
        self.env = dict(os.environ, VSPCD=harness.VSPCD)
        self.people = []
        self.vms = []

    def tearDown(self):
        for c in self.people:
            c.close()
        for v in self.vms:
            v.close()
        out = self.demo("stop", check=False)
        if self._failed() or os.environ.get("KEEP_LOG"):
            sys.stderr.write(out + "\n" + self.logs())
        shutil.rmtree(self.dir, ignore_errors=True)

    def _failed(self):
        r = getattr(getattr(self, "_outcome", None), "result", None)
        return any(t is self for lst in (getattr(r, "failures", []),
                                         getattr(r, "errors", []))
                   for t, _ in lst)

    def logs(self):
        out = []
        for name in ("redis.log", "haproxy.log", "n1/vspcd.log",
                     "n2/vspcd.log", "n3/vspcd.log"):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    data = f.read().decode("utf-8", "replace")
            except OSError:
                data = "(none)"
            out.append("---- %s ----\n%s" % (name, data[-4000:]))
        return "\n".join(out) + "\n"

    def demo(self, *args, check=True, rc=0):
        p = subprocess.run([PYTHON3, DEMO, "-p", str(self.base)] +
                           list(args) + [self.dir], env=self.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        out = p.stdout.decode("utf-8", "replace")
        if check:
            self.assertEqual(p.returncode, rc, "demo-cluster %s:\n%s" %
                             (" ".join(args), out))
        return out

    def pids(self):
        res = {}
        for part in ("redis", "haproxy"):
            res[part] = os.path.join(self.dir, part + ".pid")
        for n in ("n1", "n2", "n3"):
            res[n] = os.path.join(self.dir, n, "vspcd.pid")
        for part, path in res.items():
            with open(path) as f:
                res[part] = int(f.read())
        return res

    def listing(self, port):
        c = harness.Console(None, port=port)
        try:
            c.read_until(b"? lists): ")
            c.send("?\r")
            return c.read_until(b"? lists): ")
        finally:
            c.close()

    def test_start_use_stop(self):
        out = self.demo("start")
        with open(os.path.join(self.dir, "ports.json")) as f:
            pt = json.load(f)
        self.assertEqual(pt["front_vm"], self.base)
        # What to do next, with the real ports.
        self.assertIn("telnet -E 127.0.0.1 %d" % pt["front_console"], out)
        self.assertIn("-s 127.0.0.1:%d -n 3" % pt["front_vm"], out)
        self.assertIn("vspcctl -s %s/n1/control.sock cluster status" %
                      self.dir, out)
        st = self.demo("status")
        for part in ("haproxy", "n1", "n2", "n3", "redis"):
            self.assertRegex(st, r"(?m)^%s +running \(pid \d+\)" % part)
        pids = self.pids()

        # Each node answers on its own console port, and is a cluster
        # node of the same cluster as the others.
        for n in ("n1", "n2", "n3"):
            c = harness.Console(None, port=pt[n + "_console"])
            self.people.append(c)
            self.assertIn(b"(node %s)" % n.encode(),
                          c.read_until(b"? lists): "))
            c.close()

        # An ESXi host through the HAProxy front: every node lists the VM.
        vm = harness.FakeVM(None, port=pt["front_vm"], name="demo-vm")
        self.vms.append(vm)
        vm.ready()
        for n in ("n1", "n2", "n3"):
            wait_for(lambda: b"demo-vm" in self.listing(pt[n + "_console"]),
                     15, "demo-vm listed on %s" % n)
        owner = re.search(rb"demo-vm +\S+ +connected +(n\d)",
                          self.listing(pt["front_console"]))
        self.assertIsNotNone(owner)

        # A person on a node that does not hold the VM: forwarded.
        other = "n1" if owner.group(1) != b"n1" else "n2"
        c = harness.Console(None, port=pt[other + "_console"])
        self.people.append(c)
        self.assertIn(b"attached", c.attach("demo-vm"))
        vm.send(b"hello from the demo VM\r\n")
        c.read_until(b"hello from the demo VM\r\n", 10)
        c.send(b"typed")
        self.assertEqual(vm.wait_data(5, 10), b"typed")

        # A second start is refused and leaves the cluster alone.
        out = self.demo("start", check=False)
        self.assertIn("already running", out)
        self.assertEqual(self.pids(), pids)

        c.close()
        vm.close()
        out = self.demo("stop")
        self.assertIn("stopped haproxy, n1, n2, n3, redis", out)
        for part, pid in pids.items():
            wait_for(lambda: not pid_alive(pid), 10, "%s gone" % part)
        for name, port in pt.items():
            wait_for(lambda: port_free(port), 10, "port %s (%d) free" %
                     (name, port))
        self.demo("status", rc=1)
        self.assertIn("nothing running", self.demo("stop"))


if __name__ == "__main__":
    for prog, env in (("redis-server", "REDIS_SERVER"),
                      ("haproxy", "HAPROXY")):
        if not (os.environ.get(env) or shutil.which(
                prog, path=os.environ.get("PATH", "") + ":/usr/sbin")):
            print("SKIP: %s not installed" % prog)
            sys.exit(77)
    unittest.main()
