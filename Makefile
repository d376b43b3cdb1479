# Shortcuts; each target is a script under scripts/ that a new user can also run directly.
.PHONY: build test demo proto clean

build:
	swift build

test:
	./scripts/test.sh

demo:
	./scripts/demo.sh

# Regenerates Sources/TributaryWire/Generated from proto/ (needs protoc and protoc-gen-swift).
proto:
	./scripts/generate-proto.sh

clean:
	rm -rf .build
