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

-- Staged records apply with the rights of the role that staged them (staged_by, filled by
-- the trigger whatever the inserter writes). A role that may only insert into staging cannot
-- make its record land in a table it has no rights on, even when a superuser drains it.
-- In a transaction rolled back at the end: the roles and grants leave nothing behind.
BEGIN;
CALL public.create_role_once('stg_sender');
CALL public.create_role_once('stg_gone');
GRANT INSERT (record) ON sequin.staging TO stg_sender, stg_gone;
GRANT USAGE ON SEQUENCE sequin.staging_id_seq TO stg_sender, stg_gone;
CREATE TABLE stg.private (id text PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('stg:private', 'stg.private', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
SET ROLE stg_sender;
SET sequin.apply_mode = deferred;
INSERT INTO sequin.staging (record) VALUES ('{"id": "p1", "collection_id": "stg:private", "updated_idx": 1}');
-- It cannot name another role: no privilege on the column (and the trigger overwrites it).
SELECT try($$INSERT INTO sequin.staging (record, staged_by) VALUES ('{"id": "p2", "collection_id": "stg:private", "updated_idx": 1}', 'postgres')$$);
RESET sequin.apply_mode;
-- Immediately, too, its record applies with its own rights: it fails and stays, marked as its.
INSERT INTO sequin.staging (record) VALUES ('{"id": "p3", "collection_id": "stg:private", "updated_idx": 1}');
RESET ROLE;
SELECT record->>'id' AS id, status, staged_by, left(regexp_replace(error, '(row|record) [0-9]+', '\1 N'), 72) AS error FROM sequin.staging
 WHERE record->>'collection_id' = 'stg:private' ORDER BY id;
SELECT failed, inserted FROM sequin.apply_staging(retry_failed => true);
SELECT record->>'id' AS id, status, staged_by, left(regexp_replace(error, '(row|record) [0-9]+', '\1 N'), 72) AS error FROM sequin.staging
 WHERE record->>'collection_id' = 'stg:private' ORDER BY id;
SELECT count(*) AS landed FROM stg.private;
-- Granted the rights, the same rows land when drained again.
GRANT USAGE ON SCHEMA stg TO stg_sender;
GRANT SELECT, INSERT, UPDATE ON stg.private TO stg_sender;
SELECT failed, inserted FROM sequin.apply_staging(retry_failed => true);
SELECT id FROM stg.private ORDER BY id;
-- A row whose role no longer exists fails, and stays.
SET ROLE stg_gone;
SET sequin.apply_mode = deferred;
INSERT INTO sequin.staging (record) VALUES ('{"id": "g1", "collection_id": "stg:private", "updated_idx": 1}');
RESET sequin.apply_mode;
RESET ROLE;
REVOKE ALL ON sequin.staging FROM stg_gone;
REVOKE ALL ON SEQUENCE sequin.staging_id_seq FROM stg_gone;
DROP ROLE stg_gone;
SELECT failed FROM sequin.apply_staging();
SELECT status, error FROM sequin.staging WHERE record->>'id' = 'g1';
-- A row staged before 0.4.0 (no role recorded) is applied only by the staging table's owner.
ALTER TABLE sequin.staging DISABLE TRIGGER guard_sender; -- as 0.3.0 left it
UPDATE sequin.staging SET staged_by = NULL, status = 'pending' WHERE record->>'id' = 'g1';
ALTER TABLE sequin.staging ENABLE TRIGGER guard_sender;
CALL public.create_role_once('stg_drain');
GRANT EXECUTE ON FUNCTION sequin.apply_staging(int, boolean) TO stg_drain;
SET ROLE stg_drain;
SELECT failed FROM sequin.apply_staging();
RESET ROLE;
SELECT status, error FROM sequin.staging WHERE record->>'id' = 'g1';
SELECT inserted FROM sequin.apply_staging(retry_failed => true);
SELECT id FROM stg.private ORDER BY id;
ROLLBACK;

-- A staged record's error keeps the error's detail and hint.
INSERT INTO sequin.staging (record) VALUES ('{"id": "h1", "collection_id": "stg:no_such_collection"}');
SELECT error FROM sequin.staging WHERE record->>'id' = 'h1';

-- A staged row's role cannot be changed by an UPDATE, and whoever edits its record becomes
-- its sender (rolled back: the roles and grants leave nothing behind).
BEGIN;
CALL public.create_role_once('stg_editor');
GRANT SELECT, INSERT (record), UPDATE ON sequin.staging TO stg_editor;
GRANT USAGE ON SEQUENCE sequin.staging_id_seq TO stg_editor;
SET sequin.apply_mode = deferred;
INSERT INTO sequin.staging (record) VALUES ('{"id": "e1", "collection_id": "stg", "updated_idx": 1, "data": {"n": 1}}');
SET ROLE stg_editor;
SELECT try($$UPDATE sequin.staging SET staged_by = 'stg_editor' WHERE record->>'id' = 'e1'$$);
UPDATE sequin.staging SET record = record || '{"data": {"n": 2}}' WHERE record->>'id' = 'e1';
RESET ROLE;
RESET sequin.apply_mode;
SELECT record->'data'->>'n' AS n, staged_by FROM sequin.staging WHERE record->>'id' = 'e1';
-- An edit jsonb holds equal (5 and 5.000) is an edit too: a text column tells them apart.
RESET ROLE;
UPDATE sequin.staging SET record = record || '{"data": {"n": 5}}' WHERE record->>'id' = 'e1';
SET ROLE stg_editor;
UPDATE sequin.staging SET record = record || '{"data": {"n": 5.000}}' WHERE record->>'id' = 'e1';
RESET ROLE;
SELECT record->'data'->>'n' AS n, staged_by FROM sequin.staging WHERE record->>'id' = 'e1';
ROLLBACK;

-- The queue's own trigger functions serve sequin.staging only: a role cannot attach them to
-- a table of its own to write into the queue as its owner, and on another table they refuse.
BEGIN;
CALL public.create_role_once('stg_eve');
GRANT USAGE, CREATE ON SCHEMA stg TO stg_eve;
SET ROLE stg_eve;
CREATE TABLE stg.fake (id bigint PRIMARY KEY, record jsonb, staged_by name, status text DEFAULT 'pending');
SELECT try($$CREATE TRIGGER a BEFORE INSERT ON stg.fake FOR EACH ROW EXECUTE FUNCTION sequin._staging_capture()$$);
RESET ROLE;
CREATE TRIGGER a BEFORE INSERT ON stg.fake FOR EACH ROW EXECUTE FUNCTION sequin._staging_capture();
SELECT try($$INSERT INTO stg.fake (id, record) VALUES (6528, '{"id": "x", "collection_id": "stg", "updated_idx": 1}')$$);
ROLLBACK;

-- A record superseded by a later one of its key that fails is applied after all, as it
-- would be sent one by one: nothing is lost.
INSERT INTO sequin.staging (record) VALUES
    ('{"id": "s1", "collection_id": "stg", "updated_idx": 1, "data": {"n": 1}}'),
    ('{"id": "s1", "collection_id": "stg", "updated_idx": 3, "data": {"n": "bad"}}'),
    ('{"id": "s1", "collection_id": "stg", "updated_idx": 2, "data": {"n": 2}}');
SELECT id, n, v FROM stg.t WHERE id = 's1';
SELECT record->>'updated_idx' AS failed_version FROM sequin.staging WHERE record->>'id' = 's1';
