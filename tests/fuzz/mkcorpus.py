#!/usr/bin/env python3
#
# Copyright (c) 2026 The vspcd authors
#
# Permission to use, copy, modify, and distribute this software for any
# purpose with or without fee is hereby granted, provided that the above
# copyright notice and this permission notice appear in all copies.
#
# THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
# WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
# MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
# ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
# WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
# ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
# OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
#
# mkcorpus.py TOP: write the seed corpora of the node-harness targets
# (vmconn, cmdline, compat) under TOP/tests/fuzz/corpus from the capture
# listing TOP/tests/data/capture-esxi.txt and hand-written sessions.  The
# files are committed; run this again only to regenerate them.  Script
# format: see tests/fuzz/node.c.

import os
import sys

IAC, SB, SE = 0xff, 0xfa, 0xf0


def data(slot, b):
    out = b''
    for i in range(0, len(b), 255):
        chunk = b[i:i + 255]
        out += bytes([slot & 7, len(chunk)]) + chunk
    return out


def sb(slot, payload):
    assert len(payload) <= 255
    return bytes([(slot & 7) | 8, len(payload)]) + payload


def token(slot, src):
    return bytes([(slot & 7) | 16, src])


def eof(slot):
    return bytes([(slot & 7) | 24])


def split_peer(b):
    """Split an ESXi payload around IAC SB 232 VMOTION-PEER ... IAC SE."""
    out = []
    i = 0
    while True:
        j = b.find(bytes([IAC, SB, 0xe8, 0x2c]), i)
        if j < 0:
            out.append(('data', b[i:]))
            return out
        k = b.find(bytes([IAC, SE]), j)
        out.append(('data', b[i:j]))
        out.append(('peer', None))
        i = k + 2


def capture(top):
    recs = []
    with open(os.path.join(top, 'tests/data/capture-esxi.txt')) as f:
        for line in f:
            if line.startswith('#') or not line.strip():
                continue
            w = line.split()
            recs.append(w)
    return recs


def vmconn(top, out):
    recs = capture(top)
    slots = {'C1': 0, 'C2': 1, 'C3': 2, 'C4': 3}
    # The vMotion sources, in order: C1->C2, C2->C3, C3->C3 (refused,
    # aborted), C3->C4.
    src = {'C2': 0, 'C3': 1, 'C4': 2}
    whole = b''
    per = {}
    for w in recs:
        conn, what = w[0], w[1]
        s = slots[conn]
        if what == 'esxi':
            b = bytes.fromhex(w[3])
            rec = b''
            for kind, part in split_peer(b):
                if kind == 'data' and part:
                    rec += data(s, part)
                elif kind == 'peer':
                    rec += token(s, src[conn])
            whole += rec
            per[conn] = per.get(conn, b'') + rec
        elif what == 'esxi-fin':
            whole += eof(s)
            per[conn] = per.get(conn, b'') + eof(s)
    out['cap-all'] = whole
    # One connection alone (no vMotion partner), from slot 0.
    for conn, b in per.items():
        if conn == 'C1':
            out['cap-c1'] = b
    # The power-on handshake, then data typed by the person of slot 4.
    c1 = per['C1']
    out['cap-c1-person'] = (c1[:len(c1) // 2] + data(4, b'\r') +
                            data(4, b'\x1dwho\r') + c1[len(c1) // 2:])
    hs = handshake(0, 'vSPC.py', '42 0a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 '
                   'd6 e7 f8', 'web01')
    out['hand-bound'] = hs + data(0, b'login: ')
    out['hand-label'] = handshake(0, 'telnet://vspc.example:13370?port=a',
                                  '42 0a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 '
                                  'd6 e7 f8', 'web01') + data(0, b'x' * 300)
    out['hand-refused-uri'] = handshake(0, 'telnet://other:1',
                                        '0123456789abcdef0123456789abcdef',
                                        'db') + data(0, b'gone')
    out['hand-wont'] = data(0, bytes([IAC, 0xfc, 0xe8]) + b'hello')
    out['hand-bad-uuid'] = handshake(0, 'vSPC.py', 'zz', 'bad')
    out['hand-uuid-change'] = (hs + sb(0, b'\x50' +
                               b'00112233445566778899aabbccddeeff'))
    out['hand-unknown-sub'] = hs + sb(0, b'\x77abc') + sb(0, b'\x02\x28')
    out['hand-early-data'] = (data(0, b'A' * 255) * 5 + hs)
    out['hand-two-conns'] = hs + handshake(1, 'vSPC.py', '42 0a 2b 3c 4d 5e '
                                           '6f 70-81 92 a3 b4 c5 d6 e7 f8',
                                           'web01') + eof(0)
    vm = (hs + sb(0, b'\x28\x01\x02\x03\x04') +
          data(1, bytes([IAC, 0xfb, 0xe8])) + token(1, 0) +
          sb(1, b'\x50' + b'42 0a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8')
          + eof(0) + sb(1, b'\x2e\x01\x02\x03\x04') + data(1, b'after'))
    out['hand-vmotion'] = vm
    out['hand-vmotion-abort'] = (hs + sb(0, b'\x28\x09') + sb(0, b'\x30') +
                                 sb(0, b'\x28\x0a') + sb(0, b'\x28\x0b'))
    out['hand-peer-unknown'] = (data(1, bytes([IAC, 0xfb, 0xe8])) +
                                sb(1, b'\x2cnosuchtoken!'))
    out['hand-break'] = hs + data(4, b'web01\r') + data(4, bytes([IAC, 243]))


def handshake(slot, uri, uuid, name):
    b = data(slot, bytes([IAC, 0xfb, 0x25, IAC, 0xfd, 0x00, IAC, 0xfd, 0x03,
                          IAC, 0xfd, 0x01, IAC, 0xfb, 0x00, IAC, 0xfb, 0x03,
                          IAC, 0xfb, 0xe8]))
    b += sb(slot, bytes([0x00, 0x00, 0x01, 0x02, 0x03, 0x28, 0x29, 0x2b,
                         0x2c, 0x2d, 0x2e, 0x30, 0x46, 0x47, 0x49, 0x50,
                         0x51, 0x54, 0x55, 0x56, 0x57, 0x52, 0x53]))
    b += sb(slot, b'\x46S' + uri.encode())
    b += sb(slot, b'\x50' + uuid.encode())
    b += sb(slot, b'\x52' + name.encode())
    return b


def people(out, slot):
    """Console port sessions: slots 0-1 people, 2-3 web01 and web02."""
    c = slot
    out['sel-list'] = data(c, b'?\r\n')
    out['sel-name'] = data(c, b'web01\r\nhello\r\n')
    out['sel-prefix'] = data(c, b'web\r\nweb0\r\nweb02\r\n')
    out['sel-uuid'] = data(c, b'420a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8\r')
    out['sel-edit'] = data(c, b'wxb\x7f\x08eb01\x15web02\x17web01\r\x00')
    out['menu-all'] = data(c, b'web01\r' + b'\x1d' + b'who\r' + b'\x1d' +
                           b'help\r' + b'\x1d' + b'spy\r' + b'\x1d' +
                           b'write\r' + b'\x1d' + b'force\r' + b'\x1d' +
                           b'replay 3\r' + b'\x1d' + b'break\r' + b'\x1d' +
                           b'\r' + b'\x1d\x1d' + b'\x1d' + b'bogus\r' +
                           b'\x1d' + b'detach\r')
    out['menu-replay'] = data(c, b'web02\r\x1dr\r\x1dr 0\r\x1dr 99999999\r'
                              b'\x1dr -1\r\x1dreplay x\r')
    out['two-people'] = (data(c, b'web01\r') + data(c + 1, b'web01\r') +
                         data(c + 1, b'\x1dforce\r') + data(c, b'typed\r') +
                         data(c, b'\x1dwrite\r') + eof(c + 1) +
                         data(c, b'\x1dwho\r'))
    out['telnet-nego'] = data(c, bytes([IAC, 0xfd, 0x01, IAC, 0xfd, 0x03,
                                        IAC, 0xfb, 0x03, IAC, 0xfb, 0x18,
                                        IAC, 0xfa, 0x18, 0x00, 0x41,
                                        IAC, SE]) + b'web01\r' +
                              bytes([IAC, 244, IAC, 246, IAC, 243]))
    out['vm-output'] = (data(c, b'web01\r') + data(2, b'boot log\r\n' * 20)
                        + data(c, b'\x1dreplay\r'))
    out['vm-gone'] = data(c, b'web01\r') + eof(2) + data(c, b'x\x1dwho\r')


def compat(out, slot):
    """Compatibility port: slots 0-1 clients, 2-3 web01 and web02."""
    c = slot
    # vSPCClient: version 3, then the VM name (or None), then the lock.
    p2 = lambda s: b'\x80\x02X' + len(s).to_bytes(4, 'little') + s + b'q\x00.'
    p2i = lambda i: b'\x80\x02K' + bytes([i]) + b'.'
    none = b'\x80\x02N.'
    out['py-list'] = data(c, p2i(3) + none)
    out['py-attach'] = data(c, p2i(3) + p2(b'web01') + p2(b'write') +
                            bytes([IAC, 0xfd, 0x00]) + b'typed')
    out['py-attach-ro'] = data(c, p2i(3) + p2(b'web02') +
                               p2(b'free_for_all_or_readonly') + b'x')
    out['py-exclusive-two'] = (data(c, p2i(3) + p2(b'web01') +
                                    p2(b'exclusive')) +
                               data(c + 1, p2i(3) + p2(b'web01') +
                                    p2(b'write')))
    out['py-unknown-vm'] = data(c, p2i(3) + p2(b'nosuch') + p2(b'write'))
    out['py-bad-lock'] = data(c, p2i(3) + p2(b'web01') + p2(b'bogus'))
    out['py-old-version'] = data(c, p2i(2) + p2(b'web01'))
    out['py-p0'] = data(c, b'I3\n.' + b"S'web01'\np0\n." + b"S'write'\n.")
    out['py-split'] = (data(c, p2i(3)[:3]) + data(c, p2i(3)[3:]) +
                       data(c, p2(b'web01')[:5]) + data(c, p2(b'web01')[5:]))
    # VMware: IAC DO 233 (the client accepts our WILL), then commands.
    do233 = bytes([IAC, 0xfd, 0xe9])
    out['vmw-list'] = data(c, do233) + sb(c, b'\x10')
    uuid = b'420a2b3c4d5e6f708192a3b4c5d6e7f8'
    for mode in (0x00, 0x01, 0x10, 0x11, 0x20, 0x05):
        out['vmw-connect-%02x' % mode] = (data(c, do233) +
                                         sb(c, b'\x20' + bytes([mode]) +
                                            uuid) + data(c, b'keys'))
    out['vmw-connect-name'] = (data(c, do233) + sb(c, b'\x20\x00web01') +
                               data(c, b'x'))
    out['vmw-short'] = data(c, do233) + sb(c, b'\x20') + sb(c, b'')
    out['vmw-unknown'] = data(c, do233) + sb(c, b'\x99abc')
    out['vmw-dont'] = data(c, bytes([IAC, 0xfe, 0xe9]) + b'data')
    out['vmw-two'] = (data(c, do233) + sb(c, b'\x20\x10' + uuid) +
                      data(c + 1, do233) + sb(c + 1, b'\x20\x00' + uuid))


def peerlink(top, out):
    """Live peer link: the peer corpus's streams, before and after a
    correct handshake, on accepted and dialled links."""
    d = os.path.join(top, 'tests/fuzz/corpus/peer')
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), 'rb') as f:
            stream = f.read()[2:]
        recs = b''
        for i in range(0, len(stream), 255):
            chunk = stream[i:i + 255]
            recs += bytes([len(chunk)]) + chunk
        if name.startswith('hello') or name.startswith('handshake'):
            out['raw-' + name] = b'\x00' + recs
            out['out-' + name] = b'\x02' + recs
        else:
            out['up-' + name] = b'\x01' + recs
    out['up-nothing'] = b'\x01'
    out['out-up-nothing'] = b'\x03'


def varint(n):
    b = b''
    while True:
        x = n & 0x7f
        n >>= 7
        if n:
            b += bytes([x | 0x80])
        else:
            return b + bytes([x])


def req(command, **kw):
    """A vspc.ctl.Request (proto/control.proto), encoded by hand."""
    fields = {'target': 3, 'node': 4, 'mode': 5, 'lines': 6, 'follow': 7,
              'data': 8, 'arg': 9, 'resume': 10, 'resume_stream': 11,
              'resume_offset': 12}
    b = bytes([0x08]) + varint(kw.pop('version', 1))
    if command:
        b += bytes([0x10]) + varint(command)
    for k, v in kw.items():
        f = fields[k]
        if isinstance(v, (bytes, str)):
            v = v.encode() if isinstance(v, str) else v
            b += varint(f << 3 | 2) + varint(len(v)) + v
        else:
            b += varint(f << 3) + varint(int(v))
    return b


def control(out):
    """Control socket: byte 0 flags, then records (framed by the target)."""
    def framed(*reqs, flags=0):
        b = bytes([flags])
        for r in reqs:
            assert len(r) < 256
            b += bytes([len(r)]) + r
        return b
    out['status'] = framed(req(1))
    out['vm-list'] = framed(req(2))
    out['vm-show'] = framed(req(3, target='web01'), req(3, target='web'),
                            req(3, target='420a2b3c'), req(3, target=''))
    out['who'] = framed(req(4), req(4, target='web01'),
                        req(4, target='nosuch'))
    out['disconnect'] = framed(req(5, target='web01'), req(5, target='1'),
                               req(5, target='fuzz:1'),
                               req(5, target='other:7'))
    out['attach'] = framed(req(6, target='web01', mode=1),
                           req(7, data=b'typed\r'), req(8, arg='who'),
                           req(8, arg='write'), req(7, data=b'x' * 100),
                           req(8, arg='replay 5'), req(8, arg='detach'))
    out['attach-modes'] = framed(*[req(6, target='web02', mode=m)
                                   for m in range(0, 10)])
    out['attach-resume'] = framed(req(6, target='web01', resume=1,
                                      resume_stream=12345,
                                      resume_offset=3))
    out['log'] = framed(req(9, target='web01', lines=5),
                        req(9, target='web02', follow=1))
    out['drain'] = framed(req(10), req(11), req(10, node='other'),
                          req(11, node='fuzz'))
    out['reload'] = framed(req(12))
    out['readonly'] = framed(req(5, target='web01'), req(10), req(2),
                             flags=1)
    out['bad-version'] = framed(req(2, version=99))
    out['bad-command'] = framed(req(77), req(0))
    out['garbage'] = framed(b'\xff\xff\xff', b'\x0a\x05ab')
    r = req(2)
    out['raw-split'] = (bytes([2, 2]) + b'\x00\x00' + bytes([2]) +
                        bytes([0, len(r)]) + bytes([len(r)]) + r)
    out['raw-huge'] = bytes([2, 4]) + b'\x7f\xff\xff\xff'


def write(dirname, seeds):
    os.makedirs(dirname, exist_ok=True)
    for name, b in seeds.items():
        with open(os.path.join(dirname, name), 'wb') as f:
            f.write(b)


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else '.'
    base = os.path.join(top, 'tests/fuzz/corpus')
    out = {}
    vmconn(top, out)
    write(os.path.join(base, 'vmconn'), out)
    out = {}
    people(out, 0)
    write(os.path.join(base, 'cmdline'), out)
    out = {}
    compat(out, 0)
    write(os.path.join(base, 'compat'), out)
    out = {}
    control(out)
    write(os.path.join(base, 'control'), out)
    out = {}
    peerlink(top, out)
    write(os.path.join(base, 'peerlink'), out)


if __name__ == '__main__':
    main()
