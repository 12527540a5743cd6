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
 * The node harness of the fuzz targets (see fuzz.h): the daemon's own
 * objects on a private event base, with socketpairs for connections.
 *
 * fnode_settle() runs the loop, without blocking, until a turn neither
 * moved bytes out of the node nor changed what the node has left to
 * read (a paused reader keeps its bytes), and reaps dead objects at the
 * end of each turn as server.c does.  What the node sends to an ESXi
 * connection is decoded with the telnet codec so that a vMotion token
 * (GOAHEAD) can be presented again on another connection (PEER).
 *
 * Scripts (fnode_run_script) are records:
 *
 *	op		bits 0-2: slot (modulo the slot count), opened on
 *			first use with the target's kind for it;
 *			bits 3-4: action
 *	action 0	data: a length byte, then that many bytes
 *	action 1	subnegotiation: a length byte, then the payload of
 *			IAC SB opt ... IAC SE (opt 232 toward the VM side,
 *			233 on the compatibility port), escaped
 *	action 2	vMotion: a byte naming the slot whose last GOAHEAD
 *			token is sent as VMOTION-PEER
 *	action 3	the host or person closes its end
 */

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "store.h"
#include "fuzz.h"

#define FNODE_SETTLE_MAX	256

struct fnode_conn {
	enum fnode_kind	 kind;
	int		 fd;		/* Ours; -1 if none. */
	int		 nfd;		/* The node's end. */
	int		 wclosed;	/* We sent EOF. */
	int		 nclosed;	/* The node closed. */
	size_t		 received;
	struct telnet	 tn;		/* Decodes the node's output. */
	u_char		 token[VMOTION_TOKEN_MAX];
	size_t		 tokenlen;
};

static struct fnode_conn	 fnode_conns[FNODE_CONNS];
static int			 fnode_ready;

static void	fnode_tn_data(void *, const u_char *, size_t);
static void	fnode_tn_sb(void *, u_char, const u_char *, size_t);
static void	fnode_tn_option(void *, u_char, int, int);
static void	fnode_tn_command(void *, u_char);
static void	fnode_tn_output(void *, const u_char *, size_t);

static const struct telnet_ops fnode_telnet_ops = {
	fnode_tn_data, fnode_tn_sb, fnode_tn_option, fnode_tn_command,
	fnode_tn_output
};

static void
fnode_tn_data(void *arg, const u_char *buf, size_t len)
{
}

static void
fnode_tn_sb(void *arg, u_char opt, const u_char *buf, size_t len)
{
	struct fnode_conn	*fc = arg;

	if (opt != TELOPT_VMWARE || len == 0 ||
	    buf[0] != VMW_VMOTION_GOAHEAD)
		return;
	CHECK(len - 1 <= VMOTION_TOKEN_MAX);
	memcpy(fc->token, buf + 1, len - 1);
	fc->tokenlen = len - 1;
}

static void
fnode_tn_option(void *arg, u_char opt, int him, int on)
{
}

static void
fnode_tn_command(void *arg, u_char cmd)
{
}

static void
fnode_tn_output(void *arg, const u_char *buf, size_t len)
{
}

/*
 * Set the node up once: configuration defaults plus overrides (-o
 * style), the local store, an event base.  No listener is opened.
 */
void
fnode_init(const char **overrides, u_int n)
{
	char	*err;
	u_int	 i;

	if (fnode_ready)
		return;
	fnode_ready = 1;
	log_init(1, 0);
	if (getenv("FUZZ_VERBOSE") != NULL)
		log_setverbose(1);
	signal(SIGPIPE, SIG_IGN);
	server_conf = config_default();
	CHECK(config_set(server_conf, "log.dir=", &err) == 0);
	CHECK(config_set(server_conf, "control.socket=", &err) == 0);
	CHECK(config_set(server_conf, "node.id=fuzz", &err) == 0);
	for (i = 0; i < n; i++) {
		if (config_set(server_conf, overrides[i], &err) != 0) {
			fprintf(stderr, "%s\n", err);
			abort();
		}
	}
	CHECK(config_check(server_conf, &err) == 0);
	server_now = time(NULL);
	server_base = event_base_new();
	CHECK(server_base != NULL);
	server_store = store_local_create(server_conf->node_id);
	metrics_init();
	logfile_init(server_conf->log_open_files);
	for (i = 0; i < FNODE_CONNS; i++)
		fnode_conns[i].fd = -1;
}

/* Open a connection of a kind; its index, or -1 if all are in use. */
int
fnode_open(enum fnode_kind kind)
{
	struct fnode_conn	*fc;
	struct sockaddr_in	 sin;
	int			 i, sv[2];

	for (i = 0; i < FNODE_CONNS; i++) {
		if (fnode_conns[i].fd == -1)
			break;
	}
	if (i == FNODE_CONNS)
		return (-1);
	fc = &fnode_conns[i];
	memset(fc, 0, sizeof *fc);
	fc->kind = kind;
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
	CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
	fc->fd = sv[0];
	fc->nfd = sv[1];
	telnet_init(&fc->tn, &fnode_telnet_ops, fc, 0, 0,
	    TELNET_SB_MAX_DEFAULT);

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000 + i);
	sin.sin_addr.s_addr = htonl(0x7f000001);
	server_now = time(NULL);
	switch (kind) {
	case FNODE_VM:
		CHECK(vmconn_create(sv[1], (struct sockaddr *)&sin) != NULL);
		break;
	case FNODE_CONSOLE:
		cmdline_accept(sv[1], (struct sockaddr *)&sin);
		break;
	case FNODE_COMPAT:
		compat_accept(sv[1], (struct sockaddr *)&sin);
		break;
	default:
		abort();
	}
	fnode_settle();
	return (i);
}

/* Read what the node sent on every connection; non-zero if any. */
static int
fnode_drain(void)
{
	struct fnode_conn	*fc;
	u_char			 buf[16384];
	ssize_t			 n;
	int			 i, moved = 0;

	for (i = 0; i < FNODE_CONNS; i++) {
		fc = &fnode_conns[i];
		if (fc->fd == -1 || fc->nclosed)
			continue;
		for (;;) {
			n = read(fc->fd, buf, sizeof buf);
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1)
				break;
			moved = 1;
			if (n == 0) {
				fc->nclosed = 1;
				break;
			}
			fc->received += n;
			/* A decoding error ends decoding, not the test. */
			if (fc->tn.error == NULL)
				(void)telnet_input(&fc->tn, buf, n);
		}
	}
	return (moved);
}

/* Bytes the node has not read yet, over all connections. */
static size_t
fnode_unread(void)
{
	struct fnode_conn	*fc;
	size_t			 total = 0;
	int			 i, n;

	for (i = 0; i < FNODE_CONNS; i++) {
		fc = &fnode_conns[i];
		if (fc->fd == -1 || fc->nclosed)
			continue;
		if (ioctl(fc->nfd, FIONREAD, &n) == 0 && n > 0)
			total += n;
	}
	return (total);
}

/* Run the node until it has nothing more to do. */
void
fnode_settle(void)
{
	size_t	unread, last = (size_t)-1;
	int	i, moved;

	for (i = 0; i < FNODE_SETTLE_MAX; i++) {
		server_now = time(NULL);
		event_base_loop(server_base, EVLOOP_NONBLOCK);
		client_reap(NULL);
		vmconn_reap(NULL);
		moved = fnode_drain();
		unread = fnode_unread();
		if (!moved && unread == last)
			break;
		last = unread;
	}
}

/* Write bytes as the host or person on connection i. */
void
fnode_send(int i, const void *buf, size_t len)
{
	struct fnode_conn	*fc = &fnode_conns[i];
	const u_char		*p = buf;
	ssize_t			 n;
	int			 stalled = 0;

	if (fc->fd == -1 || fc->wclosed || fc->nclosed)
		return;
	while (len > 0 && stalled < 2) {
		n = write(fc->fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* The node is not reading: let it, or give up. */
			fnode_settle();
			stalled++;
			continue;
		}
		if (n == -1)
			return;
		stalled = 0;
		p += n;
		len -= n;
	}
}

/* Send IAC SB opt payload IAC SE, the payload escaped. */
void
fnode_send_sb(int i, u_char opt, const void *payload, size_t len)
{
	u_char	*buf;
	size_t	 n = 0;

	buf = xmalloc(2 * len + 5);
	buf[n++] = TEL_IAC;
	buf[n++] = TEL_SB;
	buf[n++] = opt;
	n += telnet_escape(buf + n, payload, len);
	buf[n++] = TEL_IAC;
	buf[n++] = TEL_SE;
	fnode_send(i, buf, n);
	free(buf);
}

/* Present on connection i the vMotion token connection from was given. */
void
fnode_send_token(int i, int from)
{
	struct fnode_conn	*src = &fnode_conns[from];
	u_char			 buf[1 + VMOTION_TOKEN_MAX];

	buf[0] = VMW_VMOTION_PEER;
	memcpy(buf + 1, src->token, src->tokenlen);
	fnode_send_sb(i, TELOPT_VMWARE, buf, 1 + src->tokenlen);
}

/* The host or person on connection i closes its end. */
void
fnode_eof(int i)
{
	struct fnode_conn	*fc = &fnode_conns[i];

	if (fc->fd == -1 || fc->wclosed)
		return;
	fc->wclosed = 1;
	shutdown(fc->fd, SHUT_WR);
}

/* Whether the node closed connection i. */
int
fnode_closed(int i)
{
	return (fnode_conns[i].fd == -1 || fnode_conns[i].nclosed);
}

/* Bytes the node sent on connection i. */
size_t
fnode_received(int i)
{
	return (fnode_conns[i].received);
}

/* Tear everything down: the next input starts from an empty node. */
void
fnode_reset(void)
{
	struct vmconn	*v, *v1;
	int		 i;

	fnode_settle();
	client_shutdown("fuzz input done");
	TAILQ_FOREACH_SAFE(v, &all_vmconns, gentry, v1) {
		v->references = 0;
		vmconn_close(v, "fuzz input done");
	}
	client_reap(NULL);
	vmconn_reap(NULL);
	for (i = 0; i < FNODE_CONNS; i++) {
		if (fnode_conns[i].fd == -1)
			continue;
		close(fnode_conns[i].fd);
		telnet_free(&fnode_conns[i].tn);
		fnode_conns[i].fd = -1;
	}
	console_free_all();
	store_free(server_store);
	server_store = store_local_create(server_conf->node_id);
	event_base_loop(server_base, EVLOOP_NONBLOCK);
	CHECK(TAILQ_EMPTY(&all_vmconns) && TAILQ_EMPTY(&all_clients));
	CHECK(nvmconns == 0 && nconsoles == 0);
}

/*
 * An ESXi host that connects and identifies itself the way the capture
 * shows (C1): the VM is bound to its console.  Returns the connection.
 */
int
fnode_vm(const char *uuid, const char *name, const char *uri)
{
	static const u_char	 nego[] = {
		TEL_IAC, TEL_WILL, TELOPT_AUTH,
		TEL_IAC, TEL_DO, TELOPT_BINARY,
		TEL_IAC, TEL_DO, TELOPT_SGA, TEL_IAC, TEL_DO, TELOPT_ECHO,
		TEL_IAC, TEL_WILL, TELOPT_BINARY,
		TEL_IAC, TEL_WILL, TELOPT_SGA,
		TEL_IAC, TEL_WILL, TELOPT_VMWARE
	};
	static const u_char	 ks1[] = {
		VMW_KNOWN_SUBOPTIONS_1, 0x00, 0x01, 0x02, 0x03, 0x28, 0x29,
		0x2b, 0x2c, 0x2d, 0x2e, 0x30, 0x46, 0x47, 0x49, 0x50, 0x51,
		0x54, 0x55, 0x56, 0x57, 0x52, 0x53
	};
	u_char			 buf[256];
	size_t			 n;
	int			 i;

	if ((i = fnode_open(FNODE_VM)) == -1)
		return (-1);
	fnode_send(i, nego, sizeof nego);
	fnode_send_sb(i, TELOPT_VMWARE, ks1, sizeof ks1);
	n = snprintf((char *)buf, sizeof buf, "%cS%s", VMW_DO_PROXY, uri);
	fnode_send_sb(i, TELOPT_VMWARE, buf, n);
	n = snprintf((char *)buf, sizeof buf, "%c%s", VMW_VM_VC_UUID, uuid);
	fnode_send_sb(i, TELOPT_VMWARE, buf, n);
	n = snprintf((char *)buf, sizeof buf, "%c%s", VMW_VM_NAME, name);
	fnode_send_sb(i, TELOPT_VMWARE, buf, n);
	fnode_settle();
	return (i);
}

/*
 * Run a script (see the top of this file) over slots of the given
 * kinds; open, if not NULL, gives the connections some slots already
 * have (-1 for none).  Returns the number of records run.
 */
int
fnode_run_script(const uint8_t *p, size_t len, const enum fnode_kind *kinds,
    const int *open, u_int nslots)
{
	int	slots[FNODE_CONNS];
	u_int	slot, from, action, records = 0;
	size_t	n;
	u_char	opt;
	int	i;

	CHECK(nslots > 0 && nslots <= FNODE_CONNS);
	for (slot = 0; slot < nslots; slot++)
		slots[slot] = open != NULL ? open[slot] : -1;
	while (len > 0) {
		slot = (p[0] & 7) % nslots;
		action = (p[0] >> 3) & 3;
		p++;
		len--;
		if (slots[slot] == -1 &&
		    (slots[slot] = fnode_open(kinds[slot])) == -1)
			break;
		i = slots[slot];
		switch (action) {
		case 0:
		case 1:
			if (len == 0)
				return (records);
			n = p[0];
			p++;
			len--;
			if (n > len)
				n = len;
			if (action == 0)
				fnode_send(i, p, n);
			else {
				opt = kinds[slot] == FNODE_COMPAT ?
				    TELOPT_VSPCADMIN : TELOPT_VMWARE;
				fnode_send_sb(i, opt, p, n);
			}
			p += n;
			len -= n;
			break;
		case 2:
			if (len == 0)
				return (records);
			from = p[0] % nslots;
			p++;
			len--;
			if (slots[from] != -1)
				fnode_send_token(i, slots[from]);
			break;
		case 3:
			fnode_eof(i);
			break;
		}
		fnode_settle();
		records++;
	}
	return (records);
}

/*
 * Every person attached is attached to a console that exists, and is on
 * that console's list.
 */
static void
fnode_check_people(void)
{
	struct console	*con;
	struct client	*c, *c2;
	u_int		 found;

	TAILQ_FOREACH(c, &all_clients, gentry) {
		if (c->console == NULL || (c->flags & CLIENT_DEAD))
			continue;
		found = 0;
		TAILQ_FOREACH(con, &all_consoles, gentry) {
			if (con == c->console)
				found = 1;
		}
		CHECK(found);
		found = 0;
		TAILQ_FOREACH(c2, &c->console->clients, centry) {
			if (c2 == c)
				found = 1;
		}
		CHECK(found);
	}
}

/*
 * One input of a people target (cmdline, compat): slots 0 and 1 are
 * people on a listener of kind, slots 2 and 3 the ESXi connections of
 * the VMs web01 and web02, bound before the script runs.
 */
int
fnode_people_input(const uint8_t *data, size_t size, enum fnode_kind kind)
{
	static const char	*conf[] = {
		"console.history=4k",
		"console.client_buffer=4k",
	};
	enum fnode_kind		 slots[4];
	int			 open[4] = { -1, -1, -1, -1 };

	if (size > FNODE_PEOPLE_MAX)
		return (0);
	slots[0] = slots[1] = kind;
	slots[2] = slots[3] = FNODE_VM;
	fnode_init(conf, sizeof conf / sizeof conf[0]);
	open[2] = fnode_vm("42 0a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8",
	    "web01", "vSPC.py");
	open[3] = fnode_vm("42 0a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f9",
	    "web02", "vSPC.py");
	CHECK(nconsoles == 2);
	fnode_run_script(data, size, slots, open, 4);
	fnode_check_people();
	fnode_reset();
	return (0);
}
