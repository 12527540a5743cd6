# deploy/keepalived.conf passes "keepalived --config-test" for both
# machines of the pair, as is and with each commented-out alternative it
# shows enabled; and the check does catch a broken file, so that passing
# it means something.  keepalived needs the interface of the example to
# exist: eth0 is replaced by one of this machine's interfaces if it has
# no eth0.  No network is touched.  (test_keepalived.py runs the pair.)
# Skipped (77) only when keepalived is not installed or we are not root
# (keepalived runs as root; the example's script_user is root).

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keepalived_util as ku  # noqa: E402

KEEPALIVED = ku.find("keepalived", "KEEPALIVED")


def local_iface():
    """eth0 if this machine has it, else another non-loopback one."""
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        names = []
    if ku.IFACE in names:
        return ku.IFACE
    for n in names:
        if n == "lo":
            continue
        try:
            with open("/sys/class/net/%s/flags" % n) as f:
                if int(f.read(), 16) & 0x8:     # IFF_LOOPBACK
                    continue
        except (OSError, ValueError):
            continue
        return n
    return None


class KeepalivedConfigTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vspcd-keepalived-")
        self.iface = local_iface()

    def tearDown(self):
        subprocess.call(["rm", "-rf", self.dir])

    def config_test(self, text, name="keepalived.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([KEEPALIVED, "--config-test", "-f", path],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def assertGood(self, text, what):
        rc, out = self.config_test(text)
        self.assertEqual((rc, out.strip()), (0, ""),
                         "%s: keepalived --config-test failed or warned"
                         % what)

    def test_both_machines(self):
        for m in (1, 2):
            self.assertGood(ku.render(m, iface=self.iface), "machine %d" % m)

    def test_second_machine_differs_where_marked(self):
        one = ku.render(1).split("\n")
        two = ku.render(2).split("\n")
        diff = [(a.split("#")[0].strip(), b.split("#")[0].strip())
                for a, b in zip(one, two) if a != b]
        self.assertEqual(diff, [("router_id vspc1", "router_id vspc2"),
                                ("priority 150", "priority 100"),
                                ("unicast_src_ip 10.0.0.11",
                                 "unicast_src_ip 10.0.0.12"),
                                ("10.0.0.12", "10.0.0.11")])

    def test_healthz_check_and_haproxy_check(self):
        # The /healthz check instead of the TCP one, and the HAProxy
        # check enabled: what the comments tell an operator to do.
        for m in (1, 2):
            text = ku.render(m, iface=self.iface)
            text = ku.comment_out(text, ['script "/usr/bin/timeout'])
            text = ku.uncomment(text, ['script "/usr/bin/curl',
                                       "vrrp_script chk_haproxy",
                                       "\tscript \"/bin/pidof",
                                       "\tinterval", "\tfall", "\trise",
                                       "}", "chk_haproxy"])
            self.assertIn("/usr/bin/curl -fsS", text)
            self.assertNotIn("#vrrp_script", text)
            self.assertGood(text, "machine %d with /healthz" % m)

    def test_broken_file_is_caught(self):
        text = ku.render(1, iface=self.iface)
        for bad in (text.replace("priority 150", "priority 1500"),
                    text.replace("/usr/bin/timeout", "/usr/bin/no-such"),
                    text.replace("virtual_router_id 51",
                                 "virtual_router_idd 51")):
            self.assertNotEqual(bad, text)
            rc, out = self.config_test(bad)
            self.assertNotEqual(rc, 0, out)


if __name__ == "__main__":
    if not KEEPALIVED or not os.access(KEEPALIVED, os.X_OK):
        print("SKIP: keepalived not installed (Debian: apt-get install "
              "keepalived; deploy/bootstrap.sh check installs it)")
        sys.exit(77)
    if os.geteuid() != 0:
        # keepalived runs as root; checked by another user, it calls the
        # example's root-owned check script insecure.
        print("SKIP: keepalived --config-test of this file needs root")
        sys.exit(77)
    if local_iface() is None:
        print("SKIP: no network interface but loopback for keepalived")
        sys.exit(77)
    unittest.main()
