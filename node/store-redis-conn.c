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
 * Connections to Redis: "cmd" carries every command; "sub" is
 * SUBSCRIBEd to the event channel on the same server and is (re)opened
 * whenever cmd becomes ready (both send AUTH from the URL; only cmd needs
 * SELECT, pub/sub does not depend on the database); with Sentinel,
 * "sentinel" asks the Sentinels (in order, with AUTH sentinel_password)
 * where the master is, then stays SUBSCRIBEd to +switch-master to follow
 * a failover at once, and cmd checks with ROLE that it reached a master.
 * With Sentinel the master is reached without AUTH.  A connection that
 * fails is reopened with a delay of 100 ms, doubling to 5 s.
 *
 * Commands are tracked in order per connection: one without a reply
 * within redis_timeout closes the connection (hiredis 0.14 has no
 * timeouts of its own), and every command in flight on a closed
 * connection, or issued while there is none, is answered
 * STORE_UNAVAILABLE.  At most REDIS_INFLIGHT_MAX are in flight.  No
 * hiredis context is freed from inside one of its own callbacks: closing
 * is queued (ev_drop) to the next loop turn.
 */

#include <sys/types.h>

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "vspcd.h"
#include "store.h"
#include "store-redis-int.h"

static const char *rconn_names[RCONN_KIND_MAX] = {
	"redis", "redis subscriber", "sentinel"
};

static void	rconn_arm(struct rconn *);
static void	rconn_start(struct rconn *);
static void	rconn_lost(struct rconn *, const char *);
static void	redis_handshake(struct rconn *);

/* A request whose reply goes to done. */
struct redis_req *
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
int
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
int
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

/* Timer: a command got no reply in time, or the handshake is late. */
void
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
void
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

/* Close a connection queued for closing (next loop turn). */
void
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

/* Timer: open a connection again. */
void
rconn_retry(int fd, short events, void *arg)
{
	rconn_start(arg);
}

/* Start (or restart) c after ms milliseconds. */
void
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
void
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
void
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
