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
 * esxisim private header: the fake ESXi host's objects and the functions
 * its three files share.
 *
 *   struct svm   - one VM (one serial port): identity, pattern stream
 *                  offset, rate; esxisim.c.
 *   struct sconn - one TCP connection to the vSPC with its telnet state;
 *                  sconn.c.
 *   struct smv   - one running vMotion, only while it runs; smv.c.
 */

#ifndef ESXISIM_H
#define ESXISIM_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <stdint.h>

#include <event2/event.h>


#define SIM_CHUNK		16384	/* Pattern bytes per write. */
#define SIM_PUMP_MAX		16	/* Chunks per VM per loop turn. */
#define SIM_SB_MAX		4096
#define SIM_KEY_MAX		256	/* seq || secret */
#define SIM_NAME_MAX		200
#define SIM_TICK_US		10000	/* Stream ticker period. */
#define SIM_LINE_MAX		65536

#define SIM_NOPTS	6	/* Length of sim_opts[] in sconn.c. */

enum sc_role {
	ROLE_SRC,		/* The VM's own connection. */
	ROLE_DST		/* A vMotion destination. */
};

enum sc_pstate {
	PS_DATA,
	PS_IAC,
	PS_VERB,
	PS_SB,
	PS_SB_IAC
};

struct svm;
struct smv;

struct sconn {
	struct svm		*vm;
	int			 fd;
	u_char			 role;
	u_char			 pstate;	/* enum sc_pstate */
	u_char			 verb;
	u_char			 us[SIM_NOPTS];
	u_char			 him[SIM_NOPTS];
	int			 flags;
#define SC_CONNECTING	0x1
#define SC_CORK		0x2	/* Collect output, flush later. */
#define SC_AUTHDONE	0x4	/* Server answered WILL AUTH. */
#define SC_E8HELD	0x8	/* Server's DO e8 waits for AUTH. */
#define SC_E8		0x10	/* Extension enabled, KS1 sent. */
#define SC_KS2		0x20
#define SC_KS1HELD	0x40	/* --ks1-after-ks2 and no KS2 yet. */
#define SC_COMPORT	0x80	/* WILL COM-PORT sent. */
#define SC_PENDING	0x100	/* Counted in sim_pending. */
#define SC_DEAD		0x200
	struct event		*ev;
	u_char			*out;
	size_t			 outoff;
	size_t			 outlen;
	size_t			 outsize;
	u_char			*sb;
	size_t			 sblen;
	size_t			 sbsize;
	TAILQ_ENTRY(sconn)	 rentry;	/* Reap queue. */
};
TAILQ_HEAD(sconn_list, sconn);

struct svm {
	u_int			 idx;
	char			*name;
	char			*uri;		/* NULL: default. */
	u_char			 uuid[16];
	u_char			 namelen;
	int			 flags;
#define VM_READY	0x1
#define VM_PAUSED	0x2	/* vMotion: guest stunned. */
#define VM_QUEUED	0x4	/* On the connect queue. */
#define VM_STREAMING	0x8	/* On the stream list. */
#define VM_AUTO		0x10	/* Created by -n. */
#define VM_BINARY	0x20	/* Binary pattern. */
#define VM_EVERREADY	0x40
	struct sconn		*conn;
	struct smv		*mv;
	uint64_t		 off;		/* Next pattern byte. */
	uint64_t		 burst;		/* Burst bytes to go. */
	uint64_t		 acc;		/* Credit, bytes * 1e6. */
	uint32_t		 rate;		/* Bytes per second. */
	uint64_t		 sent;		/* Guest bytes, raw. */
	uint64_t		 recv;		/* In-band bytes in. */
	u_char			*token;		/* Last key. */
	size_t			 tokenlen;
	u_int			 node;		/* Index in sim_dests. */
	TAILQ_ENTRY(svm)	 qentry;
	TAILQ_ENTRY(svm)	 sentry;
};
TAILQ_HEAD(svm_list, svm);

enum smv_variant {
	MVV_OK,
	MVV_NODEST,
	MVV_BADSECRET,
	MVV_DESTDROP,
	MVV_DOUBLEBEGIN,
	MVV_REPLAY,
	MVV_TIMEOUT,
	MVV_MAX
};

enum smv_order {
	MVO_FINFIRST,
	MVO_COMPLETEFIRST,
	MVO_SIMULTANEOUS,
	MVO_MAX
};

enum smv_state {
	MVS_ANSWER,		/* BEGIN sent, want GOAHEAD/NOTNOW. */
	MVS_NOTNOW2,		/* Second BEGIN sent, want NOTNOW. */
	MVS_DELAY,		/* GOAHEAD got, no destination yet. */
	MVS_PEEROK,		/* Destination connecting, want PEER-OK. */
	MVS_SWITCH,		/* First of FIN/COMPLETE done. */
	MVS_ABORTING		/* Failed; ABORT after the gap. */
};

struct smv {
	struct svm		*vm;
	u_char			 variant;
	u_char			 order;
	u_char			 state;
	int			 flags;
#define MV_GOAHEAD	0x1	/* Got GOAHEAD: ABORT on failure. */
#define MV_OK		0x2	/* Result if we end up aborting. */
#define MV_LOAD		0x4	/* Started by --vmotion-rate. */
	u_char			 seq[32];
	size_t			 seqlen;
	u_char			 seq2[32];
	u_char			 key[SIM_KEY_MAX];
	size_t			 keylen;
	struct sconn		*dst;
	struct event		*timer;
	struct sockaddr_storage	 dest;
	socklen_t		 destlen;
	u_int			 timeout;	/* ms */
	u_int			 delay;		/* ms */
	u_int			 gap;		/* ms */
	uint64_t		 tbegin;
	uint64_t		 tpeer;
	const char		*detail;
	u_int			 destidx;	/* Load: index in sim_dests. */
};

/* Latency samples (microseconds) for the lat command. */
enum sim_lat {
	LAT_GOAHEAD,		/* BEGIN -> GOAHEAD. */
	LAT_PEEROK,		/* PEER -> PEER-OK. */
	LAT_VMOTION,		/* Whole successful vMotion. */
	LAT_MAX
};

extern struct event_base	*sim_base;
extern struct sockaddr_storage	 sim_server;
extern socklen_t		 sim_serverlen;
extern struct sockaddr_storage	 sim_dest;
extern socklen_t		 sim_destlen;
extern struct sockaddr_storage	*sim_binds;
extern u_int			 sim_nbinds;
extern u_int			 sim_nextbind;
extern struct sconn_list	 sim_reapq;
extern struct event		*sim_reap_ev;
extern u_int			 sim_pending;
extern const char		*sim_uri;
extern int			 sim_quiet;
extern int			 sim_trace;
extern int			 sim_ks1_after_ks2;
extern int			 sim_unprompted;
extern u_int			 sim_auto_ready;
extern u_int			 sim_auto_failed;
extern struct sockaddr_storage	*sim_dests;
extern socklen_t		*sim_destlens;
extern u_int			 sim_ndests;
extern uint64_t			 sim_mv_ok;
extern uint64_t			 sim_mv_fail;

/* esxisim.c */
void		 ev_print(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
uint64_t	 now_us(void);
struct timeval	*ms_tv(struct timeval *, u_int);
const char	*hex(const u_char *, size_t);
ssize_t		 unhex(const char *, u_char *, size_t);
int		 parse_addr(const char *, struct sockaddr_storage *,
		    socklen_t *);
size_t		 iac_escape(u_char *, const u_char *, size_t);
void		 sim_check_allready(void);
void		 sim_connq_pump(void);
void		 svm_pump(struct svm *);
void		 svm_resume(struct svm *);
void		 sim_lat_add(int, uint64_t);

/* sconn.c */
struct sconn	*sc_connect(struct svm *, int, struct sockaddr_storage *,
		    socklen_t);
void		 sc_arm(struct sconn *, int);
void		 sc_out(struct sconn *, const u_char *, size_t);
void		 sc_vmw(struct sconn *, u_char, const u_char *, size_t);
void		 sc_close(struct sconn *, const char *);
void		 sc_reap(evutil_socket_t, short, void *);

/* smv.c */
void		 smv_start(struct svm *, int, char **);
int		 smv_start_load(struct svm *, u_int);
void		 smv_finish(struct smv *, int, const char *);
void		 smv_on_goahead(struct smv *, const u_char *, size_t);
void		 smv_on_notnow(struct smv *, const u_char *, size_t);
void		 smv_on_peerok(struct smv *, const u_char *, size_t);
void		 smv_on_dst_closed(struct smv *, const char *);
void		 smv_on_src_closed(struct smv *);

#endif /* ESXISIM_H */
