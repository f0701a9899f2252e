-- Ordering by order_column, duplicates in one call, deletes and tombstones.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
CREATE SCHEMA ord;
CREATE TABLE ord.t (id text PRIMARY KEY, name text, v bigint);
SELECT sequin.create_mapping('ord', 'ord.t', '{"id": "id", "name": "data.name", "v": "updated_idx"}',
                             order_column => 'v');
CREATE FUNCTION ord.rec(id text, v bigint, name text DEFAULT NULL, deleted boolean DEFAULT false)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('id', id, 'collection_id', 'ord', 'updated_idx', v,
                              'deleted', deleted, 'data', jsonb_build_object('name', name))
$$;

SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('a', 10, 'a10'), ord.rec('b', 10, 'b10')));
-- Stale and equal versions are skipped; a newer one applies.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('a', 9, 'a9'), ord.rec('b', 10, 'b10-again')));
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('a', 11, 'a11')));
SELECT * FROM ord.t ORDER BY id;
-- Replaying a batch changes nothing.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('a', 11, 'a11'), ord.rec('b', 10, 'b10')));
-- A stored NULL version is overwritten by any version.
UPDATE ord.t SET v = NULL WHERE id = 'b';
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('b', 1, 'b1')));
SELECT * FROM ord.t ORDER BY id;

-- Duplicates in one call apply in version order, whatever the array order; superseded
-- ones are skipped, and there is no "cannot affect row a second time".
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
    ord.rec('c', 3, 'c3'), ord.rec('c', 5, 'c5'), ord.rec('c', 4, 'c4'), ord.rec('c', 5, 'c5-dup')));
SELECT * FROM ord.t WHERE id = 'c';
-- A missing order value is an error (required by default).
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"id": "d", "collection_id": "ord"}')$$);

-- Deletes: guarded by version, leave a tombstone, and a late record does not resurrect.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('a', 10, deleted => true)));
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('a', 20, deleted => true)));
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('a', 15, 'a15-late')));
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('a', 20, 'a20-equal')));
SELECT * FROM ord.t ORDER BY id;
-- A newer record after the delete re-creates the row.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('a', 21, 'a21')));
-- A delete of an absent row is skipped but leaves a tombstone.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('zz', 7, deleted => true)));
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('zz', 6, 'zz6')));
SELECT collection_id, key, version FROM sequin.tombstones WHERE collection_id = 'ord' ORDER BY key;
-- A delete needs only the key and the order column: other values are not converted.
CREATE TABLE ord.typed (id text PRIMARY KEY, n int, v bigint);
SELECT sequin.create_mapping('ord:typed', 'ord.typed', '{"id": "id", "n": "data.n", "v": "updated_idx"}',
                             order_column => 'v');
SELECT * FROM sequin.sequin_upsert('[{"id": "x", "collection_id": "ord:typed", "updated_idx": 1, "data": {"n": 1}},
                                     {"id": "x", "collection_id": "ord:typed", "updated_idx": 2, "deleted": true, "data": {"n": "junk"}}]');
SELECT count(*) FROM ord.typed;
-- Mixed in one call: delete at 2 then re-create at 3 -> the row exists at 3.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.rec('m', 1, 'm1'), ord.rec('m', 2, deleted => true), ord.rec('m', 3, 'm3')));
SELECT * FROM ord.t WHERE id = 'm';
-- prune_tombstones removes old tombstones only.
UPDATE sequin.tombstones SET deleted_at = now() - interval '40 days' WHERE key = '{zz}';
SELECT sequin.prune_tombstones('30 days');
SELECT key FROM sequin.tombstones WHERE collection_id = 'ord' ORDER BY key;

-- on_delete = 'ignore' skips deletes; 'upsert' applies them as records (soft delete).
CREATE TABLE ord.soft (id text PRIMARY KEY, deleted boolean, v bigint);
SELECT sequin.create_mapping('ord:soft', 'ord.soft', '{"id": "id", "deleted": "deleted", "v": "updated_idx"}',
                             order_column => 'v', on_delete => 'upsert');
SELECT * FROM sequin.sequin_upsert('[{"id": "s", "collection_id": "ord:soft", "updated_idx": 1},
                                     {"id": "s", "collection_id": "ord:soft", "updated_idx": 2, "deleted": true}]');
SELECT * FROM ord.soft;
UPDATE sequin.mappings SET on_delete = 'ignore' WHERE collection_id = 'ord:soft';
SELECT * FROM sequin.sequin_upsert('[{"id": "s", "collection_id": "ord:soft", "updated_idx": 3, "deleted": true}]');
SELECT * FROM ord.soft;

-- Without an order column: array order, the last record for a key wins.
CREATE TABLE ord.plain (id text PRIMARY KEY, name text);
SELECT sequin.create_mapping('ord:plain', 'ord.plain', '{"id": "id", "name": "data.name"}');
SELECT * FROM sequin.sequin_upsert('[{"id": "p", "collection_id": "ord:plain", "data": {"name": "first"}},
                                     {"id": "p", "collection_id": "ord:plain", "data": {"name": "second"}},
                                     {"id": "q", "collection_id": "ord:plain", "data": {"name": "q"}}]');
SELECT * FROM ord.plain ORDER BY id;
SELECT * FROM sequin.sequin_upsert('[{"id": "p", "collection_id": "ord:plain", "deleted": true}]');
SELECT * FROM ord.plain ORDER BY id;

-- Batches larger than sequin.batch_size keep the same semantics across chunks.
SET sequin.batch_size = 3;
SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(ord.rec('k' || (i % 4), i, 'n' || i) ORDER BY i DESC)
                                      FROM generate_series(1, 10) AS i));
SELECT * FROM ord.t WHERE id LIKE 'k%' ORDER BY id;
RESET sequin.batch_size;

-- A call larger than sequin.batch_size is applied in key order across its chunks, and the
-- records of one key meet in one chunk: k1 at 1 and at 5 count as one insert and one
-- superseded record (skipped), whatever the batch size.
CREATE TABLE ord.chunks (id text PRIMARY KEY, name text, v bigint);
SELECT sequin.create_mapping('ord:chunks', 'ord.chunks', '{"id": "id", "name": "data.name", "v": "updated_idx"}',
                             order_column => 'v');
SET sequin.batch_size = 4;
SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(jsonb_build_object('id', id, 'collection_id', 'ord:chunks',
        'updated_idx', v, 'data', jsonb_build_object('name', id || '@' || v)) ORDER BY n)
    FROM (VALUES (1, 'k1', 1), (2, 'k2', 1), (3, 'k3', 1), (4, 'k4', 1),      -- new keys
                 (5, 'n1', 1), (6, 'n2', 1), (7, 'k1', 5), (8, 'k2', 0),      -- 2 new, 1 newer, 1 stale
                 (9, 'k3', 9), (10, 'k4', 1), (11, 'n1', 0), (12, 'z1', 1))   -- 1 newer, 1 equal, 1 stale, 1 new
         AS r(n, id, v)));
SELECT * FROM ord.chunks ORDER BY id;
-- After a chunk that updated stored keys the next chunk updates first (one UPDATE guarded
-- by the version; what it did not update is looked up): same counts.
SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(jsonb_build_object('id', id, 'collection_id', 'ord:chunks',
        'updated_idx', v, 'data', jsonb_build_object('name', id || '@' || v)) ORDER BY n)
    FROM (VALUES (1, 'k1', 10), (2, 'k2', 10), (3, 'k3', 10), (4, 'k4', 10),  -- all stored, newer
                 (5, 'n1', 10), (6, 'n2', 0), (7, 'z2', 1), (8, 'k1', 10),    -- newer, stale, new, equal
                 (9, 'z1', 5))                                                -- newer
         AS r(n, id, v)));
SELECT * FROM ord.chunks ORDER BY id;
-- The same through staging, where failures are isolated: an update-first chunk with a
-- record that violates a constraint, a delete, a new key and a stale record.
ALTER TABLE ord.chunks ADD CONSTRAINT name_not_evil CHECK (name NOT LIKE 'evil%');
INSERT INTO sequin.staging (record)
SELECT jsonb_build_object('id', id, 'collection_id', 'ord:chunks', 'updated_idx', v,
                          'deleted', d, 'data', jsonb_build_object('name', name))
FROM (VALUES (1, 'k1', 20, false, 'a'), (2, 'k2', 20, false, 'b'), (3, 'k3', 20, false, 'c'),
             (4, 'k4', 20, false, 'd'),                                  -- all stored, newer
             (5, 'n1', 20, false, 'evil'), (6, 'n2', 20, true, NULL),    -- fails, delete
             (7, 'z3', 1, false, 'new'), (8, 'k1', 19, false, 'stale'))  -- new, stale
     AS r(n, id, v, d, name)
ORDER BY n;
SELECT record->>'id' AS id, status, attempts, error ~ 'name_not_evil' AS names_constraint
FROM sequin.staging ORDER BY id;
SELECT * FROM ord.chunks ORDER BY id;
DELETE FROM sequin.staging;
RESET sequin.batch_size;

-- Errors are atomic: nothing of a failing call stays written.
SELECT try($$SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
    ord.rec('new1', 1, 'n'), '{"id": "bad", "collection_id": "ord:typed", "updated_idx": 1, "data": {"n": "x"}}'::jsonb))$$);
SELECT count(*) AS new1_rows FROM ord.t WHERE id = 'new1';
-- A constraint of the target violated in the write names the record.
ALTER TABLE ord.t ADD CONSTRAINT name_not_evil CHECK (name IS DISTINCT FROM 'evil');
SELECT try($$SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
    ord.rec('w1', 1, 'fine'), ord.rec('w2', 1, 'evil'), ord.rec('w3', 1, 'fine')))$$);
SELECT count(*) AS w_rows FROM ord.t WHERE id LIKE 'w%';

-- Counts add up to the records sent. Records without a version (the order column not
-- required) after a call of new keys: the new one inserted once, the stored one without a
-- version skipped (NULL is the oldest version), the newer one updated.
CREATE TABLE ord.nv (id text PRIMARY KEY, v bigint);
SELECT sequin.create_mapping('ord:nv', 'ord.nv', '{"id": "id", "v": "updated_idx"}', order_column => 'v',
                             required => '{id}');
SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(jsonb_build_object('id', 'k' || i, 'collection_id', 'ord:nv',
                                                                        'updated_idx', 1)) FROM generate_series(1, 10) AS i));
SELECT * FROM sequin.sequin_upsert('[{"id": "n1", "collection_id": "ord:nv"}, {"id": "k1", "collection_id": "ord:nv"},
                                     {"id": "k2", "collection_id": "ord:nv", "updated_idx": 2}]');
SELECT id, v FROM ord.nv WHERE id IN ('n1', 'k1', 'k2') ORDER BY id;
-- A BEFORE INSERT trigger of the target that returns NULL: those records count as skipped.
CREATE FUNCTION ord.skip_odd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN CASE WHEN NEW.id LIKE 'odd%' THEN NULL ELSE NEW END;
END $$;
CREATE TRIGGER skip_odd BEFORE INSERT ON ord.nv FOR EACH ROW EXECUTE FUNCTION ord.skip_odd();
SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(jsonb_build_object('id', CASE WHEN i % 2 = 1 THEN 'odd' ELSE 'even' END || i,
                                                                        'collection_id', 'ord:nv', 'updated_idx', 1))
                                      FROM generate_series(1, 10) AS i));
SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(jsonb_build_object('id', CASE WHEN i % 2 = 1 THEN 'odd' ELSE 'even' END || i,
                                                                        'collection_id', 'ord:nv', 'updated_idx', 2))
                                      FROM generate_series(1, 10) AS i));
SELECT count(*) FILTER (WHERE id LIKE 'even%') AS even_rows, count(*) FILTER (WHERE id LIKE 'odd%') AS odd_rows FROM ord.nv;

-- Duplicates in one call leave the row that sending them one by one in version order leaves
-- (the SPEC), keep_on_conflict columns included: the record that inserts the row gives them,
-- later ones keep them. b's record of version 1 comes second but inserts: first_seen B.
CREATE TABLE ord.keep (id text PRIMARY KEY, first_seen text, note text, v bigint);
SELECT sequin.create_mapping('ord:keep', 'ord.keep',
    '{"id": "id", "first_seen": "data.s", "note": "data.s", "v": "updated_idx"}',
    keep_on_conflict => '{first_seen}', order_column => 'v');
CREATE FUNCTION ord.krec(id text, v int, s text, deleted boolean DEFAULT false) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('id', id, 'collection_id', 'ord:keep', 'updated_idx', v, 'deleted', deleted,
                              'data', jsonb_build_object('s', s))
$$;
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.krec('a', 1, 'first'), ord.krec('a', 2, 'second')));
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.krec('b', 2, 'A'), ord.krec('b', 1, 'B'), ord.krec('b', 3, 'C')));
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.krec('c', 1, 'A'), ord.krec('c', 2, 'gone', true), ord.krec('c', 3, 'B')));
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.krec('d', 3, 'A'), ord.krec('d', 2, 'gone', true), ord.krec('d', 4, 'B')));
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ord.krec('a', 5, 'later'), ord.krec('a', 6, 'latest')));
SELECT id, first_seen, note, v FROM ord.keep ORDER BY id;
-- The same records one by one, in version order, give the same rows.
CREATE TABLE ord.keep_one (LIKE ord.keep INCLUDING ALL);
SELECT sequin.create_mapping('ord:keep_one', 'ord.keep_one',
    '{"id": "id", "first_seen": "data.s", "note": "data.s", "v": "updated_idx"}',
    keep_on_conflict => '{first_seen}', order_column => 'v');
SELECT count(*) FROM (SELECT * FROM (VALUES ('a', 1, 'first', false), ('a', 2, 'second', false), ('b', 2, 'A', false), ('b', 1, 'B', false),
                             ('b', 3, 'C', false), ('c', 1, 'A', false), ('c', 2, 'gone', true), ('c', 3, 'B', false),
                             ('d', 3, 'A', false), ('d', 2, 'gone', true), ('d', 4, 'B', false), ('a', 5, 'later', false),
                             ('a', 6, 'latest', false)) AS r(id, v, s, d) ORDER BY v, id) AS r,
     LATERAL sequin.sequin_upsert(ord.krec(r.id, r.v, r.s, r.d) || '{"collection_id": "ord:keep_one"}');
SELECT (SELECT array_agg(row(id, first_seen, note, v)::text ORDER BY id) FROM ord.keep)
     = (SELECT array_agg(row(id, first_seen, note, v)::text ORDER BY id) FROM ord.keep_one) AS same_rows;

-- Records without a version for one key in one call: the last wins, as one by one (a stored
-- NULL version is replaced by any record).
SELECT * FROM sequin.sequin_upsert('[{"id": "dn", "collection_id": "ord:nv"}, {"id": "dn", "collection_id": "ord:nv", "updated_idx": null}]');
SELECT * FROM sequin.sequin_upsert('[{"id": "dn", "collection_id": "ord:nv", "updated_idx": 4}, {"id": "dn", "collection_id": "ord:nv"}]');
SELECT id, v FROM ord.nv WHERE id = 'dn';
