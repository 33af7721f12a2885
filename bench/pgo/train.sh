#!/usr/bin/env bash
# The training loads of bench/pgo.sh: runs a profile-instrumented keel-proxy (argument 1)
# through what a gateway and a sidecar pair do most — HTTP/1.1 at 1 and 32 connections,
# HTTP/2, the resilience policies of bench/proxy/keel-policies.yaml, mesh mTLS between two
# sidecars (keep-alive, and one new mTLS connection per request), a metrics scrape — and
# stops each proxy with SIGTERM, so it writes its profile as it exits. About 30 s.
set -uo pipefail
KEEL=$1
cd "$(dirname "$0")/../.." || exit 1
B=$PWD/bench
# shellcheck source=bench/lib.sh
. "$B/lib.sh"
bench_start keel-pgo-train
D=$WORK
port() { free_port; }
up() { # url [curl args]: waits up to 20 s for a 200
    local i
    for i in $(seq 1 100); do
        curl -sf -o /dev/null "$@" && return 0
        sleep 0.2
    done
    echo "error: no 200 from $*" >&2
    return 1
}
load() { # h2load args...: runs it, fails unless every request succeeded
    local out
    out=$(h2load "$@" 2>&1)
    echo "  h2load $*: $(grep -o '[0-9]* succeeded' <<<"$out")"
    grep -q ' 0 failed, 0 errored' <<<"$out" || { echo "$out" | tail -5; return 1; }
}
stop() { # pid...: SIGTERM, then wait (the profile is written at exit)
    kill -TERM "$@"
    wait "$@"
}

UP=$(port) UP_H2=$(port)
mkdir -p "$D"/upstream-{body,proxy,fastcgi,uwsgi,scgi}
sed -e "s|@DIR@|$D|g" -e "s|@UPSTREAM_PORT@|$UP|g" -e "s|@UPSTREAM_H2_PORT@|$UP_H2|g" \
    "$B/proxy/upstream-nginx.conf" >"$D/upstream.conf"
nginx -p "$D" -c "$D/upstream.conf" >"$D/upstream.log" 2>&1 &
STARTED+=($!)
up "http://127.0.0.1:$UP/" || exit 1

# A gateway (standalone), plain and with resilience policies.
for conf in keel.yaml keel-policies.yaml; do
    P=$(port) A=$(port)
    sed -e "s|@PORT@|$P|g" -e "s|@UPSTREAM_PORT@|$UP|g" "$B/proxy/$conf" >"$D/$conf"
    "$KEEL" standalone -f "$D/$conf" --bind 127.0.0.1 --admin "127.0.0.1:$A" --workers 1 \
        --log-level warn >"$D/gateway.log" 2>&1 &
    K=$!
    STARTED+=("$K")
    up "http://127.0.0.1:$P/" || exit 1
    load --h1 -n 100000 -c 32 -m 1 "http://127.0.0.1:$P/" || exit 1
    load --h1 -n 5000 -c 1 -m 1 "http://127.0.0.1:$P/" || exit 1
    load -n 50000 -c 1 -m 32 "http://127.0.0.1:$P/" || exit 1
    curl -sf -o /dev/null "http://127.0.0.1:$A/stats/prometheus" || exit 1
    stop $K || { tail -5 "$D/gateway.log"; exit 1; }
done

# A sidecar pair with mesh mTLS (bench/mtls.sh's setup), with certificates made here.
C=$D/certs
mesh_certs "$C" "$D/openssl.log" || { tail -5 "$D/openssl.log"; exit 1; }
common=(-n default --bind 127.0.0.1 --stats none --workers 1 --log-level warn)
for mode in keep-alive new-connections; do
    SVC=$(port) SRV=$(port) O1=$(port) O2=$(port) IN=$(port) SA=$(port) CA=$(port)
    sed -e "s|@DIR@|$D|g" -e "s|@UPSTREAM_PORT@|$UP|g" -e "s|@SVC_PORT@|$SVC|g" \
        -e "s|@CLIENT_PORT@|$SVC|g" -e "s|@SERVER_PORT@|$SRV|g" "$B/mtls/keel.yaml" >"$D/mtls.yaml"
    extra=()
    [[ $mode == new-connections ]] && extra=(-f "$B/mtls/keel-one-request.yaml")
    "$KEEL" sidecar -f "$D/mtls.yaml" "${common[@]}" --label app=server --inbound-port "$SRV" \
        --app-port "$UP/HTTP" --outbound-port "$O1" --admin "127.0.0.1:$SA" \
        --cert-chain "$C/server/cert-chain.pem" --key "$C/server/key.pem" \
        --root-cert "$C/server/root-cert.pem" >"$D/server.log" 2>&1 &
    S=$!
    "$KEEL" sidecar -f "$D/mtls.yaml" "${extra[@]}" "${common[@]}" --label app=client \
        --outbound-listener "$SVC" --outbound-port "$O2" --inbound-port "$IN" \
        --admin "127.0.0.1:$CA" --cert-chain "$C/client/cert-chain.pem" \
        --key "$C/client/key.pem" --root-cert "$C/client/root-cert.pem" >"$D/client.log" 2>&1 &
    K=$!
    STARTED+=("$S" "$K")
    HOST="server.default.svc.cluster.local:$SVC"
    up -H "Host: $HOST" "http://127.0.0.1:$SVC/" || { tail -3 "$D"/*.log; exit 1; }
    if [[ $mode == keep-alive ]]; then
        load --h1 -n 60000 -c 32 -m 1 -H ":authority: $HOST" "http://127.0.0.1:$SVC/" || exit 1
        load --h1 -n 5000 -c 1 -m 1 -H ":authority: $HOST" "http://127.0.0.1:$SVC/" || exit 1
    else
        load --h1 -n 3000 -c 8 -m 1 -H ":authority: $HOST" "http://127.0.0.1:$SVC/" || exit 1
    fi
    stop $K $S || { tail -3 "$D"/*.log; exit 1; }
done
