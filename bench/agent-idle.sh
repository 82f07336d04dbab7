#!/usr/bin/env bash
# Idle footprint of a connected ota-agent beside a bare mosquitto_sub (the floor), in one run.
#   bench/agent-idle.sh [BUILD_DIR] [SECONDS]      (default: build/, 60 s)
# Starts a Mosquitto with the project's config (TLS, ACL) on a free loopback port, one ota-agent
# (one component, no offers) and one mosquitto_sub with a device certificate, waits, then prints
# each one's resident memory (VmRSS) and CPU time (utime+stime) and the ratios.
# Only processes this script started are stopped, by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
SECS="${2:-60}"
AGENT="$BUILD/device-agent/ota-agent"
PUBLISH="$BUILD/publisher/ota-publish"
[ -x "$AGENT" ] || { echo "agent-idle.sh: $AGENT not found (cmake --build $BUILD --target ota-agent ota-publish)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/ota-bench-idle.XXXXXX)
PIDS=()
source "$ROOT/bench/lib/common.sh"
trap bench_cleanup EXIT

bench_plain_broker 2
port=$MQTT_PORT
mkdir -p "$WORK/models"
"$PUBLISH" keygen --out "$WORK/release" >/dev/null
C="$WORK/certs"
cat > "$WORK/agent.json" <<JSON
{"device_id": "device-001",
 "mqtt": {"broker": "mqtts://127.0.0.1:$port", "cafile": "$C/ca.pem", "cert": "$C/device-001.pem", "key": "$C/device-001.key"},
 "trusted_keys": "$WORK/release.pub", "state_dir": "$WORK/state",
 "components": {"detection-model": {"version_source": {"type": "files", "dir": "$WORK/models", "pattern": "model-(.*)\\\\.trt"}}}}
JSON
"$AGENT" --config "$WORK/agent.json" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!; PIDS+=($AGENT_PID)
mosquitto_sub -h 127.0.0.1 -p "$port" --cafile "$C/ca.pem" --cert "$C/device-002.pem" --key "$C/device-002.key" \
  -i device-002 -q 1 -t 'ota/v1/devices/device-002/cmd' >/dev/null 2>&1 &
SUB_PID=$!; PIDS+=($SUB_PID)
echo "agent-idle: agent pid $AGENT_PID, mosquitto_sub pid $SUB_PID; waiting ${SECS} s"
sleep "$SECS"
grep -q "connected" "$WORK/agent.log" || { echo "agent-idle: the agent did not connect:"; cat "$WORK/agent.log"; exit 1; }

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
a_rss=$(rss_kb $AGENT_PID); s_rss=$(rss_kb $SUB_PID)
a_cpu=$(cpu_s $AGENT_PID); s_cpu=$(cpu_s $SUB_PID)
printf '%-14s %10s %12s\n' "process" "RSS (MiB)" "CPU (s)"
printf '%-14s %10.1f %12s\n' "ota-agent" "$(awk -v k="$a_rss" 'BEGIN { print k / 1024 }')" "$a_cpu"
printf '%-14s %10.1f %12s\n' "mosquitto_sub" "$(awk -v k="$s_rss" 'BEGIN { print k / 1024 }')" "$s_cpu"
printf 'ratio agent/mosquitto_sub: RSS %.2f, CPU %s after %s s\n' "$(awk -v a="$a_rss" -v b="$s_rss" 'BEGIN { print a / b }')" \
  "$(awk -v a="$a_cpu" -v b="$s_cpu" 'BEGIN { if (b > 0) printf "%.1f", a / b; else printf "n/a (floor used %s s)", b }')" "$SECS"
