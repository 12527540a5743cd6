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
 * Fuzz target for the compatibility port (node/compat.c): the detection
 * of the client's kind, vSPCClient's pickles and the VMware admin option
 * 0xE9 (233) with its GET_VM_PORT_LIST and VM_PORT_SET_CONNECTION
 * sub-commands, attached to two bound VMs.
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

#define FUZZ_MAX	65536

static const char *fuzz_conf[] = {
	"console.history=4k",
	"console.client_buffer=4k",
};

static const enum fnode_kind fuzz_slots[] = {
	FNODE_COMPAT, FNODE_COMPAT, FNODE_VM, FNODE_VM
};

static void
fuzz_check_people(void)
{
	struct console	*con;
	struct client	*c, *c2;
	u_int		 found;

	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->console == NULL || (c->flags & CLIENT_DEAD))
			continue;
		found = 0;
		TAILQ_FOREACH(con, &all_consoles, gentry) {
			if (con == c->console)
				found = 1;
		}
		CHECK(found);
		found = 0;
		TAILQ_FOREACH(c2, &c->console->clients, centry) {
			if (c2 == c)
				found = 1;
		}
		CHECK(found);
	}
}

/* One input: see the layout at the top of this file. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int	open[4] = { -1, -1, -1, -1 };

	if (size > FUZZ_MAX)
		return (0);
	fnode_init(fuzz_conf, sizeof fuzz_conf / sizeof fuzz_conf[0]);
	open[2] = fnode_vm("42 0a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8",
	    "web01", "vSPC.py");
	open[3] = fnode_vm("42 0a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f9",
	    "web02", "vSPC.py");
	CHECK(nconsoles == 2);
	fnode_run_script(data, size, fuzz_slots, open,
	    sizeof fuzz_slots / sizeof fuzz_slots[0]);
	fuzz_check_people();
	fnode_reset();
	return (0);
}
