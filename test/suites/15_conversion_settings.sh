#!/usr/bin/env bash
# Conversions do not depend on the session: the same records sent under other DateStyle,
# TimeZone, extra_float_digits and IntervalStyle store the same values (a timestamp without
# a zone is taken as written, AM/PM included; a float8[] stays exact). What does depend on
# the session is documented in the README and checked here: a timestamptz written without
# a zone is read in the session's TimeZone. And a LATIN1 database: mappings with non-ASCII
# column names and source keys work, values and messages keep their characters.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_conv_settings
latin=sequin_conv_latin1
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS $db" -c "DROP DATABASE IF EXISTS $latin" -c "CREATE DATABASE $db" ||
    { echo "not ok - create database $db"; exit 1; }
psql_q -d $db >/dev/null <<'SQL'
CREATE EXTENSION sequin_upsert;
CREATE TABLE public.conv (id text PRIMARY KEY, f float8, fa float8[], na numeric[], ts timestamp,
                          ts_pm timestamp, ts_zoned timestamp, tsa timestamp[], tstz timestamptz,
                          d date, iv interval, iv_neg interval, d_ambiguous date, v bigint);
SELECT sequin.create_mapping('conv', 'public.conv',
    '{"id": "id", "f": "data.f", "fa": "data.fa", "na": "data.na", "ts": "data.ts", "ts_pm": "data.ts_pm",
      "ts_zoned": "data.ts_zoned", "tsa": "data.tsa", "tstz": "data.tstz", "d": "data.d", "iv": "data.iv",
      "iv_neg": "data.iv_neg", "d_ambiguous": "data.d_ambiguous", "v": "updated_idx"}', order_column => 'v');
SQL
record='{"id": "ID", "collection_id": "conv", "updated_idx": 1, "data": {
    "f": 0.1234567890123456789, "fa": [0.1234567890123456789, 1e-320, 2.5e300], "na": [1.50, 2],
    "ts": "2024-05-01T14:00:00.123456", "ts_pm": "2024-05-01 02:00:00 PM",
    "ts_zoned": "2024-05-01 02:00:00 PM Europe/Berlin", "tsa": ["2024-05-01T14:00:00", "2024-12-31 11:59:59 PM"],
    "tstz": "2024-05-01T14:00:00+02:00", "d": "2024-05-01", "iv": "1 day 02:03:04.5",
    "iv_neg": "-1 1:00:00", "d_ambiguous": "05/01/2024"}}'
# Each value as text under fixed settings, to compare across sessions.
shown="SET extra_float_digits = 3; SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres';
SELECT concat_ws(' | ', f, fa, na, ts, ts_pm, ts_zoned, tsa, tstz, d, iv, iv_neg, d_ambiguous) FROM public.conv WHERE id = "
expected="0.12345678901234568 | {0.12345678901234568,1e-320,2.5e+300} | {1.50,2} | 2024-05-01 14:00:00.123456 | 2024-05-01 14:00:00 | 2024-05-01 12:00:00 | {\"2024-05-01 14:00:00\",\"2024-12-31 23:59:59\"} | 2024-05-01 12:00:00+00 | 2024-05-01 | 1 day 02:03:04.5 | -1 days +01:00:00 | 2024-05-01"
n=0
for settings in "extra_float_digits=3 DateStyle=ISO,MDY TimeZone=UTC IntervalStyle=postgres" \
    "extra_float_digits=0 DateStyle=SQL,DMY TimeZone=America/New_York IntervalStyle=sql_standard" \
    "extra_float_digits=-15 DateStyle=German TimeZone=Asia/Kolkata IntervalStyle=iso_8601" \
    "extra_float_digits=1 DateStyle=Postgres,YMD TimeZone=Pacific/Chatham IntervalStyle=postgres_verbose"; do
    n=$((n + 1))
    options=""
    for s in $settings; do options+=" -c ${s%%=*}=${s#*=}"; done
    PGOPTIONS="$options" psql_q -d $db -c "SELECT * FROM sequin.sequin_upsert('${record//ID/s$n}')" >/dev/null
    got=$(psql_q -d $db -c "$shown 's$n'" | tail -1)
    tap_ok "values stored under $settings are the same" test "$got" = "$expected"
    [[ $got == "$expected" ]] || printf '#   expected: %s\n#   got:      %s\n' "$expected" "$got"
done

# Documented: a timestamptz without a zone is read in the session's TimeZone, as PostgreSQL reads it.
PGOPTIONS="-c TimeZone=America/New_York" psql_q -d $db -c "SELECT * FROM sequin.sequin_upsert('{\"id\": \"tz\",
    \"collection_id\": \"conv\", \"updated_idx\": 1, \"data\": {\"tstz\": \"2024-05-01 14:00:00\"}}')" >/dev/null
tap_ok "a timestamptz without a zone is read in the session's TimeZone (14:00 in New York is 18:00 UTC)" \
    test "$(psql_q -d $db -c "SET TimeZone = 'UTC'" -c "SELECT tstz FROM public.conv WHERE id = 'tz'")" = "2024-05-01 18:00:00+00"

# A LATIN1 database: non-ASCII column names and keys.
if PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres \
    -c "CREATE DATABASE $latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" 2>/dev/null; then
    out=$(PGCLIENTENCODING=UTF8 psql_q -d $latin 2>&1 <<'SQL'
CREATE EXTENSION sequin_upsert;
CREATE TABLE public.people (id text PRIMARY KEY, "prénom" text, "âge" int, v bigint);
SELECT sequin.create_mapping('people', 'public.people',
    '{"id": "id", "prénom": "data.prénom", "âge": ["data", "âge"], "v": "updated_idx"}', order_column => 'v');
SELECT inserted FROM sequin.sequin_upsert('{"id": "p1", "collection_id": "people", "updated_idx": 1,
                                            "data": {"prénom": "Zoé", "âge": 7}}');
SELECT "prénom" || ' ' || "âge" FROM public.people;
SQL
)
    out=$(sed '/^$/d' <<<"$out") # create_mapping's void
    tap_ok "LATIN1: a mapping with the columns \"prénom\" and \"âge\" applies a record (got: $(tr '\n' ' ' <<<"$out"))" \
        test "$out" = $'1\nZoé 7'
    out=$(PGCLIENTENCODING=UTF8 psql -X -q -At -d $latin -c "SELECT sequin.create_mapping('bad', 'public.people', '{\"id\": \"id\", \"nöpe\": \"x\"}')" 2>&1)
    tap_ok "LATIN1: an unknown column is named in the error, characters intact (got: $out)" \
        grep -q 'column "nöpe" does not exist' <<<"$out"
    out=$(PGCLIENTENCODING=UTF8 psql -X -q -At -d $latin -c "SELECT * FROM sequin.sequin_upsert('{\"id\": \"p2\", \"collection_id\": \"people\", \"updated_idx\": 1, \"data\": {\"âge\": \"sept\"}}')" 2>&1)
    tap_ok "LATIN1: a bad value's error names the column (got: $out)" grep -q 'column "âge"' <<<"$out"
else
    echo "not ok - could not create a LATIN1 database"
fi

PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" \
    -c "DROP DATABASE IF EXISTS $latin" || true
tap_done
