#!/usr/bin/env bash
# The tiers demo (DEMO_TIERS=1 ./scripts/demo.sh runs it): two gateways' agents -> two city
# relays (city-jinan keeps its own copy, city-qingdao only forwards) -> one province
# aggregator; simulated sensors for ~20 s; then the province's status, gateways and relays, and
# the conservation check at the province and at the city that keeps a copy. Everything runs
# on loopback in a temporary directory and stops at the end. See docs/tiers.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/install-deps.sh"
DURATION=${DEMO_SECONDS:-20}
for product in tributary-agent tributary-aggregator tributaryctl tributary-sim; do swift build --product "$product" >/dev/null; done
bin=$(swift build --show-bin-path)

work=$(mktemp -d /tmp/tributary-demo-tiers.XXXXXX)
. "$root/scripts/demo-lib.sh"

province_port=$(free_port)
mkdir -p "$work/province"
echo "== tiers demo in $work"
"$bin/tributary-aggregator" --listen "127.0.0.1:$province_port" --data-dir "$work/province" >"$work/province/log" 2>&1 & pids+=($!)
wait_port "$province_port"
echo "   province      :$province_port  sink sqlite:$work/province/sink.sqlite"

# A city relay: NAME SINK (a sink URL, or none to only forward).
start_city() {
  local name=$1 sink=$2 port; port=$(free_port)
  mkdir -p "$work/$name"
  cat > "$work/$name.yaml" <<CONF
listen: 127.0.0.1:$port
data_dir: $work/$name
relay_id: $name
sink: $sink
upstream:
  url: http://127.0.0.1:$province_port
CONF
  "$bin/tributary-aggregator" --config "$work/$name.yaml" >"$work/$name/log" 2>&1 & pids+=($!)
  wait_port "$port"
  echo "   $name   :$port  -> province, sink $sink" >&2
  echo "$port"
}
jinan_port=$(start_city city-jinan "sqlite:$work/city-jinan/sink.sqlite")
qingdao_port=$(start_city city-qingdao none)

# A gateway: its own broker and agent, reporting to a city relay. NAME RELAY_PORT.
start_gateway() {
  local name=$1 relay_port=$2 mqtt_port; mqtt_port=$(free_port)
  mkdir -p "$work/$name/broker" "$work/$name/agent"
  start_broker "$work/$name/broker" "$mqtt_port"
  agent_config "$bin/tributary-sim" "$name" "$work/$name/agent" "$mqtt_port" "$relay_port" > "$work/$name/agent.yaml"
  "$bin/tributary-agent" --config "$work/$name/agent.yaml" >"$work/$name/agent/log" 2>&1 & pids+=($!)
  wait_subscribed "$work/$name/agent/log"
  echo "   $name  broker :$mqtt_port -> relay :$relay_port" >&2
  echo "$mqtt_port"
}
jinan_mqtt=$(start_gateway gw-jinan-0001 "$jinan_port")
qingdao_mqtt=$(start_gateway gw-qingdao-0001 "$qingdao_port")

echo "== publishing from 2 x 10 simulated sensors for ${DURATION}s"
"$bin/tributary-sim" sensors --broker "mqtt://127.0.0.1:$jinan_mqtt" --gateway gw-jinan-0001 --sensors 10 --rate 100 \
  --format mixed --duration "$DURATION" --manifest "$work/jinan.jsonl" >"$work/jinan-sensors.log" 2>&1 & a=$!
"$bin/tributary-sim" sensors --broker "mqtt://127.0.0.1:$qingdao_mqtt" --gateway gw-qingdao-0001 --sensors 10 --rate 100 \
  --format mixed --duration "$DURATION" --manifest "$work/qingdao.jsonl" >"$work/qingdao-sensors.log" 2>&1 & b=$!
wait "$a" "$b"

# Let the agents and the relays deliver what they hold, and the relays report (every 5 s).
for _ in $(seq 1 60); do
  "$bin/tributary-sim" verify --manifest "$work/jinan.jsonl" --sink "sqlite:$work/province/sink.sqlite" >/dev/null 2>&1 \
    && "$bin/tributary-sim" verify --manifest "$work/qingdao.jsonl" --sink "sqlite:$work/province/sink.sqlite" >/dev/null 2>&1 && break
  sleep 0.5
done
sleep 6
export TRIBUTARY_AGGREGATOR="http://127.0.0.1:$province_port" TRIBUTARY_TOKEN_FILE="$work/province/admin-token"
echo "== at the province: tributaryctl status"
"$bin/tributaryctl" status
echo
"$bin/tributaryctl" gateways
echo
"$bin/tributaryctl" relays
echo
echo "== tributary-sim verify at the province"
"$bin/tributary-sim" verify --manifest "$work/jinan.jsonl" --sink "sqlite:$work/province/sink.sqlite"
"$bin/tributary-sim" verify --manifest "$work/qingdao.jsonl" --sink "sqlite:$work/province/sink.sqlite"
echo "== tributary-sim verify at city-jinan (its own copy)"
"$bin/tributary-sim" verify --manifest "$work/jinan.jsonl" --sink "sqlite:$work/city-jinan/sink.sqlite"
echo "== logs and data are in $work"
