# Shared by the controller and fleet benchmarks (sourced): a Mosquitto with the project's config
# plus the simulation listener, an ota-controller, the release key, and cleanup of exactly what
# was started. Expects ROOT, BUILD and WORK to be set and PIDS=() declared by the caller.

source "$ROOT/bench/lib/common.sh"

SIM="$BUILD/fleet-sim/ota-fleet-sim"
CONTROLLER="$BUILD/rollout-controller/ota-controller"
CTL_BIN="$BUILD/rollout-controller/ota-ctl"
PUBLISH="$BUILD/publisher/ota-publish"
SECRET="bench-$$"

# bench_require NAME TARGET...: exit 2 with the build command unless every target's binary exists.
bench_require() {
  local name=$1 b; shift
  for b in "$@"; do
    [ -x "$b" ] || { echo "$name: $b not found (cmake --build $BUILD --target $(for t in "$@"; do basename "$t"; done | tr '\n' ' '))" >&2; exit 2; }
  done
}

# bench_broker DEVICES: certs, sim passwords for DEVICES, broker on MQTT_PORT (TLS) + SIM_PORT.
bench_broker() {
  ulimit -n "$(ulimit -Hn)"
  MQTT_PORT=$(bench_free_port 19883)
  SIM_PORT=$(bench_free_port $((MQTT_PORT + 1)))
  C="$WORK/certs"
  "$ROOT/scripts/make-dev-certs" "$C" --devices 0 >/dev/null
  "$SIM" make-passwords --devices "$1" --secret "$SECRET" --hash sha512 --out "$WORK/sim.passwd" >/dev/null
  mkdir -p "$WORK/mosquitto"
  local user=mosquitto; [ "$(id -u)" -eq 0 ] && user=root
  "$ROOT/scripts/render-broker-config" --port "$MQTT_PORT" --certs "$C" --data "$WORK/mosquitto" \
    --acl "$ROOT/broker-config/acl" --user "$user" --sim-listener "$SIM_PORT" --password-file "$WORK/sim.passwd" \
    > "$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
  BROKER_PID=$!; PIDS+=($BROKER_PID)
  bench_wait_port "$MQTT_PORT"
  "$PUBLISH" keygen --out "$WORK/release" >/dev/null
  CTL=("$CTL_BIN" --broker "mqtts://127.0.0.1:$MQTT_PORT" --cafile "$C/ca.pem" --cert "$C/operator.pem" --key "$C/operator.key")
}

# bench_controller WAVES_JSON: ota-controller with fleet "plant" and these waves, metrics on METRICS_PORT.
bench_controller() {
  METRICS_PORT=$(bench_free_port $((SIM_PORT + 1)))
  cat > "$WORK/controller.json" <<JSON
{"mqtt": {"broker": "mqtts://127.0.0.1:$MQTT_PORT", "cafile": "$C/ca.pem", "cert": "$C/controller.pem", "key": "$C/controller.key"},
 "trusted_keys": "$WORK/release.pub", "database": "$WORK/controller.db", "metrics_listen": "127.0.0.1:$METRICS_PORT",
 "tick_ms": 100, "state_interval_ms": 500, "log": {"level": "warn"},
 "fleets": [{"name": "plant", "waves": $1}]}
JSON
  "$CONTROLLER" --config "$WORK/controller.json" >"$WORK/controller.log" 2>&1 &
  CONTROLLER_PID=$!; PIDS+=($CONTROLLER_PID)
  bench_wait_port "$METRICS_PORT"
}

# bench_release VERSION: CI publishes app VERSION (the artifact is never downloaded by the simulator).
bench_release() {
  head -c 1024 /dev/urandom > "$WORK/app-$1.bin"
  "$PUBLISH" publish --broker "mqtts://127.0.0.1:$MQTT_PORT" --cafile "$C/ca.pem" --cert "$C/ci.pem" --key "$C/ci.key" \
    --signing-key "$WORK/release.key" --component app --version "$1" --channel stable \
    --artifact "$WORK/app-$1.bin" --url "https://127.0.0.1:1/app-$1.bin" --install file --target /var/lib/app >/dev/null
}

bench_metric() {  # metric line prefix -> value (0 when absent)
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v k="$1" 'index($0, k) == 1 { v = $NF } END { print v + 0 }'
}

rss_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# cpu_ms PID: user + system CPU time the process has used so far, in milliseconds.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print int(($12 + $13) * 1000 / hz) }' "/proc/$1/stat"; }
