#!/usr/bin/env bash
# Status messages per device per update, counted on the broker, for real ota-agent processes.
#   bench/status-count.sh [BUILD_DIR] [DEVICES]      (default: build/, 3 devices per policy)
# A Mosquitto with the project's config (TLS, ACL) and an nginx artifact server (HTTPS) on free
# loopback ports; DEVICES agents with the default status policy (progress at most one per 5 s
# and per 25 %, device-agent/src/progress.hpp) and, side by side in the same run, DEVICES agents
# with the policy of before (a report at every 5 % step of the download, `"status":
# {"progress_interval_s": 0, "progress_step_percent": 5}`). Each device applies two releases
# offered on its wave: a quick one (1 MiB, well under a second) and a slow one (4 MiB served at
# 256 KiB/s: a 16 s download). A bare mosquitto_sub as the operator records every status
# message; the script prints messages per device per update for each policy and the ratio.
# No controller: the waves are published as the controller would (retained, QoS 1).
# Only processes this script started are stopped, by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
N="${2:-3}"
AGENT="$BUILD/device-agent/ota-agent"
PUBLISH="$BUILD/publisher/ota-publish"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$AGENT" ] && [ -x "$PUBLISH" ] || { echo "status-count.sh: build ota-agent and ota-publish in $BUILD first" >&2; exit 2; }
WORK=$(mktemp -d /tmp/ota-bench-status.XXXXXX)
PIDS=()
source "$ROOT/bench/lib/common.sh"
trap bench_cleanup EXIT

bench_plain_broker $((2 * N))
mqtt_port=$MQTT_PORT
http_port=$(bench_free_port $((mqtt_port + 1)))
mkdir -p "$WORK/www/slow" "$WORK/nginx/tmp"
"$ROOT/scripts/render-nginx-config" --port "$http_port" --cert "$C/artifacts.pem" --key "$C/artifacts.key" \
  --root "$WORK/www" --prefix "$WORK/nginx" --error-log "$WORK/nginx/error.log" --location /slow/ 'limit_rate 256k;' \
  >"$WORK/nginx/nginx.conf"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/stdout.log" 2>&1 &
PIDS+=($!)
bench_wait_port "$http_port" || { echo "status-count.sh: nginx did not start" >&2; cat "$WORK/nginx/error.log" >&2; exit 1; }

"$PUBLISH" keygen --out "$WORK/release" >/dev/null
head -c $((1024 * 1024)) /dev/urandom >"$WORK/www/model-1.0.0.bin"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$WORK/www/slow/model-2.0.0.bin"
envelope() {  # VERSION PATH: the signed envelope of the release at https://.../PATH
  "$PUBLISH" publish --dry-run --signing-key "$WORK/release.key" --component model --version "$1" \
    --artifact "$WORK/www/$2" --url "https://127.0.0.1:$http_port/$2" --install file --target /var/lib/models
}
pub() {  # WHO TOPIC PAYLOAD: retained, QoS 1
  mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" --cafile "$C/ca.pem" --cert "$C/$1.pem" --key "$C/$1.key" -i "bench-$1-$$" \
    -q 1 -r -t "$2" -m "$3"
}

mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" --cafile "$C/ca.pem" --cert "$C/operator.pem" --key "$C/operator.key" \
  -i "bench-operator-$$" -q 1 -v -t 'ota/v1/devices/+/status/#' >"$WORK/statuses.log" 2>"$WORK/sub.err" &
PIDS+=($!)

for i in $(seq 1 $((2 * N))); do
  id=$(printf 'device-%03d' "$i")
  if [ "$i" -le "$N" ]; then status='{}'; else status='{"progress_interval_s": 0, "progress_step_percent": 5}'; fi
  mkdir -p "$WORK/$id/root/var/lib/models"
  cat >"$WORK/$id/agent.json" <<JSON
{"device_id": "$id", "platform": "linux/amd64",
 "mqtt": {"broker": "mqtts://127.0.0.1:$mqtt_port", "cafile": "$C/ca.pem", "cert": "$C/$id.pem", "key": "$C/$id.key"},
 "trusted_keys": "$WORK/release.pub", "state_dir": "$WORK/$id/state", "install_root": "$WORK/$id/root",
 "download": {"cafile": "$C/ca.pem"}, "status": $status,
 "components": {"model": {"type": "file", "target": "/var/lib/models",
   "version_source": {"type": "files", "dir": "$WORK/$id/root/var/lib/models", "pattern": "model-(.*)\\\\.bin"}}}}
JSON
  pub controller "ota/v1/devices/$id/assignment" '{"fleet":"plant","wave":"canary"}'
  "$AGENT" --config "$WORK/$id/agent.json" >"$WORK/$id/agent.log" 2>&1 &
  PIDS+=($!)
done

# count VERSION: final reports of that version in the log
finals() { grep -c "\"version\":\"$1\".*\"stage\":\"succeeded\"" "$WORK/statuses.log" || true; }
offer() {  # VERSION PATH LABEL: offer it on the wave, wait until every device succeeded
  local t0=$SECONDS
  pub controller ota/v1/fleets/plant/waves/canary/model "{\"rollout\":\"r-$1\",\"state\":\"open\",\"release\":$(envelope "$1" "$2")}"
  until [ "$(finals "$1")" -ge $((2 * N)) ]; do
    if [ $((SECONDS - t0)) -gt 120 ]; then
      echo "status-count.sh: $3: only $(finals "$1") of $((2 * N)) devices succeeded within 120 s" >&2
      tail -5 "$WORK/device-001/agent.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  sleep 1  # nothing more is due, but let a late duplicate show if there is one
  echo "status-count: $3 ($1): all $((2 * N)) devices succeeded after $((SECONDS - t0)) s" >&2
}
offer 1.0.0 model-1.0.0.bin "quick update (1 MiB)"
offer 2.0.0 slow/model-2.0.0.bin "slow update (4 MiB at 256 KiB/s)"

# messages per device per update: policy (first N devices: default; the others: before)
python3 - "$WORK/statuses.log" "$N" <<'PY'
import json, sys
from collections import defaultdict
path, n = sys.argv[1], int(sys.argv[2])
count = defaultdict(int)
stages = defaultdict(list)
for line in open(path):
    topic, _, payload = line.partition(" ")
    try:
        s = json.loads(payload)
    except ValueError:
        continue
    key = (s.get("device"), s.get("version"))
    count[key] += 1
    stages[key].append(s.get("stage") + (f" {s['progress']}" if "progress" in s else ""))
def policy(dev):
    return "default (5 s, 25 %)" if int(dev.split("-")[1]) <= n else "before (every 5 %)"
rows = {}
for (dev, ver), c in count.items():
    rows.setdefault((policy(dev), ver), []).append(c)
print(f"{'policy':<22} {'update':<22} {'devices':>7} {'msgs/device':>11} {'max':>4}  stages of one device")
labels = {"1.0.0": "quick (1 MiB)", "2.0.0": "slow (4 MiB, 16 s)"}
example = {}
for (dev, ver), st in sorted(stages.items()):
    example.setdefault((policy(dev), ver), st)
means = {}
for (pol, ver), cs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    means[(pol, ver)] = sum(cs) / len(cs)
    print(f"{pol:<22} {labels.get(ver, ver):<22} {len(cs):>7} {means[(pol, ver)]:>11.1f} {max(cs):>4}  {', '.join(example[(pol, ver)])}")
for ver in ("1.0.0", "2.0.0"):
    a, b = means.get(("default (5 s, 25 %)", ver)), means.get(("before (every 5 %)", ver))
    if a and b:
        print(f"ratio default/before, {labels[ver]}: {a / b:.2f}")
PY
