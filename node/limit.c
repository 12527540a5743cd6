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
 * Connections per source address, per listener kind: one host (or one
 * runaway script) cannot take every descriptor of the node.
 *
 * A connection takes a slot for its source address (without the port,
 * after any PROXY header) when it is accepted and gives it back when it
 * closes.  Slots live in a hash map and are freed when their count drops
 * to zero, so memory follows the number of distinct sources connected.
 * IPv4-mapped IPv6 addresses count as their IPv4 address.
 */

#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

struct limit_slot {
	struct hmap_entry	 entry;
	char			 key[INET6_ADDRSTRLEN + 8];
	u_int			 kind;
	u_int			 n;
};

#define LIMIT_KINDS		16

static struct hmap	 limit_map;
static int		 limit_ready;
static u_int		 limit_slots;
static u_int		 limit_totals[LIMIT_KINDS];

/* The source part of sa as text ("10.0.0.1", "fe80::1", "unix"). */
static void
limit_key(const struct sockaddr *sa, u_int kind, char *buf, size_t len)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	char				 host[INET6_ADDRSTRLEN];

	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, (const u_char *)&sin6->sin6_addr +
			    12, host, sizeof host);
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, host,
			    sizeof host);
		break;
	default:
		snprintf(host, sizeof host, "local");
		break;
	}
	snprintf(buf, len, "%u/%s", kind, host);
}

/*
 * Take a slot for a connection from sa on a listener of kind.  With max
 * non-zero and max connections from that source already there, NULL (the
 * caller refuses the connection); else the slot, to give back with
 * limit_put() when the connection ends.
 */
struct limit_slot *
limit_take(const struct sockaddr *sa, u_int kind, u_int max)
{
	struct limit_slot	*ls;
	struct hmap_entry	*e;
	char			 key[sizeof ls->key];

	if (!limit_ready) {
		hmap_init(&limit_map);
		limit_ready = 1;
	}
	limit_key(sa, kind, key, sizeof key);
	if ((e = hmap_find(&limit_map, key)) != NULL) {
		ls = hmap_data(e, struct limit_slot, entry);
		if (max != 0 && ls->n >= max)
			return (NULL);
		ls->n++;
		limit_totals[ls->kind]++;
		return (ls);
	}
	ls = xcalloc(1, sizeof *ls);
	memcpy(ls->key, key, sizeof ls->key);
	ls->kind = kind % LIMIT_KINDS;
	limit_totals[ls->kind]++;
	ls->n = 1;
	hmap_insert(&limit_map, &ls->entry, ls->key);
	limit_slots++;
	return (ls);
}

/* Give a slot back (NULL is fine). */
void
limit_put(struct limit_slot *ls)
{
	if (ls == NULL)
		return;
	limit_totals[ls->kind]--;
	if (--ls->n > 0)
		return;
	hmap_remove(&limit_map, &ls->entry);
	limit_slots--;
	free(ls);
}

/* Connections from sa on a listener of kind now. */
u_int
limit_count(const struct sockaddr *sa, u_int kind)
{
	struct hmap_entry	*e;
	char			 key[INET6_ADDRSTRLEN + 8];

	if (!limit_ready)
		return (0);
	limit_key(sa, kind, key, sizeof key);
	if ((e = hmap_find(&limit_map, key)) == NULL)
		return (0);
	return (hmap_data(e, struct limit_slot, entry)->n);
}

/* Distinct sources with a connection (for tests and metrics). */
u_int
limit_sources(void)
{
	return (limit_slots);
}

/* Connections holding a slot on listeners of kind, from every source. */
u_int
limit_total(u_int kind)
{
	return (limit_totals[kind % LIMIT_KINDS]);
}

/*
 * Take a slot, never refused, for a connection whose source is known
 * only as addr_fmt() wrote it ("10.0.0.1:5000", "[::1]:5000"): one
 * handed over by a hot upgrade.  NULL if addr is not an address.
 */
struct limit_slot *
limit_take_text(const char *addr, u_int kind)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	char			 host[INET6_ADDRSTRLEN + 2];
	const char		*colon;
	size_t			 len;

	if (*addr == '[') {
		if ((colon = strchr(addr, ']')) == NULL ||
		    (len = colon - addr - 1) >= sizeof host)
			return (NULL);
		memcpy(host, addr + 1, len);
		host[len] = '\0';
		memset(&sin6, 0, sizeof sin6);
		sin6.sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
			return (NULL);
		return (limit_take((struct sockaddr *)&sin6, kind, 0));
	}
	if ((colon = strrchr(addr, ':')) == NULL)
		colon = addr + strlen(addr);
	if ((len = colon - addr) >= sizeof host)
		return (NULL);
	memcpy(host, addr, len);
	host[len] = '\0';
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		return (NULL);
	return (limit_take((struct sockaddr *)&sin, kind, 0));
}
