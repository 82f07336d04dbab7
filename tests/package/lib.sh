# Shared by the package tests: a clean Debian 12 root from a cached debootstrap tarball.
#   debian_root DIR   DIR holds a fresh bookworm minbase root (debootstrap'd once, then cached as
#                     $OTA_DEBIAN_ROOT_CACHE/bookworm-minbase.tar.gz, default /var/cache/ota-tests),
#                     with the host's resolv.conf and a policy-rc.d that forbids service starts
#                     (Debian's convention for chroots; remove it for a booted container).
CACHE="${OTA_DEBIAN_ROOT_CACHE:-/var/cache/ota-tests}"
MIRROR="${OTA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
debian_root() {
  local dir=$1 tarball="$CACHE/bookworm-minbase.tar.gz"
  mkdir -p "$CACHE"
  # one debootstrap for tests that start together: the first takes the lock and makes it
  (
    flock 9
    if [ ! -s "$tarball" ]; then
      echo "== debootstrap --variant=minbase bookworm (cached in $tarball)"
      rm -rf "$dir.bootstrap"
      debootstrap --variant=minbase bookworm "$dir.bootstrap" "$MIRROR" >"$dir.debootstrap.log" 2>&1 ||
        { tail -20 "$dir.debootstrap.log" >&2; echo "debootstrap from $MIRROR failed" >&2; exit 1; }
      tar -C "$dir.bootstrap" -czf "$tarball.$$" . && mv "$tarball.$$" "$tarball"  # whole or absent
      rm -rf "$dir.bootstrap"
    fi
  ) 9>"$CACHE/.lock" || return 1
  mkdir -p "$dir"
  tar -C "$dir" -xzf "$tarball"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d" && chmod 755 "$dir/usr/sbin/policy-rc.d"
}

#   packages BUILD WORK   cpack's packages of BUILD (configured with the prefix /usr) in WORK/n,
#                         and the same one version up (V.1) in WORK/n1, for an upgrade; sets V
#                         and V1. Returns 1 with the reason on stderr.
packages() {
  local build=$1 work=$2
  grep -q '^CMAKE_INSTALL_PREFIX:PATH=/usr$' "$build/CMakeCache.txt" ||
    { echo "$build is not configured with CMAKE_INSTALL_PREFIX=/usr (scripts/test and scripts/package do that)" >&2; return 1; }
  (cd "$build" && cpack -G DEB -B "$work/n" >"$work/cpack-n.log" 2>&1) || { cat "$work/cpack-n.log" >&2; return 1; }
  V=$(dpkg-deb -f "$work"/n/ota-agent_*.deb Version)
  V1="$V.1"
  (cd "$build" && cpack -G DEB -D CPACK_PACKAGE_VERSION="$V1" -B "$work/n1" >"$work/cpack-n1.log" 2>&1) ||
    { cat "$work/cpack-n1.log" >&2; return 1; }
}
