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
 * Unit tests for node/uuid.c: every spelling of the capture's VC UUID
 * parses to the same 16 bytes, the three output forms, and rejects.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vspcd.h"

static const u_char uuid_ref[UUID_LEN] = {
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
	0xfe, 0xdc, 0xba, 0x98, 0x00, 0x00, 0x00, 0x00
};

static void
parse_ok(const char *s)
{
	u_char	u[UUID_LEN];

	memset(u, 0x55, sizeof u);
	if (uuid_parse(s, strlen(s), u) != 0) {
		print_error("refused \"%s\"\n", s);
		fail();
	}
	assert_memory_equal(u, uuid_ref, UUID_LEN);
}

static void
parse_bad(const char *s)
{
	u_char	u[UUID_LEN], z[UUID_LEN];

	memset(u, 0x55, sizeof u);
	memset(z, 0x55, sizeof z);
	if (uuid_parse(s, strlen(s), u) != -1) {
		print_error("accepted \"%s\"\n", s);
		fail();
	}
	/* The output is left alone on failure. */
	assert_memory_equal(u, z, UUID_LEN);
}

static void
test_parse(void **state)
{
	/* ESXi's VM-VC-UUID payload, as in the capture. */
	parse_ok("01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00");
	parse_ok("01 23 45 67 89 AB CD EF-FE DC BA 98 00 00 00 00");
	/* vSPC.py. */
	parse_ok("0123456789abcdef-fedcba9800000000");
	/* 32 digits, both cases and mixed. */
	parse_ok("0123456789abcdeffedcba9800000000");
	parse_ok("0123456789ABCDEFFEDCBA9800000000");
	parse_ok("0123456789aBcDeFfEdCbA9800000000");
	/* Canonical, braces, white space. */
	parse_ok("01234567-89ab-cdef-fedc-ba9800000000");
	parse_ok("{01234567-89ab-cdef-fedc-ba9800000000}");
	parse_ok("  01234567-89AB-CDEF-FEDC-BA9800000000\n");
	parse_ok("\t{0123456789abcdeffedcba9800000000} ");
}

static void
test_parse_len(void **state)
{
	const char	*s = "0123456789abcdef-fedcba9800000000xyz";
	u_char		 u[UUID_LEN];

	/* Only len bytes are read: no NUL needed. */
	assert_int_equal(uuid_parse(s, 33, u), 0);
	assert_memory_equal(u, uuid_ref, UUID_LEN);
	assert_int_equal(uuid_parse(s, 34, u), -1);
	assert_int_equal(uuid_parse(s, 32, u), -1);
	assert_int_equal(uuid_parse(s, 0, u), -1);
}

static void
test_reject(void **state)
{
	parse_bad("");
	parse_bad("   ");
	parse_bad("{}");
	/* Digit counts. */
	parse_bad("0123456789abcdeffedcba980000000");
	parse_bad("0123456789abcdeffedcba98000000000");
	parse_bad("01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00");
	parse_bad("0123456789abcdef-fedcba980000000");
	/* Stray characters and wrong separators. */
	parse_bad("0123456789abcdeg-fedcba9800000000");
	parse_bad("0123456789abcdef fedcba9800000000");
	parse_bad("0123456789abcdef_fedcba9800000000");
	parse_bad("01234567-89ab-cdef-fedcba9800000000");
	parse_bad("0123-4567-89ab-cdef-fedc-ba98-0000-0000");
	parse_bad("01 23 45 67 89 ab cd ef fe dc ba 98 00 00 00 00");
	parse_bad("01  23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 0");
	parse_bad("0x0123456789abcdeffedcba98000000");
	parse_bad("{01234567-89ab-cdef-fedc-ba9800000000");
	parse_bad("01234567-89ab-cdef-fedc-ba9800000000}");
	parse_bad("{{01234567-89ab-cdef-fedc-ba9800000000}}");
	parse_bad("{ 01234567-89ab-cdef-fedc-ba9800000000 }");
	parse_bad("01234567-89ab-cdef-fedc-ba9800000000.x");
	parse_bad("+123456789abcdeffedcba9800000000");
}

static void
test_format(void **state)
{
	char	buf[64];
	u_char	u[UUID_LEN];

	memset(buf, 'X', sizeof buf);
	uuid_format(uuid_ref, buf);
	assert_string_equal(buf, "01234567-89ab-cdef-fedc-ba9800000000");
	assert_int_equal(strlen(buf), UUID_STRLEN);

	memset(buf, 'X', sizeof buf);
	uuid_format_vspcpy(uuid_ref, buf);
	assert_string_equal(buf, "0123456789abcdef-fedcba9800000000");
	assert_int_equal(strlen(buf), 33);

	uuid_format_hex(uuid_ref, buf, 0);
	assert_string_equal(buf, "0123456789abcdeffedcba9800000000");
	uuid_format_hex(uuid_ref, buf, 1);
	assert_string_equal(buf, "0123456789ABCDEFFEDCBA9800000000");

	/* Round trip of every output form. */
	memset(u, 0xff, sizeof u);
	u[3] = 0;
	uuid_format(u, buf);
	assert_string_equal(buf, "ffffff00-ffff-ffff-ffff-ffffffffffff");
	memset(u, 0, sizeof u);
	assert_int_equal(uuid_parse(buf, strlen(buf), u), 0);
	assert_int_equal(u[3], 0);
	assert_int_equal(u[15], 0xff);
	uuid_format_vspcpy(uuid_ref, buf);
	assert_int_equal(uuid_parse(buf, strlen(buf), u), 0);
	assert_memory_equal(u, uuid_ref, UUID_LEN);
	uuid_format_hex(uuid_ref, buf, 1);
	assert_int_equal(uuid_parse(buf, strlen(buf), u), 0);
	assert_memory_equal(u, uuid_ref, UUID_LEN);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_len),
		cmocka_unit_test(test_reject),
		cmocka_unit_test(test_format),
	};

	return (cmocka_run_group_tests_name("uuid", tests, NULL, NULL));
}
