#!/usr/bin/env bash
# Runs the client bench (benches/client.rs) on the pre-refactor commit and on HEAD, one
# after the other in the same minutes, and prints both.
#
# The old commit is checked out in a temporary `git worktree` with the bench copied in:
# benches/before/client.rs, the same measurement written against the pre-issue-13 API
# (`poll` + `mark_shown` where HEAD has `sync_once` + events + `commit`), and its
# Cargo.toml entry; it builds into this worktree's own target/ (no extra target
# directory on the shared disk), and HEAD is rebuilt after it. Each side runs against
# its own release `e2ee-relay`.
#
# Usage: crates/client-core/benches/compare.sh [BEFORE_COMMIT] [criterion filter]
# (COMPARE_ONLY=before runs the old side alone.)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
before="${1:-0172948}"
filter="${2:-client/}"
target="$root/target"
scratch="$(mktemp -d)"
old="$scratch/before"

cleanup() {
    git -C "$root" worktree remove --force "$old" >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT

run_bench() {
    local tree="$1" label="$2"
    echo "== $label ($(git -C "$tree" rev-parse --short HEAD)), load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    (
        cd "$tree"
        export CARGO_TARGET_DIR="$target"
        # Both trees' crates hash to the same artifact names (cargo hashes a path
        # package by its path inside the workspace), and an artifact newer than its
        # sources counts as fresh: without this, the second side would link crates the
        # first side built from the other tree's sources.
        find crates -name '*.rs' -exec touch {} +
        # The bench profile, as `cargo bench` builds: one set of optimized dependencies.
        cargo build --profile bench -q -p e2ee-relay-server --bin e2ee-relay
        E2EE_RELAY_BIN="$target/release/e2ee-relay" \
            cargo bench -q -p e2ee-client-core --bench client -- "$filter" --output-format bencher
    ) | sed "s/^/$label /" | tee -a "$scratch/results"
}

git -C "$root" worktree add --detach "$old" "$before" >/dev/null 2>&1
mkdir -p "$old/crates/client-core/benches"
cp "$root/crates/client-core/benches/before/client.rs" "$old/crates/client-core/benches/client.rs"
if ! grep -q '^name = "client"' "$old/crates/client-core/Cargo.toml"; then
    python3 - "$old/crates/client-core/Cargo.toml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
text = text.replace(
    "[dev-dependencies]\n",
    "[dev-dependencies]\ncriterion.workspace = true\n",
    1,
)
text += '\n[[bench]]\nname = "client"\nharness = false\n'
open(path, "w").write(text)
PY
fi

run_bench "$old" before
if [[ "${COMPARE_ONLY:-}" != before ]]; then
    run_bench "$root" after
fi
echo
echo "== both (ns per message; bencher format: median of criterion's samples)"
cat "$scratch/results"
