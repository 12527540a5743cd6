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
 * One TCP connection from the fake ESXi host to the vSPC: non-blocking
 * output with a buffer only for what the kernel refused, the telnet
 * decoder, RFC 1143 option negotiation as ESXi answers it in the capture,
 * and the VMware extension (identity answers, WILL-PROXY, vMotion
 * replies handed to smv.c).  A closed connection is freed by sc_reap()
 * at the end of the loop turn, never inside its own callback.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "vspcd.h"
#include "esxisim.h"

static void	sc_flush(struct sconn *);
static void	sc_event(evutil_socket_t, short, void *);

/* Options whose negotiation state we keep. */
static const u_char sim_opts[] = {
	TELOPT_BINARY, TELOPT_ECHO, TELOPT_SGA, TELOPT_AUTH, TELOPT_COMPORT,
	TELOPT_VMWARE
};

/* KNOWN-SUBOPTIONS-1 exactly as ESXi sends it. */
static const u_char sim_ks1[] = {
	0x00, 0x01, 0x02, 0x03, 0x28, 0x29, 0x2b, 0x2c, 0x2d, 0x2e, 0x30,
	0x46, 0x47, 0x49, 0x50, 0x51, 0x54, 0x55, 0x56, 0x57, 0x52, 0x53
};

static void
uuid_esxi(const u_char *uuid, u_char x, char *out)
{
	int	i;

	for (i = 0; i < 16; i++) {
		sprintf(out, "%02x", uuid[i] ^ x);
		out += 2;
		if (i != 15)
			*out++ = i == 7 ? '-' : ' ';
	}
	*out = '\0';
}

static int
sim_optidx(u_char opt)
{
	u_int	i;

	for (i = 0; i < SIM_NOPTS; i++)
		if (sim_opts[i] == opt)
			return (i);
	return (-1);
}

/*
 * Connections: output, negotiation, the VMware extension.
 */


/* Watch for reading, and for writing if write is set. */
void
sc_arm(struct sconn *c, int write)
{
	short	what;

	if (c->flags & SC_DEAD)
		return;
	what = EV_READ | EV_PERSIST | (write ? EV_WRITE : 0);
	if (event_pending(c->ev, EV_READ | EV_WRITE, NULL) &&
	    event_get_events(c->ev) == what)
		return;
	event_del(c->ev);
	event_assign(c->ev, sim_base, c->fd, what, sc_event, c);
	event_add(c->ev, NULL);
}

static void
sc_append(struct sconn *c, const u_char *buf, size_t len)
{
	if (c->outoff > 0 && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + len > c->outsize) {
		if (c->outoff > 0) {
			memmove(c->out, c->out + c->outoff,
			    c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		if (c->outlen + len > c->outsize) {
			c->outsize = c->outlen + len + 1024;
			c->out = xreallocarray(c->out, 1, c->outsize);
		}
	}
	memcpy(c->out + c->outlen, buf, len);
	c->outlen += len;
}

/* Queue bytes on a connection and write what the kernel takes. */
void
sc_out(struct sconn *c, const u_char *buf, size_t len)
{
	ssize_t	n;

	if (c->flags & SC_DEAD || len == 0)
		return;
	if (sim_trace)
		ev_print("tx %u %s %s", c->vm->idx,
		    c->role == ROLE_SRC ? "src" : "dst", hex(buf, len));
	if ((c->flags & (SC_CORK | SC_CONNECTING)) ||
	    c->outlen - c->outoff > 0) {
		sc_append(c, buf, len);
		return;
	}
	n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			sc_close(c, "write-error");
			return;
		}
		n = 0;
	}
	if ((size_t)n < len) {
		sc_append(c, buf + n, len - n);
		sc_arm(c, 1);
	}
}

static void
sc_cork(struct sconn *c)
{
	c->flags |= SC_CORK;
}

static void
sc_uncork(struct sconn *c)
{
	c->flags &= ~SC_CORK;
	sc_flush(c);
}

static void
sc_flush(struct sconn *c)
{
	ssize_t	n;

	if (c->flags & (SC_DEAD | SC_CONNECTING))
		return;
	while (c->outlen > c->outoff) {
		n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				sc_arm(c, 1);
				return;
			}
			sc_close(c, "write-error");
			return;
		}
		c->outoff += n;
	}
	/* Drained: give the memory back, most connections idle. */
	free(c->out);
	c->out = NULL;
	c->outoff = c->outlen = c->outsize = 0;
	sc_arm(c, 0);
}

static void
sc_cmd(struct sconn *c, u_char verb, u_char opt)
{
	u_char	buf[3] = { TEL_IAC, verb, opt };

	sc_out(c, buf, 3);
}

/* Send IAC SB e8 cmd <payload escaped> IAC SE. */
void
sc_vmw(struct sconn *c, u_char cmd, const u_char *payload, size_t len)
{
	u_char	 buf[2 * SIM_SB_MAX + 8];
	size_t	 n = 0;

	if (len > SIM_SB_MAX)
		len = SIM_SB_MAX;
	buf[n++] = TEL_IAC;
	buf[n++] = TEL_SB;
	buf[n++] = TELOPT_VMWARE;
	buf[n++] = cmd;
	n += iac_escape(buf + n, payload, len);
	buf[n++] = TEL_IAC;
	buf[n++] = TEL_SE;
	sc_out(c, buf, n);
}

static const char *
sc_rolename(struct sconn *c)
{
	return (c->role == ROLE_SRC ? "src" : "dst");
}

static void
sc_not_pending(struct sconn *c)
{
	if (c->flags & SC_PENDING) {
		c->flags &= ~SC_PENDING;
		sim_pending--;
		sim_connq_pump();
	}
}


/* The extension is up: identify (source) or claim the vMotion (dest). */
static void
sc_e8_start(struct sconn *c)
{
	struct svm	*vm = c->vm;
	struct smv	*mv = vm->mv;
	const char	*uri;
	u_char		 buf[SIM_SB_MAX];
	size_t		 n;
	int		 ci;

	if (sim_ks1_after_ks2 && !(c->flags & SC_KS2)) {
		c->flags |= SC_KS1HELD;
		return;
	}
	c->flags &= ~SC_KS1HELD;
	c->flags |= SC_E8;
	sc_vmw(c, VMW_KNOWN_SUBOPTIONS_1, sim_ks1, sizeof sim_ks1);
	if (c->role == ROLE_SRC) {
		uri = vm->uri != NULL ? vm->uri : sim_uri;
		n = strlen(uri);
		if (n > sizeof buf - 1)
			n = sizeof buf - 1;
		buf[0] = 'S';
		memcpy(buf + 1, uri, n);
		sc_vmw(c, VMW_DO_PROXY, buf, n + 1);
		return;
	}
	if (mv == NULL || mv->dst != c)
		return;
	sc_vmw(c, VMW_VMOTION_PEER, mv->key, mv->keylen);
	ci = sim_optidx(TELOPT_COMPORT);
	if (c->us[ci] == TQ_NO && !(c->flags & SC_COMPORT)) {
		c->us[ci] = TQ_WANTYES;
		c->flags |= SC_COMPORT;
		sc_cmd(c, TEL_WILL, TELOPT_COMPORT);
	}
	mv->tpeer = now_us();
	if (sim_quiet < 2)
		ev_print("peer %u %s", vm->idx, hex(mv->key, mv->keylen));
}

/* The server answered WILL AUTH: release WILL e8. */
static void
sc_auth_done(struct sconn *c)
{
	int	ei = sim_optidx(TELOPT_VMWARE);

	if (c->flags & SC_AUTHDONE)
		return;
	c->flags |= SC_AUTHDONE;
	if (sim_unprompted) {
		/* Passive-proxy variant (protocol.md section 5, step 2). */
		if (c->us[sim_optidx(TELOPT_BINARY)] == TQ_NO) {
			c->us[sim_optidx(TELOPT_BINARY)] = TQ_WANTYES;
			sc_cmd(c, TEL_WILL, TELOPT_BINARY);
		}
		if (c->him[sim_optidx(TELOPT_BINARY)] == TQ_NO) {
			c->him[sim_optidx(TELOPT_BINARY)] = TQ_WANTYES;
			sc_cmd(c, TEL_DO, TELOPT_BINARY);
		}
		if (c->us[sim_optidx(TELOPT_SGA)] == TQ_NO) {
			c->us[sim_optidx(TELOPT_SGA)] = TQ_WANTYES;
			sc_cmd(c, TEL_WILL, TELOPT_SGA);
		}
		if (c->him[sim_optidx(TELOPT_SGA)] == TQ_NO) {
			c->him[sim_optidx(TELOPT_SGA)] = TQ_WANTYES;
			sc_cmd(c, TEL_DO, TELOPT_SGA);
		}
	}
	if (c->flags & SC_E8HELD) {
		c->flags &= ~SC_E8HELD;
		c->us[ei] = TQ_YES;
		sc_cmd(c, TEL_WILL, TELOPT_VMWARE);
		sc_e8_start(c);
	} else if (c->us[ei] == TQ_NO) {
		c->us[ei] = TQ_WANTYES;
		sc_cmd(c, TEL_WILL, TELOPT_VMWARE);
	}
}

/* One WILL/WONT/DO/DONT from the server, RFC 1143 style. */
static void
sc_option(struct sconn *c, u_char verb, u_char opt)
{
	int	 i = sim_optidx(opt);
	u_char	*q;

	switch (verb) {
	case TEL_WILL:
		if (i == -1) {
			sc_cmd(c, TEL_DONT, opt);
			return;
		}
		q = &c->him[i];
		if (*q == TQ_NO) {
			if (opt == TELOPT_BINARY || opt == TELOPT_SGA ||
			    opt == TELOPT_ECHO) {
				*q = TQ_YES;
				sc_cmd(c, TEL_DO, opt);
			} else
				sc_cmd(c, TEL_DONT, opt);
		} else if (*q == TQ_WANTYES)
			*q = TQ_YES;
		else if (*q == TQ_WANTNO)
			*q = TQ_NO;
		return;
	case TEL_WONT:
		if (i == -1)
			return;
		q = &c->him[i];
		if (*q == TQ_YES) {
			*q = TQ_NO;
			sc_cmd(c, TEL_DONT, opt);
		} else
			*q = TQ_NO;
		return;
	case TEL_DO:
		if (i == -1) {
			sc_cmd(c, TEL_WONT, opt);
			return;
		}
		q = &c->us[i];
		if (*q == TQ_YES)
			return;
		if (*q == TQ_WANTNO) {
			*q = TQ_NO;
			return;
		}
		if (*q == TQ_WANTYES) {
			*q = TQ_YES;
			if (opt == TELOPT_AUTH) {
				ev_print("error %u server-did-auth",
				    c->vm->idx);
				sc_auth_done(c);
			} else if (opt == TELOPT_VMWARE)
				sc_e8_start(c);
			return;
		}
		/* TQ_NO: a request from the server. */
		if (opt == TELOPT_VMWARE) {
			if (!(c->flags & SC_AUTHDONE)) {
				c->flags |= SC_E8HELD;
				return;
			}
			*q = TQ_YES;
			sc_cmd(c, TEL_WILL, opt);
			sc_e8_start(c);
			return;
		}
		if (opt == TELOPT_BINARY || opt == TELOPT_SGA ||
		    opt == TELOPT_COMPORT) {
			*q = TQ_YES;
			if (opt == TELOPT_COMPORT)
				c->flags |= SC_COMPORT;
			sc_cmd(c, TEL_WILL, opt);
		} else
			sc_cmd(c, TEL_WONT, opt);
		return;
	case TEL_DONT:
		if (i == -1)
			return;
		q = &c->us[i];
		if (*q == TQ_YES) {
			*q = TQ_NO;
			sc_cmd(c, TEL_WONT, opt);
		} else {
			if (*q == TQ_WANTYES && opt == TELOPT_VMWARE)
				ev_print("error %u server-refused-e8",
				    c->vm->idx);
			*q = TQ_NO;
		}
		if (opt == TELOPT_AUTH)
			sc_auth_done(c);
		else if (opt == TELOPT_VMWARE)
			c->flags &= ~SC_E8HELD;
		return;
	}
}

static void
sc_ready(struct sconn *c)
{
	struct svm	*vm = c->vm;
	int		 ci = sim_optidx(TELOPT_COMPORT);

	if (vm->flags & VM_READY)
		return;
	vm->flags |= VM_READY;
	if (!sim_quiet)
		ev_print("ready %u %s %s", vm->idx, vm->name,
		    hex(vm->uuid, 16));
	if ((vm->flags & VM_AUTO) && !(vm->flags & VM_EVERREADY)) {
		sim_auto_ready++;
		sim_check_allready();
	}
	vm->flags |= VM_EVERREADY;
	sc_not_pending(c);
	/* ESXi sends WILL COM-PORT once the proxy is up (capture C1). */
	if (c->us[ci] == TQ_NO && !(c->flags & SC_COMPORT)) {
		c->us[ci] = TQ_WANTYES;
		c->flags |= SC_COMPORT;
		sc_cmd(c, TEL_WILL, TELOPT_COMPORT);
	}
	svm_pump(vm);
}


/* A complete IAC SB ... IAC SE from the server. */
static void
sc_subneg(struct sconn *c)
{
	struct svm	*vm = c->vm;
	struct smv	*mv = vm->mv;
	char		 text[64];
	const u_char	*p;
	size_t		 plen;
	u_char		 cmd;

	if (c->sblen == 0) {
		ev_print("error %u empty-sb", vm->idx);
		return;
	}
	if (c->sb[0] != TELOPT_VMWARE)
		return;		/* COM-PORT etc.: not implemented. */
	if (c->sblen < 2) {
		ev_print("error %u empty-vmware-sb", vm->idx);
		return;
	}
	cmd = c->sb[1];
	p = c->sb + 2;
	plen = c->sblen - 2;
	switch (cmd) {
	case VMW_KNOWN_SUBOPTIONS_2:
		c->flags |= SC_KS2;
		if (!sim_quiet)
			ev_print("ks2 %u %s", vm->idx, hex(p, plen));
		if (c->flags & SC_KS1HELD)
			sc_e8_start(c);
		break;
	case VMW_GET_VM_VC_UUID:
		uuid_esxi(vm->uuid, 0, text);
		sc_vmw(c, VMW_VM_VC_UUID, (u_char *)text, strlen(text));
		break;
	case VMW_GET_VM_NAME:
		sc_vmw(c, VMW_VM_NAME, (u_char *)vm->name, vm->namelen);
		break;
	case VMW_GET_VM_BIOS_UUID:
		uuid_esxi(vm->uuid, 0x11, text);
		sc_vmw(c, VMW_VM_BIOS_UUID, (u_char *)text, strlen(text));
		break;
	case VMW_GET_VM_LOCATION_UUID:
		uuid_esxi(vm->uuid, 0x22, text);
		sc_vmw(c, VMW_VM_LOCATION_UUID, (u_char *)text,
		    strlen(text));
		break;
	case VMW_WILL_PROXY:
		if (c->role == ROLE_SRC && c == vm->conn)
			sc_ready(c);
		else
			ev_print("error %u will-proxy-on-%s", vm->idx,
			    sc_rolename(c));
		break;
	case VMW_WONT_PROXY:
		ev_print("error %u wont-proxy", vm->idx);
		break;
	case VMW_UNKNOWN_SUBOPTION_RCVD_2:
		ev_print("unknown2 %u %s %s", vm->idx, sc_rolename(c),
		    hex(p, plen));
		/* vSPC.py's way of refusing a PEER. */
		if (mv != NULL && mv->dst == c && mv->state == MVS_PEEROK &&
		    plen == 1 && p[0] == VMW_VMOTION_PEER)
			smv_on_dst_closed(mv, "peer-refused");
		break;
	case VMW_VMOTION_GOAHEAD:
	case VMW_VMOTION_NOTNOW:
		if (mv == NULL || c != vm->conn) {
			ev_print("error %u unexpected-%s %s", vm->idx,
			    cmd == VMW_VMOTION_GOAHEAD ? "goahead" : "notnow",
			    hex(p, plen));
			break;
		}
		if (cmd == VMW_VMOTION_GOAHEAD)
			smv_on_goahead(mv, p, plen);
		else
			smv_on_notnow(mv, p, plen);
		break;
	case VMW_VMOTION_PEER_OK:
		if (mv == NULL || mv->dst != c) {
			ev_print("error %u unexpected-peerok %s", vm->idx,
			    hex(p, plen));
			break;
		}
		smv_on_peerok(mv, p, plen);
		break;
	case VMW_KNOWN_SUBOPTIONS_1:
	case VMW_UNKNOWN_SUBOPTION_RCVD_1:
	case VMW_VMOTION_BEGIN:
	case VMW_VMOTION_PEER:
	case VMW_VMOTION_COMPLETE:
	case VMW_VMOTION_ABORT:
	case VMW_DO_PROXY:
	case VMW_VM_VC_UUID:
	case VMW_VM_NAME:
	case VMW_VM_BIOS_UUID:
	case VMW_VM_LOCATION_UUID:
		ev_print("error %u wrong-direction %02x", vm->idx, cmd);
		break;
	default:
		ev_print("unknown %u %02x", vm->idx, cmd);
		sc_vmw(c, VMW_UNKNOWN_SUBOPTION_RCVD_1, &cmd, 1);
		break;
	}
}

/* Decode server bytes; report in-band data as one recv event. */
static void
sc_input(struct sconn *c, const u_char *buf, size_t len)
{
	struct svm	*vm = c->vm;
	u_char		*data;
	size_t		 i, n = 0;
	u_char		 ch;

	data = xmalloc(len);
	sc_cork(c);
	for (i = 0; i < len && !(c->flags & SC_DEAD); i++) {
		ch = buf[i];
		switch (c->pstate) {
		case PS_DATA:
			if (ch == TEL_IAC)
				c->pstate = PS_IAC;
			else
				data[n++] = ch;
			break;
		case PS_IAC:
			c->pstate = PS_DATA;
			switch (ch) {
			case TEL_IAC:
				data[n++] = ch;
				break;
			case TEL_WILL:
			case TEL_WONT:
			case TEL_DO:
			case TEL_DONT:
				c->verb = ch;
				c->pstate = PS_VERB;
				break;
			case TEL_SB:
				c->sblen = 0;
				c->pstate = PS_SB;
				break;
			case TEL_SE:
				ev_print("error %u se-outside-sb", vm->idx);
				break;
			default:
				break;	/* NOP, functions: ignored. */
			}
			break;
		case PS_VERB:
			c->pstate = PS_DATA;
			sc_option(c, c->verb, ch);
			break;
		case PS_SB:
			if (ch == TEL_IAC) {
				c->pstate = PS_SB_IAC;
				break;
			}
			goto sbbyte;
		case PS_SB_IAC:
			if (ch == TEL_SE) {
				c->pstate = PS_DATA;
				sc_subneg(c);
				break;
			}
			if (ch != TEL_IAC) {
				ev_print("error %u bad-iac-in-sb %02x",
				    vm->idx, ch);
				sc_close(c, "protocol-error");
				break;
			}
			c->pstate = PS_SB;
		sbbyte:
			if (c->sblen == SIM_SB_MAX) {
				ev_print("error %u sb-overflow", vm->idx);
				sc_close(c, "protocol-error");
				break;
			}
			if (c->sblen == c->sbsize) {
				c->sbsize = c->sbsize == 0 ? 64 :
				    c->sbsize * 2;
				c->sb = xreallocarray(c->sb, 1, c->sbsize);
			}
			c->sb[c->sblen++] = ch;
			break;
		}
	}
	if (n > 0) {
		vm->recv += n;
		ev_print("recv %u %s", vm->idx, hex(data, n));
	}
	free(data);
	if (c->sbsize > 256 && c->pstate != PS_SB && c->pstate != PS_SB_IAC) {
		free(c->sb);
		c->sb = NULL;
		c->sbsize = c->sblen = 0;
	}
	sc_uncork(c);
}

static void
sc_connected(struct sconn *c)
{
	int	ai = sim_optidx(TELOPT_AUTH);

	c->flags &= ~SC_CONNECTING;
	if (!sim_quiet)
		ev_print("connected %u %s", c->vm->idx, sc_rolename(c));
	/* The first thing ESXi says on every connection. */
	c->us[ai] = TQ_WANTYES;
	sc_cork(c);
	sc_cmd(c, TEL_WILL, TELOPT_AUTH);
	sc_uncork(c);
}

static void
sc_event(evutil_socket_t fd, short what, void *arg)
{
	struct sconn	*c = arg;
	u_char		 buf[65536];
	socklen_t	 len;
	ssize_t		 n;
	int		 error;

	if (c->flags & SC_CONNECTING) {
		error = 0;
		len = sizeof error;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == -1)
			error = errno;
		if (error != 0) {
			ev_print("error %u connect %s", c->vm->idx,
			    strerror(error));
			sc_close(c, "connect-failed");
			return;
		}
		sc_connected(c);
		return;
	}
	if (what & EV_WRITE) {
		sc_flush(c);
		if (c->flags & SC_DEAD)
			return;
		if (c->outlen == c->outoff && c == c->vm->conn)
			svm_pump(c->vm);
		if (c->flags & SC_DEAD)
			return;
	}
	if (!(what & EV_READ))
		return;
	n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		sc_close(c, errno == ECONNRESET ? "reset" : "read-error");
		return;
	}
	if (n == 0) {
		sc_close(c, "eof");
		return;
	}
	if (sim_trace)
		ev_print("rx %u %s %s", c->vm->idx, sc_rolename(c),
		    hex(buf, n));
	sc_input(c, buf, n);
}

/* Open a connection for vm to ss; NULL if socket() fails. */
struct sconn *
sc_connect(struct svm *vm, int role, struct sockaddr_storage *ss,
    socklen_t sslen)
{
	struct sconn		*c;
	struct sockaddr_storage	*b;
	int			 fd, one = 1;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		ev_print("error %u socket %s", vm->idx, strerror(errno));
		return (NULL);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (sim_nbinds > 0) {
		b = &sim_binds[sim_nextbind++ % sim_nbinds];
#ifdef IP_BIND_ADDRESS_NO_PORT
		/* Let connect() pick the port per 4-tuple. */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof one);
#endif
		if (bind(fd, (struct sockaddr *)b, b->ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) :
		    sizeof(struct sockaddr_in6)) == -1) {
			ev_print("error %u bind %s", vm->idx, strerror(errno));
			close(fd);
			return (NULL);
		}
	}
	c = xcalloc(1, sizeof *c);
	c->vm = vm;
	c->fd = fd;
	c->role = role;
	c->flags = SC_CONNECTING;
	c->ev = event_new(sim_base, fd, EV_WRITE, sc_event, c);
	if (role == ROLE_SRC) {
		vm->conn = c;
		c->flags |= SC_PENDING;
		sim_pending++;
	}
	if (connect(fd, (struct sockaddr *)ss, sslen) == -1 &&
	    errno != EINPROGRESS) {
		ev_print("error %u connect %s", vm->idx, strerror(errno));
		c->flags &= ~SC_CONNECTING;
		sc_close(c, "connect-failed");
		return (c);
	}
	event_add(c->ev, NULL);
	return (c);
}

/* Free the connections closed during this loop turn. */
void
sc_reap(evutil_socket_t fd, short what, void *arg)
{
	struct sconn	*c;

	while ((c = TAILQ_FIRST(&sim_reapq)) != NULL) {
		TAILQ_REMOVE(&sim_reapq, c, rentry);
		event_free(c->ev);
		free(c->out);
		free(c->sb);
		free(c);
	}
}

/*
 * Close a connection (FIN) and tell whoever cares.  The memory is freed
 * by the reaper at the end of the loop turn.
 */
void
sc_close(struct sconn *c, const char *reason)
{
	struct svm	*vm = c->vm;
	struct smv	*mv = vm->mv;

	if (c->flags & SC_DEAD)
		return;
	c->flags |= SC_DEAD;
	event_del(c->ev);
	close(c->fd);
	c->fd = -1;
	TAILQ_INSERT_TAIL(&sim_reapq, c, rentry);
	event_active(sim_reap_ev, EV_TIMEOUT, 0);
	if (sim_quiet < 2 || strncmp(reason, "vmotion", 7) != 0)
		ev_print("closed %u %s %s", vm->idx, reason,
		    sc_rolename(c));

	if (c->flags & SC_PENDING) {
		if ((vm->flags & VM_AUTO) && !(vm->flags & VM_EVERREADY)) {
			sim_auto_failed++;
			sim_check_allready();
		}
		sc_not_pending(c);
	}
	if (c == vm->conn) {
		vm->conn = NULL;
		vm->flags &= ~VM_READY;
		if (mv != NULL)
			smv_on_src_closed(mv);
	} else if (mv != NULL && mv->dst == c)
		smv_on_dst_closed(mv, reason);
}
