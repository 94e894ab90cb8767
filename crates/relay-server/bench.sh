#!/bin/bash
# Relay load benchmark: redis-benchmark beside the relay on Redis and on SQLite, driven by
# e2ee-relay-load. One message per request first (what people do, the headline figures),
# then many idle long polls, then the batched runs, labelled "batched".
set -u
cd "$(dirname "$0")/../.."
# Binaries from `cargo build --release -p e2ee-relay-server -p e2ee-relay-load`,
# honouring CARGO_TARGET_DIR.
B=${CARGO_TARGET_DIR:-target}/release
# RELAY_BIN runs another relay build under the same load (a "before" figure in the same
# hour: a release build of an earlier commit); the generator is always this tree's.
RELAY=${RELAY_BIN:-$B/e2ee-relay}
# The fan-out limit is lifted as the send limit is (builds older than fan-out lack it).
FANOUT_LIMITS=""
"$RELAY" --help | grep -q -- --fanout-burst &&
  FANOUT_LIMITS="--fanout-rate-per-minute 1000000000 --fanout-burst 10000000"
# 15,000 idle polls are 15,000 sockets in the relay and as many in the generator; each
# process needs its own file limit above that (20,000 is this machine's hard cap).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "== relay: $RELAY ($("$RELAY" --version 2>/dev/null))"
echo "== machine: $(nproc) cores; $(uptime); open files per process: $(ulimit -n)"
# How long this machine deschedules a busy process by itself: on a VM, stalls of
# several milliseconds show up here with nothing of ours running, and each one lands in
# the latency tail of whatever run it hits (docs/BENCHMARKS.md).
echo "== machine scheduling jitter: redis-cli --intrinsic-latency 10"
redis-cli --intrinsic-latency 10 | tr '\r' '\n' | grep -E "^Max latency" | tail -1
echo "== redis-benchmark"
redis-benchmark -h 127.0.0.1 -p 6379 -t lpush,rpop -n 200000 -c 50 -q
REDIS=redis://127.0.0.1:6379
run() { # label, extra relay args, loadgen args (the relay metrics' request counts are printed too)
  local dir i; dir=$(mktemp -d)
  # The per-sender send limit (600 envelopes/min) is for people, not for a generator
  # sending thousands per second from 200 accounts.
  "$RELAY" --listen 127.0.0.1:0 --data-dir "$dir" --send-rate-per-minute 100000000 \
    --send-burst 1000000 $FANOUT_LIMITS $2 > "$dir/out" 2>"$dir/err" &
  local pid=$!
  for i in $(seq 50); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
  local url; url=$(sed -n 's/listening on //p' "$dir/out")
  echo "== $1: e2ee-relay-load $3"
  # The generator reads the relay's CPU time and memory from /proc (--relay-pid) and
  # Redis's from INFO cpu (--redis-url), over the sending and draining phase.
  local redis_cpu=""; [[ "$2" == *--redis-url* ]] && redis_cpu="--redis-url $REDIS"
  $B/e2ee-relay-load --url "$url" --relay-pid $pid $redis_cpu $3
  echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "   requests served: $(curl -s "$url/metrics" | sed -n 's/^e2ee_relay_http_request_duration_seconds_count{method="\([A-Z]*\)",route="\([^"]*\)"} \(.*\)/\1 \2 \3;/p' | tr '\n' ' ')"
  kill -TERM $pid; wait $pid; rm -rf "$dir"
}
P="--redis-url $REDIS --redis-key-prefix bench-$$"
# Group sends (issue 14): `bench.sh fanout` runs only these. Each send is one
# POST /v1/messages/multi to the same 1,000 recipients, who do not poll (delivery is
# what the runs below measure). The paced run gives the accept latency of a
# 1,000-recipient send (goal: p99 under 50 ms), the closed-loop one the envelopes
# queued per second through fan-out (goal: at least half of redis-benchmark's LPUSH
# rate printed above, in the same run). The relay's fan-out limit is lifted, as the
# send limit is.
fanout_runs() {
  run "redis fan-out to 1000, 10 sends/s paced (1 of 2)" "$P" "--fanout 1000 --senders 4 --rate 10 --seconds 10"
  run "redis fan-out to 1000, 10 sends/s paced (2 of 2)" "$P" "--fanout 1000 --senders 4 --rate 10 --seconds 10"
  run "redis fan-out to 1000, max (closed loop, 8 senders)" "$P" "--fanout 1000 --senders 8 --seconds 10"
  run "sqlite fan-out to 1000, 10 sends/s paced" "" "--fanout 1000 --senders 4 --rate 10 --seconds 10"
  run "sqlite fan-out to 1000, max (closed loop, 8 senders)" "" "--fanout 1000 --senders 8 --seconds 10"
}
# Many waiters: 15,000 accounts each hold a minute-long poll (one connection each, as
# the messenger client) while 500 msg/s go to them, one message per request to random
# ones of them; the generator reports the relay's RSS per waiting poll, measured with
# every poll parked before the load starts (goal: under 16 KB each, p99 under 10 ms).
# Then 15,000 that only wait while 500 msg/s go to 200 others (the earlier runs'
# configuration). `bench.sh idle` runs only these.
idle_runs() {
  run "redis 15000 long polls, 500/s to them" "$P" "--users 15000 --senders 16 --rate 500 --open-loop --seconds 10"
  run "sqlite 15000 long polls, 500/s to them" "" "--users 15000 --senders 16 --rate 500 --open-loop --seconds 10"
  run "redis 15000 idle long polls, 500/s to 200 others" "$P" "--users 200 --idle-waiters 15000 --senders 16 --rate 500 --open-loop --seconds 10"
}
# Request authentication side by side (issue 17 item 1): the same relay build and the
# same load, every request MACed under a session (the default, as the messenger client)
# or signed with Ed25519 (as clients older than sessions), alternating so both see the
# same machine. The figure that counts is the relay's CPU per delivered message.
# `bench.sh auth` runs only these.
auth_runs() {
  for i in 1 2; do
    run "redis max, session MACs ($i of 2)" "$P" "--users 200 --senders 32 --seconds 8 --auth session"
    run "redis max, signed requests ($i of 2)" "$P" "--users 200 --senders 32 --seconds 8 --auth signature"
  done
  run "sqlite max, session MACs" "" "--users 200 --senders 32 --seconds 8 --auth session"
  run "sqlite max, signed requests" "" "--users 200 --senders 32 --seconds 8 --auth signature"
}
# Max rate is closed loop (each sender waits for its answer). The latency figures
# that count are the open-loop runs: one request every batch/rate seconds whatever
# the answers, latency measured from each request's scheduled time.
#
# One message per request (the generator's default), 200 receivers polling as the
# messenger client does; every sending account has its own connection and sends one
# request at a time on it. `bench.sh headline` runs only these (with RELAY_BIN: the
# "before" figures of another build, in the same hour).
headline_runs() {
  run "redis max, one message per request" "$P" "--users 200 --senders 32 --seconds 10"
  # The latency goal's run, three times: one VM stall in a 10 s window can move a p99.
  # 16 sending accounts, each on its own connection sending one request at a time.
  for i in 1 2 3; do
    run "redis 5000/s open loop, one message per request ($i of 3)" "$P" "--users 200 --senders 16 --rate 5000 --open-loop --seconds 10"
  done
  # The same rate from 200 sending accounts (25 each a second, on 200 connections).
  run "redis 5000/s open loop, one message per request, 200 senders" "$P" "--users 200 --senders 200 --rate 5000 --open-loop --seconds 10"
  run "sqlite max, one message per request" "" "--users 200 --senders 32 --seconds 10"
  run "sqlite 5000/s open loop, one message per request" "" "--users 200 --senders 16 --rate 5000 --open-loop --seconds 10"
}
case "${1:-}" in
  fanout) fanout_runs; exit 0 ;;
  idle) idle_runs; exit 0 ;;
  auth) auth_runs; exit 0 ;;
  headline) headline_runs; exit 0 ;;
esac
headline_runs
idle_runs
# Batched: 10-20 envelopes per request, for comparison with the earlier figures only.
run "redis max, batched (20 per request)" "$P" "--users 200 --senders 32 --batch 20 --seconds 10"
run "redis 5000/s open loop, batched (10 per request)" "$P" "--users 200 --senders 16 --batch 10 --rate 5000 --open-loop --seconds 10"
run "redis 5000/s open loop, batched (10 per request), separate acks" "$P" "--users 200 --senders 16 --batch 10 --rate 5000 --open-loop --seconds 10 --separate-acks"
run "sqlite max, batched (20 per request)" "" "--users 200 --senders 32 --batch 20 --seconds 10"
fanout_runs
