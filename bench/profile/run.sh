#!/usr/bin/env bash
# Profiles one configuration under load, pinned as bench/cpu pins it:
# Caddy on core 0 with GOMAXPROCS=1, wrk on core 1; a 15 s CPU profile from
# Caddy's admin endpoint. Needs wrk and taskset; not part of CI.
#
#   bash bench/profile/run.sh core   # sechard's core chain
#   bash bench/profile/run.sh static # Caddy's header directive, the same headers
#   go tool pprof -top -cum /tmp/sechard-profile/caddy /tmp/sechard-profile/core.pb
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: run.sh core|static}
out=/tmp/sechard-profile
mkdir -p "$out"
go build -o "$out/caddy" ./cmd/caddy
taskset -c 0 env GOMAXPROCS=1 "$out/caddy" run --config "bench/profile/Caddyfile.$name" --adapter caddyfile >"$out/caddy.log" 2>&1 &
caddy=$!
trap 'kill $caddy 2>/dev/null || true' EXIT
sleep 2
taskset -c 1 wrk -t1 -c16 -d22s -H "Origin: https://app.example.com" http://127.0.0.1:9090/ >"$out/wrk.txt" &
sleep 3
curl -s "http://127.0.0.1:2999/debug/pprof/profile?seconds=15" >"$out/$name.pb"
wait %2 || true
grep -E "Requests/sec|Non-2xx" "$out/wrk.txt"
echo "profile: $out/$name.pb (binary: $out/caddy)"
