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
 * vspcctl's output formats: human tables (the default) and JSON (-j),
 * one vtable each.  JSON is written by hand: strings escaped, numbers as
 * numbers, a field the node did not know as null.
 */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vspcd.h"
#include "vspcctl.h"

static void	human_status(const Vspc__Ctl__Reply *);
static void	human_vm_list(const Vspc__Ctl__Reply *);
static void	human_vm_show(const Vspc__Ctl__Reply *);
static void	human_who(const Vspc__Ctl__Reply *);
static void	human_message(const Vspc__Ctl__Reply *);
static void	json_status(const Vspc__Ctl__Reply *);
static void	json_vm_list(const Vspc__Ctl__Reply *);
static void	json_vm_show(const Vspc__Ctl__Reply *);
static void	json_who(const Vspc__Ctl__Reply *);
static void	json_message(const Vspc__Ctl__Reply *);

static void	text(const Vspc__Ctl__Reply *);

const struct ctl_output ctl_output_human = {
	.name = "human",
	.view = {
		[CTL_VIEW_STATUS] = human_status,
		[CTL_VIEW_VM_LIST] = human_vm_list,
		[CTL_VIEW_VM_SHOW] = human_vm_show,
		[CTL_VIEW_WHO] = human_who,
		[CTL_VIEW_MESSAGE] = human_message,
		[CTL_VIEW_TEXT] = text
	}
};

const struct ctl_output ctl_output_json = {
	.name = "json",
	.view = {
		[CTL_VIEW_STATUS] = json_status,
		[CTL_VIEW_VM_LIST] = json_vm_list,
		[CTL_VIEW_VM_SHOW] = json_vm_show,
		[CTL_VIEW_WHO] = json_who,
		[CTL_VIEW_MESSAGE] = json_message,
		[CTL_VIEW_TEXT] = text
	}
};

/* The node's text, as it wrote it (the same in every format). */
static void
text(const Vspc__Ctl__Reply *r)
{
	if (r->text != NULL && *r->text != '\0')
		printf("%s\n", r->text);
}

static const char *
str(const char *s)
{
	return (s != NULL && *s != '\0' ? s : "-");
}

/* A duration in seconds, short: 45s, 12m, 3h, 2d. */
static const char *
dur(int64_t s, char *buf, size_t len)
{
	if (s < 0)
		snprintf(buf, len, "-");
	else if (s < 120)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 7200)
		snprintf(buf, len, "%lldm", (long long)s / 60);
	else if (s < 172800)
		snprintf(buf, len, "%lldh", (long long)s / 3600);
	else
		snprintf(buf, len, "%lldd", (long long)s / 86400);
	return (buf);
}

static const char *
when(int64_t t, char *buf, size_t len)
{
	time_t		tt = t;
	struct tm	tm;

	if (t == 0)
		snprintf(buf, len, "-");
	else if (localtime_r(&tt, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(buf, len, "%lld", (long long)t);
	return (buf);
}

/*
 * During a rolling upgrade: "versions: 0.1.0 (2), 0.2.0 (1)" over the
 * nodes that are not down, only when they differ.
 */
static void
human_versions(const Vspc__Ctl__Reply *r)
{
	const char	*v[64];
	u_int		 count[64], nv = 0, j;
	size_t		 i;

	for (i = 0; i < r->n_nodes; i++) {
		if (strcmp(r->nodes[i]->state, "down") == 0)
			continue;
		for (j = 0; j < nv; j++) {
			if (strcmp(v[j], str(r->nodes[i]->version)) == 0)
				break;
		}
		if (j == nv) {
			if (nv == 64)
				continue;
			v[nv] = str(r->nodes[i]->version);
			count[nv++] = 0;
		}
		count[j]++;
	}
	if (nv < 2)
		return;
	printf("\nversions:");
	for (j = 0; j < nv; j++)
		printf("%s %s (%u)", j == 0 ? "" : ",", v[j], count[j]);
	printf("\n");
}

static void
human_status(const Vspc__Ctl__Reply *r)
{
	Vspc__Ctl__Node	*n;
	char		 b1[32], b2[32];
	time_t		 now = time(NULL);
	size_t		 i;
	u_int		 consoles = 0, people = 0, vmotions = 0, active = 0;

	printf("%-12s %-22s %-10s %-9s %-7s %-6s %8s %6s %8s %s\n", "NODE",
	    "ADDRESS", "VERSION", "STATE", "UPTIME", "HBEAT", "CONSOLES",
	    "PEOPLE", "VMOTIONS", "LINK");
	for (i = 0; i < r->n_nodes; i++) {
		n = r->nodes[i];
		printf("%-12s %-22s %-10s %-9s %-7s %-6s %8u %6u %8u %s\n",
		    n->id, str(n->address), str(n->version), n->state,
		    dur(n->started != 0 ? now - n->started : -1, b1,
		    sizeof b1), dur(n->heartbeat != 0 ? now - n->heartbeat :
		    -1, b2, sizeof b2), n->consoles, n->people, n->vmotions,
		    str(n->link));
		if (strcmp(n->state, "down") != 0) {
			active++;
			consoles += n->consoles;
			people += n->people;
			vmotions += n->vmotions;
		}
	}
	human_versions(r);
	if (r->store != NULL) {
		printf("\nstore: %s", r->store->kind);
		if (strcmp(r->store->kind, "local") != 0) {
			printf(", %s", r->store->connected ? "connected" :
			    "NOT CONNECTED");
			if (r->store->master != NULL && *r->store->master)
				printf(", master %s", r->store->master);
			if (r->store->sentinels != NULL &&
			    *r->store->sentinels)
				printf(", sentinels %s (master name %s)",
				    r->store->sentinels,
				    str(r->store->master_name));
		}
		printf("\n");
	}
	printf("total: %zu nodes (%u up), %u consoles, %u people, "
	    "%u vMotions in flight\n", r->n_nodes, active, consoles, people,
	    vmotions);
}

static void
human_vm_list(const Vspc__Ctl__Reply *r)
{
	Vspc__Ctl__Console	*c;
	size_t			 i;

	printf("%-24s %-44s %-12s %-12s %s\n", "NAME", "CONSOLE", "STATE",
	    "NODE", "PEOPLE");
	for (i = 0; i < r->n_consoles; i++) {
		c = r->consoles[i];
		if (c->people < 0)
			printf("%-24s %-44s %-12s %-12s -\n", str(c->name),
			    c->key, c->state, str(c->owner));
		else
			printf("%-24s %-44s %-12s %-12s %d\n", str(c->name),
			    c->key, c->state, str(c->owner), c->people);
	}
}

static void
human_who_rows(Vspc__Ctl__Person **ps, size_t n)
{
	Vspc__Ctl__Person	*p;
	char			 id[80], who[160], b[32];
	size_t			 i;

	printf("%-16s %-32s %-10s %-6s %-8s %s\n", "ID", "WHO", "MODE",
	    "IDLE", "KIND", "VM");
	for (i = 0; i < n; i++) {
		p = ps[i];
		snprintf(id, sizeof id, "%s:%u", p->node, p->id);
		snprintf(who, sizeof who, "%s@%s", str(p->user),
		    str(p->addr));
		printf("%-16s %-32s %-10s %-6s %-8s %s\n", id, who,
		    str(p->mode), dur(p->idle, b, sizeof b), str(p->kind),
		    p->vm != NULL && *p->vm ? p->vm : str(p->console));
	}
}

static void
human_vm_show(const Vspc__Ctl__Reply *r)
{
	Vspc__Ctl__Console	*c;
	char			 b[64];

	if (r->n_consoles == 0)
		return;
	c = r->consoles[0];
	printf("name:       %s\n", str(c->name));
	printf("console:    %s\n", c->key);
	printf("state:      %s\n", c->state);
	printf("node:       %s\n", str(c->owner));
	printf("address:    %s\n", str(c->address));
	printf("since:      %s\n", when(c->connected, b, sizeof b));
	printf("uri:        %s\n", str(c->uri));
	printf("vmotions:   %llu (now: %s)\n",
	    (unsigned long long)c->vmotions, str(c->vmotion_state));
	printf("history:    %llu bytes\n", (unsigned long long)c->history);
	printf("log:        %s\n", str(c->log));
	printf("people:     %d\n", c->people);
	if (c->n_persons > 0) {
		printf("\n");
		human_who_rows(c->persons, c->n_persons);
	}
}

static void
human_who(const Vspc__Ctl__Reply *r)
{
	human_who_rows(r->people, r->n_people);
}

static void
human_message(const Vspc__Ctl__Reply *r)
{
	printf("%s: %s\n", str(r->node), str(r->text));
}

/* JSON. */

static void
jstr(const char *s)
{
	const u_char	*p;

	if (s == NULL) {
		printf("null");
		return;
	}
	putchar('"');
	for (p = (const u_char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p == '\n')
			printf("\\n");
		else if (*p == '\r')
			printf("\\r");
		else if (*p == '\t')
			printf("\\t");
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void
jkey(const char *k, int first)
{
	if (!first)
		putchar(',');
	jstr(k);
	putchar(':');
}

static void
json_node(const Vspc__Ctl__Node *n, time_t now)
{
	jkey("id", 1); jstr(n->id);
	jkey("address", 0); jstr(n->address);
	jkey("version", 0); jstr(n->version);
	jkey("pid", 0); printf("%u", n->pid);
	jkey("handoff", 0); printf("%u", n->handoff);
	jkey("state", 0); jstr(n->state);
	jkey("started", 0); printf("%lld", (long long)n->started);
	jkey("uptime", 0);
	if (n->started != 0)
		printf("%lld", (long long)(now - n->started));
	else
		printf("null");
	jkey("heartbeat_age", 0);
	if (n->heartbeat != 0)
		printf("%lld", (long long)(now - n->heartbeat));
	else
		printf("null");
	jkey("consoles", 0); printf("%u", n->consoles);
	jkey("people", 0); printf("%u", n->people);
	jkey("vmotions", 0); printf("%u", n->vmotions);
	jkey("peers", 0); printf("%u", n->peers);
	jkey("link", 0); jstr(n->link);
}

static void
json_status(const Vspc__Ctl__Reply *r)
{
	time_t	now = time(NULL);
	size_t	i;
	u_int	consoles = 0, people = 0, vmotions = 0, up = 0;

	putchar('{');
	jkey("node", 1); jstr(r->node);
	jkey("nodes", 0);
	putchar('[');
	for (i = 0; i < r->n_nodes; i++) {
		if (i > 0)
			putchar(',');
		putchar('{');
		json_node(r->nodes[i], now);
		putchar('}');
		if (strcmp(r->nodes[i]->state, "down") != 0) {
			up++;
			consoles += r->nodes[i]->consoles;
			people += r->nodes[i]->people;
			vmotions += r->nodes[i]->vmotions;
		}
	}
	putchar(']');
	if (r->store != NULL) {
		jkey("store", 0);
		putchar('{');
		jkey("kind", 1); jstr(r->store->kind);
		jkey("connected", 0);
		printf("%s", r->store->connected ? "true" : "false");
		jkey("master", 0); jstr(r->store->master);
		jkey("sentinels", 0); jstr(r->store->sentinels);
		jkey("master_name", 0); jstr(r->store->master_name);
		putchar('}');
	}
	jkey("totals", 0);
	printf("{\"nodes\":%zu,\"up\":%u,\"consoles\":%u,\"people\":%u,"
	    "\"vmotions\":%u}", r->n_nodes, up, consoles, people, vmotions);
	printf("}\n");
}

static void
json_console(const Vspc__Ctl__Console *c)
{
	jkey("name", 1); jstr(c->name);
	jkey("key", 0); jstr(c->key);
	jkey("state", 0); jstr(c->state);
	jkey("owner", 0); jstr(c->owner);
	jkey("people", 0);
	if (c->people < 0)
		printf("null");
	else
		printf("%d", c->people);
	jkey("connected", 0); printf("%lld", (long long)c->connected);
	jkey("vmotions", 0); printf("%llu", (unsigned long long)c->vmotions);
}

static void
json_vm_list(const Vspc__Ctl__Reply *r)
{
	size_t	i;

	printf("{\"node\":");
	jstr(r->node);
	printf(",\"consoles\":[");
	for (i = 0; i < r->n_consoles; i++) {
		if (i > 0)
			putchar(',');
		putchar('{');
		json_console(r->consoles[i]);
		putchar('}');
	}
	printf("]}\n");
}

static void
json_person(const Vspc__Ctl__Person *p)
{
	char	id[80];

	snprintf(id, sizeof id, "%s:%u", p->node, p->id);
	jkey("id", 1); jstr(id);
	jkey("client", 0); printf("%u", p->id);
	jkey("node", 0); jstr(p->node);
	jkey("user", 0); jstr(p->user);
	jkey("addr", 0); jstr(p->addr);
	jkey("mode", 0); jstr(p->mode);
	jkey("idle", 0); printf("%lld", (long long)p->idle);
	jkey("since", 0); printf("%lld", (long long)p->since);
	jkey("kind", 0); jstr(p->kind);
	jkey("console", 0); jstr(p->console);
	jkey("vm", 0); jstr(p->vm);
	jkey("skipped", 0); printf("%llu", (unsigned long long)p->skipped);
}

static void
json_people(Vspc__Ctl__Person **ps, size_t n)
{
	size_t	i;

	putchar('[');
	for (i = 0; i < n; i++) {
		if (i > 0)
			putchar(',');
		putchar('{');
		json_person(ps[i]);
		putchar('}');
	}
	putchar(']');
}

static void
json_vm_show(const Vspc__Ctl__Reply *r)
{
	Vspc__Ctl__Console	*c;

	if (r->n_consoles == 0) {
		printf("null\n");
		return;
	}
	c = r->consoles[0];
	putchar('{');
	json_console(c);
	jkey("address", 0); jstr(c->address);
	jkey("uri", 0); jstr(c->uri);
	jkey("vmotion_state", 0); jstr(c->vmotion_state);
	jkey("history", 0); printf("%llu", (unsigned long long)c->history);
	jkey("log", 0); jstr(c->log);
	jkey("answered_by", 0); jstr(r->node);
	jkey("persons", 0);
	json_people(c->persons, c->n_persons);
	printf("}\n");
}

static void
json_who(const Vspc__Ctl__Reply *r)
{
	printf("{\"node\":");
	jstr(r->node);
	printf(",\"people\":");
	json_people(r->people, r->n_people);
	printf("}\n");
}

static void
json_message(const Vspc__Ctl__Reply *r)
{
	printf("{\"ok\":true,\"node\":");
	jstr(r->node);
	printf(",\"message\":");
	jstr(r->text);
	printf(",\"draining\":%s}\n", r->draining ? "true" : "false");
}
