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
 * Fuzz target for the ESXi side as a whole: bytes from up to four ESXi
 * connections go through node/vmconn.c's read path (telnet codec,
 * option 232 negotiation, identity, DO-PROXY, the vMotion sub-commands
 * of vmotion.c with the local store) and one person on the console port
 * watches or types.  The input is a script for the node harness
 * (node.c): slots 0-3 are ESXi hosts, slot 4 a person.  Action 2 ("send
 * the GOAHEAD token of slot N as VMOTION-PEER") lets the fuzzer finish a
 * vMotion although the secret is random.
 *
 * After each input the node's tables must agree with each other: every
 * console's connection is live and points back at it, the counters
 * match the lists.
 */

#include <stdint.h>
#include <string.h>

#include "vspcd.h"
#include "fuzz.h"

#define FUZZ_MAX	65536

static const char *fuzz_conf[] = {
	"vm.accept_uri=vSPC.py, telnet://vspc.example:13370",
	"vm.hold=1k",
	"vm.subnegotiation_max=256",
	"console.history=4k",
};

static const enum fnode_kind fuzz_slots[] = {
	FNODE_VM, FNODE_VM, FNODE_VM, FNODE_VM, FNODE_CONSOLE
};

static void
fuzz_check_tables(void)
{
	struct console	*con;
	struct vmconn	*v;
	u_int		 n = 0, found;

	TAILQ_FOREACH(v, &all_vmconns, gentry) {
		n++;
		if (v->flags & VMCONN_DEAD)
			continue;
		CHECK(v->role < VMCONN_ROLE_MAX);
		if (v->role == VMCONN_CURRENT) {
			CHECK(v->console != NULL);
			CHECK(v->console->vm == v);
		}
	}
	CHECK(n == nvmconns);
	n = 0;
	TAILQ_FOREACH(con, &all_consoles, gentry) {
		n++;
		CHECK(console_find(con->key) == con);
		if (con->vm == NULL)
			continue;
		found = 0;
		TAILQ_FOREACH(v, &all_vmconns, gentry) {
			if (v == con->vm)
				found = 1;
		}
		CHECK(found);
		CHECK(!(con->vm->flags & VMCONN_DEAD));
		CHECK(con->vm->console == con);
	}
	CHECK(n == nconsoles);
}

/* One input: see the layout at the top of this file. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX)
		return (0);
	fnode_init(fuzz_conf, sizeof fuzz_conf / sizeof fuzz_conf[0]);
	fnode_run_script(data, size, fuzz_slots, NULL,
	    sizeof fuzz_slots / sizeof fuzz_slots[0]);
	fuzz_check_tables();
	fnode_reset();
	return (0);
}
