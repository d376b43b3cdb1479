#!/usr/bin/env bash
# The local demo: a mosquitto broker, an aggregator with its SQLite sink, one agent, simulated
# sensors for ~30 s, then the fleet status and the conservation check. Everything runs on
# loopback in a temporary directory and stops at the end.
# DEMO_SECONDS=N changes the duration; DEMO_SINK=clickhouse writes to a clickhouse-server
# started for the demo instead of the SQLite sink.
# DEMO_TIERS=1 runs the tiers demo instead (scripts/demo-tiers.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "${DEMO_TIERS:-0}" = 1 ]; then exec "$root/scripts/demo-tiers.sh"; fi
"$root/scripts/install-deps.sh"
DURATION=${DEMO_SECONDS:-30}
swift build --product tributary-agent >/dev/null
swift build --product tributary-aggregator >/dev/null
swift build --product tributaryctl >/dev/null
swift build --product tributary-sim >/dev/null
bin=$(swift build --show-bin-path)

work=$(mktemp -d /tmp/tributary-demo.XXXXXX)
. "$root/scripts/demo-lib.sh"

mqtt_port=$(free_port)
http_port=$(free_port)
mkdir -p "$work/broker" "$work/aggregator" "$work/agent"
sink="sqlite:$work/aggregator/sink.sqlite"
if [ "${DEMO_SINK:-sqlite}" = clickhouse ]; then
  ch_port=$(free_port)
  ch_password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
  mkdir -p "$work/clickhouse/data"
  cat > "$work/clickhouse/config.xml" <<CONF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$work/clickhouse/server.log</log><errorlog>$work/clickhouse/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$ch_port</http_port>
  <tcp_port>$(free_port)</tcp_port>
  <path>$work/clickhouse/data/</path>
  <tmp_path>$work/clickhouse/data/tmp/</tmp_path>
  <user_files_path>$work/clickhouse/data/user_files/</user_files_path>
  <format_schema_path>$work/clickhouse/data/format_schemas/</format_schema_path>
  <users_config>$work/clickhouse/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
</yandex>
CONF
  cat > "$work/clickhouse/users.xml" <<CONF
<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><tributary><password>$ch_password</password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></tributary></users>
  <quotas><default></default></quotas>
</yandex>
CONF
  clickhouse-server --config-file="$work/clickhouse/config.xml" >"$work/clickhouse/stdout" 2>&1 & pids+=($!)
  wait_port "$ch_port"
  sink="clickhouse://tributary:$ch_password@127.0.0.1:$ch_port/tributary"
  echo "== ClickHouse on :$ch_port (user tributary, password in $work/clickhouse/users.xml)"
fi
agent_config "$bin/tributary-sim" gw-demo "$work/agent" "$mqtt_port" "$http_port" > "$work/agent.yaml"

echo "== demo in $work (broker :$mqtt_port, aggregator :$http_port)"
start_broker "$work/broker" "$mqtt_port"
"$bin/tributary-aggregator" --listen "127.0.0.1:$http_port" --data-dir "$work/aggregator" --sink "$sink" >"$work/aggregator/log" 2>&1 & pids+=($!)
wait_port "$http_port"
"$bin/tributary-agent" --config "$work/agent.yaml" >"$work/agent/log" 2>&1 & agent=$!; pids+=($agent)
wait_subscribed "$work/agent/log"

echo "== publishing from 20 simulated sensors for ${DURATION}s (JSON devices, plain numbers, Sparkplug B; 1% malformed)"
"$bin/tributary-sim" sensors --broker "mqtt://127.0.0.1:$mqtt_port" --gateway gw-demo --sensors 20 --rate 200 \
  --format mixed --jitter 0.2 --malformed 0.01 --duration "$DURATION" --manifest "$work/manifest.jsonl"

# Let the agent deliver what it holds; the verify below says what is missing if it did not.
wait_delivered "$bin/tributary-sim" "$work/manifest.jsonl" "$sink" || true
# tributaryctl reads the operator token the aggregator wrote on its first start.
export TRIBUTARY_AGGREGATOR="http://127.0.0.1:$http_port" TRIBUTARY_TOKEN_FILE="$work/aggregator/admin-token"
echo "== tributaryctl status"
"$bin/tributaryctl" status
echo
"$bin/tributaryctl" gateways --sort lag
echo
"$bin/tributaryctl" gateway gw-demo | head -16
echo
"$bin/tributaryctl" check --max-lag 1m --max-stale 0 || true
echo
echo "== tributary-sim verify (the sink, and the agent's quarantine)"
"$bin/tributary-sim" verify --manifest "$work/manifest.jsonl" --sink "$sink" --agent-buffer "$work/agent/buffer.sqlite"
echo "== logs and data are in $work"
