"""The rounds of bench/proxy.sh and bench/mtls.sh: every target's p99 in each open-loop round
(and bench/proxy.sh's CPU per request in each closed-loop round at 32 connections), printed
under the table beside the pooled rows, so a reader sees how much one round differs from the
next and how often a comparison holds round by round.

`python3 rounds.py pool-wrk FILE CLK_TCK` pools bench/proxy.sh's closed-loop rounds: FILE's
rows are CPU ticks, requests, peak RSS (KiB), req/s, p50, p90, p99 (µs) and errors of one
round; it prints requests, CPU µs per request, peak RSS (MiB), mean req/s, the rounds'
median p50, p90 and p99, and errors ("-" where there is nothing to say).
"""

import statistics
import sys


def read_rounds(path):
    """{load: {target: {round: p99}}} from ROUNDS.tsv rows: load, target, round, p99 (µs)."""
    rounds = {}
    with open(path) as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if len(c) < 4:
                continue
            try:
                rounds.setdefault(c[0], {}).setdefault(c[1], {})[int(c[2])] = float(c[3])
            except ValueError:
                continue
    return rounds


def print_rounds(path, order, holds, what, kind="open-loop", figure="p99 µs", digits=0):
    """Prints each load's per-round figure (`figure`, p99 by default) for the targets in
    `order`, then in how many rounds holds(figure by target in that round) is true, described
    by `what`."""
    for load, by_target in read_rounds(path).items():
        n = max((max(r) for r in by_target.values() if r), default=0)
        print(f"{kind} rounds at {load} ({figure} of each round, in order; the rows pool them):")
        for t in [t for t in order if t in by_target]:
            cells = " ".join(
                f"{by_target[t][i]:.{digits}f}" if i in by_target[t] else "-"
                for i in range(1, n + 1)
            )
            print(f"  {t:<14}{cells}")
        results = []
        for i in range(1, n + 1):
            got = {t: r[i] for t, r in by_target.items() if i in r}
            verdict = holds(got)
            if verdict is not None:
                results.append(verdict)
        if results:
            print(f"  {what}: in {sum(results)} of {len(results)} rounds")


def pool_wrk(path, clk_tck):
    """The pooled figures of one target's closed-loop rounds (see the module's doc)."""
    rows = [line.split("\t") for line in open(path).read().splitlines() if line]

    def column(i):
        out = []
        for r in rows:
            try:
                out.append(float(r[i]))
            except (IndexError, ValueError):
                pass
        return out

    def median(i):
        c = column(i)
        return f"{statistics.median(c):.0f}" if c else "-"

    reqs = sum(column(1))
    ticks, peak, rps = column(0), column(2), column(3)
    cpu = f"{sum(ticks) / clk_tck * 1e6 / reqs:.2f}" if reqs and ticks else "-"
    rss = f"{max(peak) / 1024:.1f}" if peak and max(peak) > 0 else "-"
    mean_rps = f"{statistics.mean(rps):.2f}" if rps else "-"
    return [
        f"{reqs:.0f}", cpu, rss, mean_rps, median(4), median(5), median(6),
        f"{sum(column(7)):.0f}",
    ]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "pool-wrk":
        print(" ".join(pool_wrk(sys.argv[2], float(sys.argv[3]))))
    else:
        sys.exit("usage: rounds.py pool-wrk FILE CLK_TCK")
