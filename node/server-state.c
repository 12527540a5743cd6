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
 * The node's shared state: the event base, the configuration in force,
 * the store, the statistics, the clock, and the few flags every layer
 * reads.  Data only (and the monotonic clock): nothing here calls any
 * module, so the core can use it without reaching the layers above it;
 * server.c sets it up.
 */

#include <time.h>

#include "vspcd.h"

struct event_base	*server_base;
struct config		*server_conf;
struct store		*server_store;
struct stats		 server_stats;
time_t			 server_now;
int			 server_debug;
int			 server_draining;
struct auth		*server_auth;
struct limit_slot	*server_accept_slot;

/* Microseconds on the monotonic clock. */
uint64_t
server_monotime_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}
