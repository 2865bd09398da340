#!/usr/bin/env bash
# api/libdopt/symbols-in-versions is the truth about libdopt's symbols: its
# current ones (no "last" column) are exactly the functions dopt.h declares,
# exactly what the built libdopt.so exports (nm -D), each in the version node
# DOPT_<major>.<minor> of the release that brought it (dopt.map); its
# removed ones are exported no more; and the SONAME is libdopt.so.<major>
# (libdopt.so.0 for every 0.x from 0.2 on: a release only adds symbols).
#
#   check_symbols.sh LIBDOPT_SO SOURCE_DIR
set -euo pipefail
so="$1"
src="$2"
symbols="$src/api/libdopt/symbols-in-versions"
header="$src/api/include/dopt/dopt.h"
tmp="$(mktemp -d /tmp/dopt-symbols.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

grep -v '^#' "$symbols" | awk 'NF == 2 {print $1 " DOPT_" substr($2, 1, index(substr($2, 3), ".") + 1)}' \
  | sort >"$tmp/listed"
grep -v '^#' "$symbols" | awk 'NF == 3 {print $1}' | sort >"$tmp/removed"
cut -d' ' -f1 "$tmp/listed" >"$tmp/listed-names"
[ -s "$tmp/listed" ] || fail "no symbols in $symbols"

# Declarations: every DOPT_EXPORT line names one function before its '('.
grep -E '^DOPT_EXPORT ' "$header" | sed -E 's/\(.*//; s/.*[ *]//' | sort >"$tmp/declared"
diff -u "$tmp/listed-names" "$tmp/declared" >"$tmp/diff" \
  || fail "symbols-in-versions (-) and dopt.h (+) differ:$(echo; cat "$tmp/diff")"

# Exports: name@@NODE of every defined function (type A lines are the nodes).
nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' \
  | sed -E 's/@@?/ /' | sort >"$tmp/exported"
diff -u "$tmp/listed" "$tmp/exported" >"$tmp/diff" \
  || fail "symbols-in-versions (-) and the exports of $so (+) differ:$(echo; cat "$tmp/diff")"

comm -12 "$tmp/removed" "$tmp/listed-names" >"$tmp/both"
[ ! -s "$tmp/both" ] || fail "listed both as current and as removed: $(cat "$tmp/both")"

version="$(sed -nE 's/^#define DOPT_VERSION_STRING "([0-9.]+)"$/\1/p' "$header")"
major="${version%%.*}"
want="libdopt.so.$major"
soname="$(objdump -p "$so" | awk '$1 == "SONAME" {print $2}')"
[ "$soname" = "$want" ] || fail "SONAME is '$soname', want $want for version $version"
echo "OK: $(wc -l <"$tmp/listed") symbols, SONAME $soname"
