#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server on a free loopback port.
#
#     scripts/with-postgres.sh COMMAND [ARGS...]
#
# Exports SIB_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:PORT/postgres for
# COMMAND, then stops the server by its process id and removes its directory, whatever
# happens (trap on EXIT).  The exit code is COMMAND's.
#
# * If SIB_TEST_POSTGRES_URL is already set, COMMAND runs against that server unchanged.
# * If initdb/pg_ctl are missing, Debian's postgresql package is installed
#   (apt-get update && apt-get install -y postgresql; needs root).  The binaries are looked
#   up on PATH, then in /usr/lib/postgresql/<version>/bin (the highest version).
# * PostgreSQL refuses to run as root: as root, the cluster is created and started as the
#   `postgres` user (runuser) in a temporary directory that user owns.
# * The cluster is for tests only: trust authentication on loopback, no fsync.
# * COMMAND runs in the background and the script waits for it, so that a signal sent to the
#   script alone (INT, TERM, HUP) is handled at once: it is passed on to COMMAND as TERM, and
#   the server is stopped and its directory removed.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

if [[ -n "${SIB_TEST_POSTGRES_URL:-}" ]]; then
    echo "with-postgres: using the server at SIB_TEST_POSTGRES_URL" >&2
    exec "$@"
fi

log() { echo "with-postgres: $*" >&2; }

find_bin() {
    local initdb_path
    if initdb_path=$(command -v initdb 2>/dev/null) && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$initdb_path")"
        return 0
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        echo "$dir"
        return 0
    fi
    return 1
}

if ! BIN=$(find_bin); then
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL (initdb, pg_ctl) is not installed and this is not root: install Debian's"
        log "postgresql package (apt-get install -y postgresql) or set SIB_TEST_POSTGRES_URL"
        exit 1
    fi
    log "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN=$(find_bin) || { log "PostgreSQL binaries still not found after installing"; exit 1; }
fi

PYTHON_FOR_PORT=$(command -v python3 || command -v python || true)
if [[ -z "$PYTHON_FOR_PORT" ]]; then
    log "python3 is needed to pick a free port"
    exit 1
fi

as_owner=()
if [[ $(id -u) -eq 0 ]]; then
    if ! id postgres >/dev/null 2>&1; then
        log "creating the system user 'postgres'"
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    as_owner=(runuser -u postgres --)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sib-pg.XXXXXX")
PGDATA_DIR="$WORK/data"
PGLOG="$WORK/server.log"
SERVER_PID=""

cleanup() {
    local status=$?
    if [[ -z "$SERVER_PID" && -f "$PGDATA_DIR/postmaster.pid" ]]; then
        SERVER_PID=$(head -n 1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true)  # stopped while starting
    fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -INT "$SERVER_PID" 2>/dev/null || true   # fast shutdown
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            log "server $SERVER_PID did not stop in 10 s; killing it"
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
CHILD=""
on_signal() {
    local code=$1
    if [[ -n "$CHILD" ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$CHILD" 2>/dev/null || break
            sleep 0.1
        done
    fi
    exit "$code"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

if [[ ${#as_owner[@]} -gt 0 ]]; then
    chown postgres: "$WORK"
fi
chmod 700 "$WORK"

"${as_owner[@]}" "$BIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; log "initdb failed"; exit 1; }

PORT=""
for _ in 1 2 3 4 5; do
    PORT=$("$PYTHON_FOR_PORT" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    if "${as_owner[@]}" "$BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t 60 \
        -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50" \
        start >/dev/null 2>&1; then
        break
    fi
    PORT=""
    log "the server did not start on a port just picked; trying another"
done
if [[ -z "$PORT" ]]; then
    cat "$PGLOG" >&2 || true
    log "could not start PostgreSQL"
    exit 1
fi
SERVER_PID=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
VERSION=$("$BIN/postgres" --version | awk '{print $3}')
log "PostgreSQL $VERSION on 127.0.0.1:$PORT (pid $SERVER_PID, $WORK)"

export SIB_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
set +e
"$@" <&0 &
CHILD=$!
wait "$CHILD"
STATUS=$?
set -e
CHILD=""
exit "$STATUS"
