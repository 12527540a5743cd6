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
 * One peer link (struct peer_link), from connect or accept to close: the
 * handshake (Hello, then HelloAuth answering the other's challenge with
 * an HMAC on the cluster secret), pings, reading and writing frames, and
 * the one-link-per-pair rule when a link becomes READY.  With [cluster]
 * tls_cert the bytes go through mutual TLS (peer_security) first.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "peer-int.h"

static void	peer_link_write_cb(evutil_socket_t, short, void *);
static void	peer_link_read_cb(evutil_socket_t, short, void *);
static void	peer_link_timer_cb(evutil_socket_t, short, void *);

/* Close at the end of the turn: we may be inside a caller's call. */
void
peer_link_doom(struct peer_link *l, const char *reason)
{
	if (l->flags & PEER_LINK_DOOMED)
		return;
	l->flags |= PEER_LINK_DOOMED;
	l->doom_reason = xstrdup(reason);
	peer_reap_later();
}

/*
 * Close a link now (never from inside a caller of peer_send).  A kept
 * READY link takes its peer down with it: cluster_peer_down() is called
 * here, once, and the peer is freed by the reaper.
 */
void
peer_link_close(struct peer_link *l, int error, const char *fmt, ...)
{
	struct peer_want	*w;
	struct peer		*p;
	va_list			 ap;

	if (l->state == PEER_LINK_DEAD)
		return;
	va_start(ap, fmt);
	vsnprintf(peer_last_reason, sizeof peer_last_reason, fmt, ap);
	va_end(ap);
	if (error)
		log_warnx("peer %s: %s", peer_link_name(l), peer_last_reason);
	else
		log_info("peer %s: %s", peer_link_name(l), peer_last_reason);
	if (l->state != PEER_LINK_READY)
		peer_handshake_failures++;
	l->state = PEER_LINK_DEAD;

	if (l->ev_read != NULL)
		event_del(l->ev_read);
	if (l->ev_write != NULL)
		event_del(l->ev_write);
	event_del(l->ev_timer);
	close(l->fd);
	l->fd = -1;
	TAILQ_REMOVE(&peer_links, l, entry);
	TAILQ_INSERT_TAIL(&peer_dead_links, l, entry);
	peer_nlinks--;
	peer_reap_later();

	if ((p = l->peer) != NULL) {
		l->peer = NULL;
		p->link = NULL;
		TAILQ_REMOVE(&peer_live, p, entry);
		peer_npeers--;
		log_info("peer %s: link down", p->node);
		cluster_peer_down(p);
		TAILQ_INSERT_TAIL(&peer_dead, p, entry);
		/* An inbound link went: dial the node again if we want it. */
		TAILQ_FOREACH(w, &peer_wants, entry) {
			if (w->link == NULL && strcmp(w->node, p->node) == 0)
				peer_want_schedule(w);
		}
	}
	if ((w = l->want) != NULL) {
		l->want = NULL;
		w->link = NULL;
		peer_want_schedule(w);
	}
}

/* Add the timer for the handshake (one shot) or for pings (repeating). */
void
peer_link_arm_timer(struct peer_link *l, int ready)
{
	struct timeval	tv;
	u_int		ms;

	if (l->ev_timer != NULL)
		event_free(l->ev_timer);
	if (ready) {
		ms = l->self->ping_ms;
		l->ev_timer = event_new(server_base, -1, EV_PERSIST,
		    peer_link_timer_cb, l);
	} else {
		ms = l->self->handshake_ms;
		l->ev_timer = evtimer_new(server_base, peer_link_timer_cb, l);
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(l->ev_timer, &tv);
}

/* A link object for fd, its events made but not added. */
struct peer_link *
peer_link_alloc(int fd, int outbound, const char *node, struct peer_self *s,
    const char *addr)
{
	struct peer_link	*l;

	l = xcalloc(1, sizeof *l);
	l->id = ++peer_next_id;
	l->fd = fd;
	l->state = outbound ? PEER_LINK_CONNECTING : PEER_LINK_HELLO;
	if (outbound)
		l->flags |= PEER_LINK_OUTBOUND;
	l->self = s;
	s->references++;
	if (node != NULL)
		l->node = xstrdup(node);
	snprintf(l->addr, sizeof l->addr, "%s", addr);
	l->in = evbuffer_new();
	l->out = evbuffer_new();
	if (l->in == NULL || l->out == NULL)
		fatalx("%s: evbuffer_new failed", __func__);
	l->ev_read = event_new(server_base, fd, EV_READ|EV_PERSIST,
	    peer_link_read_cb, l);
	l->ev_write = event_new(server_base, fd, EV_WRITE|EV_PERSIST,
	    peer_link_write_cb, l);
	l->created = time(NULL);
	l->last_rx = server_monotime_us();
	return (l);
}

/* A link on a connected socket: challenge drawn, handshake timer set. */
struct peer_link *
peer_link_new(int fd, int outbound, const char *node, struct peer_self *s,
    const char *addr)
{
	struct peer_link	*l;
	int			 one = 1;

	l = peer_link_alloc(fd, outbound, node, s, addr);
	/* Small control messages must not wait for Nagle. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (RAND_bytes(l->challenge, sizeof l->challenge) != 1)
		fatalx("%s: RAND_bytes failed", __func__);
	peer_link_arm_timer(l, 0);
	TAILQ_INSERT_TAIL(&peer_links, l, entry);
	peer_nlinks++;
	return (l);
}

/* TCP is up: start reading and say Hello. */
void
peer_link_start(struct peer_link *l)
{
	Vspc__Envelope	env = VSPC__ENVELOPE__INIT;
	Vspc__Hello	hello = VSPC__HELLO__INIT;

	l->state = PEER_LINK_HELLO;
	event_add(l->ev_read, NULL);
	hello.node_id = l->self->node_id;
	hello.cluster = l->self->cluster;
	hello.protocol = PEER_PROTOCOL;
	hello.version = (char *)VSPCD_VERSION;
	hello.challenge.data = l->challenge;
	hello.challenge.len = sizeof l->challenge;
	hello.peer_address = l->self->advertise;
	env.msg_case = VSPC__ENVELOPE__MSG_HELLO;
	env.hello = &hello;
	peer_link_send(l, &env);
}

/* Write what the socket takes; wait for EV_WRITE for the rest. */
int
peer_link_flush(struct peer_link *l)
{
	int	n;

	while (evbuffer_get_length(l->out) != 0) {
		n = evbuffer_write(l->out, l->fd);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return (-1);
		}
		l->bytes_out += n;
	}
	if (evbuffer_get_length(l->out) != 0) {
		if (!(l->flags & PEER_LINK_WRITE_WAIT)) {
			l->flags |= PEER_LINK_WRITE_WAIT;
			event_add(l->ev_write, NULL);
		}
	} else if (l->flags & PEER_LINK_WRITE_WAIT) {
		l->flags &= ~PEER_LINK_WRITE_WAIT;
		event_del(l->ev_write);
	}
	return (0);
}

/*
 * Queue one envelope and write eagerly.  Errors close the link at the
 * end of the turn.  Return 0, or -1 if the link is going away.
 */
int
peer_link_send(struct peer_link *l, const Vspc__Envelope *env)
{
	char	reason[128];

	if (l->state == PEER_LINK_DEAD || (l->flags & PEER_LINK_DOOMED))
		return (-1);
	peer_frame_add(l->out, env);
	l->frames_out++;
	if (evbuffer_get_length(l->out) > PEER_OUTPUT_MAX) {
		snprintf(reason, sizeof reason, "%zu bytes queued (over %u); "
		    "the node does not read", evbuffer_get_length(l->out),
		    PEER_OUTPUT_MAX);
		peer_link_doom(l, reason);
		return (-1);
	}
	if (l->state == PEER_LINK_CONNECTING ||
	    (l->flags & PEER_LINK_WRITE_WAIT))
		return (0);
	if (peer_link_flush(l) == -1) {
		snprintf(reason, sizeof reason, "write: %s", strerror(errno));
		peer_link_doom(l, reason);
		return (-1);
	}
	return (0);
}

static void
peer_link_write_cb(evutil_socket_t fd, short events, void *arg)
{
	struct peer_link	*l = arg;
	socklen_t		 len;
	int			 e;

	if (l->state == PEER_LINK_CONNECTING) {
		len = sizeof e;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == -1)
			e = errno;
		if (e != 0) {
			peer_link_close(l, 1, "connect to %s: %s", l->addr,
			    strerror(e));
			return;
		}
		event_del(l->ev_write);
		log_debug("peer %s: connected to %s", peer_link_name(l),
		    l->addr);
		if (peer_tls_on()) {
			peer_link_tls(l);
			return;
		}
		peer_link_start(l);
		return;
	}
	if (peer_link_flush(l) == -1)
		peer_link_close(l, 1, "write: %s", strerror(errno));
}

/* Check the other's Hello and answer its challenge. */
static void
peer_link_hello(struct peer_link *l, const Vspc__Hello *h)
{
	Vspc__Envelope	env = VSPC__ENVELOPE__INIT;
	Vspc__HelloAuth	auth = VSPC__HELLO_AUTH__INIT;
	u_char		mac[PEER_MAC_LEN];

	if (!peer_id_valid(h->node_id)) {
		peer_link_close(l, 1, "Hello with a bad node ID");
		return;
	}
	if (strcmp(h->cluster, l->self->cluster) != 0) {
		peer_link_close(l, 1, "node %s is in cluster \"%.64s\", not "
		    "\"%s\"", h->node_id, h->cluster, l->self->cluster);
		return;
	}
	if (h->protocol < PEER_PROTOCOL_MIN || h->protocol > PEER_PROTOCOL) {
		peer_link_close(l, 1, "node %s (vspcd %.32s) speaks peer "
		    "protocol %u; this node (vspcd %s) speaks %u to %u: "
		    "upgrade the older nodes first", h->node_id, h->version,
		    h->protocol, VSPCD_VERSION, PEER_PROTOCOL_MIN,
		    PEER_PROTOCOL);
		return;
	}
	if (strcmp(h->node_id, l->self->node_id) == 0) {
		peer_link_close(l, 1, "the node at %s is ourselves (%s)",
		    l->addr, h->node_id);
		return;
	}
	if ((l->flags & PEER_LINK_OUTBOUND) && strcmp(h->node_id,
	    l->node) != 0) {
		peer_link_close(l, 1, "node %s answered at %s, where %s "
		    "was expected", h->node_id, l->addr, l->node);
		return;
	}
	if (l->cn != NULL && strcmp(l->cn, h->node_id) != 0) {
		peer_link_close(l, 1, "certificate of %s names node %.64s but "
		    "its Hello says %s", l->addr, l->cn, h->node_id);
		return;
	}
	if (h->challenge.len != PEER_CHALLENGE_LEN) {
		peer_link_close(l, 1, "Hello with a challenge of %zu bytes",
		    h->challenge.len);
		return;
	}
	if (CRYPTO_memcmp(h->challenge.data, l->challenge,
	    PEER_CHALLENGE_LEN) == 0) {
		peer_link_close(l, 1, "Hello reflects our own challenge");
		return;
	}
	free(l->node);
	l->node = xstrdup(h->node_id);
	free(l->advertised);
	l->advertised = xstrndup(h->peer_address, 128);
	log_debug("peer %s: Hello from %s, version %.32s, protocol %u, "
	    "listening on %s", l->node, l->addr, h->version, h->protocol,
	    l->advertised);

	peer_mac(l->self, h->challenge.data, l->self->node_id, h->node_id,
	    mac);
	auth.response.data = mac;
	auth.response.len = sizeof mac;
	env.msg_case = VSPC__ENVELOPE__MSG_AUTH;
	env.auth = &auth;
	l->flags |= PEER_LINK_HELLO_OK;
	peer_link_send(l, &env);
}

/* Check the other's answer to our challenge. */
static void
peer_link_auth(struct peer_link *l, const Vspc__HelloAuth *a)
{
	u_char	mac[PEER_MAC_LEN];

	peer_mac(l->self, l->challenge, l->node, l->self->node_id, mac);
	if (a->response.len != sizeof mac ||
	    CRYPTO_memcmp(a->response.data, mac, sizeof mac) != 0) {
		peer_link_close(l, 1, "authentication failed (wrong cluster "
		    "secret?)");
		return;
	}
	l->flags |= PEER_LINK_AUTH_OK;
}

/* The node that opened a link. */
static const char *
peer_link_dialler(const struct peer_link *l)
{
	return ((l->flags & PEER_LINK_OUTBOUND) ? l->self->node_id : l->node);
}

/*
 * Handshake done.  Give the link to its peer (a new one, announced with
 * cluster_peer_up) or, if the node already has a link, keep the one
 * dialled by the lower node ID and close the other.
 */
static void
peer_link_ready(struct peer_link *l)
{
	struct peer		*p;
	struct peer_link	*old, *loser;
	const char		*d1, *d2;
	int			 c;

	l->state = PEER_LINK_READY;
	l->last_rx = server_monotime_us();
	peer_link_arm_timer(l, 1);
	if (l->want != NULL)
		l->want->backoff_ms = 0;

	TAILQ_FOREACH(p, &peer_live, entry) {
		if (strcmp(p->node, l->node) == 0 &&
		    strcmp(p->link->self->node_id, l->self->node_id) == 0)
			break;
	}
	if (p == NULL) {
		p = xcalloc(1, sizeof *p);
		p->node = xstrdup(l->node);
		p->link = l;
		p->up_since = time(NULL);
		l->peer = p;
		TAILQ_INSERT_TAIL(&peer_live, p, entry);
		peer_npeers++;
		log_info("peer %s: link up (%s, %s)", p->node,
		    (l->flags & PEER_LINK_OUTBOUND) ? "outbound" : "inbound",
		    l->addr);
		cluster_peer_up(p);
		return;
	}

	/*
	 * Two links to one node.  Both ends keep the one whose dialler has
	 * the lower ID; if one node dialled both, the newer (the old one is
	 * the remains of a connection that node already gave up).
	 */
	old = p->link;
	d1 = peer_link_dialler(old);
	d2 = peer_link_dialler(l);
	c = strcmp(d1, d2);
	loser = c < 0 ? l : old;
	if (loser == old) {
		old->peer = NULL;
		p->link = l;
		l->peer = p;
		p->link_changes++;
	}
	peer_link_close(loser, 0, "second link to the node; keeping the "
	    "one dialled by %s", c < 0 ? d1 : d2);
}

/* One envelope from the other node. */
static void
peer_link_dispatch(struct peer_link *l, Vspc__Envelope *env)
{
	Vspc__Envelope	reply = VSPC__ENVELOPE__INIT;
	Vspc__Pong	pong = VSPC__PONG__INIT;
	uint64_t	now;

	if (l->state == PEER_LINK_HELLO) {
		switch (env->msg_case) {
		case VSPC__ENVELOPE__MSG_HELLO:
			if (l->flags & PEER_LINK_HELLO_OK) {
				peer_link_close(l, 1, "second Hello");
				return;
			}
			peer_link_hello(l, env->hello);
			break;
		case VSPC__ENVELOPE__MSG_AUTH:
			if (!(l->flags & PEER_LINK_HELLO_OK)) {
				peer_link_close(l, 1, "HelloAuth before "
				    "Hello");
				return;
			}
			peer_link_auth(l, env->auth);
			break;
		default:
			peer_link_close(l, 1, "%s before the handshake "
			    "completed", peer_msg_name(env));
			return;
		}
		if (l->state == PEER_LINK_HELLO &&
		    (l->flags & PEER_LINK_HELLO_OK) &&
		    (l->flags & PEER_LINK_AUTH_OK))
			peer_link_ready(l);
		return;
	}

	switch (env->msg_case) {
	case VSPC__ENVELOPE__MSG_HELLO:
	case VSPC__ENVELOPE__MSG_AUTH:
		peer_link_close(l, 1, "%s after the handshake",
		    peer_msg_name(env));
		break;
	case VSPC__ENVELOPE__MSG_PING:
		pong.nonce = env->ping->nonce;
		reply.msg_case = VSPC__ENVELOPE__MSG_PONG;
		reply.pong = &pong;
		peer_link_send(l, &reply);
		break;
	case VSPC__ENVELOPE__MSG_PONG:
		if (env->pong->nonce == l->ping_nonce && l->ping_sent != 0) {
			now = server_monotime_us();
			l->rtt_us = now - l->ping_sent;
			l->ping_sent = 0;
		}
		break;
	case VSPC__ENVELOPE__MSG__NOT_SET:
		/* Empty, or a message newer than us: skip it. */
		l->ignored_in++;
		log_debug("peer %s: ignoring an envelope with no known "
		    "message", peer_link_name(l));
		break;
	default:
		cluster_peer_message(l->peer, env);
		break;
	}
}

static void
peer_link_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct peer_link	*l = arg;
	int			 n;

	n = evbuffer_read(l->in, fd, PEER_READ_SIZE);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		peer_link_close(l, 1, "read: %s", strerror(errno));
		return;
	}
	if (n == 0) {
		peer_link_close(l, l->state != PEER_LINK_READY,
		    "connection closed by the other end");
		return;
	}
	l->bytes_in += n;
	l->last_rx = server_monotime_us();
	peer_link_input(l);
}

/* Dispatch every whole frame read so far. */
void
peer_link_input(struct peer_link *l)
{
	Vspc__Envelope		*env;
	const char		*err;
	int			 rv;

	while (l->state != PEER_LINK_DEAD) {
		rv = peer_frame_next(l->in, l->self->frame_max, &env, &err);
		if (rv == 0)
			break;
		if (rv == -1) {
			peer_link_close(l, 1, "%s", err);
			break;
		}
		l->frames_in++;
		peer_link_dispatch(l, env);
		vspc__envelope__free_unpacked(env, NULL);
	}
}

static void
peer_link_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct peer_link	*l = arg;
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__Ping		 ping = VSPC__PING__INIT;
	uint64_t		 now, idle;

	if (l->state != PEER_LINK_READY) {
		peer_link_close(l, 1, "handshake not done after %u ms",
		    l->self->handshake_ms);
		return;
	}
	now = server_monotime_us();
	idle = now - l->last_rx;
	if (idle >= (uint64_t)PEER_PING_MISSED * l->self->ping_ms * 1000) {
		/*
		 * After a stall of our own loop the timer can run before the
		 * read event: look at the socket before blaming the node.
		 */
		peer_link_read_cb(l->fd, EV_READ, l);
		if (l->state != PEER_LINK_READY)
			return;
		if (l->last_rx > now) {
			now = l->last_rx;
			idle = 0;
		}
	}
	if (idle >= (uint64_t)PEER_PING_MISSED * l->self->ping_ms * 1000) {
		peer_link_close(l, 1, "no traffic for %llu.%01llu s",
		    (unsigned long long)(idle / 1000000),
		    (unsigned long long)(idle / 100000 % 10));
		return;
	}
	ping.nonce = ++l->ping_nonce;
	l->ping_sent = now;
	env.msg_case = VSPC__ENVELOPE__MSG_PING;
	env.ping = &ping;
	peer_link_send(l, &env);
}

const struct peer_security	*peer_security;

/* Do links run over mutual TLS ([cluster] tls_cert)? */
int
peer_tls_on(void)
{
	return (peer_security != NULL &&
	    peer_security->tls_enabled(TLS_PEER));
}

/* The handshake timeout in seconds, for TLS (at least 1). */
u_int
peer_handshake_secs(const struct peer_self *s)
{
	u_int	ms = peer_test_handshake_ms != 0 ? peer_test_handshake_ms :
		    s->handshake_ms;

	return (ms < 1000 ? 1 : ms / 1000);
}

/*
 * An outbound link is connected: hand its socket to the TLS process
 * (mutual TLS against [cluster] tls_ca).  The link waits without a
 * descriptor, under its handshake timer; the plain end comes back to
 * peer_tls_done with the link's ID in the kind's upper bits.
 */
void
peer_link_tls(struct peer_link *l)
{
	struct sockaddr_storage	ss;
	socklen_t		sslen = sizeof ss;

	if (getpeername(l->fd, (struct sockaddr *)&ss, &sslen) == -1) {
		peer_link_close(l, 1, "getpeername: %s", strerror(errno));
		return;
	}
	event_free(l->ev_read);
	event_free(l->ev_write);
	l->ev_read = l->ev_write = NULL;
	l->flags |= PEER_LINK_TLS_WAIT;
	peer_security->tls_connect(l->fd, (struct sockaddr *)&ss, sslen,
	    LISTEN_PEER | (l->id << 8), l->node != NULL ? l->node : "",
	    peer_handshake_secs(l->self), peer_tls_done);
	l->fd = -1;
}

/*
 * A peer-link TLS handshake succeeded (server-listen.c passes it on): cn
 * is the verified certificate's common name, which the Hello must match.
 */
void
peer_tls_done(int fd, const struct sockaddr *sa, u_int kind,
    const char *cn)
{
	struct peer_link	*l;
	char			 addr[64];
	u_int			 id = kind >> 8;

	if (peer_me == NULL) {
		close(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	if (id == 0) {
		l = peer_link_new(fd, 0, NULL, peer_me, addr_fmt(sa, addr,
		    sizeof addr));
		l->cn = xstrdup(cn);
		log_debug("peer %s: TLS connection, certificate %s", l->addr,
		    cn);
		peer_link_start(l);
		return;
	}
	TAILQ_FOREACH(l, &peer_links, entry) {
		if (l->id == id && (l->flags & PEER_LINK_TLS_WAIT))
			break;
	}
	if (l == NULL || l->state == PEER_LINK_DEAD) {
		close(fd);	/* Gone meanwhile (timeout, unwanted). */
		return;
	}
	l->flags &= ~PEER_LINK_TLS_WAIT;
	l->fd = fd;
	l->ev_read = event_new(server_base, fd, EV_READ|EV_PERSIST,
	    peer_link_read_cb, l);
	l->ev_write = event_new(server_base, fd, EV_WRITE|EV_PERSIST,
	    peer_link_write_cb, l);
	free(l->cn);
	l->cn = xstrdup(cn);
	peer_link_start(l);
}
