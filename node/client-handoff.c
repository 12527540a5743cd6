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
 * Hot upgrade: people's sessions to and from their records in
 * proto/handoff.proto, of every kind (each kind packs its own state), and
 * pausing them while the node quiesces.  client.c rebuilds a session
 * (client_adopted); this file only reads and writes the records.  A
 * forwarded person's channel (c->cluster) is cluster.c's to relink, an
 * attached vspcctl's connection control.c's.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "proto/handoff.pb-c.h"

/* The client kind's input handling by name ("console", "compat", ...). */
static const struct client_proto *
client_handoff_proto(const char *name)
{
	if (strcmp(name, cmdline_proto.name) == 0)
		return (&cmdline_proto);
	if (strcmp(name, compat_proto.name) == 0)
		return (&compat_proto);
	if (strcmp(name, cluster_remote_proto.name) == 0)
		return (&cluster_remote_proto);
	return (control_client_proto(name));
}

/* Hot upgrade: stop (1) or resume (0) reading from every person. */
static void
client_handoff_pause(int on)
{
	struct client	*c;

	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->fd == -1 || c->ev_read == NULL ||
		    (c->flags & (CLIENT_DEAD|CLIENT_CLOSING|CLIENT_READ_OFF)))
			continue;
		if (on)
			event_del(c->ev_read);
		else
			event_add(c->ev_read, NULL);
	}
}

/* Hot upgrade: every client, of every kind, with its own state. */
static void
client_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Client	 m;
	Vspc__Handoff__Telnet	 tn;
	struct client		*c, *o;
	uint8_t			*pd;
	size_t			 pdlen;

	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->flags & CLIENT_DEAD)
			continue;
		/* An attached vspcctl goes with its control connection. */
		if (control_client_proto(c->proto->name) != NULL &&
		    !control_client_carried(c))
			continue;
		vspc__handoff__client__init(&m);
		vspc__handoff__telnet__init(&tn);
		m.id = c->id;
		m.fd = c->fd != -1 ? handoff_add_fd(h, c->fd) : -1;
		m.kind = c->kind;
		m.proto = (char *)c->proto->name;
		m.flags = c->flags & ~CLIENT_WRITE_WAIT;
		if (c->tn.ops != NULL) {
			telnet_handoff_save(&c->tn, &tn);
			m.tn = &tn;
			m.has_tn = 1;
		}
		if (c->out != NULL) {
			m.has_out = 1;
			handoff_evbuffer_bytes(c->out, &m.out);
		}
		if (c->console != NULL) {
			m.console = c->console->key;
			m.holder = c->console->holder == c;
			TAILQ_FOREACH(o, &c->console->clients, centry) {
				if (o == c)
					m.listed = 1;
			}
		}
		m.off = c->off;
		m.stream = c->stream;
		m.addr = c->addr;
		if (c->user != NULL)
			m.user = c->user;
		m.created = c->created;
		m.last_input = c->last_input;
		m.stuck_since = c->stuck_since;
		m.bytes_in = c->bytes_in;
		m.bytes_out = c->bytes_out;
		m.skipped = c->skipped;
		pd = NULL;
		pdlen = 0;
		if (c->proto->handoff_pack != NULL)
			pdlen = c->proto->handoff_pack(c, &pd);
		m.proto_data.data = pd;
		m.proto_data.len = pdlen;
		handoff_add_msg(h, HANDOFF_REC_CLIENT, &m.base);
		free(pd);
		free(m.out.data);
	}
}

/*
 * Hot upgrade: rebuild a client and put it back on its console.  A
 * forwarded person's channel (c->cluster) is cluster.c's to relink, an
 * attached vspcctl's connection control.c's.
 */
static int
client_handoff_restore(struct handoff *h, const uint8_t *data, size_t len,
    char **err)
{
	Vspc__Handoff__Client		*m;
	const struct client_proto	*proto;
	struct client			*c;
	struct console			*con = NULL;
	int				 fd = -1, rc = -1;

	if ((m = vspc__handoff__client__unpack(NULL, len, data)) == NULL) {
		*err = xstrdup("malformed client record");
		return (-1);
	}
	if ((proto = client_handoff_proto(m->proto)) == NULL) {
		xasprintf(err, "client %u: unknown kind %s", m->id, m->proto);
		goto out;
	}
	if (m->fd != -1 && (fd = handoff_take_fd(h, m->fd)) == -1) {
		xasprintf(err, "client %u: no descriptor", m->id);
		goto out;
	}
	if (m->console != NULL && *m->console != '\0' &&
	    (con = console_find(m->console)) == NULL) {
		xasprintf(err, "client %u: console %s unknown", m->id,
		    m->console);
		if (fd != -1)
			close(fd);
		goto out;
	}
	c = xcalloc(1, sizeof *c);
	c->id = m->id;
	c->fd = fd;
	c->kind = m->kind < CLIENT_KIND_MAX ? m->kind : CLIENT_CONSOLE;
	c->proto = proto;
	c->flags = m->flags;
	if (proto->handoff_unpack != NULL && proto->handoff_unpack(c,
	    m->proto_data.data, m->proto_data.len) == -1) {
		xasprintf(err, "client %u: malformed state", m->id);
		if (fd != -1)
			close(fd);
		free(c);
		goto out;
	}
	if (m->has_tn && m->tn != NULL && c->tn.ops != NULL)
		telnet_handoff_restore(&c->tn, m->tn);
	if (m->has_out) {
		c->out = evbuffer_new();
		evbuffer_add(c->out, m->out.data, m->out.len);
	}
	c->off = m->off;
	c->stream = m->stream;
	snprintf(c->addr, sizeof c->addr, "%s", m->addr);
	/* Its per-source slot again, never refused: it is already here. */
	if (fd != -1 && proto == &cmdline_proto)
		c->limit = server_limit_take(LISTEN_CONSOLE, c->addr);
	else if (fd != -1 && proto == &compat_proto)
		c->limit = server_limit_take(LISTEN_COMPAT, c->addr);
	if (m->user != NULL && *m->user != '\0')
		c->user = xstrdup(m->user);
	c->created = m->created;
	c->last_input = m->last_input;
	c->stuck_since = m->stuck_since;
	c->bytes_in = m->bytes_in;
	c->bytes_out = m->bytes_out;
	c->skipped = m->skipped;
	client_adopted(c);
	c->console = con;
	if (con != NULL && m->listed) {
		TAILQ_INSERT_TAIL(&con->clients, c, centry);
		con->nclients++;
	}
	if (con != NULL && m->holder)
		con->holder = c;
	rc = 0;
out:
	vspc__handoff__client__free_unpacked(m, NULL);
	return (rc);
}

const struct handoff_module client_handoff_module = {
	.name = "client",
	.rec = HANDOFF_REC_CLIENT,
	.pause = client_handoff_pause,
	.save = client_handoff_save,
	.restore = client_handoff_restore
};
