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
 * The node's event loop: signals, the once-per-second tick, the
 * end-of-turn reaper, start-up, reload and shutdown.  The listeners and
 * what is done with a connection at accept are in server-listen.c, the
 * hot-upgrade record of both in server-handoff.c; server-int.h is what
 * the three share.
 */

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "store.h"
#include "server-int.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif


static const struct peer_security server_peer_security = {
	server_allowed,
	tls_enabled,
	tls_accept,
	tls_connect
};

static struct event	*server_tick;
static struct event	*server_sigs[6];
static char		**server_overrides;
static u_int		 server_noverrides;
static u_int		 server_ticks;

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

	while ((l = TAILQ_FIRST(&server_listeners)) != NULL)
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
	client_reap_stop();
	vmconn_reap_stop();
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
	event_free(server_tick);
	event_base_free(server_base);
	server_base = NULL;
	return (0);
}
