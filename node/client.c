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
 * People's sessions, whatever port they came in on.
 *
 * Console output is never copied per client: each client keeps an offset
 * into its console's history ring and client_flush() writes straight from
 * the ring with writev(2), doubling 0xff on the way for telnet clients.
 * Messages (prompts, notices, pickles) go to a small per-client buffer
 * that is always sent before more history.
 *
 * A client that falls behind by more than the ring holds skips ahead with
 * a visible "[-- N bytes skipped --]" marker; one whose socket accepts
 * nothing for [console] stuck_timeout is disconnected.  Neither ever
 * slows the VM.
 *
 * A protocol plugs in through its const struct client_proto (vspcd.h)
 * and nothing else: cmdline.c (console port), compat.c (vSPC.py and
 * VMware clients), control-attach.c (vspcctl attach), cluster-remote.c
 * (a person on another node).  Its acceptor calls client_create() with
 * it; this file then hands it the bytes read (input), console events
 * (notice) and the client's end (free); the cluster tells it the end
 * of a pending attach (attached).  A kind with no socket of its own
 * routes messages and output through write and flush.  For the hot
 * upgrade, handoff_pack and handoff_unpack carry its proto_data, and
 * client-handoff.c finds it again by name (add it there).  Nothing here
 * tests a client's kind.
 */

#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"

#define CLIENT_IOV		64
#define CLIENT_WRITE_MAX	65536

struct clients		 all_clients = TAILQ_HEAD_INITIALIZER(all_clients);
static struct clients	 dead_clients = TAILQ_HEAD_INITIALIZER(dead_clients);
static u_int		 client_next_id;

static void	client_read_cb(evutil_socket_t, short, void *);
static void	client_reap_later(void);
static void	client_write_cb(evutil_socket_t, short, void *);

/* Create a client for an accepted, non-blocking socket. */
struct client *
client_create(int fd, enum client_kind kind, const struct client_proto *proto,
    const struct sockaddr *sa)
{
	struct client	*c;
	int		 one = 1;

	c = xcalloc(1, sizeof *c);
	c->id = ++client_next_id;
	c->fd = fd;
	c->kind = kind;
	c->proto = proto;
	c->created = c->last_input = server_now;
	/* The slot server-listen.c took for this connection. */
	c->limit = server_accept_slot;
	server_accept_slot = NULL;
	if (sa != NULL)
		addr_fmt(sa, c->addr, sizeof c->addr);
	else
		snprintf(c->addr, sizeof c->addr, "local");
	TAILQ_INSERT_TAIL(&all_clients, c, gentry);
	if (fd == -1)
		return (c);	/* A person on another node: no socket here. */
	/* People type one key at a time: no Nagle delay on the echo. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->ev_read = event_new(server_base, fd, EV_READ|EV_PERSIST,
	    client_read_cb, c);
	c->ev_write = event_new(server_base, fd, EV_WRITE, client_write_cb,
	    c);
	event_add(c->ev_read, NULL);
	server_stats.client_accepted++;
	return (c);
}

/* Describe a client's mode for who lists. */
const char *
client_mode_name(const struct client *c)
{
	if (c->console == NULL)
		return ("none");
	if (c->flags & CLIENT_HOLDER) {
		if (c->console->flags & CONSOLE_EXCL)
			return ("exclusive");
		return ("write-lock");
	}
	if (c->flags & CLIENT_WRITE)
		return ("writer");
	if (c->flags & CLIENT_READONLY)
		return ("read-only");
	return ("spy");
}

static void
client_kill(struct client *c)
{
	if (c->flags & CLIENT_DEAD)
		return;
	c->flags |= CLIENT_DEAD;
	c->flags &= ~CLIENT_STREAM;
	if (c->console != NULL)
		console_detach(c->console, c, NULL);
	core_hooks->client_gone(c);
	if (c->ev_read != NULL)
		event_del(c->ev_read);
	if (c->ev_write != NULL)
		event_del(c->ev_write);
	TAILQ_INSERT_TAIL(&dead_clients, c, dentry);
	client_reap_later();
}

/*
 * Close a client: detach it, send what is queued (but no more history),
 * then drop the connection.  Safe to call from any callback.
 */
void
client_close(struct client *c, const char *reason)
{
	if (c->flags & (CLIENT_DEAD|CLIENT_CLOSING))
		return;
	log_debug("client %u %s: closing: %s", c->id, c->addr,
	    reason != NULL ? reason : "done");
	if (c->console != NULL)
		console_detach(c->console, c, reason);
	c->flags |= CLIENT_CLOSING;
	c->flags &= ~CLIENT_STREAM;
	core_hooks->client_gone(c);
	if (c->ev_read != NULL)
		event_del(c->ev_read);
	if (c->fd == -1 || c->out == NULL ||
	    evbuffer_get_length(c->out) == 0) {
		client_kill(c);
		return;
	}
	if (c->stuck_since == 0)
		c->stuck_since = server_now;
	client_flush(c);
}

/* Free dead clients at the end of this loop turn, never in a callback. */
static struct event	*client_reaper;

static void
client_reap_cb(evutil_socket_t fd, short events, void *arg)
{
	client_reap(NULL);
}

static void
client_reap_later(void)
{
	if (client_reaper == NULL)
		client_reaper = event_new(server_base, -1, 0, client_reap_cb,
		    NULL);
	if (!event_pending(client_reaper, EV_TIMEOUT, NULL))
		event_active(client_reaper, EV_TIMEOUT, 0);
}

/* At exit: the dead are gone, and so is the reaper. */
void
client_reap_stop(void)
{
	client_reap(NULL);
	if (client_reaper != NULL)
		event_free(client_reaper);
	client_reaper = NULL;
}


/* Free every dead client; called once per loop turn. */
void
client_reap(struct client *unused)
{
	struct client	*c;

	while ((c = TAILQ_FIRST(&dead_clients)) != NULL) {
		TAILQ_REMOVE(&dead_clients, c, dentry);
		TAILQ_REMOVE(&all_clients, c, gentry);
		if (c->proto != NULL && c->proto->free != NULL)
			c->proto->free(c);
		if (c->ev_read != NULL)
			event_free(c->ev_read);
		if (c->ev_write != NULL)
			event_free(c->ev_write);
		if (c->out != NULL)
			evbuffer_free(c->out);
		telnet_free(&c->tn);
		if (c->fd != -1)
			close(c->fd);
		limit_put(c->limit);
		free(c->user);
		free(c);
	}
}

/* Queue bytes to a client, ahead of any more console output. */
void
client_write(struct client *c, const void *buf, size_t len)
{
	if (c->flags & (CLIENT_DEAD|CLIENT_CLOSING) || len == 0)
		return;
	if (c->proto->write != NULL) {
		c->proto->write(c, buf, len);
		return;
	}
	if (c->out == NULL)
		c->out = evbuffer_new();
	/*
	 * One large reply (a listing, a replay) may go over the limit; a
	 * client that keeps being sent messages while it reads nothing may
	 * not.
	 */
	if (evbuffer_get_length(c->out) > server_conf->console_client_buffer +
	    core_hooks->fwd_window(c)) {
		log_warnx("client %u %s: output buffer full; disconnecting",
		    c->id, c->addr);
		server_stats.client_stuck++;
		evbuffer_drain(c->out, evbuffer_get_length(c->out));
		client_kill(c);
		return;
	}
	evbuffer_add(c->out, buf, len);
	client_flush(c);
}

/* Queue a formatted message to a client. */
void
client_printf(struct client *c, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;
	int	 len;

	va_start(ap, fmt);
	len = xvasprintf(&msg, fmt, ap);
	va_end(ap);
	client_write(c, msg, len);
	free(msg);
}

/* Write queued messages; 1 when all gone, 0 if blocked, -1 on error. */
static int
client_send_out(struct client *c)
{
	int	n;

	while (c->out != NULL && evbuffer_get_length(c->out) != 0) {
		n = evbuffer_write(c->out, c->fd);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return (0);
			return (-1);
		}
		c->bytes_out += n;
		server_stats.client_bytes_out += n;
		c->stuck_since = 0;
		if (c->cluster != NULL)
			core_hooks->fwd_drained(c, n);
	}
	return (1);
}

/*
 * Write history from the client's offset; 1 when caught up, 0 if blocked,
 * -1 on error.  Runs ending in 0xff are followed by one more 0xff from a
 * static byte, so escaping needs no copy.
 */
static int
client_send_history(struct client *c)
{
	static u_char	 iac = TEL_IAC;
	struct ring	*r = &c->console->history;
	struct iovec	 seg[2], iov[CLIENT_IOV];
	int		 isring[CLIENT_IOV];
	u_char		*p, *q, *end;
	uint64_t	 start;
	ssize_t		 n;
	size_t		 left, take;
	int		 nseg, i, cnt;
	char		 msg[80];

	for (;;) {
		if (c->flags & CLIENT_PENDING_IAC) {
			n = write(c->fd, &iac, 1);
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return (0);
				return (-1);
			}
			c->flags &= ~CLIENT_PENDING_IAC;
			c->bytes_out++;
		}
		start = ring_start(r);
		if (c->off < start) {
			snprintf(msg, sizeof msg,
			    "\r\n[-- %llu bytes skipped --]\r\n",
			    (unsigned long long)(start - c->off));
			c->skipped += start - c->off;
			server_stats.client_skipped += start - c->off;
			c->off = start;
			if (c->out == NULL)
				c->out = evbuffer_new();
			evbuffer_add(c->out, msg, strlen(msg));
			if ((i = client_send_out(c)) != 1)
				return (i);
		}
		if (c->off >= r->end)
			return (1);

		nseg = ring_peek(r, c->off, seg, CLIENT_WRITE_MAX);
		if (nseg <= 0)
			return (1);
		cnt = 0;
		for (i = 0; i < nseg && cnt < CLIENT_IOV - 1; i++) {
			p = seg[i].iov_base;
			end = p + seg[i].iov_len;
			while (p < end && cnt < CLIENT_IOV - 1) {
				q = NULL;
				if (c->flags & CLIENT_ESCAPE)
					q = memchr(p, TEL_IAC, end - p);
				if (q == NULL) {
					iov[cnt].iov_base = p;
					iov[cnt].iov_len = end - p;
					isring[cnt++] = 1;
					p = end;
					break;
				}
				iov[cnt].iov_base = p;
				iov[cnt].iov_len = q + 1 - p;
				isring[cnt++] = 1;
				iov[cnt].iov_base = &iac;
				iov[cnt].iov_len = 1;
				isring[cnt++] = 0;
				p = q + 1;
			}
		}

		n = writev(c->fd, iov, cnt);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return (0);
			return (-1);
		}
		c->bytes_out += n;
		server_stats.client_bytes_out += n;
		c->stuck_since = 0;

		left = n;
		for (i = 0; i < cnt; i++) {
			if (isring[i]) {
				take = left < iov[i].iov_len ? left :
				    iov[i].iov_len;
				c->off += take;
				left -= take;
				if (take < iov[i].iov_len)
					break;
				/* A run ending in 0xff owes its double. */
				if (i + 1 < cnt && !isring[i + 1]) {
					if (left == 0) {
						c->flags |= CLIENT_PENDING_IAC;
						break;
					}
					left--;
					i++;
				}
			}
			if (left == 0)
				break;
		}
	}
}

/*
 * Send what the client is owed: queued messages, then history if it is
 * streaming.  Arms EV_WRITE when the socket is full.
 */
void
client_flush(struct client *c)
{
	int	r;

	if (c->flags & (CLIENT_DEAD|CLIENT_WRITE_WAIT))
		return;
	if (c->proto->flush != NULL) {
		c->proto->flush(c);
		return;
	}
	r = client_send_out(c);
	/*
	 * A forwarded person's output comes over the peer link, not from the
	 * history here, even once the console became ours (a vMotion to
	 * this node): cluster.c sets its offset when it makes it local.
	 */
	if (r == 1 && (c->flags & CLIENT_STREAM) && c->console != NULL &&
	    !core_hooks->client_forwarded(c))
		r = client_send_history(c);
	if (r == -1) {
		log_debug("client %u %s: write: %s", c->id, c->addr,
		    strerror(errno));
		client_kill(c);
		return;
	}
	if (r == 0) {
		if (c->stuck_since == 0)
			c->stuck_since = server_now;
		c->flags |= CLIENT_WRITE_WAIT;
		event_add(c->ev_write, NULL);
		return;
	}
	c->stuck_since = 0;
	if (c->flags & CLIENT_CLOSING)
		client_kill(c);
}

static void
client_write_cb(evutil_socket_t fd, short events, void *arg)
{
	struct client	*c = arg;

	c->flags &= ~CLIENT_WRITE_WAIT;
	client_flush(c);
}

static void
client_read_cb(evutil_socket_t fd, short events, void *arg)
{
	static u_char	 buf[16384];
	struct client	*c = arg;
	ssize_t		 n;

	n = read(fd, buf, sizeof buf);
	if (n == -1) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		log_debug("client %u %s: read: %s", c->id, c->addr,
		    strerror(errno));
		client_kill(c);
		return;
	}
	if (n == 0) {
		client_kill(c);
		return;
	}
	c->bytes_in += n;
	server_stats.client_bytes_in += n;
	c->last_input = server_now;
	c->proto->input(c, buf, n);
}

/* Pause or resume reading from a client. */
void
client_set_read(struct client *c, int on)
{
	if (c->flags & (CLIENT_DEAD|CLIENT_CLOSING))
		return;
	if (on && (c->flags & CLIENT_READ_OFF)) {
		c->flags &= ~CLIENT_READ_OFF;
		/* While quiescing for an upgrade, reading stays off. */
		if (!core_quiescing)
			event_add(c->ev_read, NULL);
	} else if (!on && !(c->flags & CLIENT_READ_OFF)) {
		c->flags |= CLIENT_READ_OFF;
		event_del(c->ev_read);
	}
}

/*
 * Bytes a person typed for the VM.  Dropped (and counted) unless the
 * client may write; reading pauses while the VM's queue is full.
 */
void
client_input_to_vm(struct client *c, const u_char *buf, size_t len)
{
	struct console	*con = c->console;

	if (con == NULL || len == 0)
		return;
	if (core_hooks->client_forwarded(c)) {
		/* The console's owner decides who writes. */
		core_hooks->fwd_input(c, buf, len);
		return;
	}
	if (!(c->flags & CLIENT_WRITE)) {
		server_stats.input_dropped += len;
		return;
	}
	console_input(con, buf, len);
	if (console_input_room(con) == 0)
		client_set_read(c, 0);
}

/* Disconnect clients whose sockets have accepted nothing for too long. */
void
client_check_stuck(time_t now)
{
	struct client	*c, *c1;
	u_int		 limit = server_conf->console_stuck_timeout;
	u_int		 idle = server_conf->console_idle_timeout;

	TAILQ_FOREACH_SAFE(c, &all_clients, gentry, c1) {
		if (c->flags & CLIENT_DEAD)
			continue;
		if (limit != 0 && c->stuck_since != 0 &&
		    now - c->stuck_since >= (time_t)limit) {
			log_warnx("client %u %s: stuck for %lld seconds "
			    "(%llu bytes skipped); disconnecting", c->id,
			    c->addr, (long long)(now - c->stuck_since),
			    (unsigned long long)c->skipped);
			server_stats.client_stuck++;
			client_kill(c);
			continue;
		}
		if (idle != 0 && now - c->last_input >= (time_t)idle)
			client_close(c, "idle timeout");
	}
}

/* Close every client at exit, with a last message where it fits. */
void
client_shutdown(const char *why)
{
	struct client	*c, *c1;

	TAILQ_FOREACH_SAFE(c, &all_clients, gentry, c1) {
		if (c->flags & CLIENT_DEAD)
			continue;
		if (c->proto->notice != NULL && c->console != NULL)
			c->proto->notice(c, why);
		client_close(c, why);
		client_kill(c);
	}
	client_reap(NULL);
}

/*
 * Queue console output relayed from another node.  Not bound by
 * [console] client_buffer: the credit the owner was given bounds it.
 */
void
client_write_data(struct client *c, const void *buf, size_t len)
{
	if (c->flags & (CLIENT_DEAD|CLIENT_CLOSING) || len == 0)
		return;
	if (c->out == NULL)
		c->out = evbuffer_new();
	evbuffer_add(c->out, buf, len);
	client_flush(c);
}

/* Look a client up by its ID (IDs survive a hand-over). */
struct client *
client_find(u_int id)
{
	struct client	*c;

	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->id == id && !(c->flags & CLIENT_DEAD))
			return (c);
	}
	return (NULL);
}

/*
 * Hot upgrade: serve a client rebuilt from its record: list it and, if it
 * has a socket here, arm its events.  One write turn sends what it has
 * queued and carries on.
 */
void
client_adopted(struct client *c)
{
	if (c->id > client_next_id)
		client_next_id = c->id;
	TAILQ_INSERT_TAIL(&all_clients, c, gentry);
	if (c->fd == -1)
		return;
	/* Nothing runs before COMMIT: the events may be added now. */
	c->ev_read = event_new(server_base, c->fd, EV_READ|EV_PERSIST,
	    client_read_cb, c);
	c->ev_write = event_new(server_base, c->fd, EV_WRITE, client_write_cb,
	    c);
	if (!(c->flags & (CLIENT_READ_OFF|CLIENT_CLOSING)))
		event_add(c->ev_read, NULL);
	c->flags |= CLIENT_WRITE_WAIT;
	event_add(c->ev_write, NULL);
}
