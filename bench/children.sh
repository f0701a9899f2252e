#!/usr/bin/env bash
# `bash bench/run --children [--n N] [--batch B] [--runs R] [--methods A,D]
# [--phases fresh,update,replay] [--smoke] [--existing-server] [--db NAME] [--keep-db]`:
# child collections. N Stripe-shaped subscriptions, each carrying 3 items in
# data.items.data (has_more false), landed in a parent table and a child table; the SQL is
# bench/sql/children.sql. Phases, each from the tables the previous one left: fresh (all
# new), update (every subscription newer: status, period, every quantity changed, one item
# removed, one new), replay (the update again: all stale). Per phase, R runs
# (interleaved), each batch of B records one call and one transaction:
#   (A) the hand-written SQL per batch (bench.expert_children: guarded parent upsert
#       RETURNING the applied parents, delete of their items not in the new lists, upsert
#       of the new lists' items, one statement);
#   (D) sequin.sequin_upsert(batch) through a parent mapping and its child mapping.
# Prints records/s (N / median seconds) and the ratio (D) / (A) with its target, checks
# after every run that both left the same rows (row counts and md5 of the ordered rows of
# both tables, and what the phase must leave) and that (D) returned the expected counts,
# writes bench/results/children.md, and exits 1 if a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
}
die() {
    echo "bench --children: $*" >&2
    exit 2
}
args="$*"
n=100000 batch=1000 runs=3 methods=A,D phases=fresh,update,replay db=sequin_children existing=0 keep_db=0 smoke=0
positive() { [[ $2 =~ ^[0-9]+$ && $2 -gt 0 ]] || die "$1 needs a positive integer, got '$2'"; }
while (($#)); do
    case $1 in
    --n | --batch | --runs | --methods | --phases | --db)
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
        --n) positive "$1" "$2"; n=$2 ;;
        --batch) positive "$1" "$2"; batch=$2 ;;
        --runs) positive "$1" "$2"; runs=$2 ;;
        --methods)
            [[ $2 =~ ^(A|D|A,D|D,A)$ ]] || die "--methods: A, D or A,D, got '$2'"
            methods=$2 ;;
        --phases)
            [[ ,$2, =~ ^(,(fresh|update|replay))+,$ ]] || die "--phases: a list of fresh, update, replay, got '$2'"
            phases=$2 ;;
        --db)
            [[ $2 =~ ^[a-z_][a-z0-9_]*$ ]] || die "--db: use a plain lower-case name"
            db=$2 ;;
        esac
        shift 2 ;;
    --smoke) smoke=1; shift ;;
    --existing-server) existing=1; shift ;;
    --keep-db) keep_db=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (--n N, --batch B, --runs R, --methods A,D, --phases LIST, --smoke, --existing-server, --db NAME, --keep-db)" ;;
    esac
done
((smoke)) && { n=2000 batch=200 runs=1; }
given=("A" "D")
[[ $methods == *A* ]] || given=("D")
[[ $methods == *D* ]] || given=("A")
# The selected phases, in their order (the starting tables are built for all three).
measured=()
for phase in fresh update replay; do
    if [[ ,$phases, == *,$phase,* ]]; then measured+=("$phase"); fi
done

if ((existing)); then
    [[ -n ${PGHOST:-}${PGPORT:-}${PGDATABASE:-}${PGUSER:-}${PGSERVICE:-}${PGHOSTADDR:-} ]] ||
        die "--existing-server: no PG* variables point at a server"
else
    ensure_deps
fi
[[ ${SEQUIN_BENCH_NO_BUILD:-0} == 1 ]] || build_and_install
start_cluster
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
psql -X -q -At -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
if [[ ${SEQUIN_CLUSTER_OWNED:-0} != 1 && $keep_db == 0 ]]; then
    # On a server we did not start, the database goes when we are done.
    # shellcheck disable=SC2317 # called by the trap
    drop_db() { psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; }
    trap 'drop_db' EXIT
fi
q -f bench/sql/children.sql >/dev/null

so=$("$PG_CONFIG" --pkglibdir)/sequin_upsert.so
so_built=$(date -r "$so" '+%Y-%m-%d %H:%M:%S' 2>/dev/null || echo unknown)
load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "[bench] children: N=$n subscriptions (3 items each), B=$batch, $runs run(s), methods ${given[*]}; $(q -c "SELECT 'sequin_upsert ' || extversion FROM pg_extension WHERE extname = 'sequin_upsert'"), library built $so_built" >&2

t0=$(date +%s)
q -c "SELECT bench.children_generate($n, $batch)" >/dev/null
# The starting tables and the reference contents of every phase, from (A), untimed; (A)'s
# tables are also checked against what each phase must leave (bench.children_expected).
declare -A ref
status=0
for phase in fresh update replay; do
    [[ $phase == fresh ]] && q -c "SELECT bench.children_reset('A', 'fresh')" >/dev/null
    [[ $phase == fresh ]] || q -c "SELECT bench.children_save('$phase')" >/dev/null
    q -c "CALL bench.children_run('A', '$phase')" >/dev/null
    ok=$(q -c "SELECT bench.children_expected('$phase', $n)")
    if [[ $ok != ok ]]; then
        echo "[bench] children, $phase: the hand-written SQL (A) did not leave what the phase must leave" >&2
        status=1
    fi
    ref[$phase]=$(q -c "SELECT bench.children_contents('A')")
done
[[ " ${given[*]} " == *" D "* ]] && q -c "SELECT bench.children_map()" >/dev/null
echo "[bench] data and starting tables ready in $(($(date +%s) - t0))s" >&2

declare -A expected_counts=(
    [fresh]="inserted=$n updated=0 deleted=0 skipped=0"
    [update]="inserted=0 updated=$n deleted=0 skipped=0"
    [replay]="inserted=0 updated=0 deleted=0 skipped=$n")
declare -A target=([fresh]=1.25 [update]=1.25 [replay]=2.5)
declare -A times checks
failures=()
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# One run of a method on a phase, from the phase's starting tables: seconds, counts and
# contents, on three lines.
run_once() { # method phase
    q <<SQL
SET sequin.batch_size = $batch;
SELECT bench.children_reset('$1', '$2') \g /dev/null
VACUUM (ANALYZE) bench.subscriptions, bench.subscription_items, bench.hand_subscriptions, bench.hand_subscription_items;
CHECKPOINT;
CALL bench.children_run('$1', '$2') \gset
\echo SECONDS :seconds
\echo COUNTS :counts
SELECT 'CONTENTS ' || bench.children_contents('$1');
SQL
}

for phase in "${measured[@]}"; do
    for ((r = 1; r <= runs; r++)); do
        for m in "${given[@]}"; do
            out=$(run_once "$m" "$phase") || { echo "[bench] children, $phase / ($m) run $r failed" >&2; exit 1; }
            sec=$(sed -n 's/^SECONDS //p' <<<"$out")
            counts=$(sed -n 's/^COUNTS //p' <<<"$out")
            contents=$(sed -n 's/^CONTENTS //p' <<<"$out")
            times[$phase,$m]="${times[$phase,$m]:-} $sec"
            verdict=ok
            if [[ $contents != "${ref[$phase]}" ]]; then
                verdict=MISMATCH
                checks[$phase,$m]=MISMATCH
                failures+=("$phase / ($m) run $r: contents $contents, (A)'s reference ${ref[$phase]}")
                [[ $m == D ]] && failures+=("$(q -c "SELECT bench.children_diff()")")
            fi
            if [[ $m == D && $counts != "${expected_counts[$phase]}" ]]; then
                verdict+=", COUNTS MISMATCH"
                checks[$phase,$m]=MISMATCH
                failures+=("$phase / (D) run $r: sequin_upsert returned $counts, expected ${expected_counts[$phase]}")
            fi
            echo "[bench] $phase / ($m) run $r: ${sec}s, contents $verdict${counts:+ ($counts)}" >&2
        done
    done
done

report=bench/results/children.md
mkdir -p bench/results
{
    echo "## sequin_upsert benchmark: child collections"
    echo
    echo "N = $n subscriptions with 3 items each (data.items.data), B = $batch records per call (one transaction each), median of $runs run(s);"
    echo "PostgreSQL $(q -c 'SHOW server_version'), $(q -c "SELECT 'sequin_upsert ' || extversion FROM pg_extension WHERE extname = 'sequin_upsert'"), library built $so_built, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)."
    echo "Command: \`bash bench/run --children${args:+ $args}\`. Load average at the start: $load."
    echo "(A) is the hand-written SQL per batch (bench.expert_children in bench/sql/children.sql), (D) sequin.sequin_upsert."
    echo
    echo "| phase | (A) median s | (A) records/s | (D) median s | (D) records/s | (D) / (A) | target | contents (parents, items) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
} >"$report"
printf '\n%-8s | %12s | %13s | %12s | %13s | %15s | %6s | %s\n' phase "(A) median s" "(A) records/s" \
    "(D) median s" "(D) records/s" "(D) / (A)" target "contents: parents rows md5, items rows md5"
for phase in "${measured[@]}"; do
    declare -A med=() rps=() exact=()
    for m in A D; do
        med[$m]=- rps[$m]=-
        [[ -n ${times[$phase,$m]:-} ]] || continue
        read -ra ts <<<"${times[$phase,$m]}"
        exact[$m]=$(median "${ts[@]}")
        med[$m]=$(awk -v s="${exact[$m]}" 'BEGIN { printf "%.3f", s }')
        rps[$m]=$(awk -v n="$n" -v s="${exact[$m]}" 'BEGIN { printf "%.0f", n / s }')
    done
    ratio=-
    if [[ ${med[A]} != - && ${med[D]} != - ]]; then
        ratio=$(awk -v a="${exact[A]}" -v d="${exact[D]}" 'BEGIN { printf "%.2f", a / d }')
        met=$(awk -v r="$ratio" -v t="${target[$phase]}" 'BEGIN { print (r >= t) ? "met" : "NOT met" }')
        ratio+=" ($met)"
    fi
    check="identical: ${ref[$phase]}"
    [[ ${checks[$phase,A]:-}${checks[$phase,D]:-} == "" ]] || check="MISMATCH (see below); (A)'s reference: ${ref[$phase]}"
    printf '%-8s | %12s | %13s | %12s | %13s | %15s | %6s | %s\n' "$phase" "${med[A]}" "${rps[A]}" \
        "${med[D]}" "${rps[D]}" "$ratio" "≥ ${target[$phase]}" "$check"
    echo "| $phase | ${med[A]} | ${rps[A]} | ${med[D]} | ${rps[D]} | $ratio | ≥ ${target[$phase]} | $check |" >>"$report"
done
now_built=$(date -r "$so" '+%Y-%m-%d %H:%M:%S' 2>/dev/null || echo unknown)
if [[ $now_built != "$so_built" ]]; then
    echo "WARNING: $so changed during the run ($so_built -> $now_built): the figures mix two builds." | tee -a "$report"
fi
if ((${#failures[@]})); then
    status=1
    { echo; echo "FAILURES:"; printf -- '- %s\n' "${failures[@]}"; } | tee -a "$report"
fi
if ((status)); then
    echo "bench --children: CHECK FAILED" >&2
else
    if [[ " ${given[*]} " == *" D "* ]]; then
        echo "check: after every run of every phase, (D) left the same tables as (A) (row counts and md5 of the ordered rows), and returned the expected counts"
    else
        echo "check: after every run of every phase, (A) left its reference tables (row counts and md5 of the ordered rows)"
    fi
fi
echo "written to $report"
exit $status
