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
 * TLS termination for the telnets listeners (vSphere's telnets://, TLS
 * from the first byte).
 *
 * A TLS connection is terminated here and relayed, in both directions,
 * to one end of a Unix socketpair; the other end is handed to the
 * module that serves the listener (vmconn.c, cmdline.c) exactly as a
 * plain TCP connection would be.  That keeps TLS out of every protocol
 * module, costs one descriptor and one copy per TLS connection, and lets
 * a hot upgrade pass the plain end like any other connection.
 *
 * Each direction is bounded: when the receiving side holds more than
 * TLS_HIGH bytes, reading from the sending side stops until it drained.
 * End of stream on either side is passed on after what was pending.
 *
 * However the peer ends a TLS connection (close_notify, a FIN without
 * close_notify, which OpenSSL 3.0 reports as an error, a reset, a
 * protocol error), the relay finishes in the same way: the bytes it sent
 * before are delivered to the plain end, then the relay is freed, which
 * closes the plain end, and the module serving it sees end of stream.
 * libevent 2.1 may report the end before the last bytes read with it are
 * in the input buffer, so the end is finished from a zero-delay timer,
 * never from the event callback.  When the node closes the plain end,
 * what it wrote is sent, then close_notify.  Each end is logged once
 * with its cause and counted by listener and cause (tls_stats.closes);
 * the TLS process reports the counts to the main process.  A peer that
 * goes silent is not noticed here (see the listeners' idle rules).
 *
 * The relays run in the TLS process, forked at start (tls-process.c:
 * the process, its channel to the main process and the messages on it);
 * tls-int.h is what the two files share.
 *
 * Two sets of credentials: TLS_SERVER for the telnets listeners (ESXi's
 * and people's), TLS_PEER for the peer link, where both sides present a
 * certificate signed by the cluster CA and check the other's (mutual
 * TLS); the dispatcher is then given the verified certificate's common
 * name, which peer.c compares with the node ID the Hello announces.
 *
 * The certificate and key are read at start and again on SIGHUP
 * (tls_configure again): a new context is built and used for new
 * connections; established ones keep the context they began with.  A
 * broken new certificate leaves the old one in use.  TLS 1.2 is the
 * minimum.
 */

#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "vspcd.h"
#include "tls-int.h"

#define TLS_HIGH		(256 * 1024)
#define TLS_LINGER		10	/* Seconds to flush after an end. */

struct tls_conn {
	u_int			 id;
	struct bufferevent	*enc;		/* The peer's TLS side. */
	struct bufferevent	*plain;		/* Our end of the pair. */
	struct sockaddr_storage	 ss;
	u_int			 kind;
	char			*name;
	char			 addr[64];
	int			 enc_eof;
	int			 plain_eof;
	int			 enc_ending;	/* TLS side ended; see end. */
	int			 plain_closing;	/* FIN sent; see finish. */
	struct event		*end;		/* Finishes the TLS side's end. */
	int			 counted;	/* The end was logged, counted. */
	u_int			 cause;		/* enum tls_close, once counted. */
	int			 verify;	/* Peer certificate checked. */
	void			 (*dispatch)(int, const struct sockaddr *,
				     u_int, const char *);
	TAILQ_ENTRY(tls_conn)	 entry;
};
TAILQ_HEAD(tls_conns, tls_conn);

static struct tls_conns	 tls_conns = TAILQ_HEAD_INITIALIZER(tls_conns);
struct tls_creds	 tls_creds[TLS_SLOT_MAX];
static u_int		 tls_next_id;
struct event_base	*tls_base;	/* The loop the relays run on. */
struct tls_stats	 tls_stats;

static const char *tls_listener_names[TLS_LISTENER_MAX] = {
	"vm", "console", "peer"
};
static const char *tls_close_names[TLS_CLOSE_MAX] = {
	"close_notify", "eof", "reset", "error", "local"
};

static void	tls_conn_free(struct tls_conn *);
static void	tls_plain_finish(struct tls_conn *);
static void	tls_enc_event(struct bufferevent *, short, void *);

static void
tls_error(char **err, const char *what, const char *file)
{
	unsigned long	 e;
	char		 buf[256];

	e = ERR_get_error();
	if (e != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	else
		snprintf(buf, sizeof buf, "%s", strerror(errno));
	ERR_clear_error();
	xasprintf(err, "%s %s: %s", what, file, buf);
}

/* The SHA-1 thumbprint vSphere's #thumbprint= wants ("AB:CD:..."). */
int
tls_thumbprint_file(const char *file, char *out, size_t outlen, char **err)
{
	FILE		*f;
	X509		*x;
	u_char		 md[EVP_MAX_MD_SIZE];
	u_int		 mdlen, i;
	size_t		 n = 0;

	if ((f = fopen(file, "r")) == NULL) {
		xasprintf(err, "%s: %s", file, strerror(errno));
		return (-1);
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL) {
		tls_error(err, "no certificate in", file);
		return (-1);
	}
	if (!X509_digest(x, EVP_sha1(), md, &mdlen) || outlen < mdlen * 3) {
		X509_free(x);
		xasprintf(err, "%s: cannot compute the SHA-1 thumbprint",
		    file);
		return (-1);
	}
	X509_free(x);
	for (i = 0; i < mdlen; i++)
		n += snprintf(out + n, outlen - n, "%s%02X", i ? ":" : "",
		    md[i]);
	return (0);
}

static SSL_CTX *
tls_ctx_new(const char *cert, const char *key, const char *ca, int server,
    char **err)
{
	SSL_CTX	*ctx;

	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (ctx == NULL) {
		tls_error(err, "TLS context for", cert);
		return (NULL);
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_cipher_list(ctx,
	    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS") != 1) {
		tls_error(err, "cipher list for", cert);
		goto bad;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	/*
	 * No TLS 1.3 session tickets: a client that sends its last bytes
	 * and closes without reading them makes its kernel answer with a
	 * reset, which can destroy those bytes here.  Nothing resumes.
	 */
	if (server)
		SSL_CTX_set_num_tickets(ctx, 0);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		tls_error(err, "certificate", cert);
		goto bad;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		tls_error(err, "private key", key);
		goto bad;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_error(err, "private key does not match certificate", cert);
		goto bad;
	}
	if (ca != NULL && *ca != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
			tls_error(err, "CA certificates", ca);
			goto bad;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		SSL_CTX_set_verify_depth(ctx, 4);
	}
	return (ctx);
bad:
	SSL_CTX_free(ctx);
	return (NULL);
}

/*
 * Read the certificate and key of a slot (again); with ca, the other
 * side must present a certificate it signed.  New connections use them,
 * the established ones keep theirs.  On error the old ones stay in use.
 * An empty cert turns the slot off.
 */
int
tls_configure(enum tls_slot slot, const char *cert, const char *key,
    const char *ca, char **err)
{
	struct tls_creds	*tc = &tls_creds[slot];
	SSL_CTX			*ctx, *cctx = NULL;
	char			 print[sizeof tc->print];

	if (cert == NULL || *cert == '\0') {
		SSL_CTX_free(tc->ctx);
		SSL_CTX_free(tc->cctx);
		memset(tc, 0, sizeof *tc);
		tls_remember(slot, "", "", "");
		return (0);
	}
	if ((ctx = tls_ctx_new(cert, key, ca, 1, err)) == NULL)
		return (-1);
	if (slot == TLS_PEER &&
	    (cctx = tls_ctx_new(cert, key, ca, 0, err)) == NULL) {
		SSL_CTX_free(ctx);
		return (-1);
	}
	if (tls_thumbprint_file(cert, print, sizeof print, err) == -1) {
		SSL_CTX_free(ctx);
		SSL_CTX_free(cctx);
		return (-1);
	}
	SSL_CTX_free(tc->ctx);
	SSL_CTX_free(tc->cctx);
	tc->ctx = ctx;
	tc->cctx = cctx;
	tls_remember(slot, cert, key, ca);
	if (strcmp(print, tc->print) != 0) {
		memcpy(tc->print, print, sizeof tc->print);
		if (slot == TLS_SERVER)
			log_info("tls: certificate %s, SHA-1 thumbprint %s "
			    "(vSphere: telnets://HOST:PORT#thumbprint=%s)",
			    cert, print, print);
		else
			log_info("tls: peer link certificate %s, SHA-1 %s",
			    cert, print);
	}
	return (0);
}

/* A slot's certificate thumbprint, or NULL when it is off. */
const char *
tls_thumbprint(enum tls_slot slot)
{
	return (tls_creds[slot].ctx != NULL ? tls_creds[slot].print : NULL);
}

/* Is a slot configured? */
int
tls_enabled(enum tls_slot slot)
{
	return (tls_creds[slot].ctx != NULL);
}

/* TLS connections being relayed now. */
u_int
tls_count(void)
{
	u_int			 n = 0;
	struct tls_conn		*tc;

	TAILQ_FOREACH(tc, &tls_conns, entry)
		n++;
	return (n);
}

/* A listener's name in the metrics ("vm", "console", "peer"). */
const char *
tls_listener_name(u_int listener)
{
	return (listener < TLS_LISTENER_MAX ? tls_listener_names[listener] :
	    "unknown");
}

/* A cause of end's name in the logs and metrics ("close_notify", ...). */
const char *
tls_close_name(u_int cause)
{
	return (cause < TLS_CLOSE_MAX ? tls_close_names[cause] : "unknown");
}

/* Which listener a connection of this kind came from (or went to). */
static u_int
tls_listener(u_int kind)
{
	switch (kind & 0xff) {
	case LISTEN_CONSOLE_TLS:
		return (TLS_LISTENER_CONSOLE);
	case LISTEN_PEER:
		return (TLS_LISTENER_PEER);
	default:
		return (TLS_LISTENER_VM);
	}
}

/*
 * An established connection ends, for the first time: log it once with
 * its cause and count it.
 */
static void
tls_ended(struct tls_conn *tc, u_int cause, const char *why)
{
	if (tc->counted)
		return;
	tc->counted = 1;
	tc->cause = cause;
	tls_stats.closes[tls_listener(tc->kind)][cause]++;
	log_info("tls %u: %s: %s (%s)", tc->id, tc->addr, why,
	    tls_close_names[cause]);
	tls_report_closes();
}

static void
tls_conn_free(struct tls_conn *tc)
{
	SSL	*ssl;

	TAILQ_REMOVE(&tls_conns, tc, entry);
	if (tc->end != NULL)
		event_free(tc->end);
	/*
	 * Closed by the node, or by the peer with close_notify: everything
	 * we had for the peer was taken, so close_notify goes after it
	 * (libevent never sends it).  Once, not waiting for the answer.
	 */
	if (tc->enc != NULL && tc->plain != NULL && tc->counted &&
	    (tc->cause == TLS_CLOSE_LOCAL || tc->cause == TLS_CLOSE_NOTIFY) &&
	    evbuffer_get_length(bufferevent_get_output(tc->enc)) == 0 &&
	    (ssl = bufferevent_openssl_get_ssl(tc->enc)) != NULL) {
		ERR_clear_error();
		(void)SSL_shutdown(ssl);
		ERR_clear_error();
	}
	if (tc->enc != NULL)
		bufferevent_free(tc->enc);
	if (tc->plain != NULL)
		bufferevent_free(tc->plain);
	free(tc->name);
	free(tc);
}

/* Pass what one side sent to the other; pause the sender when full. */
static void
tls_relay(struct tls_conn *tc, struct bufferevent *from,
    struct bufferevent *to)
{
	struct evbuffer	*out = bufferevent_get_output(to);

	evbuffer_add_buffer(out, bufferevent_get_input(from));
	if (evbuffer_get_length(out) >= TLS_HIGH) {
		bufferevent_disable(from, EV_READ);
		bufferevent_setwatermark(to, EV_WRITE, TLS_HIGH / 2, 0);
	}
	(void)tc;
}

static void
tls_enc_read(struct bufferevent *bev, void *arg)
{
	struct tls_conn	*tc = arg;

	tls_stats.bytes_in += evbuffer_get_length(bufferevent_get_input(bev));
	tls_relay(tc, bev, tc->plain);
}

static void
tls_plain_read(struct bufferevent *bev, void *arg)
{
	struct tls_conn	*tc = arg;

	if (tc->plain_closing) {
		/* Nobody to give it to: the TLS side has ended. */
		evbuffer_drain(bufferevent_get_input(bev),
		    evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	tls_stats.bytes_out += evbuffer_get_length(bufferevent_get_input(bev));
	tls_relay(tc, bev, tc->enc);
}

/*
 * One side's output drained (to the watermark, or to empty): resume the
 * other side, or finish a close that waited for the flush.
 */
static void
tls_write_done(struct tls_conn *tc, struct bufferevent *bev,
    struct bufferevent *other, int other_eof)
{
	if (other_eof) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
			return;
		if (bev == tc->plain && !tc->plain_eof)
			tls_plain_finish(tc);
		else
			tls_conn_free(tc);
		return;
	}
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(other, EV_READ);
}

static void
tls_enc_write(struct bufferevent *bev, void *arg)
{
	struct tls_conn	*tc = arg;

	tls_write_done(tc, bev, tc->plain, tc->plain_eof);
}

static void
tls_plain_write(struct bufferevent *bev, void *arg)
{
	struct tls_conn	*tc = arg;

	tls_write_done(tc, bev, tc->enc, tc->enc_eof);
}

/* One side ended: flush what it sent to the other, then close both. */
static void
tls_side_ended(struct tls_conn *tc, struct bufferevent *bev,
    struct bufferevent *other, const char *why)
{
	struct timeval	tv;

	if (bev == tc->enc)
		tc->enc_eof = 1;
	else
		tc->plain_eof = 1;
	log_debug("tls %u (%s): %s side %s", tc->id, tc->addr,
	    bev == tc->enc ? "TLS" : "plain", why);
	bufferevent_disable(bev, EV_READ|EV_WRITE);
	if (other == NULL || (tc->enc_eof && tc->plain_eof)) {
		tls_conn_free(tc);
		return;
	}
	if (evbuffer_get_length(bufferevent_get_output(other)) == 0) {
		if (other == tc->plain)
			tls_plain_finish(tc);
		else
			tls_conn_free(tc);
		return;
	}
	bufferevent_setwatermark(other, EV_WRITE, 0, 0);
	bufferevent_disable(other, EV_READ);
	/* A side that takes nothing more is not waited for forever. */
	tv.tv_sec = TLS_LINGER;
	tv.tv_usec = 0;
	evtimer_add(tc->end, &tv);
}

/*
 * The TLS side ended and the node has every byte it sent: end the plain
 * side with a FIN, and drop what the node still sends until it closes its
 * end.  Closing at once would leave the node's last output unread, which
 * the node sees as a reset, not an end: its cause would depend on timing.
 * The end timer bounds the wait.
 */
static void
tls_plain_finish(struct tls_conn *tc)
{
	struct timeval	tv = { TLS_LINGER, 0 };

	if (shutdown(bufferevent_getfd(tc->plain), SHUT_WR) == -1) {
		tls_conn_free(tc);
		return;
	}
	tc->plain_closing = 1;
	tls_plain_read(tc->plain, tc);
	bufferevent_setwatermark(tc->plain, EV_READ, 0, 0);
	bufferevent_enable(tc->plain, EV_READ);
	evtimer_add(tc->end, &tv);
}

static void
tls_plain_event(struct bufferevent *bev, short what, void *arg)
{
	struct tls_conn	*tc = arg;

	if (!(what & (BEV_EVENT_EOF|BEV_EVENT_ERROR)))
		return;
	if (tc->plain_closing) {
		/* The node closed its end after ours. */
		tls_conn_free(tc);
		return;
	}
	if (!tc->enc_ending)
		tls_ended(tc, TLS_CLOSE_LOCAL, "closed by the node");
	tls_side_ended(tc, bev, tc->enc,
	    (what & BEV_EVENT_EOF) ? "closed" : "failed");
}

/*
 * Why the TLS side ended, from what libevent and OpenSSL left: with
 * OpenSSL 3.0 a FIN without close_notify is SSL_R_UNEXPECTED_EOF_WHILE_-
 * READING; libevent 2.1 queues the SSL_get_error() code itself first,
 * and reports a socket error (SSL_ERROR_SYSCALL) as EOF when dirty
 * shutdowns are allowed, so the queue decides, not the event.
 */
static u_int
tls_close_cause(struct bufferevent *bev, short what, int err, char *buf,
    size_t len)
{
	SSL		*ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long	 e;
	int		 syscall = 0, eof = 0;

	buf[0] = '\0';
	while ((e = bufferevent_get_openssl_error(bev)) != 0) {
		if (e == SSL_ERROR_SYSCALL)
			syscall = 1;
		else if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			eof = 1;
		else if (e != SSL_ERROR_SSL && buf[0] == '\0')
			ERR_error_string_n(e, buf, len);
	}
	ERR_clear_error();
	if (eof) {
		snprintf(buf, len, "closed by the peer without close_notify");
		return (TLS_CLOSE_EOF);
	}
	if (syscall || (what & BEV_EVENT_ERROR && buf[0] == '\0')) {
		if (err == 0) {
			snprintf(buf, len, "closed by the peer without "
			    "close_notify");
			return (TLS_CLOSE_EOF);
		}
		snprintf(buf, len, "%s", strerror(err));
		return (TLS_CLOSE_RESET);
	}
	if (buf[0] != '\0')
		return (TLS_CLOSE_ERROR);
	if (ssl != NULL && (SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN)) {
		snprintf(buf, len, "closed by the peer");
		return (TLS_CLOSE_NOTIFY);
	}
	snprintf(buf, len, "closed by the peer without close_notify");
	return (TLS_CLOSE_EOF);
}

/*
 * The TLS side's end, after what was read with it reached the input; or
 * a side did not take what was left for it within TLS_LINGER seconds.
 */
static void
tls_enc_end_cb(evutil_socket_t fd, short events, void *arg)
{
	struct tls_conn	*tc = arg;

	(void)fd;
	(void)events;
	if (tc->plain_closing) {
		log_debug("tls %u (%s): the node did not close its end after "
		    "%d seconds; closing", tc->id, tc->addr, TLS_LINGER);
		tls_conn_free(tc);
		return;
	}
	if (!tc->enc_ending || tc->enc_eof) {
		log_debug("tls %u (%s): %zu bytes not taken after %d seconds; "
		    "closing", tc->id, tc->addr, evbuffer_get_length(
		    bufferevent_get_output(tc->enc_eof ? tc->plain : tc->enc)),
		    TLS_LINGER);
		tls_conn_free(tc);
		return;
	}
	if (evbuffer_get_length(bufferevent_get_input(tc->enc)) > 0)
		tls_enc_read(tc->enc, tc);
	tls_side_ended(tc, tc->enc, tc->plain, tls_close_names[tc->cause]);
}

static void
tls_handshake_done(struct tls_conn *tc)
{
	SSL	*ssl = bufferevent_openssl_get_ssl(tc->enc);
	X509	*x;
	char	 cn[256];
	int	 sp[2];

	tls_stats.handshakes++;
	if (tc->verify) {
		/* The dispatcher gets the verified certificate's name. */
		x = SSL_get1_peer_certificate(ssl);
		if (x == NULL || SSL_get_verify_result(ssl) != X509_V_OK ||
		    X509_NAME_get_text_by_NID(X509_get_subject_name(x),
		    NID_commonName, cn, sizeof cn) <= 0) {
			X509_free(x);
			tls_stats.handshake_failed++;
			log_warnx("tls %u: %s: no verified certificate name",
			    tc->id, tc->addr);
			tls_report_failed((struct sockaddr *)&tc->ss,
			    sizeof tc->ss, tc->kind);
			tls_conn_free(tc);
			return;
		}
		X509_free(x);
		free(tc->name);
		tc->name = xstrdup(cn);
	}
	log_info("tls %u: %s: %s, %s%s%s", tc->id, tc->addr,
	    SSL_get_version(ssl), SSL_get_cipher_name(ssl),
	    tc->verify ? ", certificate " : "", tc->verify ? tc->name : "");
	bufferevent_set_timeouts(tc->enc, NULL, NULL);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sp) == -1) {
		log_warn("tls %u: socketpair", tc->id);
		tls_conn_free(tc);
		return;
	}
	tc->plain = bufferevent_socket_new(tls_base, sp[0],
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(tc->plain, tls_plain_read, tls_plain_write,
	    tls_plain_event, tc);
	bufferevent_enable(tc->plain, EV_READ);
	/* The event callback stays: it is how the peer's end is seen. */
	bufferevent_setcb(tc->enc, tls_enc_read, tls_enc_write, tls_enc_event,
	    tc);
	/* Bytes that came with the handshake's last flight. */
	if (evbuffer_get_length(bufferevent_get_input(tc->enc)) > 0)
		tls_enc_read(tc->enc, tc);
	tc->dispatch(sp[1], (struct sockaddr *)&tc->ss, tc->kind, tc->name);
}

static void
tls_enc_event(struct bufferevent *bev, short what, void *arg)
{
	struct tls_conn	*tc = arg;
	unsigned long	 e;
	char		 buf[160];
	int		 err = EVUTIL_SOCKET_ERROR();
	struct timeval	 tv = { 0, 0 };
	u_int		 cause;

	if (what & BEV_EVENT_CONNECTED) {
		tls_handshake_done(tc);
		return;
	}
	if (tc->plain == NULL) {
		tls_stats.handshake_failed++;
		if (what & BEV_EVENT_TIMEOUT)
			snprintf(buf, sizeof buf, "handshake timed out");
		else if ((e = bufferevent_get_openssl_error(bev)) != 0)
			ERR_error_string_n(e, buf, sizeof buf);
		else
			snprintf(buf, sizeof buf, "closed during handshake");
		log_warnx("tls %u: %s: %s", tc->id, tc->addr, buf);
		tls_report_failed((struct sockaddr *)&tc->ss, sizeof tc->ss,
		    tc->kind);
		tls_conn_free(tc);
		return;
	}
	if (!(what & (BEV_EVENT_EOF|BEV_EVENT_ERROR|BEV_EVENT_TIMEOUT)) ||
	    tc->enc_ending || tc->enc_eof)
		return;
	tc->enc_ending = 1;
	cause = tls_close_cause(bev, what, err, buf, sizeof buf);
	if (!tc->plain_eof)
		tls_ended(tc, cause, buf);
	bufferevent_disable(bev, EV_READ|EV_WRITE);
	/* Bytes read with the end are not in the input yet: finish later. */
	evtimer_add(tc->end, &tv);
}

void
tls_start(int fd, SSL_CTX *ctx, int accepting, const struct sockaddr *sa,
    socklen_t salen, u_int kind, const char *name, u_int timeout,
    void (*dispatch)(int, const struct sockaddr *, u_int, const char *))
{
	struct tls_conn	*tc;
	struct timeval	 tv;
	SSL		*ssl;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL) {
		log_warnx("tls: no credentials; connection closed");
		tls_stats.handshake_failed++;
		tls_report_failed(sa, salen, kind);
		close(fd);
		return;
	}
	tc = xcalloc(1, sizeof *tc);
	tc->id = ++tls_next_id;
	if (salen > sizeof tc->ss)
		salen = sizeof tc->ss;
	memcpy(&tc->ss, sa, salen);
	tc->kind = kind;
	tc->name = xstrdup(name);
	tc->dispatch = dispatch;
	tc->verify = (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) != 0;
	addr_fmt(sa, tc->addr, sizeof tc->addr);
	tc->end = evtimer_new(tls_base, tls_enc_end_cb, tc);
	TAILQ_INSERT_TAIL(&tls_conns, tc, entry);

	tc->enc = bufferevent_openssl_socket_new(tls_base, fd, ssl,
	    accepting ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (tc->enc == NULL) {
		SSL_free(ssl);
		close(fd);
		tls_conn_free(tc);
		return;
	}
	/* ESXi may close without close_notify. */
	bufferevent_openssl_set_allow_dirty_shutdown(tc->enc, 1);
	bufferevent_setcb(tc->enc, NULL, NULL, tls_enc_event, tc);
	tv.tv_sec = timeout > 0 ? timeout : 30;
	tv.tv_usec = 0;
	bufferevent_set_timeouts(tc->enc, &tv, &tv);
	bufferevent_enable(tc->enc, EV_READ);
}

/*
 * Start TLS on an accepted connection; once the handshake succeeded,
 * dispatch(plainfd, sa, kind, name) serves it as a plain connection
 * (name is the verified certificate's common name on a slot with a CA).
 * timeout bounds the handshake (seconds).
 */
void
tls_accept(int fd, enum tls_slot slot, const struct sockaddr *sa,
    socklen_t salen, u_int kind, const char *name, u_int timeout,
    void (*dispatch)(int, const struct sockaddr *, u_int, const char *))
{
	if (tls_chan >= 0) {
		tls_ask(TLSMSG_ACCEPT, fd, slot, sa, salen, kind, name,
		    timeout);
		return;
	}
	if (tls_base == NULL)
		tls_base = server_base;
	tls_start(fd, tls_creds[slot].ctx, 1, sa, salen, kind, name, timeout,
	    dispatch);
}

/* Start TLS as the client on a connected peer-link socket, likewise. */
void
tls_connect(int fd, const struct sockaddr *sa, socklen_t salen, u_int kind,
    const char *name, u_int timeout,
    void (*dispatch)(int, const struct sockaddr *, u_int, const char *))
{
	if (tls_chan >= 0) {
		tls_ask(TLSMSG_CONNECT, fd, TLS_PEER, sa, salen, kind, name,
		    timeout);
		return;
	}
	if (tls_base == NULL)
		tls_base = server_base;
	tls_start(fd, tls_creds[TLS_PEER].cctx, 0, sa, salen, kind, name,
	    timeout, dispatch);
}

/* Close every TLS connection (node shutting down). */
void
tls_shutdown(void)
{
	struct tls_conn	*tc;
	int		 slot, i;

	while ((tc = TAILQ_FIRST(&tls_conns)) != NULL)
		tls_conn_free(tc);
	for (slot = 0; slot < TLS_SLOT_MAX; slot++) {
		for (i = 0; i < 3; i++) {
			free(tls_conf[slot][i]);
			tls_conf[slot][i] = NULL;
		}
		SSL_CTX_free(tls_creds[slot].ctx);
		SSL_CTX_free(tls_creds[slot].cctx);
		memset(&tls_creds[slot], 0, sizeof tls_creds[slot]);
	}
}
