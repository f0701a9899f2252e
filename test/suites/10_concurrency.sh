#!/usr/bin/env bash
# Several clients upsert overlapping keys with versions in random order (pgbench, a few
# seconds): no client sees an error, and every key ends at its highest version.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_concurrency
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql_q -d $db <<'SQL'
CREATE EXTENSION sequin_upsert;
CREATE TABLE public.items (id text PRIMARY KEY, payload text, v bigint);
SELECT sequin.create_mapping('items', 'public.items', '{"id": "id", "payload": "data.p", "v": "updated_idx"}',
                             order_column => 'v');
-- Every version each client may send: 50 keys x versions 1..200.
CREATE TABLE public.sent (id text, v bigint);
SQL
script=$(mktemp)
cat >"$script" <<'PGB'
\set k random(1, 50)
\set v random(1, 200)
\set k2 random(1, 50)
\set v2 random(1, 200)
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
  jsonb_build_object('id', 'key' || :k, 'collection_id', 'items', 'updated_idx', :v, 'data', jsonb_build_object('p', 'p' || :v)),
  jsonb_build_object('id', 'key' || :k2, 'collection_id', 'items', 'updated_idx', :v2, 'data', jsonb_build_object('p', 'p' || :v2))));
INSERT INTO public.sent VALUES ('key' || :k, :v), ('key' || :k2, :v2);
PGB
out=$(pgbench -n -c 4 -j 2 -T 4 -f "$script" $db 2>&1)
rc=$?
rm -f "$script"
tap_ok "pgbench clients ran without errors" test $rc -eq 0
failed=$(grep -Eo 'number of failed transactions: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
tap_ok "no client saw an error (failed transactions: ${failed:-0})" test "${failed:-0}" -eq 0
processed=$(grep -Eo 'number of transactions actually processed: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
tap_ok "clients made progress ($processed calls)" test "${processed:-0}" -gt 100
wrong=$(psql_q -d $db -c "SELECT count(*) FROM (SELECT id, max(v) AS v FROM public.sent GROUP BY id) s
                          FULL JOIN public.items i USING (id)
                          WHERE i.v IS DISTINCT FROM s.v OR i.payload IS DISTINCT FROM 'p' || s.v")
tap_ok "every key holds its highest version ($wrong wrong)" test "$wrong" = 0
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE $db"
tap_done
