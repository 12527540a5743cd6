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
 * The listeners and what happens to a connection at accept: keepalive,
 * the PROXY header, draining, the allow lists, the global and
 * per-source limits (a refused connection is told why, in its
 * protocol), the TLS handshake and the module that serves it.
 *
 * Listeners are kept per configured address so that a reload can close
 * the ones that went away and open new ones without touching the rest.
 * When accept fails for lack of descriptors, the listener pauses for a
 * second instead of spinning.
 */

#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "vspcd.h"
#include "server-int.h"

static const char *listener_names[LISTEN_ALL_MAX] = {
	"vm", "console", "compat", "vm_tls", "console_tls", "http",
	"cluster", "control"
};

/* Refusals logged per second at most; the metric counts them all. */
#define SERVER_REFUSAL_LOGS	10

static const char *refusal_names[REFUSED_MAX] = {
	"allow", "max_connections", "max_per_source", "tls"
};

struct server_pendings	 server_pendings =
    TAILQ_HEAD_INITIALIZER(server_pendings);
struct listeners	 server_listeners =
    TAILQ_HEAD_INITIALIZER(server_listeners);

static int	server_refusal_log(void);

/* How many VM listeners are open (0: the node cannot take VMs). */
u_int
server_vm_listeners(void)
{
	struct listener	*l;
	u_int		 n = 0;

	TAILQ_FOREACH(l, &server_listeners, entry) {
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

void
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

void
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

void
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

void
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
void
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
void
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
void
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

void
server_listener_free(struct listener *l)
{
	TAILQ_REMOVE(&server_listeners, l, entry);
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
		TAILQ_FOREACH(l, &server_listeners, entry) {
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
		TAILQ_INSERT_TAIL(&server_listeners, l, entry);
		if (server_listener_open(l, err) == -1) {
			server_listener_free(l);
			free(copy);
			return (-1);
		}
	}
	free(copy);
	return (0);
}

int
server_listen_all(struct config *conf, char **err)
{
	struct listener	*l, *l1;

	TAILQ_FOREACH(l, &server_listeners, entry)
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
	TAILQ_FOREACH_SAFE(l, &server_listeners, entry, l1) {
		if (l->mark) {
			log_info("no longer listening for %s connections on %s",
			    listener_names[l->kind], l->text);
			server_listener_free(l);
		}
	}
	return (0);
}
