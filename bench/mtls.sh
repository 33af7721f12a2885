#!/usr/bin/env bash
# Mesh mTLS between two sidecars (issue 6): client -> client sidecar -> (mTLS) -> server
# sidecar -> server, through a Keel pair and through an Envoy pair holding the same
# certificates, against the direct connection client -> server. One command, one table.
#
# Usage: bench/mtls.sh
# Environment (all optional):
#   BENCH_DURATION=10      seconds per measured run (closed loop and open loop)
#   BENCH_HS_DURATION=5    seconds of the new-connection run
#   BENCH_WARMUP=2         seconds of unmeasured load before each target's runs
#   BENCH_RATE=1000        requests/s of the open-loop latency run
#   BENCH_ROUNDS=5         rounds of the open-loop run, every target once per round
#   BENCH_ROUND_DURATION=5 seconds each target is measured per round (after 1 s unmeasured)
#   BENCH_CPU=0            core that load generator, upstream and both sidecars are pinned
#                          to (taskset -c); "none" lets the scheduler place them
#   BENCH_SCHED=auto       nice -20 for closed-loop runs, SCHED_FIFO 1 for the open-loop run
#                          (bench/lib.sh explains); "normal" leaves the default policy
#   BENCH_TARGETS="direct keel keel-authz nginx haproxy envoy relay"
#                          (keel-authz: the Keel pair with an AuthorizationPolicy of
#                          BENCH_AUTHZ_RULES rules on the server sidecar, the last one
#                          allowing the benchmark's requests)
#   BENCH_AUTHZ_RULES=100
#   BENCH_KEEL=PATH        a keel-proxy binary to use instead of building one
#   BENCH_PGO=0            build keel-proxy without profile-guided optimisation (default:
#                          bench/pgo.sh, the build to deploy; ~17 min cold on 2 cores)
#   BENCH_NO_INSTALL=1     do not apt-get/pip/cargo anything; skip what is missing
#   BENCH_KEEP=1           keep the work directory (certificates, configs, logs, raw output)
#
# Certificates: made per run with openssl — a root CA and two workload certificates (ECDSA
# P-256, URI SANs spiffe://cluster.local/ns/default/sa/client and .../sa/server, Istio's
# shape), used by both pairs: Keel's sidecars read them with --cert-chain/--key/--root-cert,
# Envoy's from its TLS contexts. Both pairs speak TLS 1.3 without session resumption, the
# client checking the server's SPIFFE ID, the server requiring a client certificate.
#
# The Keel pair: `keel-proxy sidecar -f bench/mtls/keel.yaml`, one worker each. The client
# sidecar serves the service port with a port listener (--outbound-listener, as an app that
# calls its sidecar directly instead of being redirected by iptables) and routes by Host;
# auto mTLS sends to the WorkloadEntry on the server sidecar's inbound port; the server
# sidecar (STRICT) forwards to the upstream. The Envoy pair (bench/mtls/envoy-*.yaml,
# --concurrency 1) does the same with static clusters and no other filters than the
# router — so it runs without Istio's telemetry filters, which Keel's sidecars do run
# (istio_requests_total and friends): a lower bound of what Istio's sidecars cost.
# The nginx pair (bench/mtls/nginx-*.conf, one worker each) is the same path through the
# Debian nginx: mTLS with the same certificates (chain and, as nginx can, the server's DNS
# name checked; the server requires a client certificate from the mesh root), keep-alive
# on both hops: what a lean C proxy pair costs on this machine. The HAProxy pair
# (bench/mtls/haproxy-*.cfg, one thread each) likewise. The relay pair is not a mesh but the
# floor under every pair: two HAProxy processes in TCP mode copying plaintext bytes
# (bench/mtls/relay-*.cfg), no TLS, no HTTP — what two more processes on each request's way
# there and back add by themselves on this machine.
#
# Loads, identical for every target (every request carries Host: the service's name):
#   h1 c32        wrk, one thread, 32 keep-alive connections: req/s, latency, CPU per
#                 request of each sidecar (utime+stime from /proc over the run) and peak RSS
#   h1 RATE/s     open loop at BENCH_RATE req/s on 32 connections (bench/proxy/openloop.rs)
#                 in BENCH_ROUNDS rounds that visit every target in turn, each target's
#                 rounds pooled into its row (bench/lib.sh says why; the notes list every
#                 round's p99); every pair runs until the end of these, the ones not being
#                 measured frozen (SIGSTOP), so their timers cannot take the core
#   new conn c32  wrk with `Connection: close` (every request a new connection to the client
#                 sidecar) while the client sidecar opens one upstream connection per request
#                 (Keel: DestinationRule maxRequestsPerConnection 1; Envoy:
#                 max_requests_per_connection 1): req/s is mTLS handshakes/s between the
#                 sidecars, CPU per request is CPU per new connection
# The upstream is the nginx of bench/proxy.sh (a fixed 64-byte answer).
#
# Everything listens on 127.0.0.1 only; every run is bounded (about 4 minutes in all); every
# process this script starts is stopped on exit.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

DURATION=${BENCH_DURATION:-10}
HS_DURATION=${BENCH_HS_DURATION:-5}
WARMUP=${BENCH_WARMUP:-2}
RATE=${BENCH_RATE:-1000}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND_DURATION=${BENCH_ROUND_DURATION:-5}
CPU=${BENCH_CPU:-0}
SCHED=${BENCH_SCHED:-auto}
TARGETS=${BENCH_TARGETS:-"direct keel keel-authz nginx haproxy envoy relay"}
AUTHZ_RULES=${BENCH_AUTHZ_RULES:-100}
CONNS=32
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start keel-mtls-bench

# PIN prefixes every process of the measurement: generator, upstream, both sidecars.
bench_pinning "$CPU" "$SCHED"

# --- tools -------------------------------------------------------------------------------

need curl curl || { echo "error: curl is required (readiness checks)" >&2; exit 1; }
need wrk wrk || { echo "error: wrk is required for every row" >&2; exit 1; }
need nginx nginx || { echo "error: nginx is required (it is the upstream)" >&2; exit 1; }
need openssl openssl || { echo "error: openssl is required (it makes the certificates)" >&2; exit 1; }
command -v taskset >/dev/null || { [[ $CPU == none ]] || need taskset util-linux || exit 1; }

if [[ " $TARGETS " == *" haproxy "* || " $TARGETS " == *" relay "* ]]; then
    need haproxy haproxy || true
fi
ENVOY=""
if [[ " $TARGETS " == *" envoy "* ]]; then
    find_envoy
fi
KEEL=${BENCH_KEEL:-}
if [[ -n $KEEL || " $TARGETS " == *" keel"* ]]; then
    find_keel
fi
build_openloop

# --- certificates ------------------------------------------------------------------------

# WORK/certs: bench/lib.sh's mesh_certs (Istio's file names: cert-chain.pem, key.pem,
# root-cert.pem; root-cert.pem also beside each pair for Keel's --root-cert).
make_certs() { mesh_certs "$WORK/certs" "$WORK/openssl.log"; }
if ! make_certs; then
    cat "$WORK/openssl.log" >&2
    echo "error: openssl could not make the certificates" >&2
    exit 1
fi

# --- processes ---------------------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)
listen_port UPSTREAM_PORT || exit 1
listen_port UPSTREAM_H2_PORT || exit 1
# The service port: the client sidecar's (or Envoy's) listener, and the port in the Host.
SVC_PORT=0 SERVER_PORT=0 CLIENT_ADMIN_PORT=0 SERVER_ADMIN_PORT=0 MAX_REQUESTS=1 NGINX_KEEPALIVE="" HAPROXY_SERVER_CLOSE=""

render() { # template output
    sed -e "s|@DIR@|$WORK|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
        -e "s|@UPSTREAM_H2_PORT@|$UPSTREAM_H2_PORT|g" -e "s|@SVC_PORT@|$SVC_PORT|g" \
        -e "s|@CLIENT_PORT@|$SVC_PORT|g" -e "s|@SERVER_PORT@|$SERVER_PORT|g" \
        -e "s|@CLIENT_ADMIN_PORT@|$CLIENT_ADMIN_PORT|g" \
        -e "s|@SERVER_ADMIN_PORT@|$SERVER_ADMIN_PORT|g" \
        -e "s|@MAX_REQUESTS@|$MAX_REQUESTS|g" -e "s|@NGINX_KEEPALIVE@|$NGINX_KEEPALIVE|g" \
        -e "s|@HAPROXY_SERVER_CLOSE@|$HAPROXY_SERVER_CLOSE|g" \
        "$1" >"$WORK/$2"
}

# An ALLOW policy of AUTHZ_RULES rules on the server sidecar: all but the last name the
# client's principal and a path the benchmark never asks for, so each request is checked
# against every rule before the last one allows it.
authz_policy() {
    local i
    printf '%s\n' "apiVersion: security.istio.io/v1" "kind: AuthorizationPolicy" \
        "metadata: { name: bench-rules, namespace: default }" "spec:" \
        "  selector: { matchLabels: { app: server } }" "  action: ALLOW" "  rules:"
    for ((i = 0; i < AUTHZ_RULES - 1; i++)); do
        printf '%s\n' "  - from: [{ source: { principals: [cluster.local/ns/default/sa/client] } }]" \
            "    to: [{ operation: { methods: [GET], paths: [/not-requested-$i] } }]"
    done
    printf '%s\n' "  - from: [{ source: { principals: [cluster.local/ns/default/sa/client] } }]" \
        "    to: [{ operation: { methods: [GET], paths: [/] } }]"
}

mkdir -p "$WORK"/upstream-{body,proxy,fastcgi,uwsgi,scgi}
render bench/proxy/upstream-nginx.conf upstream.conf
"${PIN[@]}" nginx -p "$WORK" -c "$WORK/upstream.conf" >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!
STARTED+=("$UPSTREAM_PID")
if ! wait_http "http://127.0.0.1:$UPSTREAM_PORT/"; then
    cat "$WORK/upstream.log" >&2
    echo "error: the upstream (nginx) did not start" >&2
    exit 1
fi

# Starts target $1 on fresh ports, with one upstream request per connection between the
# sidecars when $2 is "one"; sets CLIENT_PID and SERVER_PID (empty for direct), URL and
# HOST. Returns non-zero if it cannot run.
start_target() {
    local target=$1 per_conn=${2:-many} p
    for p in SVC_PORT SERVER_PORT CLIENT_ADMIN_PORT SERVER_ADMIN_PORT SPARE1 SPARE2 SPARE3; do
        listen_port "$p" || return 1
    done
    CLIENT_PID="" SERVER_PID=""
    HOST="server.default.svc.cluster.local:$SVC_PORT"
    URL="http://127.0.0.1:$SVC_PORT/"
    case $target in
    direct)
        URL="http://127.0.0.1:$UPSTREAM_PORT/"
        return 0
        ;;
    keel | keel-authz)
        [[ -n $KEEL ]] || return 1
        render bench/mtls/keel.yaml keel.yaml
        local server_files=(-f "$WORK/keel.yaml") client_files=(-f "$WORK/keel.yaml")
        if [[ $target == keel-authz ]]; then
            authz_policy >"$WORK/authz.yaml"
            server_files+=(-f "$WORK/authz.yaml")
        fi
        [[ $per_conn == one ]] && client_files+=(-f "$ROOT/bench/mtls/keel-one-request.yaml")
        local common=(-n default --bind 127.0.0.1 --stats none --workers 1 --log-level warn)
        "${PIN[@]}" "$KEEL" sidecar "${server_files[@]}" "${common[@]}" --label app=server \
            --inbound-port "$SERVER_PORT" --app-port "$UPSTREAM_PORT/HTTP" \
            --outbound-port "$SPARE1" --admin "127.0.0.1:$SERVER_ADMIN_PORT" \
            --cert-chain "$WORK/certs/server/cert-chain.pem" --key "$WORK/certs/server/key.pem" \
            --root-cert "$WORK/certs/server/root-cert.pem" >"$WORK/$target-server.log" 2>&1 &
        SERVER_PID=$!
        STARTED+=("$SERVER_PID")
        "${PIN[@]}" "$KEEL" sidecar "${client_files[@]}" "${common[@]}" --label app=client \
            --outbound-listener "$SVC_PORT" --outbound-port "$SPARE2" \
            --inbound-port "$SPARE3" --admin "127.0.0.1:$CLIENT_ADMIN_PORT" \
            --cert-chain "$WORK/certs/client/cert-chain.pem" --key "$WORK/certs/client/key.pem" \
            --root-cert "$WORK/certs/client/root-cert.pem" >"$WORK/$target-client.log" 2>&1 &
        CLIENT_PID=$!
        STARTED+=("$CLIENT_PID")
        ;;
    nginx)
        NGINX_KEEPALIVE="keepalive 64; keepalive_requests 100000000;"
        [[ $per_conn == one ]] && NGINX_KEEPALIVE=""
        mkdir -p "$WORK/nginx-temp"
        render bench/mtls/nginx-server.conf nginx-server.conf
        render bench/mtls/nginx-client.conf nginx-client.conf
        "${PIN[@]}" nginx -p "$WORK" -c "$WORK/nginx-server.conf" >"$WORK/nginx-server.log" 2>&1 &
        SERVER_PID=$!
        STARTED+=("$SERVER_PID")
        "${PIN[@]}" nginx -p "$WORK" -c "$WORK/nginx-client.conf" >"$WORK/nginx-client.log" 2>&1 &
        CLIENT_PID=$!
        STARTED+=("$CLIENT_PID")
        ;;
    haproxy | relay)
        command -v haproxy >/dev/null || return 1
        if [[ $target == haproxy ]]; then
            HAPROXY_SERVER_CLOSE=""
            [[ $per_conn == one ]] && HAPROXY_SERVER_CLOSE="option http-server-close"
            # HAProxy reads a certificate's chain and key from one file.
            cat "$WORK/certs/client/cert-chain.pem" "$WORK/certs/client/key.pem" >"$WORK/certs/client.pem"
            cat "$WORK/certs/server/cert-chain.pem" "$WORK/certs/server/key.pem" >"$WORK/certs/server.pem"
        fi
        render "bench/mtls/$target-server.cfg" "$target-server.cfg"
        render "bench/mtls/$target-client.cfg" "$target-client.cfg"
        "${PIN[@]}" haproxy -db -f "$WORK/$target-server.cfg" >"$WORK/$target-server.log" 2>&1 &
        SERVER_PID=$!
        STARTED+=("$SERVER_PID")
        "${PIN[@]}" haproxy -db -f "$WORK/$target-client.cfg" >"$WORK/$target-client.log" 2>&1 &
        CLIENT_PID=$!
        STARTED+=("$CLIENT_PID")
        ;;
    envoy)
        [[ -x $ENVOY ]] || return 1
        MAX_REQUESTS=4294967295
        [[ $per_conn == one ]] && MAX_REQUESTS=1
        render bench/mtls/envoy-server.yaml envoy-server.yaml
        render bench/mtls/envoy-client.yaml envoy-client.yaml
        "${PIN[@]}" "$ENVOY" -c "$WORK/envoy-server.yaml" --concurrency 1 -l error \
            --disable-hot-restart >"$WORK/envoy-server.log" 2>&1 &
        SERVER_PID=$!
        STARTED+=("$SERVER_PID")
        "${PIN[@]}" "$ENVOY" -c "$WORK/envoy-client.yaml" --concurrency 1 -l error \
            --disable-hot-restart >"$WORK/envoy-client.log" 2>&1 &
        CLIENT_PID=$!
        STARTED+=("$CLIENT_PID")
        ;;
    *)
        note "unknown target $target"
        return 1
        ;;
    esac
    if ! wait_http "$URL" -H "Host: $HOST"; then
        note "$target: no 200 through the pair at $URL (Host: $HOST); logs in $WORK (BENCH_KEEP=1 keeps them)"
        tail -5 "$WORK/$target"*-server.log "$WORK/$target"*-client.log >&2 2>/dev/null
        return 1
    fi
}

stop_target() {
    local p i
    for p in $CLIENT_PID $SERVER_PID; do
        kill "$p" 2>/dev/null
    done
    for p in $CLIENT_PID $SERVER_PID; do
        for i in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null
    done
    CLIENT_PID="" SERVER_PID=""
}

# After the new-connection run, a check that every request really opened a new connection
# between the sidecars: one second of the same load with the server side under strace,
# counting the connections it accepted against the requests completed. Not part of the
# measurements (strace slows the sidecar down a lot).
probe_accepts() { # target
    command -v strace >/dev/null || return 0
    local out=$WORK/$1-accepts.txt probe=$WORK/$1-probe.out st accepted reqs
    # Every process of the server side: nginx accepts in its worker, not in the master.
    local p traced=()
    for p in $(tree_pids "$SERVER_PID"); do
        traced+=(-p "$p")
    done
    strace -f -qq -c -e trace=accept,accept4 -o "$out" "${traced[@]}" 2>/dev/null &
    st=$!
    sleep 0.5
    timeout 10 wrk -t1 -c4 -d1s -H "Host: $HOST" -H "Connection: close" "$URL" >"$probe" 2>&1
    sleep 0.2
    kill -INT "$st" 2>/dev/null
    wait "$st" 2>/dev/null
    # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall. Failed calls
    # (EAGAIN once the queue is empty) accepted nothing.
    accepted=$(awk '$NF ~ /^accept4?$/ {n += $4; if (NF == 6) n -= $5} END {print n + 0}' "$out" 2>/dev/null)
    reqs=$(awk '/requests in/ {print $1}' "$probe")
    note "$1 $HS_LOAD: check: the server side accepted ${accepted:-?} connections while ${reqs:-?} requests completed (1 s under strace, not measured)"
}

# measure TARGET LOAD KIND CMD...: runs CMD (bounded), samples each sidecar's CPU and RSS,
# parses KIND's output (wrk | openloop) and appends one result row. KIND "round": round
# ROUND of the open loop (openloop's output, with its latencies kept beside it); its CPU
# ticks and peak RSS go to TARGET's rounds file and its p99 to ROUNDS_TSV, and
# finish_rounds makes the row.
measure() {
    local target=$1 load=$2 kind=$3
    shift 3
    local slug=${load//[ \/]/_}
    local out=$WORK/$target-$slug.out cpids=() spids=() c0=0 s0=0 c1=0 s1=0
    local cpeak=$WORK/peak-client speak=$WORK/peak-server
    local label=$load
    if [[ $kind == round ]]; then
        out=$WORK/$target-$slug-round$ROUND.out
        label="$load round $ROUND"
        export OPENLOOP_SAMPLES=${out%.out}.lat
    fi
    if [[ -n $CLIENT_PID ]]; then
        mapfile -t cpids < <(tree_pids "$CLIENT_PID")
        mapfile -t spids < <(tree_pids "$SERVER_PID")
        : >"$cpeak"
        : >"$speak"
        (
            while :; do
                rss_kib "${cpids[@]}" >>"$cpeak"
                rss_kib "${spids[@]}" >>"$speak"
                sleep 0.1
            done
        ) &
        SAMPLER=$!
        c0=$(cpu_ticks "${cpids[@]}")
        s0=$(cpu_ticks "${spids[@]}")
    fi
    timeout $((DURATION + WARMUP + 30)) "$@" >"$out" 2>&1
    local rc=$?
    unset OPENLOOP_SAMPLES
    local reqs="" rps="" p50="" p90="" p99="" errs=0
    if [[ -n $CLIENT_PID ]]; then
        c1=$(cpu_ticks "${cpids[@]}")
        s1=$(cpu_ticks "${spids[@]}")
        kill "$SAMPLER" 2>/dev/null
        wait "$SAMPLER" 2>/dev/null
        SAMPLER=""
    fi
    parse_load "${kind/round/openloop}" "$out" "$target" "$label"
    if [[ $rc != 0 || -z $reqs || $reqs == 0 ]]; then
        note "$target $label: the load generator failed (exit $rc); output: $out"
        tail -3 "$out" >&2
        [[ $kind == round ]] && mv "$out" "$out.failed"
        return
    fi
    peak() { awk '$1 > m {m = $1} END {print m + 0}' "$1"; }
    if [[ $kind == round ]]; then
        record_round "$target" "$load" "$p99" $((c1 - c0)) $((s1 - s0)) "$(peak "$cpeak")" \
            "$(peak "$speak")"
        return
    fi
    local ccpu="" scpu="" crss="" srss=""
    if [[ -n $CLIENT_PID ]]; then
        per_req() { awk -v d="$1" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}'; }
        mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
        ccpu=$(per_req $((c1 - c0)))
        scpu=$(per_req $((s1 - s0)))
        crss=$(mib "$(peak "$cpeak")")
        srss=$(mib "$(peak "$speak")")
    fi
    result_row "$target" "$load" "$ccpu" "$scpu" "$crss" "$srss"
}

# result_row TARGET LOAD CLIENT_CPU SERVER_CPU CLIENT_RSS SERVER_RSS: appends a row from the
# caller's rps p50 p90 p99 errs.
result_row() {
    local target=$1 load=$2 ccpu=$3 scpu=$4 crss=$5 srss=$6
    ((${errs:-0} > 0)) && note "$target $load: $errs failed requests"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$target" "$rps" "$p50" \
        "$p90" "$p99" "$ccpu" "$scpu" "$crss" "$srss" "${errs:-0}" >>"$RESULTS"
    log "$target $load: $rps req/s, p99 ${p99:-"-"} µs, cpu client ${ccpu:-"-"} server ${scpu:-"-"} µs/req"
}

# finish_rounds TARGET LOAD: TARGET's open-loop rounds pooled into one result row; CPU per
# request over all rounds, RSS the highest of any round.
finish_rounds() {
    local target=$1 load=$2 out rounds
    pool_rounds "$target" "$load" || return 0
    local reqs="" rps="" p50="" p90="" p99="" errs=0 ccpu="" scpu="" crss="" srss=""
    parse_load openloop "$out" "$target" "$load"
    if [[ -n ${CLIENT_PID_OF[$target]} ]]; then
        sum_per_req() { awk -v c="$1" -v hz="$CLK_TCK" -v n="$reqs" '{d += $c} END {printf "%.2f", d / hz * 1e6 / n}' "$rounds"; }
        max_mib() { awk -v c="$1" '$c > m {m = $c} END {printf "%.1f", m / 1024}' "$rounds"; }
        ccpu=$(sum_per_req 1)
        scpu=$(sum_per_req 2)
        crss=$(max_mib 3)
        srss=$(max_mib 4)
    fi
    result_row "$target" "$load" "$ccpu" "$scpu" "$crss" "$srss"
}

# Every target's pair is started here and stays up to the end, so the open-loop rounds can
# take turns; while one target is measured the other pairs are frozen (freeze in
# bench/lib.sh).
declare -A CLIENT_PID_OF SERVER_PID_OF URL_OF HOST_OF
LIVE=()
for target in $TARGETS; do
    if start_target "$target"; then
        CLIENT_PID_OF[$target]=$CLIENT_PID SERVER_PID_OF[$target]=$SERVER_PID
        URL_OF[$target]=$URL HOST_OF[$target]=$HOST
        LIVE+=("$target")
    else
        note "$target: not measured (could not start; see messages above)"
        stop_target
    fi
done
use_target() {
    CLIENT_PID=${CLIENT_PID_OF[$1]} SERVER_PID=${SERVER_PID_OF[$1]}
    URL=${URL_OF[$1]} HOST=${HOST_OF[$1]} OPENLOOP_HOST=${HOST_OF[$1]}
}
# others_of TARGET: every process of the other started pairs (all of them for "") to
# freeze while TARGET runs.
others_of() {
    local t
    for t in "${LIVE[@]}"; do
        if [[ $t != "$1" && -n ${CLIENT_PID_OF[$t]} ]]; then
            tree_pids "${CLIENT_PID_OF[$t]}"
            tree_pids "${SERVER_PID_OF[$t]}"
        fi
    done
}

for target in "${LIVE[@]}"; do
    log "--- $target"
    focus "$target"
    "${PIN[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "Host: $HOST" "$URL" >/dev/null 2>&1
    measure "$target" "h1 c$CONNS" wrk "${PIN[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" \
        --latency -H "Host: $HOST" "$URL"
    unfocus
done

if [[ -n $OPENLOOP && ${#LIVE[@]} -gt 0 ]]; then
    open_loop_rounds "$CONNS"
fi

HS_LOAD="new conn c$CONNS"
# The new-connection rows start a pair of their own; every pair started above is frozen.
mapfile -t frozen < <(others_of "")
freeze "${frozen[@]}"
for target in "${LIVE[@]}"; do
    # The policy changes the request path, not connections: no new-connection row for it;
    # the relays have no handshake to count.
    [[ $target == keel-authz || $target == relay ]] && continue
    log "--- $target, one request per connection"
    if ! start_target "$target" one; then
        note "$target: no new-connection row (could not start with one request per connection)"
        stop_target
        continue
    fi
    "${PIN[@]}" wrk -t1 -c"$CONNS" -d1s -H "Host: $HOST" -H "Connection: close" "$URL" \
        >/dev/null 2>&1
    measure "$target" "$HS_LOAD" wrk "${PIN[@]}" wrk -t1 -c"$CONNS" -d"${HS_DURATION}s" \
        --latency -H "Host: $HOST" -H "Connection: close" "$URL"
    [[ $target != direct ]] && probe_accepts "$target"
    stop_target
done
thaw "${frozen[@]}"

# --- the table ---------------------------------------------------------------------------

versions() {
    printf 'keel-proxy %s (%s; %s)' "$(git rev-parse --short HEAD 2>/dev/null)" \
        "$([[ -n $KEEL ]] && "$KEEL" --version 2>/dev/null)" "${KEEL_BUILD:-}"
    [[ -x $ENVOY ]] && printf '; envoy %s' "$("$ENVOY" --version 2>/dev/null | awk '/version:/ {print $NF}' | cut -d/ -f2)"
    printf '; nginx %s' "$(nginx -v 2>&1 | sed 's|.*/||')"
    printf '; wrk %s' "$(wrk -v 2>&1 | awk 'NR == 1 {print $2}')"
    printf '; %s' "$(openssl version | awk '{print $1, $2}')"
    echo
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc); CPU $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pinning: $PINNING; one worker per sidecar (keel-proxy --workers 1, nginx worker_processes 1, haproxy nbthread 1, envoy --concurrency 1)"
    echo "runs: ${DURATION} s each after ${WARMUP} s warm-up (new connections: ${HS_DURATION} s); open loop at ${RATE} req/s in $ROUNDS rounds of ${ROUND_DURATION} s per target (after 1 s unmeasured), targets in turn, rounds pooled"
    echo "mTLS: TLS 1.3, ECDSA P-256 workload certificates from one root (openssl), no session resumption"
    echo "versions: $(versions)"
} >"$WORK/header.txt"
python3 bench/mtls/table.py "$RESULTS" "$WORK/header.txt" "$NOTES" "$AUTHZ_RULES" "$ROUNDS_TSV"
