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
 * vspcctl: talk to a vspcd node's control socket.
 *
 *	vspcctl [-j] [-c host:port] [-f file] [-s socket] command [arguments]
 *
 * The socket is -s, else [control] socket of the configuration file (-f,
 * default the one vspcd reads); -c HOST:PORT (or $VSPCCTL_CONNECT) talks
 * to a node's [control] listen over TCP instead.  Each command sends one
 * Request and prints the Reply (or the stream of them) with the chosen
 * output.
 */

#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "vspcd.h"
#include "vspcctl.h"

#define CTL_FRAME_MAX	(16 * 1024 * 1024)

const struct ctl_output	*ctl_out = &ctl_output_human;
const char		*ctl_socket;
const char		*ctl_connect_addr;
int			 ctl_escape_key = CTL_ESCAPE_DEFAULT;
static const char	*ctl_user;		/* -u: log in over TCP. */
static char		*ctl_password;

static int	cmd_attach(const struct ctl_cmd *, int, char **);
static int	cmd_log(const struct ctl_cmd *, int, char **);
static int	cmd_node_upgrade(const struct ctl_cmd *, int, char **);

/*
 * The commands.  A command that sends one request and prints one reply
 * is a row and nothing else (no exec: ctl_cmd_request runs it); its
 * output is a view of struct ctl_output (output.c).
 */
static const struct ctl_cmd ctl_cmds[] = {
	{ .name = "cluster status", .usage = "", .minargs = 0, .maxargs = 0,
	  .request = VSPC__CTL__COMMAND__CLUSTER_STATUS,
	  .view = CTL_VIEW_STATUS },
	{ .name = "vm list", .usage = "", .minargs = 0, .maxargs = 0,
	  .request = VSPC__CTL__COMMAND__VM_LIST,
	  .view = CTL_VIEW_VM_LIST },
	{ .name = "vm show", .usage = "VM", .minargs = 1, .maxargs = 1,
	  .request = VSPC__CTL__COMMAND__VM_SHOW, .flags = CTL_ARG_TARGET,
	  .view = CTL_VIEW_VM_SHOW },
	{ .name = "who", .usage = "[VM]", .minargs = 0, .maxargs = 1,
	  .request = VSPC__CTL__COMMAND__WHO, .flags = CTL_ARG_TARGET,
	  .view = CTL_VIEW_WHO },
	{ .name = "disconnect", .usage = "VM | [NODE:]ID", .minargs = 1,
	  .maxargs = 1, .request = VSPC__CTL__COMMAND__DISCONNECT,
	  .flags = CTL_ARG_TARGET, .view = CTL_VIEW_MESSAGE },
	{ .name = "attach", .usage = "VM [--ro | --spy | --force | "
	  "--exclusive] [--retry SECONDS]", .minargs = 1, .maxargs = 4,
	  .exec = cmd_attach },
	{ .name = "log", .usage = "VM [--follow] [--lines N]", .minargs = 1,
	  .maxargs = 4, .exec = cmd_log },
	{ .name = "node drain", .usage = "[NODE]", .minargs = 0, .maxargs = 1,
	  .request = VSPC__CTL__COMMAND__DRAIN, .flags = CTL_ARG_NODE,
	  .view = CTL_VIEW_MESSAGE },
	{ .name = "node undrain", .usage = "[NODE]", .minargs = 0,
	  .maxargs = 1, .request = VSPC__CTL__COMMAND__UNDRAIN,
	  .flags = CTL_ARG_NODE, .view = CTL_VIEW_MESSAGE },
	{ .name = "node upgrade", .usage = "[NODE] [--binary PATH]",
	  .minargs = 0, .maxargs = 3, .request = VSPC__CTL__COMMAND__UPGRADE,
	  .view = CTL_VIEW_MESSAGE, .exec = cmd_node_upgrade },
	{ .name = "cluster upgrade", .usage = "--binary PATH [--timeout S]",
	  .minargs = 2, .maxargs = 4, .exec = ctl_cluster_upgrade },
	{ .name = "reload", .usage = "[NODE]", .minargs = 0, .maxargs = 1,
	  .request = VSPC__CTL__COMMAND__RELOAD, .flags = CTL_ARG_NODE,
	  .view = CTL_VIEW_MESSAGE },
	{ .name = "tls", .usage = "", .minargs = 0, .maxargs = 0,
	  .request = VSPC__CTL__COMMAND__TLS, .view = CTL_VIEW_TEXT },
};

static void __attribute__((__noreturn__))
usage(void)
{
	size_t	i;

	fprintf(stderr, "usage: vspcctl [-j] [-c host:port] [-e key] "
	    "[-f file] [-s socket] [-u user] command [arguments]\n"
	    "commands:\n");
	for (i = 0; i < sizeof ctl_cmds / sizeof ctl_cmds[0]; i++)
		fprintf(stderr, "\t%s %s\n", ctl_cmds[i].name,
		    ctl_cmds[i].usage);
	exit(2);
}

/* Connect to HOST:PORT, [HOST]:PORT or HOST (port 13375). */
static int
ctl_dial_tcp(const char *addr, char **why)
{
	struct addrinfo	 hints, *res, *ai;
	char		*host, *port, *p;
	int		 fd = -1, e, one = 1, saved = 0;

	host = xstrdup(addr);
	port = NULL;
	if (*host == '[' && (p = strchr(host, ']')) != NULL) {
		*p = '\0';
		if (p[1] == ':')
			port = p + 2;
		memmove(host, host + 1, strlen(host + 1) + 1);
	} else if ((p = strrchr(host, ':')) != NULL &&
	    strchr(host, ':') == p) {
		*p = '\0';
		port = p + 1;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((e = getaddrinfo(host, port != NULL && *port != '\0' ? port :
	    "13375", &hints, &res)) != 0) {
		xasprintf(why, "%s: %s", addr, gai_strerror(e));
		free(host);
		return (-1);
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype|SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1) {
			saved = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	free(host);
	if (fd == -1) {
		xasprintf(why, "%s: %s", addr, strerror(saved));
		return (-1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return (fd);
}

/*
 * The password for -u: $VSPCCTL_PASSWORD, else asked on /dev/tty without
 * echo.  Asked once per run (attach --retry dials again).
 */
static const char *
ctl_get_password(void)
{
	struct termios	 t, saved;
	char		 buf[512], *p;
	ssize_t		 n;
	size_t		 len = 0;
	int		 fd;

	if (ctl_password != NULL)
		return (ctl_password);
	if ((p = getenv("VSPCCTL_PASSWORD")) != NULL) {
		ctl_password = xstrdup(p);
		return (ctl_password);
	}
	if ((fd = open("/dev/tty", O_RDWR|O_CLOEXEC)) == -1)
		errx(1, "-u %s: no terminal to ask the password on; set "
		    "VSPCCTL_PASSWORD", ctl_user);
	(void)write(fd, "password: ", 10);
	if (tcgetattr(fd, &saved) == 0) {
		t = saved;
		t.c_lflag &= ~(ECHO|ECHONL);
		(void)tcsetattr(fd, TCSAFLUSH, &t);
	}
	while (len < sizeof buf - 1) {
		n = read(fd, buf + len, 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0 || buf[len] == '\n' || buf[len] == '\r')
			break;
		len++;
	}
	buf[len] = '\0';
	(void)tcsetattr(fd, TCSAFLUSH, &saved);
	(void)write(fd, "\n", 1);
	close(fd);
	ctl_password = xstrdup(buf);
	explicit_bzero(buf, sizeof buf);
	return (ctl_password);
}

/* LOGIN on a fresh TCP connection (-u).  Returns -1 and why on failure. */
static int
ctl_login(int fd, char **why)
{
	Vspc__Ctl__Request	 req;
	Vspc__Ctl__Reply	*r;
	int			 rc = 0;

	ctl_request_init(&req, VSPC__CTL__COMMAND__LOGIN);
	req.user = (char *)ctl_user;
	req.password = (char *)ctl_get_password();
	if (ctl_send(fd, &req) == -1 || (r = ctl_recv(fd)) == NULL) {
		xasprintf(why, "%s: connection closed during login",
		    ctl_connect_addr);
		return (-1);
	}
	if (!r->ok) {
		xasprintf(why, "%s: %s", ctl_connect_addr, r->error);
		rc = -1;
	}
	vspc__ctl__reply__free_unpacked(r, NULL);
	return (rc);
}

/*
 * Connect to the node: over TCP with -c, else to the control socket.
 * Returns -1 and why on failure.
 */
int
ctl_dial(char **why)
{
	struct sockaddr_un	sun;
	int			fd;

	if (ctl_connect_addr != NULL) {
		if ((fd = ctl_dial_tcp(ctl_connect_addr, why)) == -1)
			return (-1);
		if (ctl_user != NULL && ctl_login(fd, why) == -1) {
			close(fd);
			return (-1);
		}
		return (fd);
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(ctl_socket) >= sizeof sun.sun_path) {
		xasprintf(why, "%s: path too long", ctl_socket);
		return (-1);
	}
	memcpy(sun.sun_path, ctl_socket, strlen(ctl_socket));
	if ((fd = socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0)) == -1) {
		xasprintf(why, "socket: %s", strerror(errno));
		return (-1);
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		xasprintf(why, "%s: %s", ctl_socket, strerror(errno));
		close(fd);
		return (-1);
	}
	return (fd);
}

/* Connect to the node, or exit. */
int
ctl_connect(void)
{
	char	*why;
	int	 fd;

	if ((fd = ctl_dial(&why)) == -1)
		errx(1, "%s", why);
	return (fd);
}

static int
ctl_write_all(int fd, const void *buf, size_t len)
{
	const u_char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return (-1);
		p += n;
		len -= n;
	}
	return (0);
}

static int
ctl_read_all(int fd, void *buf, size_t len)
{
	u_char	*p = buf;
	ssize_t	 n;

	while (len > 0) {
		n = read(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return (-1);
		p += n;
		len -= n;
	}
	return (0);
}

/* Send one request, framed. */
int
ctl_send(int fd, Vspc__Ctl__Request *req)
{
	u_char	*buf;
	size_t	 len;
	int	 rc;

	req->version = CTL_PROTOCOL;
	len = vspc__ctl__request__get_packed_size(req);
	buf = xmalloc(len + 4);
	buf[0] = len >> 24;
	buf[1] = len >> 16;
	buf[2] = len >> 8;
	buf[3] = len;
	vspc__ctl__request__pack(req, buf + 4);
	rc = ctl_write_all(fd, buf, len + 4);
	free(buf);
	return (rc);
}

/* Read one reply; NULL at end of file or on a bad frame. */
Vspc__Ctl__Reply *
ctl_recv(int fd)
{
	Vspc__Ctl__Reply	*r;
	u_char			 hdr[4], *buf;
	size_t			 len;

	if (ctl_read_all(fd, hdr, 4) == -1)
		return (NULL);
	len = (size_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
	if (len > CTL_FRAME_MAX)
		errx(1, "reply of %zu bytes: too large", len);
	buf = xmalloc(len + 1);
	if (ctl_read_all(fd, buf, len) == -1) {
		free(buf);
		return (NULL);
	}
	r = vspc__ctl__reply__unpack(NULL, len, buf);
	free(buf);
	if (r == NULL)
		errx(1, "bad reply from %s", ctl_socket);
	if (r->version != CTL_PROTOCOL)
		errx(1, "%s speaks control protocol %u, not %u", ctl_socket,
		    r->version, CTL_PROTOCOL);
	return (r);
}

/* A request with the protocol version and a command. */
void
ctl_request_init(Vspc__Ctl__Request *req, Vspc__Ctl__Command cmd)
{
	vspc__ctl__request__init(req);
	req->version = CTL_PROTOCOL;
	req->command = cmd;
}

/* One request, one reply; print it with fn.  Returns the exit status. */
static int
ctl_simple(Vspc__Ctl__Request *req,
    void (*fn)(const Vspc__Ctl__Reply *))
{
	Vspc__Ctl__Reply	*r;
	int			 fd, rc;

	fd = ctl_connect();
	if (ctl_send(fd, req) == -1)
		err(1, "%s", ctl_socket);
	if ((r = ctl_recv(fd)) == NULL)
		errx(1, "%s: connection closed", ctl_socket);
	close(fd);
	if (!r->ok) {
		warnx("%s", r->error);
		rc = 1;
	} else {
		fn(r);
		rc = 0;
	}
	vspc__ctl__reply__free_unpacked(r, NULL);
	return (rc);
}

/* A command of the table without exec: one request, one reply. */
static int
ctl_cmd_request(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, cmd->request);
	if (argc > 0 && (cmd->flags & CTL_ARG_TARGET))
		req.target = argv[0];
	if (argc > 0 && (cmd->flags & CTL_ARG_NODE))
		req.node = argv[0];
	return (ctl_simple(&req, ctl_out->view[cmd->view]));
}

/*
 * Hot upgrade of one node (the answering one without NODE): it starts
 * PATH (default: the binary it runs) and hands everything over.
 */
static int
cmd_node_upgrade(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	req;
	char			abs[PATH_MAX];
	int			i;

	ctl_request_init(&req, cmd->request);
	/* A relative path means the same to the local node as here. */
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--binary") == 0 && i + 1 < argc)
			req.arg = argv[++i];
		else if (strncmp(argv[i], "--binary=", 9) == 0)
			req.arg = argv[i] + 9;
		else if (argv[i][0] != '-' && req.node == NULL)
			req.node = argv[i];
		else
			errx(1, "usage: vspcctl node upgrade [NODE] "
			    "[--binary PATH]");
	}
	if (req.arg != NULL && req.arg[0] != '/' && req.node == NULL &&
	    realpath(req.arg, abs) != NULL)
		req.arg = abs;
	return (ctl_simple(&req, ctl_out->view[cmd->view]));
}

static int
cmd_attach(const struct ctl_cmd *cmd, int argc, char **argv)
{
	uint32_t	 mode = ATTACH_DEFAULT;
	const char	*vm = NULL, *arg;
	char		*ep;
	u_long		 retry = CTL_RETRY_DEFAULT;
	int		 i;

	for (i = 0; i < argc; i++) {
		arg = NULL;
		if (strcmp(argv[i], "--retry") == 0 && i + 1 < argc)
			arg = argv[++i];
		else if (strncmp(argv[i], "--retry=", 8) == 0)
			arg = argv[i] + 8;
		if (arg != NULL) {
			errno = 0;
			retry = strtoul(arg, &ep, 10);
			if (*arg == '\0' || *ep != '\0' || errno != 0 ||
			    retry > 86400)
				errx(2, "--retry %s: seconds, 0 to 86400", arg);
		} else if (strcmp(argv[i], "--ro") == 0)
			mode = ATTACH_RO;
		else if (strcmp(argv[i], "--spy") == 0)
			mode = ATTACH_SPY;
		else if (strcmp(argv[i], "--force") == 0)
			mode = ATTACH_FORCE;
		else if (strcmp(argv[i], "--exclusive") == 0)
			mode = ATTACH_EXCLUSIVE;
		else if (argv[i][0] == '-' || vm != NULL)
			usage();
		else
			vm = argv[i];
	}
	if (vm == NULL)
		usage();
	return (ctl_attach(ctl_connect(), vm, mode, retry));
}

static int
cmd_log(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	 req;
	Vspc__Ctl__Reply	*r;
	char			*ep, *vm = NULL;
	long			 n;
	int			 i, fd, rc = 0;

	ctl_request_init(&req, VSPC__CTL__COMMAND__LOG);
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--follow") == 0 ||
		    strcmp(argv[i], "-F") == 0)
			req.follow = 1;
		else if (strcmp(argv[i], "--lines") == 0 ||
		    strcmp(argv[i], "-n") == 0) {
			if (++i == argc)
				usage();
			n = strtol(argv[i], &ep, 10);
			if (*ep != '\0' || n < 1 || n > 10000000)
				errx(2, "--lines %s: not a number of lines",
				    argv[i]);
			req.lines = n;
		} else if (argv[i][0] == '-' || vm != NULL)
			usage();
		else
			vm = argv[i];
	}
	if (vm == NULL)
		usage();
	req.target = vm;
	fd = ctl_connect();
	if (ctl_send(fd, &req) == -1)
		err(1, "%s", ctl_socket);
	while ((r = ctl_recv(fd)) != NULL) {
		if (!r->ok) {
			warnx("%s", r->error);
			rc = 1;
		} else if (r->data.len > 0) {
			fwrite(r->data.data, 1, r->data.len, stdout);
			fflush(stdout);
		}
		if (!r->more) {
			vspc__ctl__reply__free_unpacked(r, NULL);
			break;
		}
		vspc__ctl__reply__free_unpacked(r, NULL);
	}
	close(fd);
	return (rc);
}

/* Match the command words; returns how many argv words they took. */
static const struct ctl_cmd *
ctl_find(int argc, char **argv, int *used)
{
	const struct ctl_cmd	*cmd;
	size_t			 i;
	char			*copy, *w, *p;
	int			 n, ok;

	for (i = 0; i < sizeof ctl_cmds / sizeof ctl_cmds[0]; i++) {
		cmd = &ctl_cmds[i];
		copy = xstrdup(cmd->name);
		p = copy;
		n = 0;
		ok = 1;
		while ((w = strsep(&p, " ")) != NULL) {
			if (n >= argc || strcmp(argv[n], w) != 0) {
				ok = 0;
				break;
			}
			n++;
		}
		free(copy);
		if (ok) {
			*used = n;
			return (cmd);
		}
	}
	return (NULL);
}

int
main(int argc, char **argv)
{
	const struct ctl_cmd	*cmd;
	struct config		*conf;
	const char		*file = NULL;
	char			*cerr, *p;
	int			 ch, used, rc;

	log_init(1, 0);
	while ((ch = getopt(argc, argv, "+c:e:f:js:u:")) != -1) {
		switch (ch) {
		case 'u':
			ctl_user = optarg;
			break;
		case 'e':
			if (optarg[0] == '^' && optarg[1] != '\0')
				ctl_escape_key = optarg[1] & 0x1f;
			else if (optarg[0] != '\0' && optarg[1] == '\0')
				ctl_escape_key = (u_char)optarg[0];
			else
				errx(2, "-e %s: one key, or ^X", optarg);
			break;
		case 'c':
			ctl_connect_addr = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		case 'j':
			ctl_out = &ctl_output_json;
			break;
		case 's':
			ctl_socket = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		usage();
	if (ctl_connect_addr == NULL && ctl_socket == NULL &&
	    (p = getenv("VSPCCTL_CONNECT")) != NULL && *p != '\0')
		ctl_connect_addr = p;
	if (ctl_connect_addr != NULL)
		ctl_socket = ctl_connect_addr;
	if ((cmd = ctl_find(argc, argv, &used)) == NULL) {
		warnx("unknown command: %s", argv[0]);
		usage();
	}
	argc -= used;
	argv += used;
	if (argc < cmd->minargs || (cmd->maxargs != -1 &&
	    argc > cmd->maxargs))
		errx(2, "usage: vspcctl %s %s", cmd->name, cmd->usage);

	conf = config_default();
	if (ctl_socket == NULL) {
		if (config_load(conf, file != NULL ? file : VSPCD_CONF,
		    &cerr) == -1) {
			if (file != NULL || access(VSPCD_CONF, F_OK) == 0)
				errx(1, "%s", cerr);
			free(cerr);
		}
		ctl_socket = conf->control_socket;
	}
	if (cmd->exec != NULL)
		rc = cmd->exec(cmd, argc, argv);
	else
		rc = ctl_cmd_request(cmd, argc, argv);
	config_free(conf);
	return (rc);
}
