# shellcheck shell=bash
#
# Shared set-up for test/run, demo/run and the shell suites in test/suites/.
#
# Source it; it only defines functions and variables, it does not change shell
# options or run anything. Functions:
#
#   ensure_deps         apt-get install whatever the build and tests need (if missing)
#   build_and_install   make && make install in the repo root
#   start_cluster       use the server the caller's PG* variables point at, or start a
#                       throwaway cluster in a temp dir on a free port (stopped on exit)
#   stop_cluster        stop and delete the throwaway cluster (no-op for a server we
#                       did not start, or when called from another process)
#   restart_cluster     pg_ctl restart of the throwaway cluster (also after a crash)
#   wait_ready [secs]   wait until the server accepts connections
#   cluster_is_ours     true when the server is a throwaway one (so it may be restarted)
#   psql_q SQL          run one statement, unaligned tuples-only output, stop on error
#   tap_ok DESC CMD...  run CMD, print "ok - DESC" or "not ok - DESC"; tap_done at the
#                       end exits non-zero if any check failed (for test/suites/*.sh)
#
# After start_cluster these are exported, so child processes (psql, pg_regress via
# `make installcheck`, pg_prove, pgbench, suites) reach the server:
#   PGHOST PGPORT PGUSER PGDATABASE   standard libpq variables
#   PATH                              the PostgreSQL bin directory first
#   SEQUIN_PGDATA                     data directory (empty for a server we did not start)
#   SEQUIN_SERVER_LOG                 server log file (empty for a server we did not start)
#   SEQUIN_CLUSTER_OWNED              1 if the server is our throwaway cluster, else 0
#
# Knobs (environment): PG_CONFIG, SEQUIN_NO_INSTALL=1 (use the installed extension as it is), SEQUIN_PG_OPTS (extra `postgres` options, e.g.
# "-c shared_preload_libraries=sequin_upsert"), SEQUIN_KEEP_CLUSTER=1 (keep the temp dir
# for inspection instead of deleting it).

SEQUIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The PostgreSQL major version: that of PG_CONFIG when it is given, else 15 (the tested one).
SEQUIN_PG_MAJOR=15
if [[ -n ${PG_CONFIG:-} && -x ${PG_CONFIG:-} ]]; then
    SEQUIN_PG_MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
fi
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$SEQUIN_PG_MAJOR/bin/pg_config}
SEQUIN_PGBIN=${SEQUIN_PGBIN:-/usr/lib/postgresql/$SEQUIN_PG_MAJOR/bin}
# The postgres process runs as this user when we are root (the server refuses root).
SEQUIN_PG_OS_USER=${SEQUIN_PG_OS_USER:-postgres}

SEQUIN_DEB_PACKAGES=(
    "postgresql-$SEQUIN_PG_MAJOR"
    "postgresql-server-dev-$SEQUIN_PG_MAJOR"
    nlohmann-json3-dev
    "postgresql-$SEQUIN_PG_MAJOR-pgtap"
    libtap-parser-sourcehandler-pgtap-perl # pg_prove
    make
    g++
    python3 # the fuzz suite's generator
)

_sequin_log() { printf '[sequin] %s\n' "$*" >&2; }
_sequin_die() { printf '[sequin] ERROR: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly, or through sudo for a normal user.
_sequin_as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _sequin_die "need root to run: $* (no sudo available)"
    fi
}

# Runs the shell command CHECK; when it fails, installs the Debian packages with apt-get (as
# root) and runs CHECK again. Returns CHECK's status. For what a suite needs beyond the
# server (python3, python3-psycopg2).
sequin_install_missing() { # check package...
    local check=$1
    shift
    bash -c "$check" >/dev/null 2>&1 && return 0
    echo "# missing ($check): installing $*"
    { _sequin_as_root apt-get update && _sequin_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "$@"; } >/dev/null 2>&1
    bash -c "$check" >/dev/null 2>&1
}

ensure_deps() {
    local missing=() p
    for p in "${SEQUIN_DEB_PACKAGES[@]}"; do
        # dpkg -s also succeeds for removed-but-not-purged packages: check the status.
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    _sequin_log "installing missing packages: ${missing[*]}"
    _sequin_as_root apt-get update ||
        _sequin_die "apt-get update failed"
    _sequin_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" ||
        _sequin_die "apt-get install ${missing[*]} failed"
}

# Builds and installs the extension (make reads SEQUIN_WERROR etc. from the environment).
build_and_install() {
    if [[ ${SEQUIN_NO_INSTALL:-0} == 1 ]]; then
        _sequin_log "SEQUIN_NO_INSTALL=1: using the extension already installed"
        return 0
    fi
    _sequin_log "building in $SEQUIN_ROOT (PG_CONFIG=$PG_CONFIG)"
    make -C "$SEQUIN_ROOT" -j2 PG_CONFIG="$PG_CONFIG" ||
        _sequin_die "build failed"
    local pkglibdir sharedir
    pkglibdir=$("$PG_CONFIG" --pkglibdir) || _sequin_die "$PG_CONFIG --pkglibdir failed"
    sharedir=$("$PG_CONFIG" --sharedir) || _sequin_die "$PG_CONFIG --sharedir failed"
    if [[ -w $pkglibdir && -w $sharedir/extension ]]; then
        make -C "$SEQUIN_ROOT" PG_CONFIG="$PG_CONFIG" install || _sequin_die "make install failed"
    else
        # A normal user cannot write the PostgreSQL installation.
        _sequin_as_root make -C "$SEQUIN_ROOT" PG_CONFIG="$PG_CONFIG" install ||
            _sequin_die "make install failed"
    fi
}

# Runs a server-side program (initdb, pg_ctl) as the cluster's OS user.
_sequin_as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        # From the temp dir: the postgres user may not be able to enter our cwd.
        (cd "$SEQUIN_CLUSTER_DIR" && runuser -u "$SEQUIN_PG_OS_USER" -- "$@")
    else
        "$@"
    fi
}

_sequin_port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        [[ -n $(ss -Htan "( sport = :$port )" 2>/dev/null) ]]
    else
        # Something answers on it (or, without ss, we cannot tell better).
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

_sequin_free_port() {
    local i port
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 40000))
        _sequin_port_in_use "$port" && continue
        # With listen_addresses='' the port only names the socket, but keep it
        # free for TCP too, and clear of any other server's socket file.
        [[ -e /tmp/.s.PGSQL.$port || -e /var/run/postgresql/.s.PGSQL.$port ]] && continue
        echo "$port"
        return 0
    done
    _sequin_die "no free TCP port found"
}

# True when the server the current PG* variables point at accepts our connections.
_sequin_server_reachable() {
    "$SEQUIN_PGBIN/pg_isready" -q -t 5 >/dev/null 2>&1
}

wait_ready() {
    local timeout=${1:-60} i
    for ((i = 0; i < timeout * 5; i++)); do
        if "$SEQUIN_PGBIN/pg_isready" -q -t 1 >/dev/null 2>&1 &&
            "$SEQUIN_PGBIN/psql" -X -q -At -c 'SELECT 1' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    _sequin_log "server not ready after ${timeout}s"
    return 1
}

cluster_is_ours() { [[ ${SEQUIN_CLUSTER_OWNED:-0} == 1 ]]; }

start_cluster() {
    export PATH="$SEQUIN_PGBIN:$PATH"

    # A server the caller pointed us at with the standard libpq variables.
    if [[ -n ${PGHOST:-}${PGHOSTADDR:-}${PGPORT:-}${PGDATABASE:-}${PGUSER:-}${PGSERVICE:-} ]] &&
        _sequin_server_reachable; then
        if ! "$SEQUIN_PGBIN/psql" -X -q -At -c 'SELECT 1' >/dev/null; then
            _sequin_die "PG* variables point at a running server, but psql cannot connect to it (see above)"
        fi
        _sequin_log "using the existing server (PGHOST=${PGHOST:-} PGPORT=${PGPORT:-} PGDATABASE=${PGDATABASE:-} PGUSER=${PGUSER:-})"
        export SEQUIN_CLUSTER_OWNED=0 SEQUIN_PGDATA='' SEQUIN_SERVER_LOG=''
        return 0
    fi

    local base=${TMPDIR:-/tmp}
    # The postgres user must reach the dir when we are root; the socket path is
    # limited to ~107 bytes.
    if [[ $(id -u) -eq 0 || ${#base} -gt 60 ]]; then base=/tmp; fi
    SEQUIN_CLUSTER_DIR=$(mktemp -d "$base/sequin_pg.XXXXXX") || _sequin_die "mktemp failed"
    # Only the process that started the cluster may stop it (suites inherit the env).
    _SEQUIN_STARTED_BY=$BASHPID
    trap stop_cluster EXIT
    # Without these, Ctrl-C or a kill would skip the EXIT trap in some bash versions.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    chmod 755 "$SEQUIN_CLUSTER_DIR"
    if [[ $(id -u) -eq 0 ]]; then
        if ! id "$SEQUIN_PG_OS_USER" >/dev/null 2>&1; then
            _sequin_log "creating OS user $SEQUIN_PG_OS_USER"
            useradd --system --no-create-home --shell /usr/sbin/nologin "$SEQUIN_PG_OS_USER" ||
                _sequin_die "useradd $SEQUIN_PG_OS_USER failed"
        fi
        chown "$SEQUIN_PG_OS_USER:" "$SEQUIN_CLUSTER_DIR"
    fi

    local locale=C
    if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then locale=C.UTF-8; fi

    export SEQUIN_PGDATA=$SEQUIN_CLUSTER_DIR/data
    export SEQUIN_SERVER_LOG=$SEQUIN_CLUSTER_DIR/server.log
    if ! _sequin_as_pg "$SEQUIN_PGBIN/initdb" -D "$SEQUIN_PGDATA" -U postgres --auth=trust \
        -E UTF8 --locale="$locale" --no-sync >"$SEQUIN_CLUSTER_DIR/initdb.log" 2>&1; then
        cat "$SEQUIN_CLUSTER_DIR/initdb.log" >&2
        _sequin_die "initdb failed"
    fi

    local port
    port=$(_sequin_free_port) || exit 1
    export SEQUIN_CLUSTER_OWNED=1
    # These would take precedence over PGHOST or pull in another server's settings.
    unset PGHOSTADDR PGSERVICE
    export PGHOST=$SEQUIN_CLUSTER_DIR PGPORT=$port PGUSER=postgres PGDATABASE=postgres
    # pg_ctl runs these through /bin/sh, hence the inner quotes.
    local opts="-p $port -k $SEQUIN_CLUSTER_DIR -c listen_addresses='' -c fsync=off -c max_prepared_transactions=10"
    opts+=" -c shared_preload_libraries='' ${SEQUIN_PG_OPTS:-}"
    if ! _sequin_as_pg "$SEQUIN_PGBIN/pg_ctl" -D "$SEQUIN_PGDATA" -l "$SEQUIN_SERVER_LOG" \
        -w -t 60 -o "$opts" start >/dev/null; then
        tail -n 30 "$SEQUIN_SERVER_LOG" >&2
        _sequin_die "could not start the server"
    fi
    wait_ready 60 || _sequin_die "server started but does not accept connections"
    _sequin_log "started a throwaway server in $SEQUIN_CLUSTER_DIR on port $port"
}

# pg_ctl restart keeps the options of the last start (postmaster.opts); it also
# starts a server whose postmaster was killed.
restart_cluster() {
    cluster_is_ours || { _sequin_log "restart_cluster: not our server, cannot restart it"; return 1; }
    local SEQUIN_CLUSTER_DIR=${SEQUIN_PGDATA%/data}
    _sequin_as_pg "$SEQUIN_PGBIN/pg_ctl" -D "$SEQUIN_PGDATA" -l "$SEQUIN_SERVER_LOG" \
        -m fast -w -t 60 restart >/dev/null || { tail -n 30 "$SEQUIN_SERVER_LOG" >&2; return 1; }
    wait_ready 60
}

stop_cluster() {
    # Only the shell that started the cluster stops it; never a server we did not start.
    [[ -n ${SEQUIN_CLUSTER_DIR:-} && ${_SEQUIN_STARTED_BY:-} == "$BASHPID" ]] || return 0
    trap - EXIT INT TERM HUP
    local pidfile=$SEQUIN_PGDATA/postmaster.pid pid
    if [[ -f $pidfile ]]; then
        pid=$(head -n 1 "$pidfile")
        if ! _sequin_as_pg "$SEQUIN_PGBIN/pg_ctl" -D "$SEQUIN_PGDATA" -m fast -w -t 30 stop \
            >>"$SEQUIN_SERVER_LOG" 2>&1; then
            # Still alive after a fast shutdown: it is our postmaster, kill it by its pid.
            if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
                _sequin_log "server did not stop, killing postmaster $pid"
                kill -9 "$pid" 2>/dev/null || true
                sleep 1
            fi
        fi
    fi
    if [[ ${SEQUIN_KEEP_CLUSTER:-0} == 1 ]]; then
        _sequin_log "kept the cluster directory $SEQUIN_CLUSTER_DIR"
    elif [[ $SEQUIN_CLUSTER_DIR == */sequin_pg.* ]]; then
        rm -rf -- "$SEQUIN_CLUSTER_DIR"
    fi
    SEQUIN_CLUSTER_DIR=''
    _SEQUIN_STARTED_BY=''
}

psql_q() {
    "$SEQUIN_PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

# Minimal TAP-style reporting for test/suites/*.sh.
SEQUIN_TAP_FAILED=${SEQUIN_TAP_FAILED:-0}
tap_ok() {
    local desc=$1
    shift
    if "$@"; then
        echo "ok - $desc"
    else
        echo "not ok - $desc"
        SEQUIN_TAP_FAILED=$((SEQUIN_TAP_FAILED + 1))
    fi
}
# tap_check ID DESCRIPTION EXPECTED ACTUAL: ok when ACTUAL is exactly EXPECTED; else both
# are shown (ACTUAL's lines joined with " | ").
tap_check() {
    local id=$1 desc=$2 want=$3 got=$4
    if [[ $got == "$want" ]]; then
        echo "ok - [$id] $desc"
    else
        echo "not ok - [$id] $desc"
        printf '#   expected: %s\n#   got:      %s\n' "$want" "${got//$'\n'/ | }"
        SEQUIN_TAP_FAILED=$((SEQUIN_TAP_FAILED + 1))
    fi
}
tap_done() {
    ((SEQUIN_TAP_FAILED == 0)) || exit 1
    exit 0
}

# Fault tests: kill -9 the backend whose query matches LIKE pattern $1, once it has run $2
# seconds and only if it is still running that query then (so the kill cannot come after
# the statement ended). Prints the killed backend's pid; prints nothing and returns 1 when
# no such backend was found, it had finished before the kill, or kill failed. The third
# argument (a database) is not used; wait_recovered takes it.
kill9_backend_running() { # like-pattern delay db
    local pid='' still _
    for _ in $(seq 1 100); do
        pid=$(psql_q -d postgres -c "SELECT pid FROM pg_stat_activity
            WHERE state = 'active' AND query LIKE '$1' AND pid <> pg_backend_pid() LIMIT 1")
        [[ -n $pid ]] && break
        sleep 0.1
    done
    [[ -n $pid ]] || return 1
    sleep "$2"
    still=$(psql_q -d postgres -c "SELECT count(*) FROM pg_stat_activity
        WHERE pid = $pid AND state = 'active' AND query LIKE '$1'")
    [[ $still == 1 ]] || return 1
    kill -9 "$pid" || return 1
    echo "$pid"
}
# Byte size of the server log, to look at only what a test adds to it (0 without a log).
server_log_size() {
    if [[ -n ${SEQUIN_SERVER_LOG:-} && -f $SEQUIN_SERVER_LOG ]]; then stat -c %s "$SEQUIN_SERVER_LOG"; else echo 0; fi
}
# True when the server log, from byte offset $2 on, shows the postmaster reporting backend
# $1 "terminated by signal 9" and then going through crash recovery to ready again.
server_log_shows_kill9() { # pid offset
    [[ $1 =~ ^[0-9]+$ && -n ${SEQUIN_SERVER_LOG:-} && -r $SEQUIN_SERVER_LOG ]] || return 1
    tail -c +$(($2 + 1)) "$SEQUIN_SERVER_LOG" | awk -v pid="$1" '
        s == 0 && index($0, "server process (PID " pid ") was terminated by signal 9") { s = 1; next }
        s == 1 && /all server processes terminated; reinitializing/ { s = 2; next }
        s == 2 && /automatic recovery in progress/ { s = 3; next }
        s == 3 && /database system is ready to accept connections/ { s = 4 }
        END { exit s == 4 ? 0 : 1 }'
}
# True when a psql that exited with status $1 and wrote $2 (its stderr) lost its own
# backend abruptly: psql's "connection lost" exit status 2 and libpq's message, and not the
# notice a backend sends when it is stopped because another one crashed.
client_lost_connection() { # psql-exit-status stderr-file
    [[ $1 == 2 ]] && grep -qE 'server closed the connection unexpectedly|connection to server was lost' "$2" &&
        ! grep -q 'because of crash of another server process' "$2"
}
wait_recovered() { # db
    local _
    wait_ready 60 >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do psql_q -d "$1" -c "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}
