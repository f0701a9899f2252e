#!/usr/bin/env bash
# `bash bench/run --citus [--n N] [--batch B] [--runs R]`: sequin_upsert on a Citus
# distributed table against the hand-written INSERT ... SELECT ... ON CONFLICT ... WHERE per
# batch on the same kind of table (issue 13). A throwaway Citus cluster (a coordinator and 2
# workers, test/lib/citus_cluster.sh); N records of the SPEC's running example, each batch
# of B records one statement in its own transaction, as a sync sends them; a fresh load,
# then an update of every key (newer versions); each the median of R runs; with Citus's
# default settings, and again with citus.max_cached_conns_per_worker = 32 for both methods.
# Prints records/s and the ratio, checks that both methods leave the same rows, and writes
# bench/results/citus.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh
# shellcheck source=test/lib/citus_cluster.sh
source test/lib/citus_cluster.sh

n=50000 batch=1000 runs=3
while (($#)); do
    case $1 in
    --n) n=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "bench --citus: unknown option $1 (--n N, --batch B, --runs R)" >&2; exit 2 ;;
    esac
done
ensure_deps
[[ ${SEQUIN_BENCH_NO_BUILD:-0} == 1 ]] || build_and_install
missing=$(citus_missing)
[[ -z $missing ]] || { echo "bench --citus: $missing" >&2; exit 1; }
export PATH="$SEQUIN_PGBIN:$PATH"
start_citus_cluster
echo "[bench] Citus $CITUS_VERSION, coordinator on ${CITUS_PORTS[0]}, workers on ${CITUS_PORTS[1]} and ${CITUS_PORTS[2]}"
cq >/dev/null <<SQL
CREATE EXTENSION sequin_upsert;
CREATE SCHEMA stripe;
CREATE TABLE batches (b int PRIMARY KEY, recs jsonb);
-- The running example: text, integers, a bigint version, timestamps, a keep_on_conflict
-- column, a \$now column.
CREATE FUNCTION make_batches(version int) RETURNS void LANGUAGE sql AS \$\$
  DELETE FROM batches;
  INSERT INTO batches
  SELECT i / $batch, jsonb_agg(jsonb_build_object('collection_id', 'stripe:subscription', 'id', 'sub_' || i,
           'upstream_id', 'up_' || i, 'updated_idx', version,
           'upstream_created_at', '2024-01-01T00:00:00Z', 'upstream_updated_at', '2024-05-01T12:00:00+02:00',
           'data', jsonb_build_object('stripe_customer_id', 'cus_' || (i % 997), 'plan_id', 'plan_' || (i % 7),
                                      'quantity', i % 50)) ORDER BY i)
  FROM generate_series(0, $n - 1) i GROUP BY i / $batch;
\$\$;
CREATE FUNCTION hand_written(batch jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO stripe.hand AS t (id, upstream_id, customer_id, plan_id, quantity, updated_idx,
                                upstream_created_at, upstream_updated_at, updated_at)
  SELECT r->>'id', r->>'upstream_id', r->'data'->>'stripe_customer_id', r->'data'->>'plan_id',
         (r->'data'->>'quantity')::int, (r->>'updated_idx')::bigint,
         (r->>'upstream_created_at')::timestamptz, (r->>'upstream_updated_at')::timestamptz, now()
  FROM jsonb_array_elements(batch) AS r
  ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, plan_id = EXCLUDED.plan_id,
    quantity = EXCLUDED.quantity, updated_idx = EXCLUDED.updated_idx,
    upstream_created_at = EXCLUDED.upstream_created_at,
    upstream_updated_at = EXCLUDED.upstream_updated_at, updated_at = EXCLUDED.updated_at
  WHERE t.updated_idx < EXCLUDED.updated_idx;
END \$\$;
SQL
make_tables() {
    cq >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS stripe.subscriptions, stripe.hand;
DELETE FROM sequin.mappings;
CREATE TABLE stripe.subscriptions (id text PRIMARY KEY, upstream_id text, customer_id text, plan_id text,
    quantity int, updated_idx bigint, upstream_created_at timestamptz, upstream_updated_at timestamptz,
    updated_at timestamptz);
CREATE TABLE stripe.hand (LIKE stripe.subscriptions INCLUDING ALL);
SELECT create_distributed_table('stripe.subscriptions', 'id');
SELECT create_distributed_table('stripe.hand', 'id');
SELECT sequin.create_mapping('stripe:subscription', 'stripe.subscriptions',
    '{"id": "id", "upstream_id": "upstream_id", "customer_id": "data.stripe_customer_id",
      "plan_id": "data.plan_id", "quantity": "data.quantity", "updated_idx": "updated_idx",
      "upstream_created_at": "upstream_created_at", "upstream_updated_at": "upstream_updated_at",
      "updated_at": "$now"}',
    keep_on_conflict => '{upstream_id}', order_column => 'updated_idx');
SQL
}
batches=$(((n + batch - 1) / batch))
# One statement per batch, each its own transaction, in one session: seconds taken.
timed() { # function [PGOPTIONS]
    local script start
    script=$(for ((b = 0; b < batches; b++)); do echo "SELECT 1 FROM $1((SELECT recs FROM batches WHERE b = $b));"; done)
    start=$(date +%s%N)
    PGOPTIONS=${2:-} cq <<<"$script" >/dev/null
    awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
contents() { cq -c "SELECT count(*) || ' ' || md5(string_agg(concat_ws(' ', id, customer_id, plan_id, quantity, updated_idx, upstream_created_at, upstream_updated_at), ',' ORDER BY id)) FROM $1"; }

report=bench/results/citus.md
{
    echo "## sequin_upsert on Citus"
    echo
    echo "N = $n records, B = $batch records per batch (one statement and transaction each), median of $runs run(s);"
    echo "Citus $CITUS_VERSION, a coordinator and 2 workers on one machine ($(nproc) CPUs), 32 shards, $(date -u +%Y-%m-%dT%H:%MZ)."
    echo "(H) is the hand-written \`INSERT ... SELECT ... FROM jsonb_array_elements(\$1) ON CONFLICT ... WHERE\` per batch."
    echo
    echo "| settings | scenario | (H) records/s | (D) sequin_upsert records/s | (D) / (H) |"
    echo "|---|---|---:|---:|---:|"
} >"$report"
status=0
for setting in "" "-c citus.max_cached_conns_per_worker=32"; do
    label=${setting:-"Citus defaults"}
    label=${label#-c }
    for scenario in fresh update; do
        hand=() ours=()
        for ((r = 0; r < runs; r++)); do
            make_tables
            cq -c "SELECT make_batches(1)" >/dev/null
            if [[ $scenario == update ]]; then # the keys stored first, not timed
                timed hand_written "$setting" >/dev/null
                timed sequin.sequin_upsert "$setting" >/dev/null
                cq -c "SELECT make_batches(2)" >/dev/null
            fi
            hand+=("$(timed hand_written "$setting")")
            ours+=("$(timed sequin.sequin_upsert "$setting")")
        done
        echo "[bench] $label, $scenario: (H) ${hand[*]} s, (D) ${ours[*]} s"
        d=$(contents stripe.subscriptions)
        h=$(contents stripe.hand)
        if [[ $d != "$h" ]]; then
            echo "[bench] $label, $scenario: the two methods left different rows ($d / $h)"
            status=1
        fi
        awk -v n="$n" -v h="$(median "${hand[@]}")" -v d="$(median "${ours[@]}")" -v l="$label" -v s="$scenario" \
            'BEGIN { printf "| %s | %s | %.0f | %.0f | %.2f |\n", l, s, n / h, n / d, h / d }' | tee -a "$report"
    done
done
echo "written to $report"
exit $status
