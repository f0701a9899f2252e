#!/usr/bin/env bash
# Smoke test: the installed extension can be created in a fresh database.
# Run by test/run with the cluster environment (PGHOST, PGPORT, ...) exported.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"

db=sequin_smoke
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" ||
    { echo "not ok - create database $db"; exit 1; }

tap_ok "CREATE EXTENSION sequin_upsert in a fresh database" \
    psql_q -d "$db" -c 'CREATE EXTENSION sequin_upsert'
tap_ok "the extension is installed in schema sequin" \
    test "$(psql_q -d "$db" -c "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'sequin_upsert'")" = sequin
tap_ok "DROP EXTENSION sequin_upsert" \
    psql_q -d "$db" -c 'DROP EXTENSION sequin_upsert'

psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" || true
tap_done
