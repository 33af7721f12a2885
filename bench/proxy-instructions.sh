#!/usr/bin/env bash
# Instructions per request of keel-proxy under callgrind: deterministic and immune to other
# work on the machine, so small changes to the request path can be compared quickly (the
# timing benchmark is bench/proxy.sh). Needs valgrind, nginx and h2load (nghttp2-client), wrk
# for IR_NEW_CONN.
# Usage: bench/proxy-instructions.sh KEEL_BINARY [REQUESTS] [CONNS]
# The profile stays in $IR_OUT (default /tmp/keel-ir): callgrind_annotate $IR_OUT/last.cg
# IR_DUMP_INSTR=1 records costs per instruction, so bench/proxy/callsites.py can say which
# source lines call a function (memcpy: the copies on the request path) and how often:
#   python3 bench/proxy/callsites.py $IR_OUT/last.cg KEEL_BINARY $((REQUESTS + 2000))
# IR_NEW_CONN=SECONDS measures new connections instead: one request each (wrk, one
# connection at a time, `Connection: close`) for SECONDS after the warm-up, counted from
# zeroed counters, so the figure is per connection without startup; callsites.py then takes
# the connection count it prints.
set -uo pipefail
BIN=$1; N=${2:-20000}; C=${3:-32}
D=$(mktemp -d /tmp/ir.XXXX)
UP=18980; PP=18981; H2=18982
sed -e "s|@DIR@|$D|g" -e "s|@UPSTREAM_PORT@|$UP|g" -e "s|@UPSTREAM_H2_PORT@|$H2|g" "$(dirname "$0")/proxy/upstream-nginx.conf" > $D/up.conf
nginx -c $D/up.conf -p $D 2>$D/up.err & UPID=$!
sed -e "s|@PORT@|$PP|g" -e "s|@UPSTREAM_PORT@|$UP|g" "$(dirname "$0")/proxy/keel.yaml" > $D/keel.yaml
DUMP_INSTR=no; [[ ${IR_DUMP_INSTR:-0} == 1 ]] && DUMP_INSTR=yes
valgrind --tool=callgrind --callgrind-out-file=$D/cg.out --dump-instr=$DUMP_INSTR $BIN standalone -f $D/keel.yaml --workers 1 --admin 127.0.0.1:18983 --bind 127.0.0.1 >$D/keel.log 2>&1 & KPID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:$PP/ && break; sleep 0.3; done
h2load --h1 -n 2000 -c $C -m 1 http://127.0.0.1:$PP/ >/dev/null 2>&1

if [[ -n ${IR_NEW_CONN:-} ]]; then
    callgrind_control -z $KPID >/dev/null
    wrk -t1 -c1 -d"${IR_NEW_CONN}s" -H 'Connection: close' http://127.0.0.1:$PP/ > $D/wrk.txt 2>&1
    callgrind_control -d $KPID >/dev/null
    sleep 1
    CONNS=$(awk '/requests in/ {print $1}' $D/wrk.txt)
    F=$(ls -t $D/cg.out* | head -1)
    TOTAL=$(callgrind_annotate $F 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
    echo "connections: $CONNS"
    echo "instructions/connection (one request each): $((TOTAL / ${CONNS:-1}))"
else
    h2load --h1 -n $N -c $C -m 1 http://127.0.0.1:$PP/ > $D/h2load.txt 2>&1
    callgrind_control -d $KPID >/dev/null
    sleep 1
    grep "requests:" $D/h2load.txt
    F=$(ls -t $D/cg.out* | head -1)
    TOTAL=$(callgrind_annotate $F 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
    echo "instructions/request (incl. startup): $((TOTAL / (N + 2000)))"
fi
OUT=${IR_OUT:-/tmp/keel-ir}; mkdir -p $OUT; cp $F $OUT/last.cg
kill $KPID $UPID 2>/dev/null; wait 2>/dev/null
rm -rf $D
