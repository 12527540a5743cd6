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
 * Unit tests for node/logfile.c: appending, rotation with a UTC stamp and
 * the keep limit, the descriptor pool, reopening after logrotate moved a
 * file, a missing directory, MARK and activity lines, name templates.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
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

static char	tmpdir[256];

static int
setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/test_logfile.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return (-1);
	return (0);
}

static int
teardown(void **state)
{
	char	cmd[512];

	logfile_shutdown();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return (system(cmd) == 0 ? 0 : -1);
}

/* A fresh subdirectory of tmpdir for one test. */
static char *
subdir(const char *name)
{
	char	*dir;

	xasprintf(&dir, "%s/%s", tmpdir, name);
	assert_int_equal(mkdir(dir, 0700), 0);
	return (dir);
}

/* Read a whole file; NULL if it does not exist. */
static char *
slurp(const char *path)
{
	char	*buf;
	FILE	*fp;
	long	 len;

	if ((fp = fopen(path, "r")) == NULL)
		return (NULL);
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = xmalloc(len + 1);
	assert_int_equal(fread(buf, 1, len, fp), (size_t)len);
	buf[len] = '\0';
	fclose(fp);
	return (buf);
}

static void
wr(struct logfile *lf, const char *s)
{
	logfile_write(lf, (const u_char *)s, strlen(s));
}

/* Is name base + "-YYYYMMDD-HHMMSS" with an optional "-N"? */
static int
is_rotated(const char *name, const char *base)
{
	size_t		 len = strlen(base), i;
	const char	*p;

	if (strncmp(name, base, len) != 0)
		return (0);
	p = name + len;
	for (i = 0; i < 16; i++) {
		if (i == 0 || i == 9) {
			if (p[i] != '-')
				return (0);
		} else if (p[i] < '0' || p[i] > '9')
			return (0);
	}
	/* A plausible UTC date: 20YY, month 01-12, hour 00-23. */
	if (p[1] != '2' || p[2] != '0' || (p[5] - '0') * 10 + p[6] - '0' > 12 ||
	    (p[10] - '0') * 10 + p[11] - '0' > 23)
		return (0);
	p += 16;
	if (*p == '\0')
		return (1);
	if (*p++ != '-' || *p == '\0')
		return (0);
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return (0);
	}
	return (1);
}

static size_t	rotated_baselen;

static int
rotated_cmp(const void *a, const void *b)
{
	const char	*sa = *(char * const *)a, *sb = *(char * const *)b;
	size_t		 la = strlen(sa), lb = strlen(sb), stamp;
	int		 c;

	/* By stamp, then no -N first, then by N. */
	stamp = strrchr(sa, '/') - sa + 1 + rotated_baselen + 16;
	if ((c = strncmp(sa, sb, stamp)) != 0)
		return (c);
	if (la != lb)
		return (la < lb ? -1 : 1);
	return (strcmp(sa, sb));
}

/* The rotated files of base in dir, oldest first; count in *n. */
static char **
rotated(const char *dir, const char *base, size_t *n)
{
	DIR		 *d;
	struct dirent	 *de;
	char		**list = NULL;

	*n = 0;
	assert_non_null(d = opendir(dir));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, base) == 0 ||
		    de->d_name[0] == '.')
			continue;
		if (strncmp(de->d_name, base, strlen(base)) != 0)
			continue;
		if (!is_rotated(de->d_name, base)) {
			print_error("unexpected file %s\n", de->d_name);
			fail();
		}
		list = xreallocarray(list, *n + 1, sizeof *list);
		xasprintf(&list[(*n)++], "%s/%s", dir, de->d_name);
	}
	closedir(d);
	rotated_baselen = strlen(base);
	if (*n > 1)
		qsort(list, *n, sizeof *list, rotated_cmp);
	return (list);
}

static void
free_list(char **list, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static void
test_write_rotate(void **state)
{
	struct logfile	 *lf;
	char		 *dir, *path, *data, **list;
	size_t		  n;
	struct stat	  sb;

	dir = subdir("rotate");
	xasprintf(&path, "%s/vm1.log", dir);
	logfile_configure(8, 100, 0);
	lf = logfile_new(path);
	assert_string_equal(logfile_path(lf), path);
	/* Nothing exists before the first write. */
	assert_int_equal(stat(path, &sb), -1);

	wr(lf, "0123456789012345678901234567890123456789\r\n");	/* 42 */
	wr(lf, "abcdefghijabcdefghijabcdefghijabcdefghij\r\n");	/* 84 */
	data = slurp(path);
	assert_int_equal(strlen(data), 84);
	free(data);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0640);

	/* 84 + 42 > 100: rotate first. */
	wr(lf, "ABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJ\r\n");
	list = rotated(dir, "vm1.log", &n);
	assert_int_equal(n, 1);
	data = slurp(list[0]);
	assert_string_equal(data,
	    "0123456789012345678901234567890123456789\r\n"
	    "abcdefghijabcdefghijabcdefghijabcdefghij\r\n");
	free(data);
	free_list(list, n);
	data = slurp(path);
	assert_string_equal(data,
	    "ABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJ\r\n");
	free(data);

	/* Twice more, probably within the second: names stay distinct. */
	wr(lf, "ABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJ\r\n");
	wr(lf, "1111111111111111111111111111111111111111\r\n");
	wr(lf, "2222222222222222222222222222222222222222\r\n");
	wr(lf, "3333333333333333333333333333333333333333\r\n");
	list = rotated(dir, "vm1.log", &n);
	assert_int_equal(n, 3);
	data = slurp(list[2]);
	assert_string_equal(data,
	    "1111111111111111111111111111111111111111\r\n"
	    "2222222222222222222222222222222222222222\r\n");
	free(data);
	free_list(list, n);

	/* A write larger than max_size goes into a file of its own. */
	data = xmalloc(300);
	memset(data, 'x', 299);
	data[299] = '\0';
	wr(lf, data);
	free(data);
	data = slurp(path);
	assert_int_equal(strlen(data), 299);
	free(data);

	logfile_free(lf);
	free(path);
	free(dir);
}

static void
test_keep(void **state)
{
	struct logfile	 *lf;
	char		 *dir, *path, *data, **list, chunk[64], *other;
	struct stat	  sb;
	size_t		  n;
	int		  i;

	dir = subdir("keep");
	/* An older rotated file of another console. */
	xasprintf(&path, "%s/j.log-20200101-000000", dir);
	fclose(fopen(path, "w"));
	xasprintf(&other, "%s", path);
	free(path);
	xasprintf(&path, "%s/k.log", dir);
	logfile_configure(8, 4096, 2);
	lf = logfile_new(path);
	for (i = 0; i < 6; i++) {
		memset(chunk, 'a' + i, sizeof chunk);
		logfile_write(lf, (u_char *)chunk, sizeof chunk);
		/* Fill to exactly max_size: the next write rotates. */
		data = xcalloc(1, 4096 - sizeof chunk);
		memset(data, 'a' + i, 4096 - sizeof chunk);
		logfile_write(lf, (u_char *)data, 4096 - sizeof chunk);
		free(data);
	}
	list = rotated(dir, "k.log", &n);
	assert_int_equal(n, 2);
	/* The two newest rotated files are kept: 'd' and 'e'. */
	data = slurp(list[0]);
	assert_int_equal(data[0], 'd');
	assert_int_equal(strlen(data), 4096);
	free(data);
	data = slurp(list[1]);
	assert_int_equal(data[0], 'e');
	free(data);
	data = slurp(path);
	assert_int_equal(data[0], 'f');
	assert_int_equal(strlen(data), 4096);
	free(data);
	free_list(list, n);

	/* Files of another console are not touched. */
	assert_int_equal(stat(other, &sb), 0);
	free(other);
	logfile_free(lf);
	free(path);
	free(dir);
}

static int
count_fds(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return (-1);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return (n);
}

static void
test_pool(void **state)
{
	struct logfile	*lf[100];
	char		*dir, *path, *data, *want, line[32], zs[51];
	int		 i, j, round, base;

	memset(zs, 'z', 50);
	zs[50] = '\0';

	dir = subdir("pool");
	logfile_configure(4, 0, 0);
	base = count_fds();
	for (i = 0; i < 100; i++) {
		xasprintf(&path, "%s/c%d.log", dir, i);
		lf[i] = logfile_new(path);
		free(path);
	}
	/* Three rounds, each in a different order (37 is prime to 100). */
	for (round = 0; round < 3; round++) {
		for (i = 0; i < 100; i++) {
			j = (i * 37 + round * 11) % 100;
			snprintf(line, sizeof line, "c%d r%d\r\n", j, round);
			wr(lf[j], line);
			assert_true(logfile_open_count() <= 4);
			if (base >= 0)
				assert_true(count_fds() <= base + 4);
		}
	}
	for (i = 0; i < 50; i++) {
		wr(lf[0], "z");
		wr(lf[i + 1], "");
	}

	for (i = 0; i < 100; i++) {
		data = slurp(logfile_path(lf[i]));
		assert_non_null(data);
		want = NULL;
		xasprintf(&want, "c%d r0\r\nc%d r1\r\nc%d r2\r\n%s", i, i, i,
		    i == 0 ? zs : "");
		assert_string_equal(data, want);
		free(want);
		free(data);
	}
	for (i = 0; i < 100; i++)
		logfile_free(lf[i]);
	assert_int_equal(logfile_open_count(), 0);
	free(dir);
}

static void
test_pool_lru(void **state)
{
	struct logfile	*a, *b, *c;
	char		*dir, *path;
	struct stat	 sb;

	/* With a pool of 2, the least recently written file is closed. */
	dir = subdir("lru");
	logfile_configure(2, 0, 0);
	xasprintf(&path, "%s/a.log", dir);
	a = logfile_new(path);
	free(path);
	xasprintf(&path, "%s/b.log", dir);
	b = logfile_new(path);
	free(path);
	xasprintf(&path, "%s/c.log", dir);
	c = logfile_new(path);
	free(path);
	wr(a, "a");
	wr(b, "b");
	wr(a, "a");		/* a is now the most recent. */
	wr(c, "c");		/* Closes b, not a. */
	assert_int_equal(logfile_open_count(), 2);

	/* Move a and b away: a's open descriptor follows a, b reopens. */
	xasprintf(&path, "%s/a.moved", dir);
	assert_int_equal(rename(logfile_path(a), path), 0);
	free(path);
	xasprintf(&path, "%s/b.moved", dir);
	assert_int_equal(rename(logfile_path(b), path), 0);
	free(path);
	wr(a, "A");
	wr(b, "B");
	assert_int_equal(stat(logfile_path(a), &sb), -1);
	assert_int_equal(stat(logfile_path(b), &sb), 0);
	assert_int_equal(sb.st_size, 1);

	logfile_free(a);
	logfile_free(b);
	logfile_free(c);
	free(dir);
}

static void
test_reopen(void **state)
{
	struct logfile	*lf;
	char		*dir, *path, *moved, *data, **list;
	size_t		 n;
	int		 fd;

	dir = subdir("reopen");
	logfile_configure(4, 100, 0);
	xasprintf(&path, "%s/r.log", dir);
	xasprintf(&moved, "%s/moved", dir);
	lf = logfile_new(path);
	wr(lf, "one\r\n");
	assert_int_equal(rename(path, moved), 0);
	wr(lf, "two\r\n");		/* Still the moved file. */
	logfile_reopen_all();
	assert_int_equal(logfile_open_count(), 0);
	wr(lf, "three\r\n");		/* A new file at the path. */
	data = slurp(moved);
	assert_string_equal(data, "one\r\ntwo\r\n");
	free(data);
	data = slurp(path);
	assert_string_equal(data, "three\r\n");
	free(data);

	/* After a reopen the size is read again from the file. */
	logfile_reopen_all();
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789", 80), 80);
	close(fd);
	wr(lf, "four-five-six-seven-eight\r\n");	/* 7 + 80 + 27 > 100 */
	list = rotated(dir, "r.log", &n);
	assert_int_equal(n, 1);
	free_list(list, n);
	data = slurp(path);
	assert_string_equal(data, "four-five-six-seven-eight\r\n");
	free(data);

	logfile_free(lf);
	free(path);
	free(moved);
	free(dir);
}

static void
test_missing_dir(void **state)
{
	struct logfile	*lf;
	char		*dir, *path, *data;

	xasprintf(&dir, "%s/later", tmpdir);
	xasprintf(&path, "%s/m.log", dir);
	logfile_configure(4, 0, 0);
	lf = logfile_new(path);
	wr(lf, "lost\r\n");		/* Dropped, reported once. */
	wr(lf, "lost\r\n");
	assert_int_equal(logfile_open_count(), 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	logfile_reopen_all();		/* Retried now. */
	wr(lf, "kept\r\n");
	data = slurp(path);
	assert_string_equal(data, "kept\r\n");
	free(data);
	logfile_free(lf);
	free(path);
	free(dir);
}

static void
test_mark_printf(void **state)
{
	struct logfile	*lf;
	char		*dir, *path, *data;

	dir = subdir("mark");
	logfile_configure(4, 0, 0);
	xasprintf(&path, "%s/m.log", dir);
	lf = logfile_new(path);
	/* 2026-11-21 20:35:24 UTC was a Saturday. */
	logfile_mark(lf, 1795293324);
	wr(lf, "login: ");
	logfile_mark(lf, 1795293324 + 86400 * 10);
	logfile_printf(lf, "[-- %s attached --]\r\n", "alice@10.0.0.1");
	wr(lf, "ok\n");
	logfile_printf(lf, "[-- %s --]\r\n", "detached");
	data = slurp(path);
	assert_string_equal(data,
	    "[-- MARK -- Sat Nov 21 20:35:24 2026 UTC --]\r\n"
	    "login: \r\n"
	    "[-- MARK -- Tue Dec  1 20:35:24 2026 UTC --]\r\n"
	    "[-- alice@10.0.0.1 attached --]\r\n"
	    "ok\n"
	    "[-- detached --]\r\n");
	free(data);
	logfile_free(lf);
	free(path);
	free(dir);
}

static void
expand(const char *template, const char *name, const char *label,
    const char *want)
{
	const char	*uuid = "01234567-89ab-cdef-fedc-ba9800000000";
	char		*key, *got;

	if (label != NULL)
		xasprintf(&key, "%s.%s", uuid, label);
	else
		key = xstrdup(uuid);
	got = logfile_expand(template, name, key, uuid, label);
	assert_string_equal(got, want);
	free(got);
	free(key);
}

static void
test_expand(void **state)
{
	expand("%n-%k.log", "web01", NULL,
	    "web01-01234567-89ab-cdef-fedc-ba9800000000.log");
	expand("%n-%k.log", "web01", "com2",
	    "web01-01234567-89ab-cdef-fedc-ba9800000000.com2.log");
	expand("%u%l.log", "x", NULL,
	    "01234567-89ab-cdef-fedc-ba9800000000.log");
	expand("%n_%l", "x", "com2", "x_com2");
	expand("100%%-%n", "x", NULL, "100%-x");
	expand("%n.log", "a/b/../c", NULL, "a_b_.._c.log");
	expand("%n.log", "..", NULL, "_..log");
	expand("%n.log", ".hidden", NULL, "_hidden.log");
	expand("%n.log", "tab\there\nnl\x7f", NULL, "tab_here_nl_.log");
	expand("%n.log", "caf\xc3\xa9", NULL, "caf\xc3\xa9.log");
	/* No name yet: the key stands in. */
	expand("%n.log", NULL, NULL,
	    "01234567-89ab-cdef-fedc-ba9800000000.log");
	expand("%n.log", "", "p",
	    "01234567-89ab-cdef-fedc-ba9800000000.p.log");
	/* A long name is copied whole. */
	expand("%n%n%n%n", "0123456789abcdef0123456789abcdef", NULL,
	    "0123456789abcdef0123456789abcdef0123456789abcdef"
	    "0123456789abcdef0123456789abcdef0123456789abcdef"
	    "0123456789abcdef0123456789abcdef");
	expand("%l", "x", NULL, "_");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_rotate),
		cmocka_unit_test(test_keep),
		cmocka_unit_test(test_pool),
		cmocka_unit_test(test_pool_lru),
		cmocka_unit_test(test_reopen),
		cmocka_unit_test(test_missing_dir),
		cmocka_unit_test(test_mark_printf),
		cmocka_unit_test(test_expand),
	};

	log_init(1, 0);
	logfile_init(64);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
