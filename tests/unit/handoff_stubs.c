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
 * The hand-over entry points for unit tests that link a module without
 * node/handoff.c: the modules' save and restore code is linked but never
 * run there (test_upgrade.py and test_cluster_upgrade.py run it for
 * real), so reaching any of these is a bug in the test.
 */

#include "vspcd.h"

int
handoff_add_fd(struct handoff *h, int fd)
{
	(void)h;
	(void)fd;
	fatalx("%s: not in unit tests", __func__);
}

int
handoff_take_fd(struct handoff *h, int idx)
{
	(void)h;
	(void)idx;
	fatalx("%s: not in unit tests", __func__);
}

void
handoff_add_msg(struct handoff *h, enum handoff_rec type,
    const struct ProtobufCMessage *msg)
{
	(void)h;
	(void)type;
	(void)msg;
	fatalx("%s: not in unit tests", __func__);
}
