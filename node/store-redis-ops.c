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
 * The operations of store.h on Redis (redis_ops).  Every change of a
 * console is one Lua script, so that the epoch check (fencing) and the
 * change are atomic, and the script publishes the change itself (the
 * format of event messages is in store-redis-events.c).  vMotion tokens
 * are kept under the SHA-256 of the token, never the token itself, and
 * taken (read and deleted) in one step.
 */

#include <sys/types.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "vspcd.h"
#include "store.h"
#include "store-redis-int.h"

/*
 * Lua.  Escaping of message fields, without a backslash in the C text:
 * 92 is '\', 9 TAB, 10 LF, 13 CR.
 */
#define LUA_ESC \
	"local E = {[string.char(92)] = string.char(92, 92), " \
	"[string.char(9)] = string.char(92) .. 't', " \
	"[string.char(10)] = string.char(92) .. 'n', " \
	"[string.char(13)] = string.char(92) .. 'r'} " \
	"local EP = '[' .. string.char(92, 9, 10, 13) .. ']' " \
	"local function esc(s) return (string.gsub(s, EP, E)) end " \
	"local T = string.char(9) "

/* KEYS: console, epoch counter, channel; ARGV: node, known, key. */
static const char lua_claim[] = LUA_ESC
	"local cur = redis.call('HMGET', KEYS[1], 'owner', 'epoch') "
	"if ARGV[2] ~= '0' and cur[1] and cur[1] ~= '' and "
	"    cur[1] ~= ARGV[1] and cur[2] ~= ARGV[2] then "
	"  return {0, cur[2] or '0'} "
	"end "
	/*
	 * Epochs never go back, even after Redis lost its data: a node that
	 * republishes what it holds brings the counter up to what it knew.
	 */
	"local c = tonumber(redis.call('GET', KEYS[2]) or '0') "
	"if tonumber(ARGV[2]) > c then "
	"  redis.call('SET', KEYS[2], ARGV[2]) "
	"end "
	"local e = string.format('%d', redis.call('INCR', KEYS[2])) "
	"redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'epoch', e) "
	"local r = redis.call('HMGET', KEYS[1], 'name', 'state', 'since') "
	"redis.call('PUBLISH', KEYS[3], table.concat({'C', esc(ARGV[3]), "
	"    esc(ARGV[1]), e, esc(r[1] or ''), esc(r[2] or ''), "
	"    r[3] or '0'}, T)) "
	"return {1, e}";

/* KEYS: console, channel; ARGV: epoch, name set prefix, key. */
static const char lua_release[] = LUA_ESC
	"local cur = redis.call('HMGET', KEYS[1], 'epoch', 'name', 'owner') "
	"if cur[1] ~= ARGV[1] then return 0 end "
	"if cur[2] and cur[2] ~= '' then "
	"  redis.call('SREM', ARGV[2] .. cur[2], ARGV[3]) "
	"end "
	"redis.call('DEL', KEYS[1]) "
	"redis.call('PUBLISH', KEYS[2], table.concat({'G', esc(ARGV[3]), "
	"    esc(cur[3] or ''), ARGV[1]}, T)) "
	"return 1";

/*
 * KEYS: console, channel; ARGV: epoch, name set prefix, key, name, state,
 * since.
 */
static const char lua_update[] = LUA_ESC
	"local cur = redis.call('HMGET', KEYS[1], 'epoch', 'name', 'owner') "
	"if cur[1] ~= ARGV[1] then return 0 end "
	"local old = cur[2] or '' "
	"if old ~= ARGV[4] then "
	"  if old ~= '' then redis.call('SREM', ARGV[2] .. old, ARGV[3]) end "
	"  if ARGV[4] ~= '' then "
	"    redis.call('SADD', ARGV[2] .. ARGV[4], ARGV[3]) "
	"  end "
	"end "
	"redis.call('HSET', KEYS[1], 'name', ARGV[4], 'state', ARGV[5], "
	"    'since', ARGV[6]) "
	"redis.call('PUBLISH', KEYS[2], table.concat({'C', esc(ARGV[3]), "
	"    esc(cur[3] or ''), ARGV[1], esc(ARGV[4]), esc(ARGV[5]), "
	"    ARGV[6]}, T)) "
	"return 1";

/* KEYS: token; ARGV: token, console, node, id, ttl in ms. */
static const char lua_token_put[] =
	"redis.call('DEL', KEYS[1]) "
	"redis.call('HSET', KEYS[1], 'token', ARGV[1], 'console', ARGV[2], "
	"    'node', ARGV[3], 'id', ARGV[4]) "
	"redis.call('PEXPIRE', KEYS[1], ARGV[5]) "
	"return 1";

/* KEYS: token.  Read and delete in one step: a token is single use. */
static const char lua_token_take[] =
	"local v = redis.call('HGETALL', KEYS[1]) "
	"if #v > 0 then redis.call('DEL', KEYS[1]) end "
	"return v";

/* KEYS: node; ARGV: ttl in ms, then field, value, ... */
static const char lua_node_update[] =
	"redis.call('HSET', KEYS[1], unpack(ARGV, 2)) "
	"redis.call('PEXPIRE', KEYS[1], ARGV[1]) "
	"return 1";

/* The Redis key of a token: P"vmotion:" and the hex SHA-256 of it. */
static char *
redis_token_key(struct redis_store *rs, const u_char *token, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	u_char			 md[EVP_MAX_MD_SIZE];
	u_int			 mdlen, i;
	char			 digest[65], *key;

	if (!EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL))
		fatalx("store: SHA-256 failed");
	for (i = 0; i < mdlen && i < 32; i++) {
		digest[i * 2] = hex[md[i] >> 4];
		digest[i * 2 + 1] = hex[md[i] & 0xf];
	}
	digest[i * 2] = '\0';
	xasprintf(&key, "%svmotion:%s", rs->prefix, digest);
	return (key);
}

/* A script that answers 1 when done. */
static void
redis_done_one(struct redis_req *req, redisReply *r)
{
	enum store_status	st = STORE_UNAVAILABLE;

	if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
		st = STORE_OK;
	else if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_warnx("store: %s: %.*s", req->key, (int)r->len, r->str);
	else
		reply_unexpected(req->key, r);
	if (req->cb.done != NULL)
		req->cb.done(st, req->arg);
}

/* Fire and forget: only errors are worth a line. */
static void
redis_done_quiet(struct redis_req *req, redisReply *r)
{
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_warnx("store: %s: %.*s", req->key, (int)r->len, r->str);
	else if (r != NULL && r->type != REDIS_REPLY_INTEGER)
		reply_unexpected(req->key, r);
}

static void
redis_token_put(struct store *s, const u_char *token, size_t len,
    const struct store_token *value, u_int ttl, store_done_cb cb, void *arg)
{
	struct redis_store	*rs = s->impl;
	struct redis_req	*req;
	const char		*argv[9];
	size_t			 alen[9];
	char			 id[24], ms[24], *key;
	int			 i;

	if (len == 0 || len > VMOTION_TOKEN_MAX) {
		cb(STORE_UNAVAILABLE, arg);
		return;
	}
	key = redis_token_key(rs, token, len);
	snprintf(id, sizeof id, "%llu", (unsigned long long)value->id);
	snprintf(ms, sizeof ms, "%llu", (unsigned long long)ttl * 1000);
	argv[0] = "EVAL";
	argv[1] = lua_token_put;
	argv[2] = "1";
	argv[3] = key;
	argv[4] = (const char *)token;
	argv[5] = value->console;
	argv[6] = value->node;
	argv[7] = id;
	argv[8] = ms;
	for (i = 0; i < 9; i++)
		alen[i] = strlen(argv[i]);
	alen[4] = len;
	alen[5] = strnlen(value->console, sizeof value->console);
	alen[6] = strnlen(value->node, sizeof value->node);
	req = req_new(redis_done_one, arg);
	req->cb.done = cb;
	req->key = xstrdup("token put");
	(void)rconn_send(CMD(rs), req, 9, argv, alen);
	free(key);
}

static void
redis_token_taken(struct redis_req *req, redisReply *r)
{
	struct store_token	 val;
	const redisReply	*f, *v, *tok = NULL;
	uint64_t		 id = 0;
	size_t			 i;

	if (!reply_is_hash(r)) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			log_warnx("store: token take: %.*s", (int)r->len,
			    r->str);
		else
			reply_unexpected("token take", r);
		req->cb.token(STORE_UNAVAILABLE, NULL, req->arg);
		return;
	}
	memset(&val, 0, sizeof val);
	for (i = 0; i + 1 < r->elements; i += 2) {
		f = r->element[i];
		v = r->element[i + 1];
		if (reply_field(f, "token"))
			tok = v;
		else if (reply_field(f, "console"))
			reply_copy(val.console, sizeof val.console, v);
		else if (reply_field(f, "node"))
			reply_copy(val.node, sizeof val.node, v);
		else if (reply_field(f, "id"))
			(void)reply_u64(v, &id);
	}
	val.id = id;
	/* The digest found it; the token itself must match too. */
	if (tok == NULL || tok->len != req->tokenlen ||
	    CRYPTO_memcmp(tok->str, req->token, req->tokenlen) != 0) {
		req->cb.token(STORE_NOTFOUND, NULL, req->arg);
		return;
	}
	req->cb.token(STORE_OK, &val, req->arg);
}

static void
redis_token_take(struct store *s, const u_char *token, size_t len,
    store_token_cb cb, void *arg)
{
	struct redis_store	*rs = s->impl;
	struct redis_req	*req;
	const char		*argv[4];
	size_t			 alen[4];
	char			*key;

	if (len == 0 || len > VMOTION_TOKEN_MAX) {
		cb(STORE_NOTFOUND, NULL, arg);
		return;
	}
	key = redis_token_key(rs, token, len);
	argv[0] = "EVAL";
	argv[1] = lua_token_take;
	argv[2] = "1";
	argv[3] = key;
	alen[0] = 4;
	alen[1] = strlen(lua_token_take);
	alen[2] = 1;
	alen[3] = strlen(key);
	req = req_new(redis_token_taken, arg);
	req->cb.token = cb;
	memcpy(req->token, token, len);
	req->tokenlen = len;
	(void)rconn_send(CMD(rs), req, 4, argv, alen);
	free(key);
}

static void
redis_token_del(struct store *s, const u_char *token, size_t len)
{
	struct redis_store	*rs = s->impl;
	struct redis_req	*req;
	const char		*argv[2];
	char			*key;

	if (len == 0 || len > VMOTION_TOKEN_MAX)
		return;
	key = redis_token_key(rs, token, len);
	argv[0] = "DEL";
	argv[1] = key;
	req = req_new(redis_done_quiet, NULL);
	req->key = xstrdup("token delete");
	(void)rconn_sendv(CMD(rs), req, 2, argv);
	free(key);
}

static void
redis_claimed(struct redis_req *req, redisReply *r)
{
	uint64_t	won, epoch;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    reply_u64(r->element[0], &won) != 0 ||
	    reply_u64(r->element[1], &epoch) != 0) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			log_warnx("store: claim: %.*s", (int)r->len, r->str);
		else
			reply_unexpected("claim", r);
		req->cb.claim(STORE_UNAVAILABLE, 0, req->arg);
		return;
	}
	req->cb.claim(won ? STORE_OK : STORE_CONFLICT, epoch, req->arg);
}

static void
redis_console_claim(struct store *s, const char *key, const char *node,
    uint64_t known, store_claim_cb cb, void *arg)
{
	struct redis_store	*rs = s->impl;
	struct redis_req	*req;
	const char		*argv[9];
	char			 e[24], *ckey;

	xasprintf(&ckey, "%sconsole:%s", rs->prefix, key);
	snprintf(e, sizeof e, "%llu", (unsigned long long)known);
	argv[0] = "EVAL";
	argv[1] = lua_claim;
	argv[2] = "3";
	argv[3] = ckey;
	argv[4] = rs->epoch_key;
	argv[5] = rs->channel;
	argv[6] = node;
	argv[7] = e;
	argv[8] = key;
	req = req_new(redis_claimed, arg);
	req->cb.claim = cb;
	(void)rconn_sendv(CMD(rs), req, 9, argv);
	free(ckey);
}

static void
redis_console_release(struct store *s, const char *key, uint64_t epoch)
{
	struct redis_store	*rs = s->impl;
	struct redis_req	*req;
	const char		*argv[8];
	char			 e[24], *ckey;

	xasprintf(&ckey, "%sconsole:%s", rs->prefix, key);
	snprintf(e, sizeof e, "%llu", (unsigned long long)epoch);
	argv[0] = "EVAL";
	argv[1] = lua_release;
	argv[2] = "2";
	argv[3] = ckey;
	argv[4] = rs->channel;
	argv[5] = e;
	argv[6] = rs->name_prefix;
	argv[7] = key;
	req = req_new(redis_done_quiet, NULL);
	req->key = xstrdup("release");
	(void)rconn_sendv(CMD(rs), req, 8, argv);
	free(ckey);
}

static void
redis_console_update(struct store *s, const struct store_console *rec)
{
	struct redis_store	*rs = s->impl;
	struct redis_req	*req;
	const char		*argv[11];
	char			 e[24], since[24], *ckey, *key, *name, *state;

	key = xstrndup(rec->key, sizeof rec->key);
	name = xstrndup(rec->name, sizeof rec->name);
	state = xstrndup(rec->state, sizeof rec->state);
	xasprintf(&ckey, "%sconsole:%s", rs->prefix, key);
	snprintf(e, sizeof e, "%llu", (unsigned long long)rec->epoch);
	snprintf(since, sizeof since, "%lld", (long long)rec->since);
	argv[0] = "EVAL";
	argv[1] = lua_update;
	argv[2] = "2";
	argv[3] = ckey;
	argv[4] = rs->channel;
	argv[5] = e;
	argv[6] = rs->name_prefix;
	argv[7] = key;
	argv[8] = name;
	argv[9] = state;
	argv[10] = since;
	req = req_new(redis_done_quiet, NULL);
	req->key = xstrdup("update");
	(void)rconn_sendv(CMD(rs), req, 11, argv);
	free(ckey);
	free(key);
	free(name);
	free(state);
}

static void
redis_console_got(struct redis_req *req, redisReply *r)
{
	struct store_console	rec;

	if (!reply_is_hash(r)) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			log_warnx("store: get: %.*s", (int)r->len, r->str);
		else
			reply_unexpected("get", r);
		req->cb.console(STORE_UNAVAILABLE, NULL, req->arg);
		return;
	}
	if (r->elements == 0) {
		req->cb.console(STORE_NOTFOUND, NULL, req->arg);
		return;
	}
	redis_parse_console(req->key, r, &rec);
	req->cb.console(STORE_OK, &rec, req->arg);
}

static void
redis_console_get(struct store *s, const char *key, store_console_cb cb,
    void *arg)
{
	struct redis_store	*rs = s->impl;
	struct redis_req	*req;
	const char		*argv[2];
	char			*ckey;

	xasprintf(&ckey, "%sconsole:%s", rs->prefix, key);
	argv[0] = "HGETALL";
	argv[1] = ckey;
	req = req_new(redis_console_got, arg);
	req->cb.console = cb;
	req->key = xstrdup(key);
	(void)rconn_sendv(CMD(rs), req, 2, argv);
	free(ckey);
}

static void
redis_console_list(struct store *s, store_consoles_cb cb, void *arg)
{
	redis_list_start(s->impl, 0, cb, NULL, arg);
}

static void
redis_node_update(struct store *s, const struct store_node *node)
{
	struct redis_store	*rs = s->impl;
	struct redis_req	*req;
	const char		*argv[25];
	char			 ttl[24], started[24], hb[24], consoles[16];
	char			 protocol[16];
	char			 clients[16], vmotions[16], peers[16], *nkey, *id, *peer, *version;
	char			*state;

	id = xstrndup(node->id, sizeof node->id);
	peer = xstrndup(node->peer, sizeof node->peer);
	version = xstrndup(node->version, sizeof node->version);
	state = xstrndup(node->state, sizeof node->state);
	xasprintf(&nkey, "%snode:%s", rs->prefix, id);
	snprintf(ttl, sizeof ttl, "%u", rs->node_timeout);
	snprintf(started, sizeof started, "%lld", (long long)node->started);
	snprintf(hb, sizeof hb, "%lld", (long long)(node->heartbeat != 0 ?
	    node->heartbeat : time(NULL)));
	snprintf(consoles, sizeof consoles, "%u", node->consoles);
	snprintf(clients, sizeof clients, "%u", node->clients);
	snprintf(vmotions, sizeof vmotions, "%u", node->vmotions);
	snprintf(peers, sizeof peers, "%u", node->peers);
	/* The peer protocol this binary speaks, beside its version. */
	snprintf(protocol, sizeof protocol, "%u", PEER_PROTOCOL);
	argv[0] = "EVAL";
	argv[1] = lua_node_update;
	argv[2] = "1";
	argv[3] = nkey;
	argv[4] = ttl;
	argv[5] = "peer";
	argv[6] = peer;
	argv[7] = "version";
	argv[8] = version;
	argv[9] = "state";
	argv[10] = state;
	argv[11] = "started";
	argv[12] = started;
	argv[13] = "heartbeat";
	argv[14] = hb;
	argv[15] = "consoles";
	argv[16] = consoles;
	argv[17] = "clients";
	argv[18] = clients;
	argv[19] = "vmotions";
	argv[20] = vmotions;
	argv[21] = "peers";
	argv[22] = peers;
	argv[23] = "protocol";
	argv[24] = protocol;
	req = req_new(redis_done_quiet, NULL);
	req->key = xstrdup("node update");
	(void)rconn_sendv(CMD(rs), req, 25, argv);
	free(nkey);
	free(id);
	free(peer);
	free(version);
	free(state);
}

static void
redis_node_list(struct store *s, store_nodes_cb cb, void *arg)
{
	redis_list_start(s->impl, 1, NULL, cb, arg);
}

static void
redis_set_events(struct store *s, store_event_cb cb, void *arg)
{
	struct redis_store	*rs = s->impl;

	rs->evcb = cb;
	rs->evarg = arg;
}

const struct store_ops redis_ops = {
	"redis",
	redis_token_put,
	redis_token_take,
	redis_token_del,
	redis_console_claim,
	redis_console_release,
	redis_free,
	redis_console_update,
	redis_console_get,
	redis_console_list,
	redis_node_update,
	redis_node_list,
	redis_set_events
};
