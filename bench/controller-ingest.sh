#!/usr/bin/env bash
# Status ingest of ota-controller against a bare paho subscriber counting the same stream, in one run.
#   bench/controller-ingest.sh [BUILD_DIR] [DEVICES] [PER_DEVICE]     (default: build/, 1000, 50)
# A Mosquitto with the project's config and the simulation listener; ota-controller with one wave
# waiting for approval (so every device is a member of the rollout and nothing installs);
# ota-fleet-sim registers DEVICES devices, a release creates the rollout, then ota-bench-count
# (paho-mqtt-cpp, TLS, QoS 1) subscribes to ota/v1/devices/+/status/+ and ota-fleet-sim --flood
# makes every device publish PER_DEVICE valid status messages for that rollout as fast as the
# broker takes them. Each consumer's rate = messages it got / time from the flood's start to its
# last message: for the subscriber, when it counted the last one; for the controller, when
# /metrics last showed more applied (polled every 50 ms; metrics refresh every 100 ms, so the
# controller's time is over-stated by up to ~150 ms). Keep DEVICES x PER_DEVICE under the
# broker's max_queued_messages (100,000 per client): a consumer slower than the flood makes the
# broker drop the rest, and both counts show it. Only processes this script started are
# stopped, by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
DEVICES="${2:-1000}"
PER="${3:-50}"
TOTAL=$((DEVICES * PER))
WORK=$(mktemp -d /tmp/ota-bench-ingest.XXXXXX)
PIDS=()
source "$ROOT/bench/lib/fleet.sh"
trap bench_cleanup EXIT
bench_require controller-ingest.sh "$SIM" "$CONTROLLER" "$PUBLISH" "$BUILD/bench/tools/ota-bench-count"

bench_broker "$DEVICES"
bench_controller '[{"name": "all", "percent": 100, "approval": true}]'
echo "controller-ingest: $DEVICES devices x $PER status messages = $TOTAL; broker pid $BROKER_PID, controller pid $CONTROLLER_PID"
"$SIM" --devices "$DEVICES" --port "$SIM_PORT" --secret "$SECRET" --exit-when connected --duration 120 --quiet > "$WORK/register.json"
for _ in $(seq 1 300); do [ "$(bench_metric 'ota_controller_devices_known')" -ge "$DEVICES" ] && break; sleep 0.1; done
bench_release 1.1.0
ROLLOUT=plant.app.1.1.0
for _ in $(seq 1 100); do "${CTL[@]}" status "$ROLLOUT" >/dev/null 2>&1 && break; sleep 0.2; done
base=$(bench_metric 'ota_controller_messages_total{result="applied"}')

"$BUILD/bench/tools/ota-bench-count" --broker "mqtts://127.0.0.1:$MQTT_PORT" --cafile "$C/ca.pem" --cert "$C/operator.pem" \
  --key "$C/operator.key" --topic 'ota/v1/devices/+/status/+' --count "$TOTAL" --timeout 600 --idle 3 --skip-retained \
  > "$WORK/count.out" 2>&1 &
COUNT_PID=$!; PIDS+=($COUNT_PID)
for _ in $(seq 1 100); do grep -q ready "$WORK/count.out" && break; sleep 0.1; done

# MOSQ_SUB=1: also mosquitto_sub (libmosquitto) on the same stream, for its CPU per message only
# (a third consumer makes the broker deliver 50 % more, so the rates are not comparable to runs without).
if [ "${MOSQ_SUB:-0}" = 1 ]; then
  ( mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$C/ca.pem" --cert "$C/operator.pem" --key "$C/operator.key" \
      -V mqttv5 -q 1 -t 'ota/v1/devices/+/status/+' -R -C "$TOTAL" -W 600 > "$WORK/mosq.out"; times > "$WORK/mosq.times" ) &
  PIDS+=($!)
  sleep 1
fi
ctrl_cpu0=$(cpu_ms "$CONTROLLER_PID")
"$SIM" --devices "$DEVICES" --port "$SIM_PORT" --secret "$SECRET" --flood "$PER" --flood-rollout "$ROLLOUT" \
  --exit-when flood-done --duration 600 --quiet --events "$WORK/events.jsonl" > "$WORK/flood.json" &
SIM_PID=$!; PIDS+=($SIM_PID)
# The controller's count: polled every 50 ms until it has every message, or has not moved for 3 s
# after the flood ended (the broker drops what it cannot queue: max_queued_messages).
ctrl_done="" last_n=-1 still=0
for _ in $(seq 1 12000); do  # at most 600 s
  n=$(( $(bench_metric 'ota_controller_messages_total{result="applied"}') - base ))
  if [ "$n" -ne "$last_n" ]; then last_n=$n; ctrl_done=$(date +%s%3N); still=0; else still=$((still + 1)); fi
  [ "$n" -ge "$TOTAL" ] && break
  if ! kill -0 "$SIM_PID" 2>/dev/null && [ "$still" -ge 60 ]; then break; fi
  sleep 0.05
done
ctrl_cpu=$(( $(cpu_ms "$CONTROLLER_PID") - ctrl_cpu0 ))
wait "$SIM_PID" || true
wait "$COUNT_PID" || true  # it stops after 3 s without a message
start_us=$(grep '"event":"flood_start"' "$WORK/events.jsonl" | sed -E 's/.*"wall_us":([0-9]+).*/\1/')
start_ms=$((start_us / 1000))
sub_last=$(tail -1 "$WORK/count.out" | sed -E 's/.*"last_ms":([0-9]+).*/\1/')
sub_count=$(tail -1 "$WORK/count.out" | sed -E 's/.*"count":([0-9]+).*/\1/')
sub_cpu=$(tail -1 "$WORK/count.out" | sed -E 's/.*"cpu_ms":([0-9]+).*/\1/')
applied=$last_n
[ "$applied" -gt 0 ] || { echo "controller-ingest: the controller applied nothing" >&2; exit 1; }
c_s=$(awk -v a="$ctrl_done" -v b="$start_ms" 'BEGIN { printf "%.2f", (a - b) / 1000 }')
s_s=$(awk -v a="$sub_last" -v b="$start_ms" 'BEGIN { printf "%.2f", (a - b) / 1000 }')
printf '%-34s %10s %10s %12s\n' "consumer" "messages" "seconds" "msg/s"
printf '%-34s %10s %10s %12.0f\n' "ota-controller (applied, batched)" "$applied" "$c_s" "$(awk -v n="$applied" -v s="$c_s" 'BEGIN { print n / s }')"
printf '%-34s %10s %10s %12.0f\n' "bare paho subscriber (counted)" "$sub_count" "$s_s" "$(awk -v n="$sub_count" -v s="$s_s" 'BEGIN { print n / s }')"
printf 'ratio controller/subscriber (rate): %.2f\n' "$(awk -v c="$c_s" -v s="$s_s" 'BEGIN { print s / c }')"
# CPU per message: the controller's over the flood (MQTT, parsing, SQLite, rollout logic), the
# subscriber's over its whole life (connect, TLS, counting).
printf 'CPU per message: controller %.0f us, bare subscriber %.0f us (ratio %.1f)\n' \
  "$(awk -v c="$ctrl_cpu" -v n="$applied" 'BEGIN { print c * 1000 / n }')" "$(awk -v c="$sub_cpu" -v n="$sub_count" 'BEGIN { print c * 1000 / n }')" \
  "$(awk -v a="$ctrl_cpu" -v n="$applied" -v b="$sub_cpu" -v m="$sub_count" 'BEGIN { print (a / n) / (b / m) }')"
if [ "${MOSQ_SUB:-0}" = 1 ]; then
  for _ in $(seq 1 100); do [ -s "$WORK/mosq.times" ] && break; sleep 0.1; done
  # `times`, second line: the children's user and system time, e.g. "0m1.234s 0m0.567s"
  mosq_ms=$(sed -n 2p "$WORK/mosq.times" | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/); print int((u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000) }')
  printf 'CPU per message: mosquitto_sub (libmosquitto) %.0f us over %s messages\n' \
    "$(awk -v c="$mosq_ms" -v n="$(wc -l < "$WORK/mosq.out")" 'BEGIN { print c * 1000 / n }')" "$(wc -l < "$WORK/mosq.out")"
fi
printf 'flood publisher: %s\n' "$(sed -E 's/.*"flood":(\{[^}]*\}).*/\1/' "$WORK/flood.json")"
printf 'controller peak RSS %.1f MiB, batches %s; duplicates %s, other %s\n' "$(awk -v k="$(rss_kb $CONTROLLER_PID)" 'BEGIN { print k / 1024 }')" \
  "$(bench_metric ota_controller_batches_total)" "$(bench_metric 'ota_controller_messages_total{result="duplicate"}')" \
  "$(bench_metric 'ota_controller_messages_total{result="other_rollout"}')"
