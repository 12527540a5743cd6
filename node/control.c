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
 * node (more set on all but the last).  Answers go to a "sink": a local
 * connection, or the node that relayed the request (control-relay.c).
 *
 * [control] listen opens the same protocol on TCP, with the PROXY
 * protocol from [vm] proxy_protocol_from.  With [console] users_file a
 * TCP connection must LOGIN first (checked like the console port's
 * logins, on auth.c's worker); it may then attach as the users file's
 * rules allow, and run the admin commands only with the admin role.
 * Without a users file TCP connections may attach and read, never run
 * admin commands.  The Unix sockets are governed by their file
 * permissions (the read-only one refuses every change).
 *
 * This file holds the sockets, connections, framing and sinks.  The
 * requests are in control-request.c (dispatch, login, changes),
 * control-list.c (vm list and show, who, cluster status), control-log.c,
 * control-attach.c, control-relay.c and control-handoff.c; what they
 * share is in control-int.h.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "proto/control.pb-c.h"
#include "control-int.h"

struct ctl_listener		 ctl_listeners[2];
struct evconnlistener		**ctl_tcp;	/* [control] listen. */
u_int				 ctl_ntcp;
struct ctl_conns		 ctl_conns = TAILQ_HEAD_INITIALIZER(ctl_conns);
u_int				 ctl_next_conn;
struct event			*ctl_timer;
time_t				 ctl_started;

static void	ctl_conn_free(struct ctl_conn *);

/* A control connection by ID. */
struct ctl_conn *
ctl_conn_find(u_int id)
{
	struct ctl_conn	*cc;

	TAILQ_FOREACH(cc, &ctl_conns, entry) {
		if (cc->id == id)
			return (cc);
	}
	return (NULL);
}

/* Write one length-prefixed frame to a connection. */
void
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
int
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

/* Send a failure reply. */
void
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

/* Send a success reply with a text. */
void
ctl_ok(struct ctl_sink *s, const char *text)
{
	Vspc__Ctl__Reply	 r = VSPC__CTL__REPLY__INIT;

	r.ok = 1;
	r.text = (char *)(text != NULL ? text : "");
	r.draining = server_draining;
	ctl_send(s, &r);
}

/* Copy a sink (the node name is duplicated). */
void
ctl_sink_copy(struct ctl_sink *dst, const struct ctl_sink *src)
{
	dst->conn = src->conn;
	dst->node = src->node != NULL ? xstrdup(src->node) : NULL;
	dst->id = src->id;
}

/* Connections. */

/* Requests from a connection, one frame each. */
void
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

/* Output drained below the low mark: read the attach stream again. */
void
ctl_conn_write(struct bufferevent *bev, void *arg)
{
	struct ctl_conn	*cc = arg;

	if (cc->pair != NULL)
		bufferevent_enable(cc->pair, EV_READ);
}

/* The connection closed or failed. */
void
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

/* A connection on a control socket (Unix). */
void
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

/* A connection on [control] listen: PROXY header first if allowed. */
void
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
