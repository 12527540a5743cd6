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
 * Peer-link framing: a 4-byte big-endian length and a packed Envelope
 * (proto/PROTOCOL), and the HMAC of the handshake.  Shared with the tests
 * and the fuzz target (tests/fuzz/fuzz_peer.c).
 */

#include <sys/types.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "vspcd.h"
#include "proto/vspc.pb-c.h"
#include "peer-int.h"

/*
 * Take the next frame off in.  Return 1 with *out set (free it with
 * vspc__envelope__free_unpacked), 0 if more bytes are needed, or -1 with
 * *err set if the stream is broken (frame over max, or undecodable; *err
 * may point to static storage, valid until the next call).  A
 * zero-length frame is an empty Envelope, which is valid.  max 0 means
 * PEER_FRAME_MAX_DEFAULT.
 */
int
peer_frame_next(struct evbuffer *in, size_t max, Vspc__Envelope **out,
    const char **err)
{
	static char	 buf[128];
	u_char		 hdr[4], *p;
	uint32_t	 len;
	Vspc__Envelope	*env;

	*out = NULL;
	*err = NULL;
	if (max == 0)
		max = PEER_FRAME_MAX_DEFAULT;
	if (evbuffer_get_length(in) < sizeof hdr)
		return (0);
	evbuffer_copyout(in, hdr, sizeof hdr);
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
	    (uint32_t)hdr[2] << 8 | hdr[3];
	if (len > max) {
		snprintf(buf, sizeof buf, "frame of %u bytes exceeds the "
		    "limit of %zu", len, max);
		*err = buf;
		return (-1);
	}
	if (evbuffer_get_length(in) - sizeof hdr < len)
		return (0);
	p = evbuffer_pullup(in, sizeof hdr + len);
	env = vspc__envelope__unpack(NULL, len, p + sizeof hdr);
	evbuffer_drain(in, sizeof hdr + len);
	if (env == NULL) {
		*err = "undecodable frame";
		return (-1);
	}
	*out = env;
	return (1);
}

/*
 * Append one frame holding env to out, packed in place (no copy).
 * Return the frame's size.
 */
size_t
peer_frame_add(struct evbuffer *out, const Vspc__Envelope *env)
{
	struct evbuffer_iovec	 vec;
	size_t			 len;
	u_char			*p;

	len = vspc__envelope__get_packed_size(env);
	if (len > UINT32_MAX)
		fatalx("%s: envelope of %zu bytes", __func__, len);
	if (evbuffer_reserve_space(out, 4 + len, &vec, 1) != 1 ||
	    vec.iov_len < 4 + len)
		fatalx("%s: evbuffer_reserve_space failed", __func__);
	p = vec.iov_base;
	p[0] = len >> 24;
	p[1] = len >> 16;
	p[2] = len >> 8;
	p[3] = len;
	if (vspc__envelope__pack(env, p + 4) != len)
		fatalx("%s: packed size changed", __func__);
	vec.iov_len = 4 + len;
	if (evbuffer_commit_space(out, &vec, 1) != 0)
		fatalx("%s: evbuffer_commit_space failed", __func__);
	return (4 + len);
}

/*
 * The HelloAuth response: HMAC-SHA256 over the secret of challenge ||
 * answering node ID || NUL || challenging node ID || NUL.  The NULs make
 * the concatenation unambiguous ("a" + "aa" is not "aa" + "a").
 */
void
peer_mac(const struct peer_self *s, const u_char *challenge,
    const char *answering, const char *challenging, u_char *mac)
{
	u_char	*buf;
	size_t	 alen, clen, len;
	u_int	 maclen = PEER_MAC_LEN;

	alen = strlen(answering) + 1;
	clen = strlen(challenging) + 1;
	len = PEER_CHALLENGE_LEN + alen + clen;
	buf = xmalloc(len);
	memcpy(buf, challenge, PEER_CHALLENGE_LEN);
	memcpy(buf + PEER_CHALLENGE_LEN, answering, alen);
	memcpy(buf + PEER_CHALLENGE_LEN + alen, challenging, clen);
	if (HMAC(EVP_sha256(), s->secret, (int)s->secretlen, buf, len, mac,
	    &maclen) == NULL || maclen != PEER_MAC_LEN)
		fatalx("%s: HMAC failed", __func__);
	free(buf);
}
