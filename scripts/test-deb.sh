#!/usr/bin/env bash
# The packages' test (issue 21), run by scripts/test.sh after the Swift tests
# (TRIBUTARY_SKIP_DEB=1 skips it there): builds the .debs with make-deb.sh, checks them with
# lintian (no errors) and lists their contents; then installs them with apt into a throwaway
# Debian 12 root made by debootstrap (minbase, from the Debian mirror: no Swift in it), and
# there runs the installed programs as the tributary user with the installed configuration:
# the aggregator with /etc/tributary/aggregator.yaml, the agent first with the example
# agent.yaml (it must start and stop cleanly), then with the simulator's subscriptions,
# sensors from the installed tributary-sim through a real mosquitto on free loopback ports,
# and tributary-sim verify: every reading once (missing 0, duplicates 0). Last, apt remove
# keeps the config and the data, and apt purge deletes them.
#
# Why a debootstrap root: `dpkg --root DIR -i` runs the maintainer scripts chrooted into DIR,
# so DIR must be a whole Debian system anyway (a shell, adduser, dpkg-statoverride, a dpkg
# database with the libraries of Depends:); an empty root fails at the first postinst line.
# Unpacking with dpkg-deb -x runs the binaries but never the maintainer scripts nor the
# Depends: line. A minbase root costs about 1.5 min and ~100 MB from the mirror per run, and
# apt in it proves that Depends: names every library the binaries load. Not covered: no
# systemd runs in the root, so the maintainer scripts' systemctl and deb-systemd-invoke
# branches (restart on upgrade, stop on remove) are not exercised.
#
# It prints the binaries' and the .debs' sizes, the agent's RSS idle and under traffic, and how
# long make-deb.sh and lintian took. TRIBUTARY_DEB_SECONDS (10) is the traffic's length.
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
for deb in "${debs[@]}"; do
  echo "== dpkg-deb -c $(basename "$deb")"
  dpkg-deb -c "$deb" | tee "$work/$(basename "$deb").listing"
  awk '{ print $6 }' "$work/$(basename "$deb").listing" | sed 's#^\./#/#; s#/$##' > "$work/$(basename "$deb").contents"
  dpkg-deb -f "$deb" Package Version Architecture Depends Recommends
  # The maintainer scripts parse (they run in the root below).
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

echo "== a throwaway Debian root (debootstrap --variant=minbase bookworm)"
rootfs=$work/rootfs
started=$(date +%s)
debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log"; fail "debootstrap failed"; }
# The agent's /metrics reads /proc/self; the root's /proc is unmounted on exit, before anything is removed.
mount -t proc proc "$rootfs/proc"
trap 'cleanup; umount "$rootfs/proc" 2>/dev/null || true' EXIT
echo "made in $(( $(date +%s) - started )) s"
in_root() { chroot "$rootfs" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
apt_in_root() { in_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" >"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log"; fail "apt-get $* failed"; }; }
mkdir -p "$rootfs/tmp/debs" && cp "${debs[@]}" "$rootfs/tmp/debs/"
echo "== apt install ./tributary-*.deb in it"
apt_in_root update
apt_in_root install "/tmp/debs/$(basename "$agent_deb")" "/tmp/debs/$(basename "$aggregator_deb")" "/tmp/debs/$(basename "$tools_deb")"
in_root sh -c '! command -v swift' >/dev/null || fail "the root has a Swift toolchain"
in_root getent passwd tributary || fail "postinst made no tributary user"
# Owners by the root's own user names.
for dir in /var/lib/tributary /var/lib/tributary-aggregator; do
  [ "$(in_root stat -c '%U %a' "$dir")" = "tributary 700" ] || fail "$dir is not tributary's, 0700"
done
for config in agent.yaml aggregator.yaml; do
  [ "$(in_root stat -c '%U %G %a' "/etc/tributary/$config")" = "root tributary 640" ] || fail "/etc/tributary/$config is not root:tributary 0640"
done
ls "$rootfs"/etc/systemd/system/*/tributary-* 2>/dev/null && fail "a new install enabled a unit"
grep -q '^ExecStart=/usr/bin/tributary-agent ' "$rootfs/lib/systemd/system/tributary-agent.service" \
  || fail "the agent's unit does not run /usr/bin/tributary-agent"

pkg=$rootfs/usr/bin
echo "== what the installed binaries load (no Swift runtime; everything from Depends:)"
for name in tributary-agent tributary-aggregator tributaryctl tributary-sim; do
  needed=$(readelf -d "$pkg/$name" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  echo "$name: $needed"
  case $needed in *libswift*|*libFoundation*|*libdispatch*|*libBlocksRuntime*) fail "$name loads the Swift runtime: $needed" ;; esac
  if in_root ldd "/usr/bin/$name" | grep -q 'not found'; then in_root ldd "/usr/bin/$name"; fail "$name needs a library its Depends: did not bring"; fi
done
echo "== sizes"
for f in "$pkg"/tributary* "${debs[@]}"; do stat -c '%s %n' "$f"; done | awk '{ n = split($2, p, "/"); printf "%-44s %6.1f MB\n", p[n], $1 / 1048576 }'

echo "== the installed programs, as the tributary user, on loopback"
user=$(in_root id -u tributary):$(in_root id -g tributary)
# as_service PROGRAM ARGS... &: PROGRAM from the root's /usr/bin as the tributary user, as its
# unit would. Only in the background: it execs, so $! is the program's pid.
as_service() { exec chroot --userspec="$user" "$rootfs" env -i PATH=/usr/bin:/bin HOME=/var/lib/tributary "/usr/bin/$1" "${@:2}"; }
sim() { in_root /usr/bin/tributary-sim "$@"; }
mqtt_port=$(free_port)
http_port=$(free_port)
start_broker "$work/broker" "$mqtt_port"
as_service tributary-aggregator --config /etc/tributary/aggregator.yaml --listen "127.0.0.1:$http_port" >"$work/aggregator.log" 2>&1 & pids+=($!)
wait_port "$http_port"
sink=sqlite:/var/lib/tributary-aggregator/sink.sqlite

# The example agent.yaml as installed: the agent starts with it, subscribes, and stops with 0
# (its buffer elsewhere: a buffer file belongs to one gateway id).
as_service tributary-agent --config /etc/tributary/agent.yaml --gateway-id gw-example --data-dir /tmp/agent-example \
  --broker "mqtt://127.0.0.1:$mqtt_port" --aggregator "http://127.0.0.1:$http_port" >"$work/agent-example.log" 2>&1 & example=$!
wait_subscribed "$work/agent-example.log" || fail "the agent with the installed agent.yaml did not subscribe"
kill -TERM "$example"
wait "$example" || fail "the agent with the installed agent.yaml exited non-zero"

# The operator edits agent.yaml: here, to read what the simulator publishes.
agent_config "$pkg/tributary-sim" gw-deb /var/lib/tributary "$mqtt_port" "$http_port" > "$rootfs/etc/tributary/agent.yaml"
as_service tributary-agent --config /etc/tributary/agent.yaml >"$work/agent.log" 2>&1 & agent=$!; pids+=($agent)
wait_subscribed "$work/agent.log" || fail "the installed agent did not subscribe"
sleep 3
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
idle_kb=$(rss "$agent")

seconds=${TRIBUTARY_DEB_SECONDS:-10}
echo "== 20 simulated sensors for ${seconds}s from the installed tributary-sim (mixed formats, 1% malformed)"
sim sensors --broker "mqtt://127.0.0.1:$mqtt_port" --gateway gw-deb --sensors 20 --rate 200 \
  --format mixed --jitter 0.2 --malformed 0.01 --duration "$seconds" --manifest /tmp/manifest.jsonl >"$work/sensors.log" 2>&1 & sensors=$!
peak_kb=$idle_kb
while kill -0 "$sensors" 2>/dev/null; do
  now=$(rss "$agent"); [ "$now" -gt "$peak_kb" ] && peak_kb=$now
  sleep 0.5
done
wait "$sensors" || { cat "$work/sensors.log"; fail "tributary-sim sensors failed"; }
tail -1 "$work/sensors.log"
wait_delivered sim /tmp/manifest.jsonl "$sink" || true
after_kb=$(rss "$agent")
echo "agent RSS: idle $(( idle_kb / 1024 )) MB, peak under traffic $(( peak_kb / 1024 )) MB, after delivery $(( after_kb / 1024 )) MB"

echo "== tributary-sim verify"
sim verify --manifest /tmp/manifest.jsonl --sink "$sink" --agent-buffer /var/lib/tributary/buffer.sqlite \
  | tee "$work/verify.txt" || fail "verify did not pass"
grep -q 'missing 0, duplicates 0' "$work/verify.txt" || fail "verify did not report missing 0, duplicates 0"
# root reads the aggregator's own operator token, as INSTALL.md says.
in_root env TRIBUTARY_AGGREGATOR="http://127.0.0.1:$http_port" /usr/bin/tributaryctl gateway gw-deb | head -6 \
  || fail "the installed tributaryctl failed"
cleanup

echo "== apt remove keeps the config and the data; apt purge deletes them"
apt_in_root remove tributary-agent tributary-aggregator
for kept in /etc/tributary/agent.yaml /etc/tributary/aggregator.yaml /var/lib/tributary/buffer.sqlite /var/lib/tributary-aggregator/sink.sqlite; do
  [ -e "$rootfs$kept" ] || fail "apt remove deleted $kept"
done
[ -e "$rootfs/usr/bin/tributary-agent" ] && fail "apt remove left /usr/bin/tributary-agent"
apt_in_root purge tributary-agent tributary-aggregator tributary-tools
for gone in /etc/tributary /var/lib/tributary /var/lib/tributary-aggregator; do
  [ -e "$rootfs$gone" ] && fail "apt purge left $gone"
done
in_root dpkg-statoverride --list | grep tributary && fail "apt purge left a statoverride"
echo "removed: config and data kept; purged: both gone"

umount "$rootfs/proc"
rm -rf --one-file-system "$work"
echo "test-deb: passed"
