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
 * vspcctl log: the last lines of a console's log file, and with --follow
 * what is appended to it, polled four times a second and sent on until
 * the tool (or the node that relayed the request) goes away.
 */

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "proto/control.pb-c.h"
#include "control-int.h"

struct ctl_follows		 ctl_follows =
    TAILQ_HEAD_INITIALIZER(ctl_follows);

/* Stop following a log. */
void
ctl_follow_free(struct ctl_follow *f)
{
	TAILQ_REMOVE(&ctl_follows, f, entry);
	event_free(f->ev);
	free(f->sink.node);
	free(f->path);
	free(f);
}

/* Console logs. */

static int
ctl_log_send(struct ctl_sink *s, int fd, off_t from, off_t to, int more)
{
	Vspc__Ctl__Reply	 r = VSPC__CTL__REPLY__INIT;
	u_char			*buf;
	ssize_t			 n;
	size_t			 want;

	buf = xmalloc(CTL_CHUNK);
	while (from < to) {
		want = to - from > CTL_CHUNK ? CTL_CHUNK : to - from;
		n = pread(fd, buf, want, from);
		if (n <= 0)
			break;
		from += n;
		vspc__ctl__reply__init(&r);
		r.ok = 1;
		r.more = 1;
		r.data.data = buf;
		r.data.len = n;
		if (ctl_send(s, &r) == -1) {
			free(buf);
			return (-1);
		}
	}
	free(buf);
	if (!more) {
		vspc__ctl__reply__init(&r);
		r.ok = 1;
		return (ctl_send(s, &r));
	}
	return (0);
}

/* Where the last lines lines of a file start. */
static off_t
ctl_log_tail(int fd, off_t size, u_int lines)
{
	u_char	*buf;
	off_t	 start, i;
	ssize_t	 n;
	u_int	 seen = 0;

	start = size > CTL_LOG_TAIL_MAX ? size - CTL_LOG_TAIL_MAX : 0;
	buf = xmalloc(size - start + 1);
	n = pread(fd, buf, size - start, start);
	if (n <= 0) {
		free(buf);
		return (size);
	}
	for (i = n - 1; i >= 0; i--) {
		if (buf[i] == '\n' && i != n - 1 && ++seen == lines) {
			free(buf);
			return (start + i + 1);
		}
	}
	free(buf);
	return (start);
}

/* Timer: send what was appended to a followed log. */
void
ctl_follow_cb(evutil_socket_t fd0, short events, void *arg)
{
	struct ctl_follow	*f = arg;
	struct stat		 sb;
	int			 fd;

	if ((fd = open(f->path, O_RDONLY|O_CLOEXEC)) == -1) {
		if (f->sink.conn == 0 && peer_find(f->sink.node) == NULL)
			ctl_follow_free(f);
		else if (f->sink.conn != 0 &&
		    ctl_conn_find(f->sink.conn) == NULL)
			ctl_follow_free(f);
		return;
	}
	if (fstat(fd, &sb) == 0) {
		if (sb.st_size < f->off)
			f->off = 0;	/* Rotated or truncated. */
		if (sb.st_size > f->off) {
			if (ctl_log_send(&f->sink, fd, f->off, sb.st_size,
			    1) == -1) {
				close(fd);
				ctl_follow_free(f);
				return;
			}
			f->off = sb.st_size;
		} else if (f->sink.conn != 0 &&
		    ctl_conn_find(f->sink.conn) == NULL) {
			close(fd);
			ctl_follow_free(f);
			return;
		} else if (f->sink.conn == 0 && peer_find(f->sink.node) ==
		    NULL) {
			close(fd);
			ctl_follow_free(f);
			return;
		}
	}
	close(fd);
}

/* LOG: the last lines of a console's log, and more with --follow. */
void
ctl_log(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	struct console		*con;
	struct ctl_follow	*f;
	struct stat		 sb;
	struct timeval		 tv = { 0, 250000 };
	const char		*path;
	off_t			 start;
	int			 fd;

	if (ctl_lookup(s, req->target, &con) == -1)
		return;
	if (ctl_remote(con)) {
		ctl_relay_owner(s, req, con);
		return;
	}
	if (con->log == NULL) {
		ctl_error(s, "%s has no log on node %s", con->key,
		    server_conf->node_id);
		return;
	}
	path = logfile_path(con->log);
	if ((fd = open(path, O_RDONLY|O_CLOEXEC)) == -1 ||
	    fstat(fd, &sb) == -1) {
		ctl_error(s, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return;
	}
	start = ctl_log_tail(fd, sb.st_size, req->lines != 0 ? req->lines :
	    CTL_LOG_LINES);
	if (ctl_log_send(s, fd, start, sb.st_size, req->follow) == -1 ||
	    !req->follow) {
		close(fd);
		return;
	}
	close(fd);
	f = xcalloc(1, sizeof *f);
	ctl_sink_copy(&f->sink, s);
	f->path = xstrdup(path);
	f->off = sb.st_size;
	f->ev = event_new(server_base, -1, EV_PERSIST, ctl_follow_cb, f);
	event_add(f->ev, &tv);
	TAILQ_INSERT_TAIL(&ctl_follows, f, entry);
}
