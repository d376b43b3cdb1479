#!/usr/bin/env bash
# Benchmarks: installs what is missing, builds in release, runs tributary-bench. Each figure is
# compared with a baseline measured in the same run; the table goes to stdout and the JSON to
# bench/results/. Arguments go to tributary-bench (e.g. --only buffer,wire, or --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
swift build -c release   # every executable: the benchmark starts the agent, aggregator and simulator beside it
exec .build/release/tributary-bench "$@"
