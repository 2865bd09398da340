# Helpers shared by the bench/ scripts. Source it; do not run it.
#
# Everything stays on this machine: nginx and doptd listen on 127.0.0.1 or a
# Unix socket inside a per-run temp dir, and no agent config enables peering.
#
# A script that sources this file calls bench_init first; it sets
#   ROOT    the repository
#   BUILD   the build dir ($DOPT_BUILD_DIR, default $ROOT/build)
#   DOPTD   $BUILD/agent/doptd
#   DOPT    $BUILD/api/dopt
#   TMP     a fresh temp dir, removed on exit with every process started here
# and installs the EXIT trap (bench_cleanup).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/tests/support/nginx.sh"
BUILD=${DOPT_BUILD_DIR:-$ROOT/build}
DOPTD=$BUILD/agent/doptd
DOPT=$BUILD/api/dopt
TMP=
ORIGIN_PID=
ORIGIN_PORT=
AGENT_PID=
AGENT_PIDS=()           # every agent start_agent started
AGENT_SOCK=
BENCH_CLEANUP_DIRS=()   # more dirs bench_cleanup removes (outside $TMP)

bench_log() { printf '%s\n' "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# Stops what this run started (by pid only) and removes its temp dir.
bench_cleanup() {
    local rc=$?
    local pid
    for pid in "${AGENT_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $ORIGIN_PID ]] && kill -0 "$ORIGIN_PID" 2>/dev/null; then
        kill -QUIT "$ORIGIN_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$ORIGIN_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$ORIGIN_PID" 2>/dev/null || true
        wait "$ORIGIN_PID" 2>/dev/null || true
    fi
    if [[ -n $TMP && -d $TMP && -z ${BENCH_KEEP_TMP:-} ]]; then
        rm -rf -- "$TMP" "${BENCH_CLEANUP_DIRS[@]}"
    elif [[ -n $TMP ]]; then
        bench_log "kept $TMP"
    fi
    exit "$rc"
}

bench_init() {
    [[ -x $DOPTD && -x $DOPT ]] ||
        bench_die "no $DOPTD or $DOPT: build first (bench/run-all builds them, or set DOPT_BUILD_DIR)"
    local type
    type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
    [[ $type == Release ]] ||
        bench_log "warning: $BUILD is a '${type:-unknown}' build; figures count only from Release"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/dopt-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Seconds since the epoch with microseconds (bash 5).
now() { printf '%s\n' "$EPOCHREALTIME"; }

# elapsed START END -> seconds, 3 decimals
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# median N1 N2 ... -> the middle value (mean of the two middle ones when even)
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2];
              else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B -> A/B, 3 decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }'; }

# le A B -> exit 0 when A <= B (floating point)
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# make_file PATH MIB: random content, so nothing along the way can compress it
make_file() {
    head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"
}

# One line describing the machine, for the figures' context.
machine_info() {
    local cpu
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
    printf '%s, %s cores, %s MiB RAM, Linux %s' "${cpu:-unknown CPU}" "$(nproc)" \
        "$(awk '/^MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)" "$(uname -r)"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_origin DOCROOT: nginx on 127.0.0.1 at a free port serving DOCROOT
# (tests/support/nginx.sh). Sets ORIGIN_PORT and ORIGIN_PID; the access log
# ($TMP/nginx/logs/access.log) has "$request_uri $status $body_bytes_sent"
# per request.
start_origin() {
    start_nginx "$TMP/nginx" "$1" || bench_die "nginx did not start"
    ORIGIN_PORT=$NGINX_PORT
    ORIGIN_PID=$NGINX_PID
}

# Bytes the origin sent for URI (sum of $body_bytes_sent), from the access log.
origin_bytes() {
    awk -v u="$1" '$1 == u { s += $3 } END { printf "%d", s }' "$TMP/nginx/logs/access.log"
}

# start_agent NAME [TOML]: doptd with its state, cache and socket in
# $TMP/NAME, peering off, TOML (tables) appended to its config. Waits until
# `dopt list` answers. Sets AGENT_PID, AGENT_SOCK.
start_agent() {
    local dir=$TMP/${1:-agent} extra=${2:-}
    mkdir -p "$dir/state" "$dir/cache"
    AGENT_SOCK=$dir/doptd.sock
    cat >"$dir/doptd.conf" <<EOF
state_dir = "$dir/state"
cache_dir = "$dir/cache"
socket = "$AGENT_SOCK"
log_level = "${BENCH_LOG_LEVEL:-info}"

[p2p]
enabled = false
$extra
EOF
    "$DOPTD" --config "$dir/doptd.conf" >"$dir/doptd.log" 2>&1 &
    AGENT_PID=$!
    AGENT_PIDS+=("$AGENT_PID")
    for _ in $(seq 100); do
        if "$DOPT" --socket "$AGENT_SOCK" list >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$AGENT_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$dir/doptd.log" >&2 || true
    bench_die "doptd did not answer on $AGENT_SOCK"
}

agent_log_tail() { tail -n "${1:-20}" "$TMP/${2:-agent}/doptd.log" >&2 || true; }
