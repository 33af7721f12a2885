"""The open-loop rounds of bench/proxy.sh and bench/mtls.sh: every target's p99 in each
round, printed under the table beside the pooled rows, so a reader sees how much one round
differs from the next and how often a comparison holds round by round."""


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


def print_rounds(path, order, holds, what):
    """Prints each load's per-round p99 for the targets in `order`, then in how many rounds
    holds(p99 by target in that round) is true, described by `what`."""
    for load, by_target in read_rounds(path).items():
        n = max((max(r) for r in by_target.values() if r), default=0)
        print(f"open-loop rounds at {load} (p99 µs of each round, in order; the rows pool them):")
        for t in [t for t in order if t in by_target]:
            cells = " ".join(
                f"{by_target[t][i]:.0f}" if i in by_target[t] else "-" for i in range(1, n + 1)
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
