#!/usr/bin/env python3
"""The hot-text linker script of keel-proxy (see crates/keel-proxy/build.rs for why).

  hot_text.py write CALLGRIND_OUT BINARY SCRIPT [PREVIOUS]
                                                   functions the profile ran -> SCRIPT, then
                                                   PREVIOUS's entries not among them
  hot_text.py check SCRIPT BINARY                  how much of SCRIPT matches BINARY

Functions are named by their mangled symbols. The legacy mangling ends in a hash
(`17h<16 hex digits>E`) that changes whenever Cargo's metadata for the crate changes (a
dependency update, another toolchain), so a name that identifies one function in the binary
is written with the hash as a wildcard and survives such changes. Generic functions share
their name across instantiations (`Arc<T>::drop_slow`, `RawTask::poll`): a wildcard would
pull in every instantiation, so those are written exactly and fall back to the ordinary
layout once their hashes change. The numbers LLVM gives same-named local copies after LTO
(`name.1234`) are wildcards too, and each entry also matches the `.text.unlikely.` and
`.text.hot.` sections LLVM uses for functions it deems cold or (in a profile-guided build,
bench/pgo.sh) hot.

A profile-guided build inlines differently, so some functions exist in only one of the two
builds. bench/hot-text.sh profiles the profile-guided build (what is deployed and measured)
and keeps the previous list's other entries after the new ones, so that the plain
`cargo build --release` keeps its layout too (a name that matches nothing costs nothing). Order: most instructions first, so the hottest code
shares the fewest pages.
"""

import collections
import fnmatch
import re
import subprocess
import sys

HASH = re.compile(r"17h[0-9a-f]{16}E$")
# LLVM numbers local functions that share a name after LTO (`name.1234`); the numbers move
# with every change to the code.
COPY = re.compile(r"\.\d+$")


def key(name):
    """What identifies a function across builds: its name without hash or copy number."""
    return HASH.sub("", COPY.sub("", name))


def text_symbols(binary):
    """Defined function symbols of BINARY and their sizes."""
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True,
                         text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            sizes[p[3]] = int(p[1], 16)
    return sizes


def executed(callgrind_out, binary):
    """Functions of BINARY that ran in the profile, with their instruction counts."""
    objs, fns = {}, {}
    ob = fn = None
    fn_ob = {}
    ir = collections.Counter()
    after_calls = False

    def name(table, s):
        m = re.match(r"\((\d+)\)(?: (.*))?", s)
        if not m:
            return s
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1))

    for line in open(callgrind_out, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("ob="):
            ob = name(objs, line[3:])
        elif line.startswith("cob="):
            name(objs, line[4:])
        elif line.startswith("fn="):
            fn = name(fns, line[3:])
            fn_ob.setdefault(fn, ob)
            after_calls = False
        elif line.startswith("cfn="):
            name(fns, line[4:])
        elif line.startswith("calls="):
            after_calls = True
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            if after_calls:
                # The line after calls= is the call's inclusive cost, not this function's.
                after_calls = False
                continue
            p = line.split()
            if len(p) >= 2 and fn:
                ir[fn] += int(p[1])
    counts = collections.Counter()
    ours = binary.split("/")[-1]
    for f, o in fn_ob.items():
        # Valgrind attributes code in the .text.hot section to object "???" (it expects
        # code in .text), so functions of a binary built with this script are known by name.
        if o and (o.endswith(ours) or o == "???"):
            # callgrind marks recursion levels as name'2.
            counts[re.sub(r"'\d+$", "", f)] += ir[f]
    return counts


def patterns(f, by_key):
    """Section-name patterns for function `f` (see the module comment)."""
    base = COPY.sub("", f)
    if HASH.search(base) and len({COPY.sub("", s) for s in by_key[key(f)]}) == 1:
        # One function by that name (perhaps in numbered copies): the hash is a wildcard.
        return [key(f) + "17h*"]
    # Generic instantiations, or no hash to drop (v0-mangled std, C): exact, any copy.
    return [base, base + ".*"]


def entries_of(script):
    """The entries of an existing SCRIPT: each a list of name patterns."""
    try:
        lines = open(script).read().splitlines()
    except OSError:
        return []
    return [[p for p in re.findall(r"\.text\.(\S+?)(?=[ )])", line)
             if not p.startswith(("unlikely.", "hot."))]
            for line in lines if line.startswith("    *(")]


def write(callgrind_out, binary, script, previous=None):
    sizes = text_symbols(binary)
    by_key = collections.defaultdict(list)
    for s in sizes:
        by_key[key(s)].append(s)
    ran = executed(callgrind_out, binary)
    lines, seen, total = [], set(), 0
    for f, _ in sorted(ran.items(), key=lambda kv: -kv[1]):
        if f not in sizes:
            continue
        entry = patterns(f, by_key)
        if entry[0] not in seen:
            seen.add(entry[0])
            lines.append(entry)
            total += sizes[f]
    kept = 0
    for entry in entries_of(previous) if previous else []:
        if entry and entry[0] not in seen:
            seen.add(entry[0])
            lines.append(entry)
            kept += 1
    with open(script, "w") as out:
        out.write(
            "/* keel-proxy's hot text: the functions a gateway runs (startup, HTTP/1.1 and\n"
            " * HTTP/2 proxying, metrics scrapes), placed together before the rest of .text so\n"
            " * they share as few 64 KiB fault-around windows as possible. GENERATED by\n"
            " * bench/hot-text.sh from a callgrind profile; see crates/keel-proxy/build.rs.\n"
            f" * {len(lines)} entries ({kept} kept from the previous list), {total // 1024} KiB. */\n"
            "SECTIONS {\n  .text.hot : {\n")
        for entry in lines:
            # LLVM puts functions it deems cold (#[cold], error paths) in .text.unlikely.*,
            # and with a profile (bench/pgo.sh) the ones the profile ran most in .text.hot.*.
            names = " ".join(f".text.{p} .text.unlikely.{p} .text.hot.{p}" for p in entry)
            out.write(f"    *({names})\n")
        out.write("  }\n}\nINSERT BEFORE .text;\n")
    print(f"{script}: {len(lines)} entries ({kept} kept from the previous list), "
          f"{total // 1024} KiB of code")


def check(script, binary):
    sizes = text_symbols(binary)
    by_key = collections.defaultdict(list)
    for s in sizes:
        by_key[key(s)].append(s)
    entries = entries_of(script)
    found = size = 0
    for entry in entries:
        candidates = by_key[key(entry[0].replace("17h*", "").replace(".*", ""))]
        hit = [s for s in candidates if any(fnmatch.fnmatchcase(s, p) for p in entry)]
        if hit:
            found += 1
            size += sum(sizes[s] for s in hit)
    print(f"{found} of {len(entries)} hot-text entries match {binary} "
          f"({size // 1024} KiB placed first)")
    return found, len(entries)


if __name__ == "__main__":
    if len(sys.argv) in (5, 6) and sys.argv[1] == "write":
        write(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
