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
 * vspcctl attach: the terminal in raw mode, keys to the node as INPUT
 * requests, console output from its Replies.  The escape key (^] unless
 * -e) opens a one-line prompt taking the console port's words (d detach,
 * s spy, w write, f force, r [N] replay, b break, who, c continue); the
 * escape key twice sends it to the VM.  The terminal is restored on every
 * way out, signals included.
 *
 * Console output goes to stdout, the node's messages to stderr.  The tool
 * keeps the stream and offset after the last byte it wrote out; when the
 * connection drops it dials again (-c goes through the load balancer to
 * any node) and attaches with resume, so nothing is shown twice and,
 * while the history still holds it, nothing is missed.
 */

#include <err.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "vspcd.h"
#include "vspcctl.h"

#define ATTACH_LINE_MAX	256

static struct termios	attach_saved;
static int		attach_raw;

static void
attach_restore(void)
{
	if (attach_raw) {
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &attach_saved);
		attach_raw = 0;
	}
}

static void
attach_signal(int sig)
{
	attach_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
attach_make_raw(void)
{
	struct termios	t;

	if (!isatty(STDIN_FILENO))
		return;
	if (tcgetattr(STDIN_FILENO, &attach_saved) == -1)
		err(1, "tcgetattr");
	t = attach_saved;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == -1)
		err(1, "tcsetattr");
	attach_raw = 1;
	atexit(attach_restore);
	signal(SIGINT, attach_signal);
	signal(SIGTERM, attach_signal);
	signal(SIGHUP, attach_signal);
	signal(SIGQUIT, attach_signal);
}

static void
attach_out(const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = write(STDOUT_FILENO, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= n;
	}
}

static void
attach_outs(const char *s)
{
	attach_out(s, strlen(s));
}

static int
attach_send(int fd, Vspc__Ctl__Command cmd, const void *data, size_t len,
    const char *arg)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, cmd);
	req.data.data = (uint8_t *)data;
	req.data.len = len;
	req.arg = (char *)arg;
	return (ctl_send(fd, &req));
}

/* What a session needs to resume: the stream and the next offset. */
struct attach_pos {
	int		 have;
	uint64_t	 stream;
	uint64_t	 next;		/* After the last byte shown. */
	int		 announce;	/* Just reconnected: say so. */
};

/* A message from the node (text) on stderr, apart from the output. */
static void
attach_text(struct attach_pos *pos, const char *text)
{
	size_t	len = strlen(text);

	if (pos->announce) {
		pos->announce = 0;
		if (*text != '[' && strchr(text, '\n') == NULL) {
			fprintf(stderr, "\r\n[reconnected; %s]\r\n", text);
			return;
		}
		fprintf(stderr, "\r\n[reconnected]\r\n");
	}
	if (*text == '[' || strchr(text, '\n') != NULL) {
		fprintf(stderr, "%s%s", text, len > 0 && text[len - 1] ==
		    '\n' ? "" : "\r\n");
	} else
		fprintf(stderr, "\r\n[%s]\r\n", text);
}

/*
 * Show one reply.  Returns 1 to go on, 0 when the session ended (and
 * sets *rc).
 */
static int
attach_reply(Vspc__Ctl__Reply *r, struct attach_pos *pos, int *rc)
{
	if (!r->ok) {
		fprintf(stderr, "\r\n[%s]\r\n", r->error);
		*rc = 1;
		return (r->more);
	}
	if (r->data.len > 0) {
		if (pos->announce) {
			pos->announce = 0;
			fprintf(stderr, "\r\n[reconnected; resumed at offset "
			    "%llu]\r\n", (unsigned long long)r->offset);
		}
		attach_out(r->data.data, r->data.len);
		if (r->stream != 0) {
			pos->have = 1;
			pos->stream = r->stream;
			pos->next = r->offset + r->data.len;
		}
	}
	if (r->text != NULL && *r->text != '\0')
		attach_text(pos, r->text);
	if (!r->more)
		*rc = 0;
	return (r->more);
}

/*
 * Ask for the console on fd, resuming where pos says if it can.  Returns
 * the first reply, or NULL if the connection failed.
 */
static Vspc__Ctl__Reply *
attach_request(int fd, const char *vm, uint32_t mode,
    const struct attach_pos *pos)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, VSPC__CTL__COMMAND__ATTACH);
	req.target = (char *)vm;
	req.mode = mode;
	if (pos->have) {
		req.resume = 1;
		req.resume_stream = pos->stream;
		req.resume_offset = pos->next;
	}
	if (ctl_send(fd, &req) == -1)
		return (NULL);
	return (ctl_recv(fd));
}

static uint64_t
attach_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/*
 * The connection was lost: dial again (through the same address, a load
 * balancer picks a node) with backoff from 0.1 s doubling to 2 s, for at
 * most retry seconds.  Returns the new descriptor, attached, or -1.
 */
static int
attach_reconnect(const char *vm, uint32_t mode, struct attach_pos *pos,
    u_int retry)
{
	Vspc__Ctl__Reply	*r;
	uint64_t		 deadline, now;
	u_int			 delay = 100;
	char			*why, *last = NULL;
	int			 fd;

	deadline = attach_now_ms() + (uint64_t)retry * 1000;
	for (;;) {
		now = attach_now_ms();
		if (now >= deadline)
			break;
		if (now + delay > deadline)
			delay = deadline - now;
		poll(NULL, 0, delay);
		delay = delay * 2 > 2000 ? 2000 : delay * 2;
		if ((fd = ctl_dial(&why)) == -1) {
			free(last);
			last = why;
			continue;
		}
		if ((r = attach_request(fd, vm, mode, pos)) == NULL) {
			close(fd);
			continue;
		}
		if (!r->ok) {
			free(last);
			last = xstrdup(r->error);
			vspc__ctl__reply__free_unpacked(r, NULL);
			close(fd);
			continue;
		}
		vspc__ctl__reply__free_unpacked(r, NULL);
		free(last);
		pos->announce = 1;
		return (fd);
	}
	fprintf(stderr, "\r\n[gave up reconnecting after %u seconds%s%s]\r\n",
	    retry, last != NULL ? ": " : "", last != NULL ? last : "");
	free(last);
	return (-1);
}

/*
 * Attach to vm on the connected control socket fd; the exit status.
 * When the connection drops, reconnect for up to retry seconds (0:
 * never) and resume after the last byte shown.
 */
int
ctl_attach(int fd, const char *vm, uint32_t mode, u_int retry)
{
	Vspc__Ctl__Reply	*r;
	struct attach_pos	 pos;
	struct pollfd		 pfd[2];
	char			 line[ATTACH_LINE_MAX], prompt[64];
	u_char			 buf[4096], esc = ctl_escape_key;
	size_t			 llen = 0, start;
	ssize_t			 n, i;
	int			 rc = 1, menu = 0, going = 1, eof = 0;

	memset(&pos, 0, sizeof pos);
	signal(SIGPIPE, SIG_IGN);
	if ((r = attach_request(fd, vm, mode, &pos)) == NULL)
		errx(1, "%s: connection closed", ctl_socket);
	if (!r->ok) {
		warnx("%s", r->error);
		vspc__ctl__reply__free_unpacked(r, NULL);
		return (1);
	}
	fprintf(stderr, "[%s; escape key is ^%c]\r\n", r->text,
	    (esc & 0x1f) + '@');
	vspc__ctl__reply__free_unpacked(r, NULL);
	attach_make_raw();

	while (going) {
		pfd[0].fd = eof ? -1 : STDIN_FILENO;
		pfd[0].events = POLLIN;
		pfd[1].fd = fd;
		pfd[1].events = menu ? 0 : POLLIN;
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents & (POLLIN|POLLHUP|POLLERR)) {
			if ((r = ctl_recv(fd)) == NULL) {
				close(fd);
				if (retry == 0 || eof) {
					fprintf(stderr, "\r\n[connection "
					    "closed]\r\n");
					rc = 1;
					fd = -1;
					break;
				}
				fprintf(stderr, "\r\n[connection lost; "
				    "reconnecting]\r\n");
				menu = 0;
				if ((fd = attach_reconnect(vm, mode, &pos,
				    retry)) == -1) {
					rc = 1;
					break;
				}
				continue;
			}
			going = attach_reply(r, &pos, &rc);
			vspc__ctl__reply__free_unpacked(r, NULL);
			continue;
		}
		if (!(pfd[0].revents & (POLLIN|POLLHUP|POLLERR)))
			continue;
		n = read(STDIN_FILENO, buf, sizeof buf);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* End of input: detach. */
			attach_send(fd, VSPC__CTL__COMMAND__ESCAPE, NULL, 0,
			    "detach");
			menu = 0;
			eof = 1;
			continue;
		}
		for (i = 0; i < n; i++) {
			if (!menu) {
				start = i;
				while (i < n && buf[i] != esc)
					i++;
				if (i > (ssize_t)start)
					attach_send(fd,
					    VSPC__CTL__COMMAND__INPUT,
					    buf + start, i - start, NULL);
				if (i < n) {
					menu = 1;
					llen = 0;
					snprintf(prompt, sizeof prompt,
					    "\r\n[%s]> ", vm);
					attach_outs(prompt);
				}
				continue;
			}
			if (buf[i] == esc && llen == 0) {
				menu = 0;
				attach_outs("\r\n");
				attach_send(fd, VSPC__CTL__COMMAND__INPUT,
				    &esc, 1, NULL);
			} else if (buf[i] == '\r' || buf[i] == '\n') {
				line[llen] = '\0';
				attach_outs("\r\n");
				attach_send(fd, VSPC__CTL__COMMAND__ESCAPE,
				    NULL, 0, line);
				menu = 0;
			} else if (buf[i] == 0x7f || buf[i] == 0x08) {
				if (llen > 0) {
					llen--;
					attach_outs("\b \b");
				}
			} else if (buf[i] == 0x03 || buf[i] == 0x04) {
				attach_outs("\r\n");
				attach_send(fd, VSPC__CTL__COMMAND__ESCAPE,
				    NULL, 0, "continue");
				menu = 0;
			} else if (buf[i] >= 0x20 && llen < sizeof line - 1) {
				line[llen++] = buf[i];
				attach_out(&buf[i], 1);
			}
		}
	}
	attach_restore();
	if (fd != -1)
		close(fd);
	return (rc);
}
