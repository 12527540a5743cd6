# A small client of the control socket (proto/control.proto) in plain
# Python: protobuf encoded and decoded by hand (only the fields the tests
# use), and helpers to run the vspcctl binary.

import json
import os
import select
import socket
import struct
import subprocess
import time

import harness

VSPCCTL = os.environ.get("VSPCCTL", os.path.join(harness.TOP_BUILDDIR,
                                                 "vspcctl"))
PROTOCOL = 1

# Commands (enum vspc.ctl.Command).
CLUSTER_STATUS, VM_LIST, VM_SHOW, WHO, DISCONNECT, ATTACH, INPUT, ESCAPE, \
    LOG, DRAIN, UNDRAIN, RELOAD, UPGRADE = range(1, 14)
# Attach modes (enum attach_mode in node/vspcd.h).
MODE_DEFAULT, MODE_SPY, MODE_RO, MODE_FORCE, MODE_EXCLUSIVE = range(5)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, value):
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    if isinstance(value, str):
        value = value.encode()
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def encode_request(command, target=None, node=None, mode=0, lines=0,
                   follow=False, data=None, arg=None, version=PROTOCOL,
                   resume=False, resume_stream=0, resume_offset=0):
    out = _field(1, version) + _field(2, command)
    for num, v in ((3, target), (4, node), (8, data), (9, arg)):
        if v is not None:
            out += _field(num, v)
    for num, v in ((5, mode), (6, lines), (7, follow), (10, resume),
                   (11, resume_stream), (12, resume_offset)):
        if v:
            out += _field(num, v)
    return out


def decode(buf):
    """Decode a message into {field number: [values]} (raw bytes for
    length-delimited fields, ints for varints)."""
    out = {}
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 2:
            n, i = _read_varint(buf, i)
            v = bytes(buf[i:i + n])
            i += n
        elif wt == 1:
            v = buf[i:i + 8]
            i += 8
        elif wt == 5:
            v = buf[i:i + 4]
            i += 4
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, []).append(v)
    return out


def _read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return n, i


class Reply:
    def __init__(self, raw):
        f = decode(raw)
        self.fields = f
        self.version = f.get(1, [0])[0]
        self.ok = bool(f.get(2, [0])[0])
        self.error = f.get(3, [b""])[0].decode()
        self.more = bool(f.get(4, [0])[0])
        self.node = f.get(5, [b""])[0].decode()
        self.data = b"".join(f.get(14, []))
        self.text = f.get(15, [b""])[0].decode()
        # Attach data: the stream and the offset of data's first byte.
        self.stream = f.get(17, [0])[0]
        self.offset = f.get(18, [0])[0]


class CtlConn:
    """One connection to a control socket."""

    def __init__(self, path):
        if isinstance(path, tuple):
            # ("127.0.0.1", port): a [control] listen over TCP.
            self.sock = socket.create_connection(path, 5)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(path)
        self.buf = bytearray()

    def send(self, command, **kw):
        msg = encode_request(command, **kw)
        self.sock.sendall(struct.pack(">I", len(msg)) + msg)

    def recv(self, timeout=10.0):
        """The next Reply, or None at end of file."""
        end = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    raw = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return Reply(raw)
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("control socket: no reply in %.1fs"
                                     % timeout)
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                d = self.sock.recv(65536)
                if not d:
                    return None
                self.buf += d

    def request(self, command, **kw):
        self.send(command, **kw)
        return self.recv()

    def read_data_until(self, what, timeout=10.0):
        """Attached: collect output (data and texts) until what is seen."""
        got = bytearray()
        end = time.monotonic() + timeout
        while what not in got:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("control attach: %r not seen; got %r"
                                     % (what, bytes(got[-300:])))
            r = self.recv(left)
            if r is None:
                raise AssertionError("control attach: closed; got %r"
                                     % bytes(got[-300:]))
            got += r.data + r.text.encode()
            if not r.more and what not in got:
                raise AssertionError("control attach ended (%s %s); "
                                     "got %r" % (r.error, r.text,
                                                 bytes(got[-300:])))
        return bytes(got)

    def close(self):
        self.sock.close()


def vspcctl(socket_path, *args, check=True, timeout=15):
    """Run vspcctl -s socket_path args; returns CompletedProcess."""
    p = subprocess.run([VSPCCTL, "-s", socket_path] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("vspcctl %s: exit %d: %s" % (
            " ".join(args), p.returncode, p.stderr.decode(errors="replace")))
    return p


def vspcctl_json(socket_path, *args):
    p = vspcctl(socket_path, "-j", *args)
    return json.loads(p.stdout.decode())
