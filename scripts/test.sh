#!/usr/bin/env bash
# Installs what the tests need (when missing), builds, and runs every test: unit tests and
# integration tests that start a real mosquitto broker on free loopback ports.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/install-deps.sh"
swift build --build-tests
swift test --skip-build
