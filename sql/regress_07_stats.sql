-- sequin.stats: per-collection counts since creation or reset; explain_mapping.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
SELECT sequin.reset_stats();
CREATE SCHEMA sts;
CREATE TABLE sts.t (id text PRIMARY KEY, n int, v bigint);
SELECT sequin.create_mapping('sts', 'sts.t', '{"id": "id", "n": "data.n", "v": "updated_idx"}', order_column => 'v');
SELECT * FROM sequin.stats WHERE collection_id = 'sts';
SELECT * FROM sequin.sequin_upsert('[{"id": "a", "collection_id": "sts", "updated_idx": 1},
                                     {"id": "b", "collection_id": "sts", "updated_idx": 1}]');
SELECT * FROM sequin.sequin_upsert('[{"id": "a", "collection_id": "sts", "updated_idx": 2},
                                     {"id": "b", "collection_id": "sts", "updated_idx": 1},
                                     {"id": "b", "collection_id": "sts", "updated_idx": 3, "deleted": true}]');
-- A failed call counts nothing; failed staging rows are counted.
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"id": "c", "collection_id": "sts", "updated_idx": 1, "data": {"n": "x"}}')$$);
INSERT INTO sequin.staging (record) VALUES ('{"id": "c", "collection_id": "sts", "updated_idx": 1, "data": {"n": "x"}}'),
                                           ('{"id": "d", "collection_id": "sts.unknown"}');
SELECT collection_id, inserted, updated, deleted, skipped, failed, last_applied IS NOT NULL AS applied
  FROM sequin.stats WHERE collection_id LIKE 'sts%' ORDER BY 1;
DELETE FROM sequin.staging;
-- Like PostgreSQL's statistics, counting is not transactional: a rolled-back call stays counted.
BEGIN;
SELECT * FROM sequin.sequin_upsert('{"id": "rolled-back", "collection_id": "sts", "updated_idx": 1}');
ROLLBACK;
SELECT inserted FROM sequin.stats WHERE collection_id = 'sts';
-- A call that fails counts nothing, not even the collections applied before the failing one
-- (collections are applied in the order of their names: 'sts' before 'sts~missing').
SELECT try($$SELECT * FROM sequin.sequin_upsert('[{"id": "f1", "collection_id": "sts", "updated_idx": 1},
                                                  {"id": "f2", "collection_id": "sts~missing", "updated_idx": 1}]')$$);
SELECT inserted FROM sequin.stats WHERE collection_id = 'sts';
-- Turned off, nothing is counted.
SET sequin.track_stats = off;
SELECT * FROM sequin.sequin_upsert('{"id": "e", "collection_id": "sts", "updated_idx": 1}');
RESET sequin.track_stats;
SELECT inserted FROM sequin.stats WHERE collection_id = 'sts';
-- Reset one collection or all.
SELECT sequin.reset_stats('sts');
SELECT collection_id, inserted, failed, last_applied FROM sequin.stats WHERE collection_id LIKE 'sts%' ORDER BY 1;
SELECT sequin.reset_stats();
SELECT count(*) AS counters_left FROM sequin.stats_counters;

-- explain_mapping shows every statement, who runs it, and its parameters.
SELECT step, runs_as, sql, parameters FROM sequin.explain_mapping('sts');
SELECT try($$SELECT * FROM sequin.explain_mapping('sts.unknown')$$);

-- sequin.stats shows a collection only to roles that may SELECT its target table (an
-- unmapped collection, only to the owner of the counters). Rolled back: nothing stays.
BEGIN;
CALL public.create_role_once('sts_reader');
GRANT USAGE ON SCHEMA sequin TO sts_reader;
SELECT * FROM sequin.sequin_upsert('{"id": "r1", "collection_id": "sts", "updated_idx": 1}');
SELECT count(*) AS rows_for_the_owner FROM sequin.stats WHERE collection_id = 'sts';
SET ROLE sts_reader;
SELECT count(*) AS rows_without_select FROM sequin.stats WHERE collection_id = 'sts';
RESET ROLE;
GRANT USAGE ON SCHEMA sts TO sts_reader;
GRANT SELECT ON sts.t TO sts_reader;
SET ROLE sts_reader;
SELECT collection_id, inserted > 0 AS counted FROM sequin.stats WHERE collection_id = 'sts';
RESET ROLE;
ROLLBACK;

-- A mapped collection_id of 10,000 characters is counted under its whole name, beside its
-- mapping (an unknown one from a record is counted under its first 200 bytes).
CREATE TABLE sts.long_name (id text PRIMARY KEY, v bigint);
SELECT sequin.create_mapping(repeat('c', 10000), 'sts.long_name', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
SELECT inserted FROM sequin.sequin_upsert(jsonb_build_object('id', 'a', 'collection_id', repeat('c', 10000), 'updated_idx', 1));
SELECT length(collection_id) AS name_length, inserted FROM sequin.stats WHERE collection_id LIKE 'ccc%';
