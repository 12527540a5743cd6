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
 * vMotion across nodes.  The token names the source node.  The node that
 * sees PEER answers PEER-OK and tells the source (VmotionPeered); on
 * COMPLETE it claims the console (epoch up) and tells the source
 * (VmotionCompleted), which hands over the history and the input held
 * during the move (Handover) and sends its people to the new owner,
 * resuming at the byte they had reached.  Output the VM sends meanwhile
 * waits on the destination connection until the history is there, so
 * stream offsets carry on unchanged.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "store.h"
#include "proto/vspc.pb-c.h"
#include "cluster-int.h"

static size_t
cluster_seq_len(size_t toklen)
{
	return (toklen > VMOTION_SECRET_LEN ? toklen - VMOTION_SECRET_LEN : 0);
}

static void
cluster_vmotion_send(const char *node, int type, const char *key, uint64_t id,
    uint64_t epoch, const char *reason)
{
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__VmotionPeered	 vp = VSPC__VMOTION_PEERED__INIT;
	Vspc__VmotionCompleted	 vc = VSPC__VMOTION_COMPLETED__INIT;
	Vspc__VmotionFailed	 vf = VSPC__VMOTION_FAILED__INIT;
	Vspc__VmotionAborted	 va = VSPC__VMOTION_ABORTED__INIT;

	switch (type) {
	case VSPC__ENVELOPE__MSG_VMOTION_PEERED:
		vp.console = (char *)key;
		vp.id = id;
		vp.dst_node = (char *)cluster_self();
		env.vmotion_peered = &vp;
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_COMPLETED:
		vc.console = (char *)key;
		vc.id = id;
		vc.epoch = epoch;
		vc.dst_node = (char *)cluster_self();
		env.vmotion_completed = &vc;
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_FAILED:
		vf.console = (char *)key;
		vf.id = id;
		vf.reason = (char *)reason;
		env.vmotion_failed = &vf;
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_ABORTED:
		va.console = (char *)key;
		va.id = id;
		va.reason = (char *)reason;
		env.vmotion_aborted = &va;
		break;
	default:
		return;
	}
	env.msg_case = type;
	if (cluster_send(node, &env) == -1)
		log_warnx("console %s: cannot tell node %s about the vMotion: "
		    "no link", key, node);
}

/* Timer: a vMotion across nodes took too long. */
void
cluster_vmotion_timer(evutil_socket_t fd, short events, void *arg)
{
	struct console	*con = arg;

	if (con->vmotion.state == VMOTION_NONE)
		return;
	server_stats.vmotion_timeout++;
	vmotion_cancel(con, "timed out");
}

/*
 * PEER on this node for a vMotion whose source is on another node.
 * Returns 0 if the connection is now the destination, -1 if refused.
 */
int
cluster_vmotion_peer(struct vmconn *v, const u_char *tok, size_t len,
    const struct store_token *val)
{
	struct console	*con;
	struct vmotion	*m;
	size_t		 seqlen = cluster_seq_len(len);
	struct timeval	 tv;

	if (seqlen == 0 || seqlen > VMOTION_SEQ_MAX)
		return (-1);
	if (cluster_peer(val->node) == NULL) {
		log_warnx("vm conn %u %s: vMotion of console %s: source node "
		    "%s cannot be reached; refusing the destination", v->id,
		    v->addr, val->console, val->node);
		return (-1);
	}
	if ((con = console_find(val->console)) == NULL) {
		if ((con = console_get_key(val->console)) == NULL)
			return (-1);
		console_make_remote(con, val->node, 0);
	}
	if (!(con->flags & CONSOLE_REMOTE) ||
	    con->vmotion.state != VMOTION_NONE) {
		log_warnx("console %s: vMotion destination while the console "
		    "is %s here; refusing", con->key, console_state(con));
		return (-1);
	}
	m = &con->vmotion;
	memcpy(m->seq, tok, seqlen);
	m->seqlen = seqlen;
	m->state = VMOTION_PEERED;
	m->src = NULL;
	m->dst = v;
	m->id = val->id;
	free(m->node);
	m->node = xstrdup(val->node);
	clock_gettime(CLOCK_MONOTONIC, &m->began);
	v->role = VMCONN_VMOTION_DST;
	v->console = con;
	if (v->ev_timeout != NULL) {
		/* Bound by its token: no negotiation timeout any more. */
		event_free(v->ev_timeout);
		v->ev_timeout = NULL;
	}
	if (m->timer == NULL)
		m->timer = evtimer_new(server_base, cluster_vmotion_timer, con);
	tv.tv_sec = server_conf->vm_token_ttl;
	tv.tv_usec = 0;
	evtimer_add(m->timer, &tv);
	vmconn_send_vmware(v, VMW_VMOTION_PEER_OK, m->seq, m->seqlen);
	cluster_vmotion_send(val->node, VSPC__ENVELOPE__MSG_VMOTION_PEERED,
	    con->key, m->id, 0, NULL);
	return (0);
}

/* Timer: the previous owner never sent the history. */
void
cluster_handover_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct console	*con = arg;
	struct client	*c;

	if (!(con->flags & CONSOLE_HANDOVER))
		return;
	log_warnx("console %s: no history from the previous owner after %d s; "
	    "going on without it", con->key, CLUSTER_HANDOVER_WAIT);
	ring_restore(&con->history, NULL, 0, 0);
	con->flags &= ~CONSOLE_HANDOVER;
	TAILQ_FOREACH(c, &con->clients, centry) {
		c->off = 0;
		c->stream = 0;
	}
	if (con->vm != NULL) {
		con->vm->role = VMCONN_CURRENT;
		vmconn_release_held(con->vm);
	}
	cluster_publish(con);
	cluster_pend_run(con->key);
}

static void
cluster_completed_claim(enum store_status st, uint64_t epoch, void *arg)
{
	char		*key = arg;
	struct console	*con = console_find(key);
	struct vmotion	*m;
	struct vmconn	*v;
	struct timeval	 tv = { CLUSTER_HANDOVER_WAIT, 0 };
	uint64_t	 known = 0;

	free(key);
	if (con == NULL || (m = &con->vmotion)->state != VMOTION_PEERED ||
	    m->dst == NULL || m->node == NULL)
		return;
	if (st != STORE_OK) {
		/*
		 * The VM is here: it is ours whatever the store says.  The
		 * claim is made again until recorded; meanwhile the epoch is
		 * one past what we knew, and the source and the people
		 * following the console are told the new owner directly.
		 */
		log_warnx("console %s: cannot take ownership after vMotion: "
		    "%s", con->key, store_status_string(st));
		known = con->epoch;
		epoch = con->epoch + 1;
	}
	v = m->dst;
	cluster_vmotion_send(m->node, VSPC__ENVELOPE__MSG_VMOTION_COMPLETED,
	    con->key, m->id, epoch, NULL);
	log_info("console %s: vMotion complete: now on %s, this node (was on "
	    "node %s)", con->key, v->addr, m->node);

	/* Ours now; VM output waits on the connection for the history. */
	console_make_local(con);
	con->epoch = epoch;
	if (st != STORE_OK)
		cluster_claim_later(con, known);
	con->flags |= CONSOLE_HANDOVER;
	con->vm = v;
	con->connected = server_now;
	con->vmotions++;
	if (m->timer != NULL)
		evtimer_del(m->timer);
	m->state = VMOTION_NONE;
	m->dst = NULL;
	m->id = 0;
	if (con->handover_timer == NULL)
		con->handover_timer = evtimer_new(server_base,
		    cluster_handover_timeout, con);
	evtimer_add(con->handover_timer, &tv);
	server_stats.vmotion_complete++;
}

/* COMPLETE on a destination whose source is on another node. */
void
cluster_vmotion_complete(struct vmconn *v)
{
	struct console	*con = v->console;

	store_console_claim(server_store, con->key, cluster_self(), 0,
	    cluster_completed_claim, xstrdup(con->key));
}

/* A vMotion of ours (or to us) ended without moving: tell the other. */
void
cluster_vmotion_cancelled(struct console *con, const char *why)
{
	struct vmotion	*m = &con->vmotion;

	if (m->node == NULL)
		return;
	if (con->flags & CONSOLE_REMOTE)
		cluster_vmotion_send(m->node, VSPC__ENVELOPE__MSG_VMOTION_FAILED,
		    con->key, m->id, 0, why);
	else
		cluster_vmotion_send(m->node,
		    VSPC__ENVELOPE__MSG_VMOTION_ABORTED, con->key, m->id, 0,
		    why);
	free(m->node);
	m->node = NULL;
}

static struct console *
cluster_vmotion_console(const char *key, uint64_t id, int remote)
{
	struct console	*con = console_find(key);

	if (con == NULL || con->vmotion.state == VMOTION_NONE ||
	    con->vmotion.id != id)
		return (NULL);
	if (remote != ((con->flags & CONSOLE_REMOTE) != 0))
		return (NULL);
	return (con);
}

/* The destination's node saw PEER for a vMotion of ours. */
void
cluster_msg_peered(struct peer *p, const Vspc__VmotionPeered *vp)
{
	struct console	*con = cluster_vmotion_console(vp->console, vp->id, 0);

	if (con == NULL || con->vmotion.state != VMOTION_PENDING) {
		log_warnx("console %s: node %s peered a vMotion we do not "
		    "have pending", vp->console, peer_node(p));
		cluster_vmotion_send(peer_node(p),
		    VSPC__ENVELOPE__MSG_VMOTION_ABORTED, vp->console, vp->id,
		    0, "no such vMotion pending");
		return;
	}
	con->vmotion.state = VMOTION_PEERED;
	free(con->vmotion.node);
	con->vmotion.node = xstrdup(peer_node(p));
	log_info("console %s: vMotion destination peered on node %s",
	    con->key, peer_node(p));
}

/* The destination's node completed: hand the console over. */
void
cluster_msg_completed(struct peer *p, const Vspc__VmotionCompleted *vc)
{
	struct console		*con;
	struct vmotion		*m;
	struct vmconn		*src;
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__Handover		 h = VSPC__HANDOVER__INIT;
	u_char			*hist = NULL, *held = NULL;
	size_t			 hlen, heldlen = 0;
	const char		*node = peer_node(p);

	con = cluster_vmotion_console(vc->console, vc->id, 0);
	if (con == NULL || con->vmotion.state != VMOTION_PEERED ||
	    con->vmotion.node == NULL || strcmp(con->vmotion.node, node) != 0) {
		log_warnx("console %s: node %s completed a vMotion we do not "
		    "have peered", vc->console, node);
		return;
	}
	m = &con->vmotion;
	src = m->src;
	m->src = NULL;
	if (src != NULL) {
		src->role = VMCONN_RETIRED;
		src->console = NULL;
		vmconn_close(src, "vMotion completed on another node");
	}
	con->vm = NULL;
	if (m->timer != NULL)
		evtimer_del(m->timer);
	m->state = VMOTION_NONE;
	free(m->node);
	m->node = NULL;
	server_stats.vmotion_complete++;

	/* History and held input go to the new owner. */
	hlen = con->history.len;
	if (hlen != 0) {
		hist = xmalloc(hlen);
		ring_copy(&con->history, ring_start(&con->history), hist,
		    hlen);
	}
	if (con->held != NULL &&
	    (heldlen = evbuffer_get_length(con->held)) != 0) {
		held = xmalloc(heldlen);
		evbuffer_remove(con->held, held, heldlen);
	}
	h.console = con->key;
	h.epoch = vc->epoch;
	h.history_end = con->history.end;
	h.history.data = hist;
	h.history.len = hlen;
	h.held_input.data = held;
	h.held_input.len = heldlen;
	h.name = con->name != NULL ? con->name : (char *)"";
	h.vmotions = con->vmotions + 1;
	h.id = vc->id;
	h.stream = con->stream;
	env.msg_case = VSPC__ENVELOPE__MSG_HANDOVER;
	env.handover = &h;
	peer_send(p, &env);
	free(hist);
	free(held);
	log_info("console %s: vMotion complete on node %s; history (%zu "
	    "bytes) and %zu bytes of input handed over", con->key, node, hlen,
	    heldlen);
	console_log_activity(con, "vMotion to node %s", node);
	cluster_yield(con, node, vc->epoch);
}

/* The previous owner handed over the history and held input. */
void
cluster_msg_handover(struct peer *p, const Vspc__Handover *h)
{
	struct console	*con = console_find(h->console);
	struct client	*c;

	if (con == NULL || !(con->flags & CONSOLE_HANDOVER)) {
		log_warnx("console %s: unexpected history hand-over from node "
		    "%s", h->console, peer_node(p));
		return;
	}
	ring_restore(&con->history, h->history.data, h->history.len,
	    h->history_end);
	con->flags &= ~CONSOLE_HANDOVER;
	if (con->handover_timer != NULL)
		evtimer_del(con->handover_timer);
	if (h->vmotions > con->vmotions)
		con->vmotions = h->vmotions;
	if (con->vm != NULL) {
		/* What people typed during the move, then VM output. */
		if (h->held_input.len != 0)
			vmconn_write(con->vm, h->held_input.data,
			    h->held_input.len);
		con->vm->role = VMCONN_CURRENT;
		vmconn_release_held(con->vm);
	}
	con->stream = h->stream != 0 ? h->stream : con->stream;
	TAILQ_FOREACH(c, &con->clients, centry) {
		if (c->stream != 0 && c->stream != con->stream)
			c->off = ring_start(&con->history);
		if (c->off > con->history.end)
			c->off = con->history.end;
		c->stream = 0;
		if (c->flags & CLIENT_STREAM)
			client_flush(c);
	}
	log_info("console %s: history handed over by node %s (%zu bytes, "
	    "stream at %llu)", con->key, peer_node(p), h->history.len,
	    (unsigned long long)h->history_end);
	cluster_publish(con);
	cluster_pend_run(con->key);
}

/* A vMotion to another node failed there. */
void
cluster_msg_failed(struct peer *p, const Vspc__VmotionFailed *vf)
{
	struct console	*con = cluster_vmotion_console(vf->console, vf->id, 0);

	if (con == NULL)
		return;
	free(con->vmotion.node);
	con->vmotion.node = NULL;
	vmotion_cancel(con, vf->reason);
}

/* The source's node aborted a vMotion to this node. */
void
cluster_msg_aborted(struct peer *p, const Vspc__VmotionAborted *va)
{
	struct console	*con = cluster_vmotion_console(va->console, va->id, 1);

	if (con == NULL)
		return;
	free(con->vmotion.node);
	con->vmotion.node = NULL;
	vmotion_cancel(con, va->reason);
}

/* The destination of a vMotion from another node was lost. */
void
cluster_vmotion_dst_lost(struct console *con)
{
	cluster_vmotion_cancelled(con, "destination closed before COMPLETE");
}
