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
 * Checks across keys, after the file and the overrides are read: the
 * listeners of one node must not collide, a cluster needs what makes it
 * one (one store, Redis or Sentinels; a secret; a node ID), TLS needs a
 * certificate and its key.  Errors name the keys concerned, not a line.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "config-int.h"

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
