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
 * Requests about another node's console or state (vm show, who VM, log,
 * disconnect, drain NODE) are relayed to that node over the peer link
 * (ControlRelay, proto/vspc.proto); its answer comes back packed and is
 * passed on to the tool unchanged.  A relayed request is answered to a
 * sink naming the node that relayed it; it is never relayed again.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "proto/control.pb-c.h"
#include "control-int.h"

struct ctl_relays		 ctl_relays =
    TAILQ_HEAD_INITIALIZER(ctl_relays);
uint64_t			 ctl_next_relay;

/* Forget a relayed request. */
void
ctl_relay_free(struct ctl_relay *rl)
{
	TAILQ_REMOVE(&ctl_relays, rl, entry);
	free(rl->node);
	free(rl);
}

/* Send a request to the node that can answer it; the answer comes back. */
void
ctl_relay(struct ctl_sink *s, Vspc__Ctl__Request *req, const char *node)
{
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__ControlRelay	 m = VSPC__CONTROL_RELAY__INIT;
	struct ctl_relay	*rl;
	struct peer		*p;
	uint8_t			*buf;
	size_t			 len;

	if (s->conn == 0) {
		/* Relayed already: never twice. */
		ctl_error(s, "node %s does not hold this any more",
		    server_conf->node_id);
		return;
	}
	if ((p = peer_find(node)) == NULL) {
		ctl_error(s, "node %s cannot be reached", node);
		return;
	}
	req->version = CTL_PROTOCOL;
	len = vspc__ctl__request__get_packed_size(req);
	buf = xmalloc(len + 1);
	vspc__ctl__request__pack(req, buf);
	m.id = ++ctl_next_relay;
	m.request.data = buf;
	m.request.len = len;
	env.msg_case = VSPC__ENVELOPE__MSG_CONTROL_RELAY;
	env.control_relay = &m;
	if (peer_send(p, &env) == -1) {
		free(buf);
		ctl_error(s, "node %s cannot be reached", node);
		return;
	}
	free(buf);
	rl = xcalloc(1, sizeof *rl);
	rl->id = m.id;
	rl->conn = s->conn;
	rl->node = xstrdup(node);
	rl->created = server_now;
	rl->streaming = (req->command == VSPC__CTL__COMMAND__LOG &&
	    req->follow);
	TAILQ_INSERT_TAIL(&ctl_relays, rl, entry);
	log_debug("control: request %d relayed to node %s as %llu",
	    req->command, node, (unsigned long long)rl->id);
}

/* Send a request about a console to the node that owns it. */
void
ctl_relay_owner(struct ctl_sink *s, Vspc__Ctl__Request *req,
    struct console *con)
{
	free(req->target);
	req->target = xstrdup(con->key);
	ctl_relay(s, req, con->owner);
}

/* Tell the node to stop answering a relayed request (a stream). */
void
ctl_relay_cancel(struct ctl_relay *rl)
{
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__ControlRelay	 m = VSPC__CONTROL_RELAY__INIT;
	struct peer		*p;

	m.id = rl->id;
	env.msg_case = VSPC__ENVELOPE__MSG_CONTROL_RELAY;
	env.control_relay = &m;
	if ((p = peer_find(rl->node)) != NULL)
		(void)peer_send(p, &env);
	ctl_relay_free(rl);
}

/* An answer to a request this node relayed. */
void
control_relay_reply(struct peer *p, const Vspc__ControlRelayReply *m)
{
	struct ctl_relay	*rl;
	struct ctl_conn		*cc;

	TAILQ_FOREACH(rl, &ctl_relays, entry) {
		if (rl->id == m->id && strcmp(rl->node, peer_node(p)) == 0)
			break;
	}
	if (rl == NULL)
		return;
	if ((cc = ctl_conn_find(rl->conn)) == NULL) {
		ctl_relay_cancel(rl);
		return;
	}
	ctl_frame(cc->bev, m->reply.data, m->reply.len);
	if (!m->more)
		ctl_relay_free(rl);
}

/* A request another node relayed to this one. */
void
control_relay_request(struct peer *p, const Vspc__ControlRelay *m)
{
	Vspc__Ctl__Request	*req;
	struct ctl_follow	*f, *f1;
	struct ctl_sink		 s;

	if (m->request.len == 0) {
		TAILQ_FOREACH_SAFE(f, &ctl_follows, entry, f1) {
			if (f->sink.conn == 0 && f->sink.id == m->id &&
			    strcmp(f->sink.node, peer_node(p)) == 0)
				ctl_follow_free(f);
		}
		return;
	}
	memset(&s, 0, sizeof s);
	s.node = (char *)peer_node(p);
	s.id = m->id;
	req = vspc__ctl__request__unpack(NULL, m->request.len,
	    m->request.data);
	if (req == NULL) {
		ctl_error(&s, "bad relayed request");
		return;
	}
	ctl_dispatch(&s, NULL, req, 0);
	vspc__ctl__request__free_unpacked(req, NULL);
}

/* Timer: fail relayed requests whose node is gone or silent. */
void
ctl_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct ctl_relay	*rl, *rl1;
	struct ctl_sink		 s;

	TAILQ_FOREACH_SAFE(rl, &ctl_relays, entry, rl1) {
		memset(&s, 0, sizeof s);
		s.conn = rl->conn;
		if (peer_find(rl->node) == NULL) {
			ctl_error(&s, "node %s is gone", rl->node);
			ctl_relay_free(rl);
		} else if (!rl->streaming &&
		    server_now - rl->created > CTL_RELAY_TIMEOUT) {
			ctl_error(&s, "node %s did not answer", rl->node);
			ctl_relay_free(rl);
		}
	}
}
