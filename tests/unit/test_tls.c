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
 * Unit tests for node/tls.c: the SHA-1 thumbprint vSphere wants, a
 * handshake followed by bytes relayed both ways between the TLS side and
 * the plain descriptor handed to the dispatcher, end of stream passed on
 * after pending bytes, a new certificate taken on reload while a broken
 * one leaves the old in use, TLS 1.1 refused, a handshake timeout, and
 * the peer's end (close_notify, FIN without it) passed on after the last
 * bytes, counted by listener and cause.
 * Certificates: tests/data/tls (self-signed P-256, for tests only).
 */

#include <sys/socket.h>

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#include "vspcd.h"

#define PRINT1	"CB:D2:CD:DD:5F:DA:12:83:9E:60:B4:53:55:D2:86:60:EC:CD:62:79"
#define PRINT2	"05:D7:93:1B:D4:8C:6E:F4:21:27:F6:BC:E2:0C:C8:70:73:D8:97:5E"

struct event_base	*server_base;

static char	 cert1[600], key1[600], cert2[600], key2[600], dir[512];
static char	 plain_name[64];
static int	 plain_fd2 = -1;
static int	 plain_fd = -1;
static u_int	 plain_kind;
static int	 client_done;
static struct evbuffer *client_in;

static void
dispatch(int fd, const struct sockaddr *sa, u_int kind, const char *name)
{
	(void)sa;
	if (plain_fd != -1) {
		plain_fd2 = fd;
		return;
	}
	plain_fd = fd;
	plain_kind = kind;
	snprintf(plain_name, sizeof plain_name, "%s", name);
}

static void
client_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	evbuffer_add_buffer(client_in, bufferevent_get_input(bev));
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)arg;
	if (what & (BEV_EVENT_EOF|BEV_EVENT_ERROR))
		client_done = 1;
	if (what & BEV_EVENT_CONNECTED)
		client_done = 2;
}

static void
run_until(int *flag, int value)
{
	u_int	i;

	for (i = 0; i < 2000 && *flag != value; i++)
		event_base_loop(server_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void
run_a_while(void)
{
	u_int	i;

	for (i = 0; i < 200; i++)
		event_base_loop(server_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* A TLS client on one end of a socketpair, the node on the other. */
static struct bufferevent *
connect_client_kind(SSL_CTX *cctx, int *serverfd, u_int kind)
{
	struct sockaddr_in	 sin;
	struct bufferevent	*bev;
	int			 sp[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sp), 0);
	*serverfd = sp[0];
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0x7f000001);
	tls_accept(sp[0], TLS_SERVER, (struct sockaddr *)&sin, sizeof sin,
	    kind, "test", 1, dispatch);
	bev = bufferevent_openssl_socket_new(server_base, sp[1],
	    SSL_new(cctx), BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, client_read, NULL, client_event, NULL);
	bufferevent_enable(bev, EV_READ);
	return (bev);
}

static struct bufferevent *
connect_client(SSL_CTX *cctx, int *serverfd)
{
	return (connect_client_kind(cctx, serverfd, 7));
}

static void
test_thumbprint(void **state)
{
	char	 print[64], *err = NULL;

	(void)state;
	assert_int_equal(tls_thumbprint_file(cert1, print, sizeof print,
	    &err), 0);
	assert_string_equal(print, PRINT1);
	assert_int_equal(tls_thumbprint_file("/nonexistent.pem", print,
	    sizeof print, &err), -1);
	assert_string_equal(err, "/nonexistent.pem: No such file or "
	    "directory");
	free(err);
	err = NULL;
	assert_int_equal(tls_thumbprint_file(key1, print, sizeof print,
	    &err), -1);
	assert_non_null(strstr(err, "no certificate in"));
	free(err);
}

static void
test_relay(void **state)
{
	SSL_CTX			*cctx;
	struct bufferevent	*bev;
	char			 buf[64 * 1024], *err = NULL;
	ssize_t			 n;
	size_t			 got = 0, i;
	u_char			*p;
	int			 sfd;

	(void)state;
	assert_int_equal(tls_configure(TLS_SERVER, cert1, key1, NULL, &err), 0);
	assert_string_equal(tls_thumbprint(TLS_SERVER), PRINT1);
	cctx = SSL_CTX_new(TLS_client_method());
	client_in = evbuffer_new();
	client_done = 0;
	plain_fd = -1;
	bev = connect_client(cctx, &sfd);
	run_until(&client_done, 2);
	assert_int_equal(client_done, 2);
	for (i = 0; i < 200 && plain_fd == -1; i++)
		event_base_loop(server_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_true(plain_fd >= 0);
	assert_int_equal(plain_kind, 7);
	assert_int_equal(tls_count(), 1);

	/* Peer to plain side, byte-exact. */
	bufferevent_write(bev, "WILL AUTH \xff\xfb\x25", 13);
	run_a_while();
	n = read(plain_fd, buf, sizeof buf);
	assert_int_equal(n, 13);
	assert_memory_equal(buf, "WILL AUTH \xff\xfb\x25", 13);

	/* Plain side to the peer: more than the relay's high mark. */
	for (i = 0; i < sizeof buf; i++)
		buf[i] = (char)(i * 7);
	for (i = 0; i < 8; i++) {
		size_t off = 0;

		while (off < sizeof buf) {
			n = write(plain_fd, buf + off, sizeof buf - off);
			if (n > 0)
				off += n;
			run_a_while();
		}
	}
	for (i = 0; i < 2000 && got < 8 * sizeof buf; i++) {
		event_base_loop(server_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		got = evbuffer_get_length(client_in);
	}
	assert_int_equal(got, 8 * sizeof buf);
	p = evbuffer_pullup(client_in, -1);
	for (i = 0; i < got; i++) {
		if (p[i] != (u_char)((i % sizeof buf) * 7))
			fail_msg("byte %zu: %02x", i, p[i]);
	}

	/* The plain side closes: the peer gets everything, then EOF. */
	assert_int_equal(write(plain_fd, "bye", 3), 3);
	close(plain_fd);
	run_until(&client_done, 1);
	assert_int_equal(client_done, 1);
	assert_int_equal(evbuffer_get_length(client_in), 8 * sizeof buf + 3);
	assert_memory_equal(evbuffer_pullup(client_in, -1) + 8 * sizeof buf,
	    "bye", 3);
	run_a_while();
	assert_int_equal(tls_count(), 0);
	bufferevent_free(bev);
	evbuffer_free(client_in);
	SSL_CTX_free(cctx);
}

static void
test_reload(void **state)
{
	char	*err = NULL;

	(void)state;
	assert_int_equal(tls_configure(TLS_SERVER, cert1, key1, NULL, &err), 0);
	assert_string_equal(tls_thumbprint(TLS_SERVER), PRINT1);
	/* A key that does not match: the old certificate stays. */
	assert_int_equal(tls_configure(TLS_SERVER, cert2, key1, NULL, &err), -1);
	assert_non_null(strstr(err, key1));
	assert_non_null(strstr(err, "key values mismatch"));
	free(err);
	assert_string_equal(tls_thumbprint(TLS_SERVER), PRINT1);
	assert_int_equal(tls_configure(TLS_SERVER, cert2, key2, NULL, &err), 0);
	assert_string_equal(tls_thumbprint(TLS_SERVER), PRINT2);
}

static void
test_old_protocol(void **state)
{
	SSL_CTX			*cctx;
	struct bufferevent	*bev;
	char			*err = NULL;
	uint64_t		 failed = tls_stats.handshake_failed;
	int			 sfd;

	(void)state;
	assert_int_equal(tls_configure(TLS_SERVER, cert1, key1, NULL, &err), 0);
	cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(cctx, TLS1_1_VERSION);
	SSL_CTX_set_security_level(cctx, 0);
	client_in = evbuffer_new();
	client_done = 0;
	plain_fd = -1;
	bev = connect_client(cctx, &sfd);
	run_until(&client_done, 1);
	assert_int_equal(client_done, 1);
	run_a_while();
	assert_int_equal(plain_fd, -1);
	assert_int_equal(tls_stats.handshake_failed, failed + 1);
	assert_int_equal(tls_count(), 0);
	bufferevent_free(bev);
	evbuffer_free(client_in);
	SSL_CTX_free(cctx);
}

static void
test_handshake_timeout(void **state)
{
	struct sockaddr_in	 sin;
	char			*err = NULL;
	uint64_t		 failed = tls_stats.handshake_failed;
	int			 sp[2], i;

	(void)state;
	assert_int_equal(tls_configure(TLS_SERVER, cert1, key1, NULL, &err), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sp), 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	plain_fd = -1;
	/* Says nothing: gone after the 1 s timeout. */
	tls_accept(sp[0], TLS_SERVER, (struct sockaddr *)&sin, sizeof sin, 1,
	    "test", 1, dispatch);
	assert_int_equal(tls_count(), 1);
	for (i = 0; i < 30 && tls_count() != 0; i++)
		event_base_loop(server_base, EVLOOP_ONCE);
	assert_int_equal(tls_count(), 0);
	assert_int_equal(tls_stats.handshake_failed, failed + 1);
	assert_int_equal(plain_fd, -1);
	close(sp[1]);
}

static char *
data(const char *file)
{
	static char	 path[4][600];
	static u_int	 n;

	n = (n + 1) % 4;
	snprintf(path[n], sizeof path[n], "%s/%s", dir, file);
	return (path[n]);
}

/*
 * Mutual TLS on the peer link: a node certificate signed by the cluster
 * CA is accepted and its common name reaches the dispatcher; one the CA
 * did not sign, or none at all, never gets a plain descriptor.
 */
static void
test_mutual(void **state)
{
	SSL_CTX			*cctx;
	struct bufferevent	*bev;
	struct sockaddr_in	 sin;
	char			*err = NULL;
	uint64_t		 failed;
	int			 sp[2], i, variant;

	(void)state;
	assert_int_equal(tls_configure(TLS_PEER, data("n1.pem"),
	    data("n1-key.pem"), data("ca.pem"), &err), 0);
	assert_true(tls_enabled(TLS_PEER));

	/* Both ends in this process: n1 connects to n1. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sp), 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	plain_fd = plain_fd2 = -1;
	tls_accept(sp[0], TLS_PEER, (struct sockaddr *)&sin, sizeof sin, 3,
	    "listener", 2, dispatch);
	tls_connect(sp[1], (struct sockaddr *)&sin, sizeof sin, 4, "dialled",
	    2, dispatch);
	for (i = 0; i < 2000 && plain_fd2 == -1; i++)
		event_base_loop(server_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_true(plain_fd >= 0 && plain_fd2 >= 0);
	assert_string_equal(plain_name, "n1");
	close(plain_fd);
	close(plain_fd2);
	run_a_while();
	assert_int_equal(tls_count(), 0);

	/* 0: a certificate from elsewhere with the right name; 1: none. */
	for (variant = 0; variant < 2; variant++) {
		failed = tls_stats.handshake_failed;
		cctx = SSL_CTX_new(TLS_client_method());
		if (variant == 0) {
			assert_int_equal(SSL_CTX_use_certificate_file(cctx,
			    data("rogue.pem"), SSL_FILETYPE_PEM), 1);
			assert_int_equal(SSL_CTX_use_PrivateKey_file(cctx,
			    data("rogue-key.pem"), SSL_FILETYPE_PEM), 1);
		}
		client_in = evbuffer_new();
		client_done = 0;
		plain_fd = plain_fd2 = -1;
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM |
		    SOCK_NONBLOCK, 0, sp), 0);
		tls_accept(sp[0], TLS_PEER, (struct sockaddr *)&sin,
		    sizeof sin, 3, "listener", 2, dispatch);
		bev = bufferevent_openssl_socket_new(server_base, sp[1],
		    SSL_new(cctx), BUFFEREVENT_SSL_CONNECTING,
		    BEV_OPT_CLOSE_ON_FREE);
		bufferevent_setcb(bev, client_read, NULL, client_event, NULL);
		bufferevent_enable(bev, EV_READ);
		bufferevent_write(bev, "hello", 5);
		for (i = 0; i < 2000 && tls_count() != 0; i++)
			event_base_loop(server_base, EVLOOP_ONCE |
			    EVLOOP_NONBLOCK);
		assert_int_equal(tls_count(), 0);
		assert_int_equal(plain_fd, -1);
		assert_int_equal(tls_stats.handshake_failed, failed + 1);
		bufferevent_free(bev);
		evbuffer_free(client_in);
		SSL_CTX_free(cctx);
	}
	assert_int_equal(tls_configure(TLS_PEER, "", NULL, NULL, &err), 0);
	assert_false(tls_enabled(TLS_PEER));
}

/*
 * The TLS process: sockets go to a forked process, the handshaken plain
 * end comes back to the registered dispatcher with its kind and the
 * listener's name, bytes flow both ways, and the counters come back.
 */
static void
test_process(void **state)
{
	SSL_CTX			*cctx;
	struct bufferevent	*bev;
	struct sockaddr_in	 sin;
	char			*err = NULL, buf[64];
	ssize_t			 n;
	int			 sp[2], i;

	(void)state;
	assert_int_equal(tls_configure(TLS_SERVER, cert1, key1, NULL, &err),
	    0);
	assert_int_equal(tls_process_start(&err), 0);
	assert_true(tls_channel() >= 0);
	tls_set_dispatch(dispatch);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sp), 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(4242);
	sin.sin_addr.s_addr = htonl(0x0a000001);
	plain_fd = plain_fd2 = -1;
	plain_name[0] = '\0';
	tls_accept(sp[0], TLS_SERVER, (struct sockaddr *)&sin, sizeof sin, 5,
	    "vm-tls", 2, NULL);
	/* Our copy is closed: the TLS process holds the socket now. */
	assert_int_equal(tls_count(), 0);

	cctx = SSL_CTX_new(TLS_client_method());
	client_in = evbuffer_new();
	client_done = 0;
	bev = bufferevent_openssl_socket_new(server_base, sp[1],
	    SSL_new(cctx), BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, client_read, NULL, client_event, NULL);
	bufferevent_enable(bev, EV_READ);
	bufferevent_write(bev, "abc", 3);
	for (i = 0; i < 200 && plain_fd == -1; i++)
		event_base_loop(server_base, EVLOOP_ONCE);
	assert_true(plain_fd >= 0);
	assert_int_equal(plain_kind, 5);
	assert_string_equal(plain_name, "vm-tls");
	for (i = 0, n = -1; i < 200 && n == -1; i++) {
		event_base_loop(server_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		n = read(plain_fd, buf, sizeof buf);
		if (n == -1)
			usleep(5000);
	}
	assert_int_equal(n, 3);
	assert_memory_equal(buf, "abc", 3);
	assert_int_equal(write(plain_fd, "xyz", 3), 3);
	for (i = 0; i < 200 && evbuffer_get_length(client_in) < 3; i++)
		event_base_loop(server_base, EVLOOP_ONCE);
	assert_int_equal(evbuffer_get_length(client_in), 3);
	assert_memory_equal(evbuffer_pullup(client_in, -1), "xyz", 3);
	assert_true(tls_stats.handshakes >= 1);

	close(plain_fd);
	for (i = 0; i < 200 && client_done != 1; i++)
		event_base_loop(server_base, EVLOOP_ONCE);
	assert_int_equal(client_done, 1);
	bufferevent_free(bev);
	evbuffer_free(client_in);
	SSL_CTX_free(cctx);
	tls_process_stop();
	assert_int_equal(tls_channel(), -1);
}

/* Read the plain end until end of stream; what came, or NULL. */
static char *
read_to_eof(int fd, size_t *len)
{
	static char	 buf[4096];
	ssize_t		 n;
	u_int		 i;

	*len = 0;
	for (i = 0; i < 2000; i++) {
		event_base_loop(server_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		n = read(fd, buf + *len, sizeof buf - *len);
		if (n == 0)
			return (buf);
		if (n > 0)
			*len += n;
	}
	return (NULL);
}

/*
 * The peer ends the connection after its last bytes: with close_notify
 * (then the node answers with its own), or with a FIN alone, which
 * OpenSSL 3.0 reports as an error.  Either way the plain end gets the
 * bytes, then end of stream, and the end is counted once by cause.
 */
static void
test_peer_close(void **state)
{
	SSL_CTX			*cctx;
	struct bufferevent	*bev;
	SSL			*ssl;
	struct tls_stats	 before;
	char			*err = NULL, *got;
	size_t			 len;
	u_int			 i, how, kind, listener, cause;
	int			 sfd;

	(void)state;
	assert_int_equal(tls_configure(TLS_SERVER, cert1, key1, NULL, &err), 0);
	cctx = SSL_CTX_new(TLS_client_method());
	for (how = 0; how < 2; how++) {
		/* The FIN case on a peer-link kind: counted as "peer". */
		kind = how == 0 ? LISTEN_VM_TLS : (LISTEN_PEER | (3 << 8));
		listener = how == 0 ? TLS_LISTENER_VM : TLS_LISTENER_PEER;
		cause = how == 0 ? TLS_CLOSE_NOTIFY : TLS_CLOSE_EOF;
		before = tls_stats;
		client_in = evbuffer_new();
		client_done = 0;
		plain_fd = plain_fd2 = -1;
		bev = connect_client_kind(cctx, &sfd, kind);
		run_until(&client_done, 2);
		assert_int_equal(client_done, 2);
		for (i = 0; i < 200 && plain_fd == -1; i++)
			event_base_loop(server_base, EVLOOP_ONCE |
			    EVLOOP_NONBLOCK);
		assert_true(plain_fd >= 0);
		bufferevent_write(bev, "last words", 10);
		for (i = 0; i < 200 && evbuffer_get_length(
		    bufferevent_get_output(bev)) != 0; i++)
			event_base_loop(server_base, EVLOOP_ONCE |
			    EVLOOP_NONBLOCK);
		ssl = bufferevent_openssl_get_ssl(bev);
		if (how == 0)
			assert_int_equal(SSL_shutdown(ssl), 0);
		else
			assert_int_equal(shutdown(bufferevent_getfd(bev),
			    SHUT_WR), 0);
		got = read_to_eof(plain_fd, &len);
		assert_non_null(got);
		assert_int_equal(len, 10);
		assert_memory_equal(got, "last words", 10);
		close(plain_fd);
		run_a_while();
		assert_int_equal(tls_count(), 0);
		assert_int_equal(tls_stats.closes[listener][cause],
		    before.closes[listener][cause] + 1);
		assert_int_equal(tls_stats.closes[listener][TLS_CLOSE_LOCAL],
		    before.closes[listener][TLS_CLOSE_LOCAL]);
		if (how == 0) {
			/* The node answered with its close_notify. */
			run_until(&client_done, 1);
			assert_true(SSL_get_shutdown(ssl) &
			    SSL_RECEIVED_SHUTDOWN);
		}
		bufferevent_free(bev);
		evbuffer_free(client_in);
	}
	assert_string_equal(tls_close_name(TLS_CLOSE_EOF), "eof");
	assert_string_equal(tls_listener_name(TLS_LISTENER_PEER), "peer");
	SSL_CTX_free(cctx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thumbprint),
		cmocka_unit_test(test_relay),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_old_protocol),
		cmocka_unit_test(test_handshake_timeout),
		cmocka_unit_test(test_mutual),
		cmocka_unit_test(test_process),
		cmocka_unit_test(test_peer_close),
	};
	const char	*top;
	int		 rc;

	if ((top = getenv("TOP_SRCDIR")) == NULL)
		top = ".";
	snprintf(dir, sizeof dir, "%s/tests/data/tls", top);
	snprintf(cert1, sizeof cert1, "%s/cert.pem", dir);
	snprintf(key1, sizeof key1, "%s/key.pem", dir);
	snprintf(cert2, sizeof cert2, "%s/cert2.pem", dir);
	snprintf(key2, sizeof key2, "%s/key2.pem", dir);
	signal(SIGPIPE, SIG_IGN);	/* As vspcd does. */
	log_init(1, 0);
	server_base = event_base_new();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	tls_shutdown();
	event_base_free(server_base);
	return (rc);
}
