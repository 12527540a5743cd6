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
 * Unit tests for node/config.c: defaults, every key, value syntax, errors
 * that name file and line, -o overrides, cross-key checks, the print-out
 * read back identically, and the service URI rule.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "vspcd.h"

#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof (a)[0])
#endif

static char	tmpdir[256];

static int
setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/test_config.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return (-1);
	return (0);
}

static int
teardown(void **state)
{
	char	cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return (system(cmd) == 0 ? 0 : -1);
}

/* Write text to a file in tmpdir; return its path (static buffer). */
static const char *
write_conf(const char *name, const char *text)
{
	static char	 path[PATH_MAX];
	FILE		*fp;

	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return (path);
}

/* Load text into a fresh default config; assert success. */
static struct config *
load_ok(const char *text)
{
	struct config	*conf;
	char		*err = NULL;

	conf = config_default();
	if (config_load(conf, write_conf("ok.conf", text), &err) != 0) {
		print_error("%s\n", err);
		fail();
	}
	assert_null(err);
	return (conf);
}

/* Load text; assert that it fails with "PATH:msg" exactly. */
static void
load_bad(const char *text, const char *msg)
{
	struct config	*conf;
	const char	*path;
	char		*err = NULL, *want;

	conf = config_default();
	path = write_conf("bad.conf", text);
	assert_int_equal(config_load(conf, path, &err), -1);
	assert_non_null(err);
	xasprintf(&want, "%s:%s", path, msg);
	assert_string_equal(err, want);
	free(want);
	free(err);
	config_free(conf);
}

static char *
print_conf(const struct config *conf)
{
	char	*buf = NULL;
	size_t	 len = 0;
	FILE	*fp;

	fp = open_memstream(&buf, &len);
	assert_non_null(fp);
	config_print(conf, fp);
	fclose(fp);
	return (buf);
}

static void
test_defaults(void **state)
{
	struct config	*conf;
	char		 host[256];
	char		*err = NULL;

	conf = config_default();
	assert_null(conf->file);
	assert_string_equal(conf->vm_listen, "0.0.0.0:13370");
	assert_string_equal(conf->vm_tls_listen, "");
	assert_string_equal(conf->vm_accept_uri, "vSPC.py");
	assert_string_equal(conf->vm_allow_text, "0.0.0.0/0, ::/0");
	assert_int_equal(conf->vm_allow.n, 2);
	assert_int_equal(conf->vm_proxy_from.n, 0);
	assert_int_equal(conf->vm_token_ttl, 120);
	assert_int_equal(conf->vm_negotiation_timeout, 30);
	assert_int_equal(conf->vm_hold, 65536);
	assert_int_equal(conf->vm_input_max, 65536);
	assert_int_equal(conf->vm_sb_max, 4096);
	assert_int_equal(conf->vm_expire, 86400);
	assert_int_equal(conf->vm_max_connections, 0);
	assert_string_equal(conf->console_listen, "127.0.0.1:13372");
	assert_int_equal(conf->console_replay_lines, 20);
	assert_int_equal(conf->console_history, 256 * 1024);
	assert_string_equal(conf->console_users_file, "");
	assert_int_equal(conf->console_escape, 0x1d);
	assert_int_equal(conf->console_client_buffer, 65536);
	assert_int_equal(conf->console_stuck_timeout, 60);
	assert_int_equal(conf->console_max_clients, 64);
	assert_int_equal(conf->console_idle_timeout, 0);
	assert_string_equal(conf->compat_listen, "127.0.0.1:13371");
	assert_string_equal(conf->log_dir, "/var/log/vspcd/consoles");
	assert_string_equal(conf->log_name, "%n-%k.log");
	assert_int_equal(conf->log_max_size, 16 * 1024 * 1024);
	assert_int_equal(conf->log_keep, 0);
	assert_int_equal(conf->log_mark, 0);
	assert_int_equal(conf->log_activity, 0);
	assert_int_equal(conf->log_open_files, 0);	/* Automatic. */
	assert_string_equal(conf->cluster_redis, "");
	assert_string_equal(conf->cluster_sentinels, "");
	assert_string_equal(conf->cluster_name, "default");
	assert_string_equal(conf->cluster_peer_listen, "0.0.0.0:13373");
	assert_string_equal(conf->cluster_sentinel_password, "");
	assert_int_equal(conf->cluster_heartbeat, 1);
	assert_int_equal(conf->cluster_node_timeout, 5);
	assert_int_equal(conf->cluster_redis_timeout, 2);
	assert_int_equal(conf->cluster_peer_ping, 5);
	assert_int_equal(conf->cluster_peer_frame_max, 8 * 1024 * 1024);
	assert_string_equal(conf->http_listen, "127.0.0.1:13374");
	assert_string_equal(conf->control_socket, "/run/vspcd/control.sock");

	/* The node ID is the host name. */
	assert_int_equal(gethostname(host, sizeof host), 0);
	host[sizeof host - 1] = '\0';
	if (strlen(host) <= 64 && strchr(host, '_') == NULL)
		assert_string_equal(conf->node_id, host);

	/* The defaults pass the cross-key checks. */
	assert_int_equal(config_check(conf, &err), 0);
	assert_null(err);
	config_free(conf);
}

static void
test_every_key(void **state)
{
	struct config	*conf;
	char		*err = NULL;

	conf = load_ok(
	    "; every key\n"
	    "[node]\n"
	    "id = n1\n"
	    "[vm]\n"
	    "listen = 10.0.0.1:2000, [::1]:2001\n"
	    "tls_listen = 0.0.0.0\n"
	    "tls_cert = /etc/cert.pem\n"
	    "tls_key = /etc/key.pem\n"
	    "accept_uri = vSPC.py, other\n"
	    "allow = 10.0.0.0/8 192.168.1.7\n"
	    "proxy_protocol_from = 127.0.0.1\n"
	    "vmotion_token_ttl = 2m\n"
	    "negotiation_timeout = 10\n"
	    "hold = 1M\n"
	    "input_buffer = 2k\n"
	    "subnegotiation_max = 8k\n"
	    "expire = 2d\n"
	    "max_connections = 500\n"
	    "[console]\n"
	    "listen = 127.0.0.1:3000\n"
	    "replay_lines = 0\n"
	    "history = 1M\n"
	    "users_file = /etc/vspcd/users\n"
	    "escape = ^E\n"
	    "client_buffer = 128k\n"
	    "stuck_timeout = 5m\n"
	    "max_clients = 3\n"
	    "idle_timeout = 1h\n"
	    "[compat]\n"
	    "listen =\n"
	    "[log]\n"
	    "dir = /srv/logs\n"
	    "name = %u.log\n"
	    "max_size = 1G\n"
	    "keep = 5\n"
	    "mark = 1h\n"
	    "activity = yes\n"
	    "open_files = 8\n"
	    "[cluster]\n"
	    "master_name = mymaster\n"
	    "name = lab\n"
	    "secret_file = /etc/vspcd/secret\n"
	    "peer_listen = 10.0.0.1\n"
	    "peer_advertise = node1.example:13373\n"
	    "sentinel_password = s3cret\n"
	    "heartbeat = 2s\n"
	    "node_timeout = 10\n"
	    "redis_timeout = 3\n"
	    "peer_ping = 1m\n"
	    "peer_frame_max = 1M\n"
	    "[http]\n"
	    "listen =\n"
	    "[control]\n"
	    "socket = /tmp/c.sock\n");

	assert_non_null(strstr(conf->file, "/ok.conf"));
	assert_string_equal(conf->node_id, "n1");
	assert_string_equal(conf->vm_listen, "10.0.0.1:2000, [::1]:2001");
	assert_string_equal(conf->vm_tls_listen, "0.0.0.0");
	assert_string_equal(conf->vm_tls_cert, "/etc/cert.pem");
	assert_string_equal(conf->vm_tls_key, "/etc/key.pem");
	assert_string_equal(conf->vm_accept_uri, "vSPC.py, other");
	assert_string_equal(conf->vm_allow_text, "10.0.0.0/8, 192.168.1.7");
	assert_int_equal(conf->vm_allow.n, 2);
	assert_string_equal(conf->vm_proxy_from_text, "127.0.0.1");
	assert_int_equal(conf->vm_proxy_from.n, 1);
	assert_int_equal(conf->vm_token_ttl, 120);
	assert_int_equal(conf->vm_negotiation_timeout, 10);
	assert_int_equal(conf->vm_hold, 1024 * 1024);
	assert_int_equal(conf->vm_input_max, 2048);
	assert_int_equal(conf->vm_sb_max, 8192);
	assert_int_equal(conf->vm_expire, 2 * 86400);
	assert_int_equal(conf->vm_max_connections, 500);
	assert_string_equal(conf->console_listen, "127.0.0.1:3000");
	assert_int_equal(conf->console_replay_lines, 0);
	assert_int_equal(conf->console_history, 1024 * 1024);
	assert_string_equal(conf->console_users_file, "/etc/vspcd/users");
	assert_int_equal(conf->console_escape, 0x05);
	assert_int_equal(conf->console_client_buffer, 128 * 1024);
	assert_int_equal(conf->console_stuck_timeout, 300);
	assert_int_equal(conf->console_max_clients, 3);
	assert_int_equal(conf->console_idle_timeout, 3600);
	assert_string_equal(conf->compat_listen, "");
	assert_string_equal(conf->log_dir, "/srv/logs");
	assert_string_equal(conf->log_name, "%u.log");
	assert_int_equal(conf->log_max_size, 1024ULL * 1024 * 1024);
	assert_int_equal(conf->log_keep, 5);
	assert_int_equal(conf->log_mark, 3600);
	assert_int_equal(conf->log_activity, 1);
	assert_int_equal(conf->log_open_files, 8);
	assert_string_equal(conf->cluster_master_name, "mymaster");
	assert_string_equal(conf->cluster_name, "lab");
	assert_string_equal(conf->cluster_secret_file, "/etc/vspcd/secret");
	assert_string_equal(conf->cluster_peer_listen, "10.0.0.1");
	assert_string_equal(conf->cluster_peer_advertise,
	    "node1.example:13373");
	assert_string_equal(conf->cluster_sentinel_password, "s3cret");
	assert_int_equal(conf->cluster_heartbeat, 2);
	assert_int_equal(conf->cluster_node_timeout, 10);
	assert_int_equal(conf->cluster_redis_timeout, 3);
	assert_int_equal(conf->cluster_peer_ping, 60);
	assert_int_equal(conf->cluster_peer_frame_max, 1024 * 1024);
	assert_string_equal(conf->http_listen, "");
	assert_string_equal(conf->control_socket, "/tmp/c.sock");
	assert_int_equal(config_check(conf, &err), 0);
	config_free(conf);
}

static void
test_sizes_times(void **state)
{
	size_t	s;
	u_int	t;

	assert_int_equal(config_parse_size("0", &s), 0);
	assert_int_equal(s, 0);
	assert_int_equal(config_parse_size("100", &s), 0);
	assert_int_equal(s, 100);
	assert_int_equal(config_parse_size("64k", &s), 0);
	assert_int_equal(s, 65536);
	assert_int_equal(config_parse_size("64K", &s), 0);
	assert_int_equal(s, 65536);
	assert_int_equal(config_parse_size("16m", &s), 0);
	assert_int_equal(s, 16 * 1024 * 1024);
	assert_int_equal(config_parse_size("16M", &s), 0);
	assert_int_equal(s, 16 * 1024 * 1024);
	assert_int_equal(config_parse_size("2g", &s), 0);
	assert_int_equal(s, 2ULL * 1024 * 1024 * 1024);
	assert_int_equal(config_parse_size("2G", &s), 0);
	assert_int_equal(s, 2ULL * 1024 * 1024 * 1024);
	assert_int_equal(config_parse_size("", &s), -1);
	assert_int_equal(config_parse_size("k", &s), -1);
	assert_int_equal(config_parse_size("-1", &s), -1);
	assert_int_equal(config_parse_size("1.5M", &s), -1);
	assert_int_equal(config_parse_size("12kb", &s), -1);
	assert_int_equal(config_parse_size("1 k", &s), -1);
	assert_int_equal(config_parse_size("99999999999999999999", &s), -1);
	assert_int_equal(config_parse_size("99999999999999999G", &s), -1);

	assert_int_equal(config_parse_time("0", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(config_parse_time("45", &t), 0);
	assert_int_equal(t, 45);
	assert_int_equal(config_parse_time("45s", &t), 0);
	assert_int_equal(t, 45);
	assert_int_equal(config_parse_time("2m", &t), 0);
	assert_int_equal(t, 120);
	assert_int_equal(config_parse_time("24h", &t), 0);
	assert_int_equal(t, 86400);
	assert_int_equal(config_parse_time("7d", &t), 0);
	assert_int_equal(t, 7 * 86400);
	assert_int_equal(config_parse_time("", &t), -1);
	assert_int_equal(config_parse_time("h", &t), -1);
	assert_int_equal(config_parse_time("1w", &t), -1);
	assert_int_equal(config_parse_time("-5", &t), -1);
	assert_int_equal(config_parse_time("1M", &t), -1);
	assert_int_equal(config_parse_time("99999999d", &t), -1);
}

static void
set_ok(struct config *conf, const char *arg)
{
	char	*err = NULL;

	if (config_set(conf, arg, &err) != 0) {
		print_error("%s: %s\n", arg, err);
		fail();
	}
}

static void
test_bools_escape(void **state)
{
	struct config	*conf;
	const char	*yes[] = { "yes", "true", "on", "1", "YES", "On" };
	const char	*no[] = { "no", "false", "off", "0", "No", "FALSE" };
	char		 arg[64], *err = NULL;
	size_t		 i;

	conf = config_default();
	for (i = 0; i < nitems(yes); i++) {
		snprintf(arg, sizeof arg, "log.activity=%s", yes[i]);
		set_ok(conf, arg);
		assert_int_equal(conf->log_activity, 1);
		snprintf(arg, sizeof arg, "log.activity=%s", no[i]);
		set_ok(conf, arg);
		assert_int_equal(conf->log_activity, 0);
	}
	assert_int_equal(config_set(conf, "log.activity=maybe", &err), -1);
	free(err);

	set_ok(conf, "console.escape=^]");
	assert_int_equal(conf->console_escape, 0x1d);
	set_ok(conf, "console.escape=^e");
	assert_int_equal(conf->console_escape, 0x05);
	set_ok(conf, "console.escape=^?");
	assert_int_equal(conf->console_escape, 0x7f);
	set_ok(conf, "console.escape=~");
	assert_int_equal(conf->console_escape, '~');
	set_ok(conf, "console.escape=0x3b");
	assert_int_equal(conf->console_escape, ';');
	set_ok(conf, "console.escape=^");
	assert_int_equal(conf->console_escape, '^');
	assert_int_equal(config_set(conf, "console.escape=ab", &err), -1);
	free(err);
	assert_int_equal(config_set(conf, "console.escape=^M", &err), -1);
	free(err);
	assert_int_equal(config_set(conf, "console.escape=0xff", &err), -1);
	free(err);
	assert_int_equal(config_set(conf, "console.escape=", &err), -1);
	free(err);
	assert_int_equal(conf->console_escape, '^');
	/*
	 * A value no file can express (" ;" starts a comment there) is
	 * refused, so that vspcd -nv prints what reads back the same.
	 */
	assert_int_equal(config_set(conf, "log.dir=a ;b", &err), -1);
	assert_non_null(strstr(err, "would read back as a comment"));
	free(err);
	set_ok(conf, "log.dir=a;b");
	assert_string_equal(conf->log_dir, "a;b");
	config_free(conf);
}

static void
test_errors(void **state)
{
	load_bad("[vm]\nlisten = 0.0.0.0:1\n\nbogus = 1\n",
	    "4: unknown key \"bogus\" in [vm]");
	load_bad("; c\n[vm]\n[nosuch]\nx = 1\n",
	    "3: unknown section [nosuch]");
	load_bad("[console]\nhistory = 512\n",
	    "2: [console] history: 512 is below the minimum 1k");
	load_bad("[console]\n# comment\nreplay_lines = 10001\n",
	    "3: [console] replay_lines: 10001 is above the maximum 10000");
	load_bad("[vm]\nhold = lots\n",
	    "2: [vm] hold: bad size \"lots\" (a number with an optional k, "
	    "M or G)");
	load_bad("[vm]\nexpire = 1w\n",
	    "2: [vm] expire: bad time \"1w\" (seconds, or a number with s, "
	    "m, h or d)");
	load_bad("[log]\nactivity = sometimes\n",
	    "2: [log] activity: bad boolean \"sometimes\" (yes or no)");
	load_bad("[vm]\nallow = 10.0.0.0/33\n",
	    "2: [vm] allow: bad prefix length in \"10.0.0.0/33\"");
	load_bad("[vm]\nlisten = 0.0.0.0:99999\n",
	    "2: [vm] listen: bad port in \"0.0.0.0:99999\"");
	load_bad("[vm]\nlisten\n", "2: syntax error: expected key = value");
	load_bad("id = x\n", "1: \"id\" is outside a section");
	load_bad("[vm\nx = 1\n", "1: missing ']' in section header");
	load_bad("[node]\nid = a b\n",
	    "2: [node] id: bad name \"a b\" (1 to 64 of A-Z a-z 0-9 _ . -)");
	load_bad("[log]\nname = %x.log\n",
	    "2: [log] name: unknown escape %x in \"%x.log\" (use %n, %u, "
	    "%k, %l or %%)");
	load_bad("[log]\nname = console.log\n",
	    "2: [log] name: \"console.log\" names no console: use %n, %u "
	    "or %k");
	load_bad("[log]\nmax_size = 1k\n",
	    "2: [log] max_size: 1k is below the minimum 4k (0 = off)");
	load_bad("[vm]\naccept_uri = vSPC.py?port=a\n",
	    "2: [vm] accept_uri: \"vSPC.py?port=a\": a base URI has no query "
	    "or control characters");
}

static void
test_file_errors(void **state)
{
	struct config	*conf;
	char		*err = NULL, path[PATH_MAX + 32];

	conf = config_default();
	snprintf(path, sizeof path, "%s/missing.conf", tmpdir);
	assert_int_equal(config_load(conf, path, &err), -1);
	assert_non_null(strstr(err, "missing.conf: No such file"));
	free(err);
	config_free(conf);
}

static void
test_lines(void **state)
{
	struct config	*conf;
	char		 allow[1024], text[1200];
	size_t		 len = 0;
	int		 i;

	/* Indented lines are keys of their own, not continuations. */
	conf = load_ok("[vm]\nlisten = 10.0.0.1:1\n  hold = 8k\n"
	    "\t; indented comment\n");
	assert_string_equal(conf->vm_listen, "10.0.0.1:1");
	assert_int_equal(conf->vm_hold, 8192);
	config_free(conf);

	/* Inline comments, CRLF line ends, a later key wins. */
	conf = load_ok("[console]\r\nreplay_lines = 5 ; five\r\n"
	    "replay_lines = 7\r\n");
	assert_int_equal(conf->console_replay_lines, 7);
	config_free(conf);

	/* A line longer than inih's buffer is read whole. */
	for (i = 0; i < 40; i++)
		len += snprintf(allow + len, sizeof allow - len,
		    "%s10.%d.0.0/16", i ? ", " : "", i);
	snprintf(text, sizeof text, "[vm]\nallow = %s ; many\n"
	    "max_connections = 9\n", allow);
	conf = load_ok(text);
	assert_string_equal(conf->vm_allow_text, allow);
	assert_int_equal(conf->vm_allow.n, 40);
	assert_int_equal(conf->vm_max_connections, 9);
	config_free(conf);

	snprintf(text, sizeof text, "[vm]\n\nallow = %s, 10.0.0.0/99\n",
	    allow);
	load_bad(text, "3: [vm] allow: bad prefix length in \"10.0.0.0/99\"");
}

static void
test_overrides(void **state)
{
	struct config	*conf;
	char		*err = NULL;

	conf = load_ok("[console]\nreplay_lines = 5\n");
	set_ok(conf, "console.replay_lines=50");
	assert_int_equal(conf->console_replay_lines, 50);
	set_ok(conf, " vm.listen = 127.0.0.1:20000 ");
	assert_string_equal(conf->vm_listen, "127.0.0.1:20000");
	set_ok(conf, "cluster.redis=");
	set_ok(conf, "vm.allow=::1");
	assert_int_equal(conf->vm_allow.n, 1);

	assert_int_equal(config_set(conf, "console.nosuch=1", &err), -1);
	assert_string_equal(err,
	    "-o console.nosuch=1: unknown key \"nosuch\" in [console]");
	free(err);
	assert_int_equal(config_set(conf, "nosuch.key=1", &err), -1);
	assert_string_equal(err, "-o nosuch.key=1: unknown section [nosuch]");
	free(err);
	assert_int_equal(config_set(conf, "replay_lines=1", &err), -1);
	assert_string_equal(err,
	    "-o replay_lines=1: expected section.key=value");
	free(err);
	assert_int_equal(config_set(conf, "console.history", &err), -1);
	free(err);
	assert_int_equal(config_set(conf, "console.history=1", &err), -1);
	assert_string_equal(err, "-o console.history=1: [console] history: "
	    "1 is below the minimum 1k");
	free(err);
	/* A refused value leaves the old one. */
	assert_int_equal(config_set(conf, "vm.allow=nonsense", &err), -1);
	free(err);
	assert_int_equal(conf->vm_allow.n, 1);
	assert_string_equal(conf->vm_allow_text, "::1");
	config_free(conf);
}

static void
redis_ok(const char *url, const char *host, int port, const char *user,
    const char *password, u_int db)
{
	struct redis_addr	 ra;
	char			*err = NULL;

	if (config_parse_redis(url, &ra, &err) != 0)
		fail_msg("%s: %s", url, err);
	assert_string_equal(ra.host, host);
	assert_int_equal(ra.port, port);
	if (user == NULL)
		assert_null(ra.user);
	else
		assert_string_equal(ra.user, user);
	if (password == NULL)
		assert_null(ra.password);
	else
		assert_string_equal(ra.password, password);
	assert_int_equal(ra.db, db);
	config_redis_free(&ra);
}

static void
redis_bad(const char *url, const char *want)
{
	struct redis_addr	 ra;
	char			*err = NULL;

	assert_int_equal(config_parse_redis(url, &ra, &err), -1);
	if (strstr(err, want) == NULL)
		fail_msg("%s: got \"%s\", want \"%s\"", url, err, want);
	free(err);
}

static void
test_redis_url(void **state)
{
	struct redis_addr	*sa;
	u_int			 n;
	char			*err = NULL;

	redis_ok("redis://127.0.0.1:6379/0", "127.0.0.1", 6379, NULL, NULL,
	    0);
	redis_ok("redis://r1.example", "r1.example", 6379, NULL, NULL, 0);
	redis_ok("redis://r1:7000/", "r1", 7000, NULL, NULL, 0);
	redis_ok("REDIS://[::1]:6380/3", "::1", 6380, NULL, NULL, 3);
	redis_ok("redis://:pw@r1:6379", "r1", 6379, NULL, "pw", 0);
	redis_ok("redis://vspc:p%40ss:w@r1:6379/2", "r1", 6379, "vspc",
	    "p@ss:w", 2);
	/* The last '@' ends the credentials. */
	redis_ok("redis://u:a@b@r1", "r1", 6379, "u", "a@b", 0);

	redis_bad("rediss://r1:6379", "(rediss://) is not supported");
	redis_bad("http://r1", "is not a Redis URL");
	redis_bad("r1:6379", "is not a Redis URL");
	redis_bad("redis://", "no host");
	redis_bad("redis://r1:0", "bad port");
	redis_bad("redis://r1:65536", "bad port");
	redis_bad("redis://r1:x", "bad port");
	redis_bad("redis://r1:6379/x", "bad database number");
	redis_bad("redis://pw@r1", "credentials are user:password@");
	redis_bad("redis://u:@r1", "empty password");
	redis_bad("redis://u:%zz@r1", "bad %-escape");
	redis_bad("redis://u:%00@r1", "bad %-escape");
	redis_bad("redis://::1:6379", "in brackets");
	redis_bad("redis://[::1", "bad address");
	redis_bad("redis://r 1", "bad host");

	assert_int_equal(config_parse_sentinels("s1:26380 ,s2,[::1]:1", &sa,
	    &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(sa[0].host, "s1");
	assert_int_equal(sa[0].port, 26380);
	assert_string_equal(sa[1].host, "s2");
	assert_int_equal(sa[1].port, 26379);
	assert_string_equal(sa[2].host, "::1");
	assert_int_equal(sa[2].port, 1);
	while (n > 0)
		config_redis_free(&sa[--n]);
	free(sa);
	assert_int_equal(config_parse_sentinels(" , ", &sa, &n, &err), -1);
	assert_string_equal(err, "no Sentinel address");
	free(err);
}

static void
test_check(void **state)
{
	struct config	*conf;
	char		*err = NULL;

	conf = config_default();
	set_ok(conf, "vm.tls_listen=0.0.0.0:13369");
	assert_int_equal(config_check(conf, &err), -1);
	assert_string_equal(err,
	    "[vm] tls_listen: needs tls_cert and tls_key");
	free(err);
	set_ok(conf, "vm.tls_cert=/c");
	assert_int_equal(config_check(conf, &err), -1);
	assert_string_equal(err,
	    "[vm] tls_listen: needs tls_cert and tls_key");
	free(err);
	set_ok(conf, "vm.tls_key=/k");
	assert_int_equal(config_check(conf, &err), 0);
	/* The console port's telnets uses the same certificate. */
	set_ok(conf, "console.tls_listen=127.0.0.1:13376");
	assert_int_equal(config_check(conf, &err), 0);
	set_ok(conf, "vm.tls_listen=");
	set_ok(conf, "vm.tls_cert=");
	set_ok(conf, "vm.tls_key=");
	assert_int_equal(config_check(conf, &err), -1);
	assert_string_equal(err, "[console] tls_listen: needs [vm] tls_cert "
	    "and tls_key (one certificate for both)");
	free(err);
	set_ok(conf, "console.tls_listen=");
	assert_int_equal(config_check(conf, &err), 0);

	/* Peer link mutual TLS needs certificate, key and CA. */
	set_ok(conf, "cluster.tls_cert=/n1.pem");
	set_ok(conf, "cluster.tls_key=/n1-key.pem");
	assert_int_equal(config_check(conf, &err), -1);
	assert_non_null(strstr(err, "needs all three"));
	free(err);
	set_ok(conf, "cluster.tls_ca=/ca.pem");
	assert_int_equal(config_check(conf, &err), 0);
	set_ok(conf, "cluster.tls_cert=");
	set_ok(conf, "cluster.tls_key=");
	set_ok(conf, "cluster.tls_ca=");

	/* Logins on the console port. */
	set_ok(conf, "console.users_file=/etc/vspcd/users");
	assert_int_equal(config_check(conf, &err), 0);
	set_ok(conf, "console.users_file=");

	/* PROXY headers are read: a balancer's address is accepted. */
	set_ok(conf, "vm.proxy_protocol_from=10.0.0.1, ::1");
	assert_int_equal(config_check(conf, &err), 0);
	set_ok(conf, "vm.proxy_protocol_from=");

	/* Cluster mode needs the shared secret. */
	set_ok(conf, "cluster.redis=redis://127.0.0.1:6379/0");
	assert_int_equal(config_check(conf, &err), -1);
	assert_string_equal(err, "[cluster] secret_file: cluster mode needs "
	    "the file with the cluster's shared secret");
	free(err);
	set_ok(conf, "cluster.secret_file=/etc/vspcd/secret");
	assert_int_equal(config_check(conf, &err), 0);
	/* One way to reach Redis, not two. */
	set_ok(conf, "cluster.sentinels=10.0.0.1:26379");
	assert_int_equal(config_check(conf, &err), -1);
	assert_string_equal(err, "[cluster] redis and sentinels: set one of "
	    "them, not both");
	free(err);
	set_ok(conf, "cluster.redis=");
	assert_int_equal(config_check(conf, &err), -1);
	assert_non_null(strstr(err, "[cluster] sentinels: needs master_name"));
	free(err);
	set_ok(conf, "cluster.master_name=vspc");
	assert_int_equal(config_check(conf, &err), 0);
	/* The list is normalised like the other lists. */
	set_ok(conf, "cluster.sentinels=10.0.0.1:26379  [::1],s3:1");
	assert_string_equal(conf->cluster_sentinels,
	    "10.0.0.1:26379, [::1], s3:1");
	assert_int_equal(config_check(conf, &err), 0);
	/* Addresses and URLs are checked as they are read. */
	assert_int_equal(config_set(conf, "cluster.sentinels=10.0.0.1:99999",
	    &err), -1);
	assert_string_equal(err, "-o cluster.sentinels=10.0.0.1:99999: "
	    "[cluster] sentinels: bad port in \"10.0.0.1:99999\"");
	free(err);
	assert_string_equal(conf->cluster_sentinels,
	    "10.0.0.1:26379, [::1], s3:1");
	set_ok(conf, "cluster.sentinels=");
	assert_int_equal(config_set(conf, "cluster.redis=rediss://r1:6380",
	    &err), -1);
	assert_non_null(strstr(err, "[cluster] redis: \"rediss://r1:6380\": "
	    "TLS to Redis (rediss://) is not supported"));
	free(err);
	assert_int_equal(config_check(conf, &err), 0);

	/* A node must live longer than two missed heartbeats. */
	set_ok(conf, "cluster.heartbeat=3");
	set_ok(conf, "cluster.node_timeout=6");
	assert_int_equal(config_check(conf, &err), -1);
	assert_string_equal(err, "[cluster] node_timeout: 6 must be more "
	    "than twice heartbeat (3)");
	free(err);
	set_ok(conf, "cluster.node_timeout=7");
	assert_int_equal(config_check(conf, &err), 0);
	assert_int_equal(config_set(conf, "cluster.peer_frame_max=1k", &err),
	    -1);
	assert_string_equal(err, "-o cluster.peer_frame_max=1k: [cluster] "
	    "peer_frame_max: 1k is below the minimum 64k");
	free(err);

	set_ok(conf, "console.listen=0.0.0.0:13370");
	assert_int_equal(config_check(conf, &err), -1);
	assert_string_equal(err, "[console] listen: 0.0.0.0:13370 collides "
	    "with [vm] listen 0.0.0.0:13370");
	free(err);
	/* A wildcard collides with a specific address on the same port. */
	set_ok(conf, "console.listen=127.0.0.1:13370");
	assert_int_equal(config_check(conf, &err), -1);
	free(err);
	set_ok(conf, "console.listen=127.0.0.1:13372, [::1]:13372");
	assert_int_equal(config_check(conf, &err), 0);
	set_ok(conf, "http.listen=[::]:13372");
	assert_int_equal(config_check(conf, &err), -1);
	assert_string_equal(err, "[http] listen: [::]:13372 collides "
	    "with [console] listen [::1]:13372");
	free(err);
	set_ok(conf, "http.listen=");
	/* Two addresses of one key, and other ports, are fine apart. */
	set_ok(conf, "vm.listen=10.0.0.1:1, 10.0.0.2:1, [::]:13370");
	assert_int_equal(config_check(conf, &err), 0);
	set_ok(conf, "vm.listen=10.0.0.1:1, 10.0.0.1:1");
	assert_int_equal(config_check(conf, &err), -1);
	free(err);
	config_free(conf);
}

static void
round_trip(struct config *conf)
{
	struct config	*again;
	char		*one, *two, *err = NULL;
	FILE		*fp;
	char		 path[PATH_MAX + 32];

	one = print_conf(conf);
	snprintf(path, sizeof path, "%s/printed.conf", tmpdir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(one, fp);
	fclose(fp);

	again = config_default();
	set_ok(again, "node.id=other");
	if (config_load(again, path, &err) != 0) {
		print_error("%s\n%s", err, one);
		fail();
	}
	two = print_conf(again);
	assert_string_equal(one, two);
	free(one);
	free(two);
	config_free(again);
}

static void
test_print(void **state)
{
	struct config	*conf;
	char		*out, allow[1024], arg[1100];
	size_t		 len = 0;
	int		 i;

	conf = config_default();
	set_ok(conf, "node.id=n1");
	out = print_conf(conf);
	assert_non_null(strstr(out, "\n[node]\nid = n1\n"));
	assert_non_null(strstr(out, "\n[vm]\nlisten = 0.0.0.0:13370\n"));
	assert_non_null(strstr(out, "\ntls_listen =\n"));
	assert_non_null(strstr(out, "\nhistory = 256k\n"));
	assert_non_null(strstr(out, "\nmax_size = 16M\n"));
	assert_non_null(strstr(out, "\nexpire = 1d\n"));
	assert_non_null(strstr(out, "\nescape = ^]\n"));
	assert_non_null(strstr(out, "\nactivity = no\n"));
	assert_non_null(strstr(out, "\nnegotiation_timeout = 30\n"));
	free(out);
	round_trip(conf);

	/* Awkward values survive the trip. */
	set_ok(conf, "console.escape=0x3b");
	round_trip(conf);
	set_ok(conf, "console.escape=0x80");
	round_trip(conf);
	set_ok(conf, "console.escape=#");
	round_trip(conf);
	set_ok(conf, "vm.hold=1025");
	set_ok(conf, "vm.expire=90");
	set_ok(conf, "log.max_size=0");
	set_ok(conf, "log.activity=on");
	set_ok(conf, "vm.listen=*:1, :2 [::]:3");
	for (i = 0; i < 40; i++)
		len += snprintf(allow + len, sizeof allow - len,
		    "%s10.%d.0.0/16", i ? " " : "", i);
	assert_true(strlen(allow) > 200);
	snprintf(arg, sizeof arg, "vm.allow=%s", allow);
	set_ok(conf, arg);
	set_ok(conf, "vm.proxy_protocol_from=::1");
	round_trip(conf);
	config_free(conf);
}

static void
uri_ok(const struct config *conf, const char *uri, const char *label)
{
	char	*got = (char *)1;

	if (config_uri_accepted(conf, uri, strlen(uri), &got) != 1) {
		print_error("refused \"%s\"\n", uri);
		fail();
	}
	if (label == NULL)
		assert_null(got);
	else {
		assert_non_null(got);
		assert_string_equal(got, label);
	}
	free(got);
}

static void
uri_bad(const struct config *conf, const char *uri)
{
	char	*got = (char *)1;

	if (config_uri_accepted(conf, uri, strlen(uri), &got) != 0) {
		print_error("accepted \"%s\"\n", uri);
		fail();
	}
	assert_null(got);
}

static void
test_uri(void **state)
{
	struct config	*conf;
	char		 label[80];

	conf = config_default();
	uri_ok(conf, "vSPC.py", NULL);
	uri_ok(conf, "vSPC.py?port=com2", "com2");
	uri_ok(conf, "vSPC.py?foo=1&port=x", "x");
	uri_ok(conf, "vSPC.py?port=a.b-c_9&foo=", "a.b-c_9");
	uri_ok(conf, "vSPC.py?foo=bar", NULL);
	uri_bad(conf, "vSPC.py?port=bad label");
	uri_bad(conf, "vSPC.py?port=");
	uri_bad(conf, "vSPC.py?port=a/b");
	uri_bad(conf, "vSPC.py?port=a&port=b");
	uri_bad(conf, "vSPC.py?");
	uri_bad(conf, "vSPC.py?foo");
	uri_bad(conf, "vSPC.py?=1");
	uri_bad(conf, "vSPC.py?port=a&");
	uri_bad(conf, "vSPC.pyx");
	uri_bad(conf, "vspc.py");
	uri_bad(conf, "other");
	uri_bad(conf, "");
	memset(label, 'a', 64);
	label[64] = '\0';
	{
		char	uri[100];

		snprintf(uri, sizeof uri, "vSPC.py?port=%s", label);
		uri_ok(conf, uri, label);
		snprintf(uri, sizeof uri, "vSPC.py?port=%sa", label);
		uri_bad(conf, uri);
	}
	/* Not NUL-terminated: only len bytes count. */
	assert_int_equal(config_uri_accepted(conf, "vSPC.pyXYZ", 7, NULL), 1);
	/* A NUL or control byte is never accepted. */
	assert_int_equal(config_uri_accepted(conf, "vSPC.py\0", 8, NULL), 0);

	set_ok(conf, "vm.accept_uri=a, b");
	uri_ok(conf, "a", NULL);
	uri_ok(conf, "b?port=p1", "p1");
	uri_bad(conf, "vSPC.py");

	set_ok(conf, "vm.accept_uri=vSPC.py, *");
	uri_ok(conf, "anything/at all", NULL);
	uri_ok(conf, "x?port=p2", "p2");
	uri_ok(conf, "x?port=bad label", NULL);
	uri_ok(conf, "vSPC.py?port=p3", "p3");
	config_free(conf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_sizes_times),
		cmocka_unit_test(test_bools_escape),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_redis_url),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_print),
		cmocka_unit_test(test_uri),
	};

	log_init(1, 0);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
