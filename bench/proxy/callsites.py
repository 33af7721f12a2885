"""Where a function is called from, per request, to the source line: for finding the copies
(memcpy) and allocations on the request path. Reads a callgrind profile made with
`--dump-instr=yes` (bench/proxy-instructions.sh with IR_DUMP_INSTR=1) and resolves each call
site with addr2line through the binary's line tables (inlined frames: the innermost line).

Usage: python3 bench/proxy/callsites.py PROFILE BINARY REQUESTS [CALLEE] [TOP]
  CALLEE: a substring of the called function's name (default __memcpy_avx_unaligned_erms)
Prints, per call site: calls per request, instructions spent in the callee per call, and the
line and function the call is in.
"""

import collections
import re
import subprocess
import sys


def parse_pos(tok, prev):
    if tok == "*":
        return prev
    if tok[0] in "+-":
        return prev + int(tok, 0)
    return int(tok, 0)


def sites(profile, callee):
    names = {}

    def name(s):
        m = re.match(r"\((\d+)\)(?: (.*))?", s)
        if not m:
            return s
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), "?")

    calls, cost = collections.Counter(), collections.Counter()
    fn = cfn = None
    instr = 0
    pending = None
    with open(profile) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("fn="):
                fn = name(line[3:])
            elif line.startswith("cfn="):
                cfn = name(line[4:])
            elif line.startswith("calls="):
                pending = int(line[6:].split()[0])
            elif line[0] in "0123456789+-*":
                toks = line.split()
                instr = parse_pos(toks[0], instr)
                if pending is not None:
                    if cfn and callee in cfn:
                        calls[(fn, instr)] += pending
                        cost[(fn, instr)] += int(toks[-1])
                    pending = None
    return calls, cost


def load_bias(profile, binary):
    """Valgrind maps a PIE at some base: the difference between a function's address in the
    profile and in the binary's symbol table."""
    syms = {}
    out = subprocess.run(["nm", "-C", binary], capture_output=True, text=True).stdout
    for line in out.splitlines():
        p = line.split(" ", 2)
        if len(p) == 3 and p[0]:
            syms.setdefault(p[2], int(p[0], 16))
    with open(profile) as f:
        text = f.read()
    # A function of the proxy's own (a libc name would give libc's base).
    for m in re.finditer(r"^cfn=\(\d+\) (keel_proxy::.+)\ncalls=\d+ (0x[0-9a-f]+)", text, re.M):
        sym, addr = m.group(1), int(m.group(2), 16)
        if sym in syms:
            return addr - syms[sym]
    return 0


def main():
    profile, binary, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
    callee = sys.argv[4] if len(sys.argv) > 4 else "__memcpy_avx_unaligned_erms"
    top = int(sys.argv[5]) if len(sys.argv) > 5 else 60
    calls, cost = sites(profile, callee)
    bias = load_bias(profile, binary)
    chosen = calls.most_common(top)
    # Sites in other objects (libc) fall outside the binary: not resolved.
    addrs = [hex(max(a - bias, 0)) for (_, a), _ in chosen]
    lines = subprocess.run(
        ["addr2line", "-e", binary, "-f", "-C", *addrs], capture_output=True, text=True
    ).stdout.splitlines()
    total = sum(calls.values()) / requests
    print(f"{callee}: {total:.1f} calls per request from {len(calls)} sites; the top {len(chosen)}:")
    print("calls/req  instr/call  where")
    for i, ((fn, _), n) in enumerate(chosen):
        where = lines[2 * i + 1] if 2 * i + 1 < len(lines) else "?"
        where = re.sub(r"^.*/(crates|library|src\.crates\.io[^/]*)/", "", where)
        print(f"{n / requests:9.2f}  {cost[(fn, _)] / n:10.1f}  {where}  [{fn[:60]}]")


if __name__ == "__main__":
    main()
