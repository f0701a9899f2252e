-- sequin_upsert 0.1.0 -> 0.2.0: per-collection statistics; staging stores only the
-- records that fail.
\echo Use "ALTER EXTENSION sequin_upsert UPDATE TO '0.2.0'" to load this file. \quit

-- One row per collection and backend slot: each backend adds to its own rows, so
-- concurrent writers never wait on a shared counter. Written by the extension's code only.
-- Like PostgreSQL's own statistics, the counters are unlogged (they restart from zero
-- after a crash) and not transactional: a backend adds to its row in place, so counting
-- needs no transaction id and writes no WAL.
CREATE UNLOGGED TABLE sequin.stats_counters (
    collection_id text NOT NULL,
    backend_slot  int NOT NULL,
    inserted      bigint NOT NULL DEFAULT 0,
    updated       bigint NOT NULL DEFAULT 0,
    deleted       bigint NOT NULL DEFAULT 0,
    skipped       bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0,
    last_applied  timestamptz NOT NULL DEFAULT '-infinity', -- fixed width: updated in place
    PRIMARY KEY (collection_id, backend_slot)
) WITH (fillfactor = 50);
REVOKE ALL ON sequin.stats_counters FROM PUBLIC;

-- One row per collection (mapped, or seen in a record) since creation or the last reset.
CREATE VIEW sequin.stats AS
SELECT coalesce(m.collection_id, c.collection_id) AS collection_id,
       coalesce(c.inserted, 0) AS inserted, coalesce(c.updated, 0) AS updated,
       coalesce(c.deleted, 0) AS deleted, coalesce(c.skipped, 0) AS skipped,
       coalesce(c.failed, 0) AS failed, c.last_applied
  FROM sequin.mappings AS m
  FULL JOIN (SELECT collection_id, sum(inserted)::bigint AS inserted, sum(updated)::bigint AS updated,
                    sum(deleted)::bigint AS deleted, sum(skipped)::bigint AS skipped,
                    sum(failed)::bigint AS failed,
                    nullif(max(last_applied), '-infinity') AS last_applied
               FROM sequin.stats_counters GROUP BY collection_id) AS c
    ON c.collection_id = m.collection_id;
GRANT SELECT ON sequin.stats TO PUBLIC;

CREATE FUNCTION sequin.reset_stats(collection_id text DEFAULT NULL) RETURNS void
    LANGUAGE sql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM sequin.stats_counters AS c WHERE $1 IS NULL OR c.collection_id = $1
$$;
REVOKE ALL ON FUNCTION sequin.reset_stats(text) FROM PUBLIC;

-- Immediate mode captures records in a BEFORE row trigger and applies them at the end of
-- the statement (and every 10,000 records): a record that applies is never written to
-- sequin.staging; one that fails is stored as 'failed' with its error.
CREATE FUNCTION sequin._staging_capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'sequin_staging_capture' LANGUAGE C;
CREATE FUNCTION sequin._staging_flush() RETURNS trigger
    AS 'MODULE_PATHNAME', 'sequin_staging_flush' LANGUAGE C;
DROP TRIGGER apply_records ON sequin.staging;
CREATE TRIGGER capture_records BEFORE INSERT ON sequin.staging
    FOR EACH ROW EXECUTE FUNCTION sequin._staging_capture();
CREATE TRIGGER apply_records AFTER INSERT ON sequin.staging
    FOR EACH STATEMENT EXECUTE FUNCTION sequin._staging_flush();
-- apply_staging() reads the queue in id order: the primary key serves it.
DROP INDEX sequin.staging_waiting;
