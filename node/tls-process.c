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
 * The TLS process and the main process's channel to it.
 *
 * The relays run in a process of their own (tls_process_start), forked
 * at start: the main process passes it each accepted or connected
 * socket (SCM_RIGHTS) and gets the plain end back once the handshake
 * succeeded.  OpenSSL's parsing of untrusted bytes is then kept out of
 * the process that holds every console, and a hot upgrade of the main
 * process hands over its end of the channel to the TLS process like any
 * other descriptor: TLS sessions, whose state OpenSSL cannot export,
 * never have to move.  The TLS process runs the binary it was started
 * with until the node is restarted.  Without the process (unit tests)
 * the relays run on the caller's loop.
 *
 * The main process keeps the credentials' file names (tls_conf) and
 * sends them again to a TLS process started anew; the TLS process
 * reports its statistics every five seconds and with each message.
 */

#include <sys/socket.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <signal.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "vspcd.h"
#include "tls-int.h"

int			 tls_chan = -1;		/* Channel to the TLS process. */
static int		 tls_is_child;
char			*tls_conf[TLS_SLOT_MAX][3];	/* Main: cert, key, CA. */
static pid_t		 tls_pid;
static struct event	*tls_chan_ev;
static void		 (*tls_dispatch)(int, const struct sockaddr *, u_int,
			     const char *);
static void		 (*tls_failed)(const struct sockaddr *, u_int);

static int
tls_msg_send(int sock, const struct tlsmsg *m, int fd)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsgbuf;
	ssize_t		 n;

	memset(&msg, 0, sizeof msg);
	iov.iov_base = (void *)m;
	iov.iov_len = sizeof *m;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd != -1) {
		memset(&cmsgbuf, 0, sizeof cmsgbuf);
		msg.msg_control = cmsgbuf.buf;
		msg.msg_controllen = sizeof cmsgbuf.buf;
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	return (n == (ssize_t)sizeof *m ? 0 : -1);
}

/* One message; -1 at end or on error, 0 if none waiting, else 1. */
static int
tls_msg_recv(int sock, struct tlsmsg *m, int *fd)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 4)];
	} cmsgbuf;
	ssize_t		 n;
	int		 got;

	*fd = -1;
	memset(&msg, 0, sizeof msg);
	iov.iov_base = m;
	iov.iov_len = sizeof *m;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof cmsgbuf.buf;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return (0);
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL;
	    cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET ||
		    cm->cmsg_type != SCM_RIGHTS)
			continue;
		memcpy(&got, CMSG_DATA(cm), sizeof got);
		if (*fd == -1)
			*fd = got;
		else
			close(got);
	}
	if (n <= 0 || (size_t)n != sizeof *m || (msg.msg_flags & MSG_TRUNC) ||
	    m->version != TLSMSG_VERSION || m->salen > sizeof m->sa) {
		if (*fd != -1)
			close(*fd);
		*fd = -1;
		return (n == 0 ? -1 : (n == -1 ? -1 : 2));
	}
	m->text[sizeof m->text - 1] = '\0';
	return (1);
}

static void
tls_fill(struct tlsmsg *m, u_int type, enum tls_slot slot,
    const struct sockaddr *sa, socklen_t salen, u_int kind, u_int timeout)
{
	memset(m, 0, sizeof *m);
	m->version = TLSMSG_VERSION;
	m->type = type;
	m->slot = slot;
	m->kind = kind;
	m->timeout = timeout;
	if (sa != NULL) {
		if (salen > sizeof m->sa)
			salen = sizeof m->sa;
		memcpy(m->sa, sa, salen);
		m->salen = salen;
	}
}

/* Main: ask the TLS process to take a socket; the fd is passed on. */
void
tls_ask(u_int type, int fd, enum tls_slot slot, const struct sockaddr *sa,
    socklen_t salen, u_int kind, const char *name, u_int timeout)
{
	struct tlsmsg	m;

	tls_fill(&m, type, slot, sa, salen, kind, timeout);
	snprintf(m.text, sizeof m.text, "%s", name);
	if (tls_msg_send(tls_chan, &m, fd) == -1) {
		log_warn("tls: cannot pass a connection to the TLS process");
		tls_stats.handshake_failed++;
		if (tls_failed != NULL)
			tls_failed(sa, kind);
	}
	close(fd);
}

/*
 * A handshake failed or timed out: the main process releases what it
 * held for the connection (its per-source slot) and counts it.
 */
void
tls_report_failed(const struct sockaddr *sa, socklen_t salen, u_int kind)
{
	struct tlsmsg	m;

	if (tls_is_child) {
		tls_fill(&m, TLSMSG_FAILED, 0, sa, salen, kind, 0);
		m.stats[0] = tls_stats.handshakes;
		m.stats[1] = tls_stats.handshake_failed;
		m.stats[2] = tls_stats.bytes_in;
		m.stats[3] = tls_stats.bytes_out;
		(void)tls_msg_send(tls_chan, &m, -1);
	} else if (tls_failed != NULL)
		tls_failed(sa, kind);
}

static void
tls_send_config(enum tls_slot slot, const char *cert, const char *key,
    const char *ca)
{
	struct tlsmsg	m;
	size_t		 a, b, c;

	tls_fill(&m, TLSMSG_CONFIG, slot, NULL, 0, 0, 0);
	a = strlen(cert);
	b = key != NULL ? strlen(key) : 0;
	c = ca != NULL ? strlen(ca) : 0;
	if (a + b + c + 3 > sizeof m.text) {
		log_warnx("tls: certificate paths too long for the TLS "
		    "process");
		return;
	}
	memcpy(m.text, cert, a);
	if (b)
		memcpy(m.text + a + 1, key, b);
	if (c)
		memcpy(m.text + a + b + 2, ca, c);
	if (tls_msg_send(tls_chan, &m, -1) == -1)
		log_warn("tls: cannot configure the TLS process");
}

/* Main: keep a slot's files and tell the TLS process about them. */
void
tls_remember(enum tls_slot slot, const char *cert, const char *key,
    const char *ca)
{
	const char	*v[3] = { cert, key, ca };
	u_int		 i;

	if (tls_is_child)
		return;
	for (i = 0; i < 3; i++) {
		free(tls_conf[slot][i]);
		tls_conf[slot][i] = xstrdup(v[i] != NULL ? v[i] : "");
	}
	if (tls_chan >= 0)
		tls_send_config(slot, tls_conf[slot][0], tls_conf[slot][1],
		    tls_conf[slot][2]);
}

/* Main: what the TLS process sends back. */
static void
tls_chan_cb(evutil_socket_t sock, short events, void *arg)
{
	struct tlsmsg	 m;
	char		*err = NULL;
	int		 fd, r, i;

	(void)events;
	(void)arg;
	for (i = 0; i < 64; i++) {
		if ((r = tls_msg_recv(sock, &m, &fd)) == 0)
			return;
		if (r == -1) {
			log_warnx("tls: the TLS process went away (its "
			    "connections with it); starting another");
			event_free(tls_chan_ev);
			tls_chan_ev = NULL;
			close(tls_chan);
			tls_chan = -1;
			if (tls_pid > 0)
				(void)waitpid(tls_pid, NULL, WNOHANG);
			if (tls_process_start(&err) == -1) {
				log_warnx("%s", err);
				free(err);
			}
			return;
		}
		if (r == 2)
			continue;
		tls_stats.handshakes = m.stats[0];
		tls_stats.handshake_failed = m.stats[1];
		tls_stats.bytes_in = m.stats[2];
		tls_stats.bytes_out = m.stats[3];
		if (m.type == TLSMSG_CLOSES) {
			memcpy(tls_stats.closes, m.text,
			    sizeof tls_stats.closes);
			continue;
		}
		if (m.type == TLSMSG_FAILED && tls_failed != NULL &&
		    m.salen >= sizeof(sa_family_t)) {
			tls_failed((struct sockaddr *)m.sa, m.kind);
			continue;
		}
		if (m.type != TLSMSG_DONE || fd == -1) {
			if (fd != -1)
				close(fd);
			continue;
		}
		if (tls_dispatch == NULL) {
			close(fd);
			continue;
		}
		evutil_make_socket_nonblocking(fd);
		tls_dispatch(fd, (struct sockaddr *)m.sa, m.kind, m.text);
	}
}

/* Main: where handshaken connections go (by the kind they were given). */
void
tls_set_dispatch(void (*dispatch)(int, const struct sockaddr *, u_int,
    const char *))
{
	tls_dispatch = dispatch;
}

/* Main: told when a handshake failed (sa and kind as given). */
void
tls_set_failed(void (*failed)(const struct sockaddr *, u_int))
{
	tls_failed = failed;
}

/* Child: a handshake succeeded; send the plain end to the main process. */
static void
tls_child_done(int fd, const struct sockaddr *sa, u_int kind,
    const char *name)
{
	struct tlsmsg	 m;

	/* sa is the relay's own sockaddr_storage. */
	tls_fill(&m, TLSMSG_DONE, 0, sa, sizeof(struct sockaddr_storage),
	    kind, 0);
	snprintf(m.text, sizeof m.text, "%s", name);
	m.stats[0] = tls_stats.handshakes;
	m.stats[1] = tls_stats.handshake_failed;
	m.stats[2] = tls_stats.bytes_in;
	m.stats[3] = tls_stats.bytes_out;
	if (tls_msg_send(tls_chan, &m, fd) == -1)
		log_warn("tls: cannot pass a connection back");
	close(fd);
}

/* Child: an established connection ended; the counts go to the main. */
void
tls_report_closes(void)
{
	struct tlsmsg	m;

	if (!tls_is_child)
		return;
	tls_fill(&m, TLSMSG_CLOSES, 0, NULL, 0, 0, 0);
	m.stats[0] = tls_stats.handshakes;
	m.stats[1] = tls_stats.handshake_failed;
	m.stats[2] = tls_stats.bytes_in;
	m.stats[3] = tls_stats.bytes_out;
	memcpy(m.text, tls_stats.closes, sizeof tls_stats.closes);
	(void)tls_msg_send(tls_chan, &m, -1);
}

static void
tls_child_stats_cb(evutil_socket_t fd, short events, void *arg)
{
	struct tlsmsg	m;

	(void)fd;
	(void)events;
	(void)arg;
	tls_fill(&m, TLSMSG_STATS, 0, NULL, 0, 0, 0);
	m.stats[0] = tls_stats.handshakes;
	m.stats[1] = tls_stats.handshake_failed;
	m.stats[2] = tls_stats.bytes_in;
	m.stats[3] = tls_stats.bytes_out;
	(void)tls_msg_send(tls_chan, &m, -1);
}

/* Child: requests from the main process (whichever binary it runs). */
static void
tls_child_cb(evutil_socket_t sock, short events, void *arg)
{
	struct tlsmsg	 m;
	char		*err = NULL, *key, *ca;
	int		 fd, r;

	(void)events;
	(void)arg;
	while ((r = tls_msg_recv(sock, &m, &fd)) != 0) {
		if (r == -1) {
			/* The main process is gone without a successor. */
			log_debug("tls: main process gone; exiting");
			event_base_loopbreak(tls_base);
			return;
		}
		if (r == 2) {
			log_warnx("tls: bad message from the main process");
			continue;
		}
		switch (m.type) {
		case TLSMSG_CONFIG:
			key = m.text + strlen(m.text) + 1;
			ca = key + strlen(key) + 1;
			if (m.slot >= TLS_SLOT_MAX)
				break;
			if (tls_configure(m.slot, m.text, key, ca, &err) ==
			    -1) {
				log_warnx("tls: %s", err);
				free(err);
				err = NULL;
			}
			break;
		case TLSMSG_ACCEPT:
		case TLSMSG_CONNECT:
			if (fd == -1 || m.slot >= TLS_SLOT_MAX ||
			    m.salen < sizeof(sa_family_t)) {
				if (fd != -1)
					close(fd);
				break;
			}
			tls_start(fd, m.type == TLSMSG_ACCEPT ?
			    tls_creds[m.slot].ctx : tls_creds[TLS_PEER].cctx,
			    m.type == TLSMSG_ACCEPT, (struct sockaddr *)m.sa,
			    m.salen, m.kind, m.text, m.timeout,
			    tls_child_done);
			fd = -1;
			break;
		default:
			break;
		}
		if (fd != -1)
			close(fd);
	}
}

static void __attribute__((__noreturn__))
tls_child_main(int chan)
{
	struct event	*ev, *stats;
	struct timeval	 tv = { 5, 0 };
	int		 fd;

	/* Nothing of the main process's but the channel and stderr. */
	if (chan != 3) {
		if (dup2(chan, 3) == -1)
			_exit(1);
		chan = 3;
	}
	if (close_range(4, ~0U, 0) == -1) {
		for (fd = 4; fd < 65536; fd++)
			(void)close(fd);
	}
	fcntl(chan, F_SETFD, FD_CLOEXEC);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	tls_chan = chan;
	tls_is_child = 1;
	if ((tls_base = event_base_new()) == NULL)
		_exit(1);
	ev = event_new(tls_base, chan, EV_READ | EV_PERSIST, tls_child_cb,
	    NULL);
	event_add(ev, NULL);
	stats = event_new(tls_base, -1, EV_PERSIST, tls_child_stats_cb, NULL);
	event_add(stats, &tv);
	log_info("tls: TLS process %ld started", (long)getpid());
	event_base_dispatch(tls_base);
	_exit(0);
}

/*
 * Main: fork the TLS process (once; again only if it died) and send it
 * the credentials configured so far.  The caller then configures with
 * tls_configure() as before: it is passed on.
 */
int
tls_process_start(char **err)
{
	int	 sp[2];
	pid_t	 pid;

	if (tls_chan >= 0)
		return (0);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		xasprintf(err, "tls: socketpair: %s", strerror(errno));
		return (-1);
	}
	switch ((pid = fork())) {
	case -1:
		xasprintf(err, "tls: fork: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		return (-1);
	case 0:
		close(sp[0]);
		tls_child_main(sp[1]);
	default:
		break;
	}
	close(sp[1]);
	tls_adopt_channel(sp[0], pid);
	return (0);
}

/* Main: send the credentials configured so far (a new TLS process). */
static void
tls_resend_config(void)
{
	u_int	slot;

	for (slot = 0; slot < TLS_SLOT_MAX; slot++) {
		if (tls_conf[slot][0] != NULL && *tls_conf[slot][0] != '\0')
			tls_send_config(slot, tls_conf[slot][0],
			    tls_conf[slot][1], tls_conf[slot][2]);
	}
}

/* Main: the channel's descriptor, to hand to a successor (-1: none). */
int
tls_channel(void)
{
	return (tls_chan >= 0 ? tls_chan : -1);
}

/*
 * Main: stop (1) or resume (0) taking handshaken connections while a hot
 * upgrade quiesces; they wait in the channel for the successor.
 */
void
tls_handoff_pause(int on)
{
	if (tls_chan_ev == NULL)
		return;
	if (on)
		event_del(tls_chan_ev);
	else
		event_add(tls_chan_ev, NULL);
}

/* Main: the TLS process's pid, to hand to a successor (0: none). */
pid_t
tls_process_pid(void)
{
	return (tls_pid);
}

/* Main: use an inherited channel (hot upgrade) or a new one. */
void
tls_adopt_channel(int fd, pid_t pid)
{
	tls_chan = fd;
	tls_pid = pid;
	evutil_make_socket_nonblocking(fd);
	tls_chan_ev = event_new(server_base, fd, EV_READ | EV_PERSIST,
	    tls_chan_cb, NULL);
	event_add(tls_chan_ev, NULL);
	tls_resend_config();
}

/* Main: stop using the TLS process (shutting down: it follows). */
void
tls_process_stop(void)
{
	if (tls_chan_ev != NULL)
		event_free(tls_chan_ev);
	tls_chan_ev = NULL;
	if (tls_chan >= 0)
		close(tls_chan);
	tls_chan = -1;
	if (tls_pid > 0) {
		kill(tls_pid, SIGTERM);
		(void)waitpid(tls_pid, NULL, WNOHANG);
	}
	tls_pid = 0;
}
