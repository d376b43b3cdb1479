# Shortcuts; each target is a script under scripts/ that a new user can also run directly.
.PHONY: build test demo proto bench bench-quorum fuzz clean

build:
	swift build

test:
	./scripts/test.sh

demo:
	./scripts/demo.sh

# Benchmarks on a release build: a table, and JSON under bench/results/ (see docs/performance.md).
bench:
	./scripts/bench.sh

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
	rm -rf .build
