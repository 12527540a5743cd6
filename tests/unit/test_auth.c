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
 * Unit tests for node/auth.c: the users file's syntax and errors,
 * passwords (sha512-crypt and sha256-crypt hashes made with openssl
 * passwd and Python's crypt), groups, first-match lists with negation,
 * console rules with globs, the admin role, reading the file again after
 * an edit, and the worker thread's answers through the event loop.
 */

#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vspcd.h"

#define H_SECRET1 "$6$abcdefgh$oGoxMtczJ0/xYkNKQnGuC3pOdNoGsZRZNs7n5JzX8K" \
	"fMJWEmD2Bx4wBt/tMCPvjE87aPyrlQPEKxEcxV6d4J6."
#define H_SECRET2 "$5$umCv5plY.xgdj0qY$SF1/REdWuklSt/DHPaa5YxHs1YVZlNgWxU" \
	"vDLtUycK6"

static char	tmpl[64];

static const char *
write_file(const char *text)
{
	FILE	*f;
	int	 fd;

	if (tmpl[0] != '\0')
		unlink(tmpl);
	snprintf(tmpl, sizeof tmpl, "/tmp/test_auth.XXXXXX");
	fd = mkstemp(tmpl);
	assert_true(fd != -1);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return (tmpl);
}

static const char users[] =
    "# people\n"
    "user alice " H_SECRET1 " ops\n"
    "user bob   " H_SECRET2 "\n"
    "user carol " H_SECRET1 " ops,dba\n"
    "user mallory *\n"
    "user eve " H_SECRET1 "\n"
    "group web bob, @dba\n"
    "\n"
    "rw db-*     !carol, @dba\n"
    "ro db-*     *\n"
    "rw web-*    @web\n"
    "ro 01234567-*  eve\n"
    "rw *        @ops, !eve\n"
    "admin !carol, @ops\n";

static void
test_passwords(void **state)
{
	struct auth	*a;
	char		*err = NULL;

	(void)state;
	a = auth_load(write_file(users), &err);
	assert_non_null(a);
	assert_true(auth_check_password(a, "alice", "secret1"));
	assert_false(auth_check_password(a, "alice", "secret2"));
	assert_false(auth_check_password(a, "alice", ""));
	assert_true(auth_check_password(a, "bob", "secret2"));
	assert_false(auth_check_password(a, "bob", "secret1"));
	/* Locked and unknown users never get in. */
	assert_false(auth_check_password(a, "mallory", "*"));
	assert_false(auth_check_password(a, "mallory", ""));
	assert_false(auth_check_password(a, "nobody", "secret1"));
	auth_free(a);
}

static void
test_access(void **state)
{
	struct auth	*a;
	char		*err = NULL;

	(void)state;
	a = auth_load(write_file(users), &err);
	assert_non_null(a);

	/* First rule whose glob and list both match decides. */
	assert_int_equal(auth_console_access(a, "carol", "db-1", "k", NULL),
	    AUTH_RO);			/* !carol, then ro * */
	assert_int_equal(auth_console_access(a, "alice", "db-1", "k", NULL),
	    AUTH_RO);			/* not dba: ro * */
	assert_int_equal(auth_console_access(a, "bob", "web-3", "k", NULL),
	    AUTH_RW);			/* member of web */
	assert_int_equal(auth_console_access(a, "carol", "web-3", "k", NULL),
	    AUTH_RW);			/* web has @dba */
	assert_int_equal(auth_console_access(a, "alice", "web-3", "k", NULL),
	    AUTH_RW);			/* rw * @ops */
	assert_int_equal(auth_console_access(a, "bob", "mail", "k", NULL),
	    AUTH_NONE);			/* no rule for bob */
	assert_int_equal(auth_console_access(a, "eve", "mail", "k", NULL),
	    AUTH_NONE);			/* !eve (and not ops) */
	/* The glob may match the UUID or the key instead of the name. */
	assert_int_equal(auth_console_access(a, "eve", "mail", "k",
	    "01234567-89ab-cdef-fedc-ba9800000000"), AUTH_RO);
	assert_int_equal(auth_console_access(a, "bob", NULL, "web-9", NULL),
	    AUTH_RW);
	/* Unknown users have no access even where a list says "*". */
	assert_int_equal(auth_console_access(a, "nobody", "db-1", "k", NULL),
	    AUTH_NONE);

	assert_true(auth_is_admin(a, "alice"));
	assert_false(auth_is_admin(a, "carol"));	/* !carol comes first */
	assert_false(auth_is_admin(a, "bob"));
	assert_false(auth_is_admin(a, "nobody"));
	auth_free(a);
}

static void
test_errors(void **state)
{
	static const struct {
		const char	*text;
		const char	*err;
	} t[] = {
		{ "user alice\n", ":1: user alice has no password hash" },
		{ "\n\nfrobnicate x\n", ":3: unknown keyword \"frobnicate\" (user, group, rw, ro, admin)" },
		{ "user a/b x\n", ":1: bad user name \"a/b\"" },
		{ "user a x\nuser a y\n", ":2: user a given twice" },
		{ "rw\n", ":1: rw needs a console pattern" },
		{ "ro x\n", ":1: empty list" },
		{ "admin a\nadmin b\n", ":2: admin given twice" },
		{ "rw * @a$b\n", ":1: bad list item \"@a$b\"" },
	};
	struct auth	*a;
	char		*err;
	const char	*path;
	u_int		 i;

	(void)state;
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		err = NULL;
		path = write_file(t[i].text);
		a = auth_load(path, &err);
		assert_null(a);
		assert_non_null(err);
		assert_int_equal(strncmp(err, path, strlen(path)), 0);
		assert_string_equal(err + strlen(path), t[i].err);
		free(err);
	}
	err = NULL;
	assert_null(auth_load("/nonexistent/users", &err));
	assert_string_equal(err, "/nonexistent/users: No such file or "
	    "directory");
	free(err);
}

static void
test_refresh(void **state)
{
	struct auth	*a;
	char		*err = NULL;
	const char	*path;
	FILE		*f;

	(void)state;
	path = write_file("user bob " H_SECRET2 "\nrw * bob\n");
	a = auth_load(path, &err);
	assert_non_null(a);
	assert_int_equal(auth_refresh(&a, &err), 0);
	assert_int_equal(auth_console_access(a, "bob", "x", "x", NULL),
	    AUTH_RW);

	/* An edit is seen at the next refresh. */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("user bob " H_SECRET2 "\nro * bob\n", f);
	fclose(f);
	assert_int_equal(auth_refresh(&a, &err), 1);
	assert_int_equal(auth_console_access(a, "bob", "x", "x", NULL),
	    AUTH_RO);

	/* A broken edit keeps the rules that were in force. */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("user bob\n", f);
	fclose(f);
	assert_int_equal(auth_refresh(&a, &err), -1);
	assert_non_null(strstr(err, ":1: user bob has no password hash"));
	free(err);
	assert_int_equal(auth_console_access(a, "bob", "x", "x", NULL),
	    AUTH_RO);
	auth_free(a);
}

static int	answers, answered_ok[4];

static void
answer(u_int id, int ok)
{
	assert_true(id < 4);
	answered_ok[id] = ok;
	answers++;
}

static void
test_worker(void **state)
{
	struct event_base	*base;
	struct auth		*a;
	char			*err = NULL;
	u_int			 rounds;

	(void)state;
	base = event_base_new();
	assert_non_null(base);
	a = auth_load(write_file(users), &err);
	assert_non_null(a);
	auth_init(base);
	auth_verify(a, "alice", "secret1", 0, answer);
	auth_verify(a, "alice", "wrong", 1, answer);
	auth_verify(a, "nobody", "secret1", 2, answer);
	auth_verify(a, "bob", "secret2", 3, answer);
	/* The file may change while the answers are computed. */
	auth_free(a);
	assert_int_equal(auth_pending(), 4);
	for (rounds = 0; answers < 4 && rounds < 1000; rounds++)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(answers, 4);
	assert_int_equal(auth_pending(), 0);
	assert_int_equal(answered_ok[0], 1);
	assert_int_equal(answered_ok[1], 0);
	assert_int_equal(answered_ok[2], 0);
	assert_int_equal(answered_ok[3], 1);
	auth_shutdown();
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_passwords),
		cmocka_unit_test(test_access),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_refresh),
		cmocka_unit_test(test_worker),
	};
	int	rc;

	log_init(1, 0);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	if (tmpl[0] != '\0')
		unlink(tmpl);
	return (rc);
}
