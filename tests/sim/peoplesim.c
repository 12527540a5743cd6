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
 * peoplesim: many people on a vspcd console port at once, for load
 * tests.  Each person connects (round robin over -b source addresses),
 * waits for the prompt, types a VM name, waits for the "[...]" attach
 * line and from then on checks every byte of the VM's text pattern
 * (esxisim's "NAME %010k\r\n" lines, tests/sim/README): line numbers
 * must follow each other, so lost lines (gaps), repeated or reordered
 * lines (dups) and anything else (bad) are counted.  Lines in brackets
 * are the node's notices and are only counted.
 *
 * With --raw there is no telnet and no prompt: the pattern comes straight
 * from the socket (a plain TCP relay as the reference).
 *
 * Commands on stdin: stats, lat, quit; EOF exits.  Events on stdout:
 * allattached, done, stats, lat, error (see tests/sim/README).
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

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

#include "vspcd.h"

#define PS_LINE_MAX	256
#define PS_NAME_MAX	224
#define PS_MENU_CHUNK	64
#define PS_READ		262144
#define PS_PROMPT_TEXT	"? lists): "

enum ps_state {
	PS_CONNECTING,
	PS_PROMPT,		/* Waiting for the prompt. */
	PS_HEADER,		/* Name sent, waiting for "[...]\r\n". */
	PS_DATA,
	PS_CLOSED
};

enum ps_tstate {
	PT_DATA,
	PT_IAC,
	PT_VERB,
	PT_SB,
	PT_SB_IAC
};

struct person {
	u_int		 idx;
	int		 fd;
	u_char		 state;		/* enum ps_state */
	u_char		 tstate;	/* enum ps_tstate */
	char		*name;
	size_t		 namelen;
	struct event	*ev;
	struct event	*retry;
	uint64_t	 tconnect;
	u_int		 retries;
	char		 line[PS_LINE_MAX];
	size_t		 linelen;
	int		 synced;	/* A whole line seen. */
	uint64_t	 last;		/* Last line number. */
	uint64_t	 bytes;		/* Data bytes after the attach line. */
	uint64_t	 lines;
	uint64_t	 gaps;
	uint64_t	 missing;	/* Lines lost in gaps. */
	uint64_t	 dups;
	uint64_t	 bad;
	uint64_t	 notices;
	int		 done;
};

static struct event_base	*ps_base;
static struct sockaddr_storage	 ps_server;
static socklen_t		 ps_serverlen;
static struct sockaddr_storage	*ps_binds;
static u_int			 ps_nbinds;
static u_int			 ps_nextbind;
static struct person		**ps_people;
static u_int			 ps_npeople;
static u_int			 ps_next;	/* Next to connect. */
static u_int			 ps_pending;
static u_int			 ps_max_pending = 256;
static u_int			 ps_attached;
static u_int			 ps_closed;
static u_int			 ps_ndone;
static int			 ps_raw;
static uint64_t			 ps_expect;
static uint64_t			 ps_start;
static uint64_t			 ps_first;	/* First data byte. */
static uint64_t			 ps_lastbyte;
static int			 ps_reported;
static uint32_t			*ps_lat;
static size_t			 ps_nlat;
static u_char			 ps_buf[PS_READ];
static u_char			 ps_plain[PS_READ];

static void	ps_event(evutil_socket_t, short, void *);
static void	ps_event_first(evutil_socket_t, short, void *);
static void	ps_connect_more(void);

static void __attribute__((__format__ (printf, 1, 2)))
ps_print(const char *fmt, ...)
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
ps_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static int
ps_parse_addr(const char *arg, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo	 hints, *res;
	char		*s, *port;
	int		 error;

	s = xstrdup(arg);
	if ((port = strrchr(s, ':')) == NULL) {
		free(s);
		return (-1);
	}
	*port++ = '\0';
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	error = getaddrinfo(s, port, &hints, &res);
	free(s);
	if (error != 0)
		return (-1);
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return (0);
}

/* Everyone is attached (or gone): say so once. */
static void
ps_check_attached(void)
{
	double	secs;

	if (ps_reported || ps_attached + ps_closed < ps_npeople)
		return;
	ps_reported = 1;
	secs = (ps_now() - ps_start) / 1e6;
	ps_print("allattached %u %.3f failed=%u", ps_attached, secs,
	    ps_closed);
}

static void
ps_close(struct person *p, const char *why)
{
	if (p->state == PS_CLOSED)
		return;
	if (p->state == PS_CONNECTING || p->state == PS_PROMPT ||
	    p->state == PS_HEADER) {
		ps_pending--;
		ps_print("error %u %s %s", p->idx, p->name, why);
	} else
		ps_attached--;
	p->state = PS_CLOSED;
	ps_closed++;
	if (p->ev != NULL)
		event_del(p->ev);
	if (p->fd != -1)
		close(p->fd);
	p->fd = -1;
	ps_check_attached();
	ps_connect_more();
}

/* A whole pattern line: check its number follows the last one. */
static void
ps_line(struct person *p, const char *l, size_t len)
{
	uint64_t	k = 0;
	size_t		i;

	if (len == p->namelen + 13 && memcmp(l, p->name, p->namelen) == 0 &&
	    l[p->namelen] == ' ' && l[len - 2] == '\r') {
		for (i = p->namelen + 1; i < len - 2; i++) {
			if (l[i] < '0' || l[i] > '9')
				goto bad;
			k = k * 10 + (l[i] - '0');
		}
		p->lines++;
		if (p->synced) {
			if (k == p->last + 1)
				;
			else if (k > p->last + 1) {
				p->gaps++;
				p->missing += k - p->last - 1;
			} else
				p->dups++;
		}
		p->synced = 1;
		p->last = k;
		return;
	}
bad:
	if (len >= 3 && l[0] == '[' && l[len - 3] == ']') {
		p->notices++;
		return;
	}
	/* The first line may have begun before we attached. */
	if (p->synced || p->lines > 0)
		p->bad++;
}

/* Data bytes after the attach line. */
static void
ps_data(struct person *p, const u_char *buf, size_t len)
{
	const u_char	*nl;
	size_t		 take;
	uint64_t	 now;

	if (len == 0)
		return;
	now = ps_now();
	if (ps_first == 0)
		ps_first = now;
	ps_lastbyte = now;
	p->bytes += len;
	while (len > 0) {
		nl = memchr(buf, '\n', len);
		take = nl == NULL ? len : (size_t)(nl - buf) + 1;
		if (p->linelen == 0 && nl != NULL)
			ps_line(p, (const char *)buf, take);
		else {
			if (p->linelen + take > PS_LINE_MAX) {
				p->bad++;
				p->linelen = 0;
				take = len < take ? len : take;
			} else {
				memcpy(p->line + p->linelen, buf, take);
				p->linelen += take;
				if (nl != NULL) {
					ps_line(p, p->line, p->linelen);
					p->linelen = 0;
				}
			}
		}
		buf += take;
		len -= take;
	}
	/* Done when the last expected line came (lost lines or not). */
	if (ps_expect > 0 && !p->done && (p->bytes >= ps_expect ||
	    (p->synced && (p->last + 2) * (p->namelen + 13) > ps_expect))) {
		p->done = 1;
		if (++ps_ndone == ps_attached) {
			ps_print("done %u %" PRIu64 " %.6f", ps_ndone,
			    ps_expect, (ps_lastbyte - ps_first) / 1e6);
		}
	}
}

/* Strip telnet commands; return the plain length. */
static size_t
ps_telnet(struct person *p, const u_char *in, size_t len, u_char *out)
{
	size_t	i, n = 0;
	u_char	b;

	for (i = 0; i < len; i++) {
		b = in[i];
		switch (p->tstate) {
		case PT_DATA:
			if (b == TEL_IAC)
				p->tstate = PT_IAC;
			else
				out[n++] = b;
			break;
		case PT_IAC:
			if (b == TEL_IAC) {
				out[n++] = b;
				p->tstate = PT_DATA;
			} else if (b >= TEL_WILL)
				p->tstate = PT_VERB;
			else if (b == TEL_SB)
				p->tstate = PT_SB;
			else
				p->tstate = PT_DATA;
			break;
		case PT_VERB:
			p->tstate = PT_DATA;
			break;
		case PT_SB:
			if (b == TEL_IAC)
				p->tstate = PT_SB_IAC;
			break;
		case PT_SB_IAC:
			p->tstate = b == TEL_SE ? PT_DATA : PT_SB;
			break;
		}
	}
	return (n);
}

static void
ps_send_name(struct person *p)
{
	char	buf[PS_NAME_MAX];
	int	n;

	n = snprintf(buf, sizeof buf, "%s\r", p->name);
	if (write(p->fd, buf, n) != n)
		ps_close(p, "write-failed");
	p->state = PS_HEADER;
}

static void
ps_retry(evutil_socket_t fd, short what, void *arg)
{
	struct person	*p = arg;

	if (p->state == PS_PROMPT)
		ps_send_name(p);
}

/* Before the attach line: the prompt, the name, the "[...]" line. */
static void
ps_menu(struct person *p, const u_char *buf, size_t len)
{
	struct timeval	 tv;
	u_char		 rest[PS_LINE_MAX];
	char		*s, *e;
	size_t		 k;

	if (p->linelen + len >= PS_LINE_MAX) {
		/* Only the tail matters. */
		k = p->linelen + len - (PS_LINE_MAX / 2);
		if (k >= p->linelen) {
			buf += k - p->linelen;
			len -= k - p->linelen;
			p->linelen = 0;
		} else {
			memmove(p->line, p->line + k, p->linelen - k);
			p->linelen -= k;
		}
	}
	memcpy(p->line + p->linelen, buf, len);
	p->linelen += len;
	p->line[p->linelen] = '\0';
	if (p->state == PS_PROMPT) {
		if ((s = strstr(p->line, PS_PROMPT_TEXT)) == NULL)
			return;
		p->linelen = 0;
		if (p->retries > 0) {
			tv.tv_sec = 0;
			tv.tv_usec = 20000;
			evtimer_add(p->retry, &tv);
		} else
			ps_send_name(p);
		return;
	}
	/* PS_HEADER */
	if ((s = strchr(p->line, '[')) != NULL &&
	    (e = strstr(s, "]\r\n")) != NULL) {
		if (strncmp(s, "[attached", 9) != 0 &&
		    strncmp(s, "[spy", 4) != 0) {
			ps_close(p, "refused");
			return;
		}
		e += 3;
		k = p->linelen - (e - p->line);
		memmove(p->line, e, k);
		p->linelen = 0;
		p->state = PS_DATA;
		ps_pending--;
		ps_attached++;
		if (ps_nlat % 1024 == 0)
			ps_lat = xreallocarray(ps_lat, ps_nlat + 1024,
			    sizeof *ps_lat);
		ps_lat[ps_nlat++] = ps_now() - p->tconnect;
		ps_check_attached();
		ps_connect_more();
		memcpy(rest, p->line, k);
		ps_data(p, rest, k);
		return;
	}
	if (strstr(p->line, PS_PROMPT_TEXT) != NULL) {
		/* Not there (yet): ask again. */
		p->retries++;
		p->linelen = 0;
		p->state = PS_PROMPT;
		tv.tv_sec = 0;
		tv.tv_usec = 20000;
		evtimer_add(p->retry, &tv);
	}
}

static void
ps_event(evutil_socket_t fd, short what, void *arg)
{
	struct person	*p = arg;
	socklen_t	 sl;
	ssize_t		 n;
	size_t		 plain, off, chunk;
	int		 error;

	if (p->state == PS_CONNECTING) {
		sl = sizeof error;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &sl) == -1 ||
		    error != 0) {
			ps_close(p, "connect-failed");
			return;
		}
		p->state = ps_raw ? PS_DATA : PS_PROMPT;
		if (ps_raw) {
			ps_pending--;
			ps_attached++;
			ps_check_attached();
			ps_connect_more();
		}
		return;
	}
	n = read(fd, ps_buf, sizeof ps_buf);
	if (n == -1) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		ps_close(p, "read-error");
		return;
	}
	if (n == 0) {
		ps_close(p, "eof");
		return;
	}
	if (ps_raw) {
		ps_data(p, ps_buf, n);
		return;
	}
	plain = ps_telnet(p, ps_buf, n, ps_plain);
	/* Small steps through the menu so no data after it is lost. */
	off = 0;
	while (off < plain && p->state != PS_DATA && p->state != PS_CLOSED) {
		chunk = plain - off < PS_MENU_CHUNK ? plain - off :
		    PS_MENU_CHUNK;
		ps_menu(p, ps_plain + off, chunk);
		off += chunk;
	}
	if (p->state == PS_DATA)
		ps_data(p, ps_plain + off, plain - off);
}

static void
ps_connect(struct person *p)
{
	struct sockaddr_storage	*b;
	int			 one = 1;

	p->tconnect = ps_now();
	p->state = PS_CONNECTING;
	ps_pending++;
	if ((p->fd = socket(ps_server.ss_family, SOCK_STREAM, 0)) == -1) {
		ps_close(p, "socket");
		return;
	}
	fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
	setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (ps_nbinds > 0) {
		b = &ps_binds[ps_nextbind++ % ps_nbinds];
		if (bind(p->fd, (struct sockaddr *)b, b->ss_family ==
		    AF_INET ? sizeof(struct sockaddr_in) :
		    sizeof(struct sockaddr_in6)) == -1) {
			ps_close(p, "bind");
			return;
		}
	}
	if (connect(p->fd, (struct sockaddr *)&ps_server, ps_serverlen) ==
	    -1 && errno != EINPROGRESS) {
		ps_close(p, "connect");
		return;
	}
	/* Writable = connected; then readable. */
	p->ev = event_new(ps_base, p->fd, EV_WRITE, ps_event_first, p);
	event_add(p->ev, NULL);
}

static void
ps_connected_rearm(struct person *p)
{
	event_del(p->ev);
	event_assign(p->ev, ps_base, p->fd, EV_READ | EV_PERSIST, ps_event,
	    p);
	event_add(p->ev, NULL);
}

static void
ps_event_first(evutil_socket_t fd, short what, void *arg)
{
	struct person	*p = arg;

	ps_event(fd, what, arg);
	if (p->state != PS_CLOSED)
		ps_connected_rearm(p);
}

static void
ps_connect_more(void)
{
	struct person	*p;

	while (ps_next < ps_npeople && ps_pending < ps_max_pending) {
		p = ps_people[ps_next++];
		ps_connect(p);
	}
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

static void
ps_stats(void)
{
	struct person	*p;
	uint64_t	 bytes = 0, lines = 0, gaps = 0, missing = 0;
	uint64_t	 dups = 0, bad = 0, notices = 0;
	u_int		 i;

	for (i = 0; i < ps_npeople; i++) {
		p = ps_people[i];
		bytes += p->bytes;
		lines += p->lines;
		gaps += p->gaps;
		missing += p->missing;
		dups += p->dups;
		bad += p->bad;
		notices += p->notices;
	}
	ps_print("stats people=%u attached=%u closed=%u bytes=%" PRIu64
	    " lines=%" PRIu64 " gaps=%" PRIu64 " missing=%" PRIu64 " dups=%"
	    PRIu64 " bad=%" PRIu64 " notices=%" PRIu64 " span=%.6f",
	    ps_npeople, ps_attached, ps_closed, bytes, lines, gaps, missing,
	    dups, bad, notices, ps_first ? (ps_lastbyte - ps_first) / 1e6 : 0);
}

static void
ps_latcmd(void)
{
	uint32_t	*v;

	v = xreallocarray(NULL, ps_nlat + 1, sizeof *v);
	memcpy(v, ps_lat, ps_nlat * sizeof *v);
	qsort(v, ps_nlat, sizeof *v, lat_cmp);
	ps_print("lat attach n=%zu p50=%u p90=%u p99=%u max=%u", ps_nlat,
	    lat_pct(v, ps_nlat, 50), lat_pct(v, ps_nlat, 90),
	    lat_pct(v, ps_nlat, 99), ps_nlat ? v[ps_nlat - 1] : 0);
	free(v);
}

static void
ps_stdin(evutil_socket_t fd, short what, void *arg)
{
	static char	 buf[4096];
	static size_t	 len;
	char		*nl, *start;
	ssize_t		 n;

	n = read(fd, buf + len, sizeof buf - 1 - len);
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0)
		exit(0);
	len += n;
	buf[len] = '\0';
	start = buf;
	while ((nl = strchr(start, '\n')) != NULL) {
		*nl = '\0';
		if (strcmp(start, "stats") == 0)
			ps_stats();
		else if (strcmp(start, "lat") == 0)
			ps_latcmd();
		else if (strcmp(start, "quit") == 0)
			exit(0);
		else if (strncmp(start, "ping", 4) == 0)
			ps_print("pong%s", start + 4);
		else if (*start != '\0')
			ps_print("error - bad-command %s", start);
		start = nl + 1;
	}
	len -= start - buf;
	memmove(buf, start, len);
	if (len == sizeof buf - 1)
		len = 0;
}

static void
ps_add(const char *name)
{
	struct person	*p;

	p = xcalloc(1, sizeof *p);
	p->idx = ps_npeople;
	p->name = xstrdup(name);
	p->namelen = strlen(name);
	if (p->namelen > PS_NAME_MAX - 16)
		fatalx("name too long: %s", name);
	p->fd = -1;
	p->retry = evtimer_new(ps_base, ps_retry, p);
	ps_people = xreallocarray(ps_people, ps_npeople + 1,
	    sizeof *ps_people);
	ps_people[ps_npeople++] = p;
}

static void __attribute__((__noreturn__))
usage(void)
{
	fprintf(stderr, "usage: peoplesim -s host:port [-b addr[,addr...]] "
	    "[-n count] [-p prefix] [-f first]\n"
	    "\t[--per n] [--expect bytes] [--max-pending n] [--raw] "
	    "[name ...]\n");
	exit(1);
}

enum {
	OPT_PER = 256,
	OPT_EXPECT,
	OPT_MAX_PENDING,
	OPT_RAW
};

static const struct option ps_longopts[] = {
	{ "per", required_argument, NULL, OPT_PER },
	{ "expect", required_argument, NULL, OPT_EXPECT },
	{ "max-pending", required_argument, NULL, OPT_MAX_PENDING },
	{ "raw", no_argument, NULL, OPT_RAW },
	{ NULL, 0, NULL, 0 }
};

int
main(int argc, char **argv)
{
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;
	struct rlimit		 rl;
	struct event		*ev;
	const char		*prefix = "vm-";
	char			 name[PS_NAME_MAX];
	char			*s, *p, *a;
	u_int			 count = 0, first = 0, per = 1, i, j;
	int			 ch;

	log_init(1, 0);
	signal(SIGPIPE, SIG_IGN);
	if ((ps_base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	while ((ch = getopt_long(argc, argv, "b:f:n:p:s:", ps_longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 's':
			if (ps_parse_addr(optarg, &ps_server,
			    &ps_serverlen) == -1)
				fatalx("bad address %s", optarg);
			break;
		case 'b':
			p = s = xstrdup(optarg);
			while ((a = strsep(&p, ",")) != NULL) {
				if (*a == '\0')
					continue;
				ps_binds = xreallocarray(ps_binds,
				    ps_nbinds + 1, sizeof *ps_binds);
				memset(&ps_binds[ps_nbinds], 0,
				    sizeof *ps_binds);
				sin = (struct sockaddr_in *)&ps_binds[ps_nbinds];
				sin6 = (struct sockaddr_in6 *)sin;
				if (inet_pton(AF_INET, a, &sin->sin_addr) == 1)
					sin->sin_family = AF_INET;
				else if (inet_pton(AF_INET6, a,
				    &sin6->sin6_addr) == 1)
					sin6->sin6_family = AF_INET6;
				else
					fatalx("bad bind address %s", a);
				ps_nbinds++;
			}
			free(s);
			break;
		case 'f':
			first = strtoul(optarg, NULL, 10);
			break;
		case 'n':
			count = strtoul(optarg, NULL, 10);
			break;
		case 'p':
			prefix = optarg;
			if (strlen(prefix) > PS_NAME_MAX - 32)
				fatalx("prefix too long");
			break;
		case OPT_PER:
			per = strtoul(optarg, NULL, 10);
			break;
		case OPT_EXPECT:
			ps_expect = strtoull(optarg, NULL, 10);
			break;
		case OPT_MAX_PENDING:
			ps_max_pending = strtoul(optarg, NULL, 10);
			if (ps_max_pending == 0)
				ps_max_pending = 1;
			break;
		case OPT_RAW:
			ps_raw = 1;
			break;
		default:
			usage();
		}
	}
	if (ps_serverlen == 0)
		usage();
	for (i = 0; i < count; i++) {
		snprintf(name, sizeof name, "%s%05u", prefix, first + i);
		for (j = 0; j < per; j++)
			ps_add(name);
	}
	for (; optind < argc; optind++)
		for (j = 0; j < per; j++)
			ps_add(argv[optind]);
	if (ps_npeople == 0)
		usage();

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit");
	}
	setvbuf(stdout, NULL, _IOFBF, 65536);
	ev = event_new(ps_base, STDIN_FILENO, EV_READ | EV_PERSIST, ps_stdin,
	    NULL);
	event_add(ev, NULL);
	ps_start = ps_now();
	ps_connect_more();
	event_base_dispatch(ps_base);
	return (0);
}
