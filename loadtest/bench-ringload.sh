#!/usr/bin/env bash
# ringload vs wrk, closed loop, one thread each, against the same `ringload serve`.
# Backend pinned to core 0, generator to core 1; runs interleaved A B A B.
# Usage: loadtest/bench-ringload.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
CONNS=${3:-50}
PORT=${PORT:-18001}
BIN=${BIN:-target/release/ringload}
URL="http://127.0.0.1:$PORT/"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$BIN" ] || cargo build -p ringload --release
taskset -c 0 "$BIN" serve --listen "127.0.0.1:$PORT" 2>/dev/null &
SERVE=$!
trap 'kill $SERVE 2>/dev/null' EXIT
sleep 0.5
echo "| round | tool | req/s | p50 (us) |"
echo "| --- | --- | ---: | ---: |"
for round in $(seq 1 "$ROUNDS"); do
  json=$(taskset -c 1 "$BIN" -t 1 -c "$CONNS" -d "${SECS}s" --json "$URL")
  rps=$(echo "$json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["rps"]))')
  p50=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["latency_us"]["p50"])')
  echo "| $round | ringload | $rps | $p50 |"
  out=$(taskset -c 1 wrk -t1 -c "$CONNS" -d "${SECS}s" --latency "$URL")
  rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else {sub(/s$/,"",v); print v*1000000}}')
  echo "| $round | wrk | $rps | $p50 |"
done
