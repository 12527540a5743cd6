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
 * overrides, cross-key checks, and the normalised print-out of "vspcd -nv".
 *
 * Every key is a row of config_keys[]: its section, name, type, field and
 * default written as text.  config_default() applies the defaults through
 * the same code that reads the file, so a default can never be a value the
 * parser would refuse, and config_print() writes values in a form the
 * parser reads back to the same print-out.
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

enum config_type {
	CONFIG_STR,		/* Any text, may be empty. */
	CONFIG_IDENT,		/* 1 to 64 of [A-Za-z0-9_.-]. */
	CONFIG_LISTEN,		/* List of listen addresses, may be empty. */
	CONFIG_ACL,		/* Address list, text and parsed. */
	CONFIG_URIS,		/* Accepted service URIs. */
	CONFIG_TEMPLATE,	/* Log file name template. */
	CONFIG_REDIS,		/* Redis URL, may be empty. */
	CONFIG_HOSTS,		/* List of host[:port], may be empty. */
	CONFIG_SIZE,
	CONFIG_TIME,
	CONFIG_UINT,
	CONFIG_BOOL,
	CONFIG_CHAR,
	CONFIG_TYPE_MAX
};

struct config_key {
	const char	*section;
	const char	*name;
	enum config_type type;
	size_t		 off;		/* Of the field in struct config. */
	size_t		 aux;		/* ACL: struct acl; LISTEN: port. */
	uint64_t	 min;
	uint64_t	 max;
	int		 flags;
#define CK_ZERO_OK	0x1		/* 0 allowed below min (= off). */
	const char	*def;		/* NULL: computed (node id). */
};

#define KSIZE		1024ULL
#define MSIZE		(1024ULL * 1024)
#define GSIZE		(1024ULL * 1024 * 1024)
#define TIME_MAX	(3650U * 86400)		/* Ten years. */
#define IDENT_MAX	64
#define LABEL_MAX	64

#define CF(f)		offsetof(struct config, f)
#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof (a)[0])
#endif

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

/* Listeners bound by a single node; see config_check(). */
static const char *config_listeners[][2] = {
	{ "vm", "listen" },
	{ "vm", "tls_listen" },
	{ "console", "listen" },
	{ "console", "tls_listen" },
	{ "compat", "listen" },
	{ "http", "listen" },
	{ "control", "listen" },
};

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

static const struct config_key *config_find(const char *, const char *);
static int	config_section_known(const char *);
static char   **config_str(struct config *, const struct config_key *);
static int	config_setkey(struct config *, const char *, const char *,
		    const char *, char **);
static int	config_setvalue(struct config *, const struct config_key *,
		    const char *, char **);
static char	*config_list_normalise(const char *);
static int	config_check_listen(const char *, int, char **);
static int	config_check_uris(const char *, char **);
static int	config_check_template(const char *, char **);
static int	config_check_ident(const char *);
static int	config_parse_uint(const char *, uint64_t *);
static int	config_parse_char(const char *, u_char *);
static void	config_fmt_size(uint64_t, char *, size_t);
static void	config_fmt_time(u_int, char *, size_t);
static void	config_fmt_char(u_char, char *, size_t);
static void	config_parse_error(struct config_parse *, const char *, ...)
		    __attribute__((__format__ (printf, 2, 3)));
static char	*config_reader(char *, int, void *);
static int	config_reader_section(struct config_parse *, char *);
static char	*config_find_sep(char *);
static void	config_reader_long(struct config_parse *, char *);
static int	config_handler(void *, const char *, const char *,
		    const char *);
static int	config_addr_clash(const struct sockaddr_storage *,
		    const struct sockaddr_storage *);
static int	config_label_valid(const char *, size_t);
static int	config_query(const char *, size_t, char **);
static int	config_hostport(const char *, size_t, int, struct redis_addr *,
		    char **);
static char	*config_unescape(const char *, size_t);
static int	config_check_cluster(struct config *, char **);

static const struct config_key *
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

static char **
config_str(struct config *conf, const struct config_key *k)
{
	return ((char **)((char *)conf + k->off));
}

/* Parse a non-negative decimal number with no sign and no suffix. */
static int
config_parse_uint(const char *s, uint64_t *v)
{
	uint64_t	n = 0;

	if (!isdigit((u_char)*s))
		return (-1);
	for (; isdigit((u_char)*s); s++) {
		if (n > (UINT64_MAX - 9) / 10)
			return (-1);
		n = n * 10 + (*s - '0');
	}
	if (*s != '\0')
		return (-1);
	*v = n;
	return (0);
}

/* A unit suffix and what it multiplies by. */
struct config_unit {
	char		 suffix;
	uint64_t	 mult;
};

static const struct config_unit config_size_units[] = {
	{ 'k', KSIZE }, { 'K', KSIZE }, { 'm', MSIZE }, { 'M', MSIZE },
	{ 'g', GSIZE }, { 'G', GSIZE }, { '\0', 0 }
};

static const struct config_unit config_time_units[] = {
	{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { '\0', 0 }
};

/* Parse a number with an optional unit suffix, at most max in all. */
static int
config_parse_scaled(const char *s, const struct config_unit *units,
    uint64_t max, uint64_t *out)
{
	const struct config_unit	*u;
	char				*num;
	size_t				 len;
	uint64_t			 v, mult = 1;
	int				 rv;

	if ((len = strlen(s)) == 0)
		return (-1);
	for (u = units; u->suffix != '\0'; u++) {
		if (s[len - 1] == u->suffix) {
			mult = u->mult;
			len--;
			break;
		}
	}
	num = xstrndup(s, len);
	rv = config_parse_uint(num, &v);
	free(num);
	if (rv != 0 || v > max / mult)
		return (-1);
	*out = v * mult;
	return (0);
}

/* Parse a size: a number with an optional k, m or g suffix (1024-based). */
int
config_parse_size(const char *s, size_t *size)
{
	uint64_t	v;

	if (config_parse_scaled(s, config_size_units, SIZE_MAX, &v) != 0)
		return (-1);
	*size = v;
	return (0);
}

/* Parse a time: a number of seconds, or with an s, m, h or d suffix. */
int
config_parse_time(const char *s, u_int *t)
{
	uint64_t	v;

	if (config_parse_scaled(s, config_time_units, UINT_MAX, &v) != 0)
		return (-1);
	*t = v;
	return (0);
}

/* Parse an escape key: "^X", a single character or "0xNN". */
static int
config_parse_char(const char *s, u_char *c)
{
	u_char		 x;
	char		*end;
	unsigned long	 v;

	if (s[0] == '^' && s[1] != '\0' && s[2] == '\0') {
		x = toupper((u_char)s[1]);
		if (x == '?')
			*c = 0x7f;
		else if (x >= '@' && x <= '_')
			*c = x - '@';
		else
			return (-1);
	} else if (s[0] != '\0' && s[1] == '\0')
		*c = s[0];
	else if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') &&
	    isxdigit((u_char)s[2])) {
		errno = 0;
		v = strtoul(s + 2, &end, 16);
		if (*end != '\0' || errno != 0 || v > 0xff)
			return (-1);
		*c = v;
	} else
		return (-1);
	return (0);
}

static void
config_fmt_size(uint64_t v, char *buf, size_t len)
{
	if (v != 0 && v % GSIZE == 0)
		snprintf(buf, len, "%lluG", (unsigned long long)(v / GSIZE));
	else if (v != 0 && v % MSIZE == 0)
		snprintf(buf, len, "%lluM", (unsigned long long)(v / MSIZE));
	else if (v != 0 && v % KSIZE == 0)
		snprintf(buf, len, "%lluk", (unsigned long long)(v / KSIZE));
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

static void
config_fmt_time(u_int v, char *buf, size_t len)
{
	if (v != 0 && v % 86400 == 0)
		snprintf(buf, len, "%ud", v / 86400);
	else if (v != 0 && v % 3600 == 0)
		snprintf(buf, len, "%uh", v / 3600);
	else if (v != 0 && v % 60 == 0)
		snprintf(buf, len, "%um", v / 60);
	else
		snprintf(buf, len, "%u", v);
}

static void
config_fmt_char(u_char c, char *buf, size_t len)
{
	if (c < 0x20)
		snprintf(buf, len, "^%c", c + '@');
	else if (c == 0x7f)
		snprintf(buf, len, "^?");
	else if (c > 0x7f || c == ' ' || c == ';' || c == '#' ||
	    c == '\\' || c == '"' || c == '\'')
		snprintf(buf, len, "0x%02x", c);
	else
		snprintf(buf, len, "%c", c);
}

static int
config_check_ident(const char *s)
{
	size_t	len;

	len = strlen(s);
	if (len == 0 || len > IDENT_MAX)
		return (-1);
	for (; *s != '\0'; s++) {
		if (!isalnum((u_char)*s) && *s != '_' && *s != '.' &&
		    *s != '-')
			return (-1);
	}
	return (0);
}

/* Rewrite a comma or space separated list as "a, b, c". */
static char *
config_list_normalise(const char *text)
{
	const char	*p, *q;
	char		*out, *tmp;

	out = xstrdup("");
	for (p = text; *p != '\0'; p = q) {
		while (*p == ',' || isspace((u_char)*p))
			p++;
		if (*p == '\0')
			break;
		for (q = p; *q != '\0' && *q != ',' &&
		    !isspace((u_char)*q); q++)
			;
		xasprintf(&tmp, "%s%s%.*s", out, *out != '\0' ? ", " : "",
		    (int)(q - p), p);
		free(out);
		out = tmp;
	}
	return (out);
}

/* Check every address of a normalised listen list. */
static int
config_check_listen(const char *list, int port, char **msg)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	char			*copy, *p, *word;

	copy = xstrdup(list);
	p = copy;
	while ((word = strsep(&p, ",")) != NULL) {
		while (isspace((u_char)*word))
			word++;
		if (*word == '\0')
			continue;
		if (addr_parse_listen(word, port, &ss, &sslen, msg) != 0) {
			free(copy);
			return (-1);
		}
	}
	free(copy);
	return (0);
}

static int
config_check_uris(const char *list, char **msg)
{
	const char	*p;

	if (*list == '\0') {
		*msg = xstrdup("an empty list would refuse every VM; "
		    "use * to accept any URI");
		return (-1);
	}
	for (p = list; *p != '\0'; p++) {
		if (*p == '?' || (u_char)*p < 0x20 || (u_char)*p == 0x7f) {
			xasprintf(msg, "\"%s\": a base URI has no query or "
			    "control characters", list);
			return (-1);
		}
	}
	return (0);
}

static int
config_check_template(const char *t, char **msg)
{
	const char	*p;
	int		 unique = 0;

	if (*t == '\0') {
		*msg = xstrdup("empty file name template");
		return (-1);
	}
	if (strchr(t, '/') != NULL) {
		*msg = xstrdup("the template is a file name: no '/' "
		    "(set [log] dir)");
		return (-1);
	}
	for (p = t; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		switch (*++p) {
		case 'n':
		case 'u':
		case 'k':
			unique = 1;
			break;
		case 'l':
		case '%':
			break;
		default:
			xasprintf(msg, "unknown escape %%%.1s in \"%s\" "
			    "(use %%n, %%u, %%k, %%l or %%%%)", p, t);
			return (-1);
		}
	}
	if (!unique) {
		xasprintf(msg, "\"%s\" names no console: use %%n, %%u or %%k",
		    t);
		return (-1);
	}
	return (0);
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

/*
 * Parse "host", "host:port", "[v6]" or "[v6]:port" (len bytes) into
 * ra->host and ra->port, with defport when no port is given.
 */
static int
config_hostport(const char *s, size_t len, int defport, struct redis_addr *ra,
    char **msg)
{
	const char	*host, *end, *p;
	size_t		 hostlen;
	uint64_t	 v;
	char		*num;
	int		 rv;

	if (len == 0) {
		*msg = xstrdup("no host");
		return (-1);
	}
	end = s + len;
	if (*s == '[') {
		if ((p = memchr(s, ']', len)) == NULL || p == s + 1) {
			xasprintf(msg, "bad address \"%.*s\"", (int)len, s);
			return (-1);
		}
		host = s + 1;
		hostlen = p - host;
		p++;
		if (p != end && *p != ':') {
			xasprintf(msg, "bad address \"%.*s\"", (int)len, s);
			return (-1);
		}
	} else {
		host = s;
		if ((p = memchr(s, ':', len)) == NULL)
			p = end;
		if (memchr(p + (p != end), ':', end - p - (p != end)) !=
		    NULL) {
			xasprintf(msg, "\"%.*s\": write an IPv6 address in "
			    "brackets, [addr]:port", (int)len, s);
			return (-1);
		}
		hostlen = p - s;
	}
	if (hostlen == 0) {
		xasprintf(msg, "no host in \"%.*s\"", (int)len, s);
		return (-1);
	}
	for (v = 0; v < hostlen; v++) {
		if (!isalnum((u_char)host[v]) && host[v] != '.' &&
		    host[v] != '-' && host[v] != '_' && host[v] != ':' &&
		    host[v] != '%') {
			xasprintf(msg, "bad host \"%.*s\"", (int)hostlen,
			    host);
			return (-1);
		}
	}
	ra->port = defport;
	if (p != end) {
		num = xstrndup(p + 1, end - p - 1);
		rv = config_parse_uint(num, &v);
		free(num);
		if (rv != 0 || v == 0 || v > 65535) {
			xasprintf(msg, "bad port in \"%.*s\"", (int)len, s);
			return (-1);
		}
		ra->port = v;
	}
	ra->host = xstrndup(host, hostlen);
	return (0);
}

/* Decode %XX escapes; NULL if one is malformed or decodes to NUL. */
static char *
config_unescape(const char *s, size_t len)
{
	char	*out, hex[3];
	size_t	 i, n = 0;
	u_long	 c;

	out = xmalloc(len + 1);
	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[n++] = s[i];
			continue;
		}
		if (i + 2 >= len || !isxdigit((u_char)s[i + 1]) ||
		    !isxdigit((u_char)s[i + 2]))
			goto bad;
		hex[0] = s[i + 1];
		hex[1] = s[i + 2];
		hex[2] = '\0';
		if ((c = strtoul(hex, NULL, 16)) == 0)
			goto bad;
		out[n++] = c;
		i += 2;
	}
	out[n] = '\0';
	return (out);

bad:
	free(out);
	return (NULL);
}

/*
 * Parse a Redis URL, redis://[user:password@]host[:port][/db] (port 6379
 * and database 0 by default; an empty user means the default user).
 * Characters special in a URL are written %XX in user and password.
 */
int
config_parse_redis(const char *url, struct redis_addr *ra, char **msg)
{
	const char	*p, *at, *colon, *slash, *hostend;
	uint64_t	 v;

	memset(ra, 0, sizeof *ra);
	if (strncasecmp(url, "rediss://", 9) == 0) {
		xasprintf(msg, "\"%s\": TLS to Redis (rediss://) is not "
		    "supported; use redis:// on a trusted network", url);
		return (-1);
	}
	if (strncasecmp(url, "redis://", 8) != 0) {
		xasprintf(msg, "\"%s\" is not a Redis URL "
		    "(redis://[user:password@]host:port[/db])", url);
		return (-1);
	}
	p = url + 8;
	slash = strchr(p, '/');
	hostend = slash != NULL ? slash : p + strlen(p);
	at = NULL;
	for (colon = p; colon < hostend; colon++) {
		if (*colon == '@')
			at = colon;
	}
	if (at != NULL) {
		if ((colon = memchr(p, ':', at - p)) == NULL) {
			xasprintf(msg, "\"%s\": credentials are "
			    "user:password@ (an empty user for the default "
			    "user)", url);
			return (-1);
		}
		if (colon > p &&
		    (ra->user = config_unescape(p, colon - p)) == NULL)
			goto badesc;
		if ((ra->password = config_unescape(colon + 1,
		    at - colon - 1)) == NULL)
			goto badesc;
		if (*ra->password == '\0') {
			xasprintf(msg, "\"%s\": empty password", url);
			goto fail;
		}
		p = at + 1;
	}
	if (config_hostport(p, hostend - p, 6379, ra, msg) != 0)
		goto fail;
	if (slash != NULL && slash[1] != '\0') {
		if (config_parse_uint(slash + 1, &v) != 0 || v > 1000000) {
			xasprintf(msg, "\"%s\": bad database number \"%s\"",
			    url, slash + 1);
			goto fail;
		}
		ra->db = v;
	}
	return (0);

badesc:
	xasprintf(msg, "\"%s\": bad %%-escape in the credentials", url);
fail:
	config_redis_free(ra);
	return (-1);
}

/*
 * Parse a list of Sentinel addresses, "host:port, host:port" (port 26379
 * by default), into a malloc'd array.
 */
int
config_parse_sentinels(const char *list, struct redis_addr **out, u_int *n,
    char **msg)
{
	struct redis_addr	*ra = NULL;
	const char		*p, *q;
	u_int			 i, cnt = 0;

	for (p = list; *p != '\0'; p = q) {
		while (*p == ',' || isspace((u_char)*p))
			p++;
		if (*p == '\0')
			break;
		for (q = p; *q != '\0' && *q != ',' &&
		    !isspace((u_char)*q); q++)
			;
		ra = xreallocarray(ra, cnt + 1, sizeof *ra);
		memset(&ra[cnt], 0, sizeof ra[cnt]);
		if (config_hostport(p, q - p, 26379, &ra[cnt], msg) != 0)
			goto fail;
		cnt++;
	}
	if (cnt == 0) {
		*msg = xstrdup("no Sentinel address");
		goto fail;
	}
	*out = ra;
	*n = cnt;
	return (0);

fail:
	for (i = 0; i < cnt; i++)
		config_redis_free(&ra[i]);
	free(ra);
	return (-1);
}

/* Free what config_parse_redis() allocated (not ra itself). */
void
config_redis_free(struct redis_addr *ra)
{
	free(ra->host);
	free(ra->user);
	if (ra->password != NULL) {
		explicit_bzero(ra->password, strlen(ra->password));
		free(ra->password);
	}
	memset(ra, 0, sizeof *ra);
}

/* A listen address of one key, for config_check(). */
struct config_addr {
	const struct config_key	*k;
	char			*text;
	struct sockaddr_storage	 ss;
};

/*
 * Would two listeners collide?  Same family and port, and the same address
 * or a wildcard on either side (binding 127.0.0.1:N fails when 0.0.0.0:N
 * is bound).
 */
static int
config_addr_clash(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	const struct sockaddr_in	*a4, *b4;
	const struct sockaddr_in6	*a6, *b6;

	if (a->ss_family != b->ss_family)
		return (0);
	if (a->ss_family == AF_INET) {
		a4 = (const struct sockaddr_in *)a;
		b4 = (const struct sockaddr_in *)b;
		return (a4->sin_port == b4->sin_port &&
		    (a4->sin_addr.s_addr == b4->sin_addr.s_addr ||
		    a4->sin_addr.s_addr == INADDR_ANY ||
		    b4->sin_addr.s_addr == INADDR_ANY));
	}
	a6 = (const struct sockaddr_in6 *)a;
	b6 = (const struct sockaddr_in6 *)b;
	return (a6->sin6_port == b6->sin6_port &&
	    (IN6_ARE_ADDR_EQUAL(&a6->sin6_addr, &b6->sin6_addr) ||
	    IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr) ||
	    IN6_IS_ADDR_UNSPECIFIED(&b6->sin6_addr)));
}

/* The [cluster] keys: one way to reach Redis, and what cluster mode needs. */
static int
config_check_cluster(struct config *conf, char **err)
{
	struct redis_addr	 ra, *sa;
	u_int			 n, i;
	char			*msg;

	if (conf->cluster_node_timeout <= 2 * conf->cluster_heartbeat) {
		xasprintf(err, "[cluster] node_timeout: %u must be more than "
		    "twice heartbeat (%u)", conf->cluster_node_timeout,
		    conf->cluster_heartbeat);
		return (-1);
	}
	if (*conf->cluster_redis == '\0' && *conf->cluster_sentinels == '\0')
		return (0);

	if (*conf->cluster_redis != '\0' &&
	    *conf->cluster_sentinels != '\0') {
		*err = xstrdup("[cluster] redis and sentinels: set one of "
		    "them, not both");
		return (-1);
	}
	if (*conf->cluster_redis != '\0') {
		if (config_parse_redis(conf->cluster_redis, &ra, &msg) != 0) {
			xasprintf(err, "[cluster] redis: %s", msg);
			free(msg);
			return (-1);
		}
		config_redis_free(&ra);
	} else {
		if (*conf->cluster_master_name == '\0') {
			*err = xstrdup("[cluster] sentinels: needs "
			    "master_name, the name the Sentinels know the "
			    "master by");
			return (-1);
		}
		if (config_parse_sentinels(conf->cluster_sentinels, &sa, &n,
		    &msg) != 0) {
			xasprintf(err, "[cluster] sentinels: %s", msg);
			free(msg);
			return (-1);
		}
		for (i = 0; i < n; i++)
			config_redis_free(&sa[i]);
		free(sa);
	}
	if (*conf->cluster_secret_file == '\0') {
		*err = xstrdup("[cluster] secret_file: cluster mode needs the "
		    "file with the cluster's shared secret");
		return (-1);
	}
	if (conf->node_id == NULL || *conf->node_id == '\0') {
		*err = xstrdup("[node] id: cluster mode needs a node ID");
		return (-1);
	}
	return (0);
}

/* Checks that involve more than one key, after loading and overrides. */
int
config_check(struct config *conf, char **err)
{
	const struct config_key	*k;
	struct config_addr	*a = NULL;
	socklen_t		 len;
	char			*msg, *copy, *p, *word;
	size_t			 i, j, n = 0;
	int			 rv = 0;

	*err = NULL;
	if (config_check_cluster(conf, err) != 0)
		return (-1);
	if (*conf->vm_tls_listen != '\0' &&
	    (*conf->vm_tls_cert == '\0' || *conf->vm_tls_key == '\0')) {
		*err = xstrdup("[vm] tls_listen: needs tls_cert and tls_key");
		return (-1);
	}
	if (*conf->console_tls_listen != '\0' &&
	    (*conf->vm_tls_cert == '\0' || *conf->vm_tls_key == '\0')) {
		*err = xstrdup("[console] tls_listen: needs [vm] tls_cert and "
		    "tls_key (one certificate for both)");
		return (-1);
	}
	if ((*conf->vm_tls_cert == '\0') != (*conf->vm_tls_key == '\0')) {
		*err = xstrdup("[vm] tls_cert and tls_key: set both or "
		    "neither");
		return (-1);
	}
	if ((*conf->cluster_tls_cert == '\0') !=
	    (*conf->cluster_tls_key == '\0') ||
	    (*conf->cluster_tls_cert == '\0') !=
	    (*conf->cluster_tls_ca == '\0')) {
		*err = xstrdup("[cluster] tls_cert, tls_key and tls_ca: peer "
		    "link mutual TLS needs all three (or none)");
		return (-1);
	}

	/* Every listen address parses, and no two listeners collide. */
	for (i = 0; rv == 0 && i < nitems(config_listeners); i++) {
		k = config_find(config_listeners[i][0],
		    config_listeners[i][1]);
		copy = xstrdup(*config_str(conf, k));
		p = copy;
		while ((word = strsep(&p, ",")) != NULL) {
			while (isspace((u_char)*word))
				word++;
			if (*word == '\0')
				continue;
			a = xreallocarray(a, n + 1, sizeof *a);
			if (addr_parse_listen(word, (int)k->aux, &a[n].ss,
			    &len, &msg) != 0) {
				xasprintf(err, "[%s] %s: %s", k->section,
				    k->name, msg);
				free(msg);
				rv = -1;
				break;
			}
			a[n].k = k;
			a[n].text = xstrdup(word);
			n++;
		}
		free(copy);
	}
	for (i = 0; rv == 0 && i < n; i++) {
		for (j = i + 1; j < n; j++) {
			if (!config_addr_clash(&a[i].ss, &a[j].ss))
				continue;
			xasprintf(err, "[%s] %s: %s collides with [%s] %s %s",
			    a[j].k->section, a[j].k->name, a[j].text,
			    a[i].k->section, a[i].k->name, a[i].text);
			rv = -1;
			break;
		}
	}
	for (i = 0; i < n; i++)
		free(a[i].text);
	free(a);
	if (rv != 0)
		return (rv);

	/* Keys not bound here (cluster mode) must still parse. */
	k = config_find("cluster", "peer_listen");
	if (config_check_listen(*config_str(conf, k), (int)k->aux,
	    &msg) != 0) {
		xasprintf(err, "[%s] %s: %s", k->section, k->name, msg);
		free(msg);
		return (-1);
	}
	return (0);
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

static int
config_label_valid(const char *s, size_t len)
{
	size_t	i;

	if (len == 0 || len > LABEL_MAX)
		return (0);
	for (i = 0; i < len; i++) {
		if (!isalnum((u_char)s[i]) && s[i] != '_' && s[i] != '.' &&
		    s[i] != '-')
			return (0);
	}
	return (1);
}

/*
 * Parse a service URI query, "k=v&k=v".  Return 0 and set *label (NULL
 * without port=) if it is well formed, else -1.
 */
static int
config_query(const char *q, size_t len, char **label)
{
	const char	*p, *end, *amp, *eq;

	*label = NULL;
	if (len == 0)
		return (-1);
	end = q + len;
	for (p = q; p <= end; p = amp + 1) {
		if ((amp = memchr(p, '&', end - p)) == NULL)
			amp = end;
		if ((eq = memchr(p, '=', amp - p)) == NULL || eq == p)
			goto bad;
		if (eq - p == 4 && memcmp(p, "port", 4) == 0) {
			if (*label != NULL ||
			    !config_label_valid(eq + 1, amp - eq - 1))
				goto bad;
			*label = xstrndup(eq + 1, amp - eq - 1);
		}
		if (amp == end)
			break;
	}
	return (0);

bad:
	free(*label);
	*label = NULL;
	return (-1);
}

/*
 * The DO-PROXY service URI rule.  uri (len bytes, not NUL-terminated) is
 * accepted if it is one of the accepted base URIs, or such a base followed
 * by "?k=v&..." where port=LABEL names the port (*label, malloc'd) and
 * other keys are ignored.  "*" accepts any URI; its label is taken from a
 * well-formed query if there is one.  Return 1 if accepted, else 0.
 */
int
config_uri_accepted(const struct config *conf, const char *uri, size_t len,
    char **label)
{
	const char	*qmark, *p, *q;
	char		*lbl = NULL;
	size_t		 baselen, i;
	int		 any = 0;

	if (label != NULL)
		*label = NULL;
	for (i = 0; i < len; i++) {
		if ((u_char)uri[i] < 0x20 || (u_char)uri[i] == 0x7f)
			return (0);
	}
	qmark = memchr(uri, '?', len);
	baselen = qmark != NULL ? (size_t)(qmark - uri) : len;

	for (p = conf->vm_accept_uri; *p != '\0'; p = q) {
		while (*p == ',' || isspace((u_char)*p))
			p++;
		if (*p == '\0')
			break;
		for (q = p; *q != '\0' && *q != ',' &&
		    !isspace((u_char)*q); q++)
			;
		if (q - p == 1 && *p == '*') {
			any = 1;
			continue;
		}
		if ((size_t)(q - p) != baselen || memcmp(p, uri, baselen) != 0)
			continue;
		if (qmark != NULL && config_query(qmark + 1,
		    len - baselen - 1, &lbl) != 0)
			continue;
		goto accept;
	}
	if (!any)
		return (0);
	if (qmark != NULL && config_query(qmark + 1, len - baselen - 1,
	    &lbl) != 0)
		lbl = NULL;

accept:
	if (label != NULL)
		*label = lbl;
	else
		free(lbl);
	return (1);
}
