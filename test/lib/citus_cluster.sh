# shellcheck shell=bash
#
# A throwaway Citus cluster for test/suites/60_citus.sh and `bench/run --citus`: a coordinator
# and 2 workers on 127.0.0.1, in a temp directory, on free ports, stopped and deleted on exit.
# Source it after test/lib/cluster.sh. Functions:
#
#   citus_missing          prints why Citus cannot run here (empty: it can)
#   start_citus_cluster    starts the nodes, creates citus on each and adds the workers;
#                          sets CITUS_DIR, CITUS_PORTS (coordinator first), CITUS_VERSION
#   on PORT psql-args...   psql on a node (unaligned, tuples only, stop on error)
#   cq psql-args...        the same on the coordinator

citus_missing() {
    local libdir sharedir
    libdir=$("$PG_CONFIG" --pkglibdir)
    sharedir=$("$PG_CONFIG" --sharedir)
    if [[ ! -f $libdir/citus.so || ! -f $sharedir/extension/citus.control ]]; then
        echo "Citus is not installed in $libdir (bash ../shared/tools/citus/build.sh installs it)"
    fi
}

# Server programs as the cluster's OS user, from the cluster's directory.
_citus_as_pg() { SEQUIN_CLUSTER_DIR=$CITUS_DIR _sequin_as_pg "$@"; }

_citus_stop() {
    local port
    for port in "${CITUS_PORTS[@]}"; do
        _citus_as_pg "$SEQUIN_PGBIN/pg_ctl" -D "$CITUS_DIR/n$port" -m immediate -w stop >/dev/null 2>&1
    done
    rm -rf "$CITUS_DIR"
}

on() {
    local port=$1
    shift
    "$SEQUIN_PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$CITUS_DIR" -p "$port" -U postgres -d postgres "$@"
}
cq() { on "${CITUS_PORTS[0]}" "$@"; }

start_citus_cluster() {
    CITUS_DIR=$(mktemp -d /tmp/sequin_citus.XXXXXX)
    chmod 755 "$CITUS_DIR"
    [[ $(id -u) -eq 0 ]] && chown "$SEQUIN_PG_OS_USER:" "$CITUS_DIR"
    CITUS_PORTS=()
    trap _citus_stop EXIT
    local port _
    for _ in 1 2 3; do
        port=$(_sequin_free_port) || return 1
        while [[ " ${CITUS_PORTS[*]} " == *" $port "* ]]; do port=$(_sequin_free_port) || return 1; done
        CITUS_PORTS+=("$port")
        _citus_as_pg "$SEQUIN_PGBIN/initdb" -D "$CITUS_DIR/n$port" -U postgres --auth=trust -E UTF8 \
            --locale=C --no-sync >"$CITUS_DIR/initdb.log" 2>&1 || { cat "$CITUS_DIR/initdb.log"; return 1; }
        _citus_as_pg "$SEQUIN_PGBIN/pg_ctl" -D "$CITUS_DIR/n$port" -l "$CITUS_DIR/n$port.log" -w -t 60 \
            -o "-p $port -k $CITUS_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c shared_preload_libraries=citus -c max_prepared_transactions=50" \
            start >/dev/null || { tail -20 "$CITUS_DIR/n$port.log"; return 1; }
    done
    for port in "${CITUS_PORTS[@]}"; do on "$port" -c "CREATE EXTENSION citus" || return 1; done
    cq -c "SELECT citus_set_coordinator_host('127.0.0.1', ${CITUS_PORTS[0]})" \
        -c "SELECT citus_add_node('127.0.0.1', ${CITUS_PORTS[1]})" \
        -c "SELECT citus_add_node('127.0.0.1', ${CITUS_PORTS[2]})" >/dev/null || return 1
    CITUS_VERSION=$(cq -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'")
}
