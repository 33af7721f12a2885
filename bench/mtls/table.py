"""Prints bench/mtls.sh's results as one table and checks the Keel pair against issue 6's
targets, each figure beside the peer's measured in the same run.

Usage: table.py RESULTS.tsv HEADER.txt NOTES.txt AUTHZ_RULES [ROUNDS.tsv]
RESULTS.tsv rows: load, target, rps, p50, p90, p99 (µs), CPU µs per request of the client
sidecar and of the server sidecar, peak RSS MiB of each, errors. ROUNDS.tsv rows: load,
target, round, p99 (µs) of each open-loop round (the RESULTS row pools them).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proxy"))
from rounds import print_rounds  # noqa: E402

ORDER = ["direct", "keel", "keel-authz", "nginx", "haproxy", "envoy", "relay"]
NAMES = {
    "direct": "direct",
    "keel": "keel pair",
    "keel-authz": "keel+authz",
    "nginx": "nginx pair",
    "haproxy": "haproxy pair",
    "envoy": "envoy pair",
    "relay": "tcp relays",
}


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def main():
    results, header, notes, rules = sys.argv[1:5]
    rounds = sys.argv[5] if len(sys.argv) > 5 else None
    rows = []
    with open(results) as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if len(c) < 11:
                continue
            r = {
                "load": c[0],
                "target": c[1],
                "rps": num(c[2]),
                "p50": num(c[3]),
                "p90": num(c[4]),
                "p99": num(c[5]),
                "cpu_c": num(c[6]),
                "cpu_s": num(c[7]),
                "rss_c": num(c[8]),
                "rss_s": num(c[9]),
                "errors": int(num(c[10]) or 0),
            }
            r["cpu"] = (
                None
                if r["cpu_c"] is None or r["cpu_s"] is None
                else r["cpu_c"] + r["cpu_s"]
            )
            rows.append(r)
    loads = []
    for r in rows:
        if r["load"] not in loads:
            loads.append(r["load"])
    by = {(r["load"], r["target"]): r for r in rows}

    with open(header) as f:
        print("".join("# " + l for l in f), end="")
    print("# CPU µs/req: each sidecar's utime+stime over the run divided by the requests")
    print("# completed (client sidecar / server sidecar / the pair); RSS: each one's peak")
    print(f"# keel+authz: the keel pair with an AuthorizationPolicy of {rules} rules on the")
    print("# server sidecar (the last one allows the request); new conn: every request a new")
    print("# connection to the client sidecar and a new mTLS connection between the sidecars")
    cols = [
        ("load", 14),
        ("target", 14),
        ("req/s", 9),
        ("p50 µs", 9),
        ("p90 µs", 9),
        ("p99 µs", 9),
        ("CPU µs/req client/server/pair", 31),
        ("RSS MiB client/server", 23),
        ("err", 4),
    ]
    line = "".join(name.ljust(w) for name, w in cols)
    print(line.rstrip())
    print("-" * len(line.rstrip()))
    for load in loads:
        targets = [t for t in ORDER if (load, t) in by] + sorted(
            t for (l, t) in by if l == load and t not in ORDER
        )
        for t in targets:
            r = by[(load, t)]
            if r["cpu"] is None:
                cpu, rss = "-", "-"
            else:
                cpu = f"{fmt(r['cpu_c'], 1)} / {fmt(r['cpu_s'], 1)} / {fmt(r['cpu'], 1)}"
                rss = f"{fmt(r['rss_c'], 1)} / {fmt(r['rss_s'], 1)}"
            cells = [
                load,
                NAMES.get(t, t),
                fmt(r["rps"]),
                fmt(r["p50"]),
                fmt(r["p90"]),
                fmt(r["p99"]),
                cpu,
                rss,
                str(r["errors"]),
            ]
            print("".join(c.ljust(w) for c, (_, w) in zip(cells, cols)).rstrip())
        print()

    def get(load, t, k):
        if load is None:
            return None
        return by.get((load, t), {}).get(k)

    def first(pred):
        return next((l for l in loads if pred(l)), None)

    rate = first(lambda l: l.startswith("h1 ") and l.endswith("/s"))
    closed = first(lambda l: l.startswith("h1 c"))
    fresh = first(lambda l: l.startswith("new conn"))

    def status(mine, limit):
        if mine is None or limit is None:
            return "NOT MEASURED"
        return "MET" if mine <= limit else "MISSED"

    print("targets for the keel pair (issue 6, same run):")
    kd = envd = None
    if rate:
        direct = get(rate, "direct", "p99")
        keel, envoy = get(rate, "keel", "p99"), get(rate, "envoy", "p99")
        nginx = get(rate, "nginx", "p99")
        kd = None if keel is None or direct is None else keel - direct
        envd = None if envoy is None or direct is None else envoy - direct
        ngd = None if nginx is None or direct is None else nginx - direct
        hap = get(rate, "haproxy", "p99")
        hpd = None if hap is None or direct is None else hap - direct
        print(
            f"  p99 added over direct at {rate}: keel pair {fmt(kd)} µs "
            f"({fmt(keel)} - {fmt(direct)}), target <= 100 µs -> {status(kd, 100.0)}"
            f"   [nginx pair: {fmt(ngd)} µs; haproxy pair: {fmt(hpd)} µs; envoy pair: {fmt(envd)} µs]"
        )
        relay = get(rate, "relay", "p99")
        if relay is not None and direct is not None:
            rel50 = get(rate, "relay", "p50")
            dir50 = get(rate, "direct", "p50")
            k50 = get(rate, "keel", "p50")
            print(
                f"  the floor: two plaintext TCP relays (HAProxy, mode tcp) add {fmt(relay - direct)} µs"
                f" at p99 and {fmt(None if rel50 is None or dir50 is None else rel50 - dir50)} µs at p50"
                f" [keel pair at p50: {fmt(None if k50 is None or dir50 is None else k50 - dir50)} µs]"
            )
    for load in [closed, rate]:
        if not load:
            continue
        keel, envoy = get(load, "keel", "cpu"), get(load, "envoy", "cpu")
        r = None if keel is None or not envoy else keel / envoy
        print(
            f"  pair CPU per request at {load}: keel {fmt(keel, 1)} µs / envoy {fmt(envoy, 1)} µs"
            f" = {fmt(r, 2)}, target <= 0.50 -> {status(r, 0.5)}"
            f"   [nginx pair: {fmt(get(load, 'nginx', 'cpu'), 1)} µs; "
            f"haproxy pair: {fmt(get(load, 'haproxy', 'cpu'), 1)} µs]"
        )

    if fresh:
        print(f"new connections ({fresh}: mTLS handshakes between the sidecars per second):")
        for t in ["keel", "nginx", "haproxy", "envoy"]:
            hs = get(fresh, t, "rps")
            if hs is None:
                continue
            cpu = get(fresh, t, "cpu")
            base = get(closed, t, "cpu")
            extra = None if cpu is None or base is None else cpu - base
            print(
                f"  {NAMES[t]}: {fmt(hs)} handshakes/s, CPU per new connection "
                f"{fmt(get(fresh, t, 'cpu_c'), 1)} client + {fmt(get(fresh, t, 'cpu_s'), 1)} server"
                f" = {fmt(cpu, 1)} µs ({fmt(extra, 1)} µs more than a keep-alive request at {closed})"
            )
        k, e = get(fresh, "keel", "rps"), get(fresh, "envoy", "rps")
        kc, ec = get(fresh, "keel", "cpu"), get(fresh, "envoy", "cpu")
        if k and e:
            print(f"  keel / envoy: {k / e:.2f}x the handshakes/s", end="")
            if kc and ec:
                print(f", {kc / ec:.2f}x the CPU per new connection", end="")
            print(f"   [direct with Connection: close: {fmt(get(fresh, 'direct', 'rps'))} conn/s]")

    print(f"AuthorizationPolicy with {rules} rules on the server sidecar (keel+authz vs keel):")
    for load in [closed, rate]:
        if not load:
            continue
        a, b = get(load, "keel-authz", "cpu_s"), get(load, "keel", "cpu_s")
        d = None if a is None or b is None else a - b
        pct = None if d is None or not b else 100 * d / b
        line = (
            f"  server sidecar CPU per request at {load}: {fmt(a, 1)} vs {fmt(b, 1)} µs "
            f"({'+' if d is not None and d >= 0 else ''}{fmt(d, 1)} µs, {fmt(pct, 0)} %)"
        )
        if load == rate:
            pa, pb = get(load, "keel-authz", "p99"), get(load, "keel", "p99")
            line += f"; p99 {fmt(pa)} vs {fmt(pb)} µs"
        print(line)

    if rounds:

        def keel_adds_at_most_100(p99):
            if "keel" in p99 and "direct" in p99:
                return p99["keel"] - p99["direct"] <= 100
            return None

        print_rounds(rounds, ORDER, keel_adds_at_most_100, "keel pair's p99 <= direct's + 100 µs")

    with open(notes) as f:
        text = f.read().strip()
    if text:
        print("notes:")
        for n in text.splitlines():
            print("  " + n)


main()
