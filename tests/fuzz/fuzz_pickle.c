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
 * Fuzz target of the restricted pickle reader (node/pickle.c).  The
 * input is read as a stream of pickles, the way the compatibility port
 * reads a socket; after an error the target skips one byte and goes on,
 * to reach more states.  Invariants checked (abort() on failure): a
 * parse never claims more bytes than it was given, an incomplete parse
 * leaves no string behind and only happens below PICKLE_MAX, an error
 * always says why, a string is NUL-terminated valid UTF-8 of the length
 * reported (at most twice the pickle's size), and every value survives a
 * trip through the writers.  The whole input also goes through
 * pickle_put_str_lossy(), whose output must parse back as valid UTF-8
 * (identical if the input was valid).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int	fuzz_utf8_valid(const u_char *, size_t);
static void	fuzz_roundtrip(const struct pickle_value *);
static void	fuzz_lossy(const uint8_t *, size_t);

/* An independent, straightforward UTF-8 check (RFC 3629). */
static int
fuzz_utf8_valid(const u_char *s, size_t n)
{
	size_t		i = 0, k, need;
	uint32_t	c;

	while (i < n) {
		c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			need = 1;
			c &= 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2;
			c &= 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3;
			c &= 0x07;
		} else
			return (0);
		if (n - i <= need)
			return (0);
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return (0);
			c = (c << 6) | (s[i + k] & 0x3f);
		}
		if ((need == 1 && c < 0x80) || (need == 2 && c < 0x800) ||
		    (need == 3 && c < 0x10000) || c > 0x10ffff ||
		    (c >= 0xd800 && c <= 0xdfff))
			return (0);
		i += need + 1;
	}
	return (1);
}

/* Write v back as a pickle and read it again: same value. */
static void
fuzz_roundtrip(const struct pickle_value *v)
{
	struct evbuffer		*evb;
	struct pickle_value	 w;
	const char		*err;
	size_t			 n;

	if ((evb = evbuffer_new()) == NULL)
		abort();
	switch (v->type) {
	case PICKLE_INT:
		pickle_put_int(evb, v->i);
		break;
	case PICKLE_STR:
		pickle_put_str(evb, v->s, v->len);
		break;
	case PICKLE_NONE:
		pickle_put_none(evb);
		break;
	}
	n = evbuffer_get_length(evb);
	if (pickle_parse(evbuffer_pullup(evb, -1), n, &w, &err) !=
	    (ssize_t)n)
		abort();
	if (w.type != v->type)
		abort();
	if (v->type == PICKLE_INT && w.i != v->i)
		abort();
	if (v->type == PICKLE_STR && (w.len != v->len ||
	    memcmp(w.s, v->s, v->len) != 0))
		abort();
	pickle_value_free(&w);
	evbuffer_free(evb);
}

static void
fuzz_lossy(const uint8_t *data, size_t size)
{
	struct evbuffer		*evb;
	struct pickle_value	 v;
	const char		*err;
	size_t			 n;

	/* Three bytes out per byte in at most: stay under PICKLE_MAX. */
	if (size > PICKLE_MAX / 4)
		size = PICKLE_MAX / 4;
	if ((evb = evbuffer_new()) == NULL)
		abort();
	pickle_put_str_lossy(evb, data, size);
	n = evbuffer_get_length(evb);
	if (pickle_parse(evbuffer_pullup(evb, -1), n, &v, &err) !=
	    (ssize_t)n || v.type != PICKLE_STR)
		abort();
	if (!fuzz_utf8_valid((u_char *)v.s, v.len))
		abort();
	if (fuzz_utf8_valid(data, size) &&
	    (v.len != size || memcmp(v.s, data, size) != 0))
		abort();
	pickle_value_free(&v);
	evbuffer_free(evb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pickle_value	 v;
	const char		*err;
	size_t			 off = 0, left;
	ssize_t			 n;

	while (off < size) {
		left = size - off;
		n = pickle_parse(data + off, left, &v, &err);
		if (n == 0) {
			if (v.s != NULL || left >= PICKLE_MAX || err != NULL)
				abort();
			break;
		}
		if (n < 0) {
			if (err == NULL || v.s != NULL)
				abort();
			off++;
			continue;
		}
		if ((size_t)n > left || n > PICKLE_MAX || err != NULL)
			abort();
		switch (v.type) {
		case PICKLE_STR:
			/* UNICODE turns a Latin-1 byte into two. */
			if (v.s == NULL || v.s[v.len] != '\0' ||
			    v.len >= 2 * (size_t)n ||
			    !fuzz_utf8_valid((u_char *)v.s, v.len))
				abort();
			break;
		case PICKLE_INT:
		case PICKLE_NONE:
			if (v.s != NULL)
				abort();
			break;
		default:
			abort();
		}
		fuzz_roundtrip(&v);
		pickle_value_free(&v);
		off += n;
	}
	fuzz_lossy(data, size);
	return (0);
}
