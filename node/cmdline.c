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
 * The console port: people connect with telnet (or nc), pick a VM by
 * name, UUID or unique prefix (? lists them), and are attached.  The
 * escape key (default ^]) opens a one-line command prompt: detach, spy,
 * write, force, replay, break, who, help.
 *
 * The node does the echo and line editing itself (WILL ECHO, WILL SGA),
 * so telnet clients run character at a time.  Console output is paused
 * while the escape prompt is open and resumes from where it stopped.
 *
 * With [console] users_file, a person logs in first ("login: ", then
 * "password: ", which is not echoed: the node has WILL ECHO and does not
 * echo it).  The password is checked on auth.c's worker thread; the
 * answer finds the person again by client ID, since they may have left
 * meanwhile.  Wrong password, unknown user and locked user get the same
 * answer; after login_attempts failures, or login_timeout without a
 * login, the connection is closed.  Once logged in, the users file's
 * rules decide per console: read-write, read-only (attached read-only
 * whatever was asked, typing discarded with a notice) or nothing (not
 * listed, attach refused).  Without users_file everyone may do
 * everything: for loopback or a trusted network only.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "proto/handoff.pb-c.h"

#define CMDLINE_MAX	256

enum cmdline_state {
	CMDLINE_SELECT,		/* Asking which console. */
	CMDLINE_ATTACHED,	/* Bytes go to the VM. */
	CMDLINE_MENU,		/* Escape prompt open. */
	CMDLINE_WAIT,		/* Waiting for another node's answer. */
	CMDLINE_LOGIN,		/* Asking the user name. */
	CMDLINE_PASSWORD,	/* Asking the password (not echoed). */
	CMDLINE_AUTHWAIT,	/* Password being checked. */
	CMDLINE_STATE_MAX
};

struct cmdline {
	enum cmdline_state	 state;
	char			 line[CMDLINE_MAX];
	size_t			 len;
	int			 last_cr;
	u_int			 attempts;	/* Failed logins. */
	int			 ro;		/* Read-only on its console. */
	time_t			 ro_notice;	/* Last "input discarded". */
	char			*login;		/* Name typed at "login: ". */
	struct event		*login_timer;
};

static void	cmdline_input(struct client *, const u_char *, size_t);
static void	cmdline_notice(struct client *, const char *);
static void	cmdline_free(struct client *);
static void	cmdline_attached(struct client *, enum attach_result,
		    const char *);
static void	cmdline_tn_data(void *, const u_char *, size_t);
static void	cmdline_tn_sb(void *, u_char, const u_char *, size_t);
static void	cmdline_tn_option(void *, u_char, int, int);
static void	cmdline_tn_command(void *, u_char);
static void	cmdline_tn_output(void *, const u_char *, size_t);

static size_t	cmdline_handoff_pack(struct client *, uint8_t **);
static int	cmdline_handoff_unpack(struct client *, const uint8_t *, size_t);

const struct client_proto cmdline_proto = {
	.name = "console",
	.input = cmdline_input,
	.notice = cmdline_notice,
	.free = cmdline_free,
	.attached = cmdline_attached,
	.handoff_pack = cmdline_handoff_pack,
	.handoff_unpack = cmdline_handoff_unpack
};

static const struct telnet_ops cmdline_telnet_ops = {
	cmdline_tn_data,
	cmdline_tn_sb,
	cmdline_tn_option,
	cmdline_tn_command,
	cmdline_tn_output
};

static const char cmdline_help[] =
    "\r\n"
    "Escape commands (type the escape key, then a command and Enter):\r\n"
    "  c, continue      back to the console (also: empty line)\r\n"
    "  d, detach, q     detach and disconnect\r\n"
    "  s, spy           stop writing, keep watching\r\n"
    "  w, write         become the writer if nobody writes\r\n"
    "  f, force         become the writer; the writer becomes a spy\r\n"
    "  r, replay [N]    show the last N lines again (default 20)\r\n"
    "  b, break         send a serial break to the VM\r\n"
    "  who              who is attached to this console\r\n"
    "  h, help, ?       this help\r\n"
    "Typing the escape key twice sends it to the VM.\r\n";

static void
cmdline_prompt(struct client *c)
{
	client_printf(c, "console (name, UUID or prefix; ? lists): ");
}

/*
 * What the person may do with a console: everything without a users
 * file, else what its rules say.
 */
static enum auth_access
cmdline_access(struct client *c, struct console *con)
{
	char	uuid[UUID_STRLEN + 1];

	if (server_auth == NULL)
		return (AUTH_RW);
	if (c->user == NULL)
		return (AUTH_NONE);
	uuid_format(con->uuid, uuid);
	return (auth_console_access(server_auth, c->user, con->name,
	    con->key, uuid));
}

static void
cmdline_login_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct client	*c = arg;
	struct cmdline	*cl = c->proto_data;

	log_warnx("client %u %s: no login within %u seconds; closing", c->id,
	    c->addr, server_conf->console_login_timeout);
	if (cl != NULL)
		cl->state = CMDLINE_LOGIN;
	client_printf(c, "\r\nlogin timed out\r\n");
	client_close(c, "login timed out");
}

/* Ask for a login, and (re)arm the login timer. */
static void
cmdline_login_prompt(struct client *c, int arm)
{
	struct cmdline	*cl = c->proto_data;
	struct timeval	 tv;

	cl->state = CMDLINE_LOGIN;
	cl->len = 0;
	if (arm) {
		if (cl->login_timer == NULL)
			cl->login_timer = evtimer_new(server_base,
			    cmdline_login_timeout_cb, c);
		tv.tv_sec = server_conf->console_login_timeout;
		tv.tv_usec = 0;
		evtimer_add(cl->login_timer, &tv);
	}
	client_printf(c, "login: ");
}

/* The worker's answer about a password (the person may be gone). */
static void
cmdline_auth_done(u_int id, int ok)
{
	struct client	*c;
	struct cmdline	*cl;

	if ((c = client_find(id)) == NULL || c->proto != &cmdline_proto ||
	    (c->flags & (CLIENT_DEAD|CLIENT_CLOSING)) ||
	    (cl = c->proto_data) == NULL || cl->state != CMDLINE_AUTHWAIT)
		return;
	if (ok) {
		if (cl->login_timer != NULL)
			evtimer_del(cl->login_timer);
		free(c->user);
		c->user = cl->login;
		cl->login = NULL;
		log_info("client %u %s: user %s logged in", c->id, c->addr,
		    c->user);
		client_printf(c, "welcome, %s\r\n", c->user);
		cl->state = CMDLINE_SELECT;
		cmdline_prompt(c);
		return;
	}
	server_stats.login_failed++;
	cl->attempts++;
	log_warnx("client %u %s: login refused for \"%s\" (attempt %u of %u)",
	    c->id, c->addr, cl->login, cl->attempts,
	    server_conf->console_login_attempts);
	free(cl->login);
	cl->login = NULL;
	client_printf(c, "Login incorrect\r\n");
	if (cl->attempts >= server_conf->console_login_attempts) {
		client_printf(c, "too many failed logins\r\n");
		client_close(c, "too many failed logins");
		return;
	}
	cmdline_login_prompt(c, 0);
}

/* A line typed at "login: " or "password: ". */
static void
cmdline_login_line(struct client *c, char *line)
{
	struct cmdline	*cl = c->proto_data;
	char		*err = NULL;
	size_t		 len;

	if (cl->state == CMDLINE_LOGIN) {
		while (isspace((u_char)*line))
			line++;
		len = strlen(line);
		while (len > 0 && isspace((u_char)line[len - 1]))
			line[--len] = '\0';
		if (len == 0) {
			client_printf(c, "login: ");
			return;
		}
		free(cl->login);
		cl->login = xstrdup(line);
		cl->state = CMDLINE_PASSWORD;
		client_printf(c, "password: ");
		return;
	}
	/* The password. */
	if (auth_refresh(&server_auth, &err) == -1) {
		log_warnx("users file: %s; the old rules stay", err);
		free(err);
	}
	cl->state = CMDLINE_AUTHWAIT;
	auth_verify(server_auth, cl->login != NULL ? cl->login : "", line,
	    c->id, cmdline_auth_done);
	explicit_bzero(line, strlen(line));
}

static const char *
cmdline_escape_name(void)
{
	static char	buf[8];
	u_char		e = server_conf->console_escape;

	if (e < 0x20)
		snprintf(buf, sizeof buf, "^%c", e + '@');
	else
		snprintf(buf, sizeof buf, "%c", e);
	return (buf);
}

/* A person connected to the console port. */
void
cmdline_accept(int fd, const struct sockaddr *sa)
{
	struct client	*c;
	struct cmdline	*cl;

	c = client_create(fd, CLIENT_CONSOLE, &cmdline_proto, sa);
	cl = xcalloc(1, sizeof *cl);
	c->proto_data = cl;
	cl->state = server_auth != NULL ? CMDLINE_LOGIN : CMDLINE_SELECT;
	c->flags |= CLIENT_ESCAPE;
	telnet_init(&c->tn, &cmdline_telnet_ops, c,
	    TELNET_MASK(TOI_ECHO)|TELNET_MASK(TOI_SGA)|TELNET_MASK(TOI_BINARY),
	    TELNET_MASK(TOI_SGA)|TELNET_MASK(TOI_BINARY), 512);
	telnet_request(&c->tn, TELOPT_ECHO, 0, 1);
	telnet_request(&c->tn, TELOPT_SGA, 0, 1);
	telnet_request(&c->tn, TELOPT_BINARY, 0, 1);
	telnet_request(&c->tn, TELOPT_SGA, 1, 1);
	telnet_request(&c->tn, TELOPT_BINARY, 1, 1);
	log_debug("client %u %s: console port connection", c->id, c->addr);
	client_printf(c, "vspcd %s (node %s); escape key is %s\r\n",
	    VSPCD_VERSION, server_conf->node_id, cmdline_escape_name());
	if (cl->state == CMDLINE_LOGIN)
		cmdline_login_prompt(c, 1);
	else
		cmdline_prompt(c);
}

static void
cmdline_free(struct client *c)
{
	struct cmdline	*cl = c->proto_data;

	if (cl != NULL) {
		if (cl->login_timer != NULL)
			event_free(cl->login_timer);
		free(cl->login);
		explicit_bzero(cl->line, sizeof cl->line);
	}
	free(c->proto_data);
	c->proto_data = NULL;
}

static void
cmdline_notice(struct client *c, const char *msg)
{
	client_printf(c, "\r\n[-- %s --]\r\n", msg);
}

static void
cmdline_input(struct client *c, const u_char *buf, size_t len)
{
	if (telnet_input(&c->tn, buf, len) == -1) {
		log_warnx("client %u %s: telnet protocol error: %s", c->id,
		    c->addr, c->tn.error);
		client_printf(c, "\r\n[-- telnet protocol error: %s --]\r\n",
		    c->tn.error);
		client_close(c, "telnet protocol error");
	}
}

static void
cmdline_list(struct client *c)
{
	struct console	*con;
	struct client	*o;
	u_int		 w, s;

	if (TAILQ_EMPTY(&all_consoles)) {
		client_printf(c, "no consoles yet\r\n");
		return;
	}
	client_printf(c, "%-24s %-44s %-12s %-12s %s\r\n", "NAME", "CONSOLE",
	    "STATE", "NODE", "PEOPLE");
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		if (cmdline_access(c, con) == AUTH_NONE)
			continue;
		w = s = 0;
		TAILQ_FOREACH(o, &con->clients, centry) {
			if (o->flags & CLIENT_WRITE)
				w++;
			else
				s++;
		}
		if (con->flags & CONSOLE_REMOTE)
			client_printf(c, "%-24s %-44s %-12s %-12s -\r\n",
			    con->name != NULL ? con->name : "-", con->key,
			    console_state(con), cluster_node_of(con));
		else
			client_printf(c, "%-24s %-44s %-12s %-12s %u writing, "
			    "%u watching\r\n", con->name != NULL ? con->name :
			    "-", con->key, console_state(con),
			    cluster_node_of(con), w, s);
	}
}

/* Start streaming to an attached client. */
static void
cmdline_stream(struct client *c)
{
	c->flags |= CLIENT_STREAM;
	client_flush(c);
}

static void
cmdline_select(struct client *c, char *line)
{
	struct cmdline		*cl = c->proto_data;
	struct console		*con;
	enum attach_mode	 mode = ATTACH_DEFAULT;
	enum attach_result	 r;
	char			*err, *word, *rest;

	while (isspace((u_char)*line))
		line++;
	if (*line == '\0') {
		cmdline_prompt(c);
		return;
	}
	if (strcmp(line, "?") == 0 || strcmp(line, "ls") == 0 ||
	    strcmp(line, "list") == 0) {
		cmdline_list(c);
		cmdline_prompt(c);
		return;
	}
	if (strcmp(line, "quit") == 0 || strcmp(line, "exit") == 0) {
		client_close(c, "quit");
		return;
	}
	if ((rest = strchr(line, ' ')) != NULL) {
		*rest = '\0';
		word = line;
		if (strcmp(word, "spy") == 0)
			mode = ATTACH_SPY;
		else if (strcmp(word, "ro") == 0 ||
		    strcmp(word, "read-only") == 0)
			mode = ATTACH_RO;
		else if (strcmp(word, "force") == 0)
			mode = ATTACH_FORCE;
		else if (strcmp(word, "exclusive") == 0)
			mode = ATTACH_EXCLUSIVE;
		else if (strcmp(word, "attach") == 0)
			mode = ATTACH_DEFAULT;
		else
			word = NULL;
		if (word != NULL)
			line = rest + 1;
		else
			*rest = ' ';
	}

	if (console_lookup(line, &con, &err) == -1) {
		client_printf(c, "%s\r\n", err);
		free(err);
		cmdline_prompt(c);
		return;
	}
	cl->ro = 0;
	switch (cmdline_access(c, con)) {
	case AUTH_NONE:
		log_warnx("client %u %s@%s: attach to %s refused: no access",
		    c->id, c->user != NULL ? c->user : "-", c->addr, con->key);
		client_printf(c, "permission denied\r\n");
		cmdline_prompt(c);
		return;
	case AUTH_RO:
		if (mode == ATTACH_FORCE || mode == ATTACH_EXCLUSIVE) {
			log_warnx("client %u %s@%s: %s attach to %s refused: "
			    "read-only access", c->id, c->user, c->addr,
			    mode == ATTACH_FORCE ? "forced" : "exclusive",
			    con->key);
			client_printf(c, "permission denied: read-only "
			    "access\r\n");
			cmdline_prompt(c);
			return;
		}
		mode = ATTACH_RO;
		cl->ro = 1;
		break;
	case AUTH_RW:
		break;
	}
	cl->state = CMDLINE_WAIT;
	r = console_attach(con, c, mode);
	if (r == ATTACH_PENDING)
		return;
	cmdline_attached(c, r, NULL);
}

/* An attach was decided, here or by the console's node. */
static void
cmdline_attached(struct client *c, enum attach_result r, const char *why)
{
	struct cmdline	*cl = c->proto_data;
	struct console	*con = c->console;

	if (cl == NULL || cl->state != CMDLINE_WAIT)
		return;
	switch (r) {
	case ATTACHED_WRITER:
	case ATTACHED_SPY:
	case ATTACHED_RO:
		break;
	default:
		cl->state = CMDLINE_SELECT;
		client_printf(c, "[%s]\r\n", why != NULL ? why :
		    attach_result_string(r));
		cmdline_prompt(c);
		return;
	}
	cl->state = CMDLINE_ATTACHED;
	cl->last_cr = 0;
	if (con != NULL && (con->flags & CONSOLE_REMOTE))
		client_printf(c, "[%s to %s (%s) on node %s]\r\n",
		    attach_result_string(r), con->name != NULL ? con->name :
		    "-", con->key, cluster_node_of(con));
	else if (con != NULL)
		client_printf(c, "[%s to %s (%s)%s]\r\n",
		    attach_result_string(r), con->name != NULL ? con->name :
		    "-", con->key, con->vm == NULL ? "; VM not connected" :
		    "");
	cmdline_stream(c);
}

static void
cmdline_who(struct client *c)
{
	struct console	*con = c->console;
	struct client	*o;

	client_printf(c, "%-24s %-10s %-10s %s\r\n", "WHO", "MODE", "IDLE",
	    "SKIPPED");
	TAILQ_FOREACH(o, &con->clients, centry) {
		client_printf(c, "%s@%-22s %-10s %-10lld %llu%s\r\n",
		    o->user != NULL ? o->user : "-", o->addr,
		    client_mode_name(o), (long long)(server_now -
		    o->last_input), (unsigned long long)o->skipped,
		    o == c ? " (you)" : "");
	}
}

/*
 * Escape commands of a person whose console is on another node: the
 * owner does them.  Returns 1 if the command was one of those.
 */
static int
cmdline_menu_remote(struct client *c, const char *cmd, const char *arg)
{
	long	n;
	int	rc;

	if (strcmp(cmd, "s") == 0 || strcmp(cmd, "spy") == 0)
		rc = cluster_fwd_mode(c, ATTACH_SPY, 0, 0);
	else if (strcmp(cmd, "w") == 0 || strcmp(cmd, "write") == 0 ||
	    strcmp(cmd, "a") == 0 || strcmp(cmd, "attach") == 0)
		rc = cluster_fwd_mode(c, ATTACH_DEFAULT, 0, 0);
	else if (strcmp(cmd, "f") == 0 || strcmp(cmd, "force") == 0)
		rc = cluster_fwd_mode(c, ATTACH_FORCE, 0, 0);
	else if (strcmp(cmd, "b") == 0 || strcmp(cmd, "break") == 0)
		rc = cluster_fwd_mode(c, ATTACH_DEFAULT, 0, 1);
	else if (strcmp(cmd, "r") == 0 || strcmp(cmd, "replay") == 0) {
		n = server_conf->console_replay_lines;
		if (arg != NULL && *arg != '\0') {
			n = strtol(arg, NULL, 10);
			if (n <= 0 || n > 100000)
				n = server_conf->console_replay_lines;
		}
		rc = cluster_fwd_mode(c, ATTACH_DEFAULT, n, 0);
	} else if (strcmp(cmd, "who") == 0) {
		client_printf(c, "[the console is on node %s; ask there "
		    "who is attached]\r\n", cluster_node_of(c->console));
		rc = 0;
	} else
		return (0);
	if (rc == -1)
		client_printf(c, "[the console's node cannot be reached]\r\n");
	cmdline_stream(c);
	return (1);
}

static void
cmdline_menu(struct client *c, char *line)
{
	struct cmdline	*cl = c->proto_data;
	struct console	*con = c->console;
	char		*cmd, *arg, err[160];
	const char	*e;
	long		 n;

	cl->state = CMDLINE_ATTACHED;
	if (con == NULL) {
		cl->state = CMDLINE_SELECT;
		cmdline_prompt(c);
		return;
	}
	arg = line;
	while (isspace((u_char)*arg))
		arg++;
	cmd = strsep(&arg, " \t");
	if (cl->ro && (strcmp(cmd, "w") == 0 || strcmp(cmd, "write") == 0 ||
	    strcmp(cmd, "s") == 0 || strcmp(cmd, "spy") == 0 ||
	    strcmp(cmd, "a") == 0 || strcmp(cmd, "attach") == 0 ||
	    strcmp(cmd, "f") == 0 || strcmp(cmd, "force") == 0 ||
	    strcmp(cmd, "b") == 0 || strcmp(cmd, "break") == 0)) {
		log_warnx("client %u %s@%s: \"%s\" on %s refused: read-only "
		    "access", c->id, c->user, c->addr, cmd, con->key);
		client_printf(c, "[permission denied: read-only access]\r\n");
		cmdline_stream(c);
		return;
	}
	if (cluster_client_forwarded(c) && cmdline_menu_remote(c, cmd, arg))
		return;
	if (*cmd == '\0' || strcmp(cmd, "c") == 0 ||
	    strcmp(cmd, "continue") == 0) {
		client_printf(c, "[continue]\r\n");
	} else if (strcmp(cmd, "d") == 0 || strcmp(cmd, "detach") == 0 ||
	    strcmp(cmd, "q") == 0 || strcmp(cmd, "quit") == 0) {
		client_printf(c, "[detached]\r\n");
		client_close(c, "detached");
		return;
	} else if (strcmp(cmd, "s") == 0 || strcmp(cmd, "spy") == 0) {
		console_set_mode(con, c, ATTACH_SPY, err, sizeof err);
		client_printf(c, "[spy]\r\n");
	} else if (strcmp(cmd, "w") == 0 || strcmp(cmd, "write") == 0 ||
	    strcmp(cmd, "a") == 0 || strcmp(cmd, "attach") == 0) {
		if (console_set_mode(con, c, ATTACH_DEFAULT, err,
		    sizeof err) == -1)
			client_printf(c, "[%s]\r\n", err);
		else
			client_printf(c, "[attached]\r\n");
	} else if (strcmp(cmd, "f") == 0 || strcmp(cmd, "force") == 0) {
		if (console_set_mode(con, c, ATTACH_FORCE, err,
		    sizeof err) == -1)
			client_printf(c, "[%s]\r\n", err);
		else
			client_printf(c, "[attached]\r\n");
	} else if (strcmp(cmd, "r") == 0 || strcmp(cmd, "replay") == 0) {
		n = server_conf->console_replay_lines;
		if (arg != NULL && *arg != '\0') {
			n = strtol(arg, NULL, 10);
			if (n <= 0 || n > 100000)
				n = server_conf->console_replay_lines;
		}
		client_printf(c, "[replay of the last %ld lines]\r\n", n);
		console_replay(con, c, n);
		client_printf(c, "\r\n[end of replay]\r\n");
	} else if (strcmp(cmd, "b") == 0 || strcmp(cmd, "break") == 0) {
		if (!(c->flags & CLIENT_WRITE))
			client_printf(c, "[only the writer can send a "
			    "break]\r\n");
		else {
			console_send_break(con);
			client_printf(c, "[break sent]\r\n");
		}
	} else if (strcmp(cmd, "who") == 0) {
		cmdline_who(c);
	} else if (strcmp(cmd, "h") == 0 || strcmp(cmd, "help") == 0 ||
	    strcmp(cmd, "?") == 0) {
		client_write(c, cmdline_help, sizeof cmdline_help - 1);
	} else {
		e = cmd;
		client_printf(c, "[unknown command \"%s\"; h for help]\r\n", e);
	}
	cmdline_stream(c);
}

/* Line editing for the console picker and the escape prompt. */
static void
cmdline_edit(struct client *c, u_char ch)
{
	struct cmdline	*cl = c->proto_data;
	char		 line[CMDLINE_MAX];

	if (ch == '\r' || ch == '\n') {
		if (ch == '\n' && cl->last_cr) {
			cl->last_cr = 0;
			return;
		}
		cl->last_cr = (ch == '\r');
		client_write(c, "\r\n", 2);
		memcpy(line, cl->line, cl->len);
		line[cl->len] = '\0';
		cl->len = 0;
		explicit_bzero(cl->line, sizeof cl->line);
		if (cl->state == CMDLINE_MENU)
			cmdline_menu(c, line);
		else if (cl->state == CMDLINE_LOGIN ||
		    cl->state == CMDLINE_PASSWORD)
			cmdline_login_line(c, line);
		else
			cmdline_select(c, line);
		explicit_bzero(line, sizeof line);
		return;
	}
	cl->last_cr = 0;
	if (ch == 0)
		return;
	if (ch == 0x7f || ch == 0x08) {
		if (cl->len > 0) {
			cl->len--;
			if (cl->state != CMDLINE_PASSWORD)
				client_write(c, "\b \b", 3);
		}
		return;
	}
	if (ch == 0x03 || ch == 0x04) {		/* ^C, ^D */
		if (cl->state == CMDLINE_MENU) {
			cl->len = 0;
			line[0] = '\0';
			cmdline_menu(c, line);
			return;
		}
		client_close(c, "interrupted");
		return;
	}
	if (ch == 0x15) {			/* ^U */
		while (cl->len > 0) {
			cl->len--;
			if (cl->state != CMDLINE_PASSWORD)
				client_write(c, "\b \b", 3);
		}
		return;
	}
	if (ch < 0x20 || cl->len >= CMDLINE_MAX - 1)
		return;
	cl->line[cl->len++] = ch;
	/* WILL ECHO is on: a password typed is shown by nobody. */
	if (cl->state != CMDLINE_PASSWORD)
		client_write(c, &ch, 1);
}

/*
 * Typing on a console the person may only watch: discarded and counted,
 * with a notice at most every ten seconds; the escape key still works.
 */
static void
cmdline_ro_input(struct client *c, const u_char *buf, size_t len)
{
	struct cmdline	*cl = c->proto_data;
	const u_char	*esc;
	size_t		 n;

	esc = memchr(buf, server_conf->console_escape, len);
	n = esc != NULL ? (size_t)(esc - buf) : len;
	if (n > 0) {
		server_stats.readonly_dropped += n;
		if (server_now - cl->ro_notice >= 10) {
			cl->ro_notice = server_now;
			client_printf(c, "\r\n[-- read-only access: input "
			    "discarded --]\r\n");
		}
	}
	if (esc == NULL)
		return;
	cl->state = CMDLINE_MENU;
	cl->len = 0;
	c->flags &= ~CLIENT_STREAM;
	client_printf(c, "\r\n[%s]> ", c->console != NULL ?
	    (c->console->name != NULL ? c->console->name : c->console->key) :
	    "vspc");
	if (n + 1 < len)
		cmdline_tn_data(c, esc + 1, len - n - 1);
}

static void
cmdline_tn_data(void *arg, const u_char *buf, size_t len)
{
	struct client	*c = arg;
	struct cmdline	*cl = c->proto_data;
	u_char		 esc = server_conf->console_escape;
	size_t		 i = 0, start;
	int		 binary;

	while (i < len) {
		if (c->flags & (CLIENT_DEAD|CLIENT_CLOSING))
			return;
		if (cl->state == CMDLINE_WAIT || cl->state == CMDLINE_AUTHWAIT)
			return;		/* Typed before the answer: dropped. */
		if (cl->state != CMDLINE_ATTACHED) {
			if (cl->state == CMDLINE_MENU && cl->len == 0 &&
			    buf[i] == esc) {
				/* Escape twice: send it to the VM. */
				cl->state = CMDLINE_ATTACHED;
				client_write(c, "\r\n", 2);
				client_input_to_vm(c, &esc, 1);
				cmdline_stream(c);
			} else
				cmdline_edit(c, buf[i]);
			i++;
			continue;
		}

		/*
		 * Attached: pass a run up to the next escape key.  Without
		 * BINARY from the client, telnet sends CR NUL for a bare
		 * carriage return: drop the NUL.
		 */
		if (cl->ro) {
			cmdline_ro_input(c, buf + i, len - i);
			return;
		}
		binary = telnet_enabled(&c->tn, TELOPT_BINARY, 1);
		start = i;
		for (; i < len; i++) {
			if (buf[i] == esc)
				break;
			if (!binary && buf[i] == '\0' && cl->last_cr) {
				client_input_to_vm(c, buf + start, i - start);
				start = i + 1;
			}
			cl->last_cr = (buf[i] == '\r');
		}
		client_input_to_vm(c, buf + start, i - start);
		if (i < len) {
			i++;
			cl->state = CMDLINE_MENU;
			cl->len = 0;
			c->flags &= ~CLIENT_STREAM;
			client_printf(c, "\r\n[%s]> ", c->console != NULL ?
			    (c->console->name != NULL ? c->console->name :
			    c->console->key) : "vspc");
		}
	}
}

static void
cmdline_tn_sb(void *arg, u_char opt, const u_char *buf, size_t len)
{
}

static void
cmdline_tn_option(void *arg, u_char opt, int him, int on)
{
}

static void
cmdline_tn_command(void *arg, u_char cmd)
{
	struct client	*c = arg;
	struct cmdline	*cl = c->proto_data;

	switch (cmd) {
	case TEL_BRK:
		if (cl->state == CMDLINE_ATTACHED && c->console != NULL &&
		    (c->flags & CLIENT_WRITE))
			console_send_break(c->console);
		break;
	case TEL_IP:
		if (cl->state != CMDLINE_ATTACHED)
			client_close(c, "interrupted");
		else if (c->console != NULL)
			client_input_to_vm(c, (const u_char *)"\003", 1);
		break;
	case TEL_AYT:
		client_printf(c, "\r\n[vspcd %s: yes]\r\n", VSPCD_VERSION);
		break;
	}
}

static void
cmdline_tn_output(void *arg, const u_char *buf, size_t len)
{
	client_write(arg, buf, len);
}

/* Hot upgrade: the person's prompt, menu state and partial line. */
static size_t
cmdline_handoff_pack(struct client *c, uint8_t **out)
{
	struct cmdline		*cl = c->proto_data;
	Vspc__Handoff__Cmdline	 m = VSPC__HANDOFF__CMDLINE__INIT;
	uint64_t		 extra[2];
	size_t			 len;

	if (cl == NULL) {
		*out = NULL;
		return (0);
	}
	m.state = cl->state;
	m.line.data = (uint8_t *)cl->line;
	m.line.len = cl->len;
	m.flags = cl->last_cr;
	/* extra: read-only access, failed logins. */
	extra[0] = cl->ro;
	extra[1] = cl->attempts;
	m.extra = extra;
	m.n_extra = 2;
	len = vspc__handoff__cmdline__get_packed_size(&m);
	*out = xmalloc(len + 1);
	vspc__handoff__cmdline__pack(&m, *out);
	return (len);
}

/* Hot upgrade: rebuild a console-port person's state. */
static int
cmdline_handoff_unpack(struct client *c, const uint8_t *data, size_t len)
{
	Vspc__Handoff__Cmdline	*m;
	struct cmdline		*cl;
	struct timeval		 tv;

	if ((m = vspc__handoff__cmdline__unpack(NULL, len, data)) == NULL)
		return (-1);
	cl = xcalloc(1, sizeof *cl);
	cl->state = m->state < CMDLINE_STATE_MAX ? m->state : CMDLINE_SELECT;
	cl->len = m->line.len < sizeof cl->line ? m->line.len :
	    sizeof cl->line - 1;
	if (cl->len != 0)
		memcpy(cl->line, m->line.data, cl->len);
	cl->last_cr = m->flags;
	if (m->n_extra >= 2) {
		cl->ro = m->extra[0] != 0;
		cl->attempts = m->extra[1];
	}
	c->proto_data = cl;
	/*
	 * Logging in: the name typed and a password being checked are not
	 * handed over; the next line counts as a failed attempt and the
	 * person is asked again, with a new login_timeout.
	 */
	if (cl->state == CMDLINE_LOGIN || cl->state == CMDLINE_PASSWORD ||
	    cl->state == CMDLINE_AUTHWAIT) {
		if (cl->state != CMDLINE_LOGIN)
			cl->state = CMDLINE_PASSWORD;
		cl->login_timer = evtimer_new(server_base,
		    cmdline_login_timeout_cb, c);
		tv.tv_sec = server_conf->console_login_timeout;
		tv.tv_usec = 0;
		evtimer_add(cl->login_timer, &tv);
	}
	telnet_init(&c->tn, &cmdline_telnet_ops, c, 0, 0, 512);
	vspc__handoff__cmdline__free_unpacked(m, NULL);
	return (0);
}
