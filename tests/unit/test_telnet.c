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
 * Unit tests for node/telnet.c.  Every callback of the codec is recorded
 * as one line of text in a log ("opt him BINARY on", "sb 232 00...",
 * "out fffe25", "data 2021"; consecutive data runs are merged), so that a
 * test can assert the events in order and compare the logs of the same
 * input fed in different splits.  The ESXi side of a real capture
 * (tests/data/capture-esxi.txt) is decoded as a server would.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vspcd.h"

#define SERVER_US	(TELNET_MASK(TOI_BINARY) | TELNET_MASK(TOI_SGA) | \
			    TELNET_MASK(TOI_ECHO))
#define SERVER_HIM	(TELNET_MASK(TOI_BINARY) | TELNET_MASK(TOI_SGA) | \
			    TELNET_MASK(TOI_VMWARE))

struct rec {
	struct telnet	 t;
	char		*log;
	size_t		 loglen;
	size_t		 logsize;
	int		 in_data;
	u_char		 out[65536];
	size_t		 outlen;
	u_int		 outcalls;
	const u_char	*in;		/* Buffer being fed. */
	size_t		 inlen;
	int		 stop_on_data;
};

static void
rec_add(struct rec *r, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(r->log + r->loglen, r->logsize - r->loglen, fmt,
		    ap);
		va_end(ap);
		assert_true(n >= 0);
		if ((size_t)n < r->logsize - r->loglen)
			break;
		r->logsize = r->logsize * 2 + n;
		r->log = realloc(r->log, r->logsize);
		assert_non_null(r->log);
	}
	r->loglen += n;
}

static void
rec_hex(struct rec *r, const u_char *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++)
		rec_add(r, "%02x", p[i]);
}

static void
rec_event(struct rec *r)
{
	if (r->in_data) {
		rec_add(r, "\n");
		r->in_data = 0;
	}
}

static void
cb_data(void *arg, const u_char *p, size_t len)
{
	struct rec	*r = arg;

	/* Runs are never empty and always point into the input. */
	assert_true(len > 0);
	assert_true(p >= r->in && p + len <= r->in + r->inlen);
	if (!r->in_data) {
		rec_add(r, "data ");
		r->in_data = 1;
	}
	rec_hex(r, p, len);
	if (r->stop_on_data)
		r->t.stop = 1;
}

static void
cb_sb(void *arg, u_char opt, const u_char *p, size_t len)
{
	struct rec	*r = arg;

	assert_true(len <= r->t.sb_max);
	rec_event(r);
	rec_add(r, "sb %u ", opt);
	rec_hex(r, p, len);
	rec_add(r, "\n");
}

static void
cb_option(void *arg, u_char opt, int him, int on)
{
	struct rec	*r = arg;

	rec_event(r);
	rec_add(r, "opt %s %s %s\n", him ? "him" : "us", telnet_optname(opt),
	    on ? "on" : "off");
}

static void
cb_command(void *arg, u_char cmd)
{
	struct rec	*r = arg;

	rec_event(r);
	rec_add(r, "cmd %02x\n", cmd);
}

static void
cb_output(void *arg, const u_char *p, size_t len)
{
	struct rec	*r = arg;

	assert_true(r->outlen + len <= sizeof r->out);
	memcpy(r->out + r->outlen, p, len);
	r->outlen += len;
	r->outcalls++;
	rec_event(r);
	rec_add(r, "out ");
	rec_hex(r, p, len);
	rec_add(r, "\n");
}

static const struct telnet_ops rec_ops = {
	cb_data, cb_sb, cb_option, cb_command, cb_output
};

static struct rec *
rec_new(u_int us, u_int him, size_t sb_max)
{
	struct rec	*r;

	r = calloc(1, sizeof *r);
	assert_non_null(r);
	r->logsize = 256;
	r->log = calloc(1, r->logsize);
	assert_non_null(r->log);
	telnet_init(&r->t, &rec_ops, r, us, him, sb_max);
	return (r);
}

/* A server: accepts BINARY/SGA/ECHO on its side, BINARY/SGA/232 on ESXi's. */
static struct rec *
rec_server(void)
{
	return (rec_new(SERVER_US, SERVER_HIM, 0));
}

/* Forget what was logged and output so far. */
static void
rec_clear(struct rec *r)
{
	r->loglen = 0;
	r->log[0] = '\0';
	r->in_data = 0;
	r->outlen = 0;
	r->outcalls = 0;
}

static void
rec_free(struct rec *r)
{
	telnet_free(&r->t);
	free(r->log);
	free(r);
}

static int
rec_feed(struct rec *r, const u_char *p, size_t len)
{
	int	rv;

	r->in = p;
	r->inlen = len;
	rv = telnet_input(&r->t, p, len);
	return (rv);
}

/* Feed in chunks of at most step bytes (each chunk its own buffer). */
static int
rec_feed_steps(struct rec *r, const u_char *p, size_t len, size_t step)
{
	u_char	*copy;
	size_t	 off, n;

	for (off = 0; off < len; off += n) {
		n = len - off < step ? len - off : step;
		copy = malloc(n);
		assert_non_null(copy);
		memcpy(copy, p + off, n);
		if (rec_feed(r, copy, n) == -1) {
			free(copy);
			return (-1);
		}
		free(copy);
	}
	return (0);
}

static const char *
rec_log(struct rec *r)
{
	rec_event(r);
	return (r->log);
}

static void
feed_hex(struct rec *r, const char *hex)
{
	u_char	buf[1024];
	size_t	n = 0;
	u_int	v;

	while (hex[0] != '\0') {
		if (hex[0] == ' ') {
			hex++;
			continue;
		}
		assert_int_equal(sscanf(hex, "%2x", &v), 1);
		assert_true(n < sizeof buf);
		buf[n++] = v;
		hex += 2;
	}
	assert_int_equal(rec_feed(r, buf, n), 0);
}

/* Every string of the NULL-terminated list appears in log, in order. */
static void
expect_seq(const char *log, ...)
{
	va_list		 ap;
	const char	*s, *p = log;

	va_start(ap, log);
	while ((s = va_arg(ap, const char *)) != NULL) {
		if ((p = strstr(p, s)) == NULL) {
			print_error("missing \"%s\" in log:\n%s\n", s, log);
			fail();
		}
		p += strlen(s);
	}
	va_end(ap);
}

static void
expect_out(struct rec *r, const char *hex)
{
	char	buf[65536 * 2 + 1];
	size_t	i;

	for (i = 0; i < r->outlen; i++)
		snprintf(buf + 2 * i, 3, "%02x", r->out[i]);
	buf[2 * r->outlen] = '\0';
	assert_string_equal(buf, hex);
}

/* The capture: per connection, the ESXi payloads concatenated. */
#define NCONN	4
struct capture {
	u_char	*esxi[NCONN];
	size_t	 esxilen[NCONN];
	u_int	 npayloads[NCONN];
	size_t	 bounds[NCONN][256];	/* Where each payload starts. */
};
static struct capture capture;

static int
capture_load(void **state)
{
	const char	*top;
	char		 path[4096], line[4096], dir[16], hex[4000];
	double		 t;
	FILE		*f;
	u_int		 c, v;
	size_t		 i;

	if ((top = getenv("TOP_SRCDIR")) == NULL)
		top = ".";
	snprintf(path, sizeof path, "%s/tests/data/capture-esxi.txt", top);
	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "%s: cannot open\n", path);
		return (-1);
	}
	while (fgets(line, sizeof line, f) != NULL) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "C%u %15s %lf %3999s", &c, dir, &t, hex) != 4)
			continue;
		if (strcmp(dir, "esxi") != 0 || c < 1 || c > NCONN)
			continue;
		c--;
		capture.bounds[c][capture.npayloads[c]++] =
		    capture.esxilen[c];
		capture.esxi[c] = realloc(capture.esxi[c],
		    capture.esxilen[c] + strlen(hex) / 2);
		for (i = 0; hex[2 * i] != '\0'; i++) {
			if (sscanf(hex + 2 * i, "%2x", &v) != 1)
				return (-1);
			capture.esxi[c][capture.esxilen[c]++] = v;
		}
	}
	fclose(f);
	for (c = 0; c < NCONN; c++) {
		if (capture.npayloads[c] == 0)
			return (-1);
	}
	return (0);
}

static int
capture_free(void **state)
{
	u_int	c;

	for (c = 0; c < NCONN; c++)
		free(capture.esxi[c]);
	return (0);
}

/* What a proactive server sends at accept. */
static void
server_offer(struct rec *r)
{
	assert_int_equal(telnet_request(&r->t, TELOPT_BINARY, 0, 1), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_SGA, 0, 1), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_ECHO, 0, 1), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_BINARY, 1, 1), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_SGA, 1, 1), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_VMWARE, 1, 1), 0);
}

static char *
decode_conn(u_int c, size_t step)
{
	struct rec	*r;
	char		*log;
	u_int		 i;
	size_t		 off, end;

	r = rec_server();
	server_offer(r);
	rec_clear(r);
	if (step == 0) {
		/* One telnet_input per TCP segment, as captured. */
		for (i = 0; i < capture.npayloads[c]; i++) {
			off = capture.bounds[c][i];
			end = i + 1 < capture.npayloads[c] ?
			    capture.bounds[c][i + 1] : capture.esxilen[c];
			assert_int_equal(rec_feed_steps(r,
			    capture.esxi[c] + off, end - off, end - off), 0);
		}
	} else
		assert_int_equal(rec_feed_steps(r, capture.esxi[c],
		    capture.esxilen[c], step), 0);
	assert_null(r->t.error);
	/* Idle after the capture: no subnegotiation buffer held. */
	assert_null(r->t.sb_buf);
	log = strdup(rec_log(r));
	rec_free(r);
	return (log);
}

static void
test_server_offer(void **state)
{
	struct rec	*r = rec_server();

	server_offer(r);
	expect_out(r, "fffb00fffb03fffb01fffd00fffd03fffde8");
	/* Nothing is enabled until ESXi answers. */
	assert_false(telnet_enabled(&r->t, TELOPT_BINARY, 0));
	assert_false(telnet_enabled(&r->t, TELOPT_VMWARE, 1));
	/* Asking again while the request is pending sends nothing. */
	rec_clear(r);
	server_offer(r);
	assert_int_equal(r->outlen, 0);
	rec_free(r);
}

#define KS1	"sb 232 000001020328292b2c2d2e304647495051545556575253\n"
#define UUIDSB	"sb 232 503031203233203435203637203839206162206364" \
		"2065662d6665206463206261203938203030203030203030203030\n"
#define VMNAME	"sb 232 52766d2d3030303030\n"
#define NEGO	"out fffe25\n", "opt us BINARY on\n", "opt us SGA on\n", \
		"opt us ECHO on\n", "opt him BINARY on\n", "opt him SGA on\n", \
		"opt him VMWARE-TELNET-EXT on\n"

static void
test_capture_c1(void **state)
{
	char	*log = decode_conn(0, 0);

	expect_seq(log, NEGO, KS1,
	    "sb 232 4653765350432e7079\n",	/* DO-PROXY 'S' "vSPC.py" */
	    UUIDSB, VMNAME,
	    "out fffe2c\n",			/* WILL COM-PORT refused. */
	    "data 202122232425262728292a2b2c2d2e2f3031323334353637",
	    "sb 232 2844da87f1\n",		/* VMOTION-BEGIN. */
	    (char *)NULL);
	/* Nothing else was answered: both refusals and nothing more. */
	assert_non_null(strstr(log, "out fffe25\nopt us BINARY on\n"));
	assert_null(strstr(strstr(log, "out fffe2c") + 1, "out "));
	free(log);
}

static void
test_capture_c2(void **state)
{
	char	*log = decode_conn(1, 0);

	expect_seq(log, NEGO, KS1,
	    "sb 232 2c44da87f13ce64dab\n",	/* VMOTION-PEER seq||secret */
	    "out fffe2c\n", UUIDSB, VMNAME,
	    "sb 232 2e44da87f1\n",		/* VMOTION-COMPLETE */
	    "data 39",
	    "sb 232 2898d98db4\n",		/* BEGIN of vMotion #2 */
	    (char *)NULL);
	free(log);
}

static void
test_capture_c3(void **state)
{
	char	*log = decode_conn(2, 0);

	expect_seq(log, NEGO, KS1,
	    "sb 232 2c98d98db464b407da\n", "out fffe2c\n", UUIDSB, VMNAME,
	    "sb 232 2e98d98db4\n",
	    "sb 232 28cd526755\n",		/* Refused with NOTNOW. */
	    "sb 232 2861ed26a2\n",
	    "sb 232 30\n",			/* ABORT, no payload. */
	    "sb 232 287619ffe9\n",		/* BEGIN, ff ff unescaped. */
	    (char *)NULL);
	free(log);
}

static void
test_capture_c4(void **state)
{
	char	*log = decode_conn(3, 0);

	expect_seq(log, NEGO, KS1,
	    "sb 232 2c7619ffe95521998c\n",	/* PEER with a 0xff. */
	    "out fffe2c\n", UUIDSB, VMNAME,
	    "sb 232 2e7619ffe9\n",
	    (char *)NULL);
	free(log);
}

/* The same events whatever the TCP segmentation. */
static void
test_capture_splits(void **state)
{
	struct rec	*r;
	char		*ref, *log;
	u_int		 c;
	size_t		 cut, len;
	u_char		*p;

	for (c = 0; c < NCONN; c++) {
		ref = decode_conn(c, 0);
		log = decode_conn(c, capture.esxilen[c]);
		assert_string_equal(log, ref);
		free(log);
		log = decode_conn(c, 1);
		assert_string_equal(log, ref);
		free(log);
		log = decode_conn(c, 7);
		assert_string_equal(log, ref);
		free(log);

		p = capture.esxi[c];
		len = capture.esxilen[c];
		for (cut = 1; cut < len; cut++) {
			r = rec_server();
			server_offer(r);
			rec_clear(r);
			assert_int_equal(rec_feed_steps(r, p, cut, cut), 0);
			assert_int_equal(rec_feed_steps(r, p + cut, len - cut,
			    len - cut), 0);
			assert_string_equal(rec_log(r), ref);
			rec_free(r);
		}
		free(ref);
	}
}

/* An already agreed option is not answered again. */
static void
test_no_reanswer(void **state)
{
	struct rec	*r = rec_server();

	feed_hex(r, "fffb00");
	assert_string_equal(rec_log(r), "out fffd00\nopt him BINARY on\n");
	assert_true(telnet_enabled(&r->t, TELOPT_BINARY, 1));
	rec_clear(r);
	feed_hex(r, "fffb00 fffb00");
	assert_string_equal(rec_log(r), "");

	feed_hex(r, "fffd03");
	assert_string_equal(rec_log(r), "out fffb03\nopt us SGA on\n");
	rec_clear(r);
	feed_hex(r, "fffd03");
	assert_string_equal(rec_log(r), "");
	/* Asking for what is on already sends nothing. */
	assert_int_equal(telnet_request(&r->t, TELOPT_SGA, 0, 1), 0);
	assert_int_equal(r->outlen, 0);
	rec_free(r);
}

/* Both sides ask at once: each request is the other's answer. */
static void
test_no_loop(void **state)
{
	struct rec	*r = rec_server();

	server_offer(r);
	rec_clear(r);
	/* The peer's own WILL BINARY and DO BINARY cross ours. */
	feed_hex(r, "fffb00 fffd00 fffb00 fffd00");
	assert_string_equal(rec_log(r),
	    "opt him BINARY on\nopt us BINARY on\n");
	/* A second round of offers changes nothing either way. */
	rec_clear(r);
	server_offer(r);
	feed_hex(r, "fffb03 fffd03 fffb03 fffd03");
	assert_string_equal(rec_log(r), "opt him SGA on\nopt us SGA on\n");
	rec_free(r);
}

static void
test_wont_dont(void **state)
{
	struct rec	*r = rec_server();

	/* WONT/DONT for something off: ignored. */
	feed_hex(r, "fffc00 fffe00 fffc03 fffe01");
	assert_string_equal(rec_log(r), "");

	/* Enabled, then disabled by the peer: acknowledged once. */
	feed_hex(r, "fffb00 fffd01");
	rec_clear(r);
	feed_hex(r, "fffc00");
	assert_string_equal(rec_log(r), "out fffe00\nopt him BINARY off\n");
	feed_hex(r, "fffe01");
	expect_seq(rec_log(r), "out fffc01\nopt us ECHO off\n", (char *)NULL);
	rec_clear(r);
	feed_hex(r, "fffc00 fffe01");
	assert_string_equal(rec_log(r), "");
	assert_false(telnet_enabled(&r->t, TELOPT_BINARY, 1));
	assert_false(telnet_enabled(&r->t, TELOPT_ECHO, 0));

	/* Our request refused: no answer, stays off. */
	assert_int_equal(telnet_request(&r->t, TELOPT_SGA, 1, 1), 0);
	rec_clear(r);
	feed_hex(r, "fffc03");
	assert_string_equal(rec_log(r), "");
	assert_false(telnet_enabled(&r->t, TELOPT_SGA, 1));
	/* The peer changing its mind later is accepted normally. */
	feed_hex(r, "fffb03");
	assert_string_equal(rec_log(r), "out fffd03\nopt him SGA on\n");

	/* We disable: DONT sent, the peer's WONT is not answered. */
	rec_clear(r);
	assert_int_equal(telnet_request(&r->t, TELOPT_SGA, 1, 0), 0);
	assert_string_equal(rec_log(r), "out fffe03\nopt him SGA off\n");
	rec_clear(r);
	feed_hex(r, "fffc03");
	assert_string_equal(rec_log(r), "");
	rec_free(r);
}

/* Enable then disable before the answer (RFC 1143 queue). */
static void
test_queue_opposite(void **state)
{
	struct rec	*r = rec_server();

	assert_int_equal(telnet_request(&r->t, TELOPT_BINARY, 1, 1), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_BINARY, 1, 0), 0);
	assert_string_equal(rec_log(r), "out fffd00\n");
	rec_clear(r);
	/* The WILL is agreed to then undone at once. */
	feed_hex(r, "fffb00");
	assert_string_equal(rec_log(r), "out fffe00\n");
	rec_clear(r);
	feed_hex(r, "fffc00");
	assert_string_equal(rec_log(r), "");
	assert_false(telnet_enabled(&r->t, TELOPT_BINARY, 1));
	rec_free(r);
}

/* Requests made while a disable is pending (RFC 1143 WANTNO rows). */
static void
test_queue_wantno(void **state)
{
	struct rec	*r = rec_server();

	/* Re-enable queued behind a disable: DO goes out after the WONT. */
	feed_hex(r, "fffb00");
	rec_clear(r);
	assert_int_equal(telnet_request(&r->t, TELOPT_BINARY, 1, 0), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_BINARY, 1, 1), 0);
	assert_string_equal(rec_log(r), "out fffe00\nopt him BINARY off\n");
	rec_clear(r);
	feed_hex(r, "fffc00");
	assert_string_equal(rec_log(r), "out fffd00\n");
	rec_clear(r);
	feed_hex(r, "fffb00");
	assert_string_equal(rec_log(r), "opt him BINARY on\n");

	/* Queued, unqueued, then the peer answers WILL: stays off. */
	assert_int_equal(telnet_request(&r->t, TELOPT_BINARY, 1, 0), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_BINARY, 1, 1), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_BINARY, 1, 0), 0);
	rec_clear(r);
	feed_hex(r, "fffb00");
	assert_string_equal(rec_log(r), "");
	assert_false(telnet_enabled(&r->t, TELOPT_BINARY, 1));

	/* WANTNO with a queued enable answered by WILL: on, no reply. */
	feed_hex(r, "fffd03");
	assert_int_equal(telnet_request(&r->t, TELOPT_SGA, 0, 0), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_SGA, 0, 1), 0);
	rec_clear(r);
	feed_hex(r, "fffd03");
	assert_string_equal(rec_log(r), "opt us SGA on\n");

	/* Enable, disable, enable before any answer: one WILL only. */
	assert_int_equal(telnet_request(&r->t, TELOPT_ECHO, 0, 1), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_ECHO, 0, 0), 0);
	assert_int_equal(telnet_request(&r->t, TELOPT_ECHO, 0, 1), 0);
	feed_hex(r, "fffd01");
	assert_string_equal(rec_log(r),
	    "opt us SGA on\nout fffb01\nopt us ECHO on\n");
	rec_free(r);
}

static void
test_refuse(void **state)
{
	struct rec	*r = rec_server();

	/* ESXi's AUTH and COM-PORT offers. */
	feed_hex(r, "fffb25");
	expect_out(r, "fffe25");
	rec_clear(r);
	feed_hex(r, "fffb2c");
	expect_out(r, "fffe2c");
	rec_clear(r);
	/* In the table but not accepted on our side. */
	feed_hex(r, "fffd25 fffde8");
	expect_out(r, "fffc25fffce8");
	rec_clear(r);
	/* Unknown options: refused every time, WONT/DONT ignored. */
	feed_hex(r, "fffb18 fffd1f fffc18 fffe1f fffb18");
	expect_out(r, "fffe18fffc1ffffe18");
	assert_string_equal(rec_log(r),
	    "out fffe18\nout fffc1f\nout fffe18\n");
	assert_int_equal(telnet_request(&r->t, 0x18, 1, 1), -1);
	assert_int_equal(telnet_request(&r->t, 0xff, 0, 1), -1);
	assert_false(telnet_enabled(&r->t, 0x18, 1));
	assert_int_equal(r->outlen, 9);
	rec_free(r);
}

/* In-band data is passed through untouched but for IAC IAC. */
static void
test_data_clean(void **state)
{
	struct rec	*r = rec_server();
	u_char		 in[] = { 0x00, 0x11, 0xff, 0xff, 0x0d, 0x00,
			    0x0d, 0x0a, 0x13, 0x41, 0xff, 0xff };

	assert_int_equal(rec_feed(r, in, sizeof in), 0);
	assert_string_equal(rec_log(r), "data 0011ff0d000d0a1341ff\n");
	rec_clear(r);
	feed_hex(r, "313233 ff34 353637");	/* Byte after IAC eaten. */
	assert_string_equal(rec_log(r), "data 313233353637\n");
	rec_clear(r);
	feed_hex(r, "41 fff1 42 fff3 43 fff6 fff9 ff00");
	assert_string_equal(rec_log(r),
	    "data 4142\ncmd f3\ndata 43\ncmd f6\ncmd f9\n");
	rec_free(r);
}

static const u_char *ff_seen;

static void
ff_data(void *arg, const u_char *p, size_t len)
{
	ff_seen = p;
	assert_int_equal(len, 1);
}

/* IAC IAC is handed over as a pointer to the second 0xff: no copy. */
static void
test_data_pointer(void **state)
{
	static const struct telnet_ops ops = { ff_data, NULL, NULL, NULL,
	    NULL };
	struct telnet	t;
	u_char		in[] = { 0xff, 0xff };

	telnet_init(&t, &ops, NULL, 0, 0, 0);
	assert_int_equal(telnet_input(&t, in, 2), 0);
	assert_ptr_equal(ff_seen, in + 1);
	/* Split between the two bytes. */
	ff_seen = NULL;
	assert_int_equal(telnet_input(&t, in, 1), 0);
	assert_null(ff_seen);
	assert_int_equal(telnet_input(&t, in + 1, 1), 0);
	assert_ptr_equal(ff_seen, in + 1);
	telnet_free(&t);
}

static void
test_sb(void **state)
{
	struct rec	*r = rec_new(0, 0, 16);

	/* Exactly at the cap, escapes counted once. */
	feed_hex(r, "fffae8 ffff ffff 0102030405060708090a0b0c0d0e fff0");
	assert_string_equal(rec_log(r),
	    "sb 232 ffff0102030405060708090a0b0c0d0e\n");
	assert_null(r->t.sb_buf);
	rec_clear(r);
	/* No payload at all (option only) is legal. */
	feed_hex(r, "fffa2c fff0");
	assert_string_equal(rec_log(r), "sb 44 \n");
	rec_clear(r);
	/* Data around, commands and negotiation after. */
	feed_hex(r, "41 fffae951fff0 42 fff3");
	assert_string_equal(rec_log(r),
	    "data 41\nsb 233 51\ndata 42\ncmd f3\n");
	rec_free(r);
}

static void
expect_error(const char *hex, size_t sb_max, const char *what)
{
	struct rec	*r = rec_new(0, 0, sb_max);
	u_char		 buf[256];
	size_t		 n = 0;
	u_int		 v;

	for (; *hex != '\0'; hex += 2) {
		assert_int_equal(sscanf(hex, "%2x", &v), 1);
		buf[n++] = v;
	}
	assert_int_equal(rec_feed(r, buf, n), -1);
	assert_non_null(r->t.error);
	assert_non_null(strstr(r->t.error, what));
	assert_null(r->t.sb_buf);
	/* Errors are sticky. */
	assert_int_equal(rec_feed(r, (const u_char *)"x", 1), -1);
	rec_free(r);

	/* Byte by byte: same failure. */
	r = rec_new(0, 0, sb_max);
	assert_int_equal(rec_feed_steps(r, buf, n, 1), -1);
	assert_non_null(strstr(r->t.error, what));
	rec_free(r);
}

static void
test_errors(void **state)
{
	expect_error("fffae8000102030405060708090a0b0c0d0e0f10fff0", 16,
	    "longer");
	expect_error("fffae8ffffffffffffffffffffffffffffffffffffffff"
	    "ffffffffffffffffffffffffffffffffff", 16, "longer");
	expect_error("fffae801fffbfff0", 0, "inside subnegotiation");
	expect_error("fffae801fff1fff0", 0, "inside subnegotiation");
	expect_error("4142fff0", 0, "outside subnegotiation");
	expect_error("fffafff0", 0, "empty subnegotiation");
}

/* A large SB up to the default cap, and one byte over it. */
static void
test_sb_default_cap(void **state)
{
	struct rec	*r = rec_server();
	u_char		*buf;
	size_t		 n = TELNET_SB_MAX_DEFAULT;

	buf = malloc(n + 6);
	assert_non_null(buf);
	memcpy(buf, "\xff\xfa\xe8", 3);
	memset(buf + 3, 'a', n);
	memcpy(buf + 3 + n, "\xff\xf0", 2);
	assert_int_equal(rec_feed(r, buf, n + 5), 0);
	assert_int_equal(rec_feed_steps(r, buf, n + 5, 100), 0);
	rec_free(r);

	r = rec_server();
	memset(buf + 3, 'a', n + 1);
	memcpy(buf + 4 + n, "\xff\xf0", 2);
	assert_int_equal(rec_feed(r, buf, n + 6), -1);
	rec_free(r);
	free(buf);
}

static void
test_stop(void **state)
{
	struct rec	*r = rec_server();

	r->stop_on_data = 1;
	feed_hex(r, "41 fffb00");
	/* The WILL after the data was not processed. */
	assert_string_equal(rec_log(r), "data 41\n");
	assert_int_equal(r->t.stop, 1);
	r->stop_on_data = 0;
	feed_hex(r, "fffb00");
	assert_string_equal(rec_log(r),
	    "data 41\nout fffd00\nopt him BINARY on\n");
	rec_free(r);
}

static void
test_send_sb(void **state)
{
	struct rec	*r = rec_server();
	u_char		 seq[] = { 0x76, 0x19, 0xff, 0xe9, 0xf0 };
	u_char		*big;
	size_t		 i;

	telnet_send_sb(&r->t, TELOPT_VMWARE, VMW_VMOTION_GOAHEAD, seq,
	    sizeof seq);
	expect_out(r, "fffae8297619ffffe9f0fff0");
	assert_int_equal(r->outcalls, 1);
	rec_clear(r);
	telnet_send_sb(&r->t, TELOPT_VMWARE, VMW_GET_VM_VC_UUID, NULL, 0);
	expect_out(r, "fffae851fff0");
	rec_clear(r);
	telnet_send_command(&r->t, TEL_BRK);
	expect_out(r, "fff3");

	/* Large (heap) message: one output call, decodes to the original. */
	big = malloc(3000);
	assert_non_null(big);
	for (i = 0; i < 3000; i++)
		big[i] = i % 3 == 0 ? 0xff : i % 200;
	rec_clear(r);
	telnet_send_sb(&r->t, TELOPT_VMWARE, VMW_VM_NAME, big, 3000);
	assert_int_equal(r->outcalls, 1);
	assert_int_equal(r->outlen, 3 + 1 + 4000 + 2);
	{
		u_char	*copy = malloc(r->outlen);
		size_t	 len = r->outlen;
		char	*expect, *p;

		memcpy(copy, r->out, len);
		rec_clear(r);
		assert_int_equal(rec_feed(r, copy, len), 0);
		expect = malloc(16 + 2 * 3001 + 2);
		p = expect + sprintf(expect, "sb 232 52");
		for (i = 0; i < 3000; i++)
			p += sprintf(p, "%02x", big[i]);
		strcpy(p, "\n");
		assert_string_equal(rec_log(r), expect);
		free(expect);
		free(copy);
	}
	free(big);
	rec_free(r);
}

static void
test_escape(void **state)
{
	u_char		 src[] = { 0x41, 0xff, 0x00, 0xff, 0xff, 0x42 };
	u_char		 dst[12], out[12];
	u_char		 expect[] = { 0x41, 0xff, 0xff, 0x00, 0xff, 0xff,
			    0xff, 0xff, 0x42 };
	struct evbuffer	*evb;
	size_t		 n;

	n = telnet_escape(dst, src, sizeof src);
	assert_int_equal(n, sizeof expect);
	assert_memory_equal(dst, expect, n);
	assert_int_equal(telnet_escape(dst, src, 0), 0);

	evb = evbuffer_new();
	assert_non_null(evb);
	telnet_escape_add(evb, src, sizeof src);
	telnet_escape_add(evb, src, 1);
	telnet_escape_add(evb, src + 1, 1);
	assert_int_equal(evbuffer_get_length(evb), sizeof expect + 3);
	assert_int_equal(evbuffer_remove(evb, out, sizeof out),
	    sizeof expect + 3);
	assert_memory_equal(out, expect, sizeof expect);
	assert_memory_equal(out + sizeof expect, "\x41\xff\xff", 3);
	evbuffer_free(evb);
}

static void
test_names(void **state)
{
	assert_string_equal(telnet_optname(TELOPT_BINARY), "BINARY");
	assert_string_equal(telnet_optname(TELOPT_ECHO), "ECHO");
	assert_string_equal(telnet_optname(TELOPT_SGA), "SGA");
	assert_string_equal(telnet_optname(TELOPT_AUTH), "AUTHENTICATION");
	assert_string_equal(telnet_optname(TELOPT_COMPORT), "COM-PORT");
	assert_string_equal(telnet_optname(TELOPT_VMWARE),
	    "VMWARE-TELNET-EXT");
	assert_string_equal(telnet_optname(TELOPT_VSPCADMIN),
	    "VMWARE-VSPC-ADMIN");
	assert_string_equal(telnet_optname(24), "unknown");
	assert_int_equal(telnet_optidx(TELOPT_VMWARE), TOI_VMWARE);
	assert_int_equal(telnet_optidx(TELOPT_SGA), TOI_SGA);
	assert_int_equal(telnet_optidx(2), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_offer),
		cmocka_unit_test(test_capture_c1),
		cmocka_unit_test(test_capture_c2),
		cmocka_unit_test(test_capture_c3),
		cmocka_unit_test(test_capture_c4),
		cmocka_unit_test(test_capture_splits),
		cmocka_unit_test(test_no_reanswer),
		cmocka_unit_test(test_no_loop),
		cmocka_unit_test(test_wont_dont),
		cmocka_unit_test(test_queue_opposite),
		cmocka_unit_test(test_queue_wantno),
		cmocka_unit_test(test_refuse),
		cmocka_unit_test(test_data_clean),
		cmocka_unit_test(test_data_pointer),
		cmocka_unit_test(test_sb),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_sb_default_cap),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_send_sb),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_names),
	};

	return (cmocka_run_group_tests_name("telnet", tests, capture_load,
	    capture_free));
}
