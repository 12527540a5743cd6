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
 *                      close: buffers, events, handshake state, counters
 *                      (peer-link.c);
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
 *
 * This file holds identity, the reaper, wants (outbound links kept up),
 * listeners and the interface of vspcd.h; framing is in peer-frame.c,
 * the hot upgrade in peer-handoff.c, and peer-int.h holds what the files
 * share.
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
#include "peer-int.h"

struct peer_self		*peer_me;
struct peer_links		 peer_links =
				     TAILQ_HEAD_INITIALIZER(peer_links);
struct peer_links		 peer_dead_links =
				     TAILQ_HEAD_INITIALIZER(peer_dead_links);
struct peers			 peer_live = TAILQ_HEAD_INITIALIZER(peer_live);
struct peers			 peer_dead =
				     TAILQ_HEAD_INITIALIZER(peer_dead);
struct peer_wants		 peer_wants =
				     TAILQ_HEAD_INITIALIZER(peer_wants);
struct peer_listeners		 peer_listeners =
				     TAILQ_HEAD_INITIALIZER(peer_listeners);
static struct event		*peer_reaper;
u_int				 peer_npeers;
u_int				 peer_nlinks;
u_int				 peer_next_id;
u_int				 peer_test_ping_ms;
u_int				 peer_test_handshake_ms;
uint64_t			 peer_handshake_failures;
char				 peer_last_reason[256];

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

/* A link's node, or its address before Hello, for log lines. */
const char *
peer_link_name(const struct peer_link *l)
{
	return (l->node != NULL && *l->node != '\0' ? l->node : l->addr);
}

/* The name of the message an envelope holds, for logs. */
const char *
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
int
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

/* Have the reaper free dead links and peers at the end of this turn. */
void
peer_reap_later(void)
{
	if (peer_reaper == NULL)
		peer_reaper = event_new(server_base, -1, 0, peer_reap_cb, NULL);
	if (!event_pending(peer_reaper, EV_TIMEOUT, NULL))
		event_active(peer_reaper, EV_TIMEOUT, 0);
}

/* Timer: dial a wanted node again. */
void
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
void
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

/* A connection on a peer listener. */
void
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

/* A listener failed (out of descriptors): pause it for a while. */
void
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

/* Close a peer listener. */
void
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

	TAILQ_FOREACH(p, &peer_live, entry) {
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
	return (peer_npeers);
}

/* Links in any state (handshaking or READY). */
u_int
peer_link_count(void)
{
	return (peer_nlinks);
}

/* Why the last link closed, for tests and status. */
const char *
peer_last_close(void)
{
	return (peer_last_reason);
}
