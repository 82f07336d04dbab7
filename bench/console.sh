#!/usr/bin/env bash
# The web console at scale: time from "Log in" to the fleet counts complete, and the page's JS heap.
#   bench/console.sh [BUILD_DIR] [SIZES] [RUNS]        (default: build/, "1000 10000", 3)
# For each size N: Mosquitto (project config, simulation listener, console listener with a
# generated operator login), ota-controller (canary 1 % -> broad 100 %, soak 0), ota-fleet-sim
# with N devices, one release rolled out to completion, so every device has its retained online,
# inventory, assignment and status (4 N retained messages, the load a console sees at login);
# then websockify and nginx (HTTPS, the built page, /mqtt -> websockify) as docs/console.md
# deploys them. Each run, side by side:
#   mosquitto_sub  on the console listener (plain MQTT, the same login), the page's subscriptions,
#                  until it has every retained message                         (public baseline)
#   mqtt.js        bare mqtt.js 5 over wss://.../mqtt (nginx, websockify), the same subscriptions,
#                  until every retained message is parsed                      (public baseline)
#   mqtt.js in     the same mqtt.js bundled into a bare page (bench/console-bare/) in the same
#   Chromium       Chromium: connect, subscribe, parse every retained message  (in-browser baseline)
#   console        Debian's Chromium: from the click on "Log in" to the fleet counts of `app` on
#                  screen being the final ones (from the controller's retained summary while the
#                  page loads: the goal), and to the page's own counts complete (total N, none
#                  unknown, every retained message taken in); JS heap (usedJSHeapSize, precise)
#                  and the longest main-thread task after the click
# Prints the medians and the ratios of the console to each baseline; per run also when the counts
# first looked right (online and inventory are in; statuses may still change them).
# Only processes this script started are stopped, by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
SIZES="${2:-1000 10000}"
RUNS="${3:-3}"
WORK=$(mktemp -d /tmp/ota-bench-console.XXXXXX)
PIDS=()
source "$ROOT/bench/lib/fleet.sh"
trap bench_cleanup EXIT
bench_require console.sh "$SIM" "$CONTROLLER" "$PUBLISH" "$CTL_BIN"
DIST="${CONSOLE_DIST:-$BUILD/web-console}"  # CONSOLE_DIST: another build of the page (e.g. OTA_CONSOLE_MINIFY=0)
[ -f "$DIST/index.html" ] || { echo "console.sh: $DIST/index.html not found (build the console: scripts/test builds it)" >&2; exit 2; }
for tool in websockify nginx node mosquitto_sub; do
  command -v "$tool" >/dev/null || { echo "console.sh: $tool is missing (see README)" >&2; exit 2; }
done
CHROMIUM=${OTA_CHROMIUM:-$(command -v chromium || true)}
[ -x "$CHROMIUM" ] || { echo "console.sh: chromium is missing (apt-get install chromium)" >&2; exit 2; }
now_ms() { date +%s%3N; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
state_of() { "${CTL[@]}" --json status "$1" 2>/dev/null | sed -nE 's/^  "state": "([a-z_]+)".*/\1/p' | head -1; }
field() { python3 -c 'import json,sys; v=json.loads(sys.stdin.read())[sys.argv[1]]; print(v if isinstance(v, (int, float, str)) else json.dumps(v))' "$1"; }
USER_NAME=bench
USER_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
TOPICS=(ota/v1/summary ota/v1/releases/+/+ ota/v1/rollouts/+ ota/v1/alerts/+ ota/v1/devices/+/online ota/v1/devices/+/inventory
  ota/v1/devices/+/assignment ota/v1/devices/+/status/+ ota/v1/fleets/+/waves/+/+ ota/v1/fleets/+/policy)
TOPIC_ARGS=(); for t in "${TOPICS[@]}"; do TOPIC_ARGS+=(-t "$t"); done
# The script's topic list must be the page's (web-console/src/model.mjs).
page_topics=$(cd "$ROOT/web-console" && node --input-type=module -e \
  "import { subscriptions } from './src/model.mjs'; console.log(subscriptions('ota/v1').join(' '))")
[ "$page_topics" = "${TOPICS[*]}" ] || { echo "console.sh: the page subscribes $page_topics, not ${TOPICS[*]}" >&2; exit 1; }

stop_size() {
  local p
  for p in "${SIZE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${SIZE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  SIZE_PIDS=()
}

SUMMARY=()
for N in $SIZES; do
  SIZE_PIDS=()
  rm -rf "$WORK/size"; mkdir -p "$WORK/size"
  n0=${#PIDS[@]}
  # --- the stack: broker with the console listener, controller, N devices, a finished rollout --
  ulimit -n "$(ulimit -Hn)"
  MQTT_PORT=$(bench_free_port 19883); SIM_PORT=$(bench_free_port $((MQTT_PORT + 1)))
  CONSOLE_PORT=$(bench_free_port $((SIM_PORT + 1)))
  C="$WORK/certs"
  [ -d "$C" ] || "$ROOT/scripts/make-dev-certs" "$C" --devices 0 >/dev/null
  [ -f "$WORK/release.key" ] || "$PUBLISH" keygen --out "$WORK/release" >/dev/null
  B="$WORK/size/mosquitto"; mkdir -p "$B"
  "$SIM" make-passwords --devices "$N" --secret "$SECRET" --hash sha512 --out "$B/passwd" >/dev/null
  printf '%s\n' "$USER_PASSWORD" | "$ROOT/scripts/console-user" --password-file "$B/passwd" --acl-fragment "$B/console.acl" \
    add "$USER_NAME" --role operator 2>/dev/null
  user=mosquitto; [ "$(id -u)" -eq 0 ] && user=root
  "$ROOT/scripts/render-broker-config" --port "$MQTT_PORT" --certs "$C" --data "$B" --acl "$ROOT/broker-config/acl" \
    --user "$user" --sim-listener "$SIM_PORT" --console-listener "$CONSOLE_PORT" --password-file "$B/passwd" \
    --console-acl "$B/console.acl" --acl-out "$B/acl" > "$B/mosquitto.conf"
  mosquitto -c "$B/mosquitto.conf" >"$B/mosquitto.log" 2>&1 &
  BROKER_PID=$!; PIDS+=($BROKER_PID); SIZE_PIDS+=($BROKER_PID)
  bench_wait_port "$MQTT_PORT"; bench_wait_port "$CONSOLE_PORT"
  CTL=("$CTL_BIN" --broker "mqtts://127.0.0.1:$MQTT_PORT" --cafile "$C/ca.pem" --cert "$C/operator.pem" --key "$C/operator.key")
  WORK_SAVED=$WORK; WORK="$WORK/size"; cp "$WORK_SAVED/release.pub" "$WORK/"
  bench_controller '[{"name": "canary", "percent": 1}, {"name": "broad", "percent": 100}]'
  SIZE_PIDS+=($CONTROLLER_PID)
  t_start=$(now_ms)
  "$SIM" --devices "$N" --port "$SIM_PORT" --secret "$SECRET" --trusted-keys "$WORK/release.pub" \
    --component app=1.0.0 --work-ms 300 --jitter-ms 300 --duration 3600 --quiet > "$WORK/sim.json" 2>"$WORK/sim.err" &
  SIM_PID=$!; PIDS+=($SIM_PID); SIZE_PIDS+=($SIM_PID)
  for _ in $(seq 1 1200); do [ "$(bench_metric 'ota_controller_devices_known')" -ge "$N" ] && break; sleep 0.1; done
  echo "console: $N devices known to the controller after $(( $(now_ms) - t_start )) ms" >&2
  sleep 1
  cp "$WORK_SAVED/release.key" "$WORK/"
  bench_release 1.1.0
  ok=""
  for _ in $(seq 1 3000); do [ "$(state_of plant.app.1.1.0)" = completed ] && { ok=1; break; }; sleep 0.2; done
  [ -n "$ok" ] || { echo "console: the rollout over $N devices did not complete: $("${CTL[@]}" status plant.app.1.1.0)" >&2; exit 1; }
  echo "console: rollout over $N devices completed after $(( $(now_ms) - t_start )) ms" >&2
  sleep 1  # the last retained statuses and assignments
  # --- websockify and nginx, as docs/console.md deploys them ---------------------------------
  WS_PORT=$(bench_free_port $((CONSOLE_PORT + 10))); HTTPS_PORT=$(bench_free_port $((WS_PORT + 1)))
  websockify "127.0.0.1:$WS_PORT" "127.0.0.1:$CONSOLE_PORT" >"$WORK/websockify.log" 2>&1 &
  p=$!; PIDS+=($p); SIZE_PIDS+=($p)
  bench_wait_port "$WS_PORT"
  mkdir -p "$WORK/nginx/tmp"
  # the console's files and, beside them, the bare mqtt.js page (bundled with the console's esbuild)
  rm -rf "$WORK/www"; cp -r "$DIST" "$WORK/www"; cp "$ROOT/bench/console-bare/bare.html" "$WORK/www/"
  (cd "$ROOT/web-console" && node -e "require('esbuild').buildSync({entryPoints: [process.argv[1]], outfile: process.argv[2],
    bundle: true, format: 'esm', platform: 'browser', target: ['es2022'], minify: true, nodePaths: [process.argv[3]]})" \
    "$ROOT/bench/console-bare/bare.mjs" "$WORK/www/bare.js" "$ROOT/web-console/node_modules")
  "$ROOT/scripts/render-nginx-config" --port "$HTTPS_PORT" --cert "$C/artifacts.pem" --key "$C/artifacts.key" \
    --root "$WORK/www" --prefix "$WORK/nginx" --console-proxy "$WS_PORT" > "$WORK/nginx/nginx.conf"
  nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/stdout.log" 2>&1 &
  p=$!; PIDS+=($p); SIZE_PIDS+=($p)
  bench_wait_port "$HTTPS_PORT"
  SPKI=$(openssl x509 -in "$C/artifacts.pem" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
  # --- how many retained messages a login gets --------------------------------------------------
  SUB=(mosquitto_sub -h 127.0.0.1 -p "$CONSOLE_PORT" -u "$USER_NAME" -P "$USER_PASSWORD" -V mqttv5 -q 0 "${TOPIC_ARGS[@]}")
  # the controller's summary has caught up with the completed rollout (it is published at most
  # every summary_interval_ms, 2 s)
  summary_ok=""
  for _ in $(seq 1 30); do
    if mosquitto_sub -h 127.0.0.1 -p "$CONSOLE_PORT" -u "$USER_NAME" -P "$USER_PASSWORD" -t ota/v1/summary -C 1 -W 2 2>/dev/null |
      python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["components"]["app"]["up_to_date"] == int(sys.argv[1]) else 1)' "$N" 2>/dev/null; then
      summary_ok=1; break
    fi
    sleep 1
  done
  [ -n "$summary_ok" ] || { echo "console: the controller's summary does not show $N devices up to date" >&2; exit 1; }
  EXPECT=$("${SUB[@]}" -W 5 2>/dev/null | wc -l || true)
  EXPECT=$(echo "$EXPECT" | tr -d ' ')
  [ "$EXPECT" -ge $((4 * N)) ] || { echo "console: only $EXPECT retained messages for $N devices (want >= $((4 * N)))" >&2; exit 1; }
  echo "console: $N devices, $EXPECT retained messages per login" >&2
  export CONSOLE_SRC="$ROOT/web-console" CONSOLE_URL="https://127.0.0.1:$HTTPS_PORT/" CONSOLE_CA="$C/ca.pem" \
    CONSOLE_USER="$USER_NAME" CONSOLE_PASSWORD="$USER_PASSWORD" CONSOLE_SPKI="$SPKI" DEVICES="$N" EXPECT OTA_CHROMIUM="$CHROMIUM"
  : > "$WORK/sub.txt"; : > "$WORK/mqttjs.txt"; : > "$WORK/bare.txt"; : > "$WORK/page.txt"; : > "$WORK/heap.txt"; : > "$WORK/task.txt"
  : > "$WORK/final.txt"
  for run in $(seq 1 "$RUNS"); do
    t0=$(now_ms)
    "${SUB[@]}" -C "$EXPECT" -W 120 >/dev/null
    echo $(( $(now_ms) - t0 )) >> "$WORK/sub.txt"
    j=$(timeout 180 node "$ROOT/bench/console-bench.mjs" mqttjs)
    echo "$j" | field ms >> "$WORK/mqttjs.txt"
    j=$(timeout 180 node "$ROOT/bench/console-bench.mjs" bare)
    echo "$j" | field ms >> "$WORK/bare.txt"
    j=$(timeout 180 node "$ROOT/bench/console-bench.mjs" page)
    echo "$j" | field ms >> "$WORK/page.txt"
    echo "$j" | field final_counts_ms >> "$WORK/final.txt"
    echo "$j" | field heap_mb >> "$WORK/heap.txt"
    echo "$j" | field longest_task_ms >> "$WORK/task.txt"
    printf 'console: %s devices, run %s: mosquitto_sub %s ms, mqtt.js %s ms, mqtt.js in Chromium %s ms, console: final counts shown at %s ms (from the %s; first shown from the %s), own counts complete %s ms (heap %s MB, longest task %s ms; connected at %s ms, own counts right at %s ms, messages %s from %s to %s ms; counts %s)\n' \
      "$N" "$run" "$(tail -1 "$WORK/sub.txt")" "$(tail -1 "$WORK/mqttjs.txt")" "$(tail -1 "$WORK/bare.txt")" \
      "$(tail -1 "$WORK/final.txt")" "$(echo "$j" | field final_counts_source)" "$(echo "$j" | field first_source)" "$(tail -1 "$WORK/page.txt")" \
      "$(tail -1 "$WORK/heap.txt")" "$(tail -1 "$WORK/task.txt")" "$(echo "$j" | field connected_ms)" "$(echo "$j" | field counts_right_ms)" \
      "$(echo "$j" | field messages)" "$(echo "$j" | field first_message_ms)" "$(echo "$j" | field last_message_ms)" \
      "$(echo "$j" | field counts)"
  done
  s=$(median < "$WORK/sub.txt"); m=$(median < "$WORK/mqttjs.txt"); b=$(median < "$WORK/bare.txt"); c=$(median < "$WORK/page.txt")
  h=$(median < "$WORK/heap.txt"); t=$(median < "$WORK/task.txt"); f=$(median < "$WORK/final.txt")
  SUMMARY+=("$(printf '%6d devices (%d messages): console final counts %5.0f ms, own counts %5.0f ms, heap %5.1f MB, longest task %4.0f ms | mqtt.js in Chromium %5.0f ms | mqtt.js %5.0f ms | mosquitto_sub %5.0f ms | final counts / mqtt.js in Chromium %.2f | own counts / each: %.2f %.2f %.2f' \
    "$N" "$EXPECT" "$f" "$c" "$h" "$t" "$b" "$m" "$s" "$(awk -v a="$f" -v b="$b" 'BEGIN { print a / b }')" "$(awk -v a="$c" -v b="$b" 'BEGIN { print a / b }')" \
    "$(awk -v a="$c" -v b="$m" 'BEGIN { print a / b }')" "$(awk -v a="$c" -v b="$s" 'BEGIN { print a / b }')")")
  echo "${SUMMARY[-1]}"
  stop_size
  PIDS=("${PIDS[@]:0:$n0}")
  WORK=$WORK_SAVED
done
echo "== console.sh: medians of $RUNS runs (from login to the final fleet counts on screen, goal <= 2 s at 10,000 devices; and to the page's own counts complete)"
printf '%s\n' "${SUMMARY[@]}"
