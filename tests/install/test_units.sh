#!/usr/bin/env bash
# The systemd units `cmake --install` puts in place start the installed
# doptd: staged with DESTDIR, each unit lands where systemd reads units
# (<prefix>/lib/systemd/system and /user), its ExecStart= names the doptd
# and doptd.conf the same install put there, the socket units listen where
# the agent's `socket` is, and `systemd-analyze verify` finds nothing to say.
#
#   test_units.sh BUILD_DIR
#
#   tmp/stage   DESTDIR=tmp/stage cmake --install BUILD_DIR
#   tmp/units   the staged units with the stage prepended to the prefix, so
#               that verify finds the staged binaries (the only change)
# Removed on exit (kept on failure). Skipped without systemd-analyze.
set -euo pipefail

BUILD_DIR="$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)"
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze (package systemd) is not installed"; exit 0; }
prefix="$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD_DIR/CMakeCache.txt")"
tmp="$(mktemp -d /tmp/dopt-units-test.XXXXXX)"
status=1
trap '[ "$status" -eq 0 ] && rm -rf "$tmp" || echo "FAILED; kept $tmp" >&2' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

DESTDIR="$tmp/stage" cmake --install "$BUILD_DIR" >/dev/null
stage="$tmp/stage$prefix"
for unit in system/doptd.service system/doptd.socket user/doptd.service user/doptd.socket; do
  [ -f "$stage/lib/systemd/$unit" ] || fail "no $prefix/lib/systemd/$unit"
done
grep -qx "ExecStart=$prefix/bin/doptd --config $prefix/etc/dopt/doptd.conf" \
  "$stage/lib/systemd/system/doptd.service" || fail "system ExecStart= is not the installed doptd and config"
grep -qx "ExecStart=$prefix/bin/doptd" "$stage/lib/systemd/user/doptd.service" \
  || fail "user ExecStart= is not the installed doptd"
[ -x "$stage/bin/doptd" ] || fail "no $prefix/bin/doptd"
[ -f "$stage/etc/dopt/doptd.conf" ] || fail "no $prefix/etc/dopt/doptd.conf"
grep -qx 'socket = "/run/dopt/doptd.sock"' "$stage/etc/dopt/doptd.conf" || fail "doptd.conf's socket moved"
grep -qx 'ListenStream=/run/dopt/doptd.sock' "$stage/lib/systemd/system/doptd.socket" \
  || fail "the system socket unit does not listen at doptd.conf's socket"
grep -qx 'ListenStream=%t/dopt/doptd.sock' "$stage/lib/systemd/user/doptd.socket" \
  || fail "the user socket unit does not listen at the per-user default socket"

for kind in system user; do
  mkdir -p "$tmp/units/$kind"
  for unit in doptd.service doptd.socket; do
    sed "s|$prefix/|$stage/|g" "$stage/lib/systemd/$kind/$unit" > "$tmp/units/$kind/$unit"
  done
done
check() {  # check WHAT COMMAND...: exit 0 and not a word of output
  local out
  if ! out="$("${@:2}" 2>&1)" || [ -n "$out" ]; then fail "$1: $out"; fi
}
check "systemd-analyze verify (system units)" \
  systemd-analyze verify "$tmp/units/system/doptd.service" "$tmp/units/system/doptd.socket"
check "systemd-analyze --user verify (user units)" env XDG_RUNTIME_DIR="$tmp" \
  systemd-analyze --user verify "$tmp/units/user/doptd.service" "$tmp/units/user/doptd.socket"
echo "units verified: $prefix/lib/systemd/{system,user}/doptd.{service,socket}"
status=0
