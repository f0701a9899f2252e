#!/usr/bin/env bash
# ALTER EXTENSION sequin_upsert UPDATE from 0.1.0, 0.2.0, 0.3.0 and 0.4.0 on databases
# holding mappings, staged rows and tombstones as those releases wrote them (text keys and
# versions): nothing is lost, the tombstones still bind, and everything works afterwards,
# child collections (0.5.0) included.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
latest=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$SEQUIN_ROOT/sequin_upsert.control")

for from in 0.1.0 0.2.0 0.3.0 0.4.0; do
    db=sequin_upgrade_${from//./_}
    PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    # The tombstones are written as the old releases wrote them: a text[] key and a text
    # version (here a numeric key written as 1.0, and a timestamp version).
    psql_q -d $db >/dev/null <<SQL
CREATE EXTENSION sequin_upsert VERSION '$from';
CREATE TABLE public.subs (id text PRIMARY KEY, plan text, v bigint);
SELECT sequin.create_mapping('subs', 'public.subs', '{"id": "id", "plan": "data.plan", "v": "updated_idx"}',
                             order_column => 'v');
CREATE TABLE public.nums (n numeric PRIMARY KEY, at timestamp);
SELECT sequin.create_mapping('nums', 'public.nums', '{"n": "data.n", "at": "data.at"}', order_column => 'at');
INSERT INTO public.subs VALUES ('a', 'basic', 1);
INSERT INTO sequin.tombstones (collection_id, key, version) VALUES
    ('subs', '{b}', '5'), ('nums', '{1.0}', '2024-05-01 00:00:00');
SET sequin.apply_mode = deferred;
INSERT INTO sequin.staging (record) VALUES ('{"id": "c", "collection_id": "subs", "updated_idx": 1, "data": {"plan": "pro"}}');
SQL
    tap_ok "$from installed" test "$(psql_q -d $db -c "SELECT extversion FROM pg_extension WHERE extname = 'sequin_upsert'")" = "$from"
    if [[ $from != 0.3.0 && $from != 0.4.0 ]]; then # their tables serve sequin_upsert as they are
        out=$(psql_q -d $db -c "SELECT * FROM sequin.sequin_upsert('{\"id\": \"z\", \"collection_id\": \"subs\", \"updated_idx\": 1}')" 2>&1)
        tap_ok "$from: before the update, a call says to run ALTER EXTENSION ... UPDATE" \
            grep -q "ALTER EXTENSION sequin_upsert UPDATE" <<<"$out"
    fi
    if [[ $from != 0.4.0 ]]; then
        out=$(psql_q -d $db -c "SELECT * FROM sequin.apply_staging()" 2>&1)
        tap_ok "$from: before the update, apply_staging says to run ALTER EXTENSION ... UPDATE" \
            grep -q "ALTER EXTENSION sequin_upsert UPDATE" <<<"$out"
    else
        tap_ok "$from: before the update, its catalog serves sequin_upsert (no child mappings)" \
            test "$(psql_q -d $db -c "SELECT skipped FROM sequin.sequin_upsert('{\"id\": \"a\", \"collection_id\": \"subs\", \"updated_idx\": 1}')")" = 1
    fi
    psql_q -d $db -c "ALTER EXTENSION sequin_upsert UPDATE"
    tap_ok "$from: updated to $latest" test "$(psql_q -d $db -c "SELECT extversion FROM pg_extension WHERE extname = 'sequin_upsert'")" = "$latest"
    tap_ok "$from: the mappings are kept" test "$(psql_q -d $db -c "SELECT count(*) FROM sequin.mappings")" = 2
    tap_ok "$from: the tombstones are kept" test "$(psql_q -d $db -c "SELECT count(*) FROM sequin.tombstones")" = 2
    tap_ok "$from: the staged row is kept" test "$(psql_q -d $db -c "SELECT count(*) FROM sequin.staging WHERE status = 'pending'")" = 1
    tap_ok "$from: apply_staging applies it after the update" \
        test "$(psql_q -d $db -c "SELECT inserted FROM sequin.apply_staging()")" = 1
    tap_ok "$from: a late record for the deleted key is still skipped" \
        test "$(psql_q -d $db -c "SELECT skipped FROM sequin.sequin_upsert('{\"id\": \"b\", \"collection_id\": \"subs\", \"updated_idx\": 4}')")" = 1
    tap_ok "$from: a newer record for the deleted key is inserted" \
        test "$(psql_q -d $db -c "SELECT inserted FROM sequin.sequin_upsert('{\"id\": \"b\", \"collection_id\": \"subs\", \"updated_idx\": 6}')")" = 1
    tap_ok "$from: the numeric key deleted as 1.0 binds a late record for 1, under another DateStyle" \
        test "$(PGOPTIONS='-c DateStyle=SQL,DMY' psql_q -d $db -c "SELECT skipped FROM sequin.sequin_upsert('{\"collection_id\": \"nums\", \"data\": {\"n\": 1, \"at\": \"2024-03-01T00:00:00\"}}')")" = 1
    tap_ok "$from: the old tombstones were rewritten with their hash and types" \
        test "$(psql_q -d $db -c "SELECT count(*) FROM sequin.tombstones WHERE key_hash IS NOT NULL AND key_types IS NOT NULL")" = 2
    tap_ok "$from: upserts are counted in sequin.stats" \
        test "$(psql_q -d $db -c "SELECT * FROM sequin.sequin_upsert('{\"id\": \"a\", \"collection_id\": \"subs\", \"updated_idx\": 2}')" -c "SELECT updated FROM sequin.stats WHERE collection_id = 'subs'" | tail -1)" = 1
    psql_q -d $db >/dev/null <<'SQL'
CREATE TABLE public.items (id text PRIMARY KEY, sub_id text NOT NULL, qty int);
SELECT sequin.create_mapping('subs:item', 'public.items', '{"id": "id", "sub_id": "$parent.id", "qty": "qty"}',
    parent => 'subs', list_source => '"data.items"', parent_key_columns => '{sub_id}');
SQL
    tap_ok "$from: after the update, a child mapping lands a parent's list" \
        test "$(psql_q -d $db -c "SELECT * FROM sequin.sequin_upsert('{\"id\": \"a\", \"collection_id\": \"subs\", \"updated_idx\": 9, \"data\": {\"items\": [{\"id\": \"i1\", \"qty\": 1}, {\"id\": \"i2\", \"qty\": 2}]}}')" -c "SELECT string_agg(id || ':' || sub_id || ':' || qty, ' ' ORDER BY id) FROM public.items" | tail -1)" = "i1:a:1 i2:a:2"
    tap_ok "$from: after the update, the parent of a child mapping cannot be deleted" \
        bash -c "! psql -X -q -v ON_ERROR_STOP=1 -d $db -c \"DELETE FROM sequin.mappings WHERE collection_id = 'subs'\" 2>/dev/null"
    PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE $db"
done
tap_done
