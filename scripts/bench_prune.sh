#!/usr/bin/env bash
# The prune benchmark (docs/retention.md): on N seeded events (default 20M) of which a
# destination has delivered half, `audit-exporter prune` deletes that half while pgbench keeps
# inserting; prints the prune's time, the worst insert latency meanwhile, and the table's size
# before and after, then cycles of steady insert + prune + VACUUM.
#
#   scripts/bench_prune.sh [--events 20000000] [--rate 500] [--cycles 3] [--in-place] [--debug]
#
# The seeded database (target/bench, shared with scripts/bench.sh) is reused; the prune works
# on a copy of it. --debug uses the debug build (its timings mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
args=()
for arg in "$@"; do
  case "$arg" in
    --debug) profile=debug ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exec python3 scripts/bench_prune.py --help ;;
    *) args+=("$arg") ;;
  esac
done
for tool in psql pgbench python3; do
  command -v "$tool" >/dev/null || { echo "bench_prune.sh needs $tool on PATH" >&2; exit 2; }
done
if [ "$profile" = release ]; then
  cargo build --release --bin audit-exporter --example bench_fixture
else
  cargo build --bin audit-exporter --example bench_fixture
fi
mkdir -p target/bench
exec python3 scripts/bench_prune.py \
  --dir target/bench \
  --exporter "target/$profile/audit-exporter" \
  --fixture "target/$profile/examples/bench_fixture" \
  "${args[@]}"
