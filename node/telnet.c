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
 * Incremental telnet codec (RFC 854/855) with RFC 1143 option
 * negotiation, following the decoder rules of VMware's reference vSPC
 * (protocol.md section 1.1):
 *
 *   - data bytes outside a subnegotiation are passed to ops->data as runs
 *     pointing into the caller's buffer; IAC IAC yields one 0xff (a
 *     pointer to the second 0xff of the pair);
 *   - IAC WILL/WONT/DO/DONT go through the Q method; options outside the
 *     table in vspcd.h are always refused and never change state;
 *   - IAC NOP is ignored, IAC DM..GA go to ops->command, IAC followed by
 *     anything else is ignored like a NOP;
 *   - IAC SB opt ... IAC SE is collected (unescaped) into a buffer that
 *     exists only while inside the subnegotiation and is capped at
 *     sb_max bytes; IAC SE outside SB, any IAC other than IAC IAC or
 *     IAC SE inside SB, IAC SB IAC and an oversized SB are fatal errors.
 *
 * Every byte of input is consumed exactly once whatever way the input is
 * split: the parser state (struct telnet) holds everything needed between
 * calls.  Errors are sticky: once telnet_input has failed it keeps
 * returning -1.
 *
 * A callback may set t->stop: telnet_input then returns 0 at once and the
 * rest of that buffer is dropped (the state is left consistent, so later
 * input is parsed normally).  It is meant for a caller that is closing
 * the connection.
 */

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

/* Initial subnegotiation buffer; it doubles up to sb_max. */

/* Replies built on the stack up to this size, else on the heap. */
#define TELNET_SB_STACK		512

static const u_char telnet_empty[1];

static const u_char telnet_opts[TOI_MAX] = {
	TELOPT_BINARY,
	TELOPT_ECHO,
	TELOPT_SGA,
	TELOPT_AUTH,
	TELOPT_COMPORT,
	TELOPT_VMWARE,
	TELOPT_VSPCADMIN
};

static const char *telnet_names[TOI_MAX] = {
	"BINARY",
	"ECHO",
	"SGA",
	"AUTHENTICATION",
	"COM-PORT",
	"VMWARE-TELNET-EXT",
	"VMWARE-VSPC-ADMIN"
};

static void	telnet_fail(struct telnet *, const char *);
static void	telnet_send3(struct telnet *, u_char, u_char);
static void	telnet_set(struct telnet *, int, int, u_char);
static void	telnet_negotiate(struct telnet *, u_char, u_char);
static int	telnet_sb_add(struct telnet *, const u_char *, size_t);
static void	telnet_sb_end(struct telnet *);

/* Reset t and attach the callbacks; every option starts disabled. */
void
telnet_init(struct telnet *t, const struct telnet_ops *ops, void *arg,
    u_int accept_us, u_int accept_him, size_t sb_max)
{
	memset(t, 0, sizeof *t);
	t->state = TP_DATA;
	t->ops = ops;
	t->arg = arg;
	t->accept_us = accept_us & (TELNET_MASK(TOI_MAX) - 1);
	t->accept_him = accept_him & (TELNET_MASK(TOI_MAX) - 1);
	if (sb_max == 0)
		sb_max = TELNET_SB_MAX_DEFAULT;
	if (sb_max > UINT32_MAX)
		sb_max = UINT32_MAX;
	t->sb_max = sb_max;
}

/* Release what the codec holds (the subnegotiation buffer). */
void
telnet_free(struct telnet *t)
{
	free(t->sb_buf);
	t->sb_buf = NULL;
	t->sb_size = 0;
	t->sb_len = 0;
}

/* Index of an option in us[]/him[], or -1 if the codec does not track it. */
int
telnet_optidx(u_char opt)
{
	int	i;

	for (i = 0; i < TOI_MAX; i++) {
		if (telnet_opts[i] == opt)
			return (i);
	}
	return (-1);
}

/* Name of an option for logs. */
const char *
telnet_optname(u_char opt)
{
	int	i;

	if ((i = telnet_optidx(opt)) == -1)
		return ("unknown");
	return (telnet_names[i]);
}

/* Whether an option is enabled: him for the peer's side, else ours. */
int
telnet_enabled(const struct telnet *t, u_char opt, int him)
{
	int	i;

	if ((i = telnet_optidx(opt)) == -1)
		return (0);
	if (him)
		return ((t->him[i] & TQ_STATE) == TQ_YES);
	return ((t->us[i] & TQ_STATE) == TQ_YES);
}

static void
telnet_fail(struct telnet *t, const char *error)
{
	t->error = error;
	telnet_free(t);
	t->state = TP_DATA;
}

static void
telnet_send3(struct telnet *t, u_char verb, u_char opt)
{
	u_char	msg[3];

	msg[0] = TEL_IAC;
	msg[1] = verb;
	msg[2] = opt;
	if (t->ops->output != NULL)
		t->ops->output(t->arg, msg, sizeof msg);
}

/*
 * Store a new Q-method state for option index i and tell the caller if
 * the option went from disabled to enabled or back.
 */
static void
telnet_set(struct telnet *t, int i, int him, u_char q)
{
	u_char	*st = him ? &t->him[i] : &t->us[i];
	int	 was, now;

	was = (*st & TQ_STATE) == TQ_YES;
	*st = q;
	now = (q & TQ_STATE) == TQ_YES;
	if (was != now && t->ops->option != NULL)
		t->ops->option(t->arg, telnet_opts[i], him, now);
}

/* Ask to enable or disable an option (RFC 1143 section 7, "request"). */
int
telnet_request(struct telnet *t, u_char opt, int him, int enable)
{
	u_char	*st, on, off;
	int	 i;

	if ((i = telnet_optidx(opt)) == -1)
		return (-1);
	st = him ? &t->him[i] : &t->us[i];
	on = him ? TEL_DO : TEL_WILL;
	off = him ? TEL_DONT : TEL_WONT;

	if (enable) {
		switch (*st) {
		case TQ_NO:
			telnet_set(t, i, him, TQ_WANTYES);
			telnet_send3(t, on, opt);
			break;
		case TQ_WANTNO:
			*st = TQ_WANTNO | TQ_OPPOSITE;
			break;
		case TQ_WANTYES | TQ_OPPOSITE:
			*st = TQ_WANTYES;
			break;
		default:
			/* YES, WANTYES, WANTNO+OPPOSITE: nothing to do. */
			break;
		}
	} else {
		switch (*st) {
		case TQ_YES:
			telnet_send3(t, off, opt);
			telnet_set(t, i, him, TQ_WANTNO);
			break;
		case TQ_WANTNO | TQ_OPPOSITE:
			*st = TQ_WANTNO;
			break;
		case TQ_WANTYES:
			*st = TQ_WANTYES | TQ_OPPOSITE;
			break;
		default:
			/* NO, WANTNO, WANTYES+OPPOSITE: nothing to do. */
			break;
		}
	}
	return (0);
}

/*
 * Handle IAC verb opt from the peer (RFC 1143 section 7, "receive").
 * WILL/WONT are about the peer's side (him[]), DO/DONT about ours (us[]).
 */
static void
telnet_negotiate(struct telnet *t, u_char verb, u_char opt)
{
	u_char	 st, yes, no;
	int	 i, him, positive, accept;

	him = (verb == TEL_WILL || verb == TEL_WONT);
	positive = (verb == TEL_WILL || verb == TEL_DO);
	yes = him ? TEL_DO : TEL_WILL;
	no = him ? TEL_DONT : TEL_WONT;

	if ((i = telnet_optidx(opt)) == -1) {
		/* Refuse; WONT/DONT already matches our state. */
		if (positive)
			telnet_send3(t, no, opt);
		return;
	}
	st = him ? t->him[i] : t->us[i];
	accept = ((him ? t->accept_him : t->accept_us) & TELNET_MASK(i)) != 0;

	if (positive) {
		switch (st) {
		case TQ_NO:
			if (accept) {
				telnet_send3(t, yes, opt);
				telnet_set(t, i, him, TQ_YES);
			} else
				telnet_send3(t, no, opt);
			break;
		case TQ_YES:
			break;
		case TQ_WANTNO:
			/* Our disable was answered by an enable: give up. */
			telnet_set(t, i, him, TQ_NO);
			break;
		case TQ_WANTNO | TQ_OPPOSITE:
			telnet_set(t, i, him, TQ_YES);
			break;
		case TQ_WANTYES:
			telnet_set(t, i, him, TQ_YES);
			break;
		case TQ_WANTYES | TQ_OPPOSITE:
			telnet_set(t, i, him, TQ_WANTNO);
			telnet_send3(t, no, opt);
			break;
		}
	} else {
		switch (st) {
		case TQ_NO:
			break;
		case TQ_YES:
			telnet_send3(t, no, opt);
			telnet_set(t, i, him, TQ_NO);
			break;
		case TQ_WANTNO:
			telnet_set(t, i, him, TQ_NO);
			break;
		case TQ_WANTNO | TQ_OPPOSITE:
			telnet_set(t, i, him, TQ_WANTYES);
			telnet_send3(t, yes, opt);
			break;
		case TQ_WANTYES:
		case TQ_WANTYES | TQ_OPPOSITE:
			telnet_set(t, i, him, TQ_NO);
			break;
		}
	}
}

/* Append to the subnegotiation buffer, allocating it on demand. */
static int
telnet_sb_add(struct telnet *t, const u_char *src, size_t len)
{
	size_t	need, size;

	if (len == 0)
		return (0);
	if (len > t->sb_max - t->sb_len) {
		telnet_fail(t, "subnegotiation longer than the limit");
		return (-1);
	}
	need = t->sb_len + len;
	if (need > t->sb_size) {
		size = t->sb_size != 0 ? t->sb_size : TELNET_SB_INITIAL;
		while (size < need)
			size *= 2;
		if (size > t->sb_max)
			size = t->sb_max;
		t->sb_buf = xreallocarray(t->sb_buf, 1, size);
		t->sb_size = size;
	}
	memcpy(t->sb_buf + t->sb_len, src, len);
	t->sb_len = need;
	return (0);
}

/* IAC SE: hand the subnegotiation over and drop its buffer. */
static void
telnet_sb_end(struct telnet *t)
{
	u_char		*buf = t->sb_buf;
	size_t		 len = t->sb_len;

	/* Detach first: the callback may feed more input or free t. */
	t->sb_buf = NULL;
	t->sb_size = 0;
	t->sb_len = 0;
	t->state = TP_DATA;
	if (t->ops->sb != NULL)
		t->ops->sb(t->arg, t->sb_opt, buf != NULL ? buf : telnet_empty,
		    len);
	free(buf);
}

/* Decode len bytes; 0 on success (or stop), -1 on error (see t->error). */
int
telnet_input(struct telnet *t, const u_char *buf, size_t len)
{
	const u_char	*p = buf, *end = buf + len, *q;
	u_char		 c;

	if (t->error != NULL)
		return (-1);
	t->stop = 0;
	while (p < end) {
		switch (t->state) {
		case TP_DATA:
			if ((q = memchr(p, TEL_IAC, end - p)) == NULL)
				q = end;
			if (q != p && t->ops->data != NULL) {
				t->ops->data(t->arg, p, q - p);
				if (t->stop)
					return (0);
			}
			p = q;
			if (p != end) {
				t->state = TP_IAC;
				p++;
			}
			break;
		case TP_IAC:
			c = *p;
			t->state = TP_DATA;
			switch (c) {
			case TEL_IAC:
				/*
				 * Escaped 0xff: leave p on it, it starts the
				 * next run of data (no copy needed).  Hand it
				 * over with the bytes that follow it.
				 */
				if ((q = memchr(p + 1, TEL_IAC, end - p - 1)) ==
				    NULL)
					q = end;
				if (t->ops->data != NULL) {
					t->ops->data(t->arg, p, q - p);
					if (t->stop)
						return (0);
				}
				p = q;
				if (p != end) {
					t->state = TP_IAC;
					p++;
				}
				continue;
			case TEL_WILL:
			case TEL_WONT:
			case TEL_DO:
			case TEL_DONT:
				t->verb = c;
				t->state = TP_VERB;
				break;
			case TEL_SB:
				t->state = TP_SB_OPT;
				break;
			case TEL_SE:
				telnet_fail(t, "IAC SE outside subnegotiation");
				return (-1);
			case TEL_NOP:
				break;
			case TEL_DM:
			case TEL_BRK:
			case TEL_IP:
			case TEL_AO:
			case TEL_AYT:
			case TEL_EC:
			case TEL_EL:
			case TEL_GA:
				p++;
				if (t->ops->command != NULL) {
					t->ops->command(t->arg, c);
					if (t->stop)
						return (0);
				}
				continue;
			default:
				/* Unknown command: ignored like NOP. */
				break;
			}
			p++;
			break;
		case TP_VERB:
			c = *p++;
			t->state = TP_DATA;
			telnet_negotiate(t, t->verb, c);
			if (t->stop)
				return (0);
			break;
		case TP_SB_OPT:
			c = *p++;
			if (c == TEL_IAC) {
				telnet_fail(t, "empty subnegotiation");
				return (-1);
			}
			t->sb_opt = c;
			t->sb_len = 0;
			t->state = TP_SB;
			break;
		case TP_SB:
			if ((q = memchr(p, TEL_IAC, end - p)) == NULL)
				q = end;
			if (telnet_sb_add(t, p, q - p) == -1)
				return (-1);
			p = q;
			if (p != end) {
				t->state = TP_SB_IAC;
				p++;
			}
			break;
		case TP_SB_IAC:
			c = *p++;
			if (c == TEL_IAC) {
				if (telnet_sb_add(t, &c, 1) == -1)
					return (-1);
				t->state = TP_SB;
			} else if (c == TEL_SE) {
				telnet_sb_end(t);
				if (t->stop)
					return (0);
			} else {
				telnet_fail(t,
				    "telnet command inside subnegotiation");
				return (-1);
			}
			break;
		default:
			telnet_fail(t, "bad telnet parser state");
			return (-1);
		}
	}
	return (0);
}

/* Double every 0xff of src into dst (which holds 2 * len); return length. */
size_t
telnet_escape(u_char *dst, const u_char *src, size_t len)
{
	u_char	*d = dst;
	size_t	 i;

	for (i = 0; i < len; i++) {
		*d++ = src[i];
		if (src[i] == TEL_IAC)
			*d++ = TEL_IAC;
	}
	return (d - dst);
}

/* Append src to an evbuffer with every 0xff doubled. */
void
telnet_escape_add(struct evbuffer *evb, const u_char *src, size_t len)
{
	const u_char	*p = src, *end = src + len, *q;
	static const u_char iac = TEL_IAC;

	while (p < end) {
		if ((q = memchr(p, TEL_IAC, end - p)) == NULL) {
			evbuffer_add(evb, p, end - p);
			break;
		}
		/* The run up to and including the 0xff, then its double. */
		evbuffer_add(evb, p, q - p + 1);
		evbuffer_add(evb, &iac, 1);
		p = q + 1;
	}
}

/* Send IAC SB opt subcmd payload IAC SE, escaped, in one output call. */
void
telnet_send_sb(struct telnet *t, u_char opt, u_char subcmd,
    const u_char *payload, size_t len)
{
	u_char	 stack[TELNET_SB_STACK], *msg, *p;
	size_t	 size;

	size = 3 + 2 + 2 * len + 2;
	if (size <= sizeof stack)
		msg = stack;
	else
		msg = xmalloc(size);
	p = msg;
	*p++ = TEL_IAC;
	*p++ = TEL_SB;
	*p++ = opt;
	p += telnet_escape(p, &subcmd, 1);
	p += telnet_escape(p, payload, len);
	*p++ = TEL_IAC;
	*p++ = TEL_SE;
	if (t->ops->output != NULL)
		t->ops->output(t->arg, msg, p - msg);
	if (msg != stack)
		free(msg);
}

/* Send IAC cmd (BRK, AYT, NOP, ...). */
void
telnet_send_command(struct telnet *t, u_char cmd)
{
	u_char	msg[2];

	msg[0] = TEL_IAC;
	msg[1] = cmd;
	if (t->ops->output != NULL)
		t->ops->output(t->arg, msg, sizeof msg);
}
