-- sequin_upsert 0.1.0: the mapping catalog, tombstones, staging and the SQL entry points.
\echo Use "CREATE EXTENSION sequin_upsert" to load this file. \quit

-- The mapping catalog: which table and columns each collection lands in.
CREATE TABLE sequin.mappings (
    collection_id    text PRIMARY KEY,
    target_table     regclass NOT NULL,
    columns          jsonb NOT NULL,
    conflict_columns text[],
    keep_on_conflict text[] NOT NULL DEFAULT '{}',
    order_column     text,
    on_delete        text NOT NULL DEFAULT 'delete',
    required         text[]
);
COMMENT ON TABLE sequin.mappings IS 'sequin_upsert: collection -> target table and column sources';
SELECT pg_catalog.pg_extension_config_dump('sequin.mappings', '');

CREATE FUNCTION sequin._validate_mapping() RETURNS trigger
    AS 'MODULE_PATHNAME', 'sequin_validate_mapping' LANGUAGE C;
CREATE TRIGGER validate BEFORE INSERT OR UPDATE ON sequin.mappings
    FOR EACH ROW EXECUTE FUNCTION sequin._validate_mapping();

CREATE FUNCTION sequin._mappings_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'sequin_mappings_changed' LANGUAGE C;
CREATE TRIGGER invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sequin.mappings
    FOR EACH STATEMENT EXECUTE FUNCTION sequin._mappings_changed();

-- Deleted keys and their versions, so that a late stale record cannot resurrect a row.
-- Only the extension's code reads and writes it (as the extension owner).
CREATE TABLE sequin.tombstones (
    collection_id text NOT NULL,
    key           text[] NOT NULL,
    version       text,
    deleted_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (collection_id, key)
);
SELECT pg_catalog.pg_extension_config_dump('sequin.tombstones', '');

-- The staging queue: rows inserted here are applied by the statement trigger below.
CREATE TABLE sequin.staging (
    id          bigserial PRIMARY KEY,
    record      jsonb NOT NULL,
    received_at timestamptz DEFAULT pg_catalog.now(),
    status      text DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    error       text,
    attempts    int DEFAULT 0
);
CREATE INDEX staging_waiting ON sequin.staging (status, id);

CREATE FUNCTION sequin.staging_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'sequin_staging_trigger' LANGUAGE C;
CREATE TRIGGER apply_records AFTER INSERT ON sequin.staging
    REFERENCING NEW TABLE AS new_records
    FOR EACH STATEMENT EXECUTE FUNCTION sequin.staging_trigger();

CREATE FUNCTION sequin.sequin_upsert(records jsonb)
    RETURNS TABLE (inserted bigint, updated bigint, deleted bigint, skipped bigint)
    AS 'MODULE_PATHNAME', 'sequin_upsert' LANGUAGE C VOLATILE SECURITY INVOKER ROWS 1;

CREATE FUNCTION sequin.apply_staging(max_rows int DEFAULT NULL, retry_failed boolean DEFAULT false)
    RETURNS TABLE (inserted bigint, updated bigint, deleted bigint, skipped bigint, failed bigint)
    AS 'MODULE_PATHNAME', 'sequin_apply_staging' LANGUAGE C VOLATILE SECURITY INVOKER ROWS 1;

CREATE FUNCTION sequin.explain_mapping(collection_id text)
    RETURNS TABLE (step text, runs_as text, sql text, parameters text[])
    AS 'MODULE_PATHNAME', 'sequin_explain_mapping' LANGUAGE C STABLE SECURITY INVOKER;

CREATE FUNCTION sequin.create_mapping(
    collection_id text, target_table regclass, columns jsonb,
    conflict_columns text[] DEFAULT NULL, keep_on_conflict text[] DEFAULT '{}',
    order_column text DEFAULT NULL, on_delete text DEFAULT 'delete', required text[] DEFAULT NULL)
    RETURNS void LANGUAGE sql SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO sequin.mappings AS m (collection_id, target_table, columns, conflict_columns,
                                      keep_on_conflict, order_column, on_delete, required)
    VALUES ($1, $2, $3, $4, coalesce($5, '{}'), $6, coalesce($7, 'delete'), $8)
    ON CONFLICT ON CONSTRAINT mappings_pkey DO UPDATE
       SET target_table = EXCLUDED.target_table, columns = EXCLUDED.columns,
           conflict_columns = EXCLUDED.conflict_columns,
           keep_on_conflict = EXCLUDED.keep_on_conflict, order_column = EXCLUDED.order_column,
           on_delete = EXCLUDED.on_delete, required = EXCLUDED.required
$$;

CREATE FUNCTION sequin.prune_tombstones(older_than interval) RETURNS bigint
    LANGUAGE sql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
    WITH pruned AS (DELETE FROM sequin.tombstones WHERE deleted_at < now() - $1 RETURNING 1)
    SELECT count(*) FROM pruned
$$;

-- Privileges: anyone may read the catalog; only its owner changes it. The bookkeeping
-- tables are reached through the extension's code only.
GRANT USAGE ON SCHEMA sequin TO PUBLIC;
GRANT SELECT ON sequin.mappings TO PUBLIC;
REVOKE ALL ON sequin.tombstones FROM PUBLIC;
REVOKE ALL ON FUNCTION sequin.apply_staging(int, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION sequin.prune_tombstones(interval) FROM PUBLIC;
