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
};

struct store {
	const struct store_ops	*ops;
	char			*node;	/* This node's identifier. */
	void			*impl;
};

struct store	*store_local_create(const char *);

const char	*store_status_string(enum store_status);

/*
 * Convenience wrappers: the store is reached only through these.
 * token_put stores seq||secret with a TTL in seconds; token_take looks
 * it up in constant time and deletes it; console_claim makes this node
 * the owner of a console if the epoch it knows is still current, and
 * returns the new epoch.
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

#endif /* STORE_H */
