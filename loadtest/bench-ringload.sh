#!/usr/bin/env bash
# ringload vs wrk, closed loop, one thread each, against the same `ringload serve`.
# Backend pinned to core 0, generator to core 1; runs interleaved A B A B.
# Columns: requests/s, p50 and mean latency as each tool reports them; generator CPU us per request
# (user+sys of the generator process); backend core busy % during the run.
# Usage: loadtest/bench-ringload.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
CONNS=${3:-50}
# RL_CONNS: connections for ringload only (default CONNS), to compare at equal requests in flight.
RL_CONNS=${RL_CONNS:-$CONNS}
# SERVE_ARGS: extra `ringload serve` flags, e.g. "--delay 1ms" for a backend that is not the
# bottleneck (then both tools' latency is the delay plus their own measuring overhead).
SERVE_ARGS=${SERVE_ARGS:-}
PORT=${PORT:-18001}
BIN=${BIN:-target/release/ringload}
URL="http://127.0.0.1:$PORT/"
TIMES=$(mktemp)
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$BIN" ] || cargo build -p ringload --release
# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
taskset -c 0 "$BIN" serve --listen "127.0.0.1:$PORT" $SERVE_ARGS 2>/dev/null &
SERVE=$!
trap 'kill $SERVE 2>/dev/null; rm -f "$TIMES"' EXIT
sleep 0.5
TCK=$(getconf CLK_TCK)
serve_ticks() { awk '{print $14 + $15}' "/proc/$SERVE/stat"; }
# gen_cpu_us_per_req REQUESTS: generator CPU per request from /usr/bin/time's output.
gen_cpu_us_per_req() { awk -v n="$1" '{printf "%.2f", ($1 + $2) * 1e6 / n}' "$TIMES"; }
# to_us: wrk's "291.00us" / "1.20ms" / "1.02s" on stdin -> whole microseconds.
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); m=1} else if (v ~ /ms$/) {sub(/ms/,"",v); m=1000} else {sub(/s$/,"",v); m=1000000}; printf "%d", v*m + 0.5}'; }
busy() { awk -v a="$1" -v b="$2" -v t="$TCK" -v s="$SECS" 'BEGIN {printf "%d", (b - a) * 100 / t / s}'; }

echo "| round | tool | req/s | p50 (us) | mean (us) | generator CPU us/req | backend core busy % |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for round in $(seq 1 "$ROUNDS"); do
  before=$(serve_ticks)
  json=$(/usr/bin/time -f "%U %S" -o "$TIMES" taskset -c 1 "$BIN" -t 1 -c "$RL_CONNS" -d "${SECS}s" --json "$URL")
  after=$(serve_ticks)
  read -r rps p50 total mean < <(echo "$json" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(round(j["rps"]), j["latency_us"]["p50"], j["requests"], round(j["latency_us"]["mean"]))')
  echo "| $round | ringload | $rps | $p50 | $mean | $(gen_cpu_us_per_req "$total") | $(busy "$before" "$after") |"

  before=$(serve_ticks)
  out=$(/usr/bin/time -f "%U %S" -o "$TIMES" taskset -c 1 wrk -t1 -c "$CONNS" -d "${SECS}s" --latency "$URL")
  after=$(serve_ticks)
  rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}')
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}' | to_us)
  mean=$(echo "$out" | awk '$1 == "Latency" && NF >= 5 {print $2; exit}' | to_us)
  echo "| $round | wrk | $rps | $p50 | $mean | $(gen_cpu_us_per_req "$total") | $(busy "$before" "$after") |"
done
