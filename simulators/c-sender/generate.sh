#!/usr/bin/env bash
# Regenerates the C code for the Tributary wire contract (tributary/v1 batch, status and ack)
# into simulators/c-sender/generated/, with protoc-c from protobuf-c (apt: protobuf-c-compiler;
# written with 1.4.1). The output is committed, so building the sender needs only
# libprotobuf-c: rerun this only when proto/ changes, and commit what it writes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if ! command -v protoc-c >/dev/null; then
  echo "protoc-c not found: install protobuf-c-compiler (apt) or put protoc-c on PATH" >&2
  exit 1
fi
out="$here/generated"
mkdir -p "$out"
# Start clean, so a file removed from proto/ does not linger here.
find "$out" -name '*.pb-c.[ch]' -delete
# The proto root is proto/, as for the Swift code: batch.proto imports
# "tributary/v1/status.proto", so the files land in generated/tributary/v1/ and the build
# adds generated/ to the include path.
cd "$root/proto"
protoc-c --c_out="$out" tributary/v1/status.proto tributary/v1/batch.proto tributary/v1/ack.proto
echo "generated: $(cd "$out" && find . -type f | sort | tr '\n' ' ')"
