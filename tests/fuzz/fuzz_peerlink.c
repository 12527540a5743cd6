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
 * Fuzz target for a live peer link (node/peer.c): what another node, or
 * anyone who can reach [cluster] peer_listen, sends down a link, framed
 * and decoded, through the handshake state machine (Hello, HelloAuth,
 * the HMAC on the cluster secret, messages before the handshake) and,
 * once the link is up, the dispatch of every message.  Input layout:
 *
 *	byte 0		bit 0: the harness first completes a correct
 *			handshake as node "fuzz-b" (so that what follows
 *			reaches a READY link); bit 1: the link is one the
 *			node dialled (outbound) instead of accepted
 *	rest		records: a length byte, then that many bytes
 *			written to the link; the loop runs after each
 *
 * cluster.c's hooks are stubs that check what peer.c promises them:
 * cluster_peer_message() only for a peer that is up, with a message set,
 * cluster_peer_up() and cluster_peer_down() once each per peer.
 */

#include <sys/mman.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "fuzz.h"

#define FUZZ_MAX	65536
#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof ((a)[0]))
#endif
#define FUZZ_SECRET	"fuzzing secret of the cluster"
#define FUZZ_NODE	"fuzz-a"
#define FUZZ_OTHER	"fuzz-b"

/* peer.c's references. */
struct event_base	*server_base;
struct config		*server_conf;

static struct config	*fuzz_conf;
static u_int		 fuzz_up, fuzz_down;
static struct peer	*fuzz_peers[64];
static u_int		 fuzz_npeers;

/* Microseconds on the monotonic clock. */
uint64_t
server_monotime_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static int
fuzz_peer_is_up(struct peer *p)
{
	u_int	i;

	for (i = 0; i < fuzz_npeers; i++) {
		if (fuzz_peers[i] == p)
			return (1);
	}
	return (0);
}

/* A peer is up: it must not be already. */
void
cluster_peer_up(struct peer *p)
{
	CHECK(p != NULL && !fuzz_peer_is_up(p));
	CHECK(fuzz_npeers < nitems(fuzz_peers));
	CHECK(strcmp(peer_node(p), FUZZ_NODE) != 0);
	fuzz_peers[fuzz_npeers++] = p;
	fuzz_up++;
}

/* A peer is down: it must have been up. */
void
cluster_peer_down(struct peer *p)
{
	u_int	i;

	CHECK(fuzz_peer_is_up(p));
	for (i = 0; i < fuzz_npeers; i++) {
		if (fuzz_peers[i] == p)
			fuzz_peers[i] = fuzz_peers[--fuzz_npeers];
	}
	fuzz_down++;
}

/* A message for cluster.c: only from a peer that is up. */
void
cluster_peer_message(struct peer *p, struct Vspc__Envelope *env)
{
	CHECK(fuzz_peer_is_up(p));
	CHECK(env != NULL && env->msg_case != VSPC__ENVELOPE__MSG__NOT_SET);
	CHECK(env->msg_case != VSPC__ENVELOPE__MSG_HELLO &&
	    env->msg_case != VSPC__ENVELOPE__MSG_AUTH &&
	    env->msg_case != VSPC__ENVELOPE__MSG_PING &&
	    env->msg_case != VSPC__ENVELOPE__MSG_PONG);
}

/* Unused: nothing is handed over here. */
int
handoff_add_fd(struct handoff *h, int fd)
{
	abort();
}

/* Unused: nothing is handed over here. */
void
handoff_add(struct handoff *h, enum handoff_rec rec, const uint8_t *p,
    size_t len)
{
	abort();
}

/* Unused: nothing is handed over here. */
int
handoff_take_fd(struct handoff *h, int i)
{
	abort();
}

/* Not started by a hand-over. */
int
handoff_restoring(void)
{
	return (0);
}

static void
fuzz_init(void)
{
	char	 path[] = "/tmp/fuzz_peerlink.XXXXXX", *err, *opt;
	int	 fd;

	log_init(1, 0);
	if (getenv("FUZZ_VERBOSE") != NULL)
		log_setverbose(1);
	signal(SIGPIPE, SIG_IGN);
	server_base = event_base_new();
	CHECK(server_base != NULL);
	fd = mkstemp(path);
	CHECK(fd != -1);
	CHECK(write(fd, FUZZ_SECRET "\n", sizeof FUZZ_SECRET) ==
	    sizeof FUZZ_SECRET);
	close(fd);
	fuzz_conf = server_conf = config_default();
	xasprintf(&opt, "cluster.secret_file=%s", path);
	CHECK(config_set(fuzz_conf, opt, &err) == 0);
	free(opt);
	CHECK(config_set(fuzz_conf, "node.id=" FUZZ_NODE, &err) == 0);
	CHECK(config_set(fuzz_conf, "cluster.peer_frame_max=64k", &err) == 0);
	CHECK(config_set(fuzz_conf, "cluster.peer_advertise=127.0.0.1:23373",
	    &err) == 0);
	CHECK(peer_configure(fuzz_conf, &err) == 0);
	peer_shutdown();
	unlink(path);
	/* The secret is read again for each input: keep it in a memfd. */
	fd = memfd_create("fuzz_secret", 0);
	CHECK(fd != -1);
	CHECK(write(fd, FUZZ_SECRET "\n", sizeof FUZZ_SECRET) ==
	    sizeof FUZZ_SECRET);
	xasprintf(&opt, "cluster.secret_file=/proc/self/fd/%d", fd);
	CHECK(config_set(fuzz_conf, opt, &err) == 0);
	free(opt);
}

/* Run the loop until nothing moves; collect what the node sent. */
static void
fuzz_settle(int fd, struct evbuffer *from)
{
	u_char	buf[16384];
	ssize_t	n;
	int	i, moved;

	for (i = 0; i < 64; i++) {
		event_base_loop(server_base, EVLOOP_NONBLOCK);
		moved = 0;
		while ((n = read(fd, buf, sizeof buf)) > 0) {
			evbuffer_add(from, buf, n);
			moved = 1;
		}
		if (!moved)
			break;
	}
}

static void
fuzz_write(int fd, const void *buf, size_t len)
{
	const u_char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return;	/* Closed, or not reading: drop the rest. */
		p += n;
		len -= n;
	}
}

static void
fuzz_send(int fd, Vspc__Envelope *env)
{
	struct evbuffer	*b;
	size_t		 len;

	b = evbuffer_new();
	CHECK(b != NULL);
	len = peer_frame_add(b, env);
	fuzz_write(fd, evbuffer_pullup(b, -1), len);
	evbuffer_free(b);
}

/* Be node fuzz-b: Hello, then answer the node's challenge. */
static void
fuzz_handshake(int fd, struct evbuffer *from)
{
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT, *got;
	Vspc__Hello	 hello = VSPC__HELLO__INIT;
	Vspc__HelloAuth	 auth = VSPC__HELLO_AUTH__INIT;
	u_char		 challenge[32], mac[32], *msg;
	const char	*err;
	u_int		 maclen = sizeof mac;
	size_t		 len;

	memset(challenge, 0x5a, sizeof challenge);
	hello.node_id = (char *)FUZZ_OTHER;
	hello.cluster = (char *)"default";
	hello.protocol = PEER_PROTOCOL;
	hello.version = (char *)"fuzz";
	hello.challenge.data = challenge;
	hello.challenge.len = sizeof challenge;
	hello.peer_address = (char *)"127.0.0.1:23374";
	env.msg_case = VSPC__ENVELOPE__MSG_HELLO;
	env.hello = &hello;
	fuzz_send(fd, &env);
	fuzz_settle(fd, from);

	/* The node's Hello comes first, then its HelloAuth. */
	if (peer_frame_next(from, PEER_FRAME_MAX_DEFAULT, &got, &err) != 1)
		return;
	CHECK(got->msg_case == VSPC__ENVELOPE__MSG_HELLO);
	CHECK(got->hello->challenge.len == 32);
	len = 32 + sizeof FUZZ_OTHER + sizeof FUZZ_NODE;
	msg = xmalloc(len);
	memcpy(msg, got->hello->challenge.data, 32);
	memcpy(msg + 32, FUZZ_OTHER, sizeof FUZZ_OTHER);
	memcpy(msg + 32 + sizeof FUZZ_OTHER, FUZZ_NODE, sizeof FUZZ_NODE);
	CHECK(HMAC(EVP_sha256(), FUZZ_SECRET, sizeof FUZZ_SECRET - 1, msg, len,
	    mac, &maclen) != NULL);
	free(msg);
	vspc__envelope__free_unpacked(got, NULL);

	auth.response.data = mac;
	auth.response.len = sizeof mac;
	memset(&env, 0, sizeof env);
	vspc__envelope__init(&env);
	env.msg_case = VSPC__ENVELOPE__MSG_AUTH;
	env.auth = &auth;
	fuzz_send(fd, &env);
	fuzz_settle(fd, from);
	CHECK(peer_find(FUZZ_OTHER) != NULL);
}

/* One input: see the layout at the top of this file. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	 ready;
	struct evbuffer	*from;
	char		*err;
	size_t		 n;
	int		 sv[2];

	if (size < 1 || size > FUZZ_MAX)
		return (0);
	if (!ready) {
		fuzz_init();
		ready = 1;
	}
	CHECK(peer_configure(fuzz_conf, &err) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
	from = evbuffer_new();
	CHECK(from != NULL);
	peer_attach_fd(sv[1], (data[0] & 2) != 0,
	    (data[0] & 2) ? FUZZ_OTHER : NULL);
	fuzz_settle(sv[0], from);
	if (data[0] & 1)
		fuzz_handshake(sv[0], from);
	data++;
	size--;
	while (size > 0) {
		n = data[0];
		data++;
		size--;
		if (n > size)
			n = size;
		fuzz_write(sv[0], data, n);
		fuzz_settle(sv[0], from);
		evbuffer_drain(from, evbuffer_get_length(from));
		data += n;
		size -= n;
	}
	shutdown(sv[0], SHUT_RDWR);
	fuzz_settle(sv[0], from);
	close(sv[0]);
	peer_shutdown();
	CHECK(fuzz_npeers == 0 && fuzz_up == fuzz_down);
	CHECK(peer_link_count() == 0);
	evbuffer_free(from);
	return (0);
}
