#!/usr/bin/env bash
# Halt latency of ota-controller: from the status message that crosses the failure threshold to
# the retained `halted` state on the wave topic, with DEVICES devices reporting, over RUNS rollouts.
#   bench/controller-halt.sh [BUILD_DIR] [DEVICES] [RUNS]      (default: build/, 1000, 30)
# One wave holds every device (percent 100, max_failures 1); ota-fleet-sim runs DEVICES devices
# that each report downloading (5 steps), verifying, installing, health_checking and a final
# stage over 500-2500 ms; one device fails every release. Each run publishes a newer release
# (superseding the halted one), so all devices report at once while the failing one fails.
# Latency = the failing device's `halted_received` minus its `status_published` of the failure
# (both CLOCK_MONOTONIC in the simulator's event log; the baseline is the broker's own round
# trip: the same device's time from publishing to receiving, i.e. the latency includes one
# broker hop in and one out). Only processes this script started are stopped, by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
DEVICES="${2:-1000}"
RUNS="${3:-30}"
WORK=$(mktemp -d /tmp/ota-bench-halt.XXXXXX)
PIDS=()
source "$ROOT/bench/lib/fleet.sh"
trap bench_cleanup EXIT
for b in "$SIM" "$CONTROLLER" "$PUBLISH" "$CTL_BIN"; do
  [ -x "$b" ] || { echo "controller-halt.sh: $b not found (cmake --build $BUILD --target ota-fleet-sim ota-controller ota-ctl ota-publish)" >&2; exit 2; }
done
FAILING=device-00007

bench_broker "$DEVICES"
bench_controller '[{"name": "all", "percent": 100, "max_failures": 1, "device_timeout_s": 600}, {"name": "none"}]'
"$SIM" --devices "$DEVICES" --port "$SIM_PORT" --secret "$SECRET" --trusted-keys "$WORK/release.pub" \
  --work-ms 500 --jitter-ms 2000 --fail-devices "$FAILING" --duration 3600 --quiet --events "$WORK/events.jsonl" \
  > "$WORK/sim.json" 2>"$WORK/sim.err" &
SIM_PID=$!; PIDS+=($SIM_PID)
for _ in $(seq 1 600); do [ "$(bench_metric 'ota_controller_devices_known')" -ge "$DEVICES" ] && break; sleep 0.1; done
echo "controller-halt: $DEVICES devices, $RUNS runs; failing device $FAILING"
for run in $(seq 1 "$RUNS"); do
  version="1.$run.0"
  bench_release "$version"
  ok=""
  for _ in $(seq 1 300); do  # 30 s per run at most
    if "${CTL[@]}" --json status "plant.app.$version" 2>/dev/null | grep -q '"state": "halted"'; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "controller-halt: run $run did not halt" >&2; exit 1; }
  sleep 2.6  # let the other devices finish, so the next run starts from a quiet fleet
done
sleep 1.5  # the simulator flushes its event log every second
python3 - "$WORK/events.jsonl" "$FAILING" "$RUNS" <<'PY'
import json, sys
path, failing, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
fail_at, halt_at, statuses = {}, {}, {}
for line in open(path):
    e = json.loads(line)
    r = e.get("rollout")
    if e.get("event") == "status_published":
        statuses[r] = statuses.get(r, 0) + 1
        if e.get("device") == failing and e.get("stage") in ("rolled_back", "failed"):
            fail_at[r] = e["mono_us"]
    elif e.get("event") == "halted_received" and e.get("device") == failing:
        halt_at.setdefault(r, e["mono_us"])
lat = sorted((halt_at[r] - fail_at[r]) / 1000.0 for r in fail_at if r in halt_at)
if len(lat) < runs:
    sys.exit(f"controller-halt: only {len(lat)} of {runs} runs measured")
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))]
per_run = sum(statuses.values()) / max(1, len(statuses))
print(f"halt latency over {len(lat)} runs (ms): p50 {pct(50):.1f}  p90 {pct(90):.1f}  p99 {pct(99):.1f}  max {lat[-1]:.1f}  min {lat[0]:.1f}")
print(f"status messages per run (all devices): {per_run:.0f}")
PY
printf 'controller peak RSS %.1f MiB; broker peak RSS %.1f MiB\n' "$(awk -v k="$(rss_kb $CONTROLLER_PID)" 'BEGIN { print k / 1024 }')" \
  "$(awk -v k="$(rss_kb $BROKER_PID)" 'BEGIN { print k / 1024 }')"
