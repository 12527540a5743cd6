# Helpers for the tests of deploy/keepalived.conf: find keepalived, and
# render the example for either machine of the pair.  Rendering changes
# only what an operator changes: on the second machine the lines marked
# "other machine: ..." become what the mark says; then interface names
# and addresses may be replaced.  Nothing else of the example is touched.

import os
import re
import shutil

TOP_SRCDIR = os.environ.get("TOP_SRCDIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLE = os.path.join(TOP_SRCDIR, "deploy", "keepalived.conf")

# The example's placeholders.
IFACE = "eth0"
VIP = "10.0.0.10"
MACHINE_ADDRS = ("10.0.0.11", "10.0.0.12")

_MARK = re.compile(r"#\s*other machine:\s*(\S.*?)\s*$")
_ADDR = re.compile(r"\b\d+\.\d+\.\d+\.\d+\b")


def find(prog, env=None):
    """prog's path: $env, else PATH, else /usr/sbin, /sbin; or None."""
    if env and os.environ.get(env):
        return os.environ[env]
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which(prog, path=path)


def render(machine=1, iface=None, addrs=None, example=EXAMPLE):
    """The example as text for machine 1 or 2, with eth0 replaced by
    iface and every address a in addrs (a dict) replaced by addrs[a].
    Only the part of a line before "#" is rewritten."""
    out = []
    marks = 0
    with open(example) as f:
        lines = f.read().split("\n")
    for line in lines:
        code, hash_, comment = line.partition("#")
        if code.strip() and hash_:
            m = _MARK.search(hash_ + comment)
            if m:
                marks += 1
                if machine == 2:
                    indent = code[:len(code) - len(code.lstrip())]
                    pad = code[len(code.rstrip()):]
                    code = indent + m.group(1) + pad
        if iface is not None:
            code = re.sub(r"\b%s\b" % re.escape(IFACE), iface, code)
        if addrs:
            code = _ADDR.sub(lambda a: addrs.get(a.group(0), a.group(0)),
                             code)
        out.append(code + hash_ + comment)
    if marks == 0:
        raise ValueError("%s: no \"other machine:\" marks" % example)
    return "\n".join(out)


def uncomment(text, starts):
    """text with the "#" removed in front of every line that, after its
    indentation and the "#", starts with one of starts."""
    out = []
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("#") and any(s[1:].startswith(x) for x in starts):
            line = line[:len(line) - len(s)] + s[1:]
        out.append(line)
    return "\n".join(out)


def comment_out(text, starts):
    """text with a "#" put in front of every line that, after its
    indentation, starts with one of starts."""
    out = []
    for line in text.split("\n"):
        s = line.lstrip()
        if any(s.startswith(x) for x in starts):
            line = line[:len(line) - len(s)] + "#" + s
        out.append(line)
    return "\n".join(out)
