#!/usr/bin/env bash
# Fuzz: thousands of random and mutated records and mappings thrown at the SQL interface
# (sequin.sequin_upsert, INSERT INTO sequin.mappings / sequin.create_mapping, UPDATE of a
# mapping, INSERT INTO sequin.staging and a user table with the staging trigger,
# sequin.apply_staging, sequin.explain_mapping): deep nesting, 1 MB strings, odd Unicode
# and escapes, numbers at every edge, wrong types for every field, duplicate object keys,
# 10,000-segment paths, weird column names and settings, targets of many column types,
# and a domain whose CHECK re-enters the extension. Each call must succeed or fail with a
# clean SQL error (never XX000/XX001/XX002), the counts of sequin_upsert must add up, an
# INSERT into sequin.staging must not fail for valid jsonb, and no backend may crash.
#
# Inputs come from test/fuzz/gen.py (deterministic per seed and case number); the runner
# test/fuzz/runner.sql executes them in the server, one exception block per call, and
# commits each outcome, so a crash points at its step.
#
# Knobs:
#   SEQUIN_FUZZ_SECONDS=20      time for generating and running cases (CI default);
#                               e.g. 300 for a long run
#   SEQUIN_FUZZ_SEED=1          seed (printed); "random" picks one
#   SEQUIN_FUZZ_MAX_CRASHES=10  stop fuzzing after this many backend crashes
#   SEQUIN_FUZZ_KEEP=1          keep the database sequin_fuzz (fuzz.log, fuzz.findings)
# Reproduce one case (after `python3 test/fuzz/gen.py --setup | psql` in a database with
# the extension):  python3 test/fuzz/gen.py --seed SEED --case N | psql
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
fuzz_dir=$(cd "$(dirname "$0")/../fuzz" && pwd)
db=sequin_fuzz
seconds=${SEQUIN_FUZZ_SECONDS:-20}
seed=${SEQUIN_FUZZ_SEED:-1}
[[ $seed == random ]] && seed=$(( $(date +%s%N) % 1000000 ))
max_crashes=${SEQUIN_FUZZ_MAX_CRASHES:-10}
batch=${SEQUIN_FUZZ_BATCH:-200} # cases per generated batch
min_calls=$((seconds * 100))    # "thousands" in the CI mode
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

work=$(mktemp -d)
chmod 755 "$work"
gen_pid=''
cleanup() {
    [[ -n $gen_pid ]] && kill "$gen_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
log_offset=0
if [[ -n ${SEQUIN_SERVER_LOG:-} && -f $SEQUIN_SERVER_LOG ]]; then
    log_offset=$(stat -c %s "$SEQUIN_SERVER_LOG")
fi
q() { psql_q -d "$db" -c "$1"; }

# The generator needs python3 (standard library only); installed with apt-get when missing.
if ! sequin_install_missing "command -v python3" python3; then
    echo "not ok - python3 is needed to generate the fuzz inputs"
    exit 1
fi

echo "# fuzz seed $seed, ${seconds}s (rerun: SEQUIN_FUZZ_SEED=$seed SEQUIN_FUZZ_SECONDS=$seconds bash test/run suites)"

setup_ok=1
psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" || setup_ok=0
if ((setup_ok)); then
    psql_q -d "$db" -c 'CREATE EXTENSION sequin_upsert' -f "$fuzz_dir/runner.sql" >/dev/null || setup_ok=0
fi
if ((setup_ok)); then
    python3 "$fuzz_dir/gen.py" --setup >"$work/setup.sql" && psql_q -d "$db" -f "$work/setup.sql" >/dev/null ||
        setup_ok=0
fi
tap_ok "fuzz database set up: targets of many column types, fixed mappings, runner" test $setup_ok -eq 1
((setup_ok)) || tap_done

start=$(now_ms)
end=$((start + seconds * 1000))
crashes=0
stopped=''

# Generates cases FIRST.. into $work/batch.FIRST.tsv in the background (gen_pid).
gen_batch() { # first
    python3 "$fuzz_dir/gen.py" --seed "$seed" --first "$1" --count "$batch" >"$work/batch.$1.tsv" &
    gen_pid=$!
}

sql_lit() { printf "'%s'" "${1//\'/\'\'}"; }

# Records a crash or a failed CALL at step $1 (the first step missing from fuzz.log); in
# fuzz.log its SQLSTATE is CRASH or RUNNER.
note_failure() { # seq problem message
    local state=RUNNER
    [[ $2 == "server crash" ]] && state=CRASH
    q "INSERT INTO fuzz.log (seq, case_id, step, kind, sqlstate, message)
         SELECT seq, case_id, step, kind, '$state', $(sql_lit "$3") FROM fuzz.steps WHERE seq = $1
       ON CONFLICT (seq) DO UPDATE SET sqlstate = '$state', message = EXCLUDED.message;
       INSERT INTO fuzz.findings (seq, case_id, step, kind, problem, message)
         SELECT seq, case_id, step, kind, $(sql_lit "$2"), $(sql_lit "$3")
         FROM fuzz.steps WHERE seq = $1" >/dev/null
}

# Runs the loaded steps in [from, to] until done or out of time; a crash (lost connection)
# or an error escaping the runner is noted at its step and the run goes on after it.
run_range() { # from to
    local from=$1 to=$2 remaining out rc last bad again
    while :; do
        remaining=$((end - $(now_ms)))
        ((remaining > 0)) || return 0
        out=$(PGOPTIONS="$PGOPTIONS -c statement_timeout=$((remaining + 60000))" \
            psql_q -d "$db" -c "CALL fuzz.run($from, $to, clock_timestamp() + interval '$remaining milliseconds')" 2>&1)
        rc=$?
        ((rc == 0)) && return 0
        if ! wait_ready 60; then
            stopped="the server did not come back after: $out"
            return 1
        fi
        last=$(q "SELECT coalesce(max(seq), -1) FROM fuzz.log WHERE seq BETWEEN $from AND $to")
        bad=$(q "SELECT min(seq) FROM fuzz.steps WHERE seq > greatest($last, $from - 1) AND seq <= $to")
        if [[ -z $bad ]]; then
            echo "# runner failed after the last step of its range: $out"
            return 0
        fi
        if ((rc == 2)); then # the connection was lost: the backend died
            crashes=$((crashes + 1))
            # Once more on its own, to tell whether it depends on earlier steps.
            again=no
            psql_q -d "$db" -c "CALL fuzz.run($bad, $bad, clock_timestamp() + interval '60 s')" >/dev/null 2>&1
            if (($? == 2)); then again=yes; fi
            wait_ready 60 || { stopped="the server did not come back after a crash"; return 1; }
            note_failure "$bad" "server crash" "the backend crashed (crashes again when run on its own: $again)"
            if ((crashes >= max_crashes)); then
                stopped="stopped after $crashes crashes (SEQUIN_FUZZ_MAX_CRASHES)"
                return 1
            fi
        else
            note_failure "$bad" "runner error (a hang or an error outside the exception block)" \
                "$(head -c 500 <<<"$out")"
        fi
        from=$((bad + 1))
    done
}

next_case=0
gen_batch 0
while [[ -z $stopped ]] && (($(now_ms) < end)); do
    first=$next_case
    if ! wait "$gen_pid"; then
        gen_pid=''
        stopped="the generator failed for cases $first.."
        break
    fi
    gen_pid=''
    if ! psql_q -d "$db" -c "\\copy fuzz.steps FROM '$work/batch.$first.tsv'"; then
        # Once more, after waiting for a server that may be restarting.
        if ! { wait_ready 60 && psql_q -d "$db" -c "\\copy fuzz.steps FROM '$work/batch.$first.tsv'"; }; then
            stopped="could not load cases $first.."
            break
        fi
    fi
    rm -f "$work/batch.$first.tsv"
    next_case=$((first + batch))
    # The next batch is generated while this one runs.
    gen_batch "$next_case"
    run_range $((first * 1000)) $((next_case * 1000 - 1)) || break
done
[[ -n $gen_pid ]] && { kill "$gen_pid" 2>/dev/null; wait "$gen_pid" 2>/dev/null; gen_pid=''; }
elapsed=$(( ($(now_ms) - start + 500) / 1000 ))
[[ -n $stopped ]] && echo "# $stopped"

alive=0
wait_ready 30 >/dev/null 2>&1 && q "SELECT 1" >/dev/null 2>&1 && alive=1

# ---- results ---------------------------------------------------------------------------
calls="kind NOT IN ('maint', 'set')"
read -r total succeeded cases < <(q "SELECT count(*), count(*) FILTER (WHERE sqlstate = '00000'),
                                            count(DISTINCT case_id) FROM fuzz.log WHERE $calls" | tr '|' ' ')
total=${total:-0} succeeded=${succeeded:-0} cases=${cases:-0}
by_state=$(q "SELECT coalesce(string_agg(sqlstate || ' ' || n, ', ' ORDER BY n DESC, sqlstate), 'none')
              FROM (SELECT sqlstate, count(*) AS n FROM fuzz.log WHERE $calls AND sqlstate <> '00000'
                    GROUP BY sqlstate) s")
tap_ok "fuzz: $total calls ($cases cases) in ${elapsed}s, seed $seed: $succeeded succeeded, $((total - succeeded)) failed by SQLSTATE: $by_state" \
    test "$total" -gt 0
q "SELECT '#   ' || kind || ': ' || sum(n) || ' calls, ' || coalesce(sum(n) FILTER (WHERE sqlstate = '00000'), 0) || ' ok'
          || coalesce(', ' || string_agg(sqlstate || ' ' || n, ', ' ORDER BY n DESC) FILTER (WHERE sqlstate <> '00000'), '')
   FROM (SELECT kind, sqlstate, count(*) AS n FROM fuzz.log GROUP BY kind, sqlstate) s
   GROUP BY kind ORDER BY kind"
q "SELECT '#   slowest: ' || string_agg(kind || ' case ' || case_id || ' step ' || step || ' ' || round(ms::numeric) || ' ms', ', ')
   FROM (SELECT * FROM fuzz.log WHERE ms IS NOT NULL ORDER BY ms DESC LIMIT 3) s HAVING count(*) > 0"

if [[ -n $stopped ]]; then
    echo "# (not checking the number of calls: $stopped)"
else
    tap_ok "at least $min_calls calls ran ($total)" test "$total" -ge "$min_calls"
fi

# Prints the findings whose problem matches $1 with what reproduces them.
show_findings() { # problem-pattern
    q "SELECT f.problem || ': case ' || f.case_id || ' step ' || f.step || ' (' || f.kind || ')'
              || coalesce(' SQLSTATE ' || f.sqlstate, '') || ': ' || left(coalesce(f.message, ''), 300)
              || E'\\n  SQL: ' || left(s.sql, 600) || CASE WHEN length(s.sql) > 600 THEN ' ...(' || length(s.sql) || ' chars)' ELSE '' END
       FROM fuzz.findings f JOIN fuzz.steps s USING (seq) WHERE f.problem LIKE '$1' ORDER BY f.seq LIMIT 20" |
        sed 's/^/# /'
}
internal=$(q "SELECT count(*) FROM fuzz.findings WHERE problem = 'internal error'")
tap_ok "no call failed with an internal error (XX000/XX001/XX002): $internal" test "$internal" = 0
((internal == 0)) || show_findings 'internal error'

counts=$(q "SELECT count(*) FROM fuzz.findings WHERE problem = 'counts do not add up'")
tap_ok "sequin_upsert: inserted + updated + deleted + skipped = number of records ($counts calls differ)" test "$counts" = 0
((counts == 0)) || show_findings 'counts do not add up'

# The INSERT itself must succeed whatever its records hold (a failing record stays in
# staging, marked); only the jsonb cast (bad JSON, \u0000, nesting beyond max_stack_depth)
# and a NULL record may fail it.
staging_ok="'00000', 'CRASH', 'RUNNER', '22P02', '22P05', '54001', '23502'"
staging_bad=$(q "SELECT count(*) FROM fuzz.log WHERE kind = 'staging' AND sqlstate NOT IN ($staging_ok)")
tap_ok "INSERT INTO sequin.staging of valid jsonb never failed ($staging_bad did)" test "$staging_bad" = 0
if ((staging_bad > 0)); then
    q "SELECT 'staging INSERT failed: case ' || l.case_id || ' step ' || l.step || ' SQLSTATE ' || l.sqlstate
              || ': ' || left(l.message, 300) || E'\\n  SQL: ' || left(s.sql, 600)
              || CASE WHEN length(s.sql) > 600 THEN ' ...(' || length(s.sql) || ' chars)' ELSE '' END
       FROM fuzz.log l JOIN fuzz.steps s USING (seq)
       WHERE l.kind = 'staging' AND l.sqlstate NOT IN ($staging_ok) ORDER BY l.seq LIMIT 10" | sed 's/^/# /'
fi

# The SQL the extension generates for a mapping must run: an error of that SQL itself (not of
# a record's values, not a problem the validation names) means a valid mapping was refused
# with a misleading message, or a mapping was accepted whose statements cannot run.
stmt_re="ON CONFLICT|but expression is of type|cannot cast type|syntax error at or near|there is no unique or exclusion constraint|could not identify an? (equality|ordering) operator"
stmt_kinds="'upsert', 'staging', 'inbox', 'apply', 'create_mapping', 'mapping_insert', 'mapping_update'"
# (Messages of the mapping validation, 'mapping "name": ...', name the problem themselves.)
stmt_re_sql="message ~ '$stmt_re' AND message !~ 'mapping \"[^\"]*\": '"
stmt_bad=$(q "SELECT count(*) FROM fuzz.log WHERE kind IN ($stmt_kinds) AND $stmt_re_sql")
tap_ok "the SQL generated for mappings runs ($stmt_bad calls failed inside it)" test "$stmt_bad" = 0
if ((stmt_bad > 0)); then
    q "SELECT 'generated SQL failed in ' || n || ' calls (first: case ' || c || '): ' || r
       FROM (SELECT regexp_replace(left(message, 300), '^[a-z ]+ [0-9]+ \\([^)]*\\): ', '') AS r,
                    count(*) AS n, min(case_id) AS c
             FROM fuzz.log WHERE kind IN ($stmt_kinds) AND $stmt_re_sql
             GROUP BY 1) s
       ORDER BY n DESC LIMIT 5" | sed 's/^/# /'
fi

runner_errors=$(q "SELECT count(*) FROM fuzz.findings WHERE problem LIKE 'runner error%'")
tap_ok "no call hung or broke the runner ($runner_errors)" test "$runner_errors" = 0
((runner_errors == 0)) || show_findings 'runner error%'

tap_ok "no backend crashed ($crashes crashes)" test "$crashes" = 0
((crashes == 0)) || show_findings 'server crash'
if ((crashes > 0 || internal > 0)); then
    echo "# reproduce a case: python3 test/fuzz/gen.py --setup | psql; python3 test/fuzz/gen.py --seed $seed --case N | psql"
fi

if [[ -n ${SEQUIN_SERVER_LOG:-} && -f $SEQUIN_SERVER_LOG ]]; then
    signals=$(tail -c +$((log_offset + 1)) "$SEQUIN_SERVER_LOG" | grep -a 'terminated by signal' || true)
    tap_ok "the server log shows no backend terminated by a signal ($(grep -c . <<<"$signals") lines)" test -z "$signals"
    [[ -z $signals ]] || head -n 5 <<<"$signals" | sed 's/^/#   /'
else
    echo "# (not our server: its log is not checked)"
fi
tap_ok "the server still answers" test $alive -eq 1

if [[ ${SEQUIN_FUZZ_KEEP:-0} != 1 ]]; then
    psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
else
    echo "# kept the database $db (fuzz.log, fuzz.findings, fuzz.steps)"
fi
tap_done
