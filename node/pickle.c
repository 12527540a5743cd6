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
 * A restricted Python pickle codec for the vSPC.py admin protocol.
 *
 * The reader accepts exactly one value per pickle -- an int, a str or
 * None -- written with any protocol from 0 to 5, and refuses every other
 * opcode: the ones that build containers or objects, import names or
 * call functions are what makes pickle.load() on untrusted input run
 * arbitrary code.  It is fed by network peers, so it never reads past the
 * length it is given, never allocates more than the string bytes actually
 * present, and caps a pickle at PICKLE_MAX bytes.  Strings it returns are
 * always valid UTF-8 (NUL bytes allowed, len carries them).
 *
 * The writers emit protocol 2, which both Python 2 and Python 3 read,
 * byte for byte as vSPC.py's documentation lists them (no memo opcodes).
 */

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof ((a)[0]))
#endif

/* Longest text line accepted for INT, LONG and PUT arguments. */
#define PICKLE_LINE_MAX		64

/* Opcodes the reader accepts. */
#define OP_PROTO		0x80
#define OP_FRAME		0x95
#define OP_BININT1		0x4b
#define OP_BININT2		0x4d
#define OP_BININT		0x4a
#define OP_INT			0x49
#define OP_LONG			0x4c
#define OP_LONG1		0x8a
#define OP_NONE			0x4e
#define OP_NEWTRUE		0x88
#define OP_NEWFALSE		0x89
#define OP_SHORT_BINUNICODE	0x8c
#define OP_BINUNICODE		0x58
#define OP_BINUNICODE8		0x8d
#define OP_SHORT_BINSTRING	0x55
#define OP_BINSTRING		0x54
#define OP_STRING		0x53
#define OP_UNICODE		0x56
#define OP_MEMOIZE		0x94
#define OP_BINPUT		0x71
#define OP_LONG_BINPUT		0x72
#define OP_PUT			0x70
#define OP_STOP			0x2e

/* Opcodes the writers use besides the above. */
#define OP_EMPTY_DICT		0x7d
#define OP_MARK			0x28
#define OP_SETITEMS		0x75
#define OP_GLOBAL		0x63
#define OP_TUPLE1		0x85
#define OP_REDUCE		0x52

/* Every other pickle opcode, with the message refusing it. */
#define REFUSE(op, name) { op, "pickle opcode " #op " (" name ") refused" }
static const struct {
	u_char		 op;
	const char	*msg;
} pickle_refused[] = {
	REFUSE(0x28, "MARK"),
	REFUSE(0x29, "EMPTY_TUPLE"),
	REFUSE(0x30, "POP"),
	REFUSE(0x31, "POP_MARK"),
	REFUSE(0x32, "DUP"),
	REFUSE(0x42, "BINBYTES"),
	REFUSE(0x43, "SHORT_BINBYTES"),
	REFUSE(0x46, "FLOAT"),
	REFUSE(0x47, "BINFLOAT"),
	REFUSE(0x50, "PERSID"),
	REFUSE(0x51, "BINPERSID"),
	REFUSE(0x52, "REDUCE"),
	REFUSE(0x5d, "EMPTY_LIST"),
	REFUSE(0x61, "APPEND"),
	REFUSE(0x62, "BUILD"),
	REFUSE(0x63, "GLOBAL"),
	REFUSE(0x64, "DICT"),
	REFUSE(0x65, "APPENDS"),
	REFUSE(0x67, "GET"),
	REFUSE(0x68, "BINGET"),
	REFUSE(0x69, "INST"),
	REFUSE(0x6a, "LONG_BINGET"),
	REFUSE(0x6c, "LIST"),
	REFUSE(0x6f, "OBJ"),
	REFUSE(0x73, "SETITEM"),
	REFUSE(0x74, "TUPLE"),
	REFUSE(0x75, "SETITEMS"),
	REFUSE(0x7d, "EMPTY_DICT"),
	REFUSE(0x81, "NEWOBJ"),
	REFUSE(0x82, "EXT1"),
	REFUSE(0x83, "EXT2"),
	REFUSE(0x84, "EXT4"),
	REFUSE(0x85, "TUPLE1"),
	REFUSE(0x86, "TUPLE2"),
	REFUSE(0x87, "TUPLE3"),
	REFUSE(0x8b, "LONG4"),
	REFUSE(0x8e, "BINBYTES8"),
	REFUSE(0x8f, "EMPTY_SET"),
	REFUSE(0x90, "ADDITEMS"),
	REFUSE(0x91, "FROZENSET"),
	REFUSE(0x92, "NEWOBJ_EX"),
	REFUSE(0x93, "STACK_GLOBAL"),
	REFUSE(0x96, "BYTEARRAY8"),
	REFUSE(0x97, "NEXT_BUFFER"),
	REFUSE(0x98, "READONLY_BUFFER"),
};
#undef REFUSE

/* Parser state for one pickle. */
struct pickle_rd {
	const u_char		*buf;
	size_t			 len;
	size_t			 off;
	int			 have;		/* Holds a value. */
	struct pickle_value	*v;
	const char		*err;
};

/* Results of the step functions. */
#define RD_OK		0
#define RD_MORE		1
#define RD_ERR		2

static int	pickle_utf8_seq(const u_char *, size_t);
static int	pickle_utf8_valid(const u_char *, size_t);
static size_t	pickle_utf8_put(u_char *, uint32_t);
static int	rd_error(struct pickle_rd *, const char *);
static int	rd_need(struct pickle_rd *, size_t);
static uint64_t	rd_le(const u_char *, size_t);
static int	rd_line(struct pickle_rd *, size_t, const u_char **,
		    size_t *);
static int	rd_push(struct pickle_rd *);
static int	rd_int(struct pickle_rd *, long long);
static int	rd_decimal(const u_char *, size_t, int, long long *);
static int	rd_text_int(struct pickle_rd *, int);
static int	rd_long1(struct pickle_rd *);
static int	rd_counted(struct pickle_rd *, size_t, int);
static int	rd_string(struct pickle_rd *);
static int	rd_unicode(struct pickle_rd *);
static int	rd_memo(struct pickle_rd *, size_t);
static int	rd_put(struct pickle_rd *);
static int	rd_store(struct pickle_rd *, u_char *, size_t);
static int	rd_hex(u_char);
static void	pickle_start(struct evbuffer *);
static void	pickle_int(struct evbuffer *, long long);
static void	pickle_unicode(struct evbuffer *, const u_char *, size_t);
static size_t	pickle_lossy(const u_char *, size_t, u_char *);
static void	pickle_text(struct evbuffer *, const u_char *, size_t);
static void	pickle_stop(struct evbuffer *);

/*
 * Length of the valid UTF-8 sequence at s (1 to 4), or minus the number
 * of bytes forming the longest invalid prefix to replace (at least 1),
 * following the Unicode "maximal subpart" practice that Python's
 * errors='replace' also follows.
 */
static int
pickle_utf8_seq(const u_char *s, size_t n)
{
	u_char	lo = 0x80, hi = 0xbf;
	int	need, i;

	if (s[0] < 0x80)
		return (1);
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		need = 1;
	else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 2;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 3;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else
		return (-1);

	for (i = 1; i <= need; i++) {
		if ((size_t)i >= n || s[i] < lo || s[i] > hi)
			return (-i);
		lo = 0x80;
		hi = 0xbf;
	}
	return (need + 1);
}

static int
pickle_utf8_valid(const u_char *s, size_t n)
{
	size_t	i;
	int	k;

	for (i = 0; i < n; i += k) {
		if ((k = pickle_utf8_seq(s + i, n - i)) < 0)
			return (0);
	}
	return (1);
}

/* Encode code point c (valid, not a surrogate) at out; return length. */
static size_t
pickle_utf8_put(u_char *out, uint32_t c)
{
	if (c < 0x80) {
		out[0] = c;
		return (1);
	}
	if (c < 0x800) {
		out[0] = 0xc0 | (c >> 6);
		out[1] = 0x80 | (c & 0x3f);
		return (2);
	}
	if (c < 0x10000) {
		out[0] = 0xe0 | (c >> 12);
		out[1] = 0x80 | ((c >> 6) & 0x3f);
		out[2] = 0x80 | (c & 0x3f);
		return (3);
	}
	out[0] = 0xf0 | (c >> 18);
	out[1] = 0x80 | ((c >> 12) & 0x3f);
	out[2] = 0x80 | ((c >> 6) & 0x3f);
	out[3] = 0x80 | (c & 0x3f);
	return (4);
}

static int
rd_error(struct pickle_rd *rd, const char *err)
{
	rd->err = err;
	return (RD_ERR);
}

/* Are n more bytes present after the current offset? */
static int
rd_need(struct pickle_rd *rd, size_t n)
{
	return (rd->len - rd->off >= n);
}

static uint64_t
rd_le(const u_char *p, size_t n)
{
	uint64_t	x = 0;

	while (n-- > 0)
		x = (x << 8) | p[n];
	return (x);
}

/*
 * Find the newline-terminated argument starting at the current offset;
 * on success, *line and *n describe it without the newline and the offset
 * moves past the newline.  A line longer than max is an error.
 */
static int
rd_line(struct pickle_rd *rd, size_t max, const u_char **line, size_t *n)
{
	const u_char	*p, *nl;
	size_t		 avail;

	p = rd->buf + rd->off;
	avail = rd->len - rd->off;
	if ((nl = memchr(p, '\n', avail > max ? max + 1 : avail)) == NULL) {
		if (avail > max)
			return (rd_error(rd, "pickle text argument too long"));
		return (RD_MORE);
	}
	*line = p;
	*n = nl - p;
	rd->off += *n + 1;
	return (RD_OK);
}

static int
rd_push(struct pickle_rd *rd)
{
	if (rd->have)
		return (rd_error(rd, "pickle holds more than one value"));
	rd->have = 1;
	return (RD_OK);
}

static int
rd_int(struct pickle_rd *rd, long long i)
{
	if (rd_push(rd) != RD_OK)
		return (RD_ERR);
	rd->v->type = PICKLE_INT;
	rd->v->i = i;
	return (RD_OK);
}

/* Parse an optionally signed decimal number; trailing L if allow_l. */
static int
rd_decimal(const u_char *s, size_t n, int allow_l, long long *out)
{
	unsigned long long	 x = 0, lim;
	int			 neg = 0;
	size_t			 i = 0;

	if (allow_l && n > 0 && s[n - 1] == 'L')
		n--;
	if (n > 0 && (s[0] == '-' || s[0] == '+')) {
		neg = (s[0] == '-');
		i++;
	}
	if (i == n)
		return (-1);
	lim = neg ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (-1);
		if (x > (lim - (s[i] - '0')) / 10)
			return (-1);
		x = x * 10 + (s[i] - '0');
	}
	if (neg)
		*out = (x == (unsigned long long)LLONG_MAX + 1) ? LLONG_MIN :
		    -(long long)x;
	else
		*out = x;
	return (0);
}

/* INT ("I3\n", "I01\n" for True) or LONG ("L3L\n"). */
static int
rd_text_int(struct pickle_rd *rd, int is_long)
{
	const u_char	*line;
	size_t		 n;
	long long	 x;
	int		 r;

	if ((r = rd_line(rd, PICKLE_LINE_MAX, &line, &n)) != RD_OK)
		return (r);
	if (rd_decimal(line, n, is_long, &x) != 0)
		return (rd_error(rd,
		    "pickle integer malformed or out of range"));
	return (rd_int(rd, x));
}

/* LONG1: a length byte, then little-endian two's complement. */
static int
rd_long1(struct pickle_rd *rd)
{
	const u_char	*p;
	uint64_t	 u;
	size_t		 n;

	if (!rd_need(rd, 1))
		return (RD_MORE);
	n = rd->buf[rd->off];
	if (n > 8)
		return (rd_error(rd, "pickle integer out of range"));
	if (!rd_need(rd, 1 + n))
		return (RD_MORE);
	p = rd->buf + rd->off + 1;
	rd->off += 1 + n;
	if (n == 0)
		return (rd_int(rd, 0));
	u = rd_le(p, n);
	if (n < 8 && (p[n - 1] & 0x80))
		u |= ~(uint64_t)0 << (8 * n);
	return (rd_int(rd, (long long)u));
}

/* Take ownership of s (len bytes plus a NUL) as the value. */
static int
rd_store(struct pickle_rd *rd, u_char *s, size_t len)
{
	if (!pickle_utf8_valid(s, len)) {
		free(s);
		return (rd_error(rd, "string is not valid UTF-8"));
	}
	if (rd_push(rd) != RD_OK) {
		free(s);
		return (RD_ERR);
	}
	rd->v->type = PICKLE_STR;
	rd->v->s = (char *)s;
	rd->v->len = len;
	return (RD_OK);
}

/* A string with a little-endian length of lensz bytes. */
static int
rd_counted(struct pickle_rd *rd, size_t lensz, int is_signed)
{
	uint64_t	 n;
	u_char		*s;

	if (!rd_need(rd, lensz))
		return (RD_MORE);
	n = rd_le(rd->buf + rd->off, lensz);
	if (is_signed && (n & 0x80000000U))
		return (rd_error(rd, "pickle string length negative"));
	if (n > PICKLE_MAX)
		return (rd_error(rd, "pickle string too long"));
	if (!rd_need(rd, lensz + n))
		return (RD_MORE);
	if (rd->have)
		return (rd_error(rd, "pickle holds more than one value"));
	s = xmalloc(n + 1);
	memcpy(s, rd->buf + rd->off + lensz, n);
	s[n] = '\0';
	rd->off += lensz + n;
	return (rd_store(rd, s, n));
}

static int
rd_hex(u_char c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/* STRING: a quoted Python 2 str literal, with backslash escapes. */
static int
rd_string(struct pickle_rd *rd)
{
	const u_char	*line;
	u_char		*s, c;
	size_t		 n, i, o;
	int		 r, h1, h2, k;

	if ((r = rd_line(rd, PICKLE_MAX, &line, &n)) != RD_OK)
		return (r);
	if (n < 2 || line[0] != line[n - 1] ||
	    (line[0] != '\'' && line[0] != '"'))
		return (rd_error(rd, "pickle STRING argument not quoted"));
	if (rd->have)
		return (rd_error(rd, "pickle holds more than one value"));
	line++;
	n -= 2;

	s = xmalloc(n + 1);
	for (i = o = 0; i < n; i++) {
		if (line[i] != '\\') {
			s[o++] = line[i];
			continue;
		}
		if (++i == n) {
			free(s);
			return (rd_error(rd,
			    "pickle STRING ends in a backslash"));
		}
		switch (c = line[i]) {
		case '\\':
		case '\'':
		case '"':
			s[o++] = c;
			break;
		case 'a':
			s[o++] = '\a';
			break;
		case 'b':
			s[o++] = '\b';
			break;
		case 'f':
			s[o++] = '\f';
			break;
		case 'n':
			s[o++] = '\n';
			break;
		case 'r':
			s[o++] = '\r';
			break;
		case 't':
			s[o++] = '\t';
			break;
		case 'v':
			s[o++] = '\v';
			break;
		case 'x':
			if (n - i < 3 ||
			    (h1 = rd_hex(line[i + 1])) < 0 ||
			    (h2 = rd_hex(line[i + 2])) < 0) {
				free(s);
				return (rd_error(rd,
				    "pickle STRING has a bad \\x escape"));
			}
			s[o++] = (h1 << 4) | h2;
			i += 2;
			break;
		case '0': case '1': case '2': case '3':
		case '4': case '5': case '6': case '7':
			h1 = c - '0';
			for (k = 1; k < 3 && i + 1 < n &&
			    line[i + 1] >= '0' && line[i + 1] <= '7'; k++)
				h1 = h1 * 8 + (line[++i] - '0');
			s[o++] = h1 & 0xff;
			break;
		default:
			/* Python keeps unknown escapes as they are. */
			s[o++] = '\\';
			s[o++] = c;
			break;
		}
	}
	s[o] = '\0';
	return (rd_store(rd, s, o));
}

/*
 * UNICODE: raw-unicode-escape.  Bytes are Latin-1 code points except
 * \uXXXX and \UXXXXXXXX after an odd number of backslashes.
 */
static int
rd_unicode(struct pickle_rd *rd)
{
	const u_char	*line;
	u_char		*s;
	size_t		 n, i, o, k, digits;
	uint32_t	 c;
	int		 r, h;

	if ((r = rd_line(rd, PICKLE_MAX, &line, &n)) != RD_OK)
		return (r);
	if (rd->have)
		return (rd_error(rd, "pickle holds more than one value"));

	/* Each input byte yields at most two output bytes. */
	s = xmalloc(2 * n + 1);
	for (i = o = 0; i < n; i++) {
		if (line[i] == '\\' && i + 1 < n &&
		    (line[i + 1] == 'u' || line[i + 1] == 'U')) {
			digits = line[i + 1] == 'u' ? 4 : 8;
			if (n - (i + 2) < digits) {
				free(s);
				return (rd_error(rd,
				    "pickle UNICODE has a truncated escape"));
			}
			c = 0;
			for (k = 0; k < digits; k++) {
				if ((h = rd_hex(line[i + 2 + k])) < 0) {
					free(s);
					return (rd_error(rd,
					    "pickle UNICODE has a bad escape"));
				}
				c = (c << 4) | h;
			}
			if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
				free(s);
				return (rd_error(rd,
				    "string is not valid UTF-8"));
			}
			o += pickle_utf8_put(s + o, c);
			i += 1 + digits;
			continue;
		}
		if (line[i] == '\\' && i + 1 < n) {
			/* A pair of backslashes, or one before another. */
			s[o++] = '\\';
			i++;
		}
		o += pickle_utf8_put(s + o, line[i]);
	}
	s[o] = '\0';
	return (rd_store(rd, s, o));
}

/* A memo opcode with an argument of n bytes: store nothing. */
static int
rd_memo(struct pickle_rd *rd, size_t n)
{
	if (!rd->have)
		return (rd_error(rd, "pickle memo opcode with an empty stack"));
	if (!rd_need(rd, n))
		return (RD_MORE);
	rd->off += n;
	return (RD_OK);
}

/* PUT: a decimal memo index on a line. */
static int
rd_put(struct pickle_rd *rd)
{
	const u_char	*line;
	size_t		 n;
	long long	 x;
	int		 r;

	if (!rd->have)
		return (rd_error(rd, "pickle memo opcode with an empty stack"));
	if ((r = rd_line(rd, PICKLE_LINE_MAX, &line, &n)) != RD_OK)
		return (r);
	if (rd_decimal(line, n, 0, &x) != 0 || x < 0)
		return (rd_error(rd, "pickle PUT index malformed"));
	return (RD_OK);
}

/*
 * Parse one pickle from buf.  Return the bytes it used (the value is in
 * *v, owned by the caller), 0 if more bytes are needed, or -1 with *errstr
 * set if the input is not a pickle this reader accepts.
 */
ssize_t
pickle_parse(const u_char *buf, size_t len, struct pickle_value *v,
    const char **errstr)
{
	struct pickle_rd	 rd;
	u_char			 op;
	size_t			 i, start;
	int			 r;

	memset(v, 0, sizeof *v);
	v->type = PICKLE_NONE;
	memset(&rd, 0, sizeof rd);
	rd.buf = buf;
	rd.len = len > PICKLE_MAX ? PICKLE_MAX : len;
	rd.v = v;
	*errstr = NULL;

	for (;;) {
		if (!rd_need(&rd, 1)) {
			r = RD_MORE;
			break;
		}
		start = rd.off;
		op = buf[rd.off++];
		switch (op) {
		case OP_PROTO:
			if (start != 0) {
				r = rd_error(&rd,
				    "pickle PROTO not at the start");
				break;
			}
			if (!rd_need(&rd, 1)) {
				r = RD_MORE;
				break;
			}
			if (buf[rd.off] > 5) {
				r = rd_error(&rd,
				    "pickle protocol not supported");
				break;
			}
			rd.off++;
			r = RD_OK;
			break;
		case OP_FRAME:
			if (!rd_need(&rd, 8)) {
				r = RD_MORE;
				break;
			}
			if (rd_le(buf + rd.off, 8) > PICKLE_MAX) {
				r = rd_error(&rd, "pickle frame too long");
				break;
			}
			rd.off += 8;
			r = RD_OK;
			break;
		case OP_BININT1:
			if (!rd_need(&rd, 1)) {
				r = RD_MORE;
				break;
			}
			rd.off++;
			r = rd_int(&rd, buf[rd.off - 1]);
			break;
		case OP_BININT2:
			if (!rd_need(&rd, 2)) {
				r = RD_MORE;
				break;
			}
			rd.off += 2;
			r = rd_int(&rd, rd_le(buf + rd.off - 2, 2));
			break;
		case OP_BININT:
			if (!rd_need(&rd, 4)) {
				r = RD_MORE;
				break;
			}
			rd.off += 4;
			r = rd_int(&rd,
			    (int32_t)(uint32_t)rd_le(buf + rd.off - 4, 4));
			break;
		case OP_INT:
			r = rd_text_int(&rd, 0);
			break;
		case OP_LONG:
			r = rd_text_int(&rd, 1);
			break;
		case OP_LONG1:
			r = rd_long1(&rd);
			break;
		case OP_NEWTRUE:
			r = rd_int(&rd, 1);
			break;
		case OP_NEWFALSE:
			r = rd_int(&rd, 0);
			break;
		case OP_NONE:
			if ((r = rd_push(&rd)) == RD_OK)
				v->type = PICKLE_NONE;
			break;
		case OP_SHORT_BINUNICODE:
		case OP_SHORT_BINSTRING:
			r = rd_counted(&rd, 1, 0);
			break;
		case OP_BINUNICODE:
			r = rd_counted(&rd, 4, 0);
			break;
		case OP_BINSTRING:
			r = rd_counted(&rd, 4, 1);
			break;
		case OP_BINUNICODE8:
			r = rd_counted(&rd, 8, 0);
			break;
		case OP_STRING:
			r = rd_string(&rd);
			break;
		case OP_UNICODE:
			r = rd_unicode(&rd);
			break;
		case OP_MEMOIZE:
			r = rd_memo(&rd, 0);
			break;
		case OP_BINPUT:
			r = rd_memo(&rd, 1);
			break;
		case OP_LONG_BINPUT:
			r = rd_memo(&rd, 4);
			break;
		case OP_PUT:
			r = rd_put(&rd);
			break;
		case OP_STOP:
			if (!rd.have)
				r = rd_error(&rd, "pickle holds no value");
			else {
				*errstr = NULL;
				return (rd.off);
			}
			break;
		default:
			rd.err = "pickle opcode unknown";
			for (i = 0; i < nitems(pickle_refused); i++) {
				if (pickle_refused[i].op == op) {
					rd.err = pickle_refused[i].msg;
					break;
				}
			}
			r = RD_ERR;
			break;
		}
		if (r != RD_OK)
			break;
	}

	pickle_value_free(v);
	if (r == RD_MORE) {
		if (len >= PICKLE_MAX) {
			*errstr = "pickle too long";
			return (-1);
		}
		return (0);
	}
	*errstr = rd.err;
	return (-1);
}

/* Free the string of a parsed value. */
void
pickle_value_free(struct pickle_value *v)
{
	free(v->s);
	v->s = NULL;
	v->len = 0;
}

static void
pickle_start(struct evbuffer *evb)
{
	static const u_char	proto2[] = { OP_PROTO, 2 };

	evbuffer_add(evb, proto2, sizeof proto2);
}

/* An int as Python's protocol 2 writes it, without PROTO or STOP. */
static void
pickle_int(struct evbuffer *evb, long long x)
{
	u_char		b[10];
	size_t		n, i;
	long long	lim;

	if (x >= 0 && x <= 0xff) {
		b[0] = OP_BININT1;
		b[1] = x;
		n = 2;
	} else if (x >= 0 && x <= 0xffff) {
		b[0] = OP_BININT2;
		b[1] = x & 0xff;
		b[2] = x >> 8;
		n = 3;
	} else if (x >= INT32_MIN && x <= INT32_MAX) {
		b[0] = OP_BININT;
		for (i = 0; i < 4; i++)
			b[1 + i] = ((uint64_t)x >> (8 * i)) & 0xff;
		n = 5;
	} else {
		/* Shortest two's complement that holds x. */
		for (n = 5; n < 8; n++) {
			lim = 1LL << (8 * n - 1);
			if (x >= -lim && x < lim)
				break;
		}
		b[0] = OP_LONG1;
		b[1] = n;
		for (i = 0; i < n; i++)
			b[2 + i] = ((uint64_t)x >> (8 * i)) & 0xff;
		n += 2;
	}
	evbuffer_add(evb, b, n);
}

/* BINUNICODE with s (valid UTF-8) as its payload. */
static void
pickle_unicode(struct evbuffer *evb, const u_char *s, size_t len)
{
	u_char	hdr[5];
	size_t	i;

	hdr[0] = OP_BINUNICODE;
	for (i = 0; i < 4; i++)
		hdr[1 + i] = ((uint64_t)len >> (8 * i)) & 0xff;
	evbuffer_add(evb, hdr, sizeof hdr);
	evbuffer_add(evb, s, len);
}

/*
 * Copy s to out (if not NULL) replacing every invalid UTF-8 sequence with
 * U+FFFD; return the output length.
 */
static size_t
pickle_lossy(const u_char *s, size_t len, u_char *out)
{
	static const u_char	repl[] = { 0xef, 0xbf, 0xbd };
	size_t			i, o;
	int			k;

	for (i = o = 0; i < len; ) {
		k = pickle_utf8_seq(s + i, len - i);
		if (k > 0) {
			if (out != NULL)
				memcpy(out + o, s + i, k);
			o += k;
			i += k;
		} else {
			if (out != NULL)
				memcpy(out + o, repl, sizeof repl);
			o += sizeof repl;
			i += -k;
		}
	}
	return (o);
}

static void
pickle_text(struct evbuffer *evb, const u_char *s, size_t len)
{
	u_char	*tmp;
	size_t	 n;

	if (pickle_utf8_valid(s, len)) {
		pickle_unicode(evb, s, len);
		return;
	}
	n = pickle_lossy(s, len, NULL);
	tmp = xmalloc(n);
	pickle_lossy(s, len, tmp);
	pickle_unicode(evb, tmp, n);
	free(tmp);
}

static void
pickle_stop(struct evbuffer *evb)
{
	static const u_char	stop = OP_STOP;

	evbuffer_add(evb, &stop, 1);
}

/* Write a pickled int. */
void
pickle_put_int(struct evbuffer *evb, long long x)
{
	pickle_start(evb);
	pickle_int(evb, x);
	pickle_stop(evb);
}

/* Write a pickled str; invalid UTF-8 is replaced, never sent. */
void
pickle_put_str(struct evbuffer *evb, const char *s, size_t len)
{
	pickle_start(evb);
	pickle_text(evb, (const u_char *)s, len);
	pickle_stop(evb);
}

/* Write arbitrary bytes as a pickled str, invalid UTF-8 as U+FFFD. */
void
pickle_put_str_lossy(struct evbuffer *evb, const u_char *s, size_t len)
{
	pickle_start(evb);
	pickle_text(evb, s, len);
	pickle_stop(evb);
}

/* Write a pickled None. */
void
pickle_put_none(struct evbuffer *evb)
{
	static const u_char	none[] = { OP_PROTO, 2, OP_NONE, OP_STOP };

	evbuffer_add(evb, none, sizeof none);
}

/* Write {'name': name, 'uuid': uuid, 'port': port or None if < 0}. */
void
pickle_put_vm(struct evbuffer *evb, const char *name, const char *uuid,
    int port)
{
	static const u_char	open[] = { OP_EMPTY_DICT, OP_MARK };
	static const u_char	none = OP_NONE, setitems = OP_SETITEMS;

	if (name == NULL)
		name = "";
	if (uuid == NULL)
		uuid = "";
	pickle_start(evb);
	evbuffer_add(evb, open, sizeof open);
	pickle_text(evb, (const u_char *)"name", 4);
	pickle_text(evb, (const u_char *)name, strlen(name));
	pickle_text(evb, (const u_char *)"uuid", 4);
	pickle_text(evb, (const u_char *)uuid, strlen(uuid));
	pickle_text(evb, (const u_char *)"port", 4);
	if (port < 0)
		evbuffer_add(evb, &none, 1);
	else
		pickle_int(evb, port);
	evbuffer_add(evb, &setitems, 1);
	pickle_stop(evb);
}

/* Write builtins.Exception(text), as vSPC.py reports version errors. */
void
pickle_put_exception(struct evbuffer *evb, const char *text)
{
	static const char	global[] = "cbuiltins\nException\n";
	static const u_char	call[] = { OP_TUPLE1, OP_REDUCE };

	pickle_start(evb);
	evbuffer_add(evb, global, sizeof global - 1);
	pickle_text(evb, (const u_char *)text, strlen(text));
	evbuffer_add(evb, call, sizeof call);
	pickle_stop(evb);
}

/*
 * Write a call of sys.exit(text).  vSPCClient has no error reply it
 * prints; unpickled, this ends it with the text on stderr and status 1,
 * without a traceback (module sys is the same in Python 2 and 3).
 */
void
pickle_put_exit(struct evbuffer *evb, const char *text)
{
	static const char	global[] = "csys\nexit\n";
	static const u_char	call[] = { OP_TUPLE1, OP_REDUCE };

	pickle_start(evb);
	evbuffer_add(evb, global, sizeof global - 1);
	pickle_text(evb, (const u_char *)text, strlen(text));
	evbuffer_add(evb, call, sizeof call);
	pickle_stop(evb);
}
