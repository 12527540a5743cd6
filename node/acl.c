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
 * Address lists and listen addresses.
 *
 * An address list ("10.0.0.0/8, ::1, 192.168.1.7") is a flat array of
 * networks, checked in order; a bare address is a /32 or /128.  An
 * IPv4-mapped IPv6 source (::ffff:a.b.c.d, as a dual-stack socket reports
 * IPv4 peers) is treated as the IPv4 address it carries, so it matches
 * IPv4 entries only.  Only numeric addresses are accepted: a name would
 * make the meaning of the list depend on DNS at load time.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

static int	acl_entry_parse(struct acl_entry *, const char *, char **);
static int	acl_entry_match(const struct acl_entry *, int,
		    const u_char *);
static int	addr_parse_port(const char *, int *);

static int
acl_entry_parse(struct acl_entry *e, const char *word, char **err)
{
	char		 buf[INET6_ADDRSTRLEN + 8], *slash;
	long		 bits;
	char		*end;
	u_int		 i, max;

	if (strlen(word) >= sizeof buf) {
		xasprintf(err, "bad address \"%s\"", word);
		return (-1);
	}
	memcpy(buf, word, strlen(word) + 1);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';

	memset(e, 0, sizeof *e);
	if (inet_pton(AF_INET, buf, e->addr) == 1) {
		e->af = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, e->addr) == 1) {
		e->af = AF_INET6;
		max = 128;
	} else {
		xasprintf(err, "bad address \"%s\"", word);
		return (-1);
	}

	e->bits = max;
	if (slash != NULL) {
		errno = 0;
		bits = strtol(slash, &end, 10);
		if (!isdigit((u_char)*slash) || *end != '\0' || errno != 0 ||
		    bits < 0 || bits > (long)max) {
			xasprintf(err, "bad prefix length in \"%s\"", word);
			return (-1);
		}
		e->bits = bits;
	}

	/* Clear host bits so that matching is a plain compare. */
	for (i = 0; i < max / 8; i++) {
		if (i * 8 >= e->bits)
			e->addr[i] = 0;
		else if (i * 8 + 8 > e->bits)
			e->addr[i] &= (0xff << (8 - (e->bits - i * 8))) & 0xff;
	}
	return (0);
}

/*
 * Parse an address list, separated by commas or white space, into acl,
 * which must be empty.  On error *err is a malloc'd message and acl is left
 * empty.
 */
int
acl_parse(struct acl *acl, const char *text, char **err)
{
	struct acl_entry	 e;
	const char		*p, *q;
	char			*word;
	size_t			 len;

	acl->n = 0;
	acl->e = NULL;
	for (p = text; *p != '\0'; p = q) {
		while (*p == ',' || isspace((u_char)*p))
			p++;
		if (*p == '\0')
			break;
		for (q = p; *q != '\0' && *q != ',' &&
		    !isspace((u_char)*q); q++)
			;
		len = q - p;
		word = xstrndup(p, len);
		if (acl_entry_parse(&e, word, err) != 0) {
			free(word);
			acl_free(acl);
			return (-1);
		}
		free(word);
		acl->e = xreallocarray(acl->e, acl->n + 1, sizeof *acl->e);
		acl->e[acl->n++] = e;
	}
	return (0);
}

/* Free the entries of an address list and leave it empty. */
void
acl_free(struct acl *acl)
{
	free(acl->e);
	acl->e = NULL;
	acl->n = 0;
}

static int
acl_entry_match(const struct acl_entry *e, int af, const u_char *addr)
{
	u_int	full, rest;

	if (e->af != af)
		return (0);
	full = e->bits / 8;
	rest = e->bits % 8;
	if (memcmp(e->addr, addr, full) != 0)
		return (0);
	if (rest != 0 &&
	    (addr[full] & (0xff << (8 - rest)) & 0xff) != e->addr[full])
		return (0);
	return (1);
}

/* Return 1 if the source address sa is in the list; an empty list is 0. */
int
acl_match(const struct acl *acl, const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const u_char			*addr;
	int				 af;
	u_int				 i;

	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		af = AF_INET;
		addr = (const u_char *)&sin->sin_addr;
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			af = AF_INET;
			addr = (const u_char *)&sin6->sin6_addr + 12;
		} else {
			af = AF_INET6;
			addr = (const u_char *)&sin6->sin6_addr;
		}
		break;
	default:
		return (0);
	}
	for (i = 0; i < acl->n; i++) {
		if (acl_entry_match(&acl->e[i], af, addr))
			return (1);
	}
	return (0);
}

static int
addr_parse_port(const char *s, int *port)
{
	long	 v;
	char	*end;

	if (!isdigit((u_char)*s))
		return (-1);
	errno = 0;
	v = strtol(s, &end, 10);
	if (*end != '\0' || errno != 0 || v < 1 || v > 65535)
		return (-1);
	*port = v;
	return (0);
}

/*
 * Parse a listen address: "1.2.3.4:port", "[v6]:port", "*:port" or
 * ":port" (every IPv4 address), or an address alone ("127.0.0.1", "::1",
 * "[::1]") that takes default_port (0: a port is required).
 */
int
addr_parse_listen(const char *text, int default_port,
    struct sockaddr_storage *ss, socklen_t *sslen, char **err)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			*copy, *host, *port, *colon;
	int			 portnum = default_port;

	memset(ss, 0, sizeof *ss);
	*sslen = 0;
	copy = xstrdup(text);
	host = copy;
	port = NULL;

	if (*host == '[') {
		host++;
		if ((colon = strchr(host, ']')) == NULL)
			goto bad;
		*colon++ = '\0';
		if (*colon == ':')
			port = colon + 1;
		else if (*colon != '\0')
			goto bad;
	} else if ((colon = strchr(host, ':')) != NULL &&
	    strchr(colon + 1, ':') == NULL) {
		/* One colon: host:port.  More: a bare IPv6 address. */
		*colon = '\0';
		port = colon + 1;
	}

	if (port != NULL && addr_parse_port(port, &portnum) != 0) {
		xasprintf(err, "bad port in \"%s\"", text);
		free(copy);
		return (-1);
	}
	if (portnum <= 0 || portnum > 65535) {
		xasprintf(err, "no port in \"%s\"", text);
		free(copy);
		return (-1);
	}

	if (*host == '\0' || strcmp(host, "*") == 0)
		host = "0.0.0.0";
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(portnum);
		*sslen = sizeof *sin;
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(portnum);
		*sslen = sizeof *sin6;
	} else
		goto bad;
	free(copy);
	return (0);

bad:
	xasprintf(err, "bad address \"%s\" (want ADDRESS:PORT, [IPV6]:PORT "
	    "or *:PORT, numeric)", text);
	free(copy);
	return (-1);
}

/*
 * Format sa as "1.2.3.4:5678" or "[::1]:5678" into buf and return buf.
 * An IPv4-mapped IPv6 address is shown as the IPv4 address.
 */
const char *
addr_fmt(const struct sockaddr *sa, char *buf, size_t len)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const struct sockaddr_un	*sun;
	char				 host[INET6_ADDRSTRLEN];

	if (len == 0)
		return (buf);
	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			inet_ntop(AF_INET, (const u_char *)&sin6->sin6_addr +
			    12, host, sizeof host);
			snprintf(buf, len, "%s:%u", host,
			    ntohs(sin6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &sin6->sin6_addr, host,
			    sizeof host);
			snprintf(buf, len, "[%s]:%u", host,
			    ntohs(sin6->sin6_port));
		}
		break;
	case AF_UNIX:
		sun = (const struct sockaddr_un *)sa;
		snprintf(buf, len, "unix:%.*s", (int)sizeof sun->sun_path,
		    sun->sun_path);
		break;
	default:
		snprintf(buf, len, "af%d", sa->sa_family);
		break;
	}
	return (buf);
}
