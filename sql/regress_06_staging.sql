-- Staging: records inserted into sequin.staging are applied by the inserting statement; a
-- failing record stays with its error, the others apply, and nothing is lost.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
CREATE SCHEMA stg;
CREATE TABLE stg.t (id text PRIMARY KEY, n int CHECK (n <> 13), v bigint);
SELECT sequin.create_mapping('stg', 'stg.t', '{"id": "id", "n": "data.n", "v": "updated_idx"}', order_column => 'v');

INSERT INTO sequin.staging (record) VALUES
  ('{"id": "a", "collection_id": "stg", "updated_idx": 2, "data": {"n": 1}}'),
  ('{"id": "b", "collection_id": "stg", "updated_idx": 1, "data": {"n": "one"}}'),
  ('{"id": "c", "collection_id": "stg", "updated_idx": 1, "data": {"n": 13}}'),
  ('{"id": "a", "collection_id": "stg", "updated_idx": 1, "data": {"n": 0}}'),
  ('{"id": "d", "collection_id": "nowhere"}'),
  ('"not an object"'),
  ('{"id": "e", "collection_id": "stg", "updated_idx": 1, "data": {"n": 5}}');
SELECT * FROM stg.t ORDER BY id;
SELECT record->>'id' AS id, status, error, attempts FROM sequin.staging ORDER BY id;

-- Fix the causes and retry the failed rows.
INSERT INTO sequin.mappings (collection_id, target_table, columns) VALUES ('nowhere', 'stg.t', '{"id": "id"}');
ALTER TABLE stg.t DROP CONSTRAINT t_n_check;
UPDATE sequin.staging SET record = jsonb_set(record, '{data,n}', '2') WHERE record->>'id' = 'b';
SELECT * FROM sequin.apply_staging(retry_failed => true);
SELECT record, status, attempts FROM sequin.staging ORDER BY id;
SELECT * FROM stg.t ORDER BY id;
DELETE FROM sequin.staging;

-- Deferred mode: rows wait for apply_staging(), in arrival order, max_rows at a time.
SET sequin.apply_mode = deferred;
INSERT INTO sequin.staging (record)
SELECT jsonb_build_object('id', 'k', 'collection_id', 'stg', 'updated_idx', i, 'data', jsonb_build_object('n', i))
  FROM generate_series(1, 5) AS i;
SELECT count(*) AS waiting FROM sequin.staging WHERE status = 'pending';
SELECT * FROM sequin.apply_staging(max_rows => 2);
SELECT * FROM stg.t WHERE id = 'k';
SELECT * FROM sequin.apply_staging();
SELECT * FROM stg.t WHERE id = 'k';
SELECT count(*) AS left_in_staging FROM sequin.staging;
RESET sequin.apply_mode;
SELECT try($$SET sequin.apply_mode = sometimes$$);

-- A rolled-back transaction applies nothing.
BEGIN;
INSERT INTO sequin.staging (record) VALUES ('{"id": "rb", "collection_id": "stg", "updated_idx": 1}');
SELECT count(*) AS inside FROM stg.t WHERE id = 'rb';
ROLLBACK;
SELECT count(*) AS after_rollback FROM stg.t WHERE id = 'rb';

-- The same trigger on a user's own table: rows stay, and a bad record aborts the statement.
CREATE TABLE stg.inbox (received serial, record jsonb);
CREATE TRIGGER apply AFTER INSERT ON stg.inbox REFERENCING NEW TABLE AS new_records
    FOR EACH STATEMENT EXECUTE FUNCTION sequin.staging_trigger();
INSERT INTO stg.inbox (record) VALUES ('{"id": "u1", "collection_id": "stg", "updated_idx": 1, "data": {"n": 7}}');
SELECT (SELECT count(*) FROM stg.inbox) AS inbox_rows, (SELECT n FROM stg.t WHERE id = 'u1') AS applied_n;
SELECT try($$INSERT INTO stg.inbox (record) VALUES ('{"id": "u2", "collection_id": "stg", "updated_idx": 1}'),
                                                   ('{"id": "u3", "collection_id": "stg", "updated_idx": 1, "data": {"n": "x"}}')$$);
SELECT count(*) AS inbox_rows FROM stg.inbox;
-- Attached the wrong way, it says how to attach it.
CREATE TABLE stg.wrong (record jsonb);
CREATE TRIGGER apply AFTER INSERT ON stg.wrong FOR EACH ROW EXECUTE FUNCTION sequin.staging_trigger();
SELECT try($$INSERT INTO stg.wrong VALUES ('{}')$$);
