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
 * The latency histograms the core records into (vMotion GOAHEAD and
 * PEER-OK times) and metrics.c exports.  Data and one function that
 * calls nothing: recording a latency does not tie the core to what
 * /metrics reads from every module.
 */

#include "vspcd.h"

/* Bucket upper bounds in microseconds: 50 us to 5 s. */
const uint64_t metrics_bounds[METRICS_BUCKETS] = {
	50, 100, 250, 500,
	1000, 2500, 5000, 10000, 25000, 50000,
	100000, 250000, 500000, 1000000, 2500000, 5000000
};

struct metrics_hist metrics_hists[METRICS_HIST_MAX] = {
	[METRICS_GOAHEAD] = { .name = "vspcd_vmotion_goahead_seconds",
	    .help = "Time from VMOTION-BEGIN to VMOTION-GOAHEAD." },
	[METRICS_PEER_OK] = { .name = "vspcd_vmotion_peer_ok_seconds",
	    .help = "Time from VMOTION-PEER to VMOTION-PEER-OK." },
};

/* Record one latency, in microseconds. */
void
metrics_observe(enum metrics_hist_id id, uint64_t us)
{
	struct metrics_hist	*h;
	u_int			 i;

	if (id >= METRICS_HIST_MAX)
		return;
	h = &metrics_hists[id];
	for (i = 0; i < METRICS_BUCKETS; i++) {
		if (us <= metrics_bounds[i]) {
			h->bucket[i]++;
			break;
		}
	}
	h->count++;
	h->sum_us += us;
}
