#!/usr/bin/env bash
# The packaged services under a booted systemd (label `package`; docs/packaging.md):
#   tests/package/package_systemd_test.sh BUILD_DIR
# A Debian 12 root (tests/package/lib.sh) with systemd and the four packages of BUILD_DIR
# (cpack) is imported into a private Podman engine (docker/engine) and booted with systemd as
# PID 1 (`podman run --systemd=always`, --network none: its own loopback, nothing else). Then, as
# an operator would: a dev PKI with the packaged make-dev-certs, a release key, the example
# controller config; Debian's mosquitto.service runs the OTA config (the drop-in of
# ota-broker-config); ota-controller reaches READY (Type=notify: `systemctl start` returns only
# then) with a STATUS line; stopped with SIGSTOP, the watchdog kills it and systemd starts it
# again; an upgrade to the next version restarts the running service exactly once. Then an agent
# in a second booted container (sharing the first's network namespace, so its 127.0.0.1 is the
# broker's) takes a release published with ota-publish and served by nginx: the rollout completes
# through the packaged services, with the agent's sandbox opened for its pinned target by the
# packaged generator; then the agent updates itself (a newer agent binary, the test's
# ota-agent-next) into its state directory, never over dpkg's /usr/bin/ota-agent, and an upgrade
# of the package takes over again.
# Needs root, Podman (runc) and Debian's mirror the first time (the cached root).
set -euo pipefail
BUILD="$(cd "$1" && pwd)"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/lib.sh"
WORK=$(mktemp -d /tmp/ota-package-systemd.XXXXXX)
ROOT="$WORK/root"
C=ota-package-systemd-$$
step() { echo "== package_systemd_test: $*"; }
fail() {
  echo "package_systemd_test: FAILED: $*" >&2
  if podman container exists "$C" 2>/dev/null; then
    podman exec "$C" journalctl --no-pager -n 40 -u ota-controller -u mosquitto >&2 2>/dev/null || true
  fi
  exit 1
}
cleanup() {
  umount "$ROOT/proc" 2>/dev/null || true
  "$HERE/../../docker/engine" stop "$WORK/engine" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || fail "needs root (chroot, Podman)"
in_c() { podman exec "$C" "$@"; }
# wait_for SECONDS CMD...: CMD succeeds within SECONDS (polled every 0.5 s)
wait_for() {
  local n=$(( $1 * 2 )); shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}

step "packages N and N+1; a Debian 12 root with systemd and N"
packages "$BUILD" "$WORK" || fail "cpack"
debian_root "$ROOT" || fail "no Debian 12 root"
# not under /tmp: a container booted with --systemd=always gets a tmpfs there
mkdir -p "$ROOT/var/cache/ota-test/n" "$ROOT/var/cache/ota-test/n1"
cp "$WORK"/n/*.deb "$ROOT/var/cache/ota-test/n/" && cp "$WORK"/n1/*.deb "$ROOT/var/cache/ota-test/n1/"
mount -t proc proc "$ROOT/proc"
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive sh -c \
  'apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd systemd-sysv procps nginx-light /var/cache/ota-test/n/*.deb' \
  >"$WORK/apt.log" 2>&1 || { tail -30 "$WORK/apt.log" >&2; fail "apt-get install in the root"; }
umount "$ROOT/proc"
rm -f "$ROOT/usr/sbin/policy-rc.d"  # booted, services start as on a machine

step "boot it under Podman with systemd as PID 1"
eval "$("$HERE/../../docker/engine" start "$WORK/engine")"
tar -C "$ROOT" -c . | podman import - localhost/ota-package-systemd:1 >/dev/null || fail "podman import"
rm -rf "$ROOT"
podman run -d --name "$C" --systemd=always --network none localhost/ota-package-systemd:1 /lib/systemd/systemd >/dev/null ||
  fail "podman run --systemd=always"
state() { in_c systemctl is-system-running 2>/dev/null || true; }
wait_for 60 sh -c "[ \"\$(podman exec $C systemctl is-system-running 2>/dev/null)\" = running ] || [ \"\$(podman exec $C systemctl is-system-running 2>/dev/null)\" = degraded ]" ||
  fail "systemd did not boot: $(state)"
# enabled by the package, but idle until configured
[ "$(in_c systemctl is-enabled ota-controller)" = enabled ] || fail "ota-controller.service is not enabled"
in_c systemctl is-active ota-controller >/dev/null && fail "ota-controller runs without a config"

step "configure as an operator: PKI, release key, controller config; the packaged broker"
in_c sh -ec '
  /usr/share/ota-broker-config/make-dev-certs /etc/ota/certs --devices 1 >/dev/null
  chgrp mosquitto /etc/ota/certs/broker.key && chmod 0640 /etc/ota/certs/broker.key
  chgrp ota-controller /etc/ota/certs/controller.key && chmod 0640 /etc/ota/certs/controller.key
  ota-publish keygen --out /etc/ota/release >/dev/null && cp /etc/ota/release.pub /etc/ota/trusted-keys/
  cp /usr/share/doc/ota-controller/examples/controller.json /etc/ota/controller.json
  systemctl restart mosquitto' || fail "configuring"
wait_for 20 in_c systemctl is-active mosquitto || fail "mosquitto.service with the OTA config is not active"
in_c journalctl -u mosquitto --no-pager | grep -q "Opening ipv4 listen socket on port 8883" || fail "the broker is not on the OTA listener"

step "ota-controller reaches READY (systemctl start returns once it is connected and subscribed)"
timeout 60 podman exec "$C" systemctl start ota-controller || fail "systemctl start ota-controller"
[ "$(in_c systemctl is-active ota-controller)" = active ] || fail "ota-controller is not active"
status=$(in_c systemctl show -p StatusText --value ota-controller)
[[ "$status" == *connected* ]] || fail "STATUS is not a connected summary: $status"
[ "$(in_c systemctl show -p User --value ota-controller)" = ota-controller ] || fail "not run as ota-controller"

step "the watchdog: SIGSTOP the controller, systemd kills and restarts it"
in_c mkdir -p /etc/systemd/system/ota-controller.service.d
in_c sh -c 'printf "[Service]\nWatchdogSec=3\nRestartSec=1\n" > /etc/systemd/system/ota-controller.service.d/test-watchdog.conf'
in_c systemctl daemon-reload
timeout 60 podman exec "$C" systemctl restart ota-controller || fail "restart with WatchdogSec=3"
pid=$(in_c systemctl show -p MainPID --value ota-controller)
[ "$pid" -gt 0 ] || fail "no main pid"
in_c kill -STOP "$pid"
wait_for 30 sh -c "p=\$(podman exec $C systemctl show -p MainPID --value ota-controller); [ \"\$p\" != $pid ] && [ \"\$p\" != 0 ] && [ \"\$(podman exec $C systemctl is-active ota-controller)\" = active ]" ||
  fail "not restarted after the watchdog timeout (pid $pid)"
in_c journalctl -u ota-controller --no-pager | grep -q "Watchdog timeout" || fail "the journal shows no watchdog timeout"
in_c rm /etc/systemd/system/ota-controller.service.d/test-watchdog.conf
in_c systemctl daemon-reload

step "upgrade to $V1 while it runs: restarted once, config and state kept"
timeout 60 podman exec "$C" systemctl restart ota-controller || fail "restart"
before=$(in_c systemctl show -p InvocationID --value ota-controller)
starts_before=$(in_c journalctl -u ota-controller --no-pager -o cat | grep -c "controller running" || true)
timeout 180 podman exec "$C" env DEBIAN_FRONTEND=noninteractive sh -c 'dpkg -i /var/cache/ota-test/n1/*.deb' >"$WORK/upgrade.log" 2>&1 ||
  { tail -30 "$WORK/upgrade.log" >&2; fail "dpkg -i of $V1"; }
wait_for 30 sh -c "[ \"\$(podman exec $C systemctl is-active ota-controller)\" = active ]" || fail "not active after the upgrade"
after=$(in_c systemctl show -p InvocationID --value ota-controller)
[ "$after" != "$before" ] || fail "the upgrade did not restart the controller"
starts_after=$(in_c journalctl -u ota-controller --no-pager -o cat | grep -c "controller running" || true)
[ $((starts_after - starts_before)) -le 1 ] || fail "the upgrade started the controller $((starts_after - starts_before)) times"
[ "$(in_c dpkg-query -W -f='${Version}' ota-controller)" = "$V1" ] || fail "not upgraded"
in_c test -f /var/lib/ota-controller/controller.db || fail "the database is gone after the upgrade"
in_c test -f /etc/ota/controller.json || fail "the config is gone after the upgrade"

step "an agent in a second container (sharing the first's network namespace) gets a release through them"
A="$C-agent"
podman run -d --name "$A" --systemd=always --network "container:$C" localhost/ota-package-systemd:1 /lib/systemd/systemd >/dev/null ||
  fail "podman run of the agent's container"
wait_for 60 sh -c "s=\$(podman exec $A systemctl is-system-running 2>/dev/null); [ \"\$s\" = running ] || [ \"\$s\" = degraded ]" ||
  fail "systemd did not boot in the agent's container"
in_a() { podman exec "$A" "$@"; }
# the artifact server (nginx, HTTPS with the dev PKI) and a one-wave fleet on the controller
in_c sh -ec '
  mkdir -p /srv/artifacts
  printf "server {\n listen 127.0.0.1:8443 ssl;\n ssl_certificate /etc/ota/certs/artifacts.pem;\n ssl_certificate_key /etc/ota/certs/artifacts.key;\n root /srv/artifacts;\n}\n" > /etc/nginx/sites-enabled/ota-artifacts
  systemctl restart nginx
  cat > /etc/ota/controller.json <<JSON
{"mqtt": {"broker": "mqtts://127.0.0.1:8883", "cafile": "/etc/ota/certs/ca.pem",
          "cert": "/etc/ota/certs/controller.pem", "key": "/etc/ota/certs/controller.key"},
 "trusted_keys": "/etc/ota/trusted-keys", "database": "/var/lib/ota-controller/controller.db",
 "fleets": [{"name": "plant", "channel": "stable", "waves": [{"name": "all", "percent": 100}]}]}
JSON' || fail "artifact server and controller config"
timeout 60 podman exec "$C" systemctl restart ota-controller || fail "restart with the one-wave fleet"
# the device: its certificate, the release key, a config that pins the model's target; the
# packaged generator opens the sandbox for it at daemon-reload (docs/systemd.md, "Install targets")
for f in certs/ca.pem certs/device-001.pem certs/device-001.key release.pub; do
  podman cp "$C:/etc/ota/$f" "$WORK/$(basename "$f")" && podman cp "$WORK/$(basename "$f")" "$A:/etc/ota/$f" || fail "copying $f"
done
in_a sh -ec '
  mv /etc/ota/release.pub /etc/ota/trusted-keys/ && chmod 0600 /etc/ota/certs/device-001.key
  mkdir -p /var/lib/models && echo old > /var/lib/models/model-2026-01-01.bin
  cat > /etc/ota/agent.json <<JSON
{"device_id": "device-001", "platform": "linux/amd64",
 "mqtt": {"broker": "mqtts://127.0.0.1:8883", "cafile": "/etc/ota/certs/ca.pem",
          "cert": "/etc/ota/certs/device-001.pem", "key": "/etc/ota/certs/device-001.key"},
 "trusted_keys": "/etc/ota/trusted-keys/", "state_dir": "/var/lib/ota-agent",
 "download": {"cafile": "/etc/ota/certs/ca.pem"},
 "components": {"model": {"type": "file", "target": "/var/lib/models",
                      "version_source": {"type": "files", "dir": "/var/lib/models", "pattern": "model-(.*)\\\\.bin"}},
                "ota-agent": {"type": "self", "version_source": {"type": "agent"}}}}
JSON
  systemctl daemon-reload' || fail "configuring the agent"
rw=$(in_a systemctl show -p ReadWritePaths --value ota-agent)
[[ "$rw" == *-/var/lib/models* ]] || fail "the generator did not open /var/lib/models: ReadWritePaths=$rw"
[[ "$rw" != */usr/bin* ]] || fail "the agent's sandbox opens /usr/bin: ReadWritePaths=$rw"
timeout 60 podman exec "$A" systemctl start ota-agent || fail "systemctl start ota-agent"
[ "$(in_a systemctl is-active ota-agent)" = active ] || fail "ota-agent is not active"
in_c sh -ec '
  echo "model 2026-03-10" > /srv/artifacts/model-2026-03-10.bin
  ota-publish publish --broker mqtts://127.0.0.1:8883 --cafile /etc/ota/certs/ca.pem --cert /etc/ota/certs/ci.pem \
    --key /etc/ota/certs/ci.key --signing-key /etc/ota/release.key --component model --version 2026-03-10 \
    --artifact /srv/artifacts/model-2026-03-10.bin --url https://127.0.0.1:8443/model-2026-03-10.bin \
    --install file --target /var/lib/models' >"$WORK/publish.log" 2>&1 || { cat "$WORK/publish.log" >&2; fail "ota-publish"; }
ctl() { in_c ota-ctl --broker mqtts://127.0.0.1:8883 --cafile /etc/ota/certs/ca.pem --cert /etc/ota/certs/operator.pem \
  --key /etc/ota/certs/operator.key "$@"; }
wait_for 90 sh -c "podman exec $C journalctl -u ota-controller --no-pager | grep -q 'rollout completed'" || {
  ctl status plant.model.2026-03-10 >&2 || true
  podman exec "$A" journalctl -u ota-agent --no-pager -n 30 >&2 || true
  fail "the rollout did not complete"
}
in_a test -f /var/lib/models/model-2026-03-10.bin || fail "the release is not installed on the device"
[ "$(in_a cat /var/lib/models/model-2026-03-10.bin)" = "model 2026-03-10" ] || fail "the installed file is not the artifact"
out=$(ctl status plant.model.2026-03-10 2>&1) || fail "ota-ctl status: $out"
[[ "$out" == *completed* ]] || fail "ota-ctl status: $out"
status=$(in_a systemctl show -p StatusText --value ota-agent)
[[ "$status" == *model=2026-03-10* ]] || fail "the agent's STATUS does not show the new version: $status"

step "the agent updates itself into its state directory; dpkg's binary stays as installed"
packaged=$(in_a /usr/bin/ota-agent --version | awk '{print $2}')
podman cp "$BUILD/tests/device-agent/ota-agent-next" "$C:/srv/artifacts/ota-agent-99.0.0" || fail "copying ota-agent-next"
in_c sh -ec '
  ota-publish publish --broker mqtts://127.0.0.1:8883 --cafile /etc/ota/certs/ca.pem --cert /etc/ota/certs/ci.pem \
    --key /etc/ota/certs/ci.key --signing-key /etc/ota/release.key --component ota-agent --version 99.0.0 \
    --artifact /srv/artifacts/ota-agent-99.0.0 --url https://127.0.0.1:8443/ota-agent-99.0.0 --install self' \
  >"$WORK/publish-self.log" 2>&1 || { cat "$WORK/publish-self.log" >&2; fail "ota-publish of the agent"; }
wait_for 120 sh -c "podman exec $A systemctl show -p StatusText --value ota-agent | grep -q 'ota-agent=99.0.0'" || {
  ctl status plant.ota-agent.99.0.0 >&2 || true
  podman exec "$A" journalctl -u ota-agent --no-pager -n 40 >&2 || true
  fail "the agent did not update itself to 99.0.0"
}
wait_for 60 sh -c "podman exec $C journalctl -u ota-controller --no-pager | grep 'rollout completed' | grep -q ota-agent" || {
  ctl status plant.ota-agent.99.0.0 >&2 || true
  fail "the agent's rollout did not complete"
}
[ "$(in_a /var/lib/ota-agent/bin/ota-agent --version | awk '{print $2}')" = 99.0.0 ] || fail "no 99.0.0 in /var/lib/ota-agent/bin"
[ "$(in_a /usr/bin/ota-agent --version | awk '{print $2}')" = "$packaged" ] || fail "the self-update changed /usr/bin/ota-agent"
out=$(in_a dpkg --verify ota-agent 2>&1) && [ -z "$out" ] || fail "dpkg --verify ota-agent after the self-update: $out"
in_a test -f /var/lib/ota-agent/self-update.env && fail "the self-update guard is still there after the confirmation"

step "an upgrade of the package takes over from the self-updated agent"
timeout 180 podman exec "$A" env DEBIAN_FRONTEND=noninteractive sh -c 'dpkg -i /var/cache/ota-test/n1/ota-agent_*.deb' \
  >"$WORK/upgrade-agent.log" 2>&1 || { tail -30 "$WORK/upgrade-agent.log" >&2; fail "dpkg -i of ota-agent $V1"; }
in_a test -e /var/lib/ota-agent/bin/ota-agent && fail "the upgrade left the self-updated binary"
wait_for 60 sh -c "podman exec $A systemctl show -p StatusText --value ota-agent | grep -q 'ota-agent=$packaged'" ||
  fail "the packaged agent does not run after the upgrade: $(in_a systemctl show -p StatusText --value ota-agent)"
podman rm -f "$A" >/dev/null 2>&1 || true
step "all checks passed"
