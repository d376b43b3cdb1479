#!/usr/bin/env bash
# Installs what the tests need (when missing), builds, and runs every test: unit tests and
# integration tests that start a real mosquitto broker on free loopback ports.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/install-deps.sh"
# The README's module graph must be Package.swift's.
python3 scripts/module-graph.py --check README.md
scripts/chdb-venv.sh >/dev/null 2>&1 &  # ClickHouse 26 (chdb-core) for ClickHouse26Tests, made once while the build runs
swift build --build-tests
swift test --skip-build
# The Debian packages (scripts/test-deb.sh): a static release build, lintian, and the packaged
# binaries delivering every reading once. TRIBUTARY_SKIP_DEB=1 skips it.
if [ "${TRIBUTARY_SKIP_DEB:-0}" != 1 ]; then
  ./scripts/test-deb.sh
fi
# The fuzz target, briefly: proves on every run that it builds, that the committed corpus
# (with every input that once crashed) still passes, and looks a little further.
# TRIBUTARY_FUZZ_SECONDS=0 skips it.
if [ "${TRIBUTARY_FUZZ_SECONDS:-30}" != 0 ]; then
  ./scripts/fuzz.sh "${TRIBUTARY_FUZZ_SECONDS:-30}"
fi
