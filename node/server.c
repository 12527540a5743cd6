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
 * The node's event loop: listeners, signals, the once-per-second tick and
 * the end-of-turn reaper.
 *
 * Listeners are kept per configured address so that a reload can close
 * the ones that went away and open new ones without touching the rest.
 * When accept fails for lack of descriptors, the listener pauses for a
 * second instead of spinning.
 */

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "vspcd.h"
#include "store.h"
#include "proto/handoff.pb-c.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static const char *listener_names[LISTEN_ALL_MAX] = {
	"vm", "console", "compat", "vm_tls", "console_tls", "http",
	"cluster", "control"
};

/* Refusals logged per second at most; the metric counts them all. */
#define SERVER_REFUSAL_LOGS	10

static const char *refusal_names[REFUSED_MAX] = {
	"allow", "max_connections", "max_per_source", "tls"
};

/*
 * A connection handed to the TLS process, holding its per-source slot
 * until the plain end comes back (or the handshake failed, or the TLS
 * process went away: then the deadline frees it).
 */
struct server_pending {
	struct sockaddr_storage	 ss;
	u_int			 kind;
	struct limit_slot	*slot;
	time_t			 deadline;
	TAILQ_ENTRY(server_pending) entry;
};
TAILQ_HEAD(server_pendings, server_pending);
static struct server_pendings server_pendings =
    TAILQ_HEAD_INITIALIZER(server_pendings);

struct listener {
	enum listener_kind	 kind;
	char			*text;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	struct evconnlistener	*lev;
	struct event		*retry;
	int			 mark;
	TAILQ_ENTRY(listener)	 entry;
};
TAILQ_HEAD(listeners, listener);

struct event_base	*server_base;
struct config		*server_conf;
struct store		*server_store;
struct stats		 server_stats;
time_t			 server_now;
int			 server_debug;
int			 server_draining;
struct auth		*server_auth;
struct limit_slot	*server_accept_slot;

static const struct peer_security server_peer_security = {
	server_allowed,
	tls_enabled,
	tls_accept,
	tls_connect
};

static struct listeners	 listeners = TAILQ_HEAD_INITIALIZER(listeners);
static struct event	*server_reaper;
static struct event	*server_tick;
static struct event	*server_sigs[6];
static int		 server_reap_pending;
static char		**server_overrides;
static u_int		 server_noverrides;
static u_int		 server_ticks;

/* Microseconds on the monotonic clock. */
uint64_t
server_monotime_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static void
server_reap_cb(evutil_socket_t fd, short events, void *arg)
{
	server_reap_pending = 0;
	client_reap(NULL);
	vmconn_reap(NULL);
}

/* Ask for dead objects to be freed at the end of this loop turn. */
void
server_reap_later(void)
{
	if (!server_reap_pending && server_reaper != NULL) {
		server_reap_pending = 1;
		event_active(server_reaper, 0, 0);
	}
}

/* Tell systemd what the node is doing (systemctl status shows it). */
static void
server_notify_status(void)
{
#ifdef HAVE_SYSTEMD
	struct client	*c;
	u_int		 people = 0;

	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->kind != CLIENT_REMOTE && !(c->flags & CLIENT_DEAD))
			people++;
	}
	sd_notifyf(0, "STATUS=%s, node %s: %u VMs, %u people, %u consoles",
	    server_draining ? "draining" : "serving", server_conf->node_id,
	    nvmconns, people, nconsoles);
#endif
}

static void	server_pending_expire(void);
static void	server_refusal_roll(void);
static int	server_refusal_log(void);

static void
server_tick_cb(evutil_socket_t fd, short events, void *arg)
{
	server_now = time(NULL);
	server_refusal_roll();
	server_pending_expire();
	client_check_stuck(server_now);
	console_expire(server_now);
	console_mark(server_now);
	if (++server_ticks % 10 == 0)
		server_notify_status();
}

/* Start or stop draining: /healthz says 503, status says so. */
void
server_set_draining(int on)
{
	on = on != 0;
	if (on == server_draining)
		return;
	server_draining = on;
	log_info("node %s: %s", server_conf->node_id, on ? "draining" :
	    "no longer draining");
	server_notify_status();
}

/* How many VM listeners are open (0: the node cannot take VMs). */
u_int
server_vm_listeners(void)
{
	struct listener	*l;
	u_int		 n = 0;

	TAILQ_FOREACH(l, &listeners, entry) {
		if (l->kind == LISTEN_VM && l->lev != NULL)
			n++;
	}
	return (n);
}

static void
server_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	struct listener	*l = arg;

	if (l->lev != NULL)
		evconnlistener_enable(l->lev);
}

static void
server_accept_error(struct evconnlistener *lev, void *arg)
{
	struct listener	*l = arg;
	struct timeval	 tv = { 1, 0 };
	int		 e = EVUTIL_SOCKET_ERROR();

	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		/* Out of descriptors: pause and don't try again for 1 s. */
		log_warnx("%s listener %s: accept: %s; pausing for a second",
		    listener_names[l->kind], l->text, strerror(e));
		evconnlistener_disable(lev);
		if (l->retry == NULL)
			l->retry = evtimer_new(server_base, server_retry_cb, l);
		evtimer_add(l->retry, &tv);
		return;
	}
	log_warnx("%s listener %s: accept: %s", listener_names[l->kind],
	    l->text, strerror(e));
}

/* A listener kind's name for the log ("vm", "console", "compat"). */
const char *
server_listener_name(u_int kind)
{
	return (kind < LISTEN_ALL_MAX ? listener_names[kind] : "unknown");
}

/* A refusal's name, the reason label of the metric. */
const char *
server_refusal_name(u_int r)
{
	return (r < REFUSED_MAX ? refusal_names[r] : "unknown");
}

/* Count a connection refused at accept. */
void
server_refused(u_int kind, enum server_refusal why)
{
	if (kind < LISTEN_ALL_MAX && why < REFUSED_MAX)
		server_stats.refused[kind][why]++;
	if (kind == LISTEN_VM || kind == LISTEN_VM_TLS)
		server_stats.vm_refused++;
}

/* The kind whose limits a listener shares (telnets counts as telnet). */
static u_int
server_limit_kind(u_int kind)
{
	switch (kind) {
	case LISTEN_VM_TLS:
		return (LISTEN_VM);
	case LISTEN_CONSOLE_TLS:
		return (LISTEN_CONSOLE);
	default:
		return (kind);
	}
}

/*
 * Is sa (the real source) in the allow list of a listener kind?  If not,
 * log and count it; the caller closes.
 */
int
server_allowed(u_int kind, const struct sockaddr *sa, const char *name)
{
	const struct acl	*acl;
	char			 addr[64];

	switch (server_limit_kind(kind)) {
	case LISTEN_VM:
		acl = &server_conf->vm_allow;
		break;
	case LISTEN_CONSOLE:
		acl = &server_conf->console_allow;
		break;
	case LISTEN_COMPAT:
		acl = &server_conf->compat_allow;
		break;
	case LISTEN_HTTP:
		acl = &server_conf->http_allow;
		break;
	case LISTEN_PEER:
		acl = &server_conf->cluster_peer_allow;
		break;
	default:
		return (1);
	}
	if (acl_match(acl, sa))
		return (1);
	server_refused(kind, REFUSED_ALLOW);
	if (server_refusal_log())
		log_warnx("%s listener %s: connection from %s refused by "
		    "[%s] %s", server_listener_name(kind), name,
		    addr_fmt(sa, addr, sizeof addr), kind == LISTEN_PEER ?
		    "cluster" : server_listener_name(server_limit_kind(kind)),
		    kind == LISTEN_PEER ? "peer_allow" : "allow");
	return (0);
}

/* Hot upgrade: the per-source slot of a connection handed over. */
struct limit_slot *
server_limit_take(u_int kind, const char *addr)
{
	return (limit_take_text(addr, server_limit_kind(kind)));
}

static void
server_pending_free(struct server_pending *sp)
{
	TAILQ_REMOVE(&server_pendings, sp, entry);
	limit_put(sp->slot);
	free(sp);
}

static struct server_pending *
server_pending_find(const struct sockaddr *sa, u_int kind)
{
	struct server_pending	*sp;
	socklen_t		 len;

	len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
	    sizeof(struct sockaddr_in);
	TAILQ_FOREACH(sp, &server_pendings, entry) {
		if (sp->kind == kind && sp->ss.ss_family == sa->sa_family &&
		    memcmp(&sp->ss, sa, len) == 0)
			return (sp);
	}
	return (NULL);
}

static void
server_pending_expire(void)
{
	struct server_pending	*sp, *sp1;

	TAILQ_FOREACH_SAFE(sp, &server_pendings, entry, sp1) {
		if (sp->deadline <= server_now)
			server_pending_free(sp);
	}
}

/*
 * Refusals logged at most SERVER_REFUSAL_LOGS a second: a flood is
 * counted in full by the metric, but must not flood the log.  Those not
 * logged are summed up in one line when their second is over.
 */
static time_t	server_refusal_second;
static u_int	server_refusal_logged, server_refusal_dropped;

static void
server_refusal_roll(void)
{
	if (server_now == server_refusal_second)
		return;
	server_refusal_second = server_now;
	server_refusal_logged = 0;
	if (server_refusal_dropped != 0) {
		log_warnx("%u more refused connections not logged",
		    server_refusal_dropped);
		server_refusal_dropped = 0;
	}
}

/* May a refusal be logged now? */
static int
server_refusal_log(void)
{
	server_refusal_roll();
	if (server_refusal_logged < SERVER_REFUSAL_LOGS) {
		server_refusal_logged++;
		return (1);
	}
	server_refusal_dropped++;
	return (0);
}

/* The address of sa without its port ("10.0.0.1", "[::1]"). */
static void
server_source(const struct sockaddr *sa, char *host, size_t len)
{
	char	*p;

	addr_fmt(sa, host, len);
	if ((p = strrchr(host, ':')) != NULL && (host[0] != '[' ||
	    p[-1] == ']'))
		*p = '\0';
}

/* Tell a refused connection why, in its protocol, and close it. */
static void
server_refuse(u_int kind, int fd, const char *text)
{
	char	*line;

	switch (kind) {
	case LISTEN_CONSOLE:
	case LISTEN_CONSOLE_TLS:
	case LISTEN_COMPAT:
		refuse_connection(fd, kind, text);
		break;
	case LISTEN_VM:
		xasprintf(&line, "%s\r\n", text);
		(void)write(fd, line, strlen(line));
		free(line);
		close(fd);
		break;
	default:
		/* Not on telnets: the peer expects a TLS handshake. */
		close(fd);
		break;
	}
}

static void
server_refuse_draining(u_int kind, const char *name, int fd,
    const struct sockaddr *sa)
{
	char	addr[64], *msg;

	if (kind == LISTEN_VM || kind == LISTEN_VM_TLS)
		server_stats.vm_refused++;
	if (server_refusal_log())
		log_info("%s listener %s: connection from %s refused: "
		    "draining", server_listener_name(kind), name,
		    addr_fmt(sa, addr, sizeof addr));
	if (kind == LISTEN_VM || kind == LISTEN_VM_TLS) {
		close(fd);
		return;
	}
	xasprintf(&msg, "vspcd: node %s is draining and takes no new "
	    "sessions; try another node", server_conf->node_id);
	server_refuse(kind, fd, msg);
	free(msg);
}

/* Refuse a connection from outside the allow list, saying so. */
static void
server_refuse_allow(u_int kind, int fd, const struct sockaddr *sa)
{
	char	host[64], *msg;

	if (server_limit_kind(kind) == LISTEN_VM) {
		close(fd);
		return;
	}
	server_source(sa, host, sizeof host);
	xasprintf(&msg, "vspcd: connections from %s are not allowed here "
	    "([%s] allow)", host, server_listener_name(
	    server_limit_kind(kind)));
	server_refuse(kind, fd, msg);
	free(msg);
}

/* Refuse a connection over a limit, with a line saying which. */
static void
server_refuse_limit(u_int kind, const char *name, int fd,
    const struct sockaddr *sa, enum server_refusal why, u_int max)
{
	char	addr[64], host[64], *msg;

	server_refused(kind, why);
	addr_fmt(sa, addr, sizeof addr);
	server_source(sa, host, sizeof host);
	if (why == REFUSED_MAX_PER_SOURCE)
		xasprintf(&msg, "vspcd: too many connections from %s "
		    "(max_per_source %u)", host, max);
	else
		xasprintf(&msg, "vspcd: too many connections "
		    "(max_connections %u)", max);
	if (server_refusal_log())
		log_warnx("%s listener %s: connection from %s refused: [%s] "
		    "%s (%u) reached", server_listener_name(kind), name, addr,
		    server_listener_name(server_limit_kind(kind)),
		    server_refusal_name(why), max);
	server_refuse(kind, fd, msg);
	free(msg);
}

/* Serve a connection (plain, or the plain end of a TLS one). */
static void
server_serve(int fd, const struct sockaddr *sa, u_int kind,
    struct limit_slot *slot)
{
	server_accept_slot = slot;
	switch (server_limit_kind(kind)) {
	case LISTEN_VM:
		vmconn_create(fd, sa);
		break;
	case LISTEN_CONSOLE:
		cmdline_accept(fd, sa);
		break;
	case LISTEN_COMPAT:
		compat_accept(fd, sa);
		break;
	default:
		close(fd);
		break;
	}
	/* Whatever was created took the slot; else give it back. */
	limit_put(server_accept_slot);
	server_accept_slot = NULL;
}

/* The TLS process finished a handshake: serve the plain end. */
static void
server_tls_done(int fd, const struct sockaddr *sa, u_int kind,
    const char *name)
{
	struct server_pending	*sp;
	struct limit_slot	*slot;

	server_now = time(NULL);
	if ((kind & 0xff) == LISTEN_PEER) {
		peer_tls_done(fd, sa, kind, name);
		return;
	}
	if ((sp = server_pending_find(sa, kind)) != NULL) {
		slot = sp->slot;
		sp->slot = NULL;
		server_pending_free(sp);
	} else
		slot = limit_take(sa, server_limit_kind(kind), 0);
	server_serve(fd, sa, kind, slot);
}

/* The TLS process says a handshake failed. */
static void
server_tls_failed(const struct sockaddr *sa, u_int kind)
{
	struct server_pending	*sp;

	if ((kind & 0xff) == LISTEN_PEER) {
		server_refused(LISTEN_PEER, REFUSED_TLS);
		return;
	}
	if ((sp = server_pending_find(sa, kind)) != NULL)
		server_pending_free(sp);
	server_refused(kind, REFUSED_TLS);
}

/*
 * Admit a new connection from sa (its real source, after any PROXY
 * header) on a listener of that kind: draining, the allow list, the
 * global and per-source limits, all before any TLS work; then TLS for
 * the telnets listeners, and the module that speaks the protocol.
 */
void
server_dispatch(int fd, const struct sockaddr *sa, u_int kind,
    const char *name)
{
	struct config		*conf = server_conf;
	struct server_pending	*sp;
	struct limit_slot	*slot;
	const struct acl	*exempt;
	u_int			 lk = server_limit_kind(kind), max, per;

	server_now = time(NULL);
	if (server_draining) {
		server_refuse_draining(kind, name, fd, sa);
		return;
	}
	if (!server_allowed(kind, sa, name)) {
		server_refuse_allow(kind, fd, sa);
		return;
	}
	switch (lk) {
	case LISTEN_VM:
		max = conf->vm_max_connections;
		per = conf->vm_max_per_source;
		exempt = &conf->vm_exempt;
		break;
	case LISTEN_CONSOLE:
		max = conf->console_max_connections;
		per = conf->console_max_per_source;
		exempt = &conf->console_exempt;
		break;
	case LISTEN_COMPAT:
		max = conf->compat_max_connections;
		per = conf->compat_max_per_source;
		exempt = &conf->compat_exempt;
		break;
	default:
		close(fd);
		return;
	}
	/* The node's own host is the administrator's, not a flood. */
	if (acl_match(exempt, sa))
		per = 0;
	if (max != 0 && limit_total(lk) >= max) {
		server_refuse_limit(kind, name, fd, sa,
		    REFUSED_MAX_CONNECTIONS, max);
		return;
	}
	if ((slot = limit_take(sa, lk, per)) == NULL) {
		server_refuse_limit(kind, name, fd, sa,
		    REFUSED_MAX_PER_SOURCE, per);
		return;
	}
	if (kind == LISTEN_VM_TLS || kind == LISTEN_CONSOLE_TLS) {
		sp = xcalloc(1, sizeof *sp);
		memcpy(&sp->ss, sa, sa->sa_family == AF_INET6 ?
		    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
		sp->kind = kind;
		sp->slot = slot;
		sp->deadline = server_now + conf->vm_negotiation_timeout + 30;
		TAILQ_INSERT_TAIL(&server_pendings, sp, entry);
		tls_accept(fd, TLS_SERVER, sa, sa->sa_family == AF_INET6 ?
		    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
		    kind, name, conf->vm_negotiation_timeout,
		    server_tls_done);
		return;
	}
	server_serve(fd, sa, kind, slot);
}

/*
 * A host or person that vanishes without a word (power lost, a path cut)
 * leaves a half-open connection that nothing would ever end: TCP
 * keepalive probes after SERVER_KA_IDLE seconds of silence, every
 * SERVER_KA_INTVL, and gives up after SERVER_KA_CNT unanswered probes;
 * TCP_USER_TIMEOUT bounds as much the time data sent stays
 * unacknowledged.  A dead peer is then noticed within about 60 s, a quiet
 * but living one costs a probe every 30 s.
 */
#define SERVER_KA_IDLE		30
#define SERVER_KA_INTVL		10
#define SERVER_KA_CNT		3

void
server_keepalive(int fd)
{
	int	on = 1, idle = SERVER_KA_IDLE, intvl = SERVER_KA_INTVL;
	int	cnt = SERVER_KA_CNT;
	u_int	ut = (SERVER_KA_IDLE + SERVER_KA_INTVL * SERVER_KA_CNT) * 1000;

	/* Not TCP (a Unix socket in a test): nothing to do. */
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == -1)
		return;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
	    sizeof intvl);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
}

/*
 * A connection from a [vm] proxy_protocol_from address waits for its
 * PROXY header first (proxy.c); any other is served at once.
 */
static void
server_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener	*l = arg;

	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	server_keepalive(fd);
	server_now = time(NULL);
	if (acl_match(&server_conf->vm_proxy_from, sa)) {
		proxy_accept(fd, sa, (socklen_t)salen, l->kind, l->text,
		    server_dispatch);
		return;
	}
	server_dispatch(fd, sa, l->kind, l->text);
}

static void
server_listener_free(struct listener *l)
{
	TAILQ_REMOVE(&listeners, l, entry);
	if (l->lev != NULL)
		evconnlistener_free(l->lev);
	if (l->retry != NULL)
		event_free(l->retry);
	free(l->text);
	free(l);
}

static int
server_listener_open(struct listener *l, char **err)
{
	int	flags = LEV_OPT_CLOSE_ON_FREE|LEV_OPT_REUSEABLE|
		    LEV_OPT_CLOSE_ON_EXEC;

	if (l->ss.ss_family == AF_INET6)
		flags |= LEV_OPT_BIND_IPV6ONLY;
	l->lev = evconnlistener_new_bind(server_base, server_accept, l, flags,
	    1024, (struct sockaddr *)&l->ss, l->sslen);
	if (l->lev == NULL) {
		xasprintf(err, "%s listener %s: %s", listener_names[l->kind],
		    l->text, strerror(errno));
		return (-1);
	}
	evconnlistener_set_error_cb(l->lev, server_accept_error);
	log_info("listening for %s connections on %s",
	    listener_names[l->kind], l->text);
	return (0);
}

/*
 * Make the listeners of one kind match a comma-separated address list:
 * keep those already open, open new ones, mark the rest for closing.
 */
static int
server_listen(enum listener_kind kind, const char *list, int defport,
    char **err)
{
	struct listener		*l;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	char			*copy, *p, *word, *perr;
	int			 found;

	if (list == NULL)
		return (0);
	copy = xstrdup(list);
	p = copy;
	while ((word = strsep(&p, ", ")) != NULL) {
		if (*word == '\0')
			continue;
		if (addr_parse_listen(word, defport, &ss, &sslen, &perr) ==
		    -1) {
			xasprintf(err, "[%s] %slisten: %s",
			    listener_names[server_limit_kind(kind)],
			    kind != server_limit_kind(kind) ? "tls_" : "",
			    perr);
			free(perr);
			free(copy);
			return (-1);
		}
		found = 0;
		TAILQ_FOREACH(l, &listeners, entry) {
			if (l->kind == kind && l->sslen == sslen &&
			    memcmp(&l->ss, &ss, sslen) == 0) {
				l->mark = 0;
				found = 1;
			}
		}
		if (found)
			continue;
		l = xcalloc(1, sizeof *l);
		l->kind = kind;
		l->text = xstrdup(word);
		l->ss = ss;
		l->sslen = sslen;
		TAILQ_INSERT_TAIL(&listeners, l, entry);
		if (server_listener_open(l, err) == -1) {
			server_listener_free(l);
			free(copy);
			return (-1);
		}
	}
	free(copy);
	return (0);
}

static int
server_listen_all(struct config *conf, char **err)
{
	struct listener	*l, *l1;

	TAILQ_FOREACH(l, &listeners, entry)
		l->mark = 1;
	if (server_listen(LISTEN_VM, conf->vm_listen, VSPC_PORT_VM,
	    err) == -1 ||
	    server_listen(LISTEN_CONSOLE, conf->console_listen,
	    VSPC_PORT_CONSOLE, err) == -1 ||
	    server_listen(LISTEN_COMPAT, conf->compat_listen,
	    VSPC_PORT_COMPAT, err) == -1 ||
	    server_listen(LISTEN_VM_TLS, conf->vm_tls_listen, 13369,
	    err) == -1 ||
	    server_listen(LISTEN_CONSOLE_TLS, conf->console_tls_listen, 13376,
	    err) == -1)
		return (-1);
	TAILQ_FOREACH_SAFE(l, &listeners, entry, l1) {
		if (l->mark) {
			log_info("no longer listening for %s connections on %s",
			    listener_names[l->kind], l->text);
			server_listener_free(l);
		}
	}
	return (0);
}

/* Raise the soft descriptor limit to the hard one: VMs need them. */
static void
server_raise_nofile(void)
{
	struct rlimit	rl;
	rlim_t		old;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit");
		return;
	}
	old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("setrlimit");
		return;
	}
	log_info("file descriptor limit: soft %llu (was %llu), hard %llu",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)old,
	    (unsigned long long)rl.rlim_max);
}

/*
 * Read the certificates ([vm] tls_cert for the telnets listeners,
 * [cluster] tls_cert for the peer link).  At start an error is fatal;
 * on reload the old certificate stays in use and the reason is logged:
 * established TLS connections are never touched either way.
 */
static int
server_tls_setup(struct config *conf, int starting, char **err)
{
	char	*e = NULL;
	int	 rv = 0;

	if (tls_configure(TLS_SERVER, conf->vm_tls_cert, conf->vm_tls_key,
	    NULL, &e) == -1) {
		if (starting) {
			xasprintf(err, "[vm] tls_cert: %s", e);
			free(e);
			return (-1);
		}
		log_warnx("reload: [vm] tls_cert: %s; keeping the certificate "
		    "in use", e);
		free(e);
		e = NULL;
		rv = 1;
	}
	if (tls_configure(TLS_PEER, conf->cluster_tls_cert,
	    conf->cluster_tls_key, conf->cluster_tls_ca, &e) == -1) {
		if (starting) {
			xasprintf(err, "[cluster] tls_cert: %s", e);
			free(e);
			return (-1);
		}
		log_warnx("reload: [cluster] tls_cert: %s; keeping the "
		    "certificate in use", e);
		free(e);
		rv = 1;
	}
	tls_set_dispatch(server_tls_done);
	tls_set_failed(server_tls_failed);
	peer_security = &server_peer_security;
	if ((tls_enabled(TLS_SERVER) || tls_enabled(TLS_PEER)) &&
	    tls_channel() == -1 && !handoff_restoring() &&
	    tls_process_start(err) == -1)
		return (-1);
	return (rv);
}

/*
 * The users file: read at start and whenever [console] users_file names
 * another file; cmdline.c reads it again at each login if it changed.
 */
static int
server_auth_setup(struct config *conf, struct config *old, char **err)
{
	struct auth	*a;

	if (*conf->console_users_file == '\0') {
		if (server_auth != NULL)
			log_warnx("[console] users_file unset: the console "
			    "port takes people without a login");
		auth_free(server_auth);
		server_auth = NULL;
		return (0);
	}
	if (server_auth != NULL && old != NULL &&
	    strcmp(old->console_users_file, conf->console_users_file) == 0)
		return (0);
	if ((a = auth_load(conf->console_users_file, err)) == NULL)
		return (-1);
	auth_free(server_auth);
	server_auth = a;
	auth_init(server_base);
	log_info("users file %s: console logins required",
	    conf->console_users_file);
	return (0);
}

/* Reload the configuration; the old one stays on error. */
int
server_reload(char **err)
{
	struct config	*conf, *old = server_conf;
	u_int		 i;

	conf = config_default();
	if (old->file != NULL && config_load(conf, old->file, err) == -1)
		goto fail;
	for (i = 0; i < server_noverrides; i++) {
		if (config_set(conf, server_overrides[i], err) == -1)
			goto fail;
	}
	if (config_check(conf, err) == -1)
		goto fail;
	if (strcmp(conf->node_id, old->node_id) != 0)
		log_warnx("reload: [node] id cannot change while running; "
		    "keeping %s", old->node_id);
	free(conf->node_id);
	conf->node_id = xstrdup(old->node_id);

	if (server_auth_setup(conf, old, err) == -1)
		goto fail;
	(void)server_tls_setup(conf, 0, err);
	server_conf = conf;
	if (server_listen_all(conf, err) == -1 ||
	    http_reconfigure(conf, err) == -1) {
		server_conf = old;
		server_listen_all(old, NULL);
		config_free(conf);
		return (-1);
	}
	logfile_configure(conf->log_open_files, conf->log_max_size,
	    conf->log_keep);
	console_reconfigure();
	config_free(old);
	log_info("configuration reloaded");
	return (0);

fail:
	config_free(conf);
	return (-1);
}

static void
server_signal_cb(evutil_socket_t sig, short events, void *arg)
{
	char	*err = NULL;

	switch (sig) {
	case SIGHUP:
		log_info("SIGHUP: reloading %s", server_conf->file != NULL ?
		    server_conf->file : "the configuration");
		if (server_reload(&err) == -1) {
			log_warnx("reload failed, configuration unchanged: %s",
			    err);
			free(err);
		}
		break;
	case SIGUSR1:
		log_info("SIGUSR1: reopening console logs");
		logfile_reopen_all();
		break;
	case SIGUSR2:
		log_info("SIGUSR2: upgrading in place");
		handoff_start(NULL, NULL, NULL);
		break;
	case SIGTERM:
	case SIGINT:
		log_info("%s: exiting", sig == SIGTERM ? "SIGTERM" : "SIGINT");
#ifdef HAVE_SYSTEMD
		sd_notify(0, "STOPPING=1");
#endif
		event_base_loopexit(server_base, NULL);
		break;
	}
}

static void
server_libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warnx("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

static int
server_mkdir(const char *dir)
{
	char	*copy, *p;
	int	 rc = 0;

	if (dir == NULL || *dir == '\0')
		return (0);
	copy = xstrdup(dir);
	for (p = copy + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			int	last = (*p == '\0');

			*p = '\0';
			if (mkdir(copy, 0750) == -1 && errno != EEXIST) {
				log_warn("console log directory %s", copy);
				rc = -1;
				break;
			}
			if (last)
				break;
			*p = '/';
		}
	}
	free(copy);
	return (rc);
}

/* Keep the -o overrides so that a reload applies them again. */
void
server_set_overrides(char **list, u_int n)
{
	server_overrides = list;
	server_noverrides = n;
}

/*
 * The modules of a hot upgrade, in the order their records are written
 * and read: the listeners and the store first, then consoles, the VMs'
 * connections and the people on them, and only then the peer links and
 * the cluster state that ties remote channels back to those clients.
 */
static const struct handoff_module *server_handoff_modules[] = {
	&server_handoff_module,
	&server_store_handoff_module,
	&console_handoff_module,
	&vmconn_handoff_module,
	&client_handoff_module,
	&control_handoff_module,
	&proxy_handoff_module,
	&peer_handoff_module,
	&cluster_handoff_module
};

/* Set the node up: listeners, store, signals, timers. */
int
server_start(struct config *conf, int debug)
{
	struct timeval	 tv = { 1, 0 };
	char		*err = NULL;
	int		 sigs[] = { SIGHUP, SIGUSR1, SIGUSR2, SIGTERM,
			    SIGINT };
	u_int		 i;

	server_conf = conf;
	server_debug = debug;
	server_now = time(NULL);
	metrics_init();
	for (i = 0; i < sizeof server_handoff_modules /
	    sizeof server_handoff_modules[0]; i++)
		handoff_register(server_handoff_modules[i]);
	event_set_log_callback(server_libevent_log);
	signal(SIGPIPE, SIG_IGN);
	server_raise_nofile();

	if ((server_base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	server_reaper = event_new(server_base, -1, 0, server_reap_cb, NULL);
	server_tick = event_new(server_base, -1, EV_PERSIST, server_tick_cb,
	    NULL);
	event_add(server_tick, &tv);
	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		server_sigs[i] = evsignal_new(server_base, sigs[i],
		    server_signal_cb, NULL);
		evsignal_add(server_sigs[i], NULL);
	}

	server_mkdir(conf->log_dir);
	logfile_init(conf->log_open_files);
	logfile_configure(conf->log_open_files, conf->log_max_size,
	    conf->log_keep);
	if (*conf->cluster_redis != '\0' || *conf->cluster_sentinels != '\0') {
		server_store = store_redis_create(server_base, conf, &err);
		if (server_store == NULL) {
			log_warnx("%s", err);
			free(err);
			return (-1);
		}
		if ((handoff_restoring() ? peer_configure(conf, &err) :
		    peer_init(conf, &err)) == -1) {
			log_warnx("%s", err);
			free(err);
			return (-1);
		}
	} else
		server_store = store_local_create(conf->node_id);

	/* The TLS process is forked before any thread is started. */
	if (server_tls_setup(conf, 1, &err) == -1 ||
	    server_auth_setup(conf, NULL, &err) == -1) {
		log_warnx("%s", err);
		free(err);
		return (-1);
	}

	if (handoff_restoring()) {
		/* Everything, listeners included, comes from the old process. */
		if (server_store->shared)
			cluster_start();
		handoff_restore_run();
		if ((tls_enabled(TLS_SERVER) || tls_enabled(TLS_PEER)) &&
		    tls_channel() == -1 && tls_process_start(&err) == -1) {
			log_warnx("%s", err);
			free(err);
			return (-1);
		}
		log_info("vspcd %s node %s upgraded in place (store: %s)",
		    VSPCD_VERSION, conf->node_id, server_store->ops->name);
		return (0);
	}
	if (server_listen_all(conf, &err) == -1 ||
	    http_init(conf, &err) == -1) {
		log_warnx("%s", err);
		free(err);
		return (-1);
	}
	if (control_init(conf, &err) == -1) {
		log_warnx("%s", err);
		free(err);
		return (-1);
	}
	if (server_store->shared)
		cluster_start();
	log_info("vspcd %s node %s ready (store: %s)", VSPCD_VERSION,
	    conf->node_id, server_store->ops->name);
#ifdef HAVE_SYSTEMD
	sd_notifyf(0, "READY=1\nSTATUS=serving, node %s", conf->node_id);
#endif
	return (0);
}

/* Run until told to stop, then tear everything down. */
int
server_loop(void)
{
	struct listener	*l;
	struct vmconn	*v, *v1;
	u_int		 i;

	event_base_dispatch(server_base);

	while ((l = TAILQ_FIRST(&listeners)) != NULL)
		server_listener_free(l);
	proxy_shutdown();
	refuse_shutdown();
	http_shutdown();
	control_shutdown();
	client_shutdown("vspcd is shutting down");
	TAILQ_FOREACH_SAFE(v, &all_vmconns, gentry, v1) {
		v->references = 0;
		vmconn_close(v, "vspcd is shutting down");
	}
	client_reap(NULL);
	vmconn_reap(NULL);
	if (cluster_enabled()) {
		cluster_stop();
		peer_shutdown();
	}
	console_free_all();
	logfile_shutdown();
	tls_process_stop();
	tls_shutdown();
	auth_shutdown();
	auth_free(server_auth);
	server_auth = NULL;
	while (!TAILQ_EMPTY(&server_pendings))
		server_pending_free(TAILQ_FIRST(&server_pendings));
	store_free(server_store);
	for (i = 0; i < sizeof server_sigs / sizeof server_sigs[0]; i++) {
		if (server_sigs[i] != NULL)
			event_free(server_sigs[i]);
	}
	event_free(server_reaper);
	event_free(server_tick);
	event_base_free(server_base);
	server_base = NULL;
	return (0);
}

/* Hot upgrade: stop (1) or resume (0) accepting while quiescing. */
static void
server_handoff_pause(int on)
{
	struct listener	*l;

	tls_handoff_pause(on);
	TAILQ_FOREACH(l, &listeners, entry) {
		if (l->lev == NULL)
			continue;
		if (on)
			evconnlistener_disable(l->lev);
		else
			evconnlistener_enable(l->lev);
	}
}

/* Hot upgrade: the store must have answered everything asked of it. */
static int
server_handoff_busy(char *why, size_t len)
{
	if (server_store->inflight != 0) {
		snprintf(why, len, "%u store commands in flight",
		    server_store->inflight);
		return (1);
	}
	return (0);
}

/* Hot upgrade: listeners, statistics, draining and the next IDs. */
static void
server_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Server	  m = VSPC__HANDOFF__SERVER__INIT;
	Vspc__Handoff__Listener	 *ls, *hs;
	struct listener		 *l;
	int			  hfd[16];
	char			 *htext[16];
	size_t			  n = 0, i;

	TAILQ_FOREACH(l, &listeners, entry)
		n++;
	ls = xcalloc(n + 1, sizeof *ls);
	m.listeners = xcalloc(n + 1, sizeof *m.listeners);
	TAILQ_FOREACH(l, &listeners, entry) {
		if (l->lev == NULL)
			continue;
		vspc__handoff__listener__init(&ls[m.n_listeners]);
		ls[m.n_listeners].kind = l->kind;
		ls[m.n_listeners].text = l->text;
		ls[m.n_listeners].fd = handoff_add_fd(h,
		    evconnlistener_get_fd(l->lev));
		m.listeners[m.n_listeners] = &ls[m.n_listeners];
		m.n_listeners++;
	}
	n = http_handoff_fds(hfd, htext, 16);
	hs = xcalloc(n + 1, sizeof *hs);
	m.http = xcalloc(n + 1, sizeof *m.http);
	for (i = 0; i < n; i++) {
		vspc__handoff__listener__init(&hs[i]);
		hs[i].text = htext[i];
		hs[i].fd = handoff_add_fd(h, hfd[i]);
		m.http[i] = &hs[i];
	}
	m.n_http = n;
	m.draining = server_draining;
	m.stats = (uint64_t *)&server_stats;
	m.n_stats = sizeof server_stats / sizeof(uint64_t);
	m.next_vmotion = vmotion_next(0, 0);
	if (tls_channel() != -1) {
		m.has_tls = 1;
		m.tls_fd = handoff_add_fd(h, tls_channel());
		m.tls_pid = tls_process_pid();
	}
	handoff_add_msg(h, HANDOFF_REC_SERVER, &m.base);
	free(ls);
	free(hs);
	free(m.listeners);
	free(m.http);
}

/* Hot upgrade: serve the inherited listeners. */
static int
server_handoff_restore(struct handoff *h, const uint8_t *data, size_t len,
    char **err)
{
	Vspc__Handoff__Server	*m;
	Vspc__Handoff__Listener	*ml;
	struct listener		*l;
	uint64_t		*st = (uint64_t *)&server_stats;
	char			*perr;
	size_t			 i;
	int			 fd;

	if ((m = vspc__handoff__server__unpack(NULL, len, data)) == NULL) {
		*err = xstrdup("malformed server record");
		return (-1);
	}
	for (i = 0; i < m->n_listeners; i++) {
		ml = m->listeners[i];
		if ((fd = handoff_take_fd(h, ml->fd)) == -1 ||
		    ml->kind >= LISTEN_KIND_MAX) {
			xasprintf(err, "listener %s: no descriptor", ml->text);
			vspc__handoff__server__free_unpacked(m, NULL);
			return (-1);
		}
		l = xcalloc(1, sizeof *l);
		l->kind = ml->kind;
		l->text = xstrdup(ml->text);
		if (addr_parse_listen(l->text, l->kind == LISTEN_VM ?
		    VSPC_PORT_VM : l->kind == LISTEN_CONSOLE ?
		    VSPC_PORT_CONSOLE : l->kind == LISTEN_VM_TLS ? 13369 :
		    l->kind == LISTEN_CONSOLE_TLS ? 13376 : VSPC_PORT_COMPAT,
		    &l->ss, &l->sslen, &perr) == -1)
			free(perr);
		TAILQ_INSERT_TAIL(&listeners, l, entry);
		l->lev = evconnlistener_new(server_base, server_accept, l,
		    LEV_OPT_CLOSE_ON_FREE|LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (l->lev == NULL) {
			close(fd);
			xasprintf(err, "listener %s: cannot adopt it", l->text);
			vspc__handoff__server__free_unpacked(m, NULL);
			return (-1);
		}
		evconnlistener_set_error_cb(l->lev, server_accept_error);
		log_info("listening for %s connections on %s (inherited)",
		    listener_names[l->kind], l->text);
	}
	for (i = 0; i < m->n_http; i++) {
		ml = m->http[i];
		if ((fd = handoff_take_fd(h, ml->fd)) == -1 ||
		    http_adopt(fd, ml->text, err) == -1) {
			if (*err == NULL)
				xasprintf(err, "http listener %s: no "
				    "descriptor", ml->text);
			vspc__handoff__server__free_unpacked(m, NULL);
			return (-1);
		}
	}
	if (m->has_tls) {
		if ((fd = handoff_take_fd(h, m->tls_fd)) == -1) {
			*err = xstrdup("TLS process channel: no descriptor");
			vspc__handoff__server__free_unpacked(m, NULL);
			return (-1);
		}
		tls_adopt_channel(fd, m->tls_pid);
		log_info("tls: TLS process %u adopted; its connections stay",
		    m->tls_pid);
	}
	server_draining = m->draining;
	for (i = 0; i < m->n_stats && i < sizeof server_stats /
	    sizeof(uint64_t); i++)
		st[i] = m->stats[i];
	(void)vmotion_next(1, m->next_vmotion);
	vspc__handoff__server__free_unpacked(m, NULL);
	return (0);
}

const struct handoff_module server_handoff_module = {
	.name = "server",
	.rec = HANDOFF_REC_SERVER,
	.pause = server_handoff_pause,
	.busy = server_handoff_busy,
	.save = server_handoff_save,
	.restore = server_handoff_restore
};

/* Hot upgrade: only the in-process store has tables to pass on. */
static int
server_store_handoff_enabled(void)
{
	return (!server_store->shared);
}

static void
server_store_handoff_save(struct handoff *h)
{
	store_local_handoff_save(server_store, h);
}

static int
server_store_handoff_restore(struct handoff *h, const uint8_t *data,
    size_t len, char **err)
{
	return (store_local_handoff_restore(server_store, data, len, err));
}

const struct handoff_module server_store_handoff_module = {
	.name = "store",
	.rec = HANDOFF_REC_STORE,
	.enabled = server_store_handoff_enabled,
	.save = server_store_handoff_save,
	.restore = server_store_handoff_restore
};
