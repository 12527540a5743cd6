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

"""A test client speaking VMware's vSPC admin protocol (telnet option 233).

Written from the protocol description (client-protocols.md, section 2),
like vmware/vspc's client.py: it sends nothing until the server offers
IAC WILL 0xE9, answers IAC DO 0xE9, then sends sub-commands inside
IAC SB 0xE9 ... IAC SE:

  GET_VM_PORT_LIST (0x10)        -> VM_PORT_LIST (0x11): id\\0name\\0uri...
  VM_PORT_SET_CONNECTION (0x20)  -> VM_PORT_CONNECTED (0x21) or
       mode byte + VM port id       VM_PORT_DISCONNECTED (0x22)

After 0x21 in-band bytes flow both ways, 0xff doubled.

As a module:

    c = VmwareClient('127.0.0.1', 13371)
    c.handshake()
    vms = c.list_vms()              # [(id, name, uri), ...]
    ok = c.attach(vms[0][0], MODE_READWRITE)
    c.write(b'ls\\r'); out = c.read_until(b'$ ')

Only the Python 3 standard library is used (and vspcclient.py beside it).
"""

import argparse
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vspcclient import Telnet, IAC, SB, SE, WILL  # noqa: E402

VSPC_ADMIN = 0xe9
GET_VM_PORT_LIST = 0x10
VM_PORT_LIST = 0x11
VM_PORT_SET_CONNECTION = 0x20
VM_PORT_CONNECTED = 0x21
VM_PORT_DISCONNECTED = 0x22

MODE_READWRITE = 0x00
MODE_READONLY = 0x01
MODE_EXCLUSIVE = 0x10
MODE_EXCL_WRITE = 0x11
MODE_READONLY_OK = 0x20

MODES = {
    'readwrite': MODE_READWRITE,
    'readonly': MODE_READONLY,
    'exclusive': MODE_EXCLUSIVE,
    'excl-write': MODE_EXCL_WRITE,
    'readonly-ok': MODE_READONLY_OK,
}

CLIENT_ESCAPE_CHAR = b'\x1d'


class ProtocolError(Exception):
    """The server broke the protocol."""


class VmwareClient:
    """One session with a vSPC admin port, VMware style."""

    def __init__(self, host='localhost', port=13371, timeout=10.0,
                 source=None):
        self.host = host
        self.port = port
        self.source = source    # Local address to connect from.
        self.timeout = timeout
        self.sock = None
        self.telnet = None
        self.replies = []       # (code, payload) sub-commands received.

    def _on_sb(self, opt, payload):
        if opt != VSPC_ADMIN or not payload:
            raise ProtocolError('unexpected subnegotiation %d %r' %
                                (opt, payload))
        self.replies.append((payload[0], payload[1:]))

    def _wait(self, pred, timeout, what):
        end = time.monotonic() + timeout
        while not pred():
            left = end - time.monotonic()
            if left <= 0:
                raise ProtocolError('timed out waiting for %s' % what)
            if not self.telnet.recv_once(left):
                if pred():
                    break
                # Like VMware's client, show what the server said (a
                # refusal is a line of in-band text before the close).
                said = bytes(self.telnet.data).decode('utf-8', 'replace')
                raise ProtocolError('connection closed waiting for %s%s' %
                                    (what, (': ' + said.strip()) if
                                     said.strip() else ''))

    def handshake(self, timeout=None):
        """Connect, wait for IAC WILL 0xE9 and accept it."""
        self.sock = socket.create_connection(
            (self.host, self.port), timeout=self.timeout,
            source_address=(self.source, 0) if self.source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.telnet = Telnet(self.sock, will_ok=(VSPC_ADMIN,),
                             on_sb=self._on_sb)
        self._wait(lambda: (WILL, VSPC_ADMIN) in self.telnet.received,
                   timeout or self.timeout, 'IAC WILL 0xE9')

    def _send_sb(self, payload):
        body = bytes(payload).replace(b'\xff', b'\xff\xff')
        self.telnet.send_raw(bytes([IAC, SB, VSPC_ADMIN]) + body +
                             bytes([IAC, SE]))

    def _reply(self, codes, timeout):
        self._wait(lambda: self.replies, timeout or self.timeout,
                   'a reply')
        code, payload = self.replies.pop(0)
        if code not in codes:
            raise ProtocolError('unexpected reply 0x%02x' % code)
        return code, payload

    def list_vms(self, timeout=None):
        """GET_VM_PORT_LIST; return [(id, name, uri), ...]."""
        self._send_sb([GET_VM_PORT_LIST])
        _, payload = self._reply((VM_PORT_LIST,), timeout)
        if not payload:
            return []
        fields = payload.decode('utf-8').split('\0')
        if len(fields) % 3 != 0:
            raise ProtocolError('VM_PORT_LIST has %d fields' % len(fields))
        return [tuple(fields[i:i + 3]) for i in range(0, len(fields), 3)]

    def attach(self, vm_id, mode=MODE_READWRITE, timeout=None):
        """VM_PORT_SET_CONNECTION; True if the server says CONNECTED."""
        self._send_sb(bytes([VM_PORT_SET_CONNECTION, mode]) +
                      vm_id.encode('utf-8'))
        code, _ = self._reply((VM_PORT_CONNECTED, VM_PORT_DISCONNECTED),
                              timeout)
        return code == VM_PORT_CONNECTED

    def detach(self, timeout=None):
        """An empty VM_PORT_SET_CONNECTION; return the reply code."""
        self._send_sb([VM_PORT_SET_CONNECTION])
        code, _ = self._reply((VM_PORT_CONNECTED, VM_PORT_DISCONNECTED),
                              timeout)
        return code

    def write(self, data):
        """Send bytes to the VM (0xff doubled)."""
        if isinstance(data, str):
            data = data.encode()
        self.telnet.send_data(data)

    def read(self, timeout=1.0):
        """Return what the VM sent within timeout (b'' if nothing)."""
        end = time.monotonic() + timeout
        while not self.telnet.data:
            left = end - time.monotonic()
            if left <= 0 or not self.telnet.recv_once(left):
                break
        return self.telnet.take()

    def read_until(self, pattern, timeout=5.0):
        """Read until pattern (bytes) is seen; return all data read."""
        end = time.monotonic() + timeout
        while pattern not in self.telnet.data:
            left = end - time.monotonic()
            if left <= 0 or not self.telnet.recv_once(left):
                break
        return self.telnet.take()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def print_list(vms):
    print('%-40s %s' % ('VM_NAME', 'VM_PORT_ID'))
    for vm_id, name, uri in vms:
        print('%-40s %s%s' % (name, vm_id, ('  ' + uri) if uri else ''))


def _session(c, stdout_only):
    out = sys.stdout.buffer
    tn = c.telnet
    tty = sys.stdin.isatty() and not stdout_only
    restore = (lambda: None)
    if tty:
        import termios
        import tty as ttymod
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)

        def restore():
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        ttymod.setraw(fd)
    stdin_open = not stdout_only
    quiet_since = None
    try:
        while True:
            rl = [c.sock] + ([sys.stdin] if stdin_open else [])
            r, _, _ = select.select(rl, [], [], 0.2)
            if c.sock in r:
                if not tn.recv_once(0):
                    break
                d = tn.take()
                if d:
                    out.write(d)
                    out.flush()
                if quiet_since is not None:
                    quiet_since = time.monotonic()
            if stdin_open and sys.stdin in r:
                b = os.read(sys.stdin.fileno(), 4096)
                if not b:
                    stdin_open = False
                    quiet_since = time.monotonic()
                    continue
                if tty and CLIENT_ESCAPE_CHAR in b:
                    pre = b.partition(CLIENT_ESCAPE_CHAR)[0]
                    if pre:
                        c.write(pre)
                    restore()
                    line = input('\r\nvspc-client> ').strip()
                    if line in ('close', 'exit', 'quit', 'q'):
                        break
                    if line in ('print-escape', 'esc'):
                        c.write(CLIENT_ESCAPE_CHAR)
                    ttymod.setraw(sys.stdin.fileno())
                    continue
                c.write(b)
            if quiet_since is not None and \
                    time.monotonic() - quiet_since > 1.0:
                break
    finally:
        restore()


def main(argv=None):
    p = argparse.ArgumentParser(
        description='Attach to a VM console through a vSPC admin port '
                    '(VMware option 233 protocol).')
    p.add_argument('-s', '--server', default='localhost')
    p.add_argument('-a', '--admin-port', type=int, default=13371)
    p.add_argument('-b', '--bind', metavar='ADDRESS',
                   help='local address to connect from (testing)')
    p.add_argument('-m', '--mode', choices=sorted(MODES),
                   default='readwrite')
    p.add_argument('--stdout', action='store_true',
                   help='only copy VM output to stdout')
    p.add_argument('vm_port_id', nargs='?')
    a = p.parse_args(argv)

    c = VmwareClient(a.server, a.admin_port, source=a.bind)
    try:
        c.handshake()
        if a.vm_port_id is None:
            print_list(c.list_vms())
            return 0
        if not c.attach(a.vm_port_id, MODES[a.mode]):
            print("vmwareclient: could not connect to '%s'" %
                  a.vm_port_id, file=sys.stderr)
            print_list(c.list_vms())
            return 1
        _session(c, a.stdout)
    except (OSError, ProtocolError) as e:
        print('vmwareclient: %s' % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        c.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
