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
 *   P"events"           pub/sub channel (store-redis-events.c).
 *
 * This file holds the store's creation and freeing, its vtable, and the
 * parsing of replies; the rest is in store-redis-conn.c (connections,
 * handshakes, Sentinel), store-redis-ops.c (the operations of
 * store.h, as Lua scripts) and store-redis-events.c (the event channel,
 * listings, node arrivals and departures); store-redis-int.h holds what
 * they share.
 *
 * The store must not be freed from one of its own callbacks.
 */

#include <sys/types.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "vspcd.h"
#include "store.h"
#include "store-redis-int.h"

/* Monotonic milliseconds. */
uint64_t
redis_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Milliseconds as a struct timeval. */
void
redis_timeval(u_int ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

/* Tell the store's user of an event (not while freeing). */
void
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
const char *
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

/* Log a reply that is not what the command gives. */
void
reply_unexpected(const char *what, const redisReply *r)
{
	char	buf[128];

	if (r == NULL)
		return;
	log_warnx("store: unexpected reply to %s: %s", what,
	    reply_describe(r, buf, sizeof buf));
}

/* A status reply "OK"? */
int
reply_is_ok(const redisReply *r)
{
	return (r != NULL && r->type == REDIS_REPLY_STATUS && r->len == 2 &&
	    memcmp(r->str, "OK", 2) == 0);
}

/* A string of decimal digits, of at most 20. */
int
redis_parse_u64(const char *s, size_t len, uint64_t *v)
{
	uint64_t	n = 0;
	size_t		i;

	if (len == 0 || len > 20)
		return (-1);
	for (i = 0; i < len; i++) {
		if (!isdigit((u_char)s[i]))
			return (-1);
		if (n > (UINT64_MAX - 9) / 10)
			return (-1);
		n = n * 10 + (s[i] - '0');
	}
	*v = n;
	return (0);
}

/* The same with an optional minus sign, for times. */
int
redis_parse_i64(const char *s, size_t len, int64_t *v)
{
	uint64_t	n;

	if (len > 1 && s[0] == '-') {
		if (redis_parse_u64(s + 1, len - 1, &n) != 0 ||
		    n > INT64_MAX)
			return (-1);
		*v = -(int64_t)n;
		return (0);
	}
	if (redis_parse_u64(s, len, &n) != 0 || n > INT64_MAX)
		return (-1);
	*v = n;
	return (0);
}

/* An integer, or a string of decimal digits. */
int
reply_u64(const redisReply *r, uint64_t *v)
{
	if (r == NULL)
		return (-1);
	if (r->type == REDIS_REPLY_INTEGER) {
		if (r->integer < 0)
			return (-1);
		*v = r->integer;
		return (0);
	}
	if (r->type != REDIS_REPLY_STRING)
		return (-1);
	return (redis_parse_u64(r->str, r->len, v));
}

/* A signed decimal string, for times (or an integer that is not). */
int
reply_i64(const redisReply *r, int64_t *v)
{
	uint64_t	n;

	if (r != NULL && r->type == REDIS_REPLY_STRING)
		return (redis_parse_i64(r->str, r->len, v));
	if (reply_u64(r, &n) != 0 || n > INT64_MAX)
		return (-1);
	*v = n;
	return (0);
}

/* Copy a string reply into a fixed field, cut to fit. */
void
reply_copy(char *dst, size_t size, const redisReply *r)
{
	size_t	len;

	len = r->len < size - 1 ? r->len : size - 1;
	memcpy(dst, r->str, len);
	dst[len] = '\0';
}

/* Is the string reply r the field name? */
int
reply_field(const redisReply *r, const char *name)
{
	return (r->len == strlen(name) && memcmp(r->str, name, r->len) == 0);
}

/* A HGETALL reply: an array of strings, in pairs. */
int
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
void
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

/* Fill a node record from a HGETALL reply; id is the node ID. */
void
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

/* Free the store: connections, requests in flight, listings. */
void
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
