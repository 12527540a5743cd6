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
 * Values of configuration keys: numbers with units (sizes, times),
 * characters, identifiers, address lists, URI lists, log file name
 * templates, Redis URLs and Sentinel lists, parsed and checked one key at
 * a time; and the formatters config_print() uses to write them back.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "config-int.h"

/* Parse a non-negative decimal number with no sign and no suffix. */
int
config_parse_uint(const char *s, uint64_t *v)
{
	uint64_t	n = 0;

	if (!isdigit((u_char)*s))
		return (-1);
	for (; isdigit((u_char)*s); s++) {
		if (n > (UINT64_MAX - 9) / 10)
			return (-1);
		n = n * 10 + (*s - '0');
	}
	if (*s != '\0')
		return (-1);
	*v = n;
	return (0);
}

static int	config_label_valid(const char *, size_t);

/* A unit suffix and what it multiplies by. */
struct config_unit {
	char		 suffix;
	uint64_t	 mult;
};

static const struct config_unit config_size_units[] = {
	{ 'k', KSIZE }, { 'K', KSIZE }, { 'm', MSIZE }, { 'M', MSIZE },
	{ 'g', GSIZE }, { 'G', GSIZE }, { '\0', 0 }
};

static const struct config_unit config_time_units[] = {
	{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { '\0', 0 }
};

/* Parse a number with an optional unit suffix, at most max in all. */
static int
config_parse_scaled(const char *s, const struct config_unit *units,
    uint64_t max, uint64_t *out)
{
	const struct config_unit	*u;
	char				*num;
	size_t				 len;
	uint64_t			 v, mult = 1;
	int				 rv;

	if ((len = strlen(s)) == 0)
		return (-1);
	for (u = units; u->suffix != '\0'; u++) {
		if (s[len - 1] == u->suffix) {
			mult = u->mult;
			len--;
			break;
		}
	}
	num = xstrndup(s, len);
	rv = config_parse_uint(num, &v);
	free(num);
	if (rv != 0 || v > max / mult)
		return (-1);
	*out = v * mult;
	return (0);
}

/* Parse a size: a number with an optional k, m or g suffix (1024-based). */
int
config_parse_size(const char *s, size_t *size)
{
	uint64_t	v;

	if (config_parse_scaled(s, config_size_units, SIZE_MAX, &v) != 0)
		return (-1);
	*size = v;
	return (0);
}

/* Parse a time: a number of seconds, or with an s, m, h or d suffix. */
int
config_parse_time(const char *s, u_int *t)
{
	uint64_t	v;

	if (config_parse_scaled(s, config_time_units, UINT_MAX, &v) != 0)
		return (-1);
	*t = v;
	return (0);
}

/* Parse an escape key: "^X", a single character or "0xNN". */
int
config_parse_char(const char *s, u_char *c)
{
	u_char		 x;
	char		*end;
	unsigned long	 v;

	if (s[0] == '^' && s[1] != '\0' && s[2] == '\0') {
		x = toupper((u_char)s[1]);
		if (x == '?')
			*c = 0x7f;
		else if (x >= '@' && x <= '_')
			*c = x - '@';
		else
			return (-1);
	} else if (s[0] != '\0' && s[1] == '\0')
		*c = s[0];
	else if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') &&
	    isxdigit((u_char)s[2])) {
		errno = 0;
		v = strtoul(s + 2, &end, 16);
		if (*end != '\0' || errno != 0 || v > 0xff)
			return (-1);
		*c = v;
	} else
		return (-1);
	return (0);
}

/* A size as config_print writes it: the largest unit that divides it. */
void
config_fmt_size(uint64_t v, char *buf, size_t len)
{
	if (v != 0 && v % GSIZE == 0)
		snprintf(buf, len, "%lluG", (unsigned long long)(v / GSIZE));
	else if (v != 0 && v % MSIZE == 0)
		snprintf(buf, len, "%lluM", (unsigned long long)(v / MSIZE));
	else if (v != 0 && v % KSIZE == 0)
		snprintf(buf, len, "%lluk", (unsigned long long)(v / KSIZE));
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* A time as config_print writes it: the largest unit that divides it. */
void
config_fmt_time(u_int v, char *buf, size_t len)
{
	if (v != 0 && v % 86400 == 0)
		snprintf(buf, len, "%ud", v / 86400);
	else if (v != 0 && v % 3600 == 0)
		snprintf(buf, len, "%uh", v / 3600);
	else if (v != 0 && v % 60 == 0)
		snprintf(buf, len, "%um", v / 60);
	else
		snprintf(buf, len, "%u", v);
}

/* A character as config_print writes it: ^X, 0xNN or itself. */
void
config_fmt_char(u_char c, char *buf, size_t len)
{
	if (c < 0x20)
		snprintf(buf, len, "^%c", c + '@');
	else if (c == 0x7f)
		snprintf(buf, len, "^?");
	else if (c > 0x7f || c == ' ' || c == ';' || c == '#' ||
	    c == '\\' || c == '"' || c == '\'')
		snprintf(buf, len, "0x%02x", c);
	else
		snprintf(buf, len, "%c", c);
}

/*
 * 0 if s is an identifier (1 to IDENT_MAX of [A-Za-z0-9_.-]), else -1:
 * the same as a label of a service URI.
 */
int
config_check_ident(const char *s)
{
	return (config_label_valid(s, strlen(s)) ? 0 : -1);
}

/* Rewrite a comma or space separated list as "a, b, c". */
char *
config_list_normalise(const char *text)
{
	const char	*p, *q;
	char		*out, *tmp;

	out = xstrdup("");
	for (p = text; *p != '\0'; p = q) {
		while (*p == ',' || isspace((u_char)*p))
			p++;
		if (*p == '\0')
			break;
		for (q = p; *q != '\0' && *q != ',' &&
		    !isspace((u_char)*q); q++)
			;
		xasprintf(&tmp, "%s%s%.*s", out, *out != '\0' ? ", " : "",
		    (int)(q - p), p);
		free(out);
		out = tmp;
	}
	return (out);
}

/* Check every address of a normalised listen list. */
int
config_check_listen(const char *list, int port, char **msg)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	char			*copy, *p, *word;

	copy = xstrdup(list);
	p = copy;
	while ((word = strsep(&p, ",")) != NULL) {
		while (isspace((u_char)*word))
			word++;
		if (*word == '\0')
			continue;
		if (addr_parse_listen(word, port, &ss, &sslen, msg) != 0) {
			free(copy);
			return (-1);
		}
	}
	free(copy);
	return (0);
}

/* Check a list of accepted service URIs; -1 with *msg if bad. */
int
config_check_uris(const char *list, char **msg)
{
	const char	*p;

	if (*list == '\0') {
		*msg = xstrdup("an empty list would refuse every VM; "
		    "use * to accept any URI");
		return (-1);
	}
	for (p = list; *p != '\0'; p++) {
		if (*p == '?' || (u_char)*p < 0x20 || (u_char)*p == 0x7f) {
			xasprintf(msg, "\"%s\": a base URI has no query or "
			    "control characters", list);
			return (-1);
		}
	}
	return (0);
}

/* Check a log file name template; -1 with *msg if bad. */
int
config_check_template(const char *t, char **msg)
{
	const char	*p;
	int		 unique = 0;

	if (*t == '\0') {
		*msg = xstrdup("empty file name template");
		return (-1);
	}
	if (strchr(t, '/') != NULL) {
		*msg = xstrdup("the template is a file name: no '/' "
		    "(set [log] dir)");
		return (-1);
	}
	for (p = t; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		switch (*++p) {
		case 'n':
		case 'u':
		case 'k':
			unique = 1;
			break;
		case 'l':
		case '%':
			break;
		default:
			xasprintf(msg, "unknown escape %%%.1s in \"%s\" "
			    "(use %%n, %%u, %%k, %%l or %%%%)", p, t);
			return (-1);
		}
	}
	if (!unique) {
		xasprintf(msg, "\"%s\" names no console: use %%n, %%u or %%k",
		    t);
		return (-1);
	}
	return (0);
}

/*
 * Parse "host", "host:port", "[v6]" or "[v6]:port" (len bytes) into
 * ra->host and ra->port, with defport when no port is given.
 */
static int
config_hostport(const char *s, size_t len, int defport, struct redis_addr *ra,
    char **msg)
{
	const char	*host, *end, *p;
	size_t		 hostlen;
	uint64_t	 v;
	char		*num;
	int		 rv;

	if (len == 0) {
		*msg = xstrdup("no host");
		return (-1);
	}
	end = s + len;
	if (*s == '[') {
		if ((p = memchr(s, ']', len)) == NULL || p == s + 1) {
			xasprintf(msg, "bad address \"%.*s\"", (int)len, s);
			return (-1);
		}
		host = s + 1;
		hostlen = p - host;
		p++;
		if (p != end && *p != ':') {
			xasprintf(msg, "bad address \"%.*s\"", (int)len, s);
			return (-1);
		}
	} else {
		host = s;
		if ((p = memchr(s, ':', len)) == NULL)
			p = end;
		if (memchr(p + (p != end), ':', end - p - (p != end)) !=
		    NULL) {
			xasprintf(msg, "\"%.*s\": write an IPv6 address in "
			    "brackets, [addr]:port", (int)len, s);
			return (-1);
		}
		hostlen = p - s;
	}
	if (hostlen == 0) {
		xasprintf(msg, "no host in \"%.*s\"", (int)len, s);
		return (-1);
	}
	for (v = 0; v < hostlen; v++) {
		if (!isalnum((u_char)host[v]) && host[v] != '.' &&
		    host[v] != '-' && host[v] != '_' && host[v] != ':' &&
		    host[v] != '%') {
			xasprintf(msg, "bad host \"%.*s\"", (int)hostlen,
			    host);
			return (-1);
		}
	}
	ra->port = defport;
	if (p != end) {
		num = xstrndup(p + 1, end - p - 1);
		rv = config_parse_uint(num, &v);
		free(num);
		if (rv != 0 || v == 0 || v > 65535) {
			xasprintf(msg, "bad port in \"%.*s\"", (int)len, s);
			return (-1);
		}
		ra->port = v;
	}
	ra->host = xstrndup(host, hostlen);
	return (0);
}

/* Decode %XX escapes; NULL if one is malformed or decodes to NUL. */
static char *
config_unescape(const char *s, size_t len)
{
	char	*out, hex[3];
	size_t	 i, n = 0;
	u_long	 c;

	out = xmalloc(len + 1);
	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[n++] = s[i];
			continue;
		}
		if (i + 2 >= len || !isxdigit((u_char)s[i + 1]) ||
		    !isxdigit((u_char)s[i + 2]))
			goto bad;
		hex[0] = s[i + 1];
		hex[1] = s[i + 2];
		hex[2] = '\0';
		if ((c = strtoul(hex, NULL, 16)) == 0)
			goto bad;
		out[n++] = c;
		i += 2;
	}
	out[n] = '\0';
	return (out);

bad:
	free(out);
	return (NULL);
}

/*
 * Parse a Redis URL, redis://[user:password@]host[:port][/db] (port 6379
 * and database 0 by default; an empty user means the default user).
 * Characters special in a URL are written %XX in user and password.
 */
int
config_parse_redis(const char *url, struct redis_addr *ra, char **msg)
{
	const char	*p, *at, *colon, *slash, *hostend;
	uint64_t	 v;

	memset(ra, 0, sizeof *ra);
	if (strncasecmp(url, "rediss://", 9) == 0) {
		xasprintf(msg, "\"%s\": TLS to Redis (rediss://) is not "
		    "supported; use redis:// on a trusted network", url);
		return (-1);
	}
	if (strncasecmp(url, "redis://", 8) != 0) {
		xasprintf(msg, "\"%s\" is not a Redis URL "
		    "(redis://[user:password@]host:port[/db])", url);
		return (-1);
	}
	p = url + 8;
	slash = strchr(p, '/');
	hostend = slash != NULL ? slash : p + strlen(p);
	at = NULL;
	for (colon = p; colon < hostend; colon++) {
		if (*colon == '@')
			at = colon;
	}
	if (at != NULL) {
		if ((colon = memchr(p, ':', at - p)) == NULL) {
			xasprintf(msg, "\"%s\": credentials are "
			    "user:password@ (an empty user for the default "
			    "user)", url);
			return (-1);
		}
		if (colon > p &&
		    (ra->user = config_unescape(p, colon - p)) == NULL)
			goto badesc;
		if ((ra->password = config_unescape(colon + 1,
		    at - colon - 1)) == NULL)
			goto badesc;
		if (*ra->password == '\0') {
			xasprintf(msg, "\"%s\": empty password", url);
			goto fail;
		}
		p = at + 1;
	}
	if (config_hostport(p, hostend - p, 6379, ra, msg) != 0)
		goto fail;
	if (slash != NULL && slash[1] != '\0') {
		if (config_parse_uint(slash + 1, &v) != 0 || v > 1000000) {
			xasprintf(msg, "\"%s\": bad database number \"%s\"",
			    url, slash + 1);
			goto fail;
		}
		ra->db = v;
	}
	return (0);

badesc:
	xasprintf(msg, "\"%s\": bad %%-escape in the credentials", url);
fail:
	config_redis_free(ra);
	return (-1);
}

/*
 * Parse a list of Sentinel addresses, "host:port, host:port" (port 26379
 * by default), into a malloc'd array.
 */
int
config_parse_sentinels(const char *list, struct redis_addr **out, u_int *n,
    char **msg)
{
	struct redis_addr	*ra = NULL;
	const char		*p, *q;
	u_int			 i, cnt = 0;

	for (p = list; *p != '\0'; p = q) {
		while (*p == ',' || isspace((u_char)*p))
			p++;
		if (*p == '\0')
			break;
		for (q = p; *q != '\0' && *q != ',' &&
		    !isspace((u_char)*q); q++)
			;
		ra = xreallocarray(ra, cnt + 1, sizeof *ra);
		memset(&ra[cnt], 0, sizeof ra[cnt]);
		if (config_hostport(p, q - p, 26379, &ra[cnt], msg) != 0)
			goto fail;
		cnt++;
	}
	if (cnt == 0) {
		*msg = xstrdup("no Sentinel address");
		goto fail;
	}
	*out = ra;
	*n = cnt;
	return (0);

fail:
	for (i = 0; i < cnt; i++)
		config_redis_free(&ra[i]);
	free(ra);
	return (-1);
}

/* Free what config_parse_redis() allocated (not ra itself). */
void
config_redis_free(struct redis_addr *ra)
{
	free(ra->host);
	free(ra->user);
	if (ra->password != NULL) {
		explicit_bzero(ra->password, strlen(ra->password));
		free(ra->password);
	}
	memset(ra, 0, sizeof *ra);
}

static int
config_label_valid(const char *s, size_t len)
{
	size_t	i;

	if (len == 0 || len > LABEL_MAX)
		return (0);
	for (i = 0; i < len; i++) {
		if (!isalnum((u_char)s[i]) && s[i] != '_' && s[i] != '.' &&
		    s[i] != '-')
			return (0);
	}
	return (1);
}

/*
 * Parse a service URI query, "k=v&k=v".  Return 0 and set *label (NULL
 * without port=) if it is well formed, else -1.
 */
static int
config_query(const char *q, size_t len, char **label)
{
	const char	*p, *end, *amp, *eq;

	*label = NULL;
	if (len == 0)
		return (-1);
	end = q + len;
	for (p = q; p <= end; p = amp + 1) {
		if ((amp = memchr(p, '&', end - p)) == NULL)
			amp = end;
		if ((eq = memchr(p, '=', amp - p)) == NULL || eq == p)
			goto bad;
		if (eq - p == 4 && memcmp(p, "port", 4) == 0) {
			if (*label != NULL ||
			    !config_label_valid(eq + 1, amp - eq - 1))
				goto bad;
			*label = xstrndup(eq + 1, amp - eq - 1);
		}
		if (amp == end)
			break;
	}
	return (0);

bad:
	free(*label);
	*label = NULL;
	return (-1);
}

/*
 * The DO-PROXY service URI rule.  uri (len bytes, not NUL-terminated) is
 * accepted if it is one of the accepted base URIs, or such a base followed
 * by "?k=v&..." where port=LABEL names the port (*label, malloc'd) and
 * other keys are ignored.  "*" accepts any URI; its label is taken from a
 * well-formed query if there is one.  Return 1 if accepted, else 0.
 */
int
config_uri_accepted(const struct config *conf, const char *uri, size_t len,
    char **label)
{
	const char	*qmark, *p, *q;
	char		*lbl = NULL;
	size_t		 baselen, i;
	int		 any = 0;

	if (label != NULL)
		*label = NULL;
	for (i = 0; i < len; i++) {
		if ((u_char)uri[i] < 0x20 || (u_char)uri[i] == 0x7f)
			return (0);
	}
	qmark = memchr(uri, '?', len);
	baselen = qmark != NULL ? (size_t)(qmark - uri) : len;

	for (p = conf->vm_accept_uri; *p != '\0'; p = q) {
		while (*p == ',' || isspace((u_char)*p))
			p++;
		if (*p == '\0')
			break;
		for (q = p; *q != '\0' && *q != ',' &&
		    !isspace((u_char)*q); q++)
			;
		if (q - p == 1 && *p == '*') {
			any = 1;
			continue;
		}
		if ((size_t)(q - p) != baselen || memcmp(p, uri, baselen) != 0)
			continue;
		if (qmark != NULL && config_query(qmark + 1,
		    len - baselen - 1, &lbl) != 0)
			continue;
		goto accept;
	}
	if (!any)
		return (0);
	if (qmark != NULL && config_query(qmark + 1, len - baselen - 1,
	    &lbl) != 0)
		lbl = NULL;

accept:
	if (label != NULL)
		*label = lbl;
	else
		free(lbl);
	return (1);
}
