#!/usr/bin/env bash
# Two sessions writing the same keys lock them in one order whatever plan the statement got
# (an adversary's probes): a table whose rows lie in the reverse of key order (fillfactor 10
# and HOT updates), a session whose kept plans have gone generic (6 calls), another fresh
# one, and a BEFORE trigger that sleeps after each session's first row so the two interleave.
# Also: a record whose stored row another session deletes meanwhile is counted as inserted.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_lock_order
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql_q -d $db -c "CREATE EXTENSION sequin_upsert"
q() { psql_q -d $db "$@"; }
deadlocks() { q -c "SELECT deadlocks FROM pg_stat_database WHERE datname = '$db'"; }

# TARGET's rows 1 and 2 (2 first on disk); KIND upsert or delete: each session sends records
# for 1 and 2 (newer versions), session A after 6 calls that make its plans generic.
two_sessions() { # target kind
    local t=$1 kind=$2
    rec() { # version tag
        if [[ $kind == delete ]]; then
            echo "[{\"collection_id\":\"$t\",\"id\":1,\"updated_idx\":$1,\"deleted\":true},{\"collection_id\":\"$t\",\"id\":2,\"updated_idx\":$1,\"deleted\":true}]"
        else
            echo "[{\"collection_id\":\"$t\",\"id\":1,\"updated_idx\":$1,\"data\":{\"s\":\"$2\"}},{\"collection_id\":\"$t\",\"id\":2,\"updated_idx\":$1,\"data\":{\"s\":\"$2\"}}]"
        fi
    }
    # Six calls of the same statements on other keys (updates of 1 and 2, or deletes of 10..)
    local warm=() v
    for v in 2 3 4 5 6 7; do
        if [[ $kind == delete ]]; then
            warm+=(-c "SELECT 1 FROM sequin.sequin_upsert('[{\"collection_id\":\"$t\",\"id\":$((10 + v)),\"updated_idx\":9,\"deleted\":true},{\"collection_id\":\"$t\",\"id\":$((30 + v)),\"updated_idx\":9,\"deleted\":true}]')")
        else
            warm+=(-c "SELECT 1 FROM sequin.sequin_upsert('$(rec "$v" w)')")
        fi
    done
    q "${warm[@]}" -c "SET lock_order.sleep_on = '2'" -c "SELECT 1 FROM sequin.sequin_upsert('$(rec 100 A)')" >/dev/null 2>&1 &
    local a=$!
    sleep 1.5
    q -c "SET lock_order.sleep_on = '1'" -c "SELECT 1 FROM sequin.sequin_upsert('$(rec 101 B)')" >/dev/null 2>&1
    wait $a
}

setup_target() { # name, extra SQL
    q >/dev/null <<SQL
CREATE TABLE $1 (id int PRIMARY KEY, v bigint, s text) WITH (fillfactor = 10);
SELECT sequin.create_mapping('$1', '$1', '{"id": "id", "v": "updated_idx", "s": "data.s"}', order_column => 'v');
SELECT sequin.sequin_upsert('{"collection_id": "$1", "id": 2, "updated_idx": 1, "data": {"s": "a"}}');
INSERT INTO $1 SELECT i, 1, 'a' FROM generate_series(3, 60) i;
SELECT sequin.sequin_upsert('{"collection_id": "$1", "id": 1, "updated_idx": 1, "data": {"s": "a"}}');
ANALYZE $1;
CREATE FUNCTION ${1}_slow() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF current_setting('lock_order.sleep_on', true) = coalesce(NEW.id, OLD.id)::text THEN PERFORM pg_sleep(1.5); END IF;
    RETURN coalesce(NEW, OLD);
END \$\$;
CREATE TRIGGER slow BEFORE UPDATE OR DELETE ON $1 FOR EACH ROW EXECUTE FUNCTION ${1}_slow();
$2
SQL
}

# Updates of stored rows (the update-first shortcut after a chunk of updates).
setup_target upd ""
before=$(deadlocks)
two_sessions upd upsert
tap_check upd.1 "updates of the same keys by a session with generic plans and a fresh one: no deadlock" \
    "0" "$(($(deadlocks) - before))"
tap_check upd.2 "... and the newest version of each key is stored" "1 101 B|2 101 B" \
    "$(q -c "SELECT string_agg(concat_ws(' ', id, v, s), '|' ORDER BY id) FROM upd WHERE id <= 2")"

# Deletes written run by run (a rule on DELETE keeps MERGE away from the table).
setup_target del "CREATE TABLE del_log (id int); CREATE RULE log AS ON DELETE TO del DO ALSO INSERT INTO del_log VALUES (OLD.id);"
before=$(deadlocks)
two_sessions del delete
tap_check del.1 "deletes of the same keys, run by run, by a session with generic plans and a fresh one: no deadlock" \
    "0" "$(($(deadlocks) - before))"
tap_check del.2 "... and both keys are deleted" "0" "$(q -c "SELECT count(*) FROM del WHERE id <= 2")"

# A stored row deleted by another session while a call that looked it up waits: the call
# inserts the key again, and counts an insert.
q >/dev/null <<'SQL'
CREATE TABLE cnt (id int PRIMARY KEY, v bigint, s text);
SELECT sequin.create_mapping('cnt', 'cnt', '{"id": "id", "v": "updated_idx", "s": "data.s"}', order_column => 'v');
SELECT sequin.sequin_upsert('[{"collection_id": "cnt", "id": 1, "updated_idx": 10, "data": {"s": "a"}},
                              {"collection_id": "cnt", "id": 99, "updated_idx": 1, "deleted": true}]');
SQL
q -c "BEGIN" -c "SELECT 1 FROM sequin.sequin_upsert('{\"collection_id\": \"cnt\", \"id\": 1, \"updated_idx\": 15, \"deleted\": true}')" \
    -c "SELECT pg_sleep(2)" -c "COMMIT" >/dev/null &
held=$!
sleep 0.7
got=$(q -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.sequin_upsert('{\"collection_id\": \"cnt\", \"id\": 1, \"updated_idx\": 20, \"data\": {\"s\": \"t1\"}}')")
wait $held
tap_check cnt.1 "a record whose stored row another session deleted meanwhile counts as inserted" "1 0 0 0" "$got"
tap_check cnt.2 "... and its row is stored" "1 20 t1" "$(q -c "SELECT concat_ws(' ', id, v, s) FROM cnt")"
tap_done
