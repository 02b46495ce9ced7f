#!/usr/bin/env bash
# The export benchmark (README "Performance"): audit-exporter against the shell pipeline a user
# would write, and against the database's own limit, on events seeded with SQL.
#
#   scripts/bench.sh [--events 100000,1000000] [--with-10m] [--rounds 3] [--many 50,500]
#                    [--many-events 1000000] [--many-compression zstd]
#                    [--compressions none,gzip,zstd] [--formats parquet,ocsf,ocsf-parquet]
#                    [--no-check] [--fresh] [--debug]
#
# It builds the release binary and the benchmark fixture (a PostgreSQL of its own and an
# S3-protocol server), installs the AWS CLI from PyPI into target/bench/venv, and prints one
# table per N (also appended to target/bench/results.md). Seeded databases are kept in
# target/bench and reused; --fresh seeds them again. --debug uses the debug build (CI's smoke
# test: it proves the benchmark works, its timings mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
args=()
for arg in "$@"; do
  case "$arg" in
    --debug) profile=debug ;;
    *) args+=("$arg") ;;
  esac
done

# As scripts/test.sh does for PostgreSQL: on a clean Debian machine, install what is missing.
missing=()
command -v psql >/dev/null || missing+=(postgresql-client)
command -v zstd >/dev/null || missing+=(zstd)
command -v gzip >/dev/null || missing+=(gzip)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "Installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for tool in psql gzip zstd python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh needs $tool on PATH" >&2; exit 2; }
done

bench_dir=target/bench
venv="$bench_dir/venv"
if [ ! -x "$venv/bin/aws" ]; then
  echo "Installing the AWS CLI from PyPI into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check awscli
fi

if [ "$profile" = release ]; then
  cargo build --release --bin audit-exporter --example bench_fixture
else
  cargo build --bin audit-exporter --example bench_fixture
fi

exec python3 scripts/bench.py \
  --dir "$bench_dir" \
  --exporter "target/$profile/audit-exporter" \
  --fixture "target/$profile/examples/bench_fixture" \
  --aws "$venv/bin/aws" \
  "${args[@]}"
