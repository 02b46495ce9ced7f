#!/usr/bin/env bash
# Runs audit-exporter for real on its embedded defaults: a PostgreSQL of its own (started from
# the machine's binaries, data in .audit-exporter/), a few sample events, two exports into a
# local directory (the second, with nothing new, writes a heartbeat) after a test delivery, then
# shows the objects.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin audit-exporter
bin=target/debug/audit-exporter
out="$PWD/demo-output"

# Destinations from the environment, as a deployment would set them.
export AUDIT_EXPORTER__DESTINATIONS__ARCHIVE__URL="file://$out/archive"
export AUDIT_EXPORTER__DESTINATIONS__ACME__URL="file://$out/acme"
export AUDIT_EXPORTER__DESTINATIONS__ACME__TENANT_ID=acme
export AUDIT_EXPORTER__DESTINATIONS__ACME__COMPRESSION=gzip
export AUDIT_EXPORTER__LOG__LEVEL=warn

echo "== config check"
"$bin" config check
echo "== migrate"
"$bin" migrate
echo "== verify: a test object through each destination's write path, under test/"
"$bin" verify
echo "== append sample events"
"$bin" append --tenant acme --action user.login \
  --actor '{"type":"user","id":"u-1001","name":"Ada","ip":"203.0.113.7","user_agent":"Mozilla/5.0"}'
"$bin" append --tenant acme --action project.deleted \
  --actor '{"type":"user","id":"u-1001","name":"Ada"}' --target '{"type":"project","id":"p-42"}' \
  --metadata '{"reason":"cleanup"}'
"$bin" append --tenant globex --action api_key.created \
  --actor '{"type":"service","id":"ci-bot"}' --target '{"type":"api_key","id":"k-7"}'
echo "== export (every destination)"
"$bin" export
echo "== export again: nothing new, so each destination gets a heartbeat"
"$bin" export
echo "== status"
"$bin" status
echo "== objects written under $out"
find "$out" -type f -not -name '.*' | sort | while read -r object; do
  echo "-- $object"
  case "$object" in
    *.gz) gzip -dc "$object" ;;
    *) cat "$object" ;;
  esac
done
