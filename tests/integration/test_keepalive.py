# Half-open connections: every connection accepted on the vm, console and
# compat listeners has TCP keepalive (30 s idle, 10 s interval, three
# probes) and TCP_USER_TIMEOUT, so that a host or person whose machine or
# path died is noticed within about a minute.  The kernel's timers are
# read back with ss(8).

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM  # noqa: E402

UUID = bytes.fromhex("0123456789abcdeffedcba9800000000")


def node_side(port):
    """ss lines of the node's end of established connections on port."""
    out = subprocess.run(["ss", "-tnoH", "state", "established"],
                         capture_output=True, text=True, check=True).stdout
    lines = []
    for ln in out.splitlines():
        w = ln.split()
        if len(w) >= 3 and w[2].endswith(":%d" % port):
            lines.append(ln)
    return lines


@unittest.skipUnless(shutil.which("ss"), "needs ss (iproute2)")
class Keepalive(harness.NodeTest):

    def check(self, port):
        # While the node's last bytes are unacknowledged ss shows the
        # retransmission timer instead ("timer:(on,...)"): wait for it.
        seen = []

        def all_keepalive():
            seen[:] = node_side(port)
            return seen and all("timer:(keepalive," in ln for ln in seen)
        harness.wait_for(all_keepalive, 5, "keepalive on every connection "
                         "of port %d (ss: %r)" % (port, seen))
        return seen

    def test_every_listener(self):
        # The VM's last traffic is after t0: its keepalive timer, read at
        # t1, is due within 30 s of that traffic, so between 30 - (t1 - t0)
        # and 30 s away (the kernel's default would be two hours).
        t0 = time.monotonic()
        vm = FakeVM(self.node, uuid=UUID, name="ka-01").ready()
        ln = self.check(self.node.vm_port)[0]
        waited = time.monotonic() - t0
        p = self.console()
        p.attach("ka-01")
        c = socket.create_connection(("127.0.0.1", self.node.compat_port))
        try:
            m = re.search(r"timer:\(keepalive,([0-9.]+)(ms|sec|min)", ln)
            self.assertIsNotNone(m, ln)
            secs = float(m.group(1)) * {"ms": 0.001, "sec": 1,
                                        "min": 60}[m.group(2)]
            self.assertLessEqual(secs, 30.0, ln)
            self.assertGreaterEqual(secs, 30.0 - waited - 1.0,
                                    "%s (%.1f s after the VM connected)" %
                                    (ln, waited))
            self.check(self.node.console_port)
            harness.wait_for(lambda: node_side(self.node.compat_port), 5,
                             "the compat connection")
            self.check(self.node.compat_port)
        finally:
            c.close()
            vm.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
