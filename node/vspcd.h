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
 * vspcd private header: every structure and every non-static function of
 * the daemon, grouped by the file that defines it.
 *
 * Objects (see the design notes in README.md):
 *   struct vmconn  - one TCP connection from an ESXi host;
 *   struct console - one VM serial port (VC UUID plus optional label),
 *                    outlives its connections;
 *   struct client  - one person's session on a console.
 * Everything runs on one libevent event_base, single-threaded.  No object
 * is freed inside its own callback: teardown is queued and done by
 * server_reap() at the end of the loop turn.
 */

#ifndef VSPCD_H
#define VSPCD_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>

#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <event2/buffer.h>


#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

#define VSPCD_VERSION		PACKAGE_VERSION

#define VSPC_PORT_VM		13370
#define VSPC_PORT_COMPAT	13371
#define VSPC_PORT_CONSOLE	13372

#ifndef SYSCONFDIR
#define SYSCONFDIR		"/etc"
#endif
#define VSPCD_CONF		SYSCONFDIR "/vspcd/vspcd.conf"

struct console;
struct client;
struct vmconn;
struct store;
struct store_token;

/* Telnet bytes and options. */
#define TEL_SE			240
#define TEL_NOP			241
#define TEL_DM			242
#define TEL_BRK			243
#define TEL_IP			244
#define TEL_AO			245
#define TEL_AYT			246
#define TEL_EC			247
#define TEL_EL			248
#define TEL_GA			249
#define TEL_SB			250
#define TEL_WILL		251
#define TEL_WONT		252
#define TEL_DO			253
#define TEL_DONT		254
#define TEL_IAC			255

#define TELOPT_BINARY		0
#define TELOPT_ECHO		1
#define TELOPT_SGA		3
#define TELOPT_AUTH		37
#define TELOPT_COMPORT		44
#define TELOPT_VMWARE		232
#define TELOPT_VSPCADMIN	233

/* VMWARE-TELNET-EXT (option 232) sub-commands. */
#define VMW_KNOWN_SUBOPTIONS_1		0x00
#define VMW_KNOWN_SUBOPTIONS_2		0x01
#define VMW_UNKNOWN_SUBOPTION_RCVD_1	0x02
#define VMW_UNKNOWN_SUBOPTION_RCVD_2	0x03
#define VMW_VMOTION_BEGIN		0x28
#define VMW_VMOTION_GOAHEAD		0x29
#define VMW_VMOTION_NOTNOW		0x2b
#define VMW_VMOTION_PEER		0x2c
#define VMW_VMOTION_PEER_OK		0x2d
#define VMW_VMOTION_COMPLETE		0x2e
#define VMW_VMOTION_ABORT		0x30
#define VMW_DO_PROXY			0x46
#define VMW_WILL_PROXY			0x47
#define VMW_WONT_PROXY			0x49
#define VMW_VM_VC_UUID			0x50
#define VMW_GET_VM_VC_UUID		0x51
#define VMW_VM_NAME			0x52
#define VMW_GET_VM_NAME			0x53
#define VMW_VM_BIOS_UUID		0x54
#define VMW_GET_VM_BIOS_UUID		0x55
#define VMW_VM_LOCATION_UUID		0x56
#define VMW_GET_VM_LOCATION_UUID	0x57

/* VMware admin option (233) sub-commands. */
#define VSPCADM_GET_VM_PORT_LIST	0x10
#define VSPCADM_VM_PORT_LIST		0x11
#define VSPCADM_VM_PORT_SET_CONNECTION	0x20
#define VSPCADM_VM_PORT_CONNECTED	0x21
#define VSPCADM_VM_PORT_DISCONNECTED	0x22

/*
 * telnet.c: incremental telnet codec.  All state is in struct telnet (no
 * pointers but the subnegotiation buffer and the callbacks), so that it
 * can be serialised.  Runs of plain data are handed to ops->data as
 * pointers into the caller's input: never copied.  Option negotiation
 * follows RFC 1143 (the Q method) for the options in the table below;
 * any other option is refused.
 */
#define TELNET_SB_MAX_DEFAULT	4096
#define TELNET_SB_INITIAL	64	/* First size of the SB buffer. */

/* Options whose state the codec tracks; index into us[]/him[]. */
enum telnet_optidx {
	TOI_BINARY,
	TOI_ECHO,
	TOI_SGA,
	TOI_AUTH,
	TOI_COMPORT,
	TOI_VMWARE,
	TOI_VSPCADMIN,
	TOI_MAX
};
#define TELNET_MASK(idx)	(1U << (idx))

/* RFC 1143 states; QUEUE_OPPOSITE is or'ed in. */
#define TQ_NO			0
#define TQ_YES			1
#define TQ_WANTNO		2
#define TQ_WANTYES		3
#define TQ_STATE		0x3
#define TQ_OPPOSITE		0x4

enum telnet_pstate {
	TP_DATA,
	TP_IAC,
	TP_VERB,		/* Got IAC WILL/WONT/DO/DONT, want option. */
	TP_SB_OPT,		/* Got IAC SB, want option byte. */
	TP_SB,
	TP_SB_IAC,
	TP_MAX
};

struct telnet_ops {
	/* In-band data, unescaped; buf points into the caller's input. */
	void	(*data)(void *, const u_char *, size_t);
	/* A complete subnegotiation (payload unescaped, option excluded). */
	void	(*sb)(void *, u_char, const u_char *, size_t);
	/*
	 * An option changed state: him is 1 for the peer's side (WILL/WONT),
	 * 0 for ours (DO/DONT); on is the new state.
	 */
	void	(*option)(void *, u_char, int, int);
	/* A telnet command (BRK, IP, AYT, ...), NOP excluded. */
	void	(*command)(void *, u_char);
	/* Bytes the codec must send (negotiation replies). */
	void	(*output)(void *, const u_char *, size_t);
};

struct telnet {
	u_char			 state;		/* enum telnet_pstate */
	u_char			 verb;
	u_char			 sb_opt;
	u_char			 stop;		/* Set by a callback to stop. */
	u_char			 us[TOI_MAX];	/* Our side (WILL/WONT). */
	u_char			 him[TOI_MAX];	/* Peer side (DO/DONT). */
	uint16_t		 accept_us;	/* TELNET_MASK() bits. */
	uint16_t		 accept_him;
	uint32_t		 sb_len;
	uint32_t		 sb_max;
	uint32_t		 sb_size;	/* Allocated size of sb_buf. */
	u_char			*sb_buf;	/* Only while inside SB. */
	const char		*error;		/* Why telnet_input failed. */
	const struct telnet_ops	*ops;
	void			*arg;
};

void	 telnet_init(struct telnet *, const struct telnet_ops *, void *,
	     u_int, u_int, size_t);
void	 telnet_free(struct telnet *);
int	 telnet_input(struct telnet *, const u_char *, size_t);
int	 telnet_request(struct telnet *, u_char, int, int);
int	 telnet_enabled(const struct telnet *, u_char, int);
void	 telnet_send_sb(struct telnet *, u_char, u_char, const u_char *,
	     size_t);
void	 telnet_send_command(struct telnet *, u_char);
size_t	 telnet_escape(u_char *, const u_char *, size_t);
void	 telnet_escape_add(struct evbuffer *, const u_char *, size_t);
int	 telnet_optidx(u_char);
const char *telnet_optname(u_char);

/*
 * uuid.c: VC UUIDs.  16 bytes; canonical text is lower-case
 * 8-4-4-4-12.  The parser accepts every spelling users and tools use:
 * ESXi's "01 23 ... ef-fe dc ...", vSPC.py's "16hex-16hex", 32 hex
 * digits (either case), canonical, with or without braces.
 */
#define UUID_LEN		16
#define UUID_STRLEN		36	/* Canonical, without NUL. */
int	 uuid_parse(const char *, size_t, u_char *);
void	 uuid_format(const u_char *, char *);		/* 37 bytes */
void	 uuid_format_vspcpy(const u_char *, char *);	/* 34 bytes */
void	 uuid_format_hex(const u_char *, char *, int);	/* 33 bytes */

/*
 * ring.c: a console's history ring.  Bytes are addressed by a monotonic
 * 64-bit offset (total bytes ever appended).  The buffer grows with use
 * (nothing is allocated until the first byte) up to max, then the oldest
 * bytes are overwritten.
 */
struct ring {
	u_char		*buf;
	size_t		 size;		/* Allocated. */
	size_t		 max;		/* Cap on size. */
	size_t		 len;		/* Bytes held: [end - len, end). */
	uint64_t	 end;		/* Offset of the next byte. */
};
void	 ring_init(struct ring *, size_t);
void	 ring_free(struct ring *);
void	 ring_append(struct ring *, const u_char *, size_t);
uint64_t ring_start(const struct ring *);
int	 ring_peek(const struct ring *, uint64_t, struct iovec *, size_t);
uint64_t ring_lines_back(const struct ring *, u_int);
size_t	 ring_copy(const struct ring *, uint64_t, u_char *, size_t);
void	 ring_set_max(struct ring *, size_t);
void	 ring_restore(struct ring *, const u_char *, size_t, uint64_t);

/*
 * pickle.c: a restricted reader for the Python pickles vSPCClient sends
 * (int, str, None in protocols 0 to 5) and a writer of protocol 2.
 * Anything else, in particular every opcode that could build an object
 * or call a function, is refused.
 */
#define PICKLE_MAX		65536
enum pickle_type {
	PICKLE_NONE,
	PICKLE_INT,
	PICKLE_STR
};
struct pickle_value {
	enum pickle_type	 type;
	long long		 i;
	char			*s;	/* NUL-terminated, len bytes. */
	size_t			 len;
};
ssize_t	 pickle_parse(const u_char *, size_t, struct pickle_value *,
	     const char **);
void	 pickle_value_free(struct pickle_value *);
void	 pickle_put_int(struct evbuffer *, long long);
void	 pickle_put_str(struct evbuffer *, const char *, size_t);
void	 pickle_put_str_lossy(struct evbuffer *, const u_char *, size_t);
void	 pickle_put_none(struct evbuffer *);
void	 pickle_put_vm(struct evbuffer *, const char *, const char *, int);
void	 pickle_put_exception(struct evbuffer *, const char *);
void	 pickle_put_exit(struct evbuffer *, const char *);

/* log.c: the daemon's own log (stderr with -d, else syslog). */
void	 log_init(int, int);
void	 log_setverbose(int);
int	 log_getverbose(void);
void	 log_warn(const char *, ...)
	     __attribute__((__format__ (printf, 1, 2)));
void	 log_warnx(const char *, ...)
	     __attribute__((__format__ (printf, 1, 2)));
void	 log_info(const char *, ...)
	     __attribute__((__format__ (printf, 1, 2)));
void	 log_debug(const char *, ...)
	     __attribute__((__format__ (printf, 1, 2)));
void	 fatal(const char *, ...)
	     __attribute__((__format__ (printf, 1, 2), __noreturn__));
void	 fatalx(const char *, ...)
	     __attribute__((__format__ (printf, 1, 2), __noreturn__));

/* xmalloc.c: allocation that cannot fail (fatalx on exhaustion). */
void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...)
	     __attribute__((__format__ (printf, 2, 3)));
int	 xvasprintf(char **, const char *, va_list);

/* acl.c: address lists ("10.0.0.0/8, ::1") and address formatting. */
struct acl_entry {
	int		 af;
	u_char		 addr[16];
	u_int		 bits;
};
struct acl {
	u_int		 n;
	struct acl_entry *e;
};
int	 acl_parse(struct acl *, const char *, char **);
void	 acl_free(struct acl *);
int	 acl_match(const struct acl *, const struct sockaddr *);
int	 addr_parse_listen(const char *, int, struct sockaddr_storage *,
	     socklen_t *, char **);
const char *addr_fmt(const struct sockaddr *, char *, size_t);

/*
 * config.c: the configuration (INI, read with inih).  Keys are the
 * contract of the vspcd.conf(5) manual page.
 */
struct config {
	char		*file;

	/* [node] */
	char		*node_id;

	/* [vm] */
	char		*vm_listen;
	char		*vm_tls_listen;
	char		*vm_tls_cert;
	char		*vm_tls_key;
	char		*vm_accept_uri;		/* Comma-separated list. */
	struct acl	 vm_allow;
	char		*vm_allow_text;
	struct acl	 vm_proxy_from;
	char		*vm_proxy_from_text;
	u_int		 vm_token_ttl;		/* Seconds. */
	u_int		 vm_negotiation_timeout;/* Seconds. */
	size_t		 vm_hold;		/* Held before binding. */
	size_t		 vm_input_max;		/* People -> VM buffer. */
	size_t		 vm_sb_max;		/* Subnegotiation cap. */
	u_int		 vm_expire;		/* Keep a console after all left. */
	u_int		 vm_max_connections;
	u_int		 vm_max_per_source;
	struct acl	 vm_exempt;		/* From max_per_source. */
	char		*vm_exempt_text;

	/* [console] */
	char		*console_listen;
	char		*console_tls_listen;	/* Uses [vm] tls_cert, tls_key. */
	struct acl	 console_allow;
	char		*console_allow_text;
	u_int		 console_max_connections;
	u_int		 console_max_per_source;
	struct acl	 console_exempt;	/* From max_per_source. */
	char		*console_exempt_text;
	u_int		 console_login_timeout;	/* Seconds. */
	u_int		 console_login_attempts;
	u_int		 console_replay_lines;
	size_t		 console_history;
	char		*console_users_file;
	u_char		 console_escape;
	size_t		 console_client_buffer;	/* Messages to a client. */
	u_int		 console_stuck_timeout;	/* Seconds. */
	u_int		 console_max_clients;	/* Per console. */
	u_int		 console_idle_timeout;	/* Seconds, 0 = never. */

	/* [compat] */
	char		*compat_listen;
	struct acl	 compat_allow;
	char		*compat_allow_text;
	u_int		 compat_max_connections;
	u_int		 compat_max_per_source;
	struct acl	 compat_exempt;		/* From max_per_source. */
	char		*compat_exempt_text;

	/* [log] */
	char		*log_dir;
	char		*log_name;		/* Template, see logfile.c. */
	size_t		 log_max_size;
	u_int		 log_keep;		/* Rotated files kept. */
	u_int		 log_mark;		/* Seconds, 0 = off. */
	int		 log_activity;
	u_int		 log_open_files;

	/* [cluster] */
	char		*cluster_redis;
	char		*cluster_sentinels;
	char		*cluster_master_name;
	char		*cluster_name;
	char		*cluster_secret_file;
	char		*cluster_peer_listen;
	char		*cluster_peer_advertise;
	char		*cluster_sentinel_password;
	u_int		 cluster_heartbeat;	/* Seconds between refreshes. */
	u_int		 cluster_node_timeout;	/* Node record lifetime. */
	u_int		 cluster_redis_timeout;	/* Seconds per command. */
	u_int		 cluster_peer_ping;	/* Seconds between pings. */
	size_t		 cluster_peer_frame_max;
	struct acl	 cluster_peer_allow;
	char		*cluster_peer_allow_text;
	char		*cluster_tls_cert;	/* Peer link mutual TLS. */
	char		*cluster_tls_key;
	char		*cluster_tls_ca;

	/* [http] */
	char		*http_listen;
	struct acl	 http_allow;
	char		*http_allow_text;

	/* [control] */
	char		*control_socket;
	char		*control_listen;	/* TCP, "" for none. */
};
struct config	*config_default(void);
int		 config_load(struct config *, const char *, char **);
int		 config_set(struct config *, const char *, char **);
int		 config_check(struct config *, char **);
void		 config_print(const struct config *, FILE *);
void		 config_free(struct config *);
int		 config_uri_accepted(const struct config *, const char *,
		     size_t, char **);
int		 config_parse_size(const char *, size_t *);
int		 config_parse_time(const char *, u_int *);

/*
 * A Redis server or Sentinel address: [cluster] redis is
 * redis://[user:password@]host:port[/db], [cluster] sentinels a list of
 * host:port.  user and password are NULL when not given.
 */
struct redis_addr {
	char		*host;
	int		 port;
	char		*user;
	char		*password;
	u_int		 db;
};
int		 config_parse_redis(const char *, struct redis_addr *,
		     char **);
int		 config_parse_sentinels(const char *, struct redis_addr **,
		     u_int *, char **);
void		 config_redis_free(struct redis_addr *);

/*
 * logfile.c: console log files.  A struct logfile holds a path and a
 * size, not a descriptor: descriptors come from a small LRU pool so that
 * a node with 20,000 consoles still has its descriptors for VMs.
 */
struct logfile;
void		 logfile_init(u_int);
void		 logfile_configure(u_int, size_t, u_int);
struct logfile	*logfile_new(const char *);
void		 logfile_free(struct logfile *);
void		 logfile_write(struct logfile *, const u_char *, size_t);
void		 logfile_printf(struct logfile *, const char *, ...)
		     __attribute__((__format__ (printf, 2, 3)));
void		 logfile_mark(struct logfile *, time_t);
void		 logfile_reopen_all(void);
const char	*logfile_path(const struct logfile *);
char		*logfile_expand(const char *, const char *, const char *,
		     const char *, const char *);
u_int		 logfile_open_count(void);
void		 logfile_shutdown(void);


/*
 * hmap.c: a string-keyed hash map with intrusive entries (chained,
 * doubles when the load passes 1).
 */
struct hmap_entry {
	struct hmap_entry	*next;
	const char		*key;
	uint32_t		 hash;
};
struct hmap {
	struct hmap_entry	**b;
	u_int			  nb;
	u_int			  n;
};
void	 hmap_init(struct hmap *);
void	 hmap_free(struct hmap *);
void	 hmap_insert(struct hmap *, struct hmap_entry *, const char *);
void	 hmap_remove(struct hmap *, struct hmap_entry *);
struct hmap_entry *hmap_find(const struct hmap *, const char *);
#define hmap_data(e, type, field) \
	((type *)((char *)(e) - offsetof(type, field)))

/*
 * The people side.  A client reads the console's history ring at its own
 * offset; nothing is copied per client.  Flags are below the field.
 */
enum client_kind {
	CLIENT_CONSOLE,		/* Telnet console port. */
	CLIENT_VSPCPY,		/* vSPC.py vSPCClient (pickles). */
	CLIENT_VMWARE,		/* VMware reference client (option 233). */
	CLIENT_DETECT,		/* Compat port, kind not known yet. */
	CLIENT_REMOTE,		/* A person on another node (peer link). */
	CLIENT_KIND_MAX
};

/* How a client asks to attach; see console_attach(). */
enum attach_mode {
	ATTACH_DEFAULT,		/* Writer if no one writes, else spy. */
	ATTACH_SPY,		/* Spy, may ask to write later. */
	ATTACH_RO,		/* Read-only for the whole session. */
	ATTACH_FORCE,		/* Writer; bump the writer to spy. */
	ATTACH_EXCLUSIVE,	/* Only client; nobody else may join. */
	ATTACH_WRITELOCK,	/* Sole writer; spies may join (vSPC "write"). */
	ATTACH_SHARED,		/* Shared writer (vSPC "free_for_all"). */
	ATTACH_SHARED_OR_RO,	/* Shared, or read-only if locked. */
	ATTACH_MAX
};

/* Result of console_attach(). */
enum attach_result {
	ATTACHED_WRITER,
	ATTACHED_SPY,
	ATTACHED_RO,
	ATTACH_REFUSED_EXCL,	/* Someone holds it exclusively. */
	ATTACH_REFUSED_LOCK,	/* A lock conflicts with the request. */
	ATTACH_REFUSED_BUSY,	/* Exclusive asked, others attached. */
	ATTACH_REFUSED_FULL,	/* Too many clients on the console. */
	ATTACH_PENDING,		/* Asked the owner; proto->attached later. */
	ATTACH_REFUSED_REMOTE,	/* The owner cannot be reached or said no. */
	ATTACH_RESULT_MAX
};

/* Input handling of one kind of client. */
struct client_proto {
	const char	*name;
	/* Raw bytes from the socket. */
	void		 (*input)(struct client *, const u_char *, size_t);
	/* Console events: attached/detached/moved etc, as text. */
	void		 (*notice)(struct client *, const char *);
	/* Free the proto_data. */
	void		 (*free)(struct client *);
	/*
	 * A pending attach (to a console on another node) ended: the
	 * result and, when refused, why.  NULL for kinds that never wait.
	 */
	void		 (*attached)(struct client *, enum attach_result,
			     const char *);
	/*
	 * A client with no socket of its own (a person on another node):
	 * where its messages go and how its console output is sent.  NULL:
	 * client.c writes to the socket.
	 */
	void		 (*write)(struct client *, const void *, size_t);
	void		 (*flush)(struct client *);
	/*
	 * Hot upgrade: pack the proto_data into the kind's message in
	 * proto/handoff.proto, and rebuild it (-1: malformed).  NULL: no
	 * state.
	 */
	size_t		 (*handoff_pack)(struct client *, uint8_t **);
	int		 (*handoff_unpack)(struct client *, const uint8_t *,
			     size_t);
};

struct client {
	u_int			 id;
	int			 fd;
	enum client_kind	 kind;
	const struct client_proto *proto;
	void			*proto_data;

	int			 flags;
#define CLIENT_WRITE		0x1	/* May write to the VM. */
#define CLIENT_WANTWRITE	0x2	/* Promote when the writer leaves. */
#define CLIENT_READONLY		0x4	/* Never writes (user or request). */
#define CLIENT_HOLDER		0x8	/* Holds the console's lock. */
#define CLIENT_STREAM		0x10	/* Console output flows to it. */
#define CLIENT_DEAD		0x20	/* Queued for reaping. */
#define CLIENT_CLOSING		0x40	/* Flush output, then close. */
#define CLIENT_READ_OFF		0x80	/* Reading paused (VM buffer full). */
#define CLIENT_PENDING_IAC	0x100	/* Owes the second 0xff of a pair. */
#define CLIENT_ESCAPE		0x200	/* Double 0xff in console output. */
#define CLIENT_WRITE_WAIT	0x400	/* EV_WRITE pending. */
#define CLIENT_NOCREDIT		0x800	/* Forwarded: no output until granted. */

	struct event		*ev_read;
	struct event		*ev_write;
	struct evbuffer		*out;		/* Messages, sent before data. */
	struct telnet		 tn;

	struct console		*console;
	uint64_t		 off;		/* Next history byte to send. */

	char			 addr[64];	/* Source address. */
	char			*user;

	time_t			 created;
	time_t			 last_input;
	time_t			 stuck_since;	/* 0 when not behind. */

	uint64_t		 bytes_in;
	uint64_t		 bytes_out;
	uint64_t		 skipped;

	void			*cluster;	/* Channel state (cluster-int.h). */
	uint64_t		 stream;	/* Stream of off, when resumed. */
	struct limit_slot	*limit;		/* Per-source slot, or NULL. */

	TAILQ_ENTRY(client)	 centry;	/* On console->clients. */
	TAILQ_ENTRY(client)	 gentry;	/* On all_clients. */
	TAILQ_ENTRY(client)	 dentry;	/* On dead_clients. */
};
TAILQ_HEAD(clients, client);

/* client.c */
extern struct clients	 all_clients;
struct client	*client_create(int, enum client_kind, const struct client_proto *,
		     const struct sockaddr *);
void		 client_close(struct client *, const char *);
void		 client_reap(struct client *);
void		 client_reap_stop(void);
void		 client_write(struct client *, const void *, size_t);
void		 client_write_data(struct client *, const void *, size_t);
void		 client_printf(struct client *, const char *, ...)
		     __attribute__((__format__ (printf, 2, 3)));
void		 client_flush(struct client *);
void		 client_set_read(struct client *, int);
void		 client_input_to_vm(struct client *, const u_char *, size_t);
void		 client_check_stuck(time_t);
void		 client_shutdown(const char *);
const char	*client_mode_name(const struct client *);
void		 client_adopted(struct client *);

/*
 * A VM serial port.  Keyed by VC UUID and optional label ("UUID" or
 * "UUID.LABEL"); outlives its connections.
 */
enum vmotion_state {
	VMOTION_NONE,
	VMOTION_WAIT_STORE,	/* BEGIN seen, storing the token. */
	VMOTION_PENDING,	/* GOAHEAD sent, waiting for PEER. */
	VMOTION_PEERED,		/* PEER-OK sent, waiting for COMPLETE. */
	VMOTION_STATE_MAX
};

#define VMOTION_SEQ_MAX		64
#define VMOTION_SECRET_LEN	8
#define VMOTION_TOKEN_MAX	(VMOTION_SEQ_MAX + VMOTION_SECRET_LEN)

struct vmotion {
	enum vmotion_state	 state;
	u_char			 seq[VMOTION_SEQ_MAX];
	size_t			 seqlen;
	u_char			 secret[VMOTION_SECRET_LEN];
	struct vmconn		*src;		/* NULL once it closed. */
	struct vmconn		*dst;
	struct event		*timer;
	struct timespec		 began;
	uint64_t		 id;		/* Guards late store replies. */
	char			*node;		/* Other node taking part. */
};

struct console {
	struct hmap_entry	 entry;		/* In consoles, by key. */
	char			*key;		/* "uuid" or "uuid.label". */
	u_char			 uuid[UUID_LEN];
	char			*label;		/* NULL if none. */
	char			*name;		/* VM display name. */
	char			*uri;		/* Service URI it presented. */
	uint64_t		 epoch;		/* Ownership epoch (store). */
	/*
	 * Identity of the byte stream: offsets into it mean the same thing
	 * across vMotions (the history moves with it), not after the owner
	 * was lost and the history started afresh.
	 */
	uint64_t		 stream;
	/* With CONSOLE_UNCLAIMED: the store's epoch when it was ours. */
	uint64_t		 claim_known;

	int			 flags;
#define CONSOLE_EXCL		0x1	/* Holder is exclusive. */
#define CONSOLE_WRITELOCK	0x2	/* Holder is the sole writer. */
#define CONSOLE_DEAD		0x4
#define CONSOLE_REMOTE		0x8	/* Owned by another node. */
#define CONSOLE_HANDOVER	0x10	/* Owner now; waiting for history. */
#define CONSOLE_UNCLAIMED	0x20	/* Owner; not recorded in the store. */
#define CONSOLE_CLAIMING	0x40	/* ...claim again in flight. */

	struct vmconn		*vm;		/* Current connection or NULL. */
	struct vmotion		 vmotion;
	struct evbuffer		*held;		/* Input held during vMotion. */

	struct ring		 history;
	struct logfile		*log;

	struct clients		 clients;
	u_int			 nclients;
	struct client		*holder;	/* Lock holder, if any. */

	time_t			 created;
	time_t			 connected;	/* VM connected since, or 0. */
	time_t			 left;		/* Last VM and client left. */
	time_t			 input_notice;	/* Last "input discarded". */

	/* When CONSOLE_REMOTE: what the shared state says. */
	char			*owner;
	char			*rstate;
	time_t			 rsince;
	struct event		*handover_timer;
	uint64_t		 vmotions;
	uint64_t		 input_dropped;

	TAILQ_ENTRY(console)	 gentry;	/* On all_consoles. */
};
TAILQ_HEAD(consoles, console);

/* console.c */
extern struct consoles	 all_consoles;
extern u_int		 nconsoles;
struct console	*console_find(const char *);
struct console	*console_get(const u_char *, const char *);
int		 console_lookup(const char *, struct console **, char **);
void		 console_set_name(struct console *, const char *, size_t);
void		 console_set_vm(struct console *, struct vmconn *);
void		 console_vm_gone(struct console *, struct vmconn *);
void		 console_output(struct console *, const u_char *, size_t);
void		 console_input(struct console *, const u_char *, size_t);
size_t		 console_input_room(const struct console *);
void		 console_input_drained(struct console *);
void		 console_release_held(struct console *);
void		 console_send_break(struct console *);
enum attach_result console_attach(struct console *, struct client *,
		     enum attach_mode);
void		 console_detach(struct console *, struct client *,
		     const char *);
int		 console_set_mode(struct console *, struct client *,
		     enum attach_mode, char *, size_t);
void		 console_replay(struct console *, struct client *, u_int);
void		 console_notice(struct console *, struct client *,
		     const char *, ...)
		     __attribute__((__format__ (printf, 3, 4)));
void		 console_log_activity(struct console *, const char *, ...)
		     __attribute__((__format__ (printf, 2, 3)));
void		 console_expire(time_t);
void		 console_mark(time_t);
void		 console_reconfigure(void);
const char	*console_state(const struct console *);
struct console	*console_get_key(const char *);
void		 console_make_remote(struct console *, const char *, uint64_t);
void		 console_make_local(struct console *);
const char	*attach_result_string(enum attach_result);
void		 console_free_all(void);

/* One connection from an ESXi host. */
enum vmconn_role {
	VMCONN_UNBOUND,		/* Negotiating, not yet identified. */
	VMCONN_CURRENT,		/* The console's connection. */
	VMCONN_VMOTION_DST,	/* Peered vMotion destination. */
	VMCONN_REFUSED,		/* WONT-PROXY sent; data discarded. */
	VMCONN_RETIRED,		/* Old vMotion source, closing. */
	VMCONN_ROLE_MAX
};

struct vmconn {
	u_int			 id;
	int			 fd;
	u_int			 references;	/* Store calls in flight. */
	enum vmconn_role	 role;
	int			 flags;
#define VMCONN_GOT_KS1		0x1
#define VMCONN_ASKED_ID		0x2	/* GET-VM-VC-UUID/NAME sent. */
#define VMCONN_PROXY_OK		0x4	/* DO-PROXY accepted. */
#define VMCONN_DEAD		0x8
#define VMCONN_READ_OFF		0x10
#define VMCONN_PEERING		0x20	/* PEER under lookup. */
#define VMCONN_WRITE_WAIT	0x40
#define VMCONN_EOF		0x80	/* Peer closed; flushing. */
#define VMCONN_CORK		0x100	/* Queue output; one write later. */

	struct event		*ev_read;
	struct event		*ev_write;
	struct event		*ev_timeout;	/* Negotiation timeout. */
	struct evbuffer		*out;		/* Allocated on demand. */
	struct evbuffer		*held;		/* Data before binding. */
	struct telnet		 tn;

	u_char			 uuid[UUID_LEN];
	int			 have_uuid;
	char			*name;
	char			*uri;		/* DO-PROXY service URI. */
	char			*label;		/* ?port=LABEL */
	u_char			 direction;	/* 'S' or 'C'. */
	struct console		*console;
	uint64_t		 vmotion_id;	/* Of a PEER lookup. */

	char			 addr[64];
	time_t			 created;
	uint64_t		 bytes_in;
	uint64_t		 bytes_out;
	struct limit_slot	*limit;		/* Per-source slot, or NULL. */

	TAILQ_ENTRY(vmconn)	 gentry;	/* On all_vmconns. */
	TAILQ_ENTRY(vmconn)	 dentry;	/* On dead_vmconns. */
};
TAILQ_HEAD(vmconns, vmconn);

/* vmconn.c */
extern struct vmconns	 all_vmconns;
extern u_int		 nvmconns;
struct vmconn	*vmconn_create(int, const struct sockaddr *);
void		 vmconn_close(struct vmconn *, const char *);
void		 vmconn_reap(struct vmconn *);
void		 vmconn_reap_stop(void);
void		 vmconn_write(struct vmconn *, const u_char *, size_t);
void		 vmconn_send_vmware(struct vmconn *, u_char, const u_char *,
		     size_t);
size_t		 vmconn_pending(const struct vmconn *);
void		 vmconn_send_break(struct vmconn *);
void		 vmconn_release_held(struct vmconn *);
void		 vmconn_claim(struct console *);
struct vmconn	*vmconn_adopt(u_int, int);
void		 vmconn_adopted(struct vmconn *, int64_t);

/* vmotion.c */
void		 vmotion_begin(struct vmconn *, const u_char *, size_t);
void		 vmotion_peer(struct vmconn *, const u_char *, size_t);
void		 vmotion_complete(struct vmconn *, const u_char *, size_t);
void		 vmotion_abort(struct vmconn *);
void		 vmotion_conn_lost(struct console *, struct vmconn *);
void		 vmotion_cancel(struct console *, const char *);
const char	*vmotion_state_name(enum vmotion_state);

/*
 * core.c: the narrow interface between the core (telnet, vmconn, vmotion,
 * console, ring, logfile, client) and the layers above it.  A section of
 * this header rather than a header of its own: the hooks take the core's
 * own structures, declared above, and nothing but the core and the files
 * that install a table use it.
 *
 * core_hooks: what the core asks of the cluster.  It starts as the table
 * of a node on its own (no-ops, nothing forwarded or owned elsewhere);
 * cluster_start() installs cluster.c's (cluster-hooks.c).
 */
struct core_hooks {
	/* A console's state changed: publish its record. */
	void	 (*console_changed)(struct console *);
	/* Its VM is bound here: people forwarded to it are served here. */
	void	 (*console_bound)(struct console *);
	/* The store could not record the claim (epoch known): retry. */
	void	 (*claim_later)(struct console *, uint64_t);
	/* A vMotion ended without moving: check who owns the console. */
	void	 (*recheck)(struct console *);
	/* Attach a person to a console another node owns. */
	enum attach_result (*attach)(struct console *, struct client *,
		     enum attach_mode);
	/* Whether a person's console is served by another node. */
	int	 (*client_forwarded)(const struct client *);
	/* A person left: end its channel to another node, if any. */
	void	 (*client_gone)(struct client *);
	/* Bytes typed by a forwarded person, for the owner. */
	void	 (*fwd_input)(struct client *, const u_char *, size_t);
	/* A forwarded person's socket took bytes: return credit. */
	void	 (*fwd_drained)(struct client *, size_t);
	/* Output a forwarded person may have queued beyond its buffer. */
	size_t	 (*fwd_window)(const struct client *);
	/* vMotion with the source on another node: peer, complete. */
	int	 (*vmotion_peer)(struct vmconn *, const u_char *, size_t,
		     const struct store_token *);
	void	 (*vmotion_complete)(struct vmconn *);
	/* A vMotion with another node taking part was cancelled. */
	void	 (*vmotion_cancelled)(struct console *, const char *);
};
extern const struct core_hooks *core_hooks;
/* Set by handoff.c while a hot upgrade quiesces: reading stays off. */
extern int	 core_quiescing;
int64_t		 core_timer_left(const struct event *);
void		 core_timer_set(struct event *, int64_t);

/* cluster-hooks.c: cluster.c's core_hooks table. */
void		 cluster_hooks_install(void);

/* cmdline.c: the console port (people's telnet sessions). */
extern const struct client_proto cmdline_proto;
void		 cmdline_accept(int, const struct sockaddr *);

/* compat.c: the compatibility port (vSPCClient and VMware client). */
extern const struct client_proto compat_proto;
void		 compat_accept(int, const struct sockaddr *);

/*
 * peer.c: links to the other nodes of a cluster (proto/vspc.proto).
 * Frames are a 4-byte big-endian length and an Envelope.  A link is
 * usable once both Hellos and HelloAuths checked out; until then nothing
 * else is accepted.  Outbound links reconnect with backoff while the node
 * is wanted (peer_want); inbound ones are accepted from any address that
 * passes the handshake.  One link per pair of nodes: when both dial at
 * once, the one dialled by the lower node ID stays.
 */
#define PEER_PROTOCOL		1
#define PEER_FRAME_MAX_DEFAULT	(8 * 1024 * 1024)
struct Vspc__Envelope;
struct peer;
int		 peer_init(struct config *, char **);
void		 peer_shutdown(void);
void		 peer_want(const char *, const char *);
void		 peer_unwant(const char *);
struct peer	*peer_find(const char *);
int		 peer_send(struct peer *, const struct Vspc__Envelope *);
size_t		 peer_queued(const struct peer *);
const char	*peer_node(const struct peer *);
const char	*peer_addr(const struct peer *);
void		*peer_get_data(const struct peer *);
void		 peer_set_data(struct peer *, void *);
u_int		 peer_count(void);
/* peer-frame.c: framing, shared with the tests and the fuzz target. */
int		 peer_frame_next(struct evbuffer *, size_t,
		     struct Vspc__Envelope **, const char **);
size_t		 peer_frame_add(struct evbuffer *,
		     const struct Vspc__Envelope *);
/* Identity without listening; links on given sockets (tests, hand-over). */
int		 peer_configure(struct config *, char **);
void		 peer_attach_fd(int, int, const char *);
void		 peer_set_test_timers(u_int, u_int);
u_int		 peer_link_count(void);
const char	*peer_last_close(void);
/*
 * peer-handoff.c: hot upgrade.  The listeners, links and wants go in a
 * HANDOFF_REC_PEER record.  peer_adopt_listener serves a handed-over
 * listening socket (text as in peer_listen); one already adopted for the
 * same text makes it close the duplicate, so handoff.c may pass them too.
 * peer_init or peer_configure must have run before peer_handoff_restore.
 */
void		 peer_adopt_listener(int, const char *);
/*
 * cluster.c: what makes several nodes one concentrator: console ownership
 * in the shared store, people forwarded to the owner over the peer link,
 * vMotion across nodes (cluster-*.c; cluster-int.h is their own).  The
 * cluster_peer_* hooks are called by peer.c.
 */
void		 cluster_peer_up(struct peer *);
void		 cluster_peer_down(struct peer *);
void		 cluster_peer_message(struct peer *, struct Vspc__Envelope *);
void		 cluster_start(void);
void		 cluster_stop(void);
int		 cluster_enabled(void);
void		 cluster_console_bound(struct console *);
void		 cluster_console_changed(struct console *);
void		 cluster_recheck(struct console *);
void		 cluster_claim_later(struct console *, uint64_t);
const char	*cluster_node_of(const struct console *);

/* cluster-fwd.c: people here attached to a console of another node. */
enum attach_result cluster_attach(struct console *, struct client *,
		     enum attach_mode);
enum attach_result cluster_attach_at(struct console *, struct client *,
		     enum attach_mode, uint64_t, uint64_t);
int		 cluster_fwd_position(const struct client *, uint64_t *,
		     uint64_t *);
void		 cluster_client_gone(struct client *);
void		 cluster_fwd_input(struct client *, const u_char *, size_t);
void		 cluster_fwd_drained(struct client *, size_t);
void		 cluster_fwd_grant(struct client *);
struct evbuffer	*cluster_fwd_seed(struct client *);
size_t		 cluster_fwd_window(const struct client *);
int		 cluster_fwd_mode(struct client *, enum attach_mode, u_int,
		     int);
int		 cluster_client_forwarded(const struct client *);

/* cluster-remote.c: the owner serving people of other nodes. */
/* The client_proto of CLIENT_REMOTE clients (hand-over restores them). */
extern const struct client_proto cluster_remote_proto;
void		 cluster_remote_flush(struct client *);
void		 cluster_remote_write(struct client *, const void *, size_t);

/* cluster-vmotion.c: vMotion across nodes. */
int		 cluster_vmotion_peer(struct vmconn *, const u_char *, size_t,
		     const struct store_token *);
void		 cluster_vmotion_complete(struct vmconn *);
void		 cluster_vmotion_cancelled(struct console *, const char *);
void		 cluster_vmotion_dst_lost(struct console *);

/*
 * server.c: the event loop, start-up and reload (server-*.c;
 * server-int.h is their own).  Listener kinds: the first LISTEN_KIND_MAX
 * are server-listen.c's own listeners (their numbers are in hand-over
 * records: append only); the others name listeners of other modules in
 * refusal counters.
 */
enum listener_kind {
	LISTEN_VM,
	LISTEN_CONSOLE,
	LISTEN_COMPAT,
	LISTEN_VM_TLS,
	LISTEN_CONSOLE_TLS,
	LISTEN_KIND_MAX,
	LISTEN_HTTP = LISTEN_KIND_MAX,
	LISTEN_PEER,
	LISTEN_CONTROL,
	LISTEN_ALL_MAX
};
/* Why a connection was refused at accept (vspcd_connections_refused). */
enum server_refusal {
	REFUSED_ALLOW,
	REFUSED_MAX_CONNECTIONS,
	REFUSED_MAX_PER_SOURCE,
	REFUSED_TLS,
	REFUSED_MAX
};
struct auth;
struct limit_slot;
/* server-state.c: the node's shared state (data, and the clock). */
extern struct event_base	*server_base;
extern struct auth		*server_auth;	/* NULL: no users_file. */
extern struct limit_slot	*server_accept_slot;
extern struct config		*server_conf;
extern struct store		*server_store;
extern struct stats		 server_stats;
extern time_t			 server_now;
extern int			 server_debug;
extern int			 server_draining;
uint64_t	 server_monotime_us(void);
/* server.c */
int		 server_start(struct config *, int);
int		 server_loop(void);
int		 server_reload(char **);
void		 server_set_overrides(char **, u_int);
void		 server_set_draining(int);

/* server-listen.c: the listeners; admitting a connection at accept. */
const char	*server_listener_name(u_int);
const char	*server_refusal_name(u_int);
void		 server_refused(u_int, enum server_refusal);
void		 server_keepalive(int);
int		 server_allowed(u_int, const struct sockaddr *, const char *);
struct limit_slot *server_limit_take(u_int, const char *);
u_int		 server_vm_listeners(void);
void		 server_dispatch(int, const struct sockaddr *, u_int,
		     const char *);

/*
 * proxy.c: PROXY protocol v1 and v2 headers from the [vm]
 * proxy_protocol_from addresses, on every listener.
 */
int		 proxy_parse(const u_char *, size_t, struct sockaddr_storage *,
		     size_t *, const char **);
void		 proxy_accept(int, const struct sockaddr *, socklen_t, u_int,
		     const char *, void (*)(int, const struct sockaddr *, u_int,
		     const char *));
void		 proxy_shutdown(void);

/*
 * refuse.c: connections refused at accept on the console and
 * compatibility ports are told why in their client's form, then closed.
 */
void		 refuse_connection(int, u_int, const char *);
u_int		 refuse_pending(void);
void		 refuse_shutdown(void);

/*
 * metrics.c: what /metrics exports (Prometheus text format), and the
 * vMotion latency histograms (buckets from 50 us to 5 s).
 */
#define METRICS_BUCKETS		16
enum metrics_hist_id {
	METRICS_GOAHEAD,	/* VMOTION-BEGIN to GOAHEAD. */
	METRICS_PEER_OK,	/* VMOTION-PEER to PEER-OK. */
	METRICS_HIST_MAX
};
void		 metrics_init(void);
void		 metrics_write(struct evbuffer *);

/* metrics-hist.c: the histograms themselves. */
struct metrics_hist {
	const char	*name;
	const char	*help;
	uint64_t	 bucket[METRICS_BUCKETS];	/* Not cumulative. */
	uint64_t	 count;
	uint64_t	 sum_us;
};
extern const uint64_t	 metrics_bounds[METRICS_BUCKETS];
extern struct metrics_hist metrics_hists[METRICS_HIST_MAX];
void		 metrics_observe(enum metrics_hist_id, uint64_t);

/*
 * http.c: the HTTP listener ([http] listen) serving /metrics and
 * /healthz.  For monitoring and load balancers, not for the public.
 */
int		 http_init(struct config *, char **);
int		 http_reconfigure(struct config *, char **);
void		 http_shutdown(void);

/*
 * control.c: the control socket (proto/control.proto) for vspcctl, a
 * read-only variant beside it, and requests relayed to and from other
 * nodes (ControlRelay in proto/vspc.proto); control-*.c, control-int.h.
 */
#define CTL_PROTOCOL		1
struct Vspc__ControlRelay;
struct Vspc__ControlRelayReply;
int		 control_init(struct config *, char **);
void		 control_shutdown(void);

/* control-relay.c: requests relayed to and from other nodes. */
void		 control_relay_request(struct peer *,
		     const struct Vspc__ControlRelay *);
void		 control_relay_reply(struct peer *,
		     const struct Vspc__ControlRelayReply *);

/*
 * auth.c: the users file ([console] users_file): logins with crypt(3)
 * hashes checked on a worker thread, groups, per-console rw/ro rules
 * with globs, and the admin role.
 */
enum auth_access {
	AUTH_NONE,
	AUTH_RO,
	AUTH_RW
};
struct auth;
struct auth	*auth_load(const char *, char **);
int		 auth_refresh(struct auth **, char **);
void		 auth_free(struct auth *);
enum auth_access auth_console_access(const struct auth *, const char *,
		     const char *, const char *, const char *);
int		 auth_is_admin(const struct auth *, const char *);
int		 auth_check_password(const struct auth *, const char *,
		     const char *);
void		 auth_init(struct event_base *);
void		 auth_shutdown(void);
u_int		 auth_pending(void);
void		 auth_verify(const struct auth *, const char *, const char *,
		     u_int, void (*)(u_int, int));

/*
 * tls.c: TLS termination for the telnets listeners.  A connection's
 * handshake is done here; then it is relayed to a Unix socketpair whose
 * other end is served like a plain connection (tls-*.c; tls-int.h is
 * their own).
 */
enum tls_listener {
	TLS_LISTENER_VM,	/* [vm] tls_listen. */
	TLS_LISTENER_CONSOLE,	/* [console] tls_listen. */
	TLS_LISTENER_PEER,	/* The peer link, either way. */
	TLS_LISTENER_MAX
};
enum tls_close {
	TLS_CLOSE_NOTIFY,	/* The peer sent close_notify. */
	TLS_CLOSE_EOF,		/* TCP FIN without close_notify. */
	TLS_CLOSE_RESET,	/* RST, or another socket error. */
	TLS_CLOSE_ERROR,	/* TLS protocol error after the handshake. */
	TLS_CLOSE_LOCAL,	/* This node closed it (the plain end). */
	TLS_CLOSE_MAX
};
struct tls_stats {
	uint64_t	 handshakes;
	uint64_t	 handshake_failed;
	uint64_t	 bytes_in;	/* Decrypted, from peers. */
	uint64_t	 bytes_out;	/* Before encryption, to peers. */
	/* Established connections ended, by listener and cause. */
	uint64_t	 closes[TLS_LISTENER_MAX][TLS_CLOSE_MAX];
};
extern struct tls_stats	 tls_stats;
enum tls_slot {
	TLS_SERVER,		/* telnets listeners (ESXi, people). */
	TLS_PEER,		/* Peer link, mutual, against the cluster CA. */
	TLS_SLOT_MAX
};
int		 tls_configure(enum tls_slot, const char *, const char *,
		     const char *, char **);
int		 tls_thumbprint_file(const char *, char *, size_t, char **);
const char	*tls_thumbprint(enum tls_slot);
int		 tls_enabled(enum tls_slot);
u_int		 tls_count(void);
const char	*tls_listener_name(u_int);
const char	*tls_close_name(u_int);
void		 tls_accept(int, enum tls_slot, const struct sockaddr *,
		     socklen_t, u_int, const char *, u_int,
		     void (*)(int, const struct sockaddr *, u_int,
		     const char *));
void		 tls_connect(int, const struct sockaddr *, socklen_t, u_int,
		     const char *, u_int, void (*)(int, const struct sockaddr *,
		     u_int, const char *));
void		 tls_shutdown(void);

/*
 * tls-process.c: the process the relays run in, and the main process's
 * channel to it.
 */
int		 tls_process_start(char **);
void		 tls_process_stop(void);
int		 tls_channel(void);
pid_t		 tls_process_pid(void);
void		 tls_handoff_pause(int);
void		 tls_adopt_channel(int, pid_t);
void		 tls_set_dispatch(void (*)(int, const struct sockaddr *, u_int,
		     const char *));
void		 tls_set_failed(void (*)(const struct sockaddr *, u_int));

/*
 * peer.c: what it uses of server.c and tls.c (allow list, mutual TLS), set
 * by server.c; without it (unit tests, fuzzing) links are plain and
 * every source is allowed.  peer_tls_done is where handshaken peer-link
 * connections come back (kind: LISTEN_PEER, link ID above bit 8).
 */
struct peer_security {
	int	 (*allowed)(u_int, const struct sockaddr *, const char *);
	int	 (*tls_enabled)(enum tls_slot);
	void	 (*tls_accept)(int, enum tls_slot, const struct sockaddr *,
		     socklen_t, u_int, const char *, u_int,
		     void (*)(int, const struct sockaddr *, u_int,
		     const char *));
	void	 (*tls_connect)(int, const struct sockaddr *, socklen_t, u_int,
		     const char *, u_int, void (*)(int,
		     const struct sockaddr *, u_int, const char *));
};
extern const struct peer_security *peer_security;
void		 peer_tls_done(int, const struct sockaddr *, u_int,
		     const char *);

/*
 * limit.c: connections per source address and listener kind.  A
 * connection holds its slot from accept to close.
 */
struct limit_slot;
struct limit_slot *limit_take(const struct sockaddr *, u_int, u_int);
void		 limit_put(struct limit_slot *);
u_int		 limit_count(const struct sockaddr *, u_int);
u_int		 limit_sources(void);
u_int		 limit_total(u_int);
struct limit_slot *limit_take_text(const char *, u_int);

/*
 * handoff.c: hot upgrade (vspcctl node upgrade, SIGUSR2).  The running
 * node starts the new binary with a socketpair, waits until nothing is
 * in flight with the store, freezes, and passes every listening socket
 * and live connection (SCM_RIGHTS) with each object's state as a
 * sequence of protobuf records (proto/handoff.proto; modules with their
 * own state format pack it themselves).  The new process rebuilds
 * everything without touching a socket, says it is ready, and only
 * starts its loop once the old one committed and left.  If anything
 * fails before the commit, the old process carries on as if nothing
 * happened.
 *
 * Records are written and read in this order; each module's
 * *_handoff_restore() is given its records in the order it wrote them.
 */
#define HANDOFF_VERSION		1	/* State format this binary writes. */
#define HANDOFF_VERSION_MIN	1	/* Oldest format it can read. */
enum handoff_rec {
	HANDOFF_REC_SERVER = 1,	/* Listeners, statistics, draining. */
	HANDOFF_REC_STORE,	/* Embedded store's tokens and records. */
	HANDOFF_REC_CONSOLE,
	HANDOFF_REC_VMCONN,
	HANDOFF_REC_CLIENT,
	HANDOFF_REC_CONTROL,
	HANDOFF_REC_PROXY,
	HANDOFF_REC_PEER,	/* peer-handoff.c's packed state. */
	HANDOFF_REC_CLUSTER,	/* cluster-handoff.c's packed state. */
	HANDOFF_REC_MAX
};
struct handoff;
/* Saving: pass fd to the new process; returns its index in the set. */
int		 handoff_add_fd(struct handoff *, int);
/* Saving: append a record of packed bytes. */
void		 handoff_add(struct handoff *, enum handoff_rec,
		     const uint8_t *, size_t);
/* Restoring: take the descriptor of an index (once); -1 if invalid. */
int		 handoff_take_fd(struct handoff *, int);
int		 handoff_restoring(void);	/* Started by a hand-over. */
int		 handoff_in_progress(void);	/* Old side quiescing. */
void		 handoff_start(const char *, void (*)(void *, int,
		     const char *), void *);
/*
 * A module's part in the hand-over, one const entry in the module's own
 * file; server_start registers them in the order their records are
 * written and read.  Every hook may be NULL.  enabled: whether the
 * module takes part at all (records of a module that does not are
 * skipped).  pause: stop (1) or resume (0) reading and accepting while
 * quiescing.  busy: non-zero (and why) while something is in flight
 * that cannot be written down (a store reply, a peer request awaiting
 * an answer that has no record); the old node waits, bounded, for all
 * to be idle.  save: write the module's records.  restore: rebuild from
 * one record of type rec (called in order, before any socket is
 * touched).  resume: after the commit, arm events and timers.
 */
struct handoff_module {
	const char	*name;
	enum handoff_rec rec;
	int		 flags;
#define HANDOFF_RESUME_LAST 0x1	/* Resume after every other module. */
	int		(*enabled)(void);
	void		(*pause)(int);
	int		(*busy)(char *, size_t);
	void		(*save)(struct handoff *);
	int		(*restore)(struct handoff *, const uint8_t *, size_t,
			    char **);
	void		(*resume)(void);
};
void		 handoff_register(const struct handoff_module *);
extern const struct handoff_module peer_handoff_module;
extern const struct handoff_module cluster_handoff_module;
/* Called directly by the peer link's unit test. */
int		 peer_handoff_busy(char *, size_t);
void		 peer_handoff_save(struct handoff *);
int		 peer_handoff_restore(struct handoff *, const uint8_t *, size_t,
		     char **);
void		 peer_handoff_resume(void);
/* Looking clients up by ID (IDs survive a hand-over). */
struct client	*client_find(u_int);
/* peer-handoff.c: serve an inherited peer listener (with its fd). */
void		 peer_adopt_listener(int, const char *);

/*
 * handoff.c's own functions and the node-local modules' entries.  Those
 * of the core's modules are in files of the hand-over layer beside them
 * (telnet-handoff.c, console-handoff.c, vmconn-handoff.c,
 * client-handoff.c), so that the core objects know nothing of it.
 */
struct ProtobufCMessage;
struct ProtobufCBinaryData;
struct Vspc__Handoff__Telnet;
void		 handoff_init(int, char **);
void		 handoff_free(void);
void		 handoff_add_msg(struct handoff *, enum handoff_rec,
		     const struct ProtobufCMessage *);
void		 handoff_evbuffer_bytes(struct evbuffer *,
		     struct ProtobufCBinaryData *);
void		 handoff_forget(void *);
void		 handoff_fail_early(const char *);
void		 handoff_restore_run(void);
void		 telnet_handoff_save(const struct telnet *,
		     struct Vspc__Handoff__Telnet *);
void		 telnet_handoff_restore(struct telnet *,
		     const struct Vspc__Handoff__Telnet *);
extern const struct handoff_module server_handoff_module;
extern const struct handoff_module server_store_handoff_module;
extern const struct handoff_module console_handoff_module;
extern const struct handoff_module vmconn_handoff_module;
extern const struct handoff_module client_handoff_module;
const struct client_proto *control_client_proto(const char *);
int		 control_client_carried(const struct client *);
extern const struct handoff_module control_handoff_module;
extern const struct handoff_module proxy_handoff_module;
int		 http_handoff_fds(int *, char **, u_int);
int		 http_adopt(int, const char *, char **);
uint64_t	 vmotion_next(int, uint64_t);
void		 vmotion_restore_timer(struct console *, int64_t);

/* Statistics, exported later by the metrics endpoint. */
struct stats {
	uint64_t	 vm_accepted;
	uint64_t	 vm_refused;
	uint64_t	 vm_protocol_errors;
	uint64_t	 vm_bytes_in;
	uint64_t	 vm_bytes_out;
	uint64_t	 vm_bytes_discarded;
	uint64_t	 client_accepted;
	uint64_t	 client_bytes_in;
	uint64_t	 client_bytes_out;
	uint64_t	 client_skipped;
	uint64_t	 client_stuck;
	uint64_t	 vmotion_begin;
	uint64_t	 vmotion_goahead;
	uint64_t	 vmotion_notnow;
	uint64_t	 vmotion_peer;
	uint64_t	 vmotion_peer_bad;
	uint64_t	 vmotion_complete;
	uint64_t	 vmotion_abort;
	uint64_t	 vmotion_timeout;
	uint64_t	 input_dropped;
	uint64_t	 proxy_refused;
	/* Appended (hand-over copies the array): [listener][refusal]. */
	uint64_t	 refused[LISTEN_ALL_MAX][REFUSED_MAX];
	uint64_t	 login_failed;
	uint64_t	 readonly_dropped;	/* Bytes typed by read-only users. */
	uint64_t	 claims_deferred;	/* Claims the store missed. */
};

#endif /* VSPCD_H */
