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
 * Console log files.
 *
 * A struct logfile is a path and what we know of the file (its size, and
 * whether the last byte written ended a line); it holds a descriptor only
 * while it is in the pool.  The pool is an LRU list of at most pool_max
 * open files: a write touches its file (moves it to the head) and opening
 * one more file closes the tail.  Thus a node with thousands of consoles
 * uses a few descriptors for logs and keeps the rest for connections.
 *
 * Console output is appended raw with plain write(2) calls on the event
 * loop: a regular file does not block for long, and the log must not
 * reorder or buffer what the VM wrote.  Before a write that would take the
 * file past max_size, the file is renamed to PATH-YYYYMMDD-HHMMSS (UTC; -N
 * appended if that name is taken) and a new one is started; with keep > 0
 * only the newest keep rotated files are kept.
 *
 * A file that cannot be opened (typically: the directory is missing) is
 * reported once and its output is dropped and counted; the open is tried
 * again after logfile_reopen_all() (SIGUSR1) or a minute later.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vspcd.h"

/* The automatic pool size's cap. */
#define LOGFILE_POOL_AUTO_MAX	4096

#define LOGFILE_RETRY		60	/* Seconds before reopening. */
#define LOGFILE_STAMP_LEN	16	/* "-YYYYMMDD-HHMMSS" */

struct logfile {
	char			*path;
	int			 fd;		/* -1 unless in the pool. */
	off_t			 size;		/* Valid while fd != -1. */
	int			 flags;
#define LOGFILE_BOL		0x1	/* Last byte written was '\n'. */
#define LOGFILE_OPEN_FAILED	0x2	/* Reported; not retried yet. */
#define LOGFILE_WRITE_FAILED	0x4	/* Reported; cleared on success. */
#define LOGFILE_ROTATE_FAILED	0x8	/* Reported; not retried yet. */
	time_t			 failed;	/* When the open failed. */
	uint64_t		 dropped;	/* Bytes not written. */

	TAILQ_ENTRY(logfile)	 lentry;	/* On logfile_lru if open. */
	TAILQ_ENTRY(logfile)	 aentry;	/* On logfile_all. */
};
TAILQ_HEAD(logfiles, logfile);

static struct logfiles	logfile_lru = TAILQ_HEAD_INITIALIZER(logfile_lru);
static struct logfiles	logfile_all = TAILQ_HEAD_INITIALIZER(logfile_all);
static u_int		logfile_nopen;
static u_int		logfile_pool_max = 64;
static size_t		logfile_max_size;
static u_int		logfile_keep;

static void	logfile_close(struct logfile *);
static int	logfile_open(struct logfile *);
static void	logfile_rotate(struct logfile *);
static void	logfile_prune(struct logfile *);
struct logfile_rotated;
static int	logfile_rotated_list(struct logfile *, char **,
		    struct logfile_rotated **, size_t *);
static void	logfile_rotated_free(char *, struct logfile_rotated *,
		    size_t);
static int	logfile_rotated_cmp(const void *, const void *);
static int	logfile_is_rotated(const char *, const char *, size_t,
		    u_long *);
static void	logfile_append(struct logfile *, const u_char *, size_t);
static void	logfile_newline(struct logfile *);
static void	logfile_safe(char **, size_t *, size_t *, const char *);

/* Set up the pool of at most n open files. */
void
logfile_init(u_int n)
{
	logfile_configure(n, 0, 0);
}

/*
 * Set the pool size (0: a quarter of the descriptor limit, at most
 * LOGFILE_POOL_AUTO_MAX), the size above which files rotate (0: never)
 * and how many rotated files to keep (0: all).  A smaller pool closes
 * files now.
 */
void
logfile_configure(u_int n, size_t max_size, u_int keep)
{
	struct rlimit	rl;

	if (n == 0) {
		n = 64;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 4 > n)
			n = rl.rlim_cur / 4;
		if (n > LOGFILE_POOL_AUTO_MAX)
			n = LOGFILE_POOL_AUTO_MAX;
	}
	logfile_pool_max = n;
	logfile_max_size = max_size;
	logfile_keep = keep;
	while (logfile_nopen > logfile_pool_max)
		logfile_close(TAILQ_LAST(&logfile_lru, logfiles));
}

/* Create a log file for path; nothing is opened until the first write. */
struct logfile *
logfile_new(const char *path)
{
	struct logfile	*lf;

	lf = xcalloc(1, sizeof *lf);
	lf->path = xstrdup(path);
	lf->fd = -1;
	lf->flags = LOGFILE_BOL;
	TAILQ_INSERT_TAIL(&logfile_all, lf, aentry);
	return (lf);
}

/* Close and free a log file. */
void
logfile_free(struct logfile *lf)
{
	if (lf == NULL)
		return;
	logfile_close(lf);
	TAILQ_REMOVE(&logfile_all, lf, aentry);
	if (lf->dropped != 0)
		log_info("log %s: %llu bytes were not written", lf->path,
		    (unsigned long long)lf->dropped);
	free(lf->path);
	free(lf);
}

/* Return the path of a log file. */
const char *
logfile_path(const struct logfile *lf)
{
	return (lf->path);
}

/* Return how many log files are open. */
u_int
logfile_open_count(void)
{
	return (logfile_nopen);
}

static void
logfile_close(struct logfile *lf)
{
	if (lf == NULL || lf->fd == -1)
		return;
	close(lf->fd);
	lf->fd = -1;
	TAILQ_REMOVE(&logfile_lru, lf, lentry);
	logfile_nopen--;
}

/* Make sure lf has a descriptor and is the most recently used. */
static int
logfile_open(struct logfile *lf)
{
	struct stat	 sb;
	int		 fd;

	if (lf->fd != -1) {
		if (lf != TAILQ_FIRST(&logfile_lru)) {
			TAILQ_REMOVE(&logfile_lru, lf, lentry);
			TAILQ_INSERT_HEAD(&logfile_lru, lf, lentry);
		}
		return (0);
	}
	if (lf->flags & LOGFILE_OPEN_FAILED) {
		if (time(NULL) - lf->failed < LOGFILE_RETRY)
			return (-1);
	}

	while (logfile_nopen >= logfile_pool_max)
		logfile_close(TAILQ_LAST(&logfile_lru, logfiles));
	for (;;) {
		fd = open(lf->path, O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, 0640);
		if (fd != -1)
			break;
		if (errno == EINTR)
			continue;
		/* Out of descriptors: give one of ours back and retry. */
		if ((errno == EMFILE || errno == ENFILE) && logfile_nopen > 0) {
			logfile_close(TAILQ_LAST(&logfile_lru, logfiles));
			continue;
		}
		if (!(lf->flags & LOGFILE_OPEN_FAILED)) {
			if (errno == ENOENT)
				log_warnx("log %s: directory missing, console "
				    "output is not logged", lf->path);
			else
				log_warn("log %s", lf->path);
		}
		lf->flags |= LOGFILE_OPEN_FAILED;
		lf->failed = time(NULL);
		return (-1);
	}
	if (lf->flags & LOGFILE_OPEN_FAILED)
		log_info("log %s: open again", lf->path);
	lf->flags &= ~LOGFILE_OPEN_FAILED;

	lf->size = 0;
	if (fstat(fd, &sb) == 0)
		lf->size = sb.st_size;
	lf->fd = fd;
	TAILQ_INSERT_HEAD(&logfile_lru, lf, lentry);
	logfile_nopen++;
	return (0);
}

/*
 * Is name (in the log directory) base followed by "-YYYYMMDD-HHMMSS" and
 * an optional "-N"?  Set *n to N (0 without).
 */
static int
logfile_is_rotated(const char *name, const char *base, size_t baselen,
    u_long *n)
{
	const char	*p;
	char		*end;
	int		 i;

	if (strncmp(name, base, baselen) != 0)
		return (0);
	p = name + baselen;
	for (i = 0; i < LOGFILE_STAMP_LEN; i++) {
		if (i == 0 || i == 9) {
			if (p[i] != '-')
				return (0);
		} else if (p[i] < '0' || p[i] > '9')
			return (0);
	}
	p += LOGFILE_STAMP_LEN;
	*n = 0;
	if (*p == '\0')
		return (1);
	if (p[0] != '-' || p[1] < '1' || p[1] > '9')
		return (0);
	errno = 0;
	*n = strtoul(p + 1, &end, 10);
	if (*end != '\0' || errno != 0)
		return (0);
	return (1);
}

struct logfile_rotated {
	char	*name;
	char	 stamp[LOGFILE_STAMP_LEN + 1];
	u_long	 n;
};

/* Oldest first: by stamp, then by -N. */
static int
logfile_rotated_cmp(const void *a, const void *b)
{
	const struct logfile_rotated	*ra = a, *rb = b;
	int				 c;

	if ((c = strcmp(ra->stamp, rb->stamp)) != 0)
		return (c);
	if (ra->n != rb->n)
		return (ra->n < rb->n ? -1 : 1);
	return (0);
}

/*
 * List the rotated files of lf, oldest first, into *list (*n entries);
 * *dir is the directory.  Return -1 if the directory cannot be read.
 */
static int
logfile_rotated_list(struct logfile *lf, char **dir,
    struct logfile_rotated **list, size_t *n)
{
	struct logfile_rotated	*r = NULL;
	struct dirent		*de;
	DIR			*d;
	const char		*base;
	char			*slash;
	size_t			 baselen;
	u_long			 num;

	*list = NULL;
	*n = 0;
	*dir = xstrdup(lf->path);
	if ((slash = strrchr(*dir, '/')) == NULL) {
		free(*dir);
		*dir = xstrdup(".");
		base = lf->path;
	} else {
		base = lf->path + (slash - *dir) + 1;
		if (slash == *dir)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	baselen = strlen(base);
	if ((d = opendir(*dir)) == NULL)
		return (-1);
	while ((de = readdir(d)) != NULL) {
		if (!logfile_is_rotated(de->d_name, base, baselen, &num))
			continue;
		r = xreallocarray(r, *n + 1, sizeof *r);
		r[*n].name = xstrdup(de->d_name);
		memcpy(r[*n].stamp, de->d_name + baselen, LOGFILE_STAMP_LEN);
		r[*n].stamp[LOGFILE_STAMP_LEN] = '\0';
		r[*n].n = num;
		(*n)++;
	}
	closedir(d);
	if (*n > 1)
		qsort(r, *n, sizeof *r, logfile_rotated_cmp);
	*list = r;
	return (0);
}

static void
logfile_rotated_free(char *dir, struct logfile_rotated *r, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(r[i].name);
	free(r);
	free(dir);
}

/* Delete the oldest rotated files of lf beyond logfile_keep. */
static void
logfile_prune(struct logfile *lf)
{
	struct logfile_rotated	*r;
	char			*dir, *path;
	size_t			 n, i;

	if (logfile_keep == 0)
		return;
	if (logfile_rotated_list(lf, &dir, &r, &n) != 0) {
		log_warn("log %s: cannot list %s", lf->path, dir);
		free(dir);
		return;
	}
	for (i = 0; i + logfile_keep < n; i++) {
		xasprintf(&path, "%s/%s", dir, r[i].name);
		if (unlink(path) == -1 && errno != ENOENT)
			log_warn("log %s: unlink %s", lf->path, path);
		else
			log_debug("log %s: removed %s", lf->path, path);
		free(path);
	}
	logfile_rotated_free(dir, r, n);
}

/*
 * Rename the file to its rotated name and start a new one.  If the stamp
 * of this second is taken, -N is added, above every N already there, so
 * that the names keep sorting oldest first even after pruning.
 */
static void
logfile_rotate(struct logfile *lf)
{
	struct logfile_rotated	*r;
	struct stat		 sb;
	struct tm		 tm;
	time_t			 now;
	char			 stamp[32], *to, *dir;
	size_t			 n, i;
	u_long			 next = 0;

	if (lf->flags & LOGFILE_ROTATE_FAILED)
		return;
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "-%Y%m%d-%H%M%S", &tm);
	if (logfile_rotated_list(lf, &dir, &r, &n) == 0) {
		for (i = 0; i < n; i++) {
			if (strcmp(r[i].stamp, stamp) == 0 && r[i].n >= next)
				next = r[i].n + 1;
		}
	}
	logfile_rotated_free(dir, r, n);
	if (next == 0)
		xasprintf(&to, "%s%s", lf->path, stamp);
	else
		xasprintf(&to, "%s%s-%lu", lf->path, stamp, next);
	while (lstat(to, &sb) == 0) {
		free(to);
		xasprintf(&to, "%s%s-%lu", lf->path, stamp, ++next);
	}
	if (rename(lf->path, to) == -1) {
		log_warn("log %s: cannot rotate to %s", lf->path, to);
		lf->flags |= LOGFILE_ROTATE_FAILED;
		free(to);
		return;
	}
	log_debug("log %s: rotated to %s", lf->path, to);
	free(to);
	logfile_close(lf);
	logfile_prune(lf);
	logfile_open(lf);
}

static void
logfile_append(struct logfile *lf, const u_char *buf, size_t len)
{
	ssize_t	n;
	size_t	done = 0;

	if (len == 0)
		return;
	if (logfile_open(lf) != 0) {
		lf->dropped += len;
		return;
	}
	if (logfile_max_size != 0 && lf->size > 0 &&
	    (uint64_t)lf->size + len > logfile_max_size) {
		logfile_rotate(lf);
		if (lf->fd == -1) {
			lf->dropped += len;
			return;
		}
	}

	while (done < len) {
		n = write(lf->fd, buf + done, len - done);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (!(lf->flags & LOGFILE_WRITE_FAILED)) {
				if (n == 0)
					log_warnx("log %s: short write",
					    lf->path);
				else
					log_warn("log %s", lf->path);
			}
			lf->flags |= LOGFILE_WRITE_FAILED;
			lf->dropped += len - done;
			break;
		}
		done += n;
		lf->size += n;
	}
	if (done == len && (lf->flags & LOGFILE_WRITE_FAILED)) {
		log_info("log %s: writing again", lf->path);
		lf->flags &= ~LOGFILE_WRITE_FAILED;
	}
	if (done > 0) {
		if (buf[done - 1] == '\n')
			lf->flags |= LOGFILE_BOL;
		else
			lf->flags &= ~LOGFILE_BOL;
	}
}

/* Append console output, raw, to a log file. */
void
logfile_write(struct logfile *lf, const u_char *buf, size_t len)
{
	logfile_append(lf, buf, len);
}

/* End a partial line so that a line of ours starts on its own. */
static void
logfile_newline(struct logfile *lf)
{
	if (!(lf->flags & LOGFILE_BOL))
		logfile_append(lf, (const u_char *)"\r\n", 2);
}

/*
 * Write a line of our own (attach, detach, bump) to the log, on a line of
 * its own; fmt should end with "\r\n".
 */
void
logfile_printf(struct logfile *lf, const char *fmt, ...)
{
	va_list	 ap;
	char	*s;
	int	 len;

	va_start(ap, fmt);
	len = xvasprintf(&s, fmt, ap);
	va_end(ap);
	logfile_newline(lf);
	logfile_append(lf, (const u_char *)s, len);
	free(s);
}

/*
 * Write a MARK line, "[-- MARK -- Sat Nov 21 20:35:24 2026 UTC --]\r\n"
 * (the time in UTC, English names whatever the locale), on its own line.
 */
void
logfile_mark(struct logfile *lf, time_t now)
{
	static const char	*days[] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
	};
	static const char	*months[] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
	};
	struct tm		 tm;

	if (gmtime_r(&now, &tm) == NULL)
		return;
	logfile_printf(lf, "[-- MARK -- %s %s %2d %02d:%02d:%02d %d UTC --]"
	    "\r\n", days[tm.tm_wday % 7], months[tm.tm_mon % 12], tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_year + 1900);
}

/*
 * Close every open log file (SIGUSR1, after logrotate moved them): the
 * next write opens the file by its path again.  Failed files are retried.
 */
void
logfile_reopen_all(void)
{
	struct logfile	*lf;

	while ((lf = TAILQ_FIRST(&logfile_lru)) != NULL)
		logfile_close(lf);
	TAILQ_FOREACH(lf, &logfile_all, aentry)
		lf->flags &= ~(LOGFILE_OPEN_FAILED | LOGFILE_ROTATE_FAILED);
}

/* Close every open log file; the logfile structures stay valid. */
void
logfile_shutdown(void)
{
	struct logfile	*lf;

	while ((lf = TAILQ_FIRST(&logfile_lru)) != NULL)
		logfile_close(lf);
}

/* Append s to the growing string *out, made safe for a file name. */
static void
logfile_safe(char **out, size_t *len, size_t *size, const char *s)
{
	size_t	n, i;
	u_char	c;

	n = strlen(s);
	if (*len + n + 1 > *size) {
		*size = *len + n + 64;
		*out = xreallocarray(*out, 1, *size);
	}
	for (i = 0; i < n; i++) {
		c = s[i];
		if (c == '/' || c < 0x20 || c == 0x7f || (i == 0 && c == '.'))
			c = '_';
		(*out)[(*len)++] = c;
	}
	(*out)[*len] = '\0';
}

/*
 * Expand a log file name template: %n the VM name, %u the canonical UUID,
 * %k the console key, %l the port label (empty if none), %% a '%'.  Each
 * value is made safe: '/', control characters and a leading '.' become
 * '_'.  A missing name is replaced by the key.  Returns a malloc'd name.
 */
char *
logfile_expand(const char *template, const char *name, const char *key,
    const char *uuid, const char *label)
{
	const char	*p, *v;
	char		*out, lit[3];
	size_t		 len = 0, size = 64;

	out = xmalloc(size);
	out[0] = '\0';
	for (p = template; *p != '\0'; p++) {
		if (*p != '%' || p[1] == '\0') {
			if (len + 2 > size) {
				size *= 2;
				out = xreallocarray(out, 1, size);
			}
			out[len++] = *p;
			out[len] = '\0';
			continue;
		}
		switch (*++p) {
		case 'n':
			v = name != NULL && *name != '\0' ? name : key;
			break;
		case 'u':
			v = uuid;
			break;
		case 'k':
			v = key;
			break;
		case 'l':
			v = label;
			break;
		case '%':
			v = "%";
			break;
		default:
			lit[0] = '%';
			lit[1] = *p;
			lit[2] = '\0';
			v = lit;
			break;
		}
		if (v != NULL && *v != '\0')
			logfile_safe(&out, &len, &size, v);
	}
	if (len == 0) {
		free(out);
		out = xstrdup("_");
	}
	return (out);
}
