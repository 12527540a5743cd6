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
 * What the files of the peer link (peer.c, peer-link.c, peer-frame.c,
 * peer-handoff.c) share and nothing else may touch: links, peers, wants,
 * listeners, this node's identity and the functions one file calls in
 * another.  A header of its own rather than vspcd.h: to the rest of the
 * node a peer is an opaque struct peer behind the peer_* interface.
 * Include it after vspcd.h and proto/vspc.pb-c.h.
 */

#ifndef PEER_INT_H
#define PEER_INT_H

#define PEER_PORT		13373
#define PEER_PROTOCOL_MIN	1	/* Oldest protocol we still speak. */
#define PEER_CHALLENGE_LEN	32
#define PEER_MAC_LEN		32	/* HMAC-SHA256. */
#define PEER_SECRET_MIN		16
#define PEER_SECRET_MAX		4096
#define PEER_ID_MAX		64
#define PEER_OUTPUT_MAX		(64 * 1024 * 1024)
#define PEER_READ_SIZE		65536
#define PEER_HANDSHAKE_MS	10000
#define PEER_PING_DEFAULT	5	/* Seconds. */
#define PEER_PING_MISSED	3	/* Silent intervals before closing. */
#define PEER_BACKOFF_MIN_MS	100
#define PEER_BACKOFF_MAX_MS	5000

/* Who this node is, as one link presents it. */
struct peer_self {
	u_int		 references;
	char		*node_id;
	char		*cluster;
	u_char		*secret;
	size_t		 secretlen;
	char		*advertise;
	size_t		 frame_max;
	u_int		 ping_ms;
	u_int		 handshake_ms;
};

enum peer_link_state {
	PEER_LINK_CONNECTING,
	PEER_LINK_HELLO,
	PEER_LINK_READY,
	PEER_LINK_DEAD,
	PEER_LINK_STATE_MAX
};

struct peer_want;

struct peer_link {
	u_int			 id;
	int			 fd;
	enum peer_link_state	 state;
	int			 flags;
#define PEER_LINK_OUTBOUND	0x1
#define PEER_LINK_HELLO_OK	0x2	/* Their Hello answered. */
#define PEER_LINK_AUTH_OK	0x4	/* Their HelloAuth verified. */
#define PEER_LINK_WRITE_WAIT	0x8
#define PEER_LINK_DOOMED	0x10	/* The reaper closes it. */
#define PEER_LINK_TLS_WAIT	0x20	/* In the TLS process's handshake. */

	struct peer_self	*self;
	struct peer_want	*want;		/* Outbound: its want. */
	struct peer		*peer;		/* Once READY, kept. */
	char			*node;		/* Then Hello's. */
	char			*advertised;	/* Hello's address. */
	char			*doom_reason;
	char			*cn;		/* Verified certificate's CN. */
	char			 addr[64];
	u_char			 challenge[PEER_CHALLENGE_LEN];

	struct evbuffer		*in;
	struct evbuffer		*out;
	struct event		*ev_read;
	struct event		*ev_write;
	struct event		*ev_timer;	/* Handshake, ping. */

	uint64_t		 last_rx;	/* Monotonic microseconds. */
	uint64_t		 ping_nonce;
	uint64_t		 ping_sent;
	uint64_t		 rtt_us;	/* Of the last answered ping. */
	time_t			 created;
	uint64_t		 frames_in;
	uint64_t		 frames_out;
	uint64_t		 bytes_in;
	uint64_t		 bytes_out;
	uint64_t		 ignored_in;	/* Unknown, skipped. */

	TAILQ_ENTRY(peer_link)	 entry;
};
TAILQ_HEAD(peer_links, peer_link);

struct peer {
	char			*node;
	struct peer_link	*link;
	void			*data;
	time_t			 up_since;
	u_int			 link_changes;	/* Swapped links. */
	TAILQ_ENTRY(peer)	 entry;		/* Live or dead list. */
};
TAILQ_HEAD(peers, peer);

/* A node we keep an outbound link to. */
struct peer_want {
	char			*node;
	char			*addr;
	struct peer_link	*link;		/* Connecting or up. */
	struct event		*retry;
	u_int			 backoff_ms;
	uint64_t		 connects;
	TAILQ_ENTRY(peer_want)	 entry;
};
TAILQ_HEAD(peer_wants, peer_want);

struct peer_listener {
	char			*text;
	struct peer_self	*self;
	struct evconnlistener	*lev;
	struct event		*retry;
	TAILQ_ENTRY(peer_listener) entry;
};
TAILQ_HEAD(peer_listeners, peer_listener);

/* peer.c */
extern struct peer_self		*peer_me;
extern struct peer_links	 peer_links;
extern struct peer_links	 peer_dead_links;
extern struct peers		 peer_live;
extern struct peers		 peer_dead;
extern struct peer_wants	 peer_wants;
extern struct peer_listeners	 peer_listeners;
extern u_int			 peer_npeers;
extern u_int			 peer_nlinks;
extern u_int			 peer_next_id;
extern u_int			 peer_test_ping_ms;
extern u_int			 peer_test_handshake_ms;
extern uint64_t			 peer_handshake_failures;
extern char			 peer_last_reason[256];
const char	*peer_link_name(const struct peer_link *);
const char	*peer_msg_name(const Vspc__Envelope *);
int		 peer_id_valid(const char *);
void		 peer_reap_later(void);
void		 peer_want_retry_cb(evutil_socket_t, short, void *);
void		 peer_want_schedule(struct peer_want *);
void		 peer_accept_cb(struct evconnlistener *, evutil_socket_t,
		     struct sockaddr *, int, void *);
void		 peer_accept_error_cb(struct evconnlistener *, void *);
void		 peer_listener_free(struct peer_listener *);

/* peer-link.c */
void		 peer_link_doom(struct peer_link *, const char *);
void		 peer_link_close(struct peer_link *, int, const char *, ...)
		     __attribute__((__format__ (printf, 3, 4)));
void		 peer_link_arm_timer(struct peer_link *, int);
struct peer_link *peer_link_alloc(int, int, const char *, struct peer_self *,
		     const char *);
struct peer_link *peer_link_new(int, int, const char *, struct peer_self *,
		     const char *);
void		 peer_link_start(struct peer_link *);
int		 peer_link_flush(struct peer_link *);
int		 peer_link_send(struct peer_link *, const Vspc__Envelope *);
void		 peer_link_input(struct peer_link *);
int		 peer_tls_on(void);
u_int		 peer_handshake_secs(const struct peer_self *);
void		 peer_link_tls(struct peer_link *);

/* peer-frame.c */
void		 peer_mac(const struct peer_self *, const u_char *,
		     const char *, const char *, u_char *);

#endif /* PEER_INT_H */
