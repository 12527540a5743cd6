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
 * Unit tests for node/limit.c: per-source counts up to the limit, kinds
 * and sources counted apart, ports ignored, IPv4-mapped IPv6 counted as
 * IPv4, slots freed when the last connection of a source ends.
 */

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

static struct sockaddr *
v4(const char *a, u_short port)
{
	static struct sockaddr_in	sin[4];
	static u_int			n;

	n = (n + 1) % 4;
	memset(&sin[n], 0, sizeof sin[n]);
	sin[n].sin_family = AF_INET;
	sin[n].sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, a, &sin[n].sin_addr), 1);
	return ((struct sockaddr *)&sin[n]);
}

static struct sockaddr *
v6(const char *a, u_short port)
{
	static struct sockaddr_in6	sin6;

	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, a, &sin6.sin6_addr), 1);
	return ((struct sockaddr *)&sin6);
}

static void
test_limit(void **state)
{
	struct limit_slot	*s[5], *o, *m;
	u_int			 i;

	(void)state;
	for (i = 0; i < 3; i++) {
		s[i] = limit_take(v4("10.0.0.1", 1000 + i), 0, 3);
		assert_non_null(s[i]);
	}
	/* The fourth from the same host, any port: refused. */
	assert_null(limit_take(v4("10.0.0.1", 2000), 0, 3));
	/* The mapped spelling is the same host. */
	assert_null(limit_take(v6("::ffff:10.0.0.1", 1), 0, 3));
	assert_int_equal(limit_count(v4("10.0.0.1", 0), 0), 3);
	/* Another kind, another host: counted apart. */
	o = limit_take(v4("10.0.0.1", 1), 1, 3);
	assert_non_null(o);
	m = limit_take(v6("fe80::1", 1), 0, 3);
	assert_non_null(m);
	assert_int_equal(limit_sources(), 3);
	/* 0 = no limit. */
	s[3] = limit_take(v4("10.0.0.1", 1), 0, 0);
	assert_non_null(s[3]);
	assert_int_equal(limit_count(v4("10.0.0.1", 0), 0), 4);

	/* One leaves: one may come. */
	limit_put(s[0]);
	limit_put(s[3]);
	s[4] = limit_take(v4("10.0.0.1", 3000), 0, 3);
	assert_non_null(s[4]);
	assert_null(limit_take(v4("10.0.0.1", 3001), 0, 3));

	limit_put(s[1]);
	limit_put(s[2]);
	limit_put(s[4]);
	limit_put(o);
	limit_put(m);
	limit_put(NULL);
	assert_int_equal(limit_sources(), 0);
	assert_int_equal(limit_count(v4("10.0.0.1", 0), 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit),
	};

	log_init(1, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
