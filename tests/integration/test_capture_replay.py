# Replays the ESXi side of a real ESXi <-> vSPC capture (tests/data/
# capture-esxi.txt: a VM powered on, three vMotions, one refused, one
# aborted) against a live node, and checks that the node answers what
# ESXi expects at every step and that an attached person sees the VM's
# output across all four connections, byte for byte.

import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

IAC, SB, SE = 0xff, 0xfa, 0xf0
OFFER = bytes.fromhex("fffb00fffb03fffb01fffd00fffd03fffde8")


def load_capture():
    path = os.path.join(harness.TOP_SRCDIR, "tests", "data",
                        "capture-esxi.txt")
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(" ")
            recs.append((parts[0], parts[1], parts[3] if len(parts) > 3
                         else None))
    return recs


def unescape(b):
    return b.replace(b"\xff\xff", b"\xff")


def escape(b):
    return b.replace(b"\xff", b"\xff\xff")


def parse_sb(data):
    """The option-232 subnegotiations in data, as (cmd, payload)."""
    out = []
    i = 0
    while True:
        k = data.find(b"\xff\xfa\xe8", i)
        if k < 0:
            return out
        j = k + 3
        body = bytearray()
        while j < len(data):
            if data[j] == IAC and j + 1 < len(data):
                if data[j + 1] == SE:
                    break
                body.append(IAC)
                j += 2
                continue
            body.append(data[j])
            j += 1
        out.append((body[0], bytes(body[1:])))
        i = j + 2


class CaptureReplay(harness.NodeTest):

    def read_idle(self, s, idle=0.05, limit=3.0):
        """Everything the node sends until it is quiet for idle seconds."""
        data = bytearray()
        end = time.monotonic() + limit
        s.settimeout(idle)
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def test_replay(self):
        recs = load_capture()
        conns = {}
        got = {}            # conn -> bytes the node sent
        tokens = {}         # seq -> seq||secret from our GOAHEAD
        sent_data = bytearray()
        person = None

        for conn, kind, payload in recs:
            if kind == "open":
                s = socket.create_connection(("127.0.0.1",
                                              self.node.vm_port), 5)
                conns[conn] = s
                got[conn] = bytearray()
                continue
            s = conns[conn]
            if kind == "esxi-fin":
                s.shutdown(socket.SHUT_WR)
                continue
            if kind != "esxi":
                continue
            raw = bytes.fromhex(payload)
            # The destination presents the token our node issued, not the
            # one the captured server issued.
            for cmd, body in parse_sb(raw):
                if cmd == 0x2c:
                    seq = body[:4]
                    self.assertIn(seq, tokens, "PEER for a vMotion we "
                                  "did not GOAHEAD")
                    raw = raw.replace(b"\xff\xfa\xe8\x2c" + escape(body),
                                      b"\xff\xfa\xe8\x2c" +
                                      escape(tokens[seq]))
            # Guest output: everything outside telnet commands.
            if raw[0] != IAC:
                sent_data += unescape(raw)
            s.sendall(raw)
            answer = self.read_idle(s)
            got[conn] += answer
            for cmd, body in parse_sb(answer):
                if cmd == 0x29:
                    tokens[body[:4]] = body

            if person is None and b"vm-00000" in raw:
                # Identified: a person attaches before any output.
                person = self.console()
                hdr = person.attach("vm-00000")
                self.assertIn(b"[attached", hdr)

        node_bytes = {c: bytes(v) for c, v in got.items()}

        # Every connection starts with the proactive offer, refuses
        # AUTHENTICATION and COM-PORT, and gets KNOWN-SUBOPTIONS-2 with the
        # vMotion sub-commands, then the identity questions.
        for c in ("C1", "C2", "C3", "C4"):
            b = node_bytes[c]
            self.assertTrue(b.startswith(OFFER), "%s: offer %r" % (c, b[:20]))
            self.assertIn(b"\xff\xfe\x25", b, c + ": DONT AUTHENTICATION")
            self.assertIn(b"\xff\xfe\x2c", b, c + ": DONT COM-PORT")
            sbs = parse_sb(b)
            ks2 = [p for cmd, p in sbs if cmd == 0x01]
            self.assertEqual(len(ks2), 1, c + ": one KNOWN-SUBOPTIONS-2")
            for code in (0x28, 0x29, 0x2b, 0x2c, 0x2d, 0x2e, 0x30, 0x46,
                         0x47, 0x50, 0x51, 0x52, 0x53):
                self.assertIn(code, ks2[0], "%s: KS2 lacks %#x" % (c, code))
            cmds = [cmd for cmd, _ in sbs]
            self.assertIn(0x51, cmds, c + ": GET-VM-VC-UUID")
            self.assertIn(0x53, cmds, c + ": GET-VM-NAME")
            # RFC 1143: ESXi's answers to our offer draw no second offer.
            self.assertEqual(b.count(b"\xff\xfb\x00"), 1, c)
            self.assertEqual(b.count(b"\xff\xfd\xe8"), 1, c)
            # Never an UNKNOWN-SUBOPTION-RCVD-2: we know all ESXi sent.
            self.assertNotIn(0x03, cmds, c)

        c1 = parse_sb(node_bytes["C1"])
        self.assertIn((0x47, b""), c1, "C1: WILL-PROXY")
        # vMotion #1: GOAHEAD carries the sequence and an 8-byte secret.
        goahead = [p for cmd, p in c1 if cmd == 0x29]
        self.assertEqual(len(goahead), 1)
        self.assertEqual(goahead[0][:4], bytes.fromhex("44da87f1"))
        self.assertEqual(len(goahead[0]), 12)
        # Destinations get PEER-OK with the sequence, nothing else.
        for c, seq in (("C2", "44da87f1"), ("C3", "98d98db4"),
                       ("C4", "7619ffe9")):
            ok = [p for cmd, p in parse_sb(node_bytes[c]) if cmd == 0x2d]
            self.assertEqual(ok, [bytes.fromhex(seq)], c)
            self.assertNotIn((0x47, b""), parse_sb(node_bytes[c]),
                             c + ": a destination gets no WILL-PROXY")
        # On C3: vMotion #3 gets GOAHEAD (nothing pending); #4, begun
        # while #3 is still pending, gets NOTNOW; the ABORT ends #3; #5
        # (sequence with 0xff) gets GOAHEAD, escaped on the wire.
        c3 = parse_sb(node_bytes["C3"])
        self.assertEqual([p[:4] for cmd, p in c3 if cmd == 0x29],
                         [bytes.fromhex("cd526755"),
                          bytes.fromhex("7619ffe9")])
        self.assertEqual([p for cmd, p in c3 if cmd == 0x2b],
                         [bytes.fromhex("61ed26a2")])
        self.assertIn(b"\xff\xfa\xe8\x29\x76\x19\xff\xff\xe9",
                      node_bytes["C3"])

        # The person saw all guest output, in order, across 4 connections.
        seen = person.read_bytes(len(sent_data), timeout=10)
        self.assertEqual(seen, bytes(sent_data))
        for s in conns.values():
            s.close()
        # The console is still listed, on C4.
        self.assertIn("console 01234567-89ab-cdef-fedc-ba9800000000: "
                      "vMotion 7619ffe9 complete", self.node.log())


if __name__ == "__main__":
    unittest.main()
