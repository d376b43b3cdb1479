#!/usr/bin/env bash
# The packages' test (issue 21), run by scripts/test.sh after the Swift tests
# (TRIBUTARY_SKIP_DEB=1 skips it there): builds the .debs with make-deb.sh, checks them with
# lintian (no errors), lists their contents, unpacks them, and runs the packaged binaries on
# free loopback ports: a real mosquitto, the packaged aggregator with the packaged
# aggregator.yaml, the packaged agent, sensors from the packaged tributary-sim, and
# tributary-sim verify: every reading once (missing 0, duplicates 0).
#
# Why unpacked (dpkg-deb -x) and not installed: `dpkg --root DIR -i` runs the maintainer
# scripts chrooted into DIR, so DIR must be a whole Debian system (a shell, adduser,
# dpkg-statoverride, a dpkg database holding libc6 and the libraries in Depends:); an empty
# root fails at the first postinst line. A debootstrap chroot would be that system, but it
# downloads ~100 MB on every CI run from a fresh machine and needs mounts a container may not
# allow; installing on this machine would change it (a user, /etc/tributary). So the
# maintainer scripts are checked by lintian and `sh -n`, not run; what runs is every
# packaged binary, from the package's own tree, with the conffile it ships.
#
# It prints the packaged binaries' and the .debs' sizes, the agent's RSS idle and under
# traffic, and how long make-deb.sh took. TRIBUTARY_DEB_SECONDS (10) is the traffic's length.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d /tmp/tributary-test-deb.XXXXXX)
. "$root/scripts/demo-lib.sh"
fail() { echo "test-deb: FAILED: $*" >&2; echo "test-deb: files in $work" >&2; exit 1; }

echo "== make-deb.sh"
started=$(date +%s)
DEB_OUT="$work/dist" "$root/scripts/make-deb.sh"
echo "make-deb.sh took $(( $(date +%s) - started )) s"
debs=("$work"/dist/*.deb)
[ ${#debs[@]} -eq 3 ] || fail "expected 3 packages, found: ${debs[*]}"

echo "== lintian"
# Errors fail the test; warnings and informational tags are shown.
started=$(date +%s)
lintian --fail-on error --display-info "${debs[@]}" | tee "$work/lintian.txt" || fail "lintian reported errors"
echo "lintian took $(( $(date +%s) - started )) s"
grep -q '^E:' "$work/lintian.txt" && fail "lintian reported errors"

# expect DEB PATH...: each path is in DEB.
expect() {
  local deb=$1; shift
  for path in "$@"; do grep -qx "$path" "$work/$(basename "$deb").contents" || fail "$(basename "$deb") lacks $path"; done
}
mkdir -p "$work/root"
for deb in "${debs[@]}"; do
  echo "== dpkg-deb -c $(basename "$deb")"
  dpkg-deb -c "$deb" | tee "$work/$(basename "$deb").listing"
  awk '{ print $6 }' "$work/$(basename "$deb").listing" | sed 's#^\./#/#; s#/$##' > "$work/$(basename "$deb").contents"
  dpkg-deb -f "$deb" Package Version Architecture Depends Recommends
  dpkg-deb -x "$deb" "$work/root"
  # Maintainer scripts parse (they are not run: see above).
  mkdir -p "$work/control/$(basename "$deb")"
  dpkg-deb -e "$deb" "$work/control/$(basename "$deb")"
  for script in "$work/control/$(basename "$deb")"/{postinst,prerm,postrm}; do
    [ -e "$script" ] && { sh -n "$script" || fail "$script does not parse"; }
  done
done
agent_deb=$(ls "$work"/dist/tributary-agent_*.deb)
aggregator_deb=$(ls "$work"/dist/tributary-aggregator_*.deb)
tools_deb=$(ls "$work"/dist/tributary-tools_*.deb)
expect "$agent_deb" /usr/bin/tributary-agent /lib/systemd/system/tributary-agent.service /etc/tributary/agent.yaml \
  /usr/share/doc/tributary-agent/copyright /usr/share/doc/tributary-agent/changelog.Debian.gz
expect "$aggregator_deb" /usr/bin/tributary-aggregator /lib/systemd/system/tributary-aggregator.service \
  /etc/tributary/aggregator.yaml /usr/share/doc/tributary-aggregator/copyright
expect "$tools_deb" /usr/bin/tributaryctl /usr/bin/tributary-sim /usr/share/doc/tributary-tools/copyright
grep -qx /etc/tributary/agent.yaml "$work/control/$(basename "$agent_deb")/conffiles" || fail "agent.yaml is not a conffile"
grep -qx /etc/tributary/aggregator.yaml "$work/control/$(basename "$aggregator_deb")/conffiles" || fail "aggregator.yaml is not a conffile"
for dep in libmosquitto1 libsqlite3-0 libc6; do
  dpkg-deb -f "$agent_deb" Depends | grep -q "$dep" || fail "the agent's Depends: lacks $dep"
done
grep -q '^ExecStart=/usr/bin/tributary-agent ' "$work/root/lib/systemd/system/tributary-agent.service" || fail "the agent's unit does not run /usr/bin/tributary-agent"

pkg=$work/root/usr/bin
echo "== what the packaged binaries load (no Swift runtime, nothing missing)"
for b in "$pkg"/*; do
  needed=$(readelf -d "$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  echo "$(basename "$b"): $needed"
  case $needed in *libswift*|*libFoundation*|*libdispatch*|*libBlocksRuntime*) fail "$(basename "$b") loads the Swift runtime: $needed" ;; esac
  if ldd "$b" | grep -q 'not found'; then ldd "$b"; fail "$(basename "$b") needs a library that is not here"; fi
done
echo "== sizes"
for f in "$pkg"/* "${debs[@]}"; do stat -c '%s %n' "$f"; done | awk '{ n = split($2, p, "/"); printf "%-44s %6.1f MB\n", p[n], $1 / 1048576 }'

echo "== the packaged binaries on loopback"
mqtt_port=$(free_port)
http_port=$(free_port)
mkdir -p "$work/aggregator" "$work/agent" "$work/agent-conffile"
sink="sqlite:$work/aggregator/sink.sqlite"
start_broker "$work/broker" "$mqtt_port"
# The packaged aggregator.yaml, with the flags that move it off /var/lib and its port.
"$pkg/tributary-aggregator" --config "$work/root/etc/tributary/aggregator.yaml" --listen "127.0.0.1:$http_port" \
  --data-dir "$work/aggregator" --sink "$sink" >"$work/aggregator/log" 2>&1 & pids+=($!)
wait_port "$http_port"

# The packaged agent.yaml is accepted: an agent started with it subscribes, and stops with 0.
"$pkg/tributary-agent" --config "$work/root/etc/tributary/agent.yaml" --gateway-id gw-conffile \
  --broker "mqtt://127.0.0.1:$mqtt_port" --aggregator "http://127.0.0.1:$http_port" --data-dir "$work/agent-conffile" \
  >"$work/agent-conffile/log" 2>&1 & conffile_agent=$!
wait_subscribed "$work/agent-conffile/log" || fail "the agent with the packaged agent.yaml did not subscribe"
kill -TERM "$conffile_agent"
wait "$conffile_agent" || fail "the agent with the packaged agent.yaml exited non-zero"

# The delivery run: an agent configured for the simulator's sensors.
agent_config "$pkg/tributary-sim" gw-deb "$work/agent" "$mqtt_port" "$http_port" > "$work/agent.yaml"
"$pkg/tributary-agent" --config "$work/agent.yaml" >"$work/agent/log" 2>&1 & agent=$!; pids+=($agent)
wait_subscribed "$work/agent/log" || fail "the packaged agent did not subscribe"
sleep 3
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
idle_kb=$(rss "$agent")

seconds=${TRIBUTARY_DEB_SECONDS:-10}
echo "== 20 simulated sensors for ${seconds}s from the packaged tributary-sim (mixed formats, 1% malformed)"
"$pkg/tributary-sim" sensors --broker "mqtt://127.0.0.1:$mqtt_port" --gateway gw-deb --sensors 20 --rate 200 \
  --format mixed --jitter 0.2 --malformed 0.01 --duration "$seconds" --manifest "$work/manifest.jsonl" >"$work/sensors.log" 2>&1 & sim=$!
peak_kb=$idle_kb
while kill -0 "$sim" 2>/dev/null; do
  now=$(rss "$agent"); [ "$now" -gt "$peak_kb" ] && peak_kb=$now
  sleep 0.5
done
wait "$sim" || { cat "$work/sensors.log"; fail "tributary-sim sensors failed"; }
tail -3 "$work/sensors.log"
wait_delivered "$pkg/tributary-sim" "$work/manifest.jsonl" "$sink" || true
after_kb=$(rss "$agent")
echo "agent RSS: idle $(( idle_kb / 1024 )) MB, peak under traffic $(( peak_kb / 1024 )) MB, after delivery $(( after_kb / 1024 )) MB"

echo "== tributary-sim verify"
"$pkg/tributary-sim" verify --manifest "$work/manifest.jsonl" --sink "$sink" --agent-buffer "$work/agent/buffer.sqlite" \
  | tee "$work/verify.txt" || fail "verify did not pass"
grep -q 'missing 0, duplicates 0' "$work/verify.txt" || fail "verify did not report missing 0, duplicates 0"
TRIBUTARY_AGGREGATOR="http://127.0.0.1:$http_port" TRIBUTARY_TOKEN_FILE="$work/aggregator/admin-token" \
  "$pkg/tributaryctl" gateway gw-deb | head -6 || fail "the packaged tributaryctl failed"

cleanup
rm -rf "$work"
echo "test-deb: passed"
