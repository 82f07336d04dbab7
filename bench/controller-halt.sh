#!/usr/bin/env bash
# Halt latency of ota-controller: from the status message that crosses the failure threshold to
# the retained `halted` state on the wave topic, with DEVICES devices reporting, over RUNS rollouts.
#   bench/controller-halt.sh [BUILD_DIR] [DEVICES] [RUNS]      (default: build/, 1000, 30)
# One wave holds every device (percent 100, max_failures 1); ota-fleet-sim runs DEVICES devices
# that each report as the agent does (docs/agent.md, "Status reports"): downloading, verifying,
# installing and a final stage, 4 reports (PROGRESS_STEPS=N: N downloading reports instead of 1;
# before 2026-12-04 the simulator sent 7: downloading 0/50/100 and health_checking), over 500-2500 ms (JITTER_MS=2000: each device's reports spread over 500 + 0..JITTER_MS ms);
# one device fails every release. Each run publishes a newer release
# (superseding the halted one), so all devices report at once while the failing one fails.
# Latency = the failing device's `halted_received` minus its `status_published` of the failure
# (both CLOCK_MONOTONIC in the simulator's event log). Baseline, in the same run: ota-bench-count
# as a bare paho client (controller certificate) that answers the same failure message with one
# publish to the failing device (its cmd topic, {"cmd":"baseline","component":<rollout>}, which
# the simulator logs and ignores) and does nothing else: the two broker hops and a client,
# without ingest, SQLite or rollout logic. (The controller's halted message goes to all devices
# of the wave, the baseline's to one.) Only processes this script started are stopped, by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
DEVICES="${2:-1000}"
RUNS="${3:-30}"
WORK=$(mktemp -d /tmp/ota-bench-halt.XXXXXX)
PIDS=()
source "$ROOT/bench/lib/fleet.sh"
trap bench_cleanup EXIT
bench_require controller-halt.sh "$SIM" "$CONTROLLER" "$PUBLISH" "$CTL_BIN" "$BUILD/bench/tools/ota-bench-count"
# WAVE_PERCENT (default 100): the wave that halts holds this percent of the devices (stable hash,
# as the controller places them); the others are in a later wave that never opens. The failing
# device is the first one the hash puts in the halting wave.
WAVE_PERCENT="${WAVE_PERCENT:-100}"
JITTER_MS="${JITTER_MS:-2000}"
FAILING=$(python3 - "$WAVE_PERCENT" <<'PY'
import hashlib, sys
p = float(sys.argv[1])
for i in range(7, 100000):
    d = "device-%05d" % i
    if int(hashlib.sha256(("plant/" + d).encode()).hexdigest()[:12], 16) % 10000 < int(p * 100 + 0.5):
        print(d); break
PY
)

bench_broker "$DEVICES"
bench_controller "[{\"name\": \"all\", \"percent\": $WAVE_PERCENT, \"max_failures\": 1, \"device_timeout_s\": 600}, {\"name\": \"none\"}]"
"$BUILD/bench/tools/ota-bench-count" --broker "mqtts://127.0.0.1:$MQTT_PORT" --cafile "$C/ca.pem" --cert "$C/controller.pem" \
  --key "$C/controller.key" --client-id bench-reflect --topic "ota/v1/devices/$FAILING/status/app" --count 1000000000 \
  --timeout 3600 --skip-retained --reflect-topic "ota/v1/devices/$FAILING/cmd" --reflect-when "${REFLECT_WHEN:-\"stage\":\"rolled_back\"}" \
  > "$WORK/reflect.out" 2>&1 &
PIDS+=($!)
"$SIM" --devices "$DEVICES" --port "$SIM_PORT" --secret "$SECRET" --trusted-keys "$WORK/release.pub" \
  --work-ms 500 --jitter-ms "$JITTER_MS" --progress-steps "${PROGRESS_STEPS:-1}" --fail-devices "$FAILING" --duration 3600 --quiet --events "$WORK/events.jsonl" \
  > "$WORK/sim.json" 2>"$WORK/sim.err" &
SIM_PID=$!; PIDS+=($SIM_PID)
for _ in $(seq 1 600); do [ "$(bench_metric 'ota_controller_devices_known')" -ge "$DEVICES" ] && break; sleep 0.1; done
echo "controller-halt: $DEVICES devices, the halting wave holds $WAVE_PERCENT % of them, reports over 500 + 0..$JITTER_MS ms, $RUNS runs; failing device $FAILING"
cpu0=("$(cpu_ms $BROKER_PID)" "$(cpu_ms $SIM_PID)" "$(cpu_ms $CONTROLLER_PID)")
for run in $(seq 1 "$RUNS"); do
  version="1.$run.0"
  bench_release "$version"
  ok=""
  for _ in $(seq 1 $((300 + JITTER_MS / 100))); do  # 30 s more than the reports take, at most
    if "${CTL[@]}" --json status "plant.app.$version" 2>/dev/null | grep -q '"state": "halted"'; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "controller-halt: run $run did not halt" >&2; exit 1; }
  sleep "$(( (JITTER_MS + 600) / 1000 )).$(( (JITTER_MS + 600) % 1000 / 100 ))"  # the other devices finish: the next run starts from a quiet fleet
done
# Where the machine's 2 cores went: CPU seconds per run of the broker, the simulator, the controller.
cpu_run() { awk -v a="$1" -v b="$2" -v n="$RUNS" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }'; }
echo "CPU per run (s): broker $(cpu_run "${cpu0[0]}" "$(cpu_ms $BROKER_PID)"), simulator $(cpu_run "${cpu0[1]}" \
  "$(cpu_ms $SIM_PID)"), controller $(cpu_run "${cpu0[2]}" "$(cpu_ms $CONTROLLER_PID)"); reports spread over 0.5-$(( (JITTER_MS + 500) / 1000 )).$(( (JITTER_MS + 500) % 1000 / 100 )) s"
sleep 1.5  # the simulator flushes its event log every second
python3 - "$WORK/events.jsonl" "$FAILING" "$RUNS" <<'PY'
import json, sys
path, failing, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
fail_at, halt_at, base_at, statuses = {}, {}, {}, {}
for line in open(path):
    e = json.loads(line)
    r = e.get("rollout", "")
    if e.get("event") == "status_published":
        statuses[r] = statuses.get(r, 0) + 1
        if e.get("device") == failing and e.get("stage") in ("rolled_back", "failed"):
            fail_at[r] = e["mono_us"]
    elif e.get("event") == "halted_received" and e.get("device") == failing:
        halt_at.setdefault(r, e["mono_us"])
    elif e.get("event") == "cmd_received" and e.get("device") == failing and e.get("cmd") == "baseline":
        base_at.setdefault(e.get("component", ""), e["mono_us"])
def series(at):
    return sorted((at[r] - fail_at[r]) / 1000.0 for r in fail_at if r in at)
lat, base = series(halt_at), series(base_at)
if len(lat) < runs:
    sys.exit(f"controller-halt: measured {len(lat)} controller halts of {runs} runs")
def pct(s, p):
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]
def row(name, s):
    print(f"{name:<40} {pct(s, 50):8.1f} {pct(s, 90):8.1f} {pct(s, 99):8.1f} {s[-1]:8.1f}")
print(f"{'halt latency over %d runs (ms)' % len(lat):<40} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
row("ota-controller: failure -> retained halted", lat)
if base:
    row("bare client answering the same message", base)
    print(f"ratio controller/baseline: p50 {pct(lat, 50) / pct(base, 50):.1f}x, p99 {pct(lat, 99) / pct(base, 99):.1f}x")
print(f"status messages per run (all devices): {sum(statuses.values()) / max(1, len(statuses)):.0f}")
PY
printf 'controller peak RSS %.1f MiB; broker peak RSS %.1f MiB\n' "$(awk -v k="$(rss_kb $CONTROLLER_PID)" 'BEGIN { print k / 1024 }')" \
  "$(awk -v k="$(rss_kb $BROKER_PID)" 'BEGIN { print k / 1024 }')"
