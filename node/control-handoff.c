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
 * Hot upgrade (handoff.c).  The requester of "node upgrade" gets its
 * answer from the old process, or, when the request was relayed, from
 * the new one.  The listeners (Unix and TCP), control connections,
 * attached ones with their client and the framing of its output, and
 * log --follow are handed over.
 */

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "proto/control.pb-c.h"
#include "control-int.h"
#include "proto/handoff.pb-c.h"

static struct ctl_sink	 ctl_upgrade_sink;
static int		 ctl_upgrading;
static char		*ctl_reply_node;	/* New side: answer this... */
static uint64_t		 ctl_reply_id;		/* ...relayed request. */

/*
 * Write what is queued to a local connection now: the process leaves.
 * The bufferevent's output cannot be drained from outside (its front is
 * frozen), so the bytes are copied and written directly.
 */
static void
ctl_flush_now(u_int id)
{
	struct ctl_conn	*cc;
	struct evbuffer	*out;
	struct pollfd	 pfd;
	ProtobufCBinaryData copy;
	u_char		*buf;
	size_t		 len, done = 0;
	ssize_t		 n;
	int		 fd;

	if ((cc = ctl_conn_find(id)) == NULL)
		return;
	out = bufferevent_get_output(cc->bev);
	fd = bufferevent_getfd(cc->bev);
	if ((len = evbuffer_get_length(out)) == 0)
		return;
	/* Copied as for a hand-over record: the front is frozen. */
	handoff_evbuffer_bytes(out, &copy);
	buf = copy.data;
	while (done < len) {
		n = write(fd, buf + done, len - done);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			if (poll(&pfd, 1, 1000) <= 0)
				break;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += n;
	}
	free(buf);
}

static void
ctl_upgrade_done(void *arg, int ok, const char *msg)
{
	struct ctl_sink	*s = arg;

	ctl_upgrading = 0;
	if (!ok) {
		ctl_error(s, "%s", msg);
		free(s->node);
		s->node = NULL;
		return;
	}
	if (s->conn != 0) {
		ctl_ok(s, msg);
		ctl_flush_now(s->conn);
	}
	/* A relayed request is answered by the new process. */
}

/* UPGRADE: hand this node over to a new binary (or relay it). */
void
ctl_upgrade(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	if (req->node != NULL && *req->node != '\0' &&
	    strcmp(req->node, server_conf->node_id) != 0) {
		ctl_relay(s, req, req->node);
		return;
	}
	if (ctl_upgrading) {
		ctl_error(s, "an upgrade is already in progress");
		return;
	}
	free(ctl_upgrade_sink.node);
	memset(&ctl_upgrade_sink, 0, sizeof ctl_upgrade_sink);
	ctl_sink_copy(&ctl_upgrade_sink, s);
	ctl_upgrading = 1;
	log_info("control: upgrade to %s requested", req->arg != NULL &&
	    *req->arg != '\0' ? req->arg : "the running binary");
	handoff_start(req->arg, ctl_upgrade_done, &ctl_upgrade_sink);
}

/* The client kind of an attached vspcctl, by name (hand-over). */
const struct client_proto *
control_client_proto(const char *name)
{
	return (strcmp(name, ctl_client_proto.name) == 0 ?
	    &ctl_client_proto : NULL);
}

static int
ctl_conn_carried(const struct ctl_conn *cc)
{
	if (ctl_upgrading && ctl_upgrade_sink.conn == cc->id)
		return (0);
	/* An attach still waiting for a remote owner is not (busy). */
	return (!cc->attaching && (cc->c == NULL) == (cc->pair == NULL));
}

/* Hot upgrade: is an attached vspcctl's client handed over? */
int
control_client_carried(const struct client *c)
{
	const struct ctl_conn	*cc = c->proto_data;

	return (cc != NULL && cc->c == c && ctl_conn_carried(cc));
}

/* Hot upgrade: stop (1) or resume (0) reading commands and accepting. */
static void
control_handoff_pause(int on)
{
	struct ctl_conn	*cc;
	u_int		 i;

	for (i = 0; i < 2; i++) {
		if (ctl_listeners[i].lev == NULL)
			continue;
		if (on)
			evconnlistener_disable(ctl_listeners[i].lev);
		else
			evconnlistener_enable(ctl_listeners[i].lev);
	}
	for (i = 0; i < ctl_ntcp; i++) {
		if (on)
			evconnlistener_disable(ctl_tcp[i]);
		else
			evconnlistener_enable(ctl_tcp[i]);
	}
	TAILQ_FOREACH(cc, &ctl_conns, entry) {
		if (ctl_upgrading && ctl_upgrade_sink.conn == cc->id)
			continue;
		if (on) {
			bufferevent_disable(cc->bev, EV_READ);
			if (cc->pair != NULL)
				bufferevent_disable(cc->pair, EV_READ);
		} else {
			bufferevent_enable(cc->bev, EV_READ);
			if (cc->pair != NULL)
				bufferevent_enable(cc->pair, EV_READ);
		}
	}
}

/* Hot upgrade: listeners, plain connections, log --follow. */
static void
control_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Control		 m = VSPC__HANDOFF__CONTROL__INIT;
	Vspc__Handoff__Listener		*ls, **lp;
	Vspc__Handoff__ControlConn	*cm;
	Vspc__Handoff__ControlFollow	*fm;
	struct ctl_conn			*cc;
	struct ctl_follow		*f;
	size_t				 i, n;

	ls = xcalloc(2 + ctl_ntcp, sizeof *ls);
	lp = xcalloc(2 + ctl_ntcp, sizeof *lp);
	for (i = 0; i < 2 + ctl_ntcp; i++) {
		if (i >= 2) {
			/* [control] listen: kind 2. */
			vspc__handoff__listener__init(&ls[m.n_listeners]);
			ls[m.n_listeners].kind = 2;
			ls[m.n_listeners].fd = handoff_add_fd(h,
			    evconnlistener_get_fd(ctl_tcp[i - 2]));
			lp[m.n_listeners] = &ls[m.n_listeners];
			m.n_listeners++;
			continue;
		}
		if (ctl_listeners[i].lev == NULL)
			continue;
		vspc__handoff__listener__init(&ls[m.n_listeners]);
		ls[m.n_listeners].kind = i;
		ls[m.n_listeners].text = ctl_listeners[i].path;
		ls[m.n_listeners].fd = handoff_add_fd(h,
		    evconnlistener_get_fd(ctl_listeners[i].lev));
		lp[m.n_listeners] = &ls[m.n_listeners];
		m.n_listeners++;
	}
	m.listeners = lp;
	n = 0;
	TAILQ_FOREACH(cc, &ctl_conns, entry)
		n++;
	m.conns = xcalloc(n + 1, sizeof *m.conns);
	TAILQ_FOREACH(cc, &ctl_conns, entry) {
		if (!ctl_conn_carried(cc))
			continue;
		cm = xcalloc(1, sizeof *cm);
		vspc__handoff__control_conn__init(cm);
		cm->id = cc->id;
		cm->fd = handoff_add_fd(h, bufferevent_getfd(cc->bev));
		cm->readonly = cc->readonly;
		if (cc->user != NULL)
			cm->user = cc->user;
		cm->pid = cc->pid;
		cm->tcp = cc->tcp;
		if (cc->login != NULL)
			cm->login = cc->login;
		cm->attempts = cc->attempts;
		cm->ro_console = cc->ro_console;
		if (cc->c != NULL) {
			cm->client = cc->c->id;
			cm->pair = handoff_add_fd(h, bufferevent_getfd(cc->pair));
			handoff_evbuffer_bytes(bufferevent_get_input(cc->pair),
			    &cm->pair_in);
			handoff_evbuffer_bytes(bufferevent_get_output(cc->pair),
			    &cm->pair_out);
			cm->pstate = cc->pstate;
			if (cc->msg != NULL)
				handoff_evbuffer_bytes(cc->msg, &cm->msg);
			cm->stream = cc->stream;
			cm->next = cc->next;
			cm->skipped = cc->skipped;
			cm->resume = cc->resume;
			cm->resume_stream = cc->resume_stream;
			cm->resume_off = cc->resume_off;
			cm->resuming = cc->resuming;
		} else
			cm->pair = -1;
		handoff_evbuffer_bytes(bufferevent_get_input(cc->bev), &cm->in);
		handoff_evbuffer_bytes(bufferevent_get_output(cc->bev),
		    &cm->out);
		m.conns[m.n_conns++] = cm;
	}
	n = 0;
	TAILQ_FOREACH(f, &ctl_follows, entry)
		n++;
	m.follows = xcalloc(n + 1, sizeof *m.follows);
	TAILQ_FOREACH(f, &ctl_follows, entry) {
		if (f->sink.conn != 0 && ((cc = ctl_conn_find(f->sink.conn)) ==
		    NULL || !ctl_conn_carried(cc)))
			continue;
		fm = xcalloc(1, sizeof *fm);
		vspc__handoff__control_follow__init(fm);
		fm->conn = f->sink.conn;
		if (f->sink.node != NULL)
			fm->node = f->sink.node;
		fm->id = f->sink.id;
		fm->path = f->path;
		fm->off = f->off;
		m.follows[m.n_follows++] = fm;
	}
	m.next_conn = ctl_next_conn;
	m.next_relay = ctl_next_relay;
	m.started = ctl_started;
	m.known = ctl_known;
	m.n_known = ctl_nknown;
	if (ctl_upgrading && ctl_upgrade_sink.conn == 0 &&
	    ctl_upgrade_sink.node != NULL) {
		m.reply_node = ctl_upgrade_sink.node;
		m.reply_id = ctl_upgrade_sink.id;
	}
	handoff_add_msg(h, HANDOFF_REC_CONTROL, &m.base);
	for (i = 0; i < m.n_conns; i++) {
		free(m.conns[i]->in.data);
		free(m.conns[i]->out.data);
		free(m.conns[i]->pair_in.data);
		free(m.conns[i]->pair_out.data);
		free(m.conns[i]->msg.data);
		free(m.conns[i]);
	}
	for (i = 0; i < m.n_follows; i++)
		free(m.follows[i]);
	free(m.conns);
	free(m.follows);
	free(ls);
	free(lp);
}

/* Hot upgrade: an attached vspcctl, relinked to its client. */
static int
ctl_conn_restore_attached(struct handoff *h, struct ctl_conn *cc,
    const Vspc__Handoff__ControlConn *cm, char **err)
{
	struct client	*c;
	int		 fd;

	if ((c = client_find(cm->client)) == NULL ||
	    c->proto != &ctl_client_proto ||
	    (fd = handoff_take_fd(h, cm->pair)) == -1) {
		xasprintf(err, "control connection %u: attached client %u "
		    "missing", cm->id, cm->client);
		return (-1);
	}
	cc->c = c;
	c->proto_data = cc;
	cc->pair = bufferevent_socket_new(server_base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(cc->pair, ctl_pair_read, NULL, ctl_pair_event, cc);
	evbuffer_add(bufferevent_get_input(cc->pair), cm->pair_in.data,
	    cm->pair_in.len);
	evbuffer_add(bufferevent_get_output(cc->pair), cm->pair_out.data,
	    cm->pair_out.len);
	cc->pstate = cm->pstate;
	cc->msg = evbuffer_new();
	evbuffer_add(cc->msg, cm->msg.data, cm->msg.len);
	cc->stream = cm->stream;
	cc->next = cm->next;
	cc->skipped = cm->skipped;
	cc->resume = cm->resume;
	cc->resume_stream = cm->resume_stream;
	cc->resume_off = cm->resume_off;
	cc->resuming = cm->resuming;
	return (0);
}

/* Hot upgrade: serve the inherited control sockets and connections. */
static int
control_handoff_restore(struct handoff *h, const uint8_t *data, size_t len,
    char **err)
{
	Vspc__Handoff__Control		*m;
	Vspc__Handoff__Listener		*ml;
	Vspc__Handoff__ControlConn	*cm;
	Vspc__Handoff__ControlFollow	*fm;
	struct ctl_listener		*l;
	struct ctl_conn			*cc;
	struct ctl_follow		*f;
	struct timeval			 tv = { 1, 0 };
	size_t				 i;
	int				 fd;

	if ((m = vspc__handoff__control__unpack(NULL, len, data)) == NULL) {
		*err = xstrdup("malformed control record");
		return (-1);
	}
	for (i = 0; i < m->n_listeners; i++) {
		ml = m->listeners[i];
		if (ml->kind > 2 || (fd = handoff_take_fd(h, ml->fd)) == -1)
			continue;
		if (ml->kind == 2) {
			ctl_tcp = xreallocarray(ctl_tcp, ctl_ntcp + 1,
			    sizeof *ctl_tcp);
			ctl_tcp[ctl_ntcp] = evconnlistener_new(server_base,
			    ctl_tcp_accept, NULL, LEV_OPT_CLOSE_ON_FREE |
			    LEV_OPT_CLOSE_ON_EXEC, -1, fd);
			if (ctl_tcp[ctl_ntcp] == NULL) {
				close(fd);
				*err = xstrdup("[control] listen: cannot "
				    "adopt a listener");
				vspc__handoff__control__free_unpacked(m,
				    NULL);
				return (-1);
			}
			ctl_ntcp++;
			continue;
		}
		l = &ctl_listeners[ml->kind];
		l->path = xstrdup(ml->text);
		l->readonly = ml->kind;
		l->lev = evconnlistener_new(server_base, ctl_accept, l,
		    LEV_OPT_CLOSE_ON_FREE|LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (l->lev == NULL) {
			close(fd);
			xasprintf(err, "control socket %s: cannot adopt it",
			    ml->text);
			vspc__handoff__control__free_unpacked(m, NULL);
			return (-1);
		}
	}
	for (i = 0; i < m->n_conns; i++) {
		cm = m->conns[i];
		if ((fd = handoff_take_fd(h, cm->fd)) == -1)
			continue;
		cc = xcalloc(1, sizeof *cc);
		cc->id = cm->id;
		cc->readonly = cm->readonly;
		cc->user = cm->user != NULL && *cm->user != '\0' ?
		    xstrdup(cm->user) : NULL;
		cc->pid = cm->pid;
		cc->tcp = cm->tcp;
		if (cm->login != NULL && *cm->login != '\0')
			cc->login = xstrdup(cm->login);
		cc->attempts = cm->attempts;
		cc->ro_console = cm->ro_console;
		cc->bev = bufferevent_socket_new(server_base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
		bufferevent_setcb(cc->bev, ctl_conn_read, ctl_conn_write,
		    ctl_conn_event, cc);
		bufferevent_setwatermark(cc->bev, EV_WRITE, CTL_OUT_LOW, 0);
		evbuffer_add(bufferevent_get_input(cc->bev), cm->in.data,
		    cm->in.len);
		evbuffer_add(bufferevent_get_output(cc->bev), cm->out.data,
		    cm->out.len);
		TAILQ_INSERT_TAIL(&ctl_conns, cc, entry);
		if (cm->pair != -1 && ctl_conn_restore_attached(h, cc, cm,
		    err) == -1) {
			vspc__handoff__control__free_unpacked(m, NULL);
			return (-1);
		}
	}
	for (i = 0; i < m->n_follows; i++) {
		fm = m->follows[i];
		f = xcalloc(1, sizeof *f);
		f->sink.conn = fm->conn;
		f->sink.node = fm->node != NULL && *fm->node != '\0' ?
		    xstrdup(fm->node) : NULL;
		f->sink.id = fm->id;
		f->path = xstrdup(fm->path);
		f->off = fm->off;
		f->ev = event_new(server_base, -1, EV_PERSIST, ctl_follow_cb,
		    f);
		event_add(f->ev, &tv);
		TAILQ_INSERT_TAIL(&ctl_follows, f, entry);
	}
	ctl_next_conn = m->next_conn;
	ctl_next_relay = m->next_relay;
	ctl_started = m->started;
	for (i = 0; i < m->n_known; i++)
		ctl_known_add(m->known[i]);
	if (m->reply_node != NULL && *m->reply_node != '\0') {
		ctl_reply_node = xstrdup(m->reply_node);
		ctl_reply_id = m->reply_id;
	}
	vspc__handoff__control__free_unpacked(m, NULL);
	return (0);
}

/* Hot upgrade, after COMMIT: start serving commands. */
static void
control_handoff_resume(void)
{
	struct ctl_conn	*cc;
	struct ctl_sink	 s;
	struct timeval	 tv = { 1, 0 };
	char		*msg;

	if (ctl_timer == NULL) {
		ctl_timer = event_new(server_base, -1, EV_PERSIST,
		    ctl_timer_cb, NULL);
		event_add(ctl_timer, &tv);
	}
	if (ctl_started == 0)
		ctl_started = time(NULL);
	TAILQ_FOREACH(cc, &ctl_conns, entry) {
		bufferevent_enable(cc->bev, EV_READ|EV_WRITE);
		/* Commands read but not served by the old process. */
		if (evbuffer_get_length(bufferevent_get_input(cc->bev)) != 0)
			bufferevent_trigger(cc->bev, EV_READ, 0);
		if (cc->pair == NULL)
			continue;
		bufferevent_enable(cc->pair, EV_READ|EV_WRITE);
		/* Console output read but not yet framed. */
		if (evbuffer_get_length(bufferevent_get_input(cc->pair)) != 0)
			bufferevent_trigger(cc->pair, EV_READ, 0);
	}
	if (ctl_reply_node != NULL) {
		memset(&s, 0, sizeof s);
		s.node = ctl_reply_node;
		s.id = ctl_reply_id;
		xasprintf(&msg, "upgraded: pid %d, version %s", (int)getpid(),
		    VSPCD_VERSION);
		ctl_ok(&s, msg);
		free(msg);
		free(ctl_reply_node);
		ctl_reply_node = NULL;
	}
}

const struct handoff_module control_handoff_module = {
	.name = "control",
	.rec = HANDOFF_REC_CONTROL,
	.flags = HANDOFF_RESUME_LAST,
	.pause = control_handoff_pause,
	.save = control_handoff_save,
	.restore = control_handoff_restore,
	.resume = control_handoff_resume
};
