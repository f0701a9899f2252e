#!/usr/bin/env bash
# Child collections under concurrent writers: 8 pgbench clients send calls of 1-3 parents of
# a small set (in random order, with newer and older versions, deletes, empty lists and
# lists of lists), each call logging what it sent in the same transaction. At the end no
# call failed, no deadlock was detected, and every parent's rows equal those of its newest
# version sent (a serial model): deleted, or stored with exactly its list, and each item's
# tiers exactly the item's list.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_children_races
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
q() { psql_q -d $db "$@"; }
q >/dev/null <<'SQL'
CREATE EXTENSION sequin_upsert;
CREATE SCHEMA cr;
CREATE TABLE cr.subs (id text PRIMARY KEY, v bigint);
CREATE TABLE cr.items (id text PRIMARY KEY, sub_id text NOT NULL, qty int);
CREATE INDEX ON cr.items (sub_id);
CREATE TABLE cr.tiers (id text PRIMARY KEY, item_id text NOT NULL);
CREATE INDEX ON cr.tiers (item_id);
SELECT sequin.create_mapping('cr:sub', 'cr.subs', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
SELECT sequin.create_mapping(collection_id => 'cr:item', target_table => 'cr.items',
    columns => '{"id": "id", "sub_id": "$parent.id", "qty": "qty"}', parent => 'cr:sub',
    list_source => '"data.items"', parent_key_columns => '{sub_id}');
SELECT sequin.create_mapping(collection_id => 'cr:tier', target_table => 'cr.tiers',
    columns => '{"id": "id", "item_id": "$parent.id"}', parent => 'cr:item',
    list_source => '"tiers"', parent_key_columns => '{item_id}');
CREATE SEQUENCE cr.version;
CREATE TABLE cr.sent (sub text, v bigint, record jsonb);
-- A version of parent p: 0-3 items of p's pool, each with 0-2 tiers; one in ten a delete.
-- Versions are drawn from a sequence and sometimes sent late (older than one already sent);
-- each parent's are distinct.
CREATE FUNCTION cr.version_of(p int) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('id', 's' || p, 'collection_id', 'cr:sub',
        'updated_idx', (nextval('cr.version') - late * 5) * 16 + late * 8 + p,
        'deleted', random() < 0.1,
        'data', jsonb_build_object('items', coalesce((
            SELECT jsonb_agg(jsonb_build_object('id', 's' || p || 'i' || i, 'qty', (random() * 9)::int,
                       'tiers', coalesce((SELECT jsonb_agg(jsonb_build_object('id', 's' || p || 'i' || i || 't' || t))
                                           FROM generate_series(1, 2) t WHERE random() < 0.5), '[]')))
              FROM generate_series(1, 4) i WHERE random() < 0.5), '[]')))
      FROM (SELECT (random() < 0.2)::int AS late) l
$$;
CREATE FUNCTION cr.send() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    batch jsonb := '[]';
    r jsonb;
BEGIN
    FOR p IN 1..(1 + (random() * 2)::int) LOOP
        r := cr.version_of((random() * 7)::int + 1);
        batch := batch || r;
        INSERT INTO cr.sent VALUES (r->>'id', (r->>'updated_idx')::bigint, r);
    END LOOP;
    PERFORM sequin.sequin_upsert(batch);
END $$;
SQL
deadlocks() { q -c "SELECT deadlocks FROM pg_stat_database WHERE datname = '$db'"; }
before=$(deadlocks)
out=$("$SEQUIN_PGBIN/pgbench" -n -c 8 -j 4 -T 8 -f <(echo 'SELECT cr.send();') "$db" 2>&1)
rc=$?
tap_check race.1 "8 clients for 8 s: pgbench ends without an error" "0" "$rc"
tap_ok "race.2 calls were made ($(grep -o 'number of transactions actually processed: [0-9]*' <<<"$out"))" \
    test "$(q -c "SELECT count(*) > 100 FROM cr.sent")" = t
tap_check race.3 "no deadlock was detected" "0" "$(($(deadlocks) - before))"
# The serial model: per parent, the newest version sent.
model="WITH newest AS (SELECT DISTINCT ON (sub) sub, v, record FROM cr.sent ORDER BY sub, v DESC)
SELECT string_agg(line, ' ' ORDER BY line) FROM (
  SELECT n.sub || '@' || n.v || ':' || coalesce((SELECT string_agg(i->>'id' || '/' || (i->>'qty') || '[' ||
         coalesce((SELECT string_agg(t->>'id', ',' ORDER BY t->>'id') FROM jsonb_array_elements(i->'tiers') t), '') || ']',
         ',' ORDER BY i->>'id') FROM jsonb_array_elements(n.record->'data'->'items') i), '') AS line
    FROM newest n WHERE NOT (n.record->>'deleted')::boolean) x"
stored="SELECT string_agg(line, ' ' ORDER BY line) FROM (
  SELECT s.id || '@' || s.v || ':' || coalesce((SELECT string_agg(i.id || '/' || i.qty || '[' ||
         coalesce((SELECT string_agg(t.id, ',' ORDER BY t.id) FROM cr.tiers t WHERE t.item_id = i.id), '') || ']',
         ',' ORDER BY i.id) FROM cr.items i WHERE i.sub_id = s.id), '') AS line
    FROM cr.subs s) x"
tap_check race.4 "every parent holds its newest version's list (and each item its tiers)" \
    "$(q -c "$model")" "$(q -c "$stored")"
tap_check race.5 "no child row outlives its parent" "0" \
    "$(q -c "SELECT (SELECT count(*) FROM cr.items i WHERE NOT EXISTS (SELECT FROM cr.subs s WHERE s.id = i.sub_id))
               + (SELECT count(*) FROM cr.tiers t WHERE NOT EXISTS (SELECT FROM cr.items i WHERE i.id = t.item_id))")"
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE $db"
tap_done
