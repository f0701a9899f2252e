-- A looked-up chunk (one with deletes, or of a collection with tombstones) is written by one
-- MERGE in key order when the table still agrees with the look-up; otherwise run by run.
-- Either way the rows and the counts are those of applying the records one by one.
-- DEBUG1 says when a chunk was written run by run, and why.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
CREATE SCHEMA mw;
CREATE TABLE mw.t (id text PRIMARY KEY, n int CHECK (n <> 13), first_seen int, v bigint,
                   touched timestamptz);
SELECT sequin.create_mapping('mw', 'mw.t',
    '{"id": "id", "n": "data.n", "first_seen": "data.n", "v": "updated_idx", "touched": "$now"}',
    keep_on_conflict => '{first_seen}', order_column => 'v');
INSERT INTO mw.t (id, n, first_seen, v) VALUES ('a', 1, 1, 1), ('b', 1, 1, 1), ('c', 1, 1, 5), ('d', 1, 1, 1);
CREATE FUNCTION mw.batch(text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(jsonb_build_object('collection_id', 'mw', 'id', r[1], 'updated_idx', r[2]::int,
                                        'deleted', r[3] = 'x', 'data', jsonb_build_object('n', r[3])))
    FROM regexp_matches($1, '(\w+):(\d+):(\w+)', 'g') AS r $$;

-- Updates (a keeps first_seen), a delete (b), a stale update (c), an insert (e), a delete of
-- a key not stored (f): one MERGE, no DEBUG1 line.
SELECT * FROM sequin.sequin_upsert(mw.batch('a:2:7 b:2:x c:2:7 e:1:3 f:1:x'));
SET client_min_messages = debug1;
SELECT * FROM sequin.sequin_upsert(mw.batch('a:3:8 d:2:x e:2:4 g:1:5'));
RESET client_min_messages;
SELECT id, n, first_seen, v, touched IS NOT NULL AS touched FROM mw.t ORDER BY id;
-- A late record for a deleted key is skipped (b deleted at 2, d at 2).
SELECT * FROM sequin.sequin_upsert(mw.batch('b:1:9 d:1:9 h:1:1'));
SELECT id, n, v FROM mw.t WHERE id IN ('b', 'd', 'h') ORDER BY id;

-- A BEFORE trigger that drops a row: the MERGE writes fewer rows than the look-up expected,
-- and the chunk is written again run by run, counting the dropped record as skipped.
CREATE FUNCTION mw.drop_42() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.n = 42 THEN RETURN NULL; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER drop_42 BEFORE INSERT OR UPDATE ON mw.t FOR EACH ROW EXECUTE FUNCTION mw.drop_42();
SET client_min_messages = debug1;
SELECT * FROM sequin.sequin_upsert(mw.batch('a:4:42 e:3:9 i:1:42 g:2:x'));
RESET client_min_messages;
SELECT id, n, v FROM mw.t WHERE id IN ('a', 'e', 'g', 'i') ORDER BY id;
DROP TRIGGER drop_42 ON mw.t;

-- A record that fails (CHECK) fails the call, naming it; nothing of the chunk is written.
SELECT try($$SELECT * FROM sequin.sequin_upsert(mw.batch('a:5:13 e:4:1 h:2:x'))$$);
SELECT id, n, v FROM mw.t WHERE id IN ('a', 'e', 'h') ORDER BY id;
-- Staged, the bad record stays with its error and the others apply.
INSERT INTO sequin.staging (record)
    SELECT r FROM jsonb_array_elements(mw.batch('a:5:13 e:4:1 h:2:x')) AS r;
SELECT record->>'id' AS id, status, split_part(error, ' (detail', 1) AS error FROM sequin.staging ORDER BY id;
SELECT id, n, v FROM mw.t WHERE id IN ('a', 'e', 'h') ORDER BY id;
DELETE FROM sequin.staging;

-- A table MERGE cannot write (a rule on DELETE): run by run.
CREATE TABLE mw.ruled (id text PRIMARY KEY, v bigint);
CREATE TABLE mw.ruled_log (id text);
CREATE RULE log_delete AS ON DELETE TO mw.ruled DO ALSO INSERT INTO mw.ruled_log VALUES (OLD.id);
SELECT sequin.create_mapping('mw.ruled', 'mw.ruled', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('[{"collection_id": "mw.ruled", "id": "p", "updated_idx": 1},
                                     {"collection_id": "mw.ruled", "id": "q", "updated_idx": 1}]');
SET client_min_messages = debug1;
SELECT * FROM sequin.sequin_upsert('[{"collection_id": "mw.ruled", "id": "p", "updated_idx": 2, "deleted": true},
                                     {"collection_id": "mw.ruled", "id": "r", "updated_idx": 1}]');
RESET client_min_messages;
SELECT id, v FROM mw.ruled ORDER BY id;
SELECT id FROM mw.ruled_log ORDER BY id;

-- A role that may insert and update but not delete: chunks without deletes still take one
-- MERGE (without a DELETE action, which would need the privilege).
CALL create_role_once('mw_writer');
GRANT USAGE ON SCHEMA mw TO mw_writer;
GRANT SELECT, INSERT, UPDATE ON mw.t TO mw_writer;
SET ROLE mw_writer;
SET client_min_messages = debug1;
SELECT * FROM sequin.sequin_upsert(mw.batch('a:9:1 j:1:1'));
SELECT try($$SELECT * FROM sequin.sequin_upsert(mw.batch('a:10:1 j:2:x'))$$);
RESET client_min_messages;
RESET ROLE;
SELECT id, n, v FROM mw.t WHERE id IN ('a', 'j') ORDER BY id;

-- A trigger that deletes a row the look-up found (an adversary's probe): the MERGE finds the
-- table changed, and the runs count the record as the insert it became.
CREATE TABLE mw.trig (id int PRIMARY KEY, v bigint, s text);
SELECT sequin.create_mapping('mw.trig', 'mw.trig', '{"id": "id", "v": "updated_idx", "s": "data.s"}', order_column => 'v');
SELECT * FROM sequin.sequin_upsert('[{"collection_id": "mw.trig", "id": 5, "updated_idx": 1, "data": {"s": "a"}},
                                     {"collection_id": "mw.trig", "id": 3, "updated_idx": 1, "data": {"s": "a"}}]');
CREATE FUNCTION mw.drop_5() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 1 THEN DELETE FROM mw.trig WHERE id = 5; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER drop_5 BEFORE INSERT ON mw.trig FOR EACH ROW EXECUTE FUNCTION mw.drop_5();
SELECT * FROM sequin.sequin_upsert('[{"collection_id": "mw.trig", "id": 1, "updated_idx": 2, "data": {"s": "one"}},
                                     {"collection_id": "mw.trig", "id": 3, "updated_idx": 2, "deleted": true},
                                     {"collection_id": "mw.trig", "id": 5, "updated_idx": 2, "data": {"s": "five"}}]');
SELECT id, v, s FROM mw.trig ORDER BY id;

-- A table with inheritance children is refused: its unique key does not cover them.
CREATE TABLE mw.parent (id int PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('mw.parent', 'mw.parent', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
CREATE TABLE mw.child () INHERITS (mw.parent);
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"collection_id": "mw.parent", "id": 1, "updated_idx": 1}')$$);
SELECT try($$SELECT sequin.create_mapping('mw.parent2', 'mw.parent', '{"id": "id"}')$$);


-- A stale record whose values break a constraint, in a chunk written before it is looked up
-- (insert-first, after a chunk of new keys): INSERT meets the CHECK or NOT NULL before the
-- conflict, but the record is skipped as stale, as it would be sent alone.
CREATE TABLE mw.c (id text PRIMARY KEY, v bigint, n int CHECK (n >= 0), m text NOT NULL);
SELECT sequin.create_mapping('mw:c', 'mw.c', '{"id": "id", "v": "updated_idx", "n": "data.n", "m": "data.m"}',
    order_column => 'v');
CREATE FUNCTION mw.crecs(prefix text, v int, n int DEFAULT 1) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(jsonb_build_object('collection_id', 'mw:c', 'id', prefix || i, 'updated_idx', v,
                                        'data', jsonb_build_object('n', n, 'm', 'x')))
    FROM generate_series(1, 8) i $$;
SELECT * FROM sequin.sequin_upsert(mw.crecs('a', 10));
SELECT * FROM sequin.sequin_upsert(mw.crecs('b', 1));
SELECT * FROM sequin.sequin_upsert(mw.crecs('c', 1) || '[{"collection_id": "mw:c", "id": "a1", "updated_idx": 5, "data": {"n": -1, "m": "x"}}]');
SELECT * FROM sequin.sequin_upsert(mw.crecs('d', 1) || '[{"collection_id": "mw:c", "id": "a2", "updated_idx": 10, "data": {"n": 1}}]');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "mw:c", "id": "a3", "updated_idx": 4, "data": {"n": -1, "m": "x"}}');
-- A record that is not stale still fails, named.
SELECT try($$SELECT sequin.sequin_upsert(mw.crecs('e', 1) || '[{"collection_id": "mw:c", "id": "a4", "updated_idx": 11, "data": {"n": -1, "m": "x"}}]')$$);
SELECT count(*) AS rows, sum(n) AS n FROM mw.c;
DROP SCHEMA mw CASCADE;
DROP ROLE mw_writer;
