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
 * The daemon's own log: stderr in the foreground (-d), syslog otherwise
 * (journald picks it up).  errno is preserved across every call.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "vspcd.h"

static int	log_debug_mode = 1;
static int	log_verbose;

static void	log_vwrite(int, const char *, va_list)
		    __attribute__((__format__ (printf, 2, 0)));

/* Start logging: to stderr if debug is set, else to syslog. */
void
log_init(int debug, int facility)
{
	log_debug_mode = debug;
	if (!debug)
		openlog("vspcd", LOG_PID | LOG_NDELAY, facility);
	tzset();
}

/* Set the verbosity: 0 info, 1 and more debug. */
void
log_setverbose(int v)
{
	log_verbose = v;
}

/* Return the verbosity. */
int
log_getverbose(void)
{
	return (log_verbose);
}

static void
log_vwrite(int pri, const char *fmt, va_list ap)
{
	int	saved_errno = errno;

	if (log_debug_mode) {
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		fflush(stderr);
	} else
		vsyslog(pri, fmt, ap);
	errno = saved_errno;
}

static void
log_vwarn(int pri, const char *fmt, va_list ap)
    __attribute__((__format__ (printf, 2, 0)));

static void
log_vwarn(int pri, const char *fmt, va_list ap)
{
	char	*nfmt;
	int	 saved_errno = errno;

	if (fmt == NULL) {
		nfmt = strdup(strerror(saved_errno));
	} else if (asprintf(&nfmt, "%s: %s", fmt, strerror(saved_errno)) == -1)
		nfmt = NULL;
	if (nfmt == NULL) {
		log_vwrite(pri, fmt != NULL ? fmt : "%s", ap);
	} else {
		log_vwrite(pri, nfmt, ap);
		free(nfmt);
	}
	errno = saved_errno;
}

/* Log a warning with strerror(errno) appended. */
void
log_warn(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwarn(LOG_ERR, fmt, ap);
	va_end(ap);
}

/* Log a warning. */
void
log_warnx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_ERR, fmt, ap);
	va_end(ap);
}

/* Log an informational message. */
void
log_info(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_INFO, fmt, ap);
	va_end(ap);
}

/* Log a debug message, shown only with -v. */
void
log_debug(const char *fmt, ...)
{
	va_list	ap;

	if (log_verbose == 0)
		return;
	va_start(ap, fmt);
	log_vwrite(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

/* Log with strerror(errno) and exit. */
void
fatal(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwarn(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Log and exit. */
void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}
