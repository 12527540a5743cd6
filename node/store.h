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
 * The shared-state interface: console ownership and vMotion tokens.
 *
 * Every call is asynchronous: the result comes to a callback on the
 * event loop.  An implementation may call back before the call returns
 * (the in-process store does, so that BEGIN is answered in the same loop
 * turn) or later (a network store); callers must handle both, and must
 * not free what the callback's argument points to while a call is in
 * flight (they keep an identifier and look the object up again).
 *
 * Tokens are stored under a digest of seq||secret, never the secret
 * itself, and compared in constant time.  A token is single use: a
 * successful take removes it.
 */

#ifndef STORE_H
#define STORE_H

#include <stddef.h>
#include <stdint.h>

struct store;

enum store_status {
	STORE_OK,
	STORE_NOTFOUND,		/* No such token, expired, or used. */
	STORE_CONFLICT,		/* Epoch check failed: someone else owns it. */
	STORE_UNAVAILABLE,	/* The store cannot be reached. */
	STORE_STATUS_MAX
};

/* A node as the registry knows it. */
struct store_node {
	char		 id[64];
	char		 peer[128];	/* host:port of its peer link. */
	char		 version[32];
	char		 state[16];	/* active, draining, upgrading. */
	int64_t		 started;	/* Unix time. */
	int64_t		 heartbeat;	/* Unix time of its last refresh. */
	uint32_t	 consoles;
	uint32_t	 clients;
	uint32_t	 vmotions;	/* vMotions in flight. */
	uint32_t	 peers;		/* Peer links up. */
};

/* A console as the shared state knows it. */
struct store_console {
	char		 key[128];
	char		 owner[64];	/* Node ID, "" if none. */
	uint64_t	 epoch;
	char		 name[256];
	char		 state[16];	/* connected, disconnected, vmotion. */
	int64_t		 since;		/* Unix time connected, or 0. */
};

/* Something another node did, pushed to every node. */
enum store_event_type {
	STORE_EV_CONSOLE,	/* A console's record changed (console set). */
	STORE_EV_CONSOLE_GONE,	/* A console was forgotten (key). */
	STORE_EV_NODE_UP,	/* A node registered (node set). */
	STORE_EV_NODE_DOWN,	/* A node left or its record expired. */
	STORE_EV_RESYNC,	/* Events may have been missed: rescan. */
	STORE_EV_CONNECTED,	/* The store is reachable (again). */
	STORE_EV_DISCONNECTED,	/* The store cannot be reached. */
	STORE_EV_MAX
};

struct store_event {
	enum store_event_type	 type;
	const struct store_console *console;
	const struct store_node	*node;
	const char		*key;
};

typedef void	(*store_event_cb)(const struct store_event *, void *);

/* What a token resolves to. */
struct store_token {
	char		 console[128];	/* Console key. */
	char		 node[64];	/* Node that issued it. */
	uint64_t	 id;		/* Issuer's vMotion identifier. */
};

typedef void	(*store_done_cb)(enum store_status, void *);
typedef void	(*store_token_cb)(enum store_status, const struct store_token *,
		    void *);
typedef void	(*store_claim_cb)(enum store_status, uint64_t, void *);
typedef void	(*store_console_cb)(enum store_status,
		    const struct store_console *, void *);
typedef void	(*store_consoles_cb)(enum store_status,
		    const struct store_console *, size_t, void *);
typedef void	(*store_nodes_cb)(enum store_status, const struct store_node *,
		    size_t, void *);

struct store_ops {
	const char	*name;
	void	(*token_put)(struct store *, const u_char *, size_t,
		    const struct store_token *, u_int, store_done_cb, void *);
	void	(*token_take)(struct store *, const u_char *, size_t,
		    store_token_cb, void *);
	void	(*token_del)(struct store *, const u_char *, size_t);
	void	(*console_claim)(struct store *, const char *, const char *,
		    uint64_t, store_claim_cb, void *);
	void	(*console_release)(struct store *, const char *, uint64_t);
	void	(*free)(struct store *);

	/*
	 * Cluster state.  A single-node store answers these from its own
	 * tables (one node, its own consoles).
	 */
	void	(*console_update)(struct store *, const struct store_console *);
	void	(*console_get)(struct store *, const char *, store_console_cb,
		    void *);
	void	(*console_list)(struct store *, store_consoles_cb, void *);
	void	(*node_update)(struct store *, const struct store_node *);
	void	(*node_list)(struct store *, store_nodes_cb, void *);
	void	(*set_events)(struct store *, store_event_cb, void *);
};

struct store {
	const struct store_ops	*ops;
	char			*node;	/* This node's identifier. */
	int			 shared;	/* Other nodes see it. */
	int			 connected;	/* Reachable now. */
	u_int			 inflight;	/* Commands awaiting a reply. */
	void			*impl;
};

struct config;
struct event_base;

struct store	*store_local_create(const char *);
struct store	*store_redis_create(struct event_base *, const struct config *,
		    char **);

const char	*store_status_string(enum store_status);

/* Hot upgrade (handoff.c): the in-process store's tables. */
struct handoff;
void		 store_local_handoff_save(struct store *, struct handoff *);
int		 store_local_handoff_restore(struct store *, const uint8_t *,
		     size_t, char **);

/*
 * Convenience wrappers: the store is reached only through these.
 * token_put stores seq||secret with a TTL in seconds; token_take looks
 * it up in constant time and deletes it; console_claim makes this node
 * the owner of a console if the epoch it knows is still current, and
 * returns the new epoch.
 *
 * console_claim(s, key, node, known, cb, arg): with known 0 the claim
 * always wins (the node that holds the VM's connection owns the
 * console).  Otherwise it fails with STORE_CONFLICT and the stored epoch
 * when another node owns the console at an epoch other than known; it
 * wins when nobody owns it, when node already does, or when the epoch
 * is still known.  A win takes a new epoch from the cluster's counter.
 * console_release and console_update act only if their epoch is the
 * stored one (fencing: a node that lost a console cannot change it).
 */
#define store_token_put(s, t, l, v, ttl, cb, a) \
	((s)->ops->token_put((s), (t), (l), (v), (ttl), (cb), (a)))
#define store_token_take(s, t, l, cb, a) \
	((s)->ops->token_take((s), (t), (l), (cb), (a)))
#define store_token_del(s, t, l) \
	((s)->ops->token_del((s), (t), (l)))
#define store_console_claim(s, k, n, e, cb, a) \
	((s)->ops->console_claim((s), (k), (n), (e), (cb), (a)))
#define store_console_release(s, k, e) \
	((s)->ops->console_release((s), (k), (e)))
#define store_free(s) \
	((s)->ops->free(s))
#define store_console_update(s, c) \
	((s)->ops->console_update((s), (c)))
#define store_console_get(s, k, cb, a) \
	((s)->ops->console_get((s), (k), (cb), (a)))
#define store_console_list(s, cb, a) \
	((s)->ops->console_list((s), (cb), (a)))
#define store_node_update(s, n) \
	((s)->ops->node_update((s), (n)))
#define store_node_list(s, cb, a) \
	((s)->ops->node_list((s), (cb), (a)))
#define store_set_events(s, cb, a) \
	((s)->ops->set_events((s), (cb), (a)))

#endif /* STORE_H */
