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
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "vspcd.h"
#include "store.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

enum listener_kind {
	LISTEN_VM,
	LISTEN_CONSOLE,
	LISTEN_COMPAT,
	LISTEN_KIND_MAX
};

static const char *listener_names[LISTEN_KIND_MAX] = {
	"vm", "console", "compat"
};

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

static struct listeners	 listeners = TAILQ_HEAD_INITIALIZER(listeners);
static struct event	*server_reaper;
static struct event	*server_tick;
static struct event	*server_sigs[5];
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

static void
server_tick_cb(evutil_socket_t fd, short events, void *arg)
{
	server_now = time(NULL);
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
	return (kind < LISTEN_KIND_MAX ? listener_names[kind] : "unknown");
}

static void
server_refuse_draining(u_int kind, const char *name, int fd,
    const struct sockaddr *sa)
{
	char	addr[64], *msg;

	if (kind == LISTEN_VM)
		server_stats.vm_refused++;
	log_info("%s listener %s: connection from %s refused: draining",
	    server_listener_name(kind), name, addr_fmt(sa, addr, sizeof addr));
	if (kind != LISTEN_VM) {
		xasprintf(&msg, "vspcd: node %s is draining and takes no new "
		    "sessions; try another node\r\n", server_conf->node_id);
		(void)write(fd, msg, strlen(msg));
		free(msg);
	}
	close(fd);
}

/*
 * Serve a new connection from sa (its real source, after any PROXY
 * header) on a listener of that kind: draining, [vm] allow and
 * max_connections, then the module that speaks the listener's protocol.
 */
static void
server_dispatch(int fd, const struct sockaddr *sa, u_int kind,
    const char *name)
{
	struct config	*conf = server_conf;
	char		 addr[64];
	static const char full[] = "vspcd: too many connections\r\n";

	server_now = time(NULL);
	if (server_draining) {
		server_refuse_draining(kind, name, fd, sa);
		return;
	}
	switch (kind) {
	case LISTEN_VM:
		if (!acl_match(&conf->vm_allow, sa)) {
			server_stats.vm_refused++;
			log_warnx("vm listener %s: connection from %s refused "
			    "by [vm] allow", name,
			    addr_fmt(sa, addr, sizeof addr));
			close(fd);
			return;
		}
		if (conf->vm_max_connections != 0 &&
		    nvmconns >= conf->vm_max_connections) {
			server_stats.vm_refused++;
			log_warnx("vm listener %s: connection from %s refused: "
			    "[vm] max_connections (%u) reached", name,
			    addr_fmt(sa, addr, sizeof addr),
			    conf->vm_max_connections);
			(void)write(fd, full, sizeof full - 1);
			close(fd);
			return;
		}
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
	server_now = time(NULL);
	if (acl_match(&server_conf->vm_proxy_from, sa)) {
		proxy_accept(fd, sa, (socklen_t)salen, l->kind, l->text, server_dispatch);
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
			xasprintf(err, "[%s] listen: %s", listener_names[kind],
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
	    VSPC_PORT_COMPAT, err) == -1)
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

/* Set the node up: listeners, store, signals, timers. */
int
server_start(struct config *conf, int debug)
{
	struct timeval	 tv = { 1, 0 };
	char		*err = NULL;
	int		 sigs[] = { SIGHUP, SIGUSR1, SIGTERM, SIGINT };
	u_int		 i;

	server_conf = conf;
	server_debug = debug;
	server_now = time(NULL);
	metrics_init();
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
		if (peer_init(conf, &err) == -1) {
			log_warnx("%s", err);
			free(err);
			return (-1);
		}
	} else
		server_store = store_local_create(conf->node_id);

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
