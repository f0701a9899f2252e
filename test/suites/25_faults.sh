#!/usr/bin/env bash
# kill -9 of the backend in the middle of a large sequin_upsert() call: after the server
# recovers, the target holds all or none of the call, and staged rows committed before are
# still there. (The staging COPY case is in 20_staging.sh.) Needs a cluster of our own.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
if ! cluster_is_ours; then
    echo "ok - skipped: the server is not a throwaway cluster of this run # SKIP"
    exit 0
fi
db=sequin_faults
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql_q -d $db >/dev/null <<'SQL'
CREATE EXTENSION sequin_upsert;
CREATE TABLE public.subs (id text PRIMARY KEY, quantity int, v bigint);
SELECT sequin.create_mapping('subs', 'public.subs', '{"id": "id", "quantity": "data.quantity", "v": "updated_idx"}',
                             order_column => 'v');
-- Committed before the crash: one failed staged record, which must survive.
INSERT INTO sequin.staging (record) VALUES ('{"id": "bad", "collection_id": "subs", "updated_idx": 1, "data": {"quantity": "x"}}');
SQL
for round in 1 2; do
    psql_q -d $db -c "SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(jsonb_build_object(
        'id', 'r$round-' || i, 'collection_id', 'subs', 'updated_idx', 1, 'data', jsonb_build_object('quantity', i % 100)))
        FROM generate_series(1, 400000) AS i))" >/dev/null 2>&1 &
    caller=$!
    pid=$(kill9_backend_running '%sequin_upsert((SELECT%' "0.$((round * 4))")
    wait "$caller"
    wait_recovered $db
    rows=$(psql_q -d $db -c "SELECT count(*) FROM public.subs WHERE id LIKE 'r$round-%'")
    tap_ok "round $round: sequin_upsert killed (backend ${pid:-none}) left all or none of its rows ($rows)" \
        test "$rows" = 0 -o "$rows" = 400000
done
tap_ok "the failed staged record committed before the crashes is still there" \
    test "$(psql_q -d $db -c "SELECT count(*) FROM sequin.staging WHERE status = 'failed'")" = 1
tap_ok "the server works after recovery" \
    test "$(psql_q -d $db -c "SELECT inserted FROM sequin.sequin_upsert('{\"id\": \"after\", \"collection_id\": \"subs\", \"updated_idx\": 1}')")" = 1
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE $db"
tap_done
