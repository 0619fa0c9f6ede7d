#!/usr/bin/env bash
# galera.sh - a throwaway 3-node MariaDB Galera cluster on 127.0.0.1, for the
# Galera tests (tests/galera.rs) and .ci/run.
#
#   node  SQL port  group (gcomm)  IST   SST (rsync)  files
#   1     4306      4567           4568  4569         $BASE/node1
#   2     4307      4577           4578  4579         $BASE/node2
#   3     4308      4587           4588  4589         $BASE/node3
#
# Usage:
#   galera.sh up [--fresh]  Start the cluster and print its URLs (one line,
#                           comma-separated). Reuses a healthy cluster (all 3
#                           nodes ours, size 3, Synced) unless --fresh;
#                           otherwise stops what is left of ours and builds
#                           it from empty datadirs: node1 bootstraps, nodes 2
#                           and 3 join by a full rsync SST, one at a time.
#   galera.sh down          Stop the three nodes (SIGTERM, then SIGKILL after
#                           $GALERA_STOP_GRACE s). Datadirs stay until the
#                           next 'up' rebuilds them.
#   galera.sh kill N        kill -9 node N (a crash, for the tests).
#   galera.sh rejoin N      Restart a stopped or killed node N into the
#                           running cluster, keeping its datadir: after a
#                           crash it recovers its position first
#                           (--wsrep-recover) so it catches up by IST.
#   galera.sh urls          Print the URLs (one line, comma-separated).
#   galera.sh status        Print each node's PID, cluster size and state.
#
# Only PIDs this script started are ever signalled: read from
# $BASE/nodeN/mariadbd.pid and checked against /proc/PID/cmdline
# (--defaults-file=$BASE/nodeN/my.cnf). Nodes are started with
# --defaults-file, so /etc/mysql is never read, and clients use
# --no-defaults: the system MariaDB on 3306 is never read nor touched.
#
# Needs root (the nodes drop to the 'mysql' user) and Debian's
# mariadb-server, galera-4, rsync and iproute2 (ss).
#
# Environment: GALERA_BASE (default /tmp/stored-session-galera),
# GALERA_TIMEOUT (seconds a node may take to sync, default 180),
# GALERA_STOP_GRACE (default 60), GALERA_BUFFER_POOL (default 64M).
set -euo pipefail

BASE=${GALERA_BASE:-/tmp/stored-session-galera}
RUN_AS=mysql
BP=${GALERA_BUFFER_POOL:-64M}
TIMEOUT=${GALERA_TIMEOUT:-180}
GRACE=${GALERA_STOP_GRACE:-60}
DATABASE=galtest
NODES=(1 2 3)

log() { printf '[galera %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { echo "usage: $0 up [--fresh] | down | kill N | rejoin N | urls | status" >&2; exit 2; }

sql_port()   { echo $((4305 + $1)); }
gcomm_port() { echo $((4567 + ($1 - 1) * 10)); }
ist_port()   { echo $(($(gcomm_port "$1") + 1)); }
sst_port()   { echo $(($(gcomm_port "$1") + 2)); }

# SQL on node N over TCP; --no-defaults so /etc/mysql/my.cnf is not read.
q() {
    local n=$1
    shift
    mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$(sql_port "$n")" \
        -uroot --connect-timeout=2 -N -B -e "$*"
}
status_var() { q "$1" "SHOW GLOBAL STATUS LIKE '$2'" 2>/dev/null | cut -f2; }

# Whether PID is our mariadbd for node N.
is_ours() {
    { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null |
        grep -q -- "--defaults-file=$BASE/node$2/my.cnf"
}

# The PID of node N, when it runs (and is ours).
node_pid() {
    local n=$1 f pid
    for f in "$BASE/node$n/mariadbd.pid" "$BASE/node$n/mysqld.pid"; do
        [ -r "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null) || continue
        if [[ "$pid" =~ ^[0-9]+$ ]] && is_ours "$pid" "$n"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

node_arg() {
    [[ "${1:-}" =~ ^[123]$ ]] || usage
    echo "$1"
}

urls() {
    local n out=""
    for n in "${NODES[@]}"; do
        out="$out${out:+,}mysql://root@127.0.0.1:$(sql_port "$n")/$DATABASE"
    done
    echo "$out"
}

healthy() {
    local n
    for n in "${NODES[@]}"; do
        node_pid "$n" >/dev/null || return 1
        [ "$(status_var "$n" wsrep_cluster_size)" = 3 ] || return 1
        [ "$(status_var "$n" wsrep_local_state_comment)" = Synced ] || return 1
    done
}

provider() {
    local p
    for p in /usr/lib/galera/libgalera_smm.so /usr/lib/libgalera_smm.so \
        /usr/lib/galera-4/libgalera_smm.so /usr/lib64/galera-4/libgalera_smm.so; do
        [ -r "$p" ] && { echo "$p"; return 0; }
    done
    return 1
}

preflight() {
    [ "$(id -u)" = 0 ] || die "run as root (the nodes drop privileges to '$RUN_AS')"
    id "$RUN_AS" >/dev/null 2>&1 || die "user '$RUN_AS' does not exist (apt-get install mariadb-server)"
    local b
    for b in /usr/sbin/mariadbd mariadb-install-db mariadb ss rsync; do
        command -v "$b" >/dev/null || die "missing '$b' (apt-get install -y mariadb-server galera-4 rsync iproute2)"
    done
    PROVIDER=$(provider) || die "libgalera_smm.so not found (apt-get install -y galera-4)"
}

write_cnf() {
    local n=$1 dir="$BASE/node$1"
    # The nodes run as 'mysql': with rsync SST the joiner starts an rsync
    # daemon, which drops to 'nobody' when started as root and then cannot
    # write a root-owned datadir (rsync error 23, the joiner aborts).
    cat >"$dir/my.cnf" <<EOF
# written by scripts/galera.sh - node$n
[mysqld]
user=$RUN_AS
basedir=/usr
datadir=$dir/data
tmpdir=$dir/tmp
socket=$dir/mysqld.sock
pid-file=$dir/mysqld.pid
log-error=$dir/error.log
bind-address=127.0.0.1
port=$(sql_port "$n")
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
performance_schema=OFF
max_connections=300
default_storage_engine=InnoDB
innodb_buffer_pool_size=$BP
innodb_log_file_size=48M
innodb_autoinc_lock_mode=2
innodb_flush_log_at_trx_commit=1
binlog_format=ROW
wsrep_on=ON
wsrep_provider=$PROVIDER
wsrep_cluster_name=stored_session_test
wsrep_cluster_address=gcomm://127.0.0.1:4567,127.0.0.1:4577,127.0.0.1:4587
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1:$(gcomm_port "$n")
wsrep_node_incoming_address=127.0.0.1:$(sql_port "$n")
wsrep_sst_receive_address=127.0.0.1:$(sst_port "$n")
wsrep_sst_method=rsync
wsrep_slave_threads=2
wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:$(gcomm_port "$n");ist.recv_addr=127.0.0.1:$(ist_port "$n");gcache.size=64M;gcache.page_size=64M"
EOF
}

start_node() {
    local n=$1 dir="$BASE/node$1"
    shift
    log "starting node$n (SQL 127.0.0.1:$(sql_port "$n"), group $(gcomm_port "$n")) $*"
    rm -f "$dir/mariadbd.pid"
    # setsid: the node outlives the calling shell and its process group. The
    # inner shell writes its own PID, then exec()s mariadbd, so the file
    # holds mariadbd's PID.
    setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$dir/mariadbd.pid" \
        /usr/sbin/mariadbd --defaults-file="$dir/my.cnf" "$@" \
        >>"$dir/stdout.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 50); do
        [ -s "$dir/mariadbd.pid" ] && break
        sleep 0.1
    done
}

wait_synced() {
    local n=$1 deadline=$((SECONDS + TIMEOUT)) st
    while :; do
        if ! node_pid "$n" >/dev/null; then
            tail -n 40 "$BASE/node$n/error.log" >&2 || true
            die "node$n died while starting (log: $BASE/node$n/error.log)"
        fi
        st=$(status_var "$n" wsrep_local_state_comment || true)
        [ "$st" = Synced ] && [ "$(status_var "$n" wsrep_ready)" = ON ] && return 0
        [ $SECONDS -ge $deadline ] &&
            die "node$n not Synced after ${TIMEOUT}s (state '$st'), see $BASE/node$n/error.log"
        sleep 0.5
    done
}

# Stops node N: SIGTERM, SIGKILL after the grace period.
stop_node() {
    local n=$1 dir="$BASE/node$1" pid rf rp
    if ! pid=$(node_pid "$n"); then
        rm -f "$dir/mariadbd.pid"
        return 1
    fi
    log "node$n: SIGTERM to PID $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((GRACE * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && is_ours "$pid" "$n"; then
        log "node$n: still running after ${GRACE}s, SIGKILL to PID $pid"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    # A joiner stopped during an SST can leave its rsync daemon behind.
    rf="$dir/data/rsync_sst.pid"
    if [ -r "$rf" ]; then
        rp=$(cat "$rf" 2>/dev/null || true)
        if [[ "$rp" =~ ^[0-9]+$ ]] && { tr '\0' ' ' <"/proc/$rp/cmdline"; } 2>/dev/null |
            grep -q -- "$dir/data/rsync_sst.conf"; then
            log "node$n: stopping its leftover rsync SST daemon (PID $rp)"
            kill -TERM "$rp" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/mariadbd.pid"
}

cmd_down() {
    local n stopped=0
    # Joiners first, the bootstrap node last.
    for n in 3 2 1; do
        if stop_node "$n"; then stopped=$((stopped + 1)); fi
    done
    log "stopped $stopped node(s)"
}

cmd_kill() {
    local n=$1 pid
    pid=$(node_pid "$n") || die "node$n is not running"
    kill -KILL "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    log "node$n: killed (kill -9 PID $pid)"
}

cmd_rejoin() {
    local n=$1 dir="$BASE/node$1" pid seqno pos t0=$SECONDS
    preflight
    [ -f "$dir/my.cnf" ] && [ -d "$dir/data/mysql" ] || die "node$n has no datadir; run '$0 up' first"
    if pid=$(node_pid "$n"); then die "node$n is already running (PID $pid)"; fi
    local extra=()
    seqno=$(awk '/^seqno:/ {print $2}' "$dir/data/grastate.dat" 2>/dev/null || true)
    if [ "${seqno:--1}" = "-1" ]; then
        # After a crash grastate.dat holds seqno -1 and a plain start asks
        # for a full SST: recover the last committed position from InnoDB
        # and start from it, so the node catches up by IST.
        rm -f "$dir/recover.log"
        /usr/sbin/mariadbd --defaults-file="$dir/my.cnf" --wsrep-recover \
            --log-error="$dir/recover.log" >/dev/null 2>&1 || true
        pos=$(sed -n 's/.*WSREP: Recovered position: \([^ ]*\).*/\1/p' "$dir/recover.log" | tail -n 1)
        if [ -n "$pos" ] && [ "${pos##*:}" != "-1" ]; then
            log "node$n: recovered position $pos"
            extra=(--wsrep-start-position="$pos")
        else
            log "node$n: no position recovered; it will ask for a full SST"
        fi
    fi
    start_node "$n" "${extra[@]}"
    wait_synced "$n"
    log "node$n rejoined in $((SECONDS - t0))s; cluster size $(status_var "$n" wsrep_cluster_size)"
}

cmd_up() {
    local fresh=$1 n p busy="" t0=$SECONDS
    preflight
    if [ "$fresh" = 0 ] && healthy; then
        log "cluster already up (size 3, all Synced): reusing it"
        urls
        return 0
    fi
    cmd_down
    for n in "${NODES[@]}"; do
        for p in $(sql_port "$n") $(gcomm_port "$n") $(ist_port "$n") $(sst_port "$n"); do
            if ss -Hltn "sport = :$p" | grep -q .; then busy="$busy $p"; fi
        done
    done
    [ -z "$busy" ] || die "TCP port(s) already in use:$busy"
    log "provider $PROVIDER, $(/usr/sbin/mariadbd --version | awk '{print $3}')"
    mkdir -p "$BASE"
    for n in "${NODES[@]}"; do
        rm -rf "${BASE:?}/node$n"
        mkdir -p "$BASE/node$n/data" "$BASE/node$n/tmp"
        write_cnf "$n"
        chown -R "$RUN_AS:" "$BASE/node$n"
    done
    mariadb-install-db --defaults-file="$BASE/node1/my.cnf" --user="$RUN_AS" \
        --auth-root-authentication-method=normal --skip-test-db \
        >"$BASE/node1/install.log" 2>&1 ||
        { tail -n 30 "$BASE/node1/install.log" >&2; die "mariadb-install-db failed"; }
    start_node 1 --wsrep-new-cluster
    wait_synced 1
    q 1 "CREATE DATABASE IF NOT EXISTS $DATABASE"
    log "node1 bootstrapped (+$((SECONDS - t0))s)"
    # A donor serves one SST at a time: join one by one.
    for n in 2 3; do
        start_node "$n"
        wait_synced "$n"
        log "node$n synced (+$((SECONDS - t0))s)"
    done
    for n in "${NODES[@]}"; do
        [ "$(status_var "$n" wsrep_cluster_size)" = 3 ] || die "node$n does not see 3 nodes"
    done
    log "cluster up in $((SECONDS - t0))s"
    urls
}

cmd_status() {
    local n pid
    for n in "${NODES[@]}"; do
        if pid=$(node_pid "$n"); then
            echo "node$n pid=$pid size=$(status_var "$n" wsrep_cluster_size) state=$(status_var "$n" wsrep_local_state_comment)"
        else
            echo "node$n down"
        fi
    done
}

case "${1:-}" in
    up)
        case "${2:-}" in
            "") cmd_up 0 ;;
            --fresh) cmd_up 1 ;;
            *) usage ;;
        esac
        ;;
    down) cmd_down ;;
    kill) cmd_kill "$(node_arg "${2:-}")" ;;
    rejoin) cmd_rejoin "$(node_arg "${2:-}")" ;;
    urls) urls ;;
    status) cmd_status ;;
    *) usage ;;
esac
