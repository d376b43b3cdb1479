#!/usr/bin/env bash
# Benchmarks: installs what is missing, builds in release, runs tributary-bench. Each figure is
# compared with a baseline measured in the same run; the table goes to stdout and the JSON to
# bench/results/. Arguments go to tributary-bench (e.g. --only buffer,wire, or --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh collectd-core   # collectd: the peer the benchmark compares the agent with
# The executables the benchmark starts beside itself, then the benchmark (not every product:
# a plain `swift build -c release` would also build swift-protobuf's plugin, a quarter hour).
for product in tributary-agent tributary-aggregator tributary-sim tributary-bench; do
  swift build -c release --product "$product"
done
exec .build/release/tributary-bench "$@"
