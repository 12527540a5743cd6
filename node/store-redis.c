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
 * The Redis store: the shared state of a cluster, through hiredis's
 * asynchronous API on the node's event loop.
 *
 * Keys, with P = "vspc:{CLUSTER}:" (the braces are a Redis Cluster hash
 * tag, so that every key of a cluster is in one slot):
 *   P"node:"ID          hash peer, version, state, started, heartbeat,
 *                       consoles, clients, vmotions, peers; PEXPIRE node_timeout, renewed
 *                       by every heartbeat; protocol (peer protocol, since
 *                       0.1.0: older records lack it).
 *   P"console:"KEY      hash owner, epoch, name, state, since.
 *   P"name:"NAME        set of the console keys with that VM name.
 *   P"vmotion:"HEX      hash token (the raw bytes), console, node, id;
 *                       HEX is the SHA-256 of the token; PEXPIRE its TTL.
 *   P"epoch"            counter, the source of ownership epochs.
 *   P"events"           pub/sub channel, below.
 * Every change of a console is one Lua script, so that the epoch check
 * (fencing) and the change are atomic, and the script publishes the
 * change itself.
 *
 * Event messages on P"events" carry the whole record, so that nobody
 * needs another round trip.  Fields are separated by TAB; in text fields
 * a backslash, TAB, LF and CR are written \\, \t, \n and \r:
 *   C TAB key TAB owner TAB epoch TAB name TAB state TAB since
 *       a console's record as it is now (claimed or updated);
 *   G TAB key TAB owner TAB epoch
 *       a console was released and forgotten.
 * Epoch and since are decimal.  A reader ignores messages of another
 * type and fields after those it knows, so that the format can grow.
 *
 * Nodes coming and going are not published: every heartbeat the store
 * lists the nodes and compares with the previous list, so that a node
 * whose record expired (it stopped refreshing it) is seen as gone
 * without keyspace notifications.
 *
 * Connections: "cmd" carries every command; "sub" is SUBSCRIBEd to the
 * event channel on the same server and is (re)opened whenever cmd becomes
 * ready (both send AUTH from the URL; only cmd needs SELECT, pub/sub does
 * not depend on the database); with Sentinel, "sentinel" asks the
 * Sentinels (in order, with AUTH sentinel_password) where the master is,
 * then stays SUBSCRIBEd to +switch-master to follow a failover at once,
 * and cmd checks with ROLE that it reached a master.  With Sentinel the
 * master is reached without AUTH.  A connection that fails is reopened
 * with a delay of 100 ms, doubling to 5 s.
 *
 * Commands are tracked in order per connection: one without a reply
 * within redis_timeout closes the connection (hiredis 0.14 has no
 * timeouts of its own), and every command in flight on a closed
 * connection, or issued while there is none, is answered
 * STORE_UNAVAILABLE.  At most REDIS_INFLIGHT_MAX are in flight.  No
 * hiredis context is freed from inside one of its own callbacks: closing
 * is queued (ev_drop) to the next loop turn.
 *
 * The store must not be freed from one of its own callbacks.
 */

#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "vspcd.h"
#include "store.h"

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

static uint64_t	redis_now(void);
static void	redis_emit(struct redis_store *, enum store_event_type,
		    const struct store_console *, const struct store_node *,
		    const char *);
static void	rconn_schedule(struct rconn *, u_int);
static void	rconn_start(struct rconn *);
static void	rconn_drop(struct rconn *, const char *, ...)
		    __attribute__((__format__ (printf, 2, 3)));
static void	rconn_lost(struct rconn *, const char *);
static void	rconn_arm(struct rconn *);
static void	rconn_ready(struct rconn *);
static int	rconn_send(struct rconn *, struct redis_req *, int,
		    const char **, const size_t *);
static struct redis_req *req_new(void (*)(struct redis_req *,
		    redisReply *), void *);
static void	redis_handshake(struct rconn *);
static void	redis_sentinel_found(struct redis_store *, const char *,
		    int, const char *);
static void	redis_list_start(struct redis_store *, int,
		    store_consoles_cb, store_nodes_cb, void *);
static void	redis_sub_message(redisAsyncContext *, void *, void *);
static void	redis_list_pump(struct redis_list *);

static const char *rconn_names[RCONN_KIND_MAX] = {
	"redis", "redis subscriber", "sentinel"
};

static uint64_t
redis_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void
redis_timeval(u_int ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

static void
redis_emit(struct redis_store *rs, enum store_event_type type,
    const struct store_console *con, const struct store_node *node,
    const char *key)
{
	struct store_event	ev;

	if (rs->evcb == NULL || rs->freeing)
		return;
	memset(&ev, 0, sizeof ev);
	ev.type = type;
	ev.console = con;
	ev.node = node;
	ev.key = key;
	rs->evcb(&ev, rs->evarg);
}

/* Describe a reply for a log line. */
static const char *
reply_describe(const redisReply *r, char *buf, size_t len)
{
	if (r == NULL)
		return ("no reply");
	switch (r->type) {
	case REDIS_REPLY_ERROR:
		snprintf(buf, len, "error \"%.*s\"", (int)r->len, r->str);
		break;
	case REDIS_REPLY_STATUS:
		snprintf(buf, len, "status \"%.*s\"", (int)r->len, r->str);
		break;
	case REDIS_REPLY_STRING:
		snprintf(buf, len, "string of %zu bytes", r->len);
		break;
	case REDIS_REPLY_INTEGER:
		snprintf(buf, len, "integer %lld", r->integer);
		break;
	case REDIS_REPLY_ARRAY:
		snprintf(buf, len, "array of %zu", r->elements);
		break;
	case REDIS_REPLY_NIL:
		snprintf(buf, len, "nil");
		break;
	default:
		snprintf(buf, len, "type %d", r->type);
		break;
	}
	return (buf);
}

static void
reply_unexpected(const char *what, const redisReply *r)
{
	char	buf[128];

	if (r == NULL)
		return;
	log_warnx("store: unexpected reply to %s: %s", what,
	    reply_describe(r, buf, sizeof buf));
}

static int
reply_is_ok(const redisReply *r)
{
	return (r != NULL && r->type == REDIS_REPLY_STATUS && r->len == 2 &&
	    memcmp(r->str, "OK", 2) == 0);
}

/* An integer, or a string of decimal digits. */
static int
reply_u64(const redisReply *r, uint64_t *v)
{
	uint64_t	n = 0;
	size_t		i;

	if (r == NULL)
		return (-1);
	if (r->type == REDIS_REPLY_INTEGER) {
		if (r->integer < 0)
			return (-1);
		*v = r->integer;
		return (0);
	}
	if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
		return (-1);
	for (i = 0; i < r->len; i++) {
		if (!isdigit((u_char)r->str[i]))
			return (-1);
		if (n > (UINT64_MAX - 9) / 10)
			return (-1);
		n = n * 10 + (r->str[i] - '0');
	}
	*v = n;
	return (0);
}

/* A signed decimal string, for times. */
static int
reply_i64(const redisReply *r, int64_t *v)
{
	uint64_t	n;
	redisReply	tmp;

	if (r != NULL && r->type == REDIS_REPLY_STRING && r->len > 1 &&
	    r->str[0] == '-') {
		tmp = *r;
		tmp.str++;
		tmp.len--;
		if (reply_u64(&tmp, &n) != 0 || n > INT64_MAX)
			return (-1);
		*v = -(int64_t)n;
		return (0);
	}
	if (reply_u64(r, &n) != 0 || n > INT64_MAX)
		return (-1);
	*v = n;
	return (0);
}

/* Copy a string reply into a fixed field, cut to fit. */
static void
reply_copy(char *dst, size_t size, const redisReply *r)
{
	size_t	len;

	len = r->len < size - 1 ? r->len : size - 1;
	memcpy(dst, r->str, len);
	dst[len] = '\0';
}

static int
reply_field(const redisReply *r, const char *name)
{
	return (r->len == strlen(name) && memcmp(r->str, name, r->len) == 0);
}

/* A HGETALL reply: an array of strings, in pairs. */
static int
reply_is_hash(const redisReply *r)
{
	size_t	i;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
		return (0);
	for (i = 0; i < r->elements; i++) {
		if (r->element[i] == NULL ||
		    r->element[i]->type != REDIS_REPLY_STRING)
			return (0);
	}
	return (1);
}

/* Fill a console record from a HGETALL reply; key is the console key. */
static void
redis_parse_console(const char *key, const redisReply *r,
    struct store_console *rec)
{
	const redisReply	*f, *v;
	size_t			 i;

	memset(rec, 0, sizeof *rec);
	snprintf(rec->key, sizeof rec->key, "%s", key);
	for (i = 0; i + 1 < r->elements; i += 2) {
		f = r->element[i];
		v = r->element[i + 1];
		if (reply_field(f, "owner"))
			reply_copy(rec->owner, sizeof rec->owner, v);
		else if (reply_field(f, "epoch"))
			(void)reply_u64(v, &rec->epoch);
		else if (reply_field(f, "name"))
			reply_copy(rec->name, sizeof rec->name, v);
		else if (reply_field(f, "state"))
			reply_copy(rec->state, sizeof rec->state, v);
		else if (reply_field(f, "since"))
			(void)reply_i64(v, &rec->since);
	}
}

static void
redis_parse_node(const char *id, const redisReply *r, struct store_node *n)
{
	const redisReply	*f, *v;
	uint64_t		 u;
	size_t			 i;

	memset(n, 0, sizeof *n);
	snprintf(n->id, sizeof n->id, "%s", id);
	for (i = 0; i + 1 < r->elements; i += 2) {
		f = r->element[i];
		v = r->element[i + 1];
		if (reply_field(f, "peer"))
			reply_copy(n->peer, sizeof n->peer, v);
		else if (reply_field(f, "version"))
			reply_copy(n->version, sizeof n->version, v);
		else if (reply_field(f, "state"))
			reply_copy(n->state, sizeof n->state, v);
		else if (reply_field(f, "started"))
			(void)reply_i64(v, &n->started);
		else if (reply_field(f, "heartbeat"))
			(void)reply_i64(v, &n->heartbeat);
		else if (reply_field(f, "consoles")) {
			if (reply_u64(v, &u) == 0 && u <= UINT32_MAX)
				n->consoles = u;
		} else if (reply_field(f, "clients")) {
			if (reply_u64(v, &u) == 0 && u <= UINT32_MAX)
				n->clients = u;
		} else if (reply_field(f, "vmotions")) {
			if (reply_u64(v, &u) == 0 && u <= UINT32_MAX)
				n->vmotions = u;
		} else if (reply_field(f, "peers")) {
			if (reply_u64(v, &u) == 0 && u <= UINT32_MAX)
				n->peers = u;
		}
	}
}

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

/*
 * Requests.
 */

static struct redis_req *
req_new(void (*done)(struct redis_req *, redisReply *), void *arg)
{
	struct redis_req	*req;

	req = xcalloc(1, sizeof *req);
	req->done = done;
	req->arg = arg;
	return (req);
}

static void
req_free(struct redis_req *req)
{
	OPENSSL_cleanse(req->token, sizeof req->token);
	free(req->key);
	free(req);
}

/* A reply (or NULL: the connection went away) to a tracked request. */
static void
req_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_req	*req = privdata;
	struct rconn		*c = req->conn;
	struct redis_store	*rs = c->rs;
	redisReply		*reply = r;

	TAILQ_REMOVE(&c->inflight, req, entry);
	if (!req->internal && rs->inflight > 0)
		rs->inflight--;
	rs->s->inflight = rs->inflight;
	if (rs->overloaded && rs->inflight < REDIS_INFLIGHT_MAX / 2) {
		rs->overloaded = 0;
		log_info("store: Redis commands in flight back to %u",
		    rs->inflight);
	}
	/*
	 * No reply: hiredis is closing this connection.  Fail what is
	 * issued from here on at once.
	 */
	if (reply == NULL && c->ac == ac && c->state != RCONN_IDLE)
		c->state = RCONN_DROPPING;
	req->done(req, reply);
	req_free(req);
}

/*
 * Send a command on c and track it; on failure answer it (done(NULL))
 * before returning.  Return 0 if sent.
 */
static int
rconn_send(struct rconn *c, struct redis_req *req, int argc,
    const char **argv, const size_t *argvlen)
{
	struct redis_store	*rs = c->rs;
	int			 ok;

	if (c->ac == NULL || !(c->state == RCONN_READY ||
	    (req->internal && c->state == RCONN_HANDSHAKE)))
		goto fail;
	if (!req->internal && rs->inflight >= REDIS_INFLIGHT_MAX) {
		if (!rs->overloaded) {
			log_warnx("store: %u Redis commands in flight; "
			    "failing new ones", rs->inflight);
			rs->overloaded = 1;
		}
		goto fail;
	}
	req->conn = c;
	req->deadline = redis_now() + rs->timeout;
	TAILQ_INSERT_TAIL(&c->inflight, req, entry);
	if (!req->internal)
		rs->inflight++;
	ok = redisAsyncCommandArgv(c->ac, req_reply, req, argc, argv,
	    argvlen);
	if (ok != REDIS_OK) {
		TAILQ_REMOVE(&c->inflight, req, entry);
		if (!req->internal)
			rs->inflight--;
		rs->s->inflight = rs->inflight;
		goto fail;
	}
	rs->s->inflight = rs->inflight;
	rconn_arm(c);
	return (0);

fail:
	req->conn = c;
	req->done(req, NULL);
	req_free(req);
	return (-1);
}

/* Send a command of NUL-terminated words. */
static int
rconn_sendv(struct rconn *c, struct redis_req *req, int argc,
    const char **argv)
{
	size_t	len[32];
	int	i;

	if (argc > (int)nitems(len))
		fatalx("%s: too many words", __func__);
	for (i = 0; i < argc; i++)
		len[i] = strlen(argv[i]);
	return (rconn_send(c, req, argc, argv, len));
}

/*
 * Connections.
 */

/* Arm the watchdog for the earliest deadline of c, if not armed. */
static void
rconn_arm(struct rconn *c)
{
	struct redis_req	*req;
	struct timeval		 tv;
	uint64_t		 when = UINT64_MAX, now;

	if (evtimer_pending(c->ev_watch, NULL))
		return;
	if (c->state == RCONN_CONNECTING || c->state == RCONN_HANDSHAKE)
		when = c->deadline;
	if ((req = TAILQ_FIRST(&c->inflight)) != NULL && req->deadline < when)
		when = req->deadline;
	if (when == UINT64_MAX)
		return;
	now = redis_now();
	redis_timeval(when > now ? when - now : 0, &tv);
	evtimer_add(c->ev_watch, &tv);
}

static void
rconn_watch(int fd, short events, void *arg)
{
	struct rconn		*c = arg;
	struct redis_req	*req;
	uint64_t		 now = redis_now();

	if ((c->state == RCONN_CONNECTING || c->state == RCONN_HANDSHAKE) &&
	    c->deadline <= now) {
		rconn_drop(c, "no answer within %u ms", c->rs->timeout);
		return;
	}
	if ((req = TAILQ_FIRST(&c->inflight)) != NULL &&
	    req->deadline <= now) {
		rconn_drop(c, "no reply within %u ms", c->rs->timeout);
		return;
	}
	rconn_arm(c);
}

/* Close c at the next loop turn (never inside hiredis's callbacks). */
static void
rconn_drop(struct rconn *c, const char *fmt, ...)
{
	va_list	ap;

	if (c->ac == NULL || c->state == RCONN_DROPPING)
		return;
	free(c->drop_reason);
	va_start(ap, fmt);
	xvasprintf(&c->drop_reason, fmt, ap);
	va_end(ap);
	c->state = RCONN_DROPPING;
	event_active(c->ev_drop, 0, 0);
}

static void
rconn_drop_now(int fd, short events, void *arg)
{
	struct rconn		*c = arg;
	redisAsyncContext	*ac;
	char			*reason;

	/* Closed meanwhile (and maybe opened again): nothing to do. */
	if ((ac = c->ac) == NULL || c->state != RCONN_DROPPING)
		return;
	c->ac = NULL;
	ac->data = NULL;
	reason = c->drop_reason;
	c->drop_reason = NULL;
	/* Every request in flight is answered (NULL) here. */
	redisAsyncFree(ac);
	rconn_lost(c, reason != NULL ? reason : "closed");
	free(reason);
}

static void
rconn_on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn	*c = ac->data;
	char		*reason;

	if (c == NULL)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context when this returns. */
		reason = xstrdup(ac->errstr != NULL && *ac->errstr != '\0' ?
		    ac->errstr : "cannot connect");
		c->ac = NULL;
		rconn_lost(c, reason);
		free(reason);
		return;
	}
	/* Being closed already: let it close. */
	if (c->state == RCONN_DROPPING)
		return;
	c->state = RCONN_HANDSHAKE;
	redis_handshake(c);
}

static void
rconn_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rconn	*c = ac->data;
	char		*reason;

	if (c == NULL)
		return;
	reason = xstrdup(ac->errstr != NULL && *ac->errstr != '\0' ?
	    ac->errstr : "connection closed");
	c->ac = NULL;
	rconn_lost(c, reason);
	free(reason);
}

/* Open c to host:port now. */
static void
rconn_connect(struct rconn *c, const char *host, int port)
{
	redisAsyncContext	*ac;
	char			*reason;

	if (c->host != host) {
		free(c->host);
		c->host = xstrdup(host);
	}
	c->port = port;
	log_debug("store: connecting to %s %s:%d", rconn_names[c->kind],
	    host, port);
	ac = redisAsyncConnect(host, port);
	if (ac == NULL)
		fatalx("store: out of memory");
	if (ac->err) {
		reason = xstrdup(ac->errstr);
		redisAsyncFree(ac);
		c->ac = NULL;
		rconn_lost(c, reason);
		free(reason);
		return;
	}
	c->ac = ac;
	ac->data = c;
	if (redisLibeventAttach(ac, c->rs->base) != REDIS_OK)
		fatalx("store: cannot attach to the event loop");
	redisAsyncSetConnectCallback(ac, rconn_on_connect);
	redisAsyncSetDisconnectCallback(ac, rconn_on_disconnect);
	c->state = RCONN_CONNECTING;
	c->step = 0;
	c->deadline = redis_now() + c->rs->timeout;
	event_del(c->ev_watch);
	rconn_arm(c);
}

static void
rconn_retry(int fd, short events, void *arg)
{
	rconn_start(arg);
}

/* Start (or restart) c after ms milliseconds. */
static void
rconn_schedule(struct rconn *c, u_int ms)
{
	struct timeval	tv;

	redis_timeval(ms, &tv);
	evtimer_add(c->ev_retry, &tv);
}

/* The next retry delay of c, doubled for the time after. */
static u_int
rconn_backoff(struct rconn *c)
{
	u_int	ms = c->backoff;

	c->backoff = c->backoff * 2 > REDIS_BACKOFF_MAX ?
	    REDIS_BACKOFF_MAX : c->backoff * 2;
	return (ms);
}

/* Connect c where it belongs now. */
static void
rconn_start(struct rconn *c)
{
	struct redis_store	*rs = c->rs;
	struct rconn		*cmd = CMD(rs);
	struct redis_addr	*sa;

	if (c->state != RCONN_IDLE || rs->freeing)
		return;
	switch (c->kind) {
	case RCONN_CMD:
		if (!rs->sentinel)
			rconn_connect(c, rs->url.host, rs->url.port);
		else if (rs->master_known)
			rconn_connect(c, rs->master_host, rs->master_port);
		else if (SEN(rs)->state == RCONN_IDLE &&
		    !evtimer_pending(SEN(rs)->ev_retry, NULL))
			rconn_schedule(SEN(rs), 0);
		break;
	case RCONN_SUB:
		/* The subscriber follows the command connection. */
		if (cmd->state == RCONN_READY)
			rconn_connect(c, cmd->host, cmd->port);
		break;
	case RCONN_SENTINEL:
		sa = &rs->sentinels[rs->sen_idx];
		rconn_connect(c, sa->host, sa->port);
		break;
	default:
		fatalx("%s: bad connection", __func__);
	}
}

/* c is closed (hiredis has freed or is freeing its context). */
static void
rconn_lost(struct rconn *c, const char *reason)
{
	struct redis_store	*rs = c->rs;
	enum rconn_state	 was = c->state;
	u_int			 ms;

	c->state = RCONN_IDLE;
	c->ac = NULL;
	c->step = 0;
	event_del(c->ev_watch);
	if (rs->freeing)
		return;

	switch (c->kind) {
	case RCONN_CMD:
		if (rs->s->connected) {
			rs->s->connected = 0;
			log_warnx("store: lost redis %s:%d: %s", c->host,
			    c->port, reason);
			redis_emit(rs, STORE_EV_DISCONNECTED, NULL, NULL, NULL);
		}
		rconn_drop(SUB(rs), "command connection lost");
		event_del(SUB(rs)->ev_retry);
		if (!rs->sentinel) {
			ms = rconn_backoff(c);
			if (!c->failing || log_getverbose() > 1)
				log_warnx("store: redis unreachable: %s; "
				    "retrying in %u ms", reason, ms);
			c->failing = 1;
			rconn_schedule(c, ms);
			break;
		}
		if (rs->master_moved) {
			rs->master_moved = 0;
			rconn_schedule(c, 0);
			break;
		}
		/* Ask the Sentinels again, in order, after a delay. */
		ms = rconn_backoff(c);
		if (!c->failing || log_getverbose() > 1)
			log_warnx("store: redis unreachable: %s; asking the "
			    "sentinels again in %u ms", reason, ms);
		c->failing = 1;
		rs->master_known = 0;
		rs->sen_idx = 0;
		if (SEN(rs)->state != RCONN_IDLE) {
			rs->sen_reask = ms;
			rconn_drop(SEN(rs), "asking again");
		} else {
			event_del(SEN(rs)->ev_retry);
			rconn_schedule(SEN(rs), ms);
		}
		break;
	case RCONN_SUB:
		if (was == RCONN_READY)
			log_warnx("store: lost the redis event subscription: "
			    "%s", reason);
		c->failing = 1;
		if (CMD(rs)->state == RCONN_READY) {
			ms = rconn_backoff(c);
			log_debug("store: resubscribing in %u ms", ms);
			rconn_schedule(c, ms);
		}
		break;
	case RCONN_SENTINEL:
		if (rs->sen_reask != 0) {
			ms = rs->sen_reask;
			rs->sen_reask = 0;
			rs->sen_idx = 0;
			rconn_schedule(c, ms);
			break;
		}
		if (!rs->sen_down[rs->sen_idx])
			log_warnx("store: sentinel %s:%d: %s", c->host,
			    c->port, reason);
		else
			log_debug("store: sentinel %s:%d: %s", c->host,
			    c->port, reason);
		rs->sen_down[rs->sen_idx] = 1;
		/* Try the next one at once; after a whole round, wait. */
		if (++rs->sen_idx < rs->nsentinels) {
			rconn_schedule(c, 0);
			break;
		}
		rs->sen_idx = 0;
		ms = rconn_backoff(c);
		if (!c->failing || log_getverbose() > 1)
			log_warnx("store: no sentinel answered; asking again "
			    "in %u ms", ms);
		c->failing = 1;
		rconn_schedule(c, ms);
		break;
	default:
		break;
	}
}

/* c finished its handshake. */
static void
rconn_ready(struct rconn *c)
{
	struct redis_store	*rs = c->rs;

	c->state = RCONN_READY;
	c->backoff = REDIS_BACKOFF_MIN;
	c->failing = 0;
	event_del(c->ev_watch);
	rconn_arm(c);
	switch (c->kind) {
	case RCONN_CMD:
		log_info("store: connected to redis %s:%d (db %u)", c->host,
		    c->port, rs->sentinel ? 0 : rs->url.db);
		rs->s->connected = 1;
		redis_emit(rs, STORE_EV_CONNECTED, NULL, NULL, NULL);
		if (SUB(rs)->state == RCONN_IDLE) {
			event_del(SUB(rs)->ev_retry);
			rconn_schedule(SUB(rs), 0);
		} else if (SUB(rs)->state == RCONN_READY)
			redis_emit(rs, STORE_EV_RESYNC, NULL, NULL, NULL);
		break;
	case RCONN_SUB:
		log_debug("store: subscribed to %s", rs->channel);
		/* Everything from here on is seen: now rescan. */
		if (CMD(rs)->state == RCONN_READY)
			redis_emit(rs, STORE_EV_RESYNC, NULL, NULL, NULL);
		break;
	case RCONN_SENTINEL:
		log_debug("store: following failovers through sentinel %s:%d",
		    c->host, c->port);
		break;
	default:
		break;
	}
}

/*
 * Handshakes: one step at a time, each reply checked before the next.
 *   cmd:      [AUTH] [SELECT db] [ROLE, with Sentinel] -> ready;
 *   sub:      [AUTH] SUBSCRIBE P"events" -> ready when confirmed;
 *   sentinel: [AUTH] SENTINEL get-master-addr-by-name, SUBSCRIBE
 *             +switch-master -> ready when confirmed.
 * The deadline set at connect time covers the whole handshake.
 */

static void
redis_hs_send(struct rconn *c, const char *what,
    void (*done)(struct redis_req *, redisReply *), int argc,
    const char **argv)
{
	struct redis_req	*req;

	req = req_new(done, NULL);
	req->internal = 1;
	req->key = xstrdup(what);
	(void)rconn_sendv(c, req, argc, argv);
}

/* AUTH and SELECT: "OK" or give up on this connection. */
static void
redis_hs_ok(struct redis_req *req, redisReply *r)
{
	struct rconn	*c = req->conn;
	char		 buf[128];

	if (c->state != RCONN_HANDSHAKE)
		return;
	if (!reply_is_ok(r)) {
		if (r != NULL && !c->failing)
			log_warnx("store: %s %s:%d: %s refused: %s",
			    rconn_names[c->kind], c->host, c->port, req->key,
			    reply_describe(r, buf, sizeof buf));
		else if (r != NULL)
			log_debug("store: %s %s:%d: %s refused: %s",
			    rconn_names[c->kind], c->host, c->port, req->key,
			    reply_describe(r, buf, sizeof buf));
		rconn_drop(c, "%s failed", req->key);
		return;
	}
	redis_handshake(c);
}

/* ROLE: only a master will do (a replica refuses writes). */
static void
redis_hs_role(struct redis_req *req, redisReply *r)
{
	struct rconn	*c = req->conn;

	if (c->state != RCONN_HANDSHAKE)
		return;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		reply_unexpected("ROLE", r);
		rconn_drop(c, "ROLE failed");
		return;
	}
	if (!reply_field(r->element[0], "master")) {
		log_warnx("store: redis %s:%d is a %.*s, not the master",
		    c->host, c->port, (int)r->element[0]->len,
		    r->element[0]->str);
		rconn_drop(c, "not the master");
		return;
	}
	redis_handshake(c);
}

/* SENTINEL get-master-addr-by-name: [host, port] or nil. */
static void
redis_hs_master(struct redis_req *req, redisReply *r)
{
	struct rconn		*c = req->conn;
	struct redis_store	*rs = c->rs;
	uint64_t		 port;
	char			*host;

	if (c->state != RCONN_HANDSHAKE)
		return;
	if (r != NULL && r->type == REDIS_REPLY_NIL) {
		log_warnx("store: sentinel %s:%d does not know master \"%s\"",
		    c->host, c->port, rs->master_name);
		rconn_drop(c, "unknown master");
		return;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[0]->len == 0 || r->element[0]->len > 255 ||
	    memchr(r->element[0]->str, '\0', r->element[0]->len) != NULL ||
	    reply_u64(r->element[1], &port) != 0 || port == 0 ||
	    port > 65535) {
		reply_unexpected("SENTINEL get-master-addr-by-name", r);
		rconn_drop(c, "no master address");
		return;
	}
	host = xstrndup(r->element[0]->str, r->element[0]->len);
	c->backoff = REDIS_BACKOFF_MIN;
	if (rs->sen_down[rs->sen_idx]) {
		log_info("store: sentinel %s:%d answers again", c->host,
		    c->port);
		rs->sen_down[rs->sen_idx] = 0;
	}
	redis_sentinel_found(rs, host, (int)port, NULL);
	free(host);
	redis_handshake(c);
}

static void
redis_subscribe(struct rconn *c, const char *channel)
{
	const char	*argv[2];
	size_t		 len[2];

	argv[0] = "SUBSCRIBE";
	argv[1] = channel;
	len[0] = strlen(argv[0]);
	len[1] = strlen(argv[1]);
	if (redisAsyncCommandArgv(c->ac, redis_sub_message, c, 2, argv,
	    len) != REDIS_OK)
		rconn_drop(c, "SUBSCRIBE failed");
}

/* The next step of c's handshake, or ready. */
static void
redis_handshake(struct rconn *c)
{
	struct redis_store	*rs = c->rs;
	const char		*argv[4], *user = NULL, *pw = NULL;
	char			 db[16];
	int			 argc = 0;

	if (c->step == 0) {
		c->step = 1;
		if (c->kind == RCONN_SENTINEL) {
			if (*rs->sentinel_password != '\0')
				pw = rs->sentinel_password;
		} else if (!rs->sentinel) {
			user = rs->url.user;
			pw = rs->url.password;
		}
		if (pw != NULL) {
			argv[argc++] = "AUTH";
			if (user != NULL)
				argv[argc++] = user;
			argv[argc++] = pw;
			redis_hs_send(c, "AUTH", redis_hs_ok, argc, argv);
			return;
		}
	}
	switch (c->kind) {
	case RCONN_CMD:
		if (c->step == 1) {
			c->step = 2;
			if (!rs->sentinel && rs->url.db != 0) {
				snprintf(db, sizeof db, "%u", rs->url.db);
				argv[0] = "SELECT";
				argv[1] = db;
				redis_hs_send(c, "SELECT", redis_hs_ok, 2,
				    argv);
				return;
			}
		}
		if (c->step == 2) {
			c->step = 3;
			if (rs->sentinel) {
				argv[0] = "ROLE";
				redis_hs_send(c, "ROLE", redis_hs_role, 1,
				    argv);
				return;
			}
		}
		rconn_ready(c);
		break;
	case RCONN_SUB:
		if (c->step == 1) {
			c->step = 2;
			redis_subscribe(c, rs->channel);
		}
		break;
	case RCONN_SENTINEL:
		if (c->step == 1) {
			c->step = 2;
			argv[0] = "SENTINEL";
			argv[1] = "get-master-addr-by-name";
			argv[2] = rs->master_name;
			redis_hs_send(c, "SENTINEL", redis_hs_master, 3, argv);
		} else if (c->step == 2) {
			c->step = 3;
			redis_subscribe(c, "+switch-master");
		}
		break;
	default:
		fatalx("%s: bad connection", __func__);
	}
}

/*
 * The Sentinels say the master is host:port (how is NULL when asked,
 * else what announced it).  Move the command connection if it is
 * elsewhere.
 */
static void
redis_sentinel_found(struct redis_store *rs, const char *host, int port,
    const char *how)
{
	struct rconn	*cmd = CMD(rs);

	if (rs->master_host == NULL || strcmp(rs->master_host, host) != 0 ||
	    rs->master_port != port) {
		log_info("store: sentinel: master \"%s\" is %s:%d%s%s",
		    rs->master_name, host, port, how != NULL ? " " : "",
		    how != NULL ? how : "");
		free(rs->master_host);
		rs->master_host = xstrdup(host);
		rs->master_port = port;
	}
	rs->master_known = 1;
	if (cmd->state == RCONN_IDLE) {
		event_del(cmd->ev_retry);
		rconn_schedule(cmd, 0);
		return;
	}
	if (cmd->host != NULL && strcmp(cmd->host, host) == 0 &&
	    cmd->port == port)
		return;
	rs->master_moved = 1;
	rconn_drop(cmd, "the master moved to %s:%d", host, port);
}

/* Undo the escapes of one message field, in place. */
static void
redis_unescape(char *s)
{
	char	*out = s;

	for (; *s != '\0'; s++) {
		if (*s != '\\' || s[1] == '\0') {
			*out++ = *s;
			continue;
		}
		switch (*++s) {
		case 't':
			*out++ = '\t';
			break;
		case 'n':
			*out++ = '\n';
			break;
		case 'r':
			*out++ = '\r';
			break;
		default:
			*out++ = *s;
			break;
		}
	}
	*out = '\0';
}

static int
redis_parse_u64(const char *s, uint64_t *v)
{
	redisReply	r;

	memset(&r, 0, sizeof r);
	r.type = REDIS_REPLY_STRING;
	r.str = (char *)s;
	r.len = strlen(s);
	return (reply_u64(&r, v));
}

static int
redis_parse_i64(const char *s, int64_t *v)
{
	redisReply	r;

	memset(&r, 0, sizeof r);
	r.type = REDIS_REPLY_STRING;
	r.str = (char *)s;
	r.len = strlen(s);
	return (reply_i64(&r, v));
}

/* One message of the event channel (format at the top of the file). */
static void
redis_event(struct redis_store *rs, const char *msg, size_t len)
{
	struct store_console	 rec;
	char			*copy, *p, *f[8];
	u_int			 n = 0;

	if (memchr(msg, '\0', len) != NULL) {
		log_warnx("store: event with a NUL byte ignored");
		return;
	}
	copy = xstrndup(msg, len);
	for (p = copy; n < nitems(f) && (f[n] = strsep(&p, "\t")) != NULL;
	    n++)
		redis_unescape(f[n]);

	memset(&rec, 0, sizeof rec);
	if (n >= 7 && strcmp(f[0], "C") == 0) {
		snprintf(rec.key, sizeof rec.key, "%s", f[1]);
		snprintf(rec.owner, sizeof rec.owner, "%s", f[2]);
		snprintf(rec.name, sizeof rec.name, "%s", f[4]);
		snprintf(rec.state, sizeof rec.state, "%s", f[5]);
		if (redis_parse_u64(f[3], &rec.epoch) != 0 ||
		    redis_parse_i64(f[6], &rec.since) != 0)
			goto bad;
		redis_emit(rs, STORE_EV_CONSOLE, &rec, NULL, rec.key);
	} else if (n >= 4 && strcmp(f[0], "G") == 0) {
		snprintf(rec.key, sizeof rec.key, "%s", f[1]);
		snprintf(rec.owner, sizeof rec.owner, "%s", f[2]);
		if (redis_parse_u64(f[3], &rec.epoch) != 0)
			goto bad;
		redis_emit(rs, STORE_EV_CONSOLE_GONE, &rec, NULL, rec.key);
	} else
		log_debug("store: event of unknown type ignored");
	free(copy);
	return;

bad:
	log_warnx("store: malformed event ignored");
	free(copy);
}

/* "+switch-master NAME OLDHOST OLDPORT NEWHOST NEWPORT" from a Sentinel. */
static void
redis_switch_master(struct redis_store *rs, const char *msg, size_t len)
{
	char		*copy, *p, *w[5];
	uint64_t	 port;
	u_int		 n = 0;

	copy = xstrndup(msg, len);
	p = copy;
	while (n < nitems(w) && (w[n] = strsep(&p, " ")) != NULL)
		n++;
	if (n == 5 && strcmp(w[0], rs->master_name) == 0) {
		if (redis_parse_u64(w[4], &port) == 0 && port > 0 &&
		    port <= 65535 && *w[3] != '\0')
			redis_sentinel_found(rs, w[3], (int)port,
			    "(failover)");
		else
			log_warnx("store: malformed +switch-master ignored");
	}
	free(copy);
}

/* A message on a subscribed connection (or NULL when it closes). */
static void
redis_sub_message(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rconn		*c = privdata;
	struct redis_store	*rs = c->rs;
	redisReply		*reply = r;
	const redisReply	*kind, *body;

	if (reply == NULL || c->ac != ac || rs->freeing)
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING) {
		reply_unexpected("SUBSCRIBE", reply);
		rconn_drop(c, "bad message");
		return;
	}
	kind = reply->element[0];
	body = reply->element[2];
	if (reply_field(kind, "subscribe")) {
		if (c->state == RCONN_HANDSHAKE)
			rconn_ready(c);
		return;
	}
	if (!reply_field(kind, "message") || c->state != RCONN_READY)
		return;
	if (body->type != REDIS_REPLY_STRING) {
		reply_unexpected("SUBSCRIBE", body);
		return;
	}
	if (c->kind == RCONN_SUB)
		redis_event(rs, body->str, body->len);
	else if (c->kind == RCONN_SENTINEL)
		redis_switch_master(rs, body->str, body->len);
}

/*
 * Listings: SCAN with MATCH, then HGETALL of every key found, at most
 * REDIS_LIST_WINDOW at a time.  A key SCAN returns twice is fetched once;
 * one that is gone by the time of its HGETALL is left out.
 */

static void
redis_list_fail(struct redis_list *l, const redisReply *r, const char *what)
{
	if (l->answered)
		return;
	l->answered = 1;
	if (r != NULL && r->type != REDIS_REPLY_ERROR)
		reply_unexpected(what, r);
	else if (r != NULL)
		log_warnx("store: %s: %.*s", what, (int)r->len, r->str);
	if (l->nodes)
		l->nodes_cb(STORE_UNAVAILABLE, NULL, 0, l->arg);
	else
		l->consoles_cb(STORE_UNAVAILABLE, NULL, 0, l->arg);
}

static int
redis_console_cmp(const void *a, const void *b)
{
	return (strcmp(((const struct store_console *)a)->key,
	    ((const struct store_console *)b)->key));
}

static int
redis_node_cmp(const void *a, const void *b)
{
	return (strcmp(((const struct store_node *)a)->id,
	    ((const struct store_node *)b)->id));
}

static void
redis_list_finish(struct redis_list *l)
{
	size_t	i, n = 0;

	for (i = 0; i < l->nkeys; i++) {
		if (!l->valid[i])
			continue;
		if (l->nodes)
			l->nodelist[n++] = l->nodelist[i];
		else
			l->consoles[n++] = l->consoles[i];
	}
	if (l->nodes) {
		if (n > 1)
			qsort(l->nodelist, n, sizeof *l->nodelist,
			    redis_node_cmp);
		l->nodes_cb(STORE_OK, l->nodelist, n, l->arg);
	} else {
		if (n > 1)
			qsort(l->consoles, n, sizeof *l->consoles,
			    redis_console_cmp);
		l->consoles_cb(STORE_OK, l->consoles, n, l->arg);
	}
}

static void
redis_list_unref(struct redis_list *l)
{
	size_t	i;

	if (--l->pending > 0)
		return;
	if (!l->answered) {
		l->answered = 1;
		redis_list_finish(l);
	}
	for (i = 0; i < l->nkeys; i++) {
		free(l->keys[i]->key);
		free(l->keys[i]);
	}
	hmap_free(&l->seen);
	free(l->keys);
	free(l->consoles);
	free(l->nodelist);
	free(l->valid);
	free(l->pattern);
	free(l);
}

static void
redis_list_fetched(struct redis_req *req, redisReply *r)
{
	struct redis_list	*l = req->list;
	struct redis_store	*rs = l->rs;
	const char		*key;
	size_t			 skip;

	l->fetching--;
	if (!l->answered) {
		if (!reply_is_hash(r))
			redis_list_fail(l, r, "HGETALL");
		else if (r->elements > 0) {
			key = l->keys[req->index]->key;
			skip = strlen(rs->prefix) + (l->nodes ? 5 : 8);
			if (l->nodes)
				redis_parse_node(key + skip, r,
				    &l->nodelist[req->index]);
			else
				redis_parse_console(key + skip, r,
				    &l->consoles[req->index]);
			l->valid[req->index] = 1;
		}
	}
	redis_list_pump(l);
	redis_list_unref(l);
}

/* Fetch the next keys, keeping at most a window in flight. */
static void
redis_list_pump(struct redis_list *l)
{
	struct redis_req	*req;
	const char		*argv[2];

	while (!l->answered && l->next < l->nkeys &&
	    l->fetching < REDIS_LIST_WINDOW) {
		req = req_new(redis_list_fetched, NULL);
		req->list = l;
		req->index = l->next++;
		argv[0] = "HGETALL";
		argv[1] = l->keys[req->index]->key;
		l->pending++;
		l->fetching++;
		(void)rconn_sendv(CMD(l->rs), req, 2, argv);
	}
}

static void	redis_list_scan(struct redis_list *, const char *);

/* Make room for more keys (doubling: thousands of consoles). */
static void
redis_list_grow(struct redis_list *l)
{
	l->size = l->size == 0 ? 64 : l->size * 2;
	l->keys = xreallocarray(l->keys, l->size, sizeof *l->keys);
	l->valid = xreallocarray(l->valid, l->size, sizeof *l->valid);
	if (l->nodes)
		l->nodelist = xreallocarray(l->nodelist, l->size,
		    sizeof *l->nodelist);
	else
		l->consoles = xreallocarray(l->consoles, l->size,
		    sizeof *l->consoles);
}

static void
redis_list_scanned(struct redis_req *req, redisReply *r)
{
	struct redis_list	*l = req->list;
	struct redis_list_key	*k;
	const redisReply	*keys, *e;
	size_t			 i, prefix;
	char			*cursor;

	if (l->answered)
		goto out;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		redis_list_fail(l, r, "SCAN");
		goto out;
	}
	keys = r->element[1];
	prefix = strlen(l->rs->prefix) + (l->nodes ? 5 : 8);
	for (i = 0; i < keys->elements; i++) {
		e = keys->element[i];
		if (e->type != REDIS_REPLY_STRING || e->len <= prefix ||
		    memchr(e->str, '\0', e->len) != NULL)
			continue;
		k = xcalloc(1, sizeof *k);
		k->key = xstrndup(e->str, e->len);
		if (hmap_find(&l->seen, k->key) != NULL) {
			free(k->key);
			free(k);
			continue;
		}
		hmap_insert(&l->seen, &k->entry, k->key);
		if (l->nkeys == l->size)
			redis_list_grow(l);
		l->valid[l->nkeys] = 0;
		l->keys[l->nkeys++] = k;
	}
	if (r->element[0]->len == 1 && r->element[0]->str[0] == '0')
		l->scanning = 0;
	else {
		cursor = xstrndup(r->element[0]->str, r->element[0]->len);
		redis_list_scan(l, cursor);
		free(cursor);
	}
	redis_list_pump(l);
out:
	redis_list_unref(l);
}

static void
redis_list_scan(struct redis_list *l, const char *cursor)
{
	struct redis_req	*req;
	const char		*argv[6];

	req = req_new(redis_list_scanned, NULL);
	req->list = l;
	argv[0] = "SCAN";
	argv[1] = cursor;
	argv[2] = "MATCH";
	argv[3] = l->pattern;
	argv[4] = "COUNT";
	argv[5] = REDIS_SCAN_COUNT;
	l->pending++;
	(void)rconn_sendv(CMD(l->rs), req, 6, argv);
}

static void
redis_list_start(struct redis_store *rs, int nodes, store_consoles_cb ccb,
    store_nodes_cb ncb, void *arg)
{
	struct redis_list	*l;

	l = xcalloc(1, sizeof *l);
	l->rs = rs;
	l->nodes = nodes;
	l->consoles_cb = ccb;
	l->nodes_cb = ncb;
	l->arg = arg;
	hmap_init(&l->seen);
	xasprintf(&l->pattern, "%s%s:*", rs->prefix,
	    nodes ? "node" : "console");
	l->scanning = 1;
	l->pending = 1;		/* Held until the first SCAN is sent. */
	redis_list_scan(l, "0");
	redis_list_unref(l);
}

/*
 * Node arrivals and departures: the node list of every heartbeat against
 * the one before.  A node that registered again (another start time)
 * comes up again.
 */

static void
redis_tick_nodes(enum store_status st, const struct store_node *nodes,
    size_t n, void *arg)
{
	struct redis_store	*rs = arg;
	struct store_node	*old;
	size_t			 nold, i, j;

	rs->tick_busy = 0;
	if (st != STORE_OK || rs->freeing)
		return;
	old = rs->known;
	nold = rs->nknown;
	rs->known = n > 0 ? xreallocarray(NULL, n, sizeof *nodes) : NULL;
	if (n > 0)
		memcpy(rs->known, nodes, n * sizeof *nodes);
	rs->nknown = n;

	for (i = 0; i < nold; i++) {
		for (j = 0; j < n; j++) {
			if (strcmp(old[i].id, rs->known[j].id) == 0)
				break;
		}
		if (j == n)
			redis_emit(rs, STORE_EV_NODE_DOWN, NULL, &old[i],
			    old[i].id);
	}
	for (j = 0; j < n; j++) {
		for (i = 0; i < nold; i++) {
			if (strcmp(old[i].id, rs->known[j].id) == 0)
				break;
		}
		if (i == nold || old[i].started != rs->known[j].started)
			redis_emit(rs, STORE_EV_NODE_UP, NULL, &rs->known[j],
			    rs->known[j].id);
	}
	free(old);
}

static void
redis_tick(int fd, short events, void *arg)
{
	struct redis_store	*rs = arg;

	if (rs->evcb == NULL || rs->tick_busy ||
	    CMD(rs)->state != RCONN_READY)
		return;
	rs->tick_busy = 1;
	redis_list_start(rs, 1, NULL, redis_tick_nodes, rs);
}

/*
 * The operations of store.h.
 */

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

static void
redis_free(struct store *s)
{
	struct redis_store	*rs = s->impl;
	struct rconn		*c;
	redisAsyncContext	*ac;
	u_int			 i;

	rs->freeing = 1;
	for (i = 0; i < RCONN_KIND_MAX; i++) {
		c = &rs->conn[i];
		event_del(c->ev_retry);
		event_del(c->ev_watch);
		event_del(c->ev_drop);
		c->state = RCONN_IDLE;
		if ((ac = c->ac) != NULL) {
			c->ac = NULL;
			ac->data = NULL;
			/* What is in flight is answered, unavailable. */
			redisAsyncFree(ac);
		}
	}
	for (i = 0; i < RCONN_KIND_MAX; i++) {
		c = &rs->conn[i];
		event_free(c->ev_retry);
		event_free(c->ev_watch);
		event_free(c->ev_drop);
		free(c->host);
		free(c->drop_reason);
	}
	event_free(rs->ev_tick);
	config_redis_free(&rs->url);
	for (i = 0; i < rs->nsentinels; i++)
		config_redis_free(&rs->sentinels[i]);
	free(rs->sentinels);
	free(rs->sen_down);
	free(rs->master_name);
	if (rs->sentinel_password != NULL) {
		OPENSSL_cleanse(rs->sentinel_password,
		    strlen(rs->sentinel_password));
		free(rs->sentinel_password);
	}
	free(rs->master_host);
	free(rs->prefix);
	free(rs->channel);
	free(rs->epoch_key);
	free(rs->name_prefix);
	free(rs->known);
	free(rs);
	free(s->node);
	free(s);
}

static const struct store_ops redis_ops = {
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

/*
 * Create the Redis store for the [cluster] section of conf, on base.  It
 * connects in the background: s->connected and the events say when it is
 * reachable.  On a configuration error return NULL with *err set.
 */
struct store *
store_redis_create(struct event_base *base, const struct config *conf,
    char **err)
{
	struct store		*s;
	struct redis_store	*rs;
	struct rconn		*c;
	struct timeval		 tv;
	char			*msg;
	u_int			 i;

	*err = NULL;
	rs = xcalloc(1, sizeof *rs);
	if (*conf->cluster_redis != '\0') {
		if (config_parse_redis(conf->cluster_redis, &rs->url,
		    &msg) != 0) {
			xasprintf(err, "[cluster] redis: %s", msg);
			free(msg);
			free(rs);
			return (NULL);
		}
	} else if (*conf->cluster_sentinels != '\0') {
		if (*conf->cluster_master_name == '\0') {
			*err = xstrdup("[cluster] sentinels: needs "
			    "master_name");
			free(rs);
			return (NULL);
		}
		if (config_parse_sentinels(conf->cluster_sentinels,
		    &rs->sentinels, &rs->nsentinels, &msg) != 0) {
			xasprintf(err, "[cluster] sentinels: %s", msg);
			free(msg);
			free(rs);
			return (NULL);
		}
		rs->sentinel = 1;
		rs->sen_down = xcalloc(rs->nsentinels, 1);
	} else {
		*err = xstrdup("[cluster]: neither redis nor sentinels is set");
		free(rs);
		return (NULL);
	}
	rs->master_name = xstrdup(conf->cluster_master_name);
	rs->sentinel_password = xstrdup(conf->cluster_sentinel_password);
	rs->base = base;
	xasprintf(&rs->prefix, "vspc:{%s}:", conf->cluster_name);
	xasprintf(&rs->channel, "%sevents", rs->prefix);
	xasprintf(&rs->epoch_key, "%sepoch", rs->prefix);
	xasprintf(&rs->name_prefix, "%sname:", rs->prefix);
	rs->timeout = (conf->cluster_redis_timeout != 0 ?
	    conf->cluster_redis_timeout : 2) * 1000;
	rs->heartbeat = (conf->cluster_heartbeat != 0 ?
	    conf->cluster_heartbeat : 1) * 1000;
	rs->node_timeout = (conf->cluster_node_timeout != 0 ?
	    conf->cluster_node_timeout : 5) * 1000;

	for (i = 0; i < RCONN_KIND_MAX; i++) {
		c = &rs->conn[i];
		c->rs = rs;
		c->kind = i;
		c->backoff = REDIS_BACKOFF_MIN;
		TAILQ_INIT(&c->inflight);
		c->ev_retry = evtimer_new(base, rconn_retry, c);
		c->ev_watch = evtimer_new(base, rconn_watch, c);
		c->ev_drop = event_new(base, -1, 0, rconn_drop_now, c);
		if (c->ev_retry == NULL || c->ev_watch == NULL ||
		    c->ev_drop == NULL)
			fatalx("store: event_new failed");
	}
	rs->ev_tick = event_new(base, -1, EV_PERSIST, redis_tick, rs);
	if (rs->ev_tick == NULL)
		fatalx("store: event_new failed");
	redis_timeval(rs->heartbeat, &tv);
	event_add(rs->ev_tick, &tv);

	s = xcalloc(1, sizeof *s);
	s->ops = &redis_ops;
	s->node = xstrdup(conf->node_id);
	s->shared = 1;
	s->connected = 0;
	s->impl = rs;
	rs->s = s;

	rconn_schedule(rs->sentinel ? SEN(rs) : CMD(rs), 0);
	return (s);
}
