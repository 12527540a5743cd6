# People for the chaos test (test_chaos.py): hundreds of sessions in one
# selector loop, each attached to one VM, either on a node's console port
# (telnet) or over the control protocol on TCP ([control] listen,
# ctlclient.py), and the accounting that turns what they received back
# into the guests' byte offsets (tests/sim/pattern.py text pattern) to
# count bytes missing, duplicated and reordered.
#
# A control-protocol person whose connection ends comes back by itself
# through HAProxy's control frontend and resumes at the byte after the
# last one it received (ATTACH with resume, stream and offset), as
# vspcctl attach does.

import os
import re
import selectors
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import ctlclient  # noqa: E402
import pattern  # noqa: E402  (tests/sim, on the path through harness)

PROMPT = b"? lists): "
ANSWER = re.compile(rb"\[(attached|spy|read-only)[^\]\r\n]*\]\r\n|"
                    rb"\? lists\): ")
NOTICE = re.compile(rb"\r\n\[-- [^\r\n]{0,200} --\]\r\n")


class Session:
    """One TCP connection of a person to one node's console port."""

    kind = "console"

    def __init__(self, person, node, port):
        self.person = person
        self.node = node            # Node name the connection is on.
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.sock.setblocking(False)
        self.tstate = {}
        self.buf = bytearray()      # Before the attach header.
        self.data = bytearray()     # VM output (and notices) after it.
        self.state = "prompt"       # prompt, attaching, retry, attached,
        #                             closed.
        self.retry_at = 0.0
        self.refusals = []
        self.opened = time.monotonic()
        self.attached_at = None
        self.closed_at = None
        self.header = b""

    def send(self, b):
        try:
            self.sock.send(b)
        except OSError:
            pass

    def feed(self, chunk):
        plain, _ = harness.telnet_strip(chunk, self.tstate)
        if self.state == "attached":
            self.data += plain
            return
        self.buf += plain
        self.step()

    def step(self):
        if self.state == "prompt":
            k = self.buf.find(PROMPT)
            if k < 0:
                return
            del self.buf[:k + len(PROMPT)]
            self.ask()
        if self.state == "attaching":
            m = ANSWER.search(self.buf)
            if not m:
                return
            if m.group(1):
                self.header = bytes(self.buf[m.start():m.end()])
                self.data += self.buf[m.end():]
                self.buf.clear()
                self.state = "attached"
                self.attached_at = time.monotonic()
                return
            # Refused (the prompt again): try again in a moment.
            self.refusals.append(bytes(self.buf[:m.start()])[-200:])
            del self.buf[:m.end()]
            self.state = "retry"
            self.retry_at = time.monotonic() + 0.5

    def ask(self):
        p = self.person
        self.send(((p.mode + " ") if p.mode else "").encode() +
                  p.name.encode() + b"\r")
        self.state = "attaching"

    def tick(self, now):
        if self.state == "retry" and now >= self.retry_at:
            self.ask()
            self.step()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class CtlSession:
    """One TCP connection of a person to a control listener, attached to
    the VM over the control protocol; resume=(stream, offset) asks for
    exactly the bytes after the last one shown."""

    kind = "ctl"

    def __init__(self, person, node, addr, resume=None):
        self.person = person
        self.node = node            # Node name, or "haproxy".
        self.state = "attaching"
        try:
            self.sock = socket.create_connection(addr, 2)
            self.sock.setblocking(False)
        except OSError:
            self.sock = socket.socket()
            self.state = "closed"
        self.inbuf = bytearray()
        self.data = bytearray()     # VM output only.
        self.seams = []             # Places in data where the stream may
        #                             not go on (see decode()).
        self.texts = []             # The node's notices.
        self.refusals = []
        self.resume = resume
        self.stream = resume[0] if resume else 0
        self.next_off = resume[1] if resume else None
        self.retry_at = 0.0
        self.opened = time.monotonic()
        self.attached_at = None
        self.closed_at = None
        self.header = b""
        self.ended = False          # The node ended the attach.
        mode = ctlclient.MODE_SPY if person.mode == "spy" else \
            ctlclient.MODE_DEFAULT
        kw = {}
        if resume:
            kw = dict(resume=True, resume_stream=resume[0],
                      resume_offset=resume[1])
        msg = ctlclient.encode_request(ctlclient.ATTACH, target=person.name,
                                       mode=mode, **kw)
        self.pending = struct.pack(">I", len(msg)) + msg
        if self.state != "closed":
            self.flush()

    def send(self, b):
        pass

    def flush(self):
        if not self.pending:
            return
        try:
            n = self.sock.send(self.pending)
            self.pending = self.pending[n:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.pending = b""

    def feed(self, chunk):
        self.inbuf += chunk
        while len(self.inbuf) >= 4:
            n = struct.unpack(">I", self.inbuf[:4])[0]
            if len(self.inbuf) < 4 + n:
                return
            r = ctlclient.Reply(bytes(self.inbuf[4:4 + n]))
            del self.inbuf[:4 + n]
            self.reply(r)

    def reply(self, r):
        if self.state == "attaching":
            if not r.ok:
                self.refusals.append(r.error)
                self.ended = True
                return
            self.state = "attached"
            self.attached_at = time.monotonic()
            self.header = (r.text or "attached").encode()
            if r.node:
                self.node = r.node      # Where HAProxy sent it.
        if r.text:
            self.texts.append(r.text.encode())
            self.seams.append(len(self.data))
        if r.data:
            if r.stream != self.stream or r.offset != self.next_off:
                self.seams.append(len(self.data))
            self.data += r.data
            self.stream = r.stream
            self.next_off = r.offset + len(r.data)
        if not r.more and self.state == "attached":
            self.ended = True

    def tick(self, now):
        self.flush()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Person:
    """Somebody watching one VM; may use several sessions in turn."""

    def __init__(self, vm, name, slot, mode=None):
        self.vm = vm
        self.name = name
        self.slot = slot
        self.mode = mode
        self.sessions = []
        self.comeback = None        # (host, port): a ctl person comes
        #                             back through there.
        self.comeback_at = None

    @property
    def session(self):
        return self.sessions[-1] if self.sessions else None

    def label(self):
        return "%s#%d" % (self.name, self.slot)


class People:
    """Every person's sessions in one selectors loop."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.people = []
        self.on_close = None        # Called with a session that ended.

    def add(self, person):
        self.people.append(person)
        return person

    def connect(self, person, node, port):
        s = Session(person, node, port)
        person.sessions.append(s)
        self.sel.register(s.sock, selectors.EVENT_READ, s)
        return s

    def connect_ctl(self, person, node, port, resume=None):
        """A control-protocol session to 127.0.0.1:port (a node's
        [control] listen, or HAProxy's control frontend)."""
        s = CtlSession(person, node, ("127.0.0.1", port), resume)
        person.sessions.append(s)
        if s.state == "closed":
            s.closed_at = time.monotonic()
            if person.comeback is not None:
                person.comeback_at = time.monotonic() + 0.3
            return s
        self.sel.register(s.sock, selectors.EVENT_READ, s)
        return s

    def _comeback(self, p, now):
        """A control-protocol person whose session ended: again through
        HAProxy, resuming after the last byte it got."""
        last = None
        for s in reversed(p.sessions):
            if getattr(s, "next_off", None) is not None and s.stream:
                last = (s.stream, s.next_off)
                break
        p.comeback_at = None
        self.connect_ctl(p, "haproxy", p.comeback[1], last)

    def poll(self, timeout):
        """Read what is there (waiting up to timeout); returns the
        number of bytes read."""
        n = 0
        for key, _ in self.sel.select(timeout):
            s = key.data
            try:
                chunk = s.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self._closed(s)
                continue
            n += len(chunk)
            s.feed(chunk)
            if getattr(s, "ended", False) and s.state != "closed":
                self._closed(s)
        now = time.monotonic()
        for p in self.people:
            s = p.session
            if s is None:
                continue
            if s.state == "retry" or getattr(s, "pending", None):
                s.tick(now)
            if p.comeback_at is not None and now >= p.comeback_at:
                self._comeback(p, now)
        return n

    def _closed(self, s):
        self.sel.unregister(s.sock)
        s.close()
        was = s.state
        s.state = "closed"
        s.closed_at = time.monotonic()
        if self.on_close and was == "attached":
            self.on_close(s)
        p = s.person
        if getattr(s, "kind", "") == "ctl" and p.comeback is not None and \
                p.session is s:
            p.comeback_at = time.monotonic() + 0.3

    def run_for(self, seconds, tick=None):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.poll(min(left, 0.05))
            if tick:
                tick()

    def attached(self):
        return [p for p in self.people
                if p.session is not None and p.session.state == "attached"]

    def not_attached(self):
        return [p for p in self.people
                if p.session is None or p.session.state != "attached"]

    def close(self):
        for p in self.people:
            for s in p.sessions:
                if s.state != "closed":
                    try:
                        self.sel.unregister(s.sock)
                    except (KeyError, ValueError):
                        pass
                    s.close()
                    s.state = "closed"
        self.sel.close()


# Decoding.

def line_rx(name):
    return re.compile(re.escape(name.encode()) + rb" (\d{10})\r\n")


def _common(a, ai, b, bi, aend=None):
    """Length of the common prefix of a[ai:aend] and b[bi:]."""
    n = min((len(a) if aend is None else aend) - ai, len(b) - bi)
    lo = 0
    step = 4096
    while lo < n:
        m = min(step, n - lo)
        if a[ai + lo:ai + lo + m] == b[bi + lo:bi + lo + m]:
            lo += m
            continue
        if m == 1:
            break
        step = max(1, m // 2)
    return lo


def _anchor(data, start, end, rx, llen, exp):
    """Where data[start:end] starts in the guest's stream, told by its
    first whole line and the bytes before it; None if it has no whole
    line."""
    m = rx.search(data, start, end)
    if not m:
        return None
    frag = m.start() - start
    line_off = int(m.group(1)) * llen
    if frag < llen and line_off - frag >= 0 and \
            data[start:m.start()] == exp[line_off - frag:line_off]:
        return line_off - frag
    return None


def decode(data, name, exp, seams=()):
    """Turn a session's VM bytes (notices removed) back into the guest's
    stream offsets.  exp is the VM's expected pattern from offset 0 far
    enough.  Returns (runs, corrupt): runs is [(offset, length)] in
    arrival order, corrupt the count of bytes that fit nowhere.

    seams are the places in data where the stream may not go on: where a
    notice was, where the node said the stream changed or the offset
    jumped.  A new stream (the owner was lost) starts anywhere in a line,
    and its first bytes can be the very bytes that came next in the old
    one: "cv-00003 00000" then "003 0000000202\r\n" reads as one line
    that goes on with "003 000000020" and misplaces them.  So at a seam
    the piece's own first whole line says where it is; only a piece with
    no whole line before the next seam is taken as going on."""
    llen = len(name) + 13
    rx = line_rx(name)
    runs = []
    corrupt = 0
    pos = 0
    eoff = None
    n_data = len(data)
    cuts = sorted({x for x in seams if 0 < x < n_data})
    ci = 0
    while pos < n_data:
        while ci < len(cuts) and cuts[ci] < pos:
            ci += 1
        limit = n_data
        if ci < len(cuts) and cuts[ci] == pos:
            ci += 1
            nxt = cuts[ci] if ci < len(cuts) else n_data
            if eoff is not None:
                a = _anchor(data, pos, nxt, rx, llen, exp)
                if a is not None:
                    eoff = a
        if ci < len(cuts):
            limit = cuts[ci]
        if eoff is not None and eoff < len(exp):
            n = _common(data, pos, exp, eoff, limit)
            if n > 0:
                if runs and runs[-1][0] + runs[-1][1] == eoff:
                    runs[-1] = (runs[-1][0], runs[-1][1] + n)
                else:
                    runs.append((eoff, n))
                pos += n
                eoff += n
                continue
        # Out of step: the next whole line says where we are.
        m = rx.search(data, pos)
        if not m:
            # A short tail: the expected place, else nowhere.
            corrupt += n_data - pos
            break
        line_off = int(m.group(1)) * llen
        frag = m.start() - pos
        if frag > 0:
            if frag < llen and line_off - frag >= 0 and \
                    data[pos:m.start()] == exp[line_off - frag:line_off]:
                runs.append((line_off - frag, frag))
            else:
                corrupt += frag
        pos = m.start()
        eoff = line_off
        if eoff >= len(exp):
            corrupt += n_data - pos
            break
    return runs, corrupt


def strip_notices(data):
    """The VM bytes without the notices, the notices, and the places in
    the VM bytes where notices were (a new stream starts after one)."""
    data = bytes(data)
    out = bytearray()
    notes = []
    seams = []
    k = 0
    for m in NOTICE.finditer(data):
        out += data[k:m.start()]
        seams.append(len(out))
        notes.append(m.group(0).strip())
        k = m.end()
    out += data[k:]
    return bytes(out), notes, seams


def zero_ranges(seen, lo, hi):
    """The [a, b) ranges of offsets in [lo, hi) never seen."""
    out = []
    for m in re.finditer(rb"\x00+", bytes(seen[lo:hi])):
        out.append((lo + m.start(), lo + m.end()))
    return out


class Account:
    """One person's received offsets, counted per phase.

    bounds is the list of phase boundary offsets of the person's VM:
    phase k covers [bounds[k], bounds[k + 1])."""

    def __init__(self, person, bounds, exp):
        self.person = person
        self.bounds = bounds
        lo, hi = bounds[0], bounds[-1]
        self.lo, self.hi = lo, hi
        self.seen = bytearray(hi)
        nph = len(bounds) - 1
        self.received = [0] * nph
        self.dup = [0] * nph
        self.reordered = [0] * nph
        self.corrupt = 0
        self.notices = []
        self.session_runs = []
        maxend = 0
        for s in person.sessions:
            vm_bytes, notes, seams = strip_notices(s.data)
            seams += getattr(s, "seams", [])
            self.notices += notes + list(getattr(s, "texts", []))
            runs, bad = decode(vm_bytes, person.name, exp, seams)
            self.corrupt += bad
            self.session_runs.append(runs)
            for o, n in runs:
                for k in range(nph):
                    a = max(o, bounds[k])
                    b = min(o + n, bounds[k + 1])
                    if a >= b:
                        continue
                    seg = self.seen[a:b]
                    self.received[k] += b - a
                    self.dup[k] += (b - a) - seg.count(0)
                    if a < maxend:
                        lim = min(b, maxend)
                        self.reordered[k] += self.seen[a:lim].count(0)
                    self.seen[a:b] = b"\x01" * (b - a)
                    maxend = max(maxend, b)
        self.missing = [bounds[k + 1] - bounds[k] -
                        self.seen[bounds[k]:bounds[k + 1]].count(1)
                        for k in range(nph)]

    def missing_ranges(self, k):
        return zero_ranges(self.seen, self.bounds[k], self.bounds[k + 1])


def expected_for(name, upto):
    return pattern.expected(0, upto + 4 * (len(name) + 13), name=name)
