#!/usr/bin/env bash
# Fuzzes the aggregator's request decoding (TributaryWire.SyncRequestDecoder: headers, size
# limits, gzip/zstd, protobuf, BatchCodec) with libFuzzer, for a bounded time.
#
#   scripts/fuzz.sh [SECONDS]        fuzz for SECONDS (default 60) from a copy of fuzz/corpus
#   scripts/fuzz.sh --save [SECONDS] the same, then merge inputs that reach new code into fuzz/corpus
#   scripts/fuzz.sh --replay FILE... run the given inputs once each (a crash's, or fuzz/corpus/*)
#   scripts/fuzz.sh --seeds          write the seeds again from the real encoder into fuzz/corpus
#
# Exits non-zero when the fuzzer finds a crash, trap, leak, timeout or out-of-memory, and prints
# where the input that caused it is. Builds with its own scratch path (.build-fuzz): .build stays as it is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

mode=fuzz
case "${1:-}" in
  --save) mode=save; shift ;;
  --replay) mode=replay; shift ;;
  --seeds) mode=seeds; shift ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
esac

if [ "$mode" = seeds ]; then
  # The seeds come from a test, so they are made by the very encoder and compressors the agent uses.
  TRIBUTARY_WRITE_FUZZ_SEEDS="$root/fuzz/corpus" swift test --filter FuzzCorpusTests
  exit 0
fi

# What the fuzz build needs: the two compression libraries and pkg-config (the libFuzzer runtime
# ships with the Swift toolchain).
missing=()
for p in zlib1g-dev libzstd-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift (6.x) is not on PATH: install the Swift toolchain first" >&2; exit 1; }

# fuzz/ is a package of its own. `--sanitize fuzzer` makes SwiftPM compile every module it builds
# (ours and swift-protobuf) with libFuzzer's coverage and -parse-as-library, and link libFuzzer's
# main. AddressSanitizer comes as -Xswiftc -sanitize=fuzzer,address, not as a second --sanitize:
# swiftc keeps only its last -sanitize= flag, and SwiftPM orders the two at random, so one of them
# was silently lost (a build without coverage fuzzes blind). Debug: preconditions and overflow
# checks stay, and the build takes a fraction of a release one.
scratch="$root/.build-fuzz"
mkdir -p "$scratch"
echo "building the fuzz target (the first build takes a few minutes; log: $scratch/build.log)"
if ! swift build --package-path fuzz --scratch-path "$scratch" --product FuzzSyncRequest \
    --sanitize fuzzer -Xswiftc -sanitize=fuzzer,address >"$scratch/build.log" 2>&1; then
  tail -30 "$scratch/build.log" >&2
  echo "the fuzz build failed" >&2
  exit 1
fi
binary="$scratch/debug/FuzzSyncRequest"
# Read whole first: grep -q quitting early would fail the pipe under pipefail.
sections=$(readelf -S "$binary")
grep -q __sancov_cntrs <<<"$sections" || { echo "$binary has no coverage instrumentation" >&2; exit 1; }

if [ "$mode" = replay ]; then
  [ $# -gt 0 ] || { echo "usage: scripts/fuzz.sh --replay FILE..." >&2; exit 2; }
  exec "$binary" -rss_limit_mb=2048 -timeout=10 "$@"
fi

seconds=${1:-60}
run="$scratch/runs/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run/corpus" "$run/artifacts"
# The fuzzer writes every input that reaches new code into its first directory: a copy, so the
# committed corpus changes only with --save.
cp fuzz/corpus/* "$run/corpus/"

# -rss_limit_mb and -malloc_limit_mb: a request may use at most its decompressed size (1 MiB in
# the target) a few times over; 64 MB in one allocation is a bomb that got through, not a big batch.
# -timeout: one input decodes in well under a millisecond; 10 s is a hang.
status=0
"$binary" "$run/corpus" \
  -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10 \
  -artifact_prefix="$run/artifacts/" -print_final_stats=1 2>&1 | tee "$run/fuzz.log" || status=$?

found=$(find "$run/artifacts" -type f | sort)
if [ "$status" -ne 0 ] || [ -n "$found" ]; then
  echo >&2
  echo "FUZZING FOUND A PROBLEM (exit $status); log: $run/fuzz.log" >&2
  for f in $found; do echo "  input: $f" >&2; done
  echo "  replay it: scripts/fuzz.sh --replay <input>" >&2
  exit 1
fi

new=$(( $(ls "$run/corpus" | wc -l) - $(ls fuzz/corpus | wc -l) ))
echo "no crash in ${seconds}s; $new new inputs in $run/corpus"
if [ "$mode" = save ]; then
  # Keeps only inputs that reach code the committed corpus does not.
  "$binary" -merge=1 fuzz/corpus "$run/corpus" 2>&1 | tail -2
fi
