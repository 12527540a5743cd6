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
 * The in-process store: the default for a single node.  Tokens live in a
 * hash map keyed by the hex SHA-256 of seq||secret, with the token itself
 * kept for a constant-time comparison; a queue in creation order lets
 * expired tokens be dropped cheaply (every token has the same TTL, so the
 * oldest expire first).  Ownership epochs come from one counter.
 *
 * Every call answers before it returns.
 */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "vspcd.h"
#include "store.h"
#include "proto/handoff.pb-c.h"

struct local_token {
	struct hmap_entry	 entry;
	char			 digest[65];
	u_char			 token[VMOTION_TOKEN_MAX];
	size_t			 len;
	struct store_token	 value;
	time_t			 expires;
	TAILQ_ENTRY(local_token) qentry;
};
TAILQ_HEAD(local_tokens, local_token);

struct local_console {
	struct hmap_entry	 entry;
	char			*key;
	uint64_t		 epoch;
	struct store_console	 rec;
	TAILQ_ENTRY(local_console) qentry;
};
TAILQ_HEAD(local_consoles, local_console);

struct local_store {
	struct hmap		 tokens;
	struct local_tokens	 queue;
	struct hmap		 consoles;
	struct local_consoles	 console_list;
	uint64_t		 epoch;
	struct store_node	 node;
	int			 have_node;
};

static time_t
local_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}

static void
local_digest(const u_char *token, size_t len, char *out)
{
	static const char	 hex[] = "0123456789abcdef";
	u_char			 md[EVP_MAX_MD_SIZE];
	u_int			 mdlen, i;

	if (!EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL))
		fatalx("store: SHA-256 failed");
	for (i = 0; i < mdlen && i < 32; i++) {
		out[i * 2] = hex[md[i] >> 4];
		out[i * 2 + 1] = hex[md[i] & 0xf];
	}
	out[i * 2] = '\0';
}

static void
local_token_free(struct local_store *ls, struct local_token *lt)
{
	hmap_remove(&ls->tokens, &lt->entry);
	TAILQ_REMOVE(&ls->queue, lt, qentry);
	OPENSSL_cleanse(lt->token, sizeof lt->token);
	free(lt);
}

static void
local_expire(struct local_store *ls)
{
	struct local_token	*lt;
	time_t			 now = local_now();

	while ((lt = TAILQ_FIRST(&ls->queue)) != NULL && lt->expires <= now)
		local_token_free(ls, lt);
}

static struct local_token *
local_token_find(struct local_store *ls, const u_char *token, size_t len)
{
	struct hmap_entry	*e;
	struct local_token	*lt;
	char			 digest[65];

	local_digest(token, len, digest);
	if ((e = hmap_find(&ls->tokens, digest)) == NULL)
		return (NULL);
	lt = hmap_data(e, struct local_token, entry);
	if (lt->len != len || CRYPTO_memcmp(lt->token, token, len) != 0)
		return (NULL);
	return (lt);
}

static void
local_token_put(struct store *s, const u_char *token, size_t len,
    const struct store_token *value, u_int ttl, store_done_cb cb, void *arg)
{
	struct local_store	*ls = s->impl;
	struct local_token	*lt;

	local_expire(ls);
	if (len == 0 || len > sizeof lt->token) {
		cb(STORE_UNAVAILABLE, arg);
		return;
	}
	if ((lt = local_token_find(ls, token, len)) != NULL)
		local_token_free(ls, lt);
	lt = xcalloc(1, sizeof *lt);
	local_digest(token, len, lt->digest);
	memcpy(lt->token, token, len);
	lt->len = len;
	lt->value = *value;
	lt->expires = local_now() + ttl;
	hmap_insert(&ls->tokens, &lt->entry, lt->digest);
	TAILQ_INSERT_TAIL(&ls->queue, lt, qentry);
	cb(STORE_OK, arg);
}

static void
local_token_take(struct store *s, const u_char *token, size_t len,
    store_token_cb cb, void *arg)
{
	struct local_store	*ls = s->impl;
	struct local_token	*lt;
	struct store_token	 value;

	local_expire(ls);
	if (len == 0 || len > VMOTION_TOKEN_MAX ||
	    (lt = local_token_find(ls, token, len)) == NULL) {
		cb(STORE_NOTFOUND, NULL, arg);
		return;
	}
	value = lt->value;
	local_token_free(ls, lt);
	cb(STORE_OK, &value, arg);
}

static void
local_token_del(struct store *s, const u_char *token, size_t len)
{
	struct local_store	*ls = s->impl;
	struct local_token	*lt;

	if (len != 0 && len <= VMOTION_TOKEN_MAX &&
	    (lt = local_token_find(ls, token, len)) != NULL)
		local_token_free(ls, lt);
	local_expire(ls);
}

static void
local_console_claim(struct store *s, const char *key, const char *node,
    uint64_t known, store_claim_cb cb, void *arg)
{
	struct local_store	*ls = s->impl;
	struct hmap_entry	*e;
	struct local_console	*lc;

	if ((e = hmap_find(&ls->consoles, key)) == NULL) {
		lc = xcalloc(1, sizeof *lc);
		lc->key = xstrdup(key);
		snprintf(lc->rec.key, sizeof lc->rec.key, "%s", key);
		hmap_insert(&ls->consoles, &lc->entry, lc->key);
		TAILQ_INSERT_TAIL(&ls->console_list, lc, qentry);
	} else
		lc = hmap_data(e, struct local_console, entry);

	/*
	 * One node owns everything here, so a claim always wins; the epoch
	 * still moves so that the numbers mean the same as in a cluster.
	 */
	lc->epoch = ++ls->epoch;
	lc->rec.epoch = lc->epoch;
	snprintf(lc->rec.owner, sizeof lc->rec.owner, "%s", node);
	cb(STORE_OK, lc->epoch, arg);
}

static void
local_console_release(struct store *s, const char *key, uint64_t epoch)
{
	struct local_store	*ls = s->impl;
	struct hmap_entry	*e;
	struct local_console	*lc;

	if ((e = hmap_find(&ls->consoles, key)) == NULL)
		return;
	lc = hmap_data(e, struct local_console, entry);
	if (lc->epoch != epoch)
		return;
	hmap_remove(&ls->consoles, e);
	TAILQ_REMOVE(&ls->console_list, lc, qentry);
	free(lc->key);
	free(lc);
}

static void
local_console_update(struct store *s, const struct store_console *rec)
{
	struct local_store	*ls = s->impl;
	struct hmap_entry	*e;
	struct local_console	*lc;

	if ((e = hmap_find(&ls->consoles, rec->key)) == NULL)
		return;
	lc = hmap_data(e, struct local_console, entry);
	if (lc->epoch != rec->epoch)
		return;
	lc->rec = *rec;
}

static void
local_console_get(struct store *s, const char *key, store_console_cb cb,
    void *arg)
{
	struct local_store	*ls = s->impl;
	struct hmap_entry	*e;

	if ((e = hmap_find(&ls->consoles, key)) == NULL) {
		cb(STORE_NOTFOUND, NULL, arg);
		return;
	}
	cb(STORE_OK, &hmap_data(e, struct local_console, entry)->rec, arg);
}

static void
local_console_list(struct store *s, store_consoles_cb cb, void *arg)
{
	struct local_store	*ls = s->impl;
	struct local_console	*lc;
	struct store_console	*recs = NULL;
	size_t			 n = 0;

	TAILQ_FOREACH(lc, &ls->console_list, qentry) {
		recs = xreallocarray(recs, n + 1, sizeof *recs);
		recs[n++] = lc->rec;
	}
	cb(STORE_OK, recs, n, arg);
	free(recs);
}

static void
local_node_update(struct store *s, const struct store_node *node)
{
	struct local_store	*ls = s->impl;

	ls->node = *node;
	ls->have_node = 1;
}

static void
local_node_list(struct store *s, store_nodes_cb cb, void *arg)
{
	struct local_store	*ls = s->impl;

	cb(STORE_OK, &ls->node, ls->have_node, arg);
}

static void
local_set_events(struct store *s, store_event_cb cb, void *arg)
{
	/* Nothing happens elsewhere: there is no elsewhere. */
}

static void
local_free(struct store *s)
{
	struct local_store	*ls = s->impl;
	struct local_token	*lt;
	struct hmap_entry	*e;
	struct local_console	*lc;
	u_int			 i;

	while ((lt = TAILQ_FIRST(&ls->queue)) != NULL)
		local_token_free(ls, lt);
	for (i = 0; i < ls->consoles.nb; i++) {
		while ((e = ls->consoles.b[i]) != NULL) {
			lc = hmap_data(e, struct local_console, entry);
			hmap_remove(&ls->consoles, e);
			TAILQ_REMOVE(&ls->console_list, lc, qentry);
			free(lc->key);
			free(lc);
		}
	}
	hmap_free(&ls->tokens);
	hmap_free(&ls->consoles);
	free(ls);
	free(s->node);
	free(s);
}

static const struct store_ops local_ops = {
	"local",
	local_token_put,
	local_token_take,
	local_token_del,
	local_console_claim,
	local_console_release,
	local_free,
	local_console_update,
	local_console_get,
	local_console_list,
	local_node_update,
	local_node_list,
	local_set_events
};

/* Create the in-process store for node. */
struct store *
store_local_create(const char *node)
{
	struct store		*s;
	struct local_store	*ls;

	ls = xcalloc(1, sizeof *ls);
	hmap_init(&ls->tokens);
	hmap_init(&ls->consoles);
	TAILQ_INIT(&ls->queue);
	TAILQ_INIT(&ls->console_list);

	s = xcalloc(1, sizeof *s);
	s->ops = &local_ops;
	s->node = xstrdup(node);
	s->connected = 1;
	s->impl = ls;
	return (s);
}

/* Hot upgrade: write the tokens (with the time they have left) and records. */
void
store_local_handoff_save(struct store *s, struct handoff *h)
{
	struct local_store		*ls = s->impl;
	struct local_token		*lt;
	struct local_console		*lc;
	Vspc__Handoff__Store		 m = VSPC__HANDOFF__STORE__INIT;
	Vspc__Handoff__Token		*tok;
	Vspc__Handoff__StoreConsole	*sc;
	time_t				 now;
	size_t				 i;

	local_expire(ls);
	now = local_now();
	m.epoch = ls->epoch;
	TAILQ_FOREACH(lt, &ls->queue, qentry)
		m.n_tokens++;
	TAILQ_FOREACH(lc, &ls->console_list, qentry)
		m.n_consoles++;
	m.tokens = xcalloc(m.n_tokens + 1, sizeof *m.tokens);
	m.consoles = xcalloc(m.n_consoles + 1, sizeof *m.consoles);
	i = 0;
	TAILQ_FOREACH(lt, &ls->queue, qentry) {
		tok = xcalloc(1, sizeof *tok);
		vspc__handoff__token__init(tok);
		tok->token.data = lt->token;
		tok->token.len = lt->len;
		tok->console = lt->value.console;
		tok->node = lt->value.node;
		tok->id = lt->value.id;
		tok->ttl_us = (int64_t)(lt->expires - now) * 1000000;
		m.tokens[i++] = tok;
	}
	i = 0;
	TAILQ_FOREACH(lc, &ls->console_list, qentry) {
		sc = xcalloc(1, sizeof *sc);
		vspc__handoff__store_console__init(sc);
		sc->key = lc->key;
		sc->epoch = lc->epoch;
		sc->owner = lc->rec.owner;
		sc->name = lc->rec.name;
		sc->state = lc->rec.state;
		sc->since = lc->rec.since;
		m.consoles[i++] = sc;
	}
	handoff_add_msg(h, HANDOFF_REC_STORE, &m.base);
	for (i = 0; i < m.n_tokens; i++)
		free(m.tokens[i]);
	for (i = 0; i < m.n_consoles; i++)
		free(m.consoles[i]);
	free(m.tokens);
	free(m.consoles);
}

/* Hot upgrade: rebuild the tables from the old process's record. */
int
store_local_handoff_restore(struct store *s, const uint8_t *data, size_t len,
    char **err)
{
	struct local_store		*ls = s->impl;
	struct local_token		*lt;
	struct local_console		*lc;
	Vspc__Handoff__Store		*m;
	Vspc__Handoff__Token		*tok;
	Vspc__Handoff__StoreConsole	*sc;
	time_t				 now = local_now();
	size_t				 i;

	if ((m = vspc__handoff__store__unpack(NULL, len, data)) == NULL) {
		*err = xstrdup("malformed store record");
		return (-1);
	}
	ls->epoch = m->epoch;
	for (i = 0; i < m->n_tokens; i++) {
		tok = m->tokens[i];
		if (tok->token.len == 0 || tok->token.len > sizeof lt->token)
			continue;
		lt = xcalloc(1, sizeof *lt);
		memcpy(lt->token, tok->token.data, tok->token.len);
		lt->len = tok->token.len;
		local_digest(lt->token, lt->len, lt->digest);
		snprintf(lt->value.console, sizeof lt->value.console, "%s",
		    tok->console);
		snprintf(lt->value.node, sizeof lt->value.node, "%s",
		    tok->node);
		lt->value.id = tok->id;
		lt->expires = now + (tok->ttl_us + 999999) / 1000000;
		hmap_insert(&ls->tokens, &lt->entry, lt->digest);
		TAILQ_INSERT_TAIL(&ls->queue, lt, qentry);
	}
	for (i = 0; i < m->n_consoles; i++) {
		sc = m->consoles[i];
		if (hmap_find(&ls->consoles, sc->key) != NULL)
			continue;
		lc = xcalloc(1, sizeof *lc);
		lc->key = xstrdup(sc->key);
		lc->epoch = sc->epoch;
		snprintf(lc->rec.key, sizeof lc->rec.key, "%s", sc->key);
		snprintf(lc->rec.owner, sizeof lc->rec.owner, "%s", sc->owner);
		snprintf(lc->rec.name, sizeof lc->rec.name, "%s", sc->name);
		snprintf(lc->rec.state, sizeof lc->rec.state, "%s", sc->state);
		lc->rec.epoch = sc->epoch;
		lc->rec.since = sc->since;
		hmap_insert(&ls->consoles, &lc->entry, lc->key);
		TAILQ_INSERT_TAIL(&ls->console_list, lc, qentry);
	}
	vspc__handoff__store__free_unpacked(m, NULL);
	return (0);
}
