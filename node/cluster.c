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
 * People attach on any node.  For a remote console their node opens a
 * channel to the owner over the peer link ("forwarded" clients, struct
 * fwd); the owner serves the channel as a client of kind CLIENT_REMOTE
 * (struct rchan), reading the console's history at its own offset and
 * sending Data frames within the credit the person's node granted, so one
 * slow person never holds up a link.  Attach rules are applied by the
 * owner alone, so they hold cluster-wide.
 *
 * vMotion across nodes: the token names the source node.  The node that
 * sees PEER answers PEER-OK and tells the source (VmotionPeered); on
 * COMPLETE it claims the console (epoch up) and tells the source
 * (VmotionCompleted), which hands over the history and the input held
 * during the move (Handover) and sends its people to the new owner,
 * resuming at the byte they had reached.  Output the VM sends meanwhile
 * waits on the destination connection until the history is there, so
 * stream offsets carry on unchanged.
 *
 * Invariants: a channel's frames travel on one link, in order; a struct
 * fwd exists only for a client whose console is remote; the history of a
 * console is only ever appended by its owner.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "store.h"
#include "proto/vspc.pb-c.h"
#include "proto/handoff_cluster.pb-c.h"

/*
 * Bytes in flight per channel: enough to ride out a burst the size of a
 * console's history; the person's node holds at most this much for them.
 */
#define CLUSTER_CREDIT		(1024 * 1024)
#define CLUSTER_DATA_MAX	16384		/* Per Data frame. */
#define CLUSTER_HANDOVER_WAIT	5		/* Seconds. */
#define CLUSTER_RETRY_MS	500

/* A person here, attached to a console on another node. */
enum fwd_state {
	FWD_ATTACHING,
	FWD_ATTACHED,
	FWD_WAITING,		/* Owner unreachable or console moving. */
	FWD_STATE_MAX
};

struct fwd {
	struct hmap_entry	 entry;		/* In fwds, by channel. */
	char			 idkey[16];
	struct client		*c;
	u_int			 channel;
	char			*key;		/* Console key. */
	char			*node;		/* Owner it talks to. */
	enum fwd_state		 state;
	enum attach_mode	 mode;
	int			 initial;	/* First attach not answered. */
	int			 lost;		/* Its owner was lost meanwhile. */
	struct evbuffer		*pending;	/* Input while (re)attaching. */
	struct evbuffer		*seed;		/* Replay from AttachReply. */
	time_t			 deadline;	/* First attach: wait for a link. */
	int			 refused;	/* First attach refused: free it. */
	char			 req;		/* Menu request awaiting reply. */
	u_int			 req_lines;
	uint64_t		 next_off;	/* Next stream byte expected. */
	uint64_t		 stream;	/* ...of this stream. */
	int			 have_off;
	size_t			 unacked;	/* Received, not credited back. */
	struct event		*retry;
	int64_t			 ho_retry_ms;	/* Handed over: 1 + ms to arm. */
};

/* On the owner: a channel serving a person on another node. */
struct rchan {
	struct hmap_entry	 entry;		/* In rchans, "node/channel". */
	char			*idkey;
	char			*node;
	u_int			 channel;
	struct client		*c;
	size_t			 credit;
};

/*
 * A channel whose console moved away: input still in flight for it is
 * passed on to the new owner for a while.
 */
struct moved {
	char			*idkey;		/* "node/channel". */
	char			*key;
	char			*owner;
	time_t			 until;
	TAILQ_ENTRY(moved)	 entry;
};
TAILQ_HEAD(moveds, moved);
#define CLUSTER_MOVED_KEEP	10		/* Seconds. */

static struct moveds	 moved_channels = TAILQ_HEAD_INITIALIZER(moved_channels);

/* An Attach that waits for its console's history to arrive. */
struct pend_attach {
	char			*node;
	char			*key;
	uint8_t			*packed;
	size_t			 len;
	TAILQ_ENTRY(pend_attach) entry;
};
TAILQ_HEAD(pend_attaches, pend_attach);
static struct pend_attaches pend_attaches =
    TAILQ_HEAD_INITIALIZER(pend_attaches);
static int		 cluster_on;
static struct hmap	 fwds;
static struct hmap	 rchans;
static u_int		 cluster_next_channel;
static int		 cluster_handed;	/* Started by a hand-over. */
static struct event	*cluster_heartbeat_ev;
static time_t		 cluster_started;
static char		*cluster_self_addr;
static char		**cluster_orphans;
static u_int		 cluster_norphans;

static void	cluster_remote_notice(struct client *, const char *);
static void	cluster_remote_input(struct client *, const u_char *, size_t);
static void	cluster_remote_free(struct client *);
static void	cluster_fwd_start(struct client *, struct fwd *);
static void	cluster_publish(struct console *);
static void	cluster_rchan_drop(struct rchan *);
static void	cluster_fwd_free(struct client *);
static void	cluster_fwd_localize(struct client *, struct console *);
static void	cluster_fwd_role(struct client *, const char *);
static void	cluster_moved_add(const char *, const char *, const char *);
static void	cluster_moved_free(struct moved *);
static void	cluster_pend_run(const char *);
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

const struct client_proto cluster_remote_proto = {
	"remote",
	cluster_remote_input,
	cluster_remote_notice,
	cluster_remote_free,
	NULL
};

/* Whether this node is part of a cluster (a shared store is set). */
int
cluster_enabled(void)
{
	return (cluster_on);
}

static const char *
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

static struct peer *
cluster_peer(const char *node)
{
	if (node == NULL)
		return (NULL);
	return (peer_find(node));
}

static int
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

static void
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
static void
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

static void
cluster_claim_pending(void)
{
	struct console	*con;

	if (!server_store->connected)
		return;
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if ((con->flags & (CONSOLE_UNCLAIMED|CONSOLE_CLAIMING|
		    CONSOLE_REMOTE)) != CONSOLE_UNCLAIMED)
			continue;
		if (con->vm == NULL) {
			/* Nothing to own any more. */
			con->flags &= ~CONSOLE_UNCLAIMED;
			continue;
		}
		con->flags |= CONSOLE_CLAIMING;
		store_console_claim(server_store, con->key, cluster_self(),
		    con->claim_known, cluster_reclaimed, xstrdup(con->key));
	}
}

/* Stop reading data for a remote console: only a record remains. */
static void
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

static void
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
		}
	}
	n.consoles = consoles;
	n.peers = peer_link_count();
	cluster_claim_pending();
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
	if (fwds.b == NULL)
		hmap_init(&fwds);
	if (rchans.b == NULL)
		hmap_init(&rchans);
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
	while (!TAILQ_EMPTY(&moved_channels))
		cluster_moved_free(TAILQ_FIRST(&moved_channels));
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
 * Forwarded people (this node) <-> remote clients (owner).
 */

static struct fwd *
cluster_fwd_find(u_int channel)
{
	struct hmap_entry	*e;
	char			 k[16];

	snprintf(k, sizeof k, "%u", channel);
	if ((e = hmap_find(&fwds, k)) == NULL)
		return (NULL);
	return (hmap_data(e, struct fwd, entry));
}

static void
cluster_fwd_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	struct fwd	*f = arg;

	if (f->state == FWD_WAITING)
		cluster_fwd_start(f->c, f);
}

static void
cluster_fwd_wait(struct fwd *f, const char *why)
{
	struct timeval	tv = { 0, CLUSTER_RETRY_MS * 1000 };

	if (f->state != FWD_WAITING && why != NULL && f->c->proto->notice)
		f->c->proto->notice(f->c, why);
	f->state = FWD_WAITING;
	if (f->retry == NULL)
		f->retry = evtimer_new(server_base, cluster_fwd_retry_cb, f);
	evtimer_add(f->retry, &tv);
}

/* Send Attach for a forwarded client to the console's owner. */
static void
cluster_fwd_start(struct client *c, struct fwd *f)
{
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__Attach	 a = VSPC__ATTACH__INIT;
	struct console	*con;
	char		*why;

	if (f->c == NULL) {
		f->c = c;
		c->cluster = f;
		f->channel = ++cluster_next_channel;
		snprintf(f->idkey, sizeof f->idkey, "%u", f->channel);
		hmap_insert(&fwds, &f->entry, f->idkey);
	} else if (f->node != NULL) {
		/* A new attempt gets a new channel: old frames are stale. */
		if (f->state == FWD_ATTACHING || f->state == FWD_ATTACHED) {
			Vspc__Envelope	 denv = VSPC__ENVELOPE__INIT;
			Vspc__Detach	 d = VSPC__DETACH__INIT;

			d.channel = f->channel;
			d.reason = (char *)"re-attaching";
			denv.msg_case = VSPC__ENVELOPE__MSG_DETACH;
			denv.detach = &d;
			cluster_send(f->node, &denv);
		}
		hmap_remove(&fwds, &f->entry);
		f->channel = ++cluster_next_channel;
		snprintf(f->idkey, sizeof f->idkey, "%u", f->channel);
		hmap_insert(&fwds, &f->entry, f->idkey);
	}
	con = console_find(f->key);
	if (con != NULL && !(con->flags & CONSOLE_REMOTE) && !f->initial) {
		cluster_fwd_localize(c, con);
		return;
	}
	if (con == NULL || !(con->flags & CONSOLE_REMOTE)) {
		if (f->initial) {
			f->state = FWD_WAITING;
			f->refused = 1;
			if (c->proto->attached != NULL)
				c->proto->attached(c, ATTACH_REFUSED_REMOTE,
				    "console not available");
			return;
		}
		cluster_fwd_wait(f, "console not available; waiting");
		return;
	}
	free(f->node);
	f->node = xstrdup(con->owner);
	c->console = con;
	if (!server_store->connected && f->initial) {
		f->state = FWD_WAITING;
		f->refused = 1;
		if (c->proto->attached != NULL)
			c->proto->attached(c, ATTACH_REFUSED_REMOTE,
			    "shared state unreachable (Redis is down): only "
			    "consoles of this node can be attached");
		return;
	}
	if (cluster_peer(f->node) == NULL) {
		if (f->initial && (f->deadline == 0 ||
		    time(NULL) < f->deadline)) {
			/*
			 * A node that just started knows the consoles before
			 * its links are up: give the link a moment.
			 */
			struct timeval	tv = { 0, 100000 };

			if (f->deadline == 0)
				f->deadline = time(NULL) + 3;
			f->state = FWD_WAITING;
			if (f->retry == NULL)
				f->retry = evtimer_new(server_base,
				    cluster_fwd_retry_cb, f);
			evtimer_add(f->retry, &tv);
			return;
		}
		if (f->initial) {
			f->state = FWD_WAITING;
			f->refused = 1;
			xasprintf(&why, "node %s, which owns the console, "
			    "cannot be reached", f->node);
			if (c->proto->attached != NULL)
				c->proto->attached(c, ATTACH_REFUSED_REMOTE,
				    why);
			free(why);
			return;
		}
		xasprintf(&why, "node %s unreachable; waiting", f->node);
		cluster_fwd_wait(f, why);
		free(why);
		return;
	}
	a.channel = f->channel;
	a.console = f->key;
	a.mode = f->mode;
	a.user = c->user != NULL ? c->user : (char *)"";
	a.addr = c->addr;
	a.kind = c->kind;
	a.resume = f->have_off;
	a.resume_offset = f->next_off;
	a.stream = f->stream;
	a.credit = (c->flags & CLIENT_NOCREDIT) ? 0 : CLUSTER_CREDIT;
	a.replay_lines = f->have_off ? 0 : server_conf->console_replay_lines;
	a.replay_in_reply = (c->kind == CLIENT_VSPCPY && f->initial);
	env.msg_case = VSPC__ENVELOPE__MSG_ATTACH;
	env.attach = &a;
	f->state = FWD_ATTACHING;
	f->unacked = 0;
	if (cluster_send(f->node, &env) == -1) {
		if (f->initial) {
			f->state = FWD_WAITING;
			f->refused = 1;
			if (c->proto->attached != NULL)
				c->proto->attached(c, ATTACH_REFUSED_REMOTE,
				    "the console's node cannot be reached");
			return;
		}
		cluster_fwd_wait(f, "owner unreachable; waiting");
	}
}

/*
 * The console a forwarded person watches is on this node now: attach
 * them here, at the byte they had reached.
 */
static void
cluster_fwd_localize(struct client *c, struct console *con)
{
	struct fwd		*f = c->cluster;
	enum attach_mode	 mode = f->mode;
	enum attach_result	 r;
	uint64_t		 off = f->next_off;
	int			 have_off = f->have_off, lost = f->lost;
	int			 same = (f->stream == con->stream);
	uint64_t		 f_stream = f->stream;
	struct evbuffer		*pending = f->pending;

	f->pending = NULL;
	cluster_fwd_free(c);
	c->console = NULL;
	r = console_attach(con, c, mode);
	if (r != ATTACHED_WRITER && r != ATTACHED_SPY && r != ATTACHED_RO) {
		if (c->proto->notice != NULL)
			c->proto->notice(c, attach_result_string(r));
		client_close(c, attach_result_string(r));
	} else {
		if (have_off && (same || (con->flags & CONSOLE_HANDOVER))) {
			c->off = off;
			if (!same)
				c->stream = f_stream;
		} else if (have_off)
			c->off = ring_start(&con->history);
		if (lost && c->proto->notice != NULL) {
			char	*msg;

			xasprintf(&msg, "console back on %s: %s", cluster_self(),
			    have_off && !same ? "output from the new start" :
			    "resumed");
			c->proto->notice(c, msg);
			free(msg);
		}
		c->flags |= CLIENT_STREAM;
		client_flush(c);
		if (pending != NULL && evbuffer_get_length(pending) != 0)
			client_input_to_vm(c, evbuffer_pullup(pending, -1),
			    evbuffer_get_length(pending));
	}
	if (pending != NULL)
		evbuffer_free(pending);
}

/*
 * The owner said where the console went: believe it unless the store told
 * of a later owner already.
 */
static void
cluster_moved_to(const char *key, const char *owner, uint64_t epoch)
{
	struct console	*con = console_find(key);

	if (con == NULL || !(con->flags & CONSOLE_REMOTE) || owner == NULL ||
	    *owner == '\0' || strcmp(owner, cluster_self()) == 0 ||
	    epoch < con->epoch)
		return;
	if (con->owner == NULL || strcmp(con->owner, owner) != 0) {
		free(con->owner);
		con->owner = xstrdup(owner);
	}
	con->epoch = epoch;
}

/* The owner moved the console: follow it to the new owner. */
static void
cluster_fwd_moved(struct fwd *f)
{
	struct console	*con = console_find(f->key);

	f->state = FWD_WAITING;
	if (con != NULL && !(con->flags & CONSOLE_REMOTE))
		cluster_fwd_localize(f->c, con);
	else if (con != NULL && con->owner != NULL &&
	    strcmp(con->owner, f->node) != 0)
		cluster_fwd_start(f->c, f);
	else
		cluster_fwd_wait(f, NULL);
}

static void
cluster_fwd_free(struct client *c)
{
	struct fwd	*f = c->cluster;

	if (f == NULL)
		return;
	hmap_remove(&fwds, &f->entry);
	if (f->retry != NULL)
		event_free(f->retry);
	if (f->pending != NULL)
		evbuffer_free(f->pending);
	if (f->seed != NULL)
		evbuffer_free(f->seed);
	free(f->key);
	free(f->node);
	free(f);
	c->cluster = NULL;
}

/*
 * The replay the owner put in its answer (for vSPC.py's seed data); the
 * caller takes the buffer.
 */
struct evbuffer *
cluster_fwd_seed(struct client *c)
{
	struct fwd	*f = c->cluster;
	struct evbuffer	*evb;

	if (f == NULL || c->kind == CLIENT_REMOTE)
		return (NULL);
	evb = f->seed;
	f->seed = NULL;
	return (evb);
}

/* Is this client's console on another node? */
int
cluster_client_forwarded(const struct client *c)
{
	return (c->cluster != NULL && c->kind != CLIENT_REMOTE);
}

/*
 * Attach a person here to a console owned by another node.  The answer
 * comes later, through the client's proto->attached.
 */
enum attach_result
cluster_attach(struct console *con, struct client *c, enum attach_mode mode)
{
	struct fwd	*f;

	if (c->proto->attached == NULL)
		return (ATTACH_REFUSED_REMOTE);
	if (c->cluster != NULL)
		cluster_fwd_free(c);
	f = xcalloc(1, sizeof *f);
	f->key = xstrdup(con->key);
	f->mode = mode;
	f->initial = 1;
	if (c->flags & CLIENT_READONLY)
		f->mode = ATTACH_RO;
	cluster_fwd_start(c, f);
	if (c->cluster == f && f->refused) {
		/* Refused at once; attached() was called. */
		cluster_fwd_free(c);
		c->console = NULL;
	}
	return (ATTACH_PENDING);
}

/* Input from a forwarded person: to the owner. */
void
cluster_fwd_input(struct client *c, const u_char *buf, size_t len)
{
	struct fwd	*f = c->cluster;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__Data	 d = VSPC__DATA__INIT;

	if (f == NULL || len == 0)
		return;
	if (f->state != FWD_ATTACHED) {
		/* Held until the owner answers (bounded like VM input). */
		if (f->pending == NULL)
			f->pending = evbuffer_new();
		if (evbuffer_get_length(f->pending) + len >
		    server_conf->vm_input_max) {
			server_stats.input_dropped += len;
			return;
		}
		evbuffer_add(f->pending, buf, len);
		return;
	}
	d.channel = f->channel;
	d.data.data = (uint8_t *)buf;
	d.data.len = len;
	d.input = 1;
	env.msg_case = VSPC__ENVELOPE__MSG_DATA;
	env.data = &d;
	cluster_send(f->node, &env);
}

/* The person's socket took n bytes: give credit back to the owner. */
void
cluster_fwd_drained(struct client *c, size_t n)
{
	struct fwd	*f = c->cluster;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__Credit	 cr = VSPC__CREDIT__INIT;

	if (f == NULL || c->kind == CLIENT_REMOTE)
		return;
	f->unacked += n;
	if (f->state != FWD_ATTACHED || f->unacked < CLUSTER_CREDIT / 4)
		return;
	cr.channel = f->channel;
	cr.bytes = f->unacked;
	f->unacked = 0;
	env.msg_case = VSPC__ENVELOPE__MSG_CREDIT;
	env.credit = &cr;
	cluster_send(f->node, &env);
}

/* Console output a forwarded person's buffer may hold (the credit). */
size_t
cluster_fwd_window(const struct client *c)
{
	if (c->cluster == NULL || c->kind == CLIENT_REMOTE)
		return (0);
	return (CLUSTER_CREDIT);
}

/* Let the owner start sending (the person is ready for output). */
void
cluster_fwd_grant(struct client *c)
{
	struct fwd	*f = c->cluster;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__Credit	 cr = VSPC__CREDIT__INIT;

	if (f == NULL || c->kind == CLIENT_REMOTE)
		return;
	cr.channel = f->channel;
	cr.bytes = CLUSTER_CREDIT;
	env.msg_case = VSPC__ENVELOPE__MSG_CREDIT;
	env.credit = &cr;
	cluster_send(f->node, &env);
}

/* Escape-menu actions of a forwarded person, done by the owner. */
int
cluster_fwd_mode(struct client *c, enum attach_mode mode, u_int replay,
    int brk)
{
	struct fwd	*f = c->cluster;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__Mode	 m = VSPC__MODE__INIT;

	if (f == NULL || f->state != FWD_ATTACHED)
		return (-1);
	m.channel = f->channel;
	m.mode = mode;
	m.send_break = brk;
	m.replay_lines = replay;
	f->req = brk ? 'b' : replay != 0 ? 'r' : 'm';
	if (replay != 0)
		client_printf(c, "[replay of the last %u lines]\r\n", replay);
	env.msg_case = VSPC__ENVELOPE__MSG_MODE;
	env.mode = &m;
	if (mode == ATTACH_FORCE || mode == ATTACH_SPY ||
	    mode == ATTACH_DEFAULT)
		f->mode = mode == ATTACH_FORCE ? ATTACH_DEFAULT : mode;
	return (cluster_send(f->node, &env));
}

/* A client closed: end its channel, whichever side it is. */
void
cluster_client_gone(struct client *c)
{
	struct fwd	*f;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__Detach	 d = VSPC__DETACH__INIT;

	if (c->cluster == NULL || c->kind == CLIENT_REMOTE)
		return;
	f = c->cluster;
	if (f->state == FWD_ATTACHED || f->state == FWD_ATTACHING) {
		d.channel = f->channel;
		d.reason = (char *)"person left";
		env.msg_case = VSPC__ENVELOPE__MSG_DETACH;
		env.detach = &d;
		cluster_send(f->node, &env);
	}
	cluster_fwd_free(c);
}

/* The owner answered an Attach. */
static void
cluster_attach_reply(struct peer *p, const Vspc__AttachReply *ar)
{
	struct fwd		*f = cluster_fwd_find(ar->channel);
	struct client		*c;
	enum attach_result	 r = ar->result;
	int			 initial, fresh;

	if (f == NULL || f->node == NULL ||
	    strcmp(f->node, peer_node(p)) != 0)
		return;
	c = f->c;
	initial = f->initial;
	f->initial = 0;
	if (r != ATTACHED_WRITER && r != ATTACHED_SPY && r != ATTACHED_RO) {
		if (!initial && r == ATTACH_REFUSED_REMOTE) {
			/*
			 * The node we thought the owner has it no more: what
			 * we knew is stale (a move we were not told of, a
			 * claim the store has not recorded yet).  Wait for
			 * the store or the next owner, as after a loss; the
			 * person is not to blame.
			 */
			log_info("console %s: node %s does not have it; "
			    "waiting for its owner", f->key, f->node);
			cluster_fwd_wait(f, NULL);
			cluster_refresh(f->key);
			return;
		}
		if (!initial) {
			/* A re-attach after a move was refused. */
			if (c->proto->notice != NULL)
				c->proto->notice(c, *ar->error != '\0' ?
				    ar->error : attach_result_string(r));
			client_close(c, "re-attach refused");
			return;
		}
		cluster_fwd_free(c);
		c->console = NULL;
		if (c->proto->attached != NULL)
			c->proto->attached(c, r >= ATTACH_RESULT_MAX ?
			    ATTACH_REFUSED_REMOTE : r, *ar->error != '\0' ?
			    ar->error : NULL);
		return;
	}
	f->state = FWD_ATTACHED;
	fresh = f->have_off && f->stream != ar->stream;
	/* The owner says where its stream starts for us (it clamps). */
	f->next_off = ar->offset;
	f->stream = ar->stream;
	f->have_off = 1;
	if (ar->replay.len != 0) {
		if (f->seed == NULL)
			f->seed = evbuffer_new();
		evbuffer_add(f->seed, ar->replay.data, ar->replay.len);
	}
	if (f->pending != NULL && evbuffer_get_length(f->pending) != 0) {
		size_t	 n = evbuffer_get_length(f->pending);
		u_char	*b = xmalloc(n);

		evbuffer_remove(f->pending, b, n);
		cluster_fwd_input(c, b, n);
		free(b);
	}
	if (r == ATTACHED_WRITER)
		c->flags |= CLIENT_WRITE;
	else
		c->flags &= ~CLIENT_WRITE;
	if (initial) {
		if (c->proto->attached != NULL)
			c->proto->attached(c, r, NULL);
	} else if (f->lost && c->proto->notice != NULL) {
		char	*msg;

		/* After a loss people are told; after a vMotion, not. */
		xasprintf(&msg, "console back on %s: %s", f->node, fresh ?
		    "output from the new start" : "resumed");
		c->proto->notice(c, msg);
		free(msg);
	}
	f->lost = 0;
}

/* Console output (or a message) for a forwarded person. */
static void
cluster_fwd_data(struct peer *p, const Vspc__Data *d)
{
	struct fwd	*f = cluster_fwd_find(d->channel);
	struct client	*c;
	u_char		*esc;
	size_t		 len = d->data.len, skip = 0;

	if (f == NULL || f->state != FWD_ATTACHED || f->node == NULL ||
	    strcmp(f->node, peer_node(p)) != 0)
		return;
	c = f->c;
	if (!d->message) {
		/* Stream bytes: drop any we already showed (a resume). */
		if (f->have_off && d->offset + len <= f->next_off)
			return;
		if (f->have_off && d->offset < f->next_off)
			skip = f->next_off - d->offset;
		f->next_off = d->offset + len;
		f->have_off = 1;
	}
	if (len <= skip)
		return;
	if (c->flags & CLIENT_ESCAPE) {
		esc = xmalloc((len - skip) * 2);
		client_write_data(c, esc, telnet_escape(esc,
		    d->data.data + skip, len - skip));
		free(esc);
	} else
		client_write_data(c, d->data.data + skip, len - skip);
}

/*
 * The owner side.
 */

static struct rchan *
cluster_rchan_find(const char *node, u_int channel)
{
	struct hmap_entry	*e;
	char			*k;

	xasprintf(&k, "%s/%u", node, channel);
	e = hmap_find(&rchans, k);
	free(k);
	if (e == NULL)
		return (NULL);
	return (hmap_data(e, struct rchan, entry));
}

static void
cluster_attach_answer(const char *node, u_int channel, enum attach_result r,
    const char *err, struct console *con, uint64_t off, uint64_t stream,
    const u_char *replay, size_t replaylen)
{
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__AttachReply	 ar = VSPC__ATTACH_REPLY__INIT;

	ar.replay.data = (uint8_t *)replay;
	ar.replay.len = replaylen;
	ar.channel = channel;
	ar.result = r;
	ar.error = (char *)(err != NULL ? err : "");
	ar.name = (char *)(con != NULL && con->name != NULL ? con->name : "");
	ar.offset = off;
	ar.stream = stream;
	ar.vm_connected = (con != NULL && con->vm != NULL);
	env.msg_case = VSPC__ENVELOPE__MSG_ATTACH_REPLY;
	env.attach_reply = &ar;
	cluster_send(node, &env);
}

/* A person on another node attaches to a console of ours. */
static void
cluster_remote_attach(const char *node, const Vspc__Attach *a)
{
	struct console		*con;
	struct client		*c;
	struct rchan		*rc;
	struct pend_attach	*pa;
	enum attach_result	 r;
	char			*err;
	u_char			*replay = NULL;
	size_t			 replaylen = 0;

	con = console_find(a->console);
	if (con != NULL && (con->flags & CONSOLE_HANDOVER)) {
		/* Answered once the history (and its stream) is here. */
		pa = xcalloc(1, sizeof *pa);
		pa->node = xstrdup(node);
		pa->key = xstrdup(a->console);
		pa->len = vspc__attach__get_packed_size(a);
		pa->packed = xmalloc(pa->len + 1);
		vspc__attach__pack(a, pa->packed);
		TAILQ_INSERT_TAIL(&pend_attaches, pa, entry);
		return;
	}
	if (con == NULL || (con->flags & CONSOLE_REMOTE)) {
		xasprintf(&err, "console %s is not on node %s", a->console,
		    cluster_self());
		cluster_attach_answer(node, a->channel, ATTACH_REFUSED_REMOTE,
		    err, NULL, 0, 0, NULL, 0);
		free(err);
		return;
	}
	if (cluster_rchan_find(node, a->channel) != NULL)
		return;
	c = client_create(-1, CLIENT_REMOTE, &cluster_remote_proto, NULL);
	snprintf(c->addr, sizeof c->addr, "%s@%s", a->addr, node);
	if (*a->user != '\0')
		c->user = xstrdup(a->user);
	if (a->mode == ATTACH_RO)
		c->flags |= CLIENT_READONLY;
	rc = xcalloc(1, sizeof *rc);
	rc->node = xstrdup(node);
	rc->channel = a->channel;
	xasprintf(&rc->idkey, "%s/%u", node, a->channel);
	rc->c = c;
	rc->credit = a->credit > CLUSTER_CREDIT * 4 ? CLUSTER_CREDIT * 4 :
	    a->credit;
	c->cluster = rc;
	hmap_insert(&rchans, &rc->entry, rc->idkey);

	r = console_attach(con, c, a->mode < ATTACH_MAX ? a->mode :
	    ATTACH_DEFAULT);
	if (r != ATTACHED_WRITER && r != ATTACHED_SPY && r != ATTACHED_RO) {
		cluster_attach_answer(node, a->channel, r,
		    attach_result_string(r), con, 0, 0, NULL, 0);
		client_close(c, attach_result_string(r));
		return;
	}
	if (a->resume && a->stream == con->stream) {
		c->off = a->resume_offset;
		if (c->off > con->history.end)
			c->off = con->history.end;
	} else if (a->resume) {
		/* The history started afresh (its owner was lost). */
		c->off = ring_start(&con->history);
	} else
		c->off = ring_lines_back(&con->history, a->replay_lines);
	if (a->replay_in_reply) {
		replaylen = con->history.end - c->off;
		if (replaylen > CLUSTER_DATA_MAX * 16)
			replaylen = CLUSTER_DATA_MAX * 16;
		replay = xmalloc(replaylen + 1);
		replaylen = ring_copy(&con->history, con->history.end -
		    replaylen, replay, replaylen);
		c->off = con->history.end;
	}
	cluster_attach_answer(node, a->channel, r, NULL, con, c->off,
	    con->stream, replay, replaylen);
	free(replay);
	c->flags |= CLIENT_STREAM;
	client_flush(c);
}

/* The console's history arrived: answer the Attaches that waited. */
static void
cluster_pend_run(const char *key)
{
	struct pend_attach	*pa, *pa1;
	Vspc__Attach		*a;

	TAILQ_FOREACH_SAFE(pa, &pend_attaches, entry, pa1) {
		if (key != NULL && strcmp(pa->key, key) != 0)
			continue;
		TAILQ_REMOVE(&pend_attaches, pa, entry);
		a = vspc__attach__unpack(NULL, pa->len, pa->packed);
		if (a != NULL && key != NULL) {
			cluster_remote_attach(pa->node, a);
		}
		if (a != NULL)
			vspc__attach__free_unpacked(a, NULL);
		free(pa->node);
		free(pa->key);
		free(pa->packed);
		free(pa);
	}
}

/* Remember where input for a moved channel should go. */
static void
cluster_moved_add(const char *idkey, const char *key, const char *owner)
{
	struct moved	*m;

	m = xcalloc(1, sizeof *m);
	m->idkey = xstrdup(idkey);
	m->key = xstrdup(key);
	m->owner = xstrdup(owner);
	m->until = time(NULL) + CLUSTER_MOVED_KEEP;
	TAILQ_INSERT_TAIL(&moved_channels, m, entry);
}

static void
cluster_moved_free(struct moved *m)
{
	TAILQ_REMOVE(&moved_channels, m, entry);
	free(m->idkey);
	free(m->key);
	free(m->owner);
	free(m);
}

/* Input for a channel that is gone: pass it on if its console moved. */
static void
cluster_moved_input(const char *node, u_int channel, const u_char *buf,
    size_t len)
{
	struct moved		*m, *m1;
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__LateInput		 li = VSPC__LATE_INPUT__INIT;
	char			*k;
	time_t			 now = time(NULL);

	xasprintf(&k, "%s/%u", node, channel);
	TAILQ_FOREACH_SAFE(m, &moved_channels, entry, m1) {
		if (m->until < now) {
			cluster_moved_free(m);
			continue;
		}
		if (strcmp(m->idkey, k) != 0)
			continue;
		li.console = m->key;
		li.data.data = (uint8_t *)buf;
		li.data.len = len;
		env.msg_case = VSPC__ENVELOPE__MSG_LATE_INPUT;
		env.late_input = &li;
		if (cluster_send(m->owner, &env) == 0) {
			free(k);
			return;
		}
		break;
	}
	free(k);
	server_stats.input_dropped += len;
	log_debug("cluster: %zu bytes of input from node %s for a closed "
	    "channel", len, node);
}

/* Forget a channel (the person's node already knows it is gone). */
static void
cluster_rchan_drop(struct rchan *rc)
{
	hmap_remove(&rchans, &rc->entry);
	free(rc->idkey);
	free(rc->node);
	free(rc);
}

static void
cluster_remote_free(struct client *c)
{
	struct rchan	*rc = c->cluster;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__Detach	 d = VSPC__DETACH__INIT;

	if (rc == NULL)
		return;
	/* Tell the person's node; it ignores this if it left first. */
	d.channel = rc->channel;
	d.reason = (char *)"closed by the console's node";
	d.from_owner = 1;
	env.msg_case = VSPC__ENVELOPE__MSG_DETACH;
	env.detach = &d;
	cluster_send(rc->node, &env);
	hmap_remove(&rchans, &rc->entry);
	free(rc->idkey);
	free(rc->node);
	free(rc);
	c->cluster = NULL;
}

/* Send a remote client what it is owed from the history, within credit. */
void
cluster_remote_flush(struct client *c)
{
	struct rchan		*rc = c->cluster;
	struct console		*con = c->console;
	struct ring		*r;
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__Data		 d = VSPC__DATA__INIT;
	struct iovec		 iov[2];
	u_char			 buf[CLUSTER_DATA_MAX];
	uint64_t		 start;
	size_t			 n;
	char			 msg[80];
	struct peer		*p;

	if (rc == NULL || con == NULL || !(c->flags & CLIENT_STREAM) ||
	    (con->flags & CONSOLE_HANDOVER))
		return;
	if ((p = cluster_peer(rc->node)) == NULL)
		return;
	r = &con->history;
	while (c->off < r->end) {
		start = ring_start(r);
		if (c->off < start) {
			snprintf(msg, sizeof msg, "%llu bytes skipped",
			    (unsigned long long)(start - c->off));
			c->skipped += start - c->off;
			server_stats.client_skipped += start - c->off;
			c->off = start;
			cluster_remote_notice(c, msg);
			continue;
		}
		if (rc->credit == 0 || peer_queued(p) > 4 * 1024 * 1024) {
			if (c->stuck_since == 0)
				c->stuck_since = server_now;
			return;
		}
		n = r->end - c->off;
		if (n > sizeof buf)
			n = sizeof buf;
		if (n > rc->credit)
			n = rc->credit;
		n = ring_copy(r, c->off, buf, n);
		if (n == 0)
			break;
		(void)iov;
		d.channel = rc->channel;
		d.offset = c->off;
		d.data.data = buf;
		d.data.len = n;
		env.msg_case = VSPC__ENVELOPE__MSG_DATA;
		env.data = &d;
		if (peer_send(p, &env) == -1)
			return;
		c->off += n;
		rc->credit -= n;
		c->bytes_out += n;
	}
	c->stuck_since = 0;
}

/* A message (replay, who list) for a remote client: out of the stream. */
void
cluster_remote_write(struct client *c, const void *buf, size_t len)
{
	struct rchan	*rc = c->cluster;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__Data	 d = VSPC__DATA__INIT;
	const u_char	*p = buf;
	size_t		 n;

	if (rc == NULL)
		return;
	while (len > 0) {
		n = len > CLUSTER_DATA_MAX ? CLUSTER_DATA_MAX : len;
		d.channel = rc->channel;
		d.message = 1;
		d.data.data = (uint8_t *)p;
		d.data.len = n;
		env.msg_case = VSPC__ENVELOPE__MSG_DATA;
		env.data = &d;
		cluster_send(rc->node, &env);
		p += n;
		len -= n;
	}
}

static void
cluster_remote_notice(struct client *c, const char *text)
{
	struct rchan	*rc = c->cluster;
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__Notice	 n = VSPC__NOTICE__INIT;

	if (rc == NULL)
		return;
	n.channel = rc->channel;
	n.text = (char *)text;
	n.mode = (char *)client_mode_name(c);
	env.msg_case = VSPC__ENVELOPE__MSG_NOTICE;
	env.notice = &n;
	cluster_send(rc->node, &env);
}

static void
cluster_remote_input(struct client *c, const u_char *buf, size_t len)
{
	client_input_to_vm(c, buf, len);
}

static void
cluster_remote_mode(struct peer *p, const Vspc__Mode *m)
{
	struct rchan	*rc = cluster_rchan_find(peer_node(p), m->channel);
	struct client	*c;
	char		 err[160];
	Vspc__Envelope	 env = VSPC__ENVELOPE__INIT;
	Vspc__ModeReply	 mr = VSPC__MODE_REPLY__INIT;

	if (rc == NULL || (c = rc->c)->console == NULL)
		return;
	mr.channel = m->channel;
	mr.ok = 1;
	mr.error = (char *)"";
	if (m->send_break) {
		if (c->flags & CLIENT_WRITE)
			console_send_break(c->console);
		else {
			mr.ok = 0;
			mr.error = (char *)"only the writer can send a break";
		}
	} else if (m->replay_lines != 0) {
		console_replay(c->console, c, m->replay_lines);
	} else if (console_set_mode(c->console, c, m->mode, err,
	    sizeof err) == -1) {
		mr.ok = 0;
		mr.error = err;
	}
	mr.mode = (char *)client_mode_name(c);
	env.msg_case = VSPC__ENVELOPE__MSG_MODE_REPLY;
	env.mode_reply = &mr;
	cluster_send(rc->node, &env);
}

/* Note the mode the owner gives a forwarded person. */
static void
cluster_fwd_role(struct client *c, const char *mode)
{
	if (mode == NULL || *mode == '\0')
		return;
	if (strcmp(mode, "writer") == 0 || strcmp(mode, "exclusive") == 0 ||
	    strcmp(mode, "write-lock") == 0)
		c->flags |= CLIENT_WRITE;
	else
		c->flags &= ~CLIENT_WRITE;
}

static void
cluster_mode_reply(struct peer *p, const Vspc__ModeReply *mr)
{
	struct fwd	*f = cluster_fwd_find(mr->channel);
	struct client	*c;

	if (f == NULL)
		return;
	c = f->c;
	cluster_fwd_role(c, mr->mode);
	/* Answer the person as the console port does for a local console. */
	if (!mr->ok)
		client_printf(c, "[%s]\r\n", mr->error);
	else if (f->req == 'b')
		client_printf(c, "[break sent]\r\n");
	else if (f->req == 'r')
		client_printf(c, "\r\n[end of replay]\r\n");
	else if (f->req == 'm')
		client_printf(c, "[%s]\r\n", (c->flags & CLIENT_WRITE) ?
		    "attached" : strcmp(mr->mode, "read-only") == 0 ?
		    "read-only" : "spy");
	f->req = 0;
}

/*
 * vMotion across nodes.
 */

static size_t
cluster_seq_len(size_t toklen)
{
	return (toklen > VMOTION_SECRET_LEN ? toklen - VMOTION_SECRET_LEN : 0);
}

static void
cluster_vmotion_send(const char *node, int type, const char *key, uint64_t id,
    uint64_t epoch, const char *reason)
{
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__VmotionPeered	 vp = VSPC__VMOTION_PEERED__INIT;
	Vspc__VmotionCompleted	 vc = VSPC__VMOTION_COMPLETED__INIT;
	Vspc__VmotionFailed	 vf = VSPC__VMOTION_FAILED__INIT;
	Vspc__VmotionAborted	 va = VSPC__VMOTION_ABORTED__INIT;

	switch (type) {
	case VSPC__ENVELOPE__MSG_VMOTION_PEERED:
		vp.console = (char *)key;
		vp.id = id;
		vp.dst_node = (char *)cluster_self();
		env.vmotion_peered = &vp;
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_COMPLETED:
		vc.console = (char *)key;
		vc.id = id;
		vc.epoch = epoch;
		vc.dst_node = (char *)cluster_self();
		env.vmotion_completed = &vc;
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_FAILED:
		vf.console = (char *)key;
		vf.id = id;
		vf.reason = (char *)reason;
		env.vmotion_failed = &vf;
		break;
	case VSPC__ENVELOPE__MSG_VMOTION_ABORTED:
		va.console = (char *)key;
		va.id = id;
		va.reason = (char *)reason;
		env.vmotion_aborted = &va;
		break;
	default:
		return;
	}
	env.msg_case = type;
	if (cluster_send(node, &env) == -1)
		log_warnx("console %s: cannot tell node %s about the vMotion: "
		    "no link", key, node);
}

static void
cluster_vmotion_timer(evutil_socket_t fd, short events, void *arg)
{
	struct console	*con = arg;

	if (con->vmotion.state == VMOTION_NONE)
		return;
	server_stats.vmotion_timeout++;
	vmotion_cancel(con, "timed out");
}

/*
 * PEER on this node for a vMotion whose source is on another node.
 * Returns 0 if the connection is now the destination, -1 if refused.
 */
int
cluster_vmotion_peer(struct vmconn *v, const u_char *tok, size_t len,
    const struct store_token *val)
{
	struct console	*con;
	struct vmotion	*m;
	size_t		 seqlen = cluster_seq_len(len);
	struct timeval	 tv;

	if (seqlen == 0 || seqlen > VMOTION_SEQ_MAX)
		return (-1);
	if (cluster_peer(val->node) == NULL) {
		log_warnx("vm conn %u %s: vMotion of console %s: source node "
		    "%s cannot be reached; refusing the destination", v->id,
		    v->addr, val->console, val->node);
		return (-1);
	}
	if ((con = console_find(val->console)) == NULL) {
		if ((con = console_get_key(val->console)) == NULL)
			return (-1);
		console_make_remote(con, val->node, 0);
	}
	if (!(con->flags & CONSOLE_REMOTE) ||
	    con->vmotion.state != VMOTION_NONE) {
		log_warnx("console %s: vMotion destination while the console "
		    "is %s here; refusing", con->key, console_state(con));
		return (-1);
	}
	m = &con->vmotion;
	memcpy(m->seq, tok, seqlen);
	m->seqlen = seqlen;
	m->state = VMOTION_PEERED;
	m->src = NULL;
	m->dst = v;
	m->id = val->id;
	free(m->node);
	m->node = xstrdup(val->node);
	clock_gettime(CLOCK_MONOTONIC, &m->began);
	v->role = VMCONN_VMOTION_DST;
	v->console = con;
	if (v->ev_timeout != NULL) {
		/* Bound by its token: no negotiation timeout any more. */
		event_free(v->ev_timeout);
		v->ev_timeout = NULL;
	}
	if (m->timer == NULL)
		m->timer = evtimer_new(server_base, cluster_vmotion_timer, con);
	tv.tv_sec = server_conf->vm_token_ttl;
	tv.tv_usec = 0;
	evtimer_add(m->timer, &tv);
	vmconn_send_vmware(v, VMW_VMOTION_PEER_OK, m->seq, m->seqlen);
	cluster_vmotion_send(val->node, VSPC__ENVELOPE__MSG_VMOTION_PEERED,
	    con->key, m->id, 0, NULL);
	return (0);
}

static void
cluster_handover_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct console	*con = arg;
	struct client	*c;

	if (!(con->flags & CONSOLE_HANDOVER))
		return;
	log_warnx("console %s: no history from the previous owner after %d s; "
	    "going on without it", con->key, CLUSTER_HANDOVER_WAIT);
	ring_restore(&con->history, NULL, 0, 0);
	con->flags &= ~CONSOLE_HANDOVER;
	TAILQ_FOREACH(c, &con->clients, centry) {
		c->off = 0;
		c->stream = 0;
	}
	if (con->vm != NULL) {
		con->vm->role = VMCONN_CURRENT;
		vmconn_release_held(con->vm);
	}
	cluster_publish(con);
	cluster_pend_run(con->key);
}

static void
cluster_completed_claim(enum store_status st, uint64_t epoch, void *arg)
{
	char		*key = arg;
	struct console	*con = console_find(key);
	struct vmotion	*m;
	struct vmconn	*v;
	struct timeval	 tv = { CLUSTER_HANDOVER_WAIT, 0 };
	uint64_t	 known = 0;

	free(key);
	if (con == NULL || (m = &con->vmotion)->state != VMOTION_PEERED ||
	    m->dst == NULL || m->node == NULL)
		return;
	if (st != STORE_OK) {
		/*
		 * The VM is here: it is ours whatever the store says.  The
		 * claim is made again until recorded; meanwhile the epoch is
		 * one past what we knew, and the source and the people
		 * following the console are told the new owner directly.
		 */
		log_warnx("console %s: cannot take ownership after vMotion: "
		    "%s", con->key, store_status_string(st));
		known = con->epoch;
		epoch = con->epoch + 1;
	}
	v = m->dst;
	cluster_vmotion_send(m->node, VSPC__ENVELOPE__MSG_VMOTION_COMPLETED,
	    con->key, m->id, epoch, NULL);
	log_info("console %s: vMotion complete: now on %s, this node (was on "
	    "node %s)", con->key, v->addr, m->node);

	/* Ours now; VM output waits on the connection for the history. */
	console_make_local(con);
	con->epoch = epoch;
	if (st != STORE_OK)
		cluster_claim_later(con, known);
	con->flags |= CONSOLE_HANDOVER;
	con->vm = v;
	con->connected = server_now;
	con->vmotions++;
	if (m->timer != NULL)
		evtimer_del(m->timer);
	m->state = VMOTION_NONE;
	m->dst = NULL;
	m->id = 0;
	if (con->handover_timer == NULL)
		con->handover_timer = evtimer_new(server_base,
		    cluster_handover_timeout, con);
	evtimer_add(con->handover_timer, &tv);
	server_stats.vmotion_complete++;
}

/* COMPLETE on a destination whose source is on another node. */
void
cluster_vmotion_complete(struct vmconn *v)
{
	struct console	*con = v->console;

	store_console_claim(server_store, con->key, cluster_self(), 0,
	    cluster_completed_claim, xstrdup(con->key));
}

/* A vMotion of ours (or to us) ended without moving: tell the other. */
void
cluster_vmotion_cancelled(struct console *con, const char *why)
{
	struct vmotion	*m = &con->vmotion;

	if (m->node == NULL)
		return;
	if (con->flags & CONSOLE_REMOTE)
		cluster_vmotion_send(m->node, VSPC__ENVELOPE__MSG_VMOTION_FAILED,
		    con->key, m->id, 0, why);
	else
		cluster_vmotion_send(m->node,
		    VSPC__ENVELOPE__MSG_VMOTION_ABORTED, con->key, m->id, 0,
		    why);
	free(m->node);
	m->node = NULL;
}

static struct console *
cluster_vmotion_console(const char *key, uint64_t id, int remote)
{
	struct console	*con = console_find(key);

	if (con == NULL || con->vmotion.state == VMOTION_NONE ||
	    con->vmotion.id != id)
		return (NULL);
	if (remote != ((con->flags & CONSOLE_REMOTE) != 0))
		return (NULL);
	return (con);
}

static void
cluster_msg_peered(struct peer *p, const Vspc__VmotionPeered *vp)
{
	struct console	*con = cluster_vmotion_console(vp->console, vp->id, 0);

	if (con == NULL || con->vmotion.state != VMOTION_PENDING) {
		log_warnx("console %s: node %s peered a vMotion we do not "
		    "have pending", vp->console, peer_node(p));
		cluster_vmotion_send(peer_node(p),
		    VSPC__ENVELOPE__MSG_VMOTION_ABORTED, vp->console, vp->id,
		    0, "no such vMotion pending");
		return;
	}
	con->vmotion.state = VMOTION_PEERED;
	free(con->vmotion.node);
	con->vmotion.node = xstrdup(peer_node(p));
	log_info("console %s: vMotion destination peered on node %s",
	    con->key, peer_node(p));
}

/* The destination's node completed: hand the console over. */
static void
cluster_msg_completed(struct peer *p, const Vspc__VmotionCompleted *vc)
{
	struct console		*con;
	struct vmotion		*m;
	struct vmconn		*src;
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__Handover		 h = VSPC__HANDOVER__INIT;
	u_char			*hist = NULL, *held = NULL;
	size_t			 hlen, heldlen = 0;
	const char		*node = peer_node(p);

	con = cluster_vmotion_console(vc->console, vc->id, 0);
	if (con == NULL || con->vmotion.state != VMOTION_PEERED ||
	    con->vmotion.node == NULL || strcmp(con->vmotion.node, node) != 0) {
		log_warnx("console %s: node %s completed a vMotion we do not "
		    "have peered", vc->console, node);
		return;
	}
	m = &con->vmotion;
	src = m->src;
	m->src = NULL;
	if (src != NULL) {
		src->role = VMCONN_RETIRED;
		src->console = NULL;
		vmconn_close(src, "vMotion completed on another node");
	}
	con->vm = NULL;
	if (m->timer != NULL)
		evtimer_del(m->timer);
	m->state = VMOTION_NONE;
	free(m->node);
	m->node = NULL;
	server_stats.vmotion_complete++;

	/* History and held input go to the new owner. */
	hlen = con->history.len;
	if (hlen != 0) {
		hist = xmalloc(hlen);
		ring_copy(&con->history, ring_start(&con->history), hist,
		    hlen);
	}
	if (con->held != NULL &&
	    (heldlen = evbuffer_get_length(con->held)) != 0) {
		held = xmalloc(heldlen);
		evbuffer_remove(con->held, held, heldlen);
	}
	h.console = con->key;
	h.epoch = vc->epoch;
	h.history_end = con->history.end;
	h.history.data = hist;
	h.history.len = hlen;
	h.held_input.data = held;
	h.held_input.len = heldlen;
	h.name = con->name != NULL ? con->name : (char *)"";
	h.vmotions = con->vmotions + 1;
	h.id = vc->id;
	h.stream = con->stream;
	env.msg_case = VSPC__ENVELOPE__MSG_HANDOVER;
	env.handover = &h;
	peer_send(p, &env);
	free(hist);
	free(held);
	log_info("console %s: vMotion complete on node %s; history (%zu "
	    "bytes) and %zu bytes of input handed over", con->key, node, hlen,
	    heldlen);
	console_log_activity(con, "vMotion to node %s", node);
	cluster_yield(con, node, vc->epoch);
}

static void
cluster_msg_handover(struct peer *p, const Vspc__Handover *h)
{
	struct console	*con = console_find(h->console);
	struct client	*c;

	if (con == NULL || !(con->flags & CONSOLE_HANDOVER)) {
		log_warnx("console %s: unexpected history hand-over from node "
		    "%s", h->console, peer_node(p));
		return;
	}
	ring_restore(&con->history, h->history.data, h->history.len,
	    h->history_end);
	con->flags &= ~CONSOLE_HANDOVER;
	if (con->handover_timer != NULL)
		evtimer_del(con->handover_timer);
	if (h->vmotions > con->vmotions)
		con->vmotions = h->vmotions;
	if (con->vm != NULL) {
		/* What people typed during the move, then VM output. */
		if (h->held_input.len != 0)
			vmconn_write(con->vm, h->held_input.data,
			    h->held_input.len);
		con->vm->role = VMCONN_CURRENT;
		vmconn_release_held(con->vm);
	}
	con->stream = h->stream != 0 ? h->stream : con->stream;
	TAILQ_FOREACH(c, &con->clients, centry) {
		if (c->stream != 0 && c->stream != con->stream)
			c->off = ring_start(&con->history);
		if (c->off > con->history.end)
			c->off = con->history.end;
		c->stream = 0;
		if (c->flags & CLIENT_STREAM)
			client_flush(c);
	}
	log_info("console %s: history handed over by node %s (%zu bytes, "
	    "stream at %llu)", con->key, peer_node(p), h->history.len,
	    (unsigned long long)h->history_end);
	cluster_publish(con);
	cluster_pend_run(con->key);
}

static void
cluster_msg_failed(struct peer *p, const Vspc__VmotionFailed *vf)
{
	struct console	*con = cluster_vmotion_console(vf->console, vf->id, 0);

	if (con == NULL)
		return;
	free(con->vmotion.node);
	con->vmotion.node = NULL;
	vmotion_cancel(con, vf->reason);
}

static void
cluster_msg_aborted(struct peer *p, const Vspc__VmotionAborted *va)
{
	struct console	*con = cluster_vmotion_console(va->console, va->id, 1);

	if (con == NULL)
		return;
	free(con->vmotion.node);
	con->vmotion.node = NULL;
	vmotion_cancel(con, va->reason);
}

/* The destination of a vMotion from another node was lost. */
void
cluster_vmotion_dst_lost(struct console *con)
{
	cluster_vmotion_cancelled(con, "destination closed before COMPLETE");
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
	for (i = 0; i < fwds.nb; i++) {
		for (e = fwds.b[i]; e != NULL; e = e->next) {
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

/*
 * Hot upgrade (node/handoff.c): channels both ways, moved channels,
 * Attaches waiting for a history and the channel counter go to the new
 * process as one HANDOFF_REC_CLUSTER record.  Clients and consoles are
 * restored first (by their own records); here their channels are tied
 * back to them by client ID and console key.  Nothing is sent to the
 * other nodes: the peer links carry on byte for byte.
 */

/* Busy while a first attach waits for the owner's answer. */
int
cluster_handoff_busy(char *why, size_t len)
{
	struct hmap_entry	*e;
	struct fwd		*f;
	u_int			 i;

	if (!cluster_on)
		return (0);
	for (i = 0; i < fwds.nb; i++) {
		for (e = fwds.b[i]; e != NULL; e = e->next) {
			f = hmap_data(e, struct fwd, entry);
			if (f->initial && f->state == FWD_ATTACHING) {
				snprintf(why, len, "attach to console %s "
				    "waits for node %s", f->key,
				    f->node != NULL ? f->node : "?");
				return (1);
			}
		}
	}
	return (0);
}

static void
cluster_ho_bytes(struct evbuffer *evb, ProtobufCBinaryData *out,
    protobuf_c_boolean *has)
{
	*has = (evb != NULL);
	handoff_evbuffer_bytes(evb, out);
}

/* Milliseconds until a timer fires, or -1 if it is not armed. */
static int64_t
cluster_ho_left(struct event *ev)
{
	struct timeval	tv, now;
	int64_t		ms;

	if (ev == NULL || !evtimer_pending(ev, &tv))
		return (-1);
	gettimeofday(&now, NULL);
	ms = ((int64_t)tv.tv_sec - now.tv_sec) * 1000 +
	    ((int64_t)tv.tv_usec - now.tv_usec) / 1000;
	return (ms < 0 ? 0 : ms);
}

static Vspc__Handoff__Cluster__Fwd *
cluster_ho_fwd(struct fwd *f)
{
	Vspc__Handoff__Cluster__Fwd	*hf;

	hf = xmalloc(sizeof *hf);
	vspc__handoff__cluster__fwd__init(hf);
	hf->client = f->c->id;
	hf->channel = f->channel;
	hf->key = f->key;
	hf->node = f->node != NULL ? f->node : (char *)"";
	hf->state = f->state;
	hf->mode = f->mode;
	hf->initial = f->initial;
	hf->lost = f->lost;
	cluster_ho_bytes(f->pending, &hf->pending, &hf->has_pending);
	cluster_ho_bytes(f->seed, &hf->seed, &hf->has_seed);
	hf->deadline = f->deadline;
	hf->refused = f->refused;
	hf->req = (u_char)f->req;
	hf->req_lines = f->req_lines;
	hf->next_off = f->next_off;
	hf->stream = f->stream;
	hf->have_off = f->have_off;
	hf->unacked = f->unacked;
	hf->retry_ms = cluster_ho_left(f->retry);
	return (hf);
}

/* Write the cluster's channels as one HANDOFF_REC_CLUSTER record. */
void
cluster_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Cluster__ClusterState	 st =
	    VSPC__HANDOFF__CLUSTER__CLUSTER_STATE__INIT;
	Vspc__Handoff__Cluster__Rchan		*hr;
	Vspc__Handoff__Cluster__Moved		*hm;
	Vspc__Handoff__Cluster__PendAttach	*hp;
	struct hmap_entry			*e;
	struct fwd				*f;
	struct rchan				*rc;
	struct moved				*m;
	struct pend_attach			*pa;
	uint8_t					*buf;
	size_t					 len, i;

	if (!cluster_on)
		return;
	st.next_channel = cluster_next_channel;
	st.started = cluster_started;
	st.fwds = xcalloc(fwds.n + 1, sizeof *st.fwds);
	st.rchans = xcalloc(rchans.n + 1, sizeof *st.rchans);
	for (i = 0; i < fwds.nb; i++) {
		for (e = fwds.b[i]; e != NULL; e = e->next) {
			f = hmap_data(e, struct fwd, entry);
			if (f->c != NULL && st.n_fwds < fwds.n)
				st.fwds[st.n_fwds++] = cluster_ho_fwd(f);
		}
	}
	for (i = 0; i < rchans.nb; i++) {
		for (e = rchans.b[i]; e != NULL; e = e->next) {
			rc = hmap_data(e, struct rchan, entry);
			if (rc->c == NULL || st.n_rchans >= rchans.n)
				continue;
			hr = xmalloc(sizeof *hr);
			vspc__handoff__cluster__rchan__init(hr);
			hr->client = rc->c->id;
			hr->node = rc->node;
			hr->channel = rc->channel;
			hr->credit = rc->credit;
			st.rchans[st.n_rchans++] = hr;
		}
	}
	TAILQ_FOREACH(m, &moved_channels, entry)
		st.n_moved++;
	st.moved = xcalloc(st.n_moved + 1, sizeof *st.moved);
	i = 0;
	TAILQ_FOREACH(m, &moved_channels, entry) {
		hm = xmalloc(sizeof *hm);
		vspc__handoff__cluster__moved__init(hm);
		hm->idkey = m->idkey;
		hm->key = m->key;
		hm->owner = m->owner;
		hm->until = m->until;
		st.moved[i++] = hm;
	}
	TAILQ_FOREACH(pa, &pend_attaches, entry)
		st.n_pending++;
	st.pending = xcalloc(st.n_pending + 1, sizeof *st.pending);
	i = 0;
	TAILQ_FOREACH(pa, &pend_attaches, entry) {
		hp = xmalloc(sizeof *hp);
		vspc__handoff__cluster__pend_attach__init(hp);
		hp->node = pa->node;
		hp->key = pa->key;
		hp->packed.data = pa->packed;
		hp->packed.len = pa->len;
		st.pending[i++] = hp;
	}

	len = vspc__handoff__cluster__cluster_state__get_packed_size(&st);
	buf = xmalloc(len + 1);
	vspc__handoff__cluster__cluster_state__pack(&st, buf);
	handoff_add(h, HANDOFF_REC_CLUSTER, buf, len);
	log_debug("%s: %zu forwarded, %zu served, %zu moved, %zu waiting, "
	    "%zu bytes", __func__, st.n_fwds, st.n_rchans, st.n_moved,
	    st.n_pending, len);
	free(buf);

	for (i = 0; i < st.n_fwds; i++) {
		free(st.fwds[i]->pending.data);
		free(st.fwds[i]->seed.data);
		free(st.fwds[i]);
	}
	for (i = 0; i < st.n_rchans; i++)
		free(st.rchans[i]);
	for (i = 0; i < st.n_moved; i++)
		free(st.moved[i]);
	for (i = 0; i < st.n_pending; i++)
		free(st.pending[i]);
	free(st.fwds);
	free(st.rchans);
	free(st.moved);
	free(st.pending);
}

static int
cluster_ho_fwd_restore(const Vspc__Handoff__Cluster__Fwd *hf, char **err)
{
	struct client	*c;
	struct fwd	*f;

	if ((c = client_find(hf->client)) == NULL) {
		log_warnx("%s: channel %u: client %u was not handed over",
		    __func__, hf->channel, hf->client);
		return (0);
	}
	if (c->kind == CLIENT_REMOTE || c->cluster != NULL) {
		xasprintf(err, "cluster: channel %u: client %u is not a "
		    "forwarded person", hf->channel, hf->client);
		return (-1);
	}
	if (hf->state >= FWD_STATE_MAX || hf->mode >= ATTACH_MAX) {
		xasprintf(err, "cluster: channel %u: bad state", hf->channel);
		return (-1);
	}
	f = xcalloc(1, sizeof *f);
	f->c = c;
	f->channel = hf->channel;
	snprintf(f->idkey, sizeof f->idkey, "%u", f->channel);
	f->key = xstrdup(hf->key);
	if (*hf->node != '\0')
		f->node = xstrdup(hf->node);
	f->state = hf->state;
	f->mode = hf->mode;
	f->initial = hf->initial;
	f->lost = hf->lost;
	if (hf->has_pending) {
		f->pending = evbuffer_new();
		evbuffer_add(f->pending, hf->pending.data, hf->pending.len);
	}
	if (hf->has_seed) {
		f->seed = evbuffer_new();
		evbuffer_add(f->seed, hf->seed.data, hf->seed.len);
	}
	f->deadline = hf->deadline;
	f->refused = hf->refused;
	f->req = (char)hf->req;
	f->req_lines = hf->req_lines;
	f->next_off = hf->next_off;
	f->stream = hf->stream;
	f->have_off = hf->have_off;
	f->unacked = hf->unacked;
	if (hf->retry_ms >= 0) {
		f->retry = evtimer_new(server_base, cluster_fwd_retry_cb, f);
		f->ho_retry_ms = hf->retry_ms + 1;
	}
	c->cluster = f;
	if (c->console == NULL)
		c->console = console_find(f->key);
	hmap_insert(&fwds, &f->entry, f->idkey);
	return (0);
}

static int
cluster_ho_rchan_restore(const Vspc__Handoff__Cluster__Rchan *hr,
    char **err)
{
	struct client	*c;
	struct rchan	*rc;

	if ((c = client_find(hr->client)) == NULL) {
		log_warnx("%s: channel %s/%u: client %u was not handed over",
		    __func__, hr->node, hr->channel, hr->client);
		return (0);
	}
	if (c->kind != CLIENT_REMOTE || c->cluster != NULL) {
		xasprintf(err, "cluster: channel %s/%u: client %u is not a "
		    "remote client", hr->node, hr->channel, hr->client);
		return (-1);
	}
	rc = xcalloc(1, sizeof *rc);
	rc->node = xstrdup(hr->node);
	rc->channel = hr->channel;
	xasprintf(&rc->idkey, "%s/%u", rc->node, rc->channel);
	rc->c = c;
	rc->credit = hr->credit;
	c->cluster = rc;
	c->proto = &cluster_remote_proto;
	hmap_insert(&rchans, &rc->entry, rc->idkey);
	return (0);
}

/* Tie the handed-over channels to their clients and consoles. */
int
cluster_handoff_restore(struct handoff *h, const uint8_t *buf, size_t len,
    char **err)
{
	Vspc__Handoff__Cluster__ClusterState	*st;
	struct moved				*m;
	struct pend_attach			*pa;
	size_t					 i;
	int					 rv = -1;

	if ((st = vspc__handoff__cluster__cluster_state__unpack(NULL, len,
	    buf)) == NULL) {
		xasprintf(err, "cluster: undecodable hand-over record");
		return (-1);
	}
	if (fwds.b == NULL)
		hmap_init(&fwds);
	if (rchans.b == NULL)
		hmap_init(&rchans);
	cluster_handed = 1;
	if (st->next_channel > cluster_next_channel)
		cluster_next_channel = st->next_channel;
	if (st->started != 0)
		cluster_started = st->started;
	for (i = 0; i < st->n_fwds; i++) {
		if (cluster_ho_fwd_restore(st->fwds[i], err) == -1)
			goto out;
	}
	for (i = 0; i < st->n_rchans; i++) {
		if (cluster_ho_rchan_restore(st->rchans[i], err) == -1)
			goto out;
	}
	for (i = 0; i < st->n_moved; i++) {
		m = xcalloc(1, sizeof *m);
		m->idkey = xstrdup(st->moved[i]->idkey);
		m->key = xstrdup(st->moved[i]->key);
		m->owner = xstrdup(st->moved[i]->owner);
		m->until = st->moved[i]->until;
		TAILQ_INSERT_TAIL(&moved_channels, m, entry);
	}
	for (i = 0; i < st->n_pending; i++) {
		pa = xcalloc(1, sizeof *pa);
		pa->node = xstrdup(st->pending[i]->node);
		pa->key = xstrdup(st->pending[i]->key);
		pa->len = st->pending[i]->packed.len;
		pa->packed = xmalloc(pa->len + 1);
		memcpy(pa->packed, st->pending[i]->packed.data, pa->len);
		TAILQ_INSERT_TAIL(&pend_attaches, pa, entry);
	}
	log_debug("%s: %zu forwarded, %zu served, %zu moved, %zu waiting",
	    __func__, st->n_fwds, st->n_rchans, st->n_moved, st->n_pending);
	rv = 0;
out:
	vspc__handoff__cluster__cluster_state__free_unpacked(st, NULL);
	return (rv);
}

/* After the commit: heartbeat, retries and the timers of moves. */
void
cluster_handoff_resume(void)
{
	struct hmap_entry	*e;
	struct fwd		*f;
	struct rchan		*rc;
	struct console		*con;
	struct timeval		 tv;
	u_int			 i;

	if (!cluster_on)
		return;
	tv.tv_sec = server_conf->cluster_heartbeat != 0 ?
	    server_conf->cluster_heartbeat : 1;
	tv.tv_usec = 0;
	if (cluster_heartbeat_ev != NULL &&
	    !event_pending(cluster_heartbeat_ev, EV_TIMEOUT, NULL)) {
		event_add(cluster_heartbeat_ev, &tv);
		cluster_heartbeat(-1, 0, NULL);
	}
	for (i = 0; i < fwds.nb; i++) {
		for (e = fwds.b[i]; e != NULL; e = e->next) {
			f = hmap_data(e, struct fwd, entry);
			if (f->ho_retry_ms == 0 || f->retry == NULL)
				continue;
			tv.tv_sec = (f->ho_retry_ms - 1) / 1000;
			tv.tv_usec = (f->ho_retry_ms - 1) % 1000 * 1000;
			f->ho_retry_ms = 0;
			evtimer_add(f->retry, &tv);
		}
	}
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if ((con->flags & CONSOLE_HANDOVER) &&
		    (con->handover_timer == NULL ||
		    !evtimer_pending(con->handover_timer, NULL))) {
			if (con->handover_timer == NULL)
				con->handover_timer = evtimer_new(server_base,
				    cluster_handover_timeout, con);
			tv.tv_sec = CLUSTER_HANDOVER_WAIT;
			tv.tv_usec = 0;
			evtimer_add(con->handover_timer, &tv);
		}
		if ((con->flags & CONSOLE_REMOTE) &&
		    con->vmotion.state == VMOTION_PEERED &&
		    con->vmotion.dst != NULL && (con->vmotion.timer == NULL ||
		    !evtimer_pending(con->vmotion.timer, NULL))) {
			if (con->vmotion.timer == NULL)
				con->vmotion.timer = evtimer_new(server_base,
				    cluster_vmotion_timer, con);
			tv.tv_sec = server_conf->vm_token_ttl;
			tv.tv_usec = 0;
			evtimer_add(con->vmotion.timer, &tv);
		}
	}
	/* Output that came while frozen, within the credit they had. */
	for (i = 0; i < rchans.nb; i++) {
		for (e = rchans.b[i]; e != NULL; e = e->next) {
			rc = hmap_data(e, struct rchan, entry);
			if (rc->c != NULL)
				cluster_remote_flush(rc->c);
		}
	}
}

/*
 * Attach a person here to a console of another node, resuming at offset
 * off of stream (the owner says where it really starts: AttachReply).
 */
enum attach_result
cluster_attach_at(struct console *con, struct client *c, enum attach_mode mode,
    uint64_t stream, uint64_t off)
{
	struct fwd	*f;

	if (c->proto->attached == NULL)
		return (ATTACH_REFUSED_REMOTE);
	if (c->console != NULL)
		console_detach(c->console, c, NULL);
	if (c->cluster != NULL)
		cluster_fwd_free(c);
	f = xcalloc(1, sizeof *f);
	f->key = xstrdup(con->key);
	f->mode = (c->flags & CLIENT_READONLY) ? ATTACH_RO : mode;
	f->initial = 1;
	f->stream = stream;
	f->next_off = off;
	f->have_off = 1;
	cluster_fwd_start(c, f);
	if (c->cluster == f && f->refused) {
		cluster_fwd_free(c);
		c->console = NULL;
	}
	return (ATTACH_PENDING);
}

/*
 * Where a forwarded person's stream stands: the stream and the offset of
 * the next byte expected.  -1 if not known (or not forwarded).
 */
int
cluster_fwd_position(const struct client *c, uint64_t *stream,
    uint64_t *off)
{
	const struct fwd	*f = c->cluster;

	if (f == NULL || c->kind == CLIENT_REMOTE || !f->have_off)
		return (-1);
	*stream = f->stream;
	*off = f->next_off;
	return (0);
}
