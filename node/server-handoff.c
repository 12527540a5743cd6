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
 * The server's part of a hot upgrade: pausing the listeners while the
 * node quiesces, and the server record (listeners, HTTP listeners, the
 * TLS process's channel, statistics, draining, the next vMotion ID) that
 * the new process reads to serve the inherited descriptors.
 */

#include <stdlib.h>
#include <unistd.h>

#include <event2/listener.h>

#include "vspcd.h"
#include "store.h"
#include "proto/handoff.pb-c.h"
#include "server-int.h"

/* Hot upgrade: stop (1) or resume (0) accepting while quiescing. */
static void
server_handoff_pause(int on)
{
	struct listener	*l;

	tls_handoff_pause(on);
	TAILQ_FOREACH(l, &server_listeners, entry) {
		if (l->lev == NULL)
			continue;
		if (on)
			evconnlistener_disable(l->lev);
		else
			evconnlistener_enable(l->lev);
	}
}

/* Hot upgrade: listeners, statistics, draining and the next IDs. */
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

static void
server_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Server	  m = VSPC__HANDOFF__SERVER__INIT;
	Vspc__Handoff__Listener	 *ls, *hs;
	struct listener		 *l;
	int			  hfd[16];
	char			 *htext[16];
	size_t			  n = 0, i;

	TAILQ_FOREACH(l, &server_listeners, entry)
		n++;
	ls = xcalloc(n + 1, sizeof *ls);
	m.listeners = xcalloc(n + 1, sizeof *m.listeners);
	TAILQ_FOREACH(l, &server_listeners, entry) {
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
		TAILQ_INSERT_TAIL(&server_listeners, l, entry);
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
		    server_listener_name(l->kind), l->text);
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
