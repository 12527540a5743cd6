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
 * Fuzz target for the configuration parser (node/config.c: inih with
 * vspcd's own line reader, config_setkey, config_check).  Input layout:
 *
 *	byte 0		bit 0: also apply the last line as a "-o"
 *			override (config_set) after loading
 *	rest		the configuration file
 *
 * The file is read with config_load from a memfd, then checked.  A
 * file that loads and checks is printed (vspcd -nv) and the printed text
 * must itself load and check, and print the same again: what -nv shows
 * is a configuration vspcd accepts.  Not after an override: "-o" values
 * do not go through the file reader, and one holding " ;" cannot be
 * written in a file (the reader takes it for a comment).
 */

#include <sys/mman.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #x);					\
		abort();						\
	}								\
} while (0)

#define FUZZ_MAX	65536

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Load text as a configuration file; 0 if it loads and checks. */
static int
fuzz_load(struct config *conf, const void *text, size_t len)
{
	char	 path[64];
	char	*err = NULL;
	int	 fd, rv;

	fd = memfd_create("fuzz_config", MFD_CLOEXEC);
	CHECK(fd != -1);
	CHECK(len == 0 || write(fd, text, len) == (ssize_t)len);
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	rv = config_load(conf, path, &err);
	CHECK((rv == -1) == (err != NULL));
	free(err);
	err = NULL;
	if (rv == 0) {
		rv = config_check(conf, &err);
		CHECK((rv == -1) == (err != NULL));
		free(err);
	}
	close(fd);
	return (rv);
}

/* The normalised text of a configuration (vspcd -nv). */
static char *
fuzz_print(const struct config *conf, size_t *len)
{
	FILE	*fp;
	char	*text = NULL;

	fp = open_memstream(&text, len);
	CHECK(fp != NULL);
	config_print(conf, fp);
	CHECK(fclose(fp) == 0);
	return (text);
}

/* One input: see the layout at the top of this file. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config	*conf, *again;
	const uint8_t	*last;
	char		*line, *err, *text1, *text2;
	size_t		 len1, len2, n;
	int		 ok;

	if (size < 1 || size > FUZZ_MAX)
		return (0);
	conf = config_default();
	ok = fuzz_load(conf, data + 1, size - 1) == 0;

	if (data[0] & 1) {
		ok = 0;
		/* The last line as "-o section.key=value". */
		n = size - 1;
		last = data + 1;
		while (n > 0 && memchr(last, '\n', n) != NULL) {
			const uint8_t	*nl = memchr(last, '\n', n);

			n -= nl + 1 - last;
			last = nl + 1;
		}
		line = xstrndup((const char *)last, n);
		err = NULL;
		if (config_set(conf, line, &err) == -1) {
			CHECK(err != NULL);
			free(err);
		} else {
			err = NULL;
			if (config_check(conf, &err) == -1)
				CHECK(err != NULL);
			free(err);
			/* Still printable. */
			text1 = fuzz_print(conf, &len1);
			free(text1);
		}
		free(line);
	}

	if (ok) {
		text1 = fuzz_print(conf, &len1);
		again = config_default();
		CHECK(fuzz_load(again, text1, len1) == 0);
		text2 = fuzz_print(again, &len2);
		if (len1 != len2 || memcmp(text1, text2, len1) != 0) {
			fprintf(stderr, "printed:\n%s\nprinted again:\n%s\n",
			    text1, text2);
			abort();
		}
		free(text1);
		free(text2);
		config_free(again);
	}
	config_free(conf);
	return (0);
}
