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
 * vMotion of a VM's serial port (protocol: VMOTION-BEGIN, -GOAHEAD,
 * -NOTNOW, -PEER, -PEER-OK, -COMPLETE, -ABORT of telnet option 232).
 *
 * Per console:
 *
 *   NONE --BEGIN(seq) on the current connection--> WAIT_STORE
 *     (the token seq||secret goes to the store; secret is random)
 *   WAIT_STORE --stored--> PENDING, GOAHEAD(seq||secret) to the source
 *   WAIT_STORE --store failed--> NONE, NOTNOW(seq)
 *   PENDING --PEER(token) on a new connection, token taken--> PEERED,
 *     PEER-OK(seq) to the destination
 *   PEERED --COMPLETE(seq) on the destination--> NONE, destination is
 *     current, the source is closed
 *   PENDING/PEERED --ABORT on the source, timeout, or the destination
 *     lost--> NONE, back on the source (if it is still there)
 *
 * The source may close before COMPLETE arrives (ESXi does so in most
 * successful vMotions): the console waits for the destination.  Input
 * people type from BEGIN on is held in the console and goes to whichever
 * connection is current when the vMotion ends.  Store replies carry the
 * vMotion's identifier, so a late reply for a finished vMotion is
 * recognised and ignored.
 */

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "vspcd.h"
#include "store.h"

static uint64_t	vmotion_next_id;

struct vmotion_wait {
	char		*key;
	uint64_t	 id;
	uint64_t	 started;	/* Microseconds, monotonic. */
};

/* Name a vMotion state for logs and listings. */
const char *
vmotion_state_name(enum vmotion_state st)
{
	switch (st) {
	case VMOTION_NONE:
		return ("none");
	case VMOTION_WAIT_STORE:
		return ("begin");
	case VMOTION_PENDING:
		return ("pending");
	case VMOTION_PEERED:
		return ("peered");
	default:
		return ("unknown");
	}
}

static void
vmotion_hex(const u_char *p, size_t len, char *out, size_t outlen)
{
	static const char	hex[] = "0123456789abcdef";
	size_t			i;

	for (i = 0; i < len && i * 2 + 2 < outlen; i++) {
		out[i * 2] = hex[p[i] >> 4];
		out[i * 2 + 1] = hex[p[i] & 0xf];
	}
	out[i * 2] = '\0';
}

static size_t
vmotion_token(const struct vmotion *m, u_char *tok)
{
	memcpy(tok, m->seq, m->seqlen);
	memcpy(tok + m->seqlen, m->secret, VMOTION_SECRET_LEN);
	return (m->seqlen + VMOTION_SECRET_LEN);
}

static void
vmotion_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct console	*con = arg;

	if (con->vmotion.state == VMOTION_NONE)
		return;
	server_stats.vmotion_timeout++;
	vmotion_cancel(con, "timed out");
}

static void
vmotion_arm(struct console *con)
{
	struct timeval	tv;

	if (con->vmotion.timer == NULL)
		con->vmotion.timer = evtimer_new(server_base, vmotion_timer_cb,
		    con);
	tv.tv_sec = server_conf->vm_token_ttl;
	tv.tv_usec = 0;
	evtimer_add(con->vmotion.timer, &tv);
}

/* Clear the vMotion and hand held input to the current connection. */
static void
vmotion_finish(struct console *con)
{
	struct vmotion	*m = &con->vmotion;
	u_char		 tok[VMOTION_TOKEN_MAX];

	if (m->state == VMOTION_WAIT_STORE || m->state == VMOTION_PENDING)
		store_token_del(server_store, tok, vmotion_token(m, tok));
	OPENSSL_cleanse(m->secret, sizeof m->secret);
	OPENSSL_cleanse(tok, sizeof tok);
	if (m->timer != NULL)
		evtimer_del(m->timer);
	m->state = VMOTION_NONE;
	m->src = NULL;
	m->dst = NULL;
	m->id = 0;
	console_release_held(con);
}

static void
vmotion_notnow(struct vmconn *v, const u_char *seq, size_t len,
    const char *why)
{
	char	hex[2 * VMOTION_SEQ_MAX + 1];

	server_stats.vmotion_notnow++;
	vmotion_hex(seq, len, hex, sizeof hex);
	log_warnx("console %s: vMotion %s refused (NOTNOW): %s",
	    v->console != NULL ? v->console->key : v->addr, hex, why);
	vmconn_send_vmware(v, VMW_VMOTION_NOTNOW, seq, len);
}

static void
vmotion_stored(enum store_status st, void *arg)
{
	struct vmotion_wait	*w = arg;
	struct console		*con;
	struct vmotion		*m;
	u_char			 tok[VMOTION_TOKEN_MAX];
	size_t			 len;
	char			 hex[2 * VMOTION_SEQ_MAX + 1];
	uint64_t		 us;

	con = console_find(w->key);
	if (con == NULL || con->vmotion.id != w->id ||
	    con->vmotion.state != VMOTION_WAIT_STORE) {
		free(w->key);
		free(w);
		return;
	}
	m = &con->vmotion;
	if (m->src == NULL) {
		/* The source went away while the token was stored. */
		vmotion_finish(con);
	} else if (st != STORE_OK) {
		vmotion_notnow(m->src, m->seq, m->seqlen,
		    store_status_string(st));
		m->state = VMOTION_PENDING;	/* So the token is deleted. */
		vmotion_finish(con);
	} else {
		len = vmotion_token(m, tok);
		vmconn_send_vmware(m->src, VMW_VMOTION_GOAHEAD, tok, len);
		OPENSSL_cleanse(tok, sizeof tok);
		m->state = VMOTION_PENDING;
		server_stats.vmotion_goahead++;
		vmotion_arm(con);
		vmotion_hex(m->seq, m->seqlen, hex, sizeof hex);
		us = server_monotime_us() - w->started;
		metrics_observe(METRICS_GOAHEAD, us);
		log_debug("console %s: vMotion %s: GOAHEAD after %llu us",
		    con->key, hex, (unsigned long long)us);
	}
	free(w->key);
	free(w);
}

/* VMOTION-BEGIN(seq) on a connection. */
void
vmotion_begin(struct vmconn *v, const u_char *seq, size_t len)
{
	struct console		*con = v->console;
	struct vmotion		*m;
	struct store_token	 val;
	struct vmotion_wait	*w;
	u_char			 tok[VMOTION_TOKEN_MAX];
	size_t			 toklen;

	server_stats.vmotion_begin++;
	if (len > VMOTION_SEQ_MAX) {
		vmotion_notnow(v, seq, len, "sequence too long");
		return;
	}
	if (len == 0) {
		vmotion_notnow(v, seq, len, "empty sequence");
		return;
	}
	if (v->role != VMCONN_CURRENT || con == NULL) {
		vmotion_notnow(v, seq, len, "connection not identified yet");
		return;
	}
	m = &con->vmotion;
	if (m->state != VMOTION_NONE) {
		vmotion_notnow(v, seq, len, "a vMotion is already in progress");
		return;
	}
	if (RAND_bytes(m->secret, VMOTION_SECRET_LEN) != 1) {
		vmotion_notnow(v, seq, len, "no random bytes for a secret");
		return;
	}
	memcpy(m->seq, seq, len);
	m->seqlen = len;
	m->src = v;
	m->dst = NULL;
	m->id = ++vmotion_next_id;
	m->state = VMOTION_WAIT_STORE;
	clock_gettime(CLOCK_MONOTONIC, &m->began);

	memset(&val, 0, sizeof val);
	snprintf(val.console, sizeof val.console, "%s", con->key);
	snprintf(val.node, sizeof val.node, "%s", server_conf->node_id);
	val.id = m->id;
	w = xcalloc(1, sizeof *w);
	w->key = xstrdup(con->key);
	w->id = m->id;
	w->started = server_monotime_us();
	toklen = vmotion_token(m, tok);
	/* Ends even if the store never answers. */
	vmotion_arm(con);
	store_token_put(server_store, tok, toklen, &val,
	    server_conf->vm_token_ttl, vmotion_stored, w);
	OPENSSL_cleanse(tok, sizeof tok);
}

struct vmotion_peer_wait {
	struct vmconn	*v;
	uint64_t	 started;
	u_char		 tok[VMOTION_TOKEN_MAX];
	size_t		 len;
};

static void
vmotion_peered(enum store_status st, const struct store_token *val,
    void *arg)
{
	struct vmotion_peer_wait *w = arg;
	struct vmconn		*v = w->v;
	struct console		*con;
	struct vmotion		*m;
	uint64_t		 started = w->started, us;
	char			 hex[2 * VMOTION_SEQ_MAX + 1];
	u_char			 tok[VMOTION_TOKEN_MAX];
	size_t			 toklen = w->len;

	memcpy(tok, w->tok, toklen);
	OPENSSL_cleanse(w->tok, sizeof w->tok);
	free(w);
	v->references--;
	v->flags &= ~VMCONN_PEERING;
	if (v->flags & VMCONN_DEAD) {
		if (st == STORE_OK)
			log_warnx("console %s: vMotion destination %s closed "
			    "while its token was checked", val->console,
			    v->addr);
		return;
	}
	if (st != STORE_OK) {
		server_stats.vmotion_peer_bad++;
		log_warnx("vm conn %u %s: VMOTION-PEER with an unknown, "
		    "expired or used token (%s); closing", v->id, v->addr,
		    store_status_string(st));
		vmconn_close(v, "bad vMotion token");
		return;
	}
	if (strcmp(val->node, server_conf->node_id) != 0) {
		/* The source is on another node of the cluster. */
		if (core_hooks->vmotion_peer(v, tok, toklen,
		    val) == -1) {
			server_stats.vmotion_peer_bad++;
			vmconn_close(v, "vMotion source unreachable");
		} else {
			us = server_monotime_us() - started;
			metrics_observe(METRICS_PEER_OK, us);
			log_debug("console %s: vMotion destination %s peered "
			    "after %llu us (source on node %s)", val->console,
			    v->addr, (unsigned long long)us, val->node);
		}
		OPENSSL_cleanse(tok, sizeof tok);
		return;
	}
	OPENSSL_cleanse(tok, sizeof tok);
	con = console_find(val->console);
	if (con == NULL || con->vmotion.state != VMOTION_PENDING ||
	    con->vmotion.id != val->id) {
		server_stats.vmotion_peer_bad++;
		log_warnx("vm conn %u %s: VMOTION-PEER token for console %s "
		    "matches no pending vMotion; closing", v->id, v->addr,
		    val->console);
		vmconn_close(v, "stale vMotion token");
		return;
	}
	m = &con->vmotion;
	v->role = VMCONN_VMOTION_DST;
	v->console = con;
	if (v->ev_timeout != NULL) {
		event_free(v->ev_timeout);
		v->ev_timeout = NULL;
	}
	m->dst = v;
	m->state = VMOTION_PEERED;
	vmconn_send_vmware(v, VMW_VMOTION_PEER_OK, m->seq, m->seqlen);
	vmotion_hex(m->seq, m->seqlen, hex, sizeof hex);
	us = server_monotime_us() - started;
	metrics_observe(METRICS_PEER_OK, us);
	log_debug("console %s: vMotion %s: destination %s peered after %llu us",
	    con->key, hex, v->addr, (unsigned long long)us);
}

/* VMOTION-PEER(seq||secret): a destination presents its token. */
void
vmotion_peer(struct vmconn *v, const u_char *tok, size_t len)
{
	struct vmotion_peer_wait *w;

	server_stats.vmotion_peer++;
	if (v->role != VMCONN_UNBOUND || (v->flags & VMCONN_PEERING)) {
		log_warnx("vm conn %u %s: VMOTION-PEER on a connection that "
		    "is already bound; ignored", v->id, v->addr);
		return;
	}
	if (len <= VMOTION_SECRET_LEN || len > VMOTION_TOKEN_MAX) {
		server_stats.vmotion_peer_bad++;
		log_warnx("vm conn %u %s: VMOTION-PEER token of %zu bytes "
		    "cannot be ours; closing", v->id, v->addr, len);
		vmconn_close(v, "bad vMotion token");
		return;
	}
	v->flags |= VMCONN_PEERING;
	v->references++;
	w = xcalloc(1, sizeof *w);
	w->v = v;
	w->started = server_monotime_us();
	memcpy(w->tok, tok, len);
	w->len = len;
	store_token_take(server_store, tok, len, vmotion_peered, w);
}

/* VMOTION-COMPLETE(seq) on the destination: it becomes current. */
void
vmotion_complete(struct vmconn *v, const u_char *seq, size_t len)
{
	struct console	*con = v->console;
	struct vmotion	*m;
	struct vmconn	*src;
	struct timespec	 now;
	char		 hex[2 * VMOTION_SEQ_MAX + 1];
	long long	 ms;

	if (v->role != VMCONN_VMOTION_DST || con == NULL ||
	    con->vmotion.state != VMOTION_PEERED || con->vmotion.dst != v) {
		log_warnx("vm conn %u %s: VMOTION-COMPLETE on a connection "
		    "that did not peer; ignored", v->id, v->addr);
		return;
	}
	m = &con->vmotion;
	if (len != m->seqlen || memcmp(seq, m->seq, len) != 0) {
		log_warnx("console %s: VMOTION-COMPLETE with another sequence "
		    "than the vMotion's; ignored", con->key);
		return;
	}
	if (con->flags & CONSOLE_REMOTE) {
		/* The source is on another node: take the console over. */
		core_hooks->vmotion_complete(v);
		return;
	}
	server_stats.vmotion_complete++;
	src = m->src;
	v->role = VMCONN_CURRENT;
	con->vm = v;
	if (con->connected == 0)
		con->connected = server_now;
	con->vmotions++;
	vmotion_hex(m->seq, m->seqlen, hex, sizeof hex);
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - m->began.tv_sec) * 1000LL +
	    (now.tv_nsec - m->began.tv_nsec) / 1000000;
	log_info("console %s: vMotion %s complete: now on %s (%lld ms after "
	    "BEGIN)", con->key, hex, v->addr, ms);
	console_log_activity(con, "vMotion to %s", v->addr);

	/* Retire the source before anything can write to it. */
	m->src = NULL;
	m->dst = NULL;
	if (src != NULL) {
		src->role = VMCONN_RETIRED;
		src->console = NULL;
		vmconn_close(src, "vMotion completed");
	}
	vmotion_finish(con);
	/* Data the destination sent before COMPLETE, if any, goes first. */
	vmconn_release_held(v);
	if (v->name != NULL)
		console_set_name(con, v->name, strlen(v->name));
	vmconn_claim(con);
}

/* VMOTION-ABORT on the source. */
void
vmotion_abort(struct vmconn *v)
{
	struct console	*con = v->console;

	if (con == NULL || con->vmotion.state == VMOTION_NONE ||
	    con->vmotion.src != v) {
		log_info("vm conn %u %s: VMOTION-ABORT without a vMotion in "
		    "progress; ignored", v->id, v->addr);
		return;
	}
	server_stats.vmotion_abort++;
	vmotion_cancel(con, "aborted by the source host");
}

/*
 * End a vMotion without moving: close the destination, if any, and carry
 * on with the source (or with no connection if the source has gone).
 */
void
vmotion_cancel(struct console *con, const char *why)
{
	struct vmotion	*m = &con->vmotion;
	struct vmconn	*dst = m->dst, *src = m->src;
	char		 hex[2 * VMOTION_SEQ_MAX + 1];

	if (m->state == VMOTION_NONE)
		return;
	core_hooks->vmotion_cancelled(con, why);
	vmotion_hex(m->seq, m->seqlen, hex, sizeof hex);
	if (con->flags & CONSOLE_REMOTE) {
		/* We were the destination of another node's vMotion. */
		log_warnx("console %s: vMotion %s %s; closing the destination",
		    con->key, hex, why);
		m->dst = NULL;
		if (dst != NULL) {
			dst->role = VMCONN_RETIRED;
			dst->console = NULL;
			vmconn_close(dst, "vMotion cancelled");
		}
		if (m->timer != NULL)
			evtimer_del(m->timer);
		m->state = VMOTION_NONE;
		m->id = 0;
		return;
	}
	log_warnx("console %s: vMotion %s %s; %s", con->key, hex, why,
	    src != NULL ? "staying on the source" : "the VM is disconnected");
	m->dst = NULL;
	if (dst != NULL) {
		dst->role = VMCONN_RETIRED;
		dst->console = NULL;
		vmconn_close(dst, "vMotion cancelled");
	}
	con->vm = src;
	vmotion_finish(con);
	core_hooks->recheck(con);
	if (src == NULL) {
		con->connected = 0;
		if (con->nclients == 0)
			con->left = server_now;
		console_notice(con, NULL, "VM disconnected");
		console_log_activity(con, "VM disconnected");
	}
}

/* A connection taking part in the console's vMotion closed. */
void
vmotion_conn_lost(struct console *con, struct vmconn *v)
{
	struct vmotion	*m = &con->vmotion;

	if (v == m->src) {
		m->src = NULL;
		if (con->vm == v)
			con->vm = NULL;
		if (m->state == VMOTION_WAIT_STORE)
			vmotion_cancel(con, "source closed before GOAHEAD");
		else
			log_debug("console %s: vMotion source closed; waiting "
			    "for COMPLETE", con->key);
		return;
	}
	if (v == m->dst) {
		m->dst = NULL;
		vmotion_cancel(con, "destination closed before COMPLETE");
		return;
	}
	if (con->vm == v)
		con->vm = NULL;
}

/*
 * Hot upgrade: the next vMotion identifier (set: take v, so that late
 * store replies can still be told apart); returns the current one.
 */
uint64_t
vmotion_next(int set, uint64_t v)
{
	if (set && v > vmotion_next_id)
		vmotion_next_id = v;
	return (vmotion_next_id);
}

/* Hot upgrade: the vMotion timer of a restored console. */
void
vmotion_restore_timer(struct console *con, int64_t us)
{
	if (us < 0) {
		/* No timer was pending: a vMotion must end all the same. */
		if (con->vmotion.state != VMOTION_NONE &&
		    !(con->flags & CONSOLE_REMOTE))
			vmotion_arm(con);
		return;
	}
	if (con->vmotion.timer == NULL)
		con->vmotion.timer = evtimer_new(server_base, vmotion_timer_cb,
		    con);
	core_timer_set(con->vmotion.timer, us);
}
