#!/usr/bin/env bash
# Regenerates crates/keel-proxy/hot-text.ld, the list of functions the release binary places
# first in its code so that a running gateway touches few pages of it (why: the comment in
# crates/keel-proxy/build.rs). Runs keel-proxy standalone under callgrind through the loads of
# bench/proxy.sh (HTTP/1.1 at 1 and 32 connections, HTTP/2, the open-loop client), a
# configuration reload and the Prometheus and readiness endpoints, and lists every function of
# the binary that ran, most instructions first. The default log level (info), as deployed:
# its log lines run code that bench/proxy.sh's warn level would not. Needs valgrind, nginx, wrk, h2load, curl.
#
# Usage: bench/hot-text.sh [KEEL_BINARY]      regenerate (default: the profile-guided build,
#                                             bench/pgo.sh, which the benchmarks measure; the
#                                             previous list's other entries are kept after the
#                                             new ones, for the plain release build)
#        bench/hot-text.sh --check [BINARY]   how much of the current list a binary still has
# Regenerate after a dependency or toolchain update when --check reports a falling match (a
# stale list costs memory, never correctness). Rebuild afterwards: the list is a link input.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
SCRIPT=$ROOT/crates/keel-proxy/hot-text.ld
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

CHECK=0
if [[ ${1:-} == --check ]]; then
    CHECK=1
    shift
fi
BIN=${1:-}
if [[ -z $BIN && $CHECK == 0 ]]; then
    BIN=$(bench/pgo.sh | tail -1)
    [[ -x $BIN ]] || exit 1
elif [[ -z $BIN ]]; then
    cargo build --release --locked -p keel-proxy >&2 || exit 1
    BIN=$CARGO_TARGET_DIR/release/keel-proxy
fi
if [[ $CHECK == 1 ]]; then
    exec python3 bench/proxy/hot_text.py check "$SCRIPT" "$BIN"
fi
for tool in valgrind nginx wrk h2load curl rustc; do
    command -v $tool >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start keel-hot-text
D=$WORK
UP=$(free_port) UP_H2=$(free_port) PORT=$(free_port) ADMIN=$(free_port) STATS=$(free_port)
mkdir -p "$D"/upstream-{body,proxy,fastcgi,uwsgi,scgi}
sed -e "s|@DIR@|$D|g" -e "s|@UPSTREAM_PORT@|$UP|g" -e "s|@UPSTREAM_H2_PORT@|$UP_H2|g" \
    bench/proxy/upstream-nginx.conf >"$D/upstream.conf"
nginx -p "$D" -c "$D/upstream.conf" >"$D/upstream.log" 2>&1 &
STARTED+=($!)
rustc --edition 2021 -C opt-level=3 bench/proxy/openloop.rs -o "$D/openloop" || exit 1
sed -e "s|@PORT@|$PORT|g" -e "s|@UPSTREAM_PORT@|$UP|g" bench/proxy/keel.yaml >"$D/keel.yaml"
valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$D/cg.out" \
    "$BIN" standalone -f "$D/keel.yaml" --workers 1 --bind 127.0.0.1 \
    --admin "127.0.0.1:$ADMIN" --stats "127.0.0.1:$STATS" >"$D/keel.log" 2>&1 &
KEEL=$!
STARTED+=("$KEEL")
URL=http://127.0.0.1:$PORT/
for _ in $(seq 300); do
    curl -s -o /dev/null --max-time 1 "$URL" && break
    sleep 0.1
done
wrk -t1 -c32 -d1s "$URL" >/dev/null
wrk -t1 -c1 -d1s "$URL" >/dev/null
# By duration, as bench/proxy.sh runs it: the load stops with streams in flight, and the
# code that handles that (resets, connection errors) is profiled too.
h2load -t1 -c1 -m32 -D 2 "$URL" >/dev/null 2>&1
"$D/openloop" "$URL" 200 2 32 1 >/dev/null 2>&1
# A reload: the watcher, the compiler child, decoding and installing the new snapshot.
echo "    timeout: 30s" >>"$D/keel.yaml"
sleep 3
wrk -t1 -c4 -d1s "$URL" >/dev/null
curl -s -o /dev/null "http://127.0.0.1:$STATS/stats/prometheus"
curl -s -o /dev/null "http://127.0.0.1:$STATS/healthz/ready"
curl -s -o /dev/null "http://127.0.0.1:$ADMIN/healthz/ready"
kill "$KEEL"
wait "$KEEL"
grep -q 'configuration reloaded' "$D/keel.log" ||
    echo "warning: the reload did not happen; its code is not in the profile" >&2
cp "$SCRIPT" "$D/previous.ld" 2>/dev/null
python3 bench/proxy/hot_text.py write "$D/cg.out" "$BIN" "$SCRIPT" "$D/previous.ld"
