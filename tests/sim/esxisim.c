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
#include "esxisim.h"

/* Shared with sconn.c and smv.c (see esxisim.h). */
struct event_base	*sim_base;
struct sockaddr_storage	 sim_server;
socklen_t		 sim_serverlen;
struct sockaddr_storage	 sim_dest;
socklen_t		 sim_destlen;
struct sockaddr_storage	*sim_binds;
u_int			 sim_nbinds;
u_int			 sim_nextbind;
struct sconn_list	 sim_reapq = TAILQ_HEAD_INITIALIZER(sim_reapq);
struct event		*sim_reap_ev;
u_int			 sim_pending;
const char		*sim_uri = "vSPC.py";
int			 sim_quiet;
int			 sim_trace;
int			 sim_ks1_after_ks2;
int			 sim_unprompted;
u_int			 sim_auto_ready;
u_int			 sim_auto_failed;
struct sockaddr_storage	*sim_dests;
socklen_t		*sim_destlens;
u_int			 sim_ndests;
uint64_t		 sim_mv_ok;
uint64_t		 sim_mv_fail;

static struct svm	**sim_vms;
static u_int		 sim_nvms;
static struct svm_list	 sim_connq = TAILQ_HEAD_INITIALIZER(sim_connq);
static struct svm_list	 sim_streams =
			    TAILQ_HEAD_INITIALIZER(sim_streams);
static struct event	*sim_tick_ev;
static struct event	*sim_connq_ev;
static struct event	*sim_stdin_ev;
static uint64_t		 sim_tick_last;
static u_int		 sim_max_pending = 256;
static u_int		 sim_connect_rate;	/* Per second, 0 = any. */
static uint64_t		 sim_connect_acc;
static uint64_t		 sim_connect_last;
static int		 sim_binary;
static uint32_t		 sim_rate;
static u_int		 sim_min_write = 1;	/* --min-write. */
static int		 sim_stay;
static u_int		 sim_auto_total;
static int		 sim_auto_reported;
static uint64_t		 sim_auto_start;
static char		*sim_hexbuf[2];
static size_t		 sim_hexsize[2];
static int		 sim_hexnext;
static u_int		 sim_home;		/* -s's index in sim_dests. */
static u_int		 sim_mv_rate;		/* --vmotion-rate, per s. */
static uint64_t		 sim_mv_acc;
static uint64_t		 sim_mv_last;
static uint64_t		 sim_mv_skipped;
static u_int		 sim_mv_next;		/* Round-robin cursor. */
static struct event	*sim_mv_ev;
static uint32_t		*sim_lat[LAT_MAX];
static size_t		 sim_latn[LAT_MAX];
static size_t		 sim_latsize[LAT_MAX];
static const char	*sim_latnames[LAT_MAX] = {
	"goahead", "peerok", "vmotion"
};


/* Print one event line and flush it. */
void __attribute__((__format__ (printf, 1, 2)))
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

/* Monotonic time in microseconds. */
uint64_t
now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/* Fill tv with ms milliseconds and return it. */
struct timeval *
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
const char *
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
ssize_t
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
int
parse_addr(const char *arg, struct sockaddr_storage *ss, socklen_t *len)
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
	uint64_t	 w, k, llen, p, d;
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
	memcpy(line, vm->name, vm->namelen);
	line[vm->namelen] = ' ';
	line[llen - 2] = '\r';
	line[llen - 1] = '\n';
	while (n > 0) {
		k = off / llen;
		p = off % llen;
		/* The 10 digits by hand: snprintf bounded bursts. */
		d = k % 10000000000ULL;
		for (i = 0; i < 10; i++) {
			line[llen - 3 - i] = '0' + d % 10;
			d /= 10;
		}
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
size_t
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



/* Print allready once every VM made by -n is ready or failed. */
void
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

/*
 * Load mode: latency samples and the vMotion rate.
 */

/* Record one latency sample (microseconds) of kind which. */
void
sim_lat_add(int which, uint64_t us)
{
	if (sim_latn[which] == sim_latsize[which]) {
		sim_latsize[which] = sim_latsize[which] == 0 ? 1024 :
		    sim_latsize[which] * 2;
		sim_lat[which] = xreallocarray(sim_lat[which],
		    sim_latsize[which], sizeof *sim_lat[which]);
	}
	sim_lat[which][sim_latn[which]++] = us > UINT32_MAX ? UINT32_MAX : us;
}

static int
lat_cmp(const void *a, const void *b)
{
	uint32_t	x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x < y ? -1 : x > y);
}

static uint32_t
lat_pct(const uint32_t *v, size_t n, u_int pct)
{
	size_t	i;

	if (n == 0)
		return (0);
	i = (n * pct + 99) / 100;
	return (v[i == 0 ? 0 : i - 1]);
}

/* The lat command: percentiles of every kind, then the counters. */
static void
cmd_lat(int argc, char **argv)
{
	uint32_t	*v;
	size_t		 n;
	int		 i;

	if (argc > 1 && strcmp(argv[1], "reset") == 0) {
		for (i = 0; i < LAT_MAX; i++)
			sim_latn[i] = 0;
		sim_mv_ok = sim_mv_fail = sim_mv_skipped = 0;
		ev_print("lat reset");
		return;
	}
	for (i = 0; i < LAT_MAX; i++) {
		n = sim_latn[i];
		v = xreallocarray(NULL, n + 1, sizeof *v);
		memcpy(v, sim_lat[i], n * sizeof *v);
		qsort(v, n, sizeof *v, lat_cmp);
		ev_print("lat %s n=%zu p50=%u p90=%u p99=%u max=%u",
		    sim_latnames[i], n, lat_pct(v, n, 50), lat_pct(v, n, 90),
		    lat_pct(v, n, 99), n > 0 ? v[n - 1] : 0);
		free(v);
	}
	ev_print("lat vmotions ok=%" PRIu64 " fail=%" PRIu64 " skipped=%"
	    PRIu64, sim_mv_ok, sim_mv_fail, sim_mv_skipped);
}

/* Start the vMotions that --vmotion-rate's credit allows. */
static void
sim_mv_tick(evutil_socket_t fd, short what, void *arg)
{
	struct svm	*vm;
	uint64_t	 now = now_us();
	u_int		 tries, dest;

	sim_mv_acc += (now - sim_mv_last) * sim_mv_rate;
	sim_mv_last = now;
	/* At most 100 ms of credit: no catch-up storm after a stall. */
	if (sim_mv_acc > (uint64_t)sim_mv_rate * 100000 + 1000000)
		sim_mv_acc = (uint64_t)sim_mv_rate * 100000 + 1000000;
	tries = 0;
	while (sim_mv_acc >= 1000000 && sim_nvms > 0) {
		if (tries++ >= sim_nvms) {
			/* Every VM is busy or not ready. */
			sim_mv_skipped += sim_mv_acc / 1000000;
			sim_mv_acc %= 1000000;
			break;
		}
		vm = sim_vms[sim_mv_next];
		sim_mv_next = (sim_mv_next + 1) % sim_nvms;
		if (vm == NULL)
			continue;
		dest = sim_ndests > 1 ? (vm->node + 1) % sim_ndests : 0;
		if (smv_start_load(vm, dest) == -1)
			continue;
		sim_mv_acc -= 1000000;
	}
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
		if (cap < (uint64_t)sim_min_write * 1000000)
			cap = (uint64_t)sim_min_write * 1000000;
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
void
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
		if (want == 0 || (vm->burst == 0 && want < sim_min_write))
			break;
		if (++rounds > SIM_PUMP_MAX) {
			/* Writable still: come back next turn. */
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

/* Let the guest run again (end of a vMotion). */
void
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
	vm->node = sim_home;
	sim_vms[idx] = vm;
	return (vm);
}

static void
sim_connq_timer(evutil_socket_t fd, short what, void *arg)
{
	sim_connq_pump();
}

/* Start queued connects within the pending and rate limits. */
void
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
	if (strcmp(argv[0], "lat") == 0) {
		cmd_lat(argc, argv);
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
	    "\t[--connect-rate n] [--max-pending n] "
	    "[--dest host:port[,host:port...]]\n"
	    "\t[--vmotion-rate n] [--min-write n] [--ks1-after-ks2] [--unprompted] [--trace] "
	    "[--stay]\n");
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
	OPT_STAY,
	OPT_VMOTION_RATE,
	OPT_MIN_WRITE
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
	{ "vmotion-rate", required_argument, NULL, OPT_VMOTION_RATE },
	{ "min-write", required_argument, NULL, OPT_MIN_WRITE },
	{ NULL, 0, NULL, 0 }
};

int
main(int argc, char **argv)
{
	struct rlimit	 rl;
	struct timeval	 tv;
	u_char		 base[16];
	const char	*prefix = "vm-";
	char		*s, *p, *a;
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
			if (parse_addr(optarg, &sim_server,
			    &sim_serverlen) == -1)
				fatalx("bad server address %s", optarg);
			break;
		case 'b':
			p = s = xstrdup(optarg);
			while ((a = strsep(&p, ",")) != NULL) {
				if (*a == '\0')
					continue;
				sim_binds = xreallocarray(sim_binds,
				    sim_nbinds + 1, sizeof *sim_binds);
				if (parse_bind(a, &sim_binds[sim_nbinds]) == -1)
					fatalx("bad bind address %s", a);
				sim_nbinds++;
			}
			free(s);
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
			sim_quiet++;	/* -qq: no per-vMotion events. */
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
			p = s = xstrdup(optarg);
			while ((a = strsep(&p, ",")) != NULL) {
				if (*a == '\0')
					continue;
				sim_dests = xreallocarray(sim_dests,
				    sim_ndests + 1, sizeof *sim_dests);
				sim_destlens = xreallocarray(sim_destlens,
				    sim_ndests + 1, sizeof *sim_destlens);
				if (parse_addr(a, &sim_dests[sim_ndests],
				    &sim_destlens[sim_ndests]) == -1)
					fatalx("bad dest address %s", a);
				sim_ndests++;
			}
			free(s);
			if (sim_ndests == 0)
				fatalx("bad dest address %s", optarg);
			/* The first is every vMotion's default. */
			memcpy(&sim_dest, &sim_dests[0], sizeof sim_dest);
			sim_destlen = sim_destlens[0];
			break;
		case OPT_VMOTION_RATE:
			sim_mv_rate = strtoul(optarg, NULL, 10);
			break;
		case OPT_MIN_WRITE:
			sim_min_write = strtoul(optarg, NULL, 10);
			if (sim_min_write == 0)
				sim_min_write = 1;
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
	if (sim_ndests == 0) {
		sim_dests = xmalloc(sizeof *sim_dests);
		sim_destlens = xmalloc(sizeof *sim_destlens);
		memcpy(&sim_dests[0], &sim_server, sizeof sim_server);
		sim_destlens[0] = sim_serverlen;
		sim_ndests = 1;
	}
	/* A VM starts on the -s node: find it in the --dest list. */
	for (sim_home = 0; sim_home < sim_ndests; sim_home++)
		if (sim_destlens[sim_home] == sim_serverlen &&
		    memcmp(&sim_dests[sim_home], &sim_server,
		    sim_serverlen) == 0)
			break;
	if (sim_home == sim_ndests)
		sim_home = 0;

	/* Thousands of VMs need thousands of descriptors. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit");
	}
	setvbuf(stdout, NULL, _IOFBF, 65536);

	if ((sim_base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	sim_reap_ev = event_new(sim_base, -1, 0, sc_reap, NULL);
	sim_tick_ev = event_new(sim_base, -1, EV_PERSIST, sim_tick, NULL);
	sim_connq_ev = evtimer_new(sim_base, sim_connq_timer, NULL);
	sim_connect_last = now_us();
	sim_stdin_ev = event_new(sim_base, STDIN_FILENO, EV_READ | EV_PERSIST,
	    sim_stdin, NULL);
	event_add(sim_stdin_ev, NULL);
	if (sim_mv_rate > 0) {
		sim_mv_last = now_us();
		sim_mv_ev = event_new(sim_base, -1, EV_PERSIST, sim_mv_tick,
		    NULL);
		event_add(sim_mv_ev, ms_tv(&tv, 5));
	}

	if (count > 0)
		sim_auto_create(count, prefix, base);

	event_base_dispatch(sim_base);
	return (0);
}
