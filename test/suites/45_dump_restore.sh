#!/usr/bin/env bash
# pg_dump keeps the mapping catalog, the tombstones and the staged records (pending and
# failed, with the role that staged them), and a plain restore works: the catalog's rows are
# loaded before the targets' keys exist, so their validation waits, and the staged rows are
# loaded as they were, not applied.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
src=sequin_dump_src
dst=sequin_dump_dst
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" \
    -c "CREATE DATABASE $src" -c "CREATE DATABASE $dst"
psql_q -d $src >/dev/null <<'SQL'
CREATE EXTENSION sequin_upsert;
CREATE SCHEMA stripe;
CREATE TABLE stripe.subscriptions (id text PRIMARY KEY, plan text, v bigint);
CREATE TABLE stripe.by_code (code text, n int, v bigint, CONSTRAINT code_unique UNIQUE (code));
SELECT sequin.create_mapping('stripe:subscription', 'stripe.subscriptions',
    '{"id": "id", "plan": "data.plan", "v": "updated_idx"}', order_column => 'v');
SELECT sequin.create_mapping('by_code', 'stripe.by_code', '{"code": "data.code", "n": "data.n", "v": "updated_idx"}',
    conflict_columns => '{code}', order_column => 'v');
-- Child collections, two levels; the parent's row is rewritten after its child's, so the
-- dump lists the child first.
CREATE TABLE stripe.items (id text PRIMARY KEY, sub_id text NOT NULL, qty int);
CREATE TABLE stripe.tiers (id text PRIMARY KEY, item_id text NOT NULL);
SELECT sequin.create_mapping(collection_id => 'stripe:item', target_table => 'stripe.items',
    columns => '{"id": "id", "sub_id": "$parent.id", "qty": "quantity"}', parent => 'stripe:subscription',
    list_source => '"data.items.data"', parent_key_columns => '{sub_id}');
SELECT sequin.create_mapping(collection_id => 'stripe:tier', target_table => 'stripe.tiers',
    columns => '{"id": "id", "item_id": "$parent.id"}', parent => 'stripe:item',
    list_source => '"tiers"', parent_key_columns => '{item_id}');
UPDATE sequin.mappings SET required = NULL WHERE collection_id = 'stripe:subscription';
SELECT * FROM sequin.sequin_upsert('[{"id": "a", "collection_id": "stripe:subscription", "updated_idx": 1, "data": {"plan": "basic"}},
                                     {"id": "b", "collection_id": "stripe:subscription", "updated_idx": 5, "deleted": true},
                                     {"collection_id": "by_code", "updated_idx": 1, "data": {"code": "X", "n": 1}}]');
SQL
# A tombstone's creator need not exist where the dump is restored (created_by is a name).
psql_q -d $src -c "UPDATE sequin.tombstones SET created_by = 'sq45_role_not_in_the_target_cluster'" >/dev/null
# A pending record and a failed one, staged by a role of their own (which the restoring
# cluster need not have: staged_by is a name).
psql_q -d $src >/dev/null <<'SQL'
DROP ROLE IF EXISTS sq45_stager;
CREATE ROLE sq45_stager;
GRANT USAGE ON SCHEMA sequin TO sq45_stager;
GRANT INSERT (record) ON sequin.staging TO sq45_stager;
GRANT USAGE ON SEQUENCE sequin.staging_id_seq TO sq45_stager;
SET ROLE sq45_stager;
SET sequin.apply_mode = deferred;
INSERT INTO sequin.staging (record) VALUES ('{"id": "p", "collection_id": "stripe:subscription", "updated_idx": 1}');
RESET sequin.apply_mode;
SET client_min_messages = error;
INSERT INTO sequin.staging (record) VALUES ('{"id": "f", "collection_id": "no:such", "updated_idx": 1}');
RESET ROLE;
SQL
staged="SELECT string_agg(record->>'id' || ' ' || status || ' ' || staged_by || ' ' || (error IS NOT NULL), ',' ORDER BY id) FROM sequin.staging"
staged_src=$(psql_q -d $src -c "$staged")
pg_dump -d $src -f "$work/dump.sql"
tap_ok "pg_dump of a database with mappings" test -s "$work/dump.sql"
restore_out=$(psql -X -v ON_ERROR_STOP=1 -q -d $dst -f "$work/dump.sql" 2>&1)
rc=$?
tap_ok "the plain restore runs without error" test $rc -eq 0
((rc == 0)) || echo "$restore_out" | head -20 | sed 's/^/# /'
tap_ok "the mappings are restored" \
    test "$(psql_q -d $dst -c "SELECT string_agg(collection_id || coalesce('<' || parent, ''), ',' ORDER BY collection_id COLLATE \"C\") FROM sequin.mappings")" = "by_code,stripe:item<stripe:subscription,stripe:subscription,stripe:tier<stripe:item"
tap_ok "the dump lists the child mapping before its parent (what the restore must take)" \
    test "$(grep -n -E '^(stripe:item|stripe:subscription)'$'\t' "$work/dump.sql" | head -1 | cut -d$'\t' -f1 | cut -d: -f2-)" = "stripe:item"
tap_ok "the tombstones are restored, with their creator's name and key hash" \
    test "$(psql_q -d $dst -c "SELECT version || ' ' || created_by || ' ' || (key_hash IS NOT NULL) FROM sequin.tombstones WHERE key = '{b}'")" = "5 sq45_role_not_in_the_target_cluster true"
tap_ok "the staged records are restored as they were, not applied ($staged_src)" \
    test "$(psql_q -d $dst -c "$staged")" = "p pending sq45_stager false,f failed sq45_stager true"
tap_ok "the staged records were the same before the dump" test "$staged_src" = "p pending sq45_stager false,f failed sq45_stager true"
tap_ok "a restored staged row's id is not given again" \
    test "$(psql_q -d $dst -c "SELECT nextval('sequin.staging_id_seq') > max(id) FROM sequin.staging")" = t
tap_ok "upserts work after the restore (conflict key from a constraint created after the data)" \
    test "$(psql_q -d $dst -c "SELECT inserted || '/' || updated || '/' || skipped FROM sequin.sequin_upsert('[
        {\"id\": \"c\", \"collection_id\": \"stripe:subscription\", \"updated_idx\": 1},
        {\"id\": \"b\", \"collection_id\": \"stripe:subscription\", \"updated_idx\": 4},
        {\"collection_id\": \"by_code\", \"updated_idx\": 2, \"data\": {\"code\": \"X\", \"n\": 2}}]')")" = "1/1/1"
tap_ok "child collections work after the restore (lists of lists)" \
    test "$(psql_q -d $dst -c "SELECT * FROM sequin.sequin_upsert('{\"id\": \"a\", \"collection_id\": \"stripe:subscription\", \"updated_idx\": 7, \"data\": {\"items\": {\"data\": [{\"id\": \"si_1\", \"quantity\": 2, \"tiers\": [{\"id\": \"t1\"}]}]}}}')" -c "SELECT string_agg(i.id || ':' || i.sub_id || ':' || t.id, ' ') FROM stripe.items i JOIN stripe.tiers t ON t.item_id = i.id" | tail -1)" = "si_1:a:t1"
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE $src" -c "DROP DATABASE $dst" \
    -c "DROP ROLE IF EXISTS sq45_stager"
tap_done
