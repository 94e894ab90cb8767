#!/usr/bin/env bash
# Benchmarks of `e2ee chat` (issue 15), figures for docs/BENCHMARKS.md; no test asserts
# on them. Needs tmux and sqlite3, and the binaries built first:
#
#   cargo build --release -p e2ee-cli -p e2ee-relay-server --bins
#   bash crates/chat/bench.sh [target/release]
#
# 1. Time to first frame with 100,000 messages in the store: a profile whose
#    conversation with bob holds 100,000 messages (inserted with sqlite3, half of them
#    its own), `e2ee chat` started in a 120x40 tmux terminal; the time from launch to
#    the chat's "history drawn" log line (the first frame with the open conversation's
#    last page), and from launch to its first frame. Median of RUNS starts.
# 2. Resident memory then: VmRSS and VmHWM of the chat process, from /proc.
# 3. Send-to-shown latency between two chat processes on loopback: alice's chat types
#    COUNT messages (one every 200 ms); bob's chat logs, for each message it drew, the
#    time from the sender's encryption (the message's sent_at) to the draw. p50, p99,
#    max. Both run on this machine, so one clock. With SIGNALS=off both chats have
#    typing notices and read receipts switched off (chat.json), which leaves the
#    message's own path: what typing and receipts add is the difference.
set -euo pipefail

BIN="${1:-target/release}"
RUNS="${RUNS:-5}"
COUNT="${COUNT:-100}"
MESSAGES="${MESSAGES:-100000}"
for tool in tmux sqlite3; do
  command -v "$tool" >/dev/null || { echo "bench.sh needs $tool" >&2; exit 1; }
done
[ -x "$BIN/e2ee" ] && [ -x "$BIN/e2ee-relay" ] || {
  echo "no $BIN/e2ee or $BIN/e2ee-relay: build them first (see the top of this file)" >&2
  exit 1
}
BIN="$(cd "$BIN" && pwd)"
WORK="$(mktemp -d)"
SOCK="e2ee-bench-$$"
cleanup() {
  tmux -L "$SOCK" kill-server 2>/dev/null || true
  [ -n "${RELAY_PID:-}" ] && kill "$RELAY_PID" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

"$BIN/e2ee-relay" --listen 127.0.0.1:0 --data-dir "$WORK/relay" >"$WORK/relay.out" 2>"$WORK/relay.log" &
RELAY_PID=$!
for _ in $(seq 100); do
  grep -q "listening on" "$WORK/relay.out" 2>/dev/null && break
  sleep 0.05
done
URL="$(sed -n 's/^listening on //p' "$WORK/relay.out")"

e2ee() { local home="$1"; shift; env -u E2EE_RELAY -u E2EE_HOME "$BIN/e2ee" --home "$WORK/$home" "$@"; }
e2ee alice register alice@example.org --relay "$URL" >/dev/null
e2ee bob register bob@example.org --relay "$URL" >/dev/null
e2ee alice send bob@example.org "first" >/dev/null
e2ee bob poll --timeout 5 >/dev/null
e2ee bob send alice@example.org "first back" >/dev/null
e2ee alice poll --timeout 5 >/dev/null

# 1 and 2: a big history.
STORE="$WORK/alice/default/store.sqlite"
sqlite3 "$STORE" <<SQL
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $MESSAGES)
INSERT INTO messages (conversation_id, peer, direction, message_id, kind, text, sent_at,
                      received_at, delivery, receipt)
SELECT 'direct:bob@example.org', 'bob@example.org',
       CASE WHEN i % 2 = 0 THEN 'out' ELSE 'in' END,
       'bench-' || i, 'text',
       'message number ' || i || ' of the benchmark history, with some words in it',
       1796500000000 + i * 1000, 1796500000000 + i * 1000,
       CASE WHEN i % 2 = 0 THEN 'sent' END,
       CASE WHEN i % 2 = 0 THEN 'read' END
FROM n;
SQL
echo "store: $(sqlite3 "$STORE" 'SELECT count(*) FROM messages') messages, $(du -h "$STORE" | cut -f1)"

start_chat() { # session home log
  tmux -L "$SOCK" -f /dev/null new-session -d -s "$1" -x 120 -y 40 \
    "exec env -u E2EE_RELAY -u E2EE_HOME NO_COLOR=1 E2EE_LOG=e2ee_chat=info $BIN/e2ee --home $WORK/$2 chat 2>$3"
}
wait_log() { # file pattern
  for _ in $(seq 3000); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.005
  done
  echo "timed out waiting for '$2' in $1" >&2
  return 1
}
field() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$1" | head -1; }

first_frames=(); histories=(); rss=(); hwm=()
for run in $(seq "$RUNS"); do
  log="$WORK/start-$run.log"
  t0="$(now_ms)"
  start_chat "s$run" alice "$log"
  wait_log "$log" "history drawn"
  t1="$(now_ms)"
  pid="$(tmux -L "$SOCK" display -p -t "s$run" '#{pane_pid}')"
  histories+=("$((t1 - t0))")
  first_frames+=("$(field "$log" elapsed_ms)")
  rss+=("$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")")
  hwm+=("$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")")
  tmux -L "$SOCK" send-keys -t "s$run" C-c
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "time to history drawn (launch to first frame with the history, $MESSAGES messages):" \
  "median $(median "${histories[@]}") ms of ${histories[*]} ms"
echo "chat's own first frame (from its start): median $(median "${first_frames[@]}") ms"
echo "resident memory then: median VmRSS $(( $(median "${rss[@]}") / 1024 )) MiB," \
  "peak VmHWM $(( $(median "${hwm[@]}") / 1024 )) MiB"

# 3: send-to-shown latency between two chats.
if [ "${SIGNALS:-on}" = off ]; then
  for home in alice bob; do
    echo '{"typing": false, "read_receipts": false}' >"$WORK/$home/default/chat.json"
  done
fi
start_chat a alice "$WORK/a.log"
start_chat b bob "$WORK/b.log"
wait_log "$WORK/a.log" "history drawn"
wait_log "$WORK/b.log" "history drawn"
sleep 1
# Only the probes count: a chat that starts is first handed what queued before it
# (older messages, whose "latency" is how long the chat was closed).
probe_start="$(now_ms)"
probes() {
  sed -n 's/.*message shown sent_at=\([0-9]*\) latency_ms=\([0-9]*\).*/\1 \2/p' "$WORK/b.log" |
    awk -v t="$probe_start" '$1 >= t {print $2}'
}
for i in $(seq "$COUNT"); do
  tmux -L "$SOCK" send-keys -t a -l "latency probe $i"
  tmux -L "$SOCK" send-keys -t a Enter
  sleep 0.2
done
for _ in $(seq 300); do
  [ "$(probes | wc -l)" -ge "$COUNT" ] && break
  sleep 0.1
done
probes | sort -n >"$WORK/latency"
n="$(wc -l <"$WORK/latency")"
pct() { awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if (i<1) i=1; print a[i]}' "$WORK/latency"; }
echo "send-to-shown latency over $n of $COUNT probes: p50 $(pct 50) ms, p99 $(pct 99) ms, max $(tail -1 "$WORK/latency") ms"
