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
 * VC UUIDs: parsing every spelling that ESXi, vSPC.py and people use, and
 * formatting.  A UUID is kept as its 16 bytes; the text forms differ only
 * in where the separators go, so the parser matches the input against a
 * fixed set of templates ('x' is a hex digit, anything else is literal)
 * rather than skipping separators loosely: "0123-4567..." in a made-up
 * layout is refused.
 */

#include <ctype.h>
#include <string.h>

#include "vspcd.h"

static const char *uuid_templates[] = {
	/* 32 hex digits (VMware-ref, OpenStack). */
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	/* Canonical 8-4-4-4-12. */
	"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
	/* vSPC.py. */
	"xxxxxxxxxxxxxxxx-xxxxxxxxxxxxxxxx",
	/* ESXi's VM-VC-UUID payload. */
	"xx xx xx xx xx xx xx xx-xx xx xx xx xx xx xx xx",
	NULL
};

static int	uuid_hexval(int);
static int	uuid_match(const char *, size_t, const char *, u_char *);

static int
uuid_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

static int
uuid_match(const char *s, size_t len, const char *tmpl, u_char *out)
{
	u_char	u[UUID_LEN];
	size_t	i, n = 0;
	int	v;

	if (strlen(tmpl) != len)
		return (-1);
	for (i = 0; i < len; i++) {
		if (tmpl[i] != 'x') {
			if (s[i] != tmpl[i])
				return (-1);
			continue;
		}
		if ((v = uuid_hexval((u_char)s[i])) == -1)
			return (-1);
		if (n % 2 == 0)
			u[n / 2] = v << 4;
		else
			u[n / 2] |= v;
		n++;
	}
	memcpy(out, u, UUID_LEN);
	return (0);
}

/*
 * Parse a UUID of len bytes (no NUL needed) into 16 bytes.  Surrounding
 * white space and one pair of braces are allowed.  Returns 0 or -1.
 */
int
uuid_parse(const char *s, size_t len, u_char *out)
{
	int	i;

	while (len > 0 && isspace((u_char)s[0])) {
		s++;
		len--;
	}
	while (len > 0 && isspace((u_char)s[len - 1]))
		len--;
	if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
		s++;
		len -= 2;
	}
	for (i = 0; uuid_templates[i] != NULL; i++) {
		if (uuid_match(s, len, uuid_templates[i], out) == 0)
			return (0);
	}
	return (-1);
}

/* Format as canonical lower-case 8-4-4-4-12 into buf (37 bytes). */
void
uuid_format(const u_char *u, char *buf)
{
	static const char	 hex[] = "0123456789abcdef";
	char			*p = buf;
	int			 i;

	for (i = 0; i < UUID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u[i] >> 4];
		*p++ = hex[u[i] & 0xf];
	}
	*p = '\0';
}

/* Format as vSPC.py does, "16hex-16hex" lower case, into buf (34 bytes). */
void
uuid_format_vspcpy(const u_char *u, char *buf)
{
	uuid_format_hex(u, buf, 0);
	memmove(buf + 17, buf + 16, 17);
	buf[16] = '-';
}

/* Format as 32 hex digits (upper case if upper) into buf (33 bytes). */
void
uuid_format_hex(const u_char *u, char *buf, int upper)
{
	const char	*hex;
	int		 i;

	hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	for (i = 0; i < UUID_LEN; i++) {
		buf[2 * i] = hex[u[i] >> 4];
		buf[2 * i + 1] = hex[u[i] & 0xf];
	}
	buf[2 * UUID_LEN] = '\0';
}
