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
 * Unit tests for node/peer*.c: framing (exact bytes, every split point,
 * limits, garbage), the secret file, and real links in one process.
 *
 * Links run on socketpairs (peer_attach_fd) with each end given its own
 * identity by peer_configure() before it is attached.  Some tests drive
 * one end by hand ("raw" side): the test packs Hello and HelloAuth
 * itself, with the HMAC computed here from the documented input, so the
 * wire format is checked independently of peer.c.  The cluster hooks are
 * stubs that record their calls.  Waits are bounded loops on the event
 * base with a deadline; nothing asserts on how long something took.
 *
 * Hot upgrade: a fake node/handoff.c keeps the record and dup()s the
 * descriptors; the "old process" is peer_shutdown() (which only closes
 * its descriptors, so the connection stays up through the dups) and the
 * "new process" is the same module configured afresh and restored.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
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
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "proto/handoff_cluster.pb-c.h"

#define SECRET_A	"correct horse battery staple"
#define SECRET_B	"another secret, also long enough"

struct event_base	*server_base;
struct config		*server_conf;

static char		 tmpdir[256];
static char		*secret_a;
static char		*secret_b;

/* What the cluster hooks saw. */
static u_int		 n_up;
static u_int		 n_down;
static u_int		 n_msg;
static char		 msg_node[64];
static int		 msg_case;
static char		 msg_text[256];

/* The fake hand-over: descriptors dup()ed, the last record kept. */
#define HO_FDS		16
static int		 ho_fds[HO_FDS];
static int		 ho_nfds;
static uint8_t		*ho_rec;
static size_t		 ho_len;
static int		 ho_type;
static int		 ho_restoring;

/* Stub of node/handoff.c: pass a descriptor. */
int
handoff_add_fd(struct handoff *h, int fd)
{
	assert_true(ho_nfds < HO_FDS);
	ho_fds[ho_nfds] = dup(fd);
	assert_true(ho_fds[ho_nfds] != -1);
	return (ho_nfds++);
}

/* Stub of node/handoff.c: keep the record. */
void
handoff_add(struct handoff *h, enum handoff_rec type, const uint8_t *buf,
    size_t len)
{
	free(ho_rec);
	ho_rec = xmalloc(len + 1);
	memcpy(ho_rec, buf, len);
	ho_len = len;
	ho_type = type;
}

/* Stub of node/handoff.c: take a descriptor once. */
int
handoff_take_fd(struct handoff *h, int i)
{
	int	fd;

	if (i < 0 || i >= ho_nfds || ho_fds[i] == -1)
		return (-1);
	fd = ho_fds[i];
	ho_fds[i] = -1;
	return (fd);
}

/* Stub of node/handoff.c: copy a buffer's bytes into a record field. */
void
handoff_evbuffer_bytes(struct evbuffer *b, ProtobufCBinaryData *out)
{
	size_t	len = b != NULL ? evbuffer_get_length(b) : 0;

	out->len = len;
	out->data = xmalloc(len == 0 ? 1 : len);
	if (len != 0 && evbuffer_copyout(b, out->data, len) != (ssize_t)len)
		fail_msg("%s: evbuffer_copyout failed", __func__);
}

/* Stub of node/cluster.c: peer_handoff_module names it. */
int
cluster_enabled(void)
{
	return (1);
}

/* Stub of node/handoff.c. */
int
handoff_restoring(void)
{
	return (ho_restoring);
}

/* Stand-in for server.c's clock. */
uint64_t
server_monotime_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/* Stub of the cluster.c hook: count. */
void
cluster_peer_up(struct peer *p)
{
	assert_non_null(peer_node(p));
	n_up++;
}

/* Stub of the cluster.c hook: count; the peer must be gone from lookup. */
void
cluster_peer_down(struct peer *p)
{
	assert_true(peer_find(peer_node(p)) != p);
	n_down++;
}

/* Stub of the cluster.c hook: keep what a test checks. */
void
cluster_peer_message(struct peer *p, struct Vspc__Envelope *env)
{
	n_msg++;
	snprintf(msg_node, sizeof msg_node, "%s", peer_node(p));
	msg_case = env->msg_case;
	if (env->msg_case == VSPC__ENVELOPE__MSG_NOTICE)
		snprintf(msg_text, sizeof msg_text, "%s", env->notice->text);
}

static char *
write_file(const char *name, const char *text)
{
	char	*path;
	FILE	*f;

	xasprintf(&path, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return (path);
}

static int
setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/test_peer.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return (-1);
	secret_a = write_file("a.secret", SECRET_A "\n");
	secret_b = write_file("b.secret", SECRET_B "\n");
	server_base = event_base_new();
	return (server_base == NULL ? -1 : 0);
}

static int
teardown(void **state)
{
	char	cmd[512];

	event_base_free(server_base);
	free(secret_a);
	free(secret_b);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return (system(cmd) == 0 ? 0 : -1);
}

/* Per link test: fresh counters, no links left behind. */
static int
link_setup(void **state)
{
	n_up = n_down = n_msg = 0;
	msg_case = 0;
	msg_node[0] = msg_text[0] = '\0';
	peer_set_test_timers(0, 0);
	return (0);
}

static int
link_teardown(void **state)
{
	peer_shutdown();
	peer_set_test_timers(0, 0);
	return (0);
}

static struct config *
conf_new(const char *node, const char *cluster, const char *secret)
{
	struct config	*c;

	c = xcalloc(1, sizeof *c);
	c->node_id = xstrdup(node);
	c->cluster_name = xstrdup(cluster);
	c->cluster_secret_file = secret != NULL ? xstrdup(secret) : NULL;
	c->cluster_peer_listen = xstrdup("0.0.0.0:13373");
	c->cluster_peer_advertise = xstrdup("");
	return (c);
}

static void
conf_free(struct config *c)
{
	free(c->node_id);
	free(c->cluster_name);
	free(c->cluster_secret_file);
	free(c->cluster_peer_listen);
	free(c->cluster_peer_advertise);
	free(c);
}

/* Make the identity new links use. */
static void
identity(const char *node, const char *cluster, const char *secret,
    size_t frame_max)
{
	struct config	*c;
	char		*err = NULL;

	c = conf_new(node, cluster, secret);
	c->cluster_peer_frame_max = frame_max;
	if (peer_configure(c, &err) != 0)
		fail_msg("peer_configure: %s", err);
	conf_free(c);
}

static void
tick_cb(evutil_socket_t fd, short events, void *arg)
{
}

/* Run the loop until cond() or the deadline; return cond(). */
static int
run_until(int (*cond)(void), u_int ms)
{
	struct event	*tick;
	struct timeval	 tv = { 0, 5000 };
	uint64_t	 end;
	int		 ok;

	tick = event_new(server_base, -1, EV_PERSIST, tick_cb, NULL);
	evtimer_add(tick, &tv);
	end = server_monotime_us() + (uint64_t)ms * 1000;
	while (!(ok = cond()) && server_monotime_us() < end)
		event_base_loop(server_base, EVLOOP_ONCE);
	event_free(tick);
	return (ok);
}

static int
never(void)
{
	return (0);
}

static int
no_links(void)
{
	return (peer_link_count() == 0);
}

static int
one_link(void)
{
	return (peer_link_count() == 1);
}

static int
two_up(void)
{
	return (n_up == 2);
}

static int
got_msg(void)
{
	return (n_msg != 0);
}

/* Frame an envelope into buf; return its length. */
static size_t
frame(const Vspc__Envelope *env, u_char *buf, size_t size)
{
	struct evbuffer	*b = evbuffer_new();
	size_t		 len;

	peer_frame_add(b, env);
	len = evbuffer_get_length(b);
	assert_true(len <= size);
	evbuffer_remove(b, buf, len);
	evbuffer_free(b);
	return (len);
}

static void
notice_env(Vspc__Envelope *env, Vspc__Notice *n, const char *text)
{
	vspc__envelope__init(env);
	vspc__notice__init(n);
	n->channel = 7;
	n->text = (char *)text;
	env->msg_case = VSPC__ENVELOPE__MSG_NOTICE;
	env->notice = n;
}

/* A Ping frame is exactly these bytes. */
static void
test_frame_bytes(void **state)
{
	static const u_char	 want[] = {
		0, 0, 0, 4, 0x1a, 0x02, 0x08, 0x01
	};
	static const u_char	 empty[] = { 0, 0, 0, 0 };
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__Ping		 ping = VSPC__PING__INIT;
	u_char			 buf[64];

	ping.nonce = 1;
	env.msg_case = VSPC__ENVELOPE__MSG_PING;
	env.ping = &ping;
	assert_int_equal(frame(&env, buf, sizeof buf), sizeof want);
	assert_memory_equal(buf, want, sizeof want);

	vspc__envelope__init(&env);
	assert_int_equal(frame(&env, buf, sizeof buf), sizeof empty);
	assert_memory_equal(buf, empty, sizeof empty);
}

/* A frame split at any byte comes out whole, once, when complete. */
static void
test_frame_split(void **state)
{
	Vspc__Envelope	 env, *out;
	Vspc__Notice	 n;
	struct evbuffer	*in;
	const char	*err;
	u_char		 buf[256];
	size_t		 len, k;

	notice_env(&env, &n, "VM disconnected");
	len = frame(&env, buf, sizeof buf);
	for (k = 0; k <= len; k++) {
		in = evbuffer_new();
		evbuffer_add(in, buf, k);
		if (k < len) {
			assert_int_equal(peer_frame_next(in, 0, &out, &err),
			    0);
			assert_null(out);
			evbuffer_add(in, buf + k, len - k);
		}
		assert_int_equal(peer_frame_next(in, 0, &out, &err), 1);
		assert_int_equal(out->msg_case, VSPC__ENVELOPE__MSG_NOTICE);
		assert_int_equal(out->notice->channel, 7);
		assert_string_equal(out->notice->text, "VM disconnected");
		vspc__envelope__free_unpacked(out, NULL);
		assert_int_equal(evbuffer_get_length(in), 0);
		assert_int_equal(peer_frame_next(in, 0, &out, &err), 0);
		evbuffer_free(in);
	}
}

/* Two frames in one read are two envelopes, in order. */
static void
test_frame_two(void **state)
{
	Vspc__Envelope	 env, *out;
	Vspc__Notice	 n;
	struct evbuffer	*in = evbuffer_new();
	const char	*err;
	u_char		 buf[256];
	size_t		 len;

	notice_env(&env, &n, "first");
	len = frame(&env, buf, sizeof buf);
	evbuffer_add(in, buf, len);
	notice_env(&env, &n, "second");
	len = frame(&env, buf, sizeof buf);
	evbuffer_add(in, buf, len);
	evbuffer_add(in, "\0\0", 2);	/* Start of a third. */

	assert_int_equal(peer_frame_next(in, 0, &out, &err), 1);
	assert_string_equal(out->notice->text, "first");
	vspc__envelope__free_unpacked(out, NULL);
	assert_int_equal(peer_frame_next(in, 0, &out, &err), 1);
	assert_string_equal(out->notice->text, "second");
	vspc__envelope__free_unpacked(out, NULL);
	assert_int_equal(peer_frame_next(in, 0, &out, &err), 0);
	assert_int_equal(evbuffer_get_length(in), 2);
	evbuffer_free(in);
}

/* The limit: a frame of exactly max passes, one byte more does not. */
static void
test_frame_limit(void **state)
{
	Vspc__Envelope	 env, *out;
	Vspc__Notice	 n;
	struct evbuffer	*in;
	const char	*err;
	u_char		 buf[256];
	size_t		 len;

	notice_env(&env, &n, "a message of some length");
	len = frame(&env, buf, sizeof buf) - 4;

	in = evbuffer_new();
	evbuffer_add(in, buf, len + 4);
	assert_int_equal(peer_frame_next(in, len, &out, &err), 1);
	vspc__envelope__free_unpacked(out, NULL);
	evbuffer_free(in);

	/* Refused on the header alone, before the body arrives. */
	in = evbuffer_new();
	evbuffer_add(in, buf, 4);
	assert_int_equal(peer_frame_next(in, len - 1, &out, &err), -1);
	assert_null(out);
	assert_non_null(strstr(err, "exceeds the limit of"));
	evbuffer_free(in);

	/* 0 means the default limit. */
	in = evbuffer_new();
	evbuffer_add(in, "\x00\x80\x00\x01", 4);	/* 8 MiB + 1 */
	assert_int_equal(peer_frame_next(in, 0, &out, &err), -1);
	assert_string_equal(err,
	    "frame of 8388609 bytes exceeds the limit of 8388608");
	evbuffer_free(in);
}

/* Bytes that are not an Envelope are an error; empty is fine. */
static void
test_frame_garbage(void **state)
{
	Vspc__Envelope	*out;
	struct evbuffer	*in;
	const char	*err;

	in = evbuffer_new();
	evbuffer_add(in, "\x00\x00\x00\x03\xff\xff\xff", 7);
	assert_int_equal(peer_frame_next(in, 0, &out, &err), -1);
	assert_string_equal(err, "undecodable frame");
	assert_null(out);
	evbuffer_free(in);

	/* A Notice (field 15) whose length runs past the frame. */
	in = evbuffer_new();
	evbuffer_add(in, "\x00\x00\x00\x02\x7a\x05", 6);
	assert_int_equal(peer_frame_next(in, 0, &out, &err), -1);
	evbuffer_free(in);

	in = evbuffer_new();
	evbuffer_add(in, "\x00\x00\x00\x00", 4);
	assert_int_equal(peer_frame_next(in, 0, &out, &err), 1);
	assert_int_equal(out->msg_case, VSPC__ENVELOPE__MSG__NOT_SET);
	vspc__envelope__free_unpacked(out, NULL);
	evbuffer_free(in);
}

/* The secret file: required, readable, 16 bytes after the newline. */
static void
test_secret_file(void **state)
{
	struct config	*c;
	char		*err;

	c = conf_new("a", "c1", NULL);
	err = NULL;
	assert_int_equal(peer_configure(c, &err), -1);
	assert_true(strncmp(err, "[cluster] secret_file: ", 23) == 0);
	free(err);

	free(c->cluster_secret_file);
	xasprintf(&c->cluster_secret_file, "%s/missing", tmpdir);
	err = NULL;
	assert_int_equal(peer_configure(c, &err), -1);
	assert_true(strncmp(err, "[cluster] secret_file: ", 23) == 0);
	assert_non_null(strstr(err, "No such file"));
	free(err);

	/* 15 bytes and a newline: too short. */
	free(c->cluster_secret_file);
	c->cluster_secret_file = write_file("short", "0123456789abcde\n");
	err = NULL;
	assert_int_equal(peer_configure(c, &err), -1);
	assert_non_null(strstr(err, "shorter than 16 bytes"));
	free(err);

	/* 16 bytes are enough. */
	free(c->cluster_secret_file);
	c->cluster_secret_file = write_file("ok", "0123456789abcdef\n");
	err = NULL;
	assert_int_equal(peer_configure(c, &err), 0);
	conf_free(c);
}

/* Two ends of a socketpair, each with its own identity. */
static void
pair(const char *a_cluster, const char *a_secret, const char *b_cluster,
    const char *b_secret, int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	identity("a", a_cluster, a_secret, 0);
	peer_attach_fd(sv[0], 1, "b");
	identity("b", b_cluster, b_secret, 0);
	peer_attach_fd(sv[1], 0, NULL);
}

/* A good handshake both ways; then a message reaches the other node. */
static void
test_link_ok(void **state)
{
	Vspc__Envelope	 env;
	Vspc__Notice	 n;
	struct peer	*pb, *pa;
	int		 sv[2];

	pair("c1", secret_a, "c1", secret_a, sv);
	assert_true(run_until(two_up, 5000));
	assert_int_equal(peer_count(), 2);
	pb = peer_find("b");	/* a's link to b */
	pa = peer_find("a");	/* b's link to a */
	assert_non_null(pb);
	assert_non_null(pa);
	assert_string_equal(peer_node(pb), "b");
	/* The advertised address: a wildcard listener gives loopback. */
	assert_string_equal(peer_addr(pb), "127.0.0.1:13373");

	peer_set_data(pb, &n);
	assert_ptr_equal(peer_get_data(pb), &n);

	notice_env(&env, &n, "hello from a");
	assert_int_equal(peer_send(pb, &env), 0);
	assert_true(run_until(got_msg, 5000));
	assert_int_equal(n_msg, 1);
	assert_string_equal(msg_node, "a");
	assert_int_equal(msg_case, VSPC__ENVELOPE__MSG_NOTICE);
	assert_string_equal(msg_text, "hello from a");

	/* And the other way. */
	n_msg = 0;
	notice_env(&env, &n, "hello from b");
	assert_int_equal(peer_send(pa, &env), 0);
	assert_true(run_until(got_msg, 5000));
	assert_string_equal(msg_node, "b");
	assert_string_equal(msg_text, "hello from b");

	peer_shutdown();
	assert_int_equal(n_down, 2);
	assert_int_equal(peer_count(), 0);
	assert_null(peer_find("a"));
}

/* A secret file with or without a trailing newline is the same secret. */
static void
test_link_newline(void **state)
{
	char	*nonl;
	int	 sv[2];

	nonl = write_file("nonl.secret", SECRET_A);
	pair("c1", secret_a, "c1", nonl, sv);
	assert_true(run_until(two_up, 5000));
	free(nonl);
}

/* Different secrets: both ends close, nobody is announced. */
static void
test_link_wrong_secret(void **state)
{
	int	sv[2];

	pair("c1", secret_a, "c1", secret_b, sv);
	assert_true(run_until(no_links, 5000));
	assert_int_equal(n_up, 0);
	assert_int_equal(n_down, 0);
	assert_non_null(strstr(peer_last_close(),
	    "authentication failed (wrong cluster secret?)"));
}

/* Different cluster names: refused before any authentication. */
static void
test_link_wrong_cluster(void **state)
{
	int	sv[2];

	pair("c1", secret_a, "c2", secret_a, sv);
	assert_true(run_until(no_links, 5000));
	assert_int_equal(n_up, 0);
	assert_non_null(strstr(peer_last_close(), "is in cluster"));
}

/* An outbound link that reaches another node than the one dialled. */
static void
test_link_wrong_node(void **state)
{
	int	sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	identity("a", "c1", secret_a, 0);
	peer_attach_fd(sv[0], 1, "c");
	identity("b", "c1", secret_a, 0);
	peer_attach_fd(sv[1], 0, NULL);
	assert_true(run_until(no_links, 5000));
	assert_int_equal(n_up, 0);
}

/* Our own node ID at the other end (a loop to ourselves). */
static void
test_link_self(void **state)
{
	int	sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	identity("a", "c1", secret_a, 0);
	peer_attach_fd(sv[0], 0, NULL);
	peer_attach_fd(sv[1], 0, NULL);
	assert_true(run_until(no_links, 5000));
	assert_int_equal(n_up, 0);
	assert_non_null(strstr(peer_last_close(), "ourselves"));
}

/*
 * The raw side: the test speaks the protocol itself on fd.
 */
struct raw {
	int		 fd;
	struct evbuffer	*in;
	int		 eof;
	char		 node[64];
	u_char		 challenge[32];
	char		 their_node[64];
	u_char		 their_challenge[32];
};

static void
raw_init(struct raw *r, int fd, const char *node)
{
	memset(r, 0, sizeof *r);
	r->fd = fd;
	r->in = evbuffer_new();
	snprintf(r->node, sizeof r->node, "%s", node);
	memset(r->challenge, 0x5a, sizeof r->challenge);
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
}

static void
raw_free(struct raw *r)
{
	evbuffer_free(r->in);
	close(r->fd);
}

static void
raw_write(struct raw *r, const void *buf, size_t len)
{
	const u_char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = write(r->fd, p, len);
		if (n == -1 && errno == EAGAIN) {
			event_base_loop(server_base, EVLOOP_NONBLOCK);
			continue;
		}
		assert_true(n > 0);
		p += n;
		len -= n;
	}
}

static void
raw_send(struct raw *r, const Vspc__Envelope *env)
{
	struct evbuffer	*b = evbuffer_new();
	size_t		 len;
	u_char		*p;

	peer_frame_add(b, env);
	len = evbuffer_get_length(b);
	p = evbuffer_pullup(b, len);
	raw_write(r, p, len);
	evbuffer_free(b);
}

/* The next envelope from peer.c, or NULL at EOF or after 5 s. */
static Vspc__Envelope *
raw_recv(struct raw *r)
{
	Vspc__Envelope	*env;
	const char	*err;
	uint64_t	 end = server_monotime_us() + 5000000;
	int		 n;

	for (;;) {
		n = peer_frame_next(r->in, 0, &env, &err);
		assert_int_not_equal(n, -1);
		if (n == 1)
			return (env);
		if (r->eof || server_monotime_us() > end)
			return (NULL);
		n = evbuffer_read(r->in, r->fd, 65536);
		if (n == 0 || (n == -1 && errno != EAGAIN))
			r->eof = 1;
		if (n <= 0)
			run_until(never, 5);
	}
}

/* Read until peer.c closes its end (or 5 s). */
static int
raw_wait_eof(struct raw *r)
{
	Vspc__Envelope	*env;

	while ((env = raw_recv(r)) != NULL)
		vspc__envelope__free_unpacked(env, NULL);
	return (r->eof);
}

static void
raw_hello(struct raw *r, const char *cluster, uint32_t protocol)
{
	Vspc__Envelope	env = VSPC__ENVELOPE__INIT;
	Vspc__Hello	h = VSPC__HELLO__INIT;

	h.node_id = r->node;
	h.cluster = (char *)cluster;
	h.protocol = protocol;
	h.version = "test";
	h.challenge.data = r->challenge;
	h.challenge.len = sizeof r->challenge;
	h.peer_address = "127.0.0.1:20001";
	env.msg_case = VSPC__ENVELOPE__MSG_HELLO;
	env.hello = &h;
	raw_send(r, &env);
}

/* Take peer.c's Hello and check it. */
static void
raw_get_hello(struct raw *r, const char *node, const char *cluster)
{
	Vspc__Envelope	*env;

	env = raw_recv(r);
	assert_non_null(env);
	assert_int_equal(env->msg_case, VSPC__ENVELOPE__MSG_HELLO);
	assert_string_equal(env->hello->node_id, node);
	assert_string_equal(env->hello->cluster, cluster);
	assert_int_equal(env->hello->protocol, PEER_PROTOCOL);
	assert_string_equal(env->hello->version, VSPCD_VERSION);
	assert_int_equal(env->hello->challenge.len, 32);
	assert_string_equal(env->hello->peer_address, "127.0.0.1:13373");
	snprintf(r->their_node, sizeof r->their_node, "%s",
	    env->hello->node_id);
	memcpy(r->their_challenge, env->hello->challenge.data, 32);
	vspc__envelope__free_unpacked(env, NULL);
}

/* HMAC-SHA256(secret, challenge || answering || 0 || challenging || 0). */
static void
mac(const char *secret, const u_char *challenge, const char *answering,
    const char *challenging, u_char *out)
{
	u_char	buf[256];
	size_t	len = 0;
	u_int	outlen = 32;

	memcpy(buf, challenge, 32);
	len = 32;
	memcpy(buf + len, answering, strlen(answering) + 1);
	len += strlen(answering) + 1;
	memcpy(buf + len, challenging, strlen(challenging) + 1);
	len += strlen(challenging) + 1;
	assert_non_null(HMAC(EVP_sha256(), secret, strlen(secret), buf, len,
	    out, &outlen));
}

/* Full handshake from the raw side, checking peer.c's answer. */
static void
raw_handshake(struct raw *r, const char *secret)
{
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT, *got;
	Vspc__HelloAuth	 auth = VSPC__HELLO_AUTH__INIT;
	u_char		 m[32];

	raw_hello(r, "c1", PEER_PROTOCOL);
	raw_get_hello(r, "a", "c1");
	mac(secret, r->their_challenge, r->node, r->their_node, m);
	auth.response.data = m;
	auth.response.len = sizeof m;
	env.msg_case = VSPC__ENVELOPE__MSG_AUTH;
	env.auth = &auth;
	raw_send(r, &env);

	got = raw_recv(r);
	assert_non_null(got);
	assert_int_equal(got->msg_case, VSPC__ENVELOPE__MSG_AUTH);
	mac(secret, r->challenge, r->their_node, r->node, m);
	assert_int_equal(got->auth->response.len, 32);
	assert_memory_equal(got->auth->response.data, m, 32);
	vspc__envelope__free_unpacked(got, NULL);
}

static int
one_up(void)
{
	return (n_up == 1);
}

/* One peer.c end ("a", inbound) and a raw end ("r"). */
static void
raw_pair(struct raw *r, size_t frame_max)
{
	int	sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	identity("a", "c1", secret_a, frame_max);
	peer_attach_fd(sv[0], 0, NULL);
	raw_init(r, sv[1], "r");
}

/* The exact handshake on the wire; then the link is announced. */
static void
test_raw_handshake(void **state)
{
	struct raw	r;

	raw_pair(&r, 0);
	raw_handshake(&r, SECRET_A);
	assert_true(run_until(one_up, 5000));
	assert_non_null(peer_find("r"));
	assert_string_equal(peer_addr(peer_find("r")), "127.0.0.1:20001");
	raw_free(&r);
}

/* A protocol version we do not speak. */
static void
test_raw_protocol(void **state)
{
	struct raw	r;

	raw_pair(&r, 0);
	raw_hello(&r, "c1", PEER_PROTOCOL + 1);
	assert_true(raw_wait_eof(&r));
	assert_int_equal(n_up, 0);
	assert_non_null(strstr(peer_last_close(), "peer protocol 2"));
	/* Both software versions, for the operator of a mixed cluster. */
	assert_non_null(strstr(peer_last_close(), "(vspcd test)"));
	assert_non_null(strstr(peer_last_close(), "(vspcd " VSPCD_VERSION
	    ")"));
	raw_free(&r);

	raw_pair(&r, 0);
	raw_hello(&r, "c1", 0);
	assert_true(raw_wait_eof(&r));
	assert_int_equal(n_up, 0);
	raw_free(&r);
}

/* Anything but Hello/HelloAuth before READY closes the link. */
static void
test_raw_early_message(void **state)
{
	struct raw	r;
	Vspc__Envelope	env;
	Vspc__Notice	n;

	raw_pair(&r, 0);
	notice_env(&env, &n, "too early");
	raw_send(&r, &env);
	assert_true(raw_wait_eof(&r));
	assert_non_null(strstr(peer_last_close(),
	    "notice before the handshake completed"));
	raw_free(&r);

	/* After a good Hello, but before HelloAuth. */
	raw_pair(&r, 0);
	raw_hello(&r, "c1", PEER_PROTOCOL);
	raw_send(&r, &env);
	assert_true(raw_wait_eof(&r));
	assert_int_equal(n_up, 0);
	assert_int_equal(n_msg, 0);
	raw_free(&r);
}

/* A frame over the limit after READY: closed, and the node goes down. */
static void
test_raw_oversized(void **state)
{
	struct raw	r;

	raw_pair(&r, 1024);
	raw_handshake(&r, SECRET_A);
	assert_true(run_until(one_up, 5000));
	raw_write(&r, "\x00\x00\x07\xd0", 4);	/* 2000 bytes */
	assert_true(raw_wait_eof(&r));
	assert_int_equal(n_down, 1);
	assert_null(peer_find("r"));
	assert_string_equal(peer_last_close(),
	    "frame of 2000 bytes exceeds the limit of 1024");
	raw_free(&r);
}

/* Garbage after READY: closed. */
static void
test_raw_undecodable(void **state)
{
	struct raw	r;

	raw_pair(&r, 0);
	raw_handshake(&r, SECRET_A);
	assert_true(run_until(one_up, 5000));
	raw_write(&r, "\x00\x00\x00\x02\xff\xff", 6);
	assert_true(raw_wait_eof(&r));
	assert_int_equal(n_down, 1);
	assert_string_equal(peer_last_close(), "undecodable frame");
	raw_free(&r);
}

/* An empty envelope (or a message newer than us) is skipped. */
static void
test_raw_empty(void **state)
{
	struct raw	r;
	Vspc__Envelope	env;
	Vspc__Notice	n;

	raw_pair(&r, 0);
	raw_handshake(&r, SECRET_A);
	assert_true(run_until(one_up, 5000));
	raw_write(&r, "\x00\x00\x00\x00", 4);
	/* Field 99, unknown to us: a varint. */
	raw_write(&r, "\x00\x00\x00\x03\x98\x06\x01", 7);
	notice_env(&env, &n, "after");
	raw_send(&r, &env);
	assert_true(run_until(got_msg, 5000));
	assert_int_equal(n_msg, 1);
	assert_string_equal(msg_text, "after");
	assert_int_equal(peer_count(), 1);
	raw_free(&r);
}

/* Pings are answered; a node that goes silent is closed. */
static void
test_raw_ping(void **state)
{
	struct raw	 r;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT, *got;
	Vspc__Ping	 ping = VSPC__PING__INIT;
	int		 saw_ping = 0, saw_pong = 0, i;

	peer_set_test_timers(50, 2000);
	raw_pair(&r, 0);
	raw_handshake(&r, SECRET_A);
	assert_true(run_until(one_up, 5000));

	ping.nonce = 77;
	env.msg_case = VSPC__ENVELOPE__MSG_PING;
	env.ping = &ping;
	raw_send(&r, &env);
	for (i = 0; i < 100 && !(saw_ping && saw_pong); i++) {
		got = raw_recv(&r);
		assert_non_null(got);
		if (got->msg_case == VSPC__ENVELOPE__MSG_PING)
			saw_ping = 1;
		else if (got->msg_case == VSPC__ENVELOPE__MSG_PONG) {
			assert_int_equal(got->pong->nonce, 77);
			saw_pong = 1;
		} else
			fail_msg("unexpected %d", got->msg_case);
		vspc__envelope__free_unpacked(got, NULL);
	}
	assert_true(saw_ping);
	assert_true(saw_pong);
	assert_int_equal(n_msg, 0);

	/* Now say nothing: three silent intervals close the link. */
	assert_true(raw_wait_eof(&r));
	assert_int_equal(n_down, 1);
	assert_non_null(strstr(peer_last_close(), "no traffic for"));
	raw_free(&r);
}

/* Two nodes pinging each other stay up past the silence limit. */
static void
test_link_ping_keeps_up(void **state)
{
	int	sv[2];

	peer_set_test_timers(100, 2000);
	pair("c1", secret_a, "c1", secret_a, sv);
	assert_true(run_until(two_up, 5000));
	run_until(never, 900);	/* Three times the silence limit. */
	assert_int_equal(peer_count(), 2);
	assert_int_equal(n_down, 0);
}

/* A handshake that never finishes times out. */
static void
test_raw_handshake_timeout(void **state)
{
	struct raw	r;

	peer_set_test_timers(0, 100);
	raw_pair(&r, 0);
	assert_true(raw_wait_eof(&r));
	assert_non_null(strstr(peer_last_close(), "handshake not done"));
	raw_free(&r);
}

static int
dedup_done(void)
{
	return (n_up >= 2 && peer_link_count() == 2);
}

/*
 * Both nodes dial at once: two links.  Both ends keep the one dialled
 * by "a" (the lower ID); the node is announced once and never goes down.
 */
static void
test_link_duplicate(void **state)
{
	Vspc__Envelope	env;
	Vspc__Notice	n;
	int		sv1[2], sv2[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv1), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2), 0);
	identity("a", "c1", secret_a, 0);
	peer_attach_fd(sv1[0], 1, "b");		/* a dials b */
	peer_attach_fd(sv2[0], 0, NULL);
	identity("b", "c1", secret_a, 0);
	peer_attach_fd(sv1[1], 0, NULL);
	peer_attach_fd(sv2[1], 1, "a");		/* b dials a */
	assert_true(run_until(dedup_done, 5000));
	run_until(never, 50);
	assert_int_equal(peer_link_count(), 2);
	assert_int_equal(peer_count(), 2);
	assert_int_equal(n_up, 2);
	assert_int_equal(n_down, 0);
	assert_non_null(strstr(peer_last_close(), "dialled by a"));

	/* Both ends kept the same link: messages still flow. */
	notice_env(&env, &n, "still here");
	assert_int_equal(peer_send(peer_find("a"), &env), 0);
	assert_true(run_until(got_msg, 5000));
	assert_string_equal(msg_node, "b");
	assert_string_equal(msg_text, "still here");
}

static int
want_up(void)
{
	return (peer_count() == 2);
}

static int
refused_c(void)
{
	return (strstr(peer_last_close(), "where c was expected") != NULL);
}

/* peer_init listens; peer_want dials it over TCP on 127.0.0.1. */
static void
test_want(void **state)
{
	struct config	*c;
	char		*err = NULL, listen[64];
	int		 port;

	srandom(getpid() ^ time(NULL));
	port = 20000 + random() % 10000;
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	c = conf_new("a", "c1", secret_a);
	free(c->cluster_peer_listen);
	c->cluster_peer_listen = xstrdup(listen);
	if (peer_init(c, &err) != 0) {
		conf_free(c);
		skip();	/* The port is taken: not what is tested. */
	}
	conf_free(c);
	identity("b", "c1", secret_a, 0);
	peer_want("a", listen);
	assert_true(run_until(want_up, 5000));
	assert_string_equal(peer_addr(peer_find("b")), "127.0.0.1:13373");
	assert_string_equal(peer_addr(peer_find("a")), listen);

	/* Dialling the same address as "c" finds "a" there: refused. */
	peer_want("c", listen);
	assert_true(run_until(refused_c, 5000));
	assert_int_equal(n_up, 2);
	peer_unwant("c");
	assert_int_equal(peer_count(), 2);

	/* No longer wanted: the outbound link goes, both ends see it. */
	peer_unwant("a");
	assert_true(run_until(no_links, 5000));
	assert_int_equal(n_down, 2);
}

/* Forget the fake hand-over's record and close what was not taken. */
static void
ho_reset(void)
{
	int	i;

	for (i = 0; i < ho_nfds; i++) {
		if (ho_fds[i] != -1)
			close(ho_fds[i]);
		ho_fds[i] = -1;
	}
	ho_nfds = 0;
	free(ho_rec);
	ho_rec = NULL;
	ho_len = 0;
	ho_type = 0;
	ho_restoring = 0;
}

/*
 * Save the module, let the old one go (closing only its own descriptors)
 * and restore a fresh one configured as node "a".
 */
static void
ho_upgrade(u_int links, u_int fds)
{
	char	*err = NULL;
	char	 why[128];

	assert_int_equal(peer_handoff_busy(why, sizeof why), 0);
	peer_handoff_save(NULL);
	assert_non_null(ho_rec);
	assert_int_equal(ho_type, HANDOFF_REC_PEER);
	assert_int_equal(ho_nfds, fds);

	peer_shutdown();
	ho_restoring = 1;
	identity("a", "c1", secret_a, 0);
	if (peer_handoff_restore(NULL, ho_rec, ho_len, &err) != 0)
		fail_msg("peer_handoff_restore: %s", err);
	assert_int_equal(peer_link_count(), links);
	/* Nothing runs before the commit: no event was added. */
	run_until(never, 20);
	ho_restoring = 0;
	peer_handoff_resume();
}

/* A Notice whose text is "seq N" and padding, to fill the socket. */
static void
seq_env(Vspc__Envelope *env, Vspc__Notice *n, char *text, size_t size,
    u_int seq)
{
	int	len;

	len = snprintf(text, size, "seq %06u ", seq);
	memset(text + len, 'x', size - len - 1);
	text[size - 1] = '\0';
	notice_env(env, n, text);
	n->channel = seq;
}

/*
 * A READY link survives a hand-over byte for byte: half a frame read by
 * the old process is completed by the other node and dispatched by the
 * new one; frames the old process could not write are all delivered,
 * once and in order; the peer stays up without a second
 * cluster_peer_up() or any cluster_peer_down() seen by the new module.
 */
static void
test_handoff_link(void **state)
{
	struct raw	 r;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT, *got;
	Vspc__Notice	 n;
	Vspc__Ping	 ping = VSPC__PING__INIT;
	struct peer	*p;
	char		 text[4096];
	u_char		 buf[256];
	size_t		 len, half;
	u_int		 sent, seen, pongs, downs;

	raw_pair(&r, 0);
	raw_handshake(&r, SECRET_A);
	assert_true(run_until(one_up, 5000));
	p = peer_find("r");
	assert_non_null(p);

	notice_env(&env, &n, "after the upgrade");
	len = frame(&env, buf, sizeof buf);
	half = len / 2;
	raw_write(&r, buf, half);
	run_until(never, 50);
	assert_int_equal(n_msg, 0);

	/* Queue until the socket takes no more, then a few frames more. */
	for (sent = 0; peer_queued(p) == 0 || sent < 8; sent++) {
		assert_true(sent < 10000);
		seq_env(&env, &n, text, sizeof text, sent);
		assert_int_equal(peer_send(p, &env), 0);
	}
	for (; sent % 8 != 0; sent++) {
		seq_env(&env, &n, text, sizeof text, sent);
		assert_int_equal(peer_send(p, &env), 0);
	}
	assert_true(peer_queued(p) > 0);

	ho_upgrade(1, 1);
	downs = n_down;
	assert_int_equal(n_up, 1);
	assert_int_equal(peer_count(), 1);
	assert_non_null(p = peer_find("r"));
	assert_string_equal(peer_addr(p), "127.0.0.1:20001");

	/* The other half of the frame the old process had begun. */
	raw_write(&r, buf + half, len - half);
	assert_true(run_until(got_msg, 5000));
	assert_int_equal(msg_case, VSPC__ENVELOPE__MSG_NOTICE);
	assert_string_equal(msg_text, "after the upgrade");
	assert_string_equal(msg_node, "r");

	/* Every frame queued before, once, in order, then a Pong. */
	ping.nonce = 4242;
	vspc__envelope__init(&env);
	env.msg_case = VSPC__ENVELOPE__MSG_PING;
	env.ping = &ping;
	raw_send(&r, &env);
	seen = pongs = 0;
	while (pongs == 0 && (got = raw_recv(&r)) != NULL) {
		if (got->msg_case == VSPC__ENVELOPE__MSG_NOTICE) {
			seq_env(&env, &n, text, sizeof text, seen);
			assert_int_equal(got->notice->channel, seen);
			assert_string_equal(got->notice->text, text);
			seen++;
		} else if (got->msg_case == VSPC__ENVELOPE__MSG_PONG &&
		    got->pong->nonce == 4242)
			pongs++;
		vspc__envelope__free_unpacked(got, NULL);
	}
	assert_int_equal(pongs, 1);
	assert_int_equal(seen, sent);
	assert_int_equal(n_up, 1);
	assert_int_equal(n_down, downs);
	assert_int_equal(peer_count(), 1);
	raw_free(&r);
	assert_true(run_until(no_links, 5000));
	ho_reset();
}

/*
 * A link in the middle of its handshake is handed over too: our
 * challenge goes with it, so the other node's HelloAuth, arriving at the
 * new process, still checks out and the link comes up there.
 */
static void
test_handoff_handshake(void **state)
{
	struct raw	 r;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT, *got;
	Vspc__HelloAuth	 auth = VSPC__HELLO_AUTH__INIT;
	u_char		 m[32];

	raw_pair(&r, 0);
	raw_hello(&r, "c1", PEER_PROTOCOL);
	raw_get_hello(&r, "a", "c1");
	got = raw_recv(&r);
	assert_non_null(got);
	assert_int_equal(got->msg_case, VSPC__ENVELOPE__MSG_AUTH);
	vspc__envelope__free_unpacked(got, NULL);
	assert_int_equal(n_up, 0);

	ho_upgrade(1, 1);
	mac(SECRET_A, r.their_challenge, r.node, r.their_node, m);
	auth.response.data = m;
	auth.response.len = sizeof m;
	env.msg_case = VSPC__ENVELOPE__MSG_AUTH;
	env.auth = &auth;
	raw_send(&r, &env);
	assert_true(run_until(one_up, 5000));
	assert_non_null(peer_find("r"));
	raw_free(&r);
	assert_true(run_until(no_links, 5000));
	ho_reset();
}

/* A handed-over listener accepts again after the resume, not before. */
static void
test_handoff_listener(void **state)
{
	struct sockaddr_in	 sin;
	socklen_t		 slen = sizeof sin;
	char			 text[64];
	int			 s, c, one = 1;

	identity("a", "c1", secret_a, 0);
	s = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s != -1);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(s, 8), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &slen), 0);
	snprintf(text, sizeof text, "127.0.0.1:%u", ntohs(sin.sin_port));
	peer_adopt_listener(s, text);
	/* The same listener passed twice is served once. */
	peer_adopt_listener(dup(s), text);

	ho_upgrade(0, 1);
	c = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_true(run_until(one_link, 5000));
	close(c);
	assert_true(run_until(no_links, 5000));
	ho_reset();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_bytes),
		cmocka_unit_test(test_frame_split),
		cmocka_unit_test(test_frame_two),
		cmocka_unit_test(test_frame_limit),
		cmocka_unit_test(test_frame_garbage),
		cmocka_unit_test_setup_teardown(test_secret_file, link_setup,
		    link_teardown),
		cmocka_unit_test_setup_teardown(test_link_ok, link_setup,
		    link_teardown),
		cmocka_unit_test_setup_teardown(test_link_newline, link_setup,
		    link_teardown),
		cmocka_unit_test_setup_teardown(test_link_wrong_secret,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_link_wrong_cluster,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_link_wrong_node,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_link_self, link_setup,
		    link_teardown),
		cmocka_unit_test_setup_teardown(test_raw_handshake,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_raw_protocol, link_setup,
		    link_teardown),
		cmocka_unit_test_setup_teardown(test_raw_early_message,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_raw_oversized,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_raw_undecodable,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_raw_empty, link_setup,
		    link_teardown),
		cmocka_unit_test_setup_teardown(test_raw_ping, link_setup,
		    link_teardown),
		cmocka_unit_test_setup_teardown(test_link_ping_keeps_up,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_raw_handshake_timeout,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_link_duplicate,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_want, link_setup,
		    link_teardown),
		cmocka_unit_test_setup_teardown(test_handoff_link,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_handoff_handshake,
		    link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_handoff_listener,
		    link_setup, link_teardown),
	};

	log_init(1, 0);
	signal(SIGPIPE, SIG_IGN);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
