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
 * What the store hears: the event channel, listings and node arrivals.
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
 */

#include <sys/types.h>

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "vspcd.h"
#include "store.h"
#include "store-redis-int.h"

static void	redis_list_pump(struct redis_list *);
static void	redis_list_scan(struct redis_list *, const char *);

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
		if (redis_parse_u64(f[3], strlen(f[3]), &rec.epoch) != 0 ||
		    redis_parse_i64(f[6], strlen(f[6]), &rec.since) != 0)
			goto bad;
		redis_emit(rs, STORE_EV_CONSOLE, &rec, NULL, rec.key);
	} else if (n >= 4 && strcmp(f[0], "G") == 0) {
		snprintf(rec.key, sizeof rec.key, "%s", f[1]);
		snprintf(rec.owner, sizeof rec.owner, "%s", f[2]);
		if (redis_parse_u64(f[3], strlen(f[3]), &rec.epoch) != 0)
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
		if (redis_parse_u64(w[4], strlen(w[4]), &port) == 0 &&
		    port > 0 && port <= 65535 && *w[3] != '\0')
			redis_sentinel_found(rs, w[3], (int)port,
			    "(failover)");
		else
			log_warnx("store: malformed +switch-master ignored");
	}
	free(copy);
}

/* A message on a subscribed connection (or NULL when it closes). */
void
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

/* List the consoles (nodes 0) or the nodes (1): SCAN, then HGETALL each. */
void
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

/* Timer: list the nodes, to see arrivals and departures. */
void
redis_tick(int fd, short events, void *arg)
{
	struct redis_store	*rs = arg;

	if (rs->evcb == NULL || rs->tick_busy ||
	    CMD(rs)->state != RCONN_READY)
		return;
	rs->tick_busy = 1;
	redis_list_start(rs, 1, NULL, redis_tick_nodes, rs);
}
