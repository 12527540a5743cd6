# A cluster losing parts of itself: the node that owns a VM killed with
# SIGKILL (the VM reconnects elsewhere and the people attached through
# surviving nodes follow it without losing their connection; the node,
# restarted, takes nothing back), Redis restarted empty (nodes keep
# serving what is local, refuse remote attaches with a reason, and
# republish when it returns), a slow remote person (never slows the VM
# or the others, skips with a marker), and hostile peers on the peer
# port (closed, logged, nobody else disturbed).

import os
import re
import signal
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cluster  # noqa: E402
from cluster import ask  # noqa: E402
from harness import wait_for  # noqa: E402

UUID = bytes.fromhex("0123456789abcdeffedcba9800000000")
NOTICE = re.compile(rb"\[-- [^\r\n]* --\]")
REASON = re.compile(rb"(?i)redis|store|cluster|unavailable|unreachable|"
                    rb"try again|later")


# Just enough protobuf to speak (badly) on the peer link.

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint((num << 3) | 2) + varint(len(value)) + value


def frame(envelope):
    return struct.pack(">I", len(envelope)) + envelope


def hello(node_id, cluster_name, protocol):
    h = (field(1, node_id) + field(2, cluster_name) + field(3, protocol) +
         field(4, "test") + field(5, os.urandom(32)))
    return frame(field(1, h))


def decode(buf):
    """{field number: [values]} of one protobuf message (varint and
    length-delimited fields only)."""
    out = {}
    i = 0
    while i < len(buf):
        key, i = _varint_at(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint_at(buf, i)
        elif wt == 2:
            n, i = _varint_at(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            break
        out.setdefault(num, []).append(v)
    return out


def _varint_at(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return n, i


class PeerConn:
    """A raw TCP connection to a node's peer port."""

    def __init__(self, node):
        self.sock = socket.create_connection(("127.0.0.1", node.peer_port),
                                             5)
        self.port = self.sock.getsockname()[1]
        self.rx = b""
        self.closed = False

    def send(self, b):
        try:
            self.sock.sendall(b)
        except OSError:
            self.closed = True

    def poll(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
        self.rx += chunk

    def their_hello(self, timeout=2.0):
        """The node's Hello, decoded, if it sent one first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self.closed:
            if len(self.rx) >= 4:
                n = struct.unpack(">I", self.rx[:4])[0]
                if len(self.rx) >= 4 + n:
                    env = decode(self.rx[4:4 + n])
                    if 1 in env:
                        return decode(env[1][0])
                    return None
            self.poll(0.1)
        return None

    def wait_closed(self, timeout=5.0):
        end = time.monotonic() + timeout
        while not self.closed and time.monotonic() < end:
            self.poll(0.1)
        return self.closed

    def close(self):
        self.sock.close()


class OwnerLost(cluster.ClusterTest):

    def test_owner_killed(self):
        hp = self.cluster.haproxy
        s = self.sim("haproxy")
        before = hp.sessions("vspcd-vm")
        s.cmd("add 0 kvm-0 " + UUID.hex())
        s.cmd("connect 0")
        s.expect(r"^ready 0 kvm-0")
        owner = self.cluster.node(hp.server_of_new("vspcd-vm", before))
        b, c = [n for n in self.cluster.nodes if n is not owner]
        b.wait_listed("kvm-0", timeout=15)
        c.wait_listed("kvm-0", timeout=15)
        p = self.console(b)
        self.assertIn(b"[attached", ask(p, "kvm-0"))
        q = self.console(c)
        self.assertIn(b"[spy", ask(q, "kvm-0"))
        s.cmd("send 0 %s" % b"before the crash\r\n".hex())
        p.read_until(b"before the crash\r\n")
        q.read_until(b"before the crash\r\n")

        owner.kill9()
        s.expect(r"^closed 0 \S+ src", timeout=10)
        # The people are told, and stay connected.
        p.read_until(NOTICE, timeout=15)
        q.read_until(NOTICE, timeout=15)
        self.assertFalse(p.closed or q.closed)

        # ESXi reconnects (through HAProxy: a surviving node takes it).
        s.cmd("close 0")
        before = hp.sessions("vspcd-vm")
        s.cmd("connect 0")
        s.expect(r"^ready 0 kvm-0", timeout=15)
        new_owner = hp.server_of_new("vspcd-vm", before)
        self.assertNotEqual(new_owner, owner.name)
        s.cmd("send 0 %s" % b"after the crash\r\n".hex())
        p.read_until(b"after the crash\r\n", timeout=15)
        q.read_until(b"after the crash\r\n", timeout=15)
        self.assertFalse(p.closed or q.closed)
        # Re-attached in the mode they had: the writer still writes.
        p.send(b"still the writer")
        self.assertEqual(cluster.sim_recv(s, 0, 16, timeout=10),
                         b"still the writer",
                         "the writer, re-attached, cannot write")

        # The killed node comes back: it serves people, takes nothing.
        s.drain()
        s.seen.clear()
        owner.start()
        self.cluster.settle()
        owner.wait_listed("kvm-0", timeout=15)
        r = self.console(owner)
        self.assertIn(b"[spy", ask(r, "kvm-0"))
        s.cmd("send 0 %s" % b"after the restart\r\n".hex())
        for x in (p, q, r):
            x.read_until(b"after the restart\r\n", timeout=10)
        time.sleep(3)       # node_timeout: time to (wrongly) take it back.
        s.drain()
        self.assertEqual([e for e in s.seen if e.startswith("closed 0")], [])
        self.assertEqual(hp.sessions("vspcd-vm"), [("vspcd-vm", new_owner)])
        for n in self.cluster.nodes:
            self.assertEqual(n.listing().count(b"kvm-0"), 1, n.name)
        s.cmd("send 0 %s" % b"still here\r\n".hex())
        for x in (p, q, r):
            x.read_until(b"still here\r\n", timeout=10)


class OwnerLostPeople(cluster.ClusterTest):
    """A spy on n3 forwarded to the owner n2; n2 is killed (-9) and the
    VM comes back on another node: the spy is told the owner was lost,
    then where the console is back, and output flows again, whether the
    VM came back on the spy's own node or on a third one."""

    def owner_killed_vm_back_on(self, back):
        n1, n2, n3 = self.cluster.nodes
        s = self.sim(n2)
        s.cmd("add 0 kvm-0 " + UUID.hex())
        s.cmd("connect 0")
        s.expect(r"^ready 0 kvm-0")
        self.wait_listed_everywhere("kvm-0")
        q = self.console(n3)
        self.assertIn(b"[spy", ask(q, "spy kvm-0"))
        w = self.console(n1)
        self.assertIn(b"[attached", ask(w, "kvm-0"))
        s.cmd("send 0 %s" % b"before the crash\r\n".hex())
        q.read_until(b"before the crash\r\n")
        w.read_until(b"before the crash\r\n")
        n2.kill9()
        s.expect(r"^closed 0 \S+ src", timeout=10)
        for x in (q, w):
            x.read_until(re.compile(rb"\[-- owner n2 lost[^\r\n]* --\]"),
                         timeout=15)
        # ESXi reconnects to another node.
        s2 = self.sim(self.cluster.node(back))
        s2.cmd("add 0 kvm-0 " + UUID.hex())
        s2.cmd("connect 0")
        s2.expect(r"^ready 0 kvm-0", timeout=15)
        for x in (q, w):
            x.read_until(re.compile(
                rb"\[-- console back on %s: output from the new start "
                rb"--\]" % back.encode()), timeout=15)
        s2.cmd("send 0 %s" % b"after the crash\r\n".hex())
        for x in (q, w):
            got = x.read_until(b"after the crash\r\n", timeout=15)
            self.assertNotIn(b"before the crash", got)
        self.assertFalse(q.closed or w.closed)
        # Roles kept: the writer writes, the spy does not.
        q.send(b"spy-typed")
        w.send(b"writer-typed")
        self.assertEqual(cluster.sim_recv(s2, 0, 12, timeout=10),
                         b"writer-typed")

    def test_vm_back_on_the_spy_node(self):
        self.owner_killed_vm_back_on("n3")

    def test_vm_back_on_the_writer_node(self):
        self.owner_killed_vm_back_on("n1")


class RedisLost(cluster.ClusterTest):

    def test_redis_restart(self):
        n1, n2, n3 = self.cluster.nodes
        s = self.sim(n1)
        s.cmd("add 0 rvm-a " + UUID.hex())
        s.cmd("connect 0")
        s.expect(r"^ready 0 rvm-a")
        vb = self.fakevm(n2, name="rvm-b")
        self.wait_listed_everywhere("rvm-a")
        self.wait_listed_everywhere("rvm-b")
        local = self.console(n1)
        self.assertIn(b"[attached", ask(local, "rvm-a"))
        # A person forwarded from n3 before the outage.
        early = self.console(n3)
        self.assertIn(b"[spy", ask(early, "spy rvm-a"))
        marks = {n.name: n.log_mark() for n in self.cluster.nodes}

        self.cluster.redis.stop()
        # n1 keeps serving its own console and its own people.
        s.cmd("send 0 %s" % b"during the outage\r\n".hex())
        local.read_until(b"during the outage\r\n")
        local.send(b"local typing")
        self.assertEqual(cluster.sim_recv(s, 0, 12), b"local typing")
        local2 = self.console(n1)
        self.assertIn(b"[spy", ask(local2, "rvm-a"))
        vb.send(b"rvm-b still served\r\n")
        local3 = self.console(n2)
        self.assertIn(b"[attached", ask(local3, "rvm-b"))
        local3.read_until(b"rvm-b still served\r\n")

        # A remote attach is refused, and the person is told why.
        answers = []

        def refused():
            r = self.console(n3)
            a = ask(r, "spy rvm-a")
            answers.append(a)
            r.close()
            return b"[spy" not in a and REASON.search(a)
        wait_for(refused, 10, "a remote attach refused with a reason "
                 "during the outage (answers: %r)" % answers)

        self.cluster.redis.start()
        self.wait_listed_everywhere("rvm-a", timeout=20)
        self.wait_listed_everywhere("rvm-b", timeout=20)
        # The nodes reconnect (with some back-off) and republish; then
        # remote attaches work again.
        remote = self.console(n3)
        answers = []

        def attached():
            a = ask(remote, "spy rvm-a")
            answers.append(a)
            return b"[spy" in a
        wait_for(attached, 20, "a remote attach once Redis is back "
                 "(answers: %r)" % answers)
        s.cmd("send 0 %s" % b"redis is back\r\n".hex())
        remote.read_until(b"redis is back\r\n")
        local.read_until(b"redis is back\r\n")
        # Redis came back empty: the node records were gone for a while,
        # but the peer links were up all along and stayed up, and the
        # person forwarded before the outage was never detached.
        got = early.read_until(b"redis is back\r\n")
        self.assertNotIn(b"lost", got)
        for n in self.cluster.nodes:
            down = [ln for ln in n.log_since(marks[n.name]).splitlines()
                    if "link to node" in ln and "down" in ln]
            self.assertEqual(down, [], n.name)
        # A cross-node vMotion works again; the people follow.
        s.cmd("vmotion 0 ok fin-first dest=127.0.0.1:%d" % n2.vm_port)
        m = s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)", timeout=15)
        self.assertEqual(m.group(2), "ok", m.group(0))
        s.cmd("send 0 %s" % b"moved to n2\r\n".hex())
        remote.read_until(b"moved to n2\r\n")
        local.read_until(b"moved to n2\r\n")


class ClaimNotRecorded(cluster.ClusterTest):
    """A cross-node vMotion whose COMPLETE comes while the store does not
    answer (Redis stopped with SIGSTOP, its data kept): the destination
    owns the console without the store knowing.  The person forwarded
    from a third node follows the console to its new owner at once (the
    old owner says where it went), keeps typing and reading, the claim
    is recorded once Redis answers again, and the old owner's death
    later does not touch the person."""

    node_extra = {"cluster.redis_timeout": "1"}

    def test_vmotion_while_store_stalled(self):
        n1, n2, n3 = self.cluster.nodes
        redis = self.cluster.redis
        s = self.sim(n1)
        s.cmd("add 0 ckvm-0 " + UUID.hex())
        s.cmd("connect 0")
        s.expect(r"^ready 0 ckvm-0")
        self.wait_listed_everywhere("ckvm-0")
        p = self.console(n3)
        self.assertIn(b"[attached", ask(p, "ckvm-0"))
        s.cmd("send 0 %s" % b"before the move\r\n".hex())
        p.read_until(b"before the move\r\n")
        key = [k for k in redis.cmd("KEYS", "*console:*")
               if UUID.hex()[:8] in k.replace("-", "")]
        self.assertEqual(len(key), 1, redis.cmd("KEYS", "*"))
        key = key[0]

        def owner():
            r = redis.cmd("HGET", key, "owner")
            return r
        self.assertEqual(owner(), "n1")
        mark = n2.log_mark()

        # COMPLETE half a second after PEER-OK; Redis stopped meanwhile
        # and for longer than [cluster] redis_timeout.
        s.cmd("vmotion 0 ok fin-first dest=127.0.0.1:%d gap=500" %
              n2.vm_port)
        s.expect(r"^peerok 0 ", timeout=15)
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            m = s.expect(r"^vmotion-done 0 (\S+) (ok|fail) (.*)",
                         timeout=15)
            self.assertEqual(m.group(2), "ok", m.group(0))
            wait_for(lambda: "cannot take ownership after vMotion" in
                     n2.log_since(mark), 10, "n2 to find the store "
                     "unavailable at COMPLETE")
            # The person follows the console to n2 while Redis is away.
            s.cmd("send 0 %s" % b"moved while the store slept\r\n".hex())
            p.read_until(b"moved while the store slept\r\n", timeout=10)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        self.assertFalse(p.closed)
        # The claim is recorded once Redis answers.
        wait_for(lambda: owner() == "n2", 15, "the store to name n2 the "
                 "owner (it says %r)" % owner())
        for n in self.cluster.nodes:
            n.wait_listed("ckvm-0", timeout=15)
        p.send(b"typed on n3")
        self.assertEqual(cluster.sim_recv(s, 0, 11, timeout=10),
                         b"typed on n3")
        # The old owner, a third node for the person now, dies.
        n1.kill9()
        s.cmd("send 0 %s" % b"after n1 died\r\n".hex())
        got = p.read_until(b"after n1 died\r\n", timeout=10)
        time.sleep(4)       # node_timeout: n1 seen down by the others.
        s.cmd("send 0 %s" % b"still attached\r\n".hex())
        got += p.read_until(b"still attached\r\n", timeout=10)
        self.assertNotIn(b"not on node", got)
        self.assertFalse(p.closed)
        p.send(b"typed again")
        self.assertEqual(cluster.sim_recv(s, 0, 11, timeout=10),
                         b"typed again")


class LinkLost(cluster.ClusterTest):

    node_extra = {"cluster.peer_ping": "1"}

    def test_peer_link_lost_and_back(self):
        n1, n2, n3 = self.cluster.nodes
        vm = self.fakevm(n1, uuid=UUID, name="linked")
        self.wait_listed_everywhere("linked")
        p = self.console(n2)
        self.assertIn(b"[attached", ask(p, "linked"))
        vm.send(b"before\r\n")
        p.read_until(b"before\r\n")
        # n1 stops answering (its process is stopped): n2 loses the link
        # and tells the person, who stays connected.
        n1.signal(signal.SIGSTOP)
        try:
            p.read_until(re.compile(rb"owner n1 lost"), timeout=15)
            self.assertFalse(p.closed)
        finally:
            n1.signal(signal.SIGCONT)
        # n1 is back: the link comes back and the person is attached
        # again, still the writer.
        p.read_until(re.compile(rb"console back on n1"), timeout=20)
        vm.send(b"after\r\n")
        p.read_until(b"after\r\n", timeout=10)
        p.send(b"typing again")
        self.assertEqual(vm.wait_data(12, timeout=10), b"typing again")


class SlowRemote(cluster.ClusterTest):

    # A history that covers the forwarding path's slack: the fast person
    # is forwarded across two nodes on a loaded machine.
    node_extra = {"console.history": "4M"}

    def test_slow_remote_person(self):
        n1, n2, n3 = self.cluster.nodes
        vm = self.fakevm(n1, uuid=UUID, name="busy")
        self.wait_listed_everywhere("busy")
        fast = self.console(n2)
        self.assertIn(b"[attached", ask(fast, "busy"))
        slow = self.console(n3, rcvbuf=4096)
        self.assertIn(b"[spy", ask(slow, "busy"))
        # 16 MB, far more than the history and every buffer on the way:
        # the VM must get all of it out (a send blocked for 10 s fails)
        # while the slow person reads nothing.
        block = bytes(range(256)).replace(b"\xff", b"") * 256
        vm.sock.settimeout(10)
        sent = bytearray()
        got = bytearray()
        while len(sent) < 16 * 1024 * 1024:
            vm.send(block)
            sent += block
            # The fast person keeps up: it reads each block as it comes
            # (however loaded the machine), while the slow one reads
            # nothing at all.
            got += fast.read_bytes(len(block), timeout=10)
        self.assertEqual(bytes(got), bytes(sent))
        data = slow.read_until(re.compile(rb"\[-- (\d+) bytes skipped --\]"),
                               timeout=15)
        m = re.search(rb"\[-- (\d+) bytes skipped --\]", data)
        self.assertGreater(int(m.group(1)), 0)
        self.assertFalse(slow.closed)


class BadPeers(cluster.ClusterTest):

    def setUp(self):
        super().setUp()
        self.n1, self.n2, self.n3 = self.cluster.nodes
        self.vm = self.fakevm(self.n1, uuid=UUID, name="calm")
        self.wait_listed_everywhere("calm")
        self.person = self.console(self.n2)
        self.assertIn(b"[attached", ask(self.person, "calm"))
        self.peers = []

    def tearDown(self):
        for p in self.peers:
            p.close()
        super().tearDown()

    def hostile(self, data, then=None):
        """Send data on n1's peer port; expect the connection closed and
        a line about it in n1's log."""
        mark = self.n1.log_mark()
        p = PeerConn(self.n1)
        self.peers.append(p)
        theirs = p.their_hello(1.0)
        p.send(data(theirs) if callable(data) else data)
        if then is not None:
            p.poll(0.3)
            p.send(then)
        self.assertTrue(p.wait_closed(10), "the node kept the connection")
        # Logged: a line naming the connection (its port), or a peer
        # line saying what was wrong.
        port = str(p.port)
        why = re.compile(r"(?i)peer.*(bad|refus|invalid|wrong|too |large|"
                         r"long|reject|error|fail|mismatch|decode|unexpect|"
                         r"auth|cluster)")
        wait_for(lambda: any(port in ln or why.search(ln) for ln in
                             self.n1.log_since(mark).splitlines()), 5,
                 "n1 to log the refused peer")

    def undisturbed(self, tag):
        self.assertTrue(self.n1.running)
        line = b"still calm after %s\r\n" % tag
        self.vm.send(line)
        self.person.read_until(line)
        self.person.send(tag)
        self.assertEqual(self.vm.wait_data(len(tag)), tag)
        r = self.console(self.n3)
        self.assertIn(b"[spy", ask(r, "calm"))
        r.close()

    def proto(self, theirs):
        if theirs and 3 in theirs:
            return theirs[3][0]
        return 1

    def test_garbage(self):
        self.hostile(b"\x00\x00\x00\x10" + b"\xde\xad\xbe\xef" * 4)
        self.undisturbed(b"garbage")

    def test_huge_frame(self):
        self.hostile(struct.pack(">I", 100 * 1024 * 1024) + b"\x0a" * 4096)
        self.undisturbed(b"huge")

    def test_wrong_cluster_name(self):
        self.hostile(lambda t: hello("n9", "not-" + self.cluster.name,
                                     self.proto(t)))
        self.undisturbed(b"wrong-name")

    def test_bad_auth(self):
        # The right name and version, but no knowledge of the secret.
        self.hostile(lambda t: hello("n9", self.cluster.name,
                                     self.proto(t)),
                     then=frame(field(2, field(1, bytes(32)))))
        self.undisturbed(b"bad-auth")

    def test_attach_before_auth(self):
        attach = field(10, field(1, 1) + field(2, UUID.hex()) +
                       field(3, 0) + field(9, 65536))
        self.hostile(lambda t: hello("n9", self.cluster.name,
                                     self.proto(t)),
                     then=frame(attach))
        self.undisturbed(b"early-attach")


if __name__ == "__main__":
    unittest.main()
