#!/usr/bin/env bash
# A delete is final, whatever the session's settings (SPEC: "A delete is final"): tombstone
# keys are equal exactly when the target's unique index says so, and versions compare by the
# order column's own type, whatever DateStyle, TimeZone, extra_float_digits, IntervalStyle,
# lc_* or the database's collation were when the delete was written or are when a late record
# arrives.
#
# 1. A matrix: for each pair of session settings (the delete's session, the late record's
#    session) and each key type x order type, the three ordinary paths, each in sessions of
#    its own:
#      S  a stored row is newer than a late record (and than a replay);
#      D  a stored row is deleted; an older record and a replay are skipped, a newer one inserts;
#      G  a delete of an absent row leaves a tombstone: it blocks an older record and a replay,
#         not a newer one.
#    Also in a database whose default collation is ICU's en-US. (lc_monetary, lc_numeric and
#    lc_time change between C and C.utf8 only: Debian's minimal images have no other OS
#    locale, so collations come from ICU; a money order column is in the matrix all the same.)
# 2. The cases reported in issue 11 one by one: numeric scale, time zones, DateStyle,
#    nondeterministic collations, interval, float digits, duplicates of one key in one call
#    written in different forms, and an order column retyped after tombstones were written.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_tomb_settings
icudb=sequin_tomb_settings_icu

# ---------------------------------------------------------------------------------------------
# Check ids: m:<delete's settings>-<late settings>:<config>:<S|D|G>, icu:... for the ICU
# database, e:... for the cases one by one.
check() { tap_check "$@"; }

# ---------------------------------------------------------------------------------------------
# Session settings. The delete runs under one, the late record under another.
declare -A SETTINGS=(
    [base]="SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; SET extra_float_digits = 1; SET IntervalStyle = 'postgres'; SET lc_monetary = 'C'; SET lc_numeric = 'C'; SET lc_time = 'C';"
    [s1]="SET DateStyle = 'SQL, MDY'; SET TimeZone = 'UTC'; SET extra_float_digits = 0; SET IntervalStyle = 'sql_standard'; SET lc_monetary = 'C.utf8'; SET lc_numeric = 'C.utf8'; SET lc_time = 'C.utf8';"
    [s2]="SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Europe/Berlin'; SET extra_float_digits = 3; SET IntervalStyle = 'postgres'; SET lc_monetary = 'C'; SET lc_numeric = 'C'; SET lc_time = 'C';"
    [s3]="SET DateStyle = 'German, DMY'; SET TimeZone = 'Asia/Kolkata'; SET extra_float_digits = -15; SET IntervalStyle = 'iso_8601'; SET lc_monetary = 'C.utf8'; SET lc_numeric = 'C.utf8'; SET lc_time = 'C.utf8';"
    [s4]="SET DateStyle = 'Postgres, MDY'; SET TimeZone = 'America/New_York'; SET extra_float_digits = 2; SET IntervalStyle = 'postgres_verbose'; SET lc_monetary = 'C'; SET lc_numeric = 'C'; SET lc_time = 'C';"
)
SETTINGS[b1]="${SETTINGS[base]} SET sequin.batch_size = 1;"
SETTINGS[s5]="SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Kolkata';"
# "delete's settings-late record's settings"
PAIRS=(base-base s1-s1 s1-s2 s2-s1 s3-s3 s3-s4 s4-s3)
ICU_PAIRS=(base-base s1-s2)

# Matrix configurations: name|key type|order type|low|mid|high (JSON values of the version,
# low < mid < high by the order column's type). Chosen so that a version or key kept as text
# breaks: 9 < 10 but '10' < '9'; 1.2345678901234543 prints as 1.23456789012345 with
# extra_float_digits = 0 (below 1.234567890123452); 1.234567890123456 prints as
# 1.23456789012346 (above 1.234567890123457); '05/01/2024' is 5 January under DMY; IST is
# Israel's time for timestamptz input; '-1 2:00:00' (sql_standard) is -22 hours for the
# other styles; 'B' < 'a' in "C" but not in ICU; the enum sorts z < y < x.
CONFIGS=(
    'nb|numeric|bigint|9|10|11'
    'zn|timestamptz|numeric|9.99|10.0|10.000000000000000001'
    'if|interval|float8|1.234567890123452|1.2345678901234543|1.2345678901234547'
    'cf|text COLLATE ts.ci|float8|1.234567890123455|1.234567890123456|1.234567890123457'
    'tt|text|timestamp|"2024-03-01T00:00:00"|"2024-05-01T00:00:00"|"2024-06-01T00:00:00"'
    'pz|timestamp|timestamptz|"2024-03-01T00:00:00Z"|"2024-05-01T12:00:00Z"|"2024-06-01T00:00:00Z"'
    'dd|date|date|"2024-03-01"|"2024-05-01"|"2024-06-01"'
    'ti|text|interval|"-1 days -3 hours"|"-1 days -2 hours"|"-1 days"'
    'fb|float8|bigint|9|10|11'
    'tc|text|text COLLATE "und-x-icu"|"a"|"b"|"B"'
    'te|text|ts.rev|"z"|"y"|"x"'
    'tm|text|money|"9.99"|"10.00"|"10.01"'
)
# In the database whose default collation is ICU en-US (a < b < B there; B < a in "C").
ICU_CONFIGS=(
    'ic|text|text COLLATE "C"|"B"|"a"|"b"'
    'id|text|text|"a"|"b"|"B"'
    'ix|text COLLATE ts.ci|bigint|9|10|11'
)

# ---------------------------------------------------------------------------------------------
setup_db() { # db [icu]
    local d=$1 create="CREATE DATABASE $1"
    [[ ${2:-} == icu ]] && create+=" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.utf8'"
    PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $d" -c "$create" || return 1
    psql_q -d "$d" >/dev/null <<'SQL'
CREATE EXTENSION sequin_upsert;
CREATE SCHEMA ts;
CREATE COLLATION ts.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TYPE ts.rev AS ENUM ('z', 'y', 'x', 'w');
-- One call: its counts as inserted/updated/deleted/skipped, or its error.
CREATE FUNCTION ts.up(r jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE c record;
BEGIN
  SELECT * INTO c FROM sequin.sequin_upsert(r);
  RETURN c.inserted || '/' || c.updated || '/' || c.deleted || '/' || c.skipped;
EXCEPTION WHEN others THEN
  RETURN 'ERROR ' || SQLSTATE || ': ' || replace(SQLERRM, E'\n', ' ');
END $$;
SQL
}
create_matrix_tables() { # db config...
    local d=$1 cfg name kt ot lo mi hi sql=''
    shift
    for cfg in "$@"; do
        IFS='|' read -r name kt ot lo mi hi <<<"$cfg"
        sql+="CREATE TABLE ts.m_$name (k $kt PRIMARY KEY, v $ot, p text);
SELECT sequin.create_mapping('m:$name', 'ts.m_$name', '{\"k\": \"data.k\", \"v\": \"data.v\", \"p\": \"data.p\"}',
                             conflict_columns => '{k}', order_column => 'v');
"
    done
    psql_q -d "$d" >/dev/null <<<"$sql"
}

# A record: collection key version [deleted].
rec() {
    printf '{"collection_id": "%s", "id": "r", "data": {"k": %s, "v": %s, "p": "x"}%s}' \
        "$1" "$2" "$3" "${4:+, \"deleted\": true}"
}
# The n-th key of a type, as JSON.
key_json() { # type n
    local n=$2
    case $1 in
    numeric) echo "$n" ;;
    float8) echo "$n.1" ;;
    timestamptz) printf '"2020-01-01T%02d:%02d:%02dZ"' $((n / 3600)) $((n / 60 % 60)) $((n % 60)) ;;
    timestamp) printf '"2020-01-01T%02d:%02d:%02d"' $((n / 3600)) $((n / 60 % 60)) $((n % 60)) ;;
    date) date -u -d "2020-01-01 + $n days" +'"%F"' ;;
    interval) echo "\"$n minutes\"" ;;
    *) echo "\"k$n\"" ;;
    esac
}
# Runs SQL in a session of its own with the given settings; prints "tag|result" lines.
session() { # db settings-name sql
    psql -X -q -At -d "$1" -c "${SETTINGS[$2]}" -c "$3" 2>&1 | grep -v '^SET$'
}

declare -A R
n=0
run_matrix() { # db prefix pair config...
    local d=$1 prefix=$2 pair=$3 a b cfg name kt ot lo mi hi c tag key col sql_a='' sql_b='' sql_c=''
    local ktype otype line
    shift 3
    a=${pair%-*} b=${pair#*-}
    for cfg in "$@"; do
        IFS='|' read -r name kt ot lo mi hi <<<"$cfg"
        col="m:$name"
        ktype=${kt%% COLLATE*} otype=${ot%% COLLATE*}
        for c in S D G; do
            n=$((n + 1))
            key=$(key_json "$ktype" $n)
            tag="$prefix:$pair:$name:$c"
            case $c in
            S)
                sql_a+="SELECT '$tag:a1|' || ts.up('$(rec "$col" "$key" "$mi")');"$'\n'
                ;;
            D)
                sql_a+="SELECT '$tag:a1|' || ts.up('$(rec "$col" "$key" "$lo")');"$'\n'
                sql_a+="SELECT '$tag:a2|' || ts.up('$(rec "$col" "$key" "$mi" d)');"$'\n'
                ;;
            G)
                sql_a+="SELECT '$tag:a1|' || ts.up('$(rec "$col" "$key" "$mi" d)');"$'\n'
                ;;
            esac
            sql_b+="SELECT '$tag:b1|' || ts.up('$(rec "$col" "$key" "$lo")');"$'\n'
            sql_b+="SELECT '$tag:b2|' || ts.up('$(rec "$col" "$key" "$mi")');"$'\n'
            [[ $c == S ]] || sql_b+="SELECT '$tag:b3|' || ts.up('$(rec "$col" "$key" "$hi")');"$'\n'
            sql_c+="SELECT '$tag:row|' || coalesce((SELECT CASE
                        WHEN v = ('$lo'::jsonb #>> '{}')::$otype THEN 'low'
                        WHEN v = ('$mi'::jsonb #>> '{}')::$otype THEN 'mid'
                        WHEN v = ('$hi'::jsonb #>> '{}')::$otype THEN 'high'
                        ELSE 'other ' || v::text END
                    FROM ts.m_$name WHERE k = ('$key'::jsonb #>> '{}')::$ktype), 'absent');"
            sql_c+=$'\n'
        done
    done
    while IFS= read -r line; do
        [[ $line == *'|'* ]] && R[${line%%|*}]=${line#*|}
    done < <(session "$d" "$a" "$sql_a"; session "$d" "$b" "$sql_b"; session "$d" base "$sql_c")
    for cfg in "$@"; do
        IFS='|' read -r name kt ot lo mi hi <<<"$cfg"
        local what="settings $a then $b, key $kt, order $ot"
        tag="$prefix:$pair:$name:S"
        check "$tag" "$what: a stored row newer than a late record and a replay stays" \
            "A 1/0/0/0 B 0/0/0/1 0/0/0/1 row mid" \
            "A ${R[$tag:a1]:-?} B ${R[$tag:b1]:-?} ${R[$tag:b2]:-?} row ${R[$tag:row]:-?}"
        tag="$prefix:$pair:$name:D"
        check "$tag" "$what: a deleted row stays deleted for an older record and a replay, a newer one inserts" \
            "A 1/0/0/0 0/0/1/0 B 0/0/0/1 0/0/0/1 1/0/0/0 row high" \
            "A ${R[$tag:a1]:-?} ${R[$tag:a2]:-?} B ${R[$tag:b1]:-?} ${R[$tag:b2]:-?} ${R[$tag:b3]:-?} row ${R[$tag:row]:-?}"
        tag="$prefix:$pair:$name:G"
        check "$tag" "$what: the tombstone of an absent row blocks an older record and a replay, not a newer one" \
            "A 0/0/0/1 B 0/0/0/1 0/0/0/1 1/0/0/0 row high" \
            "A ${R[$tag:a1]:-?} B ${R[$tag:b1]:-?} ${R[$tag:b2]:-?} ${R[$tag:b3]:-?} row ${R[$tag:row]:-?}"
    done
}

# One call in a session of its own: settings-name records -> counts or error.
up() { # settings-name json [db]
    session "${3:-$db}" "$1" "SELECT ts.up('$2')"
}
# The state of one key: "absent" or "v=<v> rows=<n>" (read under the base settings).
row() { # table key-sql
    session "${3:-$db}" base "SELECT coalesce((SELECT 'v=' || min(v::text) || ' rows=' || count(*) FROM $1 WHERE k = $2 HAVING count(*) > 0), 'absent')"
}

# ---------------------------------------------------------------------------------------------
setup_db $db || {
    echo "not ok - set up database $db"
    exit 1
}
create_matrix_tables $db "${CONFIGS[@]}"
for pair in "${PAIRS[@]}"; do
    run_matrix $db m "$pair" "${CONFIGS[@]}"
done

if setup_db $icudb icu && create_matrix_tables $icudb "${ICU_CONFIGS[@]}"; then
    tap_ok "a database whose default collation is ICU en-US: 'b' < 'B' there" \
        test "$(psql_q -d $icudb -c "SELECT 'b' < 'B' AND 'B' < 'a' COLLATE \"C\"")" = t
    for pair in "${ICU_PAIRS[@]}"; do
        run_matrix $icudb icu "$pair" "${ICU_CONFIGS[@]}"
    done
else
    tap_ok "create a database with an ICU default collation" false
fi

# ---------------------------------------------------------------------------------------------
# The reported cases one by one.
psql_q -d $db >/dev/null <<'SQL'
CREATE TABLE ts.num_key (k numeric PRIMARY KEY, v bigint, p text);
CREATE TABLE ts.tz_key (k timestamptz PRIMARY KEY, v bigint, p text);
CREATE TABLE ts.ts_ord (k text PRIMARY KEY, v timestamp, p text);
CREATE TABLE ts.ci_key (k text COLLATE ts.ci PRIMARY KEY, v bigint, p text);
CREATE TABLE ts.iv_key (k interval PRIMARY KEY, v bigint, p text);
CREATE TABLE ts.iv_ord (k text PRIMARY KEY, v interval, p text);
CREATE TABLE ts.f8_ord (k text PRIMARY KEY, v float8, p text);
CREATE TABLE ts.num_ord (k text PRIMARY KEY, v numeric, p text);
CREATE TABLE ts.f8_key (k float8 PRIMARY KEY, v bigint, p text);
CREATE TABLE ts.tz_ord (k text PRIMARY KEY, v timestamptz, p text);
SELECT sequin.create_mapping(t, 'ts.' || t, '{"k": "data.k", "v": "data.v", "p": "data.p"}',
                             conflict_columns => '{k}', order_column => 'v')
  FROM unnest('{num_key,tz_key,ts_ord,ci_key,iv_key,iv_ord,f8_ord,num_ord,f8_key,tz_ord}'::text[]) AS t;
SQL

# numeric scale: 1.0 and 1 are one key for the primary key.
check e:num-scale-absent "numeric key deleted as 1.0 at 5 (absent row): a record for 1 at 3 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up base "$(rec num_key 1.0 5 d)") $(up base "$(rec num_key 1 3)") $(row ts.num_key 1)"
check e:num-scale-newer "numeric key deleted as 4.0 at 5: a record for 4.00 at 7 is inserted" \
    "0/0/0/1 1/0/0/0 v=7 rows=1" "$(up base "$(rec num_key 4.0 5 d)") $(up base "$(rec num_key 4.00 7)") $(row ts.num_key 4)"
check e:num-scale-stored "numeric key stored as 2, deleted as 2.0 at 5: a record for 2 at 3 is skipped" \
    "1/0/0/0 0/0/1/0 0/0/0/1 absent" \
    "$(up base "$(rec num_key 2 1)") $(up base "$(rec num_key 2.0 5 d)") $(up base "$(rec num_key 2 3)") $(row ts.num_key 2)"
check e:num-scale-reverse "numeric key deleted as 3 at 5: a record for 3.000 at 3 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up base "$(rec num_key 3 5 d)") $(up base "$(rec num_key 3.000 3)") $(row ts.num_key 3)"
# Duplicates of one numeric key written in two forms, in one call.
check e:num-dup-call "one call with 10.0 at 3 and 10 at 4: no error, one row at 4" \
    "1/0/0/1 v=4 rows=1" \
    "$(up base "[$(rec num_key 10.0 3), $(rec num_key 10 4)]") $(row ts.num_key 10)"
check e:num-dup-call-rev "one call with 11 at 4 and 11.00 at 3: no error, one row at 4" \
    "1/0/0/1 v=4 rows=1" \
    "$(up base "[$(rec num_key 11 4), $(rec num_key 11.00 3)]") $(row ts.num_key 11)"
check e:num-dup-call-stored "stored 12 at 1, one call with 12.0 at 3 and 12 at 2: updated once to 3" \
    "1/0/0/0 0/1/0/1 v=3 rows=1" \
    "$(up base "$(rec num_key 12 1)") $(up base "[$(rec num_key 12.0 3), $(rec num_key 12 2)]") $(row ts.num_key 12)"
check e:num-dup-call-batches "one call with 14.0 at 3 and 14 at 4 in batches of one record: one row at 4, one skipped" \
    "1/0/0/1 v=4 rows=1" \
    "$(up b1 "[$(rec num_key 14.0 3), $(rec num_key 14 4)]") $(row ts.num_key 14)"
check e:num-dup-call-delete "one call with 13 at 1 and a delete of 13.0 at 2; then 13 at 1 again is skipped" \
    "0/0/0/2 0/0/0/1 absent" \
    "$(up base "[$(rec num_key 13 1), $(rec num_key 13.0 2 d)]") $(up base "$(rec num_key 13 1)") $(row ts.num_key 13)"

# timestamptz key: the same instant, written under another TimeZone.
check e:tz-key-absent "timestamptz key deleted under UTC at 5: the same record at 3 from Europe/Berlin is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up base "$(rec tz_key '"2024-05-01T12:00:00Z"' 5 d)") $(up s2 "$(rec tz_key '"2024-05-01T12:00:00Z"' 3)") $(row ts.tz_key "'2024-05-01T12:00:00Z'")"
check e:tz-key-stored "timestamptz key stored and deleted under UTC: a record at 3 from Europe/Berlin is skipped" \
    "1/0/0/0 0/0/1/0 0/0/0/1 absent" \
    "$(up base "$(rec tz_key '"2024-05-02T12:00:00Z"' 1)") $(up base "$(rec tz_key '"2024-05-02T12:00:00Z"' 5 d)") $(up s2 "$(rec tz_key '"2024-05-02T12:00:00Z"' 3)") $(row ts.tz_key "'2024-05-02T12:00:00Z'")"
check e:tz-key-offset "timestamptz key deleted as ...Z under UTC: a record for the same instant written +02:00 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up base "$(rec tz_key '"2024-05-03T12:00:00Z"' 5 d)") $(up base "$(rec tz_key '"2024-05-03T14:00:00+02:00"' 3)") $(row ts.tz_key "'2024-05-03T12:00:00Z'")"
check e:tz-key-berlin-then-utc "timestamptz key deleted from Europe/Berlin: a record at 3 under UTC is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up s2 "$(rec tz_key '"2024-05-04T12:00:00Z"' 5 d)") $(up base "$(rec tz_key '"2024-05-04T12:00:00Z"' 3)") $(row ts.tz_key "'2024-05-04T12:00:00Z'")"

# timestamptz order column: 'IST' in timestamptz output (Asia/Kolkata) reads back as Israel's
# time (+02), 3.5 hours off.
check e:ist-order "timestamptz order: delete at 12:00Z under Asia/Kolkata (German style); 13:00Z the same day inserts" \
    "0/0/0/1 1/0/0/0 v=2024-05-01 13:00:00+00 rows=1" \
    "$(up s3 "$(rec tz_ord '"a"' '"2024-05-01T12:00:00Z"' d)") $(up s3 "$(rec tz_ord '"a"' '"2024-05-01T13:00:00Z"')") $(row ts.tz_ord "'a'")"
check e:ist-order-sql "timestamptz order: delete at 12:00Z under Asia/Kolkata (SQL style); 11:00Z from UTC is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up s5 "$(rec tz_ord '"b"' '"2024-05-01T12:00:00Z"' d)") $(up base "$(rec tz_ord '"b"' '"2024-05-01T11:00:00Z"')") $(row ts.tz_ord "'b'")"

# timestamp order column under DateStyle.
check e:datestyle-order "timestamp order: delete at 2024-05-01 under SQL, MDY; a record at 2024-03-01 under SQL, DMY is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up s1 "$(rec ts_ord '"a"' '"2024-05-01T00:00:00"' d)") $(up s2 "$(rec ts_ord '"a"' '"2024-03-01T00:00:00"')") $(row ts.ts_ord "'a'")"
check e:datestyle-order-stored "timestamp order: a stored row deleted at 2024-05-01 under SQL, MDY stays deleted for 2024-03-01 under SQL, DMY" \
    "1/0/0/0 0/0/1/0 0/0/0/1 absent" \
    "$(up s1 "$(rec ts_ord '"b"' '"2024-02-01T00:00:00"')") $(up s1 "$(rec ts_ord '"b"' '"2024-05-01T00:00:00"' d)") $(up s2 "$(rec ts_ord '"b"' '"2024-03-01T00:00:00"')") $(row ts.ts_ord "'b'")"
check e:datestyle-order-newer "timestamp order: delete at 2024-01-05 under SQL, MDY; a newer record at 2024-03-01 under SQL, DMY inserts" \
    "0/0/0/1 1/0/0/0 v=2024-03-01 00:00:00 rows=1" \
    "$(up s1 "$(rec ts_ord '"c"' '"2024-01-05T00:00:00"' d)") $(up s2 "$(rec ts_ord '"c"' '"2024-03-01T00:00:00"')") $(row ts.ts_ord "'c'")"

# Nondeterministic collation on the key.
check e:ci-key "case-insensitive ICU key: delete ABC at 5, a record for abc at 3 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up base "$(rec ci_key '"ABC"' 5 d)") $(up base "$(rec ci_key '"abc"' 3)") $(row ts.ci_key "'abc'")"
check e:ci-key-newer "case-insensitive ICU key: delete ACC at 5, aCc at 7 inserts" \
    "0/0/0/1 1/0/0/0 v=7 rows=1" "$(up base "$(rec ci_key '"ACC"' 5 d)") $(up base "$(rec ci_key '"aCc"' 7)") $(row ts.ci_key "'acc'")"
check e:ci-key-stored "case-insensitive ICU key: stored Abd, deleted as ABD at 5; abd at 3 is skipped" \
    "1/0/0/0 0/0/1/0 0/0/0/1 absent" \
    "$(up base "$(rec ci_key '"Abd"' 1)") $(up base "$(rec ci_key '"ABD"' 5 d)") $(up base "$(rec ci_key '"abd"' 3)") $(row ts.ci_key "'abd'")"
check e:ci-dup-call "case-insensitive ICU key: one call with ABE at 3 and abe at 4: no error, one row at 4" \
    "1/0/0/1 v=4 rows=1" \
    "$(up base "[$(rec ci_key '"ABE"' 3), $(rec ci_key '"abe"' 4)]") $(row ts.ci_key "'abe'")"

# interval keys: '1 day' = '24 hours' for the btree; and as versions.
check e:interval-key "interval key: delete '1 day' at 5, a record for '24 hours' at 3 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up base "$(rec iv_key '"1 day"' 5 d)") $(up base "$(rec iv_key '"24 hours"' 3)") $(row ts.iv_key "'1 day'")"
check e:interval-key-style "interval key: delete '2 days' under IntervalStyle sql_standard, '2 days' at 3 under iso_8601 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up s1 "$(rec iv_key '"2 days"' 5 d)") $(up s3 "$(rec iv_key '"2 days"' 3)") $(row ts.iv_key "'2 days'")"
check e:interval-dup-call "interval key: one call with '3 days' at 3 and '72 hours' at 4: no error, one row at 4" \
    "1/0/0/1 v=4 rows=1" \
    "$(up base "[$(rec iv_key '"3 days"' 3), $(rec iv_key '"72 hours"' 4)]") $(row ts.iv_key "'3 days'")"
check e:interval-order-equal "interval order: delete at '1 day', a replay at '24 hours' (equal) is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up base "$(rec iv_ord '"a"' '"1 day"' d)") $(up base "$(rec iv_ord '"a"' '"24 hours"')") $(row ts.iv_ord "'a'")"
check e:interval-order-sign "interval order: delete at '-1 days -2 hours' under sql_standard; '-1 days' under postgres inserts" \
    "0/0/0/1 1/0/0/0 v=-1 days rows=1" \
    "$(up s1 "$(rec iv_ord '"b"' '"-1 days -2 hours"' d)") $(up s2 "$(rec iv_ord '"b"' '"-1 days"')") $(row ts.iv_ord "'b'")"

# float8 and numeric order columns under extra_float_digits.
check e:float-replay "float8 order: delete at 0.30000000000000004 under extra_float_digits 0; the same version under 3 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up s1 "$(rec f8_ord '"a"' 0.30000000000000004 d)") $(up s2 "$(rec f8_ord '"a"' 0.30000000000000004)") $(row ts.f8_ord "'a'")"
check e:float-older "float8 order: delete at 0.30000000000000004 under extra_float_digits 0; 0.3 under 3 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up s1 "$(rec f8_ord '"e"' 0.30000000000000004 d)") $(up s2 "$(rec f8_ord '"e"' 0.3)") $(row ts.f8_ord "'e'")"
check e:float-newer "float8 order: delete at 0.30000000000000004 under extra_float_digits 0; 0.3000000000000001 inserts" \
    "0/0/0/1 1/0/0/0 rows=1" \
    "$(up s1 "$(rec f8_ord '"f"' 0.30000000000000004 d)") $(up s2 "$(rec f8_ord '"f"' 0.3000000000000001)") $(row ts.f8_ord "'f'" | sed 's/^v=[^ ]* //')"
check e:float-sum "float8 order: delete at 0.1+0.2 (0.30000000000000004) under extra_float_digits 3; 0.3 under 0 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up s2 "$(rec f8_ord '"b"' 0.30000000000000004 d)") $(up s1 "$(rec f8_ord '"b"' 0.3)") $(row ts.f8_ord "'b'")"
check e:float-rounded-down "float8 order: delete at 1.2345678901234543 under extra_float_digits 0; 1.234567890123452 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up s1 "$(rec f8_ord '"c"' 1.2345678901234543 d)") $(up s1 "$(rec f8_ord '"c"' 1.234567890123452)") $(row ts.f8_ord "'c'")"
check e:float-rounded-up "float8 order: delete at 1.234567890123456 under extra_float_digits 0; 1.234567890123457 inserts" \
    "0/0/0/1 1/0/0/0 rows=1" \
    "$(up s1 "$(rec f8_ord '"d"' 1.234567890123456 d)") $(up s1 "$(rec f8_ord '"d"' 1.234567890123457)") $(row ts.f8_ord "'d'" | sed 's/^v=[^ ]* //')"
check e:numeric-order "numeric order: delete at 0.30000000000000004 under extra_float_digits 0; 0.3 is skipped, 0.30000000000000005 inserts" \
    "0/0/0/1 0/0/0/1 1/0/0/0 v=0.30000000000000005 rows=1" \
    "$(up s1 "$(rec num_ord '"a"' 0.30000000000000004 d)") $(up s2 "$(rec num_ord '"a"' 0.3)") $(up s2 "$(rec num_ord '"a"' 0.30000000000000005)") $(row ts.num_ord "'a'")"
check e:numeric-order-scale "numeric order: delete at 10.0; a replay at 10 is skipped, 9.99 too, 10.01 inserts" \
    "0/0/0/1 0/0/0/1 0/0/0/1 1/0/0/0 v=10.01 rows=1" \
    "$(up base "$(rec num_ord '"b"' 10.0 d)") $(up base "$(rec num_ord '"b"' 10)") $(up base "$(rec num_ord '"b"' 9.99)") $(up base "$(rec num_ord '"b"' 10.01)") $(row ts.num_ord "'b'")"
# float8 keys: two keys that print alike under extra_float_digits 0 are still two keys.
check e:float-key-distinct "float8 key: a tombstone for 0.3 (extra_float_digits 0) does not block the key 0.30000000000000004" \
    "0/0/0/1 1/0/0/0 rows=1" \
    "$(up s1 "$(rec f8_key 0.3 10 d)") $(up s1 "$(rec f8_key 0.30000000000000004 5)") $(row ts.f8_key 0.30000000000000004 | sed 's/^v=[^ ]* //')"
check e:float-key-same "float8 key: deleted at 10 under extra_float_digits 0, the same key at 5 under 3 is skipped" \
    "0/0/0/1 0/0/0/1 absent" \
    "$(up s1 "$(rec f8_key 0.7000000000000001 10 d)") $(up s2 "$(rec f8_key 0.7000000000000001 5)") $(row ts.f8_key 0.7000000000000001)"

# An order column retyped after tombstones exist: new keys work, or fail with an error naming
# the mapping and the column.
psql_q -d $db >/dev/null <<'SQL'
CREATE TABLE ts.retyped (k text PRIMARY KEY, version_at bigint, p text);
SELECT sequin.create_mapping('retype:orders', 'ts.retyped', '{"k": "data.k", "version_at": "updated_idx", "p": "data.p"}',
                             conflict_columns => '{k}', order_column => 'version_at');
SQL
retype_rec() { printf '{"collection_id": "retype:orders", "id": "%s", "updated_idx": %s, "data": {"k": "%s"}%s}' "$1" "$2" "$1" "${3:+, \"deleted\": true}"; }
check e:retype-before "before the retype: insert r1 at 3, delete r1 at 5, delete absent r2 at 7" \
    "1/0/0/0 0/0/1/0 0/0/0/1" \
    "$(up base "$(retype_rec r1 3)") $(up base "$(retype_rec r1 5 d)") $(up base "$(retype_rec r2 7 d)")"
psql_q -d $db -c "ALTER TABLE ts.retyped ALTER COLUMN version_at TYPE timestamptz USING to_timestamp(version_at)" >/dev/null
# A clear error names the mapping and the column; anything else is not clear.
retype_ok() { # result expected-counts
    [[ $1 == "$2" ]] || [[ $1 == ERROR* && $1 == *retype:orders* && $1 == *version_at* ]]
}
got=$(up base "$(retype_rec n1 1700000000)")
if retype_ok "$got" 1/0/0/0; then got="works or a clear error"; fi
check e:retype-new-key "order column retyped to timestamptz: a new key inserts, or the error names the mapping and the column" \
    "works or a clear error" "$got"
got=$(up s2 "$(retype_rec n2 1700000000)")
if retype_ok "$got" 1/0/0/0; then got="works or a clear error"; fi
check e:retype-new-key-berlin "order column retyped to timestamptz: the same from Europe/Berlin" \
    "works or a clear error" "$got"
got=$(up base "$(retype_rec r1 1700000000)")
if retype_ok "$got" 1/0/0/0 || retype_ok "$got" 0/0/0/1; then got="applied, skipped or a clear error"; fi
check e:retype-old-key "order column retyped: a record for a deleted key is applied, skipped or fails naming the mapping and the column" \
    "applied, skipped or a clear error" "$got"

PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "DROP DATABASE IF EXISTS $icudb"
tap_done
