# The chaos test: consoles never go dark.
#
# Three vspcd nodes, Redis and HAProxy on loopback (cluster.py); hundreds
# of simulated VMs (one esxisim, -n, connecting through HAProxy) streaming
# the text pattern, whose every line says its own offset; people attached
# to every VM through every node (chaos_people.py, one selector loop):
# on the control protocol over TCP ([control] listen) with resume, which
# come back through HAProxy's control frontend when their connection
# ends, and on the console port (telnet); vMotions all the time
# (destination: HAProxy, so most cross nodes).  Phases, each a few tens
# of seconds:
#
#   1 steady    nothing happens
#   2 vmotion   vMotions only
#   3 upgrade   every node hot-upgraded in turn, by vspcctl node upgrade
#               and by SIGUSR2 in turn (the serving pid is followed)
#   4 kill      kill -9 of one node, ESXi reconnects its VMs through
#               HAProxy, its people (all on the control protocol) resume
#               through HAProxy, then the node is restarted
#   5 redis     Redis stopped and started again on the same port, empty
#               (no persistence: the harder case, nodes republish)
#
# At the end every person's bytes are decoded back into guest offsets and
# one table per phase is printed: bytes sent by guests, received by
# people, missing, duplicated, reordered.  Phases 1, 2, 3 and 5 must show
# zero.  Phase 4 may lose only what was in flight on the killed node's
# own connections: bytes a VM connected to it sent from one second before
# the kill until ESXi saw the connection close (and, for console-port
# people whose TCP connection was on it, if any, what the VM sent from
# one second before the kill until they were attached again); people
# there on the control protocol resume and lose nothing of their own; no
# duplicates or reordering anywhere.  The test prints and checks that.
#
# CHAOS_PHASES=1,2,4,5 runs some phases only (in that order);
# CHAOS_VMS, CHAOS_RATE, CHAOS_SECONDS scale it.  CHAOS_KEEP=1 prints the
# node logs' tails even when it passes.

import os
import random
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import harness  # noqa: E402
import chaos_people as cp  # noqa: E402
from harness import wait_for  # noqa: E402

VSPCCTL = os.environ.get("VSPCCTL", os.path.join(harness.TOP_BUILDDIR,
                                                 "vspcctl"))
PHASES = {1: "steady", 2: "vmotion", 3: "upgrade", 4: "kill -9",
          5: "redis restart"}
NVMS = int(os.environ.get("CHAOS_VMS", "240"))
RATE = int(os.environ.get("CHAOS_RATE", "200"))         # bytes/s per VM
SECONDS = float(os.environ.get("CHAOS_SECONDS", "20"))  # per phase
PREFIX = "cv-"
VMOTION_INFLIGHT = 6        # vMotions running at once
VMOTION_PER_SEC = 8.0       # ...started at most this often
KILLED = 1                  # Index of the node killed in phase 4 (n2).
WINDOW = 1.0                # In-flight window before the kill, seconds.


def phases_wanted():
    s = os.environ.get("CHAOS_PHASES", "1,2,3,4,5")
    out = [int(x) for x in s.split(",") if x.strip()]
    for p in out:
        if p not in PHASES:
            raise SystemExit("CHAOS_PHASES: no phase %d" % p)
    return out


def say(fmt, *args):
    sys.stdout.write("[%7.2f] %s\n" % (time.monotonic() - T0,
                                       fmt % args if args else fmt))
    sys.stdout.flush()


T0 = time.monotonic()


def control_listen_supported():
    """Whether this vspcd knows [control] listen (people over the control
    protocol with resume).  Asked of vspcd -n, not guessed."""
    d = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                     "chaos-probe-%d.conf" % os.getpid())
    with open(d, "w") as f:
        f.write("[control]\nlisten = 127.0.0.1:%d\n" % cluster.free_port())
    try:
        p = subprocess.run([harness.VSPCD, "-n", "-f", d],
                           capture_output=True, timeout=10)
        return p.returncode == 0, p.stderr.decode(errors="replace").strip()
    finally:
        os.unlink(d)


class Driver:
    """The simulator's events, the VMs' state, the people, the phases."""

    def __init__(self, test, cl):
        self.test = test
        self.cl = cl
        self.people = cp.People()
        self.people.on_close = self.person_closed
        self.sim = None
        self.phase = 0
        self.vm_busy = set()         # vMotion running
        self.vm_check = {}           # VM -> time to check it is connected
        self.vm_want_connect = set()
        self.reconnects = {}         # phase -> {VM: count}
        self.closed_events = []      # (time, phase, VM, reason, role)
        self.vmotions = {}           # phase -> {"ok": n, "fail:DETAIL": n}
        self.vmotion_on = False
        self.next_vmotion = 0.0
        self.stats = {}
        self.pongs = set()
        self.errors = []
        self.unexpected_closes = []  # people sessions closed by surprise
        self.expect_close_node = None
        self.allready = None

    # The simulator.

    def start_sim(self):
        self.sim = harness.Sim(None, ["-n", str(NVMS), "-p", PREFIX,
                                      "--rate", str(RATE),
                                      "--connect-rate", "400",
                                      "--max-pending", "64"],
                               host=self.cl.vm_target)
        end = time.monotonic() + 60
        while self.allready is None:
            if time.monotonic() > end:
                raise AssertionError("esxisim: no allready in 60s")
            self.pump(0.1)
        say("esxisim: %s", self.allready)

    def pump(self, timeout=0.0):
        """Handle the simulator's events; wait up to timeout for one."""
        first = True
        while True:
            try:
                line = self.sim.events.get(timeout=timeout) if first and \
                    timeout > 0 else self.sim.events.get_nowait()
            except Exception:
                break
            first = False
            if line is None:
                raise AssertionError("esxisim exited: %s" %
                                     "".join(self.sim.err[-20:]))
            self.event(line)
        now = time.monotonic()
        for v, t in list(self.vm_check.items()):
            if now >= t:
                del self.vm_check[v]
                self.vm_want_connect.add(v)
                self.sim.cmd("stats %d" % v)

    def event(self, line):
        w = line.split()
        if not w:
            return
        ev = w[0]
        if ev == "stats" and w[1] != "all":
            v = int(w[1])
            kv = dict(x.split("=", 1) for x in w[2:])
            self.stats[v] = kv
            if v in self.vm_want_connect:
                self.vm_want_connect.discard(v)
                if kv.get("conn") == "0" and kv.get("vmotion") == "0":
                    self.sim.cmd("connect %d" % v)
                    self.reconnects.setdefault(self.phase, {})
                    self.reconnects[self.phase][v] = \
                        self.reconnects[self.phase].get(v, 0) + 1
                    # Check again later: the connection may fail too.
                    self.vm_check[v] = time.monotonic() + 1.0
        elif ev == "pong":
            self.pongs.add(w[1])
        elif ev == "vmotion-done":
            v = int(w[1])
            self.vm_busy.discard(v)
            key = "ok" if w[3] == "ok" else "fail:" + w[4]
            d = self.vmotions.setdefault(self.phase, {})
            d[key] = d.get(key, 0) + 1
            self.vm_check[v] = time.monotonic() + 0.3
        elif ev == "closed":
            v, reason, role = int(w[1]), w[2], w[3]
            self.closed_events.append((time.monotonic(), self.phase, v,
                                       reason, role))
            if reason not in ("vmotion", "local", "vmotion-cleanup"):
                self.vm_check[v] = time.monotonic() + 0.3
        elif ev == "allready":
            self.allready = line
        elif ev == "error":
            self.errors.append((self.phase, line))

    def snapshot(self, tag):
        """Every VM's next pattern offset, now."""
        self.stats = {}
        for v in range(NVMS):
            self.sim.cmd("stats %d" % v)
        self.sim.cmd("ping %s" % tag)
        end = time.monotonic() + 20
        while tag not in self.pongs:
            if time.monotonic() > end:
                raise AssertionError("esxisim: no pong %s" % tag)
            self.pump(0.05)
        return {v: int(self.stats[v]["off"]) for v in range(NVMS)}

    # vMotions.

    def maybe_vmotion(self):
        if not self.vmotion_on:
            return
        now = time.monotonic()
        if now < self.next_vmotion or len(self.vm_busy) >= VMOTION_INFLIGHT:
            return
        self.next_vmotion = now + 1.0 / VMOTION_PER_SEC
        for _ in range(20):
            v = random.randrange(NVMS)
            if v not in self.vm_busy and v not in self.vm_check and \
                    v not in self.vm_want_connect:
                break
        else:
            return
        self.vm_busy.add(v)
        self.sim.cmd("vmotion %d ok dest=%s" % (v, self.cl.vm_target))

    # People.

    def person_closed(self, s):
        """An attached session ended (the node closed it)."""
        # A hot upgrade carries every session: only the killed node's
        # people may lose their connection.
        if s.node != self.expect_close_node:
            self.unexpected_closes.append((self.phase, s.person.label(),
                                           s.node))

    def tick(self):
        self.pump()
        self.maybe_vmotion()

    def run_for(self, seconds):
        self.people.run_for(seconds, self.tick)

    def attach_all(self, people, timeout=60):
        end = time.monotonic() + timeout
        while True:
            left = [p for p in people if p.session.state != "attached"]
            if not left:
                return
            if time.monotonic() > end:
                raise AssertionError(
                    "%d people not attached after %ds, e.g. %s: %s %r" %
                    (len(left), timeout, left[0].label(),
                     left[0].session.state, left[0].session.refusals[-3:]))
            self.people.poll(0.05)
            self.tick()


def node_pid(node):
    """The pid of the node's running process (it changes with a hot
    upgrade): vspcctl -j cluster status, node.pid of the answering node
    (harness Node.pid(), which the harness then follows to stop it); the
    process we started if the node does not say."""
    try:
        return int(node.pid())
    except (AssertionError, OSError, ValueError,
            subprocess.TimeoutExpired):
        pass
    return node.proc.pid if node.proc else None


class ChaosTest(unittest.TestCase):

    def setUp(self):
        # Hundreds of people from 127.0.0.1: no per-source limits.
        self.cl = cluster.Cluster(3, {"console.max_per_source": "0",
                                      "console.max_connections": "0"})
        try:
            self.cl.start()
        except BaseException:
            sys.stderr.write(self.cl.logs() + "\n")
            self.cl.cleanup()
            raise
        self.d = None

    def tearDown(self):
        d = self.d
        if d is not None:
            d.people.close()
            if d.sim is not None:
                d.sim.stop()
        failed = harness.test_failed(self)
        if failed or os.environ.get("CHAOS_KEEP"):
            for n in self.cl.nodes:
                sys.stderr.write("---- vspcd %s log (tail) ----\n%s\n" %
                                 (n.name, cluster.tail(n.stderr_path, 80)))
            sys.stderr.write("---- haproxy log (tail) ----\n%s\n" %
                             cluster.tail(self.cl.haproxy.log_path, 40))
        self.cl.cleanup()

    # Phases.  Each returns notes for the report.

    def phase_steady(self, d):
        d.run_for(SECONDS)

    def phase_vmotion(self, d):
        d.vmotion_on = True
        d.run_for(SECONDS * 1.5)

    def phase_upgrade(self, d):
        d.vmotion_on = True
        d.run_for(3)
        for k, n in enumerate(self.cl.nodes):
            sock = os.path.join(n.dir, "control.sock")
            old = node_pid(n)
            how = "SIGUSR2" if k % 2 else "vspcctl node upgrade"
            say("upgrading %s (pid %s) with %s", n.name, old, how)
            if k % 2:
                os.kill(old, signal.SIGUSR2)
                out = "SIGUSR2"
            else:
                p = subprocess.run([VSPCCTL, "-s", sock, "node", "upgrade"],
                                   capture_output=True, timeout=60)
                out = (p.stdout + p.stderr).decode(errors="replace").strip()
                if p.returncode != 0:
                    raise AssertionError("phase 3: vspcctl node upgrade on "
                                         "%s failed (exit %d): %s" %
                                         (n.name, p.returncode, out))
            new = None
            end = time.monotonic() + 30
            while time.monotonic() < end:
                d.run_for(0.3)
                new = node_pid(n)
                if new and new != old:
                    break
            if not new or new == old:
                raise AssertionError("phase 3: %s still pid %s after "
                                     "upgrade (%s)" % (n.name, old, out))
            say("%s upgraded: pid %s -> %s (%s)", n.name, old, new, out)
            d.run_for(SECONDS / 3)

    def phase_kill(self, d):
        d.vmotion_on = True
        d.run_for(SECONDS / 4)
        victim = self.cl.nodes[KILLED]
        others = [n for n in self.cl.nodes if n is not victim]
        self.pre_kill = d.snapshot("prekill")
        d.run_for(WINDOW)
        pid = node_pid(victim)
        # The people whose connection is on it (before those on the
        # control protocol come back elsewhere by themselves).
        self.killed_people = [p for p in d.people.people
                              if p.session.node == victim.name]
        d.expect_close_node = victim.name
        t_kill = time.monotonic()
        self.t_kill = t_kill
        say("kill -9 %s (pid %s)", victim.name, pid)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        victim.kill9()
        # ESXi sees its connections to the dead node close; wait for those
        # events (and nothing else) before noting where each VM was.
        d.run_for(2.0)
        self.after_close = d.snapshot("afterclose")
        self.killed_vms = sorted({v for (t, ph, v, r, role) in
                                  d.closed_events
                                  if t >= t_kill and r not in
                                  ("vmotion", "local", "vmotion-cleanup")})
        say("%d VM connections closed by the kill; reconnecting them "
            "through HAProxy", len(self.killed_vms))
        # Console-port people attach again through a surviving node's
        # console port; control-protocol people come back by themselves
        # through HAProxy's control frontend and resume.
        tel = [p for p in self.killed_people
               if p.sessions[-1].kind == "console"]
        for k, p in enumerate(tel):
            n = others[k % len(others)]
            d.people.connect(p, n.name, n.console_port)
        d.attach_all(self.killed_people, timeout=60)
        self.reattached = d.snapshot("reattached")
        say("%d people of %s attached again (%d by resume through "
            "HAProxy, %d on a console port)", len(self.killed_people),
            victim.name, len(self.killed_people) - len(tel), len(tel))
        d.run_for(SECONDS / 4)
        say("restarting %s", victim.name)
        victim.start()
        self.cl.settle()
        d.expect_close_node = None
        d.run_for(SECONDS / 2)

    def phase_redis(self, d):
        d.vmotion_on = True
        d.run_for(SECONDS / 4)
        say("redis stop (no persistence: it comes back empty)")
        self.cl.redis.stop()
        d.run_for(3)
        self.cl.redis.start()
        say("redis started again on port %d", self.cl.redis.port)
        d.run_for(SECONDS)

    # The test.

    def test_chaos(self):
        wanted = phases_wanted()
        ctl_tcp, why = control_listen_supported()
        say("chaos: %d VMs at %d B/s, phases %s, %.0fs base phase length",
            NVMS, RATE, wanted, SECONDS)
        if ctl_tcp:
            say("people: on the control protocol over TCP with resume "
                "(all those on %s, half of the others), the rest on the "
                "console port (telnet)", self.cl.nodes[KILLED].name)
        else:
            say("people: console port (telnet).  The control protocol "
                "over TCP with resume is NOT available in this vspcd "
                "(%s): people whose connection was on the killed node "
                "re-attach through the console port of a surviving node, "
                "their gap is reported and bounded, not zero", why)
        d = self.d = Driver(self, self.cl)
        d.start_sim()
        # Every node must know every console before people ask for them.
        for n in self.cl.nodes:
            wait_for(lambda: n.listing().count(PREFIX.encode()) >= NVMS,
                     60, "%s to list %d consoles" % (n.name, NVMS))
        nodes = self.cl.nodes
        for v in range(NVMS):
            name = "%s%05d" % (PREFIX, v)
            p = d.people.add(cp.Person(v, name, 0))
            self.connect_person(d, p, nodes[v % 3], ctl_tcp)
            if v % 4 == 0:
                q = d.people.add(cp.Person(v, name, 1, mode="spy"))
                self.connect_person(d, q, nodes[(v + 1) % 3], ctl_tcp)
        d.attach_all(d.people.people)
        say("%d people attached (%s)", len(d.people.people),
            ", ".join("%s: %d" % (n.name, sum(
                1 for p in d.people.people if p.session.node == n.name))
                for n in nodes))
        d.run_for(2)
        bounds = [d.snapshot("start")]
        ran = []
        failures = []
        for ph in wanted:
            d.phase = ph
            say("phase %d (%s) begins", ph, PHASES[ph])
            try:
                {1: self.phase_steady, 2: self.phase_vmotion,
                 3: self.phase_upgrade, 4: self.phase_kill,
                 5: self.phase_redis}[ph](d)
            except AssertionError as e:
                # Counted all the same; the next phases still run (a
                # phase that failed half-way may leave a node down: the
                # kill phase restarts it, others say so in the table).
                failures.append("phase %d (%s): %s" % (ph, PHASES[ph], e))
                say("FAILED: %s", failures[-1])
                for n in self.cl.nodes:
                    if n.proc is not None and not n.running:
                        say("%s is down after phase %d: restarting it",
                            n.name, ph)
                        n.proc = None
                        n.start()
                d.expect_close_node = None
            bounds.append(d.snapshot("end%d" % ph))
            ran.append(ph)
            say("phase %d ends: vMotions %s, reconnects %d", ph,
                d.vmotions.get(ph, {}),
                sum(d.reconnects.get(ph, {}).values()))
        d.vmotion_on = False
        # Let the last vMotions finish, stop the guests, let the bytes in
        # flight arrive.
        end = time.monotonic() + 20
        while d.vm_busy and time.monotonic() < end:
            d.run_for(0.2)
        for v in range(NVMS):
            d.sim.cmd("stream %d 0" % v)
        final = d.snapshot("final")
        quiet = time.monotonic()
        end = quiet + 30
        while time.monotonic() < end and time.monotonic() - quiet < 2.0:
            if d.people.poll(0.1):
                quiet = time.monotonic()
            d.pump()
        self.report(d, ran, bounds, final, failures)

    def connect_person(self, d, p, n, ctl_tcp):
        """On the control protocol (coming back through HAProxy when its
        connection ends): everybody on the node killed in phase 4 and
        every other VM's people elsewhere; else the console port."""
        if ctl_tcp and (n is self.cl.nodes[KILLED] or p.vm % 2 == 0):
            p.comeback = ("127.0.0.1", self.cl.haproxy.control_port)
            d.people.connect_ctl(p, n.name, n.control_port)
        else:
            d.people.connect(p, n.name, n.console_port)

    # Accounting.

    def report(self, d, ran, bounds, final, failures):
        nph = len(ran)
        exps = {}
        accts = []
        for p in d.people.people:
            if p.vm not in exps:
                exps[p.vm] = cp.expected_for(p.name, final[p.vm])
            b = [bounds[k][p.vm] for k in range(nph + 1)]
            accts.append(cp.Account(p, b, exps[p.vm]))
        problems = list(failures)
        killed_names = set()
        killed_vms = set()
        kill_ok = 4 in ran and hasattr(self, "reattached")
        if kill_ok:
            killed_names = {p.label() for p in self.killed_people}
            killed_vms = set(self.killed_vms)
        lines = []
        lines.append("")
        lines.append("chaos: %d VMs at %d B/s each (text pattern), %d "
                     "people (%d sessions), 3 nodes behind HAProxy, Redis "
                     "without persistence" %
                     (NVMS, RATE, len(d.people.people),
                      sum(len(p.sessions) for p in d.people.people)))
        hdr = "%-22s %12s %12s %9s %9s %9s" % (
            "", "guest sent", "people got", "missing", "dup", "reordered")
        for k, ph in enumerate(ran):
            sent = sum(bounds[k + 1][v] - bounds[k][v] for v in range(NVMS))
            # Expected by people: each person should get every byte of its
            # VM in the phase.
            exp = sum(bounds[k + 1][a.person.vm] - bounds[k][a.person.vm]
                      for a in accts)
            rows = {"all people": [0, 0, 0, 0, 0]}
            if ph == 4 and kill_ok:
                rows = {"on surviving nodes": [0, 0, 0, 0, 0],
                        "on the killed node": [0, 0, 0, 0, 0]}
            for a in accts:
                key = "all people"
                if ph == 4 and kill_ok:
                    key = ("on the killed node"
                           if a.person.label() in killed_names
                           else "on surviving nodes")
                r = rows[key]
                r[0] += bounds[k + 1][a.person.vm] - bounds[k][a.person.vm]
                r[1] += a.received[k]
                r[2] += a.missing[k]
                r[3] += a.dup[k]
                r[4] += a.reordered[k]
            vm = d.vmotions.get(ph, {})
            lines.append("")
            lines.append("phase %d: %s  (guests sent %d bytes; people "
                         "expected %d; vMotions %s; VM reconnects %d)" %
                         (ph, PHASES[ph], sent, exp,
                          ", ".join("%s %d" % kv for kv in
                                    sorted(vm.items())) or "none",
                          sum(d.reconnects.get(ph, {}).values())))
            lines.append(hdr)
            for key, r in rows.items():
                lines.append("%-22s %12d %12d %9d %9d %9d" % (
                    "people " + key if ph == 4 and kill_ok else key,
                    r[0], r[1], r[2], r[3], r[4]))
            if ph != 4 or not kill_ok:
                bad = [a for a in accts if a.missing[k] or a.dup[k] or
                       a.reordered[k]]
                if bad:
                    problems.append(self.describe(ph, k, bad, d))
            else:
                lines += self.check_kill(k, accts, killed_names, killed_vms,
                                         problems, d)
        corrupt = sum(a.corrupt for a in accts)
        lines.append("")
        lines.append("bytes fitting no place of any pattern (corrupt): %d"
                     % corrupt)
        if corrupt:
            problems.append("%d corrupt bytes, e.g. %s" % (
                corrupt, [a.person.label() for a in accts if a.corrupt][:5]))
        other = [x for x in d.unexpected_closes]
        if other:
            problems.append("people disconnected unexpectedly: %s" %
                            other[:10])
        if d.errors:
            lines.append("esxisim errors: %s" % d.errors[:10])
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        if problems:
            self.fail("\n".join(problems))

    def check_kill(self, k, accts, killed_names, killed_vms, problems, d):
        """Phase 4: every byte missing is explained by the killed node's
        own connections, within the in-flight window: the VMs connected
        to it, and the console-port people connected to it (who attach
        anew).  Control-protocol people on it resume: they lose nothing
        of their own."""
        pre, after, reatt = self.pre_kill, self.after_close, self.reattached
        tel_killed = {p.label() for p in self.killed_people
                      if p.sessions[0].kind == "console"}
        lost_vm = lost_person = 0
        bound_vm = sum(after[v] - pre[v] for v in killed_vms)
        bound_person = sum(reatt[a.person.vm] - pre[a.person.vm]
                           for a in accts if a.person.label() in
                           tel_killed)
        bad = []
        for a in accts:
            v = a.person.vm
            for lo, hi in a.missing_ranges(k):
                n = hi - lo
                if v in killed_vms and lo >= pre[v] and hi <= after[v]:
                    lost_vm += n
                elif a.person.label() in tel_killed and \
                        lo >= pre[v] and hi <= reatt[v]:
                    lost_person += n
                else:
                    bad.append((a.person.label(), lo, hi))
        out = []
        out.append("  killed node's VM connections (%d VMs): %d bytes "
                   "lost by people; bound (sent by those VMs from %.0fs "
                   "before the kill until ESXi saw the close, per person) "
                   "%d" % (len(killed_vms), lost_vm, WINDOW, sum(
                       after[a.person.vm] - pre[a.person.vm] for a in accts
                       if a.person.vm in killed_vms)))
        out.append("  killed node's people: %d resumed over the control "
                   "protocol (nothing of their own to lose), %d on its "
                   "console port: %d bytes lost; bound (sent by their VMs "
                   "from %.0fs before the kill until they were attached "
                   "again) %d" %
                   (len(killed_names) - len(tel_killed), len(tel_killed),
                    lost_person, WINDOW, bound_person))
        out.append("  (the VMs sent %d bytes to the killed node in that "
                   "window)" % bound_vm)
        if bad:
            problems.append("phase 4: bytes missing outside the killed "
                            "node's in-flight window: %s" % bad[:10])
            # Where each range lies against the window, and what ESXi
            # saw of the VM's connections around the kill.
            t0 = getattr(self, "t_kill", 0.0)
            for label, lo, hi in bad[:10]:
                v = int(label.split("#")[0].split("-")[1])
                ev = ["%s/%s %+.2fs" % (r, role, t - t0)
                      for (t, ph, vv, r, role) in d.closed_events
                      if vv == v and abs(t - t0) < 30]
                problems.append(
                    "  %s [%d, %d): window [%d, %d], reattached at %d, "
                    "killed VM %s; closes %s" %
                    (label, lo, hi, pre[v], after[v], reatt[v],
                     v in killed_vms, ev[:6]))
            problems.append(self.describe(4, k, [
                a for a in accts if a.person.label() in
                {b[0] for b in bad}], d))
        # Duplicates and reordering: only console-port people of the
        # killed node may see history again (the console port replays
        # recent lines on attach).
        for a in accts:
            if a.person.label() in tel_killed:
                continue
            if a.dup[k] or a.reordered[k]:
                problems.append("phase 4: %s (on %s) dup %d reordered %d" %
                                (a.person.label(), a.person.session.node,
                                 a.dup[k], a.reordered[k]))
        return out

    def describe(self, ph, k, bad, d):
        out = ["phase %d (%s): %d people saw bytes missing, duplicated or "
               "out of order:" % (ph, PHASES[ph], len(bad))]
        for a in bad[:10]:
            out.append("  %s via %s: missing %d %s dup %d reordered %d; "
                       "notices %s" %
                       (a.person.label(), a.person.session.node,
                        a.missing[k], a.missing_ranges(k)[:4], a.dup[k],
                        a.reordered[k], a.notices[:3]))
        for a in bad[:3]:
            for s, runs in zip(a.person.sessions, a.session_runs):
                out.append("    session on %s (%s): header %r, runs %s%s" %
                           (s.node, s.state, s.header, runs[:8],
                            " ..." if len(runs) > 8 else ""))
                # What came around each notice (console port) or each
                # text and change of stream (control protocol), as sent.
                raw = bytes(s.data)
                spots = [(m.start(), m.end()) for m in
                         cp.NOTICE.finditer(raw)]
                spots += [(x, x) for x in sorted(set(getattr(s, "seams",
                                                             [])))
                          if x > 0]
                for lo, hi in spots[:4]:
                    lo, hi = max(0, lo - 60), hi + 60
                    out.append("      raw [%d:%d]: %r" %
                               (lo, hi, raw[lo:hi]))
        vms = sorted({a.person.name for a in bad})[:5]
        keys = set()
        for a in bad[:5]:
            for s in a.person.sessions:
                m = re.search(rb"\(([0-9a-f-]{36})\)", s.header)
                if m:
                    keys.add(m.group(1).decode())
        out.append("  (a byte counts in the phase whose guest offsets it "
                   "carries, whenever it arrived)")
        for n in self.cl.nodes:
            log = n.log()
            hits = [ln for ln in log.splitlines()
                    if any(v in ln for v in vms) or
                    any(k in ln for k in keys)]
            out.append("  %s log lines about %s: %s" %
                       (n.name, vms, "\n    ".join(hits[-25:])))
        return "\n".join(out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
