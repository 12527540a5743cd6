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
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

#define CMDLINE_MAX	256

enum cmdline_state {
	CMDLINE_SELECT,		/* Asking which console. */
	CMDLINE_ATTACHED,	/* Bytes go to the VM. */
	CMDLINE_MENU,		/* Escape prompt open. */
	CMDLINE_WAIT,		/* Waiting for another node's answer. */
	CMDLINE_STATE_MAX
};

struct cmdline {
	enum cmdline_state	 state;
	char			 line[CMDLINE_MAX];
	size_t			 len;
	int			 last_cr;
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

const struct client_proto cmdline_proto = {
	"console",
	cmdline_input,
	cmdline_notice,
	cmdline_free,
	cmdline_attached
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
	cmdline_prompt(c);
}

static void
cmdline_free(struct client *c)
{
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
		if (cl->state == CMDLINE_MENU)
			cmdline_menu(c, line);
		else
			cmdline_select(c, line);
		return;
	}
	cl->last_cr = 0;
	if (ch == 0)
		return;
	if (ch == 0x7f || ch == 0x08) {
		if (cl->len > 0) {
			cl->len--;
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
			client_write(c, "\b \b", 3);
		}
		return;
	}
	if (ch < 0x20 || cl->len >= CMDLINE_MAX - 1)
		return;
	cl->line[cl->len++] = ch;
	client_write(c, &ch, 1);
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
		if (cl->state == CMDLINE_WAIT)
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
