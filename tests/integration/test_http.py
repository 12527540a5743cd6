# The HTTP listener of a live node: /metrics in the Prometheus text
# exposition format, checked strictly and against what the test did to
# the node (VMs, people, bytes, vMotions, a slow person), and /healthz as
# a load balancer sees it (200, then 503 while draining or without a VM
# listener).

import http.client
import math
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM  # noqa: E402

BEGIN, GOAHEAD, NOTNOW, PEER, PEER_OK, COMPLETE = (
    0x28, 0x29, 0x2b, 0x2c, 0x2d, 0x2e)

VSPCCTL = os.environ.get("VSPCCTL", os.path.join(harness.TOP_BUILDDIR,
                                                "vspcctl"))

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s)(?:,(?:%s))*\})? (\S+)$" %
                    (NAME, LABEL, LABEL))
HELP = re.compile(r"^# HELP (%s) (.*)$" % NAME)
TYPE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|"
                  r"untyped)$" % NAME)
LABELS = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_value(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", text):
        raise AssertionError("bad sample value %r" % text)
    return float(text)


def parse_exposition(text):
    """Parse Prometheus text format strictly.  Returns {family: {"type",
    "help", "samples": [(name, labels dict, value)]}}; raises
    AssertionError on anything a strict parser would refuse."""
    if not text.endswith("\n"):
        raise AssertionError("exposition does not end with a newline")
    fams = {}
    seen_samples = set()
    current = None
    finished = set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d %r" % (n, line)
        if line == "":
            raise AssertionError("empty %s" % where)
        if line.startswith("#"):
            m = HELP.match(line) or TYPE.match(line)
            if not m:
                raise AssertionError("bad comment %s" % where)
            fam = m.group(1)
            if fam in finished or (fam in fams and fams[fam]["samples"]):
                raise AssertionError("HELP/TYPE after samples, %s" % where)
            if current is not None and current != fam:
                finished.add(current)
            current = fam
            f = fams.setdefault(fam, {"type": None, "help": None,
                                      "samples": []})
            key = "help" if line.startswith("# HELP") else "type"
            if f[key] is not None:
                raise AssertionError("second %s, %s" % (key, where))
            f[key] = m.group(2)
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("bad sample %s" % where)
        name, labeltext, value = m.group(1), m.group(2) or "", m.group(3)
        fam = name
        if current is not None and fams[current]["type"] == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                if name == current + suffix:
                    fam = current
        if fam != current or fam not in fams:
            raise AssertionError("sample outside its family (no HELP/TYPE "
                                 "just before it), %s" % where)
        f = fams[fam]
        if f["type"] is None or f["help"] is None:
            raise AssertionError("sample before HELP and TYPE, %s" % where)
        labels = dict(LABELS.findall(labeltext))
        key = (name, tuple(sorted(labels.items())))
        if key in seen_samples:
            raise AssertionError("duplicate sample %s" % where)
        seen_samples.add(key)
        f["samples"].append((name, labels, parse_value(value)))
    for fam, f in fams.items():
        if not f["samples"]:
            raise AssertionError("family %s has no samples" % fam)
        if not fam.startswith("vspcd_"):
            raise AssertionError("%s is not prefixed vspcd_" % fam)
        if f["type"] == "counter":
            if not fam.endswith("_total"):
                raise AssertionError("counter %s not named _total" % fam)
            for _, _, v in f["samples"]:
                if v < 0 or math.isnan(v):
                    raise AssertionError("counter %s is %r" % (fam, v))
        if f["type"] == "histogram":
            check_histogram(fam, f["samples"])
    return fams


def check_histogram(fam, samples):
    buckets = [(s[1]["le"], s[2]) for s in samples
               if s[0] == fam + "_bucket"]
    counts = [s[2] for s in samples if s[0] == fam + "_count"]
    sums = [s[2] for s in samples if s[0] == fam + "_sum"]
    if len(counts) != 1 or len(sums) != 1 or not buckets:
        raise AssertionError("%s: needs buckets, one _sum, one _count" % fam)
    if buckets[-1][0] != "+Inf":
        raise AssertionError("%s: last bucket is not +Inf" % fam)
    les = [parse_value(le) for le, _ in buckets]
    if les != sorted(les) or len(set(les)) != len(les):
        raise AssertionError("%s: bucket bounds not increasing" % fam)
    vals = [v for _, v in buckets]
    if vals != sorted(vals):
        raise AssertionError("%s: buckets not cumulative: %r" % (fam, vals))
    if vals[-1] != counts[0]:
        raise AssertionError("%s: +Inf bucket %r != count %r" %
                             (fam, vals[-1], counts[0]))
    if sums[0] < 0:
        raise AssertionError("%s: negative sum" % fam)


class Metrics:
    """One scrape: value lookup by name and labels."""

    def __init__(self, text):
        self.text = text
        self.fams = parse_exposition(text)
        self.values = {}
        for f in self.fams.values():
            for name, labels, v in f["samples"]:
                self.values[(name, tuple(sorted(labels.items())))] = v

    def __call__(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        if key not in self.values:
            raise AssertionError("no sample %s%r in:\n%s" %
                                 (name, labels, self.text))
        return self.values[key]


class HTTP(harness.NodeTest):

    def setUp(self):
        self.http_port = harness.free_port()
        self.node_extra = {
            "http.listen": "127.0.0.1:%d" % self.http_port,
            "vm.vmotion_token_ttl": "3"}
        super().setUp()

    def get(self, path, method="GET", port=None):
        c = http.client.HTTPConnection("127.0.0.1", port or self.http_port,
                                       timeout=5)
        try:
            c.request(method, path)
            r = c.getresponse()
            body = r.read().decode()
            return r.status, r.getheader("Content-Type"), body
        finally:
            c.close()

    def scrape(self):
        status, ctype, body = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        return Metrics(body)

    def wait_metric(self, name, pred, what, **labels):
        harness.wait_for(lambda: pred(self.scrape()(name, **labels)), 10,
                         "%s%r %s" % (name, labels, what))
        return self.scrape()

    def vm(self, name):
        return FakeVM(self.node, name=name).ready()

    def test_idle_node_exposition(self):
        m = self.scrape()
        self.assertEqual(m("vspcd_build_info", version=re.search(
            r'version="([^"]+)"', m.text).group(1)), 1)
        self.assertEqual(m("vspcd_draining"), 0)
        self.assertEqual(m("vspcd_store_shared"), 0)
        self.assertEqual(m("vspcd_store_connected"), 1)
        self.assertEqual(m("vspcd_peer_links"), 0)
        self.assertGreater(m("vspcd_open_fds"), 3)
        self.assertGreaterEqual(m("vspcd_max_fds"), m("vspcd_open_fds"))
        self.assertLessEqual(m("vspcd_start_time_seconds"), time.time())
        self.assertGreater(m("vspcd_start_time_seconds"), time.time() - 600)
        for h in ("vspcd_vmotion_goahead_seconds",
                  "vspcd_vmotion_peer_ok_seconds"):
            self.assertEqual(self.scrape().fams[h]["type"], "histogram")
            les = [s[1]["le"] for s in m.fams[h]["samples"]
                   if s[0] == h + "_bucket"]
            self.assertEqual(parse_value(les[0]), 50e-6)
            self.assertEqual(parse_value(les[-2]), 5.0)
            self.assertEqual(m(h + "_count"), 0)

    def test_three_vms_counted(self):
        vms = [self.vm("m-%d" % i) for i in range(3)]
        m = self.wait_metric("vspcd_vm_connections", lambda v: v == 3,
                             "to be 3")
        # Node.start() probed the VM port too: those were accepted.
        self.assertGreaterEqual(m("vspcd_vm_connections_accepted_total"), 3)
        m = self.wait_metric("vspcd_consoles", lambda v: v == 3, "to be 3",
                             owner="local")
        self.assertEqual(m("vspcd_consoles", owner="remote"), 0)
        self.assertEqual(m("vspcd_vm_connections_refused_total"), 0)
        vms[0].close()
        self.wait_metric("vspcd_vm_connections", lambda v: v == 2,
                         "to be 2 after one closed")

    def test_bytes_and_people(self):
        vm = self.vm("bytes-vm")
        p = self.console()
        p.attach("bytes-vm")
        out = b"0123456789abcdef\r\n" * 500
        vm.send(out)
        p.read_until(out[-100:])
        typed = b"typed by a person"
        p.send(typed)
        self.assertEqual(vm.wait_data(len(typed)), typed)
        m = self.scrape()
        self.assertEqual(m("vspcd_people_connected", kind="console"), 1)
        self.assertEqual(m("vspcd_people_connected", kind="vspcpy"), 0)
        self.assertEqual(m("vspcd_people_attached"), 1)
        self.assertGreaterEqual(m("vspcd_people_accepted_total"), 1)
        self.assertGreaterEqual(m("vspcd_vm_received_bytes_total"), len(out))
        self.assertGreaterEqual(m("vspcd_people_sent_bytes_total"), len(out))
        self.assertGreaterEqual(m("vspcd_people_received_bytes_total"),
                                len(typed))
        self.assertGreaterEqual(m("vspcd_vm_sent_bytes_total"), len(typed))
        p.close()
        self.wait_metric("vspcd_people_connected", lambda v: v == 0,
                         "to be 0 after the person left", kind="console")

    def test_vmotion_counters_and_histograms(self):
        src = self.vm("moving")
        seq = b"\x11\x22\x33\x44"
        src.sbcmd(BEGIN, seq)
        tok = src.wait_sb(GOAHEAD)
        self.assertIsNotNone(tok, "no GOAHEAD")
        # A second BEGIN while this one is under way: NOTNOW.
        src.sbcmd(BEGIN, b"\x55\x66\x77\x88")
        self.assertEqual(src.wait_sb(NOTNOW), b"\x55\x66\x77\x88")
        m = self.scrape()
        self.assertEqual(m("vspcd_vmotions_in_progress"), 1)
        dst = FakeVM(self.node, uuid=src.uuid, name="moving", peer=tok)
        self.assertEqual(dst.wait_sb(PEER_OK), seq)
        src.close()
        dst.sbcmd(COMPLETE, seq)
        m = self.wait_metric("vspcd_vmotion_complete_total",
                             lambda v: v == 1, "to be 1")
        self.assertEqual(m("vspcd_vmotion_begin_total"), 2)
        self.assertEqual(m("vspcd_vmotion_goahead_total"), 1)
        self.assertEqual(m("vspcd_vmotion_notnow_total"), 1)
        self.assertEqual(m("vspcd_vmotion_peer_total"), 1)
        self.assertEqual(m("vspcd_vmotion_peer_bad_total"), 0)
        self.assertEqual(m("vspcd_vmotion_abort_total"), 0)
        self.assertEqual(m("vspcd_vmotion_timeout_total"), 0)
        self.assertEqual(m("vspcd_vmotions_in_progress"), 0)
        self.assertEqual(m("vspcd_vmotion_goahead_seconds_count"), 1)
        self.assertEqual(m("vspcd_vmotion_peer_ok_seconds_count"), 1)
        self.assertEqual(m("vspcd_vmotion_goahead_seconds_bucket",
                           le="+Inf"), 1)
        self.assertGreater(m("vspcd_vmotion_goahead_seconds_sum"), 0)
        # A token used twice is refused and counted.
        again = FakeVM(self.node, uuid=src.uuid, name="moving", peer=tok)
        self.assertTrue(again.wait_closed(), "reused token accepted")
        m = self.wait_metric("vspcd_vmotion_peer_bad_total",
                             lambda v: v == 1, "to be 1")
        self.assertEqual(m("vspcd_vmotion_peer_total"), 2)
        self.assertEqual(m("vspcd_vmotion_peer_ok_seconds_count"), 1)

    def test_slow_person_skipped_bytes(self):
        vm = self.vm("chatty")
        slow = self.console(rcvbuf=4096)
        slow.attach("chatty")
        self.assertEqual(self.scrape()("vspcd_people_skipped_bytes_total"),
                         0)
        block = bytes(range(256)).replace(b"\xff", b"") * 256
        vm.sock.settimeout(10)
        total = 0
        while total < 8 * 1024 * 1024:
            vm.send(block)
            total += len(block)
        data = slow.read_until(re.compile(rb"\[-- (\d+) bytes skipped --\]"),
                               timeout=10)
        skipped = int(re.search(rb"\[-- (\d+) bytes skipped --\]",
                                data).group(1))
        m = self.scrape()
        self.assertGreaterEqual(m("vspcd_people_skipped_bytes_total"),
                                skipped)
        self.assertGreaterEqual(m("vspcd_vm_received_bytes_total"), total)

    def test_healthz(self):
        status, ctype, body = self.get("/healthz")
        self.assertEqual((status, body), (200, "ok\n"))
        self.assertEqual(self.get("/nothing-here")[0], 404)
        self.assertEqual(self.get("/metrics", method="POST")[0], 405)
        self.assertEqual(self.get("/healthz?probe=1")[0], 200)

    def test_healthz_503_without_vm_listener(self):
        self.node.write_config(dict(self.node_extra, **{"vm.listen": ""}))
        self.node.signal(signal.SIGHUP)
        harness.wait_for(lambda: self.get("/healthz")[0] == 503, 10,
                         "/healthz to say 503")
        self.assertEqual(self.get("/healthz")[2], "no VM listener\n")
        self.node.write_config(self.node_extra)
        self.node.signal(signal.SIGHUP)
        harness.wait_for(lambda: self.get("/healthz")[0] == 200, 10,
                         "/healthz to say 200 again")

    def test_healthz_503_while_draining(self):
        if not os.access(VSPCCTL, os.X_OK):
            self.skipTest("vspcctl not built: drain is set through it")
        sock = os.path.join(self.node.dir, "control.sock")

        def ctl(*args):
            r = subprocess.run([VSPCCTL, "-s", sock] + list(args),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=10)
            self.assertEqual(r.returncode, 0, r.stdout)

        self.assertEqual(self.get("/healthz")[0], 200)
        ctl("node", "drain")
        status, _, body = self.get("/healthz")
        self.assertEqual((status, body), (503, "draining\n"))
        self.assertEqual(self.scrape()("vspcd_draining"), 1)
        ctl("node", "undrain")
        status, _, body = self.get("/healthz")
        self.assertEqual((status, body), (200, "ok\n"))
        self.assertEqual(self.scrape()("vspcd_draining"), 0)

    def test_reload_moves_listener(self):
        new = harness.free_port()
        extra = dict(self.node_extra,
                     **{"http.listen": "127.0.0.1:%d" % new})
        self.node.write_config(extra)
        self.node.signal(signal.SIGHUP)
        harness.wait_for(lambda: self.try_get(new) == 200, 10,
                         "the new HTTP port to answer")
        self.assertIsNone(self.try_get(self.http_port),
                          "old HTTP port still open")
        # Empty: off.
        self.node.write_config(dict(extra, **{"http.listen": ""}))
        self.node.signal(signal.SIGHUP)
        harness.wait_for(lambda: self.try_get(new) is None, 10,
                         "the HTTP port to close")
        self.assertIn("no longer listening for http", self.node.log())

    def try_get(self, port):
        try:
            return self.get("/healthz", port=port)[0]
        except OSError:
            return None


class ClusterHTTP(unittest.TestCase):
    """Two nodes sharing a Redis: store and peer-link figures, and a
    Redis outage that leaves /healthz at 200 (the nodes still serve their
    own consoles) while vspcd_store_connected goes to 0."""

    def setUp(self):
        import cluster
        if not os.access(cluster.REDIS_SERVER, os.X_OK):
            self.skipTest("no redis-server")
        self.c = cluster.Cluster(n=2, haproxy=False)
        self.ports = {}
        for n in self.c.nodes:
            self.ports[n.name] = harness.free_port()
            n.write_config(dict(n.extra, **{
                "http.listen": "127.0.0.1:%d" % self.ports[n.name]}))
        self.c.start()

    def tearDown(self):
        failed = harness.test_failed(self)
        if failed:
            sys.stderr.write(self.c.logs())
        self.c.cleanup()

    def scrape(self, n):
        c = http.client.HTTPConnection("127.0.0.1", self.ports[n.name],
                                       timeout=5)
        try:
            c.request("GET", "/metrics")
            return Metrics(c.getresponse().read().decode())
        finally:
            c.close()

    def health(self, n):
        c = http.client.HTTPConnection("127.0.0.1", self.ports[n.name],
                                       timeout=5)
        try:
            c.request("GET", "/healthz")
            return c.getresponse().status
        finally:
            c.close()

    def test_store_and_peer_links(self):
        for n in self.c.nodes:
            harness.wait_for(lambda: self.scrape(n)("vspcd_peer_links") == 1,
                             15, "%s to have its peer link up" % n.name)
            m = self.scrape(n)
            self.assertEqual(m("vspcd_store_shared"), 1)
            self.assertEqual(m("vspcd_store_connected"), 1)
        self.c.redis.stop()
        for n in self.c.nodes:
            harness.wait_for(
                lambda: self.scrape(n)("vspcd_store_connected") == 0, 15,
                "%s to see Redis gone" % n.name)
            self.assertEqual(self.health(n), 200)
        self.c.redis.start()
        for n in self.c.nodes:
            harness.wait_for(
                lambda: self.scrape(n)("vspcd_store_connected") == 1, 15,
                "%s to see Redis back" % n.name)


class Parser(unittest.TestCase):
    """The strict parser refuses what Prometheus would."""

    GOOD = ("# HELP vspcd_x_total X.\n# TYPE vspcd_x_total counter\n"
            "vspcd_x_total 1\n")

    def test_accepts_good(self):
        parse_exposition(self.GOOD)

    def test_refuses(self):
        bad = [
            self.GOOD[:-1],
            "vspcd_x_total 1\n",
            "# TYPE vspcd_x_total counter\nvspcd_x_total 1\n",
            self.GOOD + "vspcd_x_total 2\n",
            self.GOOD.replace("_total", ""),
            self.GOOD.replace(" 1\n", " one\n"),
            "# HELP vspcd_h H.\n# TYPE vspcd_h histogram\n"
            'vspcd_h_bucket{le="1"} 2\nvspcd_h_bucket{le="+Inf"} 1\n'
            "vspcd_h_sum 1\nvspcd_h_count 1\n",
            "# HELP vspcd_h H.\n# TYPE vspcd_h histogram\n"
            'vspcd_h_bucket{le="1"} 1\nvspcd_h_bucket{le="+Inf"} 2\n'
            "vspcd_h_sum 1\nvspcd_h_count 3\n",
        ]
        for text in bad:
            with self.assertRaises(AssertionError, msg=text):
                parse_exposition(text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
