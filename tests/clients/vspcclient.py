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

"""A test client speaking vSPC.py's vSPCClient admin protocol.

Written from the protocol description (client-protocols.md, sections 1.2
to 1.5), not from vSPC.py's code.  The wire behaviour follows vSPCClient:

  * it sends pickle(3), pickle(vm or None) and pickle(lock mode) at once,
    with the chosen pickle protocol (vSPCClient on Python 3.8+ uses 4);
  * it reads the replies with pickle.load() through a buffered
    sock.makefile('rb'), and then reads the telnet phase from the raw
    socket, so bytes the server sent right after the seed pickle and that
    landed in the file's buffer are lost, as with vSPCClient (they are kept
    in VspcClient.lost so that a test can check that none were);
  * after the seed it sends IAC WILL BINARY, WILL SGA, DO BINARY, DO SGA,
    answers WILL ECHO with DONT ECHO and doubles 0xff in its input;
  * a refused connection (vspcd's max_per_source...) is answered with a
    pickled sys.exit(text) where the version should be: vSPCClient exits
    with the text, and connect() raises ProtocolError(text).

Usable as a command (like vSPCClient) and as a module:

    c = VspcClient('127.0.0.1', 13371)
    status, mode, seed = c.connect('myvm', 'free_for_all')
    c.write(b'ls\\r')
    out = c.read_until(b'$ ', timeout=5)
    c.close()

Only the Python 3 standard library is used.
"""

import argparse
import io
import os
import pickle
import select
import socket
import sys
import time

Q_VERS = 3
Q_NAME = 'name'
Q_UUID = 'uuid'
Q_PORT = 'port'
Q_OK = 'vm_found'
Q_VM_NOTFOUND = 'vm_not_found'
Q_LOCK_EXCL = 'exclusive'
Q_LOCK_WRITE = 'write'
Q_LOCK_FFA = 'free_for_all'
Q_LOCK_FFAR = 'free_for_all_or_readonly'
Q_LOCK_BAD = 'lock_invalid'
Q_LOCK_FAILED = 'lock_failed'

LOCK_MODES = {
    'exclusive': Q_LOCK_EXCL,
    'write': Q_LOCK_WRITE,
    'free-for-all': Q_LOCK_FFA,
    'free-for-all-fallback': Q_LOCK_FFAR,
}

CLIENT_ESCAPE_CHAR = b'\x1d'    # ^]

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
BINARY, ECHO, SGA = 0, 1, 3

# What vSPCClient sends once it has read the seed data.
CLIENT_TELNET_HELLO = bytes([IAC, WILL, BINARY, IAC, WILL, SGA,
                             IAC, DO, BINARY, IAC, DO, SGA])


class ProtocolError(Exception):
    """The server said something this client does not understand."""


class Telnet:
    """A small telnet endpoint on a connected socket.

    will_ok: options the peer may enable (we answer its WILL with DO);
    do_ok: options we agree to enable (we answer DO with WILL).  Options
    we asked for ourselves (request()) are acknowledged without a reply.
    In-band data collects in self.data; subnegotiations go to on_sb(opt,
    payload); every negotiation received is logged in self.received as
    (verb, option).
    """

    def __init__(self, sock, will_ok=(), do_ok=(), on_sb=None):
        self.sock = sock
        self.will_ok = set(will_ok)
        self.do_ok = set(do_ok)
        self.on_sb = on_sb
        self.data = bytearray()
        self.received = []
        self.sent = bytearray()
        self.him = {}           # option -> 'on' | 'off' | 'want'
        self.us = {}
        self.eof = False
        self._state = 'data'
        self._verb = 0
        self._sb = bytearray()

    def send_raw(self, b):
        self.sent += b
        self.sock.sendall(b)

    def request(self, verb, opt):
        """Send WILL/DO opt and remember we asked."""
        if verb == WILL:
            self.us[opt] = 'want'
        elif verb == DO:
            self.him[opt] = 'want'
        self.send_raw(bytes([IAC, verb, opt]))

    def send_data(self, b):
        """Send in-band data, doubling 0xff."""
        self.sock.sendall(bytes(b).replace(b'\xff', b'\xff\xff'))

    def _negotiate(self, verb, opt):
        self.received.append((verb, opt))
        if verb == WILL:
            if opt in self.will_ok:
                if self.him.get(opt) not in ('want', 'on'):
                    self.send_raw(bytes([IAC, DO, opt]))
                self.him[opt] = 'on'
            else:
                self.send_raw(bytes([IAC, DONT, opt]))
        elif verb == DO:
            if opt in self.do_ok:
                if self.us.get(opt) not in ('want', 'on'):
                    self.send_raw(bytes([IAC, WILL, opt]))
                self.us[opt] = 'on'
            else:
                self.send_raw(bytes([IAC, WONT, opt]))
        elif verb == WONT:
            if self.him.get(opt) == 'on':
                self.send_raw(bytes([IAC, DONT, opt]))
            self.him[opt] = 'off'
        elif verb == DONT:
            if self.us.get(opt) == 'on':
                self.send_raw(bytes([IAC, WONT, opt]))
            self.us[opt] = 'off'

    def feed(self, buf):
        """Decode bytes received from the peer."""
        for c in buf:
            st = self._state
            if st == 'data':
                if c == IAC:
                    self._state = 'iac'
                else:
                    self.data.append(c)
            elif st == 'iac':
                if c == IAC:
                    self.data.append(c)
                    self._state = 'data'
                elif c in (WILL, WONT, DO, DONT):
                    self._verb = c
                    self._state = 'verb'
                elif c == SB:
                    self._sb = bytearray()
                    self._state = 'sbopt'
                else:
                    self._state = 'data'    # A command: ignored.
            elif st == 'verb':
                self._state = 'data'
                self._negotiate(self._verb, c)
            elif st == 'sbopt':
                self._sbopt = c
                self._state = 'sb'
            elif st == 'sb':
                if c == IAC:
                    self._state = 'sbiac'
                else:
                    self._sb.append(c)
            elif st == 'sbiac':
                if c == IAC:
                    self._sb.append(c)
                    self._state = 'sb'
                elif c == SE:
                    self._state = 'data'
                    if self.on_sb is not None:
                        self.on_sb(self._sbopt, bytes(self._sb))
                else:
                    self._state = 'sb'

    def recv_once(self, timeout):
        """Wait up to timeout for bytes; False on EOF."""
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return True
        try:
            b = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            b = b''
        if not b:
            self.eof = True
            return False
        self.feed(b)
        return True

    def take(self):
        """Return and clear the in-band data received so far."""
        d = bytes(self.data)
        self.data.clear()
        return d


class _CountingSocketIO(io.RawIOBase):
    """What sock.makefile('rb') wraps, plus a tell() that counts bytes.

    io.BufferedReader.tell() is then the number of bytes the pickle loader
    consumed, which tells how many the buffer holds beyond it.
    """

    def __init__(self, sock):
        super().__init__()
        self._sock = sock
        self.nread = 0

    def readable(self):
        return True

    def readinto(self, b):
        n = self._sock.recv_into(b)
        self.nread += n
        return n

    def tell(self):
        return self.nread


class VspcClient:
    """One vSPCClient session."""

    def __init__(self, host='localhost', port=13371, protocol=4,
                 timeout=10.0, source=None):
        self.host = host
        self.port = port
        self.source = source    # Local address to connect from.
        self.protocol = protocol
        self.timeout = timeout
        self.sock = None
        self.server_version = None
        self.vms = []           # Listing after vm_not_found.
        self.lost = b''         # Swallowed by the buffered reader.
        self.telnet = None

    def _load(self):
        try:
            return pickle.load(self._file)
        except EOFError:
            raise ProtocolError('connection closed by the server')
        except SystemExit as e:
            # A refusal: the server pickles sys.exit(text), which ends
            # vSPCClient with the text.  As a module, say it instead.
            raise ProtocolError(str(e.code))

    def connect(self, vm, lock=Q_LOCK_FFAR, telnet=True):
        """Run the query exchange.

        Return (status, applied_mode, seed): status is the server's reply
        ('vm_found', 'vm_not_found', 'lock_failed', 'lock_invalid');
        applied_mode and seed are None unless the VM was found.  After
        vm_not_found the listing is in self.vms.  With telnet true (as
        vSPCClient) the telnet phase starts right after the seed.
        """
        self.sock = socket.create_connection(
            (self.host, self.port), timeout=self.timeout,
            source_address=(self.source, 0) if self.source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._raw = _CountingSocketIO(self.sock)
        self._file = io.BufferedReader(self._raw, io.DEFAULT_BUFFER_SIZE)
        self.sock.sendall(pickle.dumps(Q_VERS, self.protocol) +
                          pickle.dumps(vm, self.protocol) +
                          pickle.dumps(lock, self.protocol))
        vers = self._load()
        if isinstance(vers, Exception):
            raise ProtocolError('server refused our version: %s' % vers)
        try:
            self.server_version = int(vers)
        except (TypeError, ValueError):
            raise ProtocolError('bad server version %r' % (vers,))
        if self.server_version != Q_VERS:
            raise ProtocolError('server version %d, expected %d' %
                                (self.server_version, Q_VERS))
        status = self._load()
        if status == Q_VM_NOTFOUND:
            count = self._load()
            self.vms = [self._load() for _ in range(int(count))]
            return (status, None, None)
        if status != Q_OK:
            return (status, None, None)
        mode = self._load()
        seed = self._load()
        # Like vSPCClient: from here on the raw socket is read, and what
        # the buffered reader already holds is lost.
        left = self._raw.nread - self._file.tell()
        self.lost = self._file.read(left) if left > 0 else b''
        if telnet:
            self.start_telnet()
        return (status, mode, seed)

    def start_telnet(self):
        """Send vSPCClient's negotiation; the telnet phase begins."""
        self.telnet = Telnet(self.sock, will_ok=(BINARY, SGA),
                             do_ok=(BINARY, SGA))
        self.telnet.us[BINARY] = self.telnet.us[SGA] = 'want'
        self.telnet.him[BINARY] = self.telnet.him[SGA] = 'want'
        self.telnet.send_raw(CLIENT_TELNET_HELLO)

    def listing(self):
        """The listing as vSPCClient prints it, one line per VM."""
        lines = []
        for vm in sorted(self.vms, key=lambda v: v[Q_NAME]):
            s = '%s:%s' % (vm[Q_NAME], vm[Q_UUID])
            if vm.get(Q_PORT) is not None:
                s += ':%s' % vm[Q_PORT]
            lines.append(s)
        return lines

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

    def wait_negotiation(self, count, timeout=2.0):
        """Wait until count negotiations have been received."""
        end = time.monotonic() + timeout
        while len(self.telnet.received) < count:
            left = end - time.monotonic()
            if left <= 0 or not self.telnet.recv_once(left):
                break
        return list(self.telnet.received)

    def closed_by_peer(self, timeout=2.0):
        """True if the server closes the connection within timeout."""
        end = time.monotonic() + timeout
        if self.telnet is None:
            self.sock.settimeout(timeout)
            try:
                while self.sock.recv(65536):
                    if time.monotonic() > end:
                        return False
            except socket.timeout:
                return False
            except OSError:
                pass
            return True
        while not self.telnet.eof:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.telnet.recv_once(left)
        return True

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def _escape_menu(restore, raw):
    """vSPCClient's ^] prompt; return 'quit', 'continue' or 'escape'."""
    restore()
    try:
        while True:
            try:
                line = input('vspc> ').strip()
            except EOFError:
                return 'quit'
            if line in ('quit', 'q'):
                return 'quit'
            if line in ('continue', 'c', ''):
                return 'continue'
            if line == 'print-escape':
                return 'escape'
            print('quit, q: exit\n'
                  'continue, c, empty line: resume\n'
                  'print-escape: send ^] to the VM')
    finally:
        raw()


def _interactive(c, stdout_only):
    out = sys.stdout.buffer
    tn = c.telnet
    tty = sys.stdin.isatty() and not stdout_only
    restore = raw = (lambda: None)
    if tty:
        import termios
        import tty as ttymod
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)

        def restore():
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

        def raw():
            ttymod.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[0] |= termios.ICRNL
            termios.tcsetattr(fd, termios.TCSADRAIN, attrs)
        raw()
    stdin_open = not stdout_only
    quiet_since = None      # Set once piped stdin is done.
    try:
        while True:
            rl = [c.sock] + ([sys.stdin] if stdin_open else [])
            r, _, _ = select.select(rl, [], [], 0.2)
            if c.sock in r:
                if not tn.recv_once(0):
                    break
                d = tn.take()
                if d:
                    out.write(d.decode('utf-8', 'replace').encode())
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
                    pre, _, post = b.partition(CLIENT_ESCAPE_CHAR)
                    if pre:
                        c.write(pre)
                    what = _escape_menu(restore, raw)
                    if what == 'quit':
                        break
                    if what == 'escape':
                        c.write(CLIENT_ESCAPE_CHAR)
                    if post:
                        c.write(post)
                    continue
                c.write(b)
            # Piped input: leave once it is done and the VM is quiet.
            if quiet_since is not None and \
                    time.monotonic() - quiet_since > 1.0:
                break
    finally:
        restore()


def main(argv=None):
    p = argparse.ArgumentParser(
        description='Attach to a VM console through a vSPC admin port '
                    '(vSPC.py vSPCClient protocol).')
    p.add_argument('-s', '--server', default='localhost')
    p.add_argument('-a', '--admin-port', type=int, default=13371)
    p.add_argument('-b', '--bind', metavar='ADDRESS',
                   help='local address to connect from (testing)')
    p.add_argument('--client-lock-mode', choices=sorted(LOCK_MODES),
                   default='free-for-all-fallback')
    p.add_argument('--raw-lock-mode', metavar='STRING',
                   help='send this lock string as is (testing)')
    p.add_argument('--protocol', type=int, choices=[0, 2, 3, 4, 5],
                   default=4, help='pickle protocol to send (default 4)')
    p.add_argument('-d', '--debug', action='store_true')
    p.add_argument('--stdout', action='store_true',
                   help='only copy VM output to stdout')
    p.add_argument('vm', nargs='?')
    a = p.parse_args(argv)

    lock = a.raw_lock_mode or LOCK_MODES[a.client_lock_mode]
    c = VspcClient(a.server, a.admin_port, a.protocol, source=a.bind)
    try:
        status, mode, seed = c.connect(a.vm, lock)
    except (OSError, ProtocolError) as e:
        print('vspcclient: %s' % e, file=sys.stderr)
        return 1
    if a.debug:
        print('status %r mode %r lost %r' % (status, mode, c.lost),
              file=sys.stderr)
    if status == Q_VM_NOTFOUND:
        if a.vm is not None:
            print("The host '%s' couldn't find the vm '%s'. "
                  'The host knows about the following VMs:' %
                  (a.server, a.vm), file=sys.stderr)
        for line in c.listing():
            print(line)
        c.close()
        return 0 if a.vm is None else 1
    if status == Q_LOCK_BAD:
        print("The host doesn't understand how to give me a write lock",
              file=sys.stderr)
        c.close()
        return 1
    if status == Q_LOCK_FAILED:
        print('Someone else has a write lock on the VM', file=sys.stderr)
        c.close()
        return 1
    if status != Q_OK:
        print('vspcclient: unexpected status %r' % (status,),
              file=sys.stderr)
        c.close()
        return 1
    if mode == Q_LOCK_FFAR:
        print('Someone else has an exclusive write lock; operating in '
              'read-only mode', file=sys.stderr)
    if seed:
        sys.stdout.write(seed)
        sys.stdout.flush()
    try:
        _interactive(c, a.stdout)
    except KeyboardInterrupt:
        pass
    c.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
