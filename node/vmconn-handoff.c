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
 * Hot upgrade: ESXi connections to and from their records in
 * proto/handoff.proto, with their descriptors, and pausing them while
 * the node quiesces.  vmconn.c rebuilds a connection (vmconn_adopt,
 * vmconn_adopted); this file only reads and writes the records.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "proto/handoff.pb-c.h"

/* Hot upgrade: stop (1) or resume (0) reading from every host. */
static void
vmconn_handoff_pause(int on)
{
	struct vmconn	*v;

	TAILQ_FOREACH(v, &all_vmconns, gentry) {
		if (v->flags & (VMCONN_DEAD|VMCONN_READ_OFF))
			continue;
		if (on)
			event_del(v->ev_read);
		else
			event_add(v->ev_read, NULL);
	}
}

/* Hot upgrade: every live connection, its codec and its buffers. */
static void
vmconn_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Vmconn	 m;
	Vspc__Handoff__Telnet	 tn;
	struct vmconn		*v;
	struct console		*con;

	TAILQ_FOREACH(v, &all_vmconns, gentry) {
		if (v->flags & VMCONN_DEAD)
			continue;
		vspc__handoff__vmconn__init(&m);
		vspc__handoff__telnet__init(&tn);
		m.id = v->id;
		m.fd = handoff_add_fd(h, v->fd);
		m.role = v->role;
		m.flags = v->flags & ~(VMCONN_WRITE_WAIT|VMCONN_CORK);
		telnet_handoff_save(&v->tn, &tn);
		m.tn = &tn;
		m.uuid.data = v->uuid;
		m.uuid.len = UUID_LEN;
		m.have_uuid = v->have_uuid;
		if (v->name != NULL) {
			m.name = v->name;
			m.has_name = 1;
		}
		if (v->uri != NULL) {
			m.uri = v->uri;
			m.has_uri = 1;
		}
		if (v->label != NULL) {
			m.label = v->label;
			m.has_label = 1;
		}
		m.direction = v->direction;
		if ((con = v->console) != NULL) {
			m.console = con->key;
			m.current = con->vm == v;
			m.vmotion_src = con->vmotion.src == v;
			m.vmotion_dst = con->vmotion.dst == v;
		}
		m.vmotion_id = v->vmotion_id;
		m.addr = v->addr;
		m.created = v->created;
		m.bytes_in = v->bytes_in;
		m.bytes_out = v->bytes_out;
		handoff_evbuffer_bytes(v->out, &m.out);
		if (v->held != NULL) {
			m.has_held = 1;
			handoff_evbuffer_bytes(v->held, &m.held);
		}
		m.timeout_us = core_timer_left(v->ev_timeout);
		handoff_add_msg(h, HANDOFF_REC_VMCONN, &m.base);
		free(m.out.data);
		free(m.held.data);
	}
}

/* Hot upgrade: rebuild a connection and link it to its console. */
static int
vmconn_handoff_restore(struct handoff *h, const uint8_t *data, size_t len,
    char **err)
{
	Vspc__Handoff__Vmconn	*m;
	struct vmconn		*v;
	struct console		*con = NULL;
	int			 fd;

	if ((m = vspc__handoff__vmconn__unpack(NULL, len, data)) == NULL) {
		*err = xstrdup("malformed vm connection record");
		return (-1);
	}
	if ((fd = handoff_take_fd(h, m->fd)) == -1) {
		xasprintf(err, "vm conn %u: no descriptor", m->id);
		vspc__handoff__vmconn__free_unpacked(m, NULL);
		return (-1);
	}
	if (m->console != NULL && *m->console != '\0' &&
	    (con = console_find(m->console)) == NULL) {
		xasprintf(err, "vm conn %u: console %s unknown", m->id,
		    m->console);
		close(fd);
		vspc__handoff__vmconn__free_unpacked(m, NULL);
		return (-1);
	}
	v = vmconn_adopt(m->id, fd);
	v->role = m->role < VMCONN_ROLE_MAX ? m->role : VMCONN_REFUSED;
	v->flags = m->flags;
	if (m->tn != NULL)
		telnet_handoff_restore(&v->tn, m->tn);
	if (m->uuid.len == UUID_LEN)
		memcpy(v->uuid, m->uuid.data, UUID_LEN);
	v->have_uuid = m->have_uuid;
	v->name = m->has_name ? xstrdup(m->name) : NULL;
	v->uri = m->has_uri ? xstrdup(m->uri) : NULL;
	v->label = m->has_label ? xstrdup(m->label) : NULL;
	v->direction = m->direction;
	v->console = con;
	if (con != NULL) {
		if (m->current)
			con->vm = v;
		if (m->vmotion_src)
			con->vmotion.src = v;
		if (m->vmotion_dst)
			con->vmotion.dst = v;
	}
	v->vmotion_id = m->vmotion_id;
	snprintf(v->addr, sizeof v->addr, "%s", m->addr);
	/* Its per-source slot again, never refused: it is already here. */
	v->limit = server_limit_take(LISTEN_VM, v->addr);
	v->created = m->created;
	v->bytes_in = m->bytes_in;
	v->bytes_out = m->bytes_out;
	if (m->has_held) {
		v->held = evbuffer_new();
		evbuffer_add(v->held, m->held.data, m->held.len);
	}
	if (m->out.len != 0) {
		v->out = evbuffer_new();
		evbuffer_add(v->out, m->out.data, m->out.len);
	}
	vmconn_adopted(v, m->timeout_us);
	vspc__handoff__vmconn__free_unpacked(m, NULL);
	return (0);
}

/* Hot upgrade: a connection waiting for the store cannot be written down. */
static int
vmconn_handoff_busy(char *why, size_t len)
{
	struct vmconn	*v;

	TAILQ_FOREACH(v, &all_vmconns, gentry) {
		if (v->references != 0 || (v->flags & VMCONN_PEERING)) {
			snprintf(why, len, "vm conn %u waits for the store",
			    v->id);
			return (1);
		}
	}
	return (0);
}

const struct handoff_module vmconn_handoff_module = {
	.name = "vmconn",
	.rec = HANDOFF_REC_VMCONN,
	.pause = vmconn_handoff_pause,
	.busy = vmconn_handoff_busy,
	.save = vmconn_handoff_save,
	.restore = vmconn_handoff_restore
};
