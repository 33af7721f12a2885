#!/usr/bin/env bash
# Builds keel-proxy with profile-guided optimisation (PGO), the build the benchmarks measure
# and the one to deploy. Prints the binary's path as the last line of its output.
#
# Why: what keel-proxy spends per request beyond nginx is mostly instruction-cache misses,
# not instructions (callgrind's cache simulation of bench/proxy.sh's c32 load, per request:
# plain release build 24.2k instructions and 1,660 L1i misses; nginx 21.1k and 730). A
# profile tells LLVM which paths run, so it inlines and lays out blocks for them and moves
# what never ran out of the way: 19.3k instructions and 840 L1i misses per request.
#
# Steps, each a separate cargo target directory under $CARGO_TARGET_DIR (so each stays
# cached, and neither disturbs the plain `cargo build --release`):
#   1. pgo-instrumented/: keel-proxy built with -Cprofile-generate;
#   2. bench/pgo/train.sh runs it through a gateway's and a sidecar pair's loads (HTTP/1.1,
#      HTTP/2, resilience policies, mesh mTLS, new mTLS connections; about 30 s);
#   3. llvm-profdata (LLVM's own, the major version rustc was built with) merges the profile;
#   4. pgo/: keel-proxy built with -Cprofile-use=that profile.
# A cold run builds twice (~17 min on 2 cores). After a code change both builds are redone
# (cargo's incremental rules) and the training with them; with no change, nothing is.
#
# Usage: bench/pgo.sh                    build; the binary is $CARGO_TARGET_DIR/pgo/release/keel-proxy
#        PGO_PROFILE=FILE bench/pgo.sh   build with an existing .profdata (skips steps 1-3)
#        PGO_RETRAIN=1 bench/pgo.sh      train again even if the instrumented build is unchanged
# Needs: llvm-profdata-N (Debian's llvm-N package, N = `rustc -vV`'s LLVM major version;
# installed with apt-get when missing unless BENCH_NO_INSTALL=1), nginx, h2load, curl,
# openssl. Exits 2 when it cannot build, saying why.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
INSTRUMENTED=$TARGET/pgo-instrumented
OPTIMIZED=$TARGET/pgo
RAW=$INSTRUMENTED/profraw
PROFILE=${PGO_PROFILE:-$INSTRUMENTED/keel-proxy.profdata}

say() { echo "[pgo] $*" >&2; }
fail() {
    echo "error: $*" >&2
    exit 2
}

# llvm-profdata must read the format of rustc's LLVM: the same major version.
LLVM_MAJOR=$(rustc -vV | awk '/^LLVM version/ {split($3, v, "."); print v[1]}')
[[ -n $LLVM_MAJOR ]] || fail "rustc -vV names no LLVM version"
profdata_tool() {
    local t
    for t in "llvm-profdata-$LLVM_MAJOR" "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata" llvm-profdata; do
        if command -v "$t" >/dev/null &&
            "$t" --version 2>/dev/null | grep -q "LLVM version $LLVM_MAJOR\."; then
            echo "$t"
            return 0
        fi
    done
    return 1
}

if [[ -z ${PGO_PROFILE:-} ]]; then
    PROFDATA=$(profdata_tool)
    if [[ -z $PROFDATA && ${BENCH_NO_INSTALL:-0} != 1 && $(id -u) == 0 ]]; then
        say "installing llvm-$LLVM_MAJOR (for llvm-profdata, matching rustc's LLVM $LLVM_MAJOR)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "llvm-$LLVM_MAJOR" >/dev/null 2>&1 ||
            { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                    "llvm-$LLVM_MAJOR" >/dev/null 2>&1; }
        PROFDATA=$(profdata_tool)
    fi
    [[ -n $PROFDATA ]] || fail "no llvm-profdata for LLVM $LLVM_MAJOR (rustc's): install Debian's llvm-$LLVM_MAJOR, or build without PGO (cargo build --release -p keel-proxy)"
    for tool in nginx h2load curl openssl; do
        command -v $tool >/dev/null || fail "$tool is needed for the training loads"
    done

    say "1/4 instrumented build (cargo target dir $INSTRUMENTED)"
    # The profile directory is part of RUSTFLAGS: a fixed path keeps this build cached.
    RUSTFLAGS="-Cprofile-generate=$RAW" CARGO_TARGET_DIR=$INSTRUMENTED \
        cargo build --release --locked -p keel-proxy >&2 || fail "the instrumented build failed"

    # A profile newer than the instrumented binary came from that binary: kept, so that
    # bench/proxy.sh and bench/mtls.sh run one after the other build once.
    if [[ -f $PROFILE && $PROFILE -nt $INSTRUMENTED/release/keel-proxy && ${PGO_RETRAIN:-0} != 1 ]]; then
        say "2/4, 3/4: the profile of this instrumented build is already there ($PROFILE; PGO_RETRAIN=1 redoes it)"
    else
        say "2/4 training loads"
        rm -rf "$RAW"
        bench/pgo/train.sh "$INSTRUMENTED/release/keel-proxy" >&2 || fail "the training loads failed"
        compgen -G "$RAW/*.profraw" >/dev/null || fail "the training wrote no profile into $RAW"

        say "3/4 merging the profile ($PROFDATA)"
        "$PROFDATA" merge -o "$PROFILE" "$RAW"/*.profraw >&2 || fail "llvm-profdata merge failed"
    fi
fi
[[ -f $PROFILE ]] || fail "no profile at $PROFILE"

say "4/4 optimised build (cargo target dir $OPTIMIZED)"
# rustc tracks the profile's contents: a new profile rebuilds, the same one does not.
RUSTFLAGS="-Cprofile-use=$PROFILE" CARGO_TARGET_DIR=$OPTIMIZED \
    cargo build --release --locked -p keel-proxy >&2 || fail "the profile-guided build failed"
echo "$OPTIMIZED/release/keel-proxy"
