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
 * The configuration: an INI file read with inih, "-o section.key=value"
 * overrides, cross-key checks (config-check.c), and the normalised
 * print-out of "vspcd -nv".
 *
 * Every key is a row of config_keys[]: its section, name, type, field and
 * default written as text.  config_default() applies the defaults through
 * the same code that reads the file, so a default can never be a value the
 * parser would refuse, and config_print() writes values in a form the
 * parser reads back to the same print-out.  The parsers and formatters of
 * values are in config-parse.c.
 *
 * inih as packaged by Debian calls the handler without a line number, so
 * the file is fed through our own reader, which counts lines, checks
 * section headers and syntax itself (so that every error names the line it
 * is on) and handles lines longer than inih's line buffer.
 *
 * The string of a key is never NULL: an unset one is "".  conf->file is
 * NULL until config_load() is called.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "vspcd.h"
#include "config-int.h"

static const struct config_key config_keys[] = {
	{ "node", "id", CONFIG_IDENT, CF(node_id), 0, 0, 0, 0, NULL },

	{ "vm", "listen", CONFIG_LISTEN, CF(vm_listen), VSPC_PORT_VM,
	    0, 0, 0, "0.0.0.0:13370" },
	{ "vm", "tls_listen", CONFIG_LISTEN, CF(vm_tls_listen), 13369,
	    0, 0, 0, "" },
	{ "vm", "tls_cert", CONFIG_STR, CF(vm_tls_cert), 0, 0, 0, 0, "" },
	{ "vm", "tls_key", CONFIG_STR, CF(vm_tls_key), 0, 0, 0, 0, "" },
	{ "vm", "accept_uri", CONFIG_URIS, CF(vm_accept_uri), 0, 0, 0, 0,
	    "vSPC.py" },
	{ "vm", "allow", CONFIG_ACL, CF(vm_allow_text), CF(vm_allow),
	    0, 0, 0, "0.0.0.0/0, ::/0" },
	{ "vm", "proxy_protocol_from", CONFIG_ACL, CF(vm_proxy_from_text),
	    CF(vm_proxy_from), 0, 0, 0, "" },
	{ "vm", "vmotion_token_ttl", CONFIG_TIME, CF(vm_token_ttl), 0,
	    1, 3600, 0, "120" },
	{ "vm", "negotiation_timeout", CONFIG_TIME,
	    CF(vm_negotiation_timeout), 0, 1, 3600, 0, "30" },
	{ "vm", "hold", CONFIG_SIZE, CF(vm_hold), 0, KSIZE, GSIZE, 0,
	    "64k" },
	{ "vm", "input_buffer", CONFIG_SIZE, CF(vm_input_max), 0,
	    KSIZE, GSIZE, 0, "64k" },
	{ "vm", "subnegotiation_max", CONFIG_SIZE, CF(vm_sb_max), 0,
	    256, MSIZE, 0, "4k" },
	{ "vm", "expire", CONFIG_TIME, CF(vm_expire), 0, 0, TIME_MAX, 0,
	    "24h" },
	{ "vm", "max_connections", CONFIG_UINT, CF(vm_max_connections), 0,
	    0, 10000000, 0, "0" },
	{ "vm", "max_per_source", CONFIG_UINT, CF(vm_max_per_source), 0,
	    0, 10000000, 0, "0" },
	{ "vm", "max_per_source_exempt", CONFIG_ACL, CF(vm_exempt_text),
	    CF(vm_exempt), 0, 0, 0, "127.0.0.0/8, ::1/128" },

	{ "console", "listen", CONFIG_LISTEN, CF(console_listen),
	    VSPC_PORT_CONSOLE, 0, 0, 0, "127.0.0.1:13372" },
	{ "console", "tls_listen", CONFIG_LISTEN, CF(console_tls_listen),
	    13376, 0, 0, 0, "" },
	{ "console", "allow", CONFIG_ACL, CF(console_allow_text),
	    CF(console_allow), 0, 0, 0, "0.0.0.0/0, ::/0" },
	{ "console", "max_connections", CONFIG_UINT,
	    CF(console_max_connections), 0, 0, 10000000, 0, "1024" },
	{ "console", "max_per_source", CONFIG_UINT,
	    CF(console_max_per_source), 0, 0, 10000000, 0, "256" },
	{ "console", "max_per_source_exempt", CONFIG_ACL,
	    CF(console_exempt_text), CF(console_exempt), 0, 0, 0,
	    "127.0.0.0/8, ::1/128" },
	{ "console", "login_timeout", CONFIG_TIME, CF(console_login_timeout),
	    0, 1, 3600, 0, "60" },
	{ "console", "login_attempts", CONFIG_UINT,
	    CF(console_login_attempts), 0, 1, 100, 0, "3" },
	{ "console", "replay_lines", CONFIG_UINT, CF(console_replay_lines),
	    0, 0, 10000, 0, "20" },
	{ "console", "history", CONFIG_SIZE, CF(console_history), 0,
	    KSIZE, GSIZE, 0, "256k" },
	{ "console", "users_file", CONFIG_STR, CF(console_users_file), 0,
	    0, 0, 0, "" },
	{ "console", "escape", CONFIG_CHAR, CF(console_escape), 0, 0, 0, 0,
	    "^]" },
	{ "console", "client_buffer", CONFIG_SIZE,
	    CF(console_client_buffer), 0, KSIZE, GSIZE, 0, "64k" },
	{ "console", "stuck_timeout", CONFIG_TIME,
	    CF(console_stuck_timeout), 0, 0, TIME_MAX, 0, "60" },
	{ "console", "max_clients", CONFIG_UINT, CF(console_max_clients),
	    0, 1, 100000, 0, "64" },
	{ "console", "idle_timeout", CONFIG_TIME, CF(console_idle_timeout),
	    0, 0, TIME_MAX, 0, "0" },

	{ "compat", "listen", CONFIG_LISTEN, CF(compat_listen),
	    VSPC_PORT_COMPAT, 0, 0, 0, "127.0.0.1:13371" },
	{ "compat", "allow", CONFIG_ACL, CF(compat_allow_text),
	    CF(compat_allow), 0, 0, 0, "0.0.0.0/0, ::/0" },
	{ "compat", "max_connections", CONFIG_UINT,
	    CF(compat_max_connections), 0, 0, 10000000, 0, "1024" },
	{ "compat", "max_per_source", CONFIG_UINT,
	    CF(compat_max_per_source), 0, 0, 10000000, 0, "256" },
	{ "compat", "max_per_source_exempt", CONFIG_ACL,
	    CF(compat_exempt_text), CF(compat_exempt), 0, 0, 0,
	    "127.0.0.0/8, ::1/128" },

	{ "log", "dir", CONFIG_STR, CF(log_dir), 0, 0, 0, 0,
	    "/var/log/vspcd/consoles" },
	{ "log", "name", CONFIG_TEMPLATE, CF(log_name), 0, 0, 0, 0,
	    "%n-%k.log" },
	{ "log", "max_size", CONFIG_SIZE, CF(log_max_size), 0,
	    4 * KSIZE, 1024 * GSIZE, CK_ZERO_OK, "16M" },
	{ "log", "keep", CONFIG_UINT, CF(log_keep), 0, 0, 100000, 0, "0" },
	{ "log", "mark", CONFIG_TIME, CF(log_mark), 0, 0, TIME_MAX, 0,
	    "0" },
	{ "log", "activity", CONFIG_BOOL, CF(log_activity), 0, 0, 0, 0,
	    "no" },
	{ "log", "open_files", CONFIG_UINT, CF(log_open_files), 0,
	    0, 65536, 0, "0" },

	{ "cluster", "redis", CONFIG_REDIS, CF(cluster_redis), 0, 0, 0, 0,
	    "" },
	{ "cluster", "sentinels", CONFIG_HOSTS, CF(cluster_sentinels), 0,
	    0, 0, 0, "" },
	{ "cluster", "master_name", CONFIG_STR, CF(cluster_master_name), 0,
	    0, 0, 0, "" },
	{ "cluster", "sentinel_password", CONFIG_STR,
	    CF(cluster_sentinel_password), 0, 0, 0, 0, "" },
	{ "cluster", "name", CONFIG_IDENT, CF(cluster_name), 0, 0, 0, 0,
	    "default" },
	{ "cluster", "secret_file", CONFIG_STR, CF(cluster_secret_file), 0,
	    0, 0, 0, "" },
	{ "cluster", "peer_listen", CONFIG_LISTEN, CF(cluster_peer_listen),
	    13373, 0, 0, 0, "0.0.0.0:13373" },
	{ "cluster", "peer_advertise", CONFIG_STR,
	    CF(cluster_peer_advertise), 0, 0, 0, 0, "" },
	{ "cluster", "heartbeat", CONFIG_TIME, CF(cluster_heartbeat), 0,
	    1, 3600, 0, "1" },
	{ "cluster", "node_timeout", CONFIG_TIME, CF(cluster_node_timeout),
	    0, 3, 86400, 0, "5" },
	{ "cluster", "redis_timeout", CONFIG_TIME, CF(cluster_redis_timeout),
	    0, 1, 3600, 0, "2" },
	{ "cluster", "peer_ping", CONFIG_TIME, CF(cluster_peer_ping), 0,
	    1, 3600, 0, "5" },
	{ "cluster", "peer_frame_max", CONFIG_SIZE, CF(cluster_peer_frame_max),
	    0, 64 * KSIZE, GSIZE, 0, "8M" },
	{ "cluster", "peer_allow", CONFIG_ACL, CF(cluster_peer_allow_text),
	    CF(cluster_peer_allow), 0, 0, 0, "0.0.0.0/0, ::/0" },
	{ "cluster", "tls_cert", CONFIG_STR, CF(cluster_tls_cert), 0, 0, 0, 0,
	    "" },
	{ "cluster", "tls_key", CONFIG_STR, CF(cluster_tls_key), 0, 0, 0, 0,
	    "" },
	{ "cluster", "tls_ca", CONFIG_STR, CF(cluster_tls_ca), 0, 0, 0, 0,
	    "" },

	{ "http", "listen", CONFIG_LISTEN, CF(http_listen), 13374,
	    0, 0, 0, "127.0.0.1:13374" },
	{ "http", "allow", CONFIG_ACL, CF(http_allow_text), CF(http_allow),
	    0, 0, 0, "0.0.0.0/0, ::/0" },

	{ "control", "socket", CONFIG_STR, CF(control_socket), 0, 0, 0, 0,
	    "/run/vspcd/control.sock" },
	{ "control", "listen", CONFIG_LISTEN, CF(control_listen), 13375,
	    0, 0, 0, "" },
};
#define NKEYS	nitems(config_keys)

/* State of one file being read. */
struct config_parse {
	struct config	*conf;
	FILE		*fp;
	const char	*file;
	u_int		 line;
	char		 section[64];	/* Current section, as read. */
	char		*error;
	char		*buf;
	size_t		 bufsize;
};

static void	config_parse_error(struct config_parse *, const char *, ...)
		    __attribute__((__format__ (printf, 2, 3)));
static int	config_handler(void *, const char *, const char *,
		    const char *);

/* The key section.name, or NULL. */
const struct config_key *
config_find(const char *section, const char *name)
{
	size_t	i;

	for (i = 0; i < NKEYS; i++) {
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].name, name) == 0)
			return (&config_keys[i]);
	}
	return (NULL);
}

static int
config_section_known(const char *section)
{
	size_t	i;

	for (i = 0; i < NKEYS; i++) {
		if (strcmp(config_keys[i].section, section) == 0)
			return (1);
	}
	return (0);
}

/* The string field of a key in conf. */
char **
config_str(struct config *conf, const struct config_key *k)
{
	return ((char **)((char *)conf + k->off));
}

static int
config_setvalue(struct config *conf, const struct config_key *k,
    const char *value, char **msg)
{
	char		**sp = NULL, *norm = NULL, *emsg = NULL, buf[32];
	struct acl	 acl, *ap;
	struct redis_addr ra, *hosts;
	u_int		 nhosts;
	size_t		 size;
	uint64_t	 v = 0, n;
	u_int		 t;
	u_char		 c;

	switch (k->type) {
	case CONFIG_STR:
		/* A file cannot say it (";" after a blank starts a comment). */
		if (strstr(value, " ;") != NULL ||
		    strstr(value, "\t;") != NULL) {
			xasprintf(&emsg, "\"%s\": a blank before ';' would read "
			    "back as a comment", value);
			goto bad;
		}
		norm = xstrdup(value);
		break;
	case CONFIG_IDENT:
		if (config_check_ident(value) != 0) {
			xasprintf(&emsg, "bad name \"%s\" (1 to %d of "
			    "A-Z a-z 0-9 _ . -)", value, IDENT_MAX);
			goto bad;
		}
		norm = xstrdup(value);
		break;
	case CONFIG_LISTEN:
		norm = config_list_normalise(value);
		if (config_check_listen(norm, (int)k->aux, &emsg) != 0)
			goto bad;
		break;
	case CONFIG_ACL:
		norm = config_list_normalise(value);
		if (acl_parse(&acl, norm, &emsg) != 0)
			goto bad;
		ap = (struct acl *)((char *)conf + k->aux);
		acl_free(ap);
		*ap = acl;
		break;
	case CONFIG_URIS:
		norm = config_list_normalise(value);
		if (config_check_uris(norm, &emsg) != 0)
			goto bad;
		break;
	case CONFIG_TEMPLATE:
		if (config_check_template(value, &emsg) != 0)
			goto bad;
		norm = xstrdup(value);
		break;
	case CONFIG_REDIS:
		if (*value != '\0') {
			if (config_parse_redis(value, &ra, &emsg) != 0)
				goto bad;
			config_redis_free(&ra);
		}
		norm = xstrdup(value);
		break;
	case CONFIG_HOSTS:
		norm = config_list_normalise(value);
		if (*norm != '\0') {
			if (config_parse_sentinels(norm, &hosts, &nhosts,
			    &emsg) != 0)
				goto bad;
			while (nhosts > 0)
				config_redis_free(&hosts[--nhosts]);
			free(hosts);
		}
		break;
	case CONFIG_SIZE:
		if (config_parse_size(value, &size) != 0) {
			xasprintf(&emsg, "bad size \"%s\" (a number with "
			    "an optional k, M or G)", value);
			goto bad;
		}
		v = size;
		break;
	case CONFIG_TIME:
		if (config_parse_time(value, &t) != 0) {
			xasprintf(&emsg, "bad time \"%s\" (seconds, or a "
			    "number with s, m, h or d)", value);
			goto bad;
		}
		v = t;
		break;
	case CONFIG_UINT:
		if (config_parse_uint(value, &n) != 0 || n > UINT_MAX) {
			xasprintf(&emsg, "bad number \"%s\"", value);
			goto bad;
		}
		v = n;
		break;
	case CONFIG_BOOL:
		if (strcasecmp(value, "yes") == 0 ||
		    strcasecmp(value, "true") == 0 ||
		    strcasecmp(value, "on") == 0 || strcmp(value, "1") == 0)
			v = 1;
		else if (strcasecmp(value, "no") == 0 ||
		    strcasecmp(value, "false") == 0 ||
		    strcasecmp(value, "off") == 0 || strcmp(value, "0") == 0)
			v = 0;
		else {
			xasprintf(&emsg, "bad boolean \"%s\" (yes or no)",
			    value);
			goto bad;
		}
		*(int *)((char *)conf + k->off) = v;
		return (0);
	case CONFIG_CHAR:
		if (config_parse_char(value, &c) != 0) {
			xasprintf(&emsg, "bad key \"%s\" (^X, one character "
			    "or 0xNN)", value);
			goto bad;
		}
		if (c == 0 || c == '\r' || c == '\n' || c == 0xff) {
			xasprintf(&emsg, "\"%s\" cannot be the escape key",
			    value);
			goto bad;
		}
		*((u_char *)conf + k->off) = c;
		return (0);
	case CONFIG_TYPE_MAX:
		fatalx("%s: bad type", __func__);
	}

	if (norm != NULL) {
		sp = config_str(conf, k);
		free(*sp);
		*sp = norm;
		return (0);
	}

	/* Numbers. */
	if (v < k->min && !(v == 0 && (k->flags & CK_ZERO_OK))) {
		if (k->type == CONFIG_SIZE)
			config_fmt_size(k->min, buf, sizeof buf);
		else
			snprintf(buf, sizeof buf, "%llu",
			    (unsigned long long)k->min);
		xasprintf(&emsg, "%s is below the minimum %s%s", value, buf,
		    (k->flags & CK_ZERO_OK) ? " (0 = off)" : "");
		goto bad;
	}
	if (v > k->max) {
		if (k->type == CONFIG_SIZE)
			config_fmt_size(k->max, buf, sizeof buf);
		else if (k->type == CONFIG_TIME)
			config_fmt_time(k->max, buf, sizeof buf);
		else
			snprintf(buf, sizeof buf, "%llu",
			    (unsigned long long)k->max);
		xasprintf(&emsg, "%s is above the maximum %s", value, buf);
		goto bad;
	}
	if (k->type == CONFIG_SIZE)
		*(size_t *)((char *)conf + k->off) = v;
	else
		*(u_int *)((char *)conf + k->off) = v;
	return (0);

bad:
	xasprintf(msg, "[%s] %s: %s", k->section, k->name, emsg);
	free(emsg);
	free(norm);
	return (-1);
}

static int
config_setkey(struct config *conf, const char *section, const char *name,
    const char *value, char **msg)
{
	const struct config_key	*k;

	if (!config_section_known(section)) {
		xasprintf(msg, "unknown section [%s]", section);
		return (-1);
	}
	if ((k = config_find(section, name)) == NULL) {
		xasprintf(msg, "unknown key \"%s\" in [%s]", name, section);
		return (-1);
	}
	return (config_setvalue(conf, k, value, msg));
}

/* Return a configuration with every key at its default. */
struct config *
config_default(void)
{
	struct config	*conf;
	char		 host[256], *msg;
	size_t		 i;

	conf = xcalloc(1, sizeof *conf);
	for (i = 0; i < NKEYS; i++) {
		if (config_keys[i].def == NULL)
			continue;
		if (config_setvalue(conf, &config_keys[i],
		    config_keys[i].def, &msg) != 0)
			fatalx("%s: %s", __func__, msg);
	}

	/* The node ID defaults to the host name, made valid. */
	if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	host[IDENT_MAX] = '\0';
	for (i = 0; host[i] != '\0'; i++) {
		if (!isalnum((u_char)host[i]) && host[i] != '.' &&
		    host[i] != '-')
			host[i] = '_';
	}
	conf->node_id = xstrdup(host);
	return (conf);
}

static void
config_parse_error(struct config_parse *cp, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	if (cp->error != NULL)
		return;
	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	xasprintf(&cp->error, "%s:%u: %s", cp->file, cp->line, msg);
	free(msg);
}

/* Check a section header the way inih reads it, and remember it. */
static int
config_reader_section(struct config_parse *cp, char *p)
{
	char	*end;

	if ((end = strchr(p + 1, ']')) == NULL) {
		config_parse_error(cp, "missing ']' in section header");
		return (-1);
	}
	*end = '\0';
	if (!config_section_known(p + 1)) {
		config_parse_error(cp, "unknown section [%s]", p + 1);
		return (-1);
	}
	if (strlen(p + 1) >= sizeof cp->section) {
		config_parse_error(cp, "unknown section [%s]", p + 1);
		return (-1);
	}
	strcpy(cp->section, p + 1);
	return (0);
}

/*
 * Find the end of a key as inih does: the first '=' or ':', or a ';' after
 * white space (an inline comment).  Return NULL if there is no separator.
 */
static char *
config_find_sep(char *p)
{
	int	was_space = 0;

	for (; *p != '\0'; p++) {
		if (*p == '=' || *p == ':')
			return (p);
		if (was_space && *p == ';')
			return (NULL);
		was_space = isspace((u_char)*p);
	}
	return (NULL);
}

/*
 * A "key = value" line too long for inih's buffer: read it here, with the
 * same rules for comments and white space, and hand it to the handler.
 */
static void
config_reader_long(struct config_parse *cp, char *p)
{
	char	*sep, *value, *end, *q;
	int	 was_space = 0;

	sep = config_find_sep(p);	/* Checked by the caller. */
	*sep = '\0';
	for (end = sep; end > p && isspace((u_char)end[-1]); end--)
		end[-1] = '\0';
	value = sep + 1;
	for (q = value; *q != '\0'; q++) {
		if (was_space && *q == ';') {
			*q = '\0';
			break;
		}
		was_space = isspace((u_char)*q);
	}
	while (isspace((u_char)*value))
		value++;
	for (end = value + strlen(value); end > value &&
	    isspace((u_char)end[-1]); end--)
		end[-1] = '\0';
	config_handler(cp, cp->section, p, value);
}

/*
 * inih's reader: one line per call, so that cp->line is the line the
 * handler is called for.  Leading white space is removed, which turns off
 * inih's continuation lines (they would silently join values).
 */
static char *
config_reader(char *str, int num, void *arg)
{
	struct config_parse	*cp = arg;
	ssize_t			 n;
	char			*p;

	if (cp->error != NULL)
		return (NULL);
	errno = 0;
	if ((n = getline(&cp->buf, &cp->bufsize, cp->fp)) == -1) {
		if (ferror(cp->fp)) {
			cp->line++;
			config_parse_error(cp, "%s", strerror(errno));
		}
		return (NULL);
	}
	cp->line++;
	if (memchr(cp->buf, '\0', n) != NULL) {
		config_parse_error(cp, "NUL byte in line");
		return (NULL);
	}
	p = cp->buf;
	if (cp->line == 1 && strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (n > 0 && isspace((u_char)cp->buf[n - 1]))
		cp->buf[--n] = '\0';
	while (isspace((u_char)*p))
		p++;

	if (*p == '\0' || *p == ';' || *p == '#')
		p = "";
	else if (*p == '[') {
		if (config_reader_section(cp, p) != 0)
			return (NULL);
		snprintf(str, num, "[%s]\n", cp->section);
		return (str);
	} else if (config_find_sep(p) == NULL) {
		config_parse_error(cp, "syntax error: expected key = value");
		return (NULL);
	} else if (strlen(p) + 2 > (size_t)num) {
		config_reader_long(cp, p);
		if (cp->error != NULL)
			return (NULL);
		p = "";
	}
	snprintf(str, num, "%s\n", p);
	return (str);
}

static int
config_handler(void *arg, const char *section, const char *name,
    const char *value)
{
	struct config_parse	*cp = arg;
	char			*msg;

	if (cp->error != NULL)
		return (1);
	if (*section == '\0') {
		config_parse_error(cp, "\"%s\" is outside a section", name);
		return (1);
	}
	if (config_setkey(cp->conf, section, name, value, &msg) != 0) {
		config_parse_error(cp, "%s", msg);
		free(msg);
	}
	/* Always go on: the reader stops at the next line on error. */
	return (1);
}

/*
 * Read the file path into conf (which holds defaults or an earlier
 * state).  On error *err is "FILE:LINE: message", malloc'd.
 */
int
config_load(struct config *conf, const char *path, char **err)
{
	struct config_parse	 cp;
	int			 rv;

	*err = NULL;
	free(conf->file);
	conf->file = xstrdup(path);

	memset(&cp, 0, sizeof cp);
	cp.conf = conf;
	cp.file = path;
	if ((cp.fp = fopen(path, "re")) == NULL) {
		xasprintf(err, "%s: %s", path, strerror(errno));
		return (-1);
	}
	rv = ini_parse_stream(config_reader, &cp, config_handler, &cp);
	fclose(cp.fp);
	free(cp.buf);
	if (cp.error != NULL) {
		*err = cp.error;
		return (-1);
	}
	if (rv != 0) {
		if (rv > 0)
			xasprintf(err, "%s:%d: syntax error", path, rv);
		else
			xasprintf(err, "%s: cannot parse", path);
		return (-1);
	}
	return (0);
}

/* Apply one "-o section.key=value" override. */
int
config_set(struct config *conf, const char *arg, char **err)
{
	char	*copy, *section, *eq, *dot, *name, *value, *end, *msg;
	int	 rv;

	*err = NULL;
	copy = xstrdup(arg);
	section = copy;
	while (isspace((u_char)*section))
		section++;
	if ((eq = strchr(copy, '=')) == NULL ||
	    (dot = strchr(copy, '.')) == NULL || dot > eq) {
		xasprintf(err, "-o %s: expected section.key=value", arg);
		free(copy);
		return (-1);
	}
	*eq = '\0';
	*dot = '\0';
	name = dot + 1;
	value = eq + 1;
	while (isspace((u_char)*name))
		name++;
	for (end = eq; end > name && isspace((u_char)end[-1]); end--)
		end[-1] = '\0';
	while (isspace((u_char)*value))
		value++;
	for (end = value + strlen(value); end > value &&
	    isspace((u_char)end[-1]); end--)
		end[-1] = '\0';
	rv = config_setkey(conf, section, name, value, &msg);
	if (rv != 0) {
		xasprintf(err, "-o %s: %s", arg, msg);
		free(msg);
	}
	free(copy);
	return (rv);
}

/* Print every key, normalised, as a file config_load() reads back. */
void
config_print(const struct config *conf, FILE *fp)
{
	const struct config_key	*k;
	const char		*section = NULL;
	const char		*cp = (const char *)conf;
	char			 buf[64];
	size_t			 i;

	fprintf(fp, "# vspcd configuration, normalised\n");
	for (i = 0; i < NKEYS; i++) {
		k = &config_keys[i];
		if (section == NULL || strcmp(section, k->section) != 0) {
			fprintf(fp, "\n[%s]\n", k->section);
			section = k->section;
		}
		switch (k->type) {
		case CONFIG_SIZE:
			config_fmt_size(*(const size_t *)(cp + k->off), buf,
			    sizeof buf);
			break;
		case CONFIG_TIME:
			config_fmt_time(*(const u_int *)(cp + k->off), buf,
			    sizeof buf);
			break;
		case CONFIG_UINT:
			snprintf(buf, sizeof buf, "%u",
			    *(const u_int *)(cp + k->off));
			break;
		case CONFIG_BOOL:
			snprintf(buf, sizeof buf, "%s",
			    *(const int *)(cp + k->off) ? "yes" : "no");
			break;
		case CONFIG_CHAR:
			config_fmt_char(*(const u_char *)(cp + k->off), buf,
			    sizeof buf);
			break;
		default:
			/* "= ;x" would read back as a comment: no space. */
			fprintf(fp, "%s =%s%s\n", k->name,
			    **(char * const *)(cp + k->off) != '\0' &&
			    **(char * const *)(cp + k->off) != ';' ? " " : "",
			    *(char * const *)(cp + k->off));
			continue;
		}
		fprintf(fp, "%s = %s\n", k->name, buf);
	}
}

/* Free a configuration. */
void
config_free(struct config *conf)
{
	const struct config_key	*k;
	size_t			 i;

	if (conf == NULL)
		return;
	for (i = 0; i < NKEYS; i++) {
		k = &config_keys[i];
		switch (k->type) {
		case CONFIG_ACL:
			acl_free((struct acl *)((char *)conf + k->aux));
			/* FALLTHROUGH */
		case CONFIG_STR:
		case CONFIG_IDENT:
		case CONFIG_LISTEN:
		case CONFIG_URIS:
		case CONFIG_TEMPLATE:
		case CONFIG_REDIS:
		case CONFIG_HOSTS:
			free(*config_str(conf, k));
			break;
		default:
			break;
		}
	}
	free(conf->file);
	free(conf);
}
