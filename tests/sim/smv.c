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
 * vMotion as the fake ESXi host plays it: BEGIN on the source, GOAHEAD
 * or NOTNOW, a destination connection that PEERs with seq || secret,
 * PEER-OK, then source FIN and COMPLETE in the chosen order; and the
 * failure variants (no-dest, bad-secret, dest-drop, double-begin,
 * replay, timeout).  A struct smv exists only while a vMotion runs; the
 * guest (the VM's pattern stream) is paused from BEGIN to the end.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "vspcd.h"
#include "esxisim.h"

static const char *smv_variants[MVV_MAX] = {
	"ok", "no-dest", "bad-secret", "dest-drop", "double-begin", "replay",
	"timeout"
};

static const char *smv_orders[MVO_MAX] = {
	"fin-first", "complete-first", "simultaneous"
};

/*
 * vMotion.
 */

static void
smv_timer_set(struct smv *mv, u_int ms)
{
	struct timeval	tv;

	evtimer_add(mv->timer, ms_tv(&tv, ms));
}

/* Send ABORT on the source if it is still there. */
static void
smv_send_abort(struct smv *mv)
{
	struct sconn	*src = mv->vm->conn;

	if (src == NULL)
		return;
	sc_vmw(src, VMW_VMOTION_ABORT, NULL, 0);
	ev_print("abort %u", mv->vm->idx);
}

/* End the vMotion: report, free, let the guest run again. */
void
smv_finish(struct smv *mv, int ok, const char *detail)
{
	struct svm	*vm = mv->vm;
	struct sconn	*dst = mv->dst;

	vm->mv = NULL;
	mv->dst = NULL;
	if (dst != NULL && dst != vm->conn)
		sc_close(dst, "vmotion-cleanup");
	if (ok) {
		sim_mv_ok++;
		sim_lat_add(LAT_VMOTION, now_us() - mv->tbegin);
	} else
		sim_mv_fail++;
	if (sim_quiet < 2 || !ok)
		ev_print("vmotion-done %u %s %s %s %" PRIu64, vm->idx,
		    smv_variants[mv->variant], ok ? "ok" : "fail", detail,
		    now_us() - mv->tbegin);
	event_free(mv->timer);
	free(mv);
	svm_resume(vm);
}

/*
 * The vMotion failed (or a failure variant got what it expected): drop
 * the destination, ABORT on the source if it had GOAHEAD (after the
 * gap), resume.
 */
static void
smv_fail(struct smv *mv, int ok, const char *detail)
{
	struct sconn	*dst = mv->dst;

	mv->dst = NULL;
	if (dst != NULL && dst != mv->vm->conn)
		sc_close(dst, "vmotion-failed");
	if (!(mv->flags & MV_GOAHEAD) || mv->vm->conn == NULL) {
		smv_finish(mv, ok, mv->vm->conn == NULL && (mv->flags &
		    MV_GOAHEAD) ? "source-closed" : detail);
		return;
	}
	if (mv->gap == 0 || dst == NULL) {
		smv_send_abort(mv);
		smv_finish(mv, ok, detail);
		return;
	}
	mv->state = MVS_ABORTING;
	mv->detail = detail;
	if (ok)
		mv->flags |= MV_OK;
	smv_timer_set(mv, mv->gap);
}

static void
smv_begin(struct smv *mv, const u_char *seq)
{
	sc_vmw(mv->vm->conn, VMW_VMOTION_BEGIN, seq, mv->seqlen);
	if (sim_quiet < 2)
		ev_print("begin %u %s", mv->vm->idx, hex(seq, mv->seqlen));
}

static void
smv_connect_dst(struct smv *mv)
{
	struct sconn	*c;

	mv->state = MVS_PEEROK;
	c = sc_connect(mv->vm, ROLE_DST, &mv->dest, mv->destlen);
	if (c == NULL || (c->flags & SC_DEAD)) {
		smv_fail(mv, 0, "dest-connect-failed");
		return;
	}
	mv->dst = c;
	smv_timer_set(mv, mv->timeout);
}

/* Both halves of the switch are done: the destination is the VM now. */
static void
smv_switched(struct smv *mv)
{
	struct svm	*vm = mv->vm;
	struct sconn	*dst = mv->dst;

	mv->dst = NULL;
	dst->role = ROLE_SRC;	/* It is the VM's connection now. */
	vm->conn = dst;
	vm->flags |= VM_READY;
	free(vm->token);
	vm->token = xmalloc(mv->keylen);
	memcpy(vm->token, mv->key, mv->keylen);
	vm->tokenlen = mv->keylen;
	if (mv->flags & MV_LOAD)
		vm->node = mv->destidx;
	smv_finish(mv, 1, "switched");
}

static void
smv_send_complete(struct smv *mv)
{
	sc_vmw(mv->dst, VMW_VMOTION_COMPLETE, mv->seq, mv->seqlen);
	if (sim_quiet < 2)
		ev_print("complete %u", mv->vm->idx);
}

static void
smv_close_src(struct smv *mv)
{
	struct svm	*vm = mv->vm;
	struct sconn	*src = vm->conn;

	if (src == NULL)
		return;
	vm->conn = NULL;	/* Not a loss of the VM: no src-closed. */
	vm->flags &= ~VM_READY;
	sc_close(src, "vmotion");
}

static void
smv_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smv	*mv = arg;
	int		 ok;

	switch (mv->state) {
	case MVS_ANSWER:
		/* No answer to BEGIN: the source resumes, no ABORT. */
		smv_finish(mv, mv->variant == MVV_TIMEOUT,
		    "no-answer-to-begin");
		break;
	case MVS_NOTNOW2:
		smv_fail(mv, 0, "no-answer-to-second-begin");
		break;
	case MVS_DELAY:
		if (mv->variant == MVV_NODEST) {
			smv_send_abort(mv);
			smv_finish(mv, 1, "aborted");
		} else
			smv_connect_dst(mv);
		break;
	case MVS_PEEROK:
		ok = mv->variant == MVV_BADSECRET || mv->variant == MVV_REPLAY;
		smv_fail(mv, ok, "no-peerok");
		break;
	case MVS_SWITCH:
		if (mv->order == MVO_COMPLETEFIRST)
			smv_close_src(mv);
		else
			smv_send_complete(mv);
		smv_switched(mv);
		break;
	case MVS_ABORTING:
		smv_send_abort(mv);
		smv_finish(mv, (mv->flags & MV_OK) != 0, mv->detail);
		break;
	}
}

/* The source got VMOTION-GOAHEAD (seq || secret). */
void
smv_on_goahead(struct smv *mv, const u_char *p, size_t len)
{
	struct svm	*vm = mv->vm;
	uint64_t	 us = now_us() - mv->tbegin;
	const u_char	*seq;

	seq = mv->state == MVS_NOTNOW2 ? mv->seq2 : mv->seq;
	if (len < mv->seqlen || memcmp(p, seq, mv->seqlen) != 0) {
		ev_print("goahead %u %s - %" PRIu64, vm->idx, hex(p, len), us);
		if (mv->state == MVS_ANSWER || mv->state == MVS_NOTNOW2) {
			mv->flags |= MV_GOAHEAD;
			smv_fail(mv, 0, "goahead-bad-seq");
		}
		return;
	}
	if (sim_quiet < 2)
		ev_print("goahead %u %s %s %" PRIu64, vm->idx,
		    hex(p, mv->seqlen), len > mv->seqlen ?
		    hex(p + mv->seqlen, len - mv->seqlen) : "-", us);
	if (mv->state == MVS_ANSWER)
		sim_lat_add(LAT_GOAHEAD, us);
	if (mv->state == MVS_NOTNOW2) {
		smv_fail(mv, 0, "goahead-for-second-begin");
		return;
	}
	if (mv->state != MVS_ANSWER) {
		ev_print("error %u late-goahead", vm->idx);
		return;
	}
	mv->flags |= MV_GOAHEAD;
	if (len > sizeof mv->key)
		len = sizeof mv->key;
	memcpy(mv->key, p, len);
	mv->keylen = len;
	if (mv->variant == MVV_TIMEOUT) {
		smv_fail(mv, 0, "answered");
		return;
	}
	if (mv->variant == MVV_BADSECRET) {
		if (mv->keylen > mv->seqlen)
			mv->key[mv->seqlen] ^= 0x5a;
		else
			mv->key[mv->keylen++] = 0x5a;
	}
	if (mv->variant == MVV_DOUBLEBEGIN) {
		memcpy(mv->seq2, mv->seq, mv->seqlen);
		mv->seq2[mv->seqlen - 1] ^= 0x01;
		mv->state = MVS_NOTNOW2;
		smv_begin(mv, mv->seq2);
		smv_timer_set(mv, mv->timeout);
		return;
	}
	mv->state = MVS_DELAY;
	if (mv->variant != MVV_NODEST && mv->delay == 0) {
		evtimer_del(mv->timer);
		smv_connect_dst(mv);
	} else
		smv_timer_set(mv, mv->delay);
}

/* The source got VMOTION-NOTNOW. */
void
smv_on_notnow(struct smv *mv, const u_char *p, size_t len)
{
	struct svm	*vm = mv->vm;

	ev_print("notnow %u %s %" PRIu64, vm->idx, hex(p, len),
	    now_us() - mv->tbegin);
	if (mv->state == MVS_NOTNOW2) {
		if (len < mv->seqlen || memcmp(p, mv->seq2, mv->seqlen) != 0) {
			smv_fail(mv, 0, "notnow-bad-seq");
			return;
		}
		/* As expected; carry on with the first vMotion. */
		mv->state = MVS_DELAY;
		if (mv->delay == 0) {
			evtimer_del(mv->timer);
			smv_connect_dst(mv);
		} else
			smv_timer_set(mv, mv->delay);
		return;
	}
	if (mv->state != MVS_ANSWER) {
		ev_print("error %u late-notnow", vm->idx);
		return;
	}
	/* Refused: the source just carries on (capture 21.91 s). */
	if (len < mv->seqlen || memcmp(p, mv->seq, mv->seqlen) != 0)
		smv_finish(mv, 0, "notnow-bad-seq");
	else
		smv_finish(mv, 0, "notnow");
}

/* The destination got VMOTION-PEER-OK: switch over. */
void
smv_on_peerok(struct smv *mv, const u_char *p, size_t len)
{
	struct svm	*vm = mv->vm;
	uint64_t	 us = now_us() - mv->tpeer;
	int		 good;

	if (sim_quiet < 2)
		ev_print("peerok %u %s %" PRIu64, vm->idx, hex(p, len), us);
	if (mv->state != MVS_PEEROK) {
		ev_print("error %u late-peerok", vm->idx);
		return;
	}
	evtimer_del(mv->timer);
	sim_lat_add(LAT_PEEROK, us);
	good = (len == mv->seqlen && memcmp(p, mv->seq, len) == 0) ||
	    (len == mv->keylen && memcmp(p, mv->key, len) == 0);
	switch (mv->variant) {
	case MVV_BADSECRET:
		smv_fail(mv, 0, "peerok-for-bad-secret");
		return;
	case MVV_REPLAY:
		smv_fail(mv, 0, "peerok-for-replay");
		return;
	case MVV_DESTDROP:
		smv_fail(mv, good, good ? "dropped" : "peerok-bad-payload");
		return;
	}
	if (!good) {
		smv_fail(mv, 0, "peerok-bad-payload");
		return;
	}
	switch (mv->order) {
	case MVO_SIMULTANEOUS:
		smv_close_src(mv);
		smv_send_complete(mv);
		smv_switched(mv);
		return;
	case MVO_FINFIRST:
		smv_close_src(mv);
		if (mv->gap == 0) {
			smv_send_complete(mv);
			smv_switched(mv);
			return;
		}
		break;
	case MVO_COMPLETEFIRST:
		smv_send_complete(mv);
		if (mv->gap == 0) {
			smv_close_src(mv);
			smv_switched(mv);
			return;
		}
		break;
	}
	mv->state = MVS_SWITCH;
	smv_timer_set(mv, mv->gap);
}

/* The destination connection went away (or its PEER was refused). */
void
smv_on_dst_closed(struct smv *mv, const char *reason)
{
	int	ok;

	mv->dst = NULL;
	switch (mv->state) {
	case MVS_PEEROK:
		evtimer_del(mv->timer);
		ok = mv->variant == MVV_BADSECRET || mv->variant == MVV_REPLAY;
		smv_fail(mv, ok, strcmp(reason, "peer-refused") == 0 ?
		    "peer-refused" : "dest-closed");
		break;
	case MVS_SWITCH:
		evtimer_del(mv->timer);
		smv_finish(mv, 0, "dest-closed-in-switch");
		break;
	default:
		break;
	}
}

/* The source connection went away during the vMotion. */
void
smv_on_src_closed(struct smv *mv)
{
	/* Before GOAHEAD the vMotion cannot go on. */
	if (mv->state == MVS_ANSWER || mv->state == MVS_NOTNOW2 ||
	    (mv->state == MVS_DELAY && mv->variant == MVV_NODEST) ||
	    mv->state == MVS_ABORTING) {
		evtimer_del(mv->timer);
		smv_fail(mv, 0, "source-closed");
	}
}

/* The vmotion command. */
void
smv_start(struct svm *vm, int argc, char **argv)
{
	struct smv	*mv;
	ssize_t		 n;
	int		 i, j, gapset = 0, delayset = 0;

	if (vm->mv != NULL) {
		ev_print("error %u vmotion-in-progress", vm->idx);
		return;
	}
	mv = xcalloc(1, sizeof *mv);
	mv->vm = vm;
	mv->timeout = 5000;
	mv->gap = 10;
	memcpy(&mv->dest, sim_destlen ? &sim_dest : &sim_server,
	    sizeof mv->dest);
	mv->destlen = sim_destlen ? sim_destlen : sim_serverlen;
	RAND_bytes(mv->seq, 4);
	mv->seqlen = 4;
	for (i = 0; i < argc; i++) {
		for (j = 0; j < MVV_MAX; j++)
			if (strcmp(argv[i], smv_variants[j]) == 0)
				break;
		if (j < MVV_MAX) {
			mv->variant = j;
			continue;
		}
		for (j = 0; j < MVO_MAX; j++)
			if (strcmp(argv[i], smv_orders[j]) == 0)
				break;
		if (j < MVO_MAX) {
			mv->order = j;
			continue;
		}
		if (strncmp(argv[i], "dest=", 5) == 0) {
			if (parse_addr(argv[i] + 5, &mv->dest,
			    &mv->destlen) == -1)
				goto bad;
		} else if (strncmp(argv[i], "seq=", 4) == 0) {
			n = unhex(argv[i] + 4, mv->seq, sizeof mv->seq);
			if (n <= 0)
				goto bad;
			mv->seqlen = n;
		} else if (strncmp(argv[i], "timeout=", 8) == 0)
			mv->timeout = strtoul(argv[i] + 8, NULL, 10);
		else if (strncmp(argv[i], "delay=", 6) == 0) {
			mv->delay = strtoul(argv[i] + 6, NULL, 10);
			delayset = 1;
		} else if (strncmp(argv[i], "gap=", 4) == 0) {
			mv->gap = strtoul(argv[i] + 4, NULL, 10);
			gapset = 1;
		} else
			goto bad;
	}
	if (mv->variant == MVV_NODEST && !delayset)
		mv->delay = 1000;	/* As in the capture. */
	if (mv->order == MVO_SIMULTANEOUS && !gapset)
		mv->gap = 0;
	mv->timer = evtimer_new(sim_base, smv_timer, mv);
	mv->tbegin = now_us();
	vm->mv = mv;
	if (mv->variant == MVV_REPLAY) {
		if (vm->token == NULL) {
			vm->mv = NULL;
			event_free(mv->timer);
			free(mv);
			ev_print("error %u no-previous-vmotion", vm->idx);
			return;
		}
		memcpy(mv->key, vm->token, vm->tokenlen);
		mv->keylen = vm->tokenlen;
		mv->seqlen = vm->tokenlen < 4 ? vm->tokenlen : 4;
		memcpy(mv->seq, vm->token, mv->seqlen);
		smv_connect_dst(mv);
		return;
	}
	if (vm->conn == NULL || !(vm->flags & VM_READY)) {
		vm->mv = NULL;
		event_free(mv->timer);
		free(mv);
		ev_print("error %u not-ready", vm->idx);
		return;
	}
	/* The guest is stunned: no output after BEGIN. */
	vm->flags |= VM_PAUSED;
	mv->state = MVS_ANSWER;
	smv_begin(mv, mv->seq);
	smv_timer_set(mv, mv->timeout);
	return;
bad:
	free(mv);
	ev_print("error %u bad-vmotion-argument %s", vm->idx, argv[i]);
}

/*
 * A load-mode vMotion (--vmotion-rate): variant ok, the real ESXi order
 * (source FIN and COMPLETE in the same turn), to sim_dests[destidx].
 * Events are left out with -qq; the lat command reports the times.
 * Return -1 if the VM cannot move now.
 */
int
smv_start_load(struct svm *vm, u_int destidx)
{
	struct smv	*mv;

	if (vm->mv != NULL || vm->conn == NULL || !(vm->flags & VM_READY) ||
	    destidx >= sim_ndests)
		return (-1);
	mv = xcalloc(1, sizeof *mv);
	mv->vm = vm;
	mv->flags = MV_LOAD;
	mv->timeout = 5000;
	mv->gap = 0;
	mv->order = MVO_FINFIRST;
	mv->destidx = destidx;
	memcpy(&mv->dest, &sim_dests[destidx], sizeof mv->dest);
	mv->destlen = sim_destlens[destidx];
	RAND_bytes(mv->seq, 4);
	mv->seqlen = 4;
	mv->timer = evtimer_new(sim_base, smv_timer, mv);
	mv->tbegin = now_us();
	vm->mv = mv;
	vm->flags |= VM_PAUSED;
	mv->state = MVS_ANSWER;
	smv_begin(mv, mv->seq);
	smv_timer_set(mv, mv->timeout);
	return (0);
}
