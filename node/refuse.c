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
 * Connections refused at accept on the console and compatibility ports
 * (allow list, max_connections, max_per_source, draining): the person is
 * told why, in the form their client shows, before the close.
 *
 * The console port is telnet: a text line.  The compatibility port
 * serves two clients.  vSPC.py's vSPCClient sends a pickle at once and
 * reads pickles; it has no error reply it prints (an Exception where it
 * wants the version dies in int() with a traceback), so it gets a pickle
 * of sys.exit(text): the client exits with status 1 and the text on
 * stderr.  VMware's client waits for the server and prints in-band
 * bytes as they come, so it gets the text line.  Which one it is shows
 * in the first byte, as in compat.c: a refused compat connection waits
 * up to REFUSE_DETECT_MS for it.
 *
 * After the answer the write side is shut down and whatever the client
 * still sends is read and dropped until it closes, for up to
 * REFUSE_LINGER_S: closing with unread input would send a reset, and the
 * client could lose the answer before reading it.
 *
 * Refused connections are what a flood is made of, so at most
 * REFUSE_MAX wait here at a time; past that, the answer is written (for
 * the compat port, as the bytes already received say, else as text) and
 * the connection closed at once.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"

#define REFUSE_MAX		64
#define REFUSE_DETECT_MS	200
#define REFUSE_LINGER_S		2

enum refuse_state {
	REFUSE_DETECT,		/* Compat: waiting for the first byte. */
	REFUSE_LINGER,		/* Answered: reading until the close. */
	REFUSE_STATE_MAX
};

struct refusal {
	int			 fd;
	enum refuse_state	 state;
	char			*text;
	struct event		*ev;
	TAILQ_ENTRY(refusal)	 entry;
};
TAILQ_HEAD(refusals, refusal);

static struct refusals	refusals = TAILQ_HEAD_INITIALIZER(refusals);
static u_int		nrefusals;

static void	refuse_cb(evutil_socket_t, short, void *);

/* Write an answer; a refused client that does not read loses it. */
static void
refuse_write(int fd, const void *buf, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf = (const char *)buf + n;
		len -= n;
	}
}

/* The text as a line. */
static void
refuse_text(int fd, const char *text)
{
	char	*line;

	xasprintf(&line, "%s\r\n", text);
	refuse_write(fd, line, strlen(line));
	free(line);
}

/* The text as vSPCClient shows it: a pickled sys.exit(text). */
static void
refuse_pickle(int fd, const char *text)
{
	struct evbuffer	*evb;
	size_t		 len;

	if ((evb = evbuffer_new()) == NULL)
		fatalx("refuse: evbuffer_new failed");
	pickle_put_exit(evb, text);
	len = evbuffer_get_length(evb);
	refuse_write(fd, evbuffer_pullup(evb, -1), len);
	evbuffer_free(evb);
}

/* The compat client's first byte says which protocol answers. */
static void
refuse_compat(int fd, const char *text, u_char first)
{
	if (first == TEL_IAC)
		refuse_text(fd, text);
	else
		refuse_pickle(fd, text);
}

static void
refuse_free(struct refusal *r)
{
	TAILQ_REMOVE(&refusals, r, entry);
	nrefusals--;
	event_free(r->ev);
	close(r->fd);
	free(r->text);
	free(r);
}

/* Answered: shut the write side and read until the client closes. */
static void
refuse_linger(struct refusal *r)
{
	struct timeval	tv = { REFUSE_LINGER_S, 0 };

	(void)shutdown(r->fd, SHUT_WR);
	r->state = REFUSE_LINGER;
	event_del(r->ev);
	event_add(r->ev, &tv);
}

static void
refuse_cb(evutil_socket_t fd, short events, void *arg)
{
	struct refusal	*r = arg;
	u_char		 buf[512];
	ssize_t		 n;

	if (events & EV_TIMEOUT) {
		if (r->state == REFUSE_DETECT) {
			/* Silence: VMware's client waits for the server. */
			refuse_text(r->fd, r->text);
			refuse_linger(r);
		} else
			refuse_free(r);
		return;
	}
	n = read(r->fd, buf, sizeof buf);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0) {
		refuse_free(r);
		return;
	}
	if (r->state == REFUSE_DETECT) {
		refuse_compat(r->fd, r->text, buf[0]);
		refuse_linger(r);
	}
}

/*
 * Tell the client on fd, accepted on a listener of kind (LISTEN_CONSOLE
 * or LISTEN_COMPAT, or their TLS forms), why it is refused, and close
 * it.  The text is one line, without its end.
 */
void
refuse_connection(int fd, u_int kind, const char *text)
{
	struct refusal	*r;
	struct timeval	 tv = { 0, REFUSE_DETECT_MS * 1000 };
	u_char		 first;
	ssize_t		 n;
	int		 detect = 0;

	switch (kind) {
	case LISTEN_CONSOLE:
		refuse_text(fd, text);
		break;
	case LISTEN_COMPAT:
		n = recv(fd, &first, 1, MSG_PEEK);
		if (n == 1)
			refuse_compat(fd, text, first);
		else if (n == -1 && (errno == EAGAIN ||
		    errno == EWOULDBLOCK)) {
			/* Nothing yet: wait for it, or guess VMware's. */
			if (nrefusals < REFUSE_MAX)
				detect = 1;
			else
				refuse_text(fd, text);
		}
		break;
	default:
		/* TLS listeners: the client expects a handshake, not text. */
		close(fd);
		return;
	}
	if (nrefusals >= REFUSE_MAX) {
		close(fd);
		return;
	}
	r = xcalloc(1, sizeof *r);
	r->fd = fd;
	r->text = xstrdup(text);
	r->ev = event_new(server_base, fd, EV_READ|EV_PERSIST, refuse_cb, r);
	if (r->ev == NULL)
		fatalx("refuse: event_new failed");
	TAILQ_INSERT_TAIL(&refusals, r, entry);
	nrefusals++;
	if (detect) {
		r->state = REFUSE_DETECT;
		event_add(r->ev, &tv);
	} else
		refuse_linger(r);
}

/* Refused connections still open (for tests and shutdown). */
u_int
refuse_pending(void)
{
	return (nrefusals);
}

/* Close the refused connections still open. */
void
refuse_shutdown(void)
{
	struct refusal	*r;

	while ((r = TAILQ_FIRST(&refusals)) != NULL)
		refuse_free(r);
}
