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
 * The peer link: TCP connections between the nodes of a cluster, framed
 * as proto/PROTOCOL describes (a 4-byte big-endian length and a packed
 * Envelope), authenticated by an HMAC challenge on the cluster secret.
 *
 * Two objects:
 *   struct peer_link - one TCP connection, from connect or accept to
 *                      close: buffers, events, handshake state, counters;
 *   struct peer      - a remote node as cluster.c sees it: exists while
 *                      one READY link to that node exists.
 * Keeping them apart lets the one-link-per-pair rule swap the link under
 * a peer without cluster.c noticing: when two links to the same node are
 * READY, the one dialled by the lower node ID is kept (both ends apply
 * the same rule) and cluster_peer_down() is not called for the node.
 *
 * Identity (node ID, cluster, secret, limits) is a refcounted struct
 * peer_self that every link holds, so that a reload does not change
 * links already up, and so that a test can run two nodes in one process.
 *
 * Invariants: cluster_peer_up() is called once per struct peer, and
 * cluster_peer_down() once, before it is freed.  Nothing is freed inside
 * its own callback: closed links and peers go on dead lists that the
 * reaper event empties at the end of the loop turn.  A close that a
 * caller of peer_send() would cause (output over the limit, a write
 * error) is deferred to the reaper too, so that cluster.c never sees
 * cluster_peer_down() from inside its own call.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "proto/handoff_cluster.pb-c.h"

#define PEER_PORT		13373
#define PEER_PROTOCOL_MIN	1	/* Oldest protocol we still speak. */
#define PEER_CHALLENGE_LEN	32
#define PEER_MAC_LEN		32	/* HMAC-SHA256. */
#define PEER_SECRET_MIN		16
#define PEER_SECRET_MAX		4096
#define PEER_ID_MAX		64
#define PEER_OUTPUT_MAX		(64 * 1024 * 1024)
#define PEER_READ_SIZE		65536
#define PEER_HANDSHAKE_MS	10000
#define PEER_PING_DEFAULT	5	/* Seconds. */
#define PEER_PING_MISSED	3	/* Silent intervals before closing. */
#define PEER_BACKOFF_MIN_MS	100
#define PEER_BACKOFF_MAX_MS	5000

/* Who this node is, as one link presents it. */
struct peer_self {
	u_int		 references;
	char		*node_id;
	char		*cluster;
	u_char		*secret;
	size_t		 secretlen;
	char		*advertise;
	size_t		 frame_max;
	u_int		 ping_ms;
	u_int		 handshake_ms;
};

enum peer_link_state {
	PEER_LINK_CONNECTING,
	PEER_LINK_HELLO,
	PEER_LINK_READY,
	PEER_LINK_DEAD,
	PEER_LINK_STATE_MAX
};

struct peer_want;

struct peer_link {
	u_int			 id;
	int			 fd;
	enum peer_link_state	 state;
	int			 flags;
#define PEER_LINK_OUTBOUND	0x1
#define PEER_LINK_HELLO_OK	0x2	/* Their Hello answered. */
#define PEER_LINK_AUTH_OK	0x4	/* Their HelloAuth verified. */
#define PEER_LINK_WRITE_WAIT	0x8
#define PEER_LINK_DOOMED	0x10	/* The reaper closes it. */
#define PEER_LINK_TLS_WAIT	0x20	/* In the TLS process's handshake. */

	struct peer_self	*self;
	struct peer_want	*want;		/* Outbound: its want. */
	struct peer		*peer;		/* Once READY, kept. */
	char			*node;		/* Then Hello's. */
	char			*advertised;	/* Hello's address. */
	char			*doom_reason;
	char			*cn;		/* Verified certificate's CN. */
	char			 addr[64];
	u_char			 challenge[PEER_CHALLENGE_LEN];

	struct evbuffer		*in;
	struct evbuffer		*out;
	struct event		*ev_read;
	struct event		*ev_write;
	struct event		*ev_timer;	/* Handshake, ping. */

	uint64_t		 last_rx;	/* Monotonic microseconds. */
	uint64_t		 ping_nonce;
	uint64_t		 ping_sent;
	uint64_t		 rtt_us;	/* Of the last answered ping. */
	time_t			 created;
	uint64_t		 frames_in;
	uint64_t		 frames_out;
	uint64_t		 bytes_in;
	uint64_t		 bytes_out;
	uint64_t		 ignored_in;	/* Unknown, skipped. */

	TAILQ_ENTRY(peer_link)	 entry;
};
TAILQ_HEAD(peer_links, peer_link);

struct peer {
	char			*node;
	struct peer_link	*link;
	void			*data;
	time_t			 up_since;
	u_int			 link_changes;	/* Swapped links. */
	TAILQ_ENTRY(peer)	 entry;		/* Live or dead list. */
};
TAILQ_HEAD(peers, peer);

/* A node we keep an outbound link to. */
struct peer_want {
	char			*node;
	char			*addr;
	struct peer_link	*link;		/* Connecting or up. */
	struct event		*retry;
	u_int			 backoff_ms;
	uint64_t		 connects;
	TAILQ_ENTRY(peer_want)	 entry;
};
TAILQ_HEAD(peer_wants, peer_want);

struct peer_listener {
	char			*text;
	struct peer_self	*self;
	struct evconnlistener	*lev;
	struct event		*retry;
	TAILQ_ENTRY(peer_listener) entry;
};
TAILQ_HEAD(peer_listeners, peer_listener);

static struct peer_self		*peer_me;
static struct peer_links	 peer_links =
				     TAILQ_HEAD_INITIALIZER(peer_links);
static struct peer_links	 peer_dead_links =
				     TAILQ_HEAD_INITIALIZER(peer_dead_links);
static struct peers		 peers = TAILQ_HEAD_INITIALIZER(peers);
static struct peers		 peer_dead =
				     TAILQ_HEAD_INITIALIZER(peer_dead);
static struct peer_wants	 peer_wants =
				     TAILQ_HEAD_INITIALIZER(peer_wants);
static struct peer_listeners	 peer_listeners =
				     TAILQ_HEAD_INITIALIZER(peer_listeners);
static struct event		*peer_reaper;
static u_int			 npeers;
static u_int			 nlinks;
static u_int			 peer_next_id;
static u_int			 peer_test_ping_ms;
static u_int			 peer_test_handshake_ms;
static uint64_t			 peer_handshake_failures;
static char			 peer_last_reason[256];

static void	peer_link_read_cb(evutil_socket_t, short, void *);
static void	peer_link_write_cb(evutil_socket_t, short, void *);
static void	peer_link_timer_cb(evutil_socket_t, short, void *);
static void	peer_link_close(struct peer_link *, int, const char *, ...)
		    __attribute__((__format__ (printf, 3, 4)));
static int	peer_link_send(struct peer_link *,
		    const Vspc__Envelope *);
static void	peer_want_schedule(struct peer_want *);
static void	peer_reap_later(void);
static void	peer_link_input(struct peer_link *);
static void	peer_link_tls(struct peer_link *);
static int	peer_tls_on(void);
static u_int	peer_handshake_secs(const struct peer_self *);
static void	peer_accept_cb(struct evconnlistener *, evutil_socket_t,
		    struct sockaddr *, int, void *);
static void	peer_accept_error_cb(struct evconnlistener *, void *);

static void
peer_self_unref(struct peer_self *s)
{
	if (s == NULL || --s->references != 0)
		return;
	free(s->node_id);
	free(s->cluster);
	if (s->secret != NULL) {
		explicit_bzero(s->secret, s->secretlen);
		free(s->secret);
	}
	free(s->advertise);
	free(s);
}

static const char *
peer_link_name(const struct peer_link *l)
{
	return (l->node != NULL && *l->node != '\0' ? l->node : l->addr);
}

/* The name of the message an envelope holds, for logs. */
static const char *
peer_msg_name(const Vspc__Envelope *env)
{
	const ProtobufCFieldDescriptor	*f;

	if (env->msg_case == VSPC__ENVELOPE__MSG__NOT_SET)
		return ("empty envelope");
	f = protobuf_c_message_descriptor_get_field(&vspc__envelope__descriptor,
	    env->msg_case);
	return (f != NULL ? f->name : "unknown message");
}

/* A node ID as we accept it from a Hello: what [node] id allows. */
static int
peer_id_valid(const char *s)
{
	size_t	i, len = strlen(s);

	if (len == 0 || len > PEER_ID_MAX)
		return (0);
	for (i = 0; i < len; i++) {
		if (!isalnum((u_char)s[i]) && s[i] != '_' && s[i] != '.' &&
		    s[i] != '-')
			return (0);
	}
	return (1);
}

/*
 * Take the next frame off in.  Return 1 with *out set (free it with
 * vspc__envelope__free_unpacked), 0 if more bytes are needed, or -1 with
 * *err set if the stream is broken (frame over max, or undecodable; *err
 * may point to static storage, valid until the next call).  A
 * zero-length frame is an empty Envelope, which is valid.  max 0 means
 * PEER_FRAME_MAX_DEFAULT.
 */
int
peer_frame_next(struct evbuffer *in, size_t max, Vspc__Envelope **out,
    const char **err)
{
	static char	 buf[128];
	u_char		 hdr[4], *p;
	uint32_t	 len;
	Vspc__Envelope	*env;

	*out = NULL;
	*err = NULL;
	if (max == 0)
		max = PEER_FRAME_MAX_DEFAULT;
	if (evbuffer_get_length(in) < sizeof hdr)
		return (0);
	evbuffer_copyout(in, hdr, sizeof hdr);
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
	    (uint32_t)hdr[2] << 8 | hdr[3];
	if (len > max) {
		snprintf(buf, sizeof buf, "frame of %u bytes exceeds the "
		    "limit of %zu", len, max);
		*err = buf;
		return (-1);
	}
	if (evbuffer_get_length(in) - sizeof hdr < len)
		return (0);
	p = evbuffer_pullup(in, sizeof hdr + len);
	env = vspc__envelope__unpack(NULL, len, p + sizeof hdr);
	evbuffer_drain(in, sizeof hdr + len);
	if (env == NULL) {
		*err = "undecodable frame";
		return (-1);
	}
	*out = env;
	return (1);
}

/*
 * Append one frame holding env to out, packed in place (no copy).
 * Return the frame's size.
 */
size_t
peer_frame_add(struct evbuffer *out, const Vspc__Envelope *env)
{
	struct evbuffer_iovec	 vec;
	size_t			 len;
	u_char			*p;

	len = vspc__envelope__get_packed_size(env);
	if (len > UINT32_MAX)
		fatalx("%s: envelope of %zu bytes", __func__, len);
	if (evbuffer_reserve_space(out, 4 + len, &vec, 1) != 1 ||
	    vec.iov_len < 4 + len)
		fatalx("%s: evbuffer_reserve_space failed", __func__);
	p = vec.iov_base;
	p[0] = len >> 24;
	p[1] = len >> 16;
	p[2] = len >> 8;
	p[3] = len;
	if (vspc__envelope__pack(env, p + 4) != len)
		fatalx("%s: packed size changed", __func__);
	vec.iov_len = 4 + len;
	if (evbuffer_commit_space(out, &vec, 1) != 0)
		fatalx("%s: evbuffer_commit_space failed", __func__);
	return (4 + len);
}

/*
 * The HelloAuth response: HMAC-SHA256 over the secret of challenge ||
 * answering node ID || NUL || challenging node ID || NUL.  The NULs make
 * the concatenation unambiguous ("a" + "aa" is not "aa" + "a").
 */
static void
peer_mac(const struct peer_self *s, const u_char *challenge,
    const char *answering, const char *challenging, u_char *mac)
{
	u_char	*buf;
	size_t	 alen, clen, len;
	u_int	 maclen = PEER_MAC_LEN;

	alen = strlen(answering) + 1;
	clen = strlen(challenging) + 1;
	len = PEER_CHALLENGE_LEN + alen + clen;
	buf = xmalloc(len);
	memcpy(buf, challenge, PEER_CHALLENGE_LEN);
	memcpy(buf + PEER_CHALLENGE_LEN, answering, alen);
	memcpy(buf + PEER_CHALLENGE_LEN + alen, challenging, clen);
	if (HMAC(EVP_sha256(), s->secret, (int)s->secretlen, buf, len, mac,
	    &maclen) == NULL || maclen != PEER_MAC_LEN)
		fatalx("%s: HMAC failed", __func__);
	free(buf);
}

static void
peer_reap_cb(evutil_socket_t fd, short events, void *arg)
{
	struct peer_link	*l, *l1;
	struct peer		*p;

	/* First the closes that had to wait for the end of the turn. */
	TAILQ_FOREACH_SAFE(l, &peer_links, entry, l1) {
		if (l->flags & PEER_LINK_DOOMED)
			peer_link_close(l, 1, "%s", l->doom_reason);
	}
	while ((l = TAILQ_FIRST(&peer_dead_links)) != NULL) {
		TAILQ_REMOVE(&peer_dead_links, l, entry);
		if (l->ev_read != NULL)
			event_free(l->ev_read);
		if (l->ev_write != NULL)
			event_free(l->ev_write);
		if (l->ev_timer != NULL)
			event_free(l->ev_timer);
		evbuffer_free(l->in);
		evbuffer_free(l->out);
		peer_self_unref(l->self);
		free(l->node);
		free(l->advertised);
		free(l->cn);
		free(l->doom_reason);
		free(l);
	}
	while ((p = TAILQ_FIRST(&peer_dead)) != NULL) {
		TAILQ_REMOVE(&peer_dead, p, entry);
		free(p->node);
		free(p);
	}
}

static void
peer_reap_later(void)
{
	if (peer_reaper == NULL)
		peer_reaper = event_new(server_base, -1, 0, peer_reap_cb, NULL);
	if (!event_pending(peer_reaper, EV_TIMEOUT, NULL))
		event_active(peer_reaper, EV_TIMEOUT, 0);
}

/* Close at the end of the turn: we may be inside a caller's call. */
static void
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
static void
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
	nlinks--;
	peer_reap_later();

	if ((p = l->peer) != NULL) {
		l->peer = NULL;
		p->link = NULL;
		TAILQ_REMOVE(&peers, p, entry);
		npeers--;
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
static void
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
static struct peer_link *
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

static struct peer_link *
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
	nlinks++;
	return (l);
}

/* TCP is up: start reading and say Hello. */
static void
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
static int
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
static int
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

	TAILQ_FOREACH(p, &peers, entry) {
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
		TAILQ_INSERT_TAIL(&peers, p, entry);
		npeers++;
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
static void
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

static void
peer_want_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	struct peer_want	*w = arg;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	struct peer_link	*l;
	char			*err;
	int			 s;

	if (w->link != NULL || peer_find(w->node) != NULL)
		return;	/* It dialled us; we dial when that link goes. */
	if (peer_me == NULL)
		return;
	if (addr_parse_listen(w->addr, PEER_PORT, &ss, &sslen, &err) == -1) {
		log_warnx("peer %s: %s", w->node, err);
		free(err);
		peer_want_schedule(w);
		return;
	}
	w->connects++;
	if ((s = socket(ss.ss_family, SOCK_STREAM, 0)) == -1) {
		log_warn("peer %s: socket", w->node);
		peer_want_schedule(w);
		return;
	}
	evutil_make_socket_nonblocking(s);
	evutil_make_socket_closeonexec(s);
	l = peer_link_new(s, 1, w->node, peer_me, w->addr);
	l->want = w;
	w->link = l;
	if (connect(s, (struct sockaddr *)&ss, sslen) == 0) {
		if (peer_tls_on())
			peer_link_tls(l);
		else
			peer_link_start(l);
		return;
	}
	if (errno != EINPROGRESS) {
		peer_link_close(l, 1, "connect to %s: %s", w->addr,
		    strerror(errno));
		return;
	}
	event_add(l->ev_write, NULL);
}

/* Dial again after the backoff (100 ms doubling to 5 s). */
static void
peer_want_schedule(struct peer_want *w)
{
	struct timeval	tv;

	if (w->backoff_ms == 0)
		w->backoff_ms = PEER_BACKOFF_MIN_MS;
	tv.tv_sec = w->backoff_ms / 1000;
	tv.tv_usec = (w->backoff_ms % 1000) * 1000;
	evtimer_add(w->retry, &tv);
	w->backoff_ms *= 2;
	if (w->backoff_ms > PEER_BACKOFF_MAX_MS)
		w->backoff_ms = PEER_BACKOFF_MAX_MS;
}

/* Keep an outbound link to node at addr (ADDRESS:PORT). */
void
peer_want(const char *node, const char *addr)
{
	struct peer_want	*w;

	if (peer_me != NULL && strcmp(node, peer_me->node_id) == 0)
		return;
	TAILQ_FOREACH(w, &peer_wants, entry) {
		if (strcmp(w->node, node) == 0)
			break;
	}
	if (w != NULL) {
		if (strcmp(w->addr, addr) == 0)
			return;
		log_info("peer %s: address now %s (was %s)", node, addr,
		    w->addr);
		free(w->addr);
		w->addr = xstrdup(addr);
		w->backoff_ms = 0;
		/* A link still trying the old address starts again. */
		if (w->link != NULL && w->link->state != PEER_LINK_READY)
			peer_link_close(w->link, 0, "dialling the new "
			    "address");
		return;
	}
	w = xcalloc(1, sizeof *w);
	w->node = xstrdup(node);
	w->addr = xstrdup(addr);
	w->retry = evtimer_new(server_base, peer_want_retry_cb, w);
	TAILQ_INSERT_TAIL(&peer_wants, w, entry);
	event_active(w->retry, EV_TIMEOUT, 0);
}

static void
peer_want_free(struct peer_want *w)
{
	struct peer_link	*l;

	TAILQ_REMOVE(&peer_wants, w, entry);
	event_free(w->retry);
	if ((l = w->link) != NULL) {
		l->want = NULL;
		w->link = NULL;
		peer_link_close(l, 0, "no longer wanted");
	}
	free(w->node);
	free(w->addr);
	free(w);
}

/* Stop keeping a link to node; an outbound link to it is closed. */
void
peer_unwant(const char *node)
{
	struct peer_want	*w;

	TAILQ_FOREACH(w, &peer_wants, entry) {
		if (strcmp(w->node, node) == 0) {
			peer_want_free(w);
			return;
		}
	}
}

const struct peer_security	*peer_security;

/* Do links run over mutual TLS ([cluster] tls_cert)? */
static int
peer_tls_on(void)
{
	return (peer_security != NULL &&
	    peer_security->tls_enabled(TLS_PEER));
}

/* The handshake timeout in seconds, for TLS (at least 1). */
static u_int
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
static void
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
 * A peer-link TLS handshake succeeded (server.c passes it on): cn is the
 * verified certificate's common name, which the Hello must match.
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

/* Serve a connected socket as a link (tests, and handed-over sockets). */
void
peer_attach_fd(int fd, int outbound, const char *node)
{
	struct peer_link	*l;
	char			 addr[32];

	if (peer_me == NULL)
		fatalx("%s: peer_configure not called", __func__);
	evutil_make_socket_nonblocking(fd);
	snprintf(addr, sizeof addr, "fd %d", fd);
	l = peer_link_new(fd, outbound, node, peer_me, addr);
	peer_link_start(l);
}

/* Shorten the ping and handshake intervals (milliseconds, 0 = config). */
void
peer_set_test_timers(u_int ping_ms, u_int handshake_ms)
{
	peer_test_ping_ms = ping_ms;
	peer_test_handshake_ms = handshake_ms;
}

static void
peer_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct peer_listener	*pl = arg;
	struct peer_link	*l;
	char			 addr[64];

	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	addr_fmt(sa, addr, sizeof addr);
	if (peer_security != NULL &&
	    !peer_security->allowed(LISTEN_PEER, sa, pl->text)) {
		close(fd);
		return;
	}
	if (peer_tls_on()) {
		/* Mutual TLS first; the link starts with the plain end. */
		peer_security->tls_accept(fd, TLS_PEER, sa, (socklen_t)salen, LISTEN_PEER,
		    pl->text, peer_handshake_secs(pl->self), peer_tls_done);
		return;
	}
	l = peer_link_new(fd, 0, NULL, pl->self, addr);
	log_debug("peer %s: connection on %s", addr, pl->text);
	peer_link_start(l);
}

static void
peer_listener_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	struct peer_listener	*pl = arg;

	evconnlistener_enable(pl->lev);
}

static void
peer_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct peer_listener	*pl = arg;
	struct timeval		 tv = { 1, 0 };
	int			 e = EVUTIL_SOCKET_ERROR();

	log_warnx("peer listener %s: accept: %s; pausing for a second",
	    pl->text, strerror(e));
	/* Out of descriptors, most likely: don't try again for 1 s. */
	evconnlistener_disable(lev);
	if (pl->retry == NULL)
		pl->retry = evtimer_new(server_base, peer_listener_retry_cb,
		    pl);
	evtimer_add(pl->retry, &tv);
}

static void
peer_listener_free(struct peer_listener *pl)
{
	TAILQ_REMOVE(&peer_listeners, pl, entry);
	if (pl->lev != NULL)
		evconnlistener_free(pl->lev);
	if (pl->retry != NULL)
		event_free(pl->retry);
	peer_self_unref(pl->self);
	free(pl->text);
	free(pl);
}

/* Read the secret: at least 16 bytes, a trailing newline stripped. */
static int
peer_read_secret(const char *path, struct peer_self *s, char **err)
{
	u_char	buf[PEER_SECRET_MAX + 1];
	size_t	len = 0;
	ssize_t	n;
	int	fd;

	if (path == NULL || *path == '\0') {
		xasprintf(err, "[cluster] secret_file: not set (the cluster "
		    "needs a shared secret)");
		return (-1);
	}
	if ((fd = open(path, O_RDONLY|O_CLOEXEC)) == -1) {
		xasprintf(err, "[cluster] secret_file: %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	while (len < sizeof buf) {
		n = read(fd, buf + len, sizeof buf - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			xasprintf(err, "[cluster] secret_file: %s: %s", path,
			    strerror(errno));
			close(fd);
			explicit_bzero(buf, sizeof buf);
			return (-1);
		}
		if (n == 0)
			break;
		len += n;
	}
	close(fd);
	if (len > PEER_SECRET_MAX) {
		xasprintf(err, "[cluster] secret_file: %s: longer than %d "
		    "bytes", path, PEER_SECRET_MAX);
		explicit_bzero(buf, sizeof buf);
		return (-1);
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len < PEER_SECRET_MIN) {
		xasprintf(err, "[cluster] secret_file: %s: shorter than %d "
		    "bytes", path, PEER_SECRET_MIN);
		explicit_bzero(buf, sizeof buf);
		return (-1);
	}
	s->secret = xmalloc(len);
	memcpy(s->secret, buf, len);
	s->secretlen = len;
	explicit_bzero(buf, sizeof buf);
	return (0);
}

/* Work out the address we advertise: peer_advertise or the listener. */
static int
peer_advertise(struct config *conf, struct peer_self *s, char **err)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 sslen;
	char			*first, *perr, buf[64];
	const char		*list;

	if (conf->cluster_peer_advertise != NULL &&
	    *conf->cluster_peer_advertise != '\0') {
		if (addr_parse_listen(conf->cluster_peer_advertise, PEER_PORT,
		    &ss, &sslen, &perr) == -1) {
			xasprintf(err, "[cluster] peer_advertise: %s", perr);
			free(perr);
			return (-1);
		}
		s->advertise = xstrdup(addr_fmt((struct sockaddr *)&ss, buf,
		    sizeof buf));
		return (0);
	}
	list = conf->cluster_peer_listen;
	if (list == NULL || *list == '\0')
		list = "0.0.0.0";
	first = xstrndup(list, strcspn(list, ", "));
	if (addr_parse_listen(first, PEER_PORT, &ss, &sslen, &perr) == -1) {
		xasprintf(err, "[cluster] peer_listen: %s", perr);
		free(perr);
		free(first);
		return (-1);
	}
	if ((ss.ss_family == AF_INET && sin->sin_addr.s_addr == INADDR_ANY) ||
	    (ss.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))) {
		xasprintf(&s->advertise, "127.0.0.1:%u", ss.ss_family ==
		    AF_INET ? ntohs(sin->sin_port) : ntohs(sin6->sin6_port));
		log_warnx("[cluster] peer_listen %s is a wildcard and "
		    "peer_advertise is not set: advertising %s, which other "
		    "hosts cannot reach", first, s->advertise);
	} else
		s->advertise = xstrdup(addr_fmt((struct sockaddr *)&ss, buf,
		    sizeof buf));
	free(first);
	return (0);
}

/*
 * Load the identity new links present (node ID, cluster, secret, limits)
 * without listening; links already open keep theirs.
 */
int
peer_configure(struct config *conf, char **err)
{
	struct peer_self	*s;

	if (conf->node_id == NULL || *conf->node_id == '\0') {
		xasprintf(err, "[node] id: not set");
		return (-1);
	}
	s = xcalloc(1, sizeof *s);
	s->references = 1;
	if (peer_read_secret(conf->cluster_secret_file, s, err) == -1 ||
	    peer_advertise(conf, s, err) == -1) {
		peer_self_unref(s);
		return (-1);
	}
	s->node_id = xstrdup(conf->node_id);
	s->cluster = xstrdup(conf->cluster_name != NULL ?
	    conf->cluster_name : "default");
	s->frame_max = conf->cluster_peer_frame_max != 0 ?
	    conf->cluster_peer_frame_max : PEER_FRAME_MAX_DEFAULT;
	s->ping_ms = (conf->cluster_peer_ping != 0 ?
	    conf->cluster_peer_ping : PEER_PING_DEFAULT) * 1000;
	s->handshake_ms = PEER_HANDSHAKE_MS;
	if (peer_test_ping_ms != 0)
		s->ping_ms = peer_test_ping_ms;
	if (peer_test_handshake_ms != 0)
		s->handshake_ms = peer_test_handshake_ms;
	peer_self_unref(peer_me);
	peer_me = s;
	return (0);
}

/* Load the identity and listen for other nodes on [cluster] peer_listen. */
int
peer_init(struct config *conf, char **err)
{
	struct peer_listener	*pl;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	char			*copy, *p, *word, *perr;
	int			 flags;

	if (peer_configure(conf, err) == -1)
		return (-1);
	/* Handed over: the listeners come with the old process's state. */
	if (handoff_restoring())
		return (0);
	while ((pl = TAILQ_FIRST(&peer_listeners)) != NULL)
		peer_listener_free(pl);
	if (conf->cluster_peer_listen == NULL)
		return (0);
	copy = xstrdup(conf->cluster_peer_listen);
	p = copy;
	while ((word = strsep(&p, ", ")) != NULL) {
		if (*word == '\0')
			continue;
		if (addr_parse_listen(word, PEER_PORT, &ss, &sslen, &perr) ==
		    -1) {
			xasprintf(err, "[cluster] peer_listen: %s", perr);
			free(perr);
			free(copy);
			return (-1);
		}
		pl = xcalloc(1, sizeof *pl);
		pl->text = xstrdup(word);
		pl->self = peer_me;
		peer_me->references++;
		TAILQ_INSERT_TAIL(&peer_listeners, pl, entry);
		flags = LEV_OPT_CLOSE_ON_FREE|LEV_OPT_REUSEABLE|
		    LEV_OPT_CLOSE_ON_EXEC;
		if (ss.ss_family == AF_INET6)
			flags |= LEV_OPT_BIND_IPV6ONLY;
		pl->lev = evconnlistener_new_bind(server_base, peer_accept_cb,
		    pl, flags, 128, (struct sockaddr *)&ss, sslen);
		if (pl->lev == NULL) {
			xasprintf(err, "[cluster] peer_listen %s: %s", word,
			    strerror(errno));
			peer_listener_free(pl);
			free(copy);
			return (-1);
		}
		evconnlistener_set_error_cb(pl->lev, peer_accept_error_cb);
		log_info("listening for peer connections on %s (node %s, "
		    "cluster %s, advertised as %s)", word, peer_me->node_id,
		    peer_me->cluster, peer_me->advertise);
	}
	free(copy);
	return (0);
}

/* Close every link and listener (at exit). */
void
peer_shutdown(void)
{
	struct peer_want	*w;
	struct peer_listener	*pl;
	struct peer_link	*l;

	while ((pl = TAILQ_FIRST(&peer_listeners)) != NULL)
		peer_listener_free(pl);
	while ((l = TAILQ_FIRST(&peer_links)) != NULL)
		peer_link_close(l, 0, "shutting down");
	while ((w = TAILQ_FIRST(&peer_wants)) != NULL)
		peer_want_free(w);
	peer_reap_cb(-1, 0, NULL);
	if (peer_reaper != NULL) {
		event_free(peer_reaper);
		peer_reaper = NULL;
	}
	peer_self_unref(peer_me);
	peer_me = NULL;
}

/* The READY link to node, or NULL. */
struct peer *
peer_find(const char *node)
{
	struct peer	*p;

	TAILQ_FOREACH(p, &peers, entry) {
		if (strcmp(p->node, node) == 0)
			return (p);
	}
	return (NULL);
}

/* Send one envelope; 0, or -1 if the link is not (or no longer) READY. */
int
peer_send(struct peer *p, const struct Vspc__Envelope *env)
{
	if (p->link == NULL || p->link->state != PEER_LINK_READY)
		return (-1);
	return (peer_link_send(p->link, env));
}

/* Bytes queued for the node and not yet taken by the socket. */
size_t
peer_queued(const struct peer *p)
{
	if (p->link == NULL)
		return (0);
	return (evbuffer_get_length(p->link->out));
}

/* The node's ID. */
const char *
peer_node(const struct peer *p)
{
	return (p->node);
}

/* The node's advertised peer address, or the link's remote address. */
const char *
peer_addr(const struct peer *p)
{
	if (p->link == NULL)
		return ("");
	if (p->link->advertised != NULL && *p->link->advertised != '\0')
		return (p->link->advertised);
	return (p->link->addr);
}

/* The pointer cluster.c keeps with the peer. */
void *
peer_get_data(const struct peer *p)
{
	return (p->data);
}

/* Set the pointer cluster.c keeps with the peer. */
void
peer_set_data(struct peer *p, void *data)
{
	p->data = data;
}

/* Nodes with a READY link. */
u_int
peer_count(void)
{
	return (npeers);
}

/* Links in any state (handshaking or READY). */
u_int
peer_link_count(void)
{
	return (nlinks);
}

/* Why the last link closed, for tests and status. */
const char *
peer_last_close(void)
{
	return (peer_last_reason);
}

/*
 * Hot upgrade (node/handoff.c).  Links in the handshake or READY go to
 * the new process with their socket, the bytes read but not yet a whole
 * frame, the bytes queued but not yet written, the handshake state
 * (flags, our challenge) and the ping state; a link still connecting is
 * left behind (its want dials again).  The peer of a READY link comes
 * back without cluster_peer_up(): cluster.c restores its own channels,
 * and the other node sees nothing but a pause.
 */

#define PEER_HO_HELLO	1
#define PEER_HO_READY	2

/* Non-zero while a link is being closed (the reaper does it this turn). */
int
peer_handoff_busy(char *why, size_t len)
{
	struct peer_link	*l;

	TAILQ_FOREACH(l, &peer_links, entry) {
		if (l->flags & PEER_LINK_DOOMED) {
			snprintf(why, len, "peer link to %s closing",
			    peer_link_name(l));
			return (1);
		}
		if (l->flags & PEER_LINK_TLS_WAIT) {
			snprintf(why, len, "peer link to %s in its TLS "
			    "handshake", peer_link_name(l));
			return (1);
		}
	}
	return (0);
}

static void
peer_ho_bytes(struct evbuffer *evb, ProtobufCBinaryData *out)
{
	out->len = evbuffer_get_length(evb);
	out->data = xmalloc(out->len + 1);
	if (out->len != 0 &&
	    evbuffer_copyout(evb, out->data, out->len) != (ssize_t)out->len)
		fatalx("%s: evbuffer_copyout failed", __func__);
}

/* Write the links, wants and listeners as one HANDOFF_REC_PEER record. */
void
peer_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Cluster__PeerState	 st =
	    VSPC__HANDOFF__CLUSTER__PEER_STATE__INIT;
	Vspc__Handoff__Cluster__PeerLink	*hl;
	Vspc__Handoff__Cluster__PeerWant	*hw;
	Vspc__Handoff__Cluster__PeerListener	*hp;
	struct peer_link	*l, **saved;
	struct peer_want	*w;
	struct peer_listener	*pl;
	uint8_t			*buf;
	size_t			 len, i, n = 0;

	saved = xcalloc(nlinks + 1, sizeof *saved);
	st.links = xcalloc(nlinks + 1, sizeof *st.links);
	TAILQ_FOREACH(l, &peer_links, entry) {
		if (l->state != PEER_LINK_HELLO && l->state != PEER_LINK_READY)
			continue;
		if (n == nlinks)
			break;
		hl = xmalloc(sizeof *hl);
		vspc__handoff__cluster__peer_link__init(hl);
		hl->fd = handoff_add_fd(h, l->fd);
		hl->state = l->state == PEER_LINK_READY ? PEER_HO_READY :
		    PEER_HO_HELLO;
		hl->outbound = (l->flags & PEER_LINK_OUTBOUND) != 0;
		hl->hello_ok = (l->flags & PEER_LINK_HELLO_OK) != 0;
		hl->auth_ok = (l->flags & PEER_LINK_AUTH_OK) != 0;
		hl->node = l->node != NULL ? l->node : (char *)"";
		hl->advertised = l->advertised != NULL ? l->advertised :
		    (char *)"";
		hl->addr = l->addr;
		hl->challenge.data = l->challenge;
		hl->challenge.len = sizeof l->challenge;
		peer_ho_bytes(l->in, &hl->input);
		peer_ho_bytes(l->out, &hl->output);
		hl->last_rx = l->last_rx;
		hl->ping_nonce = l->ping_nonce;
		hl->ping_sent = l->ping_sent;
		hl->rtt_us = l->rtt_us;
		hl->created = l->created;
		hl->frames_in = l->frames_in;
		hl->frames_out = l->frames_out;
		hl->bytes_in = l->bytes_in;
		hl->bytes_out = l->bytes_out;
		hl->ignored_in = l->ignored_in;
		if (l->peer != NULL) {
			hl->kept = 1;
			hl->up_since = l->peer->up_since;
			hl->link_changes = l->peer->link_changes;
		}
		saved[n] = l;
		st.links[n++] = hl;
	}
	st.n_links = n;

	TAILQ_FOREACH(w, &peer_wants, entry)
		st.n_wants++;
	st.wants = xcalloc(st.n_wants + 1, sizeof *st.wants);
	i = 0;
	TAILQ_FOREACH(w, &peer_wants, entry) {
		hw = xmalloc(sizeof *hw);
		vspc__handoff__cluster__peer_want__init(hw);
		hw->node = w->node;
		hw->addr = w->addr;
		hw->backoff_ms = w->backoff_ms;
		hw->connects = w->connects;
		hw->link = -1;
		for (len = 0; len < n; len++) {
			if (saved[len] == w->link)
				hw->link = len;
		}
		st.wants[i++] = hw;
	}

	TAILQ_FOREACH(pl, &peer_listeners, entry) {
		if (pl->lev != NULL)
			st.n_listeners++;
	}
	st.listeners = xcalloc(st.n_listeners + 1, sizeof *st.listeners);
	i = 0;
	TAILQ_FOREACH(pl, &peer_listeners, entry) {
		if (pl->lev == NULL)
			continue;
		hp = xmalloc(sizeof *hp);
		vspc__handoff__cluster__peer_listener__init(hp);
		hp->fd = handoff_add_fd(h, evconnlistener_get_fd(pl->lev));
		hp->text = pl->text;
		st.listeners[i++] = hp;
	}
	st.handshake_failures = peer_handshake_failures;
	st.last_close = peer_last_reason;
	st.protocol = PEER_PROTOCOL;

	len = vspc__handoff__cluster__peer_state__get_packed_size(&st);
	buf = xmalloc(len + 1);
	vspc__handoff__cluster__peer_state__pack(&st, buf);
	handoff_add(h, HANDOFF_REC_PEER, buf, len);
	log_debug("%s: %zu links, %zu wants, %zu listeners, %zu bytes",
	    __func__, st.n_links, st.n_wants, st.n_listeners, len);
	free(buf);

	for (i = 0; i < st.n_links; i++) {
		free(st.links[i]->input.data);
		free(st.links[i]->output.data);
		free(st.links[i]);
	}
	for (i = 0; i < st.n_wants; i++)
		free(st.wants[i]);
	for (i = 0; i < st.n_listeners; i++)
		free(st.listeners[i]);
	free(st.links);
	free(st.wants);
	free(st.listeners);
	free(saved);
}

static struct peer_link *
peer_ho_link_restore(struct handoff *h,
    const Vspc__Handoff__Cluster__PeerLink *hl, char **err)
{
	struct peer_link	*l;
	struct peer		*p;
	int			 fd;

	if (hl->state != PEER_HO_HELLO && hl->state != PEER_HO_READY) {
		xasprintf(err, "peer link to %s: unknown state %u", hl->node,
		    hl->state);
		return (NULL);
	}
	if (hl->state == PEER_HO_READY && !peer_id_valid(hl->node)) {
		xasprintf(err, "peer link: bad node ID");
		return (NULL);
	}
	if ((fd = handoff_take_fd(h, hl->fd)) == -1) {
		xasprintf(err, "peer link to %s: no descriptor %d", hl->node,
		    hl->fd);
		return (NULL);
	}
	l = peer_link_alloc(fd, hl->outbound, *hl->node != '\0' ? hl->node :
	    NULL, peer_me, hl->addr);
	l->state = hl->state == PEER_HO_READY ? PEER_LINK_READY :
	    PEER_LINK_HELLO;
	if (hl->hello_ok)
		l->flags |= PEER_LINK_HELLO_OK;
	if (hl->auth_ok)
		l->flags |= PEER_LINK_AUTH_OK;
	if (*hl->advertised != '\0')
		l->advertised = xstrdup(hl->advertised);
	if (hl->challenge.len == sizeof l->challenge)
		memcpy(l->challenge, hl->challenge.data, sizeof l->challenge);
	else if (RAND_bytes(l->challenge, sizeof l->challenge) != 1)
		fatalx("%s: RAND_bytes failed", __func__);
	evbuffer_add(l->in, hl->input.data, hl->input.len);
	evbuffer_add(l->out, hl->output.data, hl->output.len);
	l->last_rx = hl->last_rx;
	l->ping_nonce = hl->ping_nonce;
	l->ping_sent = hl->ping_sent;
	l->rtt_us = hl->rtt_us;
	l->created = hl->created;
	l->frames_in = hl->frames_in;
	l->frames_out = hl->frames_out;
	l->bytes_in = hl->bytes_in;
	l->bytes_out = hl->bytes_out;
	l->ignored_in = hl->ignored_in;
	TAILQ_INSERT_TAIL(&peer_links, l, entry);
	nlinks++;

	if (hl->kept && l->state == PEER_LINK_READY &&
	    peer_find(l->node) == NULL) {
		p = xcalloc(1, sizeof *p);
		p->node = xstrdup(l->node);
		p->link = l;
		p->up_since = hl->up_since;
		p->link_changes = hl->link_changes;
		l->peer = p;
		TAILQ_INSERT_TAIL(&peers, p, entry);
		npeers++;
	}
	return (l);
}

/*
 * Rebuild links, wants and listeners from the record, without touching
 * a socket (peer_handoff_resume starts them).  The identity is the one
 * peer_init or peer_configure loaded.
 */
int
peer_handoff_restore(struct handoff *h, const uint8_t *buf, size_t len,
    char **err)
{
	Vspc__Handoff__Cluster__PeerState	*st;
	const Vspc__Handoff__Cluster__PeerWant	*hw;
	struct peer_link	**links;
	struct peer_want	*w;
	size_t			 i;
	int			 fd, rv = -1;

	if (peer_me == NULL && (server_conf == NULL ||
	    peer_configure(server_conf, err) == -1)) {
		if (server_conf == NULL)
			xasprintf(err, "peer: no identity to restore links "
			    "with");
		return (-1);
	}
	if ((st = vspc__handoff__cluster__peer_state__unpack(NULL, len,
	    buf)) == NULL) {
		xasprintf(err, "peer: undecodable hand-over record");
		return (-1);
	}
	if (st->protocol > PEER_PROTOCOL) {
		log_info("peer: handed links speak peer protocol %u, this "
		    "binary %u to %u; the other nodes negotiated with the "
		    "old binary", st->protocol, PEER_PROTOCOL_MIN,
		    PEER_PROTOCOL);
	}
	links = xcalloc(st->n_links + 1, sizeof *links);
	for (i = 0; i < st->n_links; i++) {
		if ((links[i] = peer_ho_link_restore(h, st->links[i],
		    err)) == NULL)
			goto out;
	}
	for (i = 0; i < st->n_wants; i++) {
		hw = st->wants[i];
		if (strcmp(hw->node, peer_me->node_id) == 0)
			continue;
		TAILQ_FOREACH(w, &peer_wants, entry) {
			if (strcmp(w->node, hw->node) == 0)
				break;
		}
		if (w == NULL) {
			w = xcalloc(1, sizeof *w);
			w->node = xstrdup(hw->node);
			w->addr = xstrdup(hw->addr);
			w->retry = evtimer_new(server_base, peer_want_retry_cb,
			    w);
			TAILQ_INSERT_TAIL(&peer_wants, w, entry);
		}
		w->backoff_ms = hw->backoff_ms;
		w->connects = hw->connects;
		if (hw->link >= 0 && (size_t)hw->link < st->n_links &&
		    w->link == NULL && links[hw->link]->want == NULL) {
			w->link = links[hw->link];
			w->link->want = w;
		}
	}
	for (i = 0; i < st->n_listeners; i++) {
		if ((fd = handoff_take_fd(h, st->listeners[i]->fd)) == -1) {
			xasprintf(err, "peer listener %s: no descriptor %d",
			    st->listeners[i]->text, st->listeners[i]->fd);
			goto out;
		}
		peer_adopt_listener(fd, st->listeners[i]->text);
	}
	peer_handshake_failures = st->handshake_failures;
	snprintf(peer_last_reason, sizeof peer_last_reason, "%s",
	    st->last_close);
	log_debug("%s: %zu links, %zu wants, %zu listeners", __func__,
	    st->n_links, st->n_wants, st->n_listeners);
	rv = 0;
out:
	free(links);
	vspc__handoff__cluster__peer_state__free_unpacked(st, NULL);
	return (rv);
}

/*
 * Serve a listening socket for peers, as [cluster] peer_listen text
 * would (a hand-over passes them).  A second one for the same text is
 * closed, so peer.c's own record and node/handoff.c can both pass it.
 * While restoring, it accepts only after peer_handoff_resume.
 */
void
peer_adopt_listener(int fd, const char *text)
{
	struct peer_listener	*pl;
	int			 flags;

	TAILQ_FOREACH(pl, &peer_listeners, entry) {
		if (strcmp(pl->text, text) == 0 && pl->lev != NULL) {
			if (evconnlistener_get_fd(pl->lev) != fd)
				close(fd);
			return;
		}
	}
	if (peer_me == NULL)
		fatalx("%s: peer identity not configured", __func__);
	pl = xcalloc(1, sizeof *pl);
	pl->text = xstrdup(text);
	pl->self = peer_me;
	peer_me->references++;
	/* Accepting drains the backlog until EAGAIN. */
	evutil_make_socket_nonblocking(fd);
	flags = LEV_OPT_CLOSE_ON_FREE|LEV_OPT_CLOSE_ON_EXEC;
	if (handoff_restoring())
		flags |= LEV_OPT_DISABLED;
	pl->lev = evconnlistener_new(server_base, peer_accept_cb, pl, flags,
	    -1, fd);
	TAILQ_INSERT_TAIL(&peer_listeners, pl, entry);
	if (pl->lev == NULL) {
		log_warn("peer listener %s: adopting descriptor %d", text, fd);
		close(fd);
		peer_listener_free(pl);
		return;
	}
	evconnlistener_set_error_cb(pl->lev, peer_accept_error_cb);
	log_info("listening for peer connections on %s (handed over)", text);
}

/* After the commit: read, write, time and accept again. */
void
peer_handoff_resume(void)
{
	struct peer_link	*l, *l1;
	struct peer_listener	*pl;
	struct peer_want	*w;
	uint64_t		 now = server_monotime_us();
	char			 reason[128];

	TAILQ_FOREACH_SAFE(l, &peer_links, entry, l1) {
		/* The pause was ours: do not count it against the node. */
		l->last_rx = now;
		event_add(l->ev_read, NULL);
		peer_link_arm_timer(l, l->state == PEER_LINK_READY);
		if (evbuffer_get_length(l->out) != 0 &&
		    peer_link_flush(l) == -1) {
			snprintf(reason, sizeof reason, "write: %s",
			    strerror(errno));
			peer_link_doom(l, reason);
			continue;
		}
		peer_link_input(l);
	}
	TAILQ_FOREACH(pl, &peer_listeners, entry) {
		if (pl->lev != NULL)
			evconnlistener_enable(pl->lev);
	}
	TAILQ_FOREACH(w, &peer_wants, entry) {
		if (w->link == NULL && peer_find(w->node) == NULL &&
		    !evtimer_pending(w->retry, NULL))
			event_active(w->retry, EV_TIMEOUT, 0);
	}
}
