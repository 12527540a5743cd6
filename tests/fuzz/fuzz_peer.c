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
 * Fuzz target for the peer-link framing and message decoding
 * (peer_frame_next, the generated Envelope code).  Input layout:
 *
 *	byte 0		chunking seed (0: the whole stream in one piece)
 *	byte 1		frame limit: 0 the default, else byte * 64
 *	rest		the byte stream a node reads from a peer
 *
 * The stream is read twice, whole and in chunks; both readings must give
 * the same envelopes (compared by their packed bytes) and end the same
 * way (need more, or an error).  Each envelope is packed again: the
 * size must match get_packed_size, the packed bytes must decode, and
 * framing them with peer_frame_add must read back as the same bytes.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #x);					\
		abort();						\
	}								\
} while (0)

#define FUZZ_MAX	(1024 * 1024)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* peer.c's references, unused here. */
struct event_base	*server_base;
struct config		*server_conf;

/* Unused: the target never opens a link. */
uint64_t
server_monotime_us(void)
{
	return (0);
}

/* Unused: the target never opens a link. */
void
cluster_peer_up(struct peer *p)
{
	abort();
}

/* Unused: the target never opens a link. */
void
cluster_peer_down(struct peer *p)
{
	abort();
}

/* Unused: the target never opens a link. */
void
cluster_peer_message(struct peer *p, struct Vspc__Envelope *env)
{
	abort();
}

/* Unused: the target never hands over. */
int
handoff_add_fd(struct handoff *h, int fd)
{
	abort();
}

/* Unused: the target never hands over. */
void
handoff_add(struct handoff *h, enum handoff_rec t, const uint8_t *buf,
    size_t len)
{
	abort();
}

/* Unused: the target never hands over. */
int
handoff_take_fd(struct handoff *h, int i)
{
	abort();
}

/* Unused: the target never hands over. */
int
handoff_restoring(void)
{
	return (0);
}

struct result {
	uint64_t	hash;		/* Of the packed envelopes. */
	u_int		n;
	int		end;		/* 0 need more, -1 error. */
};

static void
hash_add(struct result *r, const u_char *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		r->hash ^= p[i];
		r->hash *= 0x100000001b3ULL;
	}
	r->hash ^= len;
	r->hash *= 0x100000001b3ULL;
}

/* Unknown fields in the envelope and in its message. */
static size_t
unknown_fields(const Vspc__Envelope *env)
{
	const ProtobufCFieldDescriptor	*f;
	const ProtobufCMessage		*sub;
	size_t				 n = env->base.n_unknown_fields;

	if (env->msg_case == VSPC__ENVELOPE__MSG__NOT_SET)
		return (n);
	f = protobuf_c_message_descriptor_get_field(&vspc__envelope__descriptor,
	    env->msg_case);
	CHECK(f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE);
	sub = *(const ProtobufCMessage *const *)((const char *)env +
	    f->offset);
	CHECK(sub != NULL);
	return (n + sub->n_unknown_fields);
}

/*
 * Pack env, check the round trip, add it to the result.  Unknown fields
 * are kept and packed again as they came, but protobuf-c accepts some
 * it then packs in a form it refuses (field 0 in an overlong tag): the
 * strict round trip is checked only for envelopes without them.
 */
static void
check_envelope(struct result *r, const Vspc__Envelope *env, size_t max)
{
	Vspc__Envelope	*again, *framed;
	struct evbuffer	*b;
	const char	*err;
	u_char		*p, *q;
	size_t		 len;

	len = vspc__envelope__get_packed_size(env);
	p = malloc(len != 0 ? len : 1);
	CHECK(p != NULL);
	CHECK(vspc__envelope__pack(env, p) == len);

	if (unknown_fields(env) != 0) {
		hash_add(r, p, len);
		r->n++;
		free(p);
		return;
	}

	/* Repacked bytes decode, and pack to the same bytes. */
	again = vspc__envelope__unpack(NULL, len, p);
	CHECK(again != NULL);
	CHECK(again->msg_case == env->msg_case);
	CHECK(vspc__envelope__get_packed_size(again) == len);
	q = malloc(len != 0 ? len : 1);
	CHECK(q != NULL);
	CHECK(vspc__envelope__pack(again, q) == len);
	CHECK(memcmp(p, q, len) == 0);
	vspc__envelope__free_unpacked(again, NULL);

	/* Framed by peer_frame_add, it reads back. */
	b = evbuffer_new();
	CHECK(b != NULL);
	CHECK(peer_frame_add(b, env) == 4 + len);
	if (len <= max) {
		CHECK(peer_frame_next(b, max, &framed, &err) == 1);
		CHECK(framed->msg_case == env->msg_case);
		CHECK(vspc__envelope__get_packed_size(framed) == len);
		CHECK(vspc__envelope__pack(framed, q) == len);
		CHECK(memcmp(p, q, len) == 0);
		vspc__envelope__free_unpacked(framed, NULL);
		CHECK(evbuffer_get_length(b) == 0);
	}
	evbuffer_free(b);

	hash_add(r, p, len);
	r->n++;
	free(p);
	free(q);
}

/* Read the stream in pieces of the seed's sizes (0: whole). */
static void
read_stream(struct result *r, const u_char *s, size_t len, size_t max,
    u_int seed)
{
	struct evbuffer	*in;
	Vspc__Envelope	*env;
	const char	*err;
	size_t		 off = 0, n;
	int		 rv = 0;

	memset(r, 0, sizeof *r);
	in = evbuffer_new();
	CHECK(in != NULL);
	while (off < len) {
		n = seed == 0 ? len - off : 1 + (seed + off * 7) % 13;
		if (n > len - off)
			n = len - off;
		evbuffer_add(in, s + off, n);
		off += n;
		while ((rv = peer_frame_next(in, max, &env, &err)) == 1) {
			CHECK(err == NULL);
			check_envelope(r, env, max);
			vspc__envelope__free_unpacked(env, NULL);
		}
		if (rv == -1) {
			CHECK(err != NULL && env == NULL);
			break;
		}
		CHECK(env == NULL);
	}
	r->end = rv;
	evbuffer_free(in);
}

/* One input: the stream read whole and in chunks must agree. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result	whole, chunked;
	size_t		max;

	if (size < 2 || size > FUZZ_MAX)
		return (0);
	max = data[1] == 0 ? PEER_FRAME_MAX_DEFAULT : (size_t)data[1] * 64;
	read_stream(&whole, data + 2, size - 2, max, 0);
	if (data[0] != 0) {
		read_stream(&chunked, data + 2, size - 2, max, data[0]);
		CHECK(whole.n == chunked.n);
		CHECK(whole.hash == chunked.hash);
		CHECK(whole.end == chunked.end);
	}
	return (0);
}
