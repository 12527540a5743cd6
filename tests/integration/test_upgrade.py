# Hot upgrade in place (vspcctl node upgrade, SIGUSR2): one node, VMs
# streaming numbered lines, people attached on the console port (one with
# a partial line typed, one in the escape menu), a vMotion left PENDING
# and one PEERED.  After each upgrade no connection was closed, every
# person got every byte exactly once, typed input reaches the VM and the
# vMotions complete.  Failures (missing binary, one that exits, one that
# hangs, a refused format) leave the old process serving, sessions
# intact, and the command says why.

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM, wait_for  # noqa: E402
import ctlclient  # noqa: E402

BEGIN, GOAHEAD, PEER, PEER_OK, COMPLETE = 0x28, 0x29, 0x2c, 0x2d, 0x2e


def lines(start, n, tag):
    return b"".join(b"%s-%06d\r\n" % (tag, i) for i in range(start,
                                                            start + n))


class Upgrade(harness.NodeTest):

    node_extra = {"vm.vmotion_token_ttl": "30", "console.history": "4M"}

    def ctl(self, *args, check=False, timeout=30):
        p = subprocess.run([harness.VSPCCTL, "-s", self.node.ctl_socket()] +
                           list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        out = (p.stdout + p.stderr).decode(errors="replace")
        if check:
            self.assertEqual(p.returncode, 0, out)
        return p.returncode, out

    def person(self, name):
        p = self.console()
        self.assertRegex(p.attach(name), rb"\[(attached|spy)")
        return p

    def upgrade(self, how):
        old = self.node.pid()
        if how == "ctl":
            rc, out = self.ctl("node", "upgrade", check=True)
            self.assertIn("upgraded: pid", out)
        else:
            os.kill(old, signal.SIGUSR2)
        wait_for(lambda: self.node.pid() != old, 15, "a new pid")
        self.assertIn("serves now", self.node.log())

    def stream(self, vms, people, n, tag):
        """Every VM sends n lines; each of its people must get exactly
        them, in order, nothing else."""
        for i, vm in enumerate(vms):
            vm.send(lines(0, n, tag + b"%d" % i))
        for i, ps in enumerate(people):
            want = lines(0, n, tag + b"%d" % i)
            for p in ps:
                got = p.read_until(want[-12:], timeout=15)
                self.assertTrue(got.endswith(want), "lost or duplicated "
                                "bytes: %r" % got[-200:])
                self.assertEqual(got.count(want[:12]), 1, "duplicated")

    def test_upgrade_keeps_every_session(self):
        vms = [FakeVM(self.node, name="vm-%d" % i).ready() for i in range(3)]
        for i in range(3):
            self.node.wait_listed("vm-%d" % i)
        people = [[self.person("vm-%d" % i), self.person("vm-%d" % i)]
                  for i in range(3)]
        self.stream(vms, people, 200, b"a")
        # A partial line typed before, the rest after: one line at the VM.
        people[0][0].send(b"half-")
        time.sleep(0.2)
        self.assertEqual(vms[0].wait_data(5), b"half-")
        # Someone in the escape menu: the menu survives, and output
        # resumes from where it stopped when they leave it.
        esc = self.person("vm-1")
        esc.send(b"\x1d")
        esc.read_until(b"[vm-1]> ", timeout=5)

        for round, how in enumerate(["ctl", "signal", "signal", "ctl"]):
            self.upgrade(how)
            self.stream(vms, people, 300, b"r%d-" % round)
            people[0][0].send(b"line%d\r" % round)
            self.assertEqual(vms[0].wait_data(6), b"line%d\r" % round)
        # The menu still answers, and "c" goes back to the console.
        esc.send(b"c\r")
        vms[1].send(b"back\r\n")
        esc.read_until(b"back\r\n", timeout=5)
        for vm in vms:
            vm.poll(0.1)
            self.assertFalse(vm.closed, "a VM connection was closed")
        for ps in people:
            for p in ps:
                self.assertFalse(p.closed, "a person was disconnected")

    def test_attached_vspcctl_stays(self):
        """A tool attached over the control socket (what vspcctl attach
        speaks) keeps its connection across upgrades; the offsets of
        what it gets run on without a gap or a repeat, and its keys reach
        the VM."""
        vm = FakeVM(self.node, name="vm-c").ready()
        self.node.wait_listed("vm-c")
        conn = ctlclient.CtlConn(self.node.ctl_socket())
        conn.send(ctlclient.ATTACH, target="vm-c")
        r = conn.recv()
        self.assertTrue(r is not None and r.ok, r.error if r else "closed")
        got, stream, nxt = bytearray(), None, None

        def collect(want):
            end = time.monotonic() + 15
            while not got.endswith(want):
                self.assertLess(time.monotonic(), end,
                                "attached tool: %r" % bytes(got[-200:]))
                r = conn.recv(end - time.monotonic())
                self.assertIsNotNone(r, "the attached tool was "
                                     "disconnected")
                if not r.data:
                    continue
                nonlocal stream, nxt
                if stream is None:
                    stream, nxt = r.stream, r.offset
                self.assertEqual(r.stream, stream, "stream changed")
                self.assertEqual(r.offset, nxt, "gap or repeat")
                nxt += len(r.data)
                got.extend(r.data)

        want = b""
        for round, how in enumerate(["ctl", "signal", "ctl", "signal"]):
            chunk = lines(0, 200, b"c%d-" % round)
            vm.send(chunk)
            want += chunk
            if round < 2:
                collect(chunk)
            # Later rounds: the output is still on its way (in the
            # client's socketpair, the control connection) during the
            # hand-over.
            self.upgrade(how)
            if round >= 2:
                collect(chunk)
            conn.send(ctlclient.INPUT, data=b"key%d" % round)
            self.assertEqual(vm.wait_data(6), b"key%d" % round)
        # The tool stops reading while the VM sends more than the
        # sockets hold: replies wait in the node's output buffer (whose
        # front a bufferevent keeps frozen) when the upgrade happens.
        chunk = lines(0, 30000, b"big-")
        vm.send(chunk)
        want += chunk
        time.sleep(1.0)
        self.upgrade("signal")
        collect(chunk)
        chunk = lines(0, 200, b"end-")
        vm.send(chunk)
        want += chunk
        collect(chunk)
        self.assertEqual(bytes(got), want, "lost or duplicated bytes")
        conn.close()

    def test_vmotions_in_flight_complete(self):
        a = FakeVM(self.node, name="vm-a").ready()
        b = FakeVM(self.node, name="vm-b").ready()
        self.node.wait_listed("vm-a")
        self.node.wait_listed("vm-b")
        pa, pb = self.person("vm-a"), self.person("vm-b")
        # vm-a: PENDING (GOAHEAD sent, destination not connected yet).
        a.sbcmd(BEGIN, b"\x01\x02")
        toka = a.wait_sb(GOAHEAD)
        self.assertIsNotNone(toka)
        # vm-b: PEERED (PEER-OK sent, COMPLETE not yet).
        b.sbcmd(BEGIN, b"\x03\x04")
        tokb = b.wait_sb(GOAHEAD)
        db = FakeVM(self.node, uuid=b.uuid, name="vm-b", peer=tokb)
        self.assertEqual(db.wait_sb(PEER_OK), b"\x03\x04")
        pb.send(b"held-b\r")
        time.sleep(0.2)

        self.upgrade("ctl")

        da = FakeVM(self.node, uuid=a.uuid, name="vm-a", peer=toka)
        self.assertEqual(da.wait_sb(PEER_OK), b"\x01\x02")
        a.close()
        da.sbcmd(COMPLETE, b"\x01\x02")
        b.close()
        db.sbcmd(COMPLETE, b"\x03\x04")
        self.assertEqual(db.wait_data(7), b"held-b\r")
        da.send(b"on-da\r\n")
        db.send(b"on-db\r\n")
        pa.read_until(b"on-da\r\n")
        pb.read_until(b"on-db\r\n")
        self.assertIn("complete", self.node.log())

    def script(self, body):
        fd, path = tempfile.mkstemp(dir=self.node.dir, suffix=".sh")
        os.write(fd, b"#!/bin/sh\n" + body + b"\n")
        os.close(fd)
        os.chmod(path, 0o755)
        return path

    def check_still_serving(self, vm, p, pid, tag):
        self.assertEqual(self.node.pid(), pid)
        vm.send(tag + b"\r\n")
        p.read_until(tag + b"\r\n", timeout=5)
        p.send(b"k")
        self.assertEqual(vm.wait_data(1), b"k")

    def test_failures_keep_the_old_process(self):
        vm = FakeVM(self.node, name="vm-a").ready()
        self.node.wait_listed("vm-a")
        p = self.person("vm-a")
        pid = self.node.pid()
        cases = [
            (["--binary", "/nonexistent"], None, "No such file"),
            (["--binary", self.script(b"exit 3")], None,
             "exited before it was ready"),
            (["--binary", self.script(b"sleep 60")], None,
             "did not start within"),
        ]
        for n, (args, env, why) in enumerate(cases):
            rc, out = self.ctl("node", "upgrade", *args)
            self.assertNotEqual(rc, 0, out)
            self.assertIn(why, out)
            self.assertIn("still serving", out)
            self.check_still_serving(vm, p, pid, b"ok-%d" % n)

    def test_refused_format(self):
        vm = FakeVM(self.node, name="vm-a").ready()
        self.node.wait_listed("vm-a")
        p = self.person("vm-a")
        pid = self.node.pid()
        wrapper = self.script(b"VSPCD_HANDOFF_TEST_VERSION=99 exec %s \"$@\""
                              % harness.VSPCD.encode())
        rc, out = self.ctl("node", "upgrade", "--binary", wrapper)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("reads hand-over formats 99-99, this node writes", out)
        self.check_still_serving(vm, p, pid, b"after-refusal")


if __name__ == "__main__":
    unittest.main(verbosity=2)
