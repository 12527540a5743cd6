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
 * A string-keyed hash map with intrusive entries: the caller embeds a
 * struct hmap_entry in its object and owns both the object and the key
 * string (the map keeps the pointer, it does not copy).  FNV-1a hashes,
 * a power-of-two number of chained buckets, doubled when the number of
 * entries passes the number of buckets.  The bucket array is allocated on
 * the first insert.  Keys are expected to be unique; hmap_find returns
 * the most recently inserted entry of a duplicated key.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

#define HMAP_INITIAL	16

static uint32_t	hmap_hash(const char *);
static void	hmap_grow(struct hmap *);

static uint32_t
hmap_hash(const char *s)
{
	uint32_t	h = 2166136261U;

	for (; *s != '\0'; s++) {
		h ^= (u_char)*s;
		h *= 16777619U;
	}
	return (h);
}

static void
hmap_grow(struct hmap *h)
{
	struct hmap_entry	**nb, *e, *next;
	u_int			  n, i, mask;

	n = h->nb != 0 ? h->nb * 2 : HMAP_INITIAL;
	nb = xcalloc(n, sizeof *nb);
	mask = n - 1;
	for (i = 0; i < h->nb; i++) {
		for (e = h->b[i]; e != NULL; e = next) {
			next = e->next;
			e->next = nb[e->hash & mask];
			nb[e->hash & mask] = e;
		}
	}
	free(h->b);
	h->b = nb;
	h->nb = n;
}

/* Set up an empty map; allocates nothing. */
void
hmap_init(struct hmap *h)
{
	h->b = NULL;
	h->nb = 0;
	h->n = 0;
}

/* Free the buckets (the entries belong to the caller). */
void
hmap_free(struct hmap *h)
{
	free(h->b);
	hmap_init(h);
}

/* Insert e under key (not copied: it must live as long as e is in h). */
void
hmap_insert(struct hmap *h, struct hmap_entry *e, const char *key)
{
	u_int	i;

	e->key = key;
	e->hash = hmap_hash(key);
	if (h->nb == 0 || h->n + 1 > h->nb)
		hmap_grow(h);
	i = e->hash & (h->nb - 1);
	e->next = h->b[i];
	h->b[i] = e;
	h->n++;
}

/* Remove e, which must be in h. */
void
hmap_remove(struct hmap *h, struct hmap_entry *e)
{
	struct hmap_entry	**pp;

	if (h->nb == 0)
		return;
	for (pp = &h->b[e->hash & (h->nb - 1)]; *pp != NULL;
	    pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			e->next = NULL;
			h->n--;
			return;
		}
	}
}

/* Find the entry for key, or NULL. */
struct hmap_entry *
hmap_find(const struct hmap *h, const char *key)
{
	struct hmap_entry	*e;
	uint32_t		 hash;

	if (h->nb == 0)
		return (NULL);
	hash = hmap_hash(key);
	for (e = h->b[hash & (h->nb - 1)]; e != NULL; e = e->next) {
		if (e->hash == hash && strcmp(e->key, key) == 0)
			return (e);
	}
	return (NULL);
}
