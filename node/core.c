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
 * The core's side of its boundary with the layers above it.
 *
 * The core is the ESXi side and the console itself: telnet.c, vmconn.c,
 * vmotion.c, console.c, ring.c, logfile.c and client.c.  It never calls
 * the cluster, the peer link, the control socket, the hand-over, the
 * Redis store or HTTP by name.  What it needs of the cluster goes through
 * core_hooks; whether a hot upgrade is quiescing the node is the
 * core_quiescing flag, which handoff.c sets; the store is reached through
 * store.h's vtable.
 *
 * core_hooks starts out as core_local_hooks, the answers of a node on its
 * own: nothing is forwarded, no console is owned elsewhere, nobody is told
 * of changes.  cluster_start() swaps in cluster.c's table
 * (cluster-hooks.c); it is never swapped back, as cluster.c's functions
 * do nothing once the cluster is stopped.  So the core runs, and its unit
 * tests link, with no cluster object at all.
 */

#include <sys/time.h>

#include "vspcd.h"
#include "store.h"

static void	core_local_console(struct console *);
static void	core_local_claim_later(struct console *, uint64_t);
static enum attach_result core_local_attach(struct console *,
		    struct client *, enum attach_mode);
static int	core_local_forwarded(const struct client *);
static void	core_local_client(struct client *);
static void	core_local_fwd_input(struct client *, const u_char *,
		    size_t);
static void	core_local_fwd_drained(struct client *, size_t);
static size_t	core_local_fwd_window(const struct client *);
static int	core_local_vmotion_peer(struct vmconn *, const u_char *,
		    size_t, const struct store_token *);
static void	core_local_vmotion_complete(struct vmconn *);
static void	core_local_vmotion_cancelled(struct console *,
		    const char *);

static const struct core_hooks core_local_hooks = {
	.console_changed = core_local_console,
	.console_bound = core_local_console,
	.claim_later = core_local_claim_later,
	.recheck = core_local_console,
	.attach = core_local_attach,
	.client_forwarded = core_local_forwarded,
	.client_gone = core_local_client,
	.fwd_input = core_local_fwd_input,
	.fwd_drained = core_local_fwd_drained,
	.fwd_window = core_local_fwd_window,
	.vmotion_peer = core_local_vmotion_peer,
	.vmotion_complete = core_local_vmotion_complete,
	.vmotion_cancelled = core_local_vmotion_cancelled
};

const struct core_hooks	*core_hooks = &core_local_hooks;
int			 core_quiescing;

/* Nobody else keeps a record of a console. */
static void
core_local_console(struct console *con)
{
}

/* Claims are only ever missed by a shared store. */
static void
core_local_claim_later(struct console *con, uint64_t known)
{
}

/* No console is owned elsewhere: there is nobody to ask. */
static enum attach_result
core_local_attach(struct console *con, struct client *c,
    enum attach_mode mode)
{
	return (ATTACH_REFUSED_REMOTE);
}

/* Every person is on a console of this node. */
static int
core_local_forwarded(const struct client *c)
{
	return (0);
}

static void
core_local_client(struct client *c)
{
}

static void
core_local_fwd_input(struct client *c, const u_char *buf, size_t len)
{
}

static void
core_local_fwd_drained(struct client *c, size_t n)
{
}

static size_t
core_local_fwd_window(const struct client *c)
{
	return (0);
}

/* A token from another node cannot be honoured without a cluster. */
static int
core_local_vmotion_peer(struct vmconn *v, const u_char *tok, size_t len,
    const struct store_token *val)
{
	log_warnx("vm conn %u %s: vMotion of console %s: source node %s "
	    "cannot be reached; refusing the destination", v->id, v->addr,
	    val->console, val->node);
	return (-1);
}

static void
core_local_vmotion_complete(struct vmconn *v)
{
}

static void
core_local_vmotion_cancelled(struct console *con, const char *why)
{
}

/* Microseconds until a timer fires; -1 if it is not armed. */
int64_t
core_timer_left(const struct event *ev)
{
	struct timeval	tv, now;
	int64_t		us;

	if (ev == NULL || !evtimer_pending(ev, &tv))
		return (-1);
	gettimeofday(&now, NULL);
	us = ((int64_t)tv.tv_sec - now.tv_sec) * 1000000 +
	    (tv.tv_usec - now.tv_usec);
	return (us < 0 ? 0 : us);
}

/* Arm a timer for us microseconds (nothing if us is negative). */
void
core_timer_set(struct event *ev, int64_t us)
{
	struct timeval	tv;

	if (ev == NULL || us < 0)
		return;
	tv.tv_sec = us / 1000000;
	tv.tv_usec = us % 1000000;
	evtimer_add(ev, &tv);
}
