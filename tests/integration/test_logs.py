# Console logs: one file per console with the VM's raw bytes, rotation by
# size with a UTC stamp, reopen on SIGUSR1, MARK and activity lines, and a
# bounded number of open log files however many consoles there are.

import glob
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM  # noqa: E402

UUID = bytes.fromhex("0123456789abcdeffedcba9800000000")
KEY = "01234567-89ab-cdef-fedc-ba9800000000"


def strip_activity(data):
    """The log without vspcd's own "[-- ... --]" lines."""
    return re.sub(rb"\[-- [^\]\r\n]* --\]\r\n", b"", data)


def slurp(path):
    with open(path, "rb") as f:
        return f.read()


class Logs(harness.NodeTest):

    node_extra = {"log.max_size": "64k", "log.activity": "yes",
                  "log.open_files": "4"}

    def logpath(self, name="web/01"):
        return os.path.join(self.node.logdir, "web_01-%s.log" % KEY)

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_raw_bytes_and_activity(self):
        vm = FakeVM(self.node, uuid=UUID, name="web/01").ready()
        every = bytes(range(256)) + b"\r\n"
        vm.send(every)
        p = self.console()
        p.attach(KEY)
        vm.send(b"tail\r\n")
        p.read_until(b"tail\r\n")
        p.close()
        path = self.logpath()
        harness.wait_for(lambda: os.path.exists(path) and
                         b"detached" in self.read(path), 5, "log lines")
        data = self.read(path)
        self.assertEqual(strip_activity(data), every + b"tail\r\n")
        self.assertRegex(data, rb"\[-- -@127\.0\.0\.1:\d+ attached "
                         rb"\(attached\) -- \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")

    def test_rotation(self):
        vm = FakeVM(self.node, uuid=UUID, name="web/01").ready()
        chunk = b"0123456789abcdef" * 1024      # 16k
        for _ in range(10):
            vm.send(chunk)
        path = self.logpath()
        rotated = lambda: glob.glob(path + "-*")
        harness.wait_for(rotated, 5, "a rotated log")
        for r in rotated():
            self.assertRegex(r, re.escape(path) +
                             r"-\d{8}-\d{6}(-\d+)?$")
            self.assertLessEqual(os.path.getsize(r), 64 * 1024)
        vm.send(b"END")
        time.sleep(0.3)
        total = sum(os.path.getsize(f) for f in rotated() + [path])
        self.assertGreaterEqual(total, 160 * 1024 + 3)

    def test_reopen_on_sigusr1(self):
        vm = FakeVM(self.node, uuid=UUID, name="web/01").ready()
        vm.send(b"first\r\n")
        path = self.logpath()
        harness.wait_for(lambda: os.path.exists(path), 5, "log file")
        os.rename(path, path + ".moved")
        self.node.signal(signal.SIGUSR1)
        harness.wait_for(lambda: "reopening console logs" in
                         self.node.log(), 5, "SIGUSR1 handled")
        vm.send(b"second\r\n")
        harness.wait_for(lambda: os.path.exists(path) and
                         b"second" in self.read(path), 5, "new log")
        self.assertIn(b"first", self.read(path + ".moved"))
        self.assertNotIn(b"second", self.read(path + ".moved"))

    def test_many_consoles_few_descriptors(self):
        vms = [FakeVM(self.node, name="many%02d" % i).ready()
               for i in range(20)]
        for rnd in range(3):
            for i, vm in enumerate(vms):
                vm.send(b"vm %02d round %d\r\n" % (i, rnd))
        time.sleep(0.5)
        for i, vm in enumerate(vms):
            f = glob.glob(os.path.join(self.node.logdir,
                                       "many%02d-*.log" % i))
            self.assertEqual(len(f), 1)
            self.assertEqual(strip_activity(self.read(f[0])), b"".join(
                b"vm %02d round %d\r\n" % (i, r) for r in range(3)))
        # [log] open_files = 4: the node holds at most 4 log files open.
        fds = os.listdir("/proc/%d/fd" % self.node.proc.pid)
        logs = [fd for fd in fds if os.readlink(
            "/proc/%d/fd/%s" % (self.node.proc.pid, fd)).startswith(
                self.node.logdir)]
        self.assertLessEqual(len(logs), 4)


class Marks(harness.NodeTest):

    node_extra = {"log.mark": "1"}

    def test_mark_lines(self):
        vm = FakeVM(self.node, uuid=UUID, name="marked").ready()
        vm.send(b"x")
        path = os.path.join(self.node.logdir, "marked-%s.log" % KEY)
        harness.wait_for(lambda: os.path.exists(path) and
                         b"MARK" in slurp(path), 5, "MARK")
        self.assertRegex(slurp(path),
                         rb"\[-- MARK -- \w{3} \w{3} [ \d]\d "
                         rb"\d\d:\d\d:\d\d \d{4} UTC --\]")


if __name__ == "__main__":
    unittest.main()
