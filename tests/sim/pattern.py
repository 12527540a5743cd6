# Copyright (c) 2026 The vspcd authors
#
# Permission to use, copy, modify, and distribute this software for any
# purpose with or without fee is hereby granted, provided that the above
# copyright notice and this permission notice appear in all copies.
#
# THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
# WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
# MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
# ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
# WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
# ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
# OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
"""Recompute and verify esxisim's guest output patterns.

Both formats are defined in tests/sim/README.  A VM's pattern is one
endless byte stream; byte offset 0 is the first byte the VM ever sent,
and the stream continues across reconnections and vMotions.

    import pattern
    r = pattern.check(received, name="vm-00000")            # text
    r = pattern.check(received, index=3, mode="binary", start=4096)
    assert r["ok"], r

check() returns a dict:
    ok          True if every byte is in place (no loss, dup, reorder,
                corruption; and, if end= is given, nothing missing at the
                tail)
    received    len(received)
    matched     bytes that were found somewhere in the expected stream
    missing     offsets in [start, next_offset) never received
    duplicated  bytes whose offset had been received already
    reordered   first-time bytes that arrived after a later offset
    corrupt     bytes that match no place of the stream
    next_offset one past the highest offset received (start if none)
    tail_missing  end - next_offset when end is given, else 0
"""

MASK = (1 << 64) - 1
TEXT_MOD = 10 ** 10

# Binary byte map: raw values 0-7 -> 0xff, 8-11 -> 0x00, 12-13 -> 0x11,
# 14-15 -> 0x0d, anything else unchanged.
_MAP = bytes([0xff] * 8 + [0x00] * 4 + [0x11] * 2 + [0x0d] * 2 +
             list(range(16, 256)))


def _word(index, k):
    z = (index * 0xd1b54a32d192ed03 + (k + 1) * 0x9e3779b97f4a7c15) & MASK
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & MASK
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & MASK
    return z ^ (z >> 31)


def text_line(name, k):
    """Line k of VM name's text pattern, as bytes."""
    if isinstance(name, str):
        name = name.encode()
    return b"%s %010d\r\n" % (name, k % TEXT_MOD)


def expected(start, length, mode="text", name=None, index=None):
    """The pattern bytes at [start, start + length)."""
    if length <= 0:
        return b""
    if mode == "binary":
        if index is None:
            raise ValueError("binary pattern needs index")
        k0, k1 = start >> 3, (start + length + 7) >> 3
        raw = b"".join(_word(index, k).to_bytes(8, "little")
                       for k in range(k0, k1))
        raw = raw.translate(_MAP)
        off = start - (k0 << 3)
        return raw[off:off + length]
    if name is None:
        raise ValueError("text pattern needs name")
    if isinstance(name, str):
        name = name.encode()
    llen = len(name) + 13
    k0, k1 = start // llen, (start + length + llen - 1) // llen
    raw = b"".join(text_line(name, k) for k in range(k0, k1))
    off = start - k0 * llen
    return raw[off:off + length]


def _common(a, ai, b, bi):
    """Length of the common prefix of a[ai:] and b[bi:]."""
    n = min(len(a) - ai, len(b) - bi)
    lo = 0
    step = 4096
    while lo < n:
        m = min(step, n - lo)
        if a[ai + lo:ai + lo + m] == b[bi + lo:bi + lo + m]:
            lo += m
            continue
        if m == 1:
            break
        step = max(1, m // 2)
    return lo


def check(received, name=None, index=None, mode="text", start=0,
          end=None, slack=1 << 16):
    """Compare received bytes against the VM's pattern from start.

    mode is "text" (needs name) or "binary" (needs index).  end, if
    given, is the offset one past the last byte the sender reports it
    sent (esxisim's `stats I` off=); bytes between the last one received
    and end count as tail_missing.  slack bounds how far past the
    received length a skip is searched for.
    """
    received = bytes(received)
    rlen = len(received)
    span = rlen + slack
    if end is not None:
        span = max(span, end - start)
    exp = expected(start, span, mode=mode, name=name, index=index)
    if mode == "binary":
        win = 32
    else:
        nlen = len(name.encode() if isinstance(name, str) else name)
        win = 2 * (nlen + 13)
    seen = bytearray(len(exp))
    res = dict(received=rlen, matched=0, missing=0, duplicated=0,
               reordered=0, corrupt=0)
    pos = 0           # In received.
    eoff = 0          # Expected offset (relative) of received[pos].
    maxend = 0        # One past the highest relative offset received.
    while pos < rlen:
        n = _common(received, pos, exp, eoff) if eoff < len(exp) else 0
        if n > 0:
            dup = seen[eoff:eoff + n].count(1)
            res["duplicated"] += dup
            if eoff < maxend:
                lim = min(eoff + n, maxend)
                res["reordered"] += (lim - eoff) - \
                    seen[eoff:lim].count(1)
            seen[eoff:eoff + n] = b"\x01" * n
            res["matched"] += n
            maxend = max(maxend, eoff + n)
            pos += n
            eoff += n
            continue
        # Mismatch: find where received[pos:] continues in the stream.
        w = received[pos:pos + win]
        found = exp.find(w, eoff + 1) if len(w) >= min(win, 8) else -1
        if found == -1:
            found = exp.find(w)
        if found == -1 or len(w) < min(win, 8):
            if len(w) < min(win, 8):
                # A short tail: try it at the expected place only.
                found = exp.find(w, eoff) if w else -1
                if found == eoff:
                    continue
            res["corrupt"] += 1
            pos += 1
            continue
        eoff = found
    res["next_offset"] = start + maxend
    res["missing"] = maxend - seen[:maxend].count(1)
    res["tail_missing"] = 0
    if end is not None and end > start + maxend:
        res["tail_missing"] = end - (start + maxend)
    res["ok"] = (res["missing"] == 0 and res["duplicated"] == 0 and
                 res["reordered"] == 0 and res["corrupt"] == 0 and
                 res["tail_missing"] == 0)
    return res


def _selftest():
    import random
    s = expected(0, 5000, name="vm-00000")
    assert s.startswith(b"vm-00000 0000000000\r\nvm-00000 0000000001\r\n")
    assert check(s, name="vm-00000")["ok"]
    assert expected(30, 40, name="vm-00000") == s[30:70]
    r = check(s[:100] + s[200:], name="vm-00000")
    assert r["missing"] == 100 and not r["ok"], r
    r = check(s[:300] + s[250:], name="vm-00000")
    assert r["duplicated"] == 50, r
    r = check(s[:100] + s[200:300] + s[100:200] + s[300:], name="vm-00000")
    assert r["reordered"] == 100 and r["missing"] == 0, r
    b = expected(0, 100000, mode="binary", index=7)
    for x in (0x00, 0x11, 0xff, 0x0d):
        assert x in b
    assert expected(13, 77, mode="binary", index=7) == b[13:90]
    assert check(b[1000:], mode="binary", index=7, start=1000)["ok"]
    r = check(b[:500] + b[600:], mode="binary", index=7, end=100000)
    assert r["missing"] == 100 and r["tail_missing"] == 0, r
    r = check(b[:500], mode="binary", index=7, end=600)
    assert r["tail_missing"] == 100, r
    bad = bytearray(b[:2000])
    bad[1000] ^= 0x55
    r = check(bytes(bad), mode="binary", index=7)
    assert r["corrupt"] >= 1 and r["missing"] <= 1, r
    random.seed(1)
    assert check(b"", mode="binary", index=1)["ok"]
    print("pattern selftest ok")


if __name__ == "__main__":
    _selftest()
