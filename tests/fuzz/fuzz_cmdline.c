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
 * Fuzz target for the console port: people's telnet sessions through
 * node/cmdline.c (the console prompt, line editing, the escape menu and
 * its commands) and node/client.c, attached to two bound VMs.
 *
 * The input is a script for the node harness (node.c): slots 0 and 1 are
 * people, slots 2 and 3 the ESXi connections of the VMs web01 and web02
 * (already identified), whose output people see.  After each input a
 * person may be attached only to a console that exists, and every
 * attached person is on its console's list.
 */

#include <stdint.h>
#include <string.h>

#include "vspcd.h"
#include "fuzz.h"

/* One input: see the layout at the top of this file. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return (fnode_people_input(data, size, FNODE_CONSOLE));
}
