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
 * Shared by the fuzz targets that run the node itself (node.c): a node
 * with no listening socket, whose connections are socketpairs.  The
 * target writes what a host or a person would send into the far end of
 * each pair and runs the event loop until the node has nothing left to
 * do; the harness reads (and, for ESXi connections, decodes) what the
 * node answers.  After each input everything is torn down, so that
 * inputs do not depend on each other.
 */

#ifndef FUZZ_H
#define FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #x);					\
		abort();						\
	}								\
} while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

enum fnode_kind {
	FNODE_VM,		/* An ESXi host (vmconn_create). */
	FNODE_CONSOLE,		/* Console port (cmdline_accept). */
	FNODE_COMPAT,		/* Compatibility port (compat_accept). */
	FNODE_KIND_MAX
};

#define FNODE_CONNS	8

void	 fnode_init(const char **, u_int);
int	 fnode_open(enum fnode_kind);
void	 fnode_send(int, const void *, size_t);
void	 fnode_send_sb(int, u_char, const void *, size_t);
void	 fnode_send_token(int, int);
void	 fnode_eof(int);
int	 fnode_closed(int);
size_t	 fnode_received(int);
void	 fnode_settle(void);
void	 fnode_reset(void);
int	 fnode_vm(const char *, const char *, const char *);
int	 fnode_run_script(const uint8_t *, size_t, const enum fnode_kind *,
	     const int *, u_int);
#define FNODE_PEOPLE_MAX	65536
int	 fnode_people_input(const uint8_t *, size_t, enum fnode_kind);

#endif /* FUZZ_H */
