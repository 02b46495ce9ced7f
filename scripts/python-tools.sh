# Sourced by the scripts: a virtualenv with the pinned Python tools the tests use (moto's
# STS/IAM/S3 server, DuckDB reading the objects back, the OCSF schema validator), installed
# from PyPI on first use. Sets PYTHON_TOOLS to its directory.
PYTHON_TOOLS="${PYTHON_TOOLS:-$PWD/target/python-tools}"
PYTHON_REQUIREMENTS=("moto[server]==5.2.1" "pydantic-ocsf==3.0.0" "duckdb==2.0.1")

if [ ! -x "$PYTHON_TOOLS/bin/python" ] \
  || [ "$(cat "$PYTHON_TOOLS/requirements" 2>/dev/null)" != "${PYTHON_REQUIREMENTS[*]}" ]; then
  echo "Installing the Python test tools into $PYTHON_TOOLS: ${PYTHON_REQUIREMENTS[*]}" >&2
  python3 -m venv "$PYTHON_TOOLS"
  "$PYTHON_TOOLS/bin/pip" install --quiet --disable-pip-version-check "${PYTHON_REQUIREMENTS[@]}"
  echo "${PYTHON_REQUIREMENTS[*]}" > "$PYTHON_TOOLS/requirements"
fi
export PYTHON_TOOLS
