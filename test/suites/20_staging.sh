#!/usr/bin/env bash
# Staging at scale: a 100,000-record COPY with one bad record in a thousand, a retry after
# fixing the cause, two sessions draining the queue at once, and a backend killed (kill -9)
# in the middle of a large COPY.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_staging_suite
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql_q -d $db <<'SQL'
CREATE EXTENSION sequin_upsert;
CREATE TABLE public.subs (id text PRIMARY KEY, quantity int, v bigint);
SELECT sequin.create_mapping('subs', 'public.subs', '{"id": "id", "quantity": "data.quantity", "v": "updated_idx"}',
                             order_column => 'v');
SQL
# 100,000 records, one JSON per line; every 1000th has a quantity that is not an integer.
psql_q -d $db -c "\copy (SELECT jsonb_build_object('id', 's' || i, 'collection_id', 'subs', 'updated_idx', i,
    'data', jsonb_build_object('quantity', CASE WHEN i % 1000 = 0 THEN to_jsonb('many'::text) ELSE to_jsonb(i % 7) END))
    FROM generate_series(1, 100000) AS i) TO '$work/records.jsonl'"
copy_opts="WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
out=$(psql_q -d $db -c "\copy sequin.staging(record) FROM '$work/records.jsonl' $copy_opts" 2>&1)
tap_ok "COPY of 100,000 records into sequin.staging succeeds ($out)" test $? -eq 0
landed=$(psql_q -d $db -c "SELECT count(*) FROM public.subs")
tap_ok "all 99,900 good records landed ($landed)" test "$landed" = 99900
kept=$(psql_q -d $db -c "SELECT count(*) FROM sequin.staging WHERE status = 'failed' AND attempts = 1
                          AND error LIKE '%column \"quantity\": invalid input syntax for type integer: \"many\"'")
tap_ok "every bad record is kept with its error ($kept of 100)" test "$kept" = 100
total=$(psql_q -d $db -c "SELECT count(*) FROM sequin.staging")
tap_ok "nothing else stays in staging ($total rows)" test "$total" = 100
psql_q -d $db -c "ALTER TABLE public.subs ALTER COLUMN quantity TYPE text"
retry=$(psql_q -d $db -c "SELECT inserted || '/' || failed FROM sequin.apply_staging(retry_failed => true)")
tap_ok "a retry after fixing the cause applies them ($retry)" test "$retry" = "100/0"
tap_ok "staging is empty and the target complete" \
    test "$(psql_q -d $db -c "SELECT (SELECT count(*) FROM sequin.staging) || ':' || (SELECT count(*) FROM public.subs)")" = "0:100000"

# Two sessions drain a deferred queue at once: no row twice, none left behind.
psql_q -d $db -c "TRUNCATE public.subs" -c "SET sequin.apply_mode = deferred" \
    -c "INSERT INTO sequin.staging(record) SELECT jsonb_build_object('id', 'q' || i, 'collection_id', 'subs', 'updated_idx', 1) FROM generate_series(1, 20000) i"
for s in 1 2; do
    psql_q -d $db -c "SELECT inserted + updated + skipped + failed FROM sequin.apply_staging(max_rows => 20000)" >"$work/drain$s" 2>&1 &
done
wait
a=$(cat "$work/drain1"); b=$(cat "$work/drain2")
tap_ok "two concurrent apply_staging() calls applied each row once ($a + $b = 20000)" test $((a + b)) -eq 20000
tap_ok "both sessions did part of the work without waiting for each other" test "$a" -gt 0 -a "$b" -gt 0
tap_ok "queue drained, target complete" \
    test "$(psql_q -d $db -c "SELECT (SELECT count(*) FROM sequin.staging) || ':' || (SELECT count(*) FROM public.subs)")" = "0:20000"

# kill -9 of the backend in the middle of a large COPY: all or nothing after recovery.
if cluster_is_ours && [[ -n ${SEQUIN_PGDATA:-} ]]; then
    psql_q -d $db -c "TRUNCATE public.subs"
    psql_q -d $db -c "\copy (SELECT jsonb_build_object('id', 'k' || i, 'collection_id', 'subs', 'updated_idx', 1, 'data', jsonb_build_object('quantity', 'x'))
                         FROM generate_series(1, 600000) i) TO '$work/big.jsonl'"
    offset=$(server_log_size)
    psql_q -d $db -c "\copy sequin.staging(record) FROM '$work/big.jsonl' $copy_opts" >"$work/copy.out" 2>"$work/copy.err" &
    copier=$!
    pid=$(kill9_backend_running 'COPY%staging%' 1.5)
    rc=0
    wait "$copier" || rc=$?
    # The proof that the kill hit the COPY while it ran (else "0:0" below could mean the
    # COPY never ran at all).
    tap_ok "a backend running the COPY was found and killed -9 while still on it (pid ${pid:-none})" test -n "$pid"
    tap_ok "the COPY's client lost its connection (psql exit $rc: $(head -n 1 "$work/copy.err"))" \
        client_lost_connection "$rc" "$work/copy.err"
    tap_ok "the server recovered" wait_recovered $db
    tap_ok "the server log shows backend ${pid:-none} terminated by signal 9, then crash recovery" \
        server_log_shows_kill9 "$pid" "$offset"
    state=$(psql_q -d $db -c "SELECT (SELECT count(*) FROM sequin.staging) || ':' || (SELECT count(*) FROM public.subs)")
    tap_ok "killed COPY (backend ${pid:-none}): neither half-applied records nor half-staged rows ($state)" test "$state" = "0:0"
    psql_q -d $db -c "\copy sequin.staging(record) FROM '$work/records.jsonl' $copy_opts" >/dev/null
    tap_ok "after recovery the next COPY applies normally" \
        test "$(psql_q -d $db -c "SELECT count(*) FROM public.subs")" = 100000
fi
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE $db"
tap_done
