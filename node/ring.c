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
 * A console's history ring.  Bytes are addressed by their monotonic
 * offset (end is the total ever appended); the held bytes are
 * [end - len, end).  Invariant: the byte at offset o lives at
 * buf[o % size], so the position of anything follows from end, len and
 * size alone.  When the buffer grows the held bytes are moved to their
 * new positions; growth starts at 1 KiB (or the first write rounded up to
 * a power of two) and doubles, never past max.  Once at max the oldest
 * bytes are overwritten.  Appends copy at most two pieces.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

#define RING_INITIAL	1024

static void	ring_resize(struct ring *, size_t);
static void	ring_put(u_char *, size_t, uint64_t, const u_char *, size_t);

/* Set up an empty ring holding at most max bytes; allocates nothing. */
void
ring_init(struct ring *r, size_t max)
{
	memset(r, 0, sizeof *r);
	r->max = max;
}

/* Free the buffer; the ring stays usable (and empty). */
void
ring_free(struct ring *r)
{
	free(r->buf);
	r->buf = NULL;
	r->size = 0;
	r->len = 0;
}

/* Offset of the oldest byte held. */
uint64_t
ring_start(const struct ring *r)
{
	return (r->end - r->len);
}

/* Copy len bytes to offset off of a buffer of size bytes (two pieces). */
static void
ring_put(u_char *buf, size_t size, uint64_t off, const u_char *src,
    size_t len)
{
	size_t	pos, first;

	pos = off % size;
	first = size - pos;
	if (first > len)
		first = len;
	memcpy(buf + pos, src, first);
	if (len > first)
		memcpy(buf, src + first, len - first);
}

/*
 * Move to a buffer of size bytes, keeping the newest bytes that fit (all
 * of them when growing).
 */
static void
ring_resize(struct ring *r, size_t size)
{
	struct iovec	 iov[2];
	u_char		*nbuf;
	uint64_t	 off;
	size_t		 keep;
	int		 i, n;

	if (size == 0) {
		ring_free(r);
		return;
	}
	nbuf = xmalloc(size);
	keep = r->len < size ? r->len : size;
	off = r->end - keep;
	n = keep != 0 ? ring_peek(r, off, iov, keep) : 0;
	for (i = 0; i < n; i++) {
		ring_put(nbuf, size, off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	free(r->buf);
	r->buf = nbuf;
	r->size = size;
	r->len = keep;
}

/* Append len bytes, growing the buffer or overwriting the oldest bytes. */
void
ring_append(struct ring *r, const u_char *src, size_t len)
{
	size_t	need, size;

	if (len == 0)
		return;
	if (r->max == 0) {
		r->end += len;
		return;
	}
	if (len >= r->max) {
		/* Only the last max bytes survive: nothing old to keep. */
		if (r->size != r->max) {
			free(r->buf);
			r->buf = xmalloc(r->max);
			r->size = r->max;
		}
		src += len - r->max;
		r->end += len - r->max;
		ring_put(r->buf, r->size, r->end, src, r->max);
		r->end += r->max;
		r->len = r->max;
		return;
	}

	need = r->len + len;
	if (need > r->size && r->size < r->max) {
		size = r->size != 0 ? r->size : RING_INITIAL;
		while (size < need && size < r->max)
			size *= 2;
		if (size > r->max)
			size = r->max;
		ring_resize(r, size);
	}
	ring_put(r->buf, r->size, r->end, src, len);
	r->end += len;
	r->len = need < r->size ? need : r->size;
}

/*
 * Point iov (two entries) at up to maxlen bytes from offset off.  Returns
 * the number of entries used (0 if off is the end), or -1 if off is not
 * held.
 */
int
ring_peek(const struct ring *r, uint64_t off, struct iovec *iov,
    size_t maxlen)
{
	size_t	n, pos, first;

	if (off < ring_start(r) || off > r->end)
		return (-1);
	n = r->end - off;
	if (n > maxlen)
		n = maxlen;
	if (n == 0)
		return (0);
	pos = off % r->size;
	first = r->size - pos;
	if (first > n)
		first = n;
	iov[0].iov_base = r->buf + pos;
	iov[0].iov_len = first;
	if (n == first)
		return (1);
	iov[1].iov_base = r->buf;
	iov[1].iov_len = n - first;
	return (2);
}

/*
 * Offset where the last n lines begin.  A trailing line without its
 * newline counts; if fewer than n lines are held, the oldest byte.
 */
uint64_t
ring_lines_back(const struct ring *r, u_int n)
{
	uint64_t	 off, start = ring_start(r);
	const u_char	*p;
	u_int		 seen = 0;

	if (n == 0 || r->len == 0)
		return (r->end);
	off = r->end - 1;
	/* The last line's own newline does not start a line. */
	if (r->buf[off % r->size] == '\n') {
		if (off == start)
			return (start);
		off--;
	}
	for (;;) {
		p = r->buf + off % r->size;
		if (*p == '\n' && ++seen == n)
			return (off + 1);
		if (off == start)
			break;
		off--;
	}
	return (start);
}

/* Copy up to len bytes from offset off into dst; returns the count. */
size_t
ring_copy(const struct ring *r, uint64_t off, u_char *dst, size_t len)
{
	struct iovec	iov[2];
	size_t		done = 0;
	int		i, n;

	if ((n = ring_peek(r, off, iov, len)) <= 0)
		return (0);
	for (i = 0; i < n; i++) {
		memcpy(dst + done, iov[i].iov_base, iov[i].iov_len);
		done += iov[i].iov_len;
	}
	return (done);
}

/* Change the cap; shrinking keeps the newest bytes. */
void
ring_set_max(struct ring *r, size_t max)
{
	r->max = max;
	if (r->size > max)
		ring_resize(r, max);
}

/*
 * Replace the contents with len bytes that end at stream offset end (a
 * console's history handed over by its previous owner): the offsets go
 * on from where they were there.
 */
void
ring_restore(struct ring *r, const u_char *src, size_t len, uint64_t end)
{
	if (len > end)
		len = end;
	r->len = 0;
	r->end = end - len;
	if (len != 0)
		ring_append(r, src, len);
}
