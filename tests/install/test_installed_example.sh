#!/usr/bin/env bash
# The installed dopt is usable by an outside program: examples/download.c,
# built against a staged `cmake --install` both with pkg-config and as a
# standalone CMake project (find_package(dopt) -> dopt::dopt), downloads a
# file through the INSTALLED doptd from a real nginx, and reports a 403 as a
# remote_file error (exit 1). libdopt.so exports only dopt_* symbols.
#
#   test_installed_example.sh BUILD_DIR SOURCE_DIR
#   (or DOPT_BUILD_DIR / DOPT_SOURCE_DIR in the environment)
#
#   tmp/prefix        cmake --install BUILD_DIR --prefix tmp/prefix
#   tmp/nginx         nginx on 127.0.0.1:PORT serving tmp/www (/forbidden/: 403)
#   tmp/agent         the staged doptd, socket tmp/agent/doptd.sock
#   tmp/out           where the example writes
# Loopback only. Everything under tmp is removed on exit (kept on failure).
set -euo pipefail

BUILD_DIR="${1:-${DOPT_BUILD_DIR:-}}"
SOURCE_DIR="${2:-${DOPT_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}}"
[ -n "$BUILD_DIR" ] || { echo "usage: $0 BUILD_DIR [SOURCE_DIR]" >&2; exit 2; }
BUILD_DIR="$(cd "$BUILD_DIR" && pwd)"

tmp="$(mktemp -d /tmp/dopt-install-test.XXXXXX)"
nginx_pid=""
agent_pid=""
status=1
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  if [ "$status" -eq 0 ]; then
    rm -rf "$tmp"
  else
    echo "FAILED; kept $tmp" >&2
    for log in "$tmp/agent/doptd.log" "$tmp/nginx/logs/error.log"; do
      [ -f "$log" ] && { echo "--- tail of $log" >&2; tail -n 30 "$log" >&2; }
    done
  fi
  return 0
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

# No proxy may carry loopback traffic away.
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY DOPT_SOCKET
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost

# ---- install into a staging prefix ------------------------------------------
step "cmake --install $BUILD_DIR --prefix $tmp/prefix"
prefix="$tmp/prefix"
cmake --install "$BUILD_DIR" --prefix "$prefix" >"$tmp/install.log" \
  || { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }
so="$(find "$prefix" -name libdopt.so -print -quit)"
[ -n "$so" ] || fail "no libdopt.so under $prefix"
libdir="$(dirname "$so")"  # lib or lib/<multiarch>, as GNUInstallDirs chose
for f in "$prefix/bin/doptd" "$prefix/bin/dopt" "$prefix/include/dopt/dopt.h" \
         "$libdir/pkgconfig/dopt.pc" "$libdir/cmake/dopt/doptConfig.cmake" \
         "$prefix/lib/apt/methods/dopt+http"; do
  [ -e "$f" ] || fail "not installed: $f"
done
# apt runs the method by its scheme: dopt+https is the same program.
[ "$(readlink "$prefix/lib/apt/methods/dopt+https")" = "dopt+http" ] \
  || fail "not installed: $prefix/lib/apt/methods/dopt+https -> dopt+http"

step "libdopt exports only dopt_* symbols"
# Type A lines are the version nodes of the linker script (DOPT_0.1...), not symbols.
extra="$(nm -D --defined-only "$so" | awk '$2 != "A" && $3 !~ /^dopt_/')"
[ -z "$extra" ] || fail "libdopt.so exports more than dopt_*: $extra"
nm -D --defined-only "$so" | grep -Eq ' T dopt_client_open(@@DOPT_0\.1)?$' || fail "dopt_client_open not exported"

# ---- build the example two ways ------------------------------------------------
step "build examples/download.c with pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pc_flags="$(pkg-config --cflags --libs dopt)" || fail "pkg-config does not know dopt"
pc_inc="$(pkg-config --variable=includedir dopt)"
pc_lib="$(pkg-config --variable=libdir dopt)"
if [ "$(realpath -m "$pc_inc")" != "$(realpath -m "$prefix/include")" ] ||
   [ "$(realpath -m "$pc_lib")" != "$(realpath -m "$libdir")" ]; then
  fail "dopt.pc does not point into the prefix it was installed to ($prefix):
      includedir=$pc_inc libdir=$pc_lib
      (a prefix= fixed at configure time does not follow cmake --install --prefix;
      prefix=\${pcfiledir}/../.. does)"
fi
mkdir -p "$tmp/pc"
# shellcheck disable=SC2086  # pkg-config's flags are meant to split
${CC:-cc} -std=c11 -Wall -Wextra -Wpedantic -Werror -pthread \
  -o "$tmp/pc/download" "$SOURCE_DIR/examples/download.c" $pc_flags -pthread \
  || fail "the pkg-config build of download.c failed"

step "build examples/ as a standalone CMake project"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$SOURCE_DIR/examples" -B "$tmp/cmake-build" "${generator[@]}" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$tmp/cmake.log" 2>&1 \
  || { cat "$tmp/cmake.log" >&2; fail "configuring examples/ against $prefix failed"; }
grep -q "$prefix" "$tmp/cmake-build/CMakeCache.txt" || fail "find_package(dopt) did not use $prefix"
cmake --build "$tmp/cmake-build" >>"$tmp/cmake.log" 2>&1 \
  || { cat "$tmp/cmake.log" >&2; fail "building examples/ against $prefix failed"; }

# ---- nginx and the installed doptd on loopback ----------------------------------
. "$SOURCE_DIR/tests/support/nginx.sh"

step "start nginx"
mkdir -p "$tmp/www" "$tmp/out"
head -c $((3 * 1024 * 1024 + 12345)) /dev/urandom >"$tmp/www/file.bin"
start_nginx "$tmp/nginx" "$tmp/www" 'location /forbidden/ { return 403; }' \
  || fail "nginx did not start"
port=$NGINX_PORT
nginx_pid=$NGINX_PID

step "start the installed doptd"
mkdir -p "$tmp/agent"
sock="$tmp/agent/doptd.sock"
cat >"$tmp/agent/doptd.toml" <<EOF
state_dir = "$tmp/agent/state"
cache_dir = "$tmp/agent/cache"
socket = "$sock"
log_level = "debug"
EOF
LD_LIBRARY_PATH="$libdir" "$prefix/bin/doptd" --config "$tmp/agent/doptd.toml" \
  </dev/null >"$tmp/agent/doptd.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do
  LD_LIBRARY_PATH="$libdir" "$prefix/bin/dopt" --socket "$sock" list >/dev/null 2>&1 && break
  kill -0 "$agent_pid" 2>/dev/null || fail "doptd exited at start"
  sleep 0.1
done
LD_LIBRARY_PATH="$libdir" "$prefix/bin/dopt" --socket "$sock" list >/dev/null \
  || fail "doptd does not answer on $sock"
export DOPT_SOCKET="$sock"  # the example opens the client with NULL: default discovery

# ---- run the examples ------------------------------------------------------------
url="http://127.0.0.1:$port/file.bin"
step "pkg-config build downloads $url"
LD_LIBRARY_PATH="$libdir" timeout 120 "$tmp/pc/download" "$url" "$tmp/out/pc.bin" \
  >"$tmp/pc.out" 2>&1 || { cat "$tmp/pc.out" >&2; fail "download (pkg-config build) failed"; }
cmp "$tmp/www/file.bin" "$tmp/out/pc.bin" || fail "downloaded bytes differ (pkg-config build)"

step "CMake build downloads $url (relative path)"
(cd "$tmp/out" && timeout 120 "$tmp/cmake-build/download" "$url" cmake.bin) \
  >"$tmp/cmake.out" 2>&1 || { cat "$tmp/cmake.out" >&2; fail "download (CMake build) failed"; }
cmp "$tmp/www/file.bin" "$tmp/out/cmake.bin" || fail "downloaded bytes differ (CMake build)"

forbidden="http://127.0.0.1:$port/forbidden/file.bin"
step "a 403 is a remote_file error: exit 1"
rc=0
timeout 120 "$tmp/cmake-build/download" "$forbidden" "$tmp/out/forbidden.bin" \
  >"$tmp/forbidden.out" 2>&1 || rc=$?
cat "$tmp/forbidden.out"
[ "$rc" -eq 1 ] || fail "download of a 403 URL exited $rc, expected 1"
grep -q "remote_file" "$tmp/forbidden.out" || fail "the error output does not say remote_file"
grep -qF "$forbidden" "$tmp/forbidden.out" || fail "the error output does not name $forbidden"
grep -q "403" "$tmp/forbidden.out" || fail "the error output does not give code 403"
[ ! -e "$tmp/out/forbidden.bin" ] || fail "a file appeared for the 403 URL"
if ls -A "$tmp/out" | grep -q 'dopt-partial'; then
  fail "partial files left behind: $(ls -A "$tmp/out")"
fi

status=0
echo "PASS"
