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
 * The cluster: several nodes acting as one concentrator.
 *
 * Every node keeps a struct console for every console of the cluster.
 * On the node that holds the VM's connection (the owner) it is a full
 * console; elsewhere it is marked CONSOLE_REMOTE and carries what the
 * shared store says (owner, epoch, name, state).  Ownership changes only
 * through the store's epoch: a node that sees a higher epoch for a
 * console it owns has lost it and yields.
 *
 * This file holds start and stop, the console records in the store and
 * their events, the heartbeat, and the dispatch of peer-link messages.
 * The rest of the cluster: cluster-fwd.c (people here, forwarded to the
 * owner), cluster-remote.c (the owner serving them), cluster-vmotion.c
 * (vMotion across nodes) and cluster-handoff.c (hot upgrade); what they
 * share is in cluster-int.h.
 *
 * Invariant: the history of a console is only ever appended by its owner.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "store.h"
#include "proto/vspc.pb-c.h"
#include "cluster-int.h"

int			 cluster_on;
int			 cluster_handed;	/* Started by a hand-over. */
struct event		*cluster_heartbeat_ev;
time_t			 cluster_started;
static char		*cluster_self_addr;
static char		**cluster_orphans;
static u_int		 cluster_norphans;

static void	cluster_apply(const struct store_console *);

/* The mode that keeps a person's role when the console moves. */
static enum attach_mode
cluster_keep_mode(struct console *con, struct client *c)
{
	struct client	*o;
	u_int		 writers = 0;

	if (c->flags & CLIENT_HOLDER)
		return ((con->flags & CONSOLE_EXCL) ? ATTACH_EXCLUSIVE :
		    ATTACH_WRITELOCK);
	if (c->flags & CLIENT_READONLY)
		return (ATTACH_RO);
	if (!(c->flags & CLIENT_WRITE))
		return (ATTACH_SPY);
	TAILQ_FOREACH(o, &con->clients, centry) {
		if (o->flags & CLIENT_WRITE)
			writers++;
	}
	return (writers > 1 ? ATTACH_SHARED : ATTACH_FORCE);
}

/* Whether this node is part of a cluster (a shared store is set). */
int
cluster_enabled(void)
{
	return (cluster_on);
}

/* This node's ID. */
const char *
cluster_self(void)
{
	return (server_conf->node_id);
}

/* The node that owns a console, for listings. */
const char *
cluster_node_of(const struct console *con)
{
	if (con->flags & CONSOLE_REMOTE)
		return (con->owner != NULL ? con->owner : "?");
	return (cluster_self());
}

/* The link to a node, or NULL. */
struct peer *
cluster_peer(const char *node)
{
	if (node == NULL)
		return (NULL);
	return (peer_find(node));
}

/* Send a message to a node; -1 if there is no link. */
int
cluster_send(const char *node, Vspc__Envelope *env)
{
	struct peer	*p;

	if ((p = cluster_peer(node)) == NULL)
		return (-1);
	return (peer_send(p, env));
}

/*
 * Consoles.
 */

static void
cluster_record(struct console *con, struct store_console *rec)
{
	memset(rec, 0, sizeof *rec);
	snprintf(rec->key, sizeof rec->key, "%s", con->key);
	snprintf(rec->owner, sizeof rec->owner, "%s", cluster_self());
	rec->epoch = con->epoch;
	snprintf(rec->name, sizeof rec->name, "%s",
	    con->name != NULL ? con->name : "");
	snprintf(rec->state, sizeof rec->state, "%s", console_state(con));
	rec->since = con->connected;
}

/* Write the record of a console this node owns to the store. */
void
cluster_publish(struct console *con)
{
	struct store_console	rec;

	if (!cluster_on || (con->flags & CONSOLE_REMOTE) || con->epoch == 0)
		return;
	cluster_record(con, &rec);
	store_console_update(server_store, &rec);
}

static void
cluster_rechecked(enum store_status st, const struct store_console *rec,
    void *arg)
{
	if (st == STORE_OK && rec != NULL)
		cluster_apply(rec);
}

/* Read a console's record again (what we know of its owner is stale). */
void
cluster_refresh(const char *key)
{
	if (cluster_on && server_store->connected)
		store_console_get(server_store, key, cluster_rechecked, NULL);
}

/*
 * A vMotion of a console of ours ended without moving it: whoever the
 * store says owns it now is the owner.
 */
void
cluster_recheck(struct console *con)
{
	if (!cluster_on || (con->flags & CONSOLE_REMOTE))
		return;
	store_console_get(server_store, con->key, cluster_rechecked, NULL);
}

/* Something about a console this node owns changed: tell the others. */
void
cluster_console_changed(struct console *con)
{
	cluster_publish(con);
}

/*
 * A console was claimed by this node (its VM connected here): people
 * here who were forwarded to its previous owner are now local.
 */
void
cluster_console_bound(struct console *con)
{
	struct client		*c, *c1;
	struct fwd		*f;

	if (!cluster_on)
		return;
	TAILQ_FOREACH_SAFE(c, &all_clients, gentry, c1) {
		if ((f = c->cluster) == NULL || c->kind == CLIENT_REMOTE ||
		    strcmp(f->key, con->key) != 0)
			continue;
		if (f->initial)
			continue;
		cluster_fwd_localize(c, con);
	}
}

static void
cluster_claimed(enum store_status st, uint64_t epoch, void *arg)
{
	struct console	*con;
	char		*key = arg;

	con = console_find(key);
	free(key);
	if (con == NULL || (con->flags & CONSOLE_REMOTE))
		return;
	if (st == STORE_OK) {
		con->epoch = epoch;
		cluster_publish(con);
	} else if (st == STORE_CONFLICT)
		log_warnx("console %s: another node owns it now (epoch %llu)",
		    con->key, (unsigned long long)epoch);
	else
		cluster_claim_later(con, con->epoch);
}

/*
 * Claims the store could not record (it was unreachable, or not yet
 * reachable after a hot upgrade) are made again until it records them.
 * Until then the store names an earlier owner, and nodes that read it
 * would send people there.  The claim again is fenced by the epoch the
 * store had when the console became ours ("known"): if another node
 * claimed it since, that node is the owner and this one yields.
 */
void
cluster_claim_later(struct console *con, uint64_t known)
{
	if (!cluster_on || (con->flags & CONSOLE_REMOTE))
		return;
	if (!(con->flags & CONSOLE_UNCLAIMED)) {
		log_warnx("console %s: ownership not recorded (store "
		    "unavailable); claiming it again when the store answers",
		    con->key);
		con->claim_known = known;
		server_stats.claims_deferred++;
	}
	con->flags |= CONSOLE_UNCLAIMED;
	con->flags &= ~CONSOLE_CLAIMING;
}

static void
cluster_reclaimed(enum store_status st, uint64_t epoch, void *arg)
{
	struct console	*con;
	char		*key = arg;

	con = console_find(key);
	free(key);
	if (con == NULL || !(con->flags & CONSOLE_CLAIMING))
		return;
	con->flags &= ~CONSOLE_CLAIMING;
	if (con->flags & CONSOLE_REMOTE) {
		con->flags &= ~CONSOLE_UNCLAIMED;
		return;
	}
	switch (st) {
	case STORE_OK:
		con->flags &= ~CONSOLE_UNCLAIMED;
		con->epoch = epoch;
		log_info("console %s: ownership recorded (epoch %llu)",
		    con->key, (unsigned long long)epoch);
		cluster_publish(con);
		break;
	case STORE_CONFLICT:
		/* Claimed by another node since: the store's record wins. */
		con->flags &= ~CONSOLE_UNCLAIMED;
		log_warnx("console %s: claimed by another node meanwhile "
		    "(epoch %llu)", con->key, (unsigned long long)epoch);
		con->epoch = con->claim_known;
		cluster_recheck(con);
		break;
	default:
		break;		/* Again at the next heartbeat. */
	}
}

/* One console's claim again, if it waits for one. */
static void
cluster_claim_again(struct console *con)
{
	if ((con->flags & (CONSOLE_UNCLAIMED|CONSOLE_CLAIMING|
	    CONSOLE_REMOTE)) != CONSOLE_UNCLAIMED)
		return;
	if (con->vm == NULL) {
		/* Nothing to own any more. */
		con->flags &= ~CONSOLE_UNCLAIMED;
		return;
	}
	con->flags |= CONSOLE_CLAIMING;
	store_console_claim(server_store, con->key, cluster_self(),
	    con->claim_known, cluster_reclaimed, xstrdup(con->key));
}

static void
cluster_claim_pending(void)
{
	struct console	*con;

	if (!server_store->connected)
		return;
	TAILQ_FOREACH(con, &all_consoles, gentry)
		cluster_claim_again(con);
}

/* Stop reading data for a remote console: only a record remains. */
void
cluster_yield(struct console *con, const char *owner, uint64_t epoch)
{
	struct client	*c, *c1;
	struct rchan	*rc;
	struct client	**who;
	struct fwd	*f;
	enum attach_mode mode, *keep;
	size_t		 n, i;
	int		*wrote;

	log_info("console %s: now owned by node %s (epoch %llu)", con->key,
	    owner, (unsigned long long)epoch);
	if (con->vmotion.state != VMOTION_NONE)
		vmotion_cancel(con, "the console moved to another node");
	if (con->vm != NULL) {
		struct vmconn	*v = con->vm;

		con->vm = NULL;
		v->role = VMCONN_RETIRED;
		v->console = NULL;
		vmconn_close(v, "console owned by another node");
	}

	/*
	 * Everyone's role, noted before anyone leaves: a writer closed here
	 * must not promote a spy (who would come back as writer and push
	 * the writer to spy mode), nor tell the others it left.
	 */
	n = 0;
	TAILQ_FOREACH(c, &con->clients, centry)
		n++;
	keep = xcalloc(n + 1, sizeof *keep);
	who = xcalloc(n + 1, sizeof *who);
	wrote = xcalloc(n + 1, sizeof *wrote);
	i = 0;
	TAILQ_FOREACH(c, &con->clients, centry) {
		who[i] = c;
		keep[i] = cluster_keep_mode(con, c);
		wrote[i++] = (c->flags & CLIENT_WRITE) != 0;
	}
	TAILQ_FOREACH(c, &con->clients, centry)
		c->flags &= ~(CLIENT_WRITE|CLIENT_WANTWRITE|CLIENT_HOLDER);
	con->holder = NULL;
	con->flags &= ~(CONSOLE_EXCL|CONSOLE_WRITELOCK);

	/* People served for other nodes: tell their nodes to follow. */
	TAILQ_FOREACH_SAFE(c, &con->clients, centry, c1) {
		if (c->kind != CLIENT_REMOTE)
			continue;
		rc = c->cluster;
		if (rc != NULL) {
			Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
			Vspc__Detach	 d = VSPC__DETACH__INIT;

			d.channel = rc->channel;
			d.reason = (char *)"console moved";
			d.moved = 1;
			d.from_owner = 1;
			/*
			 * Said here, so that the person's node follows at once
			 * even when the store cannot tell it (a claim not yet
			 * recorded, Redis away).
			 */
			d.owner = (char *)owner;
			d.epoch = epoch;
			for (i = 0; i < n && who[i] != c; i++)
				;
			d.mode = i < n ? keep[i] : ATTACH_SPY;
			env.msg_case = VSPC__ENVELOPE__MSG_DETACH;
			env.detach = &d;
			cluster_send(rc->node, &env);
			if (i < n && wrote[i])
				cluster_moved_add(rc->idkey, con->key, owner);
			c->cluster = NULL;
			cluster_rchan_drop(rc);
		}
		client_close(c, "console moved");
	}

	/* People here: forward them to the new owner, where they were. */
	console_make_remote(con, owner, epoch);
	TAILQ_FOREACH_SAFE(c, &con->clients, centry, c1) {
		for (i = 0; i < n && who[i] != c; i++)
			;
		mode = i < n ? keep[i] : ATTACH_SPY;
		f = xcalloc(1, sizeof *f);
		f->next_off = c->off;
		f->stream = con->stream;
		f->have_off = 1;
		f->mode = mode;
		TAILQ_REMOVE(&con->clients, c, centry);
		con->nclients--;
		c->flags &= ~(CLIENT_WRITE|CLIENT_WANTWRITE|CLIENT_HOLDER|
		    CLIENT_STREAM);
		f->key = xstrdup(con->key);
		cluster_fwd_start(c, f);
	}
	con->holder = NULL;
	con->flags &= ~(CONSOLE_EXCL|CONSOLE_WRITELOCK);
	free(keep);
	free(who);
	free(wrote);
}

/* Apply a console record from the shared state. */
static void
cluster_apply(const struct store_console *rec)
{
	struct console	*con;
	struct client	*c, *c1;
	struct fwd	*f;

	if (rec->owner[0] == '\0')
		return;
	con = console_find(rec->key);
	if (strcmp(rec->owner, cluster_self()) == 0) {
		if (con != NULL && !(con->flags & CONSOLE_REMOTE) &&
		    rec->epoch > con->epoch)
			con->epoch = rec->epoch;
		return;
	}
	if (con == NULL) {
		if ((con = console_get_key(rec->key)) == NULL)
			return;
		console_make_remote(con, rec->owner, rec->epoch);
	} else if (!(con->flags & CONSOLE_REMOTE)) {
		if (rec->epoch <= con->epoch)
			return;
		/*
		 * During a vMotion the destination's node claims the console
		 * and then tells us on the peer link (VmotionCompleted); its
		 * claim can reach us through the store first, even before
		 * its VmotionPeered.  The vMotion settles it; if it ends
		 * without moving, the record is read again then.
		 */
		if (con->vmotion.state != VMOTION_NONE)
			return;
		cluster_yield(con, rec->owner, rec->epoch);
	} else {
		if (rec->epoch < con->epoch)
			return;
		if (con->owner == NULL || strcmp(con->owner, rec->owner) != 0) {
			free(con->owner);
			con->owner = xstrdup(rec->owner);
			/* People waiting on the old owner follow. */
			TAILQ_FOREACH_SAFE(c, &all_clients, gentry, c1) {
				if ((f = c->cluster) == NULL ||
				    c->kind == CLIENT_REMOTE ||
				    strcmp(f->key, con->key) != 0 ||
				    f->state != FWD_WAITING)
					continue;
				cluster_fwd_start(c, f);
			}
		}
		con->epoch = rec->epoch;
	}
	if (rec->name[0] != '\0')
		console_set_name(con, rec->name, strlen(rec->name));
	free(con->rstate);
	con->rstate = xstrdup(rec->state[0] != '\0' ? rec->state :
	    "unknown");
	con->rsince = rec->since;
}

static void
cluster_listed(enum store_status st, const struct store_console *recs,
    size_t n, void *arg)
{
	size_t	i;

	if (st != STORE_OK) {
		log_warnx("cluster: cannot list consoles: %s",
		    store_status_string(st));
		return;
	}
	for (i = 0; i < n; i++)
		cluster_apply(&recs[i]);
}

static void
cluster_nodes(enum store_status st, const struct store_node *nodes, size_t n,
    void *arg)
{
	size_t	i;

	if (st != STORE_OK)
		return;
	for (i = 0; i < n; i++) {
		if (strcmp(nodes[i].id, cluster_self()) != 0 &&
		    nodes[i].peer[0] != '\0')
			peer_want(nodes[i].id, nodes[i].peer);
	}
}

/*
 * Claim again, with our epoch, what we serve: the store may have lost it.
 * Paced, a batch per loop turn, so that a node with tens of thousands of
 * consoles does not flood the store.
 */
#define CLUSTER_REPUBLISH_BATCH	500

static char		**republish_keys;
static size_t		  republish_n, republish_next;
static struct event	 *republish_ev;

static void
cluster_republish_free(void)
{
	size_t	i;

	for (i = republish_next; i < republish_n; i++)
		free(republish_keys[i]);
	free(republish_keys);
	republish_keys = NULL;
	republish_n = republish_next = 0;
}

static void
cluster_republish_cb(evutil_socket_t fd, short events, void *arg)
{
	struct console	*con;
	struct timeval	 tv = { 0, 10000 };
	size_t		 end;

	end = republish_next + CLUSTER_REPUBLISH_BATCH;
	if (end > republish_n)
		end = republish_n;
	for (; republish_next < end; republish_next++) {
		con = console_find(republish_keys[republish_next]);
		if (con != NULL && !(con->flags & (CONSOLE_REMOTE|
		    CONSOLE_UNCLAIMED)) && con->vm != NULL)
			store_console_claim(server_store, con->key,
			    cluster_self(), con->epoch, cluster_claimed,
			    xstrdup(con->key));
		free(republish_keys[republish_next]);
	}
	if (republish_next < republish_n)
		evtimer_add(republish_ev, &tv);
	else
		cluster_republish_free();
}

static void
cluster_republish(void)
{
	struct console	*con;
	struct timeval	 tv = { 0, 0 };

	cluster_republish_free();
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if ((con->flags & CONSOLE_REMOTE) || con->vm == NULL)
			continue;
		republish_keys = xreallocarray(republish_keys, republish_n + 1,
		    sizeof *republish_keys);
		republish_keys[republish_n++] = xstrdup(con->key);
	}
	if (republish_ev == NULL)
		republish_ev = evtimer_new(server_base, cluster_republish_cb,
		    NULL);
	evtimer_add(republish_ev, &tv);
}

/*
 * Nodes whose record is gone while their link is up (see
 * STORE_EV_NODE_DOWN): set (1) or clear (0); 1 returned by a clear if
 * the node was one.
 */
static int
cluster_orphan(const char *node, int set)
{
	u_int	i;

	for (i = 0; i < cluster_norphans; i++) {
		if (strcmp(cluster_orphans[i], node) != 0)
			continue;
		if (set)
			return (1);
		free(cluster_orphans[i]);
		cluster_orphans[i] = cluster_orphans[--cluster_norphans];
		return (1);
	}
	if (!set)
		return (0);
	cluster_orphans = xreallocarray(cluster_orphans,
	    cluster_norphans + 1, sizeof *cluster_orphans);
	cluster_orphans[cluster_norphans++] = xstrdup(node);
	return (0);
}

static void
cluster_event(const struct store_event *ev, void *arg)
{
	switch (ev->type) {
	case STORE_EV_CONSOLE:
		if (ev->console != NULL)
			cluster_apply(ev->console);
		break;
	case STORE_EV_CONSOLE_GONE:
		break;
	case STORE_EV_NODE_UP:
		if (ev->node != NULL && strcmp(ev->node->id,
		    cluster_self()) != 0 && ev->node->peer[0] != '\0') {
			log_info("cluster: node %s is up (%s)", ev->node->id,
			    ev->node->peer);
			cluster_orphan(ev->node->id, 0);
			peer_want(ev->node->id, ev->node->peer);
		}
		break;
	case STORE_EV_NODE_DOWN:
		if (ev->node == NULL || strcmp(ev->node->id,
		    cluster_self()) == 0)
			break;
		/*
		 * A record can vanish while its node is fine (Redis restarted
		 * without persistence, before the node registered again): a
		 * link that is up says more than the store.  It is let go if
		 * the link goes down while the record is still missing.
		 */
		if (peer_find(ev->node->id) != NULL) {
			log_info("cluster: node %s has no record in the "
			    "shared state but its link is up; keeping it",
			    ev->node->id);
			cluster_orphan(ev->node->id, 1);
			break;
		}
		log_warnx("cluster: node %s is down", ev->node->id);
		peer_unwant(ev->node->id);
		break;
	case STORE_EV_RESYNC:
		/*
		 * After a hand-over the records are ours already: claiming
		 * again would only move every epoch up.
		 */
		if (cluster_handed)
			cluster_handed = 0;
		else
			cluster_republish();
		cluster_claim_pending();
		store_node_list(server_store, cluster_nodes, NULL);
		store_console_list(server_store, cluster_listed, NULL);
		break;
	case STORE_EV_CONNECTED:
		log_info("cluster: shared state reachable");
		break;
	case STORE_EV_DISCONNECTED:
		log_warnx("cluster: shared state unreachable; serving local "
		    "consoles only");
		break;
	default:
		break;
	}
}

/* Timer: refresh this node's record and retry pending claims. */
void
cluster_heartbeat(evutil_socket_t fd, short events, void *arg)
{
	struct store_node	 n;
	struct console		*con;
	u_int			 consoles = 0;

	memset(&n, 0, sizeof n);
	snprintf(n.id, sizeof n.id, "%s", cluster_self());
	snprintf(n.peer, sizeof n.peer, "%s", cluster_self_addr);
	snprintf(n.version, sizeof n.version, "%s", VSPCD_VERSION);
	snprintf(n.state, sizeof n.state, "%s", handoff_in_progress() ?
	    "upgrading" : server_draining ? "draining" : "active");
	n.started = cluster_started;
	n.heartbeat = time(NULL);
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (!(con->flags & CONSOLE_REMOTE)) {
			consoles++;
			n.clients += con->nclients;
			if (con->vmotion.state != VMOTION_NONE)
				n.vmotions++;
			/* Claims the store missed, in the same pass. */
			if (server_store->connected)
				cluster_claim_again(con);
		}
	}
	n.consoles = consoles;
	n.peers = peer_link_count();
	store_node_update(server_store, &n);
}

static char *
cluster_advertise(void)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	char			*list, *first, *err, buf[80], *out;
	struct sockaddr_in	*sin;

	if (*server_conf->cluster_peer_advertise != '\0')
		return (xstrdup(server_conf->cluster_peer_advertise));
	list = xstrdup(server_conf->cluster_peer_listen);
	first = strtok(list, ", ");
	if (first == NULL || addr_parse_listen(first, 13373, &ss, &len,
	    &err) == -1) {
		free(list);
		return (xstrdup("127.0.0.1:13373"));
	}
	free(list);
	if (ss.ss_family == AF_INET) {
		sin = (struct sockaddr_in *)&ss;
		if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	addr_fmt((struct sockaddr *)&ss, buf, sizeof buf);
	out = xstrdup(buf);
	return (out);
}

/* Start taking part in the cluster (the store and peer link are up). */
void
cluster_start(void)
{
	struct timeval	tv;

	cluster_hooks_install();
	cluster_on = 1;
	/* A hand-over may have restored channels already. */
	if (cluster_fwds.b == NULL)
		hmap_init(&cluster_fwds);
	if (cluster_rchans.b == NULL)
		hmap_init(&cluster_rchans);
	if (cluster_started == 0)
		cluster_started = time(NULL);
	cluster_self_addr = cluster_advertise();
	store_set_events(server_store, cluster_event, NULL);
	cluster_heartbeat_ev = event_new(server_base, -1, EV_PERSIST,
	    cluster_heartbeat, NULL);
	if (handoff_restoring()) {
		/* cluster_handoff_resume beats once the old process left. */
		cluster_handed = 1;
		log_info("cluster %s: node %s taking over from the previous "
		    "process", server_conf->cluster_name, cluster_self());
		return;
	}
	tv.tv_sec = server_conf->cluster_heartbeat != 0 ?
	    server_conf->cluster_heartbeat : 1;
	tv.tv_usec = 0;
	event_add(cluster_heartbeat_ev, &tv);
	cluster_heartbeat(-1, 0, NULL);
	log_info("cluster %s: node %s, peers reach it at %s",
	    server_conf->cluster_name, cluster_self(), cluster_self_addr);
}

/* Leave the cluster (at exit). */
void
cluster_stop(void)
{
	if (!cluster_on)
		return;
	if (cluster_heartbeat_ev != NULL)
		event_free(cluster_heartbeat_ev);
	cluster_heartbeat_ev = NULL;
	while (!TAILQ_EMPTY(&cluster_moved_channels))
		cluster_moved_free(TAILQ_FIRST(&cluster_moved_channels));
	cluster_republish_free();
	if (republish_ev != NULL)
		event_free(republish_ev);
	republish_ev = NULL;
	cluster_pend_run(NULL);
	free(cluster_self_addr);
	cluster_self_addr = NULL;
	while (cluster_norphans > 0)
		free(cluster_orphans[--cluster_norphans]);
	free(cluster_orphans);
	cluster_orphans = NULL;
}

/*
 * The peer link.
 */

/* A link to another node is up: people waiting for it go on. */
void
cluster_peer_up(struct peer *p)
{
	struct hmap_entry	*e;
	struct fwd		*f;
	u_int			 i;
	const char		*node = peer_node(p);

	log_info("cluster: link to node %s up (%s)", node, peer_addr(p));
	for (i = 0; i < cluster_fwds.nb; i++) {
		for (e = cluster_fwds.b[i]; e != NULL; e = e->next) {
			f = hmap_data(e, struct fwd, entry);
			if (f->state == FWD_WAITING && f->retry != NULL) {
				struct timeval	tv = { 0, 0 };

				evtimer_add(f->retry, &tv);
			}
		}
	}
}

/* A link went down: its channels end or wait. */
void
cluster_peer_down(struct peer *p)
{
	struct client	*c, *c1;
	struct fwd	*f;
	struct rchan	*rc;
	const char	*node = peer_node(p);
	char		*why;

	log_warnx("cluster: link to node %s down", node);
	if (cluster_orphan(node, 0)) {
		log_warnx("cluster: node %s is down", node);
		peer_unwant(node);
	}
	TAILQ_FOREACH_SAFE(c, &all_clients, gentry, c1) {
		if (c->cluster == NULL)
			continue;
		if (c->kind == CLIENT_REMOTE) {
			rc = c->cluster;
			if (strcmp(rc->node, node) == 0)
				client_close(c, "peer link lost");
			continue;
		}
		f = c->cluster;
		if (f->node == NULL || strcmp(f->node, node) != 0)
			continue;
		if (f->initial) {
			cluster_fwd_free(c);
			c->console = NULL;
			if (c->proto->attached != NULL)
				c->proto->attached(c, ATTACH_REFUSED_REMOTE,
				    "link to the owner lost");
			continue;
		}
		xasprintf(&why, "owner %s lost; waiting for the console to "
		    "come back", node);
		f->lost = 1;
		/* The writer comes back as the writer. */
		if (c->flags & CLIENT_WRITE)
			f->mode = ATTACH_FORCE;
		else if (c->flags & CLIENT_READONLY)
			f->mode = ATTACH_RO;
		else if (f->mode == ATTACH_FORCE)
			f->mode = ATTACH_DEFAULT;
		cluster_fwd_wait(f, why);
		free(why);
	}
}

/* One message from another node. */
void
cluster_peer_message(struct peer *p, struct Vspc__Envelope *env)
{
	struct rchan	*rc;
	struct fwd	*f;
	struct console	*con;

	switch (env->msg_case) {
	case VSPC__ENVELOPE__MSG_ATTACH:
		cluster_remote_attach(peer_node(p), env->attach);
		break;
	case VSPC__ENVELOPE__MSG_ATTACH_REPLY:
		cluster_attach_reply(p, env->attach_reply);
		break;
	case VSPC__ENVELOPE__MSG_DATA:
		if (!env->data->input) {
			cluster_fwd_data(p, env->data);
			break;
		}
		rc = cluster_rchan_find(peer_node(p), env->data->channel);
		if (rc != NULL)
			client_input_to_vm(rc->c, env->data->data.data,
			    env->data->data.len);
		else
			cluster_moved_input(peer_node(p), env->data->channel,
			    env->data->data.data, env->data->data.len);
		break;
	case VSPC__ENVELOPE__MSG_LATE_INPUT:
		con = console_find(env->late_input->console);
		if (con != NULL && !(con->flags & CONSOLE_REMOTE))
			console_input(con, env->late_input->data.data,
			    env->late_input->data.len);
		else
			server_stats.input_dropped +=
			    env->late_input->data.len;
		break;
	case VSPC__ENVELOPE__MSG_CREDIT:
		rc = cluster_rchan_find(peer_node(p), env->credit->channel);
		if (rc != NULL) {
			rc->credit += env->credit->bytes;
			if (rc->credit > 4 * CLUSTER_CREDIT)
				rc->credit = 4 * CLUSTER_CREDIT;
			cluster_remote_flush(rc->c);
		}
		break;
	case VSPC__ENVELOPE__MSG_DETACH:
		if (!env->detach->from_owner) {
			rc = cluster_rchan_find(peer_node(p),
			    env->detach->channel);
			if (rc != NULL) {
				rc->c->cluster = NULL;
				client_close(rc->c, "person left");
				cluster_rchan_drop(rc);
			}
			break;
		}
		f = cluster_fwd_find(env->detach->channel);
		if (f == NULL || f->node == NULL ||
		    strcmp(f->node, peer_node(p)) != 0)
			break;
		if (env->detach->moved) {
			if (env->detach->mode < ATTACH_MAX)
				f->mode = env->detach->mode;
			cluster_moved_to(f->key, env->detach->owner,
			    env->detach->epoch);
			cluster_fwd_moved(f);
		}
		else {
			if (f->c->proto->notice != NULL)
				f->c->proto->notice(f->c, env->detach->reason);
			client_close(f->c, env->detach->reason);
		}
		break;
	case VSPC__ENVELOPE__MSG_NOTICE:
		f = cluster_fwd_find(env->notice->channel);
		if (f == NULL)
			break;
		cluster_fwd_role(f->c, env->notice->mode);
		if (f->c->proto->notice != NULL)
			f->c->proto->notice(f->c, env->notice->text);
		break;
	case VSPC__ENVELOPE__MSG_MODE:
		cluster_remote_mode(p, env->mode);
		break;
	case VSPC__ENVELOPE__MSG_MODE_REPLY:
		cluster_mode_reply(p, env->mode_reply);
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_PEERED:
		cluster_msg_peered(p, env->vmotion_peered);
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_COMPLETED:
		cluster_msg_completed(p, env->vmotion_completed);
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_FAILED:
		cluster_msg_failed(p, env->vmotion_failed);
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_ABORTED:
		cluster_msg_aborted(p, env->vmotion_aborted);
		break;
	case VSPC__ENVELOPE__MSG_HANDOVER:
		cluster_msg_handover(p, env->handover);
		break;
	case VSPC__ENVELOPE__MSG_CONTROL_RELAY:
		control_relay_request(p, env->control_relay);
		break;
	case VSPC__ENVELOPE__MSG_CONTROL_RELAY_REPLY:
		control_relay_reply(p, env->control_relay_reply);
		break;
	default:
		log_debug("cluster: node %s sent message %d; ignored",
		    peer_node(p), env->msg_case);
		break;
	}
}
