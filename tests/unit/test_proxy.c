/*
 * Copyright (c) 2026 The vspcd authors
 *
 * Permission to use, copy, modify, and distribute this software for any
 * purpose with or without fee is hereby granted, provided that the above
 * copyright notice and this permission notice appear in all copies.
 *
 * THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
 * WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
 * MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
 * ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
 * WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
 * ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
 * OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
 */

/*
 * Unit tests for the PROXY header parser in node/proxy.c: v1 (TCP4,
 * TCP6, UNKNOWN) and v2 (PROXY, LOCAL, IPv4, IPv6, TLVs), every
 * truncation of a valid header, and what must be refused.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vspcd.h"

/* What proxy.c uses of the rest of the node, for linking only. */
struct event_base	*server_base;
struct config		*server_conf;
struct stats		 server_stats;

const char *
server_listener_name(u_int kind)
{
	(void)kind;
	return ("test");
}

/* The hand-over re-serves a connection through this; not run here. */
void
server_dispatch(int fd, const struct sockaddr *sa, u_int kind,
    const char *name)
{
	(void)fd;
	(void)sa;
	(void)kind;
	(void)name;
	fatalx("server_dispatch: not in unit tests");
}

static const u_char v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* A v2 header: signature, ver_cmd, family, then body. */
static size_t
v2(u_char *out, u_char ver_cmd, u_char fam, const u_char *body, size_t n)
{
	memcpy(out, v2_sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (u_char)(n >> 8);
	out[15] = (u_char)n;
	if (n > 0)
		memcpy(out + 16, body, n);
	return (16 + n);
}

static int
parse(const void *buf, size_t len, struct sockaddr_storage *ss,
    size_t *hdrlen, const char **err)
{
	*err = NULL;
	*hdrlen = 0;
	return (proxy_parse(buf, len, ss, hdrlen, err));
}

/* The parser's verdict on the whole of a string. */
static int
verdict(const char *s)
{
	struct sockaddr_storage	 ss;
	const char		*err;
	size_t			 hdrlen;
	int			 rv;

	rv = parse(s, strlen(s), &ss, &hdrlen, &err);
	if (rv == -1)
		assert_non_null(err);
	return (rv);
}

/* Every proper prefix needs more; the whole header is complete. */
static void
check_prefixes(const u_char *h, size_t len)
{
	struct sockaddr_storage	 ss;
	const char		*err;
	size_t			 k, hdrlen;

	for (k = 0; k < len; k++)
		assert_int_equal(parse(h, k, &ss, &hdrlen, &err), 0);
	assert_int_equal(parse(h, len, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, len);
}

static void
check_v4(const struct sockaddr_storage *ss, const char *addr, int port)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)ss;
	char				 text[INET_ADDRSTRLEN];

	assert_int_equal(ss->ss_family, AF_INET);
	inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
	assert_string_equal(text, addr);
	assert_int_equal(ntohs(sin->sin_port), port);
}

static void
check_v6(const struct sockaddr_storage *ss, const char *addr, int port)
{
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)ss;
	char				 text[INET6_ADDRSTRLEN];

	assert_int_equal(ss->ss_family, AF_INET6);
	inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
	assert_string_equal(text, addr);
	assert_int_equal(ntohs(sin6->sin6_port), port);
}

static void
test_v1_tcp4(void **state)
{
	static const char	 h[] = "PROXY TCP4 10.1.2.3 10.0.0.10 5555 "
	    "13370\r\n";
	u_char			 buf[128];
	struct sockaddr_storage	 ss;
	const char		*err;
	size_t			 hdrlen;

	/* The ESXi bytes that follow are not part of the header. */
	memcpy(buf, h, sizeof h - 1);
	memcpy(buf + sizeof h - 1, "\xff\xfb\x25", 3);
	assert_int_equal(parse(buf, sizeof h + 2, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, sizeof h - 1);
	check_v4(&ss, "10.1.2.3", 5555);
	check_prefixes((const u_char *)h, sizeof h - 1);
}

static void
test_v1_tcp6(void **state)
{
	static const char	 h[] = "PROXY TCP6 2001:db8::1 2001:db8::2 "
	    "40000 13370\r\n";
	struct sockaddr_storage	 ss;
	const char		*err;
	size_t			 hdrlen;

	assert_int_equal(parse(h, sizeof h - 1, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, sizeof h - 1);
	check_v6(&ss, "2001:db8::1", 40000);
	check_prefixes((const u_char *)h, sizeof h - 1);

	/* An IPv4-mapped source is an IPv6 address on the wire. */
	assert_int_equal(verdict("PROXY TCP6 ::ffff:10.1.2.3 ::1 1 2\r\n"), 1);
}

static void
test_v1_unknown(void **state)
{
	static const char	 h[] = "PROXY UNKNOWN\r\n";
	static const char	 h2[] = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
	struct sockaddr_storage	 ss;
	const char		*err;
	size_t			 hdrlen;

	/* Keep the connection's own address. */
	assert_int_equal(parse(h, sizeof h - 1, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, sizeof h - 1);
	assert_int_equal(ss.ss_family, AF_UNSPEC);
	check_prefixes((const u_char *)h, sizeof h - 1);
	assert_int_equal(parse(h2, sizeof h2 - 1, &ss, &hdrlen, &err), 1);
	assert_int_equal(ss.ss_family, AF_UNSPEC);
	assert_int_equal(hdrlen, sizeof h2 - 1);
}

static void
test_v1_length(void **state)
{
	char	line[200];
	size_t	n;

	/* 107 bytes with the \r\n is the most a v1 header may have. */
	snprintf(line, sizeof line, "PROXY UNKNOWN ");
	n = strlen(line);
	memset(line + n, 'x', 105 - n);
	memcpy(line + 105, "\r\n", 3);
	assert_int_equal(strlen(line), 107);
	assert_int_equal(verdict(line), 1);
	check_prefixes((const u_char *)line, 107);

	/* One more byte: refused as soon as it is clear, not at 108. */
	memset(line + n, 'x', 106 - n);
	line[106] = '\0';
	assert_int_equal(verdict(line), -1);
	memcpy(line + 106, "\r\n", 3);
	assert_int_equal(verdict(line), -1);
}

static void
test_v1_bad(void **state)
{
	/* Not a header at all: refused on the first byte that shows it. */
	assert_int_equal(verdict("GET / HTTP/1.0\r\n"), -1);
	assert_int_equal(verdict("\xff\xfb\x25"), -1);
	assert_int_equal(verdict("X"), -1);
	assert_int_equal(verdict("PROX\r"), -1);
	assert_int_equal(verdict("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"), -1);
	assert_int_equal(verdict("PROXYTCP4"), -1);

	/* Headers that look right but are not. */
	assert_int_equal(verdict("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"), -1);
	assert_int_equal(verdict("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"), -1);
	assert_int_equal(verdict("PROXY \r\n"), -1);
	assert_int_equal(verdict("PROXY TCP4\r\n"), -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"), -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n"),
	    -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n"), -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n"), -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"),
	    -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n"),
	    -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n"), -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.4 0x10 2\r\n"),
	    -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n"), -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.256 1 2\r\n"),
	    -1);
	assert_int_equal(verdict("PROXY TCP4 ::1 ::1 1 2\r\n"), -1);
	assert_int_equal(verdict("PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n"), -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"), -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX"), -1);
	assert_int_equal(verdict("PROXY TCP4 1.2.3.4\t1.2.3.4 1 2\r\n"), -1);
	assert_int_equal(verdict("PROXY UNKNOWN \x80\r\n"), -1);

	/* The boundary values are fine. */
	assert_int_equal(verdict("PROXY TCP4 0.0.0.0 1.2.3.4 0 65535\r\n"),
	    1);
}

static void
test_v2_proxy4(void **state)
{
	/* Source 10.1.2.3:5555, destination 10.0.0.10:13370, then TLVs. */
	static const u_char	 body[] = {
		10, 1, 2, 3, 10, 0, 0, 10, 0x15, 0xb3, 0x34, 0x3a,
		0x04, 0x00, 0x03, 0, 0, 0,		/* PP2_TYPE_NOOP */
		0x01, 0x00, 0x02, 'h', '2'		/* PP2_TYPE_ALPN */
	};
	u_char			 h[64];
	struct sockaddr_storage	 ss;
	const char		*err;
	size_t			 n, hdrlen;

	n = v2(h, 0x21, 0x11, body, sizeof body);
	h[n] = 0xff;	/* The first ESXi byte. */
	assert_int_equal(parse(h, n + 1, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, n);
	check_v4(&ss, "10.1.2.3", 5555);
	check_prefixes(h, n);

	/* No TLVs, just the addresses. */
	n = v2(h, 0x21, 0x11, body, 12);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, 28);
	check_v4(&ss, "10.1.2.3", 5555);
}

static void
test_v2_proxy6(void **state)
{
	u_char			 body[36], h[64];
	struct sockaddr_storage	 ss;
	const char		*err;
	size_t			 n, hdrlen;

	memset(body, 0, sizeof body);
	inet_pton(AF_INET6, "2001:db8::7", body);
	inet_pton(AF_INET6, "2001:db8::1", body + 16);
	body[32] = 0x9c;	/* 40000 */
	body[33] = 0x40;
	body[35] = 23;
	n = v2(h, 0x21, 0x21, body, sizeof body);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, 52);
	check_v6(&ss, "2001:db8::7", 40000);
	check_prefixes(h, n);
}

static void
test_v2_local(void **state)
{
	static const u_char	 body[12] = { 1, 2, 3, 4 };
	u_char			 h[64];
	struct sockaddr_storage	 ss;
	const char		*err;
	size_t			 n, hdrlen;

	/* LOCAL (a health check): no address, whatever the family says. */
	n = v2(h, 0x20, 0x00, NULL, 0);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, 16);
	assert_int_equal(ss.ss_family, AF_UNSPEC);
	check_prefixes(h, n);
	n = v2(h, 0x20, 0x11, body, sizeof body);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, 28);
	assert_int_equal(ss.ss_family, AF_UNSPEC);

	/* PROXY with an unspecified family keeps the address too. */
	n = v2(h, 0x21, 0x00, NULL, 0);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), 1);
	assert_int_equal(ss.ss_family, AF_UNSPEC);
}

static void
test_v2_bad(void **state)
{
	static u_char		 body[600];
	u_char			 h[700];
	struct sockaddr_storage	 ss;
	const char		*err;
	size_t			 n, hdrlen, i;

	/* A wrong byte anywhere in the signature. */
	for (i = 1; i < 12; i++) {
		n = v2(h, 0x21, 0x11, body, 12);
		h[i] ^= 0x40;
		assert_int_equal(parse(h, n, &ss, &hdrlen, &err), -1);
		assert_non_null(err);
		/* Known as soon as the byte is there. */
		assert_int_equal(parse(h, i + 1, &ss, &hdrlen, &err), -1);
	}

	/* Version 1 in v2 format, unknown commands. */
	n = v2(h, 0x11, 0x11, body, 12);
	assert_int_equal(parse(h, 13, &ss, &hdrlen, &err), -1);
	n = v2(h, 0x22, 0x11, body, 12);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), -1);

	/* Oversized: refused from the length alone. */
	n = v2(h, 0x21, 0x11, body, 513);
	assert_int_equal(parse(h, 16, &ss, &hdrlen, &err), -1);
	n = v2(h, 0x21, 0x11, body, 512);
	assert_int_equal(parse(h, 16, &ss, &hdrlen, &err), 0);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), 1);
	assert_int_equal(hdrlen, 528);
	h[14] = 0xff;
	h[15] = 0xff;
	assert_int_equal(parse(h, 16, &ss, &hdrlen, &err), -1);

	/* Too short for the family's addresses. */
	n = v2(h, 0x21, 0x11, body, 11);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), -1);
	n = v2(h, 0x21, 0x21, body, 35);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), -1);

	/* UDP and unknown families. */
	n = v2(h, 0x21, 0x12, body, 12);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), -1);
	n = v2(h, 0x21, 0x22, body, 36);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), -1);
	n = v2(h, 0x21, 0x41, body, 12);
	assert_int_equal(parse(h, n, &ss, &hdrlen, &err), -1);
	assert_non_null(err);
}

int
main(void)
{
	const struct CMUnitTest	tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6),
		cmocka_unit_test(test_v1_unknown),
		cmocka_unit_test(test_v1_length),
		cmocka_unit_test(test_v1_bad),
		cmocka_unit_test(test_v2_proxy4),
		cmocka_unit_test(test_v2_proxy6),
		cmocka_unit_test(test_v2_local),
		cmocka_unit_test(test_v2_bad),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
