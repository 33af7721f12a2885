#!/usr/bin/env bash
# Change-to-ACK with 10, 100 and 1,000 connected proxies: an in-process control plane, real
# delta-xDS streams from simulated sidecars on loopback, VirtualService changes applied one at
# a time. Prints p50/p99/max per proxy count (issue target: p99 <= 100 ms with 100 proxies).
# Usage: bench/xds-load.sh [CHANGES]   (extra flags: KEEL_XDS_LOAD_ARGS="--debounce-ms 100")
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building keel-xds-load (release)..." >&2
cargo build --release --locked -q -p keel-control --bin keel-xds-load
BIN=${CARGO_TARGET_DIR:-target}/release/keel-xds-load
date -u +"%Y-%m-%d %H:%M UTC"
# shellcheck disable=SC2086
"$BIN" --proxies 10,100,1000 --changes "${1:-20}" ${KEEL_XDS_LOAD_ARGS:-}
