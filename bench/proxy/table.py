"""Prints bench/proxy.sh's results as one table, with ratios to nginx and to the direct
connection, and checks keel-proxy against its targets.

Usage: table.py RESULTS.tsv HEADER.txt NOTES.txt [ROUNDS.tsv [C32.tsv]]
RESULTS.tsv rows: load, target, rps, p50, p90, p99 (µs), mean (µs, h2load only),
cpu (µs per request), rss (MiB), errors. ROUNDS.tsv rows: load, target, round, p99 (µs) of
each open-loop round (the RESULTS row pools them); C32.tsv the same with the CPU per request
(µs) of each closed-loop round at 32 connections.
"""

import sys

from rounds import print_rounds

ORDER = ["direct", "keel-proxy", "keel-policies", "nginx", "haproxy", "envoy", "relay"]


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def ratio(v, base):
    if v is None or base is None or base == 0:
        return "-"
    return f"{v / base:.2f}"


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def main():
    results, header, notes = sys.argv[1:4]
    rounds = sys.argv[4] if len(sys.argv) > 4 else None
    c32_rounds = sys.argv[5] if len(sys.argv) > 5 else None
    rows = []
    with open(results) as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if len(c) < 10:
                continue
            rows.append(
                {
                    "load": c[0],
                    "target": c[1],
                    "rps": num(c[2]),
                    "p50": num(c[3]),
                    "p90": num(c[4]),
                    "p99": num(c[5]),
                    "mean": num(c[6]),
                    "cpu": num(c[7]),
                    "rss": num(c[8]),
                    "errors": int(num(c[9]) or 0),
                }
            )
    loads = []
    for r in rows:
        if r["load"] not in loads:
            loads.append(r["load"])
    # The closed loops first, then HTTP/2, then the open loop, whatever order they ran in.
    rank = {"h1 c": 0, "h2 c": 1}
    loads.sort(key=lambda l: rank.get(l[:4], 2))
    by = {(r["load"], r["target"]): r for r in rows}

    with open(header) as f:
        print("".join("# " + l for l in f), end="")
    print("# each cell: value, then its ratio to nginx / to the direct connection (same load)")
    print("# CPU and RSS are the proxy's own (the direct row has no proxy); h2 rows: h2load gives")
    print("# only the mean latency, shown as 'avg'")
    cols = [
        ("load", 10),
        ("target", 14),
        ("req/s", 20),
        ("p50 µs", 21),
        ("p90 µs", 19),
        ("p99 µs", 19),
        ("CPU µs/req", 14),
        ("peak RSS MiB", 13),
        ("err", 4),
    ]
    line = "".join(name.ljust(w) for name, w in cols)
    print(line.rstrip())
    print("-" * len(line.rstrip()))
    for load in loads:
        targets = [t for t in ORDER if (load, t) in by] + sorted(
            t for (l, t) in by if l == load and t not in ORDER
        )
        ngx = by.get((load, "nginx"), {})
        dr = by.get((load, "direct"), {})
        for t in targets:
            r = by[(load, t)]

            def both(k, digits=0):
                v = r[k]
                if v is None:
                    return "-"
                return f"{fmt(v, digits)} {ratio(v, ngx.get(k))}/{ratio(v, dr.get(k))}"

            def vs_nginx(k, digits):
                v = r[k]
                if v is None:
                    return "-"
                return f"{fmt(v, digits)} {ratio(v, ngx.get(k))}"

            if r["p50"] is None and r["mean"] is not None:
                p50, p90, p99 = "avg " + both("mean"), "-", "-"
            else:
                p50, p90, p99 = both("p50"), both("p90"), both("p99")
            cells = [
                load,
                t,
                both("rps"),
                p50,
                p90,
                p99,
                vs_nginx("cpu", 1),
                vs_nginx("rss", 1),
                str(r["errors"]),
            ]
            print("".join(c.ljust(w) for c, (_, w) in zip(cells, cols)).rstrip())
        print()

    print("targets for keel-proxy (same run):")
    checks = []
    c32 = [l for l in loads if l.startswith("h1 c32")]
    rate = [l for l in loads if l.startswith("h1 ") and l.endswith("/s")]

    def get(load, t, k):
        return by.get((load, t), {}).get(k)

    def check(what, mine, theirs, limit, unit, earlier):
        if mine is None or limit is None:
            status = "NOT MEASURED"
        else:
            status = "MET" if mine <= limit else "MISSED"
        checks.append(status)
        print(
            f"  {what}: keel-proxy {fmt(mine, 1)} {unit}, target <= {theirs} "
            f"({fmt(limit, 1)} {unit}) -> {status}   [earlier on this machine: {earlier}]"
        )

    if c32:
        l = c32[0]
        check(
            f"CPU per request at {l}",
            get(l, "keel-proxy", "cpu"),
            "nginx",
            get(l, "nginx", "cpu"),
            "µs",
            "nginx ~23, haproxy ~25, envoy ~51 µs",
        )
    if rate:
        l = rate[0]
        check(
            f"p99 at {l}",
            get(l, "keel-proxy", "p99"),
            "nginx",
            get(l, "nginx", "p99"),
            "µs",
            "-",
        )
        relay, direct = get(l, "relay", "p99"), get(l, "direct", "p99")
        if relay is not None and direct is not None:

            def added(t):
                v = get(l, t, "p99")
                return None if v is None else v - direct

            print(
                f"  the floor: one plain TCP relay (HAProxy, mode tcp) adds {fmt(relay - direct)} µs"
                f" to the direct p99 [keel-proxy: {fmt(added('keel-proxy'))} µs; nginx: {fmt(added('nginx'))} µs]"
            )
        check(
            f"peak RSS at {l}",
            get(l, "keel-proxy", "rss"),
            "10 MiB",
            10.0,
            "MiB",
            "nginx ~17, envoy ~82 MiB",
        )
    # Issue 4: resilience policies that do not fire cost at most 10 % (same run).
    def within_10(what, load, k, unit):
        mine, base = get(load, "keel-policies", k), get(load, "keel-proxy", k)
        if mine is None or base is None:
            status = "NOT MEASURED"
        else:
            status = "MET" if mine <= base * 1.10 else "MISSED"
        print(
            f"  {what}: keel-policies {fmt(mine, 1)} {unit}, target <= 1.10 x keel-proxy "
            f"({fmt(None if base is None else base * 1.10, 1)} {unit}) -> {status}"
        )

    if c32:
        within_10(f"policies' CPU per request at {c32[0]}", c32[0], "cpu", "µs")
    if rate:
        within_10(f"policies' p99 at {rate[0]}", rate[0], "p99", "µs")
    def keel_at_most_nginx(by_target):
        if "keel-proxy" in by_target and "nginx" in by_target:
            return by_target["keel-proxy"] <= by_target["nginx"]
        return None

    order = ORDER + sorted({r["target"] for r in rows} - set(ORDER))
    if c32_rounds:
        print_rounds(
            c32_rounds,
            order,
            keel_at_most_nginx,
            "keel-proxy's CPU per request <= nginx's",
            kind="closed-loop",
            figure="CPU µs per request",
            digits=1,
        )
    if rounds:
        print_rounds(rounds, order, keel_at_most_nginx, "keel-proxy's p99 <= nginx's")
    with open(notes) as f:
        text = f.read().strip()
    if text:
        print("notes:")
        for n in text.splitlines():
            print("  " + n)


main()
