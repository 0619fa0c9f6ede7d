#!/usr/bin/env bash
# A PostgreSQL 15 primary and a synchronous streaming standby on 127.0.0.1,
# for the failover tests (tests/pg_failover.rs) and for trying the store on
# a libpq multi-host URL. Two clusters of their own, beside any system
# server (port 5432 is never touched):
#
#   node a: 127.0.0.1:5433, the primary (until a failover)
#   node b: 127.0.0.1:5434, a hot standby streaming from a through a
#           replication slot, the primary's one synchronous standby
#
# Replication is synchronous with synchronous_commit = on: a commit is
# acknowledged to the client once the standby has flushed its WAL to disk,
# so a promoted standby holds every acknowledged write (promotion replays
# all WAL it received before it accepts writes). remote_apply would also
# wait for the standby to *apply* the WAL, which only matters to readers of
# the standby; the store reads and writes on the primary only
# (target_session_attrs=read-write), so it would add latency for nothing.
# The standby itself runs with synchronous_standby_names = '', so that once
# promoted it accepts writes alone.
#
# Trust authentication on 127.0.0.1 and the private socket directory only:
# a test fixture, not a production setup.
#
# Usage: scripts/pg-standby.sh up [--fresh] | down | status | urls
#                              | crash-primary | promote
#   up             start the pair (built from scratch unless a healthy pair
#                  is already running); waits until the standby is
#                  streaming and synchronous
#   up --fresh     rebuild from scratch even if healthy (after a failover)
#   down           stop both servers, remove their files
#   status         each node's role; exit 0 only for a healthy pair
#   urls           the libpq multi-host URL of the pair
#   crash-primary  stop node a in immediate mode (no shutdown checkpoint,
#                  clients cut off: what a crash looks like to them)
#   promote        promote node b and wait until it accepts writes
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin), PG_STANDBY_DIR
# (default /tmp/ss-pg-standby), PG_PRIMARY_PORT (5433), PG_STANDBY_PORT
# (5434). Runs the servers as the `postgres` user (call it as root or as
# postgres). When localedef can build ru_RU.UTF-8, the servers see it
# (LOCPATH), so tests can check messages in a language other than English.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
BASE=${PG_STANDBY_DIR:-/tmp/ss-pg-standby}
PORT_A=${PG_PRIMARY_PORT:-5433}
PORT_B=${PG_STANDBY_PORT:-5434}
NAME=ss_standby
HOST=127.0.0.1
LOCALES="$BASE/locale"

if [ "$PORT_A" = 5432 ] || [ "$PORT_B" = 5432 ] || [ "$PORT_A" = "$PORT_B" ]; then
    echo "pg-standby: refusing ports $PORT_A/$PORT_B (5432 is the system server's)" >&2
    exit 2
fi

# Runs a command as the postgres user, from a directory it can read.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- env LOCPATH="$LOCALES" "$@")
    elif [ "$(id -un)" = postgres ]; then
        (cd / && env LOCPATH="$LOCALES" "$@")
    else
        echo "pg-standby: run as root or as postgres" >&2
        exit 2
    fi
}

psql_at() {
    local port=$1
    shift
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$port" -U postgres -d postgres -Atc "$@"
}

running() { [ -f "$BASE/$1/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$BASE/$1" status >/dev/null 2>&1; }

stop_node() {
    local node=$1 mode=${2:-fast}
    if [ -d "$BASE/$node" ] && running "$node"; then
        as_pg "$PG_BIN/pg_ctl" -D "$BASE/$node" -m "$mode" -w -t 30 stop >/dev/null ||
            as_pg "$PG_BIN/pg_ctl" -D "$BASE/$node" -m immediate -w -t 30 stop >/dev/null || true
    fi
}

start_node() {
    as_pg "$PG_BIN/pg_ctl" -D "$BASE/$1" -l "$BASE/$1.log" -w -t 60 start >/dev/null
}

# Whether a is a read-write primary whose synchronous standby b streams.
healthy() {
    running a && running b || return 1
    [ "$(psql_at "$PORT_A" "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] || return 1
    [ "$(psql_at "$PORT_B" "SELECT pg_is_in_recovery()" 2>/dev/null)" = t ] || return 1
    [ "$(psql_at "$PORT_A" "SELECT state || '/' || sync_state FROM pg_stat_replication
        WHERE application_name = '$NAME'" 2>/dev/null)" = streaming/sync ]
}

# ru_RU.UTF-8 for the servers, when this system can build it (best effort:
# only a test of translated server messages needs it).
make_locale() {
    [ -d "$LOCALES/ru_RU.UTF-8" ] && return 0
    if command -v localedef >/dev/null && [ -e /usr/share/i18n/locales/ru_RU ]; then
        mkdir -p "$LOCALES"
        localedef -i ru_RU -f UTF-8 "$LOCALES/ru_RU.UTF-8" 2>/dev/null ||
            echo "pg-standby: note: could not build the ru_RU.UTF-8 locale"
    else
        echo "pg-standby: note: no localedef or ru_RU locale source; servers speak English only"
    fi
}

wipe_nodes() {
    stop_node b immediate
    stop_node a immediate
    rm -rf "$BASE/a" "$BASE/b" "$BASE/run" "$BASE/a.log" "$BASE/b.log"
}

build() {
    wipe_nodes
    mkdir -p "$BASE/run"
    make_locale
    [ "$(id -u)" = 0 ] && chown -R postgres: "$BASE"
    as_pg "$PG_BIN/initdb" -D "$BASE/a" -U postgres -A trust -E UTF8 --locale=C --no-instructions >/dev/null
    cat >>"$BASE/a/postgresql.conf" <<CONF

# scripts/pg-standby.sh
port = $PORT_A
listen_addresses = '$HOST'
unix_socket_directories = '$BASE/run'
max_connections = 60
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
synchronous_standby_names = '$NAME'
synchronous_commit = on
CONF
    cat >"$BASE/a/pg_hba.conf" <<HBA
local all         all              trust
host  all         all 127.0.0.1/32 trust
host  replication all 127.0.0.1/32 trust
HBA
    start_node a
    as_pg "$PG_BIN/pg_basebackup" -d "host=$HOST port=$PORT_A user=postgres application_name=$NAME" \
        -D "$BASE/b" -X stream -R -C -S "$NAME" -c fast
    # Later lines win: the standby's own port, its name for the primary's
    # synchronous_standby_names, and no synchronous standby of its own.
    cat >>"$BASE/b/postgresql.auto.conf" <<CONF
port = $PORT_B
primary_conninfo = 'host=$HOST port=$PORT_A user=postgres application_name=$NAME'
primary_slot_name = '$NAME'
synchronous_standby_names = ''
CONF
    start_node b
    for _ in $(seq 1 300); do
        healthy && return 0
        sleep 0.1
    done
    echo "pg-standby: the standby did not become a streaming synchronous standby" >&2
    tail -n 20 "$BASE/a.log" "$BASE/b.log" >&2 || true
    return 1
}

urls() {
    echo "postgres://postgres@$HOST:$PORT_A,$HOST:$PORT_B/postgres?target_session_attrs=read-write"
}

role() {
    local node=$1 port=$2
    if ! running "$node"; then
        echo "$HOST:$port node $node: down"
        return
    fi
    case "$(psql_at "$port" "SELECT pg_is_in_recovery()" 2>/dev/null || true)" in
        f)
            local standbys
            standbys=$(psql_at "$port" "SELECT string_agg(application_name || ' ' || state || ' ' || sync_state, ', ')
                FROM pg_stat_replication" 2>/dev/null || true)
            echo "$HOST:$port node $node: primary (read-write); standbys: ${standbys:-none}"
            ;;
        t) echo "$HOST:$port node $node: standby (read-only, in recovery)" ;;
        *) echo "$HOST:$port node $node: running, not answering" ;;
    esac
}

case "${1:-}" in
    up)
        if [ "${2:-}" != --fresh ] && healthy; then
            echo "pg-standby: already up"
        else
            started=$(date +%s%N)
            build
            echo "pg-standby: up in $(( ($(date +%s%N) - started) / 1000000 )) ms"
        fi
        urls
        ;;
    down)
        wipe_nodes
        rm -rf "$BASE"
        ;;
    status)
        role a "$PORT_A"
        role b "$PORT_B"
        healthy
        ;;
    urls)
        urls
        ;;
    crash-primary)
        running a || { echo "pg-standby: node a is not running" >&2; exit 1; }
        as_pg "$PG_BIN/pg_ctl" -D "$BASE/a" -m immediate -w -t 30 stop >/dev/null
        echo "pg-standby: node a stopped (immediate)"
        ;;
    promote)
        started=$(date +%s%N)
        as_pg "$PG_BIN/pg_ctl" -D "$BASE/b" -w -t 60 promote >/dev/null
        echo "pg-standby: node b promoted in $(( ($(date +%s%N) - started) / 1000000 )) ms"
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
