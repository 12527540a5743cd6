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
 * Hot upgrade: consoles to and from their records in
 * proto/handoff.proto.  Consoles come first: connections and people are
 * linked back to them when their own records are read.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "proto/handoff.pb-c.h"

/* Hot upgrade: every console with its history, vMotion and held input. */
static void
console_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Console	 m;
	Vspc__Handoff__Vmotion	 vm;
	struct console		*con;
	struct vmotion		*mo;
	uint64_t		 start;

	TAILQ_FOREACH(con, &all_consoles, gentry) {
		vspc__handoff__console__init(&m);
		vspc__handoff__vmotion__init(&vm);
		m.key = con->key;
		if (con->label != NULL) {
			m.label = con->label;
			m.has_label = 1;
		}
		if (con->name != NULL) {
			m.name = con->name;
			m.has_name = 1;
		}
		if (con->uri != NULL) {
			m.uri = con->uri;
			m.has_uri = 1;
		}
		m.epoch = con->epoch;
		m.claim_known = con->claim_known;
		m.stream = con->stream;
		m.flags = con->flags;
		mo = &con->vmotion;
		vm.state = mo->state;
		vm.seq.data = mo->seq;
		vm.seq.len = mo->seqlen;
		vm.secret.data = mo->secret;
		vm.secret.len = sizeof mo->secret;
		vm.src = mo->src != NULL ? mo->src->id : 0;
		vm.dst = mo->dst != NULL ? mo->dst->id : 0;
		vm.timer_us = core_timer_left(mo->timer);
		vm.id = mo->id;
		if (mo->node != NULL)
			vm.node = mo->node;
		vm.began_sec = mo->began.tv_sec;
		vm.began_nsec = mo->began.tv_nsec;
		m.vmotion = &vm;
		if (con->held != NULL) {
			m.has_held = 1;
			handoff_evbuffer_bytes(con->held, &m.held);
		}
		start = ring_start(&con->history);
		m.ring.len = con->history.len;
		m.ring.data = xmalloc(m.ring.len + 1);
		m.ring.len = ring_copy(&con->history, start, m.ring.data,
		    m.ring.len);
		m.ring_end = con->history.end;
		if (con->log != NULL)
			m.log_path = (char *)logfile_path(con->log);
		m.holder = con->holder != NULL ? con->holder->id : 0;
		m.created = con->created;
		m.connected = con->connected;
		m.left = con->left;
		m.input_notice = con->input_notice;
		if (con->owner != NULL)
			m.owner = con->owner;
		if (con->rstate != NULL)
			m.rstate = con->rstate;
		m.rsince = con->rsince;
		m.vmotions = con->vmotions;
		m.input_dropped = con->input_dropped;
		m.handover_us = core_timer_left(con->handover_timer);
		handoff_add_msg(h, HANDOFF_REC_CONSOLE, &m.base);
		free(m.held.data);
		free(m.ring.data);
	}
}

/*
 * Hot upgrade: rebuild one console.  Its connections and people are
 * linked back when their records are read; the handover timer is
 * cluster.c's.
 */
static int
console_handoff_restore(struct handoff *h, const uint8_t *data, size_t len,
    char **err)
{
	Vspc__Handoff__Console	*m;
	Vspc__Handoff__Vmotion	*vm;
	struct console		*con;
	struct vmotion		*mo;

	if ((m = vspc__handoff__console__unpack(NULL, len, data)) == NULL) {
		*err = xstrdup("malformed console record");
		return (-1);
	}
	if ((con = console_get_key(m->key)) == NULL) {
		xasprintf(err, "console %s: bad key", m->key);
		vspc__handoff__console__free_unpacked(m, NULL);
		return (-1);
	}
	if (m->has_name) {
		free(con->name);
		con->name = xstrdup(m->name);
	}
	if (m->has_uri) {
		free(con->uri);
		con->uri = xstrdup(m->uri);
	}
	con->epoch = m->epoch;
	con->stream = m->stream;
	con->flags = m->flags & ~CONSOLE_CLAIMING;
	con->claim_known = m->claim_known;
	if ((vm = m->vmotion) != NULL) {
		mo = &con->vmotion;
		mo->state = vm->state < VMOTION_STATE_MAX ? vm->state :
		    VMOTION_NONE;
		mo->seqlen = vm->seq.len > VMOTION_SEQ_MAX ? VMOTION_SEQ_MAX :
		    vm->seq.len;
		if (mo->seqlen != 0)
			memcpy(mo->seq, vm->seq.data, mo->seqlen);
		if (vm->secret.len == sizeof mo->secret)
			memcpy(mo->secret, vm->secret.data, sizeof mo->secret);
		mo->id = vm->id;
		free(mo->node);
		mo->node = vm->node != NULL && *vm->node != '\0' ?
		    xstrdup(vm->node) : NULL;
		mo->began.tv_sec = vm->began_sec;
		mo->began.tv_nsec = vm->began_nsec;
		if (mo->state != VMOTION_NONE)
			vmotion_restore_timer(con, vm->timer_us);
	}
	if (m->has_held) {
		if (con->held == NULL)
			con->held = evbuffer_new();
		evbuffer_add(con->held, m->held.data, m->held.len);
	}
	ring_free(&con->history);
	ring_init(&con->history, server_conf->console_history);
	ring_restore(&con->history, m->ring.data, m->ring.len, m->ring_end);
	if (con->log != NULL) {
		logfile_free(con->log);
		con->log = NULL;
	}
	if (m->log_path != NULL && *m->log_path != '\0')
		con->log = logfile_new(m->log_path);
	con->created = m->created;
	con->connected = m->connected;
	con->left = m->left;
	con->input_notice = m->input_notice;
	free(con->owner);
	con->owner = m->owner != NULL && *m->owner != '\0' ?
	    xstrdup(m->owner) : NULL;
	free(con->rstate);
	con->rstate = m->rstate != NULL && *m->rstate != '\0' ?
	    xstrdup(m->rstate) : NULL;
	con->rsince = m->rsince;
	con->vmotions = m->vmotions;
	con->input_dropped = m->input_dropped;
	vspc__handoff__console__free_unpacked(m, NULL);
	return (0);
}

/* Hot upgrade: a vMotion token being stored has no record yet. */
static int
console_handoff_busy(char *why, size_t len)
{
	struct console	*con;

	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (con->vmotion.state == VMOTION_WAIT_STORE) {
			snprintf(why, len, "console %s: vMotion token being "
			    "stored", con->key);
			return (1);
		}
	}
	return (0);
}

const struct handoff_module console_handoff_module = {
	.name = "console",
	.rec = HANDOFF_REC_CONSOLE,
	.busy = console_handoff_busy,
	.save = console_handoff_save,
	.restore = console_handoff_restore
};
