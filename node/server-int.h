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
 * What the files of the server (server.c, server-listen.c,
 * server-handoff.c) share and nothing else may touch: the listeners, the
 * connections waiting for their TLS handshake, and the functions one
 * file of the family calls in another.  A header of its own rather than
 * vspcd.h, so that the rest of the node keeps seeing the listeners only
 * through server_listener_name() and server_vm_listeners(), and the
 * interface in vspcd.h stays what other modules may call.  Include it
 * after vspcd.h.
 */

#ifndef SERVER_INT_H
#define SERVER_INT_H

/*
 * A connection handed to the TLS process, holding its per-source slot
 * until the plain end comes back (or the handshake failed, or the TLS
 * process went away: then the deadline frees it).
 */
struct server_pending {
	struct sockaddr_storage	 ss;
	u_int			 kind;
	struct limit_slot	*slot;
	time_t			 deadline;
	TAILQ_ENTRY(server_pending) entry;
};
TAILQ_HEAD(server_pendings, server_pending);
extern struct server_pendings server_pendings;

struct listener {
	enum listener_kind	 kind;
	char			*text;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	struct evconnlistener	*lev;
	struct event		*retry;
	int			 mark;
	TAILQ_ENTRY(listener)	 entry;
};
TAILQ_HEAD(listeners, listener);
extern struct listeners	 server_listeners;

/* server-listen.c */
struct evconnlistener;
void		 server_accept(struct evconnlistener *, evutil_socket_t,
		     struct sockaddr *, int, void *);
void		 server_accept_error(struct evconnlistener *, void *);
void		 server_listener_free(struct listener *);
int		 server_listen_all(struct config *, char **);
void		 server_pending_free(struct server_pending *);
void		 server_pending_expire(void);
void		 server_refusal_roll(void);
void		 server_tls_done(int, const struct sockaddr *, u_int,
		     const char *);
void		 server_tls_failed(const struct sockaddr *, u_int);

#endif /* SERVER_INT_H */
