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
 * Fuzz target for the telnet codec.  Input layout:
 *
 *	byte 0		chunking seed (0: the whole input in one call)
 *	byte 1		bits 0-6: accept_us mask; bit 7: make the
 *			server's proactive offer first
 *	byte 2		bits 0-6: accept_him mask
 *	byte 3		subnegotiation cap: 1 + byte * 16
 *	rest		the telnet stream
 *
 * The stream is decoded twice, in one call and in chunks, and the two
 * event streams must be the same (data compared byte-wise, so the run
 * boundaries may differ; callbacks and errors must match exactly).
 * Every callback checks its arguments: data runs inside the input
 * buffer, subnegotiations within the cap, options in the table, commands
 * in DM..GA.  Then the stream is used as a payload: telnet_send_sb and
 * telnet_escape/telnet_escape_add must produce bytes that decode back to
 * it.
 */

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

#define FUZZ_MAX	65536

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct fuzz {
	struct telnet	 t;
	const u_char	*in;		/* Current input chunk. */
	size_t		 inlen;
	uint64_t	 hash;		/* Of the event stream. */
	u_char		*data;		/* Data collected. */
	size_t		 datalen;
	size_t		 datasize;
	u_int		 nsb;
	u_char		*sb;		/* Last subnegotiation. */
	size_t		 sblen;
	u_char		 sbopt;
	u_int		 nother;	/* Options, commands and output. */
	u_char		*out;		/* Output collected. */
	size_t		 outlen;
};

static void
fuzz_hash(struct fuzz *f, const void *p, size_t len)
{
	const u_char	*s = p;
	size_t		 i;

	for (i = 0; i < len; i++) {
		f->hash ^= s[i];
		f->hash *= 1099511628211ULL;
	}
}

static void
fuzz_append(u_char **buf, size_t *len, size_t *size, const u_char *p,
    size_t n)
{
	if (*len + n > *size) {
		*size = (*len + n) * 2;
		*buf = realloc(*buf, *size);
		CHECK(*buf != NULL);
	}
	memcpy(*buf + *len, p, n);
	*len += n;
}

static void
cb_data(void *arg, const u_char *p, size_t len)
{
	struct fuzz	*f = arg;
	u_char		 tag = 'D';
	size_t		 i;

	CHECK(len > 0);
	CHECK(p >= f->in && p + len <= f->in + f->inlen);
	/* Byte-wise, so that runs split differently hash the same. */
	for (i = 0; i < len; i++) {
		fuzz_hash(f, &tag, 1);
		fuzz_hash(f, p + i, 1);
	}
	fuzz_append(&f->data, &f->datalen, &f->datasize, p, len);
}

static void
cb_sb(void *arg, u_char opt, const u_char *p, size_t len)
{
	struct fuzz	*f = arg;
	u_char		 tag = 'S';

	CHECK(len <= f->t.sb_max);
	CHECK(len == 0 || p != NULL);
	fuzz_hash(f, &tag, 1);
	fuzz_hash(f, &opt, 1);
	fuzz_hash(f, &len, sizeof len);
	fuzz_hash(f, p, len);
	free(f->sb);
	f->sb = malloc(len + 1);
	CHECK(f->sb != NULL);
	memcpy(f->sb, p, len);
	f->sblen = len;
	f->sbopt = opt;
	f->nsb++;
}

static void
cb_option(void *arg, u_char opt, int him, int on)
{
	struct fuzz	*f = arg;
	u_char		 ev[4] = { 'O', opt, him, on };

	CHECK(telnet_optidx(opt) != -1);
	CHECK(telnet_enabled(&f->t, opt, him) == on);
	fuzz_hash(f, ev, sizeof ev);
	f->nother++;
}

static void
cb_command(void *arg, u_char cmd)
{
	struct fuzz	*f = arg;
	u_char		 ev[2] = { 'C', cmd };

	CHECK(cmd >= TEL_DM && cmd <= TEL_GA);
	fuzz_hash(f, ev, sizeof ev);
	f->nother++;
}

static void
cb_output(void *arg, const u_char *p, size_t len)
{
	struct fuzz	*f = arg;
	u_char		 tag = 'W';
	size_t		 size = f->outlen;

	CHECK(len >= 2 && p[0] == TEL_IAC);
	/* Negotiation replies only: IAC verb option. */
	if (p[1] != TEL_SB)
		CHECK(len == 3 && p[1] >= TEL_WILL && p[1] <= TEL_DONT);
	fuzz_hash(f, &tag, 1);
	fuzz_hash(f, p, len);
	fuzz_append(&f->out, &f->outlen, &size, p, len);
	f->nother++;
}

static const struct telnet_ops fuzz_ops = {
	cb_data, cb_sb, cb_option, cb_command, cb_output
};

static void
fuzz_init(struct fuzz *f, u_int us, u_int him, size_t sb_max)
{
	memset(f, 0, sizeof *f);
	f->hash = 14695981039346656037ULL;
	telnet_init(&f->t, &fuzz_ops, f, us, him, sb_max);
}

static void
fuzz_done(struct fuzz *f)
{
	telnet_free(&f->t);
	free(f->data);
	free(f->sb);
	free(f->out);
}

static int
fuzz_feed(struct fuzz *f, const u_char *p, size_t len)
{
	int	rv;

	f->in = p;
	f->inlen = len;
	rv = telnet_input(&f->t, p, len);
	CHECK(rv == 0 || rv == -1);
	CHECK((rv == -1) == (f->t.error != NULL));
	/* The SB buffer exists only inside a subnegotiation. */
	if (f->t.state != TP_SB && f->t.state != TP_SB_IAC)
		CHECK(f->t.sb_buf == NULL);
	CHECK(f->t.sb_len <= f->t.sb_max);
	CHECK(f->t.sb_size <= f->t.sb_max);
	return (rv);
}

static void
fuzz_offer(struct fuzz *f)
{
	telnet_request(&f->t, TELOPT_BINARY, 0, 1);
	telnet_request(&f->t, TELOPT_SGA, 0, 1);
	telnet_request(&f->t, TELOPT_ECHO, 0, 1);
	telnet_request(&f->t, TELOPT_BINARY, 1, 1);
	telnet_request(&f->t, TELOPT_SGA, 1, 1);
	telnet_request(&f->t, TELOPT_VMWARE, 1, 1);
	CHECK(telnet_request(&f->t, 24, 1, 1) == -1);
}

/* Decode in chunks of 1..2^k bytes chosen by a small PRNG. */
static int
fuzz_chunks(struct fuzz *f, const u_char *p, size_t len, uint32_t seed)
{
	u_char	*copy;
	size_t	 off, n;
	int	 rv = 0;

	seed |= 1;
	for (off = 0; off < len && rv == 0; off += n) {
		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		n = 1 + seed % (1 + (seed >> 24) % 64);
		if (n > len - off)
			n = len - off;
		/* Own buffer, so that reading past it is caught. */
		copy = malloc(n);
		CHECK(copy != NULL);
		memcpy(copy, p + off, n);
		rv = fuzz_feed(f, copy, n);
		free(copy);
	}
	return (rv);
}

/* Escape then decode: the payload comes back unchanged. */
static void
fuzz_roundtrip(const u_char *p, size_t len)
{
	struct fuzz	 f;
	struct evbuffer	*evb;
	u_char		*esc, *flat;
	size_t		 n;

	if (len == 0)
		return;

	/* As a subnegotiation: one output call, one SB event back. */
	fuzz_init(&f, 0, 0, len);
	telnet_send_sb(&f.t, TELOPT_VMWARE, p[0], p + 1, len - 1);
	CHECK(f.nother == 1 && f.out != NULL);
	esc = f.out;
	n = f.outlen;
	f.out = NULL;
	f.outlen = 0;
	f.nother = 0;
	CHECK(fuzz_feed(&f, esc, n) == 0);
	CHECK(f.nsb == 1 && f.nother == 0 && f.datalen == 0);
	CHECK(f.sbopt == TELOPT_VMWARE && f.sblen == len);
	CHECK(memcmp(f.sb, p, len) == 0);
	free(esc);
	fuzz_done(&f);

	/* As data: telnet_escape and telnet_escape_add agree. */
	esc = malloc(2 * len);
	CHECK(esc != NULL);
	n = telnet_escape(esc, p, len);
	CHECK(n >= len && n <= 2 * len);
	evb = evbuffer_new();
	CHECK(evb != NULL);
	telnet_escape_add(evb, p, len);
	CHECK(evbuffer_get_length(evb) == n);
	flat = evbuffer_pullup(evb, -1);
	CHECK(memcmp(flat, esc, n) == 0);
	evbuffer_free(evb);

	fuzz_init(&f, 0, 0, 0);
	CHECK(fuzz_feed(&f, esc, n) == 0);
	CHECK(f.datalen == len && memcmp(f.data, p, len) == 0);
	CHECK(f.nsb == 0 && f.nother == 0);
	fuzz_done(&f);
	free(esc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz	 whole, split;
	const u_char	*p;
	size_t		 len, sb_max;
	uint32_t	 seed;
	u_int		 us, him;
	int		 rv1, rv2, offer;

	if (size < 4 || size > FUZZ_MAX)
		return (0);
	seed = data[0];
	us = data[1] & 0x7f;
	offer = data[1] & 0x80;
	him = data[2] & 0x7f;
	sb_max = 1 + (size_t)data[3] * 16;
	p = data + 4;
	len = size - 4;

	fuzz_init(&whole, us, him, sb_max);
	if (offer)
		fuzz_offer(&whole);
	rv1 = fuzz_feed(&whole, p, len);

	fuzz_init(&split, us, him, sb_max);
	if (offer)
		fuzz_offer(&split);
	if (seed == 0)
		rv2 = fuzz_feed(&split, p, len);
	else
		rv2 = fuzz_chunks(&split, p, len, seed * 2654435761U);

	CHECK(rv1 == rv2);
	CHECK(whole.hash == split.hash);
	CHECK(whole.datalen == split.datalen);
	CHECK(whole.t.state == split.t.state);
	CHECK(memcmp(whole.t.us, split.t.us, sizeof whole.t.us) == 0);
	CHECK(memcmp(whole.t.him, split.t.him, sizeof whole.t.him) == 0);
	if (rv1 == -1)
		CHECK(strcmp(whole.t.error, split.t.error) == 0);
	/* Never more data out than in. */
	CHECK(whole.datalen <= len);
	fuzz_done(&whole);
	fuzz_done(&split);

	fuzz_roundtrip(p, len);
	return (0);
}
