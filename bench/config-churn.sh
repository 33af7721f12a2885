#!/usr/bin/env bash
# Failed requests while the routing changes under load: starts `keel demo`, drives steady load
# at /productpage through its ingress gateway (each page is four calls through six sidecars),
# and meanwhile applies CHANGES VirtualService changes to reviews, one `keel apply` at a time,
# cycling its split between v1, v2 and v3. Prints the requests served, the failures (non-2xx
# and socket errors) and how long the changes took. The target is 0 failed requests.
# Usage: bench/config-churn.sh [CHANGES]     (default 1000; PROFILE=debug for a debug build)
# Needs wrk. Uses 127.0.0.1:$PORT (default 18580) for the gateway, free ports for the rest.
set -uo pipefail
CHANGES=${1:-1000}; PROFILE=${PROFILE:-release}; PORT=${PORT:-18580}
cd "$(dirname "$0")/.."
FLAG=(); [ "$PROFILE" = release ] && FLAG=(--release)
echo "building ($PROFILE)..." >&2
cargo build -q "${FLAG[@]}" -p keel-cli -p keel-proxy -p keel-samples || exit 1
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
D=$(mktemp -d /tmp/keel-churn.XXXX)
trap '"$BIN/keel" down --state-dir "$D/state" >/dev/null 2>&1; rm -rf "$D"' EXIT
"$BIN/keel" demo --state-dir "$D/state" --ingress-port "$PORT" --listen 127.0.0.1:0 \
  --xds-listen 127.0.0.1:0 --monitoring-listen none --ca-listen none >"$D/demo.out" 2>&1 &
for _ in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/productpage")" = 200 ] && break
  sleep 0.1
done
API=$(cat "$D/state/api")
export KEEL_SERVER=$API
"$BIN/keel" apply -f examples/bookinfo-networking/destination-rule-all.yaml --wait >/dev/null || exit 1
# The changes: reviews split between v1/v2/v3, a different split each time.
for i in $(seq 0 2); do
  python3 - "$D/vs$i.yaml" "$i" <<'PY'
import sys
path, i = sys.argv[1], int(sys.argv[2])
w = [[80, 10, 10], [10, 80, 10], [10, 10, 80]][i]
open(path, "w").write(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {w[0]}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {w[1]}}}
    - {{destination: {{host: reviews, subset: v3}}, weight: {w[2]}}}
""")
PY
done
"$BIN/keel" apply -f "$D/vs0.yaml" --wait >/dev/null || exit 1
echo "load: wrk -t1 -c4 on http://127.0.0.1:$PORT/productpage while $CHANGES changes are applied"
wrk -t1 -c4 -d600s "http://127.0.0.1:$PORT/productpage" >"$D/wrk.out" 2>&1 & WRK=$!
sleep 1
START=$(date +%s%N)
for i in $(seq 1 "$CHANGES"); do
  "$BIN/keel" apply -f "$D/vs$((i % 3)).yaml" >/dev/null || { echo "apply $i failed"; break; }
done
ELAPSED_MS=$(( ($(date +%s%N) - START) / 1000000 ))
sleep 1
kill -INT $WRK; wait $WRK
REQS=$(awk '/requests in/ {print $1}' "$D/wrk.out")
NON2XX=$(awk '/Non-2xx/ {print $NF}' "$D/wrk.out"); NON2XX=${NON2XX:-0}
ERRS=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' "$D/wrk.out"); ERRS=${ERRS:-0}
# A page is 200 even when a call behind it fails (productpage then says so in the page), so
# count every proxy's non-2xx answers too, from the sidecars' and the gateway's own metrics.
cat >"$D/count.py" <<'PY'
import json, sys, urllib.request
bad = total = 0
for p in json.load(sys.stdin)["proxies"]:
    admin = p.get("admin")
    if not admin:
        continue
    text = urllib.request.urlopen("http://" + admin + "/stats/prometheus").read().decode()
    for line in text.splitlines():
        if line.startswith("istio_requests_total{") and 'reporter="source"' in line:
            n = int(float(line.rsplit(" ", 1)[1]))
            total += n
            code = line.split('response_code="', 1)[1].split('"', 1)[0]
            # DC: the caller went away (wrk is stopped mid-request at the end), not a failure.
            if not code.startswith("2") and 'response_flags="DC"' not in line:
                bad += n
                if n and len(sys.argv) > 1:
                    print(admin, line, file=sys.stderr)
print(total, bad)
PY
INNER=$("$BIN/keel" proxy-status -o json | python3 "$D/count.py" ${KEEL_CHURN_VERBOSE:+-v})
date -u +"%Y-%m-%d %H:%M UTC"
echo "$CHANGES changes applied in $ELAPSED_MS ms; $REQS pages served through the gateway"
echo "failed: $NON2XX non-2xx pages, $ERRS socket errors; calls between proxies: ${INNER% *} of which non-2xx: ${INNER#* } (target 0)"
