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
 * The control socket: vspcctl's way into a node (proto/control.proto).
 *
 * Two Unix sockets: [control] socket (mode 0660) takes every command;
 * the same path with ".ro" (mode 0666) refuses those that change
 * anything.  Frames are the peer link's: a 4-byte big-endian length and
 * one message, a Request from the tool, one or more Replies from the
 * node (more set on all but the last).
 *
 * Requests about another node's console or state (vm show, who VM, log,
 * disconnect, drain NODE) are relayed to that node over the peer link
 * (ControlRelay, proto/vspc.proto); its answer comes back packed and is
 * passed on to the tool unchanged.  Answers go to a "sink": a local
 * connection, or the node that relayed the request.
 *
 * attach makes the connection a person: a struct client whose socket is
 * one end of a socketpair; this file holds the other end and carries its
 * bytes in Replies (output), so that the client code (skipping ahead,
 * stuck people, forwarding to the console's node) works as for the
 * console port.  Keys typed (INPUT) go to the console directly, in order
 * with the escape commands.
 *
 * Every attach Reply with data says which stream its bytes belong to and
 * the offset of the first one, so that a tool can resume after the last
 * byte it showed (ATTACH with resume).  To tell stream bytes from
 * messages on the socketpair, the client escapes 0xff in console output
 * (CLIENT_ESCAPE) and messages of this file come framed as IAC SB ...
 * IAC SE; they become Reply.text.  The offsets are anchored on what the
 * client code itself knows (its offset in the history, or the forwarded
 * channel's next offset) each time the pair has been read dry.
 *
 * [control] listen opens the same protocol on TCP, with the PROXY
 * protocol from [vm] proxy_protocol_from.  With [console] users_file a
 * TCP connection must LOGIN first (checked like the console port's
 * logins, on auth.c's worker); it may then attach as the users file's
 * rules allow, and run the admin commands only with the admin role.
 * Without a users file TCP connections may attach and read, never run
 * admin commands.  The Unix sockets are governed by their file
 * permissions (the read-only one refuses every change).
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "vspcd.h"
#include "store.h"
#include "proto/vspc.pb-c.h"
#include "proto/control.pb-c.h"
#include "proto/handoff.pb-c.h"

#define CTL_FRAME_MAX		(1024 * 1024)
#define CTL_OUT_HIGH		(1024 * 1024)	/* Pause the attach stream. */
#define CTL_OUT_LOW		(256 * 1024)
#define CTL_CHUNK		(64 * 1024)
#define CTL_RELAY_TIMEOUT	10		/* Seconds. */
#define CTL_LOG_TAIL_MAX	(4 * 1024 * 1024)
#define CTL_LOG_LINES		20
#define CTL_TCP_PORT		13375		/* [control] listen. */

struct ctl_conn {
	u_int			 id;
	int			 readonly;
	struct bufferevent	*bev;
	struct client		*c;		/* When attached. */
	struct bufferevent	*pair;		/* Our end of c's socket. */
	int			 attaching;
	char			*user;
	pid_t			 pid;
	int			 tcp;		/* [control] listen. */
	char			*login;		/* TCP: the user logged in. */
	char			*pending;	/* TCP: login being checked. */
	u_int			 attempts;	/* TCP: failed logins. */
	int			 ro_console;	/* Attached read-only (rules). */

	/* The attach stream (ctl_pair_read). */
	int			 pstate;	/* enum ctl_pstate */
	struct evbuffer		*msg;		/* Message so far. */
	uint64_t		 stream;	/* Stream of next. */
	uint64_t		 next;		/* Next data byte. */
	uint64_t		 skipped;	/* c->skipped already seen. */
	int			 resume;	/* ATTACH resumes... */
	uint64_t		 resume_stream;
	uint64_t		 resume_off;	/* ...at this offset. */
	int			 resuming;	/* A skip means lost. */
	TAILQ_ENTRY(ctl_conn)	 entry;
};
TAILQ_HEAD(ctl_conns, ctl_conn);

/* Where answers go: a local connection, or the node that relayed. */
struct ctl_sink {
	u_int			 conn;		/* 0 for a relay. */
	char			*node;
	uint64_t		 id;
};

/* A request this node relayed, waiting for its answer. */
struct ctl_relay {
	uint64_t		 id;
	u_int			 conn;
	char			*node;
	time_t			 created;
	int			 streaming;
	TAILQ_ENTRY(ctl_relay)	 entry;
};
TAILQ_HEAD(ctl_relays, ctl_relay);

/* A log --follow being served. */
struct ctl_follow {
	struct ctl_sink		 sink;
	char			*path;
	off_t			 off;
	struct event		*ev;
	TAILQ_ENTRY(ctl_follow)	 entry;
};
TAILQ_HEAD(ctl_follows, ctl_follow);

struct ctl_listener {
	char			*path;
	int			 readonly;
	struct evconnlistener	*lev;
};

static struct ctl_listener	 ctl_listeners[2];
static struct evconnlistener	**ctl_tcp;	/* [control] listen. */
static u_char			 ctl_readbuf[CTL_CHUNK];
static u_int			 ctl_ntcp;
static struct ctl_conns		 ctl_conns = TAILQ_HEAD_INITIALIZER(ctl_conns);
static struct ctl_relays	 ctl_relays = TAILQ_HEAD_INITIALIZER(ctl_relays);
static struct ctl_follows	 ctl_follows =
    TAILQ_HEAD_INITIALIZER(ctl_follows);
static u_int			 ctl_next_conn;
static uint64_t			 ctl_next_relay;
static struct event		*ctl_timer;
static time_t			 ctl_started;
static char			**ctl_known;	/* Nodes ever seen. */
static u_int			 ctl_nknown;

static void	ctl_conn_free(struct ctl_conn *);
static void	ctl_upgrade(struct ctl_sink *, Vspc__Ctl__Request *);
static void	ctl_dispatch(struct ctl_sink *, struct ctl_conn *,
		    Vspc__Ctl__Request *, int);
static void	ctl_client_input(struct client *, const u_char *, size_t);
static void	ctl_client_notice(struct client *, const char *);
static void	ctl_client_free(struct client *);
static void	ctl_client_attached(struct client *, enum attach_result,
		    const char *);
static void	ctl_frame_begin(struct client *);
static void	ctl_frame_end(struct client *);
static void	ctl_attach_position(struct ctl_conn *, struct client *);

static const struct client_proto ctl_client_proto = {
	"ctl",
	ctl_client_input,
	ctl_client_notice,
	ctl_client_free,
	ctl_client_attached
};

static struct ctl_conn *
ctl_conn_find(u_int id)
{
	struct ctl_conn	*cc;

	TAILQ_FOREACH(cc, &ctl_conns, entry) {
		if (cc->id == id)
			return (cc);
	}
	return (NULL);
}

static void
ctl_frame(struct bufferevent *bev, const void *buf, size_t len)
{
	u_char	hdr[4];

	hdr[0] = len >> 24;
	hdr[1] = len >> 16;
	hdr[2] = len >> 8;
	hdr[3] = len;
	bufferevent_write(bev, hdr, 4);
	bufferevent_write(bev, buf, len);
}

/*
 * Send one reply to a sink.  Returns -1 if the sink is gone (connection
 * closed, node unreachable), so that streams stop.
 */
static int
ctl_send(struct ctl_sink *s, Vspc__Ctl__Reply *r)
{
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__ControlRelayReply	 m = VSPC__CONTROL_RELAY_REPLY__INIT;
	struct ctl_conn		*cc;
	struct peer		*p;
	uint8_t			*buf;
	size_t			 len;
	int			 rc = 0;

	r->version = CTL_PROTOCOL;
	if (r->node == NULL || *r->node == '\0')
		r->node = server_conf->node_id;
	len = vspc__ctl__reply__get_packed_size(r);
	buf = xmalloc(len + 1);
	vspc__ctl__reply__pack(r, buf);
	if (s->conn != 0) {
		if ((cc = ctl_conn_find(s->conn)) == NULL)
			rc = -1;
		else
			ctl_frame(cc->bev, buf, len);
	} else {
		m.id = s->id;
		m.reply.data = buf;
		m.reply.len = len;
		m.more = r->more;
		m.last = !r->more;
		env.msg_case = VSPC__ENVELOPE__MSG_CONTROL_RELAY_REPLY;
		env.control_relay_reply = &m;
		if ((p = peer_find(s->node)) == NULL || peer_send(p, &env) == -1)
			rc = -1;
	}
	free(buf);
	return (rc);
}

static void
ctl_error(struct ctl_sink *s, const char *fmt, ...)
    __attribute__((__format__ (printf, 2, 3)));

static void
ctl_error(struct ctl_sink *s, const char *fmt, ...)
{
	Vspc__Ctl__Reply	 r = VSPC__CTL__REPLY__INIT;
	va_list			 ap;
	char			*msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	r.ok = 0;
	r.error = msg;
	ctl_send(s, &r);
	free(msg);
}

static void
ctl_ok(struct ctl_sink *s, const char *text)
{
	Vspc__Ctl__Reply	 r = VSPC__CTL__REPLY__INIT;

	r.ok = 1;
	r.text = (char *)(text != NULL ? text : "");
	r.draining = server_draining;
	ctl_send(s, &r);
}

static void
ctl_sink_copy(struct ctl_sink *dst, const struct ctl_sink *src)
{
	dst->conn = src->conn;
	dst->node = src->node != NULL ? xstrdup(src->node) : NULL;
	dst->id = src->id;
}

static void
ctl_known_add(const char *id)
{
	u_int	i;

	for (i = 0; i < ctl_nknown; i++) {
		if (strcmp(ctl_known[i], id) == 0)
			return;
	}
	ctl_known = xreallocarray(ctl_known, ctl_nknown + 1,
	    sizeof *ctl_known);
	ctl_known[ctl_nknown++] = xstrdup(id);
}

/* Relaying. */

static void
ctl_relay_free(struct ctl_relay *rl)
{
	TAILQ_REMOVE(&ctl_relays, rl, entry);
	free(rl->node);
	free(rl);
}

/* Send a request to the node that can answer it; the answer comes back. */
static void
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

static void
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

static void
ctl_follow_free(struct ctl_follow *f)
{
	TAILQ_REMOVE(&ctl_follows, f, entry);
	event_free(f->ev);
	free(f->sink.node);
	free(f->path);
	free(f);
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

static void
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

/* Filling replies. */

static void
ctl_person(Vspc__Ctl__Person *pp, struct client *c)
{
	vspc__ctl__person__init(pp);
	pp->id = c->id;
	pp->node = server_conf->node_id;
	pp->user = c->user != NULL ? c->user : (char *)"-";
	pp->addr = c->addr;
	pp->mode = (char *)client_mode_name(c);
	pp->idle = server_now - c->last_input;
	pp->since = c->created;
	pp->skipped = c->skipped;
	pp->kind = (char *)(c->proto != NULL ? c->proto->name : "?");
	if (c->console != NULL) {
		pp->console = c->console->key;
		pp->vm = c->console->name != NULL ? c->console->name :
		    (char *)"";
	}
}

static int
ctl_lookup(struct ctl_sink *s, const char *text, struct console **out)
{
	char	*err;

	if (text == NULL || *text == '\0') {
		ctl_error(s, "which VM?");
		return (-1);
	}
	if (console_lookup(text, out, &err) == -1) {
		ctl_error(s, "%s", err);
		free(err);
		return (-1);
	}
	return (0);
}

/* Whether a console is on another node (and the request is to go there). */
static int
ctl_remote(struct console *con)
{
	return ((con->flags & CONSOLE_REMOTE) && con->owner != NULL &&
	    strcmp(con->owner, server_conf->node_id) != 0);
}

/*
 * Over [control] listen with a users file: may the login see this
 * console (list it, show it, read its log)?  The same rules as attach.
 */
static int
ctl_may_see(const struct ctl_conn *cc, const struct console *con)
{
	char	uuid[UUID_STRLEN + 1];

	if (cc == NULL || !cc->tcp || server_auth == NULL)
		return (1);
	if (cc->login == NULL)
		return (0);
	uuid_format(con->uuid, uuid);
	return (auth_console_access(server_auth, cc->login, con->name,
	    con->key, uuid) != AUTH_NONE);
}

static void
ctl_vm_list(struct ctl_sink *s, const struct ctl_conn *cc)
{
	Vspc__Ctl__Reply	  r = VSPC__CTL__REPLY__INIT;
	Vspc__Ctl__Console	 *cs, **cp;
	struct console		 *con;
	size_t			  n = 0, i = 0;

	TAILQ_FOREACH(con, &all_consoles, gentry)
		n++;
	cs = xcalloc(n + 1, sizeof *cs);
	cp = xcalloc(n + 1, sizeof *cp);
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (!ctl_may_see(cc, con))
			continue;
		vspc__ctl__console__init(&cs[i]);
		cs[i].key = con->key;
		cs[i].name = con->name != NULL ? con->name : (char *)"";
		cs[i].state = (char *)console_state(con);
		cs[i].owner = (char *)cluster_node_of(con);
		cs[i].people = ctl_remote(con) ? -1 : (int32_t)con->nclients;
		cs[i].connected = con->connected;
		cs[i].vmotions = con->vmotions;
		cp[i] = &cs[i];
		i++;
	}
	r.ok = 1;
	r.n_consoles = i;
	r.consoles = cp;
	ctl_send(s, &r);
	free(cp);
	free(cs);
}

static void
ctl_vm_show(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	Vspc__Ctl__Reply	  r = VSPC__CTL__REPLY__INIT;
	Vspc__Ctl__Console	  cs = VSPC__CTL__CONSOLE__INIT, *cp = &cs;
	Vspc__Ctl__Person	 *ps, **pp;
	struct console		 *con;
	struct client		 *c;
	size_t			  i = 0;

	if (ctl_lookup(s, req->target, &con) == -1)
		return;
	if (ctl_remote(con)) {
		free(req->target);
		req->target = xstrdup(con->key);
		ctl_relay(s, req, con->owner);
		return;
	}
	cs.key = con->key;
	cs.name = con->name != NULL ? con->name : (char *)"";
	cs.state = (char *)console_state(con);
	cs.owner = (char *)cluster_node_of(con);
	cs.people = con->nclients;
	cs.address = con->vm != NULL ? con->vm->addr : (char *)"";
	cs.connected = con->connected;
	cs.vmotions = con->vmotions;
	cs.vmotion_state = (char *)vmotion_state_name(con->vmotion.state);
	cs.log = con->log != NULL ? (char *)logfile_path(con->log) :
	    (char *)"";
	cs.history = con->history.len;
	cs.uri = con->uri != NULL ? con->uri : (char *)"";
	ps = xcalloc(con->nclients + 1, sizeof *ps);
	pp = xcalloc(con->nclients + 1, sizeof *pp);
	TAILQ_FOREACH(c, &con->clients, centry) {
		if (i >= con->nclients)
			break;
		ctl_person(&ps[i], c);
		pp[i] = &ps[i];
		i++;
	}
	cs.n_persons = i;
	cs.persons = pp;
	r.ok = 1;
	r.n_consoles = 1;
	r.consoles = &cp;
	ctl_send(s, &r);
	free(pp);
	free(ps);
}

static void
ctl_who(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	Vspc__Ctl__Reply	  r = VSPC__CTL__REPLY__INIT;
	Vspc__Ctl__Person	 *ps, **pp;
	struct console		 *con = NULL;
	struct client		 *c;
	size_t			  n = 0, i = 0;

	if (req->target != NULL && *req->target != '\0') {
		if (ctl_lookup(s, req->target, &con) == -1)
			return;
		if (ctl_remote(con)) {
			free(req->target);
			req->target = xstrdup(con->key);
			ctl_relay(s, req, con->owner);
			return;
		}
	}
	TAILQ_FOREACH(c, &all_clients, gentry)
		n++;
	ps = xcalloc(n + 1, sizeof *ps);
	pp = xcalloc(n + 1, sizeof *pp);
	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->flags & CLIENT_DEAD)
			continue;
		if (con != NULL ? c->console != con : c->console == NULL)
			continue;
		ctl_person(&ps[i], c);
		pp[i] = &ps[i];
		i++;
	}
	r.ok = 1;
	r.n_people = i;
	r.people = pp;
	ctl_send(s, &r);
	free(pp);
	free(ps);
}

static void
ctl_disconnect(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	struct console	*con;
	struct client	*c, *c1;
	const char	*t = req->target, *colon;
	char		*node, *ep, msg[128];
	u_long		 id;
	u_int		 n = 0;

	if (t == NULL || *t == '\0') {
		ctl_error(s, "disconnect what?");
		return;
	}
	if ((colon = strrchr(t, ':')) != NULL && isdigit((u_char)colon[1])) {
		node = xstrndup(t, colon - t);
		if (strcmp(node, server_conf->node_id) != 0) {
			ctl_relay(s, req, node);
			free(node);
			return;
		}
		free(node);
		t = colon + 1;
	}
	if (isdigit((u_char)*t)) {
		errno = 0;
		id = strtoul(t, &ep, 10);
		if (*ep == '\0' && errno == 0) {
			TAILQ_FOREACH(c, &all_clients, gentry) {
				if (c->id == id && !(c->flags & CLIENT_DEAD))
					break;
			}
			if (c == NULL) {
				ctl_error(s, "no person %lu on node %s", id,
				    server_conf->node_id);
				return;
			}
			log_info("control: disconnecting client %u %s",
			    c->id, c->addr);
			if (c->proto != NULL && c->proto->notice != NULL)
				c->proto->notice(c, "disconnected by an "
				    "operator");
			client_close(c, "disconnected by an operator");
			snprintf(msg, sizeof msg, "disconnected %lu on node %s",
			    id, server_conf->node_id);
			ctl_ok(s, msg);
			return;
		}
	}
	if (ctl_lookup(s, t, &con) == -1)
		return;
	if (ctl_remote(con)) {
		free(req->target);
		req->target = xstrdup(con->key);
		ctl_relay(s, req, con->owner);
		return;
	}
	TAILQ_FOREACH_SAFE(c, &con->clients, centry, c1) {
		if (c->flags & CLIENT_DEAD)
			continue;
		if (c->proto != NULL && c->proto->notice != NULL)
			c->proto->notice(c, "disconnected by an operator");
		client_close(c, "disconnected by an operator");
		n++;
	}
	log_info("control: disconnected %u people from %s", n, con->key);
	snprintf(msg, sizeof msg, "disconnected %u people from %s", n,
	    con->name != NULL ? con->name : con->key);
	ctl_ok(s, msg);
}

static void
ctl_drain(struct ctl_sink *s, Vspc__Ctl__Request *req, int on)
{
	if (req->node != NULL && *req->node != '\0' &&
	    strcmp(req->node, server_conf->node_id) != 0) {
		ctl_relay(s, req, req->node);
		return;
	}
	server_set_draining(on);
	ctl_ok(s, on ? "draining" : "active");
}

static void
ctl_reload(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	char	*err = NULL;

	if (req->node != NULL && *req->node != '\0' &&
	    strcmp(req->node, server_conf->node_id) != 0) {
		ctl_relay(s, req, req->node);
		return;
	}
	log_info("control: reloading the configuration");
	if (server_reload(&err) == -1) {
		log_warnx("reload failed, configuration unchanged: %s", err);
		ctl_error(s, "reload failed, configuration unchanged: %s",
		    err);
		free(err);
		return;
	}
	ctl_ok(s, "configuration reloaded");
}

/* Cluster status. */

struct ctl_status {
	struct ctl_sink		 sink;
};

static void
ctl_self_node(Vspc__Ctl__Node *n)
{
	struct console	*con;

	vspc__ctl__node__init(n);
	n->id = server_conf->node_id;
	n->address = (char *)"";
	n->version = (char *)VSPCD_VERSION;
	n->pid = getpid();
	n->handoff = HANDOFF_VERSION;
	n->state = (char *)(server_draining ? "draining" : "active");
	n->started = ctl_started;
	n->heartbeat = server_now;
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (con->flags & CONSOLE_REMOTE)
			continue;
		n->consoles++;
		n->people += con->nclients;
		if (con->vmotion.state != VMOTION_NONE)
			n->vmotions++;
	}
	n->peers = cluster_enabled() ? peer_link_count() : 0;
	n->link = (char *)"self";
}

static void
ctl_status_send(struct ctl_sink *s, const struct store_node *list,
    size_t nlist, int listed)
{
	Vspc__Ctl__Reply	  r = VSPC__CTL__REPLY__INIT;
	Vspc__Ctl__Store	  st = VSPC__CTL__STORE__INIT;
	Vspc__Ctl__Node		 *ns, **np;
	struct peer		 *p;
	struct config		 *conf = server_conf;
	char			**states, master[160];
	size_t			  n = 0, i, j;
	u_int			  hb, k;
	int			  found;

	hb = conf->cluster_heartbeat != 0 ? conf->cluster_heartbeat : 1;
	for (i = 0; i < nlist; i++)
		ctl_known_add(list[i].id);
	ns = xcalloc(ctl_nknown + nlist + 1, sizeof *ns);
	np = xcalloc(ctl_nknown + nlist + 1, sizeof *np);
	states = xcalloc(ctl_nknown + nlist + 1, sizeof *states);
	ctl_self_node(&ns[n]);
	for (i = 0; i < nlist; i++) {
		if (strcmp(list[i].id, conf->node_id) == 0) {
			ns[n].address = (char *)list[i].peer;
			if (list[i].started != 0)
				ns[n].started = list[i].started;
		}
	}
	np[n] = &ns[n];
	n++;
	for (i = 0; i < nlist; i++) {
		if (strcmp(list[i].id, conf->node_id) == 0)
			continue;
		vspc__ctl__node__init(&ns[n]);
		ns[n].id = (char *)list[i].id;
		ns[n].address = (char *)list[i].peer;
		ns[n].version = (char *)list[i].version;
		if (list[i].heartbeat != 0 &&
		    server_now - list[i].heartbeat > (time_t)(3 * hb))
			ns[n].state = (char *)"down";
		else
			ns[n].state = (char *)list[i].state;
		ns[n].started = list[i].started;
		ns[n].heartbeat = list[i].heartbeat;
		ns[n].consoles = list[i].consoles;
		ns[n].people = list[i].clients;
		ns[n].vmotions = list[i].vmotions;
		ns[n].peers = list[i].peers;
		p = peer_find(list[i].id);
		ns[n].link = (char *)(p != NULL && *peer_addr(p) != '\0' ?
		    "up" : "down");
		np[n] = &ns[n];
		n++;
	}
	for (k = 0; listed && k < ctl_nknown; k++) {
		found = (strcmp(ctl_known[k], conf->node_id) == 0);
		for (j = 0; !found && j < nlist; j++)
			found = (strcmp(ctl_known[k], list[j].id) == 0);
		if (found)
			continue;
		vspc__ctl__node__init(&ns[n]);
		ns[n].id = ctl_known[k];
		ns[n].state = (char *)"down";
		p = peer_find(ctl_known[k]);
		ns[n].link = (char *)(p != NULL && *peer_addr(p) != '\0' ?
		    "up" : "down");
		np[n] = &ns[n];
		n++;
	}
	st.kind = (char *)server_store->ops->name;
	st.connected = server_store->connected;
	if (*conf->cluster_sentinels != '\0') {
		st.sentinels = conf->cluster_sentinels;
		st.master_name = conf->cluster_master_name;
		st.master = (char *)"";
	} else if (*conf->cluster_redis != '\0') {
		struct redis_addr	ra;
		char			*err;

		master[0] = '\0';
		if (config_parse_redis(conf->cluster_redis, &ra, &err) == 0) {
			snprintf(master, sizeof master, "%s:%d", ra.host,
			    ra.port);
			config_redis_free(&ra);
		} else
			free(err);
		st.master = master;
	}
	r.ok = 1;
	r.n_nodes = n;
	r.nodes = np;
	r.store = &st;
	r.draining = server_draining;
	ctl_send(s, &r);
	free(states);
	free(np);
	free(ns);
}

static void
ctl_status_listed(enum store_status status, const struct store_node *list,
    size_t n, void *arg)
{
	struct ctl_status	*cs = arg;

	server_now = time(NULL);
	if (status != STORE_OK)
		ctl_status_send(&cs->sink, NULL, 0, 0);
	else
		ctl_status_send(&cs->sink, list, n, 1);
	free(cs->sink.node);
	free(cs);
}

static void
ctl_cluster_status(struct ctl_sink *s)
{
	struct ctl_status	*cs;

	if (!server_store->shared) {
		ctl_status_send(s, NULL, 0, 0);
		return;
	}
	cs = xcalloc(1, sizeof *cs);
	ctl_sink_copy(&cs->sink, s);
	store_node_list(server_store, ctl_status_listed, cs);
}

/* Console logs. */

static int
ctl_log_send(struct ctl_sink *s, int fd, off_t from, off_t to, int more)
{
	Vspc__Ctl__Reply	 r = VSPC__CTL__REPLY__INIT;
	u_char			*buf;
	ssize_t			 n;
	size_t			 want;

	buf = xmalloc(CTL_CHUNK);
	while (from < to) {
		want = to - from > CTL_CHUNK ? CTL_CHUNK : to - from;
		n = pread(fd, buf, want, from);
		if (n <= 0)
			break;
		from += n;
		vspc__ctl__reply__init(&r);
		r.ok = 1;
		r.more = 1;
		r.data.data = buf;
		r.data.len = n;
		if (ctl_send(s, &r) == -1) {
			free(buf);
			return (-1);
		}
	}
	free(buf);
	if (!more) {
		vspc__ctl__reply__init(&r);
		r.ok = 1;
		return (ctl_send(s, &r));
	}
	return (0);
}

/* Where the last lines lines of a file start. */
static off_t
ctl_log_tail(int fd, off_t size, u_int lines)
{
	u_char	*buf;
	off_t	 start, i;
	ssize_t	 n;
	u_int	 seen = 0;

	start = size > CTL_LOG_TAIL_MAX ? size - CTL_LOG_TAIL_MAX : 0;
	buf = xmalloc(size - start + 1);
	n = pread(fd, buf, size - start, start);
	if (n <= 0) {
		free(buf);
		return (size);
	}
	for (i = n - 1; i >= 0; i--) {
		if (buf[i] == '\n' && i != n - 1 && ++seen == lines) {
			free(buf);
			return (start + i + 1);
		}
	}
	free(buf);
	return (start);
}

static void
ctl_follow_cb(evutil_socket_t fd0, short events, void *arg)
{
	struct ctl_follow	*f = arg;
	struct stat		 sb;
	int			 fd;

	if ((fd = open(f->path, O_RDONLY|O_CLOEXEC)) == -1) {
		if (f->sink.conn == 0 && peer_find(f->sink.node) == NULL)
			ctl_follow_free(f);
		else if (f->sink.conn != 0 &&
		    ctl_conn_find(f->sink.conn) == NULL)
			ctl_follow_free(f);
		return;
	}
	if (fstat(fd, &sb) == 0) {
		if (sb.st_size < f->off)
			f->off = 0;	/* Rotated or truncated. */
		if (sb.st_size > f->off) {
			if (ctl_log_send(&f->sink, fd, f->off, sb.st_size,
			    1) == -1) {
				close(fd);
				ctl_follow_free(f);
				return;
			}
			f->off = sb.st_size;
		} else if (f->sink.conn != 0 &&
		    ctl_conn_find(f->sink.conn) == NULL) {
			close(fd);
			ctl_follow_free(f);
			return;
		} else if (f->sink.conn == 0 && peer_find(f->sink.node) ==
		    NULL) {
			close(fd);
			ctl_follow_free(f);
			return;
		}
	}
	close(fd);
}

static void
ctl_log(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	struct console		*con;
	struct ctl_follow	*f;
	struct stat		 sb;
	struct timeval		 tv = { 0, 250000 };
	const char		*path;
	off_t			 start;
	int			 fd;

	if (ctl_lookup(s, req->target, &con) == -1)
		return;
	if (ctl_remote(con)) {
		free(req->target);
		req->target = xstrdup(con->key);
		ctl_relay(s, req, con->owner);
		return;
	}
	if (con->log == NULL) {
		ctl_error(s, "%s has no log on node %s", con->key,
		    server_conf->node_id);
		return;
	}
	path = logfile_path(con->log);
	if ((fd = open(path, O_RDONLY|O_CLOEXEC)) == -1 ||
	    fstat(fd, &sb) == -1) {
		ctl_error(s, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return;
	}
	start = ctl_log_tail(fd, sb.st_size, req->lines != 0 ? req->lines :
	    CTL_LOG_LINES);
	if (ctl_log_send(s, fd, start, sb.st_size, req->follow) == -1 ||
	    !req->follow) {
		close(fd);
		return;
	}
	close(fd);
	f = xcalloc(1, sizeof *f);
	ctl_sink_copy(&f->sink, s);
	f->path = xstrdup(path);
	f->off = sb.st_size;
	f->ev = event_new(server_base, -1, EV_PERSIST, ctl_follow_cb, f);
	event_add(f->ev, &tv);
	TAILQ_INSERT_TAIL(&ctl_follows, f, entry);
}

/* Attaching: the connection becomes a person. */

/*
 * What comes out of an attached client's socketpair: stream bytes (0xff
 * doubled) and messages framed as IAC SB ... IAC SE.
 */
enum ctl_pstate {
	CTL_PS_DATA,
	CTL_PS_DATA_IAC,	/* 0xff in output: doubled, or a frame. */
	CTL_PS_MSG,
	CTL_PS_MSG_IAC
};

/* A piece of that output, in order. */
struct ctl_seg {
	int		 text;		/* A message, not output. */
	u_char		*buf;
	size_t		 len;
	uint64_t	 off;		/* Stream offset of buf[0]. */
	uint64_t	 stream;
	int		 placed;
};

struct ctl_segs {
	struct ctl_seg	*v;
	u_int		 n;
	u_int		 size;
};

static void
ctl_segs_push(struct ctl_segs *ss, int text, const u_char *buf, size_t len)
{
	struct ctl_seg	*sg;

	if (len == 0)
		return;
	if (ss->n == ss->size) {
		ss->size = ss->size * 2 + 8;
		ss->v = xreallocarray(ss->v, ss->size, sizeof *ss->v);
	}
	sg = &ss->v[ss->n++];
	memset(sg, 0, sizeof *sg);
	sg->text = text;
	sg->len = len;
	sg->buf = xmalloc(len + 1);
	memcpy(sg->buf, buf, len);
	sg->buf[len] = '\0';
}

static void
ctl_segs_take(struct ctl_segs *ss, int text, struct evbuffer *from)
{
	size_t	len = evbuffer_get_length(from);

	ctl_segs_push(ss, text, evbuffer_pullup(from, len), len);
	evbuffer_drain(from, len);
}

static void
ctl_segs_free(struct ctl_segs *ss)
{
	u_int	i;

	for (i = 0; i < ss->n; i++)
		free(ss->v[i].buf);
	free(ss->v);
	memset(ss, 0, sizeof *ss);
}

/* Frame a message to an attached tool (see ctl_pair_parse). */
static void
ctl_frame_begin(struct client *c)
{
	static const u_char	sb[2] = { TEL_IAC, TEL_SB };

	client_write(c, sb, sizeof sb);
}

static void
ctl_frame_end(struct client *c)
{
	static const u_char	se[2] = { TEL_IAC, TEL_SE };

	client_write(c, se, sizeof se);
}

/* Split bytes read from the pair into stream bytes and messages. */
static void
ctl_pair_parse(struct ctl_conn *cc, struct evbuffer *in, struct ctl_segs *ss)
{
	static const u_char	 iac = TEL_IAC;
	struct evbuffer		*data, *dst;
	u_char			*p, *end, *q, b;
	size_t			 len;

	data = evbuffer_new();
	if (cc->msg == NULL)
		cc->msg = evbuffer_new();
	while ((len = evbuffer_get_length(in)) > 0) {
		if (len > CTL_CHUNK)
			len = CTL_CHUNK;
		p = evbuffer_pullup(in, len);
		end = p + len;
		while (p < end) {
			switch (cc->pstate) {
			case CTL_PS_DATA:
			case CTL_PS_MSG:
				dst = cc->pstate == CTL_PS_DATA ? data :
				    cc->msg;
				if ((q = memchr(p, TEL_IAC, end - p)) == NULL)
					q = end;
				evbuffer_add(dst, p, q - p);
				p = q;
				if (p < end) {
					cc->pstate++;
					p++;
				}
				break;
			case CTL_PS_DATA_IAC:
				b = *p++;
				cc->pstate = CTL_PS_DATA;
				if (b == TEL_SB) {
					ctl_segs_take(ss, 0, data);
					cc->pstate = CTL_PS_MSG;
					break;
				}
				evbuffer_add(data, &iac, 1);
				if (b != TEL_IAC)
					evbuffer_add(data, &b, 1);
				break;
			case CTL_PS_MSG_IAC:
				b = *p++;
				cc->pstate = CTL_PS_MSG;
				if (b == TEL_SE) {
					ctl_segs_take(ss, 1, cc->msg);
					cc->pstate = CTL_PS_DATA;
					break;
				}
				evbuffer_add(cc->msg, &iac, 1);
				if (b != TEL_IAC)
					evbuffer_add(cc->msg, &b, 1);
				break;
			}
		}
		evbuffer_drain(in, len);
	}
	ctl_segs_take(ss, 0, data);
	evbuffer_free(data);
}

/*
 * The client's own "N bytes skipped" marker (client.c) is not framed:
 * when its skip count moved, take the markers out of the stream bytes.
 */
static void
ctl_segs_skips(struct ctl_segs *ss)
{
	static const char	 pre[] = "\r\n[-- ";
	static const char	 post[] = " bytes skipped --]\r\n";
	struct ctl_segs		 out;
	struct ctl_seg		*sg;
	u_char			*p, *end, *m, *d;
	char			 text[64];
	u_int			 i;

	memset(&out, 0, sizeof out);
	for (i = 0; i < ss->n; i++) {
		sg = &ss->v[i];
		if (sg->text) {
			ctl_segs_push(&out, 1, sg->buf, sg->len);
			continue;
		}
		p = sg->buf;
		end = p + sg->len;
		while ((m = memmem(p, end - p, pre, sizeof pre - 1)) != NULL) {
			d = m + sizeof pre - 1;
			while (d < end && *d >= '0' && *d <= '9')
				d++;
			if (d == m + sizeof pre - 1 || (size_t)(end - d) <
			    sizeof post - 1 || memcmp(d, post,
			    sizeof post - 1) != 0) {
				ctl_segs_push(&out, 0, p, d - p);
				p = d;
				continue;
			}
			ctl_segs_push(&out, 0, p, m - p);
			snprintf(text, sizeof text, "%.*s bytes skipped",
			    (int)(d - m - (sizeof pre - 1)),
			    (char *)m + sizeof pre - 1);
			ctl_segs_push(&out, 1, (u_char *)text, strlen(text));
			p = d + sizeof post - 1;
		}
		ctl_segs_push(&out, 0, p, end - p);
	}
	ctl_segs_free(ss);
	*ss = out;
}

/*
 * Where the client's stream stands once the pair was read dry: the
 * stream and offset after the last stream byte that came out of it.
 * -1 when that cannot be known now (bytes still queued in the client).
 */
static int
ctl_client_position(struct ctl_conn *cc, struct client *c, uint64_t *stream,
    uint64_t *off)
{
	struct console	*con = c->console;

	if (con == NULL || (c->flags & CLIENT_DEAD))
		return (-1);
	if (cluster_client_forwarded(c)) {
		if ((c->out != NULL && evbuffer_get_length(c->out) != 0) ||
		    cc->pstate == CTL_PS_DATA_IAC)
			return (-1);
		return (cluster_fwd_position(c, stream, off));
	}
	if (con->flags & CONSOLE_REMOTE)
		return (-1);
	*stream = c->stream != 0 ? c->stream : con->stream;
	*off = c->off;
	/* A 0xff whose double is not written yet is not out yet. */
	if ((c->flags & CLIENT_PENDING_IAC) && *off > 0)
		(*off)--;
	return (0);
}

/*
 * Give the stream pieces their offsets: backwards from the client's
 * position when it is known (skips and unframed messages then cost
 * nothing), else on from the last one sent.
 */
static void
ctl_segs_place(struct ctl_conn *cc, struct ctl_segs *ss, int known,
    uint64_t stream, uint64_t end)
{
	struct ctl_seg	*sg;
	uint64_t	 next = cc->next;
	int		 i;

	/*
	 * Once the stream is anchored, bytes are numbered in the order they
	 * come (skips arrive as markers): the client's position only places
	 * the first bytes, and those of a new stream.
	 */
	if (known && cc->stream != 0 && stream == cc->stream)
		known = 0;
	for (i = (int)ss->n - 1; known && i >= 0; i--) {
		sg = &ss->v[i];
		if (sg->text) {
			if (stream != cc->stream)
				break;
			continue;
		}
		if (sg->len > end)
			break;
		end -= sg->len;
		sg->off = end;
		sg->stream = stream;
		sg->placed = 1;
	}
	for (i = 0; i < (int)ss->n; i++) {
		sg = &ss->v[i];
		if (sg->text || sg->placed)
			continue;
		sg->off = next;
		sg->stream = cc->stream;
		next += sg->len;
	}
}

static int
ctl_send_text(struct ctl_sink *s, const char *text)
{
	Vspc__Ctl__Reply	 r = VSPC__CTL__REPLY__INIT;
	char			*copy;
	u_char			*p;
	int			 rc;

	/* A proto3 string: keep it ASCII. */
	copy = xstrdup(text);
	for (p = (u_char *)copy; *p != '\0'; p++) {
		if (*p >= 0x80)
			*p = '?';
	}
	r.ok = 1;
	r.more = 1;
	r.text = copy;
	rc = ctl_send(s, &r);
	free(copy);
	return (rc);
}

/* Send the pieces read from the pair to the tool, in order. */
static void
ctl_segs_send(struct ctl_conn *cc, struct ctl_segs *ss, int known,
    uint64_t stream, uint64_t end)
{
	Vspc__Ctl__Reply	 r;
	struct ctl_sink		 s;
	struct ctl_seg		*sg;
	unsigned long long	 n;
	char			*text;
	size_t			 done, len;
	u_int			 i;

	memset(&s, 0, sizeof s);
	s.conn = cc->id;
	for (i = 0; i < ss->n; i++) {
		sg = &ss->v[i];
		if (sg->text) {
			if (cc->resuming && sscanf((char *)sg->buf,
			    "%llu bytes skipped", &n) == 1) {
				xasprintf(&text, "%llu bytes are no longer in "
				    "the history", n);
				ctl_send_text(&s, text);
				free(text);
			} else
				ctl_send_text(&s, (char *)sg->buf);
			continue;
		}
		if (cc->stream != 0 && sg->stream != cc->stream)
			ctl_send_text(&s, "stream changed: output from the new "
			    "start");
		for (done = 0; done < sg->len; done += len) {
			len = sg->len - done;
			if (len > CTL_CHUNK)
				len = CTL_CHUNK;
			vspc__ctl__reply__init(&r);
			r.ok = 1;
			r.more = 1;
			r.data.data = sg->buf + done;
			r.data.len = len;
			r.stream = sg->stream;
			r.offset = sg->off + done;
			ctl_send(&s, &r);
		}
		cc->stream = sg->stream;
		cc->next = sg->off + sg->len;
		cc->resuming = 0;
	}
	if (known && (cc->stream == 0 || stream != cc->stream)) {
		if (cc->stream != 0)
			ctl_send_text(&s, "stream changed: output from the new "
			    "start");
		cc->stream = stream;
		cc->next = end;
	}
}

static void
ctl_pair_read(struct bufferevent *bev, void *arg)
{
	struct ctl_conn		*cc = arg;
	struct evbuffer		*in;
	struct evbuffer		*out = bufferevent_get_output(cc->bev);
	struct ctl_segs		 ss;
	struct client		*c = cc->c;
	uint64_t		 stream = 0, end = 0;
	ssize_t			 n;
	int			 dry = 0, known = 0, more = 0;

	/*
	 * Read the pair dry, so that everything the client wrote is here
	 * and its position describes the end of it.  Into a buffer of our
	 * own: the bufferevent's input is frozen at its end (adding to it
	 * fails), so what it read is moved over and read(2) does the rest.
	 */
	in = evbuffer_new();
	evbuffer_add_buffer(in, bufferevent_get_input(bev));
	for (;;) {
		if (evbuffer_get_length(out) > CTL_OUT_HIGH)
			break;
		n = read(bufferevent_getfd(bev), ctl_readbuf,
		    sizeof ctl_readbuf);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == 0 || (n == -1 && (errno == EAGAIN ||
		    errno == EWOULDBLOCK))) {
			dry = 1;
			break;
		}
		if (n == -1)
			break;
		evbuffer_add(in, ctl_readbuf, n);
		if (evbuffer_get_length(in) > 4 * CTL_CHUNK) {
			more = 1;
			break;
		}
	}
	memset(&ss, 0, sizeof ss);
	ctl_pair_parse(cc, in, &ss);
	evbuffer_free(in);
	if (c != NULL && c->skipped != cc->skipped) {
		ctl_segs_skips(&ss);
		cc->skipped = c->skipped;
	}
	if (dry && c != NULL &&
	    ctl_client_position(cc, c, &stream, &end) == 0)
		known = 1;
	ctl_segs_place(cc, &ss, known, stream, end);
	ctl_segs_send(cc, &ss, known, stream, end);
	ctl_segs_free(&ss);
	if (evbuffer_get_length(out) > CTL_OUT_HIGH)
		bufferevent_disable(cc->pair, EV_READ);
	else if (more)
		bufferevent_trigger(cc->pair, EV_READ,
		    BEV_TRIG_DEFER_CALLBACKS);
}

/*
 * An attach succeeded: where the stream starts for the tool, and, when
 * it asked to resume, whether it can.
 */
static void
ctl_attach_position(struct ctl_conn *cc, struct client *c)
{
	struct console	*con = c->console;
	struct ctl_sink	 s;
	uint64_t	 stream = 0, off = 0, start;
	char		*text = NULL;

	memset(&s, 0, sizeof s);
	s.conn = cc->id;
	cc->skipped = c->skipped;
	if (con == NULL)
		return;
	if (cluster_client_forwarded(c)) {
		/* The owner placed it (proto/PROTOCOL, Attach). */
		if (cluster_fwd_position(c, &stream, &off) == -1)
			stream = off = 0;
		if (cc->resume && stream != cc->resume_stream)
			text = xstrdup("stream changed: output from the new "
			    "start");
		else if (cc->resume) {
			xasprintf(&text, "resumed at offset %llu",
			    (unsigned long long)off);
			cc->resuming = 1;
		}
	} else {
		stream = c->stream != 0 ? c->stream : con->stream;
		start = ring_start(&con->history);
		off = c->off;
		if (!cc->resume)
			;
		else if ((con->flags & CONSOLE_HANDOVER) &&
		    cc->resume_stream != 0) {
			/*
			 * Ours since a vMotion whose history is still on its
			 * way: its stream is not known yet.  Hold the tool's
			 * place; the hand-over keeps it if the stream is the
			 * one the tool had (cluster_msg_handover), else the
			 * tool is told the stream changed.
			 */
			stream = c->stream = cc->resume_stream;
			off = cc->resume_off;
			xasprintf(&text, "resumed at offset %llu",
			    (unsigned long long)off);
		} else if (stream == cc->resume_stream &&
		    cc->resume_off >= start &&
		    cc->resume_off <= con->history.end) {
			off = cc->resume_off;
			xasprintf(&text, "resumed at offset %llu",
			    (unsigned long long)off);
		} else if (stream == cc->resume_stream &&
		    cc->resume_off < start) {
			xasprintf(&text, "%llu bytes are no longer in the "
			    "history", (unsigned long long)(start -
			    cc->resume_off));
			off = start;
		} else {
			text = xstrdup("stream changed: output from the new "
			    "start");
			off = start;
		}
		c->off = off;
	}
	cc->stream = stream;
	cc->next = off;
	if (text != NULL) {
		log_info("control: client %u: %s", c->id, text);
		ctl_send_text(&s, text);
		free(text);
	}
}

static void
ctl_detached(struct ctl_conn *cc, const char *why)
{
	Vspc__Ctl__Reply	 r = VSPC__CTL__REPLY__INIT;
	struct ctl_sink		 s;

	if (cc->pair != NULL) {
		bufferevent_free(cc->pair);
		cc->pair = NULL;
	}
	if (cc->c != NULL) {
		cc->c->proto_data = NULL;
		client_close(cc->c, why);
		cc->c = NULL;
	}
	memset(&s, 0, sizeof s);
	s.conn = cc->id;
	r.ok = 1;
	r.text = (char *)why;
	ctl_send(&s, &r);
}

static void
ctl_pair_event(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_conn	*cc = arg;

	if (what & (BEV_EVENT_EOF|BEV_EVENT_ERROR)) {
		ctl_pair_read(bev, arg);
		ctl_detached(cc, "detached");
	}
}

static void
ctl_client_input(struct client *c, const u_char *buf, size_t len)
{
	c->last_input = server_now;
	client_input_to_vm(c, buf, len);
}

static void
ctl_client_notice(struct client *c, const char *msg)
{
	ctl_frame_begin(c);
	client_write(c, msg, strlen(msg));
	ctl_frame_end(c);
}

static void
ctl_client_free(struct client *c)
{
	struct ctl_conn	*cc = c->proto_data;

	if (cc != NULL)
		cc->c = NULL;
	c->proto_data = NULL;
}

static void
ctl_client_attached(struct client *c, enum attach_result r, const char *why)
{
	struct ctl_conn		*cc = c->proto_data;
	struct console		*con = c->console;
	struct ctl_sink		 s;
	Vspc__Ctl__Reply	 rep = VSPC__CTL__REPLY__INIT;
	char			*text;

	if (cc == NULL || !cc->attaching)
		return;
	cc->attaching = 0;
	memset(&s, 0, sizeof s);
	s.conn = cc->id;
	switch (r) {
	case ATTACHED_WRITER:
	case ATTACHED_SPY:
	case ATTACHED_RO:
		break;
	default:
		ctl_error(&s, "%s", why != NULL ? why :
		    attach_result_string(r));
		if (cc->pair != NULL) {
			bufferevent_free(cc->pair);
			cc->pair = NULL;
		}
		cc->c = NULL;
		c->proto_data = NULL;
		client_close(c, "attach refused");
		return;
	}
	xasprintf(&text, "%s to %s (%s) on node %s as %s",
	    attach_result_string(r), con != NULL && con->name != NULL ?
	    con->name : "-", con != NULL ? con->key : "-", con != NULL ?
	    cluster_node_of(con) : "?", client_mode_name(c));
	rep.ok = 1;
	rep.more = 1;
	rep.text = text;
	ctl_send(&s, &rep);
	free(text);
	ctl_attach_position(cc, c);
	c->flags |= CLIENT_STREAM;
	client_flush(c);
}

static void
ctl_attach(struct ctl_sink *s, struct ctl_conn *cc, Vspc__Ctl__Request *req)
{
	struct console		*con;
	struct client		*c;
	enum attach_mode	 mode = req->mode;
	enum attach_result	 r;
	int			 sv[2];

	if (cc == NULL) {
		ctl_error(s, "attach cannot be relayed");
		return;
	}
	if (cc->c != NULL || cc->attaching) {
		ctl_error(s, "already attached");
		return;
	}
	if (mode >= ATTACH_MAX) {
		ctl_error(s, "bad attach mode %u", mode);
		return;
	}
	if (cc->readonly) {
		if (mode != ATTACH_RO && mode != ATTACH_SPY) {
			ctl_error(s, "read-only control socket: attach with "
			    "--ro");
			return;
		}
		mode = ATTACH_RO;
	}
	if (server_draining) {
		ctl_error(s, "node %s is draining: no new attaches",
		    server_conf->node_id);
		return;
	}
	if (ctl_lookup(s, req->target, &con) == -1)
		return;
	cc->ro_console = 0;
	if (cc->tcp && server_auth != NULL) {
		char	uuid[UUID_STRLEN + 1];

		uuid_format(con->uuid, uuid);
		switch (auth_console_access(server_auth, cc->login, con->name,
		    con->key, uuid)) {
		case AUTH_NONE:
			log_warnx("control: %s@%s: attach to %s refused: no "
			    "access", cc->login, cc->user, con->key);
			ctl_error(s, "permission denied");
			return;
		case AUTH_RO:
			if (mode == ATTACH_FORCE || mode == ATTACH_EXCLUSIVE) {
				ctl_error(s, "permission denied: read-only "
				    "access");
				return;
			}
			mode = ATTACH_RO;
			cc->ro_console = 1;
			break;
		case AUTH_RW:
			break;
		}
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1) {
		ctl_error(s, "socketpair: %s", strerror(errno));
		return;
	}
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	evutil_make_socket_closeonexec(sv[0]);
	evutil_make_socket_closeonexec(sv[1]);
	c = client_create(sv[0], CLIENT_CONSOLE, &ctl_client_proto, NULL);
	c->proto_data = cc;
	/* 0xff doubled in output: messages are framed (ctl_pair_read). */
	c->flags |= CLIENT_ESCAPE;
	if (cc->tcp)
		snprintf(c->addr, sizeof c->addr, "%s", cc->user);
	else
		snprintf(c->addr, sizeof c->addr, "control[%ld]",
		    (long)cc->pid);
	c->user = xstrdup(cc->login != NULL ? cc->login : cc->user != NULL ?
	    cc->user : "-");
	cc->pstate = CTL_PS_DATA;
	if (cc->msg != NULL)
		evbuffer_drain(cc->msg, evbuffer_get_length(cc->msg));
	cc->resuming = 0;
	cc->resume = req->resume;
	cc->resume_stream = req->resume_stream;
	cc->resume_off = req->resume_offset;
	cc->c = c;
	cc->pair = bufferevent_socket_new(server_base, sv[1],
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(cc->pair, ctl_pair_read, NULL, ctl_pair_event, cc);
	bufferevent_enable(cc->pair, EV_READ|EV_WRITE);
	log_info("control: client %u (%s) attaching to %s", c->id, c->user,
	    con->key);
	cc->attaching = 1;
	if (req->resume && (con->flags & CONSOLE_REMOTE))
		r = cluster_attach_at(con, c, mode, req->resume_stream,
		    req->resume_offset);
	else
		r = console_attach(con, c, mode);
	if (r == ATTACH_PENDING)
		return;
	ctl_client_attached(c, r, NULL);
}

static void
ctl_replay_lines(const char *arg, long *n)
{
	*n = server_conf->console_replay_lines;
	if (arg != NULL && *arg != '\0') {
		*n = strtol(arg, NULL, 10);
		if (*n <= 0 || *n > 100000)
			*n = server_conf->console_replay_lines;
	}
}

/* An escape command of an attached tool (the console port's words). */
static void
ctl_escape(struct ctl_conn *cc, const char *line)
{
	struct client	*c = cc->c;
	struct console	*con;
	char		*copy, *arg, *cmd, err[160];
	long		 n;
	int		 fwd, rc = 0;

	if (c == NULL || (con = c->console) == NULL)
		return;
	copy = xstrdup(line);
	arg = copy;
	while (isspace((u_char)*arg))
		arg++;
	cmd = strsep(&arg, " \t");
	fwd = cluster_client_forwarded(c);
	ctl_frame_begin(c);
	if ((cc->readonly || cc->ro_console) && (strcmp(cmd, "w") == 0 ||
	    strcmp(cmd, "write") == 0 || strcmp(cmd, "f") == 0 ||
	    strcmp(cmd, "force") == 0 || strcmp(cmd, "b") == 0 ||
	    strcmp(cmd, "break") == 0 || (cc->ro_console &&
	    (strcmp(cmd, "s") == 0 || strcmp(cmd, "spy") == 0)))) {
		client_printf(c, cc->ro_console ? "[permission denied: "
		    "read-only access]\r\n" : "[read-only control "
		    "socket]\r\n");
	} else if (*cmd == '\0' || strcmp(cmd, "c") == 0 ||
	    strcmp(cmd, "continue") == 0) {
		client_printf(c, "[continue]\r\n");
	} else if (strcmp(cmd, "d") == 0 || strcmp(cmd, "detach") == 0 ||
	    strcmp(cmd, "q") == 0 || strcmp(cmd, "quit") == 0) {
		ctl_detached(cc, "detached");
	} else if (strcmp(cmd, "s") == 0 || strcmp(cmd, "spy") == 0) {
		if (fwd)
			rc = cluster_fwd_mode(c, ATTACH_SPY, 0, 0);
		else
			console_set_mode(con, c, ATTACH_SPY, err, sizeof err);
		client_printf(c, "[spy]\r\n");
	} else if (strcmp(cmd, "w") == 0 || strcmp(cmd, "write") == 0 ||
	    strcmp(cmd, "f") == 0 || strcmp(cmd, "force") == 0) {
		enum attach_mode m = (*cmd == 'f') ? ATTACH_FORCE :
		    ATTACH_DEFAULT;

		if (fwd)
			rc = cluster_fwd_mode(c, m, 0, 0);
		else if (console_set_mode(con, c, m, err, sizeof err) == -1)
			client_printf(c, "[%s]\r\n", err);
		else
			client_printf(c, "[attached]\r\n");
	} else if (strcmp(cmd, "r") == 0 || strcmp(cmd, "replay") == 0) {
		ctl_replay_lines(arg, &n);
		if (fwd)
			rc = cluster_fwd_mode(c, ATTACH_DEFAULT, n, 0);
		else {
			client_printf(c, "[replay of the last %ld lines]\r\n",
			    n);
			console_replay(con, c, n);
			client_printf(c, "\r\n[end of replay]\r\n");
		}
	} else if (strcmp(cmd, "b") == 0 || strcmp(cmd, "break") == 0) {
		if (fwd)
			rc = cluster_fwd_mode(c, ATTACH_DEFAULT, 0, 1);
		else if (!(c->flags & CLIENT_WRITE))
			client_printf(c, "[only the writer can send a "
			    "break]\r\n");
		else {
			console_send_break(con);
			client_printf(c, "[break sent]\r\n");
		}
	} else if (strcmp(cmd, "who") == 0) {
		struct client	*o;

		if (fwd)
			client_printf(c, "[the console is on node %s: run "
			    "vspcctl who %s]\r\n", cluster_node_of(con),
			    con->key);
		else {
			TAILQ_FOREACH(o, &con->clients, centry) {
				client_printf(c, "%u %s@%s %s%s\r\n", o->id,
				    o->user != NULL ? o->user : "-", o->addr,
				    client_mode_name(o), o == c ? " (you)" :
				    "");
			}
		}
	} else
		client_printf(c, "[unknown command \"%s\"]\r\n", cmd);
	if (rc == -1)
		client_printf(c, "[the console's node cannot be reached]\r\n");
	if (cc->c == c)
		ctl_frame_end(c);
	free(copy);
}

/* Requests. */

static int
ctl_changes(Vspc__Ctl__Request *req)
{
	switch (req->command) {
	case VSPC__CTL__COMMAND__DISCONNECT:
	case VSPC__CTL__COMMAND__DRAIN:
	case VSPC__CTL__COMMAND__UNDRAIN:
	case VSPC__CTL__COMMAND__RELOAD:
		return (1);
	default:
		return (0);
	}
}

/* The worker's answer to a LOGIN (the connection may be gone). */
static void
ctl_login_done(u_int id, int ok)
{
	struct ctl_conn	*cc;
	struct ctl_sink	 s;
	Vspc__Ctl__Reply rep = VSPC__CTL__REPLY__INIT;
	char		*text;

	if ((cc = ctl_conn_find(id)) == NULL || cc->pending == NULL)
		return;
	memset(&s, 0, sizeof s);
	s.conn = id;
	if (!ok) {
		server_stats.login_failed++;
		cc->attempts++;
		log_warnx("control: connection %u from %s: login refused for "
		    "\"%s\" (attempt %u of %u)", cc->id, cc->user, cc->pending,
		    cc->attempts, server_conf->console_login_attempts);
		free(cc->pending);
		cc->pending = NULL;
		ctl_error(&s, "Login incorrect");
		return;
	}
	cc->login = cc->pending;
	cc->pending = NULL;
	log_info("control: connection %u from %s: user %s logged in%s",
	    cc->id, cc->user, cc->login, auth_is_admin(server_auth,
	    cc->login) ? " (admin)" : "");
	xasprintf(&text, "logged in as %s", cc->login);
	rep.version = CTL_PROTOCOL;
	rep.ok = 1;
	rep.text = text;
	ctl_send(&s, &rep);
	free(text);
}

/* LOGIN on a TCP connection, with a users file. */
static void
ctl_login(struct ctl_sink *s, struct ctl_conn *cc, Vspc__Ctl__Request *req)
{
	Vspc__Ctl__Reply rep = VSPC__CTL__REPLY__INIT;
	char		*err = NULL;

	if (cc == NULL || !cc->tcp || server_auth == NULL || cc->login) {
		rep.version = CTL_PROTOCOL;
		rep.ok = 1;
		rep.text = cc != NULL && cc->login != NULL ? cc->login :
		    (char *)"no login needed";
		ctl_send(s, &rep);
		return;
	}
	if (cc->pending != NULL) {
		ctl_error(s, "a login is being checked");
		return;
	}
	if (cc->attempts >= server_conf->console_login_attempts) {
		ctl_error(s, "too many failed logins");
		return;
	}
	if (auth_refresh(&server_auth, &err) == -1) {
		log_warnx("users file: %s; the old rules stay", err);
		free(err);
	}
	cc->pending = xstrdup(req->user != NULL ? req->user : "");
	auth_verify(server_auth, cc->pending, req->password != NULL ?
	    req->password : "", cc->id, ctl_login_done);
}

/* TLS: the certificates' thumbprints (vSphere pins the telnets one). */
static void
ctl_tls(struct ctl_sink *s)
{
	Vspc__Ctl__Reply rep = VSPC__CTL__REPLY__INIT;
	const char	*a, *b;
	char		*text;

	a = tls_thumbprint(TLS_SERVER);
	b = tls_thumbprint(TLS_PEER);
	xasprintf(&text, "telnets certificate SHA-1 thumbprint: %s\n"
	    "peer link certificate SHA-1 thumbprint: %s",
	    a != NULL ? a : "none (no [vm] tls_cert)",
	    b != NULL ? b : "none (no [cluster] tls_cert)");
	rep.version = CTL_PROTOCOL;
	rep.ok = 1;
	rep.text = text;
	ctl_send(s, &rep);
	free(text);
}

/* Commands for the operator only: over TCP, only with the admin role. */
static int
ctl_admin(Vspc__Ctl__Request *req)
{
	switch (req->command) {
	case VSPC__CTL__COMMAND__DISCONNECT:
	case VSPC__CTL__COMMAND__DRAIN:
	case VSPC__CTL__COMMAND__UNDRAIN:
	case VSPC__CTL__COMMAND__RELOAD:
	case VSPC__CTL__COMMAND__UPGRADE:
		return (1);
	default:
		return (0);
	}
}

static void
ctl_dispatch(struct ctl_sink *s, struct ctl_conn *cc, Vspc__Ctl__Request *req,
    int readonly)
{
	if (req->version != CTL_PROTOCOL) {
		ctl_error(s, "control protocol version %u not supported "
		    "(this node speaks %u)", req->version, CTL_PROTOCOL);
		return;
	}
	if (readonly && ctl_changes(req)) {
		ctl_error(s, "read-only control socket: command refused");
		return;
	}
	if (cc != NULL && cc->tcp && server_auth != NULL &&
	    cc->login == NULL && req->command != VSPC__CTL__COMMAND__LOGIN) {
		ctl_error(s, "login required (vspcctl -u USER)");
		return;
	}
	if (cc != NULL && cc->tcp && ctl_admin(req)) {
		if (server_auth == NULL) {
			ctl_error(s, "not allowed over TCP: use the control "
			    "socket");
			return;
		}
		if (!auth_is_admin(server_auth, cc->login)) {
			log_warnx("control: connection %u from %s: user %s "
			    "refused command %d: not admin", cc->id, cc->user,
			    cc->login, req->command);
			ctl_error(s, "permission denied: %s has no admin role",
			    cc->login);
			return;
		}
		log_info("control: connection %u from %s: admin %s runs "
		    "command %d on %s", cc->id, cc->user, cc->login,
		    req->command, req->target != NULL && *req->target !=
		    '\0' ? req->target : req->node != NULL &&
		    *req->node != '\0' ? req->node : "this node");
	}
	if (cc != NULL && cc->c != NULL &&
	    req->command != VSPC__CTL__COMMAND__INPUT &&
	    req->command != VSPC__CTL__COMMAND__ESCAPE) {
		ctl_error(s, "attached: only input and escape commands");
		return;
	}
	/* A console the login may not see is not shown, nor its log. */
	if (cc != NULL && cc->tcp && server_auth != NULL &&
	    (req->command == VSPC__CTL__COMMAND__VM_SHOW ||
	    req->command == VSPC__CTL__COMMAND__LOG ||
	    (req->command == VSPC__CTL__COMMAND__WHO &&
	    req->target != NULL && *req->target != '\0'))) {
		struct console	*con;

		if (ctl_lookup(s, req->target, &con) == -1)
			return;
		if (!ctl_may_see(cc, con)) {
			ctl_error(s, "%s: permission denied", req->target);
			return;
		}
	}
	switch (req->command) {
	case VSPC__CTL__COMMAND__CLUSTER_STATUS:
		ctl_cluster_status(s);
		break;
	case VSPC__CTL__COMMAND__VM_LIST:
		ctl_vm_list(s, cc);
		break;
	case VSPC__CTL__COMMAND__VM_SHOW:
		ctl_vm_show(s, req);
		break;
	case VSPC__CTL__COMMAND__WHO:
		ctl_who(s, req);
		break;
	case VSPC__CTL__COMMAND__DISCONNECT:
		ctl_disconnect(s, req);
		break;
	case VSPC__CTL__COMMAND__ATTACH:
		ctl_attach(s, cc, req);
		break;
	case VSPC__CTL__COMMAND__INPUT:
		/* Directly, so that it keeps its order with ESCAPE. */
		if (cc != NULL && cc->c != NULL && !cc->attaching &&
		    req->data.len > 0)
			ctl_client_input(cc->c, req->data.data,
			    req->data.len);
		break;
	case VSPC__CTL__COMMAND__ESCAPE:
		if (cc != NULL && cc->c != NULL)
			ctl_escape(cc, req->arg != NULL ? req->arg : "");
		break;
	case VSPC__CTL__COMMAND__LOG:
		ctl_log(s, req);
		break;
	case VSPC__CTL__COMMAND__DRAIN:
		ctl_drain(s, req, 1);
		break;
	case VSPC__CTL__COMMAND__UNDRAIN:
		ctl_drain(s, req, 0);
		break;
	case VSPC__CTL__COMMAND__RELOAD:
		ctl_reload(s, req);
		break;
	case VSPC__CTL__COMMAND__UPGRADE:
		ctl_upgrade(s, req);
		break;
	case VSPC__CTL__COMMAND__LOGIN:
		ctl_login(s, cc, req);
		break;
	case VSPC__CTL__COMMAND__TLS:
		ctl_tls(s);
		break;
	default:
		ctl_error(s, "unknown command %d", req->command);
		break;
	}
}

/* Connections. */

static void
ctl_conn_read(struct bufferevent *bev, void *arg)
{
	struct ctl_conn		*cc = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	Vspc__Ctl__Request	*req;
	struct ctl_sink		 s;
	u_char			 hdr[4];
	size_t			 len;
	u_int			 id = cc->id;

	for (;;) {
		if (evbuffer_copyout(in, hdr, 4) != 4)
			return;
		len = (size_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 |
		    hdr[3];
		if (len > CTL_FRAME_MAX) {
			log_warnx("control: frame of %zu bytes; closing", len);
			ctl_conn_free(cc);
			return;
		}
		if (evbuffer_get_length(in) < len + 4)
			return;
		evbuffer_drain(in, 4);
		req = vspc__ctl__request__unpack(NULL, len,
		    evbuffer_pullup(in, len));
		evbuffer_drain(in, len);
		memset(&s, 0, sizeof s);
		s.conn = cc->id;
		if (req == NULL) {
			ctl_error(&s, "bad request");
			continue;
		}
		ctl_dispatch(&s, cc, req, cc->readonly);
		vspc__ctl__request__free_unpacked(req, NULL);
		if (ctl_conn_find(id) == NULL)
			return;
	}
}

static void
ctl_conn_write(struct bufferevent *bev, void *arg)
{
	struct ctl_conn	*cc = arg;

	if (cc->pair != NULL)
		bufferevent_enable(cc->pair, EV_READ);
}

static void
ctl_conn_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF|BEV_EVENT_ERROR))
		ctl_conn_free(arg);
}

static void
ctl_conn_free(struct ctl_conn *cc)
{
	struct ctl_relay	*rl, *rl1;

	TAILQ_FOREACH_SAFE(rl, &ctl_relays, entry, rl1) {
		if (rl->conn == cc->id)
			ctl_relay_cancel(rl);
	}
	if (cc->pair != NULL)
		bufferevent_free(cc->pair);
	if (cc->c != NULL) {
		cc->c->proto_data = NULL;
		client_close(cc->c, "control connection closed");
	}
	TAILQ_REMOVE(&ctl_conns, cc, entry);
	bufferevent_free(cc->bev);
	if (cc->msg != NULL)
		evbuffer_free(cc->msg);
	free(cc->user);
	free(cc->login);
	free(cc->pending);
	free(cc);
}

static void
ctl_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct ctl_listener	*l = arg;
	struct ctl_conn		*cc;
	struct passwd		*pw;
#ifdef SO_PEERCRED
	struct ucred		 cred;
	socklen_t		 clen = sizeof cred;
#endif

	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	server_now = time(NULL);
	cc = xcalloc(1, sizeof *cc);
	cc->id = ++ctl_next_conn;
	if (cc->id == 0)
		cc->id = ++ctl_next_conn;
	cc->readonly = l->readonly;
#ifdef SO_PEERCRED
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
		cc->pid = cred.pid;
		if ((pw = getpwuid(cred.uid)) != NULL)
			cc->user = xstrdup(pw->pw_name);
		else
			xasprintf(&cc->user, "%u", (u_int)cred.uid);
	}
#else
	(void)pw;
#endif
	cc->bev = bufferevent_socket_new(server_base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(cc->bev, ctl_conn_read, ctl_conn_write,
	    ctl_conn_event, cc);
	bufferevent_setwatermark(cc->bev, EV_WRITE, CTL_OUT_LOW, 0);
	bufferevent_enable(cc->bev, EV_READ|EV_WRITE);
	TAILQ_INSERT_TAIL(&ctl_conns, cc, entry);
	log_debug("control: connection %u from %s%s", cc->id,
	    cc->user != NULL ? cc->user : "?", cc->readonly ?
	    " (read-only)" : "");
}

static int
ctl_mkdir(const char *path, char **err)
{
	char	*copy, *p;

	copy = xstrdup(path);
	if ((p = strrchr(copy, '/')) == NULL || p == copy) {
		free(copy);
		return (0);
	}
	*p = '\0';
	for (p = copy + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			int	last = (*p == '\0');

			*p = '\0';
			if (mkdir(copy, 0755) == -1 && errno != EEXIST) {
				xasprintf(err, "control socket directory %s: "
				    "%s", copy, strerror(errno));
				free(copy);
				return (-1);
			}
			if (last)
				break;
			*p = '/';
		}
	}
	free(copy);
	return (0);
}

static int
ctl_listen(struct ctl_listener *l, const char *path, int readonly,
    char **err)
{
	struct sockaddr_un	 sun;
	struct stat		 sb;
	mode_t			 old;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		xasprintf(err, "control socket %s: path too long", path);
		return (-1);
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
		(void)unlink(path);
	old = umask(readonly ? 0111 : 0117);
	l->lev = evconnlistener_new_bind(server_base, ctl_accept, l,
	    LEV_OPT_CLOSE_ON_FREE|LEV_OPT_CLOSE_ON_EXEC, 16,
	    (struct sockaddr *)&sun, sizeof sun);
	umask(old);
	if (l->lev == NULL) {
		xasprintf(err, "control socket %s: %s", path, strerror(errno));
		return (-1);
	}
	(void)chmod(path, readonly ? 0666 : 0660);
	l->path = xstrdup(path);
	l->readonly = readonly;
	log_info("control socket %s%s", path, readonly ? " (read-only)" : "");
	return (0);
}

/* A connection on [control] listen (after any PROXY header). */
static void
ctl_tcp_serve(int fd, const struct sockaddr *sa, u_int kind,
    const char *name)
{
	struct ctl_conn	*cc;
	char		 addr[64];
	int		 one = 1;

	server_now = time(NULL);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	cc = xcalloc(1, sizeof *cc);
	cc->id = ++ctl_next_conn;
	if (cc->id == 0)
		cc->id = ++ctl_next_conn;
	cc->tcp = 1;
	cc->user = xstrdup(addr_fmt(sa, addr, sizeof addr));
	cc->bev = bufferevent_socket_new(server_base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(cc->bev, ctl_conn_read, ctl_conn_write,
	    ctl_conn_event, cc);
	bufferevent_setwatermark(cc->bev, EV_WRITE, CTL_OUT_LOW, 0);
	bufferevent_enable(cc->bev, EV_READ|EV_WRITE);
	TAILQ_INSERT_TAIL(&ctl_conns, cc, entry);
	log_debug("control: connection %u from %s (TCP %s)", cc->id, addr,
	    name);
}

static void
ctl_tcp_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	server_now = time(NULL);
	if (acl_match(&server_conf->vm_proxy_from, sa)) {
		proxy_accept(fd, sa, (socklen_t)salen, UINT_MAX, "control",
		    ctl_tcp_serve);
		return;
	}
	ctl_tcp_serve(fd, sa, UINT_MAX, "control");
}

/* Listen on every address of [control] listen. */
static int
ctl_tcp_listen(const char *list, char **err)
{
	struct evconnlistener	*lev;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	char			*copy, *p, *word, *perr;
	int			 flags;

	copy = xstrdup(list);
	p = copy;
	while ((word = strsep(&p, ", ")) != NULL) {
		if (*word == '\0')
			continue;
		if (addr_parse_listen(word, CTL_TCP_PORT, &ss, &sslen,
		    &perr) == -1) {
			xasprintf(err, "[control] listen: %s", perr);
			free(perr);
			free(copy);
			return (-1);
		}
		flags = LEV_OPT_CLOSE_ON_FREE|LEV_OPT_REUSEABLE|
		    LEV_OPT_CLOSE_ON_EXEC;
		if (ss.ss_family == AF_INET6)
			flags |= LEV_OPT_BIND_IPV6ONLY;
		lev = evconnlistener_new_bind(server_base, ctl_tcp_accept,
		    NULL, flags, 64, (struct sockaddr *)&ss, sslen);
		if (lev == NULL) {
			xasprintf(err, "[control] listen %s: %s", word,
			    strerror(errno));
			free(copy);
			return (-1);
		}
		ctl_tcp = xreallocarray(ctl_tcp, ctl_ntcp + 1,
		    sizeof *ctl_tcp);
		ctl_tcp[ctl_ntcp++] = lev;
		log_info("control listener on %s (TCP)", word);
	}
	free(copy);
	return (0);
}

/* Open the control sockets ([control] socket and its ".ro" twin). */
int
control_init(struct config *conf, char **err)
{
	char	*ro;

	ctl_started = time(NULL);
	if (ctl_timer == NULL) {
		struct timeval	tv = { 1, 0 };

		ctl_timer = event_new(server_base, -1, EV_PERSIST,
		    ctl_timer_cb, NULL);
		event_add(ctl_timer, &tv);
	}
	if (conf->control_listen != NULL && *conf->control_listen != '\0' &&
	    ctl_tcp_listen(conf->control_listen, err) == -1)
		return (-1);
	if (conf->control_socket == NULL || *conf->control_socket == '\0')
		return (0);
	if (ctl_mkdir(conf->control_socket, err) == -1)
		return (-1);
	if (ctl_listen(&ctl_listeners[0], conf->control_socket, 0, err) == -1)
		return (-1);
	xasprintf(&ro, "%s.ro", conf->control_socket);
	if (ctl_listen(&ctl_listeners[1], ro, 1, err) == -1) {
		free(ro);
		return (-1);
	}
	free(ro);
	return (0);
}

/* Close every control connection and socket (at exit). */
void
control_shutdown(void)
{
	struct ctl_follow	*f;
	u_int			 i;

	while (!TAILQ_EMPTY(&ctl_conns))
		ctl_conn_free(TAILQ_FIRST(&ctl_conns));
	while (!TAILQ_EMPTY(&ctl_relays))
		ctl_relay_free(TAILQ_FIRST(&ctl_relays));
	while ((f = TAILQ_FIRST(&ctl_follows)) != NULL)
		ctl_follow_free(f);
	for (i = 0; i < ctl_ntcp; i++)
		evconnlistener_free(ctl_tcp[i]);
	free(ctl_tcp);
	ctl_tcp = NULL;
	ctl_ntcp = 0;
	for (i = 0; i < 2; i++) {
		if (ctl_listeners[i].lev == NULL)
			continue;
		evconnlistener_free(ctl_listeners[i].lev);
		(void)unlink(ctl_listeners[i].path);
		free(ctl_listeners[i].path);
		ctl_listeners[i].lev = NULL;
		ctl_listeners[i].path = NULL;
	}
	if (ctl_timer != NULL)
		event_free(ctl_timer);
	ctl_timer = NULL;
	for (i = 0; i < ctl_nknown; i++)
		free(ctl_known[i]);
	free(ctl_known);
	ctl_known = NULL;
	ctl_nknown = 0;
}

/*
 * Hot upgrade (handoff.c).  The requester of "node upgrade" gets its
 * answer from the old process, or, when the request was relayed, from
 * the new one.  The listeners (Unix and TCP), control connections,
 * attached ones with their client and the framing of its output, and
 * log --follow are handed over.
 */
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
	struct evbuffer_iovec *v;
	u_char		*buf;
	size_t		 len, done = 0, k;
	ssize_t		 n;
	int		 fd, nv, i;

	if ((cc = ctl_conn_find(id)) == NULL)
		return;
	out = bufferevent_get_output(cc->bev);
	fd = bufferevent_getfd(cc->bev);
	if ((len = evbuffer_get_length(out)) == 0)
		return;
	/* Not evbuffer_copyout: it refuses a buffer frozen at the front. */
	buf = xmalloc(len);
	nv = evbuffer_peek(out, -1, NULL, NULL, 0);
	v = xcalloc(nv + 1, sizeof *v);
	nv = evbuffer_peek(out, -1, NULL, v, nv);
	for (i = 0, k = 0; i < nv && k < len; i++) {
		memcpy(buf + k, v[i].iov_base, v[i].iov_len);
		k += v[i].iov_len;
	}
	free(v);
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

static void
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
void
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
void
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
int
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
void
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
