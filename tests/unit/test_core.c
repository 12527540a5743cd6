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
 * Unit test of the core on its own: telnet.c, vmconn.c, vmotion.c,
 * console.c, ring.c, logfile.c, client.c and core.c, with the local
 * store and the configuration, and no cluster, peer link, control
 * socket, hand-over, Redis store or HTTP object linked (see
 * tests/unit/core.am for the list).  What the core needs of server.c (the
 * event base, the globals, reaping) is defined here; so are
 * metrics_observe and limit_put, whose modules would drag in the rest of
 * the daemon.  store-local.c's own hand-over record is satisfied by
 * handoff_stubs.c, which fails if it is ever reached.
 *
 * One scenario, run with the default hooks (a node on its own) and with
 * a table that records what the core asks of the cluster:
 *
 *   an ESXi host connects and negotiates as ESXi does (WILL AUTH, the
 *   option offers, WILL 232, KNOWN-SUBOPTIONS-1, DO-PROXY, then VM-VC-UUID
 *   and VM-NAME when asked); a person attaches on a socketpair; the VM's
 *   output reaches the person and the person's input the VM; the VM is
 *   moved to another connection of the same node (BEGIN -> GOAHEAD, the
 *   destination presents the token with PEER -> PEER-OK, COMPLETE); the
 *   source is closed and the person carries on with the destination.
 */

#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vspcd.h"
#include "store.h"

#define TEST_UUID	"42 3e 1b 7a 00 11 22 33-44 55 66 77 88 99 aa bb"
#define TEST_KEY	"423e1b7a-0011-2233-4455-66778899aabb"
#define TEST_NAME	"core-vm"
#define TEST_URI	"telnet://vspc.example:13370"
#define TEST_BUF	65536

/* What server.c provides the core with. */
struct event_base	*server_base;
struct config		*server_conf;
struct store		*server_store;
struct stats		 server_stats;
time_t			 server_now;
struct limit_slot	*server_accept_slot;

static u_int		 test_observed[METRICS_HIST_MAX];

uint64_t
server_monotime_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/* No per-source slots are taken here. */
void
limit_put(struct limit_slot *slot)
{
	assert_null(slot);
}

void
metrics_observe(enum metrics_hist_id id, uint64_t us)
{
	test_observed[id]++;
}

/* One ESXi host or person: our end of a socketpair and what came in. */
struct test_peer {
	int		 fd;
	int		 eof;
	struct telnet	 tn;		/* Decodes what the node sends. */
	u_char		 data[TEST_BUF];
	size_t		 datalen;
	u_int		 sbs[256];	/* VMware sub-commands received. */
	u_char		 last[256][VMOTION_TOKEN_MAX];
	size_t		 lastlen[256];
};

static void
test_tn_data(void *arg, const u_char *buf, size_t len)
{
	struct test_peer	*p = arg;

	assert_true(p->datalen + len <= sizeof p->data);
	memcpy(p->data + p->datalen, buf, len);
	p->datalen += len;
}

static void
test_tn_sb(void *arg, u_char opt, const u_char *buf, size_t len)
{
	struct test_peer	*p = arg;

	if (opt != TELOPT_VMWARE || len == 0)
		return;
	p->sbs[buf[0]]++;
	p->lastlen[buf[0]] = len - 1 > VMOTION_TOKEN_MAX ? VMOTION_TOKEN_MAX :
	    len - 1;
	memcpy(p->last[buf[0]], buf + 1, p->lastlen[buf[0]]);
}

static void
test_tn_option(void *arg, u_char opt, int him, int on)
{
}

static void
test_tn_command(void *arg, u_char cmd)
{
}

/* Negotiation is scripted by the test: the codec's replies are dropped. */
static void
test_tn_output(void *arg, const u_char *buf, size_t len)
{
}

static const struct telnet_ops test_telnet_ops = {
	test_tn_data, test_tn_sb, test_tn_option, test_tn_command,
	test_tn_output
};

static struct test_peer	*test_peers[4];
static u_int		 test_npeers;

/* A socketpair: our end in p, the node's end returned. */
static int
test_pair(struct test_peer *p)
{
	int	sv[2];

	memset(p, 0, sizeof *p);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	p->fd = sv[0];
	telnet_init(&p->tn, &test_telnet_ops, p, 0, 0, TELNET_SB_MAX_DEFAULT);
	assert_true(test_npeers < 4);
	test_peers[test_npeers++] = p;
	return (sv[1]);
}

static void
test_addr(struct sockaddr_in *sin, u_int port)
{
	memset(sin, 0, sizeof *sin);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(0x7f000001);
}

/* Read what the node sent; non-zero if anything moved. */
static int
test_drain(void)
{
	struct test_peer	*p;
	u_char			 buf[16384];
	ssize_t			 n;
	u_int			 i;
	int			 moved = 0;

	for (i = 0; i < test_npeers; i++) {
		p = test_peers[i];
		while (!p->eof) {
			n = read(p->fd, buf, sizeof buf);
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1)
				break;
			moved = 1;
			if (n == 0) {
				p->eof = 1;
				break;
			}
			assert_int_equal(telnet_input(&p->tn, buf, n), 0);
		}
	}
	return (moved);
}

/* Run the node until a turn moves nothing, reaping as server.c does. */
static void
test_settle(void)
{
	int	i, quiet = 0;

	for (i = 0; i < 64 && quiet < 2; i++) {
		server_now = time(NULL);
		event_base_loop(server_base, EVLOOP_NONBLOCK);
		client_reap(NULL);
		vmconn_reap(NULL);
		quiet = test_drain() ? 0 : quiet + 1;
	}
}

static void
test_send(struct test_peer *p, const void *buf, size_t len)
{
	assert_int_equal(write(p->fd, buf, len), (ssize_t)len);
	test_settle();
}

/*
 * IAC SB 232 cmd payload IAC SE, 0xff in the payload doubled as ESXi
 * does (a vMotion secret is random and may hold one).
 */
static void
test_send_vmw(struct test_peer *p, u_char cmd, const void *payload,
    size_t len)
{
	const u_char	*in = payload;
	u_char		 buf[1024];
	size_t		 n = 0, i;

	assert_true(2 * len + 6 <= sizeof buf);
	buf[n++] = TEL_IAC;
	buf[n++] = TEL_SB;
	buf[n++] = TELOPT_VMWARE;
	buf[n++] = cmd;
	for (i = 0; i < len; i++) {
		buf[n++] = in[i];
		if (in[i] == TEL_IAC)
			buf[n++] = TEL_IAC;
	}
	buf[n++] = TEL_IAC;
	buf[n++] = TEL_SE;
	test_send(p, buf, n);
}

static int
test_has(const struct test_peer *p, const char *s)
{
	return (memmem(p->data, p->datalen, s, strlen(s)) != NULL);
}

/*
 * A new ESXi connection, negotiated the way ESXi does it: AUTH is
 * offered (and refused), the node's offers are accepted, the VMware
 * extension is turned on and KNOWN-SUBOPTIONS-1 sent.
 */
static struct vmconn *
test_esxi_connect(struct test_peer *p, u_int port)
{
	static const u_char	 offer[] = {
		TEL_IAC, TEL_WILL, TELOPT_AUTH
	};
	static const u_char	 accept[] = {
		TEL_IAC, TEL_WILL, TELOPT_BINARY, TEL_IAC, TEL_WILL, TELOPT_SGA,
		TEL_IAC, TEL_DO, TELOPT_BINARY, TEL_IAC, TEL_DO, TELOPT_SGA,
		TEL_IAC, TEL_DO, TELOPT_ECHO, TEL_IAC, TEL_WILL, TELOPT_VMWARE
	};
	static const u_char	 ks1[] = {
		VMW_KNOWN_SUBOPTIONS_1, VMW_KNOWN_SUBOPTIONS_2,
		VMW_VMOTION_BEGIN, VMW_VMOTION_GOAHEAD, VMW_VMOTION_NOTNOW,
		VMW_VMOTION_PEER, VMW_VMOTION_PEER_OK, VMW_VMOTION_COMPLETE,
		VMW_VMOTION_ABORT, VMW_DO_PROXY, VMW_WILL_PROXY,
		VMW_WONT_PROXY, VMW_VM_VC_UUID, VMW_GET_VM_VC_UUID,
		VMW_VM_NAME, VMW_GET_VM_NAME
	};
	struct sockaddr_in	 sin;
	struct vmconn		*v;

	test_addr(&sin, port);
	v = vmconn_create(test_pair(p), (struct sockaddr *)&sin);
	assert_non_null(v);
	test_settle();
	test_send(p, offer, sizeof offer);
	test_send(p, accept, sizeof accept);
	assert_int_equal(p->sbs[VMW_KNOWN_SUBOPTIONS_2], 1);
	test_send_vmw(p, VMW_KNOWN_SUBOPTIONS_1, ks1, sizeof ks1);
	assert_int_equal(p->sbs[VMW_GET_VM_VC_UUID], 1);
	assert_int_equal(p->sbs[VMW_GET_VM_NAME], 1);
	return (v);
}

/* The identity ESXi answers GET-VM-VC-UUID and GET-VM-NAME with. */
static void
test_esxi_identify(struct test_peer *p)
{
	test_send_vmw(p, VMW_VM_VC_UUID, TEST_UUID, strlen(TEST_UUID));
	test_send_vmw(p, VMW_VM_NAME, TEST_NAME, strlen(TEST_NAME));
}

/* A person's session: types into the VM, notices go to its socket. */
static void
test_person_input(struct client *c, const u_char *buf, size_t len)
{
	client_input_to_vm(c, buf, len);
}

static void
test_person_notice(struct client *c, const char *msg)
{
	client_printf(c, "[%s]\r\n", msg);
}

static const struct client_proto test_person_proto = {
	.name = "test",
	.input = test_person_input,
	.notice = test_person_notice
};

static void
test_scenario(void)
{
	static const u_char	 seq[] = { 0x01, 0x02, 0x03, 0x04 };
	struct test_peer	*src, *dst, *person;
	struct sockaddr_in	 sin;
	struct vmconn		*vs, *vd;
	struct console		*con;
	struct client		*c;
	uint64_t		 completed = server_stats.vmotion_complete;

	src = calloc(1, sizeof *src);
	dst = calloc(1, sizeof *dst);
	person = calloc(1, sizeof *person);
	assert_true(src != NULL && dst != NULL && person != NULL);

	/* The ESXi host identifies the VM: the console is bound to it. */
	vs = test_esxi_connect(src, 40001);
	test_send_vmw(src, VMW_DO_PROXY, "S" TEST_URI, 1 + strlen(TEST_URI));
	assert_int_equal(src->sbs[VMW_WILL_PROXY], 1);
	assert_int_equal(src->sbs[VMW_WONT_PROXY], 0);
	assert_null(console_find(TEST_KEY));
	test_esxi_identify(src);
	con = console_find(TEST_KEY);
	assert_non_null(con);
	assert_ptr_equal(con->vm, vs);
	assert_int_equal(vs->role, VMCONN_CURRENT);
	assert_string_equal(con->name, TEST_NAME);
	assert_string_equal(con->uri, TEST_URI);
	assert_true(con->epoch != 0);		/* Claimed in the store. */

	/* A person attaches and gets the VM's output. */
	test_addr(&sin, 50001);
	c = client_create(test_pair(person), CLIENT_CONSOLE,
	    &test_person_proto, (struct sockaddr *)&sin);
	assert_int_equal(console_attach(con, c, ATTACH_DEFAULT),
	    ATTACHED_WRITER);
	c->flags |= CLIENT_STREAM;
	client_flush(c);
	test_send(src, "login: ", 7);
	assert_true(test_has(person, "login: "));

	/* What the person types reaches the VM. */
	test_send(person, "root\r", 5);
	assert_true(test_has(src, "root\r"));

	/* vMotion: BEGIN on the source is answered GOAHEAD(seq||secret). */
	test_send_vmw(src, VMW_VMOTION_BEGIN, seq, sizeof seq);
	assert_int_equal(src->sbs[VMW_VMOTION_NOTNOW], 0);
	assert_int_equal(src->sbs[VMW_VMOTION_GOAHEAD], 1);
	assert_int_equal(src->lastlen[VMW_VMOTION_GOAHEAD],
	    sizeof seq + VMOTION_SECRET_LEN);
	assert_memory_equal(src->last[VMW_VMOTION_GOAHEAD], seq, sizeof seq);
	assert_int_equal(con->vmotion.state, VMOTION_PENDING);

	/* The destination presents the token: PEER-OK(seq). */
	vd = test_esxi_connect(dst, 40002);
	test_send_vmw(dst, VMW_VMOTION_PEER, src->last[VMW_VMOTION_GOAHEAD],
	    src->lastlen[VMW_VMOTION_GOAHEAD]);
	assert_int_equal(dst->sbs[VMW_VMOTION_PEER_OK], 1);
	assert_int_equal(dst->lastlen[VMW_VMOTION_PEER_OK], sizeof seq);
	assert_memory_equal(dst->last[VMW_VMOTION_PEER_OK], seq, sizeof seq);
	assert_int_equal(con->vmotion.state, VMOTION_PEERED);
	assert_ptr_equal(con->vmotion.dst, vd);
	assert_int_equal(vd->role, VMCONN_VMOTION_DST);
	test_esxi_identify(dst);

	/* COMPLETE: the destination is current, the source is closed. */
	test_send_vmw(dst, VMW_VMOTION_COMPLETE, seq, sizeof seq);
	assert_int_equal(server_stats.vmotion_complete, completed + 1);
	assert_int_equal(con->vmotion.state, VMOTION_NONE);
	assert_ptr_equal(con->vm, vd);
	assert_int_equal(vd->role, VMCONN_CURRENT);
	assert_true(src->eof);
	assert_false(dst->eof);
	assert_true(test_observed[METRICS_GOAHEAD] != 0);
	assert_true(test_observed[METRICS_PEER_OK] != 0);

	/* The person carries on with the VM on its new host. */
	test_send(dst, "after vMotion\r\n", 15);
	assert_true(test_has(person, "after vMotion\r\n"));
	assert_false(person->eof);
	test_send(person, "uptime\r", 7);
	assert_true(test_has(dst, "uptime\r"));
	assert_false(test_has(src, "uptime\r"));

	/* Tear down as the daemon does at exit. */
	client_shutdown("test over");
	vmconn_close(vd, "test over");
	test_settle();
	assert_true(TAILQ_EMPTY(&all_clients));
	assert_true(TAILQ_EMPTY(&all_vmconns));
	assert_true(person->eof);
	assert_true(dst->eof);
	console_free_all();
	while (test_npeers > 0) {
		test_npeers--;
		close(test_peers[test_npeers]->fd);
		telnet_free(&test_peers[test_npeers]->tn);
		free(test_peers[test_npeers]);
	}
}

/* The core on its own: core.c's table of a node without a cluster. */
static void
test_local(void **state)
{
	test_scenario();
}

/* What the core asked of the cluster, through core_hooks. */
static u_int	hook_changed, hook_bound, hook_gone, hook_recheck;
static u_int	hook_cancelled, hook_other;

static void
hook_console_changed(struct console *con)
{
	hook_changed++;
}

static void
hook_console_bound(struct console *con)
{
	assert_string_equal(con->key, TEST_KEY);
	hook_bound++;
}

static void
hook_claim_later(struct console *con, uint64_t known)
{
	hook_other++;
}

static void
hook_recheck_console(struct console *con)
{
	hook_recheck++;
}

static enum attach_result
hook_attach(struct console *con, struct client *c, enum attach_mode mode)
{
	hook_other++;
	return (ATTACH_REFUSED_REMOTE);
}

static int
hook_client_forwarded(const struct client *c)
{
	return (0);
}

static void
hook_client_gone(struct client *c)
{
	hook_gone++;
}

static void
hook_fwd_input(struct client *c, const u_char *buf, size_t len)
{
	hook_other++;
}

static void
hook_fwd_drained(struct client *c, size_t n)
{
	hook_other++;
}

static size_t
hook_fwd_window(const struct client *c)
{
	return (0);
}

static int
hook_vmotion_peer(struct vmconn *v, const u_char *tok, size_t len,
    const struct store_token *val)
{
	hook_other++;
	return (-1);
}

static void
hook_vmotion_complete(struct vmconn *v)
{
	hook_other++;
}

static void
hook_vmotion_cancelled(struct console *con, const char *why)
{
	hook_cancelled++;
}

static const struct core_hooks test_hooks = {
	.console_changed = hook_console_changed,
	.console_bound = hook_console_bound,
	.claim_later = hook_claim_later,
	.recheck = hook_recheck_console,
	.attach = hook_attach,
	.client_forwarded = hook_client_forwarded,
	.client_gone = hook_client_gone,
	.fwd_input = hook_fwd_input,
	.fwd_drained = hook_fwd_drained,
	.fwd_window = hook_fwd_window,
	.vmotion_peer = hook_vmotion_peer,
	.vmotion_complete = hook_vmotion_complete,
	.vmotion_cancelled = hook_vmotion_cancelled
};

/*
 * The same scenario with a table installed as cluster_start() does: the
 * core tells it of the binding and of every change, and asks nothing a
 * same-node vMotion does not need.
 */
static void
test_hooks_called(void **state)
{
	const struct core_hooks	*saved = core_hooks;

	core_hooks = &test_hooks;
	test_scenario();
	core_hooks = saved;
	assert_int_equal(hook_bound, 1);
	assert_true(hook_changed >= 2);		/* Name and VM, VM gone. */
	assert_true(hook_gone >= 1);		/* The person left. */
	assert_int_equal(hook_recheck, 0);
	assert_int_equal(hook_cancelled, 0);
	assert_int_equal(hook_other, 0);
}

static int
test_setup(void **state)
{
	static const char	*overrides[] = {
		"log.dir=",
		"control.socket=",
		"node.id=core-test",
		("vm.accept_uri=" TEST_URI),
	};
	char			*err = NULL;
	size_t			 i;

	log_init(1, 0);
	if (getenv("TEST_VERBOSE") != NULL)
		log_setverbose(1);
	signal(SIGPIPE, SIG_IGN);
	server_conf = config_default();
	for (i = 0; i < sizeof overrides / sizeof overrides[0]; i++) {
		if (config_set(server_conf, overrides[i], &err) != 0)
			fail_msg("%s: %s", overrides[i], err);
	}
	if (config_check(server_conf, &err) != 0)
		fail_msg("%s", err);
	server_now = time(NULL);
	server_base = event_base_new();
	assert_non_null(server_base);
	server_store = store_local_create(server_conf->node_id);
	logfile_init(server_conf->log_open_files);
	return (0);
}

static int
test_teardown(void **state)
{
	client_reap_stop();
	vmconn_reap_stop();
	store_free(server_store);
	event_base_free(server_base);
	config_free(server_conf);
	return (0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_hooks_called),
	};

	return (cmocka_run_group_tests_name("core", tests, test_setup,
	    test_teardown));
}
