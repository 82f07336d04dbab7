# Shared by every benchmark (sourced): cleanup of exactly what was started, free loopback ports,
# and a Mosquitto with the project's config (TLS, ACL). Expects ROOT and WORK to be set and
# PIDS=() declared by the caller.

bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}

bench_free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

bench_wait_port() {
  local i
  for i in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "bench: nothing listens on $1" >&2; return 1
}

# bench_plain_broker DEVICES: dev certs (ci, controller, operator, device-001..DEVICES) in C and a
# broker with the project's config on MQTT_PORT (TLS only; no simulation listener).
bench_plain_broker() {
  MQTT_PORT=$(bench_free_port 18950)
  C="$WORK/certs"
  "$ROOT/scripts/make-dev-certs" "$C" --devices "$1" >/dev/null
  mkdir -p "$WORK/mosquitto"
  local user=mosquitto; [ "$(id -u)" -eq 0 ] && user=root
  "$ROOT/scripts/render-broker-config" --port "$MQTT_PORT" --certs "$C" --data "$WORK/mosquitto" \
    --acl "$ROOT/broker-config/acl" --user "$user" >"$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
  BROKER_PID=$!; PIDS+=($BROKER_PID)
  bench_wait_port "$MQTT_PORT" || { cat "$WORK/mosquitto.log" >&2; return 1; }
}
