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
 * The relays run in a process of their own (tls_process_start), forked
 * at start: the main process passes it each accepted or connected
 * socket (SCM_RIGHTS) and gets the plain end back once the handshake
 * succeeded.  OpenSSL's parsing of untrusted bytes is then kept out of
 * the process that holds every console, and a hot upgrade of the main
 * process hands over its end of the channel to the TLS process like any
 * other descriptor: TLS sessions, whose state OpenSSL cannot export,
 * never have to move.  The TLS process runs the binary it was started
 * with until the node is restarted.  Without the process (unit tests)
 * the relays run on the caller's loop.
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
#include <sys/wait.h>

#include <fcntl.h>
#include <signal.h>

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
	struct event		*end;		/* Finishes the TLS side's end. */
	int			 counted;	/* The end was logged, counted. */
	u_int			 cause;		/* enum tls_close, once counted. */
	int			 verify;	/* Peer certificate checked. */
	void			 (*dispatch)(int, const struct sockaddr *,
				     u_int, const char *);
	TAILQ_ENTRY(tls_conn)	 entry;
};
TAILQ_HEAD(tls_conns, tls_conn);

struct tls_creds {
	SSL_CTX		*ctx;		/* Accepting. */
	SSL_CTX		*cctx;		/* Connecting (peer link only). */
	char		 print[3 * 20];
};

static struct tls_conns	 tls_conns = TAILQ_HEAD_INITIALIZER(tls_conns);
static struct tls_creds	 tls_creds[TLS_SLOT_MAX];
static u_int		 tls_next_id;
static struct event_base *tls_base;	/* The loop the relays run on. */
struct tls_stats	 tls_stats;

static const char *tls_listener_names[TLS_LISTENER_MAX] = {
	"vm", "console", "peer"
};
static const char *tls_close_names[TLS_CLOSE_MAX] = {
	"close_notify", "eof", "reset", "error", "local"
};

static void	tls_conn_free(struct tls_conn *);
static void	tls_ask(u_int, int, enum tls_slot, const struct sockaddr *,
		    socklen_t, u_int, const char *, u_int);
static void	tls_send_config(enum tls_slot, const char *, const char *,
		    const char *);
static void	tls_remember(enum tls_slot, const char *, const char *,
		    const char *);
static void	tls_resend_config(void);
static void	tls_report_closes(void);
static void	tls_enc_event(struct bufferevent *, short, void *);

/*
 * Messages between the main process and the TLS process, one per
 * SOCK_SEQPACKET packet, with at most one descriptor.  The layout is
 * fixed: after a hot upgrade the new main process talks to the TLS
 * process the old binary started, so a change must bump the version
 * (and the new main then starts a TLS process of its own).  A new
 * message type is not a change: a main process that does not know it
 * takes its stats and ignores the rest (TLSMSG_CLOSES, from a TLS
 * process newer than the main process after a downgrade).
 */
#define TLSMSG_VERSION		1
enum {
	TLSMSG_CONFIG = 1,	/* text = cert NUL key NUL ca. */
	TLSMSG_ACCEPT,		/* fd: the accepted socket. */
	TLSMSG_CONNECT,		/* fd: a connected peer-link socket. */
	TLSMSG_DONE,		/* fd: the plain end; text = name or CN. */
	TLSMSG_STATS,		/* stats only. */
	TLSMSG_FAILED,		/* No fd: the handshake of sa, kind failed. */
	TLSMSG_CLOSES		/* text = tls_stats.closes (binary). */
};
struct tlsmsg {
	uint32_t	 version;
	uint32_t	 type;
	uint32_t	 slot;
	uint32_t	 kind;
	uint32_t	 timeout;
	uint32_t	 salen;
	uint8_t		 sa[128];
	uint64_t	 stats[4];	/* struct tls_stats, from the child. */
	char		 text[1536];
};
_Static_assert(sizeof tls_stats.closes < sizeof ((struct tlsmsg *)0)->text,
    "TLSMSG_CLOSES does not hold the counts");

static int		 tls_chan = -1;		/* Channel to the TLS process. */
static int		 tls_is_child;
static char		*tls_conf[TLS_SLOT_MAX][3];	/* Main: cert, key, CA. */
static pid_t		 tls_pid;
static struct event	*tls_chan_ev;
static void		 (*tls_dispatch)(int, const struct sockaddr *, u_int,
			     const char *);
static void		 (*tls_failed)(const struct sockaddr *, u_int);
static void		 tls_fill(struct tlsmsg *, u_int, enum tls_slot,
			     const struct sockaddr *, socklen_t, u_int, u_int);
static int		 tls_msg_send(int, const struct tlsmsg *, int);

/*
 * A handshake failed or timed out: the main process releases what it
 * held for the connection (its per-source slot) and counts it.
 */
static void
tls_report_failed(const struct sockaddr *sa, socklen_t salen, u_int kind)
{
	struct tlsmsg	m;

	if (tls_is_child) {
		tls_fill(&m, TLSMSG_FAILED, 0, sa, salen, kind, 0);
		m.stats[0] = tls_stats.handshakes;
		m.stats[1] = tls_stats.handshake_failed;
		m.stats[2] = tls_stats.bytes_in;
		m.stats[3] = tls_stats.bytes_out;
		(void)tls_msg_send(tls_chan, &m, -1);
	} else if (tls_failed != NULL)
		tls_failed(sa, kind);
}

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
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
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
	if (other == NULL || (tc->enc_eof && tc->plain_eof) ||
	    evbuffer_get_length(bufferevent_get_output(other)) == 0) {
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

static void
tls_plain_event(struct bufferevent *bev, short what, void *arg)
{
	struct tls_conn	*tc = arg;

	if (!(what & (BEV_EVENT_EOF|BEV_EVENT_ERROR)))
		return;
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

static void
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

static int
tls_msg_send(int sock, const struct tlsmsg *m, int fd)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsgbuf;
	ssize_t		 n;

	memset(&msg, 0, sizeof msg);
	iov.iov_base = (void *)m;
	iov.iov_len = sizeof *m;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd != -1) {
		memset(&cmsgbuf, 0, sizeof cmsgbuf);
		msg.msg_control = cmsgbuf.buf;
		msg.msg_controllen = sizeof cmsgbuf.buf;
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	return (n == (ssize_t)sizeof *m ? 0 : -1);
}

/* One message; -1 at end or on error, 0 if none waiting, else 1. */
static int
tls_msg_recv(int sock, struct tlsmsg *m, int *fd)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 4)];
	} cmsgbuf;
	ssize_t		 n;
	int		 got;

	*fd = -1;
	memset(&msg, 0, sizeof msg);
	iov.iov_base = m;
	iov.iov_len = sizeof *m;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof cmsgbuf.buf;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return (0);
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL;
	    cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET ||
		    cm->cmsg_type != SCM_RIGHTS)
			continue;
		memcpy(&got, CMSG_DATA(cm), sizeof got);
		if (*fd == -1)
			*fd = got;
		else
			close(got);
	}
	if (n <= 0 || (size_t)n != sizeof *m || (msg.msg_flags & MSG_TRUNC) ||
	    m->version != TLSMSG_VERSION || m->salen > sizeof m->sa) {
		if (*fd != -1)
			close(*fd);
		*fd = -1;
		return (n == 0 ? -1 : (n == -1 ? -1 : 2));
	}
	m->text[sizeof m->text - 1] = '\0';
	return (1);
}

static void
tls_fill(struct tlsmsg *m, u_int type, enum tls_slot slot,
    const struct sockaddr *sa, socklen_t salen, u_int kind, u_int timeout)
{
	memset(m, 0, sizeof *m);
	m->version = TLSMSG_VERSION;
	m->type = type;
	m->slot = slot;
	m->kind = kind;
	m->timeout = timeout;
	if (sa != NULL) {
		if (salen > sizeof m->sa)
			salen = sizeof m->sa;
		memcpy(m->sa, sa, salen);
		m->salen = salen;
	}
}

/* Main: ask the TLS process to take a socket; the fd is passed on. */
static void
tls_ask(u_int type, int fd, enum tls_slot slot, const struct sockaddr *sa,
    socklen_t salen, u_int kind, const char *name, u_int timeout)
{
	struct tlsmsg	m;

	tls_fill(&m, type, slot, sa, salen, kind, timeout);
	snprintf(m.text, sizeof m.text, "%s", name);
	if (tls_msg_send(tls_chan, &m, fd) == -1) {
		log_warn("tls: cannot pass a connection to the TLS process");
		tls_stats.handshake_failed++;
		if (tls_failed != NULL)
			tls_failed(sa, kind);
	}
	close(fd);
}

static void
tls_send_config(enum tls_slot slot, const char *cert, const char *key,
    const char *ca)
{
	struct tlsmsg	m;
	size_t		 a, b, c;

	tls_fill(&m, TLSMSG_CONFIG, slot, NULL, 0, 0, 0);
	a = strlen(cert);
	b = key != NULL ? strlen(key) : 0;
	c = ca != NULL ? strlen(ca) : 0;
	if (a + b + c + 3 > sizeof m.text) {
		log_warnx("tls: certificate paths too long for the TLS "
		    "process");
		return;
	}
	memcpy(m.text, cert, a);
	if (b)
		memcpy(m.text + a + 1, key, b);
	if (c)
		memcpy(m.text + a + b + 2, ca, c);
	if (tls_msg_send(tls_chan, &m, -1) == -1)
		log_warn("tls: cannot configure the TLS process");
}

/* Main: keep a slot's files and tell the TLS process about them. */
static void
tls_remember(enum tls_slot slot, const char *cert, const char *key,
    const char *ca)
{
	const char	*v[3] = { cert, key, ca };
	u_int		 i;

	if (tls_is_child)
		return;
	for (i = 0; i < 3; i++) {
		free(tls_conf[slot][i]);
		tls_conf[slot][i] = xstrdup(v[i] != NULL ? v[i] : "");
	}
	if (tls_chan >= 0)
		tls_send_config(slot, tls_conf[slot][0], tls_conf[slot][1],
		    tls_conf[slot][2]);
}

/* Main: what the TLS process sends back. */
static void
tls_chan_cb(evutil_socket_t sock, short events, void *arg)
{
	struct tlsmsg	 m;
	char		*err = NULL;
	int		 fd, r, i;

	(void)events;
	(void)arg;
	for (i = 0; i < 64; i++) {
		if ((r = tls_msg_recv(sock, &m, &fd)) == 0)
			return;
		if (r == -1) {
			log_warnx("tls: the TLS process went away (its "
			    "connections with it); starting another");
			event_free(tls_chan_ev);
			tls_chan_ev = NULL;
			close(tls_chan);
			tls_chan = -1;
			if (tls_pid > 0)
				(void)waitpid(tls_pid, NULL, WNOHANG);
			if (tls_process_start(&err) == -1) {
				log_warnx("%s", err);
				free(err);
			}
			return;
		}
		if (r == 2)
			continue;
		tls_stats.handshakes = m.stats[0];
		tls_stats.handshake_failed = m.stats[1];
		tls_stats.bytes_in = m.stats[2];
		tls_stats.bytes_out = m.stats[3];
		if (m.type == TLSMSG_CLOSES) {
			memcpy(tls_stats.closes, m.text,
			    sizeof tls_stats.closes);
			continue;
		}
		if (m.type == TLSMSG_FAILED && tls_failed != NULL &&
		    m.salen >= sizeof(sa_family_t)) {
			tls_failed((struct sockaddr *)m.sa, m.kind);
			continue;
		}
		if (m.type != TLSMSG_DONE || fd == -1) {
			if (fd != -1)
				close(fd);
			continue;
		}
		if (tls_dispatch == NULL) {
			close(fd);
			continue;
		}
		evutil_make_socket_nonblocking(fd);
		tls_dispatch(fd, (struct sockaddr *)m.sa, m.kind, m.text);
	}
}

/* Main: where handshaken connections go (by the kind they were given). */
void
tls_set_dispatch(void (*dispatch)(int, const struct sockaddr *, u_int,
    const char *))
{
	tls_dispatch = dispatch;
}

/* Main: told when a handshake failed (sa and kind as given). */
void
tls_set_failed(void (*failed)(const struct sockaddr *, u_int))
{
	tls_failed = failed;
}

/* Child: a handshake succeeded; send the plain end to the main process. */
static void
tls_child_done(int fd, const struct sockaddr *sa, u_int kind,
    const char *name)
{
	struct tlsmsg	 m;

	/* sa is the relay's own sockaddr_storage. */
	tls_fill(&m, TLSMSG_DONE, 0, sa, sizeof(struct sockaddr_storage),
	    kind, 0);
	snprintf(m.text, sizeof m.text, "%s", name);
	m.stats[0] = tls_stats.handshakes;
	m.stats[1] = tls_stats.handshake_failed;
	m.stats[2] = tls_stats.bytes_in;
	m.stats[3] = tls_stats.bytes_out;
	if (tls_msg_send(tls_chan, &m, fd) == -1)
		log_warn("tls: cannot pass a connection back");
	close(fd);
}

/* Child: an established connection ended; the counts go to the main. */
static void
tls_report_closes(void)
{
	struct tlsmsg	m;

	if (!tls_is_child)
		return;
	tls_fill(&m, TLSMSG_CLOSES, 0, NULL, 0, 0, 0);
	m.stats[0] = tls_stats.handshakes;
	m.stats[1] = tls_stats.handshake_failed;
	m.stats[2] = tls_stats.bytes_in;
	m.stats[3] = tls_stats.bytes_out;
	memcpy(m.text, tls_stats.closes, sizeof tls_stats.closes);
	(void)tls_msg_send(tls_chan, &m, -1);
}

static void
tls_child_stats_cb(evutil_socket_t fd, short events, void *arg)
{
	struct tlsmsg	m;

	(void)fd;
	(void)events;
	(void)arg;
	tls_fill(&m, TLSMSG_STATS, 0, NULL, 0, 0, 0);
	m.stats[0] = tls_stats.handshakes;
	m.stats[1] = tls_stats.handshake_failed;
	m.stats[2] = tls_stats.bytes_in;
	m.stats[3] = tls_stats.bytes_out;
	(void)tls_msg_send(tls_chan, &m, -1);
}

/* Child: requests from the main process (whichever binary it runs). */
static void
tls_child_cb(evutil_socket_t sock, short events, void *arg)
{
	struct tlsmsg	 m;
	char		*err = NULL, *key, *ca;
	int		 fd, r;

	(void)events;
	(void)arg;
	while ((r = tls_msg_recv(sock, &m, &fd)) != 0) {
		if (r == -1) {
			/* The main process is gone without a successor. */
			log_debug("tls: main process gone; exiting");
			event_base_loopbreak(tls_base);
			return;
		}
		if (r == 2) {
			log_warnx("tls: bad message from the main process");
			continue;
		}
		switch (m.type) {
		case TLSMSG_CONFIG:
			key = m.text + strlen(m.text) + 1;
			ca = key + strlen(key) + 1;
			if (m.slot >= TLS_SLOT_MAX)
				break;
			if (tls_configure(m.slot, m.text, key, ca, &err) ==
			    -1) {
				log_warnx("tls: %s", err);
				free(err);
				err = NULL;
			}
			break;
		case TLSMSG_ACCEPT:
		case TLSMSG_CONNECT:
			if (fd == -1 || m.slot >= TLS_SLOT_MAX ||
			    m.salen < sizeof(sa_family_t)) {
				if (fd != -1)
					close(fd);
				break;
			}
			tls_start(fd, m.type == TLSMSG_ACCEPT ?
			    tls_creds[m.slot].ctx : tls_creds[TLS_PEER].cctx,
			    m.type == TLSMSG_ACCEPT, (struct sockaddr *)m.sa,
			    m.salen, m.kind, m.text, m.timeout,
			    tls_child_done);
			fd = -1;
			break;
		default:
			break;
		}
		if (fd != -1)
			close(fd);
	}
}

static void __attribute__((__noreturn__))
tls_child_main(int chan)
{
	struct event	*ev, *stats;
	struct timeval	 tv = { 5, 0 };
	int		 fd;

	/* Nothing of the main process's but the channel and stderr. */
	if (chan != 3) {
		if (dup2(chan, 3) == -1)
			_exit(1);
		chan = 3;
	}
	if (close_range(4, ~0U, 0) == -1) {
		for (fd = 4; fd < 65536; fd++)
			(void)close(fd);
	}
	fcntl(chan, F_SETFD, FD_CLOEXEC);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	tls_chan = chan;
	tls_is_child = 1;
	if ((tls_base = event_base_new()) == NULL)
		_exit(1);
	ev = event_new(tls_base, chan, EV_READ | EV_PERSIST, tls_child_cb,
	    NULL);
	event_add(ev, NULL);
	stats = event_new(tls_base, -1, EV_PERSIST, tls_child_stats_cb, NULL);
	event_add(stats, &tv);
	log_info("tls: TLS process %ld started", (long)getpid());
	event_base_dispatch(tls_base);
	_exit(0);
}

/*
 * Main: fork the TLS process (once; again only if it died) and send it
 * the credentials configured so far.  The caller then configures with
 * tls_configure() as before: it is passed on.
 */
int
tls_process_start(char **err)
{
	int	 sp[2];
	pid_t	 pid;

	if (tls_chan >= 0)
		return (0);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		xasprintf(err, "tls: socketpair: %s", strerror(errno));
		return (-1);
	}
	switch ((pid = fork())) {
	case -1:
		xasprintf(err, "tls: fork: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		return (-1);
	case 0:
		close(sp[0]);
		tls_child_main(sp[1]);
	default:
		break;
	}
	close(sp[1]);
	tls_adopt_channel(sp[0], pid);
	return (0);
}

/* Main: send the credentials configured so far (a new TLS process). */
static void
tls_resend_config(void)
{
	u_int	slot;

	for (slot = 0; slot < TLS_SLOT_MAX; slot++) {
		if (tls_conf[slot][0] != NULL && *tls_conf[slot][0] != '\0')
			tls_send_config(slot, tls_conf[slot][0],
			    tls_conf[slot][1], tls_conf[slot][2]);
	}
}

/* Main: the channel's descriptor, to hand to a successor (-1: none). */
int
tls_channel(void)
{
	return (tls_chan >= 0 ? tls_chan : -1);
}

/*
 * Main: stop (1) or resume (0) taking handshaken connections while a hot
 * upgrade quiesces; they wait in the channel for the successor.
 */
void
tls_handoff_pause(int on)
{
	if (tls_chan_ev == NULL)
		return;
	if (on)
		event_del(tls_chan_ev);
	else
		event_add(tls_chan_ev, NULL);
}

/* Main: the TLS process's pid, to hand to a successor (0: none). */
pid_t
tls_process_pid(void)
{
	return (tls_pid);
}

/* Main: use an inherited channel (hot upgrade) or a new one. */
void
tls_adopt_channel(int fd, pid_t pid)
{
	tls_chan = fd;
	tls_pid = pid;
	evutil_make_socket_nonblocking(fd);
	tls_chan_ev = event_new(server_base, fd, EV_READ | EV_PERSIST,
	    tls_chan_cb, NULL);
	event_add(tls_chan_ev, NULL);
	tls_resend_config();
}

/* Main: stop using the TLS process (shutting down: it follows). */
void
tls_process_stop(void)
{
	if (tls_chan_ev != NULL)
		event_free(tls_chan_ev);
	tls_chan_ev = NULL;
	if (tls_chan >= 0)
		close(tls_chan);
	tls_chan = -1;
	if (tls_pid > 0) {
		kill(tls_pid, SIGTERM);
		(void)waitpid(tls_pid, NULL, WNOHANG);
	}
	tls_pid = 0;
}
