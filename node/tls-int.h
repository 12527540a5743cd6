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
 * What the two files of the TLS termination (tls.c, tls-process.c) share
 * and nothing else may touch: the credentials, the loop the relays run
 * on, the channel to the TLS process and the messages on it, and the
 * functions one file calls in the other.  A header of its own rather
 * than vspcd.h, so that the rest of the node sees neither OpenSSL nor the
 * channel's layout, and the interface in vspcd.h stays what other
 * modules may call.  Include it after vspcd.h and <openssl/ssl.h>.
 */

#ifndef TLS_INT_H
#define TLS_INT_H

struct tls_creds {
	SSL_CTX		*ctx;		/* Accepting. */
	SSL_CTX		*cctx;		/* Connecting (peer link only). */
	char		 print[3 * 20];
};

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

/* tls.c */
extern struct tls_creds	 tls_creds[TLS_SLOT_MAX];
extern struct event_base *tls_base;	/* The loop the relays run on. */
void		 tls_start(int, SSL_CTX *, int, const struct sockaddr *,
		     socklen_t, u_int, const char *, u_int,
		     void (*)(int, const struct sockaddr *, u_int,
		     const char *));

/* tls-process.c */
extern int	 tls_chan;		/* Channel to the TLS process. */
extern char	*tls_conf[TLS_SLOT_MAX][3];	/* Main: cert, key, CA. */
void		 tls_ask(u_int, int, enum tls_slot, const struct sockaddr *,
		     socklen_t, u_int, const char *, u_int);
void		 tls_remember(enum tls_slot, const char *, const char *,
		     const char *);
void		 tls_report_failed(const struct sockaddr *, socklen_t, u_int);
void		 tls_report_closes(void);

#endif /* TLS_INT_H */
