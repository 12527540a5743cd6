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
 * vspcctl: the operator's tool.  One static table of commands (tmux's
 * cmd_entry shape), one vtable per output format (human tables, JSON),
 * the control socket's framing, and the interactive attach.
 */

#ifndef VSPCCTL_H
#define VSPCCTL_H

#include <stdint.h>
#include <stdio.h>

#include "proto/control.pb-c.h"

#define CTL_ESCAPE_DEFAULT	0x1d	/* ^] */
#define CTL_RETRY_DEFAULT	60	/* attach --retry, seconds. */

struct ctl_cmd;

/* How a reply is printed: a view each output format implements. */
enum ctl_view {
	CTL_VIEW_STATUS,	/* The nodes of the cluster. */
	CTL_VIEW_VM_LIST,	/* One line per console. */
	CTL_VIEW_VM_SHOW,	/* One console in full. */
	CTL_VIEW_WHO,		/* People on consoles. */
	CTL_VIEW_MESSAGE,	/* A node's one-line answer. */
	CTL_VIEW_TEXT,		/* The node's text as it is, in any format. */
	CTL_VIEW_MAX
};

/*
 * A command: words to type, arguments, what runs it.  Without exec, the
 * command sends one request, with its argument (if any) as the target or
 * the node, and prints the reply with the view of the chosen output.
 */
struct ctl_cmd {
	const char	*name;		/* "cluster status", "vm list"... */
	const char	*usage;		/* Arguments after the name. */
	int		 minargs;
	int		 maxargs;	/* -1: any. */
	Vspc__Ctl__Command request;
	int		 flags;
#define CTL_ARG_TARGET	0x1	/* The argument is the target (VM, ID). */
#define CTL_ARG_NODE	0x2	/* The argument is a node. */
	enum ctl_view	 view;
	int		 (*exec)(const struct ctl_cmd *, int, char **);
};

/* An output format: how it prints each view. */
struct ctl_output {
	const char	*name;
	void		 (*view[CTL_VIEW_MAX])(const Vspc__Ctl__Reply *);
};

extern const struct ctl_output	 ctl_output_human;
extern const struct ctl_output	 ctl_output_json;
extern const struct ctl_output	*ctl_out;
extern const char		*ctl_socket;
extern const char		*ctl_connect_addr;	/* -c HOST:PORT */
extern int			 ctl_escape_key;

/* vspcctl.c */
int			 ctl_connect(void);
int			 ctl_dial(char **);
int			 ctl_send(int, Vspc__Ctl__Request *);
Vspc__Ctl__Reply	*ctl_recv(int);
void			 ctl_request_init(Vspc__Ctl__Request *,
			     Vspc__Ctl__Command);

/* upgrade.c */
int			 ctl_cluster_upgrade(const struct ctl_cmd *, int,
			     char **);

/* attach.c */
int			 ctl_attach(int, const char *, uint32_t, unsigned int);

#endif /* VSPCCTL_H */
