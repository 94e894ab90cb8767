#!/bin/bash
# Relay load benchmark: redis-benchmark beside the relay on Redis and on SQLite.
set -u
cd "$(dirname "$0")/../.."
B=target/release
echo "== redis-benchmark"
redis-benchmark -h 127.0.0.1 -p 6379 -t lpush,rpop -n 200000 -c 50 -q
run() { # label, extra relay args, loadgen args
  local dir; dir=$(mktemp -d)
  $B/e2ee-relay --listen 127.0.0.1:0 --data-dir "$dir" $2 > "$dir/out" 2>"$dir/err" &
  local pid=$!
  for i in $(seq 50); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
  local url; url=$(sed -n 's/listening on //p' "$dir/out")
  echo "== $1: e2ee-relay-load --url $url $3"
  $B/e2ee-relay-load --url "$url" $3
  kill -TERM $pid; wait $pid; rm -rf "$dir"
}
P="--redis-url redis://127.0.0.1:6379 --redis-key-prefix bench-$$"
run "redis max" "$P" "--users 200 --senders 32 --batch 20 --seconds 10"
run "redis 5000/s" "$P" "--users 200 --senders 16 --batch 10 --rate 5000 --seconds 10"
run "sqlite max" "" "--users 200 --senders 32 --batch 20 --seconds 10"
run "sqlite 5000/s" "" "--users 200 --senders 16 --batch 10 --rate 5000 --seconds 10"
