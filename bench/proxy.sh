#!/usr/bin/env bash
# keel-proxy against nginx, HAProxy and Envoy as plain reverse proxies to the same upstream,
# one worker each, plus the direct connection as the baseline. One command, one table.
#
# Usage: bench/proxy.sh
# Environment (all optional):
#   BENCH_DURATION=10      seconds per measured run
#   BENCH_WARMUP=2         seconds of unmeasured load before each target's runs
#   BENCH_RATE=1000        requests/s of the open-loop latency run
#   BENCH_ROUNDS=5         rounds of the open-loop run, every target once per round
#   BENCH_ROUND_DURATION=5 seconds each target is measured per round (after 1 s unmeasured)
#   BENCH_C32_ROUNDS=5     rounds of the closed loop at 32 connections (BENCH_DURATION split
#                          between them, at least 2 s each), every target once per round
#   BENCH_CPU=0            core that load generator, upstream and proxy are pinned to
#                          (taskset -c); "none" lets the scheduler place them
#   BENCH_SCHED=auto       nice -20 for closed-loop runs, SCHED_FIFO 1 for the open-loop
#                          run, so other work on the machine moves off that core (see
#                          below); "normal" leaves the default policy
#   BENCH_TARGETS="direct keel-proxy keel-policies nginx haproxy envoy relay"
#                          (keel-policies: keel-proxy with a timeout, retries, pool limits
#                          and outlier detection configured but not firing, issue 4's check;
#                          relay: not an HTTP proxy but the floor under every proxy, HAProxy
#                          copying bytes in TCP mode, bench/proxy/relay.cfg)
#   BENCH_KEEL_WORKERS=1   keel-proxy's --workers
#   BENCH_KEEL=PATH        a keel-proxy binary to use instead of building one
#   BENCH_PGO=0            build keel-proxy without profile-guided optimisation (default:
#                          bench/pgo.sh, the build to deploy; ~17 min cold on 2 cores)
#   BENCH_NO_INSTALL=1     do not apt-get/pip/cargo anything; skip what is missing
#   BENCH_KEEP=1           keep the work directory (configs, logs, raw tool output)
#
# Loads, identical for every target: wrk closed loop at 1 and 32 connections (one thread;
# 32 connections in BENCH_C32_ROUNDS rounds that visit every target in turn, each target's
# rounds pooled: their CPU time over their requests, and the median of their latencies),
# h2load HTTP/2 (h2c, prior knowledge) at 32 streams on one connection where the proxy
# speaks h2c downstream, and an open-loop run at BENCH_RATE requests/s (bench/proxy/
# openloop.rs, 32 connections) in BENCH_ROUNDS rounds that visit every target in turn, each
# target's rounds pooled into its row (bench/lib.sh says why; the notes list every round's
# p99). All targets are started first and run to the end; while one is measured, the
# others are frozen (SIGSTOP), so their timers cannot take the core from it. Per row:
# req/s, p50/p90/p99 latency, the proxy's CPU time per request (utime+stime from
# /proc/PID/stat over the run, divided by the requests completed)
# and its peak RSS during the run (VmRSS sampled every 100 ms; nginx: master + worker), each
# also as a ratio to nginx and to the direct connection.
#
# Everything listens on 127.0.0.1 only; every run is bounded; every process this script
# starts is stopped on exit.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
RATE=${BENCH_RATE:-1000}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND_DURATION=${BENCH_ROUND_DURATION:-5}
C32_ROUNDS=${BENCH_C32_ROUNDS:-5}
CPU=${BENCH_CPU:-0}
SCHED=${BENCH_SCHED:-auto}
TARGETS=${BENCH_TARGETS:-"direct keel-proxy keel-policies nginx haproxy envoy relay"}
KEEL_WORKERS=${BENCH_KEEL_WORKERS:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start keel-proxy-bench

# PIN prefixes every process of the measurement: generator, upstream, proxy.
bench_pinning "$CPU" "$SCHED"

# --- tools -------------------------------------------------------------------------------

need curl curl || { echo "error: curl is required (readiness checks)" >&2; exit 1; }
need wrk wrk || { echo "error: wrk is required for every row" >&2; exit 1; }
need nginx nginx || { echo "error: nginx is required (it is the upstream)" >&2; exit 1; }
HAVE_H2LOAD=1
need h2load nghttp2-client || HAVE_H2LOAD=0
command -v taskset >/dev/null || { [[ $CPU == none ]] || need taskset util-linux || exit 1; }

ENVOY=""
if [[ " $TARGETS " == *" envoy "* ]]; then
    find_envoy
fi
if [[ " $TARGETS " == *" haproxy "* || " $TARGETS " == *" relay "* ]]; then
    need haproxy haproxy || true
fi

KEEL=${BENCH_KEEL:-}
if [[ -n $KEEL || " $TARGETS " == *" keel-"* ]]; then
    find_keel
fi
build_openloop

# --- processes ---------------------------------------------------------------------------

render() { # template output
    sed -e "s|@DIR@|$WORK|g" -e "s|@PORT@|$PORT|g" -e "s|@H2_PORT@|$H2_PORT|g" \
        -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@UPSTREAM_H2_PORT@|$UPSTREAM_H2_PORT|g" \
        -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" "bench/proxy/$1" >"$WORK/$2"
}

CLK_TCK=$(getconf CLK_TCK)
UPSTREAM_PORT=$(free_port)
UPSTREAM_H2_PORT=$(free_port)
PORT=0 H2_PORT=0 ADMIN_PORT=0
mkdir -p "$WORK"/upstream-{body,proxy,fastcgi,uwsgi,scgi} "$WORK"/nginx-{body,proxy,fastcgi,uwsgi,scgi}
render upstream-nginx.conf upstream.conf
"${PIN[@]}" nginx -p "$WORK" -c "$WORK/upstream.conf" >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!
STARTED+=("$UPSTREAM_PID")
if ! wait_http "http://127.0.0.1:$UPSTREAM_PORT/"; then
    cat "$WORK/upstream.log" >&2
    echo "error: the upstream (nginx) did not start" >&2
    exit 1
fi

# Starts target $1 on fresh ports; sets TARGET_PID (empty for direct), URL and H2_URL
# (empty when the target has no h2c). Returns non-zero if it cannot run.
start_target() {
    PORT=$(free_port)
    H2_PORT=$PORT
    ADMIN_PORT=$(free_port)
    TARGET_PID=""
    H2_URL=""
    case $1 in
    direct)
        URL="http://127.0.0.1:$UPSTREAM_PORT/"
        H2_URL="http://127.0.0.1:$UPSTREAM_H2_PORT/"
        return 0
        ;;
    keel-proxy | keel-policies)
        [[ -n $KEEL ]] || return 1
        local conf=keel.yaml
        [[ $1 == keel-policies ]] && conf=keel-policies.yaml
        render "$conf" "$1.yaml"
        "${PIN[@]}" "$KEEL" standalone -f "$WORK/$1.yaml" --bind 127.0.0.1 \
            --admin "127.0.0.1:$ADMIN_PORT" --workers "$KEEL_WORKERS" --log-level warn \
            >"$WORK/$1.log" 2>&1 &
        ;;
    nginx)
        H2_PORT=$(free_port)
        render nginx.conf nginx.conf
        "${PIN[@]}" nginx -p "$WORK" -c "$WORK/nginx.conf" >"$WORK/nginx.log" 2>&1 &
        ;;
    haproxy | relay)
        command -v haproxy >/dev/null || return 1
        render "$1.cfg" "$1.cfg"
        "${PIN[@]}" haproxy -db -f "$WORK/$1.cfg" >"$WORK/$1.log" 2>&1 &
        ;;
    envoy)
        [[ -x $ENVOY ]] || return 1
        render envoy.yaml envoy.yaml
        "${PIN[@]}" "$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 -l error \
            --disable-hot-restart >"$WORK/envoy.log" 2>&1 &
        ;;
    *)
        note "unknown target $1"
        return 1
        ;;
    esac
    TARGET_PID=$!
    STARTED+=("$TARGET_PID")
    URL="http://127.0.0.1:$PORT/"
    if ! wait_http "$URL"; then
        tail -5 "$WORK/$1.log" >&2
        return 1
    fi
    # The relay copies bytes to the upstream's HTTP/1.1 port: no HTTP/2 row to make.
    [[ $1 == relay ]] && return 0
    if [[ $HAVE_H2LOAD == 1 ]] && h2load -n 1 -c 1 "http://127.0.0.1:$H2_PORT/" 2>/dev/null |
        grep -q '1 succeeded'; then
        H2_URL="http://127.0.0.1:$H2_PORT/"
    else
        note "$1: no h2c downstream (h2load got no answer on port $H2_PORT); no HTTP/2 row"
    fi
}

stop_target() {
    [[ -n $TARGET_PID ]] || return 0
    kill "$TARGET_PID" 2>/dev/null
    local i
    for i in $(seq 50); do
        kill -0 "$TARGET_PID" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$TARGET_PID" 2>/dev/null
}

# measure TARGET LOAD KIND CMD...: runs CMD (bounded), samples the proxy's CPU and RSS,
# parses KIND's output (wrk | openloop | h2load) and appends one result row. KIND "round":
# round ROUND of the open loop (openloop's output, with its latencies kept beside it); its
# CPU ticks and peak RSS go to TARGET's rounds file and its p99 to ROUNDS_TSV, and
# finish_rounds makes the row. KIND "wround": round ROUND of the closed loop (wrk's
# output); its figures go to TARGET's wrk rounds file and its CPU per request to C32_TSV,
# and finish_wrk_rounds makes the row.
measure() {
    local target=$1 load=$2 kind=$3
    shift 3
    local slug=${load//[ \/]/_}
    local out=$WORK/$target-$slug.out pids=() t0=0 t1=0 sampler peak=$WORK/peak
    local label=$load
    if [[ $kind == round ]]; then
        out=$WORK/$target-$slug-round$ROUND.out
        label="$load round $ROUND"
        export OPENLOOP_SAMPLES=${out%.out}.lat
    elif [[ $kind == wround ]]; then
        out=$WORK/$target-$slug-round$ROUND.out
        label="$load round $ROUND"
    fi
    if [[ -n $TARGET_PID ]]; then
        mapfile -t pids < <(tree_pids "$TARGET_PID")
        : >"$peak"
        (
            while :; do
                rss_kib "${pids[@]}" >>"$peak"
                sleep 0.1
            done
        ) &
        sampler=$!
        SAMPLER=$sampler
        t0=$(cpu_ticks "${pids[@]}")
    fi
    timeout $((DURATION + WARMUP + 30)) "$@" >"$out" 2>&1
    local rc=$?
    unset OPENLOOP_SAMPLES
    local reqs="" rps="" p50="" p90="" p99="" errs=0 mean=""
    if [[ -n $TARGET_PID ]]; then
        t1=$(cpu_ticks "${pids[@]}")
        kill "$sampler" 2>/dev/null
        wait "$sampler" 2>/dev/null
        SAMPLER=""
    fi
    case $kind in
    wrk | wround) parse_load wrk "$out" "$target" "$label" ;;
    openloop | round) parse_load openloop "$out" "$target" "$label" ;;
    h2load)
        reqs=$(awk '/^requests:/ {print $8}' "$out")
        rps=$(awk '/^finished in/ {print $4}' "$out")
        mean=$(awk '/^time for request:/ {print $6}' "$out")
        mean=$(to_us "$mean")
        errs=$(awk '/^requests:/ {print $10 + $12 + $14}' "$out")
        ;;
    esac
    if [[ $rc != 0 || -z $reqs || $reqs == 0 ]]; then
        note "$target $label: the load generator failed (exit $rc); output: $out"
        tail -3 "$out" >&2
        [[ $kind == round ]] && mv "$out" "$out.failed"
        return
    fi
    if [[ $kind == round ]]; then
        record_round "$target" "$load" "$p99" $((t1 - t0)) \
            "$(awk '$1 > m {m = $1} END {print m + 0}' "$peak")"
        return
    fi
    if [[ $kind == wround ]]; then
        local ticks=$((t1 - t0)) cpu=-
        [[ -n $TARGET_PID ]] &&
            cpu=$(awk -v d=$ticks -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ticks" "$reqs" \
            "$(awk '$1 > m {m = $1} END {print m + 0}' "$peak" 2>/dev/null)" "$rps" "$p50" "$p90" \
            "$p99" "${errs:-0}" >>"$WORK/$target-$slug.wrounds"
        [[ $cpu != - ]] && printf '%s\t%s\t%s\t%s\n' "$load" "$target" "$ROUND" "$cpu" >>"$C32_TSV"
        log "$target $label: cpu $cpu µs/req, p99 ${p99:-"-"} µs"
        return
    fi
    local cpu="" rss=""
    if [[ -n $TARGET_PID ]]; then
        cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}')
        rss=$(awk '$1 > m {m = $1} END {printf "%.1f", m / 1024}' "$peak")
    fi
    result_row "$target" "$load" "$cpu" "$rss"
}

# result_row TARGET LOAD CPU RSS: appends a row from the caller's rps p50 p90 p99 mean errs.
result_row() {
    local target=$1 load=$2 cpu=$3 rss=$4
    ((${errs:-0} > 0)) && note "$target $load: $errs failed requests"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$target" "$rps" "$p50" "$p90" \
        "$p99" "$mean" "$cpu" "$rss" "${errs:-0}" >>"$RESULTS"
    log "$target $load: $rps req/s, p99 ${p99:-"-"} µs, cpu ${cpu:-"-"} µs/req, rss ${rss:-"-"} MiB"
}

# finish_rounds TARGET LOAD: TARGET's open-loop rounds pooled into one result row; CPU per
# request over all rounds, RSS the highest of any round.
finish_rounds() {
    local target=$1 load=$2 out rounds
    pool_rounds "$target" "$load" || return 0
    local reqs="" rps="" p50="" p90="" p99="" errs=0 mean="" cpu="" rss=""
    parse_load openloop "$out" "$target" "$load"
    if [[ -n ${PID_OF[$target]} ]]; then
        cpu=$(awk -v hz="$CLK_TCK" -v n="$reqs" '{d += $1} END {printf "%.2f", d / hz * 1e6 / n}' "$rounds")
        rss=$(awk '$2 > m {m = $2} END {printf "%.1f", m / 1024}' "$rounds")
    fi
    result_row "$target" "$load" "$cpu" "$rss"
}

# finish_wrk_rounds TARGET LOAD: TARGET's closed-loop rounds pooled into one result row: CPU
# per request over all rounds' requests, RSS the highest of any round, req/s the mean, and
# latencies the median of the rounds' (wrk reports percentiles, not its samples).
finish_wrk_rounds() {
    local target=$1 load=$2 file
    file=$WORK/$target-${load//[ \/]/_}.wrounds
    [[ -s $file ]] || return 0
    local reqs="" rps="" p50="" p90="" p99="" errs=0 mean="" cpu="" rss=""
    read -r reqs cpu rss rps p50 p90 p99 errs < <(python3 bench/proxy/rounds.py pool-wrk "$file" "$CLK_TCK")
    [[ $cpu == - || -z ${PID_OF[$target]} ]] && cpu=""
    [[ $rss == - || -z ${PID_OF[$target]} ]] && rss=""
    result_row "$target" "$load" "$cpu" "$rss"
}

# closed_loop_round TARGET: one round of the closed loop (in_turn, from closed_loop_rounds,
# whose secs it reads).
closed_loop_round() {
    measure "$1" "h1 c32" wround "${PIN[@]}" wrk -t1 -c32 -d"${secs}s" --latency "$URL"
}

# closed_loop_rounds: wrk at 32 connections in C32_ROUNDS rounds over the targets in LIVE,
# each round starting one target further on, each target's rounds pooled into its row. Why
# in rounds: the CPU per request of one target moved by ±10% from one minute to the next on
# this VM (the same binary with another configuration measured 5–10% above or below it in the
# same run), which is as much as keel-proxy and nginx differ by; spread over the run and
# taken in turn, the drift falls on every target alike, as in the open loop.
closed_loop_rounds() {
    local target secs=$(((DURATION + C32_ROUNDS - 1) / C32_ROUNDS))
    ((secs < 2)) && secs=2
    log "--- closed loop at 32 connections: $C32_ROUNDS rounds of ${secs} s, the targets in turn"
    in_turn "$C32_ROUNDS" closed_loop_round
    for target in "${LIVE[@]}"; do
        finish_wrk_rounds "$target" "h1 c32"
    done
}

# Every target is started here and stays up to the end, so the open-loop rounds can take
# turns; while one target is measured the others are frozen (freeze in bench/lib.sh).
declare -A PID_OF URL_OF H2_URL_OF
LIVE=()
for target in $TARGETS; do
    if start_target "$target"; then
        PID_OF[$target]=$TARGET_PID URL_OF[$target]=$URL H2_URL_OF[$target]=$H2_URL
        LIVE+=("$target")
    else
        note "$target: not measured (could not start; see messages above)"
        stop_target
    fi
done
use_target() { TARGET_PID=${PID_OF[$1]} URL=${URL_OF[$1]} H2_URL=${H2_URL_OF[$1]}; }
# others_of TARGET: every process of the other started targets (to freeze while TARGET runs).
others_of() {
    local t
    for t in "${LIVE[@]}"; do
        [[ $t != "$1" && -n ${PID_OF[$t]} ]] && tree_pids "${PID_OF[$t]}"
    done
}

for target in "${LIVE[@]}"; do
    log "--- $target"
    focus "$target"
    "${PIN[@]}" wrk -t1 -c32 -d"${WARMUP}s" "$URL" >/dev/null 2>&1
    measure "$target" "h1 c1" wrk "${PIN[@]}" wrk -t1 -c1 -d"${DURATION}s" --latency "$URL"
    if [[ -n $H2_URL ]]; then
        measure "$target" "h2 c1m32" h2load "${PIN[@]}" h2load -t1 -c1 -m32 \
            -D "$DURATION" "$H2_URL"
    fi
    unfocus
done

C32_TSV=$WORK/c32-rounds.tsv
: >"$C32_TSV"
if ((${#LIVE[@]} > 0)); then
    closed_loop_rounds
fi

if [[ -n $OPENLOOP && ${#LIVE[@]} -gt 0 ]]; then
    open_loop_rounds 32
fi

# --- the table ---------------------------------------------------------------------------

versions() {
    printf 'keel-proxy %s (%s; %s)' "$(git rev-parse --short HEAD 2>/dev/null)" \
        "$([[ -n $KEEL ]] && "$KEEL" --version 2>/dev/null)" "${KEEL_BUILD:-}"
    printf '; nginx %s' "$(nginx -v 2>&1 | sed 's|.*/||')"
    command -v haproxy >/dev/null && printf '; haproxy %s' "$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}')"
    [[ -x $ENVOY ]] && printf '; envoy %s' "$("$ENVOY" --version 2>/dev/null | awk '/version:/ {print $NF}' | cut -d/ -f2)"
    printf '; wrk %s' "$(wrk -v 2>&1 | awk 'NR == 1 {print $2}')"
    command -v h2load >/dev/null && printf '; h2load %s' "$(h2load --version 2>/dev/null | awk '{print $NF}')"
    echo
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc); CPU $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "pinning: $PINNING; one worker per proxy (keel-proxy --workers $KEEL_WORKERS)"
    echo "runs: ${DURATION} s each after ${WARMUP} s warm-up (c32: in $C32_ROUNDS rounds, targets in turn, pooled; latencies the rounds' median); open loop at ${RATE} req/s in $ROUNDS rounds of ${ROUND_DURATION} s per target (after 1 s unmeasured), targets in turn, rounds pooled"
    echo "versions: $(versions)"
} >"$WORK/header.txt"
python3 bench/proxy/table.py "$RESULTS" "$WORK/header.txt" "$NOTES" "$ROUNDS_TSV" "$C32_TSV"
