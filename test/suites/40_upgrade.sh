#!/usr/bin/env bash
# ALTER EXTENSION sequin_upsert UPDATE from 0.1.0 on a database holding mappings, staged
# rows and tombstones: nothing is lost and everything works afterwards.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_upgrade
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql_q -d $db >/dev/null <<'SQL'
CREATE EXTENSION sequin_upsert VERSION '0.1.0';
CREATE TABLE public.subs (id text PRIMARY KEY, plan text, v bigint);
SELECT sequin.create_mapping('subs', 'public.subs', '{"id": "id", "plan": "data.plan", "v": "updated_idx"}',
                             order_column => 'v');
SELECT * FROM sequin.sequin_upsert('[{"id": "a", "collection_id": "subs", "updated_idx": 1, "data": {"plan": "basic"}},
                                     {"id": "b", "collection_id": "subs", "updated_idx": 5, "deleted": true}]');
SET sequin.apply_mode = deferred;
INSERT INTO sequin.staging (record) VALUES ('{"id": "c", "collection_id": "subs", "updated_idx": 1, "data": {"plan": "pro"}}');
SQL
tap_ok "0.1.0 installed" test "$(psql_q -d $db -c "SELECT extversion FROM pg_extension WHERE extname = 'sequin_upsert'")" = 0.1.0
tap_ok "0.1.0 has no stats view" test "$(psql_q -d $db -c "SELECT to_regclass('sequin.stats') IS NULL")" = t
psql_q -d $db -c "ALTER EXTENSION sequin_upsert UPDATE"
tap_ok "updated to 0.2.0" test "$(psql_q -d $db -c "SELECT extversion FROM pg_extension WHERE extname = 'sequin_upsert'")" = 0.2.0
tap_ok "the mapping is kept" test "$(psql_q -d $db -c "SELECT count(*) FROM sequin.mappings WHERE collection_id = 'subs'")" = 1
tap_ok "the tombstone is kept" test "$(psql_q -d $db -c "SELECT version FROM sequin.tombstones WHERE key = '{b}'")" = 5
tap_ok "the staged row is kept" test "$(psql_q -d $db -c "SELECT count(*) FROM sequin.staging WHERE status = 'pending'")" = 1
tap_ok "apply_staging applies it after the update" \
    test "$(psql_q -d $db -c "SELECT inserted FROM sequin.apply_staging()")" = 1
tap_ok "a late record for the deleted key is still skipped" \
    test "$(psql_q -d $db -c "SELECT skipped FROM sequin.sequin_upsert('{\"id\": \"b\", \"collection_id\": \"subs\", \"updated_idx\": 4}')")" = 1
tap_ok "upserts are counted in sequin.stats" \
    test "$(psql_q -d $db -c "SELECT * FROM sequin.sequin_upsert('{\"id\": \"a\", \"collection_id\": \"subs\", \"updated_idx\": 2}')" -c "SELECT updated FROM sequin.stats WHERE collection_id = 'subs'" | tail -1)" = 1
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE $db"
tap_done
