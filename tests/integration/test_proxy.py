# PROXY protocol headers (v1 and v2) from the [vm] proxy_protocol_from
# addresses: the node serves the connection as coming from the source the
# header names, checks [vm] allow against it, and closes (with a log line)
# a connection from such an address that has no valid header.  Here the
# "balancer" is the test itself on 127.0.0.1.

import os
import select
import socket
import struct
import sys
import time
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import FakeVM  # noqa: E402

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, sport, dport=13370):
    fam, dst = ("TCP6", "::1") if ":" in src else ("TCP4", "127.0.0.1")
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport,
                                          dport)).encode()


def v2(src, sport, dport=13370, tlvs=b"", local=False):
    body = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + \
        struct.pack("!HH", sport, dport) + tlvs
    if local:
        return V2_SIG + b"\x20\x00" + struct.pack("!H", 0)
    return V2_SIG + b"\x21\x11" + struct.pack("!H", len(body)) + body


class Prefixed:
    """A socket whose first sendall() carries a PROXY header in front, so
    that the header and the first ESXi bytes share a segment."""

    def __init__(self, sock, header):
        self.sock = sock
        self.header = header

    def sendall(self, b):
        if self.header is not None:
            b, self.header = self.header + b, None
        return self.sock.sendall(b)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def proxied_vm(node, header, split=False, **kw):
    """A FakeVM behind a balancer: header first, then the ESXi bytes.
    split: send the header a byte at a time, in its own segments."""
    real = socket.create_connection

    def connect(addr, timeout=None):
        s = real(addr, timeout)
        if not split:
            return Prefixed(s, header)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(header)):
            s.sendall(header[i:i + 1])
            time.sleep(0.01)
        return s
    with mock.patch.object(socket, "create_connection", connect):
        return FakeVM(node, **kw)


def raw(node, data, port=None):
    s = socket.create_connection(("127.0.0.1", port or node.vm_port), 5)
    if data:
        s.sendall(data)
    return s


def closed(s, timeout=5.0):
    """True if the node closes s (reading what it sends until then);
    s is closed on our side too."""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            r, _, _ = select.select([s], [], [], 0.1)
            if r:
                try:
                    if not s.recv(4096):
                        return True
                except OSError:
                    return True
        return False
    finally:
        s.close()


class Proxy(harness.NodeTest):

    http_port = harness.free_port()
    node_extra = {"vm.proxy_protocol_from": "127.0.0.1",
                  "vm.allow": "10.0.0.0/8",
                  "vm.negotiation_timeout": "2",
                  "http.listen": "127.0.0.1:%d" % http_port}

    def wait_log(self, text, timeout=5.0):
        harness.wait_for(lambda: text in self.node.log(), timeout,
                         "%r in the log" % text)

    def person(self, header):
        """A person on the console port behind the balancer."""
        s = raw(self.node, header, self.node.console_port)
        buf = b""
        end = time.monotonic() + 5
        while b"? lists): " not in buf and time.monotonic() < end:
            r, _, _ = select.select([s], [], [], 0.2)
            if r:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        return s, buf

    def metric(self, name):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
        c.close()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        raise AssertionError("no %s in /metrics" % name)

    def test_v1_served_as_source(self):
        vm = proxied_vm(self.node, v1("10.1.2.3", 5555), name="v1vm")
        vm.ready()
        self.wait_log('VM "v1vm" connected from 10.1.2.3:5555')
        # The ESXi bytes after the header reached the telnet codec whole:
        # a person sees the VM's output.
        s, banner = self.person(v1("10.9.9.9", 4242, self.node.console_port))
        self.assertIn(b"? lists): ", banner)
        s.sendall(b"?\r")
        self.assertFalse(closed(s, 0.5))

    def test_v1_header_in_pieces(self):
        vm = proxied_vm(self.node, v1("10.1.2.4", 6000), split=True,
                        name="slow")
        vm.ready()
        self.wait_log('VM "slow" connected from 10.1.2.4:6000')

    def test_v1_tcp6_outside_allow(self):
        vm = proxied_vm(self.node, v1("2001:db8::5", 7000), name="six")
        self.assertTrue(vm.wait_closed())
        self.wait_log("connection from [2001:db8::5]:7000 refused by "
                      "[vm] allow")

    def test_v2_with_tlvs(self):
        tlvs = b"\x04\x00\x03\x00\x00\x00"      # PP2_TYPE_NOOP
        vm = proxied_vm(self.node, v2("10.7.8.9", 40000, tlvs=tlvs),
                        name="v2vm")
        vm.ready()
        self.wait_log('VM "v2vm" connected from 10.7.8.9:40000')

    def test_v2_local_keeps_balancer_address(self):
        # LOCAL: the balancer's own connection, so its address, which
        # [vm] allow (10.0.0.0/8) does not list.
        vm = proxied_vm(self.node, v2("10.1.1.1", 1, local=True),
                        name="local")
        self.assertTrue(vm.wait_closed())
        self.wait_log("connection from 127.0.0.1:")
        self.assertIn("refused by [vm] allow", self.node.log())

    def test_source_outside_allow_refused(self):
        vm = proxied_vm(self.node, v1("192.168.1.1", 5555), name="out")
        self.assertTrue(vm.wait_closed())
        self.wait_log("connection from 192.168.1.1:5555 refused by [vm] "
                      "allow")
        self.assertNotIn('VM "out" connected', self.node.log())

    def test_no_header_refused(self):
        before = self.metric("vspcd_proxy_refused_total")
        vm = FakeVM(self.node, name="bare")
        self.assertTrue(vm.wait_closed())
        self.wait_log('PROXY header expected from 127.0.0.1:')
        self.assertIn('got "\\xff\\xfb%', self.node.log())
        self.assertNotIn('VM "bare" connected', self.node.log())
        self.assertEqual(self.metric("vspcd_proxy_refused_total"),
                         before + 1)

    def test_garbage_refused_and_logged(self):
        s = raw(self.node, b"GET / HTTP/1.0\r\n")
        self.assertTrue(closed(s))
        self.wait_log('got "GET / HTTP/1.0\\x0d\\x0a" (not a PROXY header)')
        s = raw(self.node, b"PROXY TCP4 10.1.2.3 nonsense 1 2\r\n")
        self.assertTrue(closed(s))
        self.wait_log("(v1 header with a bad IPv4 address)")
        s = raw(self.node, V2_SIG + b"\x21\x11\xff\xff")
        self.assertTrue(closed(s))
        self.wait_log("(v2 header longer than 512 bytes)")

    def test_silent_connection_times_out(self):
        s = raw(self.node, b"PROXY TCP4 10.1.2.3")
        self.assertTrue(closed(s, 10))
        self.wait_log('got "PROXY TCP4 10.1.2.3" (timed out)')

    def test_console_without_header_refused(self):
        s = raw(self.node, b"", self.node.console_port)
        s.sendall(b"?\r")
        self.assertTrue(closed(s))
        self.wait_log('got "?\\x0d" (not a PROXY header)')

    def test_bad_connections_leave_others_alone(self):
        good = proxied_vm(self.node, v1("10.1.2.3", 5555), name="good")
        good.ready()
        person, _ = self.person(v1("10.9.9.9", 4242,
                                   self.node.console_port))
        person.sendall(b"good\r")
        for bad in (b"", b"GET /\r\n", b"\xff\xfb\x25",
                    V2_SIG + b"\x21\x12\x00\x0c" + bytes(12)):
            s = raw(self.node, bad)
            if bad:
                self.assertTrue(closed(s))
            else:
                s.close()
        good.send(b"still here\r\n")
        buf = b""
        end = time.monotonic() + 5
        while b"still here" not in buf and time.monotonic() < end:
            r, _, _ = select.select([person], [], [], 0.2)
            if r:
                chunk = person.recv(4096)
                if not chunk:
                    break
                buf += chunk
        self.assertIn(b"still here", buf)
        person.sendall(b"k")
        self.assertEqual(good.wait_data(1), b"k")
        person.close()


if __name__ == "__main__":
    unittest.main()
