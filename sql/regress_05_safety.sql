-- Quoting of every identifier, partitioned targets, target changes, caller's rights.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."select ""table""" (
    "Id" text PRIMARY KEY, "user name" text, "order" bigint, "x""y" int);
SELECT sequin.create_mapping('odd', '"Odd Schema"."select ""table"""',
    '{"Id": "id", "user name": ["data", "user.name"], "order": "updated_idx", "x\"y": "data.xy"}',
    order_column => 'order');
SELECT * FROM sequin.sequin_upsert('[{"id": "A", "collection_id": "odd", "updated_idx": 1,
    "data": {"user.name": "Robert''); DROP TABLE students;--", "xy": 3}}]');
SELECT * FROM "Odd Schema"."select ""table""";
SELECT * FROM sequin.sequin_upsert('{"id": "A", "collection_id": "odd", "updated_idx": 2, "deleted": true}');
SELECT count(*) FROM "Odd Schema"."select ""table""";

-- Partitioned target: rows are routed to partitions.
CREATE TABLE public.events (id bigint, kind text, v bigint, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE public.events_low PARTITION OF public.events FOR VALUES FROM (0) TO (100);
CREATE TABLE public.events_high PARTITION OF public.events FOR VALUES FROM (100) TO (MAXVALUE);
SELECT sequin.create_mapping('events', 'public.events', '{"id": "data.n", "kind": "data.kind", "v": "updated_idx"}',
                             order_column => 'v');
SELECT * FROM sequin.sequin_upsert('[{"collection_id": "events", "updated_idx": 1, "data": {"n": 5, "kind": "a"}},
                                     {"collection_id": "events", "updated_idx": 1, "data": {"n": 500, "kind": "b"}}]');
SELECT * FROM sequin.sequin_upsert('[{"collection_id": "events", "updated_idx": 2, "data": {"n": 5, "kind": "a2"}},
                                     {"collection_id": "events", "updated_idx": 0, "data": {"n": 500, "kind": "stale"}}]');
SELECT tableoid::regclass, * FROM public.events ORDER BY id;

-- Target changes: the cached mapping is rebuilt; a dropped or retyped column is a clear
-- error, never a write into the wrong column; an added column is harmless.
CREATE TABLE public.chg (id text PRIMARY KEY, a text, b int, v bigint);
SELECT sequin.create_mapping('chg', 'public.chg', '{"id": "id", "a": "data.a", "b": "data.b", "v": "updated_idx"}',
                             order_column => 'v');
SELECT * FROM sequin.sequin_upsert('{"id": "1", "collection_id": "chg", "updated_idx": 1, "data": {"a": "x", "b": 2}}');
ALTER TABLE public.chg ADD COLUMN extra text DEFAULT 'dflt';
SELECT * FROM sequin.sequin_upsert('{"id": "2", "collection_id": "chg", "updated_idx": 1, "data": {"a": "y", "b": 3}}');
ALTER TABLE public.chg ALTER COLUMN b TYPE numeric;
SELECT * FROM sequin.sequin_upsert('{"id": "3", "collection_id": "chg", "updated_idx": 1, "data": {"a": "z", "b": 4.5}}');
ALTER TABLE public.chg DROP COLUMN a;
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"id": "4", "collection_id": "chg", "updated_idx": 1, "data": {"a": "w", "b": 5}}')$$);
ALTER TABLE public.chg ADD COLUMN a text;
SELECT * FROM sequin.sequin_upsert('{"id": "4", "collection_id": "chg", "updated_idx": 1, "data": {"a": "w", "b": 5}}');
SELECT * FROM public.chg ORDER BY id;
-- A changed mapping is seen at once.
UPDATE sequin.mappings SET columns = columns - 'b' WHERE collection_id = 'chg';
SELECT * FROM sequin.sequin_upsert('{"id": "4", "collection_id": "chg", "updated_idx": 2, "data": {"a": "w2", "b": 99}}');
SELECT * FROM public.chg WHERE id = '4';

-- Caller's rights: privileges and row-level security of the caller apply; the
-- bookkeeping (tombstones) needs no grant.
CALL create_role_once('sequin_writer');
CREATE TABLE public.rls (id text PRIMARY KEY, owner text, v bigint);
ALTER TABLE public.rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON public.rls USING (owner = current_user) WITH CHECK (owner = current_user);
SELECT sequin.create_mapping('rls', 'public.rls', '{"id": "id", "owner": "data.owner", "v": "updated_idx"}',
                             order_column => 'v');
SET ROLE sequin_writer;
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"id": "r1", "collection_id": "rls", "updated_idx": 1, "data": {"owner": "sequin_writer"}}')$$);
RESET ROLE;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.rls TO sequin_writer;
SET ROLE sequin_writer;
SELECT * FROM sequin.sequin_upsert('{"id": "r1", "collection_id": "rls", "updated_idx": 1, "data": {"owner": "sequin_writer"}}');
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"id": "r2", "collection_id": "rls", "updated_idx": 1, "data": {"owner": "someone_else"}}')$$);
SELECT * FROM sequin.sequin_upsert('{"id": "r1", "collection_id": "rls", "updated_idx": 2, "deleted": true}');
SELECT try($$SELECT * FROM sequin.tombstones$$);
SELECT try($$INSERT INTO sequin.mappings (collection_id, target_table, columns) VALUES ('x', 'public.rls', '{"id": "id"}')$$);
RESET ROLE;
SELECT key, version FROM sequin.tombstones WHERE collection_id = 'rls';
DROP TABLE public.rls;
DROP ROLE sequin_writer;

-- Nested calls: sequin_upsert from a trigger of its own target. Failing at depth 12 costs
-- linear time; unbounded, the stack depth check stops it (54001), not a runaway.
CREATE SCHEMA safety;
CREATE TABLE safety.nest (id int PRIMARY KEY, depth int, v bigint);
SELECT sequin.create_mapping('safety:nest', 'safety.nest', '{"id": "data.id", "depth": "data.depth", "v": "updated_idx"}',
                             order_column => 'v');
CREATE FUNCTION safety.nest_again() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.depth >= current_setting('safety.nest_max')::int THEN
        RAISE EXCEPTION 'innermost at depth %', NEW.depth;
    END IF;
    PERFORM sequin.sequin_upsert(jsonb_build_object('id', 'n', 'collection_id', 'safety:nest',
        'updated_idx', 1, 'data', jsonb_build_object('id', NEW.id + 1, 'depth', NEW.depth + 1)));
    RETURN NEW;
END $$;
CREATE TRIGGER nest_again BEFORE INSERT ON safety.nest FOR EACH ROW EXECUTE FUNCTION safety.nest_again();
SET safety.nest_max = 12;
SELECT regexp_replace(try($$SELECT * FROM sequin.sequin_upsert('{"id": "n", "collection_id": "safety:nest", "updated_idx": 1, "data": {"id": 1, "depth": 0}}')$$),
                      '(record 0 \(id "n", collection_id "safety:nest"\): )+', '<record 0: nested> ') AS depth_12;
SET safety.nest_max = 1000000;
SELECT left(try($$SELECT * FROM sequin.sequin_upsert('{"id": "n", "collection_id": "safety:nest", "updated_idx": 1, "data": {"id": 1, "depth": 0}}')$$), 5) AS unbounded;
RESET safety.nest_max;
SELECT count(*) AS rows_left FROM safety.nest;
