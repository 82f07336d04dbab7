#!/usr/bin/env bash
# The Debian packages on a clean Debian 12 (label `package`; issue 12, docs/packaging.md):
#   tests/package/package_test.sh BUILD_DIR
# 1. cpack builds the four packages from BUILD_DIR (configured with the prefix /usr): names,
#    dependencies computed from the binaries, the broker's conffiles, maintainer scripts that
#    parse, lintian clean; a second set one version up for the upgrade.
# 2. A Debian 12 root file system (debootstrap --variant=minbase bookworm, cached as a tarball in
#    $OTA_DEBIAN_ROOT_CACHE, default /var/cache/ota-tests), entered with chroot: `apt-get install`
#    of the four packages resolves every dependency from Debian alone; each program's --version
#    runs; `systemd-analyze verify` passes for both units; the controller's system user and the
#    state directories exist with their modes; the units are enabled (and, no systemd running
#    in a chroot, not started; the unit's ConditionPathExists= keeps them idle until configured).
# 3. Upgrade to the next version: an edited conffile and an operator's config are kept, the state
#    directory's content too.
# 4. Remove keeps the state and the conffiles; purge deletes them and the system user.
# Needs root (chroot, mount) and Debian's mirror (the registry this machine reaches); the mirror
# is the host's (OTA_DEBIAN_MIRROR overrides). Not covered here: a booted systemd (the service
# starting, the watchdog, a restart once per upgrade): docs/packaging.md says where that stands.
set -euo pipefail
BUILD="$(cd "$1" && pwd)"
source "$(dirname "$0")/lib.sh"
WORK=$(mktemp -d /tmp/ota-package-test.XXXXXX)
ROOT="$WORK/root"
step() { echo "== package_test: $*"; }
fail() { echo "package_test: FAILED: $*" >&2; exit 1; }
cleanup() {
  umount "$ROOT/proc" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || fail "needs root (chroot and mount); run the package tests as root"
in_root() { chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
field() { dpkg-deb -f "$1" "$2"; }

# --- 1. the packages -------------------------------------------------------------------------
step "cpack: version N and N+1"
packages "$BUILD" "$WORK" || fail "cpack"
dpkg --compare-versions "$V1" gt "$V" || fail "$V1 does not order after $V"
for p in ota-agent ota-controller ota-publish ota-broker-config; do
  for set in n n1; do
    ls "$WORK/$set/${p}_"*.deb >/dev/null 2>&1 || fail "no package $p in $WORK/$set: $(ls "$WORK/$set")"
  done
  deb=$(ls "$WORK"/n/"${p}"_*.deb)
  [ "$(field "$deb" Package)" = "$p" ] || fail "$deb is not named $p"
  mkdir -p "$WORK/ctl/$p" && dpkg-deb -e "$deb" "$WORK/ctl/$p"
  for s in postinst prerm postrm; do
    [ ! -f "$WORK/ctl/$p/$s" ] || sh -n "$WORK/ctl/$p/$s" || fail "$p: $s does not parse"
  done
done
# lintian, as scripts/package runs it: no error, no warning but the justified overrides
lintian --fail-on error,warning --tag-display-limit 0 --suppress-tags-from-file "$(dirname "$0")/../../packaging/lintian-overrides" \
  "$WORK"/n/*.deb >"$WORK/lintian.log" 2>&1 || { cat "$WORK/lintian.log" >&2; fail "lintian"; }
# computed by dpkg-shlibdeps from the binaries, not written by hand: the agent's MQTT client is
# paho's, the controller's and ota-publish's libmosquitto's (docs/architecture.md, "MQTT client")
for spec in "ota-agent libpaho-mqttpp3-1" "ota-controller libmosquitto1" "ota-publish libmosquitto1"; do
  read -r p mqtt_lib <<<"$spec"
  deps=$(field "$WORK"/n/"${p}"_*.deb Depends)
  for lib in "$mqtt_lib" libssl3 libc6; do
    [[ "$deps" == *"$lib "* ]] || fail "$p: Depends has no $lib: $deps"
  done
done
[[ "$(field "$WORK"/n/ota-controller_*.deb Depends)" == *"libsqlite3-0"* ]] || fail "ota-controller: no libsqlite3-0"
[[ "$(field "$WORK"/n/ota-broker-config_*.deb Depends)" == *mosquitto* ]] || fail "ota-broker-config does not depend on mosquitto"
[ "$(cat "$WORK/ctl/ota-broker-config/conffiles")" = "$(printf '/etc/ota/mosquitto.conf\n/etc/ota/acl')" ] ||
  fail "ota-broker-config conffiles: $(cat "$WORK/ctl/ota-broker-config/conffiles")"
[ ! -f "$WORK/ctl/ota-publish/postinst" ] || fail "ota-publish has a postinst but nothing to set up"
for u in ota-agent ota-controller; do
  unit=$(dpkg-deb --fsys-tarfile "$WORK"/n/"$u"_*.deb | tar -xO "./lib/systemd/system/$u.service")
  grep -q "^ConditionPathExists=/etc/ota/${u#ota-}.json$" <<<"$unit" || fail "$u.service: no ConditionPathExists on its config"
  grep -q "^ExecStart=/usr/" <<<"$unit" || fail "$u.service: ExecStart is not under /usr: $(grep ExecStart= <<<"$unit")"
done

# --- 2. a clean Debian 12 ----------------------------------------------------------------------
debian_root "$ROOT" || fail "no Debian 12 root"
mount -t proc proc "$ROOT/proc"
mkdir -p "$ROOT/tmp/n" "$ROOT/tmp/n1"
cp "$WORK"/n/*.deb "$ROOT/tmp/n/" && cp "$WORK"/n1/*.deb "$ROOT/tmp/n1/"
step "apt-get install of the four packages ($V) and systemd, procps (systemd-analyze; the /bin/kill of mosquitto.service)"
in_root apt-get update -qq >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; fail "apt-get update"; }
in_root sh -c 'apt-get install -y -qq --no-install-recommends /tmp/n/*.deb systemd procps' >>"$WORK/apt.log" 2>&1 ||
  { tail -30 "$WORK/apt.log" >&2; fail "apt-get install: the dependencies do not resolve from Debian alone"; }
for p in ota-agent ota-controller ota-publish ota-broker-config; do
  [ "$(in_root dpkg-query -W -f='${Status} ${Version}' "$p")" = "install ok installed $V" ] || fail "$p is not installed at $V"
done
for b in ota-agent ota-controller ota-ctl ota-publish; do
  out=$(in_root "/usr/bin/$b" --version 2>&1) || fail "$b --version: $out"
  [[ "$out" == *"$b"* ]] || fail "$b --version printed: $out"
done
# --man=no: mosquitto.service names man pages, and a minbase root has no man-db
out=$(in_root systemd-analyze verify --man=no /lib/systemd/system/ota-agent.service /lib/systemd/system/ota-controller.service \
  /lib/systemd/system/mosquitto.service 2>&1) || fail "systemd-analyze verify: $out"
# Debian's mosquitto.service runs the OTA config (the drop-in of ota-broker-config)
in_root systemd-analyze cat-config /lib/systemd/system/mosquitto.service.d/ota.conf 2>/dev/null |
  grep -q '^ExecStart=/usr/sbin/mosquitto -c /etc/ota/mosquitto.conf$' || fail "no mosquitto.service drop-in running /etc/ota/mosquitto.conf"
# the unit's own lines; systemd may mention units it knows of elsewhere in a bare root
if grep -q "ota-" <<<"$out"; then fail "systemd-analyze verify: $out"; fi
pw=$(in_root getent passwd ota-controller) || fail "no system user ota-controller"
IFS=: read -r _ _ uid _ _ home shell <<<"$pw"
[ "$uid" -lt 1000 ] || fail "ota-controller is not a system user (uid $uid)"
[ "$home" = /var/lib/ota-controller ] || fail "ota-controller's home is $home"
[[ "$shell" == */nologin || "$shell" == /bin/false ]] || fail "ota-controller has a login shell: $shell"
mode() { in_root stat -c '%a %U:%G' "$1"; }
[ "$(mode /var/lib/ota-controller)" = "750 ota-controller:ota-controller" ] || fail "/var/lib/ota-controller: $(mode /var/lib/ota-controller)"
[ "$(mode /var/lib/ota-agent)" = "700 root:root" ] || fail "/var/lib/ota-agent: $(mode /var/lib/ota-agent)"
[ "$(mode /var/lib/ota/mosquitto)" = "750 mosquitto:mosquitto" ] || fail "/var/lib/ota/mosquitto: $(mode /var/lib/ota/mosquitto)"
[ "$(mode /etc/ota/certs)" = "755 root:root" ] || fail "/etc/ota/certs: $(mode /etc/ota/certs)"
for u in ota-agent ota-controller; do
  [ -L "$ROOT/etc/systemd/system/multi-user.target.wants/$u.service" ] || fail "$u.service is not enabled"
done
[ -f "$ROOT/usr/share/doc/ota-controller/examples/controller.json" ] || fail "no example controller config"
# the units' Documentation= exists
for u in ota-agent ota-controller; do
  doc=$(sed -n 's|^Documentation=file://||p' "$ROOT/lib/systemd/system/$u.service")
  [ -f "$ROOT$doc" ] || fail "$u.service: Documentation=$doc is not installed"
done
[ -x "$ROOT/usr/share/ota-broker-config/make-dev-certs" ] || fail "no make-dev-certs"
# the agent's generator: no config, no drop-in; with one, ReadWritePaths= for its pinned targets
gen=/lib/systemd/system-generators/ota-agent-generator
[ -x "$ROOT$gen" ] || fail "no $gen"
in_root "$gen" /tmp/gen /tmp/gen-early /tmp/gen-late || fail "$gen without a config"
[ ! -e "$ROOT/tmp/gen/ota-agent.service.d" ] || fail "$gen wrote a drop-in without a config"
cat >"$ROOT/etc/ota/agent.json" <<'JSON'
{"device_id": "device-001", "trusted_keys": "/etc/ota/trusted-keys",
 "mqtt": {"broker": "mqtts://127.0.0.1:8883", "cafile": "/etc/ota/certs/ca.pem", "cert": "/etc/ota/certs/d.pem", "key": "/etc/ota/certs/d.key"},
 "components": {"model": {"type": "file", "target": "/var/lib/models"}, "tool": {"type": "binary", "target": "/usr/local/bin/tool"}}}
JSON
in_root "$gen" /tmp/gen /tmp/gen-early /tmp/gen-late || fail "$gen with a config"
dropin="$ROOT/tmp/gen/ota-agent.service.d/50-install-targets.conf"
[ -f "$dropin" ] || fail "$gen wrote no drop-in"
[ "$(grep '^ReadWritePaths=' "$dropin")" = "$(printf 'ReadWritePaths="-/usr/local/bin"\nReadWritePaths="-/var/lib/models"\nReadWritePaths="-/var/lib/ota-agent"')" ] ||
  fail "the generated drop-in: $(cat "$dropin")"
# the unit with the drop-in still verifies (systemd-analyze takes drop-ins from /run/systemd/generator)
mkdir -p "$ROOT/run/systemd/generator" && cp -r "$ROOT/tmp/gen/ota-agent.service.d" "$ROOT/run/systemd/generator/"
out=$(in_root systemd-analyze verify --man=no /lib/systemd/system/ota-agent.service 2>&1) || fail "systemd-analyze verify with the drop-in: $out"
rm -rf "$ROOT/run/systemd/generator/ota-agent.service.d" "$ROOT/etc/ota/agent.json"
# the broker config is the one the project's tests run (its paths under /etc/ota)
grep -q '^acl_file /etc/ota/acl$' "$ROOT/etc/ota/mosquitto.conf" || fail "mosquitto.conf does not use /etc/ota/acl"

# --- 3. upgrade --------------------------------------------------------------------------------
step "upgrade to $V1: conffiles and the operator's config and state are kept"
echo "# added by the operator" >>"$ROOT/etc/ota/acl"
cp "$ROOT/usr/share/doc/ota-controller/examples/controller.json" "$ROOT/etc/ota/controller.json"
echo "state" >"$ROOT/var/lib/ota-controller/controller.db"
in_root chown ota-controller:ota-controller /var/lib/ota-controller/controller.db
# a self-updated agent (ota-agent-launch --self-bin) and its pending guard: the package wins
mkdir -p "$ROOT/var/lib/ota-agent/bin"
printf '#!/bin/sh\n' >"$ROOT/var/lib/ota-agent/bin/ota-agent" && chmod 755 "$ROOT/var/lib/ota-agent/bin/ota-agent"
echo "BIN=/var/lib/ota-agent/bin/ota-agent" >"$ROOT/var/lib/ota-agent/self-update.env"
echo "agent state" >"$ROOT/var/lib/ota-agent/agent.db"
in_root sh -c 'apt-get install -y -qq -o Dpkg::Options::=--force-confold /tmp/n1/*.deb' >"$WORK/upgrade.log" 2>&1 ||
  { tail -30 "$WORK/upgrade.log" >&2; fail "upgrade to $V1"; }
for p in ota-agent ota-controller ota-publish ota-broker-config; do
  [ "$(in_root dpkg-query -W -f='${Version}' "$p")" = "$V1" ] || fail "$p not upgraded to $V1"
done
tail -1 "$ROOT/etc/ota/acl" | grep -q "added by the operator" || fail "the edited conffile /etc/ota/acl was replaced"
[ -f "$ROOT/etc/ota/controller.json" ] || fail "the operator's controller.json is gone"
[ "$(cat "$ROOT/var/lib/ota-controller/controller.db")" = state ] || fail "the controller's state is gone"
[ "$(in_root getent passwd ota-controller | cut -d: -f3)" = "$uid" ] || fail "the system user changed"
[ ! -e "$ROOT/var/lib/ota-agent/bin/ota-agent" ] || fail "the upgrade left the self-updated agent binary in place"
[ ! -e "$ROOT/var/lib/ota-agent/self-update.env" ] || fail "the upgrade left the self-update guard"
[ "$(cat "$ROOT/var/lib/ota-agent/agent.db")" = "agent state" ] || fail "the agent's state is gone after the upgrade"
out=$(in_root dpkg --verify ota-agent 2>&1) && [ -z "$out" ] || fail "dpkg --verify ota-agent: $out"

# --- 4. remove, then purge -----------------------------------------------------------------------
step "remove keeps state and config; purge deletes them and the user"
in_root apt-get remove -y -qq ota-agent ota-controller ota-publish ota-broker-config >"$WORK/remove.log" 2>&1 ||
  { tail -30 "$WORK/remove.log" >&2; fail "apt-get remove"; }
[ ! -e "$ROOT/usr/bin/ota-controller" ] || fail "ota-controller still installed after remove"
[ -f "$ROOT/var/lib/ota-controller/controller.db" ] || fail "remove deleted the controller's state"
[ -f "$ROOT/etc/ota/acl" ] || fail "remove deleted the conffile /etc/ota/acl"
in_root getent passwd ota-controller >/dev/null || fail "remove deleted the system user"
in_root dpkg --purge ota-agent ota-controller ota-publish ota-broker-config >"$WORK/purge.log" 2>&1 ||
  { tail -30 "$WORK/purge.log" >&2; fail "dpkg --purge"; }
for gone in /var/lib/ota-controller /var/lib/ota-agent /var/lib/ota/mosquitto /etc/ota/acl /etc/ota/mosquitto.conf \
  /etc/systemd/system/multi-user.target.wants/ota-controller.service /lib/systemd/system/mosquitto.service.d/ota.conf; do
  [ ! -e "$ROOT$gone" ] && [ ! -L "$ROOT$gone" ] || fail "purge left $gone"
done
if in_root getent passwd ota-controller >/dev/null; then fail "purge left the user ota-controller"; fi
if in_root getent group ota-controller >/dev/null; then fail "purge left the group ota-controller"; fi
[ -f "$ROOT/etc/ota/controller.json" ] || fail "purge deleted the operator's own controller.json (not the package's)"
step "all checks passed ($V -> $V1)"
