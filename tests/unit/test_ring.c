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
 * Unit tests for node/ring.c.  Contents are checked against a model: the
 * byte at offset o of a test stream is pattern(o), so whatever the ring
 * holds can be verified from offsets alone.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vspcd.h"

static u_char
pattern(uint64_t o)
{
	return ((o * 7 + (o >> 8)) & 0xff);
}

/* Append len bytes of the pattern stream. */
static void
append_pattern(struct ring *r, size_t len)
{
	u_char		*buf;
	uint64_t	 o = r->end;
	size_t		 i;

	buf = malloc(len + 1);
	assert_non_null(buf);
	for (i = 0; i < len; i++)
		buf[i] = pattern(o + i);
	ring_append(r, buf, len);
	free(buf);
}

/* Everything held is the pattern at the right offsets. */
static void
check_pattern(const struct ring *r)
{
	u_char		*buf;
	uint64_t	 o, start = ring_start(r);
	size_t		 n;

	assert_int_equal(r->end - start, r->len);
	assert_true(r->len <= r->size);
	assert_true(r->size <= r->max);
	if (r->len == 0)
		return;
	buf = malloc(r->len);
	assert_non_null(buf);
	n = ring_copy(r, start, buf, r->len);
	assert_int_equal(n, r->len);
	for (o = start; o < r->end; o++) {
		if (buf[o - start] != pattern(o))
			fail_msg("offset %llu", (unsigned long long)o);
	}
	free(buf);
}

static void
test_growth(void **state)
{
	struct ring	r;

	ring_init(&r, 16384);
	assert_null(r.buf);
	assert_int_equal(r.size, 0);
	assert_int_equal(ring_start(&r), 0);
	assert_int_equal(r.end, 0);
	ring_append(&r, NULL, 0);
	assert_null(r.buf);

	append_pattern(&r, 10);
	assert_non_null(r.buf);
	assert_int_equal(r.size, 1024);
	append_pattern(&r, 1014);
	assert_int_equal(r.size, 1024);
	append_pattern(&r, 1);
	assert_int_equal(r.size, 2048);
	check_pattern(&r);
	append_pattern(&r, 5000);
	assert_int_equal(r.size, 8192);
	check_pattern(&r);
	append_pattern(&r, 12000);
	/* Capped: the oldest bytes went. */
	assert_int_equal(r.size, 16384);
	assert_int_equal(r.len, 16384);
	assert_int_equal(r.end, 10 + 1014 + 1 + 5000 + 12000);
	assert_int_equal(ring_start(&r), r.end - 16384);
	check_pattern(&r);
	ring_free(&r);
	assert_null(r.buf);

	/* A big first write: the size is rounded up, not 1 KiB. */
	ring_init(&r, 1 << 20);
	append_pattern(&r, 3000);
	assert_int_equal(r.size, 4096);
	check_pattern(&r);
	ring_free(&r);

	/* A max that is not a power of two is never exceeded. */
	ring_init(&r, 1500);
	append_pattern(&r, 1000);
	append_pattern(&r, 1000);
	assert_int_equal(r.size, 1500);
	assert_int_equal(r.len, 1500);
	check_pattern(&r);
	ring_free(&r);
}

static void
test_wrap(void **state)
{
	struct ring	r;
	size_t		i;

	ring_init(&r, 1024);
	/* Odd sizes so that writes straddle the end of the buffer. */
	for (i = 0; i < 200; i++) {
		append_pattern(&r, 1 + (i * 37) % 300);
		check_pattern(&r);
	}
	assert_int_equal(r.size, 1024);
	ring_free(&r);
}

static void
test_peek(void **state)
{
	struct ring	 r;
	struct iovec	 iov[2];
	uint64_t	 start;
	int		 n;

	ring_init(&r, 1024);
	append_pattern(&r, 1000);
	append_pattern(&r, 100);	/* Wraps: 76 at the start. */
	start = ring_start(&r);
	assert_int_equal(start, 76);

	n = ring_peek(&r, start, iov, 4096);
	assert_int_equal(n, 2);
	assert_int_equal(iov[0].iov_len + iov[1].iov_len, 1024);
	assert_ptr_equal(iov[0].iov_base, r.buf + 76);
	assert_int_equal(iov[0].iov_len, 1024 - 76);
	assert_ptr_equal(iov[1].iov_base, r.buf);
	assert_int_equal(((u_char *)iov[0].iov_base)[0], pattern(76));
	assert_int_equal(((u_char *)iov[1].iov_base)[0], pattern(1024));

	/* maxlen stops before the wrap. */
	n = ring_peek(&r, start, iov, 100);
	assert_int_equal(n, 1);
	assert_int_equal(iov[0].iov_len, 100);
	/* From after the wrap point: one piece. */
	n = ring_peek(&r, 1050, iov, 4096);
	assert_int_equal(n, 1);
	assert_int_equal(iov[0].iov_len, 50);
	assert_int_equal(((u_char *)iov[0].iov_base)[0], pattern(1050));

	assert_int_equal(ring_peek(&r, r.end, iov, 10), 0);
	assert_int_equal(ring_peek(&r, start - 1, iov, 10), -1);
	assert_int_equal(ring_peek(&r, r.end + 1, iov, 10), -1);
	assert_int_equal(ring_copy(&r, start - 1, NULL, 10), 0);
	ring_free(&r);

	/* Empty ring. */
	ring_init(&r, 1024);
	assert_int_equal(ring_peek(&r, 0, iov, 10), 0);
	assert_int_equal(ring_peek(&r, 1, iov, 10), -1);
	ring_free(&r);
}

static void
append_str(struct ring *r, const char *s)
{
	ring_append(r, (const u_char *)s, strlen(s));
}

static void
test_lines_back(void **state)
{
	struct ring	r;
	u_char		buf[64];
	size_t		n;

	ring_init(&r, 1024);
	assert_int_equal(ring_lines_back(&r, 3), 0);
	append_str(&r, "a\nbb\nccc");
	assert_int_equal(ring_lines_back(&r, 0), 8);
	assert_int_equal(ring_lines_back(&r, 1), 5);	/* Partial line. */
	assert_int_equal(ring_lines_back(&r, 2), 2);
	assert_int_equal(ring_lines_back(&r, 3), 0);
	assert_int_equal(ring_lines_back(&r, 100), 0);
	append_str(&r, "\n");
	assert_int_equal(ring_lines_back(&r, 1), 5);
	assert_int_equal(ring_lines_back(&r, 2), 2);
	n = ring_copy(&r, ring_lines_back(&r, 2), buf, sizeof buf);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "bb\nccc\n", 7);
	/* Empty lines are lines. */
	append_str(&r, "\n\n");
	assert_int_equal(ring_lines_back(&r, 1), 10);
	assert_int_equal(ring_lines_back(&r, 2), 9);
	assert_int_equal(ring_lines_back(&r, 3), 5);
	ring_free(&r);

	/* A single newline; a single partial line. */
	ring_init(&r, 1024);
	append_str(&r, "\n");
	assert_int_equal(ring_lines_back(&r, 1), 0);
	assert_int_equal(ring_lines_back(&r, 2), 0);
	ring_free(&r);
	ring_init(&r, 1024);
	append_str(&r, "x");
	assert_int_equal(ring_lines_back(&r, 1), 0);
	ring_free(&r);
}

/* Lines across the wrap and after the oldest were overwritten. */
static void
test_lines_wrap(void **state)
{
	struct ring	r;
	char		line[32];
	uint64_t	off;
	u_char		buf[32];
	int		i;

	ring_init(&r, 1024);
	for (i = 0; i < 1000; i++) {
		/* 10 bytes each. */
		snprintf(line, sizeof line, "line %04d\n", i);
		append_str(&r, line);
	}
	assert_int_equal(r.end, 10000);
	off = ring_lines_back(&r, 3);
	assert_int_equal(off, 9970);
	assert_int_equal(ring_copy(&r, off, buf, 10), 10);
	assert_memory_equal(buf, "line 0997\n", 10);
	/* 102 whole lines and a tail of 4 bytes are held. */
	assert_int_equal(ring_lines_back(&r, 102), 10000 - 1020);
	assert_int_equal(ring_lines_back(&r, 103), ring_start(&r));
	assert_int_equal(ring_lines_back(&r, 5000), ring_start(&r));
	ring_free(&r);
}

static void
test_big_append(void **state)
{
	struct ring	r;

	ring_init(&r, 1000);
	append_pattern(&r, 10);
	append_pattern(&r, 5000);
	assert_int_equal(r.end, 5010);
	assert_int_equal(r.len, 1000);
	assert_int_equal(r.size, 1000);
	assert_int_equal(ring_start(&r), 4010);
	check_pattern(&r);
	/* Exactly max. */
	append_pattern(&r, 1000);
	assert_int_equal(ring_start(&r), 5010);
	check_pattern(&r);
	append_pattern(&r, 7);
	check_pattern(&r);
	ring_free(&r);

	/* A zero cap holds nothing but still counts. */
	ring_init(&r, 0);
	append_pattern(&r, 100);
	assert_null(r.buf);
	assert_int_equal(r.end, 100);
	assert_int_equal(ring_start(&r), 100);
	ring_free(&r);
}

static void
test_set_max(void **state)
{
	struct ring	r;

	ring_init(&r, 8192);
	append_pattern(&r, 5000);
	assert_int_equal(r.size, 8192);
	ring_set_max(&r, 1000);
	assert_int_equal(r.size, 1000);
	assert_int_equal(r.len, 1000);
	assert_int_equal(ring_start(&r), 4000);
	check_pattern(&r);
	append_pattern(&r, 333);
	check_pattern(&r);
	assert_int_equal(r.size, 1000);

	/* Raising the cap lets it grow again, keeping what it has. */
	ring_set_max(&r, 4000);
	assert_int_equal(r.size, 1000);
	append_pattern(&r, 1500);
	assert_int_equal(r.len, 2500);
	assert_true(r.size <= 4000);
	check_pattern(&r);

	/* Shrinking below what is held but above the size. */
	ring_set_max(&r, 3000);
	check_pattern(&r);
	ring_set_max(&r, 10);
	assert_int_equal(r.len, 10);
	check_pattern(&r);
	ring_set_max(&r, 0);
	assert_int_equal(r.len, 0);
	assert_null(r.buf);
	ring_free(&r);

	/* Before anything was appended: nothing allocated. */
	ring_init(&r, 100);
	ring_set_max(&r, 10);
	assert_null(r.buf);
	ring_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_peek),
		cmocka_unit_test(test_lines_back),
		cmocka_unit_test(test_lines_wrap),
		cmocka_unit_test(test_big_append),
		cmocka_unit_test(test_set_max),
	};

	return (cmocka_run_group_tests_name("ring", tests, NULL, NULL));
}
