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
 *	vspcctl [-j] [-f file] [-s socket] command [arguments]
 *
 * The socket is -s, else [control] socket of the configuration file (-f,
 * default the one vspcd reads).  Each command sends one Request and
 * prints the Reply (or the stream of them) with the chosen output.
 */

#include <sys/socket.h>
#include <sys/un.h>

#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"
#include "vspcctl.h"

#define CTL_FRAME_MAX	(16 * 1024 * 1024)

const struct ctl_output	*ctl_out = &ctl_output_human;
const char		*ctl_socket;
int			 ctl_escape_key = CTL_ESCAPE_DEFAULT;

static int	cmd_cluster_status(const struct ctl_cmd *, int, char **);
static int	cmd_vm_list(const struct ctl_cmd *, int, char **);
static int	cmd_vm_show(const struct ctl_cmd *, int, char **);
static int	cmd_who(const struct ctl_cmd *, int, char **);
static int	cmd_disconnect(const struct ctl_cmd *, int, char **);
static int	cmd_attach(const struct ctl_cmd *, int, char **);
static int	cmd_log(const struct ctl_cmd *, int, char **);
static int	cmd_drain(const struct ctl_cmd *, int, char **);
static int	cmd_reload(const struct ctl_cmd *, int, char **);

static const struct ctl_cmd ctl_cmds[] = {
	{ "cluster status", "", 0, 0, cmd_cluster_status },
	{ "vm list", "", 0, 0, cmd_vm_list },
	{ "vm show", "VM", 1, 1, cmd_vm_show },
	{ "who", "[VM]", 0, 1, cmd_who },
	{ "disconnect", "VM | [NODE:]ID", 1, 1, cmd_disconnect },
	{ "attach", "VM [--ro | --spy | --force | --exclusive]", 1, 2,
	    cmd_attach },
	{ "log", "VM [--follow] [--lines N]", 1, 4, cmd_log },
	{ "node drain", "[NODE]", 0, 1, cmd_drain },
	{ "node undrain", "[NODE]", 0, 1, cmd_drain },
	{ "reload", "[NODE]", 0, 1, cmd_reload },
};

static void __attribute__((__noreturn__))
usage(void)
{
	size_t	i;

	fprintf(stderr, "usage: vspcctl [-j] [-e key] [-f file] "
	    "[-s socket] command [arguments]\ncommands:\n");
	for (i = 0; i < sizeof ctl_cmds / sizeof ctl_cmds[0]; i++)
		fprintf(stderr, "\t%s %s\n", ctl_cmds[i].name,
		    ctl_cmds[i].usage);
	exit(2);
}

/* Connect to the control socket. */
int
ctl_connect(void)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(ctl_socket) >= sizeof sun.sun_path)
		errx(1, "%s: path too long", ctl_socket);
	memcpy(sun.sun_path, ctl_socket, strlen(ctl_socket));
	if ((fd = socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0)) == -1)
		err(1, "socket");
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		err(1, "%s", ctl_socket);
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

static int
cmd_cluster_status(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, VSPC__CTL__COMMAND__CLUSTER_STATUS);
	return (ctl_simple(&req, ctl_out->status));
}

static int
cmd_vm_list(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, VSPC__CTL__COMMAND__VM_LIST);
	return (ctl_simple(&req, ctl_out->vm_list));
}

static int
cmd_vm_show(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, VSPC__CTL__COMMAND__VM_SHOW);
	req.target = argv[0];
	return (ctl_simple(&req, ctl_out->vm_show));
}

static int
cmd_who(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, VSPC__CTL__COMMAND__WHO);
	if (argc > 0)
		req.target = argv[0];
	return (ctl_simple(&req, ctl_out->who));
}

static int
cmd_disconnect(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, VSPC__CTL__COMMAND__DISCONNECT);
	req.target = argv[0];
	return (ctl_simple(&req, ctl_out->message));
}

static int
cmd_drain(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, strcmp(cmd->name, "node drain") == 0 ?
	    VSPC__CTL__COMMAND__DRAIN : VSPC__CTL__COMMAND__UNDRAIN);
	if (argc > 0)
		req.node = argv[0];
	return (ctl_simple(&req, ctl_out->message));
}

static int
cmd_reload(const struct ctl_cmd *cmd, int argc, char **argv)
{
	Vspc__Ctl__Request	req;

	ctl_request_init(&req, VSPC__CTL__COMMAND__RELOAD);
	if (argc > 0)
		req.node = argv[0];
	return (ctl_simple(&req, ctl_out->message));
}

static int
cmd_attach(const struct ctl_cmd *cmd, int argc, char **argv)
{
	uint32_t	 mode = ATTACH_DEFAULT;
	const char	*vm = NULL;
	int		 i;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--ro") == 0)
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
	return (ctl_attach(ctl_connect(), vm, mode));
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
	char			*cerr;
	int			 ch, used, rc;

	log_init(1, 0);
	while ((ch = getopt(argc, argv, "+e:f:js:")) != -1) {
		switch (ch) {
		case 'e':
			if (optarg[0] == '^' && optarg[1] != '\0')
				ctl_escape_key = optarg[1] & 0x1f;
			else if (optarg[0] != '\0' && optarg[1] == '\0')
				ctl_escape_key = (u_char)optarg[0];
			else
				errx(2, "-e %s: one key, or ^X", optarg);
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
	rc = cmd->exec(cmd, argc, argv);
	config_free(conf);
	return (rc);
}
