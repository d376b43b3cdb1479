#!/usr/bin/env bash
# Makes (once) and checks the Python virtual environment with chdb-core, an in-process
# ClickHouse of a current release, for the ClickHouse-26 test (Tests/IntegrationTests/
# ClickHouse26Tests.swift). Prints the environment's python on success.
#   scripts/chdb-venv.sh            # create or reuse; exit 0 and print .../bin/python
# Exit 3 with the reason on stderr when there is no usable environment and none can be made
# (PyPI unreachable, no python3 venv module): the test is then skipped and prints that reason.
# The environment is cached in ${TRIBUTARY_CHDB_VENV:-~/.cache/tributary/chdb-venv} (~900 MB,
# about a minute to make); scripts/test.sh makes it in the background while the build runs.
# Concurrent runs wait for each other (flock), so the test waits for that background one.
set -uo pipefail
version=26.9.0   # chdb-core; its ClickHouse is 26.9.2.1. Bump here, then docs/clickhouse.md.
venv=${TRIBUTARY_CHDB_VENV:-$HOME/.cache/tributary/chdb-venv}
python=${PYTHON:-python3}
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if ! flock -w 900 9; then
  echo "chdb-venv: another run has held $venv.lock for 15 minutes" >&2
  exit 3
fi

installed() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(0 if m.version('chdb-core') == '$version' else 1)" 2>/dev/null
}

if ! installed; then
  log="$venv.log"
  started=$(date +%s)
  if { [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"; } >"$log" 2>&1 \
     && "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "chdb-core==$version" >>"$log" 2>&1 \
     && installed; then
    echo "chdb-venv: installed chdb-core $version into $venv in $(( $(date +%s) - started )) s" >&2
  else
    reason=$(grep -v '^\s*$' "$log" | tail -3 | tr '\n' ' ')
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import chdb' 2>/dev/null; then
      # Another chdb-core than pinned, and the pinned one cannot be had: use what is there.
      echo "chdb-venv: could not install chdb-core $version ($reason); using the installed one" >&2
    else
      echo "chdb-venv: no chdb-core in $venv and it could not be installed (PyPI unreachable?): $reason (log: $log)" >&2
      exit 3
    fi
  fi
fi
echo "$venv/bin/python"
