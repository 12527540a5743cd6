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
 * Hot upgrade: a telnet codec's state (struct telnet) to and from its
 * record in proto/handoff.proto.  The codec itself (telnet.c) knows
 * nothing of the hand-over.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "proto/handoff.pb-c.h"

/*
 * Hot upgrade: describe the codec's state in m.  m points into t: use it
 * before t changes.
 */
void
telnet_handoff_save(const struct telnet *t, Vspc__Handoff__Telnet *m)
{
	m->state = t->state;
	m->verb = t->verb;
	m->sb_opt = t->sb_opt;
	m->us.data = (uint8_t *)t->us;
	m->us.len = TOI_MAX;
	m->him.data = (uint8_t *)t->him;
	m->him.len = TOI_MAX;
	m->accept_us = t->accept_us;
	m->accept_him = t->accept_him;
	m->sb_max = t->sb_max;
	m->sb.data = t->sb_buf;
	m->sb.len = t->sb_buf != NULL ? t->sb_len : 0;
}

/* Hot upgrade: set an initialised codec's state from m. */
void
telnet_handoff_restore(struct telnet *t, const Vspc__Handoff__Telnet *m)
{
	size_t	i;

	t->state = m->state < TP_MAX ? m->state : TP_DATA;
	t->verb = m->verb;
	t->sb_opt = m->sb_opt;
	for (i = 0; i < TOI_MAX && i < m->us.len; i++)
		t->us[i] = m->us.data[i];
	for (i = 0; i < TOI_MAX && i < m->him.len; i++)
		t->him[i] = m->him.data[i];
	t->accept_us = m->accept_us;
	t->accept_him = m->accept_him;
	if (m->sb_max != 0)
		t->sb_max = m->sb_max;
	free(t->sb_buf);
	t->sb_buf = NULL;
	t->sb_size = t->sb_len = 0;
	if (t->state == TP_SB || t->state == TP_SB_IAC ||
	    t->state == TP_SB_OPT || m->sb.len != 0) {
		t->sb_size = m->sb.len > TELNET_SB_INITIAL ? m->sb.len :
		    TELNET_SB_INITIAL;
		t->sb_buf = xmalloc(t->sb_size);
		if (m->sb.len != 0)
			memcpy(t->sb_buf, m->sb.data, m->sb.len);
		t->sb_len = m->sb.len;
	}
}
