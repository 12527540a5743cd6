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
 * What the files of the cluster (cluster.c, cluster-fwd.c,
 * cluster-remote.c, cluster-vmotion.c, cluster-handoff.c) share and
 * nothing else may touch: the channel structures behind client->cluster,
 * their tables, and the functions one file of the family calls in
 * another.  A header of its own rather than vspcd.h, so that the rest of
 * the node keeps seeing client->cluster as opaque and the interface in
 * vspcd.h stays what other modules may call.  Include it after vspcd.h,
 * store.h and proto/vspc.pb-c.h.
 */

#ifndef CLUSTER_INT_H
#define CLUSTER_INT_H

/*
 * Bytes in flight per channel: enough to ride out a burst the size of a
 * console's history; the person's node holds at most this much for them.
 */
#define CLUSTER_CREDIT		(1024 * 1024)
#define CLUSTER_DATA_MAX	16384		/* Per Data frame. */
#define CLUSTER_HANDOVER_WAIT	5		/* Seconds. */
#define CLUSTER_RETRY_MS	500

/* A person here, attached to a console on another node. */
enum fwd_state {
	FWD_ATTACHING,
	FWD_ATTACHED,
	FWD_WAITING,		/* Owner unreachable or console moving. */
	FWD_STATE_MAX
};

struct fwd {
	struct hmap_entry	 entry;		/* In cluster_fwds. */
	char			 idkey[16];
	struct client		*c;
	u_int			 channel;
	char			*key;		/* Console key. */
	char			*node;		/* Owner it talks to. */
	enum fwd_state		 state;
	enum attach_mode	 mode;
	int			 initial;	/* First attach not answered. */
	int			 lost;		/* Its owner was lost meanwhile. */
	struct evbuffer		*pending;	/* Input while (re)attaching. */
	struct evbuffer		*seed;		/* Replay from AttachReply. */
	time_t			 deadline;	/* First attach: wait for a link. */
	int			 refused;	/* First attach refused: free it. */
	char			 req;		/* Menu request awaiting reply. */
	u_int			 req_lines;
	uint64_t		 next_off;	/* Next stream byte expected. */
	uint64_t		 stream;	/* ...of this stream. */
	int			 have_off;
	size_t			 unacked;	/* Received, not credited back. */
	struct event		*retry;
	int64_t			 ho_retry_ms;	/* Handed over: 1 + ms to arm. */
};

/* On the owner: a channel serving a person on another node. */
struct rchan {
	struct hmap_entry	 entry;		/* In cluster_rchans. */
	char			*idkey;
	char			*node;
	u_int			 channel;
	struct client		*c;
	size_t			 credit;
};

/*
 * A channel whose console moved away: input still in flight for it is
 * passed on to the new owner for a while.
 */
struct moved {
	char			*idkey;		/* "node/channel". */
	char			*key;
	char			*owner;
	time_t			 until;
	TAILQ_ENTRY(moved)	 entry;
};
TAILQ_HEAD(moveds, moved);
#define CLUSTER_MOVED_KEEP	10		/* Seconds. */

/* An Attach that waits for its console's history to arrive. */
struct pend_attach {
	char			*node;
	char			*key;
	uint8_t			*packed;
	size_t			 len;
	TAILQ_ENTRY(pend_attach) entry;
};
TAILQ_HEAD(pend_attaches, pend_attach);

/* cluster.c */
extern int		 cluster_on;
extern int		 cluster_handed;
extern struct event	*cluster_heartbeat_ev;
extern time_t		 cluster_started;
const char	*cluster_self(void);
struct peer	*cluster_peer(const char *);
int		 cluster_send(const char *, Vspc__Envelope *);
void		 cluster_publish(struct console *);
void		 cluster_refresh(const char *);
void		 cluster_yield(struct console *, const char *, uint64_t);
void		 cluster_heartbeat(evutil_socket_t, short, void *);

/* cluster-fwd.c */
extern struct hmap	 cluster_fwds;
extern u_int		 cluster_next_channel;
struct fwd	*cluster_fwd_find(u_int);
void		 cluster_fwd_retry_cb(evutil_socket_t, short, void *);
void		 cluster_fwd_wait(struct fwd *, const char *);
void		 cluster_fwd_start(struct client *, struct fwd *);
void		 cluster_fwd_localize(struct client *, struct console *);
void		 cluster_moved_to(const char *, const char *, uint64_t);
void		 cluster_fwd_moved(struct fwd *);
void		 cluster_fwd_free(struct client *);
void		 cluster_attach_reply(struct peer *, const Vspc__AttachReply *);
void		 cluster_fwd_data(struct peer *, const Vspc__Data *);
void		 cluster_fwd_role(struct client *, const char *);
void		 cluster_mode_reply(struct peer *, const Vspc__ModeReply *);

/* cluster-remote.c */
extern struct hmap		 cluster_rchans;
extern struct moveds		 cluster_moved_channels;
extern struct pend_attaches	 cluster_pend_attaches;
struct rchan	*cluster_rchan_find(const char *, u_int);
void		 cluster_remote_attach(const char *, const Vspc__Attach *);
void		 cluster_pend_run(const char *);
void		 cluster_moved_add(const char *, const char *, const char *);
void		 cluster_moved_free(struct moved *);
void		 cluster_moved_input(const char *, u_int, const u_char *,
		     size_t);
void		 cluster_rchan_drop(struct rchan *);
void		 cluster_remote_mode(struct peer *, const Vspc__Mode *);

/* cluster-vmotion.c */
void		 cluster_vmotion_timer(evutil_socket_t, short, void *);
void		 cluster_handover_timeout(evutil_socket_t, short, void *);
void		 cluster_msg_peered(struct peer *, const Vspc__VmotionPeered *);
void		 cluster_msg_completed(struct peer *,
		     const Vspc__VmotionCompleted *);
void		 cluster_msg_handover(struct peer *, const Vspc__Handover *);
void		 cluster_msg_failed(struct peer *, const Vspc__VmotionFailed *);
void		 cluster_msg_aborted(struct peer *,
		     const Vspc__VmotionAborted *);

#endif /* CLUSTER_INT_H */
