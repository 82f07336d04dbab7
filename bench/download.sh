#!/usr/bin/env bash
# Download throughput of ota::download::fetch against public baselines, side by side in one run,
# from a real nginx over HTTPS on loopback, plus the bytes re-fetched after an interruption.
#   bench/download.sh [BUILD_DIR]     (default: build/; builds nothing: needs ota-download-bench,
#                                      e.g. cmake --build build --target ota-download-bench)
# Environment: OTA_BENCH_DIR (work dir, default /tmp/ota-bench-download; the 1 GiB input is cached
# there), ROUNDS (default 3; medians are printed), SIZE_MIB (default 1024).
#
# Compared (each from a warm page cache, each writing to the same disk):
#   ota        ota-download-bench: fetch() = download + SHA-256 while writing + fsync + rename
#   curl|dgst  curl -o - URL | openssl dgst -sha256     (download and hash, nothing written)
#   curl+sync  curl -o FILE URL && sync FILE            (download and write, nothing hashed)
# Then: ota-download-bench is killed with SIGKILL at ~50 % and run again; the second run reports
# how many bytes it fetched and from where it resumed. Last, the connection is dropped at ~50 %
# (the nginx worker is killed) and the same call resumes.
# Only processes this script started are stopped, by PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
TOOL="$BUILD/tests/shared/download/ota-download-bench"
WORK="${OTA_BENCH_DIR:-/tmp/ota-bench-download}"
ROUNDS="${ROUNDS:-3}"
SIZE_MIB="${SIZE_MIB:-1024}"
[ -x "$TOOL" ] || { echo "download.sh: $TOOL not found; build it: cmake --build $BUILD --target ota-download-bench" >&2; exit 2; }
for t in nginx curl openssl; do command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "download.sh: $t missing" >&2; exit 2; }; done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

mkdir -p "$WORK"/{www/bench,nginx/tmp,out}
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$WORK"/out/*
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
now() { date +%s.%N; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Inputs: certificates, a random file (cached) and its digest.
"$ROOT/scripts/make-dev-certs" "$WORK/certs" --devices 0 >/dev/null
FILE="$WORK/www/bench/input-${SIZE_MIB}m.bin"
if [ ! -s "$FILE" ] || [ ! -s "$FILE.sha256" ]; then
  log "generating $FILE (${SIZE_MIB} MiB of random bytes, cached for later runs)"
  head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$FILE.tmp"
  openssl dgst -sha256 -r "$FILE.tmp" | cut -d' ' -f1 > "$FILE.sha256"
  mv "$FILE.tmp" "$FILE"
fi
SIZE=$(stat -c %s "$FILE")
SHA=$(cat "$FILE.sha256")

PORT=$(free_port 19443)
"$ROOT/scripts/render-nginx-config" --port "$PORT" --cert "$WORK/certs/artifacts.pem" --key "$WORK/certs/artifacts.key" \
  --root "$WORK/www" --prefix "$WORK/nginx" --error-log "$WORK/nginx/error.log" > "$WORK/nginx/nginx.conf"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=($NGINX_PID)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
URL="https://127.0.0.1:$PORT/bench/$(basename "$FILE")"
CA="$WORK/certs/ca.pem"
OUT="$WORK/out"

warm() { cat "$FILE" > /dev/null; }

run_ota() {
  rm -f "$OUT"/ota.bin*
  "$TOOL" --url "$URL" --dest "$OUT/ota.bin" --size "$SIZE" --sha256 "$SHA" --cafile "$CA" > "$OUT/ota.txt"
  grep -q "sha256=$SHA" "$OUT/ota.txt" || { log "ota: wrong result: $(cat "$OUT/ota.txt")"; exit 1; }
}
run_curl_dgst() {
  local got
  got=$(curl -sS --cacert "$CA" -o - "$URL" | openssl dgst -sha256 -r | cut -d' ' -f1)
  [ "$got" = "$SHA" ] || { log "curl|dgst: wrong digest $got"; exit 1; }
}
run_curl_sync() {
  rm -f "$OUT/curl.bin"
  curl -sS --cacert "$CA" -o "$OUT/curl.bin" "$URL" && sync "$OUT/curl.bin"
  [ "$(stat -c %s "$OUT/curl.bin")" = "$SIZE" ] || { log "curl+sync: wrong size"; exit 1; }
}

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A T
for r in $(seq 1 "$ROUNDS"); do
  for which in ota curl_dgst curl_sync; do
    warm
    sync
    t0=$(now)
    "run_$which"
    t1=$(now)
    s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    T[$which]+="$s "
    log "round $r: $which $(mbps "$SIZE" "$s") MB/s"
  done
  rm -f "$OUT"/ota.bin "$OUT"/curl.bin
done

med() { tr ' ' '\n' <<<"${T[$1]}" | grep . | median; }
ota=$(med ota) dgst=$(med curl_dgst) csync=$(med curl_sync)
echo "download of $SIZE bytes over HTTPS from nginx on loopback, $(nproc) CPUs, load average $LOAD at start, median of $ROUNDS rounds:"
printf '  %-48s %6s MB/s\n' "ota-download-bench (fetch: hash + write + fsync)" "$(mbps "$SIZE" "$ota")"
printf '  %-48s %6s MB/s\n' "curl -o - | openssl dgst -sha256" "$(mbps "$SIZE" "$dgst")"
printf '  %-48s %6s MB/s\n' "curl -o FILE && sync FILE" "$(mbps "$SIZE" "$csync")"
awk -v o="$ota" -v d="$dgst" -v c="$csync" 'BEGIN {
  printf "  ratio ota / (curl|dgst) = %.2f, ota / (curl+sync) = %.2f\n", d / o, c / o }'

# Interruption at ~50 %: SIGKILL the downloader, run it again, report what the second run fetched.
warm
rm -f "$OUT"/ota.bin*
"$TOOL" --url "$URL" --dest "$OUT/ota.bin" --size "$SIZE" --sha256 "$SHA" --cafile "$CA" > "$OUT/killed.txt" 2>&1 &
victim=$!
PIDS+=("$victim")
half=$((SIZE / 2))
for _ in $(seq 1 20000); do
  s=$(stat -c %s "$OUT/ota.bin.part" 2>/dev/null || echo 0)
  [ "$s" -ge "$half" ] && break
  kill -0 "$victim" 2>/dev/null || break
  sleep 0.005
done
kill -9 "$victim" 2>/dev/null || true
wait "$victim" 2>/dev/null || true
left=$(stat -c %s "$OUT/ota.bin.part" 2>/dev/null || echo 0)
"$TOOL" --url "$URL" --dest "$OUT/ota.bin" --size "$SIZE" --sha256 "$SHA" --cafile "$CA" > "$OUT/resumed.txt"
echo "interrupted by SIGKILL with $left bytes in ota.bin.part ($(awk -v a="$left" -v b="$SIZE" 'BEGIN { printf "%.1f", 100 * a / b }') %); the rerun:"
echo "  $(cut -d' ' -f1-5 "$OUT/resumed.txt")"
grep -q "sha256=$SHA" "$OUT/resumed.txt" || { log "resumed download has the wrong digest"; exit 1; }

# Interruption at ~50 % by a dropped connection: the nginx worker serving the transfer is killed
# (this nginx is ours; its master starts a new worker) and fetch() continues with a Range request
# within the same call. bytes_transferred counts every attempt of that call.
warm
rm -f "$OUT"/ota.bin*
"$TOOL" --url "$URL" --dest "$OUT/ota.bin" --size "$SIZE" --sha256 "$SHA" --cafile "$CA" > "$OUT/dropped.txt" 2>&1 &
victim=$!
PIDS+=("$victim")
for _ in $(seq 1 20000); do
  s=$(stat -c %s "$OUT/ota.bin.part" 2>/dev/null || echo 0)
  [ "$s" -ge "$half" ] && break
  kill -0 "$victim" 2>/dev/null || break
  sleep 0.005
done
cut_at=$(stat -c %s "$OUT/ota.bin.part" 2>/dev/null || echo 0)
for w in $(pgrep -P "$NGINX_PID"); do kill -9 "$w" 2>/dev/null || true; done
wait "$victim" || { log "the download did not survive the dropped connection: $(cat "$OUT/dropped.txt")"; exit 1; }
echo "connection dropped (nginx worker killed) with $cut_at bytes on disk ($(awk -v a="$cut_at" -v b="$SIZE" 'BEGIN { printf "%.1f", 100 * a / b }') %); the same call went on:"
echo "  $(cut -d' ' -f1-5 "$OUT/dropped.txt")"
grep -q "sha256=$SHA" "$OUT/dropped.txt" || { log "the download after the dropped connection has the wrong digest"; exit 1; }
