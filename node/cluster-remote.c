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
 * The owner side of a forwarded attach: a person on another node served
 * here as a client of kind CLIENT_REMOTE (struct rchan).  It reads the
 * console's history at its own offset and sends Data frames within the
 * credit the person's node granted.  Attach rules are applied by the
 * owner alone, so they hold cluster-wide.  Also here: Attaches that wait
 * for a console's history during a move, and the input of channels whose
 * console moved away, passed on to the new owner for a while.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "store.h"
#include "proto/vspc.pb-c.h"
#include "cluster-int.h"

struct hmap		 cluster_rchans;	/* By "node/channel". */
struct moveds		 cluster_moved_channels =
    TAILQ_HEAD_INITIALIZER(cluster_moved_channels);
struct pend_attaches	 cluster_pend_attaches =
    TAILQ_HEAD_INITIALIZER(cluster_pend_attaches);

static void	cluster_remote_free(struct client *);
static void	cluster_remote_notice(struct client *, const char *);
static void	cluster_remote_input(struct client *, const u_char *, size_t);

const struct client_proto cluster_remote_proto = {
	.name = "remote",
	.input = cluster_remote_input,
	.notice = cluster_remote_notice,
	.free = cluster_remote_free,
	.write = cluster_remote_write,
	.flush = cluster_remote_flush
};

/* The channel a node opened to serve one of its people here. */
struct rchan *
cluster_rchan_find(const char *node, u_int channel)
{
	struct hmap_entry	*e;
	char			*k;

	xasprintf(&k, "%s/%u", node, channel);
	e = hmap_find(&cluster_rchans, k);
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
void
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
		TAILQ_INSERT_TAIL(&cluster_pend_attaches, pa, entry);
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
	hmap_insert(&cluster_rchans, &rc->entry, rc->idkey);

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
	log_debug("console %s: remote attach from %s/%u: resume %d same %d "
	    "resume_offset %llu off %llu (history %llu-%llu)", con->key, node,
	    a->channel, a->resume, a->stream == con->stream,
	    (unsigned long long)a->resume_offset, (unsigned long long)c->off,
	    (unsigned long long)ring_start(&con->history),
	    (unsigned long long)con->history.end);
	cluster_attach_answer(node, a->channel, r, NULL, con, c->off,
	    con->stream, replay, replaylen);
	free(replay);
	c->flags |= CLIENT_STREAM;
	client_flush(c);
}

/* The console's history arrived: answer the Attaches that waited. */
void
cluster_pend_run(const char *key)
{
	struct pend_attach	*pa, *pa1;
	Vspc__Attach		*a;

	TAILQ_FOREACH_SAFE(pa, &cluster_pend_attaches, entry, pa1) {
		if (key != NULL && strcmp(pa->key, key) != 0)
			continue;
		TAILQ_REMOVE(&cluster_pend_attaches, pa, entry);
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
void
cluster_moved_add(const char *idkey, const char *key, const char *owner)
{
	struct moved	*m;

	m = xcalloc(1, sizeof *m);
	m->idkey = xstrdup(idkey);
	m->key = xstrdup(key);
	m->owner = xstrdup(owner);
	m->until = time(NULL) + CLUSTER_MOVED_KEEP;
	TAILQ_INSERT_TAIL(&cluster_moved_channels, m, entry);
}

/* Forget where a moved channel's input goes. */
void
cluster_moved_free(struct moved *m)
{
	TAILQ_REMOVE(&cluster_moved_channels, m, entry);
	free(m->idkey);
	free(m->key);
	free(m->owner);
	free(m);
}

/* Input for a channel that is gone: pass it on if its console moved. */
void
cluster_moved_input(const char *node, u_int channel, const u_char *buf,
    size_t len)
{
	struct moved		*m, *m1;
	Vspc__Envelope		 env = VSPC__ENVELOPE__INIT;
	Vspc__LateInput		 li = VSPC__LATE_INPUT__INIT;
	char			*k;
	time_t			 now = time(NULL);

	xasprintf(&k, "%s/%u", node, channel);
	TAILQ_FOREACH_SAFE(m, &cluster_moved_channels, entry, m1) {
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
void
cluster_rchan_drop(struct rchan *rc)
{
	hmap_remove(&cluster_rchans, &rc->entry);
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
	cluster_rchan_drop(rc);
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

/* Escape-menu action of a person on another node (Mode). */
void
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
