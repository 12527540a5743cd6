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
 * vspcctl cluster upgrade --binary PATH [--timeout S]: a rolling hot
 * upgrade.  Every node, by ID with the node we talk to last, is sent
 * UPGRADE (relayed by the answering node like DRAIN); the next one is
 * only started once cluster status shows the node back: state active,
 * a heartbeat newer than the upgrade, its peer link up and, when the
 * binary can be run here, the version it reports (`PATH -V`).  The first
 * failure stops the run and says which node and why; nodes done so far
 * stay upgraded (mixed versions interoperate).
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <err.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vspcd.h"
#include "vspcctl.h"

#define UPGRADE_TIMEOUT_DEFAULT	60	/* Seconds per node. */
#define UPGRADE_POLL_MS		250

/* One node to upgrade, from the first status. */
struct upgrade_node {
	char		*id;
	char		*version;
	int		 self;		/* The node we talk to. */
	uint32_t	 pid;		/* Shown for the answering node. */
};

/* The version `PATH -V` prints, or NULL if it cannot be run here. */
static char *
upgrade_binary_version(const char *path)
{
	char	*cmd, *v = NULL, line[256], word[64];
	FILE	*f;

	if (access(path, X_OK) == -1)
		return (NULL);
	xasprintf(&cmd, "'%s' -V 2>/dev/null", path);
	if (strchr(path, '\'') != NULL || (f = popen(cmd, "r")) == NULL) {
		free(cmd);
		return (NULL);
	}
	free(cmd);
	if (fgets(line, sizeof line, f) != NULL &&
	    sscanf(line, "vspcd %63s", word) == 1)
		v = xstrdup(word);
	pclose(f);
	return (v);
}

/* One request, one reply (NULL if the connection closed first). */
static Vspc__Ctl__Reply *
upgrade_ask(Vspc__Ctl__Request *req, char **why)
{
	Vspc__Ctl__Reply	*r;
	int			 fd;

	if ((fd = ctl_dial(why)) == -1)
		return (NULL);
	if (ctl_send(fd, req) == -1) {
		xasprintf(why, "%s: %s", ctl_socket, strerror(errno));
		close(fd);
		return (NULL);
	}
	r = ctl_recv(fd);
	close(fd);
	if (r == NULL)
		xasprintf(why, "connection closed before the reply");
	return (r);
}

static Vspc__Ctl__Reply *
upgrade_status(char **why)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, VSPC__CTL__COMMAND__CLUSTER_STATUS);
	return (upgrade_ask(&req, why));
}

static const Vspc__Ctl__Node *
upgrade_find(const Vspc__Ctl__Reply *r, const char *id)
{
	size_t	i;

	for (i = 0; i < r->n_nodes; i++) {
		if (strcmp(r->nodes[i]->id, id) == 0)
			return (r->nodes[i]);
	}
	return (NULL);
}

static int
upgrade_cmp(const void *a, const void *b)
{
	const struct upgrade_node	*x = a, *y = b;

	if (x->self != y->self)
		return (x->self - y->self);
	return (strcmp(x->id, y->id));
}

static void
upgrade_sleep(void)
{
	struct timespec	ts = { 0, UPGRADE_POLL_MS * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * Is the node back from its upgrade?  Sets *why to what is missing.
 * The answering node shows its pid, which must have changed; others
 * show a heartbeat that must be newer than the request.
 */
static int
upgrade_healthy(const struct upgrade_node *un, const char *want,
    time_t asked, char *why, size_t len)
{
	Vspc__Ctl__Reply	*r;
	const Vspc__Ctl__Node	*n;
	char			*err = NULL;
	int			 ok = 0;

	if ((r = upgrade_status(&err)) == NULL) {
		snprintf(why, len, "no status: %s", err);
		free(err);
		return (0);
	}
	if (!r->ok)
		snprintf(why, len, "status: %s", r->error);
	else if ((n = upgrade_find(r, un->id)) == NULL)
		snprintf(why, len, "not in cluster status");
	else if (strcmp(n->state, "active") != 0 &&
	    strcmp(n->state, "draining") != 0)
		snprintf(why, len, "state %s", n->state);
	else if (n->heartbeat <= asked)
		snprintf(why, len, "no heartbeat since the upgrade");
	else if (n->link != NULL && strcmp(n->link, "up") != 0 &&
	    strcmp(n->link, "self") != 0)
		snprintf(why, len, "peer link %s", n->link);
	else if (un->self && n->pid != 0 && n->pid == un->pid)
		snprintf(why, len, "still process %u", n->pid);
	else if (want != NULL && strcmp(n->version, want) != 0)
		snprintf(why, len, "version %s, not %s", n->version, want);
	else {
		snprintf(why, len, "version %s, %s", n->version, n->state);
		ok = 1;
	}
	vspc__ctl__reply__free_unpacked(r, NULL);
	return (ok);
}

/* Upgrade one node and wait until it is back; 0 or -1 (said why). */
static int
upgrade_one(const struct upgrade_node *un, const char *binary,
    const char *want, u_int timeout)
{
	Vspc__Ctl__Request	 req;
	Vspc__Ctl__Reply	*r;
	char			*err = NULL, why[256];
	time_t			 asked, deadline;

	printf("node %s: upgrading (version %s)...\n", un->id, un->version);
	fflush(stdout);
	asked = time(NULL);
	deadline = asked + timeout;
	ctl_request_init(&req, VSPC__CTL__COMMAND__UPGRADE);
	req.node = un->id;
	req.arg = (char *)binary;
	if ((r = upgrade_ask(&req, &err)) == NULL) {
		/* The node we talk to may hand our connection over: look. */
		printf("node %s: %s; checking its status\n", un->id, err);
		free(err);
	} else if (!r->ok) {
		warnx("node %s: upgrade refused: %s", un->id, r->error);
		vspc__ctl__reply__free_unpacked(r, NULL);
		return (-1);
	} else {
		if (r->text != NULL && *r->text != '\0')
			printf("node %s: %s\n", un->id, r->text);
		vspc__ctl__reply__free_unpacked(r, NULL);
	}
	why[0] = '\0';
	while (!upgrade_healthy(un, want, asked, why, sizeof why)) {
		if (time(NULL) >= deadline) {
			warnx("node %s: not back after %u s: %s", un->id,
			    timeout, why);
			return (-1);
		}
		upgrade_sleep();
	}
	printf("node %s: upgraded: %s\n", un->id, why);
	fflush(stdout);
	return (0);
}

/* vspcctl cluster upgrade --binary PATH [--timeout S] */
int
ctl_cluster_upgrade(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Reply	*r;
	struct upgrade_node	*nodes;
	const char		*binary = NULL;
	char			*want, *why = NULL, *ep, abs[PATH_MAX];
	u_long			 l;
	u_int			 timeout = UPGRADE_TIMEOUT_DEFAULT;
	size_t			 i, n;
	int			 rc = 0;

	for (i = 0; i < (size_t)argc; i++) {
		if (strcmp(argv[i], "--binary") == 0 && i + 1 < (size_t)argc)
			binary = argv[++i];
		else if (strncmp(argv[i], "--binary=", 9) == 0)
			binary = argv[i] + 9;
		else if (strcmp(argv[i], "--timeout") == 0 &&
		    i + 1 < (size_t)argc) {
			l = strtoul(argv[++i], &ep, 10);
			if (*argv[i] == '\0' || *ep != '\0' || l == 0 ||
			    l > 86400)
				errx(1, "--timeout %s: not 1 to 86400 seconds",
				    argv[i]);
			timeout = l;
		} else
			errx(1, "usage: vspcctl cluster upgrade --binary PATH "
			    "[--timeout S]");
	}
	if (binary == NULL)
		errx(1, "usage: vspcctl cluster upgrade --binary PATH "
		    "[--timeout S]");
	/* Every node runs PATH as it is on its own host: make it absolute. */
	if (binary[0] != '/') {
		if (realpath(binary, abs) == NULL)
			err(1, "%s", binary);
		binary = abs;
	}
	want = upgrade_binary_version(binary);
	if (want != NULL)
		printf("upgrading to vspcd %s (%s)\n", want, binary);
	else
		printf("upgrading to %s (cannot run it here: versions not "
		    "checked)\n", binary);

	if ((r = upgrade_status(&why)) == NULL)
		errx(1, "cluster status: %s", why);
	if (!r->ok)
		errx(1, "cluster status: %s", r->error);
	nodes = xcalloc(r->n_nodes + 1, sizeof *nodes);
	for (i = n = 0; i < r->n_nodes; i++) {
		if (strcmp(r->nodes[i]->state, "down") == 0) {
			warnx("node %s is down: start it with the new binary "
			    "instead; nothing upgraded", r->nodes[i]->id);
			rc = 1;
			goto out;
		}
		nodes[n].id = xstrdup(r->nodes[i]->id);
		nodes[n].version = xstrdup(r->nodes[i]->version);
		nodes[n].self = r->nodes[i]->link != NULL &&
		    strcmp(r->nodes[i]->link, "self") == 0;
		nodes[n].pid = r->nodes[i]->pid;
		n++;
	}
	qsort(nodes, n, sizeof *nodes, upgrade_cmp);
	for (i = 0; i < n; i++) {
		printf("[%zu/%zu] ", i + 1, n);
		if (upgrade_one(&nodes[i], binary, want, timeout) == -1) {
			warnx("stopped at node %s: %zu of %zu nodes upgraded",
			    nodes[i].id, i, n);
			rc = 1;
			goto out;
		}
	}
	printf("cluster upgraded: %zu nodes\n", n);
out:
	for (i = 0; i < r->n_nodes; i++) {
		free(nodes[i].id);
		free(nodes[i].version);
	}
	free(nodes);
	free(want);
	vspc__ctl__reply__free_unpacked(r, NULL);
	return (rc);
}
