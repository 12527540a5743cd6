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
 * The users file ([console] users_file): who may log in, and what each
 * person may do with which console.
 *
 *	# comment
 *	user  NAME HASH [GROUP,...]	a login; HASH from crypt(3)
 *	group NAME MEMBER,...		members: user names or @groups
 *	rw    GLOB LIST			read-write on matching consoles
 *	ro    GLOB LIST			read-only on matching consoles
 *	admin LIST			may disconnect, drain, upgrade
 *
 * A LIST is items separated by commas or blanks: a user name, @group, or
 * "*" (every user); "!" before an item excludes what it names.  The
 * first item that names the user decides.  Console rules are tried in
 * file order; the first whose GLOB (fnmatch(3)) matches the VM's name,
 * its console key or its UUID and whose LIST admits the user gives the
 * access.  No rule: no access.  A HASH of "*" or "!..." locks the login.
 *
 * Checking a password runs crypt(3), which is slow on purpose (yescrypt
 * takes tens of milliseconds), so it runs on a worker thread and the
 * answer comes back through a pipe to the event loop: one person
 * logging in never stalls every console.  An unknown or locked user
 * costs the same crypt(3) as a known one, so answers do not tell which
 * names exist.
 */

#include <sys/stat.h>

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "vspcd.h"

#define AUTH_LINE_MAX		4096
#define AUTH_GROUP_DEPTH	8

/* Any valid hash of the default method, to spend the same time. */
#define AUTH_DUMMY_PHRASE	"vspcd-no-such-user"

struct auth_user {
	char		*name;
	char		*hash;
	char		**groups;
	u_int		 ngroups;
};

struct auth_group {
	char		*name;
	char		**members;	/* "user" or "@group" */
	u_int		 nmembers;
};

struct auth_rule {
	enum auth_access access;
	char		*glob;
	char		**list;
	u_int		 nlist;
};

struct auth {
	char		*path;
	dev_t		 dev;
	ino_t		 ino;
	off_t		 size;
	struct timespec	 mtime;

	struct auth_user *users;
	u_int		 nusers;
	struct auth_group *groups;
	u_int		 ngroups;
	struct auth_rule *rules;
	u_int		 nrules;
	char		**admins;
	u_int		 nadmins;
};

static void
auth_strv_free(char **v, u_int n)
{
	u_int	i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Split a list on commas and blanks into v. */
static void
auth_split(const char *s, char ***v, u_int *n)
{
	const char	*start;

	*v = NULL;
	*n = 0;
	while (*s != '\0') {
		while (*s == ',' || isspace((u_char)*s))
			s++;
		if (*s == '\0')
			break;
		start = s;
		while (*s != '\0' && *s != ',' && !isspace((u_char)*s))
			s++;
		*v = xreallocarray(*v, *n + 1, sizeof **v);
		(*v)[(*n)++] = xstrndup(start, s - start);
	}
}

/* Free a users file. */
void
auth_free(struct auth *a)
{
	u_int	i;

	if (a == NULL)
		return;
	for (i = 0; i < a->nusers; i++) {
		free(a->users[i].name);
		if (a->users[i].hash != NULL)
			explicit_bzero(a->users[i].hash,
			    strlen(a->users[i].hash));
		free(a->users[i].hash);
		auth_strv_free(a->users[i].groups, a->users[i].ngroups);
	}
	free(a->users);
	for (i = 0; i < a->ngroups; i++) {
		free(a->groups[i].name);
		auth_strv_free(a->groups[i].members, a->groups[i].nmembers);
	}
	free(a->groups);
	for (i = 0; i < a->nrules; i++) {
		free(a->rules[i].glob);
		auth_strv_free(a->rules[i].list, a->rules[i].nlist);
	}
	free(a->rules);
	auth_strv_free(a->admins, a->nadmins);
	free(a->path);
	free(a);
}

static int
auth_valid_name(const char *s)
{
	if (*s == '\0' || strlen(s) > 64)
		return (0);
	for (; *s != '\0'; s++) {
		if (!isalnum((u_char)*s) && strchr("._-", *s) == NULL)
			return (0);
	}
	return (1);
}

static int
auth_check_list(char **v, u_int n, char **why)
{
	u_int		 i;
	const char	*s;

	if (n == 0) {
		*why = xstrdup("empty list");
		return (-1);
	}
	for (i = 0; i < n; i++) {
		s = v[i];
		if (*s == '!')
			s++;
		if (*s == '@')
			s++;
		if (strcmp(s, "*") != 0 && !auth_valid_name(s)) {
			xasprintf(why, "bad list item \"%s\"", v[i]);
			return (-1);
		}
	}
	return (0);
}

static int
auth_parse_line(struct auth *a, char *line, char **why)
{
	char			*word, *rest, *name, *hash;
	struct auth_user	*u;
	struct auth_group	*g;
	struct auth_rule	*r;
	u_int			 i;

	while (isspace((u_char)*line))
		line++;
	rest = line + strcspn(line, " \t");
	if (*rest != '\0')
		*rest++ = '\0';
	word = line;
	while (isspace((u_char)*rest))
		rest++;

	if (strcmp(word, "user") == 0) {
		name = rest;
		rest += strcspn(rest, " \t");
		if (*rest != '\0')
			*rest++ = '\0';
		while (isspace((u_char)*rest))
			rest++;
		hash = rest;
		rest += strcspn(rest, " \t");
		if (*rest != '\0')
			*rest++ = '\0';
		if (!auth_valid_name(name)) {
			xasprintf(why, "bad user name \"%s\"", name);
			return (-1);
		}
		if (*hash == '\0') {
			xasprintf(why, "user %s has no password hash", name);
			return (-1);
		}
		for (i = 0; i < a->nusers; i++) {
			if (strcmp(a->users[i].name, name) == 0) {
				xasprintf(why, "user %s given twice", name);
				return (-1);
			}
		}
		a->users = xreallocarray(a->users, a->nusers + 1,
		    sizeof *a->users);
		u = &a->users[a->nusers++];
		u->name = xstrdup(name);
		u->hash = xstrdup(hash);
		auth_split(rest, &u->groups, &u->ngroups);
		for (i = 0; i < u->ngroups; i++) {
			if (!auth_valid_name(u->groups[i])) {
				xasprintf(why, "bad group name \"%s\"",
				    u->groups[i]);
				return (-1);
			}
		}
		return (0);
	}
	if (strcmp(word, "group") == 0) {
		name = rest;
		rest += strcspn(rest, " \t");
		if (*rest != '\0')
			*rest++ = '\0';
		if (!auth_valid_name(name)) {
			xasprintf(why, "bad group name \"%s\"", name);
			return (-1);
		}
		a->groups = xreallocarray(a->groups, a->ngroups + 1,
		    sizeof *a->groups);
		g = &a->groups[a->ngroups++];
		g->name = xstrdup(name);
		auth_split(rest, &g->members, &g->nmembers);
		return (auth_check_list(g->members, g->nmembers, why));
	}
	if (strcmp(word, "rw") == 0 || strcmp(word, "ro") == 0) {
		name = rest;
		rest += strcspn(rest, " \t");
		if (*rest != '\0')
			*rest++ = '\0';
		if (*name == '\0') {
			xasprintf(why, "%s needs a console pattern", word);
			return (-1);
		}
		a->rules = xreallocarray(a->rules, a->nrules + 1,
		    sizeof *a->rules);
		r = &a->rules[a->nrules++];
		r->access = (word[1] == 'w') ? AUTH_RW : AUTH_RO;
		r->glob = xstrdup(name);
		auth_split(rest, &r->list, &r->nlist);
		return (auth_check_list(r->list, r->nlist, why));
	}
	if (strcmp(word, "admin") == 0) {
		if (a->admins != NULL) {
			*why = xstrdup("admin given twice");
			return (-1);
		}
		auth_split(rest, &a->admins, &a->nadmins);
		return (auth_check_list(a->admins, a->nadmins, why));
	}
	xasprintf(why, "unknown keyword \"%s\" (user, group, rw, ro, admin)",
	    word);
	return (-1);
}

/* Read a users file; NULL and *err ("file:line: why") on error. */
struct auth *
auth_load(const char *path, char **err)
{
	struct auth	*a;
	struct stat	 st;
	FILE		*f;
	char		*line = NULL, *why = NULL, *p;
	size_t		 size = 0;
	ssize_t		 len;
	u_int		 lineno = 0;
	int		 fd;

	if ((fd = open(path, O_RDONLY|O_CLOEXEC)) == -1) {
		xasprintf(err, "%s: %s", path, strerror(errno));
		return (NULL);
	}
	if (fstat(fd, &st) == -1 || (f = fdopen(fd, "r")) == NULL) {
		xasprintf(err, "%s: %s", path, strerror(errno));
		close(fd);
		return (NULL);
	}
	if (st.st_mode & S_IWOTH)
		log_warnx("%s is writable by everyone", path);

	a = xcalloc(1, sizeof *a);
	a->path = xstrdup(path);
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	a->size = st.st_size;
	a->mtime = st.st_mtim;

	while ((len = getline(&line, &size, f)) != -1) {
		lineno++;
		if (len > AUTH_LINE_MAX) {
			why = xstrdup("line too long");
			goto bad;
		}
		line[strcspn(line, "\r\n")] = '\0';
		if ((p = strchr(line, '#')) != NULL)
			*p = '\0';
		for (p = line; isspace((u_char)*p); p++)
			;
		if (*p == '\0')
			continue;
		if (auth_parse_line(a, p, &why) == -1)
			goto bad;
	}
	if (ferror(f)) {
		xasprintf(err, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (line != NULL)
		explicit_bzero(line, size);
	free(line);
	fclose(f);
	return (a);

bad:
	xasprintf(err, "%s:%u: %s", path, lineno, why);
	free(why);
fail:
	if (line != NULL)
		explicit_bzero(line, size);
	free(line);
	fclose(f);
	auth_free(a);
	return (NULL);
}

/*
 * Read the file again if it changed since it was read (edits take effect
 * on the next login, as with conserver).  On error the old rules stay
 * and -1 is returned with *err.
 */
int
auth_refresh(struct auth **ap, char **err)
{
	struct auth	*a = *ap, *n;
	struct stat	 st;

	if (stat(a->path, &st) == 0 && st.st_dev == a->dev &&
	    st.st_ino == a->ino && st.st_size == a->size &&
	    st.st_mtim.tv_sec == a->mtime.tv_sec &&
	    st.st_mtim.tv_nsec == a->mtime.tv_nsec)
		return (0);
	if ((n = auth_load(a->path, err)) == NULL)
		return (-1);
	auth_free(a);
	*ap = n;
	log_info("users file %s read again", n->path);
	return (1);
}

static const struct auth_user *
auth_user(const struct auth *a, const char *name)
{
	u_int	i;

	for (i = 0; i < a->nusers; i++) {
		if (strcmp(a->users[i].name, name) == 0)
			return (&a->users[i]);
	}
	return (NULL);
}

static int
auth_in_group(const struct auth *a, const char *user, const char *group,
    u_int depth)
{
	const struct auth_user	*u;
	const char		*m;
	u_int			 i, j;

	if (depth > AUTH_GROUP_DEPTH)
		return (0);
	if ((u = auth_user(a, user)) != NULL) {
		for (i = 0; i < u->ngroups; i++) {
			if (strcmp(u->groups[i], group) == 0)
				return (1);
		}
	}
	for (i = 0; i < a->ngroups; i++) {
		if (strcmp(a->groups[i].name, group) != 0)
			continue;
		for (j = 0; j < a->groups[i].nmembers; j++) {
			m = a->groups[i].members[j];
			if (*m == '@') {
				if (auth_in_group(a, user, m + 1, depth + 1))
					return (1);
			} else if (strcmp(m, "*") == 0 || strcmp(m, user) == 0)
				return (1);
		}
	}
	return (0);
}

/* Does the list admit user?  The first item naming the user decides. */
static int
auth_in_list(const struct auth *a, char **list, u_int n, const char *user)
{
	const char	*s;
	u_int		 i;
	int		 neg, hit;

	for (i = 0; i < n; i++) {
		s = list[i];
		neg = (*s == '!');
		if (neg)
			s++;
		if (strcmp(s, "*") == 0)
			hit = 1;
		else if (*s == '@')
			hit = auth_in_group(a, user, s + 1, 0);
		else
			hit = (strcmp(s, user) == 0);
		if (hit)
			return (!neg);
	}
	return (0);
}

/*
 * What user may do with a console: AUTH_RW, AUTH_RO or AUTH_NONE.  name
 * (the VM's display name) and uuid may be NULL.
 */
enum auth_access
auth_console_access(const struct auth *a, const char *user, const char *name,
    const char *key, const char *uuid)
{
	const struct auth_rule	*r;
	u_int			 i;
	int			 match;

	if (auth_user(a, user) == NULL)
		return (AUTH_NONE);
	for (i = 0; i < a->nrules; i++) {
		r = &a->rules[i];
		match = (name != NULL && fnmatch(r->glob, name, 0) == 0) ||
		    (key != NULL && fnmatch(r->glob, key, 0) == 0) ||
		    (uuid != NULL && fnmatch(r->glob, uuid, 0) == 0);
		if (match && auth_in_list(a, r->list, r->nlist, user))
			return (r->access);
	}
	return (AUTH_NONE);
}

/* May user run the operator's commands (disconnect, drain, upgrade)? */
int
auth_is_admin(const struct auth *a, const char *user)
{
	if (auth_user(a, user) == NULL)
		return (0);
	return (auth_in_list(a, a->admins, a->nadmins, user));
}

/*
 * Check a password now, on this thread: 1 if it matches user's hash.
 * Unknown and locked users cost one crypt(3) too.
 */
int
auth_check_password(const struct auth *a, const char *user,
    const char *password)
{
	const struct auth_user	*u;
	struct crypt_data	*cd;
	const char		*hash, *out;
	int			 ok = 0, usable;

	u = auth_user(a, user);
	usable = (u != NULL && u->hash[0] != '*' && u->hash[0] != '!');
	hash = usable ? u->hash : NULL;

	cd = xcalloc(1, sizeof *cd);
	if (hash == NULL) {
		/* Spend the time a real check would take. */
		out = crypt_r(password, crypt_gensalt_rn(NULL, 0, NULL, 0,
		    cd->setting, sizeof cd->setting), cd);
		(void)out;
	} else {
		out = crypt_r(password, hash, cd);
		if (out != NULL && out[0] != '*' &&
		    strlen(out) == strlen(hash) &&
		    CRYPTO_memcmp(out, hash, strlen(hash)) == 0)
			ok = 1;
	}
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return (ok);
}

/*
 * The worker thread: jobs in, answers out through a pipe the event loop
 * reads.  Jobs carry copies of what they need, so reloading the users
 * file or freeing the asking client never races with the thread.
 */
struct auth_job {
	char			*user;
	char			*password;
	char			*hash;		/* NULL: unknown or locked. */
	u_int			 id;
	int			 ok;
	void			 (*cb)(u_int, int);
	struct auth_job		*next;
};

static pthread_mutex_t	 auth_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 auth_cond = PTHREAD_COND_INITIALIZER;
static struct auth_job	*auth_queue, **auth_queue_tail = &auth_queue;
static int		 auth_pipe[2] = { -1, -1 };
static int		 auth_stopping;
static pthread_t	 auth_thread;
static struct event	*auth_ev;
static u_int		 auth_queued;

static void
auth_job_free(struct auth_job *j)
{
	free(j->user);
	if (j->password != NULL)
		explicit_bzero(j->password, strlen(j->password));
	free(j->password);
	free(j->hash);
	free(j);
}

static void *
auth_worker(void *arg)
{
	struct auth_job		*j;
	struct auth		 one;
	struct auth_user	 u;
	ssize_t			 n;

	(void)arg;
	for (;;) {
		pthread_mutex_lock(&auth_mtx);
		while (auth_queue == NULL && !auth_stopping)
			pthread_cond_wait(&auth_cond, &auth_mtx);
		if (auth_queue == NULL) {
			pthread_mutex_unlock(&auth_mtx);
			break;
		}
		j = auth_queue;
		auth_queue = j->next;
		if (auth_queue == NULL)
			auth_queue_tail = &auth_queue;
		pthread_mutex_unlock(&auth_mtx);

		/* A users file of one user: the copy the job carries. */
		memset(&one, 0, sizeof one);
		memset(&u, 0, sizeof u);
		u.name = j->user;
		u.hash = (j->hash != NULL) ? j->hash : (char *)"*";
		one.users = &u;
		one.nusers = 1;
		j->ok = auth_check_password(&one, j->user, j->password);
		explicit_bzero(j->password, strlen(j->password));

		do
			n = write(auth_pipe[1], &j, sizeof j);
		while (n == -1 && errno == EINTR);
		if (n != sizeof j)
			fatal("auth: answer pipe");
	}
	return (NULL);
}

static void
auth_answer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct auth_job	*j;
	ssize_t		 n;

	(void)events;
	(void)arg;
	while ((n = read(fd, &j, sizeof j)) == sizeof j) {
		auth_queued--;
		j->cb(j->id, j->ok);
		auth_job_free(j);
	}
}

/* Start the password worker on base. */
void
auth_init(struct event_base *base)
{
	if (auth_ev != NULL)
		return;
	if (pipe2(auth_pipe, O_CLOEXEC) == -1)
		fatal("auth: pipe");
	if (fcntl(auth_pipe[0], F_SETFL, O_NONBLOCK) == -1)
		fatal("auth: fcntl");
	auth_stopping = 0;
	if ((errno = pthread_create(&auth_thread, NULL, auth_worker,
	    NULL)) != 0)
		fatal("auth: pthread_create");
	auth_ev = event_new(base, auth_pipe[0], EV_READ|EV_PERSIST,
	    auth_answer_cb, NULL);
	event_add(auth_ev, NULL);
}

/* Stop the worker; answers not delivered yet are dropped. */
void
auth_shutdown(void)
{
	struct auth_job	*j;

	if (auth_ev == NULL)
		return;
	pthread_mutex_lock(&auth_mtx);
	auth_stopping = 1;
	pthread_cond_signal(&auth_cond);
	pthread_mutex_unlock(&auth_mtx);
	pthread_join(auth_thread, NULL);
	while (read(auth_pipe[0], &j, sizeof j) == sizeof j)
		auth_job_free(j);
	event_free(auth_ev);
	auth_ev = NULL;
	close(auth_pipe[0]);
	close(auth_pipe[1]);
	auth_pipe[0] = auth_pipe[1] = -1;
	auth_queued = 0;
}

/* Logins waiting for their answer. */
u_int
auth_pending(void)
{
	return (auth_queued);
}

/*
 * Check user's password on the worker; cb(id, ok) is called later on the
 * event loop.  The caller finds its client again by id (it may be gone).
 */
void
auth_verify(const struct auth *a, const char *user, const char *password,
    u_int id, void (*cb)(u_int, int))
{
	const struct auth_user	*u;
	struct auth_job		*j;

	if (auth_ev == NULL)
		fatalx("auth_verify before auth_init");
	j = xcalloc(1, sizeof *j);
	j->user = xstrdup(user);
	j->password = xstrdup(password);
	u = auth_user(a, user);
	if (u != NULL && u->hash[0] != '*' && u->hash[0] != '!')
		j->hash = xstrdup(u->hash);
	j->id = id;
	j->cb = cb;

	pthread_mutex_lock(&auth_mtx);
	*auth_queue_tail = j;
	auth_queue_tail = &j->next;
	auth_queued++;
	pthread_cond_signal(&auth_cond);
	pthread_mutex_unlock(&auth_mtx);
}
