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
 * Hot upgrade (node/handoff.c).  Links in the handshake or READY go to
 * the new process with their socket, the bytes read but not yet a whole
 * frame, the bytes queued but not yet written, the handshake state
 * (flags, our challenge) and the ping state; a link still connecting is
 * left behind (its want dials again).  The peer of a READY link comes
 * back without cluster_peer_up(): cluster.c restores its own channels,
 * and the other node sees nothing but a pause.
 */

#include <sys/types.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>
#include <openssl/rand.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "peer-int.h"
#include "proto/handoff_cluster.pb-c.h"

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

	saved = xcalloc(peer_nlinks + 1, sizeof *saved);
	st.links = xcalloc(peer_nlinks + 1, sizeof *st.links);
	TAILQ_FOREACH(l, &peer_links, entry) {
		if (l->state != PEER_LINK_HELLO && l->state != PEER_LINK_READY)
			continue;
		if (n == peer_nlinks)
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
		handoff_evbuffer_bytes(l->in, &hl->input);
		handoff_evbuffer_bytes(l->out, &hl->output);
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
	peer_nlinks++;

	if (hl->kept && l->state == PEER_LINK_READY &&
	    peer_find(l->node) == NULL) {
		p = xcalloc(1, sizeof *p);
		p->node = xstrdup(l->node);
		p->link = l;
		p->up_since = hl->up_since;
		p->link_changes = hl->link_changes;
		l->peer = p;
		TAILQ_INSERT_TAIL(&peer_live, p, entry);
		peer_npeers++;
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

const struct handoff_module peer_handoff_module = {
	.name = "peer",
	.rec = HANDOFF_REC_PEER,
	.enabled = cluster_enabled,
	.busy = peer_handoff_busy,
	.save = peer_handoff_save,
	.restore = peer_handoff_restore,
	.resume = peer_handoff_resume
};
