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
 * Fuzz target for the control socket (node/control.c): requests framed
 * as vspcctl sends them (4-byte length, a vspc.ctl.Request), decoded and
 * dispatched on a node that has two bound VMs (web01, web02) and one
 * person attached to web01, so that every command has something to act
 * on.  Input layout:
 *
 *	byte 0		bit 0: connect to the read-only socket;
 *			bit 1: raw (records are written as they are,
 *			framing included) instead of framed
 *	rest		records: a length byte, then that many bytes
 *
 * The control socket is a Unix socket in a private directory.  Every
 * frame the node answers with must decode as a Reply.  Inputs holding an
 * UPGRADE request are skipped (it would start another vspcd); RELOAD is
 * run, but made to fail before any listener is touched (an override the
 * reloaded configuration cannot take).
 */

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "proto/control.pb-c.h"
#include "fuzz.h"

#define FUZZ_MAX	65536
#define FUZZ_FRAME_MAX	(1024 * 1024)	/* control.c's CTL_FRAME_MAX. */

static char	 fuzz_sock[64];
static char	*fuzz_reload_fails[] = { (char *)"fuzz.reload=refused" };

static void
fuzz_cleanup(void)
{
	char	*p;

	control_shutdown();
	if ((p = strrchr(fuzz_sock, '/')) != NULL) {
		*p = '\0';
		rmdir(fuzz_sock);
	}
}

static void
fuzz_init(void)
{
	static char	 dir[] = "/tmp/fuzz_control.XXXXXX";
	static char	 opt[160];
	const char	*conf[3];
	char		*err;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(fuzz_sock, sizeof fuzz_sock, "%s/ctl.sock", dir);
	snprintf(opt, sizeof opt, "control.socket=%s", fuzz_sock);
	conf[0] = "console.history=4k";
	conf[1] = "console.client_buffer=4k";
	conf[2] = opt;
	fnode_init(conf, 3);
	if (control_init(server_conf, &err) != 0) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	server_set_overrides(fuzz_reload_fails, 1);
	atexit(fuzz_cleanup);
}

/*
 * The byte stream the node will read, as the records make it, and where
 * each record ends in it (the stream is written record by record).
 */
static u_char *
fuzz_stream(const uint8_t *p, size_t len, int raw, size_t *outlen,
    size_t **ends, size_t *nends)
{
	u_char	*s;
	size_t	 n, off = 0;

	s = xmalloc(len * 5 + 1);
	*ends = xcalloc(len + 1, sizeof **ends);
	*nends = 0;
	while (len > 0) {
		n = p[0];
		p++;
		len--;
		if (n > len)
			n = len;
		if (!raw) {
			s[off++] = n >> 24;
			s[off++] = n >> 16;
			s[off++] = n >> 8;
			s[off++] = n;
		}
		memcpy(s + off, p, n);
		off += n;
		p += n;
		len -= n;
		(*ends)[(*nends)++] = off;
	}
	*outlen = off;
	return (s);
}

/* Whether the stream holds a request this target must not run. */
static int
fuzz_refused(const u_char *s, size_t len)
{
	Vspc__Ctl__Request	*req;
	size_t			 n;
	int			 bad = 0;

	while (len >= 4 && !bad) {
		n = (size_t)s[0] << 24 | s[1] << 16 | s[2] << 8 | s[3];
		if (n > FUZZ_FRAME_MAX || n > len - 4)
			break;
		req = vspc__ctl__request__unpack(NULL, n, s + 4);
		if (req != NULL) {
			bad = req->command == VSPC__CTL__COMMAND__UPGRADE;
			vspc__ctl__request__free_unpacked(req, NULL);
		}
		s += 4 + n;
		len -= 4 + n;
	}
	return (bad);
}

/* Read the node's answers: every frame must be a Reply. */
static void
fuzz_replies(int fd, struct evbuffer *in)
{
	Vspc__Ctl__Reply	*r;
	u_char			 buf[16384], hdr[4];
	size_t			 n;
	ssize_t			 got;

	while ((got = read(fd, buf, sizeof buf)) > 0)
		evbuffer_add(in, buf, got);
	while (evbuffer_copyout(in, hdr, 4) == 4) {
		n = (size_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
		CHECK(n <= FUZZ_FRAME_MAX);
		if (evbuffer_get_length(in) < 4 + n)
			break;
		evbuffer_drain(in, 4);
		r = vspc__ctl__reply__unpack(NULL, n, evbuffer_pullup(in, n));
		CHECK(r != NULL);
		CHECK(r->version == CTL_PROTOCOL);
		vspc__ctl__reply__free_unpacked(r, NULL);
		evbuffer_drain(in, n);
	}
}

static int
fuzz_connect(int readonly)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s%s", fuzz_sock,
	    readonly ? ".ro" : "");
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(fd != -1);
	CHECK(connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0);
	CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
	return (fd);
}

/* Write all of it, letting the node read when the socket is full. */
static void
fuzz_write(int fd, const u_char *p, size_t n, struct evbuffer *in)
{
	ssize_t	w;
	int	stalled = 0;

	while (n > 0 && stalled < 2) {
		w = write(fd, p, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			fnode_settle();
			fuzz_replies(fd, in);
			stalled++;
			continue;
		}
		stalled = 0;
		p += w;
		n -= w;
	}
}

/* One input: see the layout at the top of this file. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	 ready;
	struct evbuffer	*in;
	u_char		*s;
	size_t		 len, off, *ends, nends, i;
	int		 fd, person;

	if (size < 1 || size > FUZZ_MAX)
		return (0);
	s = fuzz_stream(data + 1, size - 1, data[0] & 2, &len, &ends, &nends);
	if (fuzz_refused(s, len)) {
		free(s);
		free(ends);
		return (0);
	}
	if (!ready) {
		fuzz_init();
		ready = 1;
	}
	fnode_vm("42 0a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8", "web01",
	    "vSPC.py");
	fnode_vm("42 0a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f9", "web02",
	    "vSPC.py");
	person = fnode_open(FNODE_CONSOLE);
	fnode_send(person, "web01\r", 6);
	fnode_settle();

	in = evbuffer_new();
	CHECK(in != NULL);
	fd = fuzz_connect(data[0] & 1);
	fnode_settle();
	for (i = 0, off = 0; i < nends; off = ends[i], i++) {
		fuzz_write(fd, s + off, ends[i] - off, in);
		fnode_settle();
		fuzz_replies(fd, in);
	}
	shutdown(fd, SHUT_WR);
	fnode_settle();
	fuzz_replies(fd, in);
	close(fd);
	fnode_settle();
	evbuffer_free(in);
	free(s);
	free(ends);
	server_set_draining(0);
	fnode_reset();
	return (0);
}
