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
 * Consoles: one per VM serial port, keyed "UUID" or "UUID.LABEL".
 *
 * A console owns the history ring that every attached client reads at its
 * own offset, the log file, and the attach rules (one writer and spies,
 * force, exclusive, read-only, and vSPC.py's locks mapped onto them).
 * It outlives its VM connections: it stays while people are attached and
 * for [vm] expire after the last of them and the VM have gone.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "vspcd.h"
#include "store.h"

struct consoles		 all_consoles = TAILQ_HEAD_INITIALIZER(all_consoles);
u_int			 nconsoles;
static struct hmap	 console_map;
static int		 console_map_ready;

/* A new stream identity (never 0). */
static uint64_t
console_new_stream(void)
{
	uint64_t	v = 0;

	while (v == 0) {
		if (RAND_bytes((u_char *)&v, sizeof v) != 1)
			v = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
	}
	return (v);
}

static char *
console_make_key(const u_char *uuid, const char *label)
{
	char	 text[UUID_STRLEN + 1], *key;

	uuid_format(uuid, text);
	if (label == NULL)
		return (xstrdup(text));
	xasprintf(&key, "%s.%s", text, label);
	return (key);
}

/* Find a console by its exact key. */
struct console *
console_find(const char *key)
{
	struct hmap_entry	*e;

	if (!console_map_ready)
		return (NULL);
	if ((e = hmap_find(&console_map, key)) == NULL)
		return (NULL);
	return (hmap_data(e, struct console, entry));
}

static void
console_open_log(struct console *con)
{
	struct config	*conf = server_conf;
	char		 uuid[UUID_STRLEN + 1], *file, *path;

	if (con->log != NULL || (con->flags & CONSOLE_REMOTE) ||
	    conf->log_dir == NULL ||
	    *conf->log_dir == '\0' || con->name == NULL)
		return;
	uuid_format(con->uuid, uuid);
	file = logfile_expand(conf->log_name, con->name, con->key, uuid,
	    con->label != NULL ? con->label : "");
	xasprintf(&path, "%s/%s", conf->log_dir, file);
	con->log = logfile_new(path);
	free(path);
	free(file);
}

/* Find or create the console for a UUID and optional label. */
struct console *
console_get(const u_char *uuid, const char *label)
{
	struct console	*con;
	char		*key;

	if (!console_map_ready) {
		hmap_init(&console_map);
		console_map_ready = 1;
	}
	key = console_make_key(uuid, label);
	if ((con = console_find(key)) != NULL) {
		free(key);
		return (con);
	}
	con = xcalloc(1, sizeof *con);
	con->key = key;
	memcpy(con->uuid, uuid, UUID_LEN);
	if (label != NULL)
		con->label = xstrdup(label);
	ring_init(&con->history, server_conf->console_history);
	con->stream = console_new_stream();
	TAILQ_INIT(&con->clients);
	con->created = server_now;
	hmap_insert(&console_map, &con->entry, con->key);
	TAILQ_INSERT_TAIL(&all_consoles, con, gentry);
	nconsoles++;
	log_debug("console %s: created", con->key);
	return (con);
}

static void
console_free(struct console *con)
{
	log_debug("console %s: freed", con->key);
	hmap_remove(&console_map, &con->entry);
	TAILQ_REMOVE(&all_consoles, con, gentry);
	nconsoles--;
	if (con->vmotion.timer != NULL)
		event_free(con->vmotion.timer);
	if (con->held != NULL)
		evbuffer_free(con->held);
	if (con->log != NULL)
		logfile_free(con->log);
	if (con->handover_timer != NULL)
		event_free(con->handover_timer);
	ring_free(&con->history);
	free(con->vmotion.node);
	free(con->owner);
	free(con->rstate);
	free(con->key);
	free(con->label);
	free(con->name);
	free(con->uri);
	free(con);
}

/* Find or create a console from its key ("UUID" or "UUID.LABEL"). */
struct console *
console_get_key(const char *key)
{
	u_char		 uuid[UUID_LEN];
	struct console	*con;
	const char	*dot;
	char		*label = NULL;

	if ((con = console_find(key)) != NULL)
		return (con);
	dot = strchr(key, '.');
	if (uuid_parse(key, dot != NULL ? (size_t)(dot - key) : strlen(key),
	    uuid) == -1)
		return (NULL);
	if (dot != NULL)
		label = xstrdup(dot + 1);
	con = console_get(uuid, label);
	free(label);
	if (strcmp(con->key, key) != 0)
		return (NULL);
	return (con);
}

/*
 * The console is owned by another node now: keep only the record (the
 * caller deals with the people attached here).
 */
void
console_make_remote(struct console *con, const char *owner, uint64_t epoch)
{
	con->flags |= CONSOLE_REMOTE;
	con->flags &= ~CONSOLE_HANDOVER;
	free(con->owner);
	con->owner = xstrdup(owner);
	con->epoch = epoch;
	con->vm = NULL;
	con->connected = 0;
	if (con->held != NULL) {
		evbuffer_free(con->held);
		con->held = NULL;
	}
	if (con->log != NULL) {
		logfile_free(con->log);
		con->log = NULL;
	}
	ring_free(&con->history);
	ring_init(&con->history, server_conf->console_history);
	free(con->rstate);
	con->rstate = xstrdup("connected");
}

/* The console is owned by this node now. */
void
console_make_local(struct console *con)
{
	con->flags &= ~CONSOLE_REMOTE;
	free(con->owner);
	con->owner = NULL;
	free(con->rstate);
	con->rstate = NULL;
	ring_free(&con->history);
	ring_init(&con->history, server_conf->console_history);
	con->stream = console_new_stream();
	console_open_log(con);
}

/* Free every console (at exit). */
void
console_free_all(void)
{
	struct console	*con;

	while ((con = TAILQ_FIRST(&all_consoles)) != NULL)
		console_free(con);
	if (console_map_ready)
		hmap_free(&console_map);
	console_map_ready = 0;
}

/* Set the display name; keeps only printable bytes of a sane length. */
void
console_set_name(struct console *con, const char *name, size_t len)
{
	char	*n;
	size_t	 i;

	if (len > 255)
		len = 255;
	n = xstrndup(name, len);
	for (i = 0; n[i] != '\0'; i++) {
		if ((u_char)n[i] < 0x20 || n[i] == 0x7f)
			n[i] = '_';
	}
	if (con->name != NULL && strcmp(con->name, n) == 0) {
		free(n);
		return;
	}
	if (con->name != NULL && !(con->flags & CONSOLE_REMOTE))
		log_info("console %s: renamed from \"%s\" to \"%s\"", con->key,
		    con->name, n);
	free(con->name);
	con->name = n;
	if (con->flags & CONSOLE_REMOTE)
		return;
	if (con->log == NULL)
		console_open_log(con);
	core_hooks->console_changed(con);
}

/* Describe the console's state in one word. */
const char *
console_state(const struct console *con)
{
	if (con->flags & CONSOLE_REMOTE)
		return (con->rstate != NULL ? con->rstate : "remote");
	if (con->vmotion.state != VMOTION_NONE)
		return ("vmotion");
	if (con->vm != NULL)
		return ("connected");
	return ("disconnected");
}

/* A connection became the console's current one. */
void
console_set_vm(struct console *con, struct vmconn *vm)
{
	int	was;

	/*
	 * A vMotion whose connections vanished (the host went away after
	 * GOAHEAD) ends when the VM connects afresh: else every vMotion of
	 * the new connection would get NOTNOW until the old one timed out.
	 */
	if (con->vmotion.state != VMOTION_NONE && vm != con->vmotion.dst &&
	    vm != con->vmotion.src)
		vmotion_cancel(con, "the VM connected afresh");
	was = (con->vm != NULL);
	con->vm = vm;
	con->left = 0;
	if (!was) {
		con->connected = server_now;
		console_notice(con, NULL, "VM connected");
		console_log_activity(con, "VM connected from %s", vm->addr);
		core_hooks->console_changed(con);
	}
	/*
	 * Writers paused on the queue of the connection this one replaces
	 * would wait for a drain that never comes: their input goes here.
	 */
	console_input_drained(con);
}

/* The console's VM connection went away. */
void
console_vm_gone(struct console *con, struct vmconn *vm)
{
	if (con->vmotion.state != VMOTION_NONE) {
		vmotion_conn_lost(con, vm);
		return;
	}
	if (con->vm != vm)
		return;
	con->vm = NULL;
	con->connected = 0;
	if (con->nclients == 0)
		con->left = server_now;
	console_notice(con, NULL, "VM disconnected");
	console_log_activity(con, "VM disconnected");
	core_hooks->console_changed(con);
	/* Writers paused on its queue are not left waiting for it. */
	console_input_drained(con);
}

/* Output from the VM: into the history, the log, and to every reader. */
void
console_output(struct console *con, const u_char *buf, size_t len)
{
	struct client	*c, *c1;

	if (len == 0)
		return;
	ring_append(&con->history, buf, len);
	if (con->log != NULL)
		logfile_write(con->log, buf, len);
	TAILQ_FOREACH_SAFE(c, &con->clients, centry, c1) {
		if (c->flags & CLIENT_STREAM)
			client_flush(c);
	}
}

/* Bytes people typed are held while a vMotion is in flight. */
static int
console_holding(const struct console *con)
{
	return (con->vmotion.state != VMOTION_NONE);
}

/*
 * Input from a writer toward the VM.  Returns nothing: the caller checks
 * console_input_room() to pause its reading.
 */
void
console_input(struct console *con, const u_char *buf, size_t len)
{
	if (len == 0)
		return;
	/*
	 * Local writers pause at [vm] input_buffer; a writer that cannot be
	 * paused (another node's channel, late input) is stopped here, at
	 * twice that, and what it sends beyond is counted and dropped.
	 */
	if (console_input_room(con) == 0 && (console_holding(con) ?
	    (con->held != NULL ? evbuffer_get_length(con->held) : 0) :
	    (con->vm != NULL ? vmconn_pending(con->vm) : 0)) + len >
	    2 * server_conf->vm_input_max) {
		con->input_dropped += len;
		server_stats.input_dropped += len;
		if (server_now - con->input_notice >= 10) {
			con->input_notice = server_now;
			log_warnx("console %s: input toward the VM over twice "
			    "[vm] input_buffer; %zu bytes dropped", con->key,
			    len);
			console_notice(con, NULL, "VM not reading; input "
			    "discarded");
		}
		return;
	}
	if (console_holding(con)) {
		if (con->held == NULL)
			con->held = evbuffer_new();
		evbuffer_add(con->held, buf, len);
		return;
	}
	if (con->vm == NULL) {
		con->input_dropped += len;
		server_stats.input_dropped += len;
		if (server_now - con->input_notice >= 10) {
			con->input_notice = server_now;
			console_notice(con, NULL,
			    "VM not connected; input discarded");
		}
		return;
	}
	vmconn_write(con->vm, buf, len);
}

/* How much more input the console takes before writers must pause. */
size_t
console_input_room(const struct console *con)
{
	size_t	 used = 0, max = server_conf->vm_input_max;

	if (console_holding(con)) {
		if (con->held != NULL)
			used = evbuffer_get_length(con->held);
	} else if (con->vm != NULL)
		used = vmconn_pending(con->vm);
	return (used >= max ? 0 : max - used);
}

/* The VM took our queued input: writers paused for room may go on. */
void
console_input_drained(struct console *con)
{
	struct client	*c;

	if (console_input_room(con) == 0)
		return;
	TAILQ_FOREACH(c, &con->clients, centry) {
		if (c->flags & CLIENT_READ_OFF)
			client_set_read(c, 1);
	}
}

/* Hand input held during a vMotion to the connection now current. */
void
console_release_held(struct console *con)
{
	size_t	len;

	if (con->held == NULL || (len = evbuffer_get_length(con->held)) == 0)
		return;
	if (con->vm == NULL) {
		log_warnx("console %s: %zu bytes of input discarded: "
		    "VM not connected after vMotion", con->key, len);
		con->input_dropped += len;
		server_stats.input_dropped += len;
		evbuffer_drain(con->held, len);
	} else {
		vmconn_write(con->vm, evbuffer_pullup(con->held, -1), len);
		evbuffer_drain(con->held, len);
	}
	evbuffer_free(con->held);
	con->held = NULL;
	console_input_drained(con);
}

/* Send a serial break to the VM. */
void
console_send_break(struct console *con)
{
	if (con->vm != NULL)
		vmconn_send_break(con->vm);
	console_log_activity(con, "break sent");
}

static struct client *
console_writer(struct console *con, struct client *except)
{
	struct client	*c;

	TAILQ_FOREACH(c, &con->clients, centry) {
		if (c != except && (c->flags & CLIENT_WRITE))
			return (c);
	}
	return (NULL);
}

static const char *
client_who(const struct client *c)
{
	static char	buf[160];

	snprintf(buf, sizeof buf, "%s@%s", c->user != NULL ? c->user :
	    "-", c->addr);
	return (buf);
}

static void
console_release_lock(struct console *con, struct client *c)
{
	if (con->holder != c)
		return;
	con->holder = NULL;
	con->flags &= ~(CONSOLE_EXCL|CONSOLE_WRITELOCK);
	c->flags &= ~CLIENT_HOLDER;
}

/* Make the first spy that wants to write the writer, if none writes. */
static void
console_promote(struct console *con)
{
	struct client	*c;

	if (console_writer(con, NULL) != NULL || con->holder != NULL)
		return;
	TAILQ_FOREACH(c, &con->clients, centry) {
		if ((c->flags & CLIENT_WANTWRITE) &&
		    !(c->flags & (CLIENT_READONLY|CLIENT_DEAD))) {
			c->flags |= CLIENT_WRITE;
			c->flags &= ~CLIENT_WANTWRITE;
			console_notice(con, c, "%s is now the writer",
			    client_who(c));
			if (c->proto->notice != NULL)
				c->proto->notice(c, "you are now the writer");
			console_log_activity(con, "%s promoted to writer",
			    client_who(c));
			return;
		}
	}
}

/* Take the writer's role from everyone else ("force"). */
static void
console_bump(struct console *con, struct client *c)
{
	struct client	*o;
	char		 who[160];

	snprintf(who, sizeof who, "%s", client_who(c));
	TAILQ_FOREACH(o, &con->clients, centry) {
		if (o == c || !(o->flags & CLIENT_WRITE))
			continue;
		o->flags &= ~CLIENT_WRITE;
		o->flags |= CLIENT_WANTWRITE;
		console_release_lock(con, o);
		if (o->proto->notice != NULL) {
			char	*msg;

			xasprintf(&msg, "forced to spy mode by %s", who);
			o->proto->notice(o, msg);
			free(msg);
		}
		console_log_activity(con, "%s bumped %s", who, client_who(o));
		log_info("console %s: %s bumped %s", con->key, who,
		    client_who(o));
	}
	c->flags |= CLIENT_WRITE;
	c->flags &= ~CLIENT_WANTWRITE;
}

/* Describe an attach result. */
const char *
attach_result_string(enum attach_result r)
{
	switch (r) {
	case ATTACHED_WRITER:
		return ("attached");
	case ATTACHED_SPY:
		return ("spy");
	case ATTACHED_RO:
		return ("read-only");
	case ATTACH_REFUSED_EXCL:
		return ("console is held exclusively by someone else");
	case ATTACH_REFUSED_LOCK:
		return ("someone else holds a write lock on the console");
	case ATTACH_REFUSED_BUSY:
		return ("others are attached; exclusive access refused");
	case ATTACH_REFUSED_FULL:
		return ("too many people attached to this console");
	case ATTACH_PENDING:
		return ("waiting for the console's node");
	case ATTACH_REFUSED_REMOTE:
		return ("the console's node cannot be reached");
	default:
		return ("unknown");
	}
}

/* Decide the mode a request gets; the client's flags are set. */
static enum attach_result
console_grant(struct console *con, struct client *c, enum attach_mode mode)
{
	struct client	*w;

	if (con->holder != NULL && con->holder != c &&
	    (con->flags & CONSOLE_EXCL))
		return (ATTACH_REFUSED_EXCL);
	if (c->flags & CLIENT_READONLY)
		mode = ATTACH_RO;

	c->flags &= ~(CLIENT_WRITE|CLIENT_WANTWRITE);
	switch (mode) {
	case ATTACH_DEFAULT:
		if (console_writer(con, c) == NULL && (con->holder == NULL ||
		    con->holder == c)) {
			c->flags |= CLIENT_WRITE;
			return (ATTACHED_WRITER);
		}
		c->flags |= CLIENT_WANTWRITE;
		return (ATTACHED_SPY);
	case ATTACH_SPY:
		return (ATTACHED_SPY);
	case ATTACH_RO:
		c->flags |= CLIENT_READONLY;
		return (ATTACHED_RO);
	case ATTACH_FORCE:
		console_bump(con, c);
		return (ATTACHED_WRITER);
	case ATTACH_EXCLUSIVE:
		TAILQ_FOREACH(w, &con->clients, centry) {
			if (w != c)
				return (ATTACH_REFUSED_BUSY);
		}
		con->holder = c;
		con->flags |= CONSOLE_EXCL;
		c->flags |= CLIENT_WRITE|CLIENT_HOLDER;
		return (ATTACHED_WRITER);
	case ATTACH_WRITELOCK:
		if ((con->holder != NULL && con->holder != c) ||
		    console_writer(con, c) != NULL)
			return (ATTACH_REFUSED_LOCK);
		con->holder = c;
		con->flags |= CONSOLE_WRITELOCK;
		c->flags |= CLIENT_WRITE|CLIENT_HOLDER;
		return (ATTACHED_WRITER);
	case ATTACH_SHARED:
		if (con->holder != NULL && con->holder != c)
			return (ATTACH_REFUSED_LOCK);
		c->flags |= CLIENT_WRITE;
		return (ATTACHED_WRITER);
	case ATTACH_SHARED_OR_RO:
		if (con->holder == NULL || con->holder == c) {
			c->flags |= CLIENT_WRITE;
			return (ATTACHED_WRITER);
		}
		c->flags |= CLIENT_READONLY;
		return (ATTACHED_RO);
	default:
		return (ATTACH_REFUSED_LOCK);
	}
}

/*
 * Attach a client.  On success the client is on the console with its
 * offset at the replay point (the last [console] replay_lines lines);
 * output starts when the caller sets CLIENT_STREAM.
 */
enum attach_result
console_attach(struct console *con, struct client *c, enum attach_mode mode)
{
	enum attach_result	 r;
	int			 ro = (c->flags & CLIENT_READONLY);

	if (c->console != NULL)
		console_detach(c->console, c, NULL);
	if (con->flags & CONSOLE_REMOTE)
		return (core_hooks->attach(con, c, mode));
	if (server_conf->console_max_clients != 0 &&
	    con->nclients >= server_conf->console_max_clients)
		return (ATTACH_REFUSED_FULL);
	r = console_grant(con, c, mode);
	if (r != ATTACHED_WRITER && r != ATTACHED_SPY && r != ATTACHED_RO) {
		c->flags &= ~(CLIENT_WRITE|CLIENT_WANTWRITE);
		if (!ro)
			c->flags &= ~CLIENT_READONLY;
		return (r);
	}
	c->console = con;
	TAILQ_INSERT_TAIL(&con->clients, c, centry);
	con->nclients++;
	con->left = 0;
	c->off = ring_lines_back(&con->history,
	    server_conf->console_replay_lines);
	if (r == ATTACHED_WRITER)
		console_notice(con, c, "%s attached (%s)", client_who(c),
		    attach_result_string(r));
	console_log_activity(con, "%s attached (%s)", client_who(c),
	    attach_result_string(r));
	log_info("console %s: %s attached (%s, %s)", con->key, client_who(c),
	    attach_result_string(r), c->proto->name);
	return (r);
}

/* Detach a client; a waiting spy may become the writer. */
void
console_detach(struct console *con, struct client *c, const char *why)
{
	int	was_writer = (c->flags & CLIENT_WRITE);

	if (c->console != con)
		return;
	if (core_hooks->client_forwarded(c)) {
		core_hooks->client_gone(c);
		c->console = NULL;
		return;
	}
	console_release_lock(con, c);
	TAILQ_REMOVE(&con->clients, c, centry);
	con->nclients--;
	c->console = NULL;
	c->flags &= ~(CLIENT_WRITE|CLIENT_WANTWRITE|CLIENT_STREAM);
	if (con->nclients == 0 && con->vm == NULL)
		con->left = server_now;
	if (was_writer)
		console_notice(con, NULL, "%s detached", client_who(c));
	console_log_activity(con, "%s detached%s%s", client_who(c),
	    why != NULL ? ": " : "", why != NULL ? why : "");
	log_info("console %s: %s detached%s%s", con->key, client_who(c),
	    why != NULL ? ": " : "", why != NULL ? why : "");
	if (was_writer)
		console_promote(con);
}

/*
 * Change an attached client's mode (escape menu): spy, write (if free)
 * or force.  Returns 0, or -1 with the reason in err.
 */
int
console_set_mode(struct console *con, struct client *c, enum attach_mode mode,
    char *err, size_t errlen)
{
	struct client	*w;

	switch (mode) {
	case ATTACH_SPY:
		if (!(c->flags & CLIENT_WRITE)) {
			c->flags &= ~CLIENT_WANTWRITE;
			return (0);
		}
		c->flags &= ~(CLIENT_WRITE|CLIENT_WANTWRITE);
		console_release_lock(con, c);
		console_log_activity(con, "%s now spying", client_who(c));
		console_promote(con);
		return (0);
	case ATTACH_DEFAULT:
		if (c->flags & CLIENT_WRITE)
			return (0);
		if (c->flags & CLIENT_READONLY) {
			snprintf(err, errlen, "read-only access");
			return (-1);
		}
		if ((w = console_writer(con, c)) != NULL ||
		    (con->holder != NULL && con->holder != c)) {
			c->flags |= CLIENT_WANTWRITE;
			snprintf(err, errlen, "%s is writing; use force",
			    w != NULL ? client_who(w) : "someone");
			return (-1);
		}
		c->flags |= CLIENT_WRITE;
		console_log_activity(con, "%s now writing", client_who(c));
		return (0);
	case ATTACH_FORCE:
		if (c->flags & CLIENT_READONLY) {
			snprintf(err, errlen, "read-only access");
			return (-1);
		}
		if (con->holder != NULL && con->holder != c &&
		    (con->flags & CONSOLE_EXCL)) {
			snprintf(err, errlen, "%s",
			    attach_result_string(ATTACH_REFUSED_EXCL));
			return (-1);
		}
		console_bump(con, c);
		return (0);
	default:
		snprintf(err, errlen, "mode cannot be changed that way");
		return (-1);
	}
}

/* Queue the last n lines of history to a client, as a replay. */
void
console_replay(struct console *con, struct client *c, u_int n)
{
	struct iovec	 iov[2];
	uint64_t	 off = ring_lines_back(&con->history, n);
	int		 i, cnt;
	u_char		*esc;

	while (off < con->history.end) {
		cnt = ring_peek(&con->history, off, iov, 16384);
		if (cnt <= 0)
			break;
		for (i = 0; i < cnt; i++) {
			if (c->flags & CLIENT_ESCAPE) {
				esc = xmalloc(iov[i].iov_len * 2);
				client_write(c, esc, telnet_escape(esc,
				    iov[i].iov_base, iov[i].iov_len));
				free(esc);
			} else
				client_write(c, iov[i].iov_base,
				    iov[i].iov_len);
			off += iov[i].iov_len;
		}
	}
}

/* Tell attached clients (all but except) something, through their kind. */
void
console_notice(struct console *con, struct client *except, const char *fmt,
    ...)
{
	struct client	*c;
	va_list		 ap;
	char		*msg;

	if (TAILQ_EMPTY(&con->clients))
		return;
	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	TAILQ_FOREACH(c, &con->clients, centry) {
		if (c != except && c->proto->notice != NULL &&
		    !(c->flags & CLIENT_DEAD))
			c->proto->notice(c, msg);
	}
	free(msg);
}

/* Write an activity line to the console log, if enabled. */
void
console_log_activity(struct console *con, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg, stamp[64];
	struct tm tm;

	if (con->log == NULL || !server_conf->log_activity)
		return;
	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	gmtime_r(&server_now, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S UTC", &tm);
	logfile_printf(con->log, "[-- %s -- %s --]\r\n", msg, stamp);
	free(msg);
}

/* Forget consoles nobody has used for [vm] expire. */
void
console_expire(time_t now)
{
	struct console	*con, *con1;

	TAILQ_FOREACH_SAFE(con, &all_consoles, gentry, con1) {
		if (con->vm != NULL || con->nclients != 0 ||
		    con->vmotion.state != VMOTION_NONE || con->left == 0 ||
		    (con->flags & CONSOLE_REMOTE))
			continue;
		if (now - con->left >= (time_t)server_conf->vm_expire)
			console_free(con);
	}
}

/* Write MARK lines to the logs of connected consoles. */
void
console_mark(time_t now)
{
	static time_t	 next;
	struct console	*con;
	u_int		 every = server_conf->log_mark;

	if (every == 0) {
		next = 0;
		return;
	}
	if (next == 0)
		next = now + every;
	if (now < next)
		return;
	next = now + every;
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (con->log != NULL && con->vm != NULL)
			logfile_mark(con->log, now);
	}
}

/* Apply a reloaded configuration to existing consoles. */
void
console_reconfigure(void)
{
	struct console	*con;

	TAILQ_FOREACH(con, &all_consoles, gentry) {
		ring_set_max(&con->history, server_conf->console_history);
		if (con->log != NULL) {
			logfile_free(con->log);
			con->log = NULL;
		}
		console_open_log(con);
	}
}

static int
console_prefix(const char *s, const char *prefix, size_t len)
{
	return (s != NULL && strncasecmp(s, prefix, len) == 0);
}

/*
 * Find a console from what a person typed: its key, any spelling of its
 * UUID (with ".label"), its name, or a unique prefix of a name or key.
 * Returns 0, or -1 with a message in *err (to free).
 */
int
console_lookup(const char *text, struct console **out, char **err)
{
	struct console	*con, *found = NULL;
	u_char		 uuid[UUID_LEN];
	const char	*dot;
	char		*label = NULL, *key, *list = NULL, *tmp;
	size_t		 len;
	u_int		 n = 0;
	int		 exact;

	*out = NULL;
	*err = NULL;
	while (isspace((u_char)*text))
		text++;
	len = strlen(text);
	while (len > 0 && isspace((u_char)text[len - 1]))
		len--;
	if (len == 0) {
		*err = xstrdup("no console named");
		return (-1);
	}

	/* A UUID in any spelling, with an optional label. */
	dot = memchr(text, '.', len);
	if (uuid_parse(text, dot != NULL ? (size_t)(dot - text) : len,
	    uuid) == 0) {
		if (dot != NULL)
			label = xstrndup(dot + 1, len - (dot + 1 - text));
		key = console_make_key(uuid, label);
		free(label);
		con = console_find(key);
		free(key);
		if (con != NULL) {
			*out = con;
			return (0);
		}
	}

	/* Exact name; several consoles may share a name. */
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (con->name != NULL && strlen(con->name) == len &&
		    strncmp(con->name, text, len) == 0) {
			found = con;
			n++;
		}
	}
	exact = (n != 0);
	if (n == 0) {
		TAILQ_FOREACH(con, &all_consoles, gentry) {
			if (console_prefix(con->name, text, len) ||
			    console_prefix(con->key, text, len)) {
				found = con;
				n++;
			}
		}
	}
	if (n == 1) {
		*out = found;
		return (0);
	}
	if (n == 0) {
		xasprintf(err, "no console matches \"%.*s\"", (int)len, text);
		return (-1);
	}
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (exact ? (con->name != NULL && strlen(con->name) == len &&
		    strncmp(con->name, text, len) == 0) :
		    (console_prefix(con->name, text, len) ||
		    console_prefix(con->key, text, len))) {
			xasprintf(&tmp, "%s%s%s (%s)", list != NULL ? list : "",
			    list != NULL ? ", " : "", con->name != NULL ?
			    con->name : "-", con->key);
			free(list);
			list = tmp;
		}
	}
	xasprintf(err, "\"%.*s\" matches %u consoles: %s", (int)len, text, n,
	    list);
	free(list);
	return (-1);
}
