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

/* Unit tests for node/hmap.c: 10,000 keys through growth and removal. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vspcd.h"

#define NKEYS	10000

struct item {
	char			 key[48];
	int			 value;
	struct hmap_entry	 entry;
};

static struct item *
find(struct hmap *h, const char *key)
{
	struct hmap_entry	*e;

	if ((e = hmap_find(h, key)) == NULL)
		return (NULL);
	return (hmap_data(e, struct item, entry));
}

static void
test_empty(void **state)
{
	struct hmap	h;

	hmap_init(&h);
	assert_null(hmap_find(&h, "x"));
	assert_null(hmap_find(&h, ""));
	assert_int_equal(h.n, 0);
	hmap_free(&h);
}

static void
test_many(void **state)
{
	struct hmap	 h;
	struct item	*items, *it;
	char		 key[48];
	int		 i;

	items = calloc(NKEYS, sizeof *items);
	assert_non_null(items);
	hmap_init(&h);
	for (i = 0; i < NKEYS; i++) {
		/* Look-alike keys: UUID-shaped with a label. */
		snprintf(items[i].key, sizeof items[i].key,
		    "01234567-89ab-cdef-fedc-%012x.%d", i * 7919, i % 3);
		items[i].value = i;
		hmap_insert(&h, &items[i].entry, items[i].key);
		assert_int_equal(h.n, i + 1);
		/* The load never passes 1. */
		assert_true(h.n <= h.nb);
	}
	for (i = 0; i < NKEYS; i++) {
		/* Found by value, not by pointer: a copy of the key. */
		snprintf(key, sizeof key, "%s", items[i].key);
		it = find(&h, key);
		assert_non_null(it);
		assert_ptr_equal(it, &items[i]);
		assert_int_equal(it->value, i);
	}
	assert_null(find(&h, "01234567-89ab-cdef-fedc-000000000000.1"));
	assert_null(find(&h, "nope"));

	/* Remove every other one. */
	for (i = 0; i < NKEYS; i += 2)
		hmap_remove(&h, &items[i].entry);
	assert_int_equal(h.n, NKEYS / 2);
	for (i = 0; i < NKEYS; i++) {
		it = find(&h, items[i].key);
		if (i % 2 == 0)
			assert_null(it);
		else
			assert_ptr_equal(it, &items[i]);
	}
	/* Put them back, remove all. */
	for (i = 0; i < NKEYS; i += 2)
		hmap_insert(&h, &items[i].entry, items[i].key);
	for (i = 0; i < NKEYS; i++)
		assert_ptr_equal(find(&h, items[i].key), &items[i]);
	for (i = NKEYS - 1; i >= 0; i--)
		hmap_remove(&h, &items[i].entry);
	assert_int_equal(h.n, 0);
	for (i = 0; i < NKEYS; i++)
		assert_null(find(&h, items[i].key));
	hmap_free(&h);
	assert_null(h.b);
	free(items);
}

/* The key is the caller's string, and removal of one leaves the other. */
static void
test_key_not_copied(void **state)
{
	struct hmap	h;
	struct item	a, b;

	hmap_init(&h);
	snprintf(a.key, sizeof a.key, "alpha");
	snprintf(b.key, sizeof b.key, "beta");
	hmap_insert(&h, &a.entry, a.key);
	hmap_insert(&h, &b.entry, b.key);
	assert_ptr_equal(a.entry.key, a.key);
	assert_ptr_equal(find(&h, "beta"), &b);
	hmap_remove(&h, &a.entry);
	assert_null(find(&h, "alpha"));
	assert_ptr_equal(find(&h, "beta"), &b);
	hmap_free(&h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_key_not_copied),
	};

	return (cmocka_run_group_tests_name("hmap", tests, NULL, NULL));
}
