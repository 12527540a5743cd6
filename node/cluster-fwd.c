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
 * People here attached to a console of another node ("forwarded"
 * clients, struct fwd).  Their node opens a channel to the owner over the
 * peer link: Attach, then AttachReply, Data, Credit, Mode and Detach on
 * that channel.  The person's node grants the owner credit as the
 * person's socket drains, so one slow person never holds up a link.
 * When the console moves, the channel follows it to the new owner (or
 * becomes a local attach), resuming at the byte the person had reached.
 *
 * Invariants: a channel's frames travel on one link, in order; a struct
 * fwd exists only for a client whose console is remote.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "store.h"
#include "proto/vspc.pb-c.h"
#include "cluster-int.h"

struct hmap		 cluster_fwds;		/* struct fwd, by channel. */
u_int			 cluster_next_channel;

/* The forwarded person on a channel of this node. */
struct fwd *
cluster_fwd_find(u_int channel)
{
	struct hmap_entry	*e;
	char			 k[16];

	snprintf(k, sizeof k, "%u", channel);
	if ((e = hmap_find(&cluster_fwds, k)) == NULL)
		return (NULL);
	return (hmap_data(e, struct fwd, entry));
}

/* Timer: try the attach of a waiting person again. */
void
cluster_fwd_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	struct fwd	*f = arg;

	if (f->state == FWD_WAITING)
		cluster_fwd_start(f->c, f);
}

/* Wait for the owner (telling the person why), then try again. */
void
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
void
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
		hmap_insert(&cluster_fwds, &f->entry, f->idkey);
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
		hmap_remove(&cluster_fwds, &f->entry);
		f->channel = ++cluster_next_channel;
		snprintf(f->idkey, sizeof f->idkey, "%u", f->channel);
		hmap_insert(&cluster_fwds, &f->entry, f->idkey);
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
void
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
		log_debug("console %s: client %u localized: have_off %d "
		    "same %d handover %d lost %d off %llu -> %llu (history "
		    "%llu-%llu)", con->key, c->id, have_off, same,
		    (con->flags & CONSOLE_HANDOVER) != 0, lost,
		    (unsigned long long)off, (unsigned long long)c->off,
		    (unsigned long long)ring_start(&con->history),
		    (unsigned long long)con->history.end);
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
void
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
void
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

/* Forget a forwarded person's channel. */
void
cluster_fwd_free(struct client *c)
{
	struct fwd	*f = c->cluster;

	if (f == NULL)
		return;
	hmap_remove(&cluster_fwds, &f->entry);
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
 * Start the channel of a person attaching here to a console of another
 * node, resuming at offset off of stream if have_off.
 */
static enum attach_result
cluster_fwd_attach(struct console *con, struct client *c,
    enum attach_mode mode, int have_off, uint64_t stream, uint64_t off)
{
	struct fwd	*f;

	if (c->cluster != NULL)
		cluster_fwd_free(c);
	f = xcalloc(1, sizeof *f);
	f->key = xstrdup(con->key);
	f->mode = (c->flags & CLIENT_READONLY) ? ATTACH_RO : mode;
	f->initial = 1;
	f->stream = stream;
	f->next_off = off;
	f->have_off = have_off;
	cluster_fwd_start(c, f);
	if (c->cluster == f && f->refused) {
		/* Refused at once; attached() was called. */
		cluster_fwd_free(c);
		c->console = NULL;
	}
	return (ATTACH_PENDING);
}

/*
 * Attach a person here to a console owned by another node.  The answer
 * comes later, through the client's proto->attached.
 */
enum attach_result
cluster_attach(struct console *con, struct client *c, enum attach_mode mode)
{
	if (c->proto->attached == NULL)
		return (ATTACH_REFUSED_REMOTE);
	return (cluster_fwd_attach(con, c, mode, 0, 0, 0));
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
void
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
			if (!f->lost)
				log_info("console %s: node %s does not have "
				    "it; waiting for its owner", f->key,
				    f->node);
			/* Once, not at every retry; told when it is back. */
			f->lost = 1;
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
void
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
		if (f->have_off && d->offset + len <= f->next_off) {
			log_debug("fwd %u: dropped data %llu+%zu (next %llu)",
			    f->channel, (unsigned long long)d->offset, len,
			    (unsigned long long)f->next_off);
			return;
		}
		if (f->have_off && d->offset > f->next_off)
			log_debug("fwd %u: data gap %llu+%zu (next %llu)",
			    f->channel, (unsigned long long)d->offset, len,
			    (unsigned long long)f->next_off);
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

/* Note the mode the owner gives a forwarded person. */
void
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

/* The owner answered an escape-menu action (Mode). */
void
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
 * Attach a person here to a console of another node, resuming at offset
 * off of stream (the owner says where it really starts: AttachReply).
 */
enum attach_result
cluster_attach_at(struct console *con, struct client *c, enum attach_mode mode,
    uint64_t stream, uint64_t off)
{
	if (c->proto->attached == NULL)
		return (ATTACH_REFUSED_REMOTE);
	if (c->console != NULL)
		console_detach(c->console, c, NULL);
	return (cluster_fwd_attach(con, c, mode, 1, stream, off));
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
