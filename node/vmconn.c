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
 * Connections from ESXi hosts: telnet with the VMware extension (option
 * 232), exactly as real ESXi expects it.
 *
 * On accept the node offers WILL BINARY, WILL SGA, WILL ECHO, DO BINARY,
 * DO SGA and DO 232, refuses AUTHENTICATION and COM-PORT, sends
 * KNOWN-SUBOPTIONS-2 once 232 is on and asks for the VC UUID and name
 * after KNOWN-SUBOPTIONS-1.  A connection is bound to its console once
 * DO-PROXY was accepted and the UUID and name are known; a vMotion
 * destination is bound by its PEER token instead (vmotion.c).  VM data
 * that arrives before binding is held (reading pauses above [vm] hold).
 *
 * Output is written straight to the socket; only what the socket does
 * not take is buffered, so an idle connection holds no buffer.
 */

#include <netinet/tcp.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "store.h"

struct vmconns		 all_vmconns = TAILQ_HEAD_INITIALIZER(all_vmconns);
u_int			 nvmconns;
static struct vmconns	 dead_vmconns = TAILQ_HEAD_INITIALIZER(dead_vmconns);
static u_int		 vmconn_next_id;

/* Sub-commands we support, as sent in KNOWN-SUBOPTIONS-2. */
static const u_char vmconn_known[] = {
	VMW_KNOWN_SUBOPTIONS_1, VMW_KNOWN_SUBOPTIONS_2,
	VMW_UNKNOWN_SUBOPTION_RCVD_1, VMW_UNKNOWN_SUBOPTION_RCVD_2,
	VMW_VMOTION_BEGIN, VMW_VMOTION_GOAHEAD, VMW_VMOTION_NOTNOW,
	VMW_VMOTION_PEER, VMW_VMOTION_PEER_OK, VMW_VMOTION_COMPLETE,
	VMW_VMOTION_ABORT, VMW_DO_PROXY, VMW_WILL_PROXY, VMW_WONT_PROXY,
	VMW_VM_VC_UUID, VMW_GET_VM_VC_UUID, VMW_VM_NAME, VMW_GET_VM_NAME
};

static const char vmconn_not_esxi[] = "This is a VMware virtual serial port "
    "concentrator; people use the console port.\r\n";

static void	vmconn_read_cb(evutil_socket_t, short, void *);
static void	vmconn_reap_later(void);
static void	vmconn_write_cb(evutil_socket_t, short, void *);
static void	vmconn_uncork(struct vmconn *);
static void	vmconn_timeout_cb(evutil_socket_t, short, void *);
static void	vmconn_tn_data(void *, const u_char *, size_t);
static void	vmconn_tn_sb(void *, u_char, const u_char *, size_t);
static void	vmconn_tn_option(void *, u_char, int, int);
static void	vmconn_tn_command(void *, u_char);
static void	vmconn_tn_output(void *, const u_char *, size_t);

static const struct telnet_ops vmconn_telnet_ops = {
	vmconn_tn_data,
	vmconn_tn_sb,
	vmconn_tn_option,
	vmconn_tn_command,
	vmconn_tn_output
};

static const char *
vmconn_name(const struct vmconn *v)
{
	static char	buf[128];

	if (v->console != NULL)
		snprintf(buf, sizeof buf, "vm %s conn %u", v->console->name !=
		    NULL ? v->console->name : v->console->key, v->id);
	else
		snprintf(buf, sizeof buf, "vm conn %u %s", v->id, v->addr);
	return (buf);
}

/* Start serving an accepted ESXi connection. */
struct vmconn *
vmconn_create(int fd, const struct sockaddr *sa)
{
	struct vmconn	*v;
	struct timeval	 tv;
	int		 one = 1;

	v = xcalloc(1, sizeof *v);
	v->id = ++vmconn_next_id;
	v->fd = fd;
	v->role = VMCONN_UNBOUND;
	v->created = server_now;
	/* The slot server-listen.c took for this connection. */
	v->limit = server_accept_slot;
	server_accept_slot = NULL;
	addr_fmt(sa, v->addr, sizeof v->addr);
	v->ev_read = event_new(server_base, fd, EV_READ|EV_PERSIST,
	    vmconn_read_cb, v);
	event_add(v->ev_read, NULL);
	if (server_conf->vm_negotiation_timeout != 0) {
		v->ev_timeout = evtimer_new(server_base, vmconn_timeout_cb, v);
		tv.tv_sec = server_conf->vm_negotiation_timeout;
		tv.tv_usec = 0;
		evtimer_add(v->ev_timeout, &tv);
	}
	TAILQ_INSERT_TAIL(&all_vmconns, v, gentry);
	nvmconns++;
	server_stats.vm_accepted++;

	telnet_init(&v->tn, &vmconn_telnet_ops, v,
	    TELNET_MASK(TOI_BINARY)|TELNET_MASK(TOI_SGA)|TELNET_MASK(TOI_ECHO),
	    TELNET_MASK(TOI_BINARY)|TELNET_MASK(TOI_SGA)|
	    TELNET_MASK(TOI_VMWARE), server_conf->vm_sb_max);
	/* The offer goes out in one segment, and small replies at once. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	v->flags |= VMCONN_CORK;
	telnet_request(&v->tn, TELOPT_BINARY, 0, 1);
	telnet_request(&v->tn, TELOPT_SGA, 0, 1);
	telnet_request(&v->tn, TELOPT_ECHO, 0, 1);
	telnet_request(&v->tn, TELOPT_BINARY, 1, 1);
	telnet_request(&v->tn, TELOPT_SGA, 1, 1);
	telnet_request(&v->tn, TELOPT_VMWARE, 1, 1);
	vmconn_uncork(v);
	log_debug("%s: connected", vmconn_name(v));
	return (v);
}

/* The connection is bound (or refused): no more negotiation timeout. */
static void
vmconn_settled(struct vmconn *v)
{
	if (v->ev_timeout != NULL) {
		event_free(v->ev_timeout);
		v->ev_timeout = NULL;
	}
}

/*
 * Close a connection.  Its console learns of it first: a vMotion source
 * closing before COMPLETE (what ESXi does) keeps the console.
 */
void
vmconn_close(struct vmconn *v, const char *reason)
{
	struct console	*con = v->console;

	if (v->flags & VMCONN_DEAD)
		return;
	v->flags |= VMCONN_DEAD;
	/* Bytes after these in the same read are not acted upon. */
	v->tn.stop = 1;
	if (con != NULL && v->role != VMCONN_RETIRED) {
		log_info("%s: closed: %s", vmconn_name(v), reason);
		console_vm_gone(con, v);
	} else
		log_debug("%s: closed: %s", vmconn_name(v), reason);
	v->console = NULL;
	event_del(v->ev_read);
	if (v->ev_write != NULL)
		event_del(v->ev_write);
	vmconn_settled(v);
	TAILQ_INSERT_TAIL(&dead_vmconns, v, dentry);
	vmconn_reap_later();
}

/* Free dead connections at the end of this loop turn. */
static struct event	*vmconn_reaper;

static void
vmconn_reap_cb(evutil_socket_t fd, short events, void *arg)
{
	vmconn_reap(NULL);
}

static void
vmconn_reap_later(void)
{
	if (vmconn_reaper == NULL)
		vmconn_reaper = event_new(server_base, -1, 0, vmconn_reap_cb,
		    NULL);
	if (!event_pending(vmconn_reaper, EV_TIMEOUT, NULL))
		event_active(vmconn_reaper, EV_TIMEOUT, 0);
}

/* At exit: the dead are gone, and so is the reaper. */
void
vmconn_reap_stop(void)
{
	vmconn_reap(NULL);
	if (vmconn_reaper != NULL)
		event_free(vmconn_reaper);
	vmconn_reaper = NULL;
}

/* Free dead connections (once per loop turn, and only once unused). */
void
vmconn_reap(struct vmconn *unused)
{
	struct vmconn	*v, *v1;

	TAILQ_FOREACH_SAFE(v, &dead_vmconns, dentry, v1) {
		if (v->references != 0)
			continue;
		TAILQ_REMOVE(&dead_vmconns, v, dentry);
		TAILQ_REMOVE(&all_vmconns, v, gentry);
		nvmconns--;
		event_free(v->ev_read);
		if (v->ev_write != NULL)
			event_free(v->ev_write);
		if (v->out != NULL)
			evbuffer_free(v->out);
		if (v->held != NULL)
			evbuffer_free(v->held);
		telnet_free(&v->tn);
		close(v->fd);
		free(v->name);
		free(v->uri);
		free(v->label);
		limit_put(v->limit);
		free(v);
	}
}

/* Bytes queued to the VM and not yet taken by the socket. */
size_t
vmconn_pending(const struct vmconn *v)
{
	return (v->out != NULL ? evbuffer_get_length(v->out) : 0);
}

/* Write raw (already telnet-encoded) bytes to the host. */
static void
vmconn_write_raw(struct vmconn *v, const u_char *buf, size_t len)
{
	ssize_t	n;

	if (v->flags & VMCONN_DEAD || len == 0)
		return;
	if (vmconn_pending(v) == 0 && !(v->flags & VMCONN_CORK)) {
		do {
			n = write(v->fd, buf, len);
		} while (n == -1 && errno == EINTR);
		if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
			vmconn_close(v, strerror(errno));
			return;
		}
		if (n > 0) {
			v->bytes_out += n;
			server_stats.vm_bytes_out += n;
			buf += n;
			len -= n;
		}
		if (len == 0)
			return;
	}
	if (v->out == NULL)
		v->out = evbuffer_new();
	evbuffer_add(v->out, buf, len);
	if (v->flags & VMCONN_CORK)
		return;
	if (v->ev_write == NULL)
		v->ev_write = event_new(server_base, v->fd, EV_WRITE,
		    vmconn_write_cb, v);
	if (!(v->flags & VMCONN_WRITE_WAIT)) {
		v->flags |= VMCONN_WRITE_WAIT;
		event_add(v->ev_write, NULL);
	}
}

/* Send what was queued while corked, in as few writes as possible. */
static void
vmconn_uncork(struct vmconn *v)
{
	v->flags &= ~VMCONN_CORK;
	if (vmconn_pending(v) != 0 && !(v->flags & VMCONN_WRITE_WAIT))
		vmconn_write_cb(v->fd, EV_WRITE, v);
}

static void
vmconn_write_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vmconn	*v = arg;
	int		 n;

	v->flags &= ~VMCONN_WRITE_WAIT;
	if (v->flags & VMCONN_DEAD)
		return;
	while (vmconn_pending(v) != 0) {
		n = evbuffer_write(v->out, fd);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			vmconn_close(v, strerror(errno));
			return;
		}
		v->bytes_out += n;
		server_stats.vm_bytes_out += n;
	}
	if (vmconn_pending(v) != 0) {
		v->flags |= VMCONN_WRITE_WAIT;
		event_add(v->ev_write, NULL);
		return;
	}
	/* Idle connections hold no buffer. */
	evbuffer_free(v->out);
	v->out = NULL;
	if (v->console != NULL && v->console->vm == v)
		console_input_drained(v->console);
}

/* Write data people typed to the VM, doubling 0xff. */
void
vmconn_write(struct vmconn *v, const u_char *buf, size_t len)
{
	u_char	 tmp[8192];
	size_t	 chunk;

	while (len > 0) {
		chunk = len > sizeof tmp / 2 ? sizeof tmp / 2 : len;
		vmconn_write_raw(v, tmp, telnet_escape(tmp, buf, chunk));
		buf += chunk;
		len -= chunk;
	}
}

/* Send a VMware extension sub-command with its payload. */
void
vmconn_send_vmware(struct vmconn *v, u_char cmd, const u_char *payload,
    size_t len)
{
	telnet_send_sb(&v->tn, TELOPT_VMWARE, cmd, payload, len);
}

/* Send a telnet BREAK to the VM's serial port. */
void
vmconn_send_break(struct vmconn *v)
{
	telnet_send_command(&v->tn, TEL_BRK);
}

static void
vmconn_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vmconn	*v = arg;

	if (v->role != VMCONN_UNBOUND)
		return;
	log_warnx("%s: not identified after %u seconds (%s%s%s); closing",
	    vmconn_name(v), server_conf->vm_negotiation_timeout,
	    v->flags & VMCONN_PROXY_OK ? "proxy accepted" : "no DO-PROXY",
	    v->have_uuid ? ", UUID known" : ", no UUID",
	    v->name != NULL ? ", name known" : ", no name");
	vmconn_close(v, "negotiation timeout");
}

static void
vmconn_read_cb(evutil_socket_t fd, short events, void *arg)
{
	static u_char	 buf[65536];
	struct vmconn	*v = arg;
	ssize_t		 n;
	int		 rc;

	n = read(fd, buf, sizeof buf);
	if (n == -1) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		vmconn_close(v, strerror(errno));
		return;
	}
	if (n == 0) {
		vmconn_close(v, "closed by host");
		return;
	}
	v->bytes_in += n;
	server_stats.vm_bytes_in += n;
	/* Everything this read makes us say goes out in one write. */
	v->flags |= VMCONN_CORK;
	rc = telnet_input(&v->tn, buf, n);
	if (!(v->flags & VMCONN_DEAD))
		vmconn_uncork(v);
	if (rc == -1 && !(v->flags & VMCONN_DEAD)) {
		server_stats.vm_protocol_errors++;
		log_warnx("%s: telnet protocol error: %s; closing",
		    vmconn_name(v), v->tn.error);
		vmconn_close(v, "protocol error");
		return;
	}
	/* Our DO VMWARE-TELNET-EXT refused (WONT): not an ESXi host. */
	if (v->role == VMCONN_UNBOUND && !(v->flags & VMCONN_DEAD) &&
	    (v->tn.him[TOI_VMWARE] & TQ_STATE) == TQ_NO)
		vmconn_tn_option(v, TELOPT_VMWARE, 1, 0);
}

/* Pause reading (data held before binding reached [vm] hold). */
static void
vmconn_pause(struct vmconn *v)
{
	if (!(v->flags & VMCONN_READ_OFF)) {
		v->flags |= VMCONN_READ_OFF;
		event_del(v->ev_read);
		log_warnx("%s: %zu bytes of data before identification; "
		    "pausing until it is identified", vmconn_name(v),
		    evbuffer_get_length(v->held));
	}
}

/* Hand data held before binding to the console, and resume reading. */
void
vmconn_release_held(struct vmconn *v)
{
	size_t	len;

	if (v->held != NULL && (len = evbuffer_get_length(v->held)) != 0 &&
	    v->console != NULL) {
		log_debug("%s: %zu held bytes to the console (history %llu)",
		    vmconn_name(v), len,
		    (unsigned long long)v->console->history.end);
		console_output(v->console, evbuffer_pullup(v->held, -1), len);
		evbuffer_drain(v->held, len);
	}
	if (v->held != NULL) {
		evbuffer_free(v->held);
		v->held = NULL;
	}
	if (v->flags & VMCONN_READ_OFF) {
		v->flags &= ~VMCONN_READ_OFF;
		/* While quiescing for an upgrade, reading stays off. */
		if (!core_quiescing)
			event_add(v->ev_read, NULL);
	}
}

static void
vmconn_tn_data(void *arg, const u_char *buf, size_t len)
{
	struct vmconn	*v = arg;

	switch (v->role) {
	case VMCONN_CURRENT:
		if (v->console != NULL) {
			console_output(v->console, buf, len);
			return;
		}
		break;
	case VMCONN_REFUSED:
	case VMCONN_RETIRED:
		server_stats.vm_bytes_discarded += len;
		return;
	default:
		break;
	}
	/* Not bound yet, or a vMotion destination before COMPLETE. */
	if (v->held == NULL)
		v->held = evbuffer_new();
	evbuffer_add(v->held, buf, len);
	if (evbuffer_get_length(v->held) >= server_conf->vm_hold)
		vmconn_pause(v);
}

static void
vmconn_unknown(struct vmconn *v, u_char cmd)
{
	log_info("%s: unsupported VMware sub-command 0x%02x; answered "
	    "UNKNOWN-SUBOPTION-RCVD-2", vmconn_name(v), cmd);
	vmconn_send_vmware(v, VMW_UNKNOWN_SUBOPTION_RCVD_2, &cmd, 1);
}

static void
vmconn_ask_identity(struct vmconn *v)
{
	if (v->flags & VMCONN_ASKED_ID)
		return;
	v->flags |= VMCONN_ASKED_ID;
	vmconn_send_vmware(v, VMW_GET_VM_VC_UUID, NULL, 0);
	vmconn_send_vmware(v, VMW_GET_VM_NAME, NULL, 0);
}

static void
vmconn_claimed(enum store_status st, uint64_t epoch, void *arg)
{
	struct console	*con;

	if ((con = console_find(arg)) == NULL) {
		free(arg);
		return;
	}
	if (st == STORE_OK) {
		con->epoch = epoch;
		core_hooks->console_changed(con);
	} else if (st == STORE_UNAVAILABLE && con->vm != NULL &&
	    !(con->flags & CONSOLE_REMOTE))
		core_hooks->claim_later(con, con->epoch);
	else
		log_warnx("console %s: ownership not recorded: %s", con->key,
		    store_status_string(st));
	free(arg);
}

/*
 * Record in the store that this node owns the console now: the node that
 * holds the VM's connection is its owner, whatever the store said.
 */
void
vmconn_claim(struct console *con)
{
	store_console_claim(server_store, con->key, server_conf->node_id, 0,
	    vmconn_claimed, xstrdup(con->key));
}

/* Bind the connection to its console once it is identified. */
static void
vmconn_try_bind(struct vmconn *v)
{
	struct console	*con;
	struct vmconn	*old;
	char		 uuid[UUID_STRLEN + 1];

	if (v->role != VMCONN_UNBOUND || !(v->flags & VMCONN_PROXY_OK) ||
	    !v->have_uuid || v->name == NULL)
		return;
	con = console_get(v->uuid, v->label);
	if (con->flags & CONSOLE_REMOTE) {
		/* Its owner is gone, or the host chose this node: ours now. */
		if (con->vmotion.state != VMOTION_NONE)
			vmotion_cancel(con, "the VM connected here afresh");
		console_make_local(con);
	}
	if ((old = con->vm) != NULL && old != v) {
		if (con->vmotion.state != VMOTION_NONE)
			vmotion_cancel(con, "a new connection for the VM "
			    "arrived");
		if ((old = con->vm) != NULL) {
			log_warnx("console %s: new connection from %s "
			    "replaces the one from %s", con->key, v->addr,
			    old->addr);
			old->role = VMCONN_RETIRED;
			old->console = NULL;
			con->vm = NULL;
			vmconn_close(old, "replaced by a new connection");
		}
	}
	vmconn_settled(v);
	console_set_name(con, v->name, strlen(v->name));
	free(con->uri);
	con->uri = xstrdup(v->uri);
	v->role = VMCONN_CURRENT;
	v->console = con;
	console_set_vm(con, v);
	uuid_format(v->uuid, uuid);
	log_info("console %s: VM \"%s\" connected from %s (uri %s)", con->key,
	    con->name, v->addr, v->uri);
	vmconn_release_held(v);
	vmconn_claim(con);
	core_hooks->console_bound(con);
}

static void
vmconn_do_proxy(struct vmconn *v, const u_char *p, size_t len)
{
	char	*uri, *label = NULL;
	u_char	 dir;

	if (v->flags & VMCONN_PROXY_OK) {
		vmconn_send_vmware(v, VMW_WILL_PROXY, NULL, 0);
		return;
	}
	if (len < 1) {
		log_warnx("%s: empty DO-PROXY; refused", vmconn_name(v));
		vmconn_send_vmware(v, VMW_WONT_PROXY, NULL, 0);
		return;
	}
	dir = p[0];
	uri = xstrndup((const char *)p + 1, len - 1);
	if ((dir != 'S' && dir != 'C') || strlen(uri) != len - 1 ||
	    !config_uri_accepted(server_conf, uri, strlen(uri), &label)) {
		log_warnx("%s: DO-PROXY direction '%c' service URI \"%s\" "
		    "not accepted ([vm] accept_uri = %s); answered WONT-PROXY",
		    vmconn_name(v), dir >= 0x20 && dir < 0x7f ? dir : '?', uri,
		    server_conf->vm_accept_uri);
		free(uri);
		free(label);
		vmconn_send_vmware(v, VMW_WONT_PROXY, NULL, 0);
		v->role = VMCONN_REFUSED;
		vmconn_settled(v);
		if (v->held != NULL) {
			server_stats.vm_bytes_discarded +=
			    evbuffer_get_length(v->held);
			vmconn_release_held(v);
		}
		return;
	}
	v->direction = dir;
	free(v->uri);
	v->uri = uri;
	free(v->label);
	v->label = label;
	v->flags |= VMCONN_PROXY_OK;
	vmconn_send_vmware(v, VMW_WILL_PROXY, NULL, 0);
	vmconn_ask_identity(v);
	vmconn_try_bind(v);
}

static void
vmconn_vc_uuid(struct vmconn *v, const u_char *p, size_t len)
{
	u_char	uuid[UUID_LEN];
	char	text[UUID_STRLEN + 1];

	if (uuid_parse((const char *)p, len, uuid) == -1) {
		log_warnx("%s: malformed VM-VC-UUID \"%.*s\"; closing",
		    vmconn_name(v), (int)(len > 64 ? 64 : len), p);
		server_stats.vm_protocol_errors++;
		vmconn_close(v, "malformed VC UUID");
		return;
	}
	if (v->have_uuid && memcmp(uuid, v->uuid, UUID_LEN) != 0) {
		uuid_format(uuid, text);
		log_warnx("%s: VC UUID changed to %s on the same connection; "
		    "closing", vmconn_name(v), text);
		vmconn_close(v, "VC UUID changed");
		return;
	}
	if (v->role == VMCONN_VMOTION_DST && v->console != NULL &&
	    memcmp(uuid, v->console->uuid, UUID_LEN) != 0) {
		uuid_format(uuid, text);
		log_warnx("%s: vMotion destination reports VC UUID %s, not "
		    "the console's", vmconn_name(v), text);
	}
	memcpy(v->uuid, uuid, UUID_LEN);
	v->have_uuid = 1;
	vmconn_try_bind(v);
}

static void
vmconn_vm_name(struct vmconn *v, const u_char *p, size_t len)
{
	free(v->name);
	v->name = xstrndup((const char *)p, len > 255 ? 255 : len);
	if (strlen(v->name) == 0) {
		free(v->name);
		v->name = xstrdup("-");
	}
	if (v->role == VMCONN_CURRENT && v->console != NULL)
		console_set_name(v->console, v->name, strlen(v->name));
	vmconn_try_bind(v);
}

static void
vmconn_tn_sb(void *arg, u_char opt, const u_char *buf, size_t len)
{
	struct vmconn	*v = arg;
	u_char		 cmd;

	if (opt != TELOPT_VMWARE) {
		log_debug("%s: ignored subnegotiation for option %u",
		    vmconn_name(v), opt);
		return;
	}
	if (len == 0) {
		log_warnx("%s: empty VMware subnegotiation ignored",
		    vmconn_name(v));
		return;
	}
	cmd = buf[0];
	buf++;
	len--;
	switch (cmd) {
	case VMW_KNOWN_SUBOPTIONS_1:
		v->flags |= VMCONN_GOT_KS1;
		vmconn_ask_identity(v);
		break;
	case VMW_UNKNOWN_SUBOPTION_RCVD_1:
		log_info("%s: host did not understand sub-command 0x%02x",
		    vmconn_name(v), len > 0 ? buf[0] : 0);
		break;
	case VMW_VMOTION_BEGIN:
		vmotion_begin(v, buf, len);
		break;
	case VMW_VMOTION_PEER:
		vmotion_peer(v, buf, len);
		break;
	case VMW_VMOTION_COMPLETE:
		vmotion_complete(v, buf, len);
		break;
	case VMW_VMOTION_ABORT:
		vmotion_abort(v);
		break;
	case VMW_DO_PROXY:
		vmconn_do_proxy(v, buf, len);
		break;
	case VMW_VM_VC_UUID:
		vmconn_vc_uuid(v, buf, len);
		break;
	case VMW_VM_NAME:
		vmconn_vm_name(v, buf, len);
		break;
	case VMW_VM_BIOS_UUID:
	case VMW_VM_LOCATION_UUID:
		log_debug("%s: ignored identity sub-command 0x%02x",
		    vmconn_name(v), cmd);
		break;
	default:
		vmconn_unknown(v, cmd);
		break;
	}
}

static void
vmconn_tn_option(void *arg, u_char opt, int him, int on)
{
	struct vmconn	*v = arg;

	if (opt != TELOPT_VMWARE || !him)
		return;
	if (on) {
		telnet_send_sb(&v->tn, TELOPT_VMWARE, VMW_KNOWN_SUBOPTIONS_2,
		    vmconn_known, sizeof vmconn_known);
		return;
	}
	log_warnx("%s: peer refuses VMWARE-TELNET-EXT: not an ESXi host; "
	    "closing", vmconn_name(v));
	vmconn_write_raw(v, (const u_char *)vmconn_not_esxi,
	    sizeof vmconn_not_esxi - 1);
	vmconn_close(v, "not an ESXi host");
}

static void
vmconn_tn_command(void *arg, u_char cmd)
{
	struct vmconn	*v = arg;

	log_debug("%s: telnet command %u ignored", vmconn_name(v), cmd);
}

static void
vmconn_tn_output(void *arg, const u_char *buf, size_t len)
{
	vmconn_write_raw(arg, buf, len);
}

/*
 * Hot upgrade: a connection to rebuild from its record, its codec ready
 * for the saved state.  vmconn_adopted() puts it to work.
 */
struct vmconn *
vmconn_adopt(u_int id, int fd)
{
	struct vmconn	*v;

	v = xcalloc(1, sizeof *v);
	v->id = id;
	if (v->id > vmconn_next_id)
		vmconn_next_id = v->id;
	v->fd = fd;
	telnet_init(&v->tn, &vmconn_telnet_ops, v, 0, 0,
	    server_conf->vm_sb_max);
	return (v);
}

/*
 * Hot upgrade: serve a rebuilt connection: its events, what it still has
 * to send, its negotiation timeout (timeout_us left, -1 for none).
 */
void
vmconn_adopted(struct vmconn *v, int64_t timeout_us)
{
	/* Nothing runs before COMMIT: the events may be added now. */
	v->ev_read = event_new(server_base, v->fd, EV_READ|EV_PERSIST,
	    vmconn_read_cb, v);
	if (!(v->flags & VMCONN_READ_OFF))
		event_add(v->ev_read, NULL);
	if (v->out != NULL) {
		v->ev_write = event_new(server_base, v->fd, EV_WRITE,
		    vmconn_write_cb, v);
		v->flags |= VMCONN_WRITE_WAIT;
		event_add(v->ev_write, NULL);
	}
	if (timeout_us >= 0 && v->role == VMCONN_UNBOUND) {
		v->ev_timeout = evtimer_new(server_base, vmconn_timeout_cb, v);
		core_timer_set(v->ev_timeout, timeout_us);
	}
	TAILQ_INSERT_TAIL(&all_vmconns, v, gentry);
	nvmconns++;
}
