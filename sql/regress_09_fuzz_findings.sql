-- Cases the fuzz suite (test/suites/30_fuzz.sh) found; each crashed or misbehaved once.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
CREATE SCHEMA fz;
-- A key column left out of "required" is still needed: a record without it is an error.
CREATE TABLE fz.t (id text PRIMARY KEY, txt text);
SELECT sequin.create_mapping('fz:nokey', 'fz.t', '{"id": "id", "txt": "data.txt"}', required => '{}');
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"collection_id": "fz:nokey", "data": {"txt": "no id"}}')$$);
CREATE TABLE fz.u (k uuid PRIMARY KEY, v int);
SELECT sequin.create_mapping('fz:uuid', 'fz.u', '{"k": "id", "v": "updated_idx"}', order_column => 'v', required => '{v}');
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"collection_id": "fz:uuid", "updated_idx": 1}')$$);
-- More mapped columns than a function has arguments (100).
SELECT format('CREATE TABLE fz.wide (id text PRIMARY KEY, %s)', string_agg(format('c%s int', i), ', '))
  FROM generate_series(1, 110) i \gexec
SELECT sequin.create_mapping('fz:wide', 'fz.wide', jsonb_build_object('id', 'id') || jsonb_object_agg('c' || i, 'data.c' || i))
  FROM generate_series(1, 110) i;
SELECT * FROM sequin.sequin_upsert('{"collection_id": "fz:wide", "id": "w1", "data": {"c1": 1, "c110": 110}}');
SELECT c1, c2, c110 FROM fz.wide;
-- A composite column beside others (unnest would spread it over several columns).
CREATE TYPE fz.pair AS (a int, b text);
CREATE TABLE fz.p (id text PRIMARY KEY, p fz.pair, n int);
SELECT sequin.create_mapping('fz:pair', 'fz.p', '{"id": "id", "p": "data.p", "n": "data.n"}');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "fz:pair", "id": "x", "data": {"p": "(1,one)", "n": 5}}');
SELECT * FROM fz.p;
-- A deferrable unique constraint on the key cannot arbitrate ON CONFLICT: refused at once.
CREATE TABLE fz.d (k int PRIMARY KEY, v int, CONSTRAINT d_k UNIQUE (k) DEFERRABLE);
SELECT try($$SELECT sequin.create_mapping('fz:deferrable', 'fz.d', '{"k": "id", "v": "updated_idx"}')$$);
-- A number PostgreSQL accepts but a double cannot hold, where a source belongs.
SELECT try($$SELECT sequin.create_mapping('fz:big', 'fz.t', '{"id": "id", "txt": 1e400}')$$);
-- An unknown collection_id too long for an index: the record fails, staging keeps it, and
-- the statement goes on.
INSERT INTO sequin.staging (record)
SELECT jsonb_build_object('collection_id', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 100) i), 'id', 'k1');
SELECT status, length(record->>'collection_id') AS id_length, error LIKE 'staging row % (id "k1"%unknown collection%' AS named
  FROM sequin.staging;
SELECT length(collection_id) AS counted_under, failed FROM sequin.stats WHERE length(collection_id) > 100;
DELETE FROM sequin.staging;
