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
 * Control requests: the checks every request goes through (protocol
 * version, read-only socket, login, admin role, what a login may see)
 * and the dispatch to the file that serves it; LOGIN, TLS and the
 * requests that change the node (disconnect, drain, reload) are here.
 */

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "proto/control.pb-c.h"
#include "control-int.h"

/* Find the console a request names; an error to the sink if none. */
int
ctl_lookup(struct ctl_sink *s, const char *text, struct console **out)
{
	char	*err;

	if (text == NULL || *text == '\0') {
		ctl_error(s, "which VM?");
		return (-1);
	}
	if (console_lookup(text, out, &err) == -1) {
		ctl_error(s, "%s", err);
		free(err);
		return (-1);
	}
	return (0);
}

/* Whether a console is on another node (and the request is to go there). */
int
ctl_remote(struct console *con)
{
	return ((con->flags & CONSOLE_REMOTE) && con->owner != NULL &&
	    strcmp(con->owner, server_conf->node_id) != 0);
}

/*
 * Over [control] listen with a users file: may the login see this
 * console (list it, show it, read its log)?  The same rules as attach.
 */
int
ctl_may_see(const struct ctl_conn *cc, const struct console *con)
{
	char	uuid[UUID_STRLEN + 1];

	if (cc == NULL || !cc->tcp || server_auth == NULL)
		return (1);
	if (cc->login == NULL)
		return (0);
	uuid_format(con->uuid, uuid);
	return (auth_console_access(server_auth, cc->login, con->name,
	    con->key, uuid) != AUTH_NONE);
}

static void
ctl_disconnect(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	struct console	*con;
	struct client	*c, *c1;
	const char	*t = req->target, *colon;
	char		*node, *ep, msg[128];
	u_long		 id;
	u_int		 n = 0;

	if (t == NULL || *t == '\0') {
		ctl_error(s, "disconnect what?");
		return;
	}
	if ((colon = strrchr(t, ':')) != NULL && isdigit((u_char)colon[1])) {
		node = xstrndup(t, colon - t);
		if (strcmp(node, server_conf->node_id) != 0) {
			ctl_relay(s, req, node);
			free(node);
			return;
		}
		free(node);
		t = colon + 1;
	}
	if (isdigit((u_char)*t)) {
		errno = 0;
		id = strtoul(t, &ep, 10);
		if (*ep == '\0' && errno == 0) {
			TAILQ_FOREACH(c, &all_clients, gentry) {
				if (c->id == id && !(c->flags & CLIENT_DEAD))
					break;
			}
			if (c == NULL) {
				ctl_error(s, "no person %lu on node %s", id,
				    server_conf->node_id);
				return;
			}
			log_info("control: disconnecting client %u %s",
			    c->id, c->addr);
			if (c->proto != NULL && c->proto->notice != NULL)
				c->proto->notice(c, "disconnected by an "
				    "operator");
			client_close(c, "disconnected by an operator");
			snprintf(msg, sizeof msg, "disconnected %lu on node %s",
			    id, server_conf->node_id);
			ctl_ok(s, msg);
			return;
		}
	}
	if (ctl_lookup(s, t, &con) == -1)
		return;
	if (ctl_remote(con)) {
		ctl_relay_owner(s, req, con);
		return;
	}
	TAILQ_FOREACH_SAFE(c, &con->clients, centry, c1) {
		if (c->flags & CLIENT_DEAD)
			continue;
		if (c->proto != NULL && c->proto->notice != NULL)
			c->proto->notice(c, "disconnected by an operator");
		client_close(c, "disconnected by an operator");
		n++;
	}
	log_info("control: disconnected %u people from %s", n, con->key);
	snprintf(msg, sizeof msg, "disconnected %u people from %s", n,
	    con->name != NULL ? con->name : con->key);
	ctl_ok(s, msg);
}

static void
ctl_drain(struct ctl_sink *s, Vspc__Ctl__Request *req, int on)
{
	if (req->node != NULL && *req->node != '\0' &&
	    strcmp(req->node, server_conf->node_id) != 0) {
		ctl_relay(s, req, req->node);
		return;
	}
	server_set_draining(on);
	ctl_ok(s, on ? "draining" : "active");
}

static void
ctl_reload(struct ctl_sink *s, Vspc__Ctl__Request *req)
{
	char	*err = NULL;

	if (req->node != NULL && *req->node != '\0' &&
	    strcmp(req->node, server_conf->node_id) != 0) {
		ctl_relay(s, req, req->node);
		return;
	}
	log_info("control: reloading the configuration");
	if (server_reload(&err) == -1) {
		log_warnx("reload failed, configuration unchanged: %s", err);
		ctl_error(s, "reload failed, configuration unchanged: %s",
		    err);
		free(err);
		return;
	}
	ctl_ok(s, "configuration reloaded");
}

static int
ctl_changes(Vspc__Ctl__Request *req)
{
	switch (req->command) {
	case VSPC__CTL__COMMAND__DISCONNECT:
	case VSPC__CTL__COMMAND__DRAIN:
	case VSPC__CTL__COMMAND__UNDRAIN:
	case VSPC__CTL__COMMAND__RELOAD:
		return (1);
	default:
		return (0);
	}
}

/* The worker's answer to a LOGIN (the connection may be gone). */
static void
ctl_login_done(u_int id, int ok)
{
	struct ctl_conn	*cc;
	struct ctl_sink	 s;
	Vspc__Ctl__Reply rep = VSPC__CTL__REPLY__INIT;
	char		*text;

	if ((cc = ctl_conn_find(id)) == NULL || cc->pending == NULL)
		return;
	memset(&s, 0, sizeof s);
	s.conn = id;
	if (!ok) {
		server_stats.login_failed++;
		cc->attempts++;
		log_warnx("control: connection %u from %s: login refused for "
		    "\"%s\" (attempt %u of %u)", cc->id, cc->user, cc->pending,
		    cc->attempts, server_conf->console_login_attempts);
		free(cc->pending);
		cc->pending = NULL;
		ctl_error(&s, "Login incorrect");
		return;
	}
	cc->login = cc->pending;
	cc->pending = NULL;
	log_info("control: connection %u from %s: user %s logged in%s",
	    cc->id, cc->user, cc->login, auth_is_admin(server_auth,
	    cc->login) ? " (admin)" : "");
	xasprintf(&text, "logged in as %s", cc->login);
	rep.version = CTL_PROTOCOL;
	rep.ok = 1;
	rep.text = text;
	ctl_send(&s, &rep);
	free(text);
}

/* LOGIN on a TCP connection, with a users file. */
static void
ctl_login(struct ctl_sink *s, struct ctl_conn *cc, Vspc__Ctl__Request *req)
{
	Vspc__Ctl__Reply rep = VSPC__CTL__REPLY__INIT;
	char		*err = NULL;

	if (cc == NULL || !cc->tcp || server_auth == NULL || cc->login) {
		rep.version = CTL_PROTOCOL;
		rep.ok = 1;
		rep.text = cc != NULL && cc->login != NULL ? cc->login :
		    (char *)"no login needed";
		ctl_send(s, &rep);
		return;
	}
	if (cc->pending != NULL) {
		ctl_error(s, "a login is being checked");
		return;
	}
	if (cc->attempts >= server_conf->console_login_attempts) {
		ctl_error(s, "too many failed logins");
		return;
	}
	if (auth_refresh(&server_auth, &err) == -1) {
		log_warnx("users file: %s; the old rules stay", err);
		free(err);
	}
	cc->pending = xstrdup(req->user != NULL ? req->user : "");
	auth_verify(server_auth, cc->pending, req->password != NULL ?
	    req->password : "", cc->id, ctl_login_done);
}

/* TLS: the certificates' thumbprints (vSphere pins the telnets one). */
static void
ctl_tls(struct ctl_sink *s)
{
	Vspc__Ctl__Reply rep = VSPC__CTL__REPLY__INIT;
	const char	*a, *b;
	char		*text;

	a = tls_thumbprint(TLS_SERVER);
	b = tls_thumbprint(TLS_PEER);
	xasprintf(&text, "telnets certificate SHA-1 thumbprint: %s\n"
	    "peer link certificate SHA-1 thumbprint: %s",
	    a != NULL ? a : "none (no [vm] tls_cert)",
	    b != NULL ? b : "none (no [cluster] tls_cert)");
	rep.version = CTL_PROTOCOL;
	rep.ok = 1;
	rep.text = text;
	ctl_send(s, &rep);
	free(text);
}

/* Commands for the operator only: over TCP, only with the admin role. */
static int
ctl_admin(Vspc__Ctl__Request *req)
{
	switch (req->command) {
	case VSPC__CTL__COMMAND__DISCONNECT:
	case VSPC__CTL__COMMAND__DRAIN:
	case VSPC__CTL__COMMAND__UNDRAIN:
	case VSPC__CTL__COMMAND__RELOAD:
	case VSPC__CTL__COMMAND__UPGRADE:
		return (1);
	default:
		return (0);
	}
}

/* Check a request and serve it (or relay it to the node concerned). */
void
ctl_dispatch(struct ctl_sink *s, struct ctl_conn *cc, Vspc__Ctl__Request *req,
    int readonly)
{
	if (req->version != CTL_PROTOCOL) {
		ctl_error(s, "control protocol version %u not supported "
		    "(this node speaks %u)", req->version, CTL_PROTOCOL);
		return;
	}
	if (readonly && ctl_changes(req)) {
		ctl_error(s, "read-only control socket: command refused");
		return;
	}
	if (cc != NULL && cc->tcp && server_auth != NULL &&
	    cc->login == NULL && req->command != VSPC__CTL__COMMAND__LOGIN) {
		ctl_error(s, "login required (vspcctl -u USER)");
		return;
	}
	if (cc != NULL && cc->tcp && ctl_admin(req)) {
		if (server_auth == NULL) {
			ctl_error(s, "not allowed over TCP: use the control "
			    "socket");
			return;
		}
		if (!auth_is_admin(server_auth, cc->login)) {
			log_warnx("control: connection %u from %s: user %s "
			    "refused command %d: not admin", cc->id, cc->user,
			    cc->login, req->command);
			ctl_error(s, "permission denied: %s has no admin role",
			    cc->login);
			return;
		}
		log_info("control: connection %u from %s: admin %s runs "
		    "command %d on %s", cc->id, cc->user, cc->login,
		    req->command, req->target != NULL && *req->target !=
		    '\0' ? req->target : req->node != NULL &&
		    *req->node != '\0' ? req->node : "this node");
	}
	if (cc != NULL && cc->c != NULL &&
	    req->command != VSPC__CTL__COMMAND__INPUT &&
	    req->command != VSPC__CTL__COMMAND__ESCAPE) {
		ctl_error(s, "attached: only input and escape commands");
		return;
	}
	/* A console the login may not see is not shown, nor its log. */
	if (cc != NULL && cc->tcp && server_auth != NULL &&
	    (req->command == VSPC__CTL__COMMAND__VM_SHOW ||
	    req->command == VSPC__CTL__COMMAND__LOG ||
	    (req->command == VSPC__CTL__COMMAND__WHO &&
	    req->target != NULL && *req->target != '\0'))) {
		struct console	*con;

		if (ctl_lookup(s, req->target, &con) == -1)
			return;
		if (!ctl_may_see(cc, con)) {
			ctl_error(s, "%s: permission denied", req->target);
			return;
		}
	}
	switch (req->command) {
	case VSPC__CTL__COMMAND__CLUSTER_STATUS:
		ctl_cluster_status(s);
		break;
	case VSPC__CTL__COMMAND__VM_LIST:
		ctl_vm_list(s, cc);
		break;
	case VSPC__CTL__COMMAND__VM_SHOW:
		ctl_vm_show(s, req);
		break;
	case VSPC__CTL__COMMAND__WHO:
		ctl_who(s, req);
		break;
	case VSPC__CTL__COMMAND__DISCONNECT:
		ctl_disconnect(s, req);
		break;
	case VSPC__CTL__COMMAND__ATTACH:
		ctl_attach(s, cc, req);
		break;
	case VSPC__CTL__COMMAND__INPUT:
		/* Directly, so that it keeps its order with ESCAPE. */
		if (cc != NULL && cc->c != NULL && !cc->attaching &&
		    req->data.len > 0)
			ctl_client_input(cc->c, req->data.data,
			    req->data.len);
		break;
	case VSPC__CTL__COMMAND__ESCAPE:
		if (cc != NULL && cc->c != NULL)
			ctl_escape(cc, req->arg != NULL ? req->arg : "");
		break;
	case VSPC__CTL__COMMAND__LOG:
		ctl_log(s, req);
		break;
	case VSPC__CTL__COMMAND__DRAIN:
		ctl_drain(s, req, 1);
		break;
	case VSPC__CTL__COMMAND__UNDRAIN:
		ctl_drain(s, req, 0);
		break;
	case VSPC__CTL__COMMAND__RELOAD:
		ctl_reload(s, req);
		break;
	case VSPC__CTL__COMMAND__UPGRADE:
		ctl_upgrade(s, req);
		break;
	case VSPC__CTL__COMMAND__LOGIN:
		ctl_login(s, cc, req);
		break;
	case VSPC__CTL__COMMAND__TLS:
		ctl_tls(s);
		break;
	default:
		ctl_error(s, "unknown command %d", req->command);
		break;
	}
}
