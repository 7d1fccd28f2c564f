#!/bin/bash
# CPU per request of ringlb and nginx (1 worker each, same ECDSA P-256 certificate, same
# ringload backend with upstream keepalive): TLS keepalive HTTP/1.1 (h2load --h1, 20
# connections), HTTP/2 (h2load, 4 connections x 100 streams) and a new TLS connection per
# request (openssl s_time -new). Proxy CPU = utime+stime of its threads over the run.
# Needs: a release build (cargo build --release -p ringlb -p ringload), nginx, h2load
# (nghttp2-client), openssl. Results: docs/tls.md.
set -u
R="$(cd "$(dirname "$0")/.." && pwd)/target/release"
D="${TMPDIR:-/tmp}/ringlb-tls-bench"; mkdir -p $D; cd $D
[ -f ec.pem ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench.test -addext subjectAltName=DNS:bench.test -days 2 -keyout ec.key -out ec.pem 2>/dev/null
BP=39101; RP=39443; NP=47613
$R/ringload serve --listen 127.0.0.1:$BP --threads 1 >/dev/null 2>&1 & BPID=$!
cat > ringlb.toml <<EOT
[runtime]
workers = 1
pin_workers = false
[[server]]
listen = ["127.0.0.1:$RP"]
tls_certificate = "$D/ec.pem"
tls_certificate_key = "$D/ec.key"
keepalive_requests = 1000000
  [[server.location]]
  path = "/"
  proxy_pass = "app"
[upstream.app]
keepalive = 64
servers = [ { addr = "127.0.0.1:$BP" } ]
EOT
cat > nginx.conf <<EOT
worker_processes 1;
pid $D/nginx.pid;
error_log $D/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server 127.0.0.1:$BP; keepalive 64; }
  server {
    listen 127.0.0.1:$NP ssl http2;
    keepalive_requests 1000000;
    ssl_certificate $D/ec.pem; ssl_certificate_key $D/ec.key;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOT
$R/ringlb -c ringlb.toml 2>ringlb.log & RPID=$!
nginx -c $D/nginx.conf -g 'daemon off;' & NPID=$!
sleep 1
cpu() { # total jiffies of all threads/processes given
  local t=0; for p in "$@"; do for f in /proc/$p/task/*/stat; do set -- $(sed 's/.*) //' $f); t=$((t + ${12} + ${13})); done; done; echo $t; }
NW=$(pgrep -P $NPID | head -1)
run() { # name pids... -- command
  local name=$1; shift; local pids=(); while [ "$1" != "--" ]; do pids+=($1); shift; done; shift
  local c0=$(cpu "${pids[@]}"); local out=$("$@" 2>&1); local c1=$(cpu "${pids[@]}")
  local reqs=$(echo "$out" | grep -oE "[0-9]+ succeeded" | head -1 | awk "{print \$1}")
  [ -z "$reqs" ] && reqs=$(echo "$out" | grep -oE "[0-9]+ connections in [0-9.]+s" | head -1 | awk '{print $1}')
  local rps=$(echo "$out" | grep -oE "finished in [0-9.]+m?s, [0-9.]+ req/s" | awk '{print $4}')
  local us=$(awk -v c=$((c1-c0)) -v n=$reqs 'BEGIN{ if (n>0) printf "%.1f", c*10000/n; else print "?" }')
  echo "$name: $reqs requests, proxy CPU $((c1-c0)) jiffies, $us us/request, $rps req/s"
}
for round in 1 2; do
  run "ringlb h1-tls-keepalive" $RPID -- h2load --h1 -c 20 -n 60000 https://127.0.0.1:$RP/
  run "nginx  h1-tls-keepalive" $NW -- h2load --h1 -c 20 -n 60000 https://127.0.0.1:$NP/
  run "ringlb h2-100-streams" $RPID -- h2load -c 4 -m 100 -n 100000 https://127.0.0.1:$RP/
  run "nginx  h2-100-streams" $NW -- h2load -c 4 -m 100 -n 100000 https://127.0.0.1:$NP/
  run "ringlb new-conn" $RPID -- openssl s_time -connect 127.0.0.1:$RP -new -time 4 -www / 
  run "nginx  new-conn" $NW -- openssl s_time -connect 127.0.0.1:$NP -new -time 4 -www /
done
kill $RPID $NPID $BPID
