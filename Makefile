# Shortcuts; each target is a script under scripts/ that a new user can also run directly.
.PHONY: build test demo deb proto bench bench-fleet-10k bench-scale bench-quorum fuzz clean

build:
	swift build

test:
	./scripts/test.sh

demo:
	./scripts/demo.sh

# The Debian packages tributary-agent, tributary-aggregator and tributary-tools, in dist/
# (a static release build in .build-deb; see INSTALL.md).
deb:
	./scripts/make-deb.sh

# Benchmarks on a release build: a table, and JSON under bench/results/ (see docs/performance.md).
# BENCH_ARGS go to tributary-bench, e.g. BENCH_ARGS="--only buffer,wire".
bench:
	./scripts/bench.sh $(BENCH_ARGS)

# Province scale (issue 26): 10,000 gateways against one aggregator, 1x, burst, ClickHouse; about
# ten minutes, so not part of `make bench`. RUNS=5 repeats the 1x run (the issue's five in a row).
RUNS ?= 1
bench-fleet-10k:
	./scripts/bench.sh --only fleet-10k --runs $(RUNS)

# The sizes docs/scale.md is built from: wire bytes, buffer and spool bytes, ClickHouse bytes per
# reading (bench/scale-figures.py), with the release binaries.
bench-scale:
	for product in tributary-agent tributary-aggregator tributary-sim; do swift build -c release --product $$product; done
	python3 bench/scale-figures.py --bin .build/release

# Quorum inserts against plain ones on a replicated ClickHouse cluster (ZooKeeper, 2 x 2), same run.
bench-quorum:
	python3 bench/clickhouse-quorum.py

# libFuzzer on the aggregator's request decoding for FUZZ_SECONDS (60); see docs/fuzzing.md.
FUZZ_SECONDS ?= 60
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)

# Regenerates Sources/TributaryWire/Generated from proto/ (needs protoc and protoc-gen-swift).
proto:
	./scripts/generate-proto.sh

clean:
	rm -rf .build .build-deb dist
