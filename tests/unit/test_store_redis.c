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
 * Unit tests for node/store-redis*.c against real redis-server processes,
 * started here on free loopback ports (the binary is $REDIS_SERVER; the
 * test is skipped, exit 77, without it).  The store runs on a real
 * event_base; every wait is a bounded loop on a condition, never a
 * timing assertion.  A second, synchronous hiredis connection looks at
 * what the store wrote.
 */

#include <sys/types.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "vspcd.h"
#include "store.h"

#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof (a)[0])
#endif

#define WAIT_MS		8000	/* Bound of a wait that should succeed. */
#define MAX_CHILDREN	16

static const char	*redis_server;
static char		 tmpdir[256];
static struct event_base *base;
static pid_t		 children[MAX_CHILDREN];
static int		 child_ports[MAX_CHILDREN];
static int		 shared_port;	/* The Redis most tests share. */

/*
 * Processes.
 */

static uint64_t
now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void
sleep_ms(u_int ms)
{
	struct timespec	ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

/* A loopback port in 20000-29999 nobody listens on now. */
static int
free_port(void)
{
	struct sockaddr_in	sin;
	int			fd, port, i, j;

	for (i = 0; i < 200; i++) {
		port = 20000 + (int)(random() % 10000);
		for (j = 0; j < MAX_CHILDREN; j++) {
			if (child_ports[j] == port)
				break;
		}
		if (j < MAX_CHILDREN)
			continue;
		if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
			continue;
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_port = htons(port);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0) {
			close(fd);
			return (port);
		}
		close(fd);
	}
	fail_msg("no free port");
	return (-1);
}

static void
kill_children(void)
{
	int	i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] > 0) {
			kill(children[i], SIGCONT);
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	}
}

static void
cleanup(void)
{
	char	cmd[PATH_MAX + 16];

	kill_children();
	if (tmpdir[0] != '\0') {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
}

/* Connect synchronously; NULL if the server does not answer. */
static redisContext *
sync_connect(int port, const char *password)
{
	redisContext	*rc;
	redisReply	*r;
	struct timeval	 tv = { 2, 0 };

	rc = redisConnectWithTimeout("127.0.0.1", port, tv);
	if (rc == NULL || rc->err) {
		if (rc != NULL)
			redisFree(rc);
		return (NULL);
	}
	redisSetTimeout(rc, tv);
	if (password != NULL) {
		r = redisCommand(rc, "AUTH %s", password);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			if (r != NULL)
				freeReplyObject(r);
			redisFree(rc);
			return (NULL);
		}
		freeReplyObject(r);
	}
	return (rc);
}

/* Wait until the server on port answers PING (any reply will do). */
static int
wait_ready(int port)
{
	redisContext	*rc;
	redisReply	*r;
	uint64_t	 end = now_ms() + WAIT_MS;

	while (now_ms() < end) {
		if ((rc = sync_connect(port, NULL)) != NULL) {
			r = redisCommand(rc, "PING");
			redisFree(rc);
			if (r != NULL) {
				freeReplyObject(r);
				return (0);
			}
		}
		sleep_ms(50);
	}
	return (-1);
}

/*
 * Start redis-server with words (NULL-terminated) after the common ones;
 * conf, if not NULL, is a configuration file given first (a Sentinel).
 */
static pid_t
start_server(int port, const char *conf, const char *const *words)
{
	const char	*argv[64];
	char		 portbuf[16], logfile[PATH_MAX];
	pid_t		 pid;
	int		 argc = 0, i, fd;

	snprintf(portbuf, sizeof portbuf, "%d", port);
	snprintf(logfile, sizeof logfile, "%s/redis-%d.log", tmpdir, port);
	argv[argc++] = redis_server;
	if (conf != NULL)
		argv[argc++] = conf;
	argv[argc++] = "--port";
	argv[argc++] = portbuf;
	argv[argc++] = "--bind";
	argv[argc++] = "127.0.0.1";
	argv[argc++] = "--daemonize";
	argv[argc++] = "no";
	argv[argc++] = "--dir";
	argv[argc++] = tmpdir;
	argv[argc++] = "--logfile";
	argv[argc++] = logfile;
	if (conf == NULL) {
		argv[argc++] = "--save";
		argv[argc++] = "";
		argv[argc++] = "--appendonly";
		argv[argc++] = "no";
	}
	for (i = 0; words != NULL && words[i] != NULL && argc < 62; i++)
		argv[argc++] = words[i];
	argv[argc] = NULL;

	for (i = 0; i < MAX_CHILDREN && children[i] != 0; i++)
		;
	assert_true(i < MAX_CHILDREN);
	if ((pid = fork()) == -1)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
#ifdef __linux__
		/* Never outlive the test, even if it crashes. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		if ((fd = open("/dev/null", O_RDWR)) != -1) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		execv(redis_server, (char *const *)argv);
		_exit(127);
	}
	children[i] = pid;
	child_ports[i] = port;
	if (wait_ready(port) != 0)
		fail_msg("redis-server on port %d did not start (see %s)",
		    port, logfile);
	return (pid);
}

static pid_t
start_redis(int port, ...)
{
	const char	*words[32];
	va_list		 ap;
	int		 n = 0;

	va_start(ap, port);
	while (n < 31 && (words[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	words[n] = NULL;
	return (start_server(port, NULL, words));
}

static void
stop_server(pid_t pid)
{
	int	i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] == pid) {
			kill(pid, SIGCONT);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			children[i] = 0;
			child_ports[i] = 0;
		}
	}
}

/* Run a command on a synchronous connection; the reply must come. */
static redisReply *
sync_cmd(redisContext *rc, const char *fmt, ...)
{
	redisReply	*r;
	va_list		 ap;

	va_start(ap, fmt);
	r = redisvCommand(rc, fmt, ap);
	va_end(ap);
	if (r == NULL)
		fail_msg("redis command failed: %s", rc->errstr);
	return (r);
}

static long long
sync_int(redisContext *rc, const char *fmt, ...)
{
	redisReply	*r;
	long long	 v;
	va_list		 ap;

	va_start(ap, fmt);
	r = redisvCommand(rc, fmt, ap);
	va_end(ap);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		fail_msg("expected an integer reply");
	v = r->integer;
	freeReplyObject(r);
	return (v);
}

/*
 * The event loop.
 */

/* Run the loop until *flag is set or ms pass; return *flag. */
static int
run_until(const int *flag, u_int ms)
{
	struct timeval	tv = { 0, 20000 };
	uint64_t	end = now_ms() + ms;

	while (!*flag && now_ms() < end) {
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return (*flag);
}

/* Run the loop for ms, whatever happens. */
static void
run_for(u_int ms)
{
	int	never = 0;

	run_until(&never, ms);
}

/*
 * Results of store calls.
 */

struct result {
	int			 done;
	enum store_status	 st;
	uint64_t		 epoch;
	struct store_token	 tok;
	struct store_console	 con;
	struct store_console	*cons;
	size_t			 n;
	struct store_node	 nodes[16];
};

static void
done_cb(enum store_status st, void *arg)
{
	struct result	*r = arg;

	r->st = st;
	r->done = 1;
}

static void
token_cb(enum store_status st, const struct store_token *tok, void *arg)
{
	struct result	*r = arg;

	r->st = st;
	if (tok != NULL)
		r->tok = *tok;
	r->done = 1;
}

static void
claim_cb(enum store_status st, uint64_t epoch, void *arg)
{
	struct result	*r = arg;

	r->st = st;
	r->epoch = epoch;
	r->done = 1;
}

static void
console_cb(enum store_status st, const struct store_console *c, void *arg)
{
	struct result	*r = arg;

	r->st = st;
	if (c != NULL)
		r->con = *c;
	r->done = 1;
}

static void
consoles_cb(enum store_status st, const struct store_console *c, size_t n,
    void *arg)
{
	struct result	*r = arg;

	r->st = st;
	r->n = n;
	free(r->cons);
	r->cons = NULL;
	if (n > 0) {
		r->cons = calloc(n, sizeof *c);
		memcpy(r->cons, c, n * sizeof *c);
	}
	r->done = 1;
}

static void
nodes_cb(enum store_status st, const struct store_node *nodes, size_t n,
    void *arg)
{
	struct result	*r = arg;

	r->st = st;
	r->n = n;
	memcpy(r->nodes, nodes, (n < 16 ? n : 16) * sizeof *nodes);
	r->done = 1;
}

/* Events seen by one store. */
struct seen {
	u_int			 n;
	struct {
		enum store_event_type	 type;
		char			 key[128];
		struct store_console	 con;
		struct store_node	 node;
		int			 connected;
	}			 ev[256];
	struct store		*s;
};

static void
event_cb(const struct store_event *ev, void *arg)
{
	struct seen	*seen = arg;
	u_int		 i;

	if (seen->n == nitems(seen->ev))
		return;
	i = seen->n++;
	memset(&seen->ev[i], 0, sizeof seen->ev[i]);
	seen->ev[i].type = ev->type;
	if (ev->key != NULL)
		snprintf(seen->ev[i].key, sizeof seen->ev[i].key, "%s",
		    ev->key);
	if (ev->console != NULL)
		seen->ev[i].con = *ev->console;
	if (ev->node != NULL)
		seen->ev[i].node = *ev->node;
	if (seen->s != NULL)
		seen->ev[i].connected = seen->s->connected;
}

/* Index of the first event of type (and key) at or after from, or -1. */
static int
seen_find(const struct seen *seen, u_int from, enum store_event_type type,
    const char *key)
{
	u_int	i;

	for (i = from; i < seen->n; i++) {
		if (seen->ev[i].type == type &&
		    (key == NULL || strcmp(seen->ev[i].key, key) == 0))
			return ((int)i);
	}
	return (-1);
}

/* Run the loop until the event comes; return its index. */
static int
wait_event(const struct seen *seen, u_int from, enum store_event_type type,
    const char *key, u_int ms)
{
	uint64_t	end = now_ms() + ms;
	int		i;

	while ((i = seen_find(seen, from, type, key)) == -1 &&
	    now_ms() < end)
		run_for(20);
	return (i);
}

/*
 * Stores.
 */

static struct store *
make_store(const char *url, const char *node, const char *cluster,
    const char *const *extra)
{
	struct config	*conf;
	struct store	*s;
	char		*err = NULL, buf[512];
	int		 i;

	conf = config_default();
	snprintf(buf, sizeof buf, "node.id=%s", node);
	assert_int_equal(config_set(conf, buf, &err), 0);
	snprintf(buf, sizeof buf, "cluster.name=%s", cluster);
	assert_int_equal(config_set(conf, buf, &err), 0);
	assert_int_equal(config_set(conf, "cluster.redis_timeout=1", &err), 0);
	assert_int_equal(config_set(conf, "cluster.secret_file=/dev/null",
	    &err), 0);
	if (url != NULL) {
		snprintf(buf, sizeof buf, "cluster.redis=%s", url);
		assert_int_equal(config_set(conf, buf, &err), 0);
	}
	for (i = 0; extra != NULL && extra[i] != NULL; i++) {
		if (config_set(conf, extra[i], &err) != 0)
			fail_msg("%s", err);
	}
	if (config_check(conf, &err) != 0)
		fail_msg("%s", err);
	s = store_redis_create(base, conf, &err);
	if (s == NULL)
		fail_msg("%s", err);
	config_free(conf);
	assert_int_equal(s->shared, 1);
	assert_string_equal(s->node, node);
	return (s);
}

static struct store *
shared_store(const char *node, const char *cluster, struct seen *seen)
{
	struct store	*s;
	char		 url[64];

	snprintf(url, sizeof url, "redis://127.0.0.1:%d", shared_port);
	s = make_store(url, node, cluster, NULL);
	if (seen != NULL) {
		memset(seen, 0, sizeof *seen);
		seen->s = s;
		store_set_events(s, event_cb, seen);
		assert_true(wait_event(seen, 0, STORE_EV_RESYNC, NULL,
		    WAIT_MS) >= 0);
	} else
		assert_true(run_until(&s->connected, WAIT_MS));
	return (s);
}

static void
claim(struct store *s, const char *key, const char *node, uint64_t known,
    struct result *r)
{
	memset(r, 0, sizeof *r);
	store_console_claim(s, key, node, known, claim_cb, r);
	assert_true(run_until(&r->done, WAIT_MS));
}

static void
get(struct store *s, const char *key, struct result *r)
{
	memset(r, 0, sizeof *r);
	store_console_get(s, key, console_cb, r);
	assert_true(run_until(&r->done, WAIT_MS));
}

static void
take(struct store *s, const u_char *tok, size_t len, struct result *r)
{
	memset(r, 0, sizeof *r);
	store_token_take(s, tok, len, token_cb, r);
	assert_true(run_until(&r->done, WAIT_MS));
}

static void
put(struct store *s, const u_char *tok, size_t len, const char *console,
    uint64_t id, u_int ttl)
{
	struct store_token	val;
	struct result		r;

	memset(&val, 0, sizeof val);
	snprintf(val.console, sizeof val.console, "%s", console);
	snprintf(val.node, sizeof val.node, "%s", "n1");
	val.id = id;
	memset(&r, 0, sizeof r);
	store_token_put(s, tok, len, &val, ttl, done_cb, &r);
	assert_true(run_until(&r.done, WAIT_MS));
	assert_int_equal(r.st, STORE_OK);
}

static void
hex_sha256(const u_char *p, size_t len, char *out)
{
	u_char	md[EVP_MAX_MD_SIZE];
	u_int	mdlen, i;

	assert_true(EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL));
	for (i = 0; i < 32; i++)
		snprintf(out + i * 2, 3, "%02x", md[i]);
}

/*
 * Tests.
 */

static int
group_setup(void **state)
{
	shared_port = free_port();
	start_redis(shared_port, NULL);
	return (0);
}

static void
test_tokens(void **state)
{
	struct store	*s;
	struct result	 r;
	redisContext	*rc;
	redisReply	*rep;
	u_char		 tok[20], other[20];
	char		 hex[65], key[128];

	s = shared_store("n1", "tok", NULL);
	rc = sync_connect(shared_port, NULL);
	assert_non_null(rc);

	/* Binary-safe: seq||secret may hold any byte. */
	memcpy(tok, "seq\0\xff\r\n\tseq-1234\x01\x02\x03\x04\x05\x06\x07", 20);
	put(s, tok, sizeof tok, "uuid.a", 42, 60);

	/* Stored under the digest, with a TTL; the key is not the token. */
	hex_sha256(tok, sizeof tok, hex);
	snprintf(key, sizeof key, "vspc:{tok}:vmotion:%s", hex);
	assert_true(sync_int(rc, "PTTL %s", key) > 0);

	take(s, tok, sizeof tok, &r);
	assert_int_equal(r.st, STORE_OK);
	assert_string_equal(r.tok.console, "uuid.a");
	assert_string_equal(r.tok.node, "n1");
	assert_int_equal(r.tok.id, 42);
	/* Single use. */
	take(s, tok, sizeof tok, &r);
	assert_int_equal(r.st, STORE_NOTFOUND);
	assert_int_equal(sync_int(rc, "EXISTS %s", key), 0);

	/* Another token is not found. */
	put(s, tok, sizeof tok, "uuid.a", 1, 60);
	memcpy(other, tok, sizeof other);
	other[19] ^= 1;
	take(s, other, sizeof other, &r);
	assert_int_equal(r.st, STORE_NOTFOUND);
	take(s, tok, sizeof tok - 1, &r);
	assert_int_equal(r.st, STORE_NOTFOUND);

	/*
	 * A record found by the digest whose token differs (as a collision
	 * or a tampered record would be) is not a match.
	 */
	rep = sync_cmd(rc, "HSET %s token %b", key, other, sizeof other);
	freeReplyObject(rep);
	take(s, tok, sizeof tok, &r);
	assert_int_equal(r.st, STORE_NOTFOUND);

	/* Deleted tokens are gone. */
	put(s, tok, sizeof tok, "uuid.a", 2, 60);
	store_token_del(s, tok, sizeof tok);
	take(s, tok, sizeof tok, &r);
	assert_int_equal(r.st, STORE_NOTFOUND);

	/* Expired tokens are gone. */
	put(s, tok, sizeof tok, "uuid.a", 3, 1);
	run_for(1300);
	take(s, tok, sizeof tok, &r);
	assert_int_equal(r.st, STORE_NOTFOUND);

	/* Bad lengths are refused without a round trip. */
	memset(&r, 0, sizeof r);
	store_token_take(s, tok, 0, token_cb, &r);
	assert_true(r.done);
	assert_int_equal(r.st, STORE_NOTFOUND);

	redisFree(rc);
	store_free(s);
}

static void
test_claim(void **state)
{
	struct store	*s;
	struct result	 r;
	uint64_t	 e1, e2, e3;

	s = shared_store("n1", "claim", NULL);

	/* Unconditional claims always win and move the epoch. */
	claim(s, "k1", "n1", 0, &r);
	assert_int_equal(r.st, STORE_OK);
	e1 = r.epoch;
	assert_true(e1 > 0);
	claim(s, "k1", "n2", 0, &r);
	assert_int_equal(r.st, STORE_OK);
	e2 = r.epoch;
	assert_true(e2 > e1);

	/* n1 knows a stale epoch, and n2 owns it: conflict. */
	claim(s, "k1", "n1", e1, &r);
	assert_int_equal(r.st, STORE_CONFLICT);
	assert_int_equal(r.epoch, e2);
	get(s, "k1", &r);
	assert_int_equal(r.st, STORE_OK);
	assert_string_equal(r.con.owner, "n2");
	assert_int_equal(r.con.epoch, e2);

	/* With the current epoch the claim wins. */
	claim(s, "k1", "n1", e2, &r);
	assert_int_equal(r.st, STORE_OK);
	e3 = r.epoch;
	assert_true(e3 > e2);
	/* The owner itself is never in conflict. */
	claim(s, "k1", "n1", e1, &r);
	assert_int_equal(r.st, STORE_OK);
	assert_true(r.epoch > e3);
	/* Nobody owns a new console. */
	claim(s, "k2", "n2", 12345, &r);
	assert_int_equal(r.st, STORE_OK);

	get(s, "nosuch", &r);
	assert_int_equal(r.st, STORE_NOTFOUND);
	store_free(s);
}

static void
test_update_release(void **state)
{
	struct store		*s;
	struct store_console	 rec;
	struct result		 r;
	redisContext		*rc;
	uint64_t		 e;

	s = shared_store("n1", "upd", NULL);
	rc = sync_connect(shared_port, NULL);
	assert_non_null(rc);

	claim(s, "k1", "n1", 0, &r);
	e = r.epoch;
	memset(&rec, 0, sizeof rec);
	snprintf(rec.key, sizeof rec.key, "k1");
	snprintf(rec.owner, sizeof rec.owner, "n1");
	snprintf(rec.name, sizeof rec.name, "web 1");
	snprintf(rec.state, sizeof rec.state, "connected");
	rec.epoch = e;
	rec.since = 1700000000;
	store_console_update(s, &rec);
	get(s, "k1", &r);
	assert_int_equal(r.st, STORE_OK);
	assert_string_equal(r.con.name, "web 1");
	assert_string_equal(r.con.state, "connected");
	assert_int_equal(r.con.since, 1700000000);
	assert_int_equal(r.con.epoch, e);
	assert_int_equal(sync_int(rc, "SISMEMBER %s k1",
	    "vspc:{upd}:name:web 1"), 1);

	/* Fencing: a stale epoch changes nothing. */
	snprintf(rec.name, sizeof rec.name, "stale");
	rec.epoch = e - 1;
	store_console_update(s, &rec);
	get(s, "k1", &r);
	assert_string_equal(r.con.name, "web 1");
	assert_int_equal(sync_int(rc, "EXISTS %s", "vspc:{upd}:name:stale"),
	    0);

	/* A new name moves the key between name sets. */
	snprintf(rec.name, sizeof rec.name, "web 2");
	snprintf(rec.state, sizeof rec.state, "vmotion");
	rec.epoch = e;
	store_console_update(s, &rec);
	get(s, "k1", &r);
	assert_string_equal(r.con.name, "web 2");
	assert_string_equal(r.con.state, "vmotion");
	assert_int_equal(sync_int(rc, "SISMEMBER %s k1",
	    "vspc:{upd}:name:web 1"), 0);
	assert_int_equal(sync_int(rc, "SISMEMBER %s k1",
	    "vspc:{upd}:name:web 2"), 1);

	/* Release with a stale epoch: kept; with the right one: gone. */
	store_console_release(s, "k1", e - 1);
	get(s, "k1", &r);
	assert_int_equal(r.st, STORE_OK);
	store_console_release(s, "k1", e);
	get(s, "k1", &r);
	assert_int_equal(r.st, STORE_NOTFOUND);
	assert_int_equal(sync_int(rc, "EXISTS %s", "vspc:{upd}:name:web 2"),
	    0);
	/* An update after release does not bring it back. */
	store_console_update(s, &rec);
	get(s, "k1", &r);
	assert_int_equal(r.st, STORE_NOTFOUND);

	redisFree(rc);
	store_free(s);
}

static void
test_list(void **state)
{
	struct store	*s;
	struct result	 r;
	redisContext	*rc;
	redisReply	*rep;
	char		 key[64];
	int		 i;

	s = shared_store("n1", "list", NULL);
	rc = sync_connect(shared_port, NULL);
	assert_non_null(rc);

	memset(&r, 0, sizeof r);
	store_console_list(s, consoles_cb, &r);
	assert_true(run_until(&r.done, WAIT_MS));
	assert_int_equal(r.st, STORE_OK);
	assert_int_equal(r.n, 0);

	claim(s, "b", "n1", 0, &r);
	claim(s, "a", "n2", 0, &r);
	claim(s, "c", "n1", 0, &r);
	/* Another cluster's consoles are not ours. */
	rep = sync_cmd(rc, "HSET vspc:{other}:console:x owner n9 epoch 1");
	freeReplyObject(rep);

	memset(&r, 0, sizeof r);
	store_console_list(s, consoles_cb, &r);
	assert_true(run_until(&r.done, WAIT_MS));
	assert_int_equal(r.st, STORE_OK);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.cons[0].key, "a");
	assert_string_equal(r.cons[0].owner, "n2");
	assert_string_equal(r.cons[1].key, "b");
	assert_string_equal(r.cons[2].key, "c");
	assert_true(r.cons[2].epoch > r.cons[1].epoch);

	/* More keys than one SCAN and one window of HGETALLs. */
	for (i = 0; i < 2500; i++)
		redisAppendCommand(rc, "HSET vspc:{list}:console:m%04d "
		    "owner n3 epoch %d", i, i + 1);
	for (i = 0; i < 2500; i++) {
		assert_int_equal(redisGetReply(rc, (void **)&rep), REDIS_OK);
		freeReplyObject(rep);
	}
	free(r.cons);
	memset(&r, 0, sizeof r);
	store_console_list(s, consoles_cb, &r);
	assert_true(run_until(&r.done, WAIT_MS));
	assert_int_equal(r.st, STORE_OK);
	assert_int_equal(r.n, 2503);
	for (i = 0; i < 2500; i++) {
		snprintf(key, sizeof key, "m%04d", i);
		assert_string_equal(r.cons[3 + i].key, key);
		assert_int_equal(r.cons[3 + i].epoch, i + 1);
	}
	free(r.cons);
	redisFree(rc);
	store_free(s);
}

static void
count_cb(enum store_status st, const struct store_console *c, void *arg)
{
	u_int	*counts = arg;

	counts[st]++;
}

static void
test_bounded(void **state)
{
	struct store	*s;
	u_int		 counts[STORE_STATUS_MAX], total, i;

	s = shared_store("n1", "bound", NULL);
	memset(counts, 0, sizeof counts);
	/* 10,000 in flight at most: the next one fails at once. */
	for (i = 0; i < 10001; i++)
		store_console_get(s, "k", count_cb, counts);
	assert_int_equal(counts[STORE_UNAVAILABLE], 1);
	for (;;) {
		total = counts[STORE_NOTFOUND] + counts[STORE_UNAVAILABLE];
		if (total == 10001)
			break;
		run_for(50);
	}
	assert_int_equal(counts[STORE_NOTFOUND], 10000);
	/* And when they are answered, new ones go through. */
	memset(counts, 0, sizeof counts);
	store_console_get(s, "k", count_cb, counts);
	while (counts[STORE_NOTFOUND] + counts[STORE_UNAVAILABLE] == 0)
		run_for(20);
	assert_int_equal(counts[STORE_NOTFOUND], 1);
	store_free(s);
}

/* Data the store did not write does not crash it. */
static void
test_robust(void **state)
{
	struct store	*s;
	struct seen	*seen;
	struct result	 r;
	redisContext	*rc;
	redisReply	*rep;
	u_char		 tok[8] = "12345678";
	char		 hex[65];
	u_int		 i, mark;
	const char	*junk[] = {
		"X\tk\tn\t1",
		"C\tk",
		"C\tk\tn\tnot-a-number\tname\tstate\t0",
		"C\tk\tn\t1\tname\tstate\t12x",
		"G\tk\tn",
		"",
		"\t\t\t\t\t\t\t\t\t",
	};

	seen = calloc(1, sizeof *seen);
	s = shared_store("n1", "rob", seen);
	rc = sync_connect(shared_port, NULL);
	assert_non_null(rc);

	mark = seen->n;
	for (i = 0; i < nitems(junk); i++) {
		rep = sync_cmd(rc, "PUBLISH vspc:{rob}:events %s", junk[i]);
		freeReplyObject(rep);
	}
	rep = sync_cmd(rc, "PUBLISH vspc:{rob}:events %s",
	    "C\tgood\tn2\t7\tvm\tconnected\t5\tfuture-field");
	freeReplyObject(rep);
	i = wait_event(seen, mark, STORE_EV_CONSOLE, "good", WAIT_MS);
	assert_true((int)i >= 0);
	assert_int_equal(seen->ev[i].con.epoch, 7);
	/* The junk before it produced nothing. */
	assert_int_equal(i, mark);
	assert_int_equal(seen->n, mark + 1);

	/* Keys of the wrong type: errors, not crashes. */
	rep = sync_cmd(rc, "SET vspc:{rob}:console:str x");
	freeReplyObject(rep);
	get(s, "str", &r);
	assert_int_equal(r.st, STORE_UNAVAILABLE);
	claim(s, "str", "n1", 0, &r);
	assert_int_equal(r.st, STORE_UNAVAILABLE);
	memset(&r, 0, sizeof r);
	store_console_list(s, consoles_cb, &r);
	assert_true(run_until(&r.done, WAIT_MS));
	assert_int_equal(r.st, STORE_UNAVAILABLE);
	hex_sha256(tok, sizeof tok, hex);
	rep = sync_cmd(rc, "SET vspc:{rob}:vmotion:%s x", hex);
	freeReplyObject(rep);
	take(s, tok, sizeof tok, &r);
	assert_int_equal(r.st, STORE_UNAVAILABLE);
	/* A record without a token is no match. */
	rep = sync_cmd(rc, "DEL vspc:{rob}:vmotion:%s", hex);
	freeReplyObject(rep);
	rep = sync_cmd(rc, "HSET vspc:{rob}:vmotion:%s console c", hex);
	freeReplyObject(rep);
	take(s, tok, sizeof tok, &r);
	assert_int_equal(r.st, STORE_NOTFOUND);
	/* Still connected and working. */
	assert_int_equal(s->connected, 1);
	claim(s, "fine", "n1", 0, &r);
	assert_int_equal(r.st, STORE_OK);

	free(r.cons);
	redisFree(rc);
	store_free(s);
	free(seen);
}

static void
test_nodes_events(void **state)
{
	struct store		*a, *b;
	struct store_node	 node;
	struct store_console	 rec;
	struct seen		*sa;
	struct result		 r;
	const char		*extra[] = { "cluster.heartbeat=1",
				    "cluster.node_timeout=3", NULL };
	char			 url[64];
	uint64_t		 e;
	int			 i;

	sa = calloc(1, sizeof *sa);
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", shared_port);
	a = make_store(url, "n1", "ev", extra);
	sa->s = a;
	store_set_events(a, event_cb, sa);
	b = make_store(url, "n2", "ev", extra);
	assert_true(wait_event(sa, 0, STORE_EV_RESYNC, NULL, WAIT_MS) >= 0);
	assert_true(run_until(&b->connected, WAIT_MS));

	/* b registers: a sees it come up, with its record. */
	memset(&node, 0, sizeof node);
	snprintf(node.id, sizeof node.id, "n2");
	snprintf(node.peer, sizeof node.peer, "10.0.0.2:13373");
	snprintf(node.version, sizeof node.version, "1.2.3");
	snprintf(node.state, sizeof node.state, "active");
	node.started = 1700000000;
	node.heartbeat = 1700000100;
	node.consoles = 7;
	node.clients = 3;
	store_node_update(b, &node);
	i = wait_event(sa, 0, STORE_EV_NODE_UP, "n2", WAIT_MS);
	assert_true(i >= 0);
	assert_string_equal(sa->ev[i].node.peer, "10.0.0.2:13373");
	assert_int_equal(sa->ev[i].node.consoles, 7);

	memset(&r, 0, sizeof r);
	store_node_list(a, nodes_cb, &r);
	assert_true(run_until(&r.done, WAIT_MS));
	assert_int_equal(r.st, STORE_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.nodes[0].id, "n2");
	assert_string_equal(r.nodes[0].version, "1.2.3");
	assert_string_equal(r.nodes[0].state, "active");
	assert_int_equal(r.nodes[0].started, 1700000000);
	assert_int_equal(r.nodes[0].heartbeat, 1700000100);
	assert_int_equal(r.nodes[0].clients, 3);

	/* Console changes by b reach a, record and all. */
	claim(b, "k1", "n2", 0, &r);
	e = r.epoch;
	i = wait_event(sa, 0, STORE_EV_CONSOLE, "k1", WAIT_MS);
	assert_true(i >= 0);
	assert_string_equal(sa->ev[i].con.owner, "n2");
	assert_int_equal(sa->ev[i].con.epoch, e);

	memset(&rec, 0, sizeof rec);
	snprintf(rec.key, sizeof rec.key, "k1");
	/* Every character the message format escapes. */
	snprintf(rec.name, sizeof rec.name, "a\tb\\t\nc\r\\");
	snprintf(rec.state, sizeof rec.state, "connected");
	rec.epoch = e;
	rec.since = 99;
	store_console_update(b, &rec);
	i = wait_event(sa, (u_int)i + 1, STORE_EV_CONSOLE, "k1", WAIT_MS);
	assert_true(i >= 0);
	assert_string_equal(sa->ev[i].con.name, "a\tb\\t\nc\r\\");
	assert_string_equal(sa->ev[i].con.state, "connected");
	assert_string_equal(sa->ev[i].con.owner, "n2");
	assert_int_equal(sa->ev[i].con.since, 99);

	store_console_release(b, "k1", e);
	i = wait_event(sa, 0, STORE_EV_CONSOLE_GONE, "k1", WAIT_MS);
	assert_true(i >= 0);
	assert_int_equal(sa->ev[i].con.epoch, e);

	/* b stops refreshing: its record expires and a sees it go. */
	store_free(b);
	i = wait_event(sa, 0, STORE_EV_NODE_DOWN, "n2", WAIT_MS);
	assert_true(i >= 0);
	assert_string_equal(sa->ev[i].node.peer, "10.0.0.2:13373");

	store_free(a);
	free(sa);
}

static void
test_disconnect(void **state)
{
	struct store	*s;
	struct seen	*seen;
	struct result	 r;
	pid_t		 pid;
	char		 url[64];
	int		 port, i;
	u_int		 mark;

	seen = calloc(1, sizeof *seen);
	port = free_port();
	pid = start_redis(port, NULL);
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
	s = make_store(url, "n1", "dis", NULL);
	seen->s = s;
	store_set_events(s, event_cb, seen);
	i = wait_event(seen, 0, STORE_EV_CONNECTED, NULL, WAIT_MS);
	assert_true(i >= 0);
	assert_true(seen->ev[i].connected);
	assert_true(seen_find(seen, (u_int)i, STORE_EV_RESYNC, NULL) > i ||
	    wait_event(seen, (u_int)i, STORE_EV_RESYNC, NULL, WAIT_MS) > i);
	claim(s, "k1", "n1", 0, &r);
	assert_int_equal(r.st, STORE_OK);

	/* Redis dies: the store says so, and answers at once. */
	mark = seen->n;
	stop_server(pid);
	assert_true(wait_event(seen, mark, STORE_EV_DISCONNECTED, NULL,
	    WAIT_MS) >= 0);
	assert_int_equal(s->connected, 0);
	memset(&r, 0, sizeof r);
	store_console_claim(s, "k1", "n1", 0, claim_cb, &r);
	assert_true(r.done);
	assert_int_equal(r.st, STORE_UNAVAILABLE);
	memset(&r, 0, sizeof r);
	store_console_list(s, consoles_cb, &r);
	assert_true(r.done);
	assert_int_equal(r.st, STORE_UNAVAILABLE);

	/* Back: connected, then a resync. */
	mark = seen->n;
	pid = start_redis(port, NULL);
	i = wait_event(seen, mark, STORE_EV_CONNECTED, NULL, WAIT_MS);
	assert_true(i >= 0);
	assert_true(wait_event(seen, (u_int)i, STORE_EV_RESYNC, NULL,
	    WAIT_MS) > i);
	assert_int_equal(s->connected, 1);
	claim(s, "k1", "n1", 0, &r);
	assert_int_equal(r.st, STORE_OK);

	/*
	 * Redis stops answering (SIGSTOP): the command fails after
	 * redis_timeout, the connection is dropped and opened again once
	 * Redis answers.
	 */
	mark = seen->n;
	assert_int_equal(kill(pid, SIGSTOP), 0);
	memset(&r, 0, sizeof r);
	store_console_claim(s, "k2", "n1", 0, claim_cb, &r);
	assert_true(run_until(&r.done, WAIT_MS));
	assert_int_equal(r.st, STORE_UNAVAILABLE);
	assert_true(wait_event(seen, mark, STORE_EV_DISCONNECTED, NULL,
	    WAIT_MS) >= 0);
	mark = seen->n;
	assert_int_equal(kill(pid, SIGCONT), 0);
	i = wait_event(seen, mark, STORE_EV_CONNECTED, NULL, WAIT_MS);
	assert_true(i >= 0);
	assert_true(wait_event(seen, (u_int)i, STORE_EV_RESYNC, NULL,
	    WAIT_MS) > i);
	claim(s, "k2", "n1", 0, &r);
	assert_int_equal(r.st, STORE_OK);

	/* Losing only the subscription resyncs too. */
	{
		redisContext	*rc;
		redisReply	*rep;

		rc = sync_connect(port, NULL);
		assert_non_null(rc);
		mark = seen->n;
		rep = sync_cmd(rc, "CLIENT KILL TYPE pubsub");
		freeReplyObject(rep);
		redisFree(rc);
		assert_true(wait_event(seen, mark, STORE_EV_RESYNC, NULL,
		    WAIT_MS) >= 0);
		assert_int_equal(seen_find(seen, mark,
		    STORE_EV_DISCONNECTED, NULL), -1);
	}

	store_free(s);
	stop_server(pid);
	free(seen);
}

static void
test_auth(void **state)
{
	struct store	*s;
	struct seen	*seen, *seen2;
	struct result	 r;
	redisContext	*rc;
	redisReply	*rep;
	pid_t		 pid;
	char		 url[128];
	int		 port;

	seen = calloc(1, sizeof *seen);
	seen2 = calloc(1, sizeof *seen2);
	port = free_port();
	pid = start_redis(port, "--requirepass", "pw0", NULL);
	rc = sync_connect(port, "pw0");
	assert_non_null(rc);
	rep = sync_cmd(rc, "ACL SETUSER vspc on >s3:cr@t ~vspc:* "
	    "&vspc:* +@all");
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);

	/* requirepass, and database 3. */
	snprintf(url, sizeof url, "redis://:pw0@127.0.0.1:%d/3", port);
	s = make_store(url, "n1", "auth", NULL);
	seen->s = s;
	store_set_events(s, event_cb, seen);
	assert_true(wait_event(seen, 0, STORE_EV_RESYNC, NULL, WAIT_MS) >= 0);
	claim(s, "k1", "n1", 0, &r);
	assert_int_equal(r.st, STORE_OK);
	rep = sync_cmd(rc, "SELECT 3");
	freeReplyObject(rep);
	assert_int_equal(sync_int(rc, "EXISTS vspc:{auth}:console:k1"), 1);
	rep = sync_cmd(rc, "SELECT 0");
	freeReplyObject(rep);
	assert_int_equal(sync_int(rc, "EXISTS vspc:{auth}:console:k1"), 0);
	store_free(s);

	/* An ACL user (escaped in the URL), events included. */
	snprintf(url, sizeof url, "redis://vspc:s3%%3Acr%%40t@127.0.0.1:%d",
	    port);
	s = make_store(url, "n2", "auth", NULL);
	seen2->s = s;
	store_set_events(s, event_cb, seen2);
	assert_true(wait_event(seen2, 0, STORE_EV_RESYNC, NULL, WAIT_MS) >=
	    0);
	claim(s, "k2", "n2", 0, &r);
	assert_int_equal(r.st, STORE_OK);
	assert_true(wait_event(seen2, 0, STORE_EV_CONSOLE, "k2", WAIT_MS) >=
	    0);
	store_free(s);

	/* A wrong password never connects, and commands fail. */
	snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", port);
	s = make_store(url, "n3", "auth", NULL);
	run_for(1000);
	assert_int_equal(s->connected, 0);
	memset(&r, 0, sizeof r);
	store_console_claim(s, "k3", "n3", 0, claim_cb, &r);
	assert_true(r.done);
	assert_int_equal(r.st, STORE_UNAVAILABLE);
	store_free(s);

	redisFree(rc);
	stop_server(pid);
	free(seen);
	free(seen2);
}

/* Is the replica known to the Sentinel, with its link to the master up? */
static int
sentinel_has_replica(int port)
{
	redisContext	*rc;
	redisReply	*r, *e;
	size_t		 i;
	int		 ok = 0;

	if ((rc = sync_connect(port, "spw")) == NULL)
		return (0);
	r = redisCommand(rc, "SENTINEL REPLICAS vspc");
	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY) {
		e = r->element[0];
		for (i = 0; i + 1 < e->elements; i += 2) {
			if (strcmp(e->element[i]->str, "master-link-status")
			    == 0 && strcmp(e->element[i + 1]->str, "ok") == 0)
				ok = 1;
		}
	}
	if (r != NULL)
		freeReplyObject(r);
	redisFree(rc);
	return (ok);
}

/* Is the server on port a replica with its link to the master up? */
static int
replica_connected(int port)
{
	redisContext	*rc;
	redisReply	*r;
	int		 ok = 0;

	if ((rc = sync_connect(port, NULL)) == NULL)
		return (0);
	r = redisCommand(rc, "ROLE");
	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 4 &&
	    r->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[0]->str, "slave") == 0 &&
	    r->element[3]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[3]->str, "connected") == 0)
		ok = 1;
	if (r != NULL)
		freeReplyObject(r);
	redisFree(rc);
	return (ok);
}

static void
test_sentinel(void **state)
{
	struct store	*s;
	struct seen	*seen;
	struct result	 r;
	redisContext	*rc;
	redisReply	*rep;
	pid_t		 master, replica;
	char		 conf[PATH_MAX], buf[64], sentinels[128];
	const char	*extra[5];
	const char	*rwords[3];
	FILE		*fp;
	uint64_t	 end;
	int		 mport, rport, sport, bad, i;
	u_int		 mark;

	seen = calloc(1, sizeof *seen);
	mport = free_port();
	master = start_redis(mport, NULL);
	rport = free_port();
	snprintf(buf, sizeof buf, "127.0.0.1 %d", mport);
	rwords[0] = "--replicaof";
	rwords[1] = buf;
	rwords[2] = NULL;
	replica = start_server(rport, NULL, rwords);

	sport = free_port();
	snprintf(conf, sizeof conf, "%s/sentinel-%d.conf", tmpdir, sport);
	fp = fopen(conf, "w");
	assert_non_null(fp);
	fprintf(fp, "sentinel monitor vspc 127.0.0.1 %d 1\n"
	    "sentinel down-after-milliseconds vspc 1000\n"
	    "sentinel failover-timeout vspc 10000\n"
	    "requirepass spw\n", mport);
	fclose(fp);
	{
		const char	*swords[] = { "--sentinel", NULL };

		start_server(sport, conf, swords);
	}
	/* A Sentinel nobody runs comes first: the store tries the next. */
	bad = free_port();
	snprintf(sentinels, sizeof sentinels,
	    "cluster.sentinels=127.0.0.1:%d, 127.0.0.1:%d", bad, sport);
	extra[0] = sentinels;
	extra[1] = "cluster.master_name=vspc";
	extra[2] = "cluster.sentinel_password=spw";
	extra[3] = NULL;
	s = make_store(NULL, "n1", "sen", extra);
	seen->s = s;
	store_set_events(s, event_cb, seen);
	assert_true(wait_event(seen, 0, STORE_EV_RESYNC, NULL, WAIT_MS) >= 0);
	claim(s, "k1", "n1", 0, &r);
	assert_int_equal(r.st, STORE_OK);

	end = now_ms() + 15000;
	while (!sentinel_has_replica(sport) && now_ms() < end)
		run_for(100);
	assert_true(sentinel_has_replica(sport));

	/* A failover: the store follows to the new master. */
	mark = seen->n;
	rc = sync_connect(sport, "spw");
	assert_non_null(rc);
	rep = sync_cmd(rc, "SENTINEL FAILOVER vspc");
	if (rep->type == REDIS_REPLY_ERROR)
		fail_msg("SENTINEL FAILOVER: %s", rep->str);
	freeReplyObject(rep);
	redisFree(rc);
	i = wait_event(seen, mark, STORE_EV_CONNECTED, NULL, 15000);
	assert_true(i >= 0);
	assert_true(wait_event(seen, (u_int)i, STORE_EV_RESYNC, NULL,
	    WAIT_MS) > i);
	/* Writes go to the former replica now. */
	claim(s, "k2", "n1", 0, &r);
	assert_int_equal(r.st, STORE_OK);
	rc = sync_connect(rport, NULL);
	assert_non_null(rc);
	assert_int_equal(sync_int(rc, "EXISTS vspc:{sen}:console:k2"), 1);
	assert_int_equal(sync_int(rc, "EXISTS vspc:{sen}:console:k1"), 1);
	redisFree(rc);

	/*
	 * The new master dies: the Sentinel promotes the old one (now its
	 * replica) and the store follows again.
	 */
	end = now_ms() + 20000;
	while (!replica_connected(mport) && now_ms() < end)
		run_for(100);
	assert_true(replica_connected(mport));
	mark = seen->n;
	stop_server(replica);
	assert_true(wait_event(seen, mark, STORE_EV_DISCONNECTED, NULL,
	    WAIT_MS) >= 0);
	i = wait_event(seen, mark, STORE_EV_CONNECTED, NULL, 20000);
	assert_true(i >= 0);
	assert_true(wait_event(seen, (u_int)i, STORE_EV_RESYNC, NULL,
	    WAIT_MS) > i);
	claim(s, "k3", "n1", 0, &r);
	assert_int_equal(r.st, STORE_OK);
	rc = sync_connect(mport, NULL);
	assert_non_null(rc);
	assert_int_equal(sync_int(rc, "EXISTS vspc:{sen}:console:k3"), 1);
	redisFree(rc);

	store_free(s);
	stop_server(replica);
	stop_server(master);
	free(seen);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_claim),
		cmocka_unit_test(test_update_release),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_robust),
		cmocka_unit_test(test_nodes_events),
		cmocka_unit_test(test_disconnect),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_sentinel),
	};
	struct stat	 sb;
	int		 rv;

	redis_server = getenv("REDIS_SERVER");
	if (redis_server == NULL || *redis_server == '\0') {
		printf("SKIP: no redis-server (configure did not find one; "
		    "set REDIS_SERVER)\n");
		return (77);
	}
	if (stat(redis_server, &sb) != 0 || !(sb.st_mode & S_IXUSR)) {
		printf("SKIP: %s is not an executable\n", redis_server);
		return (77);
	}
	snprintf(tmpdir, sizeof tmpdir, "%s/test_store_redis.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return (99);
	}
	atexit(cleanup);
	signal(SIGPIPE, SIG_IGN);
	srandom((u_int)getpid() ^ (u_int)time(NULL));
	log_init(1, 0);
	if (getenv("TEST_VERBOSE") != NULL)
		log_setverbose(2);
	if ((base = event_base_new()) == NULL)
		return (99);
	rv = cmocka_run_group_tests(tests, group_setup, NULL);
	event_base_free(base);
	return (rv);
}
