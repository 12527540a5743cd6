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
 * What the files of the control socket (control.c, control-request.c,
 * control-list.c, control-log.c, control-attach.c, control-relay.c,
 * control-handoff.c) share and nothing else may touch: connections,
 * sinks, relayed requests, log followers and the ctl_* functions one
 * file calls in another.  A header of its own rather than vspcd.h, so
 * that vspcd.h keeps only the control_* interface other modules call.
 * Include it after vspcd.h and proto/control.pb-c.h.
 */

#ifndef CONTROL_INT_H
#define CONTROL_INT_H

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

/* control.c */
extern struct ctl_listener	 ctl_listeners[2];
extern struct evconnlistener	**ctl_tcp;
extern u_int			 ctl_ntcp;
extern struct ctl_conns		 ctl_conns;
extern u_int			 ctl_next_conn;
extern struct event		*ctl_timer;
extern time_t			 ctl_started;
struct ctl_conn	*ctl_conn_find(u_int);
void		 ctl_frame(struct bufferevent *, const void *, size_t);
int		 ctl_send(struct ctl_sink *, Vspc__Ctl__Reply *);
void		 ctl_error(struct ctl_sink *, const char *, ...)
		     __attribute__((__format__ (printf, 2, 3)));
void		 ctl_ok(struct ctl_sink *, const char *);
void		 ctl_sink_copy(struct ctl_sink *, const struct ctl_sink *);
void		 ctl_conn_read(struct bufferevent *, void *);
void		 ctl_conn_write(struct bufferevent *, void *);
void		 ctl_conn_event(struct bufferevent *, short, void *);
void		 ctl_accept(struct evconnlistener *, evutil_socket_t,
		     struct sockaddr *, int, void *);
void		 ctl_tcp_accept(struct evconnlistener *, evutil_socket_t,
		     struct sockaddr *, int, void *);

/* control-request.c */
int		 ctl_lookup(struct ctl_sink *, const char *, struct console **);
int		 ctl_remote(struct console *);
int		 ctl_may_see(const struct ctl_conn *, const struct console *);
void		 ctl_dispatch(struct ctl_sink *, struct ctl_conn *,
		     Vspc__Ctl__Request *, int);

/* control-list.c */
extern char			**ctl_known;
extern u_int			 ctl_nknown;
void		 ctl_known_add(const char *);
void		 ctl_vm_list(struct ctl_sink *, const struct ctl_conn *);
void		 ctl_vm_show(struct ctl_sink *, Vspc__Ctl__Request *);
void		 ctl_who(struct ctl_sink *, Vspc__Ctl__Request *);
void		 ctl_cluster_status(struct ctl_sink *);

/* control-relay.c */
extern struct ctl_relays	 ctl_relays;
extern uint64_t			 ctl_next_relay;
void		 ctl_relay_free(struct ctl_relay *);
void		 ctl_relay(struct ctl_sink *, Vspc__Ctl__Request *,
		     const char *);
void		 ctl_relay_owner(struct ctl_sink *, Vspc__Ctl__Request *,
		     struct console *);
void		 ctl_relay_cancel(struct ctl_relay *);
void		 ctl_timer_cb(evutil_socket_t, short, void *);

/* control-log.c */
extern struct ctl_follows	 ctl_follows;
void		 ctl_follow_free(struct ctl_follow *);
void		 ctl_follow_cb(evutil_socket_t, short, void *);
void		 ctl_log(struct ctl_sink *, Vspc__Ctl__Request *);

/* control-attach.c */
extern const struct client_proto ctl_client_proto;
void		 ctl_pair_read(struct bufferevent *, void *);
void		 ctl_pair_event(struct bufferevent *, short, void *);
void		 ctl_client_input(struct client *, const u_char *, size_t);
void		 ctl_attach(struct ctl_sink *, struct ctl_conn *,
		     Vspc__Ctl__Request *);
void		 ctl_escape(struct ctl_conn *, const char *);

/* control-handoff.c */
void		 ctl_upgrade(struct ctl_sink *, Vspc__Ctl__Request *);

#endif /* CONTROL_INT_H */
