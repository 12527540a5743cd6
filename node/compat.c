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
 * The compatibility port: the two admin clients already in users' hands,
 * vSPC.py's vSPCClient and VMware's reference client, on one port.
 *
 * Detection: vSPCClient sends a pickle at once; VMware's client sends
 * nothing until offered IAC WILL 0xE9.  So a first byte within 200 ms
 * that is not IAC means vSPCClient; silence (or IAC) means VMware.
 *
 * vSPCClient (client-protocols.md section 1): pickles in, pickles out,
 * parsed by the restricted reader in pickle.c, until the seed data; then
 * telnet.  Our telnet negotiation and console output wait for the
 * client's first telnet bytes, because vSPCClient reads the pickles
 * through a buffered file and would lose anything sent right after the
 * seed.
 *
 * VMware (section 2): telnet with option 233; GET_VM_PORT_LIST and
 * VM_PORT_SET_CONNECTION subnegotiations; after VM_PORT_CONNECTED raw
 * data both ways.  Unlike VMware's server, a refusal or an unknown VM is
 * answered VM_PORT_DISCONNECTED.
 *
 * Input from the person goes to the VM through client_input_to_vm(),
 * which enforces the write permission the console granted.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "proto/handoff.pb-c.h"

#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof ((a)[0]))
#endif

#define COMPAT_DETECT_MS	200
#define COMPAT_VSPC_VERSION	3
#define COMPAT_SB_MAX		1024

enum compat_phase {
	COMPAT_DETECT,		/* Nothing received yet. */
	COMPAT_PY_VERSION,	/* vSPC.py: want the client's version. */
	COMPAT_PY_VM,		/* vSPC.py: want the VM name or None. */
	COMPAT_PY_LOCK,		/* vSPC.py: want the lock mode. */
	COMPAT_PY_WAIT,		/* vSPC.py: seed sent, want telnet. */
	COMPAT_PY_STREAM,	/* vSPC.py: telnet phase. */
	COMPAT_VMW,		/* VMware: option 233 commands. */
	COMPAT_DONE,		/* Answered; closing. */
	COMPAT_PHASE_MAX
};

struct compat {
	enum compat_phase	 phase;
	struct event		*timer;		/* Detection. */
	struct evbuffer		*in;		/* Pickle bytes to parse. */
	char			*vm;		/* Name asked, or NULL. */
	int			 list;		/* Asked for None. */
	int			 lock;		/* Index in compat_locks. */
	int			 pending;	/* Attach sent to another node. */
};

static void	compat_input(struct client *, const u_char *, size_t);
static void	compat_notice(struct client *, const char *);
static void	compat_free(struct client *);
static void	compat_detect_cb(evutil_socket_t, short, void *);
static void	compat_start_vmware(struct client *);
static void	compat_start_vspcpy(struct client *);
static void	compat_fail(struct client *, const char *);
static void	compat_send(struct client *, struct evbuffer *);
static void	compat_py_input(struct client *, const u_char *, size_t);
static int	compat_py_value(struct client *, struct pickle_value *);
static void	compat_py_answer(struct client *, struct pickle_value *);
static void	compat_py_list(struct client *, struct evbuffer *);
static void	compat_py_seed(struct client *, struct evbuffer *);
static void	compat_py_telnet(struct client *, const u_char *, size_t);
static void	compat_vmw_list(struct client *);
static void	compat_vmw_connect(struct client *, const u_char *, size_t);
static void	compat_vmw_reply(struct client *, u_char);
static void	compat_attached(struct client *, enum attach_result,
		    const char *);
static void	compat_py_attached(struct client *, enum attach_result);
static void	compat_tn_data(void *, const u_char *, size_t);
static void	compat_tn_sb(void *, u_char, const u_char *, size_t);
static void	compat_tn_command(void *, u_char);
static void	compat_tn_output(void *, const u_char *, size_t);

static size_t	compat_handoff_pack(struct client *, uint8_t **);
static int	compat_handoff_unpack(struct client *, const uint8_t *, size_t);

const struct client_proto compat_proto = {
	.name = "compat",
	.input = compat_input,
	.notice = compat_notice,
	.free = compat_free,
	.attached = compat_attached,
	.handoff_pack = compat_handoff_pack,
	.handoff_unpack = compat_handoff_unpack
};

static const struct telnet_ops compat_telnet_ops = {
	compat_tn_data,
	compat_tn_sb,
	NULL,
	compat_tn_command,
	compat_tn_output
};

/* vSPC.py lock strings and how they map onto attach modes. */
static const struct {
	const char		*name;
	enum attach_mode	 mode;
} compat_locks[] = {
	{ "exclusive",			ATTACH_EXCLUSIVE },
	{ "write",			ATTACH_WRITELOCK },
	{ "free_for_all",		ATTACH_SHARED },
	{ "free_for_all_or_readonly",	ATTACH_SHARED_OR_RO },
};
#define COMPAT_LOCK_RO		"free_for_all_or_readonly"

/* VMware lock mode bytes (vspc/lock.py). */
static const struct {
	u_char			 byte;
	enum attach_mode	 mode;
} compat_vmw_modes[] = {
	{ 0x00, ATTACH_SHARED },	/* READWRITE */
	{ 0x01, ATTACH_RO },		/* READONLY */
	{ 0x10, ATTACH_EXCLUSIVE },	/* EXCLUSIVE */
	{ 0x11, ATTACH_WRITELOCK },	/* EXCL_WRITE */
	{ 0x20, ATTACH_SHARED_OR_RO },	/* READONLY_OK */
};

static int
compat_dead(struct client *c)
{
	return ((c->flags & (CLIENT_DEAD|CLIENT_CLOSING)) != 0);
}

/* A connection on the compatibility port. */
void
compat_accept(int fd, const struct sockaddr *sa)
{
	struct client	*c;
	struct compat	*cp;
	struct timeval	 tv = { 0, COMPAT_DETECT_MS * 1000 };

	c = client_create(fd, CLIENT_DETECT, &compat_proto, sa);
	cp = xcalloc(1, sizeof *cp);
	cp->phase = COMPAT_DETECT;
	cp->timer = evtimer_new(server_base, compat_detect_cb, c);
	if (cp->timer == NULL)
		fatalx("compat: evtimer_new failed");
	evtimer_add(cp->timer, &tv);
	c->proto_data = cp;
	log_debug("compat %s: client %u connected", c->addr, c->id);
}

static void
compat_free(struct client *c)
{
	struct compat	*cp = c->proto_data;

	if (cp == NULL)
		return;
	if (cp->timer != NULL)
		event_free(cp->timer);
	if (cp->in != NULL)
		evbuffer_free(cp->in);
	free(cp->vm);
	free(cp);
	c->proto_data = NULL;
}

/* Console events reach the person only once the data flows. */
static void
compat_notice(struct client *c, const char *msg)
{
	struct compat	*cp = c->proto_data;

	if (cp->phase != COMPAT_PY_STREAM &&
	    !(cp->phase == COMPAT_VMW && (c->flags & CLIENT_STREAM)))
		return;
	client_printf(c, "\r\n[-- %s --]\r\n", msg);
}

/* Silence for the detection time: a VMware client waits for our offer. */
static void
compat_detect_cb(evutil_socket_t fd, short events, void *arg)
{
	struct client	*c = arg;
	struct compat	*cp = c->proto_data;

	if (compat_dead(c) || cp->phase != COMPAT_DETECT)
		return;
	compat_start_vmware(c);
}

static void
compat_start_vmware(struct client *c)
{
	struct compat	*cp = c->proto_data;

	evtimer_del(cp->timer);
	cp->phase = COMPAT_VMW;
	c->kind = CLIENT_VMWARE;
	telnet_init(&c->tn, &compat_telnet_ops, c,
	    TELNET_MASK(TOI_VSPCADMIN), 0, COMPAT_SB_MAX);
	telnet_request(&c->tn, TELOPT_VSPCADMIN, 0, 1);
	log_debug("compat %s: client %u speaks VMware's protocol", c->addr,
	    c->id);
}

static void
compat_start_vspcpy(struct client *c)
{
	struct compat	*cp = c->proto_data;

	evtimer_del(cp->timer);
	cp->phase = COMPAT_PY_VERSION;
	c->kind = CLIENT_VSPCPY;
	cp->in = evbuffer_new();
	if (cp->in == NULL)
		fatalx("compat: evbuffer_new failed");
	log_debug("compat %s: client %u speaks vSPC.py's protocol", c->addr,
	    c->id);
}

static void
compat_input(struct client *c, const u_char *buf, size_t len)
{
	struct compat	*cp = c->proto_data;

	if (compat_dead(c) || len == 0)
		return;
	if (cp->phase == COMPAT_DETECT) {
		if (buf[0] == TEL_IAC)
			compat_start_vmware(c);
		else
			compat_start_vspcpy(c);
	}
	switch (cp->phase) {
	case COMPAT_PY_VERSION:
	case COMPAT_PY_VM:
	case COMPAT_PY_LOCK:
		compat_py_input(c, buf, len);
		break;
	case COMPAT_PY_WAIT:
	case COMPAT_PY_STREAM:
		compat_py_telnet(c, buf, len);
		break;
	case COMPAT_VMW:
		if (telnet_input(&c->tn, buf, len) == -1)
			compat_fail(c, c->tn.error);
		break;
	default:
		/* Answered and closing: whatever else comes is dropped. */
		break;
	}
}

/* A protocol error: log it and close. */
static void
compat_fail(struct client *c, const char *why)
{
	struct compat	*cp = c->proto_data;

	log_warnx("compat %s: client %u: %s", c->addr, c->id, why);
	cp->phase = COMPAT_DONE;
	c->tn.stop = 1;
	client_close(c, why);
}

/* Queue an evbuffer's contents to the client and free it. */
static void
compat_send(struct client *c, struct evbuffer *evb)
{
	size_t	 n;

	n = evbuffer_get_length(evb);
	if (n != 0)
		client_write(c, evbuffer_pullup(evb, -1), n);
	evbuffer_free(evb);
}

static void
compat_py_input(struct client *c, const u_char *buf, size_t len)
{
	struct compat		*cp = c->proto_data;
	struct pickle_value	 v;
	const char		*err;
	ssize_t			 n;
	size_t			 have;
	u_char			*rest;

	evbuffer_add(cp->in, buf, len);
	while (!compat_dead(c) && (cp->phase == COMPAT_PY_VERSION ||
	    cp->phase == COMPAT_PY_VM || cp->phase == COMPAT_PY_LOCK)) {
		have = evbuffer_get_length(cp->in);
		if (have == 0)
			return;
		n = pickle_parse(evbuffer_pullup(cp->in, -1), have, &v, &err);
		if (n == 0)
			return;
		if (n < 0) {
			compat_fail(c, err);
			return;
		}
		evbuffer_drain(cp->in, n);
		if (compat_py_value(c, &v) == -1) {
			pickle_value_free(&v);
			return;
		}
		pickle_value_free(&v);
	}

	/* Bytes after the last pickle are the start of the telnet phase. */
	if (cp->phase == COMPAT_PY_WAIT && !compat_dead(c) &&
	    (have = evbuffer_get_length(cp->in)) != 0) {
		rest = xmalloc(have);
		evbuffer_remove(cp->in, rest, have);
		compat_py_telnet(c, rest, have);
		free(rest);
	}
}

/* One pickled value in the query phase; -1 if the client is closing. */
static int
compat_py_value(struct client *c, struct pickle_value *v)
{
	struct compat	*cp = c->proto_data;
	struct evbuffer	*evb;

	switch (cp->phase) {
	case COMPAT_PY_VERSION:
		if (v->type != PICKLE_INT || v->i < COMPAT_VSPC_VERSION) {
			evb = evbuffer_new();
			if (evb == NULL)
				fatalx("compat: evbuffer_new failed");
			pickle_put_exception(evb, v->type != PICKLE_INT ?
			    "I don't understand" : "No common version");
			compat_send(c, evb);
			log_warnx("compat %s: client %u: unsupported version",
			    c->addr, c->id);
			cp->phase = COMPAT_DONE;
			client_close(c, "unsupported version");
			return (-1);
		}
		evb = evbuffer_new();
		if (evb == NULL)
			fatalx("compat: evbuffer_new failed");
		pickle_put_int(evb, COMPAT_VSPC_VERSION);
		compat_send(c, evb);
		cp->phase = COMPAT_PY_VM;
		return (0);
	case COMPAT_PY_VM:
		/* vSPC.py looks anything up; only a string can match. */
		free(cp->vm);
		cp->vm = NULL;
		cp->list = (v->type == PICKLE_NONE);
		if (v->type == PICKLE_STR && memchr(v->s, '\0', v->len) == NULL)
			cp->vm = xstrndup(v->s, v->len);
		cp->phase = COMPAT_PY_LOCK;
		return (0);
	case COMPAT_PY_LOCK:
		compat_py_answer(c, v);
		return (compat_dead(c) ? -1 : 0);
	default:
		return (0);
	}
}

/* The VM name and lock mode are in: list, refuse, or attach. */
static void
compat_py_answer(struct client *c, struct pickle_value *v)
{
	struct compat		*cp = c->proto_data;
	struct console		*con = NULL;
	struct evbuffer		*evb;
	enum attach_mode	 mode = ATTACH_DEFAULT;
	enum attach_result	 r;
	char			*err;
	size_t			 i;
	int			 known = 0;

	evb = evbuffer_new();
	if (evb == NULL)
		fatalx("compat: evbuffer_new failed");

	if (cp->vm != NULL && console_lookup(cp->vm, &con, &err) == -1) {
		log_info("compat %s: client %u: %s", c->addr, c->id, err);
		free(err);
		con = NULL;
	}
	if (con == NULL) {
		pickle_put_str(evb, "vm_not_found", 12);
		compat_py_list(c, evb);
		compat_send(c, evb);
		cp->phase = COMPAT_DONE;
		client_close(c, cp->list ? "listed" : "VM not found");
		return;
	}

	if (v->type == PICKLE_STR) {
		for (i = 0; i < nitems(compat_locks); i++) {
			if (strlen(compat_locks[i].name) == v->len &&
			    memcmp(compat_locks[i].name, v->s, v->len) == 0) {
				mode = compat_locks[i].mode;
				known = 1;
				break;
			}
		}
	}
	if (!known) {
		pickle_put_str(evb, "lock_invalid", 12);
		compat_send(c, evb);
		cp->phase = COMPAT_DONE;
		client_close(c, "invalid lock mode");
		return;
	}

	cp->lock = i;
	/* Console output waits for the telnet phase (see compat_py_telnet). */
	c->flags |= CLIENT_NOCREDIT;
	evbuffer_free(evb);
	cp->pending = 1;	/* The answer may come before this returns. */
	r = console_attach(con, c, mode);
	if (r == ATTACH_PENDING)
		return;
	cp->pending = 0;
	compat_py_attached(c, r);
}

/* The vSPC.py client's attach was decided (here or by another node). */
static void
compat_py_attached(struct client *c, enum attach_result r)
{
	struct compat		*cp = c->proto_data;
	struct evbuffer		*evb;
	const char		*applied;
	int			 i = cp->lock;

	evb = evbuffer_new();
	if (evb == NULL)
		fatalx("compat: evbuffer_new failed");
	if (r != ATTACHED_WRITER && r != ATTACHED_SPY && r != ATTACHED_RO) {
		log_info("compat %s: client %u: %s", c->addr, c->id,
		    attach_result_string(r));
		pickle_put_str(evb, "lock_failed", 11);
		compat_send(c, evb);
		cp->phase = COMPAT_DONE;
		client_close(c, attach_result_string(r));
		return;
	}

	/*
	 * What vSPCClient is told, as vSPC.py does: the lock it got, except
	 * that the fallback mode granted as a writer is "free_for_all" and
	 * read-only is always "free_for_all_or_readonly".
	 */
	if (r != ATTACHED_WRITER)
		applied = COMPAT_LOCK_RO;
	else if (compat_locks[i].mode == ATTACH_SHARED_OR_RO)
		applied = "free_for_all";
	else
		applied = compat_locks[i].name;
	pickle_put_str(evb, "vm_found", 8);
	pickle_put_str(evb, applied, strlen(applied));
	if (cluster_client_forwarded(c)) {
		struct evbuffer	*seed = cluster_fwd_seed(c);

		/* The owner sent the replay with its answer. */
		if (seed != NULL) {
			pickle_put_str_lossy(evb, evbuffer_pullup(seed, -1),
			    evbuffer_get_length(seed));
			evbuffer_free(seed);
		} else
			pickle_put_str(evb, "", 0);
	} else
		compat_py_seed(c, evb);
	compat_send(c, evb);
	cp->phase = COMPAT_PY_WAIT;
}

/* An attach to a console on another node was answered. */
static void
compat_attached(struct client *c, enum attach_result r, const char *why)
{
	struct compat	*cp = c->proto_data;

	if (cp == NULL || !cp->pending)
		return;
	cp->pending = 0;
	if (why != NULL)
		log_info("compat %s: client %u: %s", c->addr, c->id, why);
	if (c->kind == CLIENT_VSPCPY) {
		compat_py_attached(c, r);
		return;
	}
	if (r != ATTACHED_WRITER && r != ATTACHED_SPY && r != ATTACHED_RO) {
		compat_vmw_reply(c, VSPCADM_VM_PORT_DISCONNECTED);
		return;
	}
	compat_vmw_reply(c, VSPCADM_VM_PORT_CONNECTED);
	c->flags |= CLIENT_STREAM|CLIENT_ESCAPE;
	client_flush(c);
}

/* Append the count and one dict per console. */
static void
compat_py_list(struct client *c, struct evbuffer *evb)
{
	struct console	*con;
	char		 uuid[34], *id;
	long long	 n = 0;

	TAILQ_FOREACH(con, &all_consoles, gentry)
		n++;
	pickle_put_int(evb, n);
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		uuid_format_vspcpy(con->uuid, uuid);
		if (con->label != NULL)
			xasprintf(&id, "%s.%s", uuid, con->label);
		else
			id = xstrdup(uuid);
		pickle_put_vm(evb, con->name != NULL ? con->name : con->key,
		    id, -1);
		free(id);
	}
}

/*
 * The seed: history from the replay point to the end, as a str.  It is
 * capped so that it fits the client's output buffer (UTF-8 repair may
 * triple it); the newest bytes are kept.
 */
static void
compat_py_seed(struct client *c, struct evbuffer *evb)
{
	struct ring	*h = &c->console->history;
	uint64_t	 off = c->off;
	size_t		 len, max;
	u_char		*buf;

	if (off < ring_start(h))
		off = ring_start(h);
	len = off < h->end ? h->end - off : 0;
	max = server_conf->console_client_buffer / 4;
	if (max != 0 && len > max) {
		off += len - max;
		len = max;
	}
	if (len == 0) {
		pickle_put_str_lossy(evb, (const u_char *)"", 0);
		c->off = h->end;
		return;
	}
	buf = xmalloc(len);
	len = ring_copy(h, off, buf, len);
	pickle_put_str_lossy(evb, buf, len);
	free(buf);
	c->off = h->end;
}

/* Telnet bytes from vSPCClient; the first ones start the data flow. */
static void
compat_py_telnet(struct client *c, const u_char *buf, size_t len)
{
	struct compat	*cp = c->proto_data;

	if (cp->phase == COMPAT_PY_WAIT) {
		/* vSPC.py's server options: BINARY, SGA, ECHO; client's:
		 * BINARY, SGA.  Sent before the client's bytes are decoded,
		 * so that its requests become answers to ours. */
		telnet_init(&c->tn, &compat_telnet_ops, c,
		    TELNET_MASK(TOI_BINARY)|TELNET_MASK(TOI_SGA)|
		    TELNET_MASK(TOI_ECHO),
		    TELNET_MASK(TOI_BINARY)|TELNET_MASK(TOI_SGA),
		    COMPAT_SB_MAX);
		telnet_request(&c->tn, TELOPT_BINARY, 0, 1);
		telnet_request(&c->tn, TELOPT_SGA, 0, 1);
		telnet_request(&c->tn, TELOPT_ECHO, 0, 1);
		telnet_request(&c->tn, TELOPT_BINARY, 1, 1);
		telnet_request(&c->tn, TELOPT_SGA, 1, 1);
		cp->phase = COMPAT_PY_STREAM;
		if (cp->in != NULL) {
			evbuffer_free(cp->in);
			cp->in = NULL;
		}
		if (compat_dead(c))
			return;
		c->flags |= CLIENT_STREAM|CLIENT_ESCAPE;
		c->flags &= ~CLIENT_NOCREDIT;
		cluster_fwd_grant(c);
		client_flush(c);
		if (compat_dead(c))
			return;
	}
	if (telnet_input(&c->tn, buf, len) == -1)
		compat_fail(c, c->tn.error);
}

/* Reply with a bare VMware admin sub-command. */
static void
compat_vmw_reply(struct client *c, u_char cmd)
{
	telnet_send_sb(&c->tn, TELOPT_VSPCADMIN, cmd, NULL, 0);
}

/* VM_PORT_LIST: "id\0name\0uri" per console, joined by NUL. */
static void
compat_vmw_list(struct client *c)
{
	struct console	*con;
	struct evbuffer	*evb;
	char		 hex[33];
	const char	*name;
	int		 first = 1;

	evb = evbuffer_new();
	if (evb == NULL)
		fatalx("compat: evbuffer_new failed");
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		uuid_format_hex(con->uuid, hex, 1);
		name = con->name != NULL ? con->name : "";
		if (!first)
			evbuffer_add(evb, "", 1);
		first = 0;
		if (con->label != NULL)
			evbuffer_add_printf(evb, "%s.%s", hex, con->label);
		else
			evbuffer_add(evb, hex, 32);
		evbuffer_add(evb, "", 1);
		evbuffer_add(evb, name, strlen(name));
		evbuffer_add(evb, "", 1);	/* And an empty URI. */
	}
	telnet_send_sb(&c->tn, TELOPT_VSPCADMIN, VSPCADM_VM_PORT_LIST,
	    evbuffer_pullup(evb, -1), evbuffer_get_length(evb));
	evbuffer_free(evb);
}

/* VM_PORT_SET_CONNECTION: mode byte and VM port id; empty to detach. */
static void
compat_vmw_connect(struct client *c, const u_char *p, size_t len)
{
	struct console		*con;
	enum attach_mode	 mode = ATTACH_DEFAULT;
	enum attach_result	 r;
	char			*id, *err;
	size_t			 i;
	int			 known = 0;

	if (len == 0) {
		if (c->console != NULL)
			console_detach(c->console, c, "detached");
		compat_vmw_reply(c, VSPCADM_VM_PORT_DISCONNECTED);
		return;
	}
	for (i = 0; i < nitems(compat_vmw_modes); i++) {
		if (compat_vmw_modes[i].byte == p[0]) {
			mode = compat_vmw_modes[i].mode;
			known = 1;
			break;
		}
	}
	if (!known || len < 2 || memchr(p + 1, '\0', len - 1) != NULL) {
		log_info("compat %s: client %u: bad VM_PORT_SET_CONNECTION",
		    c->addr, c->id);
		compat_vmw_reply(c, VSPCADM_VM_PORT_DISCONNECTED);
		return;
	}
	id = xstrndup((const char *)p + 1, len - 1);
	if (console_lookup(id, &con, &err) == -1) {
		log_info("compat %s: client %u: %s", c->addr, c->id, err);
		free(err);
		free(id);
		compat_vmw_reply(c, VSPCADM_VM_PORT_DISCONNECTED);
		return;
	}
	free(id);
	if (c->console != NULL && c->console != con)
		console_detach(c->console, c, "switched");
	c->flags |= CLIENT_ESCAPE;
	((struct compat *)c->proto_data)->pending = 1;
	r = console_attach(con, c, mode);
	if (r == ATTACH_PENDING)
		return;
	((struct compat *)c->proto_data)->pending = 0;
	if (r != ATTACHED_WRITER && r != ATTACHED_SPY && r != ATTACHED_RO) {
		log_info("compat %s: client %u: console %s: %s", c->addr,
		    c->id, con->key, attach_result_string(r));
		compat_vmw_reply(c, VSPCADM_VM_PORT_DISCONNECTED);
		return;
	}
	compat_vmw_reply(c, VSPCADM_VM_PORT_CONNECTED);
	c->flags |= CLIENT_STREAM|CLIENT_ESCAPE;
	client_flush(c);
}

static void
compat_tn_data(void *arg, const u_char *buf, size_t len)
{
	struct client	*c = arg;

	/* VMware's client sends data only once connected. */
	if (c->console != NULL)
		client_input_to_vm(c, buf, len);
}

static void
compat_tn_sb(void *arg, u_char opt, const u_char *buf, size_t len)
{
	struct client	*c = arg;
	struct compat	*cp = c->proto_data;

	if (cp->phase != COMPAT_VMW || opt != TELOPT_VSPCADMIN) {
		log_debug("compat %s: client %u: subnegotiation %u ignored",
		    c->addr, c->id, opt);
		return;
	}
	if (len == 0) {
		compat_fail(c, "empty VMware admin subnegotiation");
		return;
	}
	switch (buf[0]) {
	case VSPCADM_GET_VM_PORT_LIST:
		if (len != 1) {
			compat_fail(c, "GET_VM_PORT_LIST with a payload");
			return;
		}
		compat_vmw_list(c);
		break;
	case VSPCADM_VM_PORT_SET_CONNECTION:
		compat_vmw_connect(c, buf + 1, len - 1);
		break;
	default:
		compat_fail(c, "unknown VMware admin command");
		break;
	}
}

static void
compat_tn_command(void *arg, u_char cmd)
{
	struct client	*c = arg;

	if (cmd == TEL_BRK && c->console != NULL &&
	    (c->flags & CLIENT_WRITE))
		console_send_break(c->console);
}

static void
compat_tn_output(void *arg, const u_char *buf, size_t len)
{
	client_write(arg, buf, len);
}

/*
 * Hot upgrade: the phase, the pickle bytes not parsed yet and the
 * answers given so far.  A client still being detected starts its
 * detection time again.
 */
static size_t
compat_handoff_pack(struct client *c, uint8_t **out)
{
	struct compat		*cp = c->proto_data;
	Vspc__Handoff__Compat	 m = VSPC__HANDOFF__COMPAT__INIT;
	uint64_t		 extra[3];
	size_t			 len;

	if (cp == NULL) {
		*out = NULL;
		return (0);
	}
	m.state = cp->phase;
	if (cp->in != NULL) {
		m.flags |= 1;
		handoff_evbuffer_bytes(cp->in, &m.in);
	}
	if (cp->vm != NULL) {
		m.flags |= 2;
		m.raw.data = (uint8_t *)cp->vm;
		m.raw.len = strlen(cp->vm);
	}
	extra[0] = cp->list;
	extra[1] = (uint64_t)(int64_t)cp->lock;
	extra[2] = cp->pending;
	m.extra = extra;
	m.n_extra = 3;
	len = vspc__handoff__compat__get_packed_size(&m);
	*out = xmalloc(len + 1);
	vspc__handoff__compat__pack(&m, *out);
	free(m.in.data);
	return (len);
}

/* Hot upgrade: rebuild a compatibility-port client's state. */
static int
compat_handoff_unpack(struct client *c, const uint8_t *data, size_t len)
{
	Vspc__Handoff__Compat	*m;
	struct compat		*cp;
	struct timeval		 tv = { 0, COMPAT_DETECT_MS * 1000 };

	if ((m = vspc__handoff__compat__unpack(NULL, len, data)) == NULL)
		return (-1);
	cp = xcalloc(1, sizeof *cp);
	cp->phase = m->state < COMPAT_PHASE_MAX ? m->state : COMPAT_DONE;
	cp->timer = evtimer_new(server_base, compat_detect_cb, c);
	if (cp->phase == COMPAT_DETECT)
		evtimer_add(cp->timer, &tv);
	if (m->flags & 1) {
		cp->in = evbuffer_new();
		evbuffer_add(cp->in, m->in.data, m->in.len);
	}
	if (m->flags & 2)
		cp->vm = xstrndup((const char *)m->raw.data, m->raw.len);
	if (m->n_extra >= 3) {
		cp->list = m->extra[0];
		cp->lock = (int)(int64_t)m->extra[1];
		cp->pending = m->extra[2];
	}
	c->proto_data = cp;
	telnet_init(&c->tn, &compat_telnet_ops, c, 0, 0, COMPAT_SB_MAX);
	vspc__handoff__compat__free_unpacked(m, NULL);
	return (0);
}
