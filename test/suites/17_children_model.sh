#!/usr/bin/env bash
# Child collections, model-based (the SPEC's "Child collections: lists inside a record"):
# a parent p ('t:p', order column updated_idx), its list data.items.data in c ('t:c', key id,
# p_id = $parent.id, pos = $index) and each item's list "subs" in g ('t:g', c_id = $parent.id).
# Per seed, 30 parents get 1-7 versions each with random lists (absent, null, empty, partial
# with "has_more": true, full; each item with its own random subs list), some deletes; in a
# third of the seeds items move between parents. All records are shuffled, some replayed, and
# sent in random calls (arrays, single objects, a record twice in one array, small
# sequin.batch_size), through sequin.staging, or staged deferred and applied by
# sequin.apply_staging(). Afterwards p, c and g must equal the model (only the newest record of
# a key in a call, and only if newer than all before it, touches the children; see
# test/suites/lib/children_model.py), every call's counts must equal the model's (so
# inserted + updated + deleted + skipped = records sent), and a replay of all records skips
# them all. A failing run prints its seed, the rows that differ, the records of the parents
# concerned and a shrunk reproducer (SQL to paste after the printed set-up).
#
# Knobs:
#   SEQUIN_CHILDREN_SEEDS="1 2 ... 40"       the seeds (printed); "random" picks 40
#   SEQUIN_CHILDREN_MODE                     array|single|mixed|staging|deferred for every
#                                            seed (default: seed % 5 picks one)
#   SEQUIN_CHILDREN_MOVES=1|0                items move between parents in every/no seed
#   SEQUIN_CHILDREN_PARENTS=30               parents per seed
#   SEQUIN_CHILDREN_SHRINK=0                 do not shrink a failing case
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_children_model

# psycopg2 from Debian serves Debian's python3 (/usr/bin/python3), whatever else is on PATH.
py=/usr/bin/python3
if ! sequin_install_missing "$py -c 'import psycopg2'" python3 python3-psycopg2; then
    echo "not ok - python3-psycopg2 is needed to drive the model"
    exit 1
fi

cleanup() {
    PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
}
trap cleanup EXIT

setup_ok=1
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" || setup_ok=0
((setup_ok)) && { psql_q -d "$db" -c 'CREATE EXTENSION sequin_upsert' || setup_ok=0; }
tap_ok "children model: database $db set up" test $setup_ok -eq 1
((setup_ok)) || tap_done

SEQUIN_CHILDREN_DB=$db "$py" "$(dirname "$0")/lib/children_model.py"
rc=$?
tap_ok "children model: the driver found no failure (exit $rc)" test $rc -eq 0
tap_done
