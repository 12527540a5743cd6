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
 * The HTTP listener ([http] listen): GET /metrics (Prometheus text, see
 * metrics.c) and GET /healthz for load balancers.  It is meant for a
 * monitoring network, not for the public: there is no authentication,
 * and the metrics tell how busy the node is.
 *
 * /healthz answers 200 "ok" while the node takes VMs and people, and 503
 * with the reason while it is draining or has no VM listener.  A store
 * (Redis) that cannot be reached does not make the node unhealthy: it
 * still serves the consoles it holds; vspcd_store_connected shows it.
 *
 * One evhttp serves every address.  Addresses are kept one by one, like
 * server-listen.c's listeners, so that a reload opens and closes only
 * those that changed; if one cannot be opened, nothing changes.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/http.h>
#include <event2/listener.h>

#include "vspcd.h"

#define HTTP_PORT		13374
#define HTTP_TIMEOUT		10	/* Seconds for a request. */
#define HTTP_HEADERS_MAX	8192

struct http_listener {
	char				*text;
	struct sockaddr_storage		 ss;
	socklen_t			 sslen;
	struct evhttp_bound_socket	*bound;
	int				 mark;
#define HTTP_KEEP		0
#define HTTP_GONE		1	/* Not in the new list. */
#define HTTP_NEW		2	/* Opened by this reconfigure. */
	TAILQ_ENTRY(http_listener)	 entry;
};
TAILQ_HEAD(http_listeners, http_listener);

static struct evhttp		*http;
static struct http_listeners	 http_listeners =
    TAILQ_HEAD_INITIALIZER(http_listeners);

static void
http_reply(struct evhttp_request *req, int code, const char *reason,
    const char *type, struct evbuffer *body)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

/* [http] allow, on the connection's source: 403 from anywhere else. */
static int
http_allowed(struct evhttp_request *req)
{
	struct evhttp_connection	*con;
	const struct sockaddr		*sa;

	if ((con = evhttp_request_get_connection(req)) == NULL ||
	    (sa = evhttp_connection_get_addr(con)) == NULL)
		return (1);
	if (server_allowed(LISTEN_HTTP, sa, "http"))
		return (1);
	evhttp_send_error(req, 403, "Forbidden");
	return (0);
}

static int
http_method_ok(struct evhttp_request *req)
{
	enum evhttp_cmd_type	cmd = evhttp_request_get_command(req);

	if (!http_allowed(req))
		return (0);

	if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)
		return (1);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
	    "GET, HEAD");
	evhttp_send_error(req, 405, "Method Not Allowed");
	return (0);
}

static void
http_metrics_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*b;

	if (!http_method_ok(req))
		return;
	b = evbuffer_new();
	metrics_write(b);
	http_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
	    b);
	evbuffer_free(b);
}

static void
http_healthz_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*b;
	const char	*why = NULL;

	if (!http_method_ok(req))
		return;
	if (server_draining)
		why = "draining";
	else if (server_vm_listeners() == 0)
		why = "no VM listener";
	b = evbuffer_new();
	if (why == NULL) {
		evbuffer_add_printf(b, "ok\n");
		http_reply(req, 200, "OK", "text/plain; charset=utf-8", b);
	} else {
		evbuffer_add_printf(b, "%s\n", why);
		http_reply(req, 503, "Service Unavailable",
		    "text/plain; charset=utf-8", b);
	}
	evbuffer_free(b);
}

static void
http_other_cb(struct evhttp_request *req, void *arg)
{
	if (!http_allowed(req))
		return;
	evhttp_send_error(req, 404, "Not Found");
}

static void
http_listener_free(struct http_listener *l)
{
	TAILQ_REMOVE(&http_listeners, l, entry);
	if (l->bound != NULL)
		evhttp_del_accept_socket(http, l->bound);
	free(l->text);
	free(l);
}

static int
http_listener_open(struct http_listener *l, char **err)
{
	struct evconnlistener	*lev;
	int			 flags = LEV_OPT_CLOSE_ON_FREE|
				    LEV_OPT_REUSEABLE|LEV_OPT_CLOSE_ON_EXEC;

	if (l->ss.ss_family == AF_INET6)
		flags |= LEV_OPT_BIND_IPV6ONLY;
	lev = evconnlistener_new_bind(server_base, NULL, NULL, flags, 128,
	    (struct sockaddr *)&l->ss, l->sslen);
	if (lev == NULL) {
		xasprintf(err, "http listener %s: %s", l->text,
		    strerror(errno));
		return (-1);
	}
	if ((l->bound = evhttp_bind_listener(http, lev)) == NULL) {
		evconnlistener_free(lev);
		xasprintf(err, "http listener %s: cannot serve HTTP on it",
		    l->text);
		return (-1);
	}
	log_info("listening for http connections on %s", l->text);
	return (0);
}

/*
 * Make the HTTP listeners match [http] listen.  On error the listeners
 * stay as they were and err says why.
 */
int
http_reconfigure(struct config *conf, char **err)
{
	struct http_listener	*l, *l1;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	char			*copy, *p, *word, *perr;
	int			 found, rc = 0;

	if (http == NULL)
		return (http_init(conf, err));
	TAILQ_FOREACH(l, &http_listeners, entry)
		l->mark = HTTP_GONE;
	copy = xstrdup(conf->http_listen != NULL ? conf->http_listen : "");
	p = copy;
	while (rc == 0 && (word = strsep(&p, ", ")) != NULL) {
		if (*word == '\0')
			continue;
		if (addr_parse_listen(word, HTTP_PORT, &ss, &sslen,
		    &perr) == -1) {
			xasprintf(err, "[http] listen: %s", perr);
			free(perr);
			rc = -1;
			break;
		}
		found = 0;
		TAILQ_FOREACH(l, &http_listeners, entry) {
			if (l->sslen == sslen && memcmp(&l->ss, &ss,
			    sslen) == 0) {
				if (l->mark == HTTP_GONE)
					l->mark = HTTP_KEEP;
				found = 1;
			}
		}
		if (found)
			continue;
		l = xcalloc(1, sizeof *l);
		l->text = xstrdup(word);
		l->ss = ss;
		l->sslen = sslen;
		l->mark = HTTP_NEW;
		TAILQ_INSERT_TAIL(&http_listeners, l, entry);
		if (http_listener_open(l, err) == -1)
			rc = -1;
	}
	free(copy);

	/* Undo what this call opened on error, else close what went. */
	TAILQ_FOREACH_SAFE(l, &http_listeners, entry, l1) {
		if (rc == -1 && l->mark == HTTP_NEW)
			http_listener_free(l);
		else if (rc == 0 && l->mark == HTTP_GONE) {
			log_info("no longer listening for http connections "
			    "on %s", l->text);
			http_listener_free(l);
		} else
			l->mark = HTTP_KEEP;
	}
	return (rc);
}

static void
http_setup(void)
{
	if ((http = evhttp_new(server_base)) == NULL)
		fatalx("evhttp_new failed");
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET|EVHTTP_REQ_HEAD|
	    EVHTTP_REQ_POST|EVHTTP_REQ_PUT|EVHTTP_REQ_DELETE);
	evhttp_set_timeout(http, HTTP_TIMEOUT);
	evhttp_set_max_headers_size(http, HTTP_HEADERS_MAX);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_cb(http, "/metrics", http_metrics_cb, NULL);
	evhttp_set_cb(http, "/healthz", http_healthz_cb, NULL);
	evhttp_set_gencb(http, http_other_cb, NULL);
}

/* Open the HTTP listeners of [http] listen (none if it is empty). */
int
http_init(struct config *conf, char **err)
{
	if (http != NULL)
		return (http_reconfigure(conf, err));
	http_setup();
	if (http_reconfigure(conf, err) == -1) {
		http_shutdown();
		return (-1);
	}
	return (0);
}

/* Close the HTTP listeners and every HTTP connection. */
void
http_shutdown(void)
{
	struct http_listener	*l;

	if (http == NULL)
		return;
	while ((l = TAILQ_FIRST(&http_listeners)) != NULL)
		http_listener_free(l);
	evhttp_free(http);
	http = NULL;
}

/*
 * Hot upgrade: the listening descriptors and their addresses (up to max).
 * Connections in progress are not handed over: scrapers and health
 * checks retry.
 */
int
http_handoff_fds(int *fds, char **texts, u_int max)
{
	struct http_listener	*l;
	u_int			 n = 0;

	TAILQ_FOREACH(l, &http_listeners, entry) {
		if (n == max || l->bound == NULL)
			continue;
		fds[n] = evhttp_bound_socket_get_fd(l->bound);
		texts[n++] = l->text;
	}
	return (n);
}

/* Hot upgrade: serve HTTP on an inherited listening socket. */
int
http_adopt(int fd, const char *text, char **err)
{
	struct http_listener	*l;
	struct evconnlistener	*lev;

	if (http == NULL)
		http_setup();
	l = xcalloc(1, sizeof *l);
	l->text = xstrdup(text);
	if (addr_parse_listen(text, HTTP_PORT, &l->ss, &l->sslen, err) ==
	    -1) {
		free(l->text);
		free(l);
		close(fd);
		return (-1);
	}
	TAILQ_INSERT_TAIL(&http_listeners, l, entry);
	lev = evconnlistener_new(server_base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE|LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (lev == NULL || (l->bound = evhttp_bind_listener(http, lev)) ==
	    NULL) {
		if (lev != NULL)
			evconnlistener_free(lev);
		else
			close(fd);
		http_listener_free(l);
		xasprintf(err, "http listener %s: cannot adopt it", text);
		return (-1);
	}
	return (0);
}
