#!/usr/bin/env bash
# The client's view of errors: every failed call reaches `psql -v ON_ERROR_STOP=1` as an
# error (non-zero exit, SQLSTATE and message), never as a silent success. The first slice of
# issue 12's client-side suite: records that cannot even be grouped by collection.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"

db=sequin_client_errors
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" ||
    { echo "not ok - create database $db"; exit 1; }
psql_q -d "$db" -c 'CREATE EXTENSION sequin_upsert' >/dev/null

# call ARG SQLSTATE: psql exits non-zero and prints the SQLSTATE (VERBOSITY verbose).
check_error() { # description argument sqlstate
    local out rc
    out=$(psql -X -v ON_ERROR_STOP=1 -d "$db" -c '\set VERBOSITY verbose' \
        -c "SELECT * FROM sequin.sequin_upsert('$2')" -c "SELECT 'next command ran'" 2>&1)
    rc=$?
    tap_ok "$1: psql exits non-zero with SQLSTATE $3 and stops (exit $rc: $(head -1 <<<"$out"))" \
        bash -c '[[ $0 -ne 0 ]] && grep -q "ERROR:  $1:" <<<"$2" && ! grep -q "next command ran" <<<"$2"' \
        "$rc" "$3" "$out"
}
check_error "an array element that is not an object" '[1]' 22023
check_error "a record without collection_id" '{"id": "x"}' 23502
check_error "a null collection_id" '{"id": "x", "collection_id": null}' 23502
check_error "a numeric collection_id" '{"id": "x", "collection_id": 42}' 23502
check_error "an unknown collection" '{"id": "x", "collection_id": "nope"}' 42704
check_error "a scalar argument" '42' 22023

PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" || true
tap_done
