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
 * The cluster's answers to the core (see core.c): cluster.c's public
 * functions, installed as core_hooks when the node joins its cluster.
 * The table is the whole of what the core asks of the cluster.
 */

#include "vspcd.h"

static const struct core_hooks cluster_hooks = {
	.console_changed = cluster_console_changed,
	.console_bound = cluster_console_bound,
	.claim_later = cluster_claim_later,
	.recheck = cluster_recheck,
	.attach = cluster_attach,
	.client_forwarded = cluster_client_forwarded,
	.client_gone = cluster_client_gone,
	.fwd_input = cluster_fwd_input,
	.fwd_drained = cluster_fwd_drained,
	.fwd_window = cluster_fwd_window,
	.vmotion_peer = cluster_vmotion_peer,
	.vmotion_complete = cluster_vmotion_complete,
	.vmotion_cancelled = cluster_vmotion_cancelled
};

/* Answer the core's questions with the cluster's (from cluster_start). */
void
cluster_hooks_install(void)
{
	core_hooks = &cluster_hooks;
}
