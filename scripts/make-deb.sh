#!/usr/bin/env bash
# Builds the Debian packages into dist/ (DEB_OUT changes that):
#   tributary-agent_VERSION_ARCH.deb       the agent, its unit, /etc/tributary/agent.yaml
#   tributary-aggregator_VERSION_ARCH.deb  the aggregator, its unit, /etc/tributary/aggregator.yaml
#   tributary-tools_VERSION_ARCH.deb       tributaryctl and tributary-sim
# from release binaries with the Swift runtime linked in (--static-swift-stdlib), so a target
# needs no Swift toolchain, only the Debian libraries named in Depends: (dpkg-shlibdeps reads
# them from the binaries). Built in .build-deb, apart from the debug and release builds.
# VERSION is TributaryVersion.current (Sources/TributaryCore/TributaryVersion.swift), with the
# packaging revision below. The maintainer scripts and the copyright file are in deploy/debian/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/install-deps.sh"   # the -dev libraries to link, dpkg-dev, lintian
out=${DEB_OUT:-$root/dist}
scratch=$root/.build-deb
revision=1
upstream=$(sed -n 's/^ *public static let current = "\(.*\)"$/\1/p' Sources/TributaryCore/TributaryVersion.swift)
[ -n "$upstream" ] || { echo "make-deb: no version in Sources/TributaryCore/TributaryVersion.swift" >&2; exit 1; }
version=$upstream-$revision
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-Tributary maintainers <maintainers@tributary.invalid>}
# Timestamps (changelog, file dates) from the commit, so two builds of one commit match.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

# One product at a time: a plain `swift build -c release` also builds swift-protobuf's plugin.
# No $ORIGIN run path: the binaries load nothing from beside themselves (lintian refuses one).
build=(swift build -c release --static-swift-stdlib --disable-local-rpath --scratch-path "$scratch")
started=$(date +%s)
for product in tributary-agent tributary-aggregator tributaryctl tributary-sim; do
  echo "== swift build -c release --static-swift-stdlib --product $product"
  mkdir -p "$scratch"
  if ! "${build[@]}" --product "$product" > "$scratch/make-deb-build.log" 2>&1; then
    tail -40 "$scratch/make-deb-build.log" >&2
    echo "make-deb: building $product failed (log: $scratch/make-deb-build.log)" >&2
    exit 1
  fi
done
bin=$("${build[@]}" --show-bin-path)
built=$(date +%s)
echo "built in $(( built - started )) s"

work=$(mktemp -d /tmp/tributary-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/debian"
# dpkg-shlibdeps wants a debian/control beside it; this one names nothing but the source.
printf 'Source: tributary\n\nPackage: tributary\nArchitecture: any\n' > "$work/debian/control"

# stage PACKAGE: an empty tree for PACKAGE with its doc directory (copyright, changelog).
stage() {
  local dir=$work/$1
  install -d "$dir/DEBIAN" "$dir/usr/bin" "$dir/usr/share/doc/$1"
  install -m 0644 deploy/debian/copyright "$dir/usr/share/doc/$1/copyright"
  {
    printf 'tributary (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Built from Tributary %s, commit %s, by scripts/make-deb.sh.\n\n' "$upstream" "$commit"
    printf ' -- %s  %s\n' "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
  } | gzip -9n > "$dir/usr/share/doc/$1/changelog.Debian.gz"
  chmod 0644 "$dir/usr/share/doc/$1/changelog.Debian.gz"
  install -D -m 0644 deploy/debian/lintian-overrides "$dir/usr/share/lintian/overrides/$1"
  sed -i "s/^PACKAGE:/$1:/" "$dir/usr/share/lintian/overrides/$1"
}

# binary PACKAGE NAME: the release binary, stripped of its symbol table (as dh_strip does).
binary() {
  install -m 0755 "$bin/$2" "$work/$1/usr/bin/$2"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$work/$1/usr/bin/$2"
}

# service PACKAGE UNIT CONFIG STATEDIR: the unit from deploy/systemd with the binary in
# /usr/bin, the example config as a conffile, and the maintainer scripts from deploy/debian.
service() {
  local dir=$work/$1 unit=$2 config=$3 statedir=$4
  install -d "$dir/lib/systemd/system" "$dir/etc/tributary"
  sed 's#^ExecStart=/usr/local/bin/#ExecStart=/usr/bin/#' "deploy/systemd/$unit" > "$dir/lib/systemd/system/$unit"
  chmod 0644 "$dir/lib/systemd/system/$unit"
  install -m 0644 "deploy/examples/$config" "$dir/etc/tributary/$config"
  echo "/etc/tributary/$config" > "$dir/DEBIAN/conffiles"
  for script in postinst prerm postrm; do
    sed -e "s#@PACKAGE@#$1#g" -e "s#@UNIT@#$unit#g" -e "s#@CONFFILE@#/etc/tributary/$config#g" \
        -e "s#@STATEDIR@#$statedir#g" "deploy/debian/$script.in" > "$dir/DEBIAN/$script"
    chmod 0755 "$dir/DEBIAN/$script"
  done
}

# control PACKAGE SECTION EXTRA-FIELDS SUMMARY DESCRIPTION: DEBIAN/control with Depends: from
# the binaries' NEEDED entries, md5sums, then dpkg-deb.
control() {
  local package=$1 section=$2 extra=$3 summary=$4 description=$5 dir=$work/$1 depends
  depends=$(cd "$work" && dpkg-shlibdeps -O $(printf -- '-e%s ' "$package"/usr/bin/*) 2>"$work/shlibdeps.log") \
    || { cat "$work/shlibdeps.log" >&2; exit 1; }
  depends=${depends#shlibs:Depends=}
  case $package in tributary-agent|tributary-aggregator) depends="adduser, $depends" ;; esac
  {
    echo "Package: $package"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $(du -sk --exclude=DEBIAN "$dir" | cut -f1)"
    echo "Depends: $depends"
    [ -n "$extra" ] && echo "$extra"
    echo "Section: $section"
    echo "Priority: optional"
    echo "Description: $summary"
    echo "$description" | sed -e 's/^$/./' -e 's/^/ /'
  } > "$dir/DEBIAN/control"
  (cd "$dir" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort | xargs md5sum > DEBIAN/md5sums)
  chmod 0644 "$dir/DEBIAN/control" "$dir/DEBIAN/md5sums"
  find "$dir" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  dpkg-deb --root-owner-group -Zxz --build "$dir" "$out/${package}_${version}_${arch}.deb" >/dev/null
  echo "$out/${package}_${version}_${arch}.deb: Depends: $depends"
}

stage tributary-agent
binary tributary-agent tributary-agent
service tributary-agent tributary-agent.service agent.yaml /var/lib/tributary
control tributary-agent net "Recommends: mosquitto
Suggests: tributary-tools" \
  "edge agent: MQTT readings buffered in SQLite, synced exactly once" \
"Runs on an IoT gateway. Subscribes to the gateway's mosquitto broker at QoS 1
on a persistent session, commits readings to a SQLite buffer in
/var/lib/tributary, and sends them in sealed protobuf batches to a
tributary-aggregator until each is acknowledged.

Edit /etc/tributary/agent.yaml (gateway_id, broker, aggregator, subscriptions),
then systemctl enable --now tributary-agent: a new install starts nothing."

stage tributary-aggregator
binary tributary-aggregator tributary-aggregator
service tributary-aggregator tributary-aggregator.service aggregator.yaml /var/lib/tributary-aggregator
control tributary-aggregator net "Suggests: tributary-tools" \
  "central service: deduplicates gateway batches into SQLite or ClickHouse" \
"Receives batches from tributary-agent over HTTP(S), writes each exactly once
to its sink (embedded SQLite in /var/lib/tributary-aggregator, or ClickHouse),
keeps the fleet registry and serves the admin API and /metrics. It can relay
to an upstream aggregator.

Edit /etc/tributary/aggregator.yaml, then
systemctl enable --now tributary-aggregator: a new install starts nothing."

stage tributary-tools
binary tributary-tools tributaryctl
binary tributary-tools tributary-sim
control tributary-tools net "" \
  "operator CLI and simulators for Tributary" \
"tributaryctl shows a Tributary fleet from an aggregator's admin API: status,
gateways, relays, one gateway's detail, a watch screen and a check for
monitoring.

tributary-sim publishes simulated sensors to an MQTT broker, runs virtual
gateways against an aggregator, injects faults with a proxy, and verifies that
a sink holds exactly the readings of a manifest."
echo "packed in $(( $(date +%s) - built )) s"
