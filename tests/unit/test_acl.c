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
 * Unit tests for node/acl.c: address lists (IPv4, IPv6, IPv4-mapped
 * sources), listen addresses and address formatting.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vspcd.h"

/* Does the list text match the address text (either family)? */
static int
match(const char *list, const char *addr)
{
	struct acl		 acl;
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	char			*err = NULL;
	int			 rv;

	if (acl_parse(&acl, list, &err) != 0) {
		print_error("%s: %s\n", list, err);
		fail();
	}
	memset(&sin, 0, sizeof sin);
	memset(&sin6, 0, sizeof sin6);
	if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		rv = acl_match(&acl, (struct sockaddr *)&sin);
	} else {
		assert_int_equal(inet_pton(AF_INET6, addr, &sin6.sin6_addr),
		    1);
		sin6.sin6_family = AF_INET6;
		rv = acl_match(&acl, (struct sockaddr *)&sin6);
	}
	acl_free(&acl);
	return (rv);
}

static void
test_acl_match(void **state)
{
	assert_true(match("10.0.0.0/8", "10.1.2.3"));
	assert_false(match("10.0.0.0/8", "11.0.0.1"));
	assert_true(match("10.0.0.0/8, ::1, 192.168.1.7", "192.168.1.7"));
	assert_false(match("10.0.0.0/8, ::1, 192.168.1.7", "192.168.1.8"));
	assert_true(match("10.0.0.0/8, ::1, 192.168.1.7", "::1"));
	assert_false(match("10.0.0.0/8, ::1, 192.168.1.7", "::2"));
	assert_true(match("10.0.0.0/8 192.168.0.0/16", "192.168.200.1"));
	assert_true(match("172.16.0.0/12", "172.31.255.255"));
	assert_false(match("172.16.0.0/12", "172.32.0.0"));
	assert_true(match("192.168.1.128/25", "192.168.1.200"));
	assert_false(match("192.168.1.128/25", "192.168.1.100"));
	/* Host bits in the entry are ignored. */
	assert_true(match("10.9.9.9/8", "10.0.0.1"));
	assert_true(match("0.0.0.0/0", "1.2.3.4"));
	assert_false(match("0.0.0.0/0", "::1"));
	assert_true(match("::/0", "2001:db8::1"));
	assert_true(match("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(match("2001:db8::/32", "2001:db9::1"));
	assert_true(match("fe80::/10", "febf::1"));
	assert_false(match("fe80::/10", "fec0::1"));
	/* Empty lists match nothing. */
	assert_false(match("", "127.0.0.1"));
	assert_false(match(" , ", "::1"));
}

static void
test_acl_mapped(void **state)
{
	/* IPv4-mapped sources match IPv4 entries, not IPv6 ones. */
	assert_true(match("10.0.0.0/8", "::ffff:10.1.2.3"));
	assert_false(match("10.0.0.0/8", "::ffff:11.1.2.3"));
	assert_true(match("127.0.0.1", "::ffff:127.0.0.1"));
	assert_false(match("::/0", "::ffff:127.0.0.1"));
	assert_true(match("0.0.0.0/0, ::/0", "::ffff:127.0.0.1"));
}

static void
test_acl_bad(void **state)
{
	const char	*bad[] = {
		"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x",
		"10.0.0.0/-1", "10.0.0.256", "host.example", "1.2.3.4/8/8",
		"10.0.0.0/8, nonsense", "*",
	};
	struct acl	 acl;
	char		*err;
	size_t		 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err = NULL;
		if (acl_parse(&acl, bad[i], &err) != -1) {
			print_error("accepted \"%s\"\n", bad[i]);
			fail();
		}
		assert_non_null(err);
		assert_int_equal(acl.n, 0);
		assert_null(acl.e);
		free(err);
	}
}

static void
listen_ok(const char *text, int port, const char *want)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	char			*err = NULL, buf[64];

	if (addr_parse_listen(text, port, &ss, &len, &err) != 0) {
		print_error("%s: %s\n", text, err);
		fail();
	}
	assert_int_equal(len, ss.ss_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	assert_string_equal(addr_fmt((struct sockaddr *)&ss, buf, sizeof buf),
	    want);
}

static void
listen_bad(const char *text, int port)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	char			*err = NULL;

	if (addr_parse_listen(text, port, &ss, &len, &err) != -1) {
		print_error("accepted \"%s\"\n", text);
		fail();
	}
	assert_non_null(err);
	free(err);
}

static void
test_listen(void **state)
{
	listen_ok("0.0.0.0:13370", 1, "0.0.0.0:13370");
	listen_ok("[::]:13370", 1, "[::]:13370");
	listen_ok("*:13370", 1, "0.0.0.0:13370");
	listen_ok(":13370", 1, "0.0.0.0:13370");
	listen_ok("127.0.0.1", 13372, "127.0.0.1:13372");
	listen_ok("::1", 13372, "[::1]:13372");
	listen_ok("[::1]", 13372, "[::1]:13372");
	listen_ok("[fe80::1]:65535", 0, "[fe80::1]:65535");
	listen_ok("10.0.0.1:1", 13370, "10.0.0.1:1");

	listen_bad("127.0.0.1", 0);
	listen_bad("127.0.0.1:0", 13370);
	listen_bad("127.0.0.1:65536", 13370);
	listen_bad("127.0.0.1:http", 13370);
	listen_bad("127.0.0.1:-1", 13370);
	listen_bad("localhost:13370", 13370);
	listen_bad("[::1", 13370);
	listen_bad("[::1]x", 13370);
	listen_bad("[10.0.0.1]:x", 13370);
	listen_bad("", 0);
}

static void
test_fmt(void **state)
{
	struct sockaddr_in	sin;
	struct sockaddr_in6	sin6;
	char			buf[64], tiny[8];

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(5678);
	inet_pton(AF_INET, "1.2.3.4", &sin.sin_addr);
	assert_string_equal(addr_fmt((struct sockaddr *)&sin, buf,
	    sizeof buf), "1.2.3.4:5678");

	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(5678);
	inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
	assert_string_equal(addr_fmt((struct sockaddr *)&sin6, buf,
	    sizeof buf), "[::1]:5678");

	inet_pton(AF_INET6, "::ffff:10.0.0.9", &sin6.sin6_addr);
	assert_string_equal(addr_fmt((struct sockaddr *)&sin6, buf,
	    sizeof buf), "10.0.0.9:5678");

	/* Truncated, never overrun. */
	assert_string_equal(addr_fmt((struct sockaddr *)&sin, tiny,
	    sizeof tiny), "1.2.3.4");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_acl_match),
		cmocka_unit_test(test_acl_mapped),
		cmocka_unit_test(test_acl_bad),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_fmt),
	};

	log_init(1, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
