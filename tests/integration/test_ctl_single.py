# vspcctl and the control socket against one node (no Redis): every
# command in human and JSON output, the read-only socket, attach through
# the control socket (a Python client, and the vspcctl binary on a pty),
# drain.

import json
import os
import pty
import re
import select
import sys
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM, wait_for  # noqa: E402
import ctlclient  # noqa: E402
from ctlclient import CtlConn, vspcctl, vspcctl_json  # noqa: E402


class CtlSingle(harness.NodeTest):

    def setUp(self):
        super().setUp()
        self.sock = os.path.join(self.node.dir, "control.sock")
        self.ro = self.sock + ".ro"
        wait_for(lambda: os.path.exists(self.ro), 5, "control sockets")

    def vm(self, name="vm-ctl"):
        v = FakeVM(self.node, name=name).ready()
        self.node.wait_listed(name)
        return v

    def test_sockets_and_modes(self):
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o660)
        self.assertEqual(os.stat(self.ro).st_mode & 0o777, 0o666)

    def test_cluster_status_single(self):
        st = vspcctl_json(self.sock, "cluster", "status")
        self.assertEqual([n["id"] for n in st["nodes"]], ["n1"])
        self.assertEqual(st["nodes"][0]["state"], "active")
        self.assertEqual(st["store"]["kind"], "local")
        human = vspcctl(self.sock, "cluster", "status").stdout.decode()
        self.assertRegex(human, r"(?m)^n1\s+.*\sactive\s")
        self.assertIn("store: local", human)

    def test_vm_list_show_who_log(self):
        v = self.vm()
        v.send(b"hello from the guest\r\nsecond line\r\n")
        c = self.console()
        c.attach("vm-ctl")
        lst = vspcctl_json(self.sock, "vm", "list")
        [con] = [x for x in lst["consoles"] if x["name"] == "vm-ctl"]
        self.assertEqual(con["owner"], "n1")
        self.assertEqual(con["people"], 1)
        self.assertEqual(con["state"], "connected")
        self.assertIn("vm-ctl", vspcctl(self.sock, "vm", "list")
                      .stdout.decode())
        show = vspcctl_json(self.sock, "vm", "show", "vm-ctl")
        self.assertEqual(show["owner"], "n1")
        self.assertTrue(show["log"].startswith(self.node.logdir))
        self.assertEqual(len(show["persons"]), 1)
        self.assertEqual(show["persons"][0]["mode"], "writer")
        self.assertTrue(show["persons"][0]["addr"].startswith("127.0.0.1"))
        human = vspcctl(self.sock, "vm", "show", "vm-ctl").stdout.decode()
        self.assertRegex(human, r"log:\s+/")
        who = vspcctl_json(self.sock, "who")
        self.assertEqual([p["vm"] for p in who["people"]], ["vm-ctl"])
        who2 = vspcctl_json(self.sock, "who", "vm-ctl")
        self.assertEqual(who2["people"][0]["id"], who["people"][0]["id"])
        wait_for(lambda: b"second line" in vspcctl(
            self.sock, "log", "vm-ctl").stdout, 5, "log to hold the output")
        out = vspcctl(self.sock, "log", "vm-ctl", "--lines", "1").stdout
        self.assertEqual(out, b"second line\r\n")
        p = vspcctl(self.sock, "vm", "show", "no-such-vm", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"no-such-vm", p.stderr)

    def test_log_follow(self):
        v = self.vm()
        v.send(b"before\r\n")
        wait_for(lambda: b"before" in vspcctl(self.sock, "log", "vm-ctl")
                 .stdout, 5, "log")
        import subprocess
        p = subprocess.Popen([ctlclient.VSPCCTL, "-s", self.sock, "log",
                              "vm-ctl", "--follow"], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        try:
            got = bytearray()
            v.send(b"after\r\n")
            end = time.monotonic() + 10
            while b"after" not in got and time.monotonic() < end:
                r, _, _ = select.select([p.stdout], [], [], 0.5)
                if r:
                    got += os.read(p.stdout.fileno(), 4096)
            self.assertIn(b"before", got)
            self.assertIn(b"after", got)
        finally:
            p.kill()
            p.wait()

    def test_disconnect_person_and_vm(self):
        self.vm()
        c1 = self.console()
        c1.attach("vm-ctl")
        c2 = self.console()
        c2.attach("vm-ctl")
        who = vspcctl_json(self.sock, "who", "vm-ctl")
        self.assertEqual(len(who["people"]), 2)
        first = who["people"][0]
        out = vspcctl_json(self.sock, "disconnect", first["id"])
        self.assertIn("disconnected", out["message"])
        wait_for(lambda: len(vspcctl_json(self.sock, "who", "vm-ctl")
                             ["people"]) == 1, 5, "one person left")
        vspcctl(self.sock, "disconnect", "vm-ctl")
        wait_for(lambda: not vspcctl_json(self.sock, "who", "vm-ctl")
                 ["people"], 5, "nobody left")
        c2.read_until(b"disconnected by an operator")

    def test_drain(self):
        v = self.vm()
        old = self.console()
        old.attach("vm-ctl")
        out = vspcctl_json(self.sock, "node", "drain")
        self.assertTrue(out["draining"])
        st = vspcctl_json(self.sock, "cluster", "status")
        self.assertEqual(st["nodes"][0]["state"], "draining")
        new = self.console()
        new.read_until(b"draining")
        # The session that was there keeps working both ways.
        old.send(b"typed while draining")
        self.assertEqual(v.wait_data(20), b"typed while draining")
        v.send(b"output while draining")
        old.read_until(b"output while draining")
        # No new attach through the control socket either.
        p = vspcctl(self.sock, "attach", "vm-ctl", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"draining", p.stderr)
        vspcctl(self.sock, "node", "undrain")
        st = vspcctl_json(self.sock, "cluster", "status")
        self.assertEqual(st["nodes"][0]["state"], "active")
        c = self.console()
        c.attach("vm-ctl", "spy")

    def test_reload(self):
        out = vspcctl_json(self.sock, "reload")
        self.assertIn("reloaded", out["message"])
        with open(self.node.conf, "a") as f:
            f.write("[console]\nreplay_lines = many\n")
        p = vspcctl(self.sock, "reload", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"reload failed", p.stderr)

    def test_read_only_socket(self):
        self.vm()
        for args in (["node", "drain"], ["node", "undrain"], ["reload"],
                     ["disconnect", "vm-ctl"]):
            p = vspcctl(self.ro, *args, check=False)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn(b"read-only", p.stderr)
        st = vspcctl_json(self.ro, "cluster", "status")
        self.assertEqual(st["nodes"][0]["state"], "active")
        self.assertEqual(len(vspcctl_json(self.ro, "vm", "list")
                             ["consoles"]), 1)
        c = CtlConn(self.ro)
        r = c.request(ctlclient.ATTACH, target="vm-ctl",
                      mode=ctlclient.MODE_FORCE)
        self.assertFalse(r.ok)
        self.assertIn("read-only", r.error)
        c.close()
        c = CtlConn(self.ro)
        r = c.request(ctlclient.ATTACH, target="vm-ctl",
                      mode=ctlclient.MODE_RO)
        self.assertTrue(r.ok, r.error)
        who = vspcctl_json(self.sock, "who", "vm-ctl")
        self.assertEqual(who["people"][0]["mode"], "read-only")
        c.send(ctlclient.ESCAPE, arg="force")
        c.read_data_until(b"read-only control socket")
        c.close()

    def test_protocol_version(self):
        c = CtlConn(self.sock)
        r = c.request(ctlclient.VM_LIST, version=99)
        self.assertFalse(r.ok)
        self.assertIn("version", r.error)
        self.assertEqual(r.version, ctlclient.PROTOCOL)
        c.close()

    def test_attach_python_client(self):
        v = self.vm()
        v.send(b"boot banner\r\n")
        c = CtlConn(self.sock)
        r = c.request(ctlclient.ATTACH, target="vm-ctl")
        self.assertTrue(r.ok, r.error)
        self.assertTrue(r.more)
        self.assertIn("writer", r.text)
        c.read_data_until(b"boot banner")
        c.send(ctlclient.INPUT, data=b"ls -l\r")
        self.assertEqual(v.wait_data(6), b"ls -l\r")
        v.send(b"total 0\r\n")
        c.read_data_until(b"total 0")
        c.send(ctlclient.ESCAPE, arg="who")
        c.read_data_until(b"(you)")
        c.send(ctlclient.ESCAPE, arg="spy")
        c.read_data_until(b"[spy]")
        c.send(ctlclient.INPUT, data=b"dropped")
        c.send(ctlclient.ESCAPE, arg="write")
        c.read_data_until(b"[attached]")
        c.send(ctlclient.INPUT, data=b"kept")
        self.assertEqual(v.wait_data(4), b"kept")
        c.send(ctlclient.ESCAPE, arg="d")
        end = None
        while True:
            r = c.recv()
            if r is None or not r.more:
                end = r
                break
        self.assertIsNotNone(end)
        self.assertIn("detached", end.text)
        wait_for(lambda: not vspcctl_json(self.sock, "who", "vm-ctl")
                 ["people"], 5, "the session to end")
        c.close()

    def test_attach_vspcctl_pty(self):
        v = self.vm()
        v.send(b"login: ")
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(ctlclient.VSPCCTL, [ctlclient.VSPCCTL, "-s", self.sock,
                                         "attach", "vm-ctl"])
        try:
            got = bytearray()

            def read_until(what, timeout=10):
                end = time.monotonic() + timeout
                while what not in got:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise AssertionError("pty: %r not seen; got %r"
                                             % (what, bytes(got)))
                    r, _, _ = select.select([fd], [], [], left)
                    if r:
                        try:
                            got.extend(os.read(fd, 4096))
                        except OSError:
                            raise AssertionError("pty closed; got %r"
                                                 % bytes(got))
            read_until(b"login: ")
            # Raw mode: no echo by the terminal, keys go one by one.
            attrs = termios.tcgetattr(fd)
            self.assertFalse(attrs[3] & termios.ICANON)
            self.assertFalse(attrs[3] & termios.ECHO)
            os.write(fd, b"root\r")
            self.assertEqual(v.wait_data(5), b"root\r")
            v.send(b"Password: ")
            read_until(b"Password: ")
            os.write(fd, b"\x1d")
            read_until(b"[vm-ctl]> ")
            os.write(fd, b"d\r")
            read_until(b"detached")
            _, status = os.waitpid(pid, 0)
            pid = 0
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
            # The terminal is back as it was: canonical, echoing.
            attrs = termios.tcgetattr(fd)
            self.assertTrue(attrs[3] & termios.ICANON)
            self.assertTrue(attrs[3] & termios.ECHO)
        finally:
            if pid:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            os.close(fd)


if __name__ == "__main__":
    unittest.main()
