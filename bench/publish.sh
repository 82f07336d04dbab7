#!/usr/bin/env bash
# How long `ota-publish publish` takes, beside `mosquitto_pub` sending the same signed envelope
# (retained, QoS 1, the same TLS client certificate) to the same broker, in one run.
#   bench/publish.sh [BUILD_DIR] [RUNS]      (default: build/, 20 runs each, alternating)
# Both connect over TLS, publish, wait for the PUBACK and disconnect; ota-publish also hashes
# the artifact and signs the manifest (a 1 KiB artifact: well under a millisecond). Prints the
# median and p90 wall time of each and the ratio, and, from `strace -tt` of one extra run of each,
# the time from the PUBACK (the last read on the broker's socket) to the process's exit.
# Only processes this script started are stopped, by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
RUNS="${2:-20}"
PUBLISH="$BUILD/publisher/ota-publish"
[ -x "$PUBLISH" ] || { echo "publish.sh: $PUBLISH not found" >&2; exit 2; }
WORK=$(mktemp -d /tmp/ota-bench-publish.XXXXXX)
PIDS=()
source "$ROOT/bench/lib/common.sh"
trap bench_cleanup EXIT
bench_plain_broker 1
port=$MQTT_PORT
"$PUBLISH" keygen --out "$WORK/release" >/dev/null
head -c 1024 /dev/urandom >"$WORK/a.bin"
TLS=(--cafile "$C/ca.pem" --cert "$C/ci.pem" --key "$C/ci.key")
ours_cmd() {  # VERSION: the command line
  OURS=("$PUBLISH" publish --broker "mqtts://127.0.0.1:$port" "${TLS[@]}" --signing-key "$WORK/release.key"
    --component model --version "$1" --artifact "$WORK/a.bin" --url https://127.0.0.1/a.bin --install file
    --target /var/lib/models)
}
ours() { ours_cmd "$1"; "${OURS[@]}" >/dev/null; }
"$PUBLISH" publish --dry-run --signing-key "$WORK/release.key" --component model --version 9.9.9 \
  --artifact "$WORK/a.bin" --url https://127.0.0.1/a.bin --install file --target /var/lib/models >"$WORK/envelope.json"
THEIRS=(mosquitto_pub -h 127.0.0.1 -p "$port" "${TLS[@]}" -i "bench-ci-$$" -q 1 -r -t ota/v1/releases/model/stable
  -f "$WORK/envelope.json")
theirs() { "${THEIRS[@]}"; }
ms() { local t0 t1; t0=$(date +%s%N); "$@"; t1=$(date +%s%N); echo $(((t1 - t0) / 1000)); }  # microseconds
: >"$WORK/ours.txt"; : >"$WORK/theirs.txt"
for i in $(seq 1 "$RUNS"); do
  ms ours "1.0.$i" >>"$WORK/ours.txt"
  ms theirs >>"$WORK/theirs.txt"
done
# PUBACK -> exit, from strace: the last read on the socket to the exit of the whole process
after_ack() {  # COMMAND...
  strace -f -tt -e trace=read,exit_group -o "$WORK/strace.txt" "$@" >/dev/null 2>&1 || true
  python3 - "$WORK/strace.txt" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
def t(line):
    h, m, s = re.search(r"(\d+):(\d+):(\d+\.\d+)", line).groups()
    return int(h) * 3600 + int(m) * 60 + float(s)
# the last read that returned bytes (the PUBACK's TLS record; an EOF after the DISCONNECT is 0)
sock_reads = [l for l in lines if re.search(r" read\(\d+, .*\) = [1-9]", l)]
exits = [l for l in lines if "+++ exited with" in l]
print(f"{(t(exits[-1]) - t(sock_reads[-1])) * 1000:.1f}" if sock_reads and exits else "n/a")
PY
}
ours_cmd 2.0.0
ack_ours=$(after_ack "${OURS[@]}")
ack_theirs=$(after_ack "${THEIRS[@]}")
python3 - "$WORK/ours.txt" "$WORK/theirs.txt" "$ack_ours" "$ack_theirs" "$RUNS" <<'PY'
import statistics, sys
ours = sorted(int(x) / 1000 for x in open(sys.argv[1]))
theirs = sorted(int(x) / 1000 for x in open(sys.argv[2]))
p90 = lambda v: v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
print(f"{'command':<16} {'median ms':>10} {'p90 ms':>8} {'PUBACK -> exit ms':>18}   ({sys.argv[5]} runs each, alternating)")
print(f"{'ota-publish':<16} {statistics.median(ours):>10.1f} {p90(ours):>8.1f} {sys.argv[3]:>18}")
print(f"{'mosquitto_pub':<16} {statistics.median(theirs):>10.1f} {p90(theirs):>8.1f} {sys.argv[4]:>18}")
print(f"ratio ota-publish/mosquitto_pub (median): {statistics.median(ours) / statistics.median(theirs):.2f}")
PY
