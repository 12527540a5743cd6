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
 * Hot upgrade (node/handoff.c): channels both ways, moved channels,
 * Attaches waiting for a history and the channel counter go to the new
 * process as one HANDOFF_REC_CLUSTER record.  Clients and consoles are
 * restored first (by their own records); here their channels are tied
 * back to them by client ID and console key.  Nothing is sent to the
 * other nodes: the peer links carry on byte for byte.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "store.h"
#include "proto/vspc.pb-c.h"
#include "proto/handoff_cluster.pb-c.h"
#include "cluster-int.h"

/* Busy while a first attach waits for the owner's answer. */
static int
cluster_handoff_busy(char *why, size_t len)
{
	struct hmap_entry	*e;
	struct fwd		*f;
	u_int			 i;

	if (!cluster_on)
		return (0);
	for (i = 0; i < cluster_fwds.nb; i++) {
		for (e = cluster_fwds.b[i]; e != NULL; e = e->next) {
			f = hmap_data(e, struct fwd, entry);
			if (f->initial && f->state == FWD_ATTACHING) {
				snprintf(why, len, "attach to console %s "
				    "waits for node %s", f->key,
				    f->node != NULL ? f->node : "?");
				return (1);
			}
		}
	}
	return (0);
}

static Vspc__Handoff__Cluster__Fwd *
cluster_ho_fwd(struct fwd *f)
{
	Vspc__Handoff__Cluster__Fwd	*hf;
	int64_t				 retry_us;

	hf = xmalloc(sizeof *hf);
	vspc__handoff__cluster__fwd__init(hf);
	hf->client = f->c->id;
	hf->channel = f->channel;
	hf->key = f->key;
	hf->node = f->node != NULL ? f->node : (char *)"";
	hf->state = f->state;
	hf->mode = f->mode;
	hf->initial = f->initial;
	hf->lost = f->lost;
	hf->has_pending = (f->pending != NULL);
	handoff_evbuffer_bytes(f->pending, &hf->pending);
	hf->has_seed = (f->seed != NULL);
	handoff_evbuffer_bytes(f->seed, &hf->seed);
	hf->deadline = f->deadline;
	hf->refused = f->refused;
	hf->req = (u_char)f->req;
	hf->req_lines = f->req_lines;
	hf->next_off = f->next_off;
	hf->stream = f->stream;
	hf->have_off = f->have_off;
	hf->unacked = f->unacked;
	/* The record counts milliseconds; -1: not armed. */
	retry_us = core_timer_left(f->retry);
	hf->retry_ms = retry_us < 0 ? -1 : retry_us / 1000;
	return (hf);
}

/* Write the cluster's channels as one HANDOFF_REC_CLUSTER record. */
static void
cluster_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Cluster__ClusterState	 st =
	    VSPC__HANDOFF__CLUSTER__CLUSTER_STATE__INIT;
	Vspc__Handoff__Cluster__Rchan		*hr;
	Vspc__Handoff__Cluster__Moved		*hm;
	Vspc__Handoff__Cluster__PendAttach	*hp;
	struct hmap_entry			*e;
	struct fwd				*f;
	struct rchan				*rc;
	struct moved				*m;
	struct pend_attach			*pa;
	uint8_t					*buf;
	size_t					 len, i;

	if (!cluster_on)
		return;
	st.next_channel = cluster_next_channel;
	st.started = cluster_started;
	st.fwds = xcalloc(cluster_fwds.n + 1, sizeof *st.fwds);
	st.rchans = xcalloc(cluster_rchans.n + 1, sizeof *st.rchans);
	for (i = 0; i < cluster_fwds.nb; i++) {
		for (e = cluster_fwds.b[i]; e != NULL; e = e->next) {
			f = hmap_data(e, struct fwd, entry);
			if (f->c != NULL && st.n_fwds < cluster_fwds.n)
				st.fwds[st.n_fwds++] = cluster_ho_fwd(f);
		}
	}
	for (i = 0; i < cluster_rchans.nb; i++) {
		for (e = cluster_rchans.b[i]; e != NULL; e = e->next) {
			rc = hmap_data(e, struct rchan, entry);
			if (rc->c == NULL || st.n_rchans >= cluster_rchans.n)
				continue;
			hr = xmalloc(sizeof *hr);
			vspc__handoff__cluster__rchan__init(hr);
			hr->client = rc->c->id;
			hr->node = rc->node;
			hr->channel = rc->channel;
			hr->credit = rc->credit;
			st.rchans[st.n_rchans++] = hr;
		}
	}
	TAILQ_FOREACH(m, &cluster_moved_channels, entry)
		st.n_moved++;
	st.moved = xcalloc(st.n_moved + 1, sizeof *st.moved);
	i = 0;
	TAILQ_FOREACH(m, &cluster_moved_channels, entry) {
		hm = xmalloc(sizeof *hm);
		vspc__handoff__cluster__moved__init(hm);
		hm->idkey = m->idkey;
		hm->key = m->key;
		hm->owner = m->owner;
		hm->until = m->until;
		st.moved[i++] = hm;
	}
	TAILQ_FOREACH(pa, &cluster_pend_attaches, entry)
		st.n_pending++;
	st.pending = xcalloc(st.n_pending + 1, sizeof *st.pending);
	i = 0;
	TAILQ_FOREACH(pa, &cluster_pend_attaches, entry) {
		hp = xmalloc(sizeof *hp);
		vspc__handoff__cluster__pend_attach__init(hp);
		hp->node = pa->node;
		hp->key = pa->key;
		hp->packed.data = pa->packed;
		hp->packed.len = pa->len;
		st.pending[i++] = hp;
	}

	len = vspc__handoff__cluster__cluster_state__get_packed_size(&st);
	buf = xmalloc(len + 1);
	vspc__handoff__cluster__cluster_state__pack(&st, buf);
	handoff_add(h, HANDOFF_REC_CLUSTER, buf, len);
	log_debug("%s: %zu forwarded, %zu served, %zu moved, %zu waiting, "
	    "%zu bytes", __func__, st.n_fwds, st.n_rchans, st.n_moved,
	    st.n_pending, len);
	free(buf);

	for (i = 0; i < st.n_fwds; i++) {
		free(st.fwds[i]->pending.data);
		free(st.fwds[i]->seed.data);
		free(st.fwds[i]);
	}
	for (i = 0; i < st.n_rchans; i++)
		free(st.rchans[i]);
	for (i = 0; i < st.n_moved; i++)
		free(st.moved[i]);
	for (i = 0; i < st.n_pending; i++)
		free(st.pending[i]);
	free(st.fwds);
	free(st.rchans);
	free(st.moved);
	free(st.pending);
}

static int
cluster_ho_fwd_restore(const Vspc__Handoff__Cluster__Fwd *hf, char **err)
{
	struct client	*c;
	struct fwd	*f;

	if ((c = client_find(hf->client)) == NULL) {
		log_warnx("%s: channel %u: client %u was not handed over",
		    __func__, hf->channel, hf->client);
		return (0);
	}
	if (c->kind == CLIENT_REMOTE || c->cluster != NULL) {
		xasprintf(err, "cluster: channel %u: client %u is not a "
		    "forwarded person", hf->channel, hf->client);
		return (-1);
	}
	if (hf->state >= FWD_STATE_MAX || hf->mode >= ATTACH_MAX) {
		xasprintf(err, "cluster: channel %u: bad state", hf->channel);
		return (-1);
	}
	f = xcalloc(1, sizeof *f);
	f->c = c;
	f->channel = hf->channel;
	snprintf(f->idkey, sizeof f->idkey, "%u", f->channel);
	f->key = xstrdup(hf->key);
	if (*hf->node != '\0')
		f->node = xstrdup(hf->node);
	f->state = hf->state;
	f->mode = hf->mode;
	f->initial = hf->initial;
	f->lost = hf->lost;
	if (hf->has_pending) {
		f->pending = evbuffer_new();
		evbuffer_add(f->pending, hf->pending.data, hf->pending.len);
	}
	if (hf->has_seed) {
		f->seed = evbuffer_new();
		evbuffer_add(f->seed, hf->seed.data, hf->seed.len);
	}
	f->deadline = hf->deadline;
	f->refused = hf->refused;
	f->req = (char)hf->req;
	f->req_lines = hf->req_lines;
	f->next_off = hf->next_off;
	f->stream = hf->stream;
	f->have_off = hf->have_off;
	f->unacked = hf->unacked;
	if (hf->retry_ms >= 0) {
		f->retry = evtimer_new(server_base, cluster_fwd_retry_cb, f);
		f->ho_retry_ms = hf->retry_ms + 1;
	}
	c->cluster = f;
	if (c->console == NULL)
		c->console = console_find(f->key);
	hmap_insert(&cluster_fwds, &f->entry, f->idkey);
	return (0);
}

static int
cluster_ho_rchan_restore(const Vspc__Handoff__Cluster__Rchan *hr,
    char **err)
{
	struct client	*c;
	struct rchan	*rc;

	if ((c = client_find(hr->client)) == NULL) {
		log_warnx("%s: channel %s/%u: client %u was not handed over",
		    __func__, hr->node, hr->channel, hr->client);
		return (0);
	}
	if (c->kind != CLIENT_REMOTE || c->cluster != NULL) {
		xasprintf(err, "cluster: channel %s/%u: client %u is not a "
		    "remote client", hr->node, hr->channel, hr->client);
		return (-1);
	}
	rc = xcalloc(1, sizeof *rc);
	rc->node = xstrdup(hr->node);
	rc->channel = hr->channel;
	xasprintf(&rc->idkey, "%s/%u", rc->node, rc->channel);
	rc->c = c;
	rc->credit = hr->credit;
	c->cluster = rc;
	c->proto = &cluster_remote_proto;
	hmap_insert(&cluster_rchans, &rc->entry, rc->idkey);
	return (0);
}

/* Tie the handed-over channels to their clients and consoles. */
static int
cluster_handoff_restore(struct handoff *h, const uint8_t *buf, size_t len,
    char **err)
{
	Vspc__Handoff__Cluster__ClusterState	*st;
	struct moved				*m;
	struct pend_attach			*pa;
	size_t					 i;
	int					 rv = -1;

	if ((st = vspc__handoff__cluster__cluster_state__unpack(NULL, len,
	    buf)) == NULL) {
		xasprintf(err, "cluster: undecodable hand-over record");
		return (-1);
	}
	if (cluster_fwds.b == NULL)
		hmap_init(&cluster_fwds);
	if (cluster_rchans.b == NULL)
		hmap_init(&cluster_rchans);
	cluster_handed = 1;
	if (st->next_channel > cluster_next_channel)
		cluster_next_channel = st->next_channel;
	if (st->started != 0)
		cluster_started = st->started;
	for (i = 0; i < st->n_fwds; i++) {
		if (cluster_ho_fwd_restore(st->fwds[i], err) == -1)
			goto out;
	}
	for (i = 0; i < st->n_rchans; i++) {
		if (cluster_ho_rchan_restore(st->rchans[i], err) == -1)
			goto out;
	}
	for (i = 0; i < st->n_moved; i++) {
		m = xcalloc(1, sizeof *m);
		m->idkey = xstrdup(st->moved[i]->idkey);
		m->key = xstrdup(st->moved[i]->key);
		m->owner = xstrdup(st->moved[i]->owner);
		m->until = st->moved[i]->until;
		TAILQ_INSERT_TAIL(&cluster_moved_channels, m, entry);
	}
	for (i = 0; i < st->n_pending; i++) {
		pa = xcalloc(1, sizeof *pa);
		pa->node = xstrdup(st->pending[i]->node);
		pa->key = xstrdup(st->pending[i]->key);
		pa->len = st->pending[i]->packed.len;
		pa->packed = xmalloc(pa->len + 1);
		memcpy(pa->packed, st->pending[i]->packed.data, pa->len);
		TAILQ_INSERT_TAIL(&cluster_pend_attaches, pa, entry);
	}
	log_debug("%s: %zu forwarded, %zu served, %zu moved, %zu waiting",
	    __func__, st->n_fwds, st->n_rchans, st->n_moved, st->n_pending);
	rv = 0;
out:
	vspc__handoff__cluster__cluster_state__free_unpacked(st, NULL);
	return (rv);
}

/* After the commit: heartbeat, retries and the timers of moves. */
static void
cluster_handoff_resume(void)
{
	struct hmap_entry	*e;
	struct fwd		*f;
	struct rchan		*rc;
	struct console		*con;
	struct timeval		 tv;
	u_int			 i;

	if (!cluster_on)
		return;
	tv.tv_sec = server_conf->cluster_heartbeat != 0 ?
	    server_conf->cluster_heartbeat : 1;
	tv.tv_usec = 0;
	if (cluster_heartbeat_ev != NULL &&
	    !event_pending(cluster_heartbeat_ev, EV_TIMEOUT, NULL)) {
		event_add(cluster_heartbeat_ev, &tv);
		cluster_heartbeat(-1, 0, NULL);
	}
	for (i = 0; i < cluster_fwds.nb; i++) {
		for (e = cluster_fwds.b[i]; e != NULL; e = e->next) {
			f = hmap_data(e, struct fwd, entry);
			if (f->ho_retry_ms == 0 || f->retry == NULL)
				continue;
			tv.tv_sec = (f->ho_retry_ms - 1) / 1000;
			tv.tv_usec = (f->ho_retry_ms - 1) % 1000 * 1000;
			f->ho_retry_ms = 0;
			evtimer_add(f->retry, &tv);
		}
	}
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if ((con->flags & CONSOLE_HANDOVER) &&
		    (con->handover_timer == NULL ||
		    !evtimer_pending(con->handover_timer, NULL))) {
			if (con->handover_timer == NULL)
				con->handover_timer = evtimer_new(server_base,
				    cluster_handover_timeout, con);
			tv.tv_sec = CLUSTER_HANDOVER_WAIT;
			tv.tv_usec = 0;
			evtimer_add(con->handover_timer, &tv);
		}
		if ((con->flags & CONSOLE_REMOTE) &&
		    con->vmotion.state == VMOTION_PEERED &&
		    con->vmotion.dst != NULL && (con->vmotion.timer == NULL ||
		    !evtimer_pending(con->vmotion.timer, NULL))) {
			if (con->vmotion.timer == NULL)
				con->vmotion.timer = evtimer_new(server_base,
				    cluster_vmotion_timer, con);
			tv.tv_sec = server_conf->vm_token_ttl;
			tv.tv_usec = 0;
			evtimer_add(con->vmotion.timer, &tv);
		}
	}
	/* Output that came while frozen, within the credit they had. */
	for (i = 0; i < cluster_rchans.nb; i++) {
		for (e = cluster_rchans.b[i]; e != NULL; e = e->next) {
			rc = hmap_data(e, struct rchan, entry);
			if (rc->c != NULL)
				cluster_remote_flush(rc->c);
		}
	}
}

const struct handoff_module cluster_handoff_module = {
	.name = "cluster",
	.rec = HANDOFF_REC_CLUSTER,
	.enabled = cluster_enabled,
	.busy = cluster_handoff_busy,
	.save = cluster_handoff_save,
	.restore = cluster_handoff_restore,
	.resume = cluster_handoff_resume
};
