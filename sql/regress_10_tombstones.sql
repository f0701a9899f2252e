-- A delete is final: tombstone keys are equal when the target's unique index says so, and
-- versions compare by the order column's type, whatever the session's settings; the
-- extension's bookkeeping runs nothing of the target owner's with other rights.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
CREATE SCHEMA tomb;

-- A numeric key deleted as 1.0 binds a late record for 1 (and 1.00).
CREATE TABLE tomb.nums (n numeric PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('tomb.nums', 'tomb.nums', '{"n": "data.n", "v": "updated_idx"}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.nums", "data": {"n": 1.0}, "updated_idx": 5, "deleted": true}');
SELECT * FROM sequin.sequin_upsert('[{"collection_id": "tomb.nums", "data": {"n": 1}, "updated_idx": 3},
                                     {"collection_id": "tomb.nums", "data": {"n": 1.00}, "updated_idx": 4}]');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.nums", "data": {"n": 1}, "updated_idx": 6}');
SELECT n, v FROM tomb.nums;
-- In one call, 1.0 and 1 are one key: the newer wins, no "cannot affect row a second time".
SELECT * FROM sequin.sequin_upsert('[{"collection_id": "tomb.nums", "data": {"n": 2.0}, "updated_idx": 2},
                                     {"collection_id": "tomb.nums", "data": {"n": 2}, "updated_idx": 1}]');
SELECT n, v FROM tomb.nums WHERE n = 2;

-- A timestamptz key deleted under UTC binds the same instant sent from Berlin.
CREATE TABLE tomb.instants (at timestamptz PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('tomb.instants', 'tomb.instants', '{"at": "data.at", "v": "updated_idx"}', order_column => 'v');
SET TimeZone = 'UTC';
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.instants", "data": {"at": "2024-05-01 12:00:00"}, "updated_idx": 5, "deleted": true}');
SET TimeZone = 'Europe/Berlin';
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.instants", "data": {"at": "2024-05-01 14:00:00"}, "updated_idx": 3}');
SELECT count(*) AS resurrected FROM tomb.instants;
RESET TimeZone;

-- A timestamp order column: deleted at 2024-05-01 under SQL, MDY; a late record of
-- 2024-03-01 sent under SQL, DMY is older, and a record of 2024-06-01 newer.
CREATE TABLE tomb.dated (id text PRIMARY KEY, at timestamp);
SELECT sequin.create_mapping('tomb.dated', 'tomb.dated', '{"id": "id", "at": "data.at"}', order_column => 'at');
SET DateStyle = 'SQL, MDY';
SELECT * FROM sequin.sequin_upsert('{"id": "d", "collection_id": "tomb.dated", "data": {"at": "2024-05-01T00:00:00"}, "deleted": true}');
SET DateStyle = 'SQL, DMY';
SELECT * FROM sequin.sequin_upsert('{"id": "d", "collection_id": "tomb.dated", "data": {"at": "2024-03-01T00:00:00"}}');
SET extra_float_digits = 0;
SET IntervalStyle = 'sql_standard';
SELECT * FROM sequin.sequin_upsert('{"id": "d", "collection_id": "tomb.dated", "data": {"at": "2024-06-01T00:00:00"}}');
RESET DateStyle; RESET extra_float_digits; RESET IntervalStyle;
SELECT id, at FROM tomb.dated;

-- Keys equal under a case-insensitive collation of the unique index.
CREATE COLLATION tomb.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE tomb.names (name text COLLATE tomb.ci PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('tomb.names', 'tomb.names', '{"name": "data.name", "v": "updated_idx"}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.names", "data": {"name": "ABC"}, "updated_idx": 5, "deleted": true}');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.names", "data": {"name": "abc"}, "updated_idx": 3}');
SELECT * FROM sequin.sequin_upsert('[{"collection_id": "tomb.names", "data": {"name": "Xy"}, "updated_idx": 1},
                                     {"collection_id": "tomb.names", "data": {"name": "xY"}, "updated_idx": 2}]');
SELECT name, v FROM tomb.names;

-- An interval key: '1 day' and '24 hours' are equal for PostgreSQL's btree.
CREATE TABLE tomb.spans (span interval PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('tomb.spans', 'tomb.spans', '{"span": "data.span", "v": "updated_idx"}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.spans", "data": {"span": "1 day"}, "updated_idx": 5, "deleted": true}');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.spans", "data": {"span": "24 hours"}, "updated_idx": 3}');
SELECT count(*) AS resurrected FROM tomb.spans;

-- A replayed delete writes no second tombstone.
SELECT count(*) AS tombstones_before FROM sequin.tombstones WHERE collection_id = 'tomb.nums';
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.nums", "data": {"n": 1.0}, "updated_idx": 5, "deleted": true}');
SELECT count(*) AS tombstones_after FROM sequin.tombstones WHERE collection_id = 'tomb.nums';

-- A partitioned target: deletes look for racing inserts partition by partition.
CREATE TABLE tomb.parts (k int PRIMARY KEY, v int) PARTITION BY RANGE (k);
CREATE TABLE tomb.parts_a PARTITION OF tomb.parts FOR VALUES FROM (0) TO (1000);
CREATE TABLE tomb.parts_b (v int, k int NOT NULL);
ALTER TABLE tomb.parts ATTACH PARTITION tomb.parts_b FOR VALUES FROM (1000) TO (2000);
SELECT sequin.create_mapping('tomb.parts', 'tomb.parts', '{"k": "id", "v": "updated_idx"}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('[{"id": 2, "collection_id": "tomb.parts", "updated_idx": 1},
                                     {"id": 1500, "collection_id": "tomb.parts", "updated_idx": 1}]');
SELECT * FROM sequin.sequin_upsert('[{"id": 2, "collection_id": "tomb.parts", "updated_idx": 2, "deleted": true},
                                     {"id": 1500, "collection_id": "tomb.parts", "updated_idx": 2, "deleted": true},
                                     {"id": 1700, "collection_id": "tomb.parts", "updated_idx": 2, "deleted": true}]');
SELECT * FROM sequin.sequin_upsert('{"id": 1500, "collection_id": "tomb.parts", "updated_idx": 1}');
SELECT count(*) AS rows_left FROM tomb.parts;

-- A retyped order column: refused with the mapping and the column named.
CREATE TABLE tomb.retyped (id text PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('tomb.retyped', 'tomb.retyped', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('{"id": "r", "collection_id": "tomb.retyped", "updated_idx": 5, "deleted": true}');
ALTER TABLE tomb.retyped ALTER COLUMN v TYPE numeric;
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"id": "s", "collection_id": "tomb.retyped", "updated_idx": 7}')$$);
DELETE FROM sequin.tombstones WHERE collection_id = 'tomb.retyped';
SELECT * FROM sequin.sequin_upsert('{"id": "s", "collection_id": "tomb.retyped", "updated_idx": 7}');

-- The key means something else now (another key column, or another collation of the
-- unique index): the tombstones are refused, naming the mapping and both meanings.
CREATE TABLE tomb.rekeyed (a text UNIQUE, b text UNIQUE, v bigint);
SELECT sequin.create_mapping('tomb.rekeyed', 'tomb.rekeyed', '{"a": "data.a", "b": "data.b", "v": "updated_idx"}',
                             conflict_columns => '{a}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.rekeyed", "updated_idx": 10, "data": {"a": "X"}, "deleted": true}');
UPDATE sequin.mappings SET conflict_columns = '{b}' WHERE collection_id = 'tomb.rekeyed';
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.rekeyed", "updated_idx": 5, "data": {"a": "new", "b": "X"}}')$$);
CREATE TABLE tomb.recollated (k text COLLATE tomb.ci PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('tomb.recollated', 'tomb.recollated', '{"k": "data.k", "v": "updated_idx"}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.recollated", "updated_idx": 10, "data": {"k": "ABC"}, "deleted": true}');
ALTER TABLE tomb.recollated ALTER COLUMN k TYPE text COLLATE "C";
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.recollated", "updated_idx": 5, "data": {"k": "ABC"}}')$$);
SELECT count(*) AS resurrected FROM tomb.recollated;

-- A unique index whose collation differs from its column's: the statements compare with
-- the index's collation, so "ABC" updates and deletes the row stored as "abc".
CREATE TABLE tomb.indexed_ci (k text, v bigint, d text);
CREATE UNIQUE INDEX ON tomb.indexed_ci (k COLLATE tomb.ci);
SELECT sequin.create_mapping('tomb.indexed_ci', 'tomb.indexed_ci', '{"k": "data.k", "v": "updated_idx", "d": "data.d"}',
                             conflict_columns => '{k}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.indexed_ci", "updated_idx": 1, "data": {"k": "abc", "d": "v1"}}');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.indexed_ci", "updated_idx": 2, "data": {"k": "ABC", "d": "v2"}}');
SELECT k, v, d FROM tomb.indexed_ci;
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.indexed_ci", "updated_idx": 3, "data": {"k": "Abc"}, "deleted": true}');
SELECT count(*) AS rows_left FROM tomb.indexed_ci;

-- A tombstone that cannot be read any more (an enum value renamed): the error names the
-- mapping and says how to remove it.
CREATE TYPE tomb.grade AS ENUM ('a', 'b', 'c');
CREATE TABLE tomb.graded (k tomb.grade PRIMARY KEY, v tomb.grade);
SELECT sequin.create_mapping('tomb.graded', 'tomb.graded', '{"k": "data.k", "v": "data.v"}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.graded", "data": {"k": "a", "v": "b"}, "deleted": true}');
ALTER TYPE tomb.grade RENAME VALUE 'b' TO 'bb';
\set VERBOSITY default
SELECT * FROM sequin.sequin_upsert('{"collection_id": "tomb.graded", "data": {"k": "a", "v": "a"}}');
\set VERBOSITY terse

-- A non-superuser target owner's domain on the order column, and a trigger: their code
-- runs only as the caller, never as the extension's owner.
CALL create_role_once('tomb_owner');
GRANT USAGE, CREATE ON SCHEMA tomb TO tomb_owner;
GRANT USAGE ON SCHEMA sequin TO tomb_owner;
SET ROLE tomb_owner;
CREATE TABLE tomb.ran_as (who name, super boolean);
CREATE FUNCTION tomb.who(value bigint) RETURNS boolean LANGUAGE sql AS $$
    INSERT INTO tomb.ran_as SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
    SELECT value IS NOT NULL $$;
CREATE DOMAIN tomb.ver AS bigint CHECK (tomb.who(VALUE));
CREATE TABLE tomb.owned (id text PRIMARY KEY, v tomb.ver);
RESET ROLE;
SELECT sequin.create_mapping('tomb.owned', 'tomb.owned', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
SET ROLE tomb_owner;
SELECT * FROM sequin.sequin_upsert('{"id": "o", "collection_id": "tomb.owned", "updated_idx": 5, "deleted": true}');
SELECT * FROM sequin.sequin_upsert('{"id": "o", "collection_id": "tomb.owned", "updated_idx": 3}');
SELECT * FROM sequin.sequin_upsert('{"id": "o", "collection_id": "tomb.owned", "updated_idx": 9}');
SELECT DISTINCT who, super FROM tomb.ran_as;
RESET ROLE;

DROP SCHEMA tomb CASCADE;
DELETE FROM sequin.mappings WHERE collection_id LIKE 'tomb.%';
REVOKE USAGE ON SCHEMA sequin FROM tomb_owner;
DROP ROLE tomb_owner;
