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
 * What the files of the configuration (config.c, config-parse.c,
 * config-check.c) share and nothing else may touch: the table of keys
 * and the parsers and formatters of values that config.c applies.  A
 * header of its own rather than vspcd.h, which keeps the interface the
 * rest of the node calls (config_load, config_check, config_print...).
 */

#ifndef CONFIG_INT_H
#define CONFIG_INT_H

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
#define LABEL_MAX	64		/* A label of a service URI. */
#define IDENT_MAX	LABEL_MAX	/* An identifier is one too. */

#define CF(f)		offsetof(struct config, f)
#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof (a)[0])
#endif

/* config.c */
const struct config_key *config_find(const char *, const char *);
char		**config_str(struct config *, const struct config_key *);

/* config-parse.c */
int		 config_parse_uint(const char *, uint64_t *);
int		 config_parse_char(const char *, u_char *);
void		 config_fmt_size(uint64_t, char *, size_t);
void		 config_fmt_time(u_int, char *, size_t);
void		 config_fmt_char(u_char, char *, size_t);
int		 config_check_ident(const char *);
char		*config_list_normalise(const char *);
int		 config_check_listen(const char *, int, char **);
int		 config_check_uris(const char *, char **);
int		 config_check_template(const char *, char **);

#endif /* CONFIG_INT_H */
