#!/usr/bin/env bash
# ota-fleet-sim connecting N devices to a real Mosquitto (the project's config with the simulation
# listener, per-device passwords) vs a baseline of N raw-socket MQTT clients
# (bench/mqtt-connect-baseline.py: no client library, the same credentials and connect window).
#   bench/fleet-connect.sh [BUILD_DIR] [DEVICES]      HASH=sha512 for $6$ password hashes
# Prints the connect times, their ratio, the simulator's peak RSS and the broker's. Starts its own
# Mosquitto on free loopback ports and stops only that.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build=$(cd "${1:-$here/build}" && pwd)
n=${2:-10000}
hash=${HASH:-pbkdf2}
sim="$build/fleet-sim/ota-fleet-sim"
[ -x "$sim" ] || { echo "fleet-connect: build ota-fleet-sim first ($sim)" >&2; exit 2; }
tmp=$(mktemp -d)
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$here/scripts/make-dev-certs" "$tmp/pki" --devices 1 >/dev/null
secret=bench-$RANDOM$RANDOM
"$sim" make-passwords --devices "$n" --secret "$secret" --hash "$hash" --out "$tmp/passwd"
tls_port=$(free_port) sim_port=$(free_port)
mkdir -p "$tmp/data"
user=mosquitto; [ "$(id -u)" = 0 ] && user=root
"$here/scripts/render-broker-config" --port "$tls_port" --certs "$tmp/pki" --data "$tmp/data" \
  --acl "$here/broker-config/acl" --user "$user" --log "$tmp/mosquitto.log" \
  --sim-listener "$sim_port" --password-file "$tmp/passwd" > "$tmp/mosquitto.conf"
# One descriptor per connected device, for the broker as for the simulator.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((n + 100)) ]; then
  echo "fleet-connect: ulimit -n is $(ulimit -n), below $n devices + 100" >&2; exit 2
fi
mosquitto -c "$tmp/mosquitto.conf" & broker_pid=$!
for _ in $(seq 100); do grep -q " running" "$tmp/mosquitto.log" 2>/dev/null && break; sleep 0.05; done

echo "machine: $(nproc) CPU, load $(cut -d' ' -f1-3 /proc/loadavg); $n devices; password hash $hash"
"$sim" --port "$sim_port" --secret "$secret" --devices "$n" --exit-when connected \
  --duration 120 --quiet > "$tmp/sim.json"
broker_hwm=$(awk '/VmHWM/ {print $2}' "/proc/$broker_pid/status")
sleep 2   # the broker forgets the simulator's clients
python3 "$here/bench/mqtt-connect-baseline.py" 127.0.0.1 "$sim_port" "$n" "$secret" > "$tmp/base.json"
python3 - "$tmp/sim.json" "$tmp/base.json" "$broker_hwm" <<'PY'
import json, sys
s, b, hwm = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
print(f"ota-fleet-sim:   {s['ever_connected']}/{s['devices']} connected in {s['connect_ms']} ms "
      f"({s['connect_rate_per_s']:.0f}/s), peak RSS {s['max_rss_kb'] / 1024:.1f} MiB, "
      f"connect failures {s['connect_failures']}")
print(f"raw sockets:     {b['connected']}/{b['devices']} connected in {b['connect_ms']} ms")
print(f"ratio (sim / raw sockets): {s['connect_ms'] / max(b['connect_ms'], 1):.2f}")
print(f"mosquitto peak RSS with the simulated fleet: {hwm / 1024:.1f} MiB")
PY
