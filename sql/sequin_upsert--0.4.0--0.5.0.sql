-- sequin_upsert 0.4.0 -> 0.5.0: child collections, lists inside a record landed in tables of
-- their own (README "Child collections").
\echo Use "ALTER EXTENSION sequin_upsert UPDATE TO '0.5.0'" to load this file. \quit

-- A child mapping names its parent mapping, where the list sits in the parent's record, and
-- which of its columns hold the parent's key. A parent cannot be deleted (or renamed) while
-- a child names it.
ALTER TABLE sequin.mappings
    ADD COLUMN parent text REFERENCES sequin.mappings (collection_id),
    ADD COLUMN list_source jsonb,
    ADD COLUMN parent_key_columns text[];
CREATE INDEX mappings_parent ON sequin.mappings (parent);

DROP FUNCTION sequin.create_mapping(text, regclass, jsonb, text[], text[], text, text, text[]);
CREATE FUNCTION sequin.create_mapping(
    collection_id text, target_table regclass, columns jsonb,
    conflict_columns text[] DEFAULT NULL, keep_on_conflict text[] DEFAULT '{}',
    order_column text DEFAULT NULL, on_delete text DEFAULT 'delete', required text[] DEFAULT NULL,
    parent text DEFAULT NULL, list_source jsonb DEFAULT NULL,
    parent_key_columns text[] DEFAULT NULL)
    RETURNS void LANGUAGE sql SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO sequin.mappings AS m (collection_id, target_table, columns, conflict_columns,
                                      keep_on_conflict, order_column, on_delete, required,
                                      parent, list_source, parent_key_columns)
    VALUES ($1, $2, $3, $4, coalesce($5, '{}'), $6, coalesce($7, 'delete'), $8, $9, $10, $11)
    ON CONFLICT ON CONSTRAINT mappings_pkey DO UPDATE
       SET target_table = EXCLUDED.target_table, columns = EXCLUDED.columns,
           conflict_columns = EXCLUDED.conflict_columns,
           keep_on_conflict = EXCLUDED.keep_on_conflict, order_column = EXCLUDED.order_column,
           on_delete = EXCLUDED.on_delete, required = EXCLUDED.required,
           parent = EXCLUDED.parent, list_source = EXCLUDED.list_source,
           parent_key_columns = EXCLUDED.parent_key_columns
$$;
