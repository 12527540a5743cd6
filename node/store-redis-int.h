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
 * What the files of the Redis store (store-redis.c, store-redis-conn.c,
 * store-redis-ops.c, store-redis-events.c) share and nothing else may
 * touch: the store's state, its connections and requests, and the
 * functions one file calls in another.  A header of its own rather than
 * vspcd.h: outside these files the store is only struct store and the
 * interface of store.h.  Include it after vspcd.h, store.h and hiredis.
 */

#ifndef STORE_REDIS_INT_H
#define STORE_REDIS_INT_H

#define REDIS_INFLIGHT_MAX	10000	/* Commands in flight, in all. */
#define REDIS_LIST_WINDOW	1000	/* HGETALLs in flight per list. */
#define REDIS_BACKOFF_MIN	100	/* Milliseconds. */
#define REDIS_BACKOFF_MAX	5000
#define REDIS_SCAN_COUNT	"1000"

#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof (a)[0])
#endif

enum rconn_kind {
	RCONN_CMD,
	RCONN_SUB,
	RCONN_SENTINEL,
	RCONN_KIND_MAX
};

enum rconn_state {
	RCONN_IDLE,		/* No connection; maybe a retry pending. */
	RCONN_CONNECTING,
	RCONN_HANDSHAKE,	/* AUTH, SELECT, ROLE, SUBSCRIBE. */
	RCONN_READY,
	RCONN_DROPPING,		/* Closing at the next loop turn. */
	RCONN_STATE_MAX
};

struct redis_store;
struct redis_req;
TAILQ_HEAD(redis_reqs, redis_req);

struct rconn {
	struct redis_store	*rs;
	enum rconn_kind		 kind;
	enum rconn_state	 state;
	redisAsyncContext	*ac;
	char			*host;		/* Of the current connection. */
	int			 port;
	u_int			 backoff;	/* Next retry delay, ms. */
	uint64_t		 deadline;	/* To be ready by, ms. */
	u_int			 step;		/* Of the handshake. */
	int			 failing;	/* Failure already logged. */
	struct event		*ev_retry;
	struct event		*ev_watch;
	struct event		*ev_drop;
	char			*drop_reason;
	struct redis_reqs	 inflight;	/* In sending order. */
};

struct redis_list;

struct redis_req {
	struct rconn		*conn;
	void			(*done)(struct redis_req *, redisReply *);
	union {
		store_done_cb	 done;
		store_token_cb	 token;
		store_claim_cb	 claim;
		store_console_cb console;
	} cb;
	void			*arg;
	struct redis_list	*list;
	size_t			 index;		/* Into list->keys. */
	char			*key;
	u_char			 token[VMOTION_TOKEN_MAX];
	size_t			 tokenlen;
	int			 internal;	/* Not counted, not capped. */
	uint64_t		 deadline;	/* Reply due by, ms. */
	TAILQ_ENTRY(redis_req)	 entry;
};

/* A console or node listing: SCAN, then HGETALL of every key found. */
struct redis_list_key {
	struct hmap_entry	 entry;
	char			*key;		/* Full Redis key. */
};

struct redis_list {
	struct redis_store	*rs;
	int			 nodes;		/* Else consoles. */
	char			*pattern;
	store_consoles_cb	 consoles_cb;
	store_nodes_cb		 nodes_cb;
	void			*arg;
	struct hmap		 seen;
	struct redis_list_key  **keys;
	size_t			 nkeys;
	size_t			 size;		/* Allocated, of each array. */
	size_t			 next;		/* Next key to fetch. */
	u_int			 pending;	/* Replies awaited, holds. */
	u_int			 fetching;	/* HGETALLs in flight. */
	int			 scanning;
	int			 answered;
	struct store_console	*consoles;	/* One per key. */
	struct store_node	*nodelist;
	int			*valid;
};

struct redis_store {
	struct store		*s;
	struct event_base	*base;
	char			*prefix;	/* "vspc:{name}:" */
	char			*channel;
	char			*epoch_key;
	char			*name_prefix;
	u_int			 timeout;	/* ms */
	u_int			 node_timeout;	/* ms */
	u_int			 heartbeat;	/* ms */

	struct redis_addr	 url;		/* Direct mode. */
	int			 sentinel;	/* Sentinel mode. */
	struct redis_addr	*sentinels;
	u_int			 nsentinels;
	u_int			 sen_idx;
	u_char			*sen_down;	/* Failure logged, each. */
	int			 sen_reask;	/* Next ask after a delay. */
	char			*master_name;
	char			*sentinel_password;
	char			*master_host;	/* As the Sentinels said. */
	int			 master_port;
	int			 master_known;	/* Else ask them again. */
	int			 master_moved;

	struct rconn		 conn[RCONN_KIND_MAX];
	u_int			 inflight;
	int			 overloaded;

	store_event_cb		 evcb;
	void			*evarg;
	struct event		*ev_tick;
	int			 tick_busy;
	struct store_node	*known;		/* Last node list. */
	size_t			 nknown;
	int			 freeing;
};

#define CMD(rs)		(&(rs)->conn[RCONN_CMD])
#define SUB(rs)		(&(rs)->conn[RCONN_SUB])
#define SEN(rs)		(&(rs)->conn[RCONN_SENTINEL])

/* store-redis.c */
uint64_t	 redis_now(void);
void		 redis_timeval(u_int, struct timeval *);
void		 redis_emit(struct redis_store *, enum store_event_type,
		     const struct store_console *, const struct store_node *,
		     const char *);
const char	*reply_describe(const redisReply *, char *, size_t);
void		 reply_unexpected(const char *, const redisReply *);
int		 reply_is_ok(const redisReply *);
int		 redis_parse_u64(const char *, size_t, uint64_t *);
int		 redis_parse_i64(const char *, size_t, int64_t *);
int		 reply_u64(const redisReply *, uint64_t *);
int		 reply_i64(const redisReply *, int64_t *);
void		 reply_copy(char *, size_t, const redisReply *);
int		 reply_field(const redisReply *, const char *);
int		 reply_is_hash(const redisReply *);
void		 redis_parse_console(const char *, const redisReply *,
		     struct store_console *);
void		 redis_parse_node(const char *, const redisReply *,
		     struct store_node *);
void		 redis_free(struct store *);

/* store-redis-conn.c */
struct redis_req *req_new(void (*)(struct redis_req *, redisReply *),
		     void *);
int		 rconn_send(struct rconn *, struct redis_req *, int,
		     const char **, const size_t *);
int		 rconn_sendv(struct rconn *, struct redis_req *, int,
		     const char **);
void		 rconn_watch(int, short, void *);
void		 rconn_drop(struct rconn *, const char *, ...)
		     __attribute__((__format__ (printf, 2, 3)));
void		 rconn_drop_now(int, short, void *);
void		 rconn_retry(int, short, void *);
void		 rconn_schedule(struct rconn *, u_int);
void		 rconn_ready(struct rconn *);
void		 redis_sentinel_found(struct redis_store *, const char *, int,
		     const char *);

/* store-redis-ops.c */
extern const struct store_ops redis_ops;

/* store-redis-events.c */
void		 redis_sub_message(redisAsyncContext *, void *, void *);
void		 redis_list_start(struct redis_store *, int, store_consoles_cb,
		     store_nodes_cb, void *);
void		 redis_tick(int, short, void *);

#endif /* STORE_REDIS_INT_H */
