#!/usr/bin/env bash
# Writes the table of docs/RELIABILITY.md: runs the fault-injection and hostile-relay
# end-to-end tests (tests/faults.rs, tests/hostile_relay.rs) over the real binaries,
# each appending its row (fault, sent, received, lost, duplicated), and puts the rows
# between the table markers. Needs redis-server on PATH, and root for the disk tests
# (they mount a small tmpfs). Usage: bash tests/reliability.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

doc=docs/RELIABILITY.md
rows="$(mktemp)"
trap 'rm -f "$rows" "$rows.doc"' EXIT

# Builds e2ee and e2ee-relay too, with the same features as `cargo test --workspace`
# (another selection of packages would rebuild the dependencies).
cargo test --workspace --locked --no-run
started=$SECONDS
E2EE_RELIABILITY_REPORT="$rows" cargo test --workspace --locked --test faults --test hostile_relay \
    -- --test-threads=1
took=$((SECONDS - started))

{
    sed '/<!-- table:start -->/q' "$doc"
    echo "| fault | sent | received | lost | duplicated in the UI | what the user saw |"
    echo "|---|---:|---:|---:|---:|---|"
    cat "$rows"
    echo
    echo "Produced by \`bash tests/reliability.sh\` on $(date -u +%Y-%m-%d) at commit" \
        "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ' (with local changes)'):" \
        "$(wc -l < "$rows") faults, ${took} s on $(nproc) cores."
    sed -n '/<!-- table:end -->/,$p' "$doc"
} > "$rows.doc"
mv "$rows.doc" "$doc"
echo "wrote $doc"
