#!/usr/bin/env bash
# kill -9 of the backend in the middle of a large sequin_upsert() call: after the server
# recovers, the target holds all or none of the call, and staged rows committed before are
# still there. (The staging COPY case is in 20_staging.sh.) Needs a cluster of our own.
# Each round proves that its kill happened while the call ran: the backend was found on
# the call and still on it at the kill, the caller lost its connection, the server log
# shows that backend terminated by signal 9 and the recovery, and nothing was committed.
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
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for round in 1 2; do
    offset=$(server_log_size)
    psql_q -d $db -c "SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(jsonb_build_object(
        'id', 'r$round-' || i, 'collection_id', 'subs', 'updated_idx', 1, 'data', jsonb_build_object('quantity', i % 100)))
        FROM generate_series(1, 400000) AS i))" >"$work/out$round" 2>"$work/err$round" &
    caller=$!
    # The call takes seconds: the kill comes well inside it, and only while it still runs.
    pid=$(kill9_backend_running '%sequin_upsert((SELECT%' "0.$((round * 4))")
    rc=0
    wait "$caller" || rc=$?
    tap_ok "round $round: a backend running the call was found and killed -9 while still on it (pid ${pid:-none})" \
        test -n "$pid"
    tap_ok "round $round: the caller lost its connection (psql exit $rc: $(head -n 1 "$work/err$round"))" \
        client_lost_connection "$rc" "$work/err$round"
    tap_ok "round $round: the server recovered" wait_recovered $db
    tap_ok "round $round: the server log shows backend ${pid:-none} terminated by signal 9, then crash recovery" \
        server_log_shows_kill9 "$pid" "$offset"
    rows=$(psql_q -d $db -c "SELECT count(*) FROM public.subs WHERE id LIKE 'r$round-%'")
    case $rows in
    0) which="none: rolled back" ;;
    400000) which="all: committed before the kill" ;;
    *) which="part of it" ;;
    esac
    tap_ok "round $round: after recovery the target holds all or none of the call's 400,000 rows ($which, $rows rows)" \
        test "$rows" = 0 -o "$rows" = 400000
    tap_ok "round $round: the kill came before the call committed (no result returned, none of its rows)" \
        test ! -s "$work/out$round" -a "$rows" = 0
done
tap_ok "the failed staged record committed before the crashes is still there" \
    test "$(psql_q -d $db -c "SELECT count(*) FROM sequin.staging WHERE status = 'failed'")" = 1
tap_ok "the server works after recovery" \
    test "$(psql_q -d $db -c "SELECT inserted FROM sequin.sequin_upsert('{\"id\": \"after\", \"collection_id\": \"subs\", \"updated_idx\": 1}')")" = 1
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE $db"
tap_done
