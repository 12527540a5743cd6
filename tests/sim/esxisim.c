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
 * esxisim: a fake ESXi host that plays one or many VMs' serial ports
 * against a vSPC, byte for byte as the real host does in the packet
 * capture (docs/protocol.md sections 3 to 6), including vMotion as source
 * and destination and its failure paths.
 *
 * It is driven by commands on stdin and reports events on stdout, one
 * line each (see tests/sim/README).  Everything runs on one libevent
 * loop with non-blocking sockets.  Per VM it keeps a struct svm (about
 * 150 bytes) and per connection a struct sconn (about 150 bytes plus the
 * libevent event); output is generated on demand from the VM's stream
 * offset, so nothing is buffered but what the kernel refused.  vMotion
 * state (struct smv) only exists while a vMotion runs.
 *
 * Invariants: a VM's pattern stream is one continuous byte sequence
 * across all its connections (vm->off is the next byte); only vm->conn
 * carries guest output; a connection is never freed inside its own
 * callback (sc_close() queues it for the reaper).
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "vspcd.h"

#define SIM_CHUNK		16384	/* Pattern bytes per write. */
#define SIM_PUMP_MAX		16	/* Chunks per VM per loop turn. */
#define SIM_SB_MAX		4096
#define SIM_KEY_MAX		256	/* seq || secret */
#define SIM_NAME_MAX		200
#define SIM_TICK_US		10000	/* Stream ticker period. */
#define SIM_LINE_MAX		65536

/* Options whose negotiation state we keep. */
static const u_char sim_opts[] = {
	TELOPT_BINARY, TELOPT_ECHO, TELOPT_SGA, TELOPT_AUTH, TELOPT_COMPORT,
	TELOPT_VMWARE
};
#define SIM_NOPTS	(sizeof sim_opts)

/* KNOWN-SUBOPTIONS-1 exactly as ESXi sends it. */
static const u_char sim_ks1[] = {
	0x00, 0x01, 0x02, 0x03, 0x28, 0x29, 0x2b, 0x2c, 0x2d, 0x2e, 0x30,
	0x46, 0x47, 0x49, 0x50, 0x51, 0x54, 0x55, 0x56, 0x57, 0x52, 0x53
};

enum sc_role {
	ROLE_SRC,		/* The VM's own connection. */
	ROLE_DST		/* A vMotion destination. */
};

enum sc_pstate {
	PS_DATA,
	PS_IAC,
	PS_VERB,
	PS_SB,
	PS_SB_IAC
};

struct svm;
struct smv;

struct sconn {
	struct svm		*vm;
	int			 fd;
	u_char			 role;
	u_char			 pstate;	/* enum sc_pstate */
	u_char			 verb;
	u_char			 us[SIM_NOPTS];
	u_char			 him[SIM_NOPTS];
	int			 flags;
#define SC_CONNECTING	0x1
#define SC_CORK		0x2	/* Collect output, flush later. */
#define SC_AUTHDONE	0x4	/* Server answered WILL AUTH. */
#define SC_E8HELD	0x8	/* Server's DO e8 waits for AUTH. */
#define SC_E8		0x10	/* Extension enabled, KS1 sent. */
#define SC_KS2		0x20
#define SC_KS1HELD	0x40	/* --ks1-after-ks2 and no KS2 yet. */
#define SC_COMPORT	0x80	/* WILL COM-PORT sent. */
#define SC_PENDING	0x100	/* Counted in sim_pending. */
#define SC_DEAD		0x200
	struct event		*ev;
	u_char			*out;
	size_t			 outoff;
	size_t			 outlen;
	size_t			 outsize;
	u_char			*sb;
	size_t			 sblen;
	size_t			 sbsize;
	TAILQ_ENTRY(sconn)	 rentry;	/* Reap queue. */
};
TAILQ_HEAD(sconn_list, sconn);

struct svm {
	u_int			 idx;
	char			*name;
	char			*uri;		/* NULL: the default. */
	u_char			 uuid[16];
	u_char			 namelen;
	int			 flags;
#define VM_READY	0x1
#define VM_PAUSED	0x2	/* vMotion: guest stunned. */
#define VM_QUEUED	0x4	/* On the connect queue. */
#define VM_STREAMING	0x8	/* On the stream list. */
#define VM_AUTO		0x10	/* Created by -n. */
#define VM_BINARY	0x20	/* Binary pattern. */
#define VM_EVERREADY	0x40
	struct sconn		*conn;
	struct smv		*mv;
	uint64_t		 off;		/* Next pattern byte. */
	uint64_t		 burst;		/* Burst bytes still to write. */
	uint64_t		 acc;		/* Rate credit, bytes * 1e6. */
	uint32_t		 rate;		/* Pattern bytes per second. */
	uint64_t		 sent;		/* Guest bytes sent, unescaped. */
	uint64_t		 recv;		/* In-band bytes received. */
	u_char			*token;		/* Last good seq || secret. */
	size_t			 tokenlen;
	TAILQ_ENTRY(svm)	 qentry;
	TAILQ_ENTRY(svm)	 sentry;
};
TAILQ_HEAD(svm_list, svm);

enum smv_variant {
	MVV_OK,
	MVV_NODEST,
	MVV_BADSECRET,
	MVV_DESTDROP,
	MVV_DOUBLEBEGIN,
	MVV_REPLAY,
	MVV_TIMEOUT,
	MVV_MAX
};
static const char *smv_variants[MVV_MAX] = {
	"ok", "no-dest", "bad-secret", "dest-drop", "double-begin", "replay",
	"timeout"
};

enum smv_order {
	MVO_FINFIRST,
	MVO_COMPLETEFIRST,
	MVO_SIMULTANEOUS,
	MVO_MAX
};
static const char *smv_orders[MVO_MAX] = {
	"fin-first", "complete-first", "simultaneous"
};

enum smv_state {
	MVS_ANSWER,		/* BEGIN sent, want GOAHEAD/NOTNOW. */
	MVS_NOTNOW2,		/* Second BEGIN sent, want NOTNOW. */
	MVS_DELAY,		/* GOAHEAD got, destination not yet started. */
	MVS_PEEROK,		/* Destination connecting, want PEER-OK. */
	MVS_SWITCH,		/* First of FIN/COMPLETE done, gap running. */
	MVS_ABORTING		/* Failed; ABORT after the gap. */
};

struct smv {
	struct svm		*vm;
	u_char			 variant;
	u_char			 order;
	u_char			 state;
	int			 flags;
#define MV_GOAHEAD	0x1	/* GOAHEAD received: ABORT needed on failure. */
#define MV_OK		0x2	/* Result if we end up aborting. */
	u_char			 seq[32];
	size_t			 seqlen;
	u_char			 seq2[32];
	u_char			 key[SIM_KEY_MAX];
	size_t			 keylen;
	struct sconn		*dst;
	struct event		*timer;
	struct sockaddr_storage	 dest;
	socklen_t		 destlen;
	u_int			 timeout;	/* ms */
	u_int			 delay;		/* ms */
	u_int			 gap;		/* ms */
	uint64_t		 tbegin;
	uint64_t		 tpeer;
	const char		*detail;
};

static struct event_base	*sim_base;
static struct sockaddr_storage	 sim_server;
static socklen_t		 sim_serverlen;
static struct sockaddr_storage	 sim_dest;
static socklen_t		 sim_destlen;
static struct sockaddr_storage	*sim_binds;
static u_int			 sim_nbinds;
static u_int			 sim_nextbind;
static struct svm		**sim_vms;
static u_int			 sim_nvms;
static struct svm_list		 sim_connq = TAILQ_HEAD_INITIALIZER(sim_connq);
static struct svm_list		 sim_streams =
				    TAILQ_HEAD_INITIALIZER(sim_streams);
static struct sconn_list	 sim_reapq = TAILQ_HEAD_INITIALIZER(sim_reapq);
static struct event		*sim_reap_ev;
static struct event		*sim_tick_ev;
static struct event		*sim_connq_ev;
static struct event		*sim_stdin_ev;
static uint64_t			 sim_tick_last;
static u_int			 sim_pending;
static u_int			 sim_max_pending = 256;
static u_int			 sim_connect_rate;	/* Per second, 0 = any. */
static uint64_t			 sim_connect_acc;
static uint64_t			 sim_connect_last;
static const char		*sim_uri = "vSPC.py";
static int			 sim_binary;
static uint32_t			 sim_rate;
static int			 sim_quiet;
static int			 sim_trace;
static int			 sim_stay;
static int			 sim_ks1_after_ks2;
static int			 sim_unprompted;
static u_int			 sim_auto_total;
static u_int			 sim_auto_ready;
static u_int			 sim_auto_failed;
static int			 sim_auto_reported;
static uint64_t			 sim_auto_start;
static char			*sim_hexbuf[2];
static size_t			 sim_hexsize[2];
static int			 sim_hexnext;

static void	sc_flush(struct sconn *);
static void	sc_close(struct sconn *, const char *);
static void	svm_pump(struct svm *);
static void	svm_resume(struct svm *);
static void	smv_finish(struct smv *, int, const char *);
static void	smv_fail(struct smv *, int, const char *);
static void	smv_on_dst_closed(struct smv *, const char *);
static void	smv_on_src_closed(struct smv *);
static void	sim_connq_pump(void);

/* Print one event line and flush it. */
static void __attribute__((__format__ (printf, 1, 2)))
ev_print(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (fflush(stdout) == EOF)
		exit(1);
}

static uint64_t
now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static struct timeval *
ms_tv(struct timeval *tv, u_int ms)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
	return (tv);
}

/*
 * Lower-case hex of buf in one of two shared buffers (so one event line
 * can hold two), valid until the next call but one.
 */
static const char *
hex(const u_char *buf, size_t len)
{
	static const char	 digits[] = "0123456789abcdef";
	size_t			 i;
	int			 b = sim_hexnext;
	char			*out;

	sim_hexnext = !sim_hexnext;
	if (sim_hexsize[b] < len * 2 + 1) {
		sim_hexsize[b] = len * 2 + 1;
		free(sim_hexbuf[b]);
		sim_hexbuf[b] = xmalloc(sim_hexsize[b]);
	}
	out = sim_hexbuf[b];
	for (i = 0; i < len; i++) {
		out[2 * i] = digits[buf[i] >> 4];
		out[2 * i + 1] = digits[buf[i] & 0xf];
	}
	out[2 * len] = '\0';
	return (out);
}

static int
unhex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

/*
 * Decode hex into out (at most max bytes), skipping spaces and dashes.
 * Return the length or -1.
 */
static ssize_t
unhex(const char *s, u_char *out, size_t max)
{
	size_t	n = 0;
	int	hi = -1, d;

	for (; *s != '\0'; s++) {
		if (*s == ' ' || *s == '-' || *s == ':')
			continue;
		if ((d = unhex_digit((u_char)*s)) == -1)
			return (-1);
		if (hi == -1) {
			hi = d;
			continue;
		}
		if (n == max)
			return (-1);
		out[n++] = (hi << 4) | d;
		hi = -1;
	}
	if (hi != -1)
		return (-1);
	return ((ssize_t)n);
}

/* Parse HOST:PORT (or [V6]:PORT) into ss. */
static int
parse_addr(const char *arg, struct sockaddr_storage *ss, socklen_t *len,
    int passive)
{
	struct addrinfo	 hints, *res;
	char		*s, *host, *port;
	int		 error;

	s = xstrdup(arg);
	if (s[0] == '[') {
		host = s + 1;
		if ((port = strchr(host, ']')) == NULL) {
			free(s);
			return (-1);
		}
		*port++ = '\0';
		if (*port == ':')
			port++;
		else if (*port == '\0')
			port = NULL;
		else {
			free(s);
			return (-1);
		}
	} else if ((port = strrchr(s, ':')) != NULL) {
		*port++ = '\0';
		host = s;
	} else {
		host = s;
		port = NULL;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (passive)
		hints.ai_flags = AI_NUMERICHOST;
	error = getaddrinfo(host, port != NULL ? port : "0", &hints, &res);
	free(s);
	if (error != 0)
		return (-1);
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return (0);
}

/* Parse a numeric source address (port 0) for bind(). */
static int
parse_bind(const char *a, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, a, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return (0);
	}
	if (inet_pton(AF_INET6, a, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		return (0);
	}
	return (-1);
}

/*
 * Pattern generation.  Text: line k of VM "name" is "name %010k\r\n"
 * (k modulo 10^10).  Binary: 8-byte word k is splitmix64 of
 * idx * C1 + (k + 1) * C2, little-endian, each byte passed through
 * pat_map so that 0xff, 0x00, 0x11 and 0x0d are frequent.  Both are
 * documented in README and recomputed by pattern.py.
 */
static u_char	pat_map[256];

static void
pat_init(void)
{
	int	i;

	for (i = 0; i < 256; i++) {
		if (i < 8)
			pat_map[i] = 0xff;
		else if (i < 12)
			pat_map[i] = 0x00;
		else if (i < 14)
			pat_map[i] = 0x11;
		else if (i < 16)
			pat_map[i] = 0x0d;
		else
			pat_map[i] = i;
	}
}

static uint64_t
pat_word(u_int idx, uint64_t k)
{
	uint64_t	z;

	z = (uint64_t)idx * 0xd1b54a32d192ed03ULL +
	    (k + 1) * 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (z ^ (z >> 31));
}

static void
pat_fill(struct svm *vm, uint64_t off, u_char *buf, size_t n)
{
	char		 line[SIM_NAME_MAX + 16];
	uint64_t	 w, k, llen, p;
	size_t		 take;
	u_int		 i;

	if (vm->flags & VM_BINARY) {
		while (n > 0) {
			w = pat_word(vm->idx, off >> 3);
			for (i = off & 7; i < 8 && n > 0; i++, n--, off++)
				*buf++ = pat_map[(w >> (8 * i)) & 0xff];
		}
		return;
	}
	llen = vm->namelen + 13;
	while (n > 0) {
		k = off / llen;
		p = off % llen;
		snprintf(line, sizeof line, "%s %010" PRIu64 "\r\n", vm->name,
		    (uint64_t)(k % 10000000000ULL));
		take = llen - p;
		if (take > n)
			take = n;
		memcpy(buf, line + p, take);
		buf += take;
		off += take;
		n -= take;
	}
}

/* Append src to dst doubling every IAC; return the bytes written. */
static size_t
iac_escape(u_char *dst, const u_char *src, size_t len)
{
	size_t	i, n = 0;

	for (i = 0; i < len; i++) {
		dst[n++] = src[i];
		if (src[i] == TEL_IAC)
			dst[n++] = TEL_IAC;
	}
	return (n);
}

static void
uuid_esxi(const u_char *uuid, u_char x, char *out)
{
	int	i;

	for (i = 0; i < 16; i++) {
		sprintf(out, "%02x", uuid[i] ^ x);
		out += 2;
		if (i != 15)
			*out++ = i == 7 ? '-' : ' ';
	}
	*out = '\0';
}

static int
sim_optidx(u_char opt)
{
	u_int	i;

	for (i = 0; i < SIM_NOPTS; i++)
		if (sim_opts[i] == opt)
			return (i);
	return (-1);
}

/*
 * Connections: output, negotiation, the VMware extension.
 */

static void	sc_event(evutil_socket_t, short, void *);

/* Watch for reading, and for writing if write is set. */
static void
sc_arm(struct sconn *c, int write)
{
	short	what;

	if (c->flags & SC_DEAD)
		return;
	what = EV_READ | EV_PERSIST | (write ? EV_WRITE : 0);
	if (event_pending(c->ev, EV_READ | EV_WRITE, NULL) &&
	    event_get_events(c->ev) == what)
		return;
	event_del(c->ev);
	event_assign(c->ev, sim_base, c->fd, what, sc_event, c);
	event_add(c->ev, NULL);
}

static void
sc_append(struct sconn *c, const u_char *buf, size_t len)
{
	if (c->outoff > 0 && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + len > c->outsize) {
		if (c->outoff > 0) {
			memmove(c->out, c->out + c->outoff,
			    c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		if (c->outlen + len > c->outsize) {
			c->outsize = c->outlen + len + 1024;
			c->out = xreallocarray(c->out, 1, c->outsize);
		}
	}
	memcpy(c->out + c->outlen, buf, len);
	c->outlen += len;
}

/* Queue bytes on a connection and write what the kernel takes. */
static void
sc_out(struct sconn *c, const u_char *buf, size_t len)
{
	ssize_t	n;

	if (c->flags & SC_DEAD || len == 0)
		return;
	if (sim_trace)
		ev_print("tx %u %s %s", c->vm->idx,
		    c->role == ROLE_SRC ? "src" : "dst", hex(buf, len));
	if ((c->flags & (SC_CORK | SC_CONNECTING)) ||
	    c->outlen - c->outoff > 0) {
		sc_append(c, buf, len);
		return;
	}
	n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			sc_close(c, "write-error");
			return;
		}
		n = 0;
	}
	if ((size_t)n < len) {
		sc_append(c, buf + n, len - n);
		sc_arm(c, 1);
	}
}

static void
sc_cork(struct sconn *c)
{
	c->flags |= SC_CORK;
}

static void
sc_uncork(struct sconn *c)
{
	c->flags &= ~SC_CORK;
	sc_flush(c);
}

static void
sc_flush(struct sconn *c)
{
	ssize_t	n;

	if (c->flags & (SC_DEAD | SC_CONNECTING))
		return;
	while (c->outlen > c->outoff) {
		n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				sc_arm(c, 1);
				return;
			}
			sc_close(c, "write-error");
			return;
		}
		c->outoff += n;
	}
	/* Drained: give the memory back, most connections idle. */
	free(c->out);
	c->out = NULL;
	c->outoff = c->outlen = c->outsize = 0;
	sc_arm(c, 0);
}

static void
sc_cmd(struct sconn *c, u_char verb, u_char opt)
{
	u_char	buf[3] = { TEL_IAC, verb, opt };

	sc_out(c, buf, 3);
}

/* Send IAC SB e8 cmd <payload escaped> IAC SE. */
static void
sc_vmw(struct sconn *c, u_char cmd, const u_char *payload, size_t len)
{
	u_char	 buf[2 * SIM_SB_MAX + 8];
	size_t	 n = 0;

	if (len > SIM_SB_MAX)
		len = SIM_SB_MAX;
	buf[n++] = TEL_IAC;
	buf[n++] = TEL_SB;
	buf[n++] = TELOPT_VMWARE;
	buf[n++] = cmd;
	n += iac_escape(buf + n, payload, len);
	buf[n++] = TEL_IAC;
	buf[n++] = TEL_SE;
	sc_out(c, buf, n);
}

static const char *
sc_rolename(struct sconn *c)
{
	return (c->role == ROLE_SRC ? "src" : "dst");
}

static void
sc_not_pending(struct sconn *c)
{
	if (c->flags & SC_PENDING) {
		c->flags &= ~SC_PENDING;
		sim_pending--;
		sim_connq_pump();
	}
}

static void
sim_check_allready(void)
{
	uint64_t	us;
	double		secs;

	if (sim_auto_reported || sim_auto_total == 0 ||
	    sim_auto_ready + sim_auto_failed < sim_auto_total)
		return;
	sim_auto_reported = 1;
	us = now_us() - sim_auto_start;
	secs = us / 1e6;
	if (sim_auto_failed == 0)
		ev_print("allready %u %.3f %.0f", sim_auto_ready, secs,
		    secs > 0 ? sim_auto_ready / secs : 0.0);
	else
		ev_print("allready %u %.3f %.0f failed=%u", sim_auto_ready,
		    secs, secs > 0 ? sim_auto_ready / secs : 0.0,
		    sim_auto_failed);
}

/* The extension is up: identify (source) or claim the vMotion (dest). */
static void
sc_e8_start(struct sconn *c)
{
	struct svm	*vm = c->vm;
	struct smv	*mv = vm->mv;
	const char	*uri;
	u_char		 buf[SIM_SB_MAX];
	size_t		 n;
	int		 ci;

	if (sim_ks1_after_ks2 && !(c->flags & SC_KS2)) {
		c->flags |= SC_KS1HELD;
		return;
	}
	c->flags &= ~SC_KS1HELD;
	c->flags |= SC_E8;
	sc_vmw(c, VMW_KNOWN_SUBOPTIONS_1, sim_ks1, sizeof sim_ks1);
	if (c->role == ROLE_SRC) {
		uri = vm->uri != NULL ? vm->uri : sim_uri;
		n = strlen(uri);
		if (n > sizeof buf - 1)
			n = sizeof buf - 1;
		buf[0] = 'S';
		memcpy(buf + 1, uri, n);
		sc_vmw(c, VMW_DO_PROXY, buf, n + 1);
		return;
	}
	if (mv == NULL || mv->dst != c)
		return;
	sc_vmw(c, VMW_VMOTION_PEER, mv->key, mv->keylen);
	ci = sim_optidx(TELOPT_COMPORT);
	if (c->us[ci] == TQ_NO && !(c->flags & SC_COMPORT)) {
		c->us[ci] = TQ_WANTYES;
		c->flags |= SC_COMPORT;
		sc_cmd(c, TEL_WILL, TELOPT_COMPORT);
	}
	mv->tpeer = now_us();
	ev_print("peer %u %s", vm->idx, hex(mv->key, mv->keylen));
}

/* The server answered WILL AUTH: release WILL e8. */
static void
sc_auth_done(struct sconn *c)
{
	int	ei = sim_optidx(TELOPT_VMWARE);

	if (c->flags & SC_AUTHDONE)
		return;
	c->flags |= SC_AUTHDONE;
	if (sim_unprompted) {
		/* Passive-proxy variant (protocol.md section 5, step 2). */
		if (c->us[sim_optidx(TELOPT_BINARY)] == TQ_NO) {
			c->us[sim_optidx(TELOPT_BINARY)] = TQ_WANTYES;
			sc_cmd(c, TEL_WILL, TELOPT_BINARY);
		}
		if (c->him[sim_optidx(TELOPT_BINARY)] == TQ_NO) {
			c->him[sim_optidx(TELOPT_BINARY)] = TQ_WANTYES;
			sc_cmd(c, TEL_DO, TELOPT_BINARY);
		}
		if (c->us[sim_optidx(TELOPT_SGA)] == TQ_NO) {
			c->us[sim_optidx(TELOPT_SGA)] = TQ_WANTYES;
			sc_cmd(c, TEL_WILL, TELOPT_SGA);
		}
		if (c->him[sim_optidx(TELOPT_SGA)] == TQ_NO) {
			c->him[sim_optidx(TELOPT_SGA)] = TQ_WANTYES;
			sc_cmd(c, TEL_DO, TELOPT_SGA);
		}
	}
	if (c->flags & SC_E8HELD) {
		c->flags &= ~SC_E8HELD;
		c->us[ei] = TQ_YES;
		sc_cmd(c, TEL_WILL, TELOPT_VMWARE);
		sc_e8_start(c);
	} else if (c->us[ei] == TQ_NO) {
		c->us[ei] = TQ_WANTYES;
		sc_cmd(c, TEL_WILL, TELOPT_VMWARE);
	}
}

/* One WILL/WONT/DO/DONT from the server, RFC 1143 style. */
static void
sc_option(struct sconn *c, u_char verb, u_char opt)
{
	int	 i = sim_optidx(opt);
	u_char	*q;

	switch (verb) {
	case TEL_WILL:
		if (i == -1) {
			sc_cmd(c, TEL_DONT, opt);
			return;
		}
		q = &c->him[i];
		if (*q == TQ_NO) {
			if (opt == TELOPT_BINARY || opt == TELOPT_SGA ||
			    opt == TELOPT_ECHO) {
				*q = TQ_YES;
				sc_cmd(c, TEL_DO, opt);
			} else
				sc_cmd(c, TEL_DONT, opt);
		} else if (*q == TQ_WANTYES)
			*q = TQ_YES;
		else if (*q == TQ_WANTNO)
			*q = TQ_NO;
		return;
	case TEL_WONT:
		if (i == -1)
			return;
		q = &c->him[i];
		if (*q == TQ_YES) {
			*q = TQ_NO;
			sc_cmd(c, TEL_DONT, opt);
		} else
			*q = TQ_NO;
		return;
	case TEL_DO:
		if (i == -1) {
			sc_cmd(c, TEL_WONT, opt);
			return;
		}
		q = &c->us[i];
		if (*q == TQ_YES)
			return;
		if (*q == TQ_WANTNO) {
			*q = TQ_NO;
			return;
		}
		if (*q == TQ_WANTYES) {
			*q = TQ_YES;
			if (opt == TELOPT_AUTH) {
				ev_print("error %u server-did-auth",
				    c->vm->idx);
				sc_auth_done(c);
			} else if (opt == TELOPT_VMWARE)
				sc_e8_start(c);
			return;
		}
		/* TQ_NO: a request from the server. */
		if (opt == TELOPT_VMWARE) {
			if (!(c->flags & SC_AUTHDONE)) {
				c->flags |= SC_E8HELD;
				return;
			}
			*q = TQ_YES;
			sc_cmd(c, TEL_WILL, opt);
			sc_e8_start(c);
			return;
		}
		if (opt == TELOPT_BINARY || opt == TELOPT_SGA ||
		    opt == TELOPT_COMPORT) {
			*q = TQ_YES;
			if (opt == TELOPT_COMPORT)
				c->flags |= SC_COMPORT;
			sc_cmd(c, TEL_WILL, opt);
		} else
			sc_cmd(c, TEL_WONT, opt);
		return;
	case TEL_DONT:
		if (i == -1)
			return;
		q = &c->us[i];
		if (*q == TQ_YES) {
			*q = TQ_NO;
			sc_cmd(c, TEL_WONT, opt);
		} else {
			if (*q == TQ_WANTYES && opt == TELOPT_VMWARE)
				ev_print("error %u server-refused-e8",
				    c->vm->idx);
			*q = TQ_NO;
		}
		if (opt == TELOPT_AUTH)
			sc_auth_done(c);
		else if (opt == TELOPT_VMWARE)
			c->flags &= ~SC_E8HELD;
		return;
	}
}

static void
sc_ready(struct sconn *c)
{
	struct svm	*vm = c->vm;
	int		 ci = sim_optidx(TELOPT_COMPORT);

	if (vm->flags & VM_READY)
		return;
	vm->flags |= VM_READY;
	if (!sim_quiet)
		ev_print("ready %u %s %s", vm->idx, vm->name,
		    hex(vm->uuid, 16));
	if ((vm->flags & VM_AUTO) && !(vm->flags & VM_EVERREADY)) {
		sim_auto_ready++;
		sim_check_allready();
	}
	vm->flags |= VM_EVERREADY;
	sc_not_pending(c);
	/* ESXi sends WILL COM-PORT once the proxy is up (capture C1). */
	if (c->us[ci] == TQ_NO && !(c->flags & SC_COMPORT)) {
		c->us[ci] = TQ_WANTYES;
		c->flags |= SC_COMPORT;
		sc_cmd(c, TEL_WILL, TELOPT_COMPORT);
	}
	svm_pump(vm);
}

static void	smv_on_goahead(struct smv *, const u_char *, size_t);
static void	smv_on_notnow(struct smv *, const u_char *, size_t);
static void	smv_on_peerok(struct smv *, const u_char *, size_t);

/* A complete IAC SB ... IAC SE from the server. */
static void
sc_subneg(struct sconn *c)
{
	struct svm	*vm = c->vm;
	struct smv	*mv = vm->mv;
	char		 text[64];
	const u_char	*p;
	size_t		 plen;
	u_char		 cmd;

	if (c->sblen == 0) {
		ev_print("error %u empty-sb", vm->idx);
		return;
	}
	if (c->sb[0] != TELOPT_VMWARE)
		return;		/* COM-PORT etc.: not implemented. */
	if (c->sblen < 2) {
		ev_print("error %u empty-vmware-sb", vm->idx);
		return;
	}
	cmd = c->sb[1];
	p = c->sb + 2;
	plen = c->sblen - 2;
	switch (cmd) {
	case VMW_KNOWN_SUBOPTIONS_2:
		c->flags |= SC_KS2;
		if (!sim_quiet)
			ev_print("ks2 %u %s", vm->idx, hex(p, plen));
		if (c->flags & SC_KS1HELD)
			sc_e8_start(c);
		break;
	case VMW_GET_VM_VC_UUID:
		uuid_esxi(vm->uuid, 0, text);
		sc_vmw(c, VMW_VM_VC_UUID, (u_char *)text, strlen(text));
		break;
	case VMW_GET_VM_NAME:
		sc_vmw(c, VMW_VM_NAME, (u_char *)vm->name, vm->namelen);
		break;
	case VMW_GET_VM_BIOS_UUID:
		uuid_esxi(vm->uuid, 0x11, text);
		sc_vmw(c, VMW_VM_BIOS_UUID, (u_char *)text, strlen(text));
		break;
	case VMW_GET_VM_LOCATION_UUID:
		uuid_esxi(vm->uuid, 0x22, text);
		sc_vmw(c, VMW_VM_LOCATION_UUID, (u_char *)text,
		    strlen(text));
		break;
	case VMW_WILL_PROXY:
		if (c->role == ROLE_SRC && c == vm->conn)
			sc_ready(c);
		else
			ev_print("error %u will-proxy-on-%s", vm->idx,
			    sc_rolename(c));
		break;
	case VMW_WONT_PROXY:
		ev_print("error %u wont-proxy", vm->idx);
		break;
	case VMW_UNKNOWN_SUBOPTION_RCVD_2:
		ev_print("unknown2 %u %s %s", vm->idx, sc_rolename(c),
		    hex(p, plen));
		/* vSPC.py's way of refusing a PEER. */
		if (mv != NULL && mv->dst == c && mv->state == MVS_PEEROK &&
		    plen == 1 && p[0] == VMW_VMOTION_PEER)
			smv_on_dst_closed(mv, "peer-refused");
		break;
	case VMW_VMOTION_GOAHEAD:
	case VMW_VMOTION_NOTNOW:
		if (mv == NULL || c != vm->conn) {
			ev_print("error %u unexpected-%s %s", vm->idx,
			    cmd == VMW_VMOTION_GOAHEAD ? "goahead" : "notnow",
			    hex(p, plen));
			break;
		}
		if (cmd == VMW_VMOTION_GOAHEAD)
			smv_on_goahead(mv, p, plen);
		else
			smv_on_notnow(mv, p, plen);
		break;
	case VMW_VMOTION_PEER_OK:
		if (mv == NULL || mv->dst != c) {
			ev_print("error %u unexpected-peerok %s", vm->idx,
			    hex(p, plen));
			break;
		}
		smv_on_peerok(mv, p, plen);
		break;
	case VMW_KNOWN_SUBOPTIONS_1:
	case VMW_UNKNOWN_SUBOPTION_RCVD_1:
	case VMW_VMOTION_BEGIN:
	case VMW_VMOTION_PEER:
	case VMW_VMOTION_COMPLETE:
	case VMW_VMOTION_ABORT:
	case VMW_DO_PROXY:
	case VMW_VM_VC_UUID:
	case VMW_VM_NAME:
	case VMW_VM_BIOS_UUID:
	case VMW_VM_LOCATION_UUID:
		ev_print("error %u wrong-direction %02x", vm->idx, cmd);
		break;
	default:
		ev_print("unknown %u %02x", vm->idx, cmd);
		sc_vmw(c, VMW_UNKNOWN_SUBOPTION_RCVD_1, &cmd, 1);
		break;
	}
}

/* Decode server bytes; report in-band data as one recv event. */
static void
sc_input(struct sconn *c, const u_char *buf, size_t len)
{
	struct svm	*vm = c->vm;
	u_char		*data;
	size_t		 i, n = 0;
	u_char		 ch;

	data = xmalloc(len);
	sc_cork(c);
	for (i = 0; i < len && !(c->flags & SC_DEAD); i++) {
		ch = buf[i];
		switch (c->pstate) {
		case PS_DATA:
			if (ch == TEL_IAC)
				c->pstate = PS_IAC;
			else
				data[n++] = ch;
			break;
		case PS_IAC:
			c->pstate = PS_DATA;
			switch (ch) {
			case TEL_IAC:
				data[n++] = ch;
				break;
			case TEL_WILL:
			case TEL_WONT:
			case TEL_DO:
			case TEL_DONT:
				c->verb = ch;
				c->pstate = PS_VERB;
				break;
			case TEL_SB:
				c->sblen = 0;
				c->pstate = PS_SB;
				break;
			case TEL_SE:
				ev_print("error %u se-outside-sb", vm->idx);
				break;
			default:
				break;	/* NOP, functions: ignored. */
			}
			break;
		case PS_VERB:
			c->pstate = PS_DATA;
			sc_option(c, c->verb, ch);
			break;
		case PS_SB:
			if (ch == TEL_IAC) {
				c->pstate = PS_SB_IAC;
				break;
			}
			goto sbbyte;
		case PS_SB_IAC:
			if (ch == TEL_SE) {
				c->pstate = PS_DATA;
				sc_subneg(c);
				break;
			}
			if (ch != TEL_IAC) {
				ev_print("error %u bad-iac-in-sb %02x",
				    vm->idx, ch);
				sc_close(c, "protocol-error");
				break;
			}
			c->pstate = PS_SB;
		sbbyte:
			if (c->sblen == SIM_SB_MAX) {
				ev_print("error %u sb-overflow", vm->idx);
				sc_close(c, "protocol-error");
				break;
			}
			if (c->sblen == c->sbsize) {
				c->sbsize = c->sbsize == 0 ? 64 :
				    c->sbsize * 2;
				c->sb = xreallocarray(c->sb, 1, c->sbsize);
			}
			c->sb[c->sblen++] = ch;
			break;
		}
	}
	if (n > 0) {
		vm->recv += n;
		ev_print("recv %u %s", vm->idx, hex(data, n));
	}
	free(data);
	if (c->sbsize > 256 && c->pstate != PS_SB && c->pstate != PS_SB_IAC) {
		free(c->sb);
		c->sb = NULL;
		c->sbsize = c->sblen = 0;
	}
	sc_uncork(c);
}

static void
sc_connected(struct sconn *c)
{
	int	ai = sim_optidx(TELOPT_AUTH);

	c->flags &= ~SC_CONNECTING;
	if (!sim_quiet)
		ev_print("connected %u %s", c->vm->idx, sc_rolename(c));
	/* The first thing ESXi says on every connection. */
	c->us[ai] = TQ_WANTYES;
	sc_cork(c);
	sc_cmd(c, TEL_WILL, TELOPT_AUTH);
	sc_uncork(c);
}

static void
sc_event(evutil_socket_t fd, short what, void *arg)
{
	struct sconn	*c = arg;
	u_char		 buf[65536];
	socklen_t	 len;
	ssize_t		 n;
	int		 error;

	if (c->flags & SC_CONNECTING) {
		error = 0;
		len = sizeof error;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == -1)
			error = errno;
		if (error != 0) {
			ev_print("error %u connect %s", c->vm->idx,
			    strerror(error));
			sc_close(c, "connect-failed");
			return;
		}
		sc_connected(c);
		return;
	}
	if (what & EV_WRITE) {
		sc_flush(c);
		if (c->flags & SC_DEAD)
			return;
		if (c->outlen == c->outoff && c == c->vm->conn)
			svm_pump(c->vm);
		if (c->flags & SC_DEAD)
			return;
	}
	if (!(what & EV_READ))
		return;
	n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		sc_close(c, errno == ECONNRESET ? "reset" : "read-error");
		return;
	}
	if (n == 0) {
		sc_close(c, "eof");
		return;
	}
	if (sim_trace)
		ev_print("rx %u %s %s", c->vm->idx, sc_rolename(c),
		    hex(buf, n));
	sc_input(c, buf, n);
}

/* Open a connection for vm to ss; NULL if socket() fails. */
static struct sconn *
sc_connect(struct svm *vm, int role, struct sockaddr_storage *ss,
    socklen_t sslen)
{
	struct sconn		*c;
	struct sockaddr_storage	*b;
	int			 fd, one = 1;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		ev_print("error %u socket %s", vm->idx, strerror(errno));
		return (NULL);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (sim_nbinds > 0) {
		b = &sim_binds[sim_nextbind++ % sim_nbinds];
#ifdef IP_BIND_ADDRESS_NO_PORT
		/* Let connect() pick the port per 4-tuple. */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof one);
#endif
		if (bind(fd, (struct sockaddr *)b, b->ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) :
		    sizeof(struct sockaddr_in6)) == -1) {
			ev_print("error %u bind %s", vm->idx, strerror(errno));
			close(fd);
			return (NULL);
		}
	}
	c = xcalloc(1, sizeof *c);
	c->vm = vm;
	c->fd = fd;
	c->role = role;
	c->flags = SC_CONNECTING;
	c->ev = event_new(sim_base, fd, EV_WRITE, sc_event, c);
	if (role == ROLE_SRC) {
		vm->conn = c;
		c->flags |= SC_PENDING;
		sim_pending++;
	}
	if (connect(fd, (struct sockaddr *)ss, sslen) == -1 &&
	    errno != EINPROGRESS) {
		ev_print("error %u connect %s", vm->idx, strerror(errno));
		c->flags &= ~SC_CONNECTING;
		sc_close(c, "connect-failed");
		return (c);
	}
	event_add(c->ev, NULL);
	return (c);
}

static void
sim_reap(evutil_socket_t fd, short what, void *arg)
{
	struct sconn	*c;

	while ((c = TAILQ_FIRST(&sim_reapq)) != NULL) {
		TAILQ_REMOVE(&sim_reapq, c, rentry);
		event_free(c->ev);
		free(c->out);
		free(c->sb);
		free(c);
	}
}

/*
 * Close a connection (FIN) and tell whoever cares.  The memory is freed
 * by the reaper at the end of the loop turn.
 */
static void
sc_close(struct sconn *c, const char *reason)
{
	struct svm	*vm = c->vm;
	struct smv	*mv = vm->mv;

	if (c->flags & SC_DEAD)
		return;
	c->flags |= SC_DEAD;
	event_del(c->ev);
	close(c->fd);
	c->fd = -1;
	TAILQ_INSERT_TAIL(&sim_reapq, c, rentry);
	event_active(sim_reap_ev, EV_TIMEOUT, 0);
	ev_print("closed %u %s %s", vm->idx, reason, sc_rolename(c));

	if (c->flags & SC_PENDING) {
		if ((vm->flags & VM_AUTO) && !(vm->flags & VM_EVERREADY)) {
			sim_auto_failed++;
			sim_check_allready();
		}
		sc_not_pending(c);
	}
	if (c == vm->conn) {
		vm->conn = NULL;
		vm->flags &= ~VM_READY;
		if (mv != NULL)
			smv_on_src_closed(mv);
	} else if (mv != NULL && mv->dst == c)
		smv_on_dst_closed(mv, reason);
}

/*
 * VMs: the pattern stream.
 */

static void
sim_tick(evutil_socket_t fd, short what, void *arg)
{
	struct svm	*vm, *next;
	uint64_t	 now = now_us(), dt, cap;

	dt = now - sim_tick_last;
	sim_tick_last = now;
	TAILQ_FOREACH_SAFE(vm, &sim_streams, sentry, next) {
		if (vm->rate == 0) {
			TAILQ_REMOVE(&sim_streams, vm, sentry);
			vm->flags &= ~VM_STREAMING;
			vm->acc = 0;
			continue;
		}
		/* At most 200 ms of credit: a blocked VM does not burst. */
		cap = (uint64_t)vm->rate * 200000;
		if (cap < 1000000)
			cap = 1000000;
		vm->acc += (uint64_t)vm->rate * dt;
		if (vm->acc > cap)
			vm->acc = cap;
		svm_pump(vm);
	}
	if (TAILQ_EMPTY(&sim_streams))
		evtimer_del(sim_tick_ev);
}

static void
svm_set_rate(struct svm *vm, uint32_t rate)
{
	struct timeval	tv;

	vm->rate = rate;
	if (rate == 0 || (vm->flags & VM_STREAMING))
		return;
	vm->flags |= VM_STREAMING;
	vm->acc = 0;
	TAILQ_INSERT_TAIL(&sim_streams, vm, sentry);
	if (!evtimer_pending(sim_tick_ev, NULL)) {
		sim_tick_last = now_us();
		tv.tv_sec = 0;
		tv.tv_usec = SIM_TICK_US;
		event_add(sim_tick_ev, &tv);
	}
}

/* Write pattern bytes (burst first, then rate credit) while writable. */
static void
svm_pump(struct svm *vm)
{
	struct sconn	*c = vm->conn;
	u_char		 raw[SIM_CHUNK], esc[2 * SIM_CHUNK];
	uint64_t	 want, take;
	size_t		 n, elen;
	int		 rounds = 0;

	if (c == NULL || (c->flags & (SC_DEAD | SC_CONNECTING)) ||
	    !(vm->flags & VM_READY) || (vm->flags & VM_PAUSED))
		return;
	while (c->outlen == c->outoff && !(c->flags & SC_DEAD)) {
		want = vm->burst + vm->acc / 1000000;
		if (want == 0)
			break;
		if (++rounds > SIM_PUMP_MAX) {
			/* Still writable: come back next turn, let others run. */
			sc_arm(c, 1);
			break;
		}
		n = want > SIM_CHUNK ? SIM_CHUNK : want;
		pat_fill(vm, vm->off, raw, n);
		elen = iac_escape(esc, raw, n);
		vm->off += n;
		vm->sent += n;
		take = 0;
		if (vm->burst > 0) {
			take = vm->burst < n ? vm->burst : n;
			vm->burst -= take;
			if (vm->burst == 0)
				ev_print("burstdone %u %" PRIu64, vm->idx,
				    vm->off);
		}
		vm->acc -= (n - take) * 1000000;
		sc_out(c, esc, elen);
	}
}

static void
svm_resume(struct svm *vm)
{
	vm->flags &= ~VM_PAUSED;
	svm_pump(vm);
}

static struct svm *
svm_get(const char *arg, int quiet)
{
	char		*end;
	unsigned long	 i;

	i = strtoul(arg, &end, 10);
	if (*arg == '\0' || *end != '\0' || i >= sim_nvms ||
	    sim_vms[i] == NULL) {
		if (!quiet)
			ev_print("error %s no-such-vm", arg);
		return (NULL);
	}
	return (sim_vms[i]);
}

static struct svm *
svm_add(u_int idx, const char *name, const u_char *uuid, const char *uri)
{
	struct svm	*vm;
	u_int		 n;

	if (idx >= sim_nvms) {
		n = sim_nvms == 0 ? 16 : sim_nvms;
		while (n <= idx)
			n *= 2;
		sim_vms = xreallocarray(sim_vms, n, sizeof *sim_vms);
		memset(sim_vms + sim_nvms, 0, (n - sim_nvms) *
		    sizeof *sim_vms);
		sim_nvms = n;
	}
	vm = xcalloc(1, sizeof *vm);
	vm->idx = idx;
	vm->name = xstrdup(name);
	vm->namelen = strlen(name);
	memcpy(vm->uuid, uuid, 16);
	if (uri != NULL)
		vm->uri = xstrdup(uri);
	if (sim_binary)
		vm->flags |= VM_BINARY;
	sim_vms[idx] = vm;
	return (vm);
}

static void
sim_connq_timer(evutil_socket_t fd, short what, void *arg)
{
	sim_connq_pump();
}

/* Start queued connects within the pending and rate limits. */
static void
sim_connq_pump(void)
{
	static int	 inpump;
	struct svm	*vm;
	struct timeval	 tv;
	uint64_t	 now;

	if (inpump)
		return;
	inpump = 1;
	if (sim_connect_rate > 0) {
		now = now_us();
		sim_connect_acc += (now - sim_connect_last) * sim_connect_rate;
		sim_connect_last = now;
		if (sim_connect_acc > (uint64_t)sim_connect_rate * 1000000 / 10
		    + 1000000)
			sim_connect_acc = (uint64_t)sim_connect_rate *
			    1000000 / 10 + 1000000;
	}
	while ((vm = TAILQ_FIRST(&sim_connq)) != NULL &&
	    sim_pending < sim_max_pending) {
		if (sim_connect_rate > 0) {
			if (sim_connect_acc < 1000000) {
				if (!evtimer_pending(sim_connq_ev, NULL)) {
					tv.tv_sec = 0;
					tv.tv_usec = 1000;
					evtimer_add(sim_connq_ev, &tv);
				}
				break;
			}
			sim_connect_acc -= 1000000;
		}
		TAILQ_REMOVE(&sim_connq, vm, qentry);
		vm->flags &= ~VM_QUEUED;
		if (sc_connect(vm, ROLE_SRC, &sim_server, sim_serverlen) ==
		    NULL && (vm->flags & VM_AUTO)) {
			sim_auto_failed++;
			sim_check_allready();
		}
	}
	inpump = 0;
}

static void
svm_connect(struct svm *vm)
{
	if (vm->conn != NULL || (vm->flags & VM_QUEUED)) {
		ev_print("error %u already-connected", vm->idx);
		return;
	}
	vm->flags |= VM_QUEUED;
	TAILQ_INSERT_TAIL(&sim_connq, vm, qentry);
	sim_connq_pump();
}

/*
 * vMotion.
 */

static void
smv_timer_set(struct smv *mv, u_int ms)
{
	struct timeval	tv;

	evtimer_add(mv->timer, ms_tv(&tv, ms));
}

/* Send ABORT on the source if it is still there. */
static void
smv_send_abort(struct smv *mv)
{
	struct sconn	*src = mv->vm->conn;

	if (src == NULL)
		return;
	sc_vmw(src, VMW_VMOTION_ABORT, NULL, 0);
	ev_print("abort %u", mv->vm->idx);
}

/* End the vMotion: report, free, let the guest run again. */
static void
smv_finish(struct smv *mv, int ok, const char *detail)
{
	struct svm	*vm = mv->vm;
	struct sconn	*dst = mv->dst;

	vm->mv = NULL;
	mv->dst = NULL;
	if (dst != NULL && dst != vm->conn)
		sc_close(dst, "vmotion-cleanup");
	ev_print("vmotion-done %u %s %s %s %" PRIu64, vm->idx,
	    smv_variants[mv->variant], ok ? "ok" : "fail", detail,
	    now_us() - mv->tbegin);
	event_free(mv->timer);
	free(mv);
	svm_resume(vm);
}

/*
 * The vMotion failed (or a failure variant got what it expected): drop
 * the destination, ABORT on the source if it had GOAHEAD (after the
 * gap), resume.
 */
static void
smv_fail(struct smv *mv, int ok, const char *detail)
{
	struct sconn	*dst = mv->dst;

	mv->dst = NULL;
	if (dst != NULL && dst != mv->vm->conn)
		sc_close(dst, "vmotion-failed");
	if (!(mv->flags & MV_GOAHEAD) || mv->vm->conn == NULL) {
		smv_finish(mv, ok, mv->vm->conn == NULL && (mv->flags &
		    MV_GOAHEAD) ? "source-closed" : detail);
		return;
	}
	if (mv->gap == 0 || dst == NULL) {
		smv_send_abort(mv);
		smv_finish(mv, ok, detail);
		return;
	}
	mv->state = MVS_ABORTING;
	mv->detail = detail;
	if (ok)
		mv->flags |= MV_OK;
	smv_timer_set(mv, mv->gap);
}

static void
smv_begin(struct smv *mv, const u_char *seq)
{
	sc_vmw(mv->vm->conn, VMW_VMOTION_BEGIN, seq, mv->seqlen);
	ev_print("begin %u %s", mv->vm->idx, hex(seq, mv->seqlen));
}

static void
smv_connect_dst(struct smv *mv)
{
	struct sconn	*c;

	mv->state = MVS_PEEROK;
	c = sc_connect(mv->vm, ROLE_DST, &mv->dest, mv->destlen);
	if (c == NULL || (c->flags & SC_DEAD)) {
		smv_fail(mv, 0, "dest-connect-failed");
		return;
	}
	mv->dst = c;
	smv_timer_set(mv, mv->timeout);
}

/* Both halves of the switch are done: the destination is the VM now. */
static void
smv_switched(struct smv *mv)
{
	struct svm	*vm = mv->vm;
	struct sconn	*dst = mv->dst;

	mv->dst = NULL;
	dst->role = ROLE_SRC;	/* It is the VM's connection now. */
	vm->conn = dst;
	vm->flags |= VM_READY;
	free(vm->token);
	vm->token = xmalloc(mv->keylen);
	memcpy(vm->token, mv->key, mv->keylen);
	vm->tokenlen = mv->keylen;
	smv_finish(mv, 1, "switched");
}

static void
smv_send_complete(struct smv *mv)
{
	sc_vmw(mv->dst, VMW_VMOTION_COMPLETE, mv->seq, mv->seqlen);
	ev_print("complete %u", mv->vm->idx);
}

static void
smv_close_src(struct smv *mv)
{
	struct svm	*vm = mv->vm;
	struct sconn	*src = vm->conn;

	if (src == NULL)
		return;
	vm->conn = NULL;	/* Not a loss of the VM: no src-closed. */
	vm->flags &= ~VM_READY;
	sc_close(src, "vmotion");
}

static void
smv_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smv	*mv = arg;
	int		 ok;

	switch (mv->state) {
	case MVS_ANSWER:
		/* No answer to BEGIN: the source resumes, no ABORT. */
		smv_finish(mv, mv->variant == MVV_TIMEOUT,
		    "no-answer-to-begin");
		break;
	case MVS_NOTNOW2:
		smv_fail(mv, 0, "no-answer-to-second-begin");
		break;
	case MVS_DELAY:
		if (mv->variant == MVV_NODEST) {
			smv_send_abort(mv);
			smv_finish(mv, 1, "aborted");
		} else
			smv_connect_dst(mv);
		break;
	case MVS_PEEROK:
		ok = mv->variant == MVV_BADSECRET || mv->variant == MVV_REPLAY;
		smv_fail(mv, ok, "no-peerok");
		break;
	case MVS_SWITCH:
		if (mv->order == MVO_COMPLETEFIRST)
			smv_close_src(mv);
		else
			smv_send_complete(mv);
		smv_switched(mv);
		break;
	case MVS_ABORTING:
		smv_send_abort(mv);
		smv_finish(mv, (mv->flags & MV_OK) != 0, mv->detail);
		break;
	}
}

static void
smv_on_goahead(struct smv *mv, const u_char *p, size_t len)
{
	struct svm	*vm = mv->vm;
	uint64_t	 us = now_us() - mv->tbegin;
	const u_char	*seq;

	seq = mv->state == MVS_NOTNOW2 ? mv->seq2 : mv->seq;
	if (len < mv->seqlen || memcmp(p, seq, mv->seqlen) != 0) {
		ev_print("goahead %u %s - %" PRIu64, vm->idx, hex(p, len), us);
		if (mv->state == MVS_ANSWER || mv->state == MVS_NOTNOW2) {
			mv->flags |= MV_GOAHEAD;
			smv_fail(mv, 0, "goahead-bad-seq");
		}
		return;
	}
	ev_print("goahead %u %s %s %" PRIu64, vm->idx, hex(p, mv->seqlen),
	    len > mv->seqlen ? hex(p + mv->seqlen, len - mv->seqlen) : "-",
	    us);
	if (mv->state == MVS_NOTNOW2) {
		smv_fail(mv, 0, "goahead-for-second-begin");
		return;
	}
	if (mv->state != MVS_ANSWER) {
		ev_print("error %u late-goahead", vm->idx);
		return;
	}
	mv->flags |= MV_GOAHEAD;
	if (len > sizeof mv->key)
		len = sizeof mv->key;
	memcpy(mv->key, p, len);
	mv->keylen = len;
	if (mv->variant == MVV_TIMEOUT) {
		smv_fail(mv, 0, "answered");
		return;
	}
	if (mv->variant == MVV_BADSECRET) {
		if (mv->keylen > mv->seqlen)
			mv->key[mv->seqlen] ^= 0x5a;
		else
			mv->key[mv->keylen++] = 0x5a;
	}
	if (mv->variant == MVV_DOUBLEBEGIN) {
		memcpy(mv->seq2, mv->seq, mv->seqlen);
		mv->seq2[mv->seqlen - 1] ^= 0x01;
		mv->state = MVS_NOTNOW2;
		smv_begin(mv, mv->seq2);
		smv_timer_set(mv, mv->timeout);
		return;
	}
	mv->state = MVS_DELAY;
	if (mv->variant != MVV_NODEST && mv->delay == 0) {
		evtimer_del(mv->timer);
		smv_connect_dst(mv);
	} else
		smv_timer_set(mv, mv->delay);
}

static void
smv_on_notnow(struct smv *mv, const u_char *p, size_t len)
{
	struct svm	*vm = mv->vm;

	ev_print("notnow %u %s %" PRIu64, vm->idx, hex(p, len),
	    now_us() - mv->tbegin);
	if (mv->state == MVS_NOTNOW2) {
		if (len < mv->seqlen || memcmp(p, mv->seq2, mv->seqlen) != 0) {
			smv_fail(mv, 0, "notnow-bad-seq");
			return;
		}
		/* As expected; carry on with the first vMotion. */
		mv->state = MVS_DELAY;
		if (mv->delay == 0) {
			evtimer_del(mv->timer);
			smv_connect_dst(mv);
		} else
			smv_timer_set(mv, mv->delay);
		return;
	}
	if (mv->state != MVS_ANSWER) {
		ev_print("error %u late-notnow", vm->idx);
		return;
	}
	/* Refused: the source just carries on (capture 21.91 s). */
	if (len < mv->seqlen || memcmp(p, mv->seq, mv->seqlen) != 0)
		smv_finish(mv, 0, "notnow-bad-seq");
	else
		smv_finish(mv, 0, "notnow");
}

static void
smv_on_peerok(struct smv *mv, const u_char *p, size_t len)
{
	struct svm	*vm = mv->vm;
	int		 good;

	ev_print("peerok %u %s %" PRIu64, vm->idx, hex(p, len),
	    now_us() - mv->tpeer);
	if (mv->state != MVS_PEEROK) {
		ev_print("error %u late-peerok", vm->idx);
		return;
	}
	evtimer_del(mv->timer);
	good = (len == mv->seqlen && memcmp(p, mv->seq, len) == 0) ||
	    (len == mv->keylen && memcmp(p, mv->key, len) == 0);
	switch (mv->variant) {
	case MVV_BADSECRET:
		smv_fail(mv, 0, "peerok-for-bad-secret");
		return;
	case MVV_REPLAY:
		smv_fail(mv, 0, "peerok-for-replay");
		return;
	case MVV_DESTDROP:
		smv_fail(mv, good, good ? "dropped" : "peerok-bad-payload");
		return;
	}
	if (!good) {
		smv_fail(mv, 0, "peerok-bad-payload");
		return;
	}
	switch (mv->order) {
	case MVO_SIMULTANEOUS:
		smv_close_src(mv);
		smv_send_complete(mv);
		smv_switched(mv);
		return;
	case MVO_FINFIRST:
		smv_close_src(mv);
		if (mv->gap == 0) {
			smv_send_complete(mv);
			smv_switched(mv);
			return;
		}
		break;
	case MVO_COMPLETEFIRST:
		smv_send_complete(mv);
		if (mv->gap == 0) {
			smv_close_src(mv);
			smv_switched(mv);
			return;
		}
		break;
	}
	mv->state = MVS_SWITCH;
	smv_timer_set(mv, mv->gap);
}

static void
smv_on_dst_closed(struct smv *mv, const char *reason)
{
	int	ok;

	mv->dst = NULL;
	switch (mv->state) {
	case MVS_PEEROK:
		evtimer_del(mv->timer);
		ok = mv->variant == MVV_BADSECRET || mv->variant == MVV_REPLAY;
		smv_fail(mv, ok, strcmp(reason, "peer-refused") == 0 ?
		    "peer-refused" : "dest-closed");
		break;
	case MVS_SWITCH:
		evtimer_del(mv->timer);
		smv_finish(mv, 0, "dest-closed-in-switch");
		break;
	default:
		break;
	}
}

static void
smv_on_src_closed(struct smv *mv)
{
	/* Before GOAHEAD the vMotion cannot go on. */
	if (mv->state == MVS_ANSWER || mv->state == MVS_NOTNOW2 ||
	    (mv->state == MVS_DELAY && mv->variant == MVV_NODEST) ||
	    mv->state == MVS_ABORTING) {
		evtimer_del(mv->timer);
		smv_fail(mv, 0, "source-closed");
	}
}

/* The vmotion command. */
static void
smv_start(struct svm *vm, int argc, char **argv)
{
	struct smv	*mv;
	ssize_t		 n;
	int		 i, j, gapset = 0, delayset = 0;

	if (vm->mv != NULL) {
		ev_print("error %u vmotion-in-progress", vm->idx);
		return;
	}
	mv = xcalloc(1, sizeof *mv);
	mv->vm = vm;
	mv->timeout = 5000;
	mv->gap = 10;
	memcpy(&mv->dest, sim_destlen ? &sim_dest : &sim_server,
	    sizeof mv->dest);
	mv->destlen = sim_destlen ? sim_destlen : sim_serverlen;
	RAND_bytes(mv->seq, 4);
	mv->seqlen = 4;
	for (i = 0; i < argc; i++) {
		for (j = 0; j < MVV_MAX; j++)
			if (strcmp(argv[i], smv_variants[j]) == 0)
				break;
		if (j < MVV_MAX) {
			mv->variant = j;
			continue;
		}
		for (j = 0; j < MVO_MAX; j++)
			if (strcmp(argv[i], smv_orders[j]) == 0)
				break;
		if (j < MVO_MAX) {
			mv->order = j;
			continue;
		}
		if (strncmp(argv[i], "dest=", 5) == 0) {
			if (parse_addr(argv[i] + 5, &mv->dest, &mv->destlen,
			    0) == -1)
				goto bad;
		} else if (strncmp(argv[i], "seq=", 4) == 0) {
			n = unhex(argv[i] + 4, mv->seq, sizeof mv->seq);
			if (n <= 0)
				goto bad;
			mv->seqlen = n;
		} else if (strncmp(argv[i], "timeout=", 8) == 0)
			mv->timeout = strtoul(argv[i] + 8, NULL, 10);
		else if (strncmp(argv[i], "delay=", 6) == 0) {
			mv->delay = strtoul(argv[i] + 6, NULL, 10);
			delayset = 1;
		} else if (strncmp(argv[i], "gap=", 4) == 0) {
			mv->gap = strtoul(argv[i] + 4, NULL, 10);
			gapset = 1;
		} else
			goto bad;
	}
	if (mv->variant == MVV_NODEST && !delayset)
		mv->delay = 1000;	/* The capture's ABORT came after 1 s. */
	if (mv->order == MVO_SIMULTANEOUS && !gapset)
		mv->gap = 0;
	mv->timer = evtimer_new(sim_base, smv_timer, mv);
	mv->tbegin = now_us();
	vm->mv = mv;
	if (mv->variant == MVV_REPLAY) {
		if (vm->token == NULL) {
			vm->mv = NULL;
			event_free(mv->timer);
			free(mv);
			ev_print("error %u no-previous-vmotion", vm->idx);
			return;
		}
		memcpy(mv->key, vm->token, vm->tokenlen);
		mv->keylen = vm->tokenlen;
		mv->seqlen = vm->tokenlen < 4 ? vm->tokenlen : 4;
		memcpy(mv->seq, vm->token, mv->seqlen);
		smv_connect_dst(mv);
		return;
	}
	if (vm->conn == NULL || !(vm->flags & VM_READY)) {
		vm->mv = NULL;
		event_free(mv->timer);
		free(mv);
		ev_print("error %u not-ready", vm->idx);
		return;
	}
	/* The guest is stunned: no output after BEGIN. */
	vm->flags |= VM_PAUSED;
	mv->state = MVS_ANSWER;
	smv_begin(mv, mv->seq);
	smv_timer_set(mv, mv->timeout);
	return;
bad:
	free(mv);
	ev_print("error %u bad-vmotion-argument %s", vm->idx, argv[i]);
}

/*
 * Commands.
 */

static void
cmd_stats(int argc, char **argv)
{
	struct svm	*vm;
	uint64_t	 sent = 0, recv = 0;
	u_int		 i, n = 0, ready = 0, conns = 0;

	if (argc > 1) {
		if ((vm = svm_get(argv[1], 0)) == NULL)
			return;
		ev_print("stats %u sent=%" PRIu64 " recv=%" PRIu64 " off=%"
		    PRIu64 " ready=%d conn=%d vmotion=%d", vm->idx, vm->sent,
		    vm->recv, vm->off, (vm->flags & VM_READY) != 0,
		    vm->conn != NULL, vm->mv != NULL);
		return;
	}
	for (i = 0; i < sim_nvms; i++) {
		if ((vm = sim_vms[i]) == NULL)
			continue;
		n++;
		sent += vm->sent;
		recv += vm->recv;
		if (vm->flags & VM_READY)
			ready++;
		if (vm->conn != NULL)
			conns++;
	}
	ev_print("stats all vms=%u conns=%u ready=%u sent=%" PRIu64
	    " recv=%" PRIu64, n, conns, ready, sent, recv);
}

static void
cmd_add(int argc, char **argv)
{
	u_char		 uuid[16];
	char		*end;
	unsigned long	 idx;

	if (argc < 4 || argc > 5) {
		ev_print("error - usage: add I NAME UUID [URI]");
		return;
	}
	idx = strtoul(argv[1], &end, 10);
	if (*end != '\0' || idx > 10000000) {
		ev_print("error %s bad-index", argv[1]);
		return;
	}
	if (idx < sim_nvms && sim_vms[idx] != NULL) {
		ev_print("error %lu exists", idx);
		return;
	}
	if (strlen(argv[2]) == 0 || strlen(argv[2]) > SIM_NAME_MAX) {
		ev_print("error %lu bad-name", idx);
		return;
	}
	if (unhex(argv[3], uuid, sizeof uuid) != 16) {
		ev_print("error %lu bad-uuid", idx);
		return;
	}
	svm_add(idx, argv[2], uuid, argc == 5 ? argv[4] : NULL);
}

static void
cmd_send(struct svm *vm, const char *arg, int raw)
{
	u_char	*buf, *esc;
	ssize_t	 n;
	size_t	 max = strlen(arg) / 2 + 1;

	if (vm->conn == NULL || (vm->conn->flags & SC_CONNECTING)) {
		ev_print("error %u not-connected", vm->idx);
		return;
	}
	buf = xmalloc(max);
	if ((n = unhex(arg, buf, max)) < 0) {
		ev_print("error %u bad-hex", vm->idx);
		free(buf);
		return;
	}
	if (raw)
		sc_out(vm->conn, buf, n);
	else {
		esc = xmalloc(2 * max);
		sc_out(vm->conn, esc, iac_escape(esc, buf, n));
		vm->sent += n;
		free(esc);
	}
	free(buf);
}

static void
sim_command(char *line)
{
	char		*argv[16], *p;
	struct svm	*vm = NULL;
	unsigned long	 v;
	int		 argc = 0;

	while ((p = strsep(&line, " \t\r")) != NULL) {
		if (*p == '\0')
			continue;
		if (argc == (int)(sizeof argv / sizeof argv[0]))
			break;
		argv[argc++] = p;
	}
	if (argc == 0 || argv[0][0] == '#')
		return;
	if (strcmp(argv[0], "quit") == 0)
		exit(0);
	if (strcmp(argv[0], "ping") == 0) {
		ev_print("pong %s", argc > 1 ? argv[1] : "-");
		return;
	}
	if (strcmp(argv[0], "stats") == 0) {
		cmd_stats(argc, argv);
		return;
	}
	if (strcmp(argv[0], "add") == 0) {
		cmd_add(argc, argv);
		return;
	}
	if (argc < 2) {
		ev_print("error - bad-command %s", argv[0]);
		return;
	}
	if ((vm = svm_get(argv[1], 0)) == NULL)
		return;
	if (strcmp(argv[0], "connect") == 0 && argc == 2)
		svm_connect(vm);
	else if (strcmp(argv[0], "close") == 0 && argc == 2) {
		if (vm->flags & VM_QUEUED) {
			TAILQ_REMOVE(&sim_connq, vm, qentry);
			vm->flags &= ~VM_QUEUED;
		}
		if (vm->mv != NULL)
			smv_finish(vm->mv, 0, "cancelled");
		if (vm->conn != NULL)
			sc_close(vm->conn, "local");
		else
			ev_print("error %u not-connected", vm->idx);
	} else if (strcmp(argv[0], "send") == 0 && argc == 3)
		cmd_send(vm, argv[2], 0);
	else if (strcmp(argv[0], "raw") == 0 && argc == 3)
		cmd_send(vm, argv[2], 1);
	else if (strcmp(argv[0], "stream") == 0 && argc == 3) {
		v = strtoul(argv[2], NULL, 10);
		svm_set_rate(vm, v > UINT32_MAX ? UINT32_MAX : v);
	} else if (strcmp(argv[0], "burst") == 0 && argc == 3) {
		vm->burst += strtoull(argv[2], NULL, 10);
		svm_pump(vm);
	} else if (strcmp(argv[0], "pattern") == 0 && argc == 3) {
		if (strcmp(argv[2], "binary") == 0)
			vm->flags |= VM_BINARY;
		else if (strcmp(argv[2], "text") == 0)
			vm->flags &= ~VM_BINARY;
		else
			ev_print("error %u bad-pattern", vm->idx);
	} else if (strcmp(argv[0], "vmotion") == 0)
		smv_start(vm, argc - 2, argv + 2);
	else
		ev_print("error %u bad-command %s", vm->idx, argv[0]);
}

static void
sim_stdin(evutil_socket_t fd, short what, void *arg)
{
	static char	 buf[SIM_LINE_MAX];
	static size_t	 len;
	char		*nl, *start;
	ssize_t		 n;

	n = read(fd, buf + len, sizeof buf - 1 - len);
	if (n == -1) {
		if (errno == EINTR || errno == EAGAIN)
			return;
		exit(1);
	}
	if (n == 0) {
		if (!sim_stay)
			exit(0);
		event_del(sim_stdin_ev);
		return;
	}
	len += n;
	buf[len] = '\0';
	start = buf;
	while ((nl = strchr(start, '\n')) != NULL) {
		*nl = '\0';
		sim_command(start);
		start = nl + 1;
	}
	len -= start - buf;
	memmove(buf, start, len);
	if (len == sizeof buf - 1)
		len = 0;	/* Overlong line: dropped. */
}

static void
sim_auto_create(u_int count, const char *prefix, const u_char *base)
{
	u_char		 uuid[16];
	char		 name[SIM_NAME_MAX + 1];
	uint64_t	 lo;
	u_int		 i, j;

	sim_auto_total = count;
	sim_auto_start = now_us();
	for (i = 0; i < count; i++) {
		memcpy(uuid, base, 16);
		lo = 0;
		for (j = 8; j < 16; j++)
			lo = (lo << 8) | uuid[j];
		lo += i;
		for (j = 15; j >= 8; j--) {
			uuid[j] = lo & 0xff;
			lo >>= 8;
		}
		snprintf(name, sizeof name, "%s%05u", prefix, i);
		svm_add(i, name, uuid, NULL)->flags |= VM_AUTO;
		if (sim_rate > 0)
			svm_set_rate(sim_vms[i], sim_rate);
		svm_connect(sim_vms[i]);
	}
}

static void __attribute__((__noreturn__))
usage(void)
{
	fprintf(stderr, "usage: esxisim -s host:port [-q] [-b addr[,addr...]] "
	    "[-n count] [-p prefix]\n"
	    "\t[-u uuid] [--uri uri] [--rate bytes/s] "
	    "[--pattern text|binary]\n"
	    "\t[--connect-rate n] [--max-pending n] [--dest host:port]\n"
	    "\t[--ks1-after-ks2] [--unprompted] [--trace] [--stay]\n");
	exit(1);
}

enum {
	OPT_URI = 256,
	OPT_RATE,
	OPT_PATTERN,
	OPT_CONNECT_RATE,
	OPT_MAX_PENDING,
	OPT_DEST,
	OPT_KS1,
	OPT_UNPROMPTED,
	OPT_TRACE,
	OPT_STAY
};

static const struct option sim_longopts[] = {
	{ "uri", required_argument, NULL, OPT_URI },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "pattern", required_argument, NULL, OPT_PATTERN },
	{ "connect-rate", required_argument, NULL, OPT_CONNECT_RATE },
	{ "max-pending", required_argument, NULL, OPT_MAX_PENDING },
	{ "dest", required_argument, NULL, OPT_DEST },
	{ "ks1-after-ks2", no_argument, NULL, OPT_KS1 },
	{ "unprompted", no_argument, NULL, OPT_UNPROMPTED },
	{ "trace", no_argument, NULL, OPT_TRACE },
	{ "stay", no_argument, NULL, OPT_STAY },
	{ NULL, 0, NULL, 0 }
};

int
main(int argc, char **argv)
{
	struct rlimit	 rl;
	u_char		 base[16];
	const char	*prefix = "vm-";
	char		*s, *a;
	u_int		 count = 0;
	int		 ch;

	log_init(1, 0);
	pat_init();
	unhex("0123456789abcdeffedcba9800000000", base, sizeof base);
	signal(SIGPIPE, SIG_IGN);

	while ((ch = getopt_long(argc, argv, "b:n:p:qs:u:", sim_longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 's':
			if (parse_addr(optarg, &sim_server, &sim_serverlen,
			    0) == -1)
				fatalx("bad server address %s", optarg);
			break;
		case 'b':
			s = xstrdup(optarg);
			while ((a = strsep(&s, ",")) != NULL) {
				if (*a == '\0')
					continue;
				sim_binds = xreallocarray(sim_binds,
				    sim_nbinds + 1, sizeof *sim_binds);
				if (parse_bind(a, &sim_binds[sim_nbinds]) == -1)
					fatalx("bad bind address %s", a);
				sim_nbinds++;
			}
			break;
		case 'n':
			count = strtoul(optarg, NULL, 10);
			break;
		case 'p':
			prefix = optarg;
			if (strlen(prefix) > SIM_NAME_MAX - 12)
				fatalx("prefix too long");
			break;
		case 'q':
			sim_quiet = 1;
			break;
		case 'u':
			if (unhex(optarg, base, sizeof base) != 16)
				fatalx("bad uuid %s", optarg);
			break;
		case OPT_URI:
			sim_uri = optarg;
			break;
		case OPT_RATE:
			sim_rate = strtoul(optarg, NULL, 10);
			break;
		case OPT_PATTERN:
			if (strcmp(optarg, "binary") == 0)
				sim_binary = 1;
			else if (strcmp(optarg, "text") != 0)
				usage();
			break;
		case OPT_CONNECT_RATE:
			sim_connect_rate = strtoul(optarg, NULL, 10);
			break;
		case OPT_MAX_PENDING:
			sim_max_pending = strtoul(optarg, NULL, 10);
			if (sim_max_pending == 0)
				sim_max_pending = 1;
			break;
		case OPT_DEST:
			if (parse_addr(optarg, &sim_dest, &sim_destlen,
			    0) == -1)
				fatalx("bad dest address %s", optarg);
			break;
		case OPT_KS1:
			sim_ks1_after_ks2 = 1;
			break;
		case OPT_UNPROMPTED:
			sim_unprompted = 1;
			break;
		case OPT_TRACE:
			sim_trace = 1;
			break;
		case OPT_STAY:
			sim_stay = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || sim_serverlen == 0)
		usage();

	/* Thousands of VMs need thousands of descriptors. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit");
	}
	setvbuf(stdout, NULL, _IOFBF, 65536);

	if ((sim_base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	sim_reap_ev = event_new(sim_base, -1, 0, sim_reap, NULL);
	sim_tick_ev = event_new(sim_base, -1, EV_PERSIST, sim_tick, NULL);
	sim_connq_ev = evtimer_new(sim_base, sim_connq_timer, NULL);
	sim_connect_last = now_us();
	sim_stdin_ev = event_new(sim_base, STDIN_FILENO, EV_READ | EV_PERSIST,
	    sim_stdin, NULL);
	event_add(sim_stdin_ev, NULL);

	if (count > 0)
		sim_auto_create(count, prefix, base);

	event_base_dispatch(sim_base);
	return (0);
}
