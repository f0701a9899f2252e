#!/usr/bin/env bash
# The client's view of errors: every failed call reaches `psql -v ON_ERROR_STOP=1` as an
# error (non-zero exit, SQLSTATE and message), never as a silent success, and reaches a real
# driver (psycopg2 from Debian, installed when missing) with its pgcode and a message that is
# valid UTF-8. Issue 12's client-side suite: records that cannot be grouped, bad values,
# the target's constraints, privileges, nesting without end, long non-ASCII messages.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"

db=sequin_client_errors
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" ||
    { echo "not ok - create database $db"; exit 1; }
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION sequin_upsert;
CREATE TABLE public.subs (id text PRIMARY KEY, qty int CHECK (qty >= 0), note text, v bigint);
SELECT sequin.create_mapping('subs', 'public.subs',
    '{"id": "id", "qty": "data.qty", "note": "data.note", "v": "updated_idx"}', order_column => 'v');
CREATE TABLE public.secret (id text PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('secret', 'public.secret', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
CREATE ROLE sequin_client_nobody;
GRANT USAGE ON SCHEMA sequin TO sequin_client_nobody;
CREATE TABLE public.nest (id int PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('nest', 'public.nest', '{"id": "data.id", "v": "updated_idx"}', order_column => 'v');
CREATE FUNCTION public.nest_again() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sequin.sequin_upsert(jsonb_build_object('id', 'n', 'collection_id', 'nest', 'updated_idx', 1,
                                                    'data', jsonb_build_object('id', NEW.id + 1)));
    RETURN NEW;
END $$;
CREATE TRIGGER nest_again BEFORE INSERT ON public.nest FOR EACH ROW EXECUTE FUNCTION public.nest_again();
-- A message longer than the server's error buffer, of two-byte characters.
CREATE FUNCTION public.long_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = repeat('é', 3000);
END $$;
CREATE TABLE public.loud (id text PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('loud', 'public.loud', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
CREATE TRIGGER loud BEFORE INSERT ON public.loud FOR EACH ROW EXECUTE FUNCTION public.long_message();
SQL

# call ARG SQLSTATE: psql exits non-zero and prints the SQLSTATE (VERBOSITY verbose).
check_error() { # description argument sqlstate [role]
    local out rc
    out=$(PGOPTIONS="${4:+-c role=$4}" psql -X -v ON_ERROR_STOP=1 -d "$db" -c '\set VERBOSITY verbose' \
        -c "SELECT * FROM sequin.sequin_upsert('$2')" -c "SELECT 'next command ran'" 2>&1)
    rc=$?
    tap_ok "$1: psql exits non-zero with SQLSTATE $3 and stops (exit $rc: $(head -1 <<<"$out" | cut -c1-110))" \
        bash -c '[[ $0 -ne 0 ]] && grep -q "ERROR:  $1:" <<<"$2" && ! grep -q "next command ran" <<<"$2"' \
        "$rc" "$3" "$out"
}
check_error "an array element that is not an object" '[1]' 22023
check_error "a record without collection_id" '{"id": "x"}' 23502
check_error "a null collection_id" '{"id": "x", "collection_id": null}' 23502
check_error "a numeric collection_id" '{"id": "x", "collection_id": 42}' 23502
check_error "an unknown collection" '{"id": "x", "collection_id": "nope"}' 42704
check_error "a scalar argument" '42' 22023
check_error "a value that is not an integer" '{"id": "a", "collection_id": "subs", "updated_idx": 1, "data": {"qty": "many"}}' 22P02
check_error "a record without its key" '{"collection_id": "subs", "updated_idx": 1}' 23502
check_error "the target's CHECK constraint" '{"id": "a", "collection_id": "subs", "updated_idx": 1, "data": {"qty": -1}}' 23514
check_error "no privilege on the target" '{"id": "a", "collection_id": "secret", "updated_idx": 1}' 42501 sequin_client_nobody
check_error "a call nested without end (from a trigger of the target)" '{"id": "n", "collection_id": "nest", "updated_idx": 1, "data": {"id": 1}}' 54001
check_error "a message longer than the error buffer" '{"id": "a", "collection_id": "loud", "updated_idx": 1}' 22023

# The same through a real driver: psycopg2 sees the pgcode and a UTF-8 message. Debian's
# package serves Debian's python3 (/usr/bin/python3), whatever else is first on PATH.
py=/usr/bin/python3
if sequin_install_missing "$py -c 'import psycopg2'" python3 python3-psycopg2; then
    SEQUIN_CLIENT_DB=$db $py - <<'PY'
import os, psycopg2
cases = [
    ("an array element that is not an object", "[1]", "22023", None),
    ("a record without collection_id", '{"id": "x"}', "23502", None),
    ("an unknown collection", '{"id": "x", "collection_id": "nope"}', "42704", None),
    ("a value that is not an integer",
     '{"id": "a", "collection_id": "subs", "updated_idx": 1, "data": {"qty": "many"}}', "22P02", None),
    ("the target's CHECK constraint",
     '{"id": "a", "collection_id": "subs", "updated_idx": 1, "data": {"qty": -1}}', "23514", None),
    ("no privilege on the target", '{"id": "a", "collection_id": "secret", "updated_idx": 1}', "42501",
     "sequin_client_nobody"),
    ("a call nested without end", '{"id": "n", "collection_id": "nest", "updated_idx": 1, "data": {"id": 1}}',
     "54001", None),
    ("a message longer than the error buffer", '{"id": "a", "collection_id": "loud", "updated_idx": 1}',
     "22023", None),
]
conn = psycopg2.connect(dbname=os.environ["SEQUIN_CLIENT_DB"])
conn.set_client_encoding("UTF8")
for label, record, code, role in cases:
    cur = conn.cursor()
    if role:
        cur.execute("SET ROLE " + role)
    try:
        cur.execute("SELECT * FROM sequin.sequin_upsert(%s)", (record,))
        print("not ok - psycopg2: %s raises %s (the call succeeded)" % (label, code))
    except psycopg2.Error as e:
        message = e.pgerror or ""
        ok = e.pgcode == code and "ERROR:" in message and message.encode("utf-8").decode("utf-8")
        print("%s - psycopg2: %s raises pgcode %s with its message (got %s: %s)"
              % ("ok" if ok else "not ok", label, code, e.pgcode, message.splitlines()[0][:90] if message else "no message"))
    conn.rollback()
conn.close()
PY
else
    echo "not ok - psycopg2 could not be installed"
fi

PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" \
    -c "DROP ROLE IF EXISTS sequin_client_nobody" || true
tap_done
