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
 * vspcctl attach: the connection becomes a person.  A struct client whose
 * socket is one end of a socketpair; this file holds the other end and
 * carries its bytes in Replies (output), so that the client code
 * (skipping ahead, stuck people, forwarding to the console's node) works
 * as for the console port.  Keys typed (INPUT) go to the console
 * directly, in order with the escape commands.
 *
 * Every attach Reply with data says which stream its bytes belong to and
 * the offset of the first one, so that a tool can resume after the last
 * byte it showed (ATTACH with resume).  To tell stream bytes from
 * messages on the socketpair, the client escapes 0xff in console output
 * (CLIENT_ESCAPE) and messages of this file come framed as IAC SB ...
 * IAC SE; they become Reply.text.  The offsets are anchored on what the
 * client code itself knows (its offset in the history, or the forwarded
 * channel's next offset) each time the pair has been read dry.
 */

#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "proto/control.pb-c.h"
#include "control-int.h"

static u_char			 ctl_readbuf[CTL_CHUNK];

static void	ctl_client_notice(struct client *, const char *);
static void	ctl_client_free(struct client *);
static void	ctl_client_attached(struct client *, enum attach_result,
		    const char *);

const struct client_proto ctl_client_proto = {
	.name = "ctl",
	.input = ctl_client_input,
	.notice = ctl_client_notice,
	.free = ctl_client_free,
	.attached = ctl_client_attached
};

/*
 * What comes out of an attached client's socketpair: stream bytes (0xff
 * doubled) and messages framed as IAC SB ... IAC SE.
 */
enum ctl_pstate {
	CTL_PS_DATA,
	CTL_PS_DATA_IAC,	/* 0xff in output: doubled, or a frame. */
	CTL_PS_MSG,
	CTL_PS_MSG_IAC
};

/* A piece of that output, in order. */
struct ctl_seg {
	int		 text;		/* A message, not output. */
	u_char		*buf;
	size_t		 len;
	uint64_t	 off;		/* Stream offset of buf[0]. */
	uint64_t	 stream;
	int		 placed;
};

struct ctl_segs {
	struct ctl_seg	*v;
	u_int		 n;
	u_int		 size;
};

static void
ctl_segs_push(struct ctl_segs *ss, int text, const u_char *buf, size_t len)
{
	struct ctl_seg	*sg;

	if (len == 0)
		return;
	if (ss->n == ss->size) {
		ss->size = ss->size * 2 + 8;
		ss->v = xreallocarray(ss->v, ss->size, sizeof *ss->v);
	}
	sg = &ss->v[ss->n++];
	memset(sg, 0, sizeof *sg);
	sg->text = text;
	sg->len = len;
	sg->buf = xmalloc(len + 1);
	memcpy(sg->buf, buf, len);
	sg->buf[len] = '\0';
}

static void
ctl_segs_take(struct ctl_segs *ss, int text, struct evbuffer *from)
{
	size_t	len = evbuffer_get_length(from);

	ctl_segs_push(ss, text, evbuffer_pullup(from, len), len);
	evbuffer_drain(from, len);
}

static void
ctl_segs_free(struct ctl_segs *ss)
{
	u_int	i;

	for (i = 0; i < ss->n; i++)
		free(ss->v[i].buf);
	free(ss->v);
	memset(ss, 0, sizeof *ss);
}

/* Frame a message to an attached tool (see ctl_pair_parse). */
static void
ctl_frame_begin(struct client *c)
{
	static const u_char	sb[2] = { TEL_IAC, TEL_SB };

	client_write(c, sb, sizeof sb);
}

static void
ctl_frame_end(struct client *c)
{
	static const u_char	se[2] = { TEL_IAC, TEL_SE };

	client_write(c, se, sizeof se);
}

/* Split bytes read from the pair into stream bytes and messages. */
static void
ctl_pair_parse(struct ctl_conn *cc, struct evbuffer *in, struct ctl_segs *ss)
{
	static const u_char	 iac = TEL_IAC;
	struct evbuffer		*data, *dst;
	u_char			*p, *end, *q, b;
	size_t			 len;

	data = evbuffer_new();
	if (cc->msg == NULL)
		cc->msg = evbuffer_new();
	while ((len = evbuffer_get_length(in)) > 0) {
		if (len > CTL_CHUNK)
			len = CTL_CHUNK;
		p = evbuffer_pullup(in, len);
		end = p + len;
		while (p < end) {
			switch (cc->pstate) {
			case CTL_PS_DATA:
			case CTL_PS_MSG:
				dst = cc->pstate == CTL_PS_DATA ? data :
				    cc->msg;
				if ((q = memchr(p, TEL_IAC, end - p)) == NULL)
					q = end;
				evbuffer_add(dst, p, q - p);
				p = q;
				if (p < end) {
					cc->pstate++;
					p++;
				}
				break;
			case CTL_PS_DATA_IAC:
				b = *p++;
				cc->pstate = CTL_PS_DATA;
				if (b == TEL_SB) {
					ctl_segs_take(ss, 0, data);
					cc->pstate = CTL_PS_MSG;
					break;
				}
				evbuffer_add(data, &iac, 1);
				if (b != TEL_IAC)
					evbuffer_add(data, &b, 1);
				break;
			case CTL_PS_MSG_IAC:
				b = *p++;
				cc->pstate = CTL_PS_MSG;
				if (b == TEL_SE) {
					ctl_segs_take(ss, 1, cc->msg);
					cc->pstate = CTL_PS_DATA;
					break;
				}
				evbuffer_add(cc->msg, &iac, 1);
				if (b != TEL_IAC)
					evbuffer_add(cc->msg, &b, 1);
				break;
			}
		}
		evbuffer_drain(in, len);
	}
	ctl_segs_take(ss, 0, data);
	evbuffer_free(data);
}

/*
 * The client's own "N bytes skipped" marker (client.c) is not framed:
 * when its skip count moved, take the markers out of the stream bytes.
 */
static void
ctl_segs_skips(struct ctl_segs *ss)
{
	static const char	 pre[] = "\r\n[-- ";
	static const char	 post[] = " bytes skipped --]\r\n";
	struct ctl_segs		 out;
	struct ctl_seg		*sg;
	u_char			*p, *end, *m, *d;
	char			 text[64];
	u_int			 i;

	memset(&out, 0, sizeof out);
	for (i = 0; i < ss->n; i++) {
		sg = &ss->v[i];
		if (sg->text) {
			ctl_segs_push(&out, 1, sg->buf, sg->len);
			continue;
		}
		p = sg->buf;
		end = p + sg->len;
		while ((m = memmem(p, end - p, pre, sizeof pre - 1)) != NULL) {
			d = m + sizeof pre - 1;
			while (d < end && *d >= '0' && *d <= '9')
				d++;
			if (d == m + sizeof pre - 1 || (size_t)(end - d) <
			    sizeof post - 1 || memcmp(d, post,
			    sizeof post - 1) != 0) {
				ctl_segs_push(&out, 0, p, d - p);
				p = d;
				continue;
			}
			ctl_segs_push(&out, 0, p, m - p);
			snprintf(text, sizeof text, "%.*s bytes skipped",
			    (int)(d - m - (sizeof pre - 1)),
			    (char *)m + sizeof pre - 1);
			ctl_segs_push(&out, 1, (u_char *)text, strlen(text));
			p = d + sizeof post - 1;
		}
		ctl_segs_push(&out, 0, p, end - p);
	}
	ctl_segs_free(ss);
	*ss = out;
}

/*
 * Where the client's stream stands once the pair was read dry: the
 * stream and offset after the last stream byte that came out of it.
 * -1 when that cannot be known now (bytes still queued in the client).
 */
static int
ctl_client_position(struct ctl_conn *cc, struct client *c, uint64_t *stream,
    uint64_t *off)
{
	struct console	*con = c->console;

	if (con == NULL || (c->flags & CLIENT_DEAD))
		return (-1);
	if (cluster_client_forwarded(c)) {
		if ((c->out != NULL && evbuffer_get_length(c->out) != 0) ||
		    cc->pstate == CTL_PS_DATA_IAC)
			return (-1);
		return (cluster_fwd_position(c, stream, off));
	}
	if (con->flags & CONSOLE_REMOTE)
		return (-1);
	*stream = c->stream != 0 ? c->stream : con->stream;
	*off = c->off;
	/* A 0xff whose double is not written yet is not out yet. */
	if ((c->flags & CLIENT_PENDING_IAC) && *off > 0)
		(*off)--;
	return (0);
}

/*
 * Give the stream pieces their offsets: backwards from the client's
 * position when it is known (skips and unframed messages then cost
 * nothing), else on from the last one sent.
 */
static void
ctl_segs_place(struct ctl_conn *cc, struct ctl_segs *ss, int known,
    uint64_t stream, uint64_t end)
{
	struct ctl_seg	*sg;
	uint64_t	 next = cc->next;
	int		 i;

	/*
	 * Once the stream is anchored, bytes are numbered in the order they
	 * come (skips arrive as markers): the client's position only places
	 * the first bytes, and those of a new stream.
	 */
	if (known && cc->stream != 0 && stream == cc->stream)
		known = 0;
	for (i = (int)ss->n - 1; known && i >= 0; i--) {
		sg = &ss->v[i];
		if (sg->text) {
			if (stream != cc->stream)
				break;
			continue;
		}
		if (sg->len > end)
			break;
		end -= sg->len;
		sg->off = end;
		sg->stream = stream;
		sg->placed = 1;
	}
	for (i = 0; i < (int)ss->n; i++) {
		sg = &ss->v[i];
		if (sg->text || sg->placed)
			continue;
		sg->off = next;
		sg->stream = cc->stream;
		next += sg->len;
	}
}

static int
ctl_send_text(struct ctl_sink *s, const char *text)
{
	Vspc__Ctl__Reply	 r = VSPC__CTL__REPLY__INIT;
	char			*copy;
	u_char			*p;
	int			 rc;

	/* A proto3 string: keep it ASCII. */
	copy = xstrdup(text);
	for (p = (u_char *)copy; *p != '\0'; p++) {
		if (*p >= 0x80)
			*p = '?';
	}
	r.ok = 1;
	r.more = 1;
	r.text = copy;
	rc = ctl_send(s, &r);
	free(copy);
	return (rc);
}

/* Send the pieces read from the pair to the tool, in order. */
static void
ctl_segs_send(struct ctl_conn *cc, struct ctl_segs *ss, int known,
    uint64_t stream, uint64_t end)
{
	Vspc__Ctl__Reply	 r;
	struct ctl_sink		 s;
	struct ctl_seg		*sg;
	unsigned long long	 n;
	char			*text;
	size_t			 done, len;
	u_int			 i;

	memset(&s, 0, sizeof s);
	s.conn = cc->id;
	for (i = 0; i < ss->n; i++) {
		sg = &ss->v[i];
		if (sg->text) {
			if (cc->resuming && sscanf((char *)sg->buf,
			    "%llu bytes skipped", &n) == 1) {
				xasprintf(&text, "%llu bytes are no longer in "
				    "the history", n);
				ctl_send_text(&s, text);
				free(text);
			} else
				ctl_send_text(&s, (char *)sg->buf);
			continue;
		}
		if (cc->stream != 0 && sg->stream != cc->stream)
			ctl_send_text(&s, "stream changed: output from the new "
			    "start");
		for (done = 0; done < sg->len; done += len) {
			len = sg->len - done;
			if (len > CTL_CHUNK)
				len = CTL_CHUNK;
			vspc__ctl__reply__init(&r);
			r.ok = 1;
			r.more = 1;
			r.data.data = sg->buf + done;
			r.data.len = len;
			r.stream = sg->stream;
			r.offset = sg->off + done;
			ctl_send(&s, &r);
		}
		cc->stream = sg->stream;
		cc->next = sg->off + sg->len;
		cc->resuming = 0;
	}
	if (known && (cc->stream == 0 || stream != cc->stream)) {
		if (cc->stream != 0)
			ctl_send_text(&s, "stream changed: output from the new "
			    "start");
		cc->stream = stream;
		cc->next = end;
	}
}

/* Output of an attached client (its socketpair): frame it for the tool. */
void
ctl_pair_read(struct bufferevent *bev, void *arg)
{
	struct ctl_conn		*cc = arg;
	struct evbuffer		*in;
	struct evbuffer		*out = bufferevent_get_output(cc->bev);
	struct ctl_segs		 ss;
	struct client		*c = cc->c;
	uint64_t		 stream = 0, end = 0;
	ssize_t			 n;
	int			 dry = 0, known = 0, more = 0;

	/*
	 * Read the pair dry, so that everything the client wrote is here
	 * and its position describes the end of it.  Into a buffer of our
	 * own: the bufferevent's input is frozen at its end (adding to it
	 * fails), so what it read is moved over and read(2) does the rest.
	 */
	in = evbuffer_new();
	evbuffer_add_buffer(in, bufferevent_get_input(bev));
	for (;;) {
		if (evbuffer_get_length(out) > CTL_OUT_HIGH)
			break;
		n = read(bufferevent_getfd(bev), ctl_readbuf,
		    sizeof ctl_readbuf);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == 0 || (n == -1 && (errno == EAGAIN ||
		    errno == EWOULDBLOCK))) {
			dry = 1;
			break;
		}
		if (n == -1)
			break;
		evbuffer_add(in, ctl_readbuf, n);
		if (evbuffer_get_length(in) > 4 * CTL_CHUNK) {
			more = 1;
			break;
		}
	}
	memset(&ss, 0, sizeof ss);
	ctl_pair_parse(cc, in, &ss);
	evbuffer_free(in);
	if (c != NULL && c->skipped != cc->skipped) {
		ctl_segs_skips(&ss);
		cc->skipped = c->skipped;
	}
	if (dry && c != NULL &&
	    ctl_client_position(cc, c, &stream, &end) == 0)
		known = 1;
	ctl_segs_place(cc, &ss, known, stream, end);
	ctl_segs_send(cc, &ss, known, stream, end);
	ctl_segs_free(&ss);
	if (evbuffer_get_length(out) > CTL_OUT_HIGH)
		bufferevent_disable(cc->pair, EV_READ);
	else if (more)
		bufferevent_trigger(cc->pair, EV_READ,
		    BEV_TRIG_DEFER_CALLBACKS);
}

/*
 * An attach succeeded: where the stream starts for the tool, and, when
 * it asked to resume, whether it can.
 */
static void
ctl_attach_position(struct ctl_conn *cc, struct client *c)
{
	struct console	*con = c->console;
	struct ctl_sink	 s;
	uint64_t	 stream = 0, off = 0, start;
	char		*text = NULL;

	memset(&s, 0, sizeof s);
	s.conn = cc->id;
	cc->skipped = c->skipped;
	if (con == NULL)
		return;
	if (cluster_client_forwarded(c)) {
		/* The owner placed it (proto/PROTOCOL, Attach). */
		if (cluster_fwd_position(c, &stream, &off) == -1)
			stream = off = 0;
		if (cc->resume && stream != cc->resume_stream)
			text = xstrdup("stream changed: output from the new "
			    "start");
		else if (cc->resume) {
			xasprintf(&text, "resumed at offset %llu",
			    (unsigned long long)off);
			cc->resuming = 1;
		}
	} else {
		stream = c->stream != 0 ? c->stream : con->stream;
		start = ring_start(&con->history);
		off = c->off;
		if (!cc->resume)
			;
		else if ((con->flags & CONSOLE_HANDOVER) &&
		    cc->resume_stream != 0) {
			/*
			 * Ours since a vMotion whose history is still on its
			 * way: its stream is not known yet.  Hold the tool's
			 * place; the hand-over keeps it if the stream is the
			 * one the tool had (cluster_msg_handover), else the
			 * tool is told the stream changed.
			 */
			stream = c->stream = cc->resume_stream;
			off = cc->resume_off;
			xasprintf(&text, "resumed at offset %llu",
			    (unsigned long long)off);
		} else if (stream == cc->resume_stream &&
		    cc->resume_off >= start &&
		    cc->resume_off <= con->history.end) {
			off = cc->resume_off;
			xasprintf(&text, "resumed at offset %llu",
			    (unsigned long long)off);
		} else if (stream == cc->resume_stream &&
		    cc->resume_off < start) {
			xasprintf(&text, "%llu bytes are no longer in the "
			    "history", (unsigned long long)(start -
			    cc->resume_off));
			off = start;
		} else {
			text = xstrdup("stream changed: output from the new "
			    "start");
			off = start;
		}
		c->off = off;
	}
	cc->stream = stream;
	cc->next = off;
	if (text != NULL) {
		log_info("control: client %u: %s", c->id, text);
		ctl_send_text(&s, text);
		free(text);
	}
}

static void
ctl_detached(struct ctl_conn *cc, const char *why)
{
	Vspc__Ctl__Reply	 r = VSPC__CTL__REPLY__INIT;
	struct ctl_sink		 s;

	if (cc->pair != NULL) {
		bufferevent_free(cc->pair);
		cc->pair = NULL;
	}
	if (cc->c != NULL) {
		cc->c->proto_data = NULL;
		client_close(cc->c, why);
		cc->c = NULL;
	}
	memset(&s, 0, sizeof s);
	s.conn = cc->id;
	r.ok = 1;
	r.text = (char *)why;
	ctl_send(&s, &r);
}

/* The client's end of the pair closed: the tool is detached. */
void
ctl_pair_event(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_conn	*cc = arg;

	if (what & (BEV_EVENT_EOF|BEV_EVENT_ERROR)) {
		ctl_pair_read(bev, arg);
		ctl_detached(cc, "detached");
	}
}

/* Keys typed in an attached tool: to the console. */
void
ctl_client_input(struct client *c, const u_char *buf, size_t len)
{
	c->last_input = server_now;
	client_input_to_vm(c, buf, len);
}

static void
ctl_client_notice(struct client *c, const char *msg)
{
	ctl_frame_begin(c);
	client_write(c, msg, strlen(msg));
	ctl_frame_end(c);
}

static void
ctl_client_free(struct client *c)
{
	struct ctl_conn	*cc = c->proto_data;

	if (cc != NULL)
		cc->c = NULL;
	c->proto_data = NULL;
}

static void
ctl_client_attached(struct client *c, enum attach_result r, const char *why)
{
	struct ctl_conn		*cc = c->proto_data;
	struct console		*con = c->console;
	struct ctl_sink		 s;
	Vspc__Ctl__Reply	 rep = VSPC__CTL__REPLY__INIT;
	char			*text;

	if (cc == NULL || !cc->attaching)
		return;
	cc->attaching = 0;
	memset(&s, 0, sizeof s);
	s.conn = cc->id;
	switch (r) {
	case ATTACHED_WRITER:
	case ATTACHED_SPY:
	case ATTACHED_RO:
		break;
	default:
		ctl_error(&s, "%s", why != NULL ? why :
		    attach_result_string(r));
		if (cc->pair != NULL) {
			bufferevent_free(cc->pair);
			cc->pair = NULL;
		}
		cc->c = NULL;
		c->proto_data = NULL;
		client_close(c, "attach refused");
		return;
	}
	xasprintf(&text, "%s to %s (%s) on node %s as %s",
	    attach_result_string(r), con != NULL && con->name != NULL ?
	    con->name : "-", con != NULL ? con->key : "-", con != NULL ?
	    cluster_node_of(con) : "?", client_mode_name(c));
	rep.ok = 1;
	rep.more = 1;
	rep.text = text;
	ctl_send(&s, &rep);
	free(text);
	ctl_attach_position(cc, c);
	c->flags |= CLIENT_STREAM;
	client_flush(c);
}

/* ATTACH: make the connection a person on a console. */
void
ctl_attach(struct ctl_sink *s, struct ctl_conn *cc, Vspc__Ctl__Request *req)
{
	struct console		*con;
	struct client		*c;
	enum attach_mode	 mode = req->mode;
	enum attach_result	 r;
	int			 sv[2];

	if (cc == NULL) {
		ctl_error(s, "attach cannot be relayed");
		return;
	}
	if (cc->c != NULL || cc->attaching) {
		ctl_error(s, "already attached");
		return;
	}
	if (mode >= ATTACH_MAX) {
		ctl_error(s, "bad attach mode %u", mode);
		return;
	}
	if (cc->readonly) {
		if (mode != ATTACH_RO && mode != ATTACH_SPY) {
			ctl_error(s, "read-only control socket: attach with "
			    "--ro");
			return;
		}
		mode = ATTACH_RO;
	}
	if (server_draining) {
		ctl_error(s, "node %s is draining: no new attaches",
		    server_conf->node_id);
		return;
	}
	if (ctl_lookup(s, req->target, &con) == -1)
		return;
	cc->ro_console = 0;
	if (cc->tcp && server_auth != NULL) {
		char	uuid[UUID_STRLEN + 1];

		uuid_format(con->uuid, uuid);
		switch (auth_console_access(server_auth, cc->login, con->name,
		    con->key, uuid)) {
		case AUTH_NONE:
			log_warnx("control: %s@%s: attach to %s refused: no "
			    "access", cc->login, cc->user, con->key);
			ctl_error(s, "permission denied");
			return;
		case AUTH_RO:
			if (mode == ATTACH_FORCE || mode == ATTACH_EXCLUSIVE) {
				ctl_error(s, "permission denied: read-only "
				    "access");
				return;
			}
			mode = ATTACH_RO;
			cc->ro_console = 1;
			break;
		case AUTH_RW:
			break;
		}
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1) {
		ctl_error(s, "socketpair: %s", strerror(errno));
		return;
	}
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	evutil_make_socket_closeonexec(sv[0]);
	evutil_make_socket_closeonexec(sv[1]);
	c = client_create(sv[0], CLIENT_CONSOLE, &ctl_client_proto, NULL);
	c->proto_data = cc;
	/* 0xff doubled in output: messages are framed (ctl_pair_read). */
	c->flags |= CLIENT_ESCAPE;
	if (cc->tcp)
		snprintf(c->addr, sizeof c->addr, "%s", cc->user);
	else
		snprintf(c->addr, sizeof c->addr, "control[%ld]",
		    (long)cc->pid);
	c->user = xstrdup(cc->login != NULL ? cc->login : cc->user != NULL ?
	    cc->user : "-");
	cc->pstate = CTL_PS_DATA;
	if (cc->msg != NULL)
		evbuffer_drain(cc->msg, evbuffer_get_length(cc->msg));
	cc->resuming = 0;
	cc->resume = req->resume;
	cc->resume_stream = req->resume_stream;
	cc->resume_off = req->resume_offset;
	cc->c = c;
	cc->pair = bufferevent_socket_new(server_base, sv[1],
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(cc->pair, ctl_pair_read, NULL, ctl_pair_event, cc);
	bufferevent_enable(cc->pair, EV_READ|EV_WRITE);
	log_info("control: client %u (%s) attaching to %s", c->id, c->user,
	    con->key);
	cc->attaching = 1;
	if (req->resume && (con->flags & CONSOLE_REMOTE))
		r = cluster_attach_at(con, c, mode, req->resume_stream,
		    req->resume_offset);
	else
		r = console_attach(con, c, mode);
	if (r == ATTACH_PENDING)
		return;
	ctl_client_attached(c, r, NULL);
}

static void
ctl_replay_lines(const char *arg, long *n)
{
	*n = server_conf->console_replay_lines;
	if (arg != NULL && *arg != '\0') {
		*n = strtol(arg, NULL, 10);
		if (*n <= 0 || *n > 100000)
			*n = server_conf->console_replay_lines;
	}
}

/* An escape command of an attached tool (the console port's words). */
void
ctl_escape(struct ctl_conn *cc, const char *line)
{
	struct client	*c = cc->c;
	struct console	*con;
	char		*copy, *arg, *cmd, err[160];
	long		 n;
	int		 fwd, rc = 0;

	if (c == NULL || (con = c->console) == NULL)
		return;
	copy = xstrdup(line);
	arg = copy;
	while (isspace((u_char)*arg))
		arg++;
	cmd = strsep(&arg, " \t");
	fwd = cluster_client_forwarded(c);
	ctl_frame_begin(c);
	if ((cc->readonly || cc->ro_console) && (strcmp(cmd, "w") == 0 ||
	    strcmp(cmd, "write") == 0 || strcmp(cmd, "f") == 0 ||
	    strcmp(cmd, "force") == 0 || strcmp(cmd, "b") == 0 ||
	    strcmp(cmd, "break") == 0 || (cc->ro_console &&
	    (strcmp(cmd, "s") == 0 || strcmp(cmd, "spy") == 0)))) {
		client_printf(c, cc->ro_console ? "[permission denied: "
		    "read-only access]\r\n" : "[read-only control "
		    "socket]\r\n");
	} else if (*cmd == '\0' || strcmp(cmd, "c") == 0 ||
	    strcmp(cmd, "continue") == 0) {
		client_printf(c, "[continue]\r\n");
	} else if (strcmp(cmd, "d") == 0 || strcmp(cmd, "detach") == 0 ||
	    strcmp(cmd, "q") == 0 || strcmp(cmd, "quit") == 0) {
		ctl_detached(cc, "detached");
	} else if (strcmp(cmd, "s") == 0 || strcmp(cmd, "spy") == 0) {
		if (fwd)
			rc = cluster_fwd_mode(c, ATTACH_SPY, 0, 0);
		else
			console_set_mode(con, c, ATTACH_SPY, err, sizeof err);
		client_printf(c, "[spy]\r\n");
	} else if (strcmp(cmd, "w") == 0 || strcmp(cmd, "write") == 0 ||
	    strcmp(cmd, "f") == 0 || strcmp(cmd, "force") == 0) {
		enum attach_mode m = (*cmd == 'f') ? ATTACH_FORCE :
		    ATTACH_DEFAULT;

		if (fwd)
			rc = cluster_fwd_mode(c, m, 0, 0);
		else if (console_set_mode(con, c, m, err, sizeof err) == -1)
			client_printf(c, "[%s]\r\n", err);
		else
			client_printf(c, "[attached]\r\n");
	} else if (strcmp(cmd, "r") == 0 || strcmp(cmd, "replay") == 0) {
		ctl_replay_lines(arg, &n);
		if (fwd)
			rc = cluster_fwd_mode(c, ATTACH_DEFAULT, n, 0);
		else {
			client_printf(c, "[replay of the last %ld lines]\r\n",
			    n);
			console_replay(con, c, n);
			client_printf(c, "\r\n[end of replay]\r\n");
		}
	} else if (strcmp(cmd, "b") == 0 || strcmp(cmd, "break") == 0) {
		if (fwd)
			rc = cluster_fwd_mode(c, ATTACH_DEFAULT, 0, 1);
		else if (!(c->flags & CLIENT_WRITE))
			client_printf(c, "[only the writer can send a "
			    "break]\r\n");
		else {
			console_send_break(con);
			client_printf(c, "[break sent]\r\n");
		}
	} else if (strcmp(cmd, "who") == 0) {
		struct client	*o;

		if (fwd)
			client_printf(c, "[the console is on node %s: run "
			    "vspcctl who %s]\r\n", cluster_node_of(con),
			    con->key);
		else {
			TAILQ_FOREACH(o, &con->clients, centry) {
				client_printf(c, "%u %s@%s %s%s\r\n", o->id,
				    o->user != NULL ? o->user : "-", o->addr,
				    client_mode_name(o), o == c ? " (you)" :
				    "");
			}
		}
	} else
		client_printf(c, "[unknown command \"%s\"]\r\n", cmd);
	if (rc == -1)
		client_printf(c, "[the console's node cannot be reached]\r\n");
	if (cc->c == c)
		ctl_frame_end(c);
	free(copy);
}
