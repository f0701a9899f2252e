-- The SPEC's public interface: names, columns, types and defaults.
BEGIN;
CREATE EXTENSION sequin_upsert;
SELECT plan(30);
SELECT has_schema('sequin');
SELECT has_table('sequin', 'mappings', 'the mapping catalog exists');
SELECT columns_are('sequin', 'mappings', ARRAY['collection_id', 'target_table', 'columns',
    'conflict_columns', 'keep_on_conflict', 'order_column', 'on_delete', 'required',
    'parent', 'list_source', 'parent_key_columns']);
SELECT col_type_is('sequin', 'mappings', 'parent', 'text', 'mappings.parent: text');
SELECT fk_ok('sequin', 'mappings', 'parent', 'sequin', 'mappings', 'collection_id');
SELECT col_type_is('sequin', 'mappings', 'list_source', 'jsonb', 'mappings.list_source: jsonb (a source)');
SELECT col_type_is('sequin', 'mappings', 'parent_key_columns', 'text[]', 'mappings.parent_key_columns: text[]');
SELECT col_is_pk('sequin', 'mappings', 'collection_id', 'collection_id is the key');
SELECT col_type_is('sequin', 'mappings', 'target_table', 'regclass', 'mappings.target_table: regclass');
SELECT col_type_is('sequin', 'mappings', 'columns', 'jsonb', 'mappings.columns: jsonb');
SELECT col_type_is('sequin', 'mappings', 'keep_on_conflict', 'text[]', 'mappings.keep_on_conflict: text[]');
SELECT col_default_is('sequin', 'mappings', 'on_delete', 'delete', 'mappings.on_delete: delete');
SELECT has_table('sequin', 'staging', 'the staging queue exists');
SELECT columns_are('sequin', 'staging', ARRAY['id', 'record', 'received_at', 'status', 'error', 'attempts', 'staged_by']);
SELECT col_type_is('sequin', 'staging', 'staged_by', 'name', 'staging.staged_by: name (the role that staged the row)');
SELECT col_type_is('sequin', 'staging', 'id', 'bigint', 'staging.id: bigint');
SELECT col_default_is('sequin', 'staging', 'status', 'pending', 'staging.status: pending');
SELECT col_default_is('sequin', 'staging', 'attempts', '0', 'staging.attempts: 0');
SELECT has_table('sequin', 'tombstones', 'tombstones exist');
SELECT has_function('sequin', 'sequin_upsert', ARRAY['jsonb']);
SELECT has_function('sequin', 'apply_staging', ARRAY['integer', 'boolean']);
SELECT has_function('sequin', 'prune_tombstones', ARRAY['interval']);
SELECT has_function('sequin', 'explain_mapping', ARRAY['text']);
SELECT has_trigger('sequin', 'staging', 'apply_records', 'staging applies through a trigger');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'sequin_upsert'), false, 'not relocatable');
SELECT results_eq('SELECT * FROM sequin.sequin_upsert(NULL)', $$VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint)$$,
                  'NULL is an empty batch');
SELECT is((SELECT prosecdef FROM pg_proc WHERE proname = 'sequin_upsert'), false, 'runs with the caller''s rights');
SELECT has_view('sequin', 'stats', 'the stats view exists');
SELECT columns_are('sequin', 'stats', ARRAY['collection_id', 'inserted', 'updated', 'deleted', 'skipped', 'failed', 'last_applied']);
SELECT has_function('sequin', 'reset_stats', ARRAY['text']);
SELECT * FROM finish();
ROLLBACK;
