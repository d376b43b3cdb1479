#!/usr/bin/env bash
# Regenerates the Swift code for proto/: tributary/v1 into Sources/TributaryWire/Generated,
# sparkplug_b into Sources/TributarySparkplug/Generated.
# Needs protoc (apt: protobuf-compiler) and protoc-gen-swift from swift-protobuf 1.39.0 on PATH
# or in PROTOC_GEN_SWIFT. Build the plugin once with:
#   git clone <swift-protobuf> && cd swift-protobuf && git checkout 1.39.0 \
#     && swift build -c release --product protoc-gen-swift
# The generated code is committed, so neither a build nor CI needs the plugin.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
plugin=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}
if [ -z "$plugin" ]; then
  echo "protoc-gen-swift not found: put it on PATH or set PROTOC_GEN_SWIFT" >&2
  exit 1
fi
out="$root/Sources/TributaryWire/Generated"
mkdir -p "$out"
rm -f "$out"/*.pb.swift
cd "$root/proto"
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  --swift_out="$out" tributary/v1/*.proto
sparkplug_out="$root/Sources/TributarySparkplug/Generated"
mkdir -p "$sparkplug_out"
rm -f "$sparkplug_out"/*.pb.swift
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  --swift_out="$sparkplug_out" sparkplug_b/sparkplug_b.proto
echo "generated: $(ls "$out" "$sparkplug_out")"
