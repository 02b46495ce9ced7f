#!/usr/bin/env bash
# Runs the fault suite (tests/it/faults/) and prints one summary line per scenario: events
# written and exported, runs, kills, injected faults by kind, lost and duplicated events.
#   scripts/fault-suite.sh            the short form CI runs: 30 s of writers
#   scripts/fault-suite.sh --long     10 minutes of writers
# AUDIT_EXPORTER_FAULT_SECS sets the writers' duration directly; AUDIT_EXPORTER_FAULT_SEED
# replays a scenario's random choices. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=30
if [ "${1:-}" = "--long" ]; then
  secs=600
  shift
fi
export AUDIT_EXPORTER_FAULT_SECS="${AUDIT_EXPORTER_FAULT_SECS:-$secs}"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
started=$(date +%s)
status=0
./scripts/test.sh --test it "$@" faults:: -- --nocapture 2>&1 | tee "$log" || status=$?
echo
echo "Fault suite, writers for ${AUDIT_EXPORTER_FAULT_SECS} s, $(( $(date +%s) - started )) s in all:"
grep -E '^fault-suite|^test faults::.*(ok|FAILED)$' "$log" || true
exit "$status"
