#!/usr/bin/env bash
# Runs the whole test suite. The integration tests start what they need themselves: a
# temporary PostgreSQL cluster from the machine's binaries (unless DATABASE_URL points at a
# server), an S3-protocol server in-process, and moto's STS/IAM/S3 server from the Python
# tools this script installs. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ] && ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "PostgreSQL binaries not found; installing them from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# The integrity tests make keys and check signatures with openssl, as an auditor would.
if ! command -v openssl >/dev/null; then
  echo "openssl not found; installing it from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

# shellcheck source=scripts/python-tools.sh
. scripts/python-tools.sh
export AUDIT_EXPORTER_TEST_PYTHON="$PYTHON_TOOLS/bin/python"

cargo test --all-targets "$@"
