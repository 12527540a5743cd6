# vMotion of a VM's serial port, as ESXi does it: BEGIN, GOAHEAD with a
# token, PEER on a new connection, PEER-OK, COMPLETE, with the source's FIN
# before or after COMPLETE, and every failure path.  A person attached
# through it all must lose, duplicate or reorder nothing.

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM  # noqa: E402

BEGIN, GOAHEAD, NOTNOW, PEER, PEER_OK, COMPLETE, ABORT = (
    0x28, 0x29, 0x2b, 0x2c, 0x2d, 0x2e, 0x30)


class VMotion(harness.NodeTest):

    node_extra = {"vm.vmotion_token_ttl": "3"}

    def start_vm(self, name="vm-a"):
        vm = FakeVM(self.node, name=name).ready()
        return vm

    def person(self, name, mode=None):
        p = self.console()
        hdr = p.attach(name, mode)
        self.assertIn(b"[attached", hdr)
        return p

    def begin(self, vm, seq=b"\x11\x22\x33\x44"):
        vm.sbcmd(BEGIN, seq)
        tok = vm.wait_sb(GOAHEAD)
        self.assertIsNotNone(tok, "no GOAHEAD")
        self.assertEqual(tok[:len(seq)], seq)
        self.assertGreaterEqual(len(tok) - len(seq), 8, "secret too short")
        return tok

    def migrate(self, src, name, seq=b"\x11\x22\x33\x44", fin_first=True):
        tok = self.begin(src, seq)
        dst = FakeVM(self.node, uuid=src.uuid, name=name, peer=tok)
        self.assertEqual(dst.wait_sb(PEER_OK), seq)
        if fin_first:
            src.close()
            dst.sbcmd(COMPLETE, seq)
        else:
            dst.sbcmd(COMPLETE, seq)
            self.assertTrue(src.wait_closed(), "source not closed")
        return dst

    def test_fin_before_complete_keeps_console(self):
        src = self.start_vm()
        p = self.person("vm-a")
        src.send(b"before\r\n")
        p.read_until(b"before\r\n")
        tok = self.begin(src)
        # Typed while the VM is between hosts: held, not lost.
        p.send(b"typed-during\r")
        time.sleep(0.2)
        self.assertEqual(src.wait_data(1, timeout=0.3), b"",
                         "input reached the source after GOAHEAD")
        dst = FakeVM(self.node, uuid=src.uuid, name="vm-a", peer=tok)
        self.assertEqual(dst.wait_sb(PEER_OK), tok[:4])
        src.close()                          # ESXi: FIN first...
        time.sleep(0.1)
        dst.sbcmd(COMPLETE, tok[:4])         # ...then COMPLETE.
        self.assertEqual(dst.wait_data(13), b"typed-during\r")
        dst.send(b"after\xff\x00\x11\r\n")
        self.assertEqual(p.read_until(b"after\xff\x00\x11\r\n"),
                         b"after\xff\x00\x11\r\n")
        p.send(b"x")
        self.assertEqual(dst.wait_data(1), b"x")
        self.assertIn("vMotion 11223344 complete", self.node.log())

    def test_complete_before_fin(self):
        src = self.start_vm()
        p = self.person("vm-a")
        dst = self.migrate(src, "vm-a", fin_first=False)
        dst.send(b"on-dst\r\n")
        p.read_until(b"on-dst\r\n")

    def test_stream_is_exact_across_vmotions(self):
        vm = self.start_vm()
        p = self.person("vm-a")
        expect = bytearray()
        for i in range(5):
            chunk = bytes((i * 37 + k) % 256 for k in range(3000))
            vm.send(chunk)
            expect += chunk
            vm = self.migrate(vm, "vm-a", seq=bytes([i, 0xff, i, 0xff]),
                              fin_first=(i % 2 == 0))
        vm.send(b"end")
        expect += b"end"
        got = p.read_bytes(len(expect))
        self.assertEqual(got, bytes(expect))

    def test_second_begin_gets_notnow(self):
        src = self.start_vm()
        self.begin(src)
        src.sbcmd(BEGIN, b"\x55\x66\x77\x88")
        self.assertEqual(src.wait_sb(NOTNOW), b"\x55\x66\x77\x88")

    def test_begin_before_identification_gets_notnow(self):
        vm = FakeVM(self.node, identify=False)
        vm.sbcmd(BEGIN, b"\x01\x02\x03\x04")
        self.assertEqual(vm.wait_sb(NOTNOW), b"\x01\x02\x03\x04")

    def test_abort_returns_held_input_to_source(self):
        src = self.start_vm()
        p = self.person("vm-a")
        self.begin(src)
        p.send(b"held")
        time.sleep(0.2)
        src.sbcmd(ABORT)
        self.assertEqual(src.wait_data(4), b"held")
        src.send(b"still-here\r\n")
        p.read_until(b"still-here\r\n")
        # A fresh vMotion is possible again.
        self.begin(src, b"\x09\x09\x09\x09")

    def test_abort_without_vmotion_is_ignored(self):
        src = self.start_vm()
        src.sbcmd(ABORT)
        src.sbcmd(ABORT, b"junk")
        self.begin(src)

    def test_bad_secret_never_binds(self):
        src = self.start_vm()
        p = self.person("vm-a")
        tok = self.begin(src)
        bad = tok[:-1] + bytes([tok[-1] ^ 1])
        dst = FakeVM(self.node, uuid=src.uuid, name="vm-a", peer=bad)
        self.assertIsNone(dst.wait_sb(PEER_OK, timeout=1))
        self.assertTrue(dst.wait_closed(), "bad PEER not closed")
        src.sbcmd(ABORT)
        src.send(b"src-ok\r\n")
        p.read_until(b"src-ok\r\n")
        self.assertIn("VMOTION-PEER with an unknown", self.node.log())

    def test_token_is_single_use(self):
        src = self.start_vm()
        tok = self.begin(src)
        dst = FakeVM(self.node, uuid=src.uuid, name="vm-a", peer=tok)
        self.assertEqual(dst.wait_sb(PEER_OK), tok[:4])
        dst.sbcmd(COMPLETE, tok[:4])
        self.assertTrue(src.wait_closed())
        again = FakeVM(self.node, uuid=src.uuid, name="vm-a", peer=tok)
        self.assertIsNone(again.wait_sb(PEER_OK, timeout=1))
        self.assertTrue(again.wait_closed())
        dst.send(b"dst-alive")
        p = self.person("vm-a")
        p.read_until(b"dst-alive")

    def test_destination_lost_after_peer_ok(self):
        src = self.start_vm()
        p = self.person("vm-a")
        tok = self.begin(src)
        p.send(b"abc")
        dst = FakeVM(self.node, uuid=src.uuid, name="vm-a", peer=tok)
        self.assertEqual(dst.wait_sb(PEER_OK), tok[:4])
        dst.close()
        # Back on the source: the held input arrives there, and the
        # source's ABORT (which ESXi sends next) is harmless.
        self.assertEqual(src.wait_data(3), b"abc")
        src.sbcmd(ABORT)
        src.send(b"back\r\n")
        p.read_until(b"back\r\n")

    def test_timeout_returns_to_source(self):
        src = self.start_vm()
        p = self.person("vm-a")
        self.begin(src)
        p.send(b"late")
        # [vm] vmotion_token_ttl is 3 s in this test.
        self.assertEqual(src.wait_data(4, timeout=8), b"late")
        self.begin(src, b"\x0a\x0b\x0c\x0d")
        self.assertIn("timed out", self.node.log())

    def test_host_gone_after_goahead_then_reconnects(self):
        # The source host goes away after GOAHEAD and no destination ever
        # comes (ESXi killed); the VM connects afresh: the old vMotion is
        # over, the new connection is the VM's, and it can vMotion at
        # once (not NOTNOW until the old token expired).
        src = self.start_vm()
        p = self.person("vm-a")
        self.begin(src)
        src.close()
        again = FakeVM(self.node, uuid=src.uuid, name="vm-a").ready()
        self.begin(again, b"\x0a\x0b\x0c\x0d")
        again.sbcmd(ABORT)
        # Past the old token's lifetime the new connection is still the
        # VM's: its output reaches the person, the person's input it.
        time.sleep(3.5)
        again.send(b"still current\r\n")
        p.read_until(b"still current\r\n")
        p.send(b"typed")
        self.assertEqual(again.wait_data(5), b"typed")
        self.begin(again, b"\x01\x02\x03\x04")

    def test_expired_token_refused(self):
        src = self.start_vm()
        tok = self.begin(src)
        time.sleep(4)
        dst = FakeVM(self.node, uuid=src.uuid, name="vm-a", peer=tok)
        self.assertIsNone(dst.wait_sb(PEER_OK, timeout=1))
        self.assertTrue(dst.wait_closed())

    def test_complete_from_stranger_ignored(self):
        src = self.start_vm()
        tok = self.begin(src)
        other = FakeVM(self.node, name="vm-b").ready()
        other.sbcmd(COMPLETE, tok[:4])
        src.sbcmd(COMPLETE, tok[:4])
        dst = FakeVM(self.node, uuid=src.uuid, name="vm-a", peer=tok)
        self.assertEqual(dst.wait_sb(PEER_OK), tok[:4])

    def test_secret_with_iac(self):
        # Secrets are random: migrate until one holds 0xff (1 in 32 for
        # 8 bytes), and check that it survives escaping both ways.
        vm = self.start_vm()
        p = self.person("vm-a")
        for k in range(2000):
            tok = self.begin(vm, bytes([k & 0xff, 1, 2, 3]))
            if b"\xff" in tok[4:]:
                break
            vm.sbcmd(ABORT)
        else:
            self.fail("no secret with 0xff in 2000 vMotions")
        dst = FakeVM(self.node, uuid=vm.uuid, name="vm-a", peer=tok)
        self.assertEqual(dst.wait_sb(PEER_OK), tok[:4])
        vm.close()
        dst.sbcmd(COMPLETE, tok[:4])
        dst.send(b"iac-secret-ok\r\n")
        p.read_until(b"iac-secret-ok\r\n")

    def test_many_vms_migrate_at_once(self):
        n = 100
        vms = [FakeVM(self.node, name="many-%03d" % i) for i in range(n)]
        for vm in vms:
            vm.ready()
        for i, vm in enumerate(vms):
            vm.sbcmd(BEGIN, bytes([i, 0xff, 0, 7]))
        toks = [vm.wait_sb(GOAHEAD) for vm in vms]
        self.assertTrue(all(toks), "a BEGIN got no GOAHEAD")
        self.assertEqual(len(set(t[4:] for t in toks)), n,
                         "secrets repeat")
        dsts = [FakeVM(self.node, uuid=vm.uuid, name="many-%03d" % i,
                       peer=toks[i]) for i, vm in enumerate(vms)]
        for i, d in enumerate(dsts):
            self.assertEqual(d.wait_sb(PEER_OK), toks[i][:4])
        for i, vm in enumerate(vms):
            vm.close()
            dsts[i].sbcmd(COMPLETE, toks[i][:4])
        for i, d in enumerate(dsts):
            d.send(b"moved-%03d\r\n" % i)
        p = self.person("many-042")
        p.read_until(b"moved-042\r\n")
        harness.wait_for(lambda: self.node.log().count("complete: now on")
                         == n, 10, "all vMotions to complete")


if __name__ == "__main__":
    unittest.main()
