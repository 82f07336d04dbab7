# Shared by scripts/test and scripts/demo: install what is missing, configure and build.
# Sourced, not run.

OTA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# OTA_SANITIZE=address,undefined (or thread) builds with sanitizers into its own dir, so the normal
# build is not rebuilt: build-asan (address and/or undefined) or build-tsan (thread).
OTA_SANITIZE="${OTA_SANITIZE:-}"
ota_default_build_dir() {
  case "$OTA_SANITIZE" in
    "") echo "$OTA_ROOT/build" ;;
    *thread*) echo "$OTA_ROOT/build-tsan" ;;
    *) echo "$OTA_ROOT/build-asan" ;;
  esac
}
OTA_BUILD_DIR="${OTA_BUILD_DIR:-$(ota_default_build_dir)}"
# Their runtime options (UBSan fatal, leak checks...) are compiled into every executable
# (cmake/sanitizer_defaults.cpp.in); ASAN_OPTIONS / UBSAN_OPTIONS / TSAN_OPTIONS override single options.

# Debian 12 packages the build, the tests and the demo need.
OTA_PACKAGES=(
  g++ cmake make pkg-config git ca-certificates openssl curl
  libssl-dev libpaho-mqttpp-dev libpaho-mqtt-dev nlohmann-json3-dev libcurl4-openssl-dev
  libsqlitecpp-dev libsqlite3-dev libspdlog-dev libfmt-dev libcli11-dev libgtest-dev libgmock-dev
  libarchive-dev
  # sd_notify: readiness, status and watchdog under systemd (Type=notify units)
  libsystemd-dev
  # ota-controller's /metrics endpoint
  prometheus-cpp-dev
  # ota-fleet-sim (and the controller tests' simulated devices): libmosquitto clients
  libmosquitto-dev
  mosquitto mosquitto-clients nginx-light
  # systemd-analyze: the units' verify and security checks (tests/shared/systemd_units_test)
  systemd
  # the Debian packages (scripts/package, tests/package): cpack's dpkg-shlibdeps, lintian
  dpkg-dev fakeroot lintian debootstrap
  # network tests (label `net`: namespaces, veth, NAT, rate limits, loss) and `ss` in the download tests
  iproute2 iptables
  # libFuzzer targets (scripts/fuzz): clang 14 with its fuzzer, ASan and UBSan runtimes
  clang-14 libclang-rt-14-dev
  # container tests (label `container`): rootful Podman serving the Docker API, docker-compose v1
  podman runc buildah busybox-static docker-compose docker.io
  # the web console (label `browser`, the demo): WebSockets to the broker's console listener, and
  # the browser the tests drive through playwright-core
  websockify chromium
)

# Parallel jobs: the cores, at most 2 (the machine is shared; OTA_JOBS overrides).
ota_jobs() { local n; n="$(nproc)"; [ "$n" -gt 2 ] && n=2; echo "${OTA_JOBS:-$n}"; }

ota_log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

ota_install_deps() {
  local missing=() p
  for p in "${OTA_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # The web console's build needs Node.js and npm: Debian's, unless the machine has its own.
  command -v npm >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -eq 0 ]; then
    ota_log "all ${#OTA_PACKAGES[@]} Debian packages present"
    return 0
  fi
  ota_log "installing missing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { ota_log "error: not root and no sudo; install: ${missing[*]}"; return 1; }
    sudo="sudo"
  fi
  # Services must not start on install (the tests and the demo start their own on free ports).
  local policy=/usr/sbin/policy-rc.d created_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && created_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq || rc=$?
  [ $rc -eq 0 ] && { DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null || rc=$?; }
  [ -n "$created_policy" ] && $sudo rm -f "$policy"
  return $rc
}

# ota_build [target...]: configure, then build the given targets (default: everything).
ota_build() {
  local werror=OFF targets=()
  [ $# -gt 0 ] && targets=(--target "$@")
  [ "${CI:-}" = "true" ] && werror=ON
  local extra=()
  # ccache, when installed, keeps rebuilds after a clean short. (Not with CCACHE_BASEDIR: it
  # rewrites the paths in the compiler's dependency files, and make then misses header changes.)
  if command -v ccache >/dev/null; then
    extra+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  # The prefix of the Debian packages (cpack from this build: scripts/package, tests/package).
  cmake -S "$OTA_ROOT" -B "$OTA_BUILD_DIR" -DOTA_WERROR="$werror" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_INSTALL_PREFIX="${OTA_INSTALL_PREFIX:-/usr}" \
    -DOTA_SANITIZE="$OTA_SANITIZE" "${extra[@]}" >/dev/null
  cmake --build "$OTA_BUILD_DIR" -j"$(ota_jobs)" "${targets[@]}"
  if [ ${#targets[@]} -eq 0 ]; then ota_build_console; fi
}

# The web console (web-console/): `npm ci` when package-lock.json changed since the last one,
# then its esbuild bundle into $OTA_BUILD_DIR/web-console, which the browser tests and the demo
# serve. Nothing is fetched at run time; the page needs no CDN.
ota_build_console() {
  local src="$OTA_ROOT/web-console" out="$OTA_BUILD_DIR/web-console" want
  [ -f "$src/package-lock.json" ] || return 0
  command -v npm >/dev/null || { ota_log "error: npm is missing (apt-get install nodejs npm)"; return 1; }
  want=$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$src/node_modules/.ota-lock-sha256" 2>/dev/null)" != "$want" ]; then
    ota_log "web console: npm ci"
    (cd "$src" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    echo "$want" >"$src/node_modules/.ota-lock-sha256"
  fi
  (cd "$src" && OTA_CONSOLE_OUT="$out" npm run --silent build)
}

# Raise the open-file limit to the hard limit (brokers and fleets need many descriptors).
ota_raise_nofile() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}
