#!/usr/bin/env bash
# Installs the Debian packages Tributary needs to build, test and run its demo, when missing.
# Extra package names given as arguments are installed too (the benchmark's collectd-core).
set -euo pipefail
packages=("$@"
  mosquitto mosquitto-clients libmosquitto-dev libsqlite3-dev sqlite3 zlib1g-dev libzstd-dev pkg-config tmux clickhouse-server
  zookeeper                   # the replicated ClickHouse cluster's coordination (ClickHouseReplicationTests)
  python3-prometheus-client   # the reference parser the /metrics tests check against
  python3-venv                # chdb-core's environment (scripts/chdb-venv.sh) for ClickHouse26Tests
  prometheus                  # promtool: the alert rules' check and unit tests
  lintian dpkg-dev debootstrap  # make-deb.sh (dpkg-shlibdeps), the packages' check and throwaway root (scripts/test-deb.sh)
  gcc make libprotobuf-c-dev) # the C sender (simulators/c-sender) its integration test builds
missing=()
for p in "${packages[@]}"; do
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
