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
 * vspcd: a virtual serial port concentrator for VMware ESXi.
 * Command line, configuration, then the event loop (server.c).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "vspcd.h"

static char	**overrides;
static u_int	  noverrides;

static void
free_overrides(void)
{
	u_int	i;

	for (i = 0; i < noverrides; i++)
		free(overrides[i]);
	free(overrides);
	overrides = NULL;
	noverrides = 0;
}

static void __attribute__((__noreturn__))
usage(void)
{
	fprintf(stderr, "usage: vspcd [-dnvV] [-f file] "
	    "[-o section.key=value]\n");
	exit(1);
}

int
main(int argc, char **argv)
{
	struct config	 *conf;
	const char	 *file = NULL;
	char		 *err = NULL;
	u_int		  i;
	int		  ch, debug = 0, check = 0, verbose = 0;

	while ((ch = getopt(argc, argv, "df:no:vV")) != -1) {
		switch (ch) {
		case 'd':
			debug = 1;
			break;
		case 'f':
			file = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 'o':
			overrides = xreallocarray(overrides, noverrides + 1,
			    sizeof *overrides);
			overrides[noverrides++] = xstrdup(optarg);
			break;
		case 'v':
			verbose++;
			break;
		case 'V':
			printf("vspcd %s (hand-over format %d, reads %d-%d)\n",
			    VSPCD_VERSION, HANDOFF_VERSION, HANDOFF_VERSION_MIN,
			    HANDOFF_VERSION);
			return (0);
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	handoff_init(argc, argv);
	atexit(free_overrides);
	atexit(handoff_free);
	log_init(1, LOG_DAEMON);
	log_setverbose(check ? 0 : verbose);

	conf = config_default();
	if (file == NULL && access(VSPCD_CONF, F_OK) == 0)
		file = VSPCD_CONF;
	if (file != NULL && config_load(conf, file, &err) == -1)
		goto bad;
	for (i = 0; i < noverrides; i++) {
		if (config_set(conf, overrides[i], &err) == -1)
			goto bad;
	}
	if (config_check(conf, &err) == -1)
		goto bad;
	if (check) {
		if (verbose)
			config_print(conf, stdout);
		else
			fprintf(stderr, "configuration OK\n");
		config_free(conf);
		return (0);
	}

	log_init(debug, LOG_DAEMON);
	/* A hand-over's new process stays where the old one started it. */
	if (!debug && !handoff_restoring() && daemon(0, 0) == -1)
		fatal("daemon");
	server_set_overrides(overrides, noverrides);
	if (server_start(conf, debug) == -1)
		return (1);
	server_loop();
	config_free(server_conf);
	return (0);

bad:
	fprintf(stderr, "%s\n", err);
	handoff_fail_early(err);
	free(err);
	config_free(conf);
	return (1);
}
