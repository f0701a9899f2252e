#!/usr/bin/env bash
# Several clients upsert overlapping keys (4 of 20 per call, in random order) with versions
# in random order (pgbench, a few seconds): no client sees an error (no deadlock: rows are
# written in key order), every key ends at its highest version, and sequin.stats counts
# exactly what happened. Then the same load with sequin.track_stats off and on again:
# the throughputs are printed (a figure, not a test).
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
\set k1 random(1, 20)
\set k2 random(1, 20)
\set k3 random(1, 20)
\set k4 random(1, 20)
\set v1 random(1, 200)
\set v2 random(1, 200)
\set v3 random(1, 200)
\set v4 random(1, 200)
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
  jsonb_build_object('id', 'key' || :k1, 'collection_id', 'items', 'updated_idx', :v1, 'data', jsonb_build_object('p', 'p' || :v1)),
  jsonb_build_object('id', 'key' || :k2, 'collection_id', 'items', 'updated_idx', :v2, 'data', jsonb_build_object('p', 'p' || :v2)),
  jsonb_build_object('id', 'key' || :k3, 'collection_id', 'items', 'updated_idx', :v3, 'data', jsonb_build_object('p', 'p' || :v3)),
  jsonb_build_object('id', 'key' || :k4, 'collection_id', 'items', 'updated_idx', :v4, 'data', jsonb_build_object('p', 'p' || :v4))));
INSERT INTO public.sent VALUES ('key' || :k1, :v1), ('key' || :k2, :v2), ('key' || :k3, :v3), ('key' || :k4, :v4);
PGB
# How many deadlocks the server has detected in this database.
deadlock_count() {
    sleep 1 # backends report their statistics when they end
    psql_q -d $db -c "SELECT pg_stat_force_next_flush()" -c "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()" | tail -1
}
deadlocks_before=$(deadlock_count)
out=$(pgbench -n -c 4 -j 2 -T 4 -f "$script" $db 2>&1)
rc=$?
tap_ok "pgbench clients ran without errors" test $rc -eq 0
deadlocks=$(($(deadlock_count) - deadlocks_before))
tap_ok "no deadlock between the clients ($deadlocks)" test "$deadlocks" = 0
failed=$(grep -Eo 'number of failed transactions: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
tap_ok "no client saw an error (failed transactions: ${failed:-0})" test "${failed:-0}" -eq 0
processed=$(grep -Eo 'number of transactions actually processed: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
tap_ok "clients made progress ($processed calls)" test "${processed:-0}" -gt 100
wrong=$(psql_q -d $db -c "SELECT count(*) FROM (SELECT id, max(v) AS v FROM public.sent GROUP BY id) s
                          FULL JOIN public.items i USING (id)
                          WHERE i.v IS DISTINCT FROM s.v OR i.payload IS DISTINCT FROM 'p' || s.v")
tap_ok "every key holds its highest version ($wrong wrong)" test "$wrong" = 0
# Counts: every key inserted once; every record counted once.
counts=$(psql_q -d $db -c "SELECT s.inserted = (SELECT count(*) FROM public.items)
                                  AND s.inserted + s.updated + s.deleted + s.skipped = (SELECT count(*) FROM public.sent)
                                  AND s.failed = 0
                           FROM sequin.stats s WHERE s.collection_id = 'items'")
tap_ok "sequin.stats counted every record once under concurrency" test "$counts" = t
[[ $counts == t ]] || psql_q -d $db -c "SELECT *, (SELECT count(*) FROM public.items) AS rows, (SELECT count(*) FROM public.sent) AS sent FROM sequin.stats" | sed "s/^/# /"

# Throughput with and without the counters (each backend updates its own counter rows).
tps() { # extra PGOPTIONS
    PGOPTIONS="$1" pgbench -n -c 4 -j 2 -T 3 -f "$script" $db 2>&1 |
        grep -Eo 'tps = [0-9.]+' | head -1 | grep -Eo '[0-9.]+'
}
on1=$(tps "-c sequin.track_stats=on")
off=$(tps "-c sequin.track_stats=off")
on2=$(tps "-c sequin.track_stats=on")
echo "# throughput, 4 clients: stats on ${on1:-?} calls/s, off ${off:-?}, on again ${on2:-?}" \
    "(on/off: $(awk -v a="${on1:-0}" -v b="${on2:-0}" -v o="${off:-1}" 'BEGIN { printf "%.3f", (a + b) / 2 / o }'))"

# Update-heavy load: every record is newer than what is stored when it is sent, so the
# applier updates first (one UPDATE ... FROM the batch). 4 clients update overlapping keys,
# each call 50 of 100 keys in random order, so that records often turn stale while a call
# runs. The UPDATE must lock rows in key order like INSERT does, and a record another client
# made stale meanwhile must not lock its row in a second statement: no deadlock (counted by
# the server), and every key ends at its highest version.
psql_q -d $db <<'SQL'
CREATE TABLE public.hot (id text PRIMARY KEY, payload text, v bigint);
SELECT sequin.create_mapping('hot', 'public.hot', '{"id": "id", "payload": "data.p", "v": "updated_idx"}',
                             order_column => 'v');
INSERT INTO public.hot SELECT 'key' || i, 'p0', 0 FROM generate_series(1, 100) AS i;
ANALYZE public.hot;
CREATE SEQUENCE public.version_seq;
CREATE TABLE public.hot_sent (id text, v bigint);
SQL
cat >"$script" <<'PGB'
WITH r AS (
  SELECT 'key' || k AS id, nextval('public.version_seq') AS v
  FROM (SELECT DISTINCT (random() * 99)::int + 1 AS k FROM generate_series(1, 50)) AS keys
  ORDER BY random()
), sent AS (INSERT INTO public.hot_sent SELECT id, v FROM r)
SELECT * FROM sequin.sequin_upsert((
  SELECT jsonb_agg(jsonb_build_object('id', id, 'collection_id', 'hot', 'updated_idx', v,
                                      'data', jsonb_build_object('p', 'p' || v))) FROM r));
PGB
deadlocks_before=$(deadlock_count)
out=$(pgbench -n -c 4 -j 2 -T 4 -f "$script" $db 2>&1)
rc=$?
tap_ok "update-heavy clients ran without errors" test $rc -eq 0
processed=$(grep -Eo 'number of transactions actually processed: [0-9]+' <<<"$out" | grep -Eo '[0-9]+$' || echo 0)
tap_ok "update-heavy clients made progress ($processed calls)" test "${processed:-0}" -gt 100
deadlocks=$(($(deadlock_count) - deadlocks_before))
tap_ok "no deadlock between updating clients ($deadlocks)" test "$deadlocks" = 0
wrong=$(psql_q -d $db -c "SELECT count(*) FROM (SELECT id, max(v) AS v FROM public.hot_sent GROUP BY id) s
                          JOIN public.hot h USING (id)
                          WHERE h.v IS DISTINCT FROM s.v OR h.payload IS DISTINCT FROM 'p' || s.v")
tap_ok "every updated key holds its highest version ($wrong wrong)" test "$wrong" = 0
counts=$(psql_q -d $db -c "SELECT s.inserted = 0 AND s.updated > 0
                                  AND s.updated + s.skipped = (SELECT count(*) FROM public.hot_sent)
                           FROM sequin.stats s WHERE s.collection_id = 'hot'")
tap_ok "sequin.stats: updates and skips add up to the records sent" test "$counts" = t

rm -f "$script"
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE $db"
tap_done
