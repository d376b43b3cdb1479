# Sourced by the demos (demo.sh, demo-tiers.sh) and the packages' test (test-deb.sh): the
# processes they start are stopped on exit; free loopback ports, waiting for one to listen; a
# broker, an agent's configuration for the simulator's sensors, and waiting for delivery.
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on port $1" >&2; return 1; }

# start_broker DIR PORT: mosquitto on 127.0.0.1:PORT, anonymous, persistent in DIR (config and log there).
start_broker() {
  mkdir -p "$1"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n' "$2" "$1" > "$1/mosquitto.conf"
  mosquitto -c "$1/mosquitto.conf" >"$1/log" 2>&1 & pids+=($!)
  wait_port "$2"
}
# agent_config SIM GATEWAY DATA_DIR MQTT_PORT AGGREGATOR_PORT: an agent configuration that reads
# everything tributary-sim (the binary SIM) publishes, on stdout.
agent_config() {
  cat <<CONF
gateway_id: $2
data_dir: $3
mqtt:
  broker: mqtt://127.0.0.1:$4
$("$1" sensors --print-subscriptions)
aggregator:
  url: http://127.0.0.1:$5
  heartbeat_seconds: 5
CONF
}
# wait_subscribed LOG: until the agent logging to LOG has its subscriptions confirmed (the broker
# keeps messages for the agent's session only from then on).
wait_subscribed() {
  for _ in $(seq 1 100); do grep -q "subscriptions confirmed" "$1" && return 0; sleep 0.1; done
  echo "no 'subscriptions confirmed' in $1" >&2; return 1
}
# wait_delivered SIM MANIFEST SINK: until tributary-sim verify passes, at most 30 s (the agent
# seals at least once a second); the last verify's output is in $verified.
wait_delivered() {
  for _ in $(seq 1 60); do
    verified=$("$1" verify --manifest "$2" --sink "$3" 2>&1) && return 0
    sleep 0.5
  done
  return 1
}
