#!/usr/bin/env bash
# On Citus (issue 13): a real cluster, a coordinator and 2 workers on 127.0.0.1 (throwaway
# directories, ports of their own, stopped on exit), with the extension created on the
# coordinator. Distributed and reference targets keep the promises of a local table:
# ordering, duplicates across chunks, deletes and tombstones, errors with their SQLSTATE,
# staging (immediate and deferred), exact counts and stats. Skipped, saying why, when Citus
# is not installed (.ci/run builds it first when ../shared/tools/citus is there).
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"

# shellcheck source=test/lib/citus_cluster.sh
source "$(dirname "$0")/../lib/citus_cluster.sh"

missing=$(citus_missing)
if [[ -n $missing ]]; then
    echo "ok - # SKIP $missing"
    exit 0
fi
start_citus_cluster || exit 1
dir=$CITUS_DIR
ports=("${CITUS_PORTS[@]}")
coordinator=${ports[0]}
echo "# Citus $CITUS_VERSION: coordinator on port $coordinator, workers on ${ports[1]} and ${ports[2]}"
tap_ok "CREATE EXTENSION sequin_upsert on the coordinator" cq -c "CREATE EXTENSION sequin_upsert"

cq >/dev/null <<'SQL' || exit 1
CREATE FUNCTION try(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE statement; RETURN 'ok'; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
-- n records over keys k0..k(keys-1) of collection coll, version v + i / keys, every del-th a
-- delete; data.n is 13 (which the targets' CHECK refuses) only where bad says so.
CREATE FUNCTION recs(coll text, n int, keys int, v int, del int DEFAULT 0, bad int DEFAULT -1)
RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_agg(jsonb_build_object('collection_id', coll, 'id', 'k' || (i % keys), 'updated_idx', v + i / keys,
                   'deleted', del > 0 AND i % del = 0, 'data', jsonb_build_object('n', CASE WHEN i = bad THEN 13 ELSE i + 100 END)) ORDER BY i)
  FROM generate_series(0, n - 1) i $$;
CREATE TABLE dist (id text PRIMARY KEY, n int CHECK (n <> 13), v bigint);
SELECT create_distributed_table('dist', 'id');
CREATE TABLE ref (id text PRIMARY KEY, n int CHECK (n <> 13), v bigint);
SELECT create_reference_table('ref');
SELECT sequin.create_mapping('dist', 'dist', '{"id": "id", "n": "data.n", "v": "updated_idx"}', order_column => 'v');
SELECT sequin.create_mapping('ref', 'ref', '{"id": "id", "n": "data.n", "v": "updated_idx"}', order_column => 'v');
SQL

# Every call runs on the Citus target and on a local table with the same mapping (the
# oracle, applying the same records the way the extension does on one node): the counts and
# the rows must be the same.
cq >/dev/null <<'SQL' || exit 1
CREATE TABLE local_dist (id text PRIMARY KEY, n int CHECK (n <> 13), v bigint);
CREATE TABLE local_ref (id text PRIMARY KEY, n int CHECK (n <> 13), v bigint);
SELECT sequin.create_mapping('local_dist', 'local_dist', '{"id": "id", "n": "data.n", "v": "updated_idx"}', order_column => 'v');
SELECT sequin.create_mapping('local_ref', 'local_ref', '{"id": "id", "n": "data.n", "v": "updated_idx"}', order_column => 'v');
SQL
rows() { cq -c "SELECT count(*) || ' ' || coalesce(md5(string_agg(concat_ws(' ', id, n, v), ',' ORDER BY id)), '-') FROM $1 WHERE id NOT LIKE 's%'"; }
# same_as_local ID DESC TARGET SETTINGS ARGS: sequin_upsert(recs(TARGET, ARGS)) on the Citus
# target and on its local twin, under SETTINGS; counts and rows must agree.
same_as_local() {
    local id=$1 desc=$2 t=$3 settings=$4 args=$5 got want
    got=$(cq -c "$settings" -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.sequin_upsert(recs('$t', $args))" 2>&1)
    want=$(cq -c "$settings" -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.sequin_upsert(recs('local_$t', $args))" 2>&1)
    tap_check "$id" "$t: $desc: counts ($want)" "$want" "$got"
    tap_check "$id.rows" "$t: $desc: rows" "$(rows "local_$t")" "$(rows "$t")"
}
for t in dist ref; do
    same_as_local "$t.1" "5,000 records over 2,500 keys in chunks of 1,000 (each key twice)" $t "SET sequin.batch_size = 1000" "5000, 2500, 1"
    same_as_local "$t.2" "a replay" $t "SET sequin.batch_size = 1000" "5000, 2500, 1"
    tap_check "$t.3" "$t: a replay in a READ ONLY transaction writes nothing" \
        "0 0 0 100" "$(cq -c "BEGIN READ ONLY" -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.sequin_upsert(recs('$t', 100, 100, 1))" -c "COMMIT")"
    same_as_local "$t.4" "3,000 updates and new keys, every 7th a delete, in chunks of 64" $t "SET sequin.batch_size = 64" "3000, 3000, 10, 7"
    tap_check "$t.4.tombstones" "$t: the deletes left as many tombstones as on a local table" \
        "$(cq -c "SELECT count(*) FROM sequin.tombstones WHERE collection_id = 'local_$t'")" \
        "$(cq -c "SELECT count(*) FROM sequin.tombstones WHERE collection_id = '$t'")"
    same_as_local "$t.5" "late records of deleted keys are skipped (a delete is final)" $t "SET sequin.batch_size = 1000" "3000, 3000, 5"
    same_as_local "$t.6" "updates mixed with duplicates and deletes, in chunks of 7" $t "SET sequin.batch_size = 7" "400, 150, 30, 11"
    tap_check "$t.7" "$t: a bad record fails the call with its SQLSTATE and names it" \
        "23514: record 5 (id \"k5\", collection_id \"$t\"): new row for relation ok" \
        "$(cq -c "SELECT regexp_replace(try(\$\$SELECT sequin.sequin_upsert(recs('$t', 20, 20, 50, 0, 5))\$\$), '\"${t}_[0-9]+\" violates check constraint \"${t}_n_check\"', 'ok')")"
    tap_check "$t.8" "$t: ... and a new key's bad record the same" \
        "23514" "$(cq -c "SELECT left(try(\$\$SELECT sequin.sequin_upsert('[{\"collection_id\": \"$t\", \"id\": \"new1\", \"updated_idx\": 1, \"data\": {\"n\": 13}}, {\"collection_id\": \"$t\", \"id\": \"new2\", \"updated_idx\": 1, \"data\": {\"n\": 1}}]')\$\$), 5)")"
    tap_check "$t.9" "$t: nothing of the failed calls was written" "$(rows "local_$t")" "$(rows "$t")"
done

# After a chunk that wrote, the next ones upsert without a look-up (one key looked up first):
# a replay that follows in the same session still writes nothing.
cq >/dev/null <<'SQL' || exit 1
CREATE TABLE short (id text PRIMARY KEY, n int, v bigint);
SELECT create_distributed_table('short', 'id');
SELECT sequin.create_mapping('short', 'short', '{"id": "id", "n": "data.n", "v": "updated_idx"}', order_column => 'v');
SQL
tap_check shortcut.1 "a replay right after a fresh load, in the same session, takes no transaction id and skips all" \
    "2000 0 0 0|0 0 0 2000|t" "$(cq -c "SET sequin.batch_size = 500" \
        -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.sequin_upsert(recs('short', 2000, 2000, 1))" \
        -c "BEGIN" -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.sequin_upsert(recs('short', 2000, 2000, 1))" \
        -c "SELECT pg_current_xact_id_if_assigned() IS NULL" -c "COMMIT" | tr '\n' '|' | sed 's/|$//')"
tap_check shortcut.2 "... and the rows are those of the records" "2000 2000" \
    "$(cq -c "SELECT count(*) || ' ' || count(*) FILTER (WHERE n = substr(id, 2)::int + 100) FROM short")"

# Staging: a failed record stays with its error, the others apply; deferred mode too.
staged=$(cq 2>&1 <<'SQL'
SET client_min_messages = error;
INSERT INTO sequin.staging (record) VALUES
  ('{"collection_id": "dist", "id": "s1", "updated_idx": 1, "data": {"n": 13}}'),
  ('{"collection_id": "dist", "id": "s2", "updated_idx": 1, "data": {"n": 2}}'),
  ('{"collection_id": "ref", "id": "s1", "updated_idx": 1, "data": {"n": 13}}'),
  ('{"collection_id": "ref", "id": "s2", "updated_idx": 1, "data": {"n": 2}}');
SELECT string_agg(concat_ws(' ', record->>'collection_id', record->>'id', status, error LIKE '%violates check constraint%'), ', ' ORDER BY id) FROM sequin.staging;
SELECT (SELECT string_agg(id || n, ',' ORDER BY id) FROM dist WHERE id LIKE 's%') || ' ' || (SELECT string_agg(id || n, ',' ORDER BY id) FROM ref WHERE id LIKE 's%');
SQL
)
tap_check staging.1 "staging: the bad records stay failed with their error, the others apply" \
    "dist s1 failed t, ref s1 failed t
s22 s22" "$staged"
deferred() {
    cq -c "DELETE FROM sequin.staging" -c "SET sequin.apply_mode = deferred" \
        -c "INSERT INTO sequin.staging (record) SELECT r FROM jsonb_array_elements(recs('$1', 50, 25, 200, 9)) r" \
        -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped, failed) FROM sequin.apply_staging()"
}
tap_check staging.2 "deferred staging: apply_staging's counts" "$(deferred local_dist)" "$(deferred dist)"
tap_check staging.2.rows "deferred staging: rows" "$(rows local_dist)" "$(rows dist)"
stats() { cq -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.stats WHERE collection_id = '$1'"; }
for t in dist ref; do
    # $t had one more staged row applied, and the read-only replay of 100 records.
    tap_check "stats.$t" "sequin.stats of $t: what the calls returned (as for local_$t)" \
        "$(stats "local_$t")" "$(cq -c "SELECT concat_ws(' ', inserted - 1, updated, deleted, skipped - 100) FROM sequin.stats WHERE collection_id = '$t'")"
done

tap_check explain.1 "explain_mapping on Citus: the shard look-up, per-shard statements, upserts as INSERT ... VALUES, no MERGE" \
    "5 1 0" "$(cq -c "SELECT count(*) || ' ' || count(*) FILTER (WHERE sql LIKE 'INSERT INTO public.dist AS t (id, n, v) VALUES (\$1, \$2, \$3), ...%') || ' ' || count(*) FILTER (WHERE sql LIKE 'MERGE%') FROM sequin.explain_mapping('dist')")"

# Under other session settings (an adversary's probe): Citus writes values into the text it
# sends to the workers with the session's settings; the stored values, the version order and
# the shard of a date key must be those of a local table.
cq >/dev/null <<'SQL' || exit 1
CREATE TABLE set_local (day date, id text, ts timestamp, iv interval, f float8, fa float8[], tz timestamptz, u timestamp, ta text[], PRIMARY KEY (day, id));
CREATE TABLE set_dist (LIKE set_local INCLUDING ALL);
SELECT create_distributed_table('set_dist', 'day');
CREATE TABLE set_ref (LIKE set_local INCLUDING ALL);
SELECT create_reference_table('set_ref');
SELECT sequin.create_mapping(c, c, '{"day": "data.day", "id": "id", "ts": "data.ts", "iv": "data.iv", "f": "data.f", "fa": "data.fa", "tz": "data.tz", "u": "data.u", "ta": "data.ta"}', order_column => 'u')
FROM unnest('{set_local,set_dist,set_ref}'::text[]) c;
SQL
settings_call() { # json-object-without-collection
    cq -c "SET DateStyle = 'SQL, DMY'" -c "SET IntervalStyle = 'sql_standard'" -c "SET extra_float_digits = -10" -c "SET TimeZone = 'Pacific/Kiritimati'" \
        -c "SET standard_conforming_strings = off" -c "SET escape_string_warning = off" \
        -c "SELECT string_agg(concat_ws(' ', inserted, updated, deleted, skipped), ' / ') FROM unnest('{set_local,set_dist,set_ref}'::text[]) c, LATERAL sequin.sequin_upsert(jsonb_set('$1'::jsonb, '{collection_id}', to_jsonb(c)))"
}
stored() { cq -c "SET extra_float_digits = 3" -c "SELECT string_agg(concat_ws(' ', day, id, ts, iv, f, fa, tz, u, ta), ' | ' ORDER BY day, id) FROM $1"; }
tap_check settings.1 "DateStyle SQL, DMY, IntervalStyle sql_standard, extra_float_digits -10, standard_conforming_strings off, a key with a backslash: counts as on a local table" \
    "1 0 0 0 / 1 0 0 0 / 1 0 0 0" \
    "$(settings_call '{"id": "k\\\\", "data": {"day": "2024-05-01", "ts": "2024-05-01 13:14:15.123456", "iv": "-1 days +01:00:00", "f": 0.1234567890123, "fa": [1.2345678901234567, 2.5], "tz": "2024-05-01T10:00:00Z", "u": "2024-01-02 03:04:05", "ta": ["x\\\\y", "q\\\"r"]}}')"
tap_check settings.2 "... a newer version updates, an older one is skipped" "0 1 0 0 / 0 1 0 0 / 0 1 0 0,0 0 0 1 / 0 0 0 1 / 0 0 0 1" \
    "$(settings_call '{"id": "k\\\\", "data": {"day": "2024-05-01", "iv": "-1 days -02:03:04", "f": 0.30000000000000004, "u": "2024-02-01 00:00:00"}}'),$(settings_call '{"id": "k\\\\", "data": {"day": "2024-05-01", "f": 9, "u": "2024-01-03 00:00:00"}}')"
tap_check settings.3 "... and the distributed table stores what the local one does" "$(stored set_local)" "$(stored set_dist)"
tap_check settings.4 "... and so does the reference table" "$(stored set_local)" "$(stored set_ref)"
tap_check settings.5 "... in the shard of its key" "1" "$(cq -c "SELECT count(*) FROM set_dist WHERE day = '2024-05-01'")"

# Routing: each statement reaches the shards of its own keys only. Citus logs every command
# it sends (citus.log_remote_commands); the shards they name must be those of the call's keys.
shards_named() { # records-json
    cq -c "SET citus.log_remote_commands = on" -c "SET client_min_messages = notice" \
        -c "SELECT 1 FROM sequin.sequin_upsert('$1')" 2>&1 >/dev/null |
        grep -o 'public\.dist_[0-9]*' | sort -u | sed 's/public\.dist_//' | tr '\n' ' '
}
shards_of() { # comma-separated quoted keys
    cq -c "SELECT string_agg(DISTINCT get_shard_id_for_distribution_column('dist', k)::text, ' ') || ' ' FROM unnest(ARRAY[$1]) k"
}
one_shard_keys=$(cq -c "SELECT string_agg(quote_literal(k), ',') FROM (SELECT 'k' || i AS k FROM generate_series(0, 2999) i
    WHERE get_shard_id_for_distribution_column('dist', 'k' || i) = get_shard_id_for_distribution_column('dist', 'k0') LIMIT 6) s")
one_shard_json=$(cq -c "SELECT jsonb_agg(jsonb_build_object('collection_id', 'dist', 'id', k, 'updated_idx', 900 + n, 'deleted', n % 3 = 0, 'data', jsonb_build_object('n', n)))
    FROM unnest(ARRAY[$one_shard_keys]) WITH ORDINALITY AS u(k, n)")
tap_check route.1 "a call whose keys live in one shard reaches that shard only (look-up, upserts, deletes)" \
    "$(shards_of "$one_shard_keys")" "$(shards_named "$one_shard_json")"
spread_keys="'k1','k2','k3','k4','k5','k6','k7','k8','k9','k10','newa','newb'"
spread_json=$(cq -c "SELECT jsonb_agg(jsonb_build_object('collection_id', 'dist', 'id', k, 'updated_idx', 950 + n, 'deleted', n % 4 = 0, 'data', jsonb_build_object('n', n)))
    FROM unnest(ARRAY[$spread_keys]) WITH ORDINALITY AS u(k, n)")
tap_check route.2 "a call over several shards reaches exactly the shards of its keys" \
    "$(shards_of "$spread_keys")" "$(shards_named "$spread_json")"

# A delete racing an insert of the same key, each in its own transaction, on a shard: the
# workers cannot see each other's uncommitted rows, so the coordinator makes them take turns.
rec() { echo "{\"collection_id\": \"dist\", \"id\": \"$1\", \"updated_idx\": $2, $3}"; }
# held_then FIRST SECOND KEY: FIRST's call in a transaction held open 2 s, SECOND's call meanwhile;
# prints SECOND's counts and then whether KEY's row exists.
held_then() {
    cq -c "BEGIN" -c "SELECT 1 FROM sequin.sequin_upsert('$1')" -c "SELECT pg_sleep(2)" -c "COMMIT" >/dev/null &
    local held=$!
    sleep 0.7
    cq -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.sequin_upsert('$2')"
    wait $held
    cq -c "SELECT count(*) FROM dist WHERE id = '$3'"
}
tap_check race.0a "an insert held open, then a newer delete of its key: the delete waits, removes the row, and it stays removed" \
    "0 0 1 0
0" "$(held_then "$(rec race_a 1 '"data": {"n": 1}')" "$(rec race_a 5 '"deleted": true')" race_a)"
tap_check race.0b "a delete held open, then an older insert of its key: the insert waits and is skipped" \
    "0 0 0 1
0" "$(held_then "$(rec race_b 5 '"deleted": true')" "$(rec race_b 1 '"data": {"n": 1}')" race_b)"

# 4 concurrent clients on overlapping keys, with deletes: the end state is the serial outcome
# (per key the highest version sent; absent if it is a delete), no call fails, no deadlock.
cq >/dev/null <<'SQL' || exit 1
CREATE SEQUENCE race_seq;
CREATE TABLE race_sent (id text, v bigint, d boolean);
CREATE TABLE race (id text PRIMARY KEY, p text, v bigint);
SELECT create_distributed_table('race', 'id');
SELECT sequin.create_mapping('race', 'race', '{"id": "id", "p": "data.p", "v": "updated_idx"}', order_column => 'v');
SQL
cat >"$dir/race.pgbench" <<'SQL'
WITH r AS MATERIALIZED (
  SELECT 'k' || (1 + floor(random() * :nkeys))::int AS id, d,
         2 * (CASE WHEN random() < 0.1 THEN greatest(1, n - floor(random() * 100)::bigint) ELSE n END) + d::int AS v
  FROM (SELECT nextval('race_seq') AS n, random() < 0.2 AS d FROM generate_series(1, 16)) s
), sent AS (INSERT INTO race_sent SELECT id, v, d FROM r)
SELECT * FROM sequin.sequin_upsert((
  SELECT jsonb_agg(CASE WHEN d THEN jsonb_build_object('id', id, 'collection_id', 'race', 'updated_idx', v, 'deleted', true)
                   ELSE jsonb_build_object('id', id, 'collection_id', 'race', 'updated_idx', v, 'data', jsonb_build_object('p', 'p' || v)) END)
  FROM r));
SQL
deadlocks() { local sum=0 n; for port in "${ports[@]}"; do n=$(on "$port" -c "SELECT sum(deadlocks) FROM pg_stat_database"); sum=$((sum + n)); done; echo "$sum"; }
dl0=$(deadlocks)
bench_out=$("$SEQUIN_PGBIN/pgbench" -n -h "$dir" -p "$coordinator" -U postgres -c 4 -j 2 -T "${SEQUIN_CITUS_SECONDS:-8}" \
    --failures-detailed -D nkeys=30 -f "$dir/race.pgbench" postgres 2>&1)
sleep 1
dl1=$(deadlocks)
calls=$(echo "$bench_out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
failed=$(echo "$bench_out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
tps=$(echo "$bench_out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
echo "# pgbench on Citus, 4 clients, calls of 16 records over 30 keys, 20 % deletes: ${tps:-?} tps, ${calls:-0} calls, ${failed:-?} failed, deadlocks +$((dl1 - dl0))"
tap_ok "4 concurrent clients: every call ran (${calls:-0} calls)" test "${calls:-0}" -gt 0
tap_check race.1 "4 concurrent clients: no failed call" "0" "${failed:-missing}"
tap_check race.2 "4 concurrent clients: no deadlock on any node" "0" "$((dl1 - dl0))"
tap_check race.3 "4 concurrent clients: the table is the serial outcome (highest version per key; absent if a delete)" \
    "$(cq -c "SELECT coalesce(string_agg(id || ':p' || v || ':' || v, ',' ORDER BY id), '') FROM (SELECT DISTINCT ON (id) id, v, d FROM race_sent ORDER BY id, v DESC) s WHERE NOT d")" \
    "$(cq -c "SELECT coalesce(string_agg(id || ':' || p || ':' || v, ',' ORDER BY id), '') FROM race")"

# Child collections (issue 14): a distributed parent with a co-located child (distributed by
# the parent key, which its unique key includes, as Citus requires) and a reference-table
# child (a list of strings keyed by position), against the same mappings on local tables.
cq >/dev/null <<'SQL' || exit 1
CREATE FUNCTION child_setup(p text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (id text PRIMARY KEY, v bigint)', p || 'sub');
    EXECUTE format('CREATE TABLE %I (sub_id text, id text, qty int CHECK (qty >= 0), pos int, PRIMARY KEY (sub_id, id))', p || 'item');
    EXECUTE format('CREATE TABLE %I (sub_id text, pos int, tag text, PRIMARY KEY (sub_id, pos))', p || 'tag');
    PERFORM sequin.create_mapping(p || 'sub', (p || 'sub')::regclass, '{"id": "id", "v": "updated_idx"}', order_column => 'v');
    PERFORM sequin.create_mapping(collection_id => p || 'item', target_table => (p || 'item')::regclass,
        columns => '{"sub_id": "$parent.id", "id": "id", "qty": "qty", "pos": "$index"}', parent => p || 'sub',
        list_source => '"data.items.data"', parent_key_columns => '{sub_id}');
    PERFORM sequin.create_mapping(collection_id => p || 'tag', target_table => (p || 'tag')::regclass,
        columns => '{"sub_id": "$parent.id", "pos": "$index", "tag": "$element"}', parent => p || 'sub',
        list_source => '"data.tags"', parent_key_columns => '{sub_id}');
END $$;
CREATE TABLE csub (id text PRIMARY KEY, v bigint);
SELECT create_distributed_table('csub', 'id');
CREATE TABLE citem (sub_id text, id text, qty int CHECK (qty >= 0), pos int, PRIMARY KEY (sub_id, id));
SELECT create_distributed_table('citem', 'sub_id', colocate_with => 'csub');
CREATE TABLE ctag (sub_id text, pos int, tag text, PRIMARY KEY (sub_id, pos));
SELECT create_reference_table('ctag');
DROP TABLE csub, citem, ctag;
SELECT child_setup('c');
SELECT create_distributed_table('csub', 'id');
SELECT create_distributed_table('citem', 'sub_id', colocate_with => 'csub');
SELECT create_reference_table('ctag');
SELECT child_setup('l');
-- n subscriptions s0..s(n-1) at version v: items i0..i(k-1) of each (k = (s + v) % 4, so
-- lists grow and shrink), tags likewise; every del-th a delete, every stale-th one 10 older.
CREATE FUNCTION subs(p text, n int, v int, del int DEFAULT 0, stale int DEFAULT 0, bad int DEFAULT -1)
RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_agg(jsonb_build_object('collection_id', p || 'sub', 'id', 's' || s,
           'updated_idx', v - CASE WHEN stale > 0 AND s % stale = 0 THEN 10 ELSE 0 END,
           'deleted', del > 0 AND s % del = 0,
           'data', jsonb_build_object(
             'items', jsonb_build_object('has_more', false, 'data', coalesce((SELECT jsonb_agg(jsonb_build_object('id', 'i' || i,
                        'qty', CASE WHEN s = bad THEN -1 ELSE v + i END) ORDER BY i) FROM generate_series(0, (s + v) % 4 - 1) i), '[]')),
             'tags', coalesce((SELECT jsonb_agg('t' || v || '_' || i ORDER BY i) FROM generate_series(0, (s * 7 + v) % 3 - 1) i), '[]'))) ORDER BY s)
  FROM generate_series(0, n - 1) s $$;
SQL
child_rows() {
    cq -c "SELECT (SELECT count(*) || ' ' || coalesce(md5(string_agg(concat_ws(' ', id, v), ',' ORDER BY id)), '-') FROM ${1}sub)
             || ' | ' || (SELECT count(*) || ' ' || coalesce(md5(string_agg(concat_ws(' ', sub_id, id, qty, pos), ',' ORDER BY sub_id, id)), '-') FROM ${1}item)
             || ' | ' || (SELECT count(*) || ' ' || coalesce(md5(string_agg(concat_ws(' ', sub_id, pos, tag), ',' ORDER BY sub_id, pos)), '-') FROM ${1}tag)"
}
children_as_local() { # id desc args
    local got want
    got=$(cq -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.sequin_upsert(subs('c', $3))" 2>&1)
    want=$(cq -c "SELECT concat_ws(' ', inserted, updated, deleted, skipped) FROM sequin.sequin_upsert(subs('l', $3))" 2>&1)
    tap_check "$1" "children on Citus, $2: counts as on a local table" "$want" "$got"
    tap_check "$1r" "children on Citus, $2: parents and children as on a local table" "$(child_rows l)" "$(child_rows c)"
}
children_as_local ch.1 "fresh parents with their lists" "300, 1"
children_as_local ch.2 "newer versions: lists grow and shrink, every 7th deleted" "300, 2, 7"
children_as_local ch.3 "a replay" "300, 2, 7"
children_as_local ch.4 "newer versions, every 5th stale (touching no child)" "300, 5, 0, 5"
children_as_local ch.5 "deleted parents come back newer, two chunks" "1500, 9, 0, 0"
tap_ok "children on Citus: the co-located child and the reference child hold rows" \
    test "$(cq -c "SELECT (SELECT count(*) FROM citem) > 500 AND (SELECT count(*) FROM ctag) > 100")" = t
out=$(cq -c "SELECT * FROM sequin.sequin_upsert(subs('c', 20, 12, 0, 0, 3))" 2>&1)
tap_ok "children on Citus: a bad element fails its parent's call, named ($out)" \
    grep -qE 'ERROR:  record 3 \(id "s3", collection_id "csub"\): child collection "citem" element [0-9] \(id "i[0-9]"\): .*violates check constraint' <<<"$out"
tap_check ch.7 "children on Citus: nothing of the failed call stays" "$(child_rows l)" "$(child_rows c)"
# Children under 4 concurrent clients on Citus: overlapping parents, late versions, deletes;
# the end state is each parent's newest version with exactly its list.
cq >/dev/null <<'SQL' || exit 1
SELECT child_setup('r');
SELECT create_distributed_table('rsub', 'id');
SELECT create_distributed_table('ritem', 'sub_id', colocate_with => 'rsub');
SELECT create_reference_table('rtag');
CREATE SEQUENCE rseq;
CREATE TABLE rsent (sub text, v bigint, record jsonb);
CREATE FUNCTION rsend() RETURNS void LANGUAGE plpgsql AS $$
DECLARE batch jsonb := '[]'; r jsonb; p int; late int;
BEGIN
    FOR n IN 1..(1 + (random() * 2)::int) LOOP
        p := (random() * 7)::int;
        late := (random() < 0.2)::int;
        r := jsonb_build_object('collection_id', 'rsub', 'id', 's' || p,
               'updated_idx', (nextval('rseq') - late * 5) * 16 + late * 8 + p, 'deleted', random() < 0.1,
               'data', jsonb_build_object('items', jsonb_build_object('data', coalesce((SELECT jsonb_agg(jsonb_build_object('id', 'i' || i, 'qty', (random() * 9)::int))
                         FROM generate_series(1, 4) i WHERE random() < 0.5), '[]'))));
        batch := batch || r;
        INSERT INTO rsent VALUES (r->>'id', (r->>'updated_idx')::bigint, r);
    END LOOP;
    PERFORM sequin.sequin_upsert(batch);
END $$;
SQL
dl0=$(deadlocks)
bench_out=$("$SEQUIN_PGBIN/pgbench" -n -h "$dir" -p "$coordinator" -U postgres -c 4 -j 2 -T "${SEQUIN_CITUS_SECONDS:-8}" \
    --failures-detailed -f <(echo 'SELECT rsend();') postgres 2>&1)
sleep 1
dl1=$(deadlocks)
calls=$(echo "$bench_out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
failed=$(echo "$bench_out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
echo "# children on Citus, 4 clients over 8 parents: ${calls:-0} calls, ${failed:-?} failed, deadlocks +$((dl1 - dl0))"
tap_ok "children, 4 concurrent clients: calls ran (${calls:-0})" test "${calls:-0}" -gt 0
tap_check ch.race.1 "children, 4 concurrent clients: no failed call" "0" "${failed:-missing}"
tap_check ch.race.2 "children, 4 concurrent clients: no deadlock on any node" "0" "$((dl1 - dl0))"
tap_check ch.race.3 "children, 4 concurrent clients: each parent holds its newest version's list" \
    "$(cq -c "SELECT coalesce(string_agg(line, ' ' ORDER BY line), '') FROM (SELECT n.sub || '@' || n.v || ':' || coalesce((SELECT string_agg(i->>'id' || '/' || (i->>'qty'), ',' ORDER BY i->>'id')
              FROM jsonb_array_elements(n.record->'data'->'items'->'data') i), '') AS line
              FROM (SELECT DISTINCT ON (sub) sub, v, record FROM rsent ORDER BY sub, v DESC) n WHERE NOT (n.record->>'deleted')::boolean) x")" \
    "$(cq -c "SELECT coalesce(string_agg(line, ' ' ORDER BY line), '') FROM (SELECT s.id || '@' || s.v || ':' || coalesce((SELECT string_agg(i.id || '/' || i.qty, ',' ORDER BY i.id)
              FROM ritem i WHERE i.sub_id = s.id), '') AS line FROM rsub s) x")"
tap_check ch.race.4 "children, 4 concurrent clients: no item outlives its parent" "0" \
    "$(cq -c "SELECT count(*) FROM ritem i WHERE NOT EXISTS (SELECT FROM rsub s WHERE s.id = i.sub_id)")"
tap_done
