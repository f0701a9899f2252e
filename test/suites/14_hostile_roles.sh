#!/usr/bin/env bash
# Nothing runs with more rights than its caller (SPEC: "Nothing runs with more rights than its
# caller", "A delete is final"), tried by hostile roles:
#
# 1. A non-superuser role owns a table whose order column is a domain CHECKed by a function of
#    its own, with a CHECK constraint, a column default and row and statement triggers calling
#    that function too; an enum order column with the role's own casts text <-> enum; a key
#    domain with the role's own nondeterministic collation and check; and a key whose unique
#    index uses an operator class (made by a superuser from the role's functions). The
#    function reports current_user, session_user, whether that role is a superuser, and tries
#    ALTER ROLE <itself> SUPERUSER. A superuser maps the tables; the role upserts, deletes and
#    sends late records for deleted keys: its code must only ever run as itself, never as a
#    superuser, and the role must still not be a superuser afterwards.
# 2. The same through sequin.staging: immediate, by the owner and by another role with only
#    INSERT on sequin.staging (and its sequence) plus its rights on the target; deferred, with
#    apply_staging run by a superuser and by a worker role (the records apply with the
#    inserting role's rights).
# 3. Row-level security tenants: a tombstone that tenant A leaves for a key it cannot see binds
#    only A; A's counts do not reveal whether B deleted a key at or above a version.
#
# The "# note:" lines print, for the report, what a tenant sees where PostgreSQL itself decides.
set -uo pipefail
# shellcheck source=test/lib/cluster.sh
source "$(dirname "$0")/../lib/cluster.sh"
db=sequin_hostile
owner=sq14_owner
ta=sq14_tenant_a
tb=sq14_tenant_b
drain=sq14_drain
stager=sq14_stager
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check() { tap_check "$@"; }
su() { psql_q -d $db "$@"; }
as() { # role: psql as that role (its own login: session_user is the role)
    local r=$1
    shift
    psql -X -q -At -U "$r" -d $db "$@"
}

# Roles are cluster-wide: create them once, never superusers.
psql_q -d postgres >/dev/null <<SQL
DO \$\$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['$owner', '$ta', '$tb', '$drain', '$stager'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I LOGIN', r);
    END IF;
    EXECUTE format('ALTER ROLE %I NOSUPERUSER NOCREATEROLE NOCREATEDB LOGIN', r);
  END LOOP;
END \$\$;
SQL
PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"

su >/dev/null <<SQL
CREATE EXTENSION sequin_upsert;
CREATE SCHEMA hostile AUTHORIZATION $owner;
CREATE SCHEMA tenancy AUTHORIZATION $owner;
-- One call: its counts as inserted/updated/deleted/skipped, or its error (runs as its caller).
CREATE SCHEMA hx;
CREATE FUNCTION hx.up(r jsonb) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE c record;
BEGIN
  SELECT * INTO c FROM sequin.sequin_upsert(r);
  RETURN c.inserted || '/' || c.updated || '/' || c.deleted || '/' || c.skipped;
EXCEPTION WHEN others THEN
  RETURN 'ERROR ' || SQLSTATE || ': ' || replace(SQLERRM, E'\n', ' ');
END \$\$;
GRANT USAGE ON SCHEMA hx TO PUBLIC;
SQL

# The hostile role's objects. who() reports who runs it and tries to make the role a
# superuser; every hook below calls it.
as $owner -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE TABLE hostile.log (n bigserial, probe text, what text, cur name, sess name, super text, escalated boolean);
GRANT USAGE ON SCHEMA hostile TO PUBLIC;
GRANT INSERT ON hostile.log TO PUBLIC;
GRANT USAGE ON SEQUENCE hostile.log_n_seq TO PUBLIC;
CREATE FUNCTION hostile.who(what text) RETURNS boolean LANGUAGE plpgsql AS \$\$
DECLARE s text; esc boolean := false;
BEGIN
  SELECT rolsuper::text INTO s FROM pg_catalog.pg_roles WHERE rolname = current_user;
  BEGIN
    EXECUTE 'ALTER ROLE $owner SUPERUSER';
    esc := true;
  EXCEPTION WHEN others THEN esc := false;
  END;
  RAISE WARNING 'WHO|%|%|%|%|%', what, current_user, session_user, coalesce(s, '?'), esc;
  BEGIN
    INSERT INTO hostile.log (probe, what, cur, sess, super, escalated)
    VALUES (current_setting('hostile.probe', true), what, current_user, session_user, coalesce(s, '?'), esc);
  EXCEPTION WHEN others THEN NULL;
  END;
  RETURN true;
END \$\$;
-- The same report without the escalation attempt and the log row, for btree support
-- functions: they run with buffer locks held, where an exception block (a subtransaction
-- abort releases every LWLock) must not run.
CREATE FUNCTION hostile.who_light(what text) RETURNS boolean LANGUAGE plpgsql AS \$\$
BEGIN
  RAISE WARNING 'WHO|%|%|%|%|false', what, current_user, session_user,
    coalesce((SELECT rolsuper::text FROM pg_catalog.pg_roles WHERE rolname = current_user), '?');
  RETURN true;
END \$\$;
CREATE FUNCTION hostile.who_text(what text) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN PERFORM hostile.who(what); RETURN 'default'; END \$\$;
CREATE FUNCTION hostile.trg() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM hostile.who('trigger ' || TG_WHEN || ' ' || TG_OP || ' ' || TG_LEVEL);
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END \$\$;

-- 1. A domain order column, a CHECK constraint, a default, triggers.
CREATE DOMAIN hostile.ver AS bigint CHECK (hostile.who('domain ver ' || VALUE));
CREATE TABLE hostile.t (id text PRIMARY KEY, p text, v hostile.ver,
                        d text DEFAULT hostile.who_text('default'),
                        CONSTRAINT t_check CHECK (hostile.who('check constraint')));
CREATE TRIGGER t_row BEFORE INSERT OR UPDATE OR DELETE ON hostile.t FOR EACH ROW EXECUTE FUNCTION hostile.trg();
CREATE TRIGGER t_stmt AFTER INSERT OR UPDATE OR DELETE ON hostile.t FOR EACH STATEMENT EXECUTE FUNCTION hostile.trg();

-- 2. An enum order column with the role's own casts from and to text.
CREATE TYPE hostile.lvl AS ENUM ('v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'v8', 'v9');
CREATE FUNCTION hostile.lvl_of(t text) RETURNS hostile.lvl LANGUAGE plpgsql AS \$\$
DECLARE r hostile.lvl;
BEGIN
  PERFORM hostile.who('cast text->lvl');
  SELECT e INTO r FROM unnest(enum_range(NULL::hostile.lvl)) AS e WHERE format('%s', e) = t;
  IF r IS NULL THEN RAISE EXCEPTION 'not a lvl: %', t; END IF;
  RETURN r;
END \$\$;
CREATE FUNCTION hostile.lvl_text(l hostile.lvl) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN PERFORM hostile.who('cast lvl->text'); RETURN format('%s', l); END \$\$;
CREATE CAST (text AS hostile.lvl) WITH FUNCTION hostile.lvl_of(text);
CREATE CAST (hostile.lvl AS text) WITH FUNCTION hostile.lvl_text(hostile.lvl);
CREATE TABLE hostile.e (id text PRIMARY KEY, p text, v hostile.lvl);
CREATE TRIGGER e_row BEFORE INSERT OR UPDATE OR DELETE ON hostile.e FOR EACH ROW EXECUTE FUNCTION hostile.trg();

-- 3. A key domain with the role's own case-insensitive collation and check.
CREATE COLLATION hostile.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE DOMAIN hostile.ckey AS text COLLATE hostile.ci CHECK (hostile.who('domain ckey ' || VALUE));
CREATE TABLE hostile.kd (k hostile.ckey PRIMARY KEY, p text, v bigint);

-- 4. Functions and operators for a case-insensitive btree operator class on text.
CREATE FUNCTION hostile.ci_cmp(a text, b text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$\$
BEGIN
  PERFORM hostile.who_light('opclass cmp');
  RETURN CASE WHEN lower(a) COLLATE "C" < lower(b) COLLATE "C" THEN -1
              WHEN lower(a) COLLATE "C" > lower(b) COLLATE "C" THEN 1 ELSE 0 END;
END \$\$;
CREATE FUNCTION hostile.ci_lt(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT hostile.ci_cmp(a, b) < 0';
CREATE FUNCTION hostile.ci_le(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT hostile.ci_cmp(a, b) <= 0';
CREATE FUNCTION hostile.ci_eq(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT hostile.ci_cmp(a, b) = 0';
CREATE FUNCTION hostile.ci_ge(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT hostile.ci_cmp(a, b) >= 0';
CREATE FUNCTION hostile.ci_gt(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT hostile.ci_cmp(a, b) > 0';
CREATE OPERATOR hostile.#<  (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.ci_lt);
CREATE OPERATOR hostile.#<= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.ci_le);
CREATE OPERATOR hostile.#=  (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.ci_eq, COMMUTATOR = OPERATOR(hostile.#=));
CREATE OPERATOR hostile.#>= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.ci_ge);
CREATE OPERATOR hostile.#>  (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.ci_gt);

-- RLS: each tenant sees its own rows.
CREATE TABLE tenancy.docs (id text PRIMARY KEY, tenant name NOT NULL DEFAULT current_user, p text, v bigint);
ALTER TABLE tenancy.docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON tenancy.docs USING (tenant = current_user) WITH CHECK (tenant = current_user);
GRANT USAGE ON SCHEMA tenancy TO $ta, $tb;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenancy.docs TO $ta, $tb;
SQL
tap_ok "the hostile role set up its objects" test "$(su -c "SELECT count(*) FROM pg_class WHERE relname IN ('t', 'e', 'kd', 'docs') AND relowner = '$owner'::regrole")" = 4

# Only a superuser can create an operator class: one made from the role's functions (a
# superuser trusting the role's code for the index, not for anything else).
su >/dev/null <<SQL
CREATE OPERATOR CLASS hostile.ci_ops FOR TYPE text USING btree AS
  OPERATOR 1 hostile.#<, OPERATOR 2 hostile.#<=, OPERATOR 3 hostile.#=, OPERATOR 4 hostile.#>=, OPERATOR 5 hostile.#>,
  FUNCTION 1 hostile.ci_cmp(text, text);
SQL
as $owner -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE TABLE hostile.oc (k text NOT NULL, p text, v bigint);
CREATE UNIQUE INDEX oc_k ON hostile.oc (k hostile.ci_ops);
SQL

# A superuser maps the role's tables.
su >/dev/null <<SQL
SELECT sequin.create_mapping('hostile:t', 'hostile.t', '{"id": "id", "p": "data.p", "v": "updated_idx"}', order_column => 'v');
SELECT sequin.create_mapping('hostile:e', 'hostile.e', '{"id": "id", "p": "data.p", "v": "data.v"}', order_column => 'v');
SELECT sequin.create_mapping('hostile:kd', 'hostile.kd', '{"k": "id", "p": "data.p", "v": "updated_idx"}',
                             conflict_columns => '{k}', order_column => 'v');
SELECT sequin.create_mapping('hostile:oc', 'hostile.oc', '{"k": "id", "p": "data.p", "v": "updated_idx"}',
                             conflict_columns => '{k}', order_column => 'v');
SELECT sequin.create_mapping('docs', 'tenancy.docs', '{"id": "id", "p": "data.p", "v": "updated_idx"}', order_column => 'v');
GRANT INSERT ON sequin.staging TO $owner;
GRANT USAGE ON SEQUENCE sequin.staging_id_seq TO $owner;
GRANT EXECUTE ON FUNCTION sequin.apply_staging(int, boolean) TO $drain;
GRANT INSERT ON sequin.staging TO $stager;
GRANT USAGE ON SEQUENCE sequin.staging_id_seq TO $stager;
SQL
as $owner -v ON_ERROR_STOP=1 -c "GRANT SELECT, INSERT, UPDATE, DELETE ON hostile.t, hostile.e TO $drain, $stager" >/dev/null
tap_ok "a superuser mapped the hostile tables" \
    test "$(su -c "SELECT count(*) FROM sequin.mappings WHERE collection_id IN ('hostile:t', 'hostile:e', 'hostile:kd', 'hostile:oc', 'docs')")" = 5

# A record: collection, id, version N (updated_idx N, data.v "vN"), [deleted].
hrec() {
    printf '{"collection_id": "%s", "id": "%s", "updated_idx": %s, "data": {"p": "x", "v": "v%s"}%s}' \
        "$1" "$2" "$3" "$3" "${4:+, \"deleted\": true}"
}

# The probe's who() reports, one "what|cur|sess|super|escalated" a line: the WARNINGs the
# session received (they survive a rollback) and the log rows (in case a warning was not sent).
who_lines() { # output-file probe-id
    sed -n 's/^WARNING:  WHO|//p' "$1"
    su -c "SELECT what || '|' || cur || '|' || sess || '|' || super || '|' || escalated::text FROM hostile.log WHERE probe = '$2'"
}
# Checks on the reports of one probe: the code ran, only as the caller, never as a superuser,
# and the role is no superuser afterwards.
who_checks() { # id output-file caller session-user [description]
    local id=$1 out=$2 caller=$3 sess=$4 lines bad
    lines=$(who_lines "$out" "$id")
    check "$id:ran" "${5:-$id}: the role's code ran during the calls (the probe is live)" \
        yes "$([[ -n $lines ]] && echo yes || echo "no report")"
    bad=$(awk -F'|' -v c="$caller" -v s="$sess" '$2 != c || $3 != s { print $1 " as " $2 " (session " $3 ")" }' <<<"$lines" | sort -u)
    check "$id:as-caller" "${5:-$id}: the role's code ran only as $caller (session $sess)" "" "$bad"
    bad=$(awk -F'|' '($4 != "false" && $4 != "f") || ($5 != "false" && $5 != "f") {
                         print $1 " as " $2 ": superuser " $4 ", ALTER ROLE SUPERUSER succeeded " $5 }' <<<"$lines" |
        sed -E 's/ (t|f)$/ \1rue/; s/ frue$/ false/' | sort -u)
    check "$id:no-super" "${5:-$id}: nothing of the role ran as a superuser, its ALTER ROLE SUPERUSER never succeeded" "" "$bad"
    check "$id:rolsuper" "${5:-$id}: $owner is still not a superuser" f \
        "$(su -c "SELECT rolsuper FROM pg_roles WHERE rolname = '$owner'")"
    # Whatever happened, the next probe starts from a role that is no superuser.
    su -c "ALTER ROLE $owner NOSUPERUSER" >/dev/null
}

# The owner's own calls: insert, delete, late record for the deleted key; delete of an
# absent key, late and newer records; a stale record for a stored key. Keys may be written in
# three forms (insert, delete, late), equal for the table's unique index.
owner_probe() { # id collection key-insert key-delete key-late description
    local id=$1 c=$2 ki=$3 kd=$4 kl=$5 out=$work/$1.out sql
    sql="SET hostile.probe = '$id';
SELECT 'a1|' || hx.up('$(hrec "$c" "$ki" 5)');
SELECT 'a2|' || hx.up('$(hrec "$c" "$kd" 6 d)');
SELECT 'a3|' || hx.up('$(hrec "$c" "$kl" 3)');
SELECT 'g1|' || hx.up('$(hrec "$c" "G$kd" 7 d)');
SELECT 'g2|' || hx.up('$(hrec "$c" "G$kl" 4)');
SELECT 'g3|' || hx.up('$(hrec "$c" "G$ki" 8)');
SELECT 'c1|' || hx.up('$(hrec "$c" "C$ki" 5)');
SELECT 'c2|' || hx.up('$(hrec "$c" "C$kl" 4)');"
    su -c "ALTER ROLE $owner NOSUPERUSER" -c "TRUNCATE hostile.log" >/dev/null
    as $owner >"$out" 2>&1 <<<"$sql"
    local got
    got=$(sed -n 's/^\([agc][0-9]\)|/\1 /p' "$out" | tr '\n' ' ')
    check "$id:counts" "$6: insert, delete, late record; delete of an absent key, late, newer; stale record" \
        "a1 1/0/0/0 a2 0/0/1/0 a3 0/0/0/1 g1 0/0/0/1 g2 0/0/0/1 g3 1/0/0/0 c1 1/0/0/0 c2 0/0/0/1 " "$got"
    check "$id:rows" "$6: the rows left: the deleted key is gone, the others at their newest version" \
        "$(tr '[:upper:]' '[:lower:]' <<<"c$ki=5 g$ki=8")" \
        "$(su -c "SELECT string_agg(lower(k::text) || '=' || ltrim(format('%s', v), 'v'), ' ' ORDER BY lower(k::text) COLLATE \"C\")
                  FROM (SELECT $(key_col "$c") AS k, v FROM hostile.${c#hostile:}) AS r")"
    who_checks "$id" "$out" $owner $owner "$6"
}
key_col() { case $1 in hostile:t | hostile:e) echo id ;; *) echo k ;; esac; }

owner_probe h:domain hostile:t a a a "domain order column, check, default, triggers"
owner_probe h:cast hostile:e a a a "enum order column with the role's casts"
owner_probe h:keydomain hostile:kd Ka KA ka "key domain with the role's collation and check"
owner_probe h:opclass hostile:oc Ka KA ka "key with an operator class of the role's functions"

# ---------------------------------------------------------------------------------------------
# The same through sequin.staging: the role has INSERT on sequin.staging (and its sequence)
# and owns the target. Immediate: each INSERT applies its record.
staging_probe() { # id collection prefix description [role]
    local id=$1 c=$2 k=$3 role=${5:-$owner} out=$work/$1.out sql r
    sql="SET hostile.probe = '$id';"
    for r in "$k-a 5" "$k-a 6 d" "$k-a 3" "$k-g 7 d" "$k-g 4" "$k-g 8" "$k-c 5" "$k-c 4"; do
        # shellcheck disable=SC2086
        sql+=$'\n'"INSERT INTO sequin.staging (record) VALUES ('$(hrec "$c" $r)');"
    done
    su -c "ALTER ROLE $owner NOSUPERUSER" -c "TRUNCATE hostile.log" >/dev/null
    as "$role" >"$out" 2>&1 <<<"$sql"
    staging_state "$id" "$c" "$k" "$4"
    who_checks "$id" "$out" "$role" "$role" "$4"
}
staging_state() { # id collection prefix description
    local tbl=hostile.${2#hostile:}
    check "$1:state" "$4: deleted key stays deleted, absent-key tombstone blocks the older record, nothing failed" \
        "a=absent g=v8 c=v5 failed=0 pending=0" \
        "$(su -c "SELECT 'a=' || coalesce((SELECT 'v' || ltrim(format('%s', v), 'v') FROM $tbl WHERE id = '$3-a'), 'absent')
                      || ' g=' || coalesce((SELECT 'v' || ltrim(format('%s', v), 'v') FROM $tbl WHERE id = '$3-g'), 'absent')
                      || ' c=' || coalesce((SELECT 'v' || ltrim(format('%s', v), 'v') FROM $tbl WHERE id = '$3-c'), 'absent')
                      || ' failed=' || (SELECT count(*) FROM sequin.staging WHERE record->>'collection_id' = '$2' AND record->>'id' LIKE '$3-%' AND status = 'failed')
                      || ' pending=' || (SELECT count(*) FROM sequin.staging WHERE record->>'collection_id' = '$2' AND record->>'id' LIKE '$3-%' AND status = 'pending')")"
}
staging_probe s:domain hostile:t si "staging, immediate: domain order column, check, default, triggers"
staging_probe s:cast hostile:e si "staging, immediate: enum order column with the role's casts"
# Another role that has INSERT on sequin.staging (and its sequence) and the rights on the
# target the README asks for (SELECT, INSERT, UPDATE, DELETE): the owner's code runs as it.
staging_probe t:domain hostile:t st "staging by another role, immediate: domain order column, check, default, triggers" $stager
staging_probe t:cast hostile:e st "staging by another role, immediate: enum order column with the role's casts" $stager

# Deferred: the role stages, another role runs apply_staging; the records apply with the
# inserting role's rights, so the role's code runs as the role (the session is the drainer's).
# Drained by a superuser, and by a non-superuser worker that may write the targets.
deferred_probe() { # id collection prefix drainer description
    local id=$1 c=$2 k=$3 drainer=$4 out=$work/$1.out round r sql
    su -c "ALTER ROLE $owner NOSUPERUSER" -c "TRUNCATE hostile.log" >/dev/null
    : >"$out"
    for round in "$k-a 5|$k-c 5" "$k-a 6 d|$k-g 7 d" "$k-a 3|$k-g 4|$k-c 4" "$k-g 8"; do
        sql="SET sequin.apply_mode = deferred;"
        while IFS= read -r r; do
            # shellcheck disable=SC2086
            sql+=$'\n'"INSERT INTO sequin.staging (record) VALUES ('$(hrec "$c" $r)');"
        done < <(tr '|' '\n' <<<"$round")
        as $owner >>"$out" 2>&1 <<<"$sql"
        as "$drainer" -c "SET hostile.probe = '$id'" -c "SELECT * FROM sequin.apply_staging()" >>"$out" 2>&1
    done
    staging_state "$id" "$c" "$k" "$5"
    who_checks "$id" "$out" $owner "$drainer" "$5"
}
deferred_probe d:domain hostile:t sd postgres "staging, deferred, applied by a superuser: domain order column, check, default, triggers"
deferred_probe d:cast hostile:e sd postgres "staging, deferred, applied by a superuser: enum order column with the role's casts"
deferred_probe w:domain hostile:t sw $drain "staging, deferred, applied by a worker role: domain order column, check, default, triggers"
deferred_probe w:cast hostile:e sw $drain "staging, deferred, applied by a worker role: enum order column with the role's casts"

# ---------------------------------------------------------------------------------------------
# Row-level security: tenant A and tenant B share the key space of tenancy.docs, each sees
# only its own rows.
drec() { printf '{"collection_id": "docs", "id": "%s", "updated_idx": %s, "data": {"p": "x"}%s}' "$1" "$2" "${3:+, \"deleted\": true}"; }
tup() { as "$1" -c "SELECT hx.up('$2')" 2>&1; }
check r:setup "tenant B inserts b9 and b7 at 1" "1/0/0/0 1/0/0/0" "$(tup $tb "$(drec b9 1)") $(tup $tb "$(drec b7 1)")"
# A deletes b9, which only B can see: for A the row is absent, like a key nobody has.
check r:a-delete-hidden "tenant A's delete of B's b9 at 1000000 counts like the delete of a key nobody has" \
    "0/0/0/1 0/0/0/1" "$(tup $ta "$(drec b9 1000000 d)") $(tup $ta "$(drec nobody 1000000 d)")"
check r:b9-still-there "B's b9 is still there after A's delete" "b9 1 $tb" \
    "$(su -c "SELECT id || ' ' || v || ' ' || tenant FROM tenancy.docs WHERE id = 'b9'")"
check r:b-applies "B's later record for b9 at 2 still applies after A's tombstone" "0/1/0/0 v=2" \
    "$(tup $tb "$(drec b9 2)") v=$(su -c "SELECT v FROM tenancy.docs WHERE id = 'b9'")"
check r:b-deletes "B's delete of b9 at 3 still applies after A's tombstone" "0/0/1/0 absent" \
    "$(tup $tb "$(drec b9 3 d)") $(su -c "SELECT coalesce((SELECT 'v=' || v FROM tenancy.docs WHERE id = 'b9'), 'absent')")"
check r:b-reinserts "B's record for b9 at 4, after B's own delete at 3, inserts (A's tombstone at 1000000 binds only A)" \
    "1/0/0/0 v=4" "$(tup $tb "$(drec b9 4)") v=$(su -c "SELECT v FROM tenancy.docs WHERE id = 'b9'")"
check r:a-own-tombstone "A's own tombstone binds A: A deletes absent a5 at 100, A's a5 at 50 is skipped" "0/0/0/1 0/0/0/1" \
    "$(tup $ta "$(drec a5 100 d)") $(tup $ta "$(drec a5 50)")"
# The probe: B deletes b7 at 50. A sends b7 at 10, then at 100. A key that nobody ever had
# (n7) gets the same two records. A may not tell the two apart.
check r:b-deletes-b7 "B deletes b7 at 50" 0/0/1/0 "$(tup $tb "$(drec b7 50 d)")"
probe_deleted="$(tup $ta "$(drec b7 10)") $(tup $ta "$(drec b7 100)")"
probe_never="$(tup $ta "$(drec n7 10)") $(tup $ta "$(drec n7 100)")"
check r:probe-never "A's records at 10 and 100 for a key nobody had: inserted, then updated" "1/0/0/0 0/1/0/0" "$probe_never"
check r:probe-deleted "A's records at 10 and 100 for b7, deleted by B at 50, count as for a key nobody had" \
    "$probe_never" "$probe_deleted"
# For the report: what A sees for a key B holds (PostgreSQL itself reveals that one, through
# the unique index), and what sequin.stats shows A of B's work.
echo "# note: tenant A's record for b-held key: $(tup $tb "$(drec bheld 1)" >/dev/null; tup $ta "$(drec bheld 5)")"
echo "# note: tenant B's first record for a key tenant A deleted while nobody had it: $(tup $ta "$(drec ghost9 100 d)" >/dev/null; tup $tb "$(drec ghost9 1)")"
echo "# note: sequin.stats for 'docs' as tenant A: $(as $ta -c "SELECT inserted || '/' || updated || '/' || deleted || '/' || skipped FROM sequin.stats WHERE collection_id = 'docs'" 2>&1)"

# sequin.stats shows a collection only to roles that may SELECT its target.
check s:stats-hidden "sequin.stats hides 'docs' from a role without SELECT on tenancy.docs (the drainer)" "0" \
    "$(as $drain -c "SELECT count(*) FROM sequin.stats WHERE collection_id = 'docs'" 2>&1)"
check s:stats-shown "sequin.stats shows 'docs' to a tenant that may SELECT tenancy.docs" "1" \
    "$(as $ta -c "SELECT count(*) FROM sequin.stats WHERE collection_id = 'docs'" 2>&1)"

PGOPTIONS='-c client_min_messages=warning' psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null
for r in $owner $ta $tb $drain $stager; do
    psql_q -d postgres -c "DROP ROLE IF EXISTS $r" >/dev/null || echo "# could not drop role $r"
done
tap_done
