#!/usr/bin/env bash
# IRC client -> gateway -> relay -> gateway -> IRC client latency on loopback, and the
# gateways' memory. Two profiles on one real relay (embedded SQLite), each with its own
# `e2ee irc`; a raw IRC connection to each (python3, standard library only). Alice's
# client sends one PRIVMSG at a time and waits until Bob's client has it: each sample
# is the wall time from the write on Alice's socket to the read on Bob's.
#
#   crates/irc/bench.sh [MESSAGES]        (default 200)
#   crates/irc/bench.sh channels [COUNT]  (default 1000)
#   BIN=target/release crates/irc/bench.sh
#
# The `channels` mode measures a gateway's memory with COUNT channels joined: Alice's
# IRC client JOINs #g0..#gN-1 (each a new group, made by the gateway), then a second
# client connects and is joined to all of them on connect (JOIN, topic, NAMES each);
# the RSS is read after each step.
#
# Uses the binaries in $BIN (default target/debug: `cargo build -p e2ee-cli -p
# e2ee-relay-server` first). Prints p50/p90/p99/max in ms, the gateways' RSS, and the
# load average, for docs/BENCHMARKS.md.
set -euo pipefail
MODE=latency
if [ "${1:-}" = channels ]; then MODE=channels; shift; fi
N=${1:-200}
[ "$MODE" = channels ] && N=${1:-1000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/debug}
# Under target/: scratch directories in /tmp are not safe from other jobs' cleanups.
mkdir -p "$ROOT/target"
T=$(mktemp -d "$ROOT/target/irc-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT

"$BIN/e2ee-relay" --listen 127.0.0.1:0 --data-dir "$T/relay" >"$T/relay.out" 2>"$T/relay.log" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$T/relay.out" ] && break; sleep 0.1; done
URL=$(sed 's/^listening on //' "$T/relay.out")
e2ee() { env -u E2EE_RELAY -u E2EE_PASSPHRASE_COMMAND "$BIN/e2ee" "$@"; }
e2ee --home "$T/a" register alice@example.org --relay "$URL" >/dev/null
e2ee --home "$T/b" register bob@example.org --relay "$URL" >/dev/null
e2ee --home "$T/a" add-contact bob@example.org >/dev/null
e2ee --home "$T/b" add-contact alice@example.org >/dev/null

start_gateway() {
  # Not through the e2ee function: $! must be the gateway itself (env execs it).
  env -u E2EE_RELAY -u E2EE_PASSPHRASE_COMMAND "$BIN/e2ee" --home "$1" irc \
    --listen 127.0.0.1:0 >"$1.irc.out" 2>"$1.irc.err" &
  PIDS+=($!)
}
port_of() {
  for _ in $(seq 100); do [ -s "$1.irc.out" ] && break; sleep 0.1; done
  sed -E 's/.*listening on 127\.0\.0\.1:([0-9]+);.*/\1/' "$1.irc.out"
}
start_gateway "$T/a"; GA=${PIDS[-1]}
start_gateway "$T/b"; GB=${PIDS[-1]}
PA=$(port_of "$T/a"); PB=$(port_of "$T/b")

rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$1/status"; }

if [ "$MODE" = channels ]; then
  echo "gateway RSS before: $(rss "$GA")"
  python3 - "$PA" "$N" "$GA" <<'PY'
import socket, sys, time
pa, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return f"{int(line.split()[1]) / 1024:.1f} MB"
class Irc:
    def __init__(self, port, nick):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.s.sendall(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    def count(self, ok, want, timeout=600):
        got, end = 0, time.monotonic() + timeout
        while got < want:
            while b"\n" in self.buf and got < want:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.decode(errors="replace").rstrip("\r")
                words = line.split(" ")
                if "PING" in words[:2]:
                    self.s.sendall(("PONG " + " ".join(words[words.index("PING") + 1:]) + "\r\n").encode())
                if ok(line):
                    got += 1
            if got >= want:
                break
            if time.monotonic() > end:
                raise SystemExit(f"timed out after {got} of {want}")
            self.s.settimeout(max(0.01, end - time.monotonic()))
            try:
                self.buf += self.s.recv(65536)
            except socket.timeout:
                pass
a = Irc(pa, "alice")
a.count(lambda l: " 366 alice &e2ee " in l, 1)
t0 = time.perf_counter()
for i in range(n):
    a.s.sendall(f"JOIN #g{i}\r\n".encode())
a.count(lambda l: " 366 alice #g" in l, n)
made = time.perf_counter() - t0
print(f"channels={n} created and joined in {made:.1f} s; gateway RSS {rss()}")
t0 = time.perf_counter()
b = Irc(pa, "again")
b.count(lambda l: " 366 again #g" in l, n)
print(f"a second client joined to all {n} on connect in {time.perf_counter() - t0:.1f} s; gateway RSS {rss()}")
PY
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; binaries: $BIN"
  exit 0
fi

python3 - "$PA" "$PB" "$N" <<'PY'
import socket, sys, time
pa, pb, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

class Irc:
    def __init__(self, port, nick):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")
        self.wait(lambda l: " 366 " in l)
    def send(self, text):
        self.s.sendall(text.encode())
    def wait(self, ok, timeout=30):
        end = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.decode(errors="replace").rstrip("\r")
                self.seen = getattr(self, "seen", [])[-20:] + [line]
                words = line.split(" ")
                if "PING" in words[:2]:
                    self.send("PONG " + " ".join(words[words.index("PING") + 1:]) + "\r\n")
                if ok(line):
                    return line
            if time.monotonic() > end:
                raise SystemExit(f"timed out; last lines: {getattr(self, 'seen', [])!r}")
            self.s.settimeout(max(0.01, end - time.monotonic()))
            try:
                self.buf += self.s.recv(65536)
            except socket.timeout:
                pass

a, b = Irc(pa, "alice"), Irc(pb, "bob")
# Warm-up: the first message sets up the session (X3DH); it is not counted.
a.send("PRIVMSG bob :warm-up\r\n"); b.wait(lambda l: l.endswith(":warm-up"))
samples = []
for i in range(n):
    text = f"m{i}"
    t0 = time.perf_counter()
    a.send(f"PRIVMSG bob :{text}\r\n")
    b.wait(lambda l: l.endswith(" :" + text))
    samples.append((time.perf_counter() - t0) * 1000)
samples.sort()
q = lambda p: samples[min(len(samples) - 1, int(p * len(samples)))]
print(f"messages={n} p50={q(0.50):.1f}ms p90={q(0.90):.1f}ms p99={q(0.99):.1f}ms max={samples[-1]:.1f}ms")
PY
echo "gateway RSS: alice $(rss "$GA"), bob $(rss "$GB")"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; binaries: $BIN"
