# Shortcuts; each target is a script under scripts/ that a new user can also run directly.
.PHONY: build test demo proto bench clean

build:
	swift build

test:
	./scripts/test.sh

demo:
	./scripts/demo.sh

# Benchmarks on a release build: a table, and JSON under bench/results/ (see README, Performance).
bench:
	./scripts/bench.sh

# Regenerates Sources/TributaryWire/Generated from proto/ (needs protoc and protoc-gen-swift).
proto:
	./scripts/generate-proto.sh

clean:
	rm -rf .build
