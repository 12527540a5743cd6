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
 * Fuzz target for the PROXY header parser (proxy_parse in node/proxy.c).
 * The input is the start of a connection.  Checked: a complete header
 * lies within the input and within the protocol's bounds, its address
 * is IPv4, IPv6 or unspecified, an error comes with a reason, and the
 * verdicts agree with the way proxy.c reads a connection: every proper
 * prefix of a complete header needs more, every longer input gives the
 * same header, and once an input is refused so is every longer one.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #x);					\
		abort();						\
	}								\
} while (0)

#define FUZZ_MAX	1024

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage	 ss, ss2;
	const char		*err = NULL;
	size_t			 hdrlen = 0, hdrlen2, k;
	int			 rv, rv2, refused = 0;

	if (size > FUZZ_MAX)
		size = FUZZ_MAX;
	rv = proxy_parse(data, size, &ss, &hdrlen, &err);
	CHECK(rv >= -1 && rv <= 1);
	if (rv == -1)
		CHECK(err != NULL && *err != '\0');
	if (rv == 1) {
		CHECK(hdrlen > 0 && hdrlen <= size && hdrlen <= 16 + 512);
		CHECK(data[0] != 'P' || hdrlen <= 107);
		CHECK(ss.ss_family == AF_UNSPEC || ss.ss_family == AF_INET ||
		    ss.ss_family == AF_INET6);
	}
	if (rv == 0)
		CHECK(size <= 16 + 512);

	for (k = 0; k <= size; k++) {
		err = NULL;
		hdrlen2 = 0;
		rv2 = proxy_parse(data, k, &ss2, &hdrlen2, &err);
		if (rv == 1 && k < hdrlen)
			CHECK(rv2 == 0);
		else if (rv == 1) {
			CHECK(rv2 == 1 && hdrlen2 == hdrlen);
			CHECK(ss2.ss_family == ss.ss_family);
		} else if (rv == 0)
			CHECK(rv2 == 0);
		else
			CHECK(rv2 != 1);
		if (refused)
			CHECK(rv2 == -1);
		if (rv2 == -1)
			refused = 1;
	}
	return (0);
}
