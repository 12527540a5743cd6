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
 * The node's metrics in the Prometheus text exposition format (version
 * 0.0.4), as served on /metrics by http.c, and the latency histograms
 * the vMotion code feeds.
 *
 * Counters come from server_stats; gauges are computed when scraped by
 * walking the global lists (a few tens of thousands of entries at most,
 * nothing the event loop notices at scrape intervals).  Every family is
 * written with its HELP and TYPE lines before its samples; histogram
 * buckets are cumulative and the +Inf bucket equals the count.
 */

#include <sys/resource.h>

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "store.h"

static time_t	metrics_started;

static const char *metrics_kinds[CLIENT_KIND_MAX] = {
	"console", "vspcpy", "vmware", "detect", "remote"
};

/* Remember when the process started, for vspcd_start_time_seconds. */
void
metrics_init(void)
{
	metrics_started = time(NULL);
}

/* Microseconds as decimal seconds without trailing zeros ("0.00005"). */
static void
metrics_fmt_us(char *buf, size_t len, uint64_t us)
{
	char	*p;

	snprintf(buf, len, "%llu.%06llu", (unsigned long long)(us / 1000000),
	    (unsigned long long)(us % 1000000));
	p = buf + strlen(buf) - 1;
	while (*p == '0')
		*p-- = '\0';
	if (*p == '.')
		*p = '\0';
}

static void
metrics_head(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

static void
metrics_one(struct evbuffer *b, const char *name, const char *type,
    const char *help, uint64_t v)
{
	metrics_head(b, name, type, help);
	evbuffer_add_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

#define COUNTER(n, h, v)	metrics_one(b, "vspcd_" n, "counter", h, v)
#define GAUGE(n, h, v)		metrics_one(b, "vspcd_" n, "gauge", h, v)

static void
metrics_histogram(struct evbuffer *b, const struct metrics_hist *h)
{
	char		 le[32], sum[32];
	uint64_t	 cum = 0;
	u_int		 i;

	metrics_head(b, h->name, "histogram", h->help);
	for (i = 0; i < METRICS_BUCKETS; i++) {
		cum += h->bucket[i];
		metrics_fmt_us(le, sizeof le, metrics_bounds[i]);
		evbuffer_add_printf(b, "%s_bucket{le=\"%s\"} %llu\n", h->name,
		    le, (unsigned long long)cum);
	}
	evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", h->name,
	    (unsigned long long)h->count);
	metrics_fmt_us(sum, sizeof sum, h->sum_us);
	evbuffer_add_printf(b, "%s_sum %s\n%s_count %llu\n", h->name, sum,
	    h->name, (unsigned long long)h->count);
}

/* Descriptors open now, or 0 if /proc cannot tell. */
static uint64_t
metrics_open_fds(void)
{
	DIR		*d;
	struct dirent	*de;
	uint64_t	 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return (0);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return (n > 0 ? n - 1 : 0);	/* Not the one opendir used. */
}

/*
 * Refusal samples written even at zero: every reason of the listeners
 * server.c serves, so that rate() sees the series from the start.
 */
static int
metrics_refusal_shown(u_int listener, u_int reason)
{
	if (listener == LISTEN_VM || listener == LISTEN_CONSOLE ||
	    listener == LISTEN_COMPAT)
		return (reason != REFUSED_TLS);
	return (0);
}

/* Append every metric to b. */
void
metrics_write(struct evbuffer *b)
{
	const struct stats	*s = &server_stats;
	struct console		*con;
	struct client		*c;
	struct rlimit		 rl;
	uint64_t		 people[CLIENT_KIND_MAX];
	uint64_t		 local = 0, remote = 0, attached = 0;
	uint64_t		 moving = 0, nofile = 0;
	u_int			 i, j;

	memset(people, 0, sizeof people);
	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->flags & CLIENT_DEAD)
			continue;
		if (c->kind < CLIENT_KIND_MAX)
			people[c->kind]++;
		if (c->console != NULL)
			attached++;
	}
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (con->flags & CONSOLE_DEAD)
			continue;
		if (con->flags & CONSOLE_REMOTE)
			remote++;
		else
			local++;
		if (con->vmotion.state != VMOTION_NONE)
			moving++;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		nofile = rl.rlim_cur;

	metrics_head(b, "vspcd_build_info", "gauge",
	    "Always 1; the version is in the label.");
	evbuffer_add_printf(b, "vspcd_build_info{version=\"%s\"} 1\n",
	    VSPCD_VERSION);
	GAUGE("start_time_seconds", "When the process started, Unix time.",
	    (uint64_t)metrics_started);
	GAUGE("draining", "1 while the node is draining.",
	    server_draining ? 1 : 0);
	GAUGE("open_fds", "File descriptors open.", metrics_open_fds());
	GAUGE("max_fds", "File descriptor limit (soft; 0 if unlimited).",
	    nofile);
	GAUGE("log_files_open", "Console log files open now.",
	    logfile_open_count());

	GAUGE("vm_connections", "Connections from ESXi hosts open now.",
	    nvmconns);
	COUNTER("vm_connections_accepted_total",
	    "Connections from ESXi hosts accepted.", s->vm_accepted);
	COUNTER("vm_connections_refused_total",
	    "Connections from ESXi hosts refused ([vm] allow, "
	    "max_connections).", s->vm_refused);
	COUNTER("vm_protocol_errors_total",
	    "ESXi connections closed for a protocol error.",
	    s->vm_protocol_errors);
	COUNTER("vm_received_bytes_total",
	    "Bytes received from ESXi hosts.", s->vm_bytes_in);
	COUNTER("vm_sent_bytes_total", "Bytes sent to ESXi hosts.",
	    s->vm_bytes_out);
	COUNTER("vm_discarded_bytes_total",
	    "Bytes from refused or retired ESXi connections, not kept.",
	    s->vm_bytes_discarded);
	COUNTER("proxy_refused_total",
	    "Connections from [vm] proxy_protocol_from addresses closed "
	    "without a valid PROXY header.", s->proxy_refused);

	metrics_head(b, "vspcd_connections_refused_total", "counter",
	    "Connections refused at accept, by listener and reason (allow "
	    "list, max_connections, max_per_source, failed TLS handshake).");
	for (i = 0; i < LISTEN_ALL_MAX; i++) {
		for (j = 0; j < REFUSED_MAX; j++) {
			if (s->refused[i][j] == 0 && !metrics_refusal_shown(i,
			    j))
				continue;
			evbuffer_add_printf(b, "vspcd_connections_refused_total"
			    "{listener=\"%s\",reason=\"%s\"} %llu\n",
			    server_listener_name(i), server_refusal_name(j),
			    (unsigned long long)s->refused[i][j]);
		}
	}
	COUNTER("login_failures_total",
	    "Console-port logins refused (wrong password, unknown or locked "
	    "user).", s->login_failed);
	COUNTER("readonly_input_dropped_bytes_total",
	    "Bytes typed by people with read-only access, discarded.",
	    s->readonly_dropped);
	GAUGE("tls_connections", "TLS connections relayed now (this "
	    "process; the TLS process reports handshakes).", tls_count());
	COUNTER("tls_handshakes_total", "TLS handshakes completed.",
	    tls_stats.handshakes);
	COUNTER("tls_handshake_failures_total",
	    "TLS handshakes that failed or timed out.",
	    tls_stats.handshake_failed);
	metrics_head(b, "vspcd_tls_closes_total", "counter",
	    "TLS connections ended after their handshake, by listener and "
	    "cause: close_notify, eof (FIN without close_notify), reset, "
	    "error (TLS protocol error), local (closed by this node).");
	for (i = 0; i < TLS_LISTENER_MAX; i++) {
		for (j = 0; j < TLS_CLOSE_MAX; j++)
			evbuffer_add_printf(b, "vspcd_tls_closes_total"
			    "{listener=\"%s\",kind=\"%s\"} %llu\n",
			    tls_listener_name(i), tls_close_name(j),
			    (unsigned long long)tls_stats.closes[i][j]);
	}

	metrics_head(b, "vspcd_consoles", "gauge",
	    "Consoles known, by owner: this node (local) or another.");
	evbuffer_add_printf(b, "vspcd_consoles{owner=\"local\"} %llu\n"
	    "vspcd_consoles{owner=\"remote\"} %llu\n",
	    (unsigned long long)local, (unsigned long long)remote);

	metrics_head(b, "vspcd_people_connected", "gauge",
	    "People connected now, by kind of client.");
	for (i = 0; i < CLIENT_KIND_MAX; i++)
		evbuffer_add_printf(b, "vspcd_people_connected{kind=\"%s\"} "
		    "%llu\n", metrics_kinds[i], (unsigned long long)people[i]);
	GAUGE("people_attached", "People attached to a console now.",
	    attached);
	COUNTER("people_accepted_total", "People connections accepted.",
	    s->client_accepted);
	COUNTER("people_received_bytes_total", "Bytes received from people.",
	    s->client_bytes_in);
	COUNTER("people_sent_bytes_total", "Bytes sent to people.",
	    s->client_bytes_out);
	COUNTER("people_skipped_bytes_total",
	    "Console output skipped for people too slow to read it.",
	    s->client_skipped);
	COUNTER("people_stuck_disconnects_total",
	    "People disconnected after [console] stuck_timeout.",
	    s->client_stuck);
	COUNTER("input_dropped_bytes_total",
	    "People's input dropped (no VM, or its buffer full).",
	    s->input_dropped);

	GAUGE("vmotions_in_progress", "vMotions under way now.", moving);
	COUNTER("vmotion_begin_total", "VMOTION-BEGIN received.",
	    s->vmotion_begin);
	COUNTER("vmotion_goahead_total", "VMOTION-GOAHEAD sent.",
	    s->vmotion_goahead);
	COUNTER("vmotion_notnow_total", "VMOTION-NOTNOW sent.",
	    s->vmotion_notnow);
	COUNTER("vmotion_peer_total", "VMOTION-PEER received.",
	    s->vmotion_peer);
	COUNTER("vmotion_peer_bad_total",
	    "VMOTION-PEER refused (unknown, used or stale token).",
	    s->vmotion_peer_bad);
	COUNTER("vmotion_complete_total", "vMotions completed.",
	    s->vmotion_complete);
	COUNTER("claims_deferred_total", "Consoles whose ownership the "
	    "store could not record at once (claimed again later).",
	    s->claims_deferred);
	COUNTER("vmotion_abort_total", "VMOTION-ABORT received.",
	    s->vmotion_abort);
	COUNTER("vmotion_timeout_total",
	    "vMotions given up after [vm] vmotion_token_ttl without "
	    "completing.",
	    s->vmotion_timeout);
	for (i = 0; i < METRICS_HIST_MAX; i++)
		metrics_histogram(b, &metrics_hists[i]);

	GAUGE("store_shared", "1 if the node is in a cluster (Redis store).",
	    server_store != NULL && server_store->shared ? 1 : 0);
	GAUGE("store_connected", "1 while the store can be reached.",
	    server_store != NULL && server_store->connected ? 1 : 0);
	GAUGE("peer_links", "Peer links to other nodes that are up.",
	    cluster_enabled() ? peer_count() : 0);
}
