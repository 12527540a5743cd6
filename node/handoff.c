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
 * Hot upgrade in place: the old process's side and the new one's.
 *
 * Old side (handoff_start): fork and exec the new binary with the same
 * arguments and VSPCD_HANDOFF_FD naming one end of a SOCK_SEQPACKET
 * socketpair.  The new process checks its configuration and says HELLO
 * with the state formats it reads.  The old one then quiesces: it stops
 * reading from VMs, people and control connections and stops accepting,
 * but keeps the store, the peer links and its timers running until
 * nothing is in flight (bounded by HANDOFF_QUIESCE_MS).  Once quiet it
 * writes every module's records into a memfd, sends it and every
 * descriptor (SCM_RIGHTS, in batches), and waits, blocking, for READY:
 * nothing else runs meanwhile, so if the new process fails the old one
 * carries on exactly where it stopped.  On READY it answers the
 * requester, tells systemd the new main PID, sends COMMIT and leaves at
 * once without closing or shutting down anything.
 *
 * New side (handoff_restore_run, from server_start): HELLO, then the
 * state; every module rebuilds its objects from its records in the order
 * they were written (consoles, then connections, then people, then peer
 * links and cluster state).  Events may be added while restoring: the
 * new process's event loop does not run, so nothing is read or written
 * before COMMIT; timers lose only the few milliseconds of the exchange.
 * Any failure before COMMIT makes the new process exit without touching
 * a socket.
 *
 * Invariant: between the freeze and COMMIT neither process reads from
 * or writes to any handed-over socket.
 */

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "proto/handoff.pb-c.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define HANDOFF_FDS_PER_MSG	200
#define HANDOFF_MSG_MAX		4096
#define HANDOFF_HELLO_MS	10000	/* New binary starts and checks. */
#define HANDOFF_QUIESCE_MS	5000	/* Wait for in-flight work. */
#define HANDOFF_CHECK_MS	5
#define HANDOFF_READY_MS	30000	/* New process rebuilds. */
#define HANDOFF_STATE_MS	60000	/* New side: wait for the state. */

struct handoff {
	struct evbuffer	*buf;		/* Saving: the records. */
	int		*fds;
	u_int		 nfds;
	u_int		 afds;
	int		 failed;
};

/* The hand-over this (old) process is running, if any. */
struct handoff_job {
	pid_t		 pid;
	int		 sock;
	char		*binary;
	struct event	*ev;
	struct event	*timer;
	int		 quiescing;
	uint64_t	 deadline;	/* Monotonic microseconds. */
	void		(*done)(void *, int, const char *);
	void		*arg;
};

static struct handoff_job	*handoff_job;
static char			**handoff_argv;
static char			*handoff_exe;
static int			 handoff_sock = -1;	/* New side. */
static int			 handoff_started;	/* New side. */

/* The modules taking part, in the order their records are written. */
static const struct handoff_module *handoff_modules[HANDOFF_REC_MAX];
static u_int			 handoff_nmodules;

static void	handoff_fail(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));

/* Remember how this process was started (the new one is started so). */
void
handoff_init(int argc, char **argv)
{
	char		 path[PATH_MAX];
	const char	*env;
	ssize_t		 n;
	int		 i;

	handoff_argv = xcalloc(argc + 1, sizeof *handoff_argv);
	for (i = 0; i < argc; i++)
		handoff_argv[i] = xstrdup(argv[i]);
	if ((n = readlink("/proc/self/exe", path, sizeof path - 1)) > 0) {
		path[n] = '\0';
		handoff_exe = xstrdup(path);
	} else if (argc > 0)
		handoff_exe = xstrdup(argv[0]);
	if ((env = getenv("VSPCD_HANDOFF_FD")) != NULL) {
		handoff_sock = atoi(env);
		handoff_started = 1;
		unsetenv("VSPCD_HANDOFF_FD");
		if (handoff_sock < 3 || fcntl(handoff_sock, F_GETFD) == -1) {
			handoff_sock = -1;
			handoff_started = 0;
		} else
			(void)fcntl(handoff_sock, F_SETFD, FD_CLOEXEC);
	}
}

/* Free what handoff_init kept (at exit). */
void
handoff_free(void)
{
	u_int	i;

	if (handoff_argv != NULL) {
		for (i = 0; handoff_argv[i] != NULL; i++)
			free(handoff_argv[i]);
		free(handoff_argv);
	}
	handoff_argv = NULL;
	free(handoff_exe);
	handoff_exe = NULL;
}

/*
 * Add a module to the hand-over.  Records are written, and so read, in
 * the order of registration; registering a module again does nothing.
 */
void
handoff_register(const struct handoff_module *hm)
{
	u_int	i;

	for (i = 0; i < handoff_nmodules; i++) {
		if (handoff_modules[i] == hm)
			return;
		if (handoff_modules[i]->rec == hm->rec)
			fatalx("%s: %s and %s both read record type %u",
			    __func__, handoff_modules[i]->name, hm->name,
			    hm->rec);
	}
	if (handoff_nmodules == HANDOFF_REC_MAX)
		fatalx("%s: too many modules", __func__);
	handoff_modules[handoff_nmodules++] = hm;
}

/* Whether a module takes part in this hand-over. */
static int
handoff_module_enabled(const struct handoff_module *hm)
{
	return (hm->enabled == NULL || hm->enabled());
}

/* Started by a hand-over. */
int
handoff_restoring(void)
{
	return (handoff_started);
}

/* The old side is quiescing or handing over. */
int
handoff_in_progress(void)
{
	return (handoff_job != NULL && handoff_job->quiescing);
}

/* Saving: pass fd to the new process; returns its index in the set. */
int
handoff_add_fd(struct handoff *h, int fd)
{
	if (fd < 0)
		return (-1);
	if (h->nfds == h->afds) {
		h->afds = h->afds == 0 ? 64 : h->afds * 2;
		h->fds = xreallocarray(h->fds, h->afds, sizeof *h->fds);
	}
	h->fds[h->nfds] = fd;
	return (h->nfds++);
}

/* Saving: append a record of packed bytes. */
void
handoff_add(struct handoff *h, enum handoff_rec type, const uint8_t *data,
    size_t len)
{
	Vspc__Handoff__Record	 r = VSPC__HANDOFF__RECORD__INIT;
	uint8_t			*buf;
	uint32_t		 n;
	size_t			 size;

	r.type = type;
	r.data.data = (uint8_t *)data;
	r.data.len = len;
	size = vspc__handoff__record__get_packed_size(&r);
	if (size > UINT32_MAX) {
		h->failed = 1;
		return;
	}
	buf = xmalloc(size);
	vspc__handoff__record__pack(&r, buf);
	n = htonl((uint32_t)size);
	evbuffer_add(h->buf, &n, sizeof n);
	evbuffer_add(h->buf, buf, size);
	free(buf);
}

/* Saving: pack a message and append it as a record. */
void
handoff_add_msg(struct handoff *h, enum handoff_rec type,
    const struct ProtobufCMessage *m)
{
	uint8_t	*buf;
	size_t	 len;

	len = protobuf_c_message_get_packed_size(m);
	buf = xmalloc(len == 0 ? 1 : len);
	protobuf_c_message_pack(m, buf);
	handoff_add(h, type, buf, len);
	free(buf);
}

/* Restoring: take the descriptor of an index (once); -1 if invalid. */
int
handoff_take_fd(struct handoff *h, int idx)
{
	int	fd;

	if (idx < 0 || (u_int)idx >= h->nfds)
		return (-1);
	fd = h->fds[idx];
	h->fds[idx] = -1;
	return (fd);
}

/* Copy an evbuffer's bytes into a protobuf bytes field (caller frees). */
void
handoff_evbuffer_bytes(struct evbuffer *b, ProtobufCBinaryData *out)
{
	struct evbuffer_iovec	*v;
	size_t			 len = b != NULL ? evbuffer_get_length(b) : 0;
	size_t			 k = 0;
	int			 n, i;

	out->len = len;
	out->data = xmalloc(len == 0 ? 1 : len);
	if (len == 0)
		return;
	/*
	 * Not evbuffer_copyout: it refuses a buffer whose front is frozen,
	 * as a bufferevent's output always is, and leaves out->data as it
	 * was.  evbuffer_peek reads any buffer.
	 */
	n = evbuffer_peek(b, -1, NULL, NULL, 0);
	v = xcalloc(n + 1, sizeof *v);
	n = evbuffer_peek(b, -1, NULL, v, n);
	for (i = 0; i < n && k < len; i++) {
		if (v[i].iov_len > len - k)
			v[i].iov_len = len - k;
		memcpy(out->data + k, v[i].iov_base, v[i].iov_len);
		k += v[i].iov_len;
	}
	free(v);
	if (k != len)
		fatalx("%s: %zu of %zu bytes", __func__, k, len);
}

static int
handoff_send_msg(int sock, const Vspc__Handoff__Msg *m, const int *fds,
    u_int nfds)
{
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	uint8_t		 buf[HANDOFF_MSG_MAX];
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) *
				    HANDOFF_FDS_PER_MSG)];
	} cmsgbuf;
	size_t		 len;
	ssize_t		 n;

	len = vspc__handoff__msg__get_packed_size(m);
	if (len > sizeof buf || nfds > HANDOFF_FDS_PER_MSG) {
		errno = EMSGSIZE;
		return (-1);
	}
	vspc__handoff__msg__pack(m, buf);
	memset(&mh, 0, sizeof mh);
	iov.iov_base = buf;
	iov.iov_len = len == 0 ? 1 : len;
	if (len == 0)
		buf[0] = 0;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (nfds > 0) {
		memset(&cmsgbuf, 0, sizeof cmsgbuf);
		mh.msg_control = cmsgbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR);
	return (n == -1 ? -1 : 0);
}

static int
handoff_send_type(int sock, Vspc__Handoff__Msg__Type type, const char *error)
{
	Vspc__Handoff__Msg	m = VSPC__HANDOFF__MSG__INIT;

	m.type = type;
	m.pid = getpid();
	m.version = (char *)VSPCD_VERSION;
	if (error != NULL)
		m.error = (char *)error;
	return (handoff_send_msg(sock, &m, NULL, 0));
}

/*
 * Receive one message, waiting at most ms milliseconds (-1: forever).
 * Descriptors that came with it are appended to fds.  NULL with *why
 * set on EOF, timeout or error.
 */
static Vspc__Handoff__Msg *
handoff_recv_msg(int sock, int ms, int **fds, u_int *nfds, const char **why)
{
	struct pollfd	 pfd;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	uint8_t		 buf[HANDOFF_MSG_MAX];
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) *
				    HANDOFF_FDS_PER_MSG)];
	} cmsgbuf;
	Vspc__Handoff__Msg *m;
	ssize_t		 n;
	u_int		 i, k;
	int		 r, *p;

	pfd.fd = sock;
	pfd.events = POLLIN;
	do {
		r = poll(&pfd, 1, ms);
	} while (r == -1 && errno == EINTR);
	if (r == 0) {
		*why = "timed out";
		return (NULL);
	}
	if (r == -1) {
		*why = strerror(errno);
		return (NULL);
	}
	memset(&mh, 0, sizeof mh);
	iov.iov_base = buf;
	iov.iov_len = sizeof buf;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cmsgbuf.buf;
	mh.msg_controllen = sizeof cmsgbuf.buf;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n == -1 && errno == EINTR);
	if (n == -1) {
		*why = strerror(errno);
		return (NULL);
	}
	if (n == 0) {
		*why = "exited";
		return (NULL);
	}
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET ||
		    cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		p = (int *)CMSG_DATA(cm);
		for (i = 0; i < k; i++) {
			if (fds == NULL) {
				close(p[i]);
				continue;
			}
			*fds = xreallocarray(*fds, *nfds + 1, sizeof **fds);
			(*fds)[(*nfds)++] = p[i];
		}
	}
	if (mh.msg_flags & (MSG_TRUNC|MSG_CTRUNC)) {
		*why = "message truncated";
		return (NULL);
	}
	if ((m = vspc__handoff__msg__unpack(NULL, n, buf)) == NULL) {
		*why = "malformed message";
		return (NULL);
	}
	return (m);
}

/* Old side. */

static void
handoff_pause(int on)
{
	const struct handoff_module	*hm;
	u_int				 i;

	for (i = 0; i < handoff_nmodules; i++) {
		hm = handoff_modules[i];
		if (hm->pause != NULL && handoff_module_enabled(hm))
			hm->pause(on);
	}
}

static void
handoff_job_free(int kill_child)
{
	struct handoff_job	*j = handoff_job;
	int			 status;

	if (j == NULL)
		return;
	if (j->quiescing) {
		j->quiescing = 0;
		core_quiescing = 0;
		handoff_pause(0);
	}
	if (j->ev != NULL)
		event_free(j->ev);
	if (j->timer != NULL)
		event_free(j->timer);
	if (j->sock != -1)
		close(j->sock);
	if (j->pid > 0) {
		if (kill_child)
			kill(j->pid, SIGKILL);
		/* It exits at once on EOF; do not leave a zombie. */
		(void)waitpid(j->pid, &status, kill_child ? 0 : WNOHANG);
	}
	free(j->binary);
	free(j);
	handoff_job = NULL;
}

static void
handoff_fail(const char *fmt, ...)
{
	struct handoff_job	*j = handoff_job;
	va_list			 ap;
	char			*msg, *full;
	void			(*done)(void *, int, const char *);
	void			*arg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	xasprintf(&full, "upgrade to %s failed: %s; still serving",
	    j != NULL ? j->binary : "?", msg);
	log_warnx("%s", full);
	done = j != NULL ? j->done : NULL;
	arg = j != NULL ? j->arg : NULL;
	handoff_job_free(1);
	if (done != NULL)
		done(arg, 0, full);
	free(full);
	free(msg);
}

/* Why the node cannot be frozen now; 0 when it can. */
static int
handoff_busy(char *why, size_t len)
{
	const struct handoff_module	*hm;
	u_int				 i;

	for (i = 0; i < handoff_nmodules; i++) {
		hm = handoff_modules[i];
		if (hm->busy != NULL && handoff_module_enabled(hm) &&
		    hm->busy(why, len))
			return (1);
	}
	return (0);
}

static int
handoff_save_all(struct handoff *h)
{
	const struct handoff_module	*hm;
	u_int				 i;

	for (i = 0; i < handoff_nmodules; i++) {
		hm = handoff_modules[i];
		if (hm->save != NULL && handoff_module_enabled(hm))
			hm->save(h);
	}
	return (h->failed ? -1 : 0);
}

/* Write the records into a memfd and send it with every descriptor. */
static int
handoff_send_state(int sock, struct handoff *h, const char **why)
{
	Vspc__Handoff__Msg	 m = VSPC__HANDOFF__MSG__INIT;
	size_t			 len = evbuffer_get_length(h->buf);
	u_int			 i, k;
	int			 mfd, n;

	if ((mfd = memfd_create("vspcd-handoff", MFD_CLOEXEC)) == -1) {
		*why = "memfd_create failed";
		return (-1);
	}
	while (evbuffer_get_length(h->buf) != 0) {
		n = evbuffer_write(h->buf, mfd);
		if (n == -1 && errno != EINTR) {
			*why = "cannot write the state";
			close(mfd);
			return (-1);
		}
	}
	m.type = VSPC__HANDOFF__MSG__TYPE__STATE;
	m.nfds = h->nfds;
	m.format = HANDOFF_VERSION;
	m.pid = getpid();
	m.version = (char *)VSPCD_VERSION;
	log_debug("upgrade: %zu bytes of state, %u descriptors", len,
	    h->nfds);
	if (handoff_send_msg(sock, &m, &mfd, 1) == -1) {
		*why = "cannot send the state";
		close(mfd);
		return (-1);
	}
	close(mfd);
	for (i = 0; i < h->nfds; i += k) {
		k = h->nfds - i;
		if (k > HANDOFF_FDS_PER_MSG)
			k = HANDOFF_FDS_PER_MSG;
		vspc__handoff__msg__init(&m);
		m.type = VSPC__HANDOFF__MSG__TYPE__FDS;
		m.nfds = k;
		if (handoff_send_msg(sock, &m, h->fds + i, k) == -1) {
			*why = "cannot send descriptors";
			return (-1);
		}
	}
	return (0);
}

/* Quiet: freeze, hand everything over, and leave if the new one is ready. */
static void
handoff_freeze(void)
{
	struct handoff_job	*j = handoff_job;
	struct handoff		 h;
	Vspc__Handoff__Msg	*m;
	const char		*why = NULL;
	char			*msg;
	pid_t			 pid;

	memset(&h, 0, sizeof h);
	h.buf = evbuffer_new();
	if (handoff_save_all(&h) == -1)
		why = "the state does not fit";
	else
		(void)handoff_send_state(j->sock, &h, &why);
	evbuffer_free(h.buf);
	free(h.fds);
	if (why != NULL) {
		handoff_fail("%s", why);
		return;
	}

	/* Nothing runs until READY: a failure leaves everything as it was. */
	m = handoff_recv_msg(j->sock, HANDOFF_READY_MS, NULL, NULL, &why);
	if (m == NULL) {
		handoff_fail("new process %s before it was ready", why);
		return;
	}
	if (m->type != VSPC__HANDOFF__MSG__TYPE__READY) {
		handoff_fail("new process: %s", m->type ==
		    VSPC__HANDOFF__MSG__TYPE__FAIL && m->error != NULL ?
		    m->error : "unexpected message");
		vspc__handoff__msg__free_unpacked(m, NULL);
		return;
	}
	pid = m->pid != 0 ? (pid_t)m->pid : j->pid;
	xasprintf(&msg, "upgraded: pid %d, version %s", (int)pid,
	    m->version != NULL && *m->version != '\0' ? m->version : "?");
	vspc__handoff__msg__free_unpacked(m, NULL);
	log_info("%s; this process (%d) leaves", msg, (int)getpid());
	if (j->done != NULL)
		j->done(j->arg, 1, msg);
	free(msg);
#ifdef HAVE_SYSTEMD
	sd_notifyf(0, "MAINPID=%d", (int)pid);
#endif
	if (handoff_send_type(j->sock, VSPC__HANDOFF__MSG__TYPE__COMMIT,
	    NULL) == -1) {
		/*
		 * The new process holds everything and waits; without COMMIT
		 * it exits.  Nothing here was touched: carry on.
		 */
		handoff_fail("cannot send COMMIT");
		return;
	}
	/* No goodbye: the sockets are the new process's now. */
	_exit(0);
}

static void
handoff_check_cb(evutil_socket_t fd, short events, void *arg)
{
	struct handoff_job	*j = handoff_job;
	struct timeval		 tv = { 0, HANDOFF_CHECK_MS * 1000 };
	char			 why[256];

	if (j == NULL)
		return;
	if (!j->quiescing) {
		handoff_fail("the new binary did not start within %d seconds",
		    HANDOFF_HELLO_MS / 1000);
		return;
	}
	if (handoff_busy(why, sizeof why)) {
		if (server_monotime_us() >= j->deadline) {
			handoff_fail("busy: %s", why);
			return;
		}
		evtimer_add(j->timer, &tv);
		return;
	}
	handoff_freeze();
}

static void
handoff_hello_cb(evutil_socket_t fd, short events, void *arg)
{
	struct handoff_job	*j = handoff_job;
	struct timeval		 tv = { 0, 0 };
	Vspc__Handoff__Msg	*m;
	const char		*why;

	if (j == NULL)
		return;
	if ((m = handoff_recv_msg(j->sock, 0, NULL, NULL, &why)) == NULL) {
		if (strcmp(why, "exited") == 0)
			handoff_fail("the new binary exited before it was "
			    "ready (see its messages in the log)");
		else
			handoff_fail("new process: %s", why);
		return;
	}
	if (m->type == VSPC__HANDOFF__MSG__TYPE__FAIL) {
		handoff_fail("new process: %s", m->error != NULL ? m->error :
		    "failed");
		vspc__handoff__msg__free_unpacked(m, NULL);
		return;
	}
	if (m->type != VSPC__HANDOFF__MSG__TYPE__HELLO) {
		handoff_fail("new process: unexpected message");
		vspc__handoff__msg__free_unpacked(m, NULL);
		return;
	}
	if (HANDOFF_VERSION < m->min || HANDOFF_VERSION > m->max) {
		char	err[256];

		snprintf(err, sizeof err, "new binary (version %s) reads "
		    "hand-over formats %u-%u, this node writes %u",
		    m->version != NULL ? m->version : "?", m->min, m->max,
		    HANDOFF_VERSION);
		vspc__handoff__msg__free_unpacked(m, NULL);
		(void)handoff_send_type(j->sock,
		    VSPC__HANDOFF__MSG__TYPE__FAIL, err);
		handoff_fail("%s", err);
		return;
	}
	log_info("upgrade: new process %u (version %s) is up; quiescing",
	    m->pid, m->version != NULL ? m->version : "?");
	vspc__handoff__msg__free_unpacked(m, NULL);
	event_del(j->ev);
	evtimer_del(j->timer);
	j->quiescing = 1;
	core_quiescing = 1;
	j->deadline = server_monotime_us() + HANDOFF_QUIESCE_MS * 1000ULL;
	handoff_pause(1);
	/* Let what was read this turn finish first. */
	evtimer_add(j->timer, &tv);
}

/*
 * Start a hot upgrade to binary (NULL or "": the one this process was
 * started from).  done(arg, ok, message) is called once: on failure
 * (this process carries on) or just before this process leaves.
 */
void
handoff_start(const char *binary, void (*done)(void *, int, const char *),
    void *arg)
{
	struct handoff_job	*j;
	struct timeval		 tv = { HANDOFF_HELLO_MS / 1000, 0 };
	char			 fdtext[16], *msg;
	int			 sv[2];
	pid_t			 pid;

	if (handoff_job != NULL) {
		if (done != NULL)
			done(arg, 0, "an upgrade is already in progress");
		return;
	}
	if (handoff_restoring() && handoff_sock != -1) {
		if (done != NULL)
			done(arg, 0, "this process is still starting");
		return;
	}
	if (binary == NULL || *binary == '\0')
		binary = handoff_exe;
	if (binary == NULL || handoff_argv == NULL) {
		if (done != NULL)
			done(arg, 0, "upgrade: the binary is not known");
		return;
	}
	if (access(binary, X_OK) == -1) {
		xasprintf(&msg, "upgrade to %s failed: %s; still serving",
		    binary, strerror(errno));
		log_warnx("%s", msg);
		if (done != NULL)
			done(arg, 0, msg);
		free(msg);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET|SOCK_CLOEXEC, 0, sv) == -1) {
		xasprintf(&msg, "upgrade failed: socketpair: %s; still "
		    "serving", strerror(errno));
		log_warnx("%s", msg);
		if (done != NULL)
			done(arg, 0, msg);
		free(msg);
		return;
	}
	switch (pid = fork()) {
	case -1:
		xasprintf(&msg, "upgrade failed: fork: %s; still serving",
		    strerror(errno));
		log_warnx("%s", msg);
		close(sv[0]);
		close(sv[1]);
		if (done != NULL)
			done(arg, 0, msg);
		free(msg);
		return;
	case 0:
		/* Only the socketpair's end crosses exec; the rest is sent. */
		(void)fcntl(sv[1], F_SETFD, 0);
		snprintf(fdtext, sizeof fdtext, "%d", sv[1]);
		setenv("VSPCD_HANDOFF_FD", fdtext, 1);
		execv(binary, handoff_argv);
		_exit(127);
	default:
		break;
	}
	close(sv[1]);
	j = xcalloc(1, sizeof *j);
	j->pid = pid;
	j->sock = sv[0];
	j->binary = xstrdup(binary);
	j->done = done;
	j->arg = arg;
	j->ev = event_new(server_base, j->sock, EV_READ|EV_PERSIST,
	    handoff_hello_cb, NULL);
	j->timer = evtimer_new(server_base, handoff_check_cb, NULL);
	event_add(j->ev, NULL);
	evtimer_add(j->timer, &tv);
	handoff_job = j;
	log_info("upgrade: started %s (pid %d)", binary, (int)pid);
}

/* The requester went away: keep going, but tell no one. */
void
handoff_forget(void *arg)
{
	if (handoff_job != NULL && handoff_job->arg == arg) {
		handoff_job->done = NULL;
		handoff_job->arg = NULL;
	}
}

/* New side. */

/* The configuration is bad: tell the old process why, and exit. */
void
handoff_fail_early(const char *why)
{
	if (handoff_sock == -1)
		return;
	(void)handoff_send_type(handoff_sock, VSPC__HANDOFF__MSG__TYPE__FAIL,
	    why);
	close(handoff_sock);
	handoff_sock = -1;
}

static void __attribute__((__noreturn__))
handoff_abort(const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	log_warnx("upgrade: %s; exiting, the old process keeps serving", msg);
	handoff_fail_early(msg);
	free(msg);
	/* Nothing of the old process's may be touched: no cleanup. */
	_exit(1);
}

static int
handoff_restore_record(struct handoff *h, uint32_t type, const uint8_t *data,
    size_t len, char **err)
{
	const struct handoff_module	*hm;
	u_int				 i;

	for (i = 0; i < handoff_nmodules; i++) {
		hm = handoff_modules[i];
		if (hm->rec != type)
			continue;
		if (hm->restore == NULL || !handoff_module_enabled(hm))
			return (0);
		return (hm->restore(h, data, len, err));
	}
	/* A newer writer's record this version does not know. */
	log_debug("upgrade: record type %u skipped", type);
	return (0);
}

/*
 * After the commit, in order, except that those marked to go last (the
 * control socket, which may answer the requester over a peer link) wait
 * for the others.
 */
static void
handoff_resume_all(void)
{
	const struct handoff_module	*hm;
	u_int				 i;
	int				 last;

	for (last = 0; last <= 1; last++) {
		for (i = 0; i < handoff_nmodules; i++) {
			hm = handoff_modules[i];
			if (hm->resume == NULL ||
			    ((hm->flags & HANDOFF_RESUME_LAST) != 0) != last)
				continue;
			if (handoff_module_enabled(hm))
				hm->resume();
		}
	}
}

/*
 * Rebuild the node from the old process's state: called by server_start
 * instead of opening listeners.  Returns only once COMMIT came; exits on
 * any failure.
 */
void
handoff_restore_run(void)
{
	struct handoff		 h;
	Vspc__Handoff__Msg	 hello = VSPC__HANDOFF__MSG__INIT, *m;
	Vspc__Handoff__Record	*r;
	struct stat		 sb;
	const char		*why, *env;
	uint8_t			*map;
	char			*err = NULL;
	size_t			 off, size;
	uint32_t		 n;
	u_int			 want, i;
	int			 mfd;

	if (handoff_sock == -1)
		fatalx("upgrade: no hand-over socket");
	memset(&h, 0, sizeof h);

	hello.type = VSPC__HANDOFF__MSG__TYPE__HELLO;
	hello.min = HANDOFF_VERSION_MIN;
	hello.max = HANDOFF_VERSION;
	/* A testing aid: announce another range (vspcd(8)). */
	if ((env = getenv("VSPCD_HANDOFF_TEST_VERSION")) != NULL &&
	    *env != '\0')
		hello.min = hello.max = (uint32_t)strtoul(env, NULL, 10);
	hello.version = (char *)VSPCD_VERSION;
	hello.pid = getpid();
	if (handoff_send_msg(handoff_sock, &hello, NULL, 0) == -1)
		handoff_abort("cannot say hello: %s", strerror(errno));

	if ((m = handoff_recv_msg(handoff_sock, HANDOFF_STATE_MS, &h.fds,
	    &h.nfds, &why)) == NULL)
		handoff_abort("no state from the old process: %s", why);
	if (m->type != VSPC__HANDOFF__MSG__TYPE__STATE || h.nfds != 1) {
		if (m->type == VSPC__HANDOFF__MSG__TYPE__FAIL)
			handoff_abort("refused: %s", m->error);
		handoff_abort("unexpected message from the old process");
	}
	if (m->format < HANDOFF_VERSION_MIN || m->format > HANDOFF_VERSION)
		handoff_abort("state format %u not understood", m->format);
	want = m->nfds;
	vspc__handoff__msg__free_unpacked(m, NULL);
	mfd = h.fds[0];
	h.nfds = 0;
	while (h.nfds < want) {
		if ((m = handoff_recv_msg(handoff_sock, HANDOFF_STATE_MS,
		    &h.fds, &h.nfds, &why)) == NULL)
			handoff_abort("descriptors: %s", why);
		if (m->type != VSPC__HANDOFF__MSG__TYPE__FDS)
			handoff_abort("unexpected message from the old "
			    "process");
		vspc__handoff__msg__free_unpacked(m, NULL);
	}
	if (h.nfds != want)
		handoff_abort("%u descriptors instead of %u", h.nfds, want);

	if (fstat(mfd, &sb) == -1)
		handoff_abort("state: %s", strerror(errno));
	size = sb.st_size;
	map = NULL;
	if (size != 0 && (map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, mfd,
	    0)) == MAP_FAILED)
		handoff_abort("state: mmap: %s", strerror(errno));
	close(mfd);
	log_info("upgrade: restoring %zu bytes of state, %u descriptors",
	    size, want);
	for (off = 0; off < size; off += n) {
		if (size - off < sizeof n)
			handoff_abort("state truncated");
		memcpy(&n, map + off, sizeof n);
		n = ntohl(n);
		off += sizeof n;
		if (n > size - off)
			handoff_abort("state truncated");
		if ((r = vspc__handoff__record__unpack(NULL, n, map + off)) ==
		    NULL)
			handoff_abort("malformed record");
		if (handoff_restore_record(&h, r->type, r->data.data,
		    r->data.len, &err) == -1)
			handoff_abort("record type %u: %s", r->type,
			    err != NULL ? err : "failed");
		vspc__handoff__record__free_unpacked(r, NULL);
	}
	if (map != NULL)
		munmap(map, size);
	/* Descriptors no module took are copies: ours to close. */
	for (i = 0; i < h.nfds; i++) {
		if (h.fds[i] != -1)
			close(h.fds[i]);
	}
	free(h.fds);

	if (handoff_send_type(handoff_sock, VSPC__HANDOFF__MSG__TYPE__READY,
	    NULL) == -1)
		handoff_abort("cannot say ready: %s", strerror(errno));
	if ((m = handoff_recv_msg(handoff_sock, -1, NULL, NULL, &why)) == NULL)
		handoff_abort("no commit: the old process %s", why);
	if (m->type != VSPC__HANDOFF__MSG__TYPE__COMMIT)
		handoff_abort("no commit from the old process");
	vspc__handoff__msg__free_unpacked(m, NULL);
	close(handoff_sock);
	handoff_sock = -1;
	handoff_started = 0;

	handoff_resume_all();
	log_info("upgrade: this process (%d) serves now", (int)getpid());
#ifdef HAVE_SYSTEMD
	sd_notifyf(0, "READY=1\nMAINPID=%d", (int)getpid());
#endif
}
