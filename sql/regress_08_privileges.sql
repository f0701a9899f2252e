-- The privilege model: who reads and changes mappings, what a caller needs, no SECURITY
-- DEFINER, pinned search_path, and no hijacking through objects in public.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
SELECT p.proname, p.prosecdef AS security_definer,
       p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql') AS is_sql,
       p.proconfig
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sequin_upsert')
 ORDER BY 1;
SELECT c.relname, c.relacl FROM pg_class c
 WHERE c.relnamespace = 'sequin'::regnamespace AND c.relkind IN ('r', 'v') ORDER BY 1;
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_execute
  FROM pg_proc p WHERE p.pronamespace = 'sequin'::regnamespace AND p.proname NOT LIKE '\_%' ORDER BY 1;

-- Objects in public that shadow what the extension's statements use: with public first in
-- search_path, an unqualified statement would call them. The extension's do not.
CREATE SCHEMA hij;
CREATE TABLE hij.t (id text PRIMARY KEY, n int, v bigint, at timestamptz);
SELECT sequin.create_mapping('hij', 'hij.t', '{"id": "id", "n": "data.n", "v": "updated_idx", "at": "$now"}',
                             order_column => 'v');
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '1999-01-01'::timestamptz $$;
CREATE FUNCTION public.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE sql AS $$ SELECT NULL::anyelement WHERE false $$;
CREATE FUNCTION public.evil_lt(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR public.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.evil_lt);
CREATE FUNCTION public.evil_eq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.evil_eq);
SET search_path = public, pg_catalog;
SELECT * FROM sequin.sequin_upsert('[{"id": "a", "collection_id": "hij", "updated_idx": 2, "data": {"n": 1}}]');
SELECT * FROM sequin.sequin_upsert('[{"id": "a", "collection_id": "hij", "updated_idx": 1, "data": {"n": 99}}]');
SELECT * FROM sequin.sequin_upsert('[{"id": "a", "collection_id": "hij", "updated_idx": 3, "data": {"n": 3}}]');
SELECT id, n, v, at > '2000-01-01' AS real_now FROM hij.t;
SELECT sequin.prune_tombstones('1 day') >= 0 AS prune_ok;
RESET search_path;
DROP OPERATOR public.< (bigint, bigint);
DROP OPERATOR public.= (text, text);
DROP FUNCTION public.now(), public.unnest(anyarray), public.evil_lt(bigint, bigint), public.evil_eq(text, text);

-- Only the catalog's owner (or a role it grants to) may change mappings.
CALL create_role_once('sequin_reader');
CALL create_role_once('sequin_admin');
GRANT INSERT, UPDATE, DELETE ON sequin.mappings TO sequin_admin;
GRANT USAGE ON SCHEMA hij TO sequin_admin;
GRANT SELECT ON hij.t TO sequin_admin;
SET ROLE sequin_reader;
SELECT count(*) > 0 AS may_read_mappings FROM sequin.mappings;
SELECT try($$UPDATE sequin.mappings SET on_delete = 'ignore'$$);
SELECT try($$SELECT sequin.reset_stats()$$);
SELECT try($$SELECT * FROM sequin.apply_staging()$$);
SELECT try($$SELECT * FROM sequin.stats_counters$$);
SELECT count(*) >= 0 AS may_read_stats FROM sequin.stats;
SET ROLE sequin_admin;
SELECT try($$UPDATE sequin.mappings SET on_delete = 'ignore' WHERE collection_id = 'hij'$$);
RESET ROLE;
REVOKE ALL ON sequin.mappings FROM sequin_admin;
REVOKE ALL ON hij.t FROM sequin_admin;
REVOKE ALL ON SCHEMA hij FROM sequin_admin;
DROP ROLE sequin_reader;
DROP ROLE sequin_admin;

-- A sync role needs INSERT on sequin.staging (and its sequence) and its rights on the
-- targets; the staging bookkeeping (storing failures) needs nothing more.
CALL create_role_once('sequin_syncer');
CREATE SCHEMA pv;
CREATE TABLE pv.t (id text PRIMARY KEY, n int, v bigint);
SELECT sequin.create_mapping('pv', 'pv.t', '{"id": "id", "n": "data.n", "v": "updated_idx"}', order_column => 'v');
GRANT USAGE ON SCHEMA pv TO sequin_syncer;
GRANT SELECT, INSERT, UPDATE ON pv.t TO sequin_syncer;
GRANT INSERT ON sequin.staging TO sequin_syncer;
GRANT USAGE ON SEQUENCE sequin.staging_id_seq TO sequin_syncer;
SET ROLE sequin_syncer;
INSERT INTO sequin.staging (record) VALUES ('{"id": "p1", "collection_id": "pv", "updated_idx": 1, "data": {"n": 1}}'),
                                           ('{"id": "p2", "collection_id": "pv", "updated_idx": 1, "data": {"n": "x"}}');
SELECT try($$SELECT * FROM sequin.staging$$);
-- Deleting needs DELETE on the target, like any DELETE.
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"id": "p1", "collection_id": "pv", "updated_idx": 2, "deleted": true}')$$);
RESET ROLE;
SELECT * FROM pv.t;
SELECT record->>'id' AS id, status, error FROM sequin.staging WHERE record->>'collection_id' = 'pv';
DELETE FROM sequin.staging;
DROP SCHEMA pv CASCADE;
REVOKE ALL ON sequin.staging FROM sequin_syncer;
REVOKE ALL ON SEQUENCE sequin.staging_id_seq FROM sequin_syncer;
DROP ROLE sequin_syncer;
