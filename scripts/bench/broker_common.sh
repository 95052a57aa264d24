# Shared by the broker benchmarks (replication, failover, groups): sourced after a script
# has parsed its arguments and set NAME (the log prefix), BUILD and KEEP. Provides
# logging, the release binaries, the Python with confluent-kafka, a temporary WORK
# directory removed on exit (with every process the driver left behind), and
# `run_driver DRIVER ARGS...`, which runs the Python driver and fails with its exit code.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="$TARGET_DIR/release"

log() { echo "$NAME-bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- processes and temporary files, all removed on exit ---------------------

WORK=""
DRIVER_PID=""

stop_pid() {
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "pid $pid ignored SIGTERM for 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# The driver stops its servers and consumers itself; anything it left behind (it was
# killed) is in WORK/pids as "PID BINARY" (servers, killed if that pid still runs that
# binary) and in WORK/member-pids as "PID" (consumer processes, killed if that pid's
# command line still names WORK).
sweep_leftovers() {
    local pid exe running
    [[ -n "$WORK" ]] || return 0
    if [[ -f "$WORK/pids" ]]; then
        while read -r pid exe; do
            running="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
            # A binary rebuilt while it ran shows as "PATH (deleted)".
            if [[ -n "$running" && "${running% (deleted)}" == "$exe" ]]; then
                log "stopping leftover $(basename "$exe") (pid $pid)"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$WORK/pids"
    fi
    if [[ -f "$WORK/member-pids" ]]; then
        while read -r pid; do
            if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "--dir $WORK/"; then
                log "stopping leftover consumer (pid $pid)"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$WORK/member-pids"
    fi
}

cleanup() {
    [[ -n "$DRIVER_PID" ]] && stop_pid "$DRIVER_PID"
    sweep_leftovers
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if [[ "$KEEP" == 1 ]]; then
            log "kept $WORK (server logs, client logs)"
        else
            rm -rf "$WORK"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- prerequisites -----------------------------------------------------------

if [[ "$BUILD" == 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --quiet -p fjord-broker -p fjord-coordinator) >&2
fi
for bin in fjord-coordinator fjord-broker fjord; do
    [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin not built (run without --no-build)"
done

PYTHON="${BENCH_PYTHON:-$ROOT/.venv/bin/python}"
if ! "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
    [[ -z "${BENCH_PYTHON:-}" ]] || die "$PYTHON cannot import confluent_kafka"
    log "creating the Python venv $ROOT/.venv (as scripts/test does)"
    [[ -x "$ROOT/.venv/bin/python" ]] || python3 -m venv "$ROOT/.venv" >&2
    "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check \
        -r "$ROOT/tests/interop/requirements.txt" >&2
    "$PYTHON" -c 'import confluent_kafka' || die "confluent_kafka still missing from $PYTHON"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fjord-$NAME-bench.XXXXXX")"

LOAD_BEFORE="$(cut -d' ' -f1 /proc/loadavg)"
if awk -v l="$LOAD_BEFORE" 'BEGIN { exit !(l > 0.5) }'; then
    log "warning: load average is $LOAD_BEFORE before starting; results will be noisy"
fi

# Builds kafka-load (scripts/bench/kafka-load) when BUILD is 1 or it is missing, and sets
# LOAD to its path.
build_kafka_load() {
    local dir="$TARGET_DIR/kafka-load"
    if [[ "$BUILD" == 1 || ! -x "$dir/release/kafka-load" ]]; then
        log "building kafka-load (the first build compiles librdkafka: a few minutes)"
        cargo build --release --quiet --manifest-path "$ROOT/scripts/bench/kafka-load/Cargo.toml" \
            --target-dir "$dir" >&2
    fi
    LOAD="$dir/release/kafka-load"
}

# Runs `$PYTHON -u DRIVER ARGS...` in the background plus `wait`, so that a signal to the
# script is handled at once; exits non-zero if the driver does.
run_driver() {
    local rc=0
    "$PYTHON" -u "$@" &
    DRIVER_PID=$!
    wait "$DRIVER_PID" || rc=$?
    DRIVER_PID=""
    [[ "$rc" == 0 ]] || die "the benchmark failed (exit $rc)$([[ "$KEEP" == 1 ]] || echo '; --keep keeps the logs')"
}
