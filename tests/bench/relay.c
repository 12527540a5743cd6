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
 * benchrelay: the reference points of `make bench'.
 *
 *   benchrelay -l HOST:PORT -c HOST:PORT
 *	A minimal libevent TCP relay (le-proxy's shape: a bufferevent per
 *	side, read stops while the other side holds more than RELAY_MAX):
 *	the practical limit for relaying a console on this machine.
 *   benchrelay --source HOST:PORT [-p NAME]
 *	Listens; writes esxisim's text pattern ("NAME %010k\r\n" lines,
 *	tests/sim/README) as fast as each accepted connection takes it.
 *
 * Nothing else: no telnet, no history, no fan-out.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "vspcd.h"

#define RELAY_MAX	(256 * 1024)	/* Bytes held per direction. */
#define SOURCE_LINES	4096		/* Pattern lines per refill. */

struct source {
	struct bufferevent	*bev;
	char			*buf;
	size_t			 len;
	size_t			 llen;
	uint64_t		 k;	/* First line number in buf. */
};

static struct event_base	*relay_base;
static struct sockaddr_storage	 relay_target;
static socklen_t		 relay_targetlen;
static const char		*relay_name = "vm-00000";

static void	relay_read(struct bufferevent *, void *);
static void	relay_drained(struct bufferevent *, void *);
static void	relay_event(struct bufferevent *, short, void *);

static int
relay_parse(const char *arg, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo	 hints, *res;
	char		*s, *port;
	int		 error;

	s = xstrdup(arg);
	if ((port = strrchr(s, ':')) == NULL) {
		free(s);
		return (-1);
	}
	*port++ = '\0';
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	error = getaddrinfo(s, port, &hints, &res);
	free(s);
	if (error != 0)
		return (-1);
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return (0);
}

/* One side ended: free both. */
static void
relay_close(struct bufferevent *bev, struct bufferevent *other)
{
	bufferevent_free(bev);
	if (other != NULL) {
		bufferevent_setcb(other, NULL, NULL, NULL, NULL);
		bufferevent_free(other);
	}
}

/* Data in: move it to the other side, stop reading if that is full. */
static void
relay_read(struct bufferevent *bev, void *arg)
{
	struct bufferevent	*other = arg;
	struct evbuffer		*out = bufferevent_get_output(other);

	evbuffer_add_buffer(out, bufferevent_get_input(bev));
	if (evbuffer_get_length(out) >= RELAY_MAX) {
		bufferevent_setcb(other, relay_read, relay_drained,
		    relay_event, bev);
		bufferevent_setwatermark(other, EV_WRITE, RELAY_MAX / 2, 0);
		bufferevent_disable(bev, EV_READ);
	}
}

/* The other side drained below half: read again. */
static void
relay_drained(struct bufferevent *bev, void *arg)
{
	struct bufferevent	*other = arg;

	bufferevent_setcb(bev, relay_read, NULL, relay_event, other);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(other, EV_READ);
}

static void
relay_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		relay_close(bev, arg);
}

static void
relay_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct bufferevent	*a, *b;
	int			 one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	a = bufferevent_socket_new(relay_base, fd, BEV_OPT_CLOSE_ON_FREE);
	b = bufferevent_socket_new(relay_base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bufferevent_socket_connect(b, (struct sockaddr *)&relay_target,
	    relay_targetlen) == -1) {
		bufferevent_free(a);
		bufferevent_free(b);
		return;
	}
	setsockopt(bufferevent_getfd(b), IPPROTO_TCP, TCP_NODELAY, &one,
	    sizeof one);
	bufferevent_setcb(a, relay_read, NULL, relay_event, b);
	bufferevent_setcb(b, relay_read, NULL, relay_event, a);
	bufferevent_enable(a, EV_READ | EV_WRITE);
	bufferevent_enable(b, EV_READ | EV_WRITE);
}

/* Advance every line's 10-digit counter by SOURCE_LINES. */
static void
source_advance(struct source *s)
{
	size_t		 i;
	u_int		 carry;
	char		*d;
	int		 j;

	for (i = 0; i < SOURCE_LINES; i++) {
		d = s->buf + i * s->llen + s->llen - 3;
		carry = SOURCE_LINES;
		for (j = 0; j < 10 && carry > 0; j++, d--) {
			carry += *d - '0';
			*d = '0' + carry % 10;
			carry /= 10;
		}
	}
	s->k += SOURCE_LINES;
}

/* The socket took some: top it up. */
static void
source_write(struct bufferevent *bev, void *arg)
{
	struct source	*s = arg;
	struct evbuffer	*out = bufferevent_get_output(bev);

	while (evbuffer_get_length(out) < RELAY_MAX) {
		evbuffer_add(out, s->buf, s->len);
		source_advance(s);
	}
}

static void
source_event(struct bufferevent *bev, short what, void *arg)
{
	struct source	*s = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_free(bev);
		free(s->buf);
		free(s);
	}
}

static void
source_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct source	*s;
	size_t		 i;
	int		 one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	s = xcalloc(1, sizeof *s);
	s->llen = strlen(relay_name) + 13;
	s->len = s->llen * SOURCE_LINES;
	s->buf = xmalloc(s->len + 1);
	for (i = 0; i < SOURCE_LINES; i++)
		snprintf(s->buf + i * s->llen, s->llen + 1, "%s %010zu\r\n",
		    relay_name, i);
	s->bev = bufferevent_socket_new(relay_base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(s->bev, NULL, source_write, source_event, s);
	bufferevent_setwatermark(s->bev, EV_WRITE, RELAY_MAX / 2, 0);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	source_write(s->bev, s);
}

static void __attribute__((__noreturn__))
usage(void)
{
	fprintf(stderr, "usage: benchrelay -l host:port -c host:port\n"
	    "       benchrelay --source host:port [-p name]\n");
	exit(1);
}

int
main(int argc, char **argv)
{
	struct evconnlistener	*l;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = 0;
	int			 ch, source = 0;
	static const struct option longopts[] = {
		{ "source", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 }
	};

	log_init(1, 0);
	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt_long(argc, argv, "c:l:p:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
		case 's':
			if (relay_parse(optarg, &ss, &sslen) == -1)
				fatalx("bad address %s", optarg);
			source = ch == 's';
			break;
		case 'c':
			if (relay_parse(optarg, &relay_target,
			    &relay_targetlen) == -1)
				fatalx("bad address %s", optarg);
			break;
		case 'p':
			relay_name = optarg;
			break;
		default:
			usage();
		}
	}
	if (sslen == 0 || (!source && relay_targetlen == 0))
		usage();
	if ((relay_base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	l = evconnlistener_new_bind(relay_base, source ? source_accept :
	    relay_accept, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 128,
	    (struct sockaddr *)&ss, sslen);
	if (l == NULL)
		fatalx("cannot listen");
	event_base_dispatch(relay_base);
	return (0);
}
