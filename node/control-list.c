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
 * Control requests that list: vm list, vm show, who and cluster status.
 * Nodes ever seen are remembered (ctl_known), so that a node whose
 * record is gone from the store is still listed, as down.
 */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "proto/control.pb-c.h"
#include "control-int.h"
#include "store.h"

char				**ctl_known;	/* Nodes ever seen. */
u_int				 ctl_nknown;

/* Remember a node seen in the store, to list it when it is gone. */
void
ctl_known_add(const char *id)
{
	u_int	i;

	for (i = 0; i < ctl_nknown; i++) {
		if (strcmp(ctl_known[i], id) == 0)
			return;
	}
	ctl_known = xreallocarray(ctl_known, ctl_nknown + 1,
	    sizeof *ctl_known);
	ctl_known[ctl_nknown++] = xstrdup(id);
}

static void
ctl_person(Vspc__Ctl__Person *pp, struct client *c)
{
	vspc__ctl__person__init(pp);
	pp->id = c->id;
	pp->node = server_conf->node_id;
	pp->user = c->user != NULL ? c->user : (char *)"-";
	pp->addr = c->addr;
	pp->mode = (char *)client_mode_name(c);
	pp->idle = server_now - c->last_input;
	pp->since = c->created;
	pp->skipped = c->skipped;
	pp->kind = (char *)(c->proto != NULL ? c->proto->name : "?");
	if (c->console != NULL) {
		pp->console = c->console->key;
		pp->vm = c->console->name != NULL ? c->console->name :
		    (char *)"";
	}
}

/* What vm list says of a console (vm show says more). */
static void
ctl_console(Vspc__Ctl__Console *cs, struct console *con)
{
	vspc__ctl__console__init(cs);
	cs->key = con->key;
	cs->name = con->name != NULL ? con->name : (char *)"";
	cs->state = (char *)console_state(con);
	cs->owner = (char *)cluster_node_of(con);
	cs->people = ctl_remote(con) ? -1 : (int32_t)con->nclients;
	cs->connected = con->connected;
	cs->vmotions = con->vmotions;
}

/* VM_LIST: the consoles of the cluster that the login may see. */
void
ctl_vm_list(struct ctl_sink *s, const struct ctl_conn *cc)
{
	Vspc__Ctl__Reply	  r = VSPC__CTL__REPLY__INIT;
	Vspc__Ctl__Console	 *cs, **cp;
	struct console		 *con;
	size_t			  n = 0, i = 0;

	TAILQ_FOREACH(con, &all_consoles, gentry)
		n++;
	cs = xcalloc(n + 1, sizeof *cs);
	cp = xcalloc(n + 1, sizeof *cp);
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (!ctl_may_see(cc, con))
			continue;
		ctl_console(&cs[i], con);
		cp[i] = &cs[i];
		i++;
	}
	r.ok = 1;
	r.n_consoles = i;
	r.consoles = cp;
	ctl_send(s, &r);
	free(cp);
	free(cs);
}

/* VM_SHOW: one console and its people (relayed to its owner). */
void
ctl_vm_show(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	Vspc__Ctl__Reply	  r = VSPC__CTL__REPLY__INIT;
	Vspc__Ctl__Console	  cs, *cp = &cs;
	Vspc__Ctl__Person	 *ps, **pp;
	struct console		 *con;
	struct client		 *c;
	size_t			  i = 0;

	if (ctl_lookup(s, req->target, &con) == -1)
		return;
	if (ctl_remote(con)) {
		ctl_relay_owner(s, req, con);
		return;
	}
	ctl_console(&cs, con);
	cs.address = con->vm != NULL ? con->vm->addr : (char *)"";
	cs.vmotion_state = (char *)vmotion_state_name(con->vmotion.state);
	cs.log = con->log != NULL ? (char *)logfile_path(con->log) :
	    (char *)"";
	cs.history = con->history.len;
	cs.uri = con->uri != NULL ? con->uri : (char *)"";
	ps = xcalloc(con->nclients + 1, sizeof *ps);
	pp = xcalloc(con->nclients + 1, sizeof *pp);
	TAILQ_FOREACH(c, &con->clients, centry) {
		if (i >= con->nclients)
			break;
		ctl_person(&ps[i], c);
		pp[i] = &ps[i];
		i++;
	}
	cs.n_persons = i;
	cs.persons = pp;
	r.ok = 1;
	r.n_consoles = 1;
	r.consoles = &cp;
	ctl_send(s, &r);
	free(pp);
	free(ps);
}

/* WHO: the people on a console, or everyone attached here. */
void
ctl_who(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	Vspc__Ctl__Reply	  r = VSPC__CTL__REPLY__INIT;
	Vspc__Ctl__Person	 *ps, **pp;
	struct console		 *con = NULL;
	struct client		 *c;
	size_t			  n = 0, i = 0;

	if (req->target != NULL && *req->target != '\0') {
		if (ctl_lookup(s, req->target, &con) == -1)
			return;
		if (ctl_remote(con)) {
			ctl_relay_owner(s, req, con);
			return;
		}
	}
	TAILQ_FOREACH(c, &all_clients, gentry)
		n++;
	ps = xcalloc(n + 1, sizeof *ps);
	pp = xcalloc(n + 1, sizeof *pp);
	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->flags & CLIENT_DEAD)
			continue;
		if (con != NULL ? c->console != con : c->console == NULL)
			continue;
		ctl_person(&ps[i], c);
		pp[i] = &ps[i];
		i++;
	}
	r.ok = 1;
	r.n_people = i;
	r.people = pp;
	ctl_send(s, &r);
	free(pp);
	free(ps);
}

/* Cluster status. */

struct ctl_status {
	struct ctl_sink		 sink;
};

static void
ctl_self_node(Vspc__Ctl__Node *n)
{
	struct console	*con;

	vspc__ctl__node__init(n);
	n->id = server_conf->node_id;
	n->address = (char *)"";
	n->version = (char *)VSPCD_VERSION;
	n->pid = getpid();
	n->handoff = HANDOFF_VERSION;
	n->state = (char *)(server_draining ? "draining" : "active");
	n->started = ctl_started;
	n->heartbeat = server_now;
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (con->flags & CONSOLE_REMOTE)
			continue;
		n->consoles++;
		n->people += con->nclients;
		if (con->vmotion.state != VMOTION_NONE)
			n->vmotions++;
	}
	n->peers = cluster_enabled() ? peer_link_count() : 0;
	n->link = (char *)"self";
}

static void
ctl_status_send(struct ctl_sink *s, const struct store_node *list,
    size_t nlist, int listed)
{
	Vspc__Ctl__Reply	  r = VSPC__CTL__REPLY__INIT;
	Vspc__Ctl__Store	  st = VSPC__CTL__STORE__INIT;
	Vspc__Ctl__Node		 *ns, **np;
	struct peer		 *p;
	struct config		 *conf = server_conf;
	char			**states, master[160];
	size_t			  n = 0, i, j;
	u_int			  hb, k;
	int			  found;

	hb = conf->cluster_heartbeat != 0 ? conf->cluster_heartbeat : 1;
	for (i = 0; i < nlist; i++)
		ctl_known_add(list[i].id);
	ns = xcalloc(ctl_nknown + nlist + 1, sizeof *ns);
	np = xcalloc(ctl_nknown + nlist + 1, sizeof *np);
	states = xcalloc(ctl_nknown + nlist + 1, sizeof *states);
	ctl_self_node(&ns[n]);
	for (i = 0; i < nlist; i++) {
		if (strcmp(list[i].id, conf->node_id) == 0) {
			ns[n].address = (char *)list[i].peer;
			if (list[i].started != 0)
				ns[n].started = list[i].started;
		}
	}
	np[n] = &ns[n];
	n++;
	for (i = 0; i < nlist; i++) {
		if (strcmp(list[i].id, conf->node_id) == 0)
			continue;
		vspc__ctl__node__init(&ns[n]);
		ns[n].id = (char *)list[i].id;
		ns[n].address = (char *)list[i].peer;
		ns[n].version = (char *)list[i].version;
		if (list[i].heartbeat != 0 &&
		    server_now - list[i].heartbeat > (time_t)(3 * hb))
			ns[n].state = (char *)"down";
		else
			ns[n].state = (char *)list[i].state;
		ns[n].started = list[i].started;
		ns[n].heartbeat = list[i].heartbeat;
		ns[n].consoles = list[i].consoles;
		ns[n].people = list[i].clients;
		ns[n].vmotions = list[i].vmotions;
		ns[n].peers = list[i].peers;
		p = peer_find(list[i].id);
		ns[n].link = (char *)(p != NULL && *peer_addr(p) != '\0' ?
		    "up" : "down");
		np[n] = &ns[n];
		n++;
	}
	for (k = 0; listed && k < ctl_nknown; k++) {
		found = (strcmp(ctl_known[k], conf->node_id) == 0);
		for (j = 0; !found && j < nlist; j++)
			found = (strcmp(ctl_known[k], list[j].id) == 0);
		if (found)
			continue;
		vspc__ctl__node__init(&ns[n]);
		ns[n].id = ctl_known[k];
		ns[n].state = (char *)"down";
		p = peer_find(ctl_known[k]);
		ns[n].link = (char *)(p != NULL && *peer_addr(p) != '\0' ?
		    "up" : "down");
		np[n] = &ns[n];
		n++;
	}
	st.kind = (char *)server_store->ops->name;
	st.connected = server_store->connected;
	if (*conf->cluster_sentinels != '\0') {
		st.sentinels = conf->cluster_sentinels;
		st.master_name = conf->cluster_master_name;
		st.master = (char *)"";
	} else if (*conf->cluster_redis != '\0') {
		struct redis_addr	ra;
		char			*err;

		master[0] = '\0';
		if (config_parse_redis(conf->cluster_redis, &ra, &err) == 0) {
			snprintf(master, sizeof master, "%s:%d", ra.host,
			    ra.port);
			config_redis_free(&ra);
		} else
			free(err);
		st.master = master;
	}
	r.ok = 1;
	r.n_nodes = n;
	r.nodes = np;
	r.store = &st;
	r.draining = server_draining;
	ctl_send(s, &r);
	free(states);
	free(np);
	free(ns);
}

static void
ctl_status_listed(enum store_status status, const struct store_node *list,
    size_t n, void *arg)
{
	struct ctl_status	*cs = arg;

	server_now = time(NULL);
	if (status != STORE_OK)
		ctl_status_send(&cs->sink, NULL, 0, 0);
	else
		ctl_status_send(&cs->sink, list, n, 1);
	free(cs->sink.node);
	free(cs);
}

/* CLUSTER_STATUS: the nodes the store knows, and this one. */
void
ctl_cluster_status(struct ctl_sink *s)
{
	struct ctl_status	*cs;

	if (!server_store->shared) {
		ctl_status_send(s, NULL, 0, 0);
		return;
	}
	cs = xcalloc(1, sizeof *cs);
	ctl_sink_copy(&cs->sink, s);
	store_node_list(server_store, ctl_status_listed, cs);
}
