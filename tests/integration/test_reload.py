# Configuration on a running node: SIGHUP applies what can change live
# and keeps the running configuration when the file is broken; -n checks
# a file and names the line of an error.

import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM  # noqa: E402


class Reload(harness.NodeTest):

    def hup(self, expect):
        before = self.node.log().count(expect)
        self.node.signal(signal.SIGHUP)
        harness.wait_for(lambda: self.node.log().count(expect) > before, 5,
                         expect)

    def test_live_changes(self):
        vm = FakeVM(self.node, name="web").ready()
        vm.send(b"".join(b"l%02d\r\n" % i for i in range(30)))
        p = self.console()
        p.attach("web")
        got = p.read_until(b"l29\r\n")
        self.assertIn(b"l10\r\n", got)
        self.assertNotIn(b"l09\r\n", got)
        # Fewer replay lines, another accepted URI, a new console port.
        old_port = self.node.console_port
        self.node.console_port = harness.free_port()
        self.node.write_config({"console.replay_lines": "3",
                                "vm.accept_uri": "other-uri"})
        self.hup("configuration reloaded")
        q = harness.Console(self.node)
        self.consoles.append(q)
        q.attach("web")
        self.assertEqual(q.read_for(0.5).count(b"\r\n"), 3)
        with self.assertRaises(OSError):
            harness.Console(self.node, port=old_port)
        # The people already attached stay.
        vm.send(b"still\r\n")
        p.read_until(b"still\r\n")
        refused = FakeVM(self.node, name="x")
        self.assertIsNotNone(refused.wait_sb(0x49))
        ok = FakeVM(self.node, name="y", uri=b"other-uri")
        ok.ready()

    def test_broken_file_keeps_running_config(self):
        with open(self.node.conf, "a") as f:
            f.write("[console]\nreplay_lines = lots\n")
        self.hup("reload failed")
        self.assertRegex(self.node.log(), r"vspcd\.conf:\d+: ")
        vm = FakeVM(self.node, name="web").ready()
        vm.send(b"alive\r\n")
        p = self.console()
        p.attach("web")
        p.read_until(b"alive\r\n")


class Check(unittest.TestCase):

    def run_check(self, text, *args):
        node = harness.Node()
        try:
            with open(node.conf, "w") as f:
                f.write(text)
            r = subprocess.run([harness.VSPCD, "-n", "-f", node.conf] +
                               list(args), capture_output=True, text=True,
                               timeout=10)
            return r, node.conf
        finally:
            node.cleanup()

    def test_error_names_file_and_line(self):
        r, path = self.run_check("[vm]\nlisten = 127.0.0.1:1\n\n"
                                 "[console]\nbogus = 1\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn(path + ":5: ", r.stderr)

    def test_override_error(self):
        r, _ = self.run_check("", "-o", "console.replay_lines=many")
        self.assertEqual(r.returncode, 1)
        self.assertIn("console.replay_lines=many", r.stderr)

    def test_good_config_prints_normalised(self):
        r, _ = self.run_check("[console]\nhistory = 1M\n", "-v")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("[console]", r.stdout)
        self.assertRegex(r.stdout, r"history = (1M|1048576)")


if __name__ == "__main__":
    unittest.main()
