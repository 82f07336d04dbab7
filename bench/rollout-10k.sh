#!/usr/bin/env bash
# A full three-wave rollout over DEVICES simulated devices (default 10,000), then notify latency.
#   bench/rollout-10k.sh [BUILD_DIR] [DEVICES] [NOTIFY_RUNS]     (default: build/, 10000, 10)
# Mosquitto (project config + simulation listener), ota-controller with canary 1 % -> early 10 %
# -> broad 100 % (soak 0, success 100 %), ota-fleet-sim with every device reporting 7 stages over
# 2-3 s. Prints: wall time from starting `ota-publish` to the rollout's `completed`; whether
# every device was counted once (the controller's totals against the simulator's summary); peak
# RSS of the controller and the broker. Then NOTIFY_RUNS more releases with an approval gate on
# the early wave: notify latency = from starting `ota-publish` (its TLS connect, signing and
# publish included) to the last canary device receiving the open wave message (simulator
# events, wall clock), p50/p99. Baseline: `mosquitto_pub` (TLS connect and publish) of one
# retained message on a wave topic of the canary that nobody else uses, timed the same way.
# Also printed: the same from the command's return (as the issue words it). ota-publish returns
# only after its clean disconnect, often after the devices have the release (negative values), so
# its start is the honest reference.
# Only processes this script started are stopped, by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
DEVICES="${2:-10000}"
NOTIFY_RUNS="${3:-10}"
WORK=$(mktemp -d /tmp/ota-bench-rollout.XXXXXX)
PIDS=()
source "$ROOT/bench/lib/fleet.sh"
trap bench_cleanup EXIT
bench_require rollout-10k.sh "$SIM" "$CONTROLLER" "$PUBLISH" "$CTL_BIN"
now_ms() { date +%s%3N; }
state_of() { "${CTL[@]}" --json status "$1" 2>/dev/null | sed -nE 's/^  "state": "([a-z_]+)".*/\1/p' | head -1; }

bench_broker "$DEVICES"
bench_controller '[{"name": "canary", "percent": 1}, {"name": "early", "percent": 10}, {"name": "broad", "percent": 100}]'
# components: app (the rollout) and gate (the notify runs, whose early wave waits for approval)
python3 - "$WORK/controller.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["fleets"][0]["defaults"] = {"device_timeout_s": 600}
c["fleets"][0]["components"] = {"gate": {"waves": {"early": {"approval": True}}}}
json.dump(c, open(p, "w"))
PY
kill "$CONTROLLER_PID"; wait "$CONTROLLER_PID" 2>/dev/null || true
"$CONTROLLER" --config "$WORK/controller.json" >"$WORK/controller.log" 2>&1 &
CONTROLLER_PID=$!; PIDS+=($CONTROLLER_PID)
bench_wait_port "$METRICS_PORT"

t_start=$(now_ms)
"$SIM" --devices "$DEVICES" --port "$SIM_PORT" --secret "$SECRET" --trusted-keys "$WORK/release.pub" \
  --component app=1.0.0 --component gate=1.0.0 --work-ms 2000 --jitter-ms 1000 --duration 3600 --quiet \
  --events "$WORK/events.jsonl" > "$WORK/sim.json" 2>"$WORK/sim.err" &
SIM_PID=$!; PIDS+=($SIM_PID)
for _ in $(seq 1 1200); do [ "$(bench_metric 'ota_controller_devices_known')" -ge "$DEVICES" ] && break; sleep 0.1; done
echo "rollout-10k: $DEVICES devices known to the controller after $(( $(now_ms) - t_start )) ms"
sleep 2  # let the assignments settle

t0=$(now_ms)
bench_release 1.1.0
ok=""
for _ in $(seq 1 3000); do  # 600 s at most
  [ "$(state_of plant.app.1.1.0)" = completed ] && { ok=1; break; }
  sleep 0.2
done
t1=$(now_ms)
[ -n "$ok" ] || { echo "rollout-10k: the rollout did not complete: $("${CTL[@]}" status plant.app.1.1.0)" >&2; exit 1; }
"${CTL[@]}" status plant.app.1.1.0
totals=$("${CTL[@]}" --json status plant.app.1.1.0 | python3 -c 'import json,sys; t=json.load(sys.stdin)["totals"]; print(t["devices"], t["succeeded"], t["failed"])')
read -r c_devices c_succeeded c_failed <<<"$totals"
printf 'three-wave rollout: %s devices, publish -> completed %.1f s; counted: %s devices, %s succeeded, %s failed (each once: %s)\n' \
  "$DEVICES" "$(awk -v a="$t1" -v b="$t0" 'BEGIN { print (a - b) / 1000 }')" "$c_devices" "$c_succeeded" "$c_failed" \
  "$([ "$c_devices" = "$DEVICES" ] && [ "$c_succeeded" = "$DEVICES" ] && echo yes || echo NO)"
printf 'peak RSS: controller %.1f MiB, broker %.1f MiB\n' "$(awk -v k="$(rss_kb $CONTROLLER_PID)" 'BEGIN { print k / 1024 }')" \
  "$(awk -v k="$(rss_kb $BROKER_PID)" 'BEGIN { print k / 1024 }')"

# Notify latency: each run publishes gate 1.<run>.0; the canary (1 %) gets it, early waits for approval.
: > "$WORK/notify.txt"
# One watcher sees the release and the canary's wave message arrive: the gap is the controller's
# share (verify, create the rollout and its members in one transaction, open the wave, publish).
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$C/ca.pem" --cert "$C/operator.pem" --key "$C/operator.key" \
  -V mqttv5 -q 1 -R -F '%U %t %p' -t ota/v1/releases/gate/stable -t ota/v1/fleets/plant/waves/canary/gate \
  > "$WORK/watch.txt" 2>&1 &
PIDS+=($!)
sleep 0.5
for run in $(seq 1 "$NOTIFY_RUNS"); do
  bench_release_component() {
    head -c 1024 /dev/urandom > "$WORK/gate.bin"
    "$PUBLISH" publish --broker "mqtts://127.0.0.1:$MQTT_PORT" --cafile "$C/ca.pem" --cert "$C/ci.pem" --key "$C/ci.key" \
      --signing-key "$WORK/release.key" --component gate --version "$1" --channel stable \
      --artifact "$WORK/gate.bin" --url "https://127.0.0.1:1/gate.bin" --install file --target /var/lib/gate >/dev/null
  }
  t_pub=$(now_ms)
  bench_release_component "1.$run.0"
  echo "gate plant.gate.1.$run.0 $t_pub $(now_ms)" >> "$WORK/notify.txt"
  for _ in $(seq 1 150); do
    [ "$(state_of "plant.gate.1.$run.0")" = active ] && "${CTL[@]}" --json status "plant.gate.1.$run.0" | grep -q '"waiting_approval"' && break
    sleep 0.2
  done
  sleep 1
  # baseline: the broker alone fans out one retained message to the same canary devices
  t_pub=$(now_ms)
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$C/ca.pem" --cert "$C/controller.pem" --key "$C/controller.key" \
    -q 1 -r -t ota/v1/fleets/plant/waves/canary/probe -m "{\"rollout\":\"probe-$run\",\"state\":\"open\",\"release\":{}}"
  echo "probe probe-$run $t_pub $(now_ms)" >> "$WORK/notify.txt"
  sleep 1
done
sleep 1.5
python3 - "$WORK/events.jsonl" "$WORK/notify.txt" "$WORK/watch.txt" <<'PY'
import json, re, sys
events, notify, watch = sys.argv[1], sys.argv[2], sys.argv[3]
wave = {}
opened = {}
for line in open(events):
    e = json.loads(line)
    if e.get("event") == "assignment_received":
        wave[e["device"]] = e.get("wave")
    elif e.get("event") == "wave_open_received" and e.get("component") in ("gate", "probe"):
        r = e.get("rollout")
        opened.setdefault(r, {}).setdefault(e["device"], e["wall_us"] / 1000.0)
canary = {d for d, w in wave.items() if w == "canary"}
lat = {"gate": [], "probe": []}
after_return = {"gate": [], "probe": []}  # negative: the devices had it before the command returned
for line in open(notify):
    kind, rollout, t, t_ret = line.split()
    got = opened.get(rollout, {})
    if canary and canary.issubset(got):
        lat[kind].append(max(got[d] for d in canary) - float(t))
        after_return[kind].append(max(got[d] for d in canary) - float(t_ret))
if not lat["gate"]:
    sys.exit("rollout-10k: no notify run measured")
def pct(s, p):
    s = sorted(s)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]
print(f"notify latency to the {len(canary)} canary devices (ms)      p50     p99     max   runs   from the command's return: p50 p99")
for kind, name in (("gate", "ota-publish -> controller -> devices"), ("probe", "mosquitto_pub -> devices (baseline)")):
    if lat[kind]:
        print(f"  {name:<44} {pct(lat[kind], 50):6.0f}  {pct(lat[kind], 99):6.0f}  {max(lat[kind]):6.0f}  {len(lat[kind]):5d}"
              f"   {pct(after_return[kind], 50):6.0f} {pct(after_return[kind], 99):6.0f}")
# the controller's share: release seen -> the canary's open wave message seen, by one watcher
release_at, wave_at = {}, {}
for line in open(watch):
    parts = line.split(" ", 2)
    if len(parts) < 3 or not re.match(r"^[0-9.]+$", parts[0]):
        continue
    t, topic, payload = float(parts[0]) * 1000.0, parts[1], parts[2]
    m = re.search(r'"version":"([^"]+)"', payload)
    if topic.startswith("ota/v1/releases/") and m:
        release_at.setdefault(m.group(1), t)
    r = re.search(r'"rollout":"plant\.gate\.([^"]+)","state":"open"', payload)
    if "/waves/" in topic and r:
        wave_at.setdefault(r.group(1), t)
share = [wave_at[v] - release_at[v] for v in release_at if v in wave_at]
if share:
    print(f"  of which the controller: release received -> wave message sent {pct(share, 50):6.0f}  {pct(share, 99):6.0f}  {max(share):6.0f}  {len(share):5d}")
PY
