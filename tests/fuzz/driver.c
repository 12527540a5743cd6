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
 * A main() for fuzz targets built without libFuzzer: every argument is a
 * file or a directory (whose files, and the files of its subdirectories,
 * are taken in name order), and each file is passed once to
 * LLVMFuzzerTestOneInput.  Arguments starting with '-' (libFuzzer
 * options) are ignored.  A crash or abort in the target is the failure;
 * an unreadable file is an error too (exit 1).
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static unsigned long	driver_runs;
static int		driver_errors;

static void	driver_file(const char *);
static void	driver_path(const char *, int);

static void
driver_file(const char *path)
{
	FILE		*f;
	uint8_t		*buf = NULL, *nbuf;
	size_t		 len = 0, size = 0, n;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		driver_errors++;
		return;
	}
	for (;;) {
		if (len == size) {
			size = size != 0 ? size * 2 : 4096;
			if ((nbuf = realloc(buf, size)) == NULL) {
				fprintf(stderr, "%s: out of memory\n", path);
				exit(1);
			}
			buf = nbuf;
		}
		if ((n = fread(buf + len, 1, size - len, f)) == 0)
			break;
		len += n;
	}
	if (ferror(f)) {
		fprintf(stderr, "%s: read error\n", path);
		driver_errors++;
	} else {
		/* A copy of exactly len bytes, so overreads are caught. */
		if ((nbuf = malloc(len != 0 ? len : 1)) == NULL)
			exit(1);
		memcpy(nbuf, buf, len);
		LLVMFuzzerTestOneInput(nbuf, len);
		free(nbuf);
		driver_runs++;
	}
	free(buf);
	fclose(f);
}

static void
driver_path(const char *path, int depth)
{
	struct stat	  st;
	struct dirent	**names;
	char		 *sub;
	int		  i, n;

	if (stat(path, &st) == -1) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		driver_errors++;
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		driver_file(path);
		return;
	}
	if (depth > 1)
		return;
	if ((n = scandir(path, &names, NULL, alphasort)) == -1) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		driver_errors++;
		return;
	}
	for (i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.' &&
		    asprintf(&sub, "%s/%s", path, names[i]->d_name) != -1) {
			driver_path(sub, depth + 1);
			free(sub);
		}
		free(names[i]);
	}
	free(names);
}

int
main(int argc, char **argv)
{
	int	i;

	for (i = 1; i < argc; i++) {
		if (argv[i][0] == '-')
			continue;
		driver_path(argv[i], 0);
	}
	printf("%s: %lu inputs run\n", argv[0], driver_runs);
	return (driver_errors != 0);
}
