#!/usr/bin/env bash
# Time from `keel demo` to the first 200 on /productpage through its ingress gateway: the
# control plane, six Bookinfo workloads with their sidecars and the gateway starting on this
# machine. Builds once, then starts and stops the demo RUNS times (fresh state each time) and
# prints each time and the median. The target is under 5 s.
# Usage: bench/demo-start.sh [RUNS]      PROFILE=debug bench/demo-start.sh (default release)
# Needs curl. Uses 127.0.0.1:$PORT (default 18480) for the gateway, free ports for the rest.
set -uo pipefail
RUNS=${1:-5}; PROFILE=${PROFILE:-release}; PORT=${PORT:-18480}
cd "$(dirname "$0")/.."
FLAG=(); [ "$PROFILE" = release ] && FLAG=(--release)
cargo build -q "${FLAG[@]}" -p keel-cli -p keel-proxy -p keel-samples || exit 1
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
TIMES=()
for run in $(seq 1 "$RUNS"); do
  D=$(mktemp -d /tmp/keel-demo-start.XXXX)
  START=$(now_ms)
  "$BIN/keel" demo --state-dir "$D/state" --ingress-port "$PORT" \
    --listen 127.0.0.1:0 --xds-listen 127.0.0.1:0 >"$D/out" 2>&1 & PID=$!
  T=""
  while [ -z "$T" ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/productpage")
    if [ "$code" = 200 ]; then T=$(( $(now_ms) - START )); break; fi
    if ! kill -0 $PID 2>/dev/null; then echo "run $run: keel demo exited:"; cat "$D/out"; exit 1; fi
    if [ $(( $(now_ms) - START )) -gt 60000 ]; then echo "run $run: no 200 within 60 s"; cat "$D/out"; break; fi
    sleep 0.02
  done
  # keel demo's own count: every workload and the gateway ready (printed just after).
  for i in $(seq 1 100); do grep -q "is up," "$D/out" && break; sleep 0.05; done
  UP=$(grep -o "is up, [0-9.]* s" "$D/out" | grep -o "[0-9.]* s")
  "$BIN/keel" down --state-dir "$D/state" >/dev/null
  wait $PID
  [ -n "$T" ] || { rm -rf "$D"; exit 1; }
  echo "run $run: first 200 on /productpage after $T ms (keel demo: everything ready after ${UP:-?})"
  TIMES+=("$T")
  rm -rf "$D"
done
MEDIAN=$(printf '%s\n' "${TIMES[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "keel demo → first 200 on /productpage ($PROFILE build, $RUNS runs): median $MEDIAN ms (target < 5000 ms)"
