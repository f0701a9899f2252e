#!/usr/bin/env bash
# Delete races (issue 11), black-box and model-based: several psql sessions, driven by
# test/suites/lib/delete_races.py (standard library only), hold transactions open while
# others run and commit.
#   race-*      the issue's scripted races: an insert held open while a delete of the same key
#               commits, and the reverse (on an absent and on a stored key): the key ends
#               absent, as if the calls ran one after the other (never a row beside a newer
#               tombstone);
#   rr-*, ser-* at REPEATABLE READ / SERIALIZABLE a call whose snapshot misses a committed
#               change of its key raises 40001 (as a plain UPDATE does) or ends serially;
#   replay-*    a replay (all records stale) right after a call that inserted new keys, and as
#               a session's first call, works in BEGIN READ ONLY and takes no transaction id;
#   prepared-*  after PREPARE TRANSACTION of a call, the session's next call does not wait for
#               the prepared transaction (skipped unless max_prepared_transactions > 0: start
#               the cluster with SEQUIN_PG_OPTS='-c max_prepared_transactions=10');
#   model-*     4-6 sessions send random transactions (1-16 upserts, deletes, late and replayed
#               records over 10-40 keys; READ COMMITTED, REPEATABLE READ, SERIALIZABLE), some
#               held open, committed or rolled back at random: no call fails (but 40001 at
#               REPEATABLE READ and above), and the table equals the serial model (per key the
#               highest committed version wins; absent if that record is a delete);
#   bench-*     pgbench, 8 clients, batches of 16 over 20 keys, 0 % and 5 % deletes: no failed
#               call (a deadlock that outlives the extension's retries fails the call), end
#               state equal to the model; tps and pg_stat_database.deadlocks are printed.
#
# Knobs:
#   SEQUIN_RACE_SECONDS=30   time budget (CI default); e.g. 300 for a long run
#   SEQUIN_RACE_SEED=1       seed of the random interleavings (printed); "random" picks one.
#                            Timing still varies from run to run.
#   SEQUIN_RACE_PARTS        the parts to run, of "races replay prepared model bench" (all)
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_delete_races
seconds=${SEQUIN_RACE_SECONDS:-30}
seed=${SEQUIN_RACE_SEED:-1}
[[ $seed == random ]] && seed=$(($(date +%s%N) % 1000000))

# The driver needs python3 (standard library only); installed with apt-get when missing.
if ! sequin_install_missing "command -v python3" python3; then
    echo "not ok - python3 is needed to drive the sessions"
    exit 1
fi

cleanup() {
    # A prepared transaction left behind would keep the database from being dropped.
    local gid
    for gid in $(psql_q -d "$db" -c "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()" 2>/dev/null); do
        psql_q -d "$db" -c "ROLLBACK PREPARED '$gid'" >/dev/null 2>&1
    done
    PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
}
trap cleanup EXIT

setup_ok=1
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" || setup_ok=0
((setup_ok)) && { psql_q -d "$db" -c 'CREATE EXTENSION sequin_upsert' || setup_ok=0; }
tap_ok "delete races: database $db set up" test $setup_ok -eq 1
((setup_ok)) || tap_done

SEQUIN_RACE_DB=$db SEQUIN_RACE_SEED=$seed SEQUIN_RACE_SECONDS=$seconds \
    python3 "$(dirname "$0")/lib/delete_races.py"
rc=$?
tap_ok "delete races: the driver found no failure (exit $rc)" test $rc -eq 0

# At REPEATABLE READ, a racing writer that then rolls back is no conflict (PostgreSQL's own
# INSERT just goes on): the call waits for it and proceeds, no 40001.
psql_q -d "$db" -c "CREATE TABLE public.rb (k text PRIMARY KEY, v bigint)" \
    -c "SELECT sequin.create_mapping('rb', 'public.rb', '{\"k\": \"id\", \"v\": \"updated_idx\"}', order_column => 'v')" >/dev/null
rb_record() { # key version deleted
    printf '{"id": "%s", "collection_id": "rb", "updated_idx": %s, "deleted": %s}' "$1" "$2" "$3"
}
rolled_back_race() { # key held-record-args second-record-args
    local key=$1 out
    psql_q -d "$db" -c "BEGIN" -c "SELECT * FROM sequin.sequin_upsert('$(rb_record "$key" $2 $3)')" \
        -c "SELECT pg_sleep(1.5)" -c "ROLLBACK" >/dev/null 2>&1 &
    sleep 0.5
    out=$(psql -X -q -At -d "$db" -c "BEGIN ISOLATION LEVEL REPEATABLE READ" \
        -c "SELECT inserted || '/' || deleted || '/' || skipped FROM sequin.sequin_upsert('$(rb_record "$key" $4 $5)')" \
        -c "COMMIT" 2>&1)
    wait
    echo "$out"
}
got=$(rolled_back_race rb1 10 true 5 false)
tap_ok "REPEATABLE READ: an insert racing a delete that rolls back inserts, no 40001 (got: $got)" \
    test "$got" = "1/0/0"
got=$(rolled_back_race rb2 5 false 10 true)
tap_ok "REPEATABLE READ: a delete racing an insert that rolls back is a delete of an absent key, no 40001 (got: $got)" \
    test "$got" = "0/0/1"

# A read-only replay while a reset_stats() of its collection is open in another session: it
# does not wait for it (it counts in a row nobody is changing, or not at all).
psql_q -d "$db" -c "SELECT * FROM sequin.sequin_upsert('$(rb_record rs 7 false)')" >/dev/null
psql_q -d "$db" -c "BEGIN" -c "SELECT sequin.reset_stats('rb')" -c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null 2>&1 &
sleep 0.5
got=$(psql -X -q -At -d "$db" -c "SET lock_timeout = '1s'" -c "BEGIN READ ONLY" \
    -c "SELECT inserted || '/' || skipped FROM sequin.sequin_upsert('$(rb_record rs 7 false)')" -c "COMMIT" 2>&1)
wait
tap_ok "a read-only replay does not wait for an open reset_stats() of its collection (got: $got)" \
    test "$got" = "0/1"
tap_done
