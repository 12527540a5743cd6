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
#include "proto/handoff.pb-c.h"

#define CLIENT_IOV		64
#define CLIENT_WRITE_MAX	65536

struct clients		 all_clients = TAILQ_HEAD_INITIALIZER(all_clients);
static struct clients	 dead_clients = TAILQ_HEAD_INITIALIZER(dead_clients);
static u_int		 client_next_id;

static void	client_read_cb(evutil_socket_t, short, void *);
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
	/* The per-source slot server.c took for this connection. */
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
	server_reap_later();
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
	if (c->kind == CLIENT_REMOTE) {
		core_hooks->remote_write(c, buf, len);
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
	if (c->kind == CLIENT_REMOTE) {
		core_hooks->remote_flush(c);
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

/* The client kind's input handling by name ("console", "compat", ...). */
const struct client_proto *
client_proto_find(const char *name)
{
	if (strcmp(name, cmdline_proto.name) == 0)
		return (&cmdline_proto);
	if (strcmp(name, compat_proto.name) == 0)
		return (&compat_proto);
	if (strcmp(name, cluster_remote_proto.name) == 0)
		return (&cluster_remote_proto);
	return (control_client_proto(name));
}

/* Hot upgrade: stop (1) or resume (0) reading from every person. */
void
client_handoff_pause(int on)
{
	struct client	*c;

	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->fd == -1 || c->ev_read == NULL ||
		    (c->flags & (CLIENT_DEAD|CLIENT_CLOSING|CLIENT_READ_OFF)))
			continue;
		if (on)
			event_del(c->ev_read);
		else
			event_add(c->ev_read, NULL);
	}
}

/* Hot upgrade: every client, of every kind, with its own state. */
void
client_handoff_save(struct handoff *h)
{
	Vspc__Handoff__Client	 m;
	Vspc__Handoff__Telnet	 tn;
	struct client		*c, *o;
	uint8_t			*pd;
	size_t			 pdlen;

	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->flags & CLIENT_DEAD)
			continue;
		/* An attached vspcctl goes with its control connection. */
		if (control_client_proto(c->proto->name) != NULL &&
		    !control_client_carried(c))
			continue;
		vspc__handoff__client__init(&m);
		vspc__handoff__telnet__init(&tn);
		m.id = c->id;
		m.fd = c->fd != -1 ? handoff_add_fd(h, c->fd) : -1;
		m.kind = c->kind;
		m.proto = (char *)c->proto->name;
		m.flags = c->flags & ~CLIENT_WRITE_WAIT;
		if (c->tn.ops != NULL) {
			telnet_handoff_save(&c->tn, &tn);
			m.tn = &tn;
			m.has_tn = 1;
		}
		if (c->out != NULL) {
			m.has_out = 1;
			handoff_evbuffer_bytes(c->out, &m.out);
		}
		if (c->console != NULL) {
			m.console = c->console->key;
			m.holder = c->console->holder == c;
			TAILQ_FOREACH(o, &c->console->clients, centry) {
				if (o == c)
					m.listed = 1;
			}
		}
		m.off = c->off;
		m.stream = c->stream;
		m.addr = c->addr;
		if (c->user != NULL)
			m.user = c->user;
		m.created = c->created;
		m.last_input = c->last_input;
		m.stuck_since = c->stuck_since;
		m.bytes_in = c->bytes_in;
		m.bytes_out = c->bytes_out;
		m.skipped = c->skipped;
		pd = NULL;
		pdlen = 0;
		if (c->proto == &cmdline_proto)
			pdlen = cmdline_handoff_pack(c, &pd);
		else if (c->proto == &compat_proto)
			pdlen = compat_handoff_pack(c, &pd);
		m.proto_data.data = pd;
		m.proto_data.len = pdlen;
		handoff_add_msg(h, HANDOFF_REC_CLIENT, &m.base);
		free(pd);
		free(m.out.data);
	}
}

/*
 * Hot upgrade: rebuild a client and put it back on its console.  A
 * forwarded person's channel (c->cluster) is cluster.c's to relink, an
 * attached vspcctl's connection control.c's.
 */
int
client_handoff_restore(struct handoff *h, const uint8_t *data, size_t len,
    char **err)
{
	Vspc__Handoff__Client		*m;
	const struct client_proto	*proto;
	struct client			*c;
	struct console			*con = NULL;
	int				 fd = -1, rc = -1;

	if ((m = vspc__handoff__client__unpack(NULL, len, data)) == NULL) {
		*err = xstrdup("malformed client record");
		return (-1);
	}
	if ((proto = client_proto_find(m->proto)) == NULL) {
		xasprintf(err, "client %u: unknown kind %s", m->id, m->proto);
		goto out;
	}
	if (m->fd != -1 && (fd = handoff_take_fd(h, m->fd)) == -1) {
		xasprintf(err, "client %u: no descriptor", m->id);
		goto out;
	}
	if (m->console != NULL && *m->console != '\0' &&
	    (con = console_find(m->console)) == NULL) {
		xasprintf(err, "client %u: console %s unknown", m->id,
		    m->console);
		if (fd != -1)
			close(fd);
		goto out;
	}
	c = xcalloc(1, sizeof *c);
	c->id = m->id;
	if (c->id > client_next_id)
		client_next_id = c->id;
	c->fd = fd;
	c->kind = m->kind < CLIENT_KIND_MAX ? m->kind : CLIENT_CONSOLE;
	c->proto = proto;
	c->flags = m->flags;
	if (m->proto_data.len != 0 || proto == &cmdline_proto ||
	    proto == &compat_proto) {
		if ((proto == &cmdline_proto ? cmdline_handoff_unpack(c,
		    m->proto_data.data, m->proto_data.len) :
		    proto == &compat_proto ? compat_handoff_unpack(c,
		    m->proto_data.data, m->proto_data.len) : 0) == -1) {
			xasprintf(err, "client %u: malformed state", m->id);
			if (fd != -1)
				close(fd);
			free(c);
			goto out;
		}
	}
	if (m->has_tn && m->tn != NULL && c->tn.ops != NULL)
		telnet_handoff_restore(&c->tn, m->tn);
	if (m->has_out) {
		c->out = evbuffer_new();
		evbuffer_add(c->out, m->out.data, m->out.len);
	}
	c->off = m->off;
	c->stream = m->stream;
	snprintf(c->addr, sizeof c->addr, "%s", m->addr);
	/* Its per-source slot again, never refused: it is already here. */
	if (fd != -1 && proto == &cmdline_proto)
		c->limit = server_limit_take(LISTEN_CONSOLE, c->addr);
	else if (fd != -1 && proto == &compat_proto)
		c->limit = server_limit_take(LISTEN_COMPAT, c->addr);
	if (m->user != NULL && *m->user != '\0')
		c->user = xstrdup(m->user);
	c->created = m->created;
	c->last_input = m->last_input;
	c->stuck_since = m->stuck_since;
	c->bytes_in = m->bytes_in;
	c->bytes_out = m->bytes_out;
	c->skipped = m->skipped;
	TAILQ_INSERT_TAIL(&all_clients, c, gentry);
	c->console = con;
	if (con != NULL && m->listed) {
		TAILQ_INSERT_TAIL(&con->clients, c, centry);
		con->nclients++;
	}
	if (con != NULL && m->holder)
		con->holder = c;
	if (fd != -1) {
		/* Nothing runs before COMMIT: the events may be added now. */
		c->ev_read = event_new(server_base, fd, EV_READ|EV_PERSIST,
		    client_read_cb, c);
		c->ev_write = event_new(server_base, fd, EV_WRITE,
		    client_write_cb, c);
		if (!(c->flags & (CLIENT_READ_OFF|CLIENT_CLOSING)))
			event_add(c->ev_read, NULL);
		/* One write turn sends what is queued and carries on. */
		c->flags |= CLIENT_WRITE_WAIT;
		event_add(c->ev_write, NULL);
	}
	rc = 0;
out:
	vspc__handoff__client__free_unpacked(m, NULL);
	return (rc);
}
