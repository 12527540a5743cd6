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
 * The PROXY protocol (HAProxy's proxy-protocol.txt, v1 and v2) on every
 * listener, for connections from the [vm] proxy_protocol_from addresses.
 *
 * Such a connection must start with a PROXY header naming the real
 * source; until the header is complete the connection sits here, with a
 * timer, and nothing else sees it.  The header is read without taking a
 * byte past its end: the bytes are peeked, and only those the parser
 * says belong to the header are then read, so the protocol that follows
 * (telnet, pickles) starts on its first byte.  A connection without a
 * valid header is closed, logged and counted; it is never served with
 * the balancer's address, which would defeat [vm] allow.
 *
 * A LOCAL command (v2: the balancer's own health check) or an UNKNOWN or
 * unspecified address keeps the balancer's address as the source.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "proto/handoff.pb-c.h"

#define PROXY_V1_MAX	107		/* With the final "\r\n". */
#define PROXY_V2_HEAD	16
#define PROXY_V2_MAX	512		/* Addresses and TLVs. */
#define PROXY_BUF_MAX	(PROXY_V2_HEAD + PROXY_V2_MAX)
#define PROXY_TIMEOUT	10		/* Without [vm] negotiation_timeout. */

struct proxy_conn {
	int			 fd;
	u_int			 kind;
	char			*name;
	struct sockaddr_storage	 ss;		/* The balancer's address. */
	struct event		*ev;
	struct event		*timer;
	void			(*done)(int, const struct sockaddr *, u_int,
				    const char *);
	u_char			 buf[PROXY_BUF_MAX];
	size_t			 len;		/* Header bytes read. */
	TAILQ_ENTRY(proxy_conn)	 entry;
};
TAILQ_HEAD(proxy_conns, proxy_conn);

static struct proxy_conns	 proxy_conns =
    TAILQ_HEAD_INITIALIZER(proxy_conns);

static const u_char proxy_v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static int	proxy_parse_v1(const u_char *, size_t,
		    struct sockaddr_storage *, size_t *, const char **);
static int	proxy_parse_v2(const u_char *, size_t,
		    struct sockaddr_storage *, size_t *, const char **);

static int
proxy_port(const char *s, in_port_t *port)
{
	size_t	n = strlen(s), i;
	u_long	v = 0;

	if (n == 0 || n > 5)
		return (-1);
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (-1);
		v = v * 10 + (s[i] - '0');
	}
	if (v > 65535)
		return (-1);
	*port = htons((in_port_t)v);
	return (0);
}

static int
proxy_parse_v1(const u_char *buf, size_t len, struct sockaddr_storage *ss,
    size_t *hdrlen, const char **err)
{
	static const char	 prefix[] = "PROXY ";
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;
	char			 line[PROXY_V1_MAX], *p, *proto, *w[4];
	in_port_t		 port;
	size_t			 i;
	u_int			 k;

	if (memcmp(buf, prefix, len < 6 ? len : 6) != 0) {
		*err = "not a PROXY header";
		return (-1);
	}
	for (i = 0; i < len; i++) {
		if (buf[i] == '\r')
			break;
		if (i >= PROXY_V1_MAX - 2) {
			*err = "v1 header longer than 107 bytes";
			return (-1);
		}
		if (buf[i] < 0x20 || buf[i] > 0x7e) {
			*err = "v1 header with a control character";
			return (-1);
		}
	}
	if (i + 1 >= len)
		return (0);
	if (buf[i + 1] != '\n') {
		*err = "v1 header with \\r not followed by \\n";
		return (-1);
	}
	if (i < 6) {
		*err = "v1 header too short";
		return (-1);
	}
	memcpy(line, buf, i);
	line[i] = '\0';
	p = line + 6;
	proto = strsep(&p, " ");
	memset(ss, 0, sizeof *ss);
	if (strcmp(proto, "UNKNOWN") == 0) {
		ss->ss_family = AF_UNSPEC;
		*hdrlen = i + 2;
		return (1);
	}
	if (strcmp(proto, "TCP4") != 0 && strcmp(proto, "TCP6") != 0) {
		*err = "v1 header with a protocol other than TCP4, TCP6 or "
		    "UNKNOWN";
		return (-1);
	}
	for (k = 0; k < 4; k++) {
		if (p == NULL || (w[k] = strsep(&p, " ")) == NULL ||
		    *w[k] == '\0') {
			*err = "v1 header with missing fields";
			return (-1);
		}
	}
	if (p != NULL) {
		*err = "v1 header with extra fields";
		return (-1);
	}
	/* Destination first: what stays in port and ss is the source. */
	if (proxy_port(w[3], &port) == -1 || proxy_port(w[2], &port) == -1) {
		*err = "v1 header with a bad port";
		return (-1);
	}
	if (proto[3] == '4') {
		sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = port;
		if (inet_pton(AF_INET, w[1], &sin->sin_addr) != 1 ||
		    inet_pton(AF_INET, w[0], &sin->sin_addr) != 1) {
			*err = "v1 header with a bad IPv4 address";
			return (-1);
		}
	} else {
		sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = port;
		if (inet_pton(AF_INET6, w[1], &sin6->sin6_addr) != 1 ||
		    inet_pton(AF_INET6, w[0], &sin6->sin6_addr) != 1) {
			*err = "v1 header with a bad IPv6 address";
			return (-1);
		}
	}
	*hdrlen = i + 2;
	return (1);
}

static int
proxy_parse_v2(const u_char *buf, size_t len, struct sockaddr_storage *ss,
    size_t *hdrlen, const char **err)
{
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;
	size_t			 alen;
	u_int			 cmd, fam;

	if (memcmp(buf, proxy_v2_sig, len < 12 ? len : 12) != 0) {
		*err = "not a PROXY header";
		return (-1);
	}
	if (len < 13)
		return (0);
	if ((buf[12] & 0xf0) != 0x20) {
		*err = "v2 header with a version other than 2";
		return (-1);
	}
	cmd = buf[12] & 0x0f;
	if (cmd > 1) {
		*err = "v2 header with a command other than LOCAL or PROXY";
		return (-1);
	}
	if (len < PROXY_V2_HEAD)
		return (0);
	fam = buf[13];
	alen = ((size_t)buf[14] << 8) | buf[15];
	if (alen > PROXY_V2_MAX) {
		*err = "v2 header longer than 512 bytes";
		return (-1);
	}
	if (len < PROXY_V2_HEAD + alen)
		return (0);

	memset(ss, 0, sizeof *ss);
	ss->ss_family = AF_UNSPEC;
	*hdrlen = PROXY_V2_HEAD + alen;
	if (cmd == 0)
		return (1);	/* LOCAL: the addresses are ignored. */
	switch (fam) {
	case 0x00:		/* UNSPEC. */
	case 0x31:		/* UNIX stream. */
	case 0x32:		/* UNIX datagram. */
		return (1);
	case 0x11:		/* TCP over IPv4. */
		if (alen < 12) {
			*err = "v2 header too short for IPv4 addresses";
			return (-1);
		}
		sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, buf + PROXY_V2_HEAD, 4);
		memcpy(&sin->sin_port, buf + PROXY_V2_HEAD + 8, 2);
		return (1);
	case 0x21:		/* TCP over IPv6. */
		if (alen < 36) {
			*err = "v2 header too short for IPv6 addresses";
			return (-1);
		}
		sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, buf + PROXY_V2_HEAD, 16);
		memcpy(&sin6->sin6_port, buf + PROXY_V2_HEAD + 32, 2);
		return (1);
	case 0x12:
	case 0x22:
		*err = "v2 header for UDP, not TCP";
		return (-1);
	default:
		*err = "v2 header with an unknown address family";
		return (-1);
	}
}

/*
 * Parse a PROXY header at the start of buf: 1 and *hdrlen and *ss when
 * complete (ss_family AF_UNSPEC: keep the connection's own address), 0
 * when every byte so far may start a header but it is not complete, -1
 * and *err (a constant string) when it is not a valid header.
 */
int
proxy_parse(const u_char *buf, size_t len, struct sockaddr_storage *ss,
    size_t *hdrlen, const char **err)
{
	if (len == 0)
		return (0);
	if (buf[0] == 'P')
		return (proxy_parse_v1(buf, len, ss, hdrlen, err));
	if (buf[0] == proxy_v2_sig[0])
		return (proxy_parse_v2(buf, len, ss, hdrlen, err));
	*err = "not a PROXY header";
	return (-1);
}

static void
proxy_free(struct proxy_conn *pc)
{
	TAILQ_REMOVE(&proxy_conns, pc, entry);
	event_free(pc->ev);
	event_free(pc->timer);
	free(pc->name);
	free(pc);
}

/* Bytes as printable text for the log, \xNN for the others. */
static void
proxy_escape(const u_char *buf, size_t len, char *out, size_t outlen)
{
	size_t	i, o = 0;

	for (i = 0; i < len && o + 8 < outlen; i++) {
		if (buf[i] >= 0x20 && buf[i] < 0x7f && buf[i] != '"' &&
		    buf[i] != '\\')
			out[o++] = buf[i];
		else
			o += snprintf(out + o, outlen - o, "\\x%02x", buf[i]);
	}
	if (i < len)
		o += snprintf(out + o, outlen - o, "...");
	out[o] = '\0';
}

static void
proxy_refuse(struct proxy_conn *pc, const u_char *got, size_t len,
    const char *why)
{
	char	addr[64], text[200];

	server_stats.proxy_refused++;
	addr_fmt((struct sockaddr *)&pc->ss, addr, sizeof addr);
	if (len == 0)
		log_warnx("%s listener %s: PROXY header expected from %s: got "
		    "nothing (%s)", server_listener_name(pc->kind), pc->name,
		    addr, why);
	else {
		proxy_escape(got, len, text, sizeof text);
		log_warnx("%s listener %s: PROXY header expected from %s: got "
		    "\"%s\" (%s)", server_listener_name(pc->kind), pc->name,
		    addr, text, why);
	}
	close(pc->fd);
	proxy_free(pc);
}

static void
proxy_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proxy_conn	*pc = arg;

	proxy_refuse(pc, pc->buf, pc->len, "timed out");
}

static void
proxy_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proxy_conn	*pc = arg;
	struct sockaddr_storage	 real;
	void			(*done)(int, const struct sockaddr *, u_int,
				    const char *);
	const char		*err = NULL;
	char			*name;
	size_t			 hdrlen = 0, want;
	ssize_t			 n;
	u_int			 kind;
	int			 rv;

	n = recv(pc->fd, pc->buf + pc->len, sizeof pc->buf - pc->len,
	    MSG_PEEK);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		proxy_refuse(pc, pc->buf, pc->len, strerror(errno));
		return;
	}
	if (n == 0) {
		proxy_refuse(pc, pc->buf, pc->len, "connection closed");
		return;
	}
	rv = proxy_parse(pc->buf, pc->len + n, &real, &hdrlen, &err);
	if (rv == -1) {
		proxy_refuse(pc, pc->buf, pc->len + n, err);
		return;
	}
	/*
	 * Take what belongs to the header: all of it when incomplete (the
	 * parser said so), else exactly up to its end.  The bytes were
	 * peeked, so the read cannot come up short.
	 */
	want = rv == 0 ? (size_t)n : hdrlen - pc->len;
	if (recv(pc->fd, pc->buf + pc->len, want, 0) != (ssize_t)want) {
		proxy_refuse(pc, pc->buf, pc->len, "short read");
		return;
	}
	pc->len += want;
	if (rv == 0)
		return;

	if (real.ss_family == AF_UNSPEC)
		real = pc->ss;
	fd = pc->fd;
	kind = pc->kind;
	done = pc->done;
	name = pc->name;
	pc->name = NULL;
	proxy_free(pc);
	done(fd, (struct sockaddr *)&real, kind, name);
	free(name);
}

/*
 * Wait for the PROXY header on fd, accepted on a listener of that kind
 * and name from sa (a [vm] proxy_protocol_from address); then call done
 * with the real source, or close fd if no valid header comes.
 */
void
proxy_accept(int fd, const struct sockaddr *sa, socklen_t salen, u_int kind,
    const char *name, void (*done)(int, const struct sockaddr *, u_int,
    const char *))
{
	struct proxy_conn	*pc;
	struct timeval		 tv = { PROXY_TIMEOUT, 0 };

	if (server_conf->vm_negotiation_timeout != 0)
		tv.tv_sec = server_conf->vm_negotiation_timeout;
	pc = xcalloc(1, sizeof *pc);
	pc->fd = fd;
	pc->kind = kind;
	pc->name = xstrdup(name);
	if (salen > sizeof pc->ss)
		salen = sizeof pc->ss;
	memcpy(&pc->ss, sa, salen);
	pc->done = done;
	pc->ev = event_new(server_base, fd, EV_READ|EV_PERSIST,
	    proxy_read_cb, pc);
	pc->timer = evtimer_new(server_base, proxy_timeout_cb, pc);
	TAILQ_INSERT_TAIL(&proxy_conns, pc, entry);
	event_add(pc->ev, NULL);
	evtimer_add(pc->timer, &tv);
}

/* Close the connections still waiting for their header. */
void
proxy_shutdown(void)
{
	struct proxy_conn	*pc;

	while ((pc = TAILQ_FIRST(&proxy_conns)) != NULL) {
		close(pc->fd);
		proxy_free(pc);
	}
}

/* Hot upgrade: stop (1) or resume (0) reading headers. */
static void
proxy_handoff_pause(int on)
{
	struct proxy_conn	*pc;

	TAILQ_FOREACH(pc, &proxy_conns, entry) {
		if (on)
			event_del(pc->ev);
		else
			event_add(pc->ev, NULL);
	}
}

/* Hot upgrade: the connections still waiting for their header. */
static void
proxy_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Proxy	 m;
	struct proxy_conn	*pc;

	TAILQ_FOREACH(pc, &proxy_conns, entry) {
		vspc__handoff__proxy__init(&m);
		m.fd = handoff_add_fd(h, pc->fd);
		m.kind = pc->kind;
		m.name = pc->name;
		m.ss.data = (uint8_t *)&pc->ss;
		m.ss.len = sizeof pc->ss;
		m.buf.data = pc->buf;
		m.buf.len = pc->len;
		m.timer_us = core_timer_left(pc->timer);
		handoff_add_msg(h, HANDOFF_REC_PROXY, &m.base);
	}
}

/* Hot upgrade: wait for the header again where the old process was. */
static int
proxy_handoff_restore(struct handoff *h, const uint8_t *data, size_t len,
    char **err)
{
	Vspc__Handoff__Proxy	*m;
	struct proxy_conn	*pc;
	int			 fd;

	if ((m = vspc__handoff__proxy__unpack(NULL, len, data)) == NULL) {
		*err = xstrdup("malformed proxy record");
		return (-1);
	}
	if ((fd = handoff_take_fd(h, m->fd)) == -1) {
		*err = xstrdup("proxy connection: no descriptor");
		vspc__handoff__proxy__free_unpacked(m, NULL);
		return (-1);
	}
	pc = xcalloc(1, sizeof *pc);
	pc->fd = fd;
	pc->kind = m->kind;
	pc->name = xstrdup(m->name);
	if (m->ss.len != 0)
		memcpy(&pc->ss, m->ss.data, m->ss.len < sizeof pc->ss ?
		    m->ss.len : sizeof pc->ss);
	pc->len = m->buf.len < sizeof pc->buf ? m->buf.len : sizeof pc->buf;
	if (pc->len != 0)
		memcpy(pc->buf, m->buf.data, pc->len);
	pc->done = server_dispatch;
	pc->ev = event_new(server_base, fd, EV_READ|EV_PERSIST,
	    proxy_read_cb, pc);
	pc->timer = evtimer_new(server_base, proxy_timeout_cb, pc);
	TAILQ_INSERT_TAIL(&proxy_conns, pc, entry);
	event_add(pc->ev, NULL);
	core_timer_set(pc->timer, m->timer_us >= 0 ? m->timer_us :
	    PROXY_TIMEOUT * 1000000LL);
	vspc__handoff__proxy__free_unpacked(m, NULL);
	return (0);
}

const struct handoff_module proxy_handoff_module = {
	.name = "proxy",
	.rec = HANDOFF_REC_PROXY,
	.pause = proxy_handoff_pause,
	.save = proxy_handoff_save,
	.restore = proxy_handoff_restore
};
