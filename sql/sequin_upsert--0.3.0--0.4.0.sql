-- sequin_upsert 0.3.0 -> 0.4.0: staged records applied with the rights of the role that
-- staged them; sequin.stats shows what its reader may see; staged rows are dumped.
\echo Use "ALTER EXTENSION sequin_upsert UPDATE TO '0.4.0'" to load this file. \quit

-- The role that inserted a staged row, filled by the capture trigger (whatever the inserter
-- wrote there): apply_staging() applies each row as that role, so a role that may only
-- insert into staging cannot make its records land with the draining role's rights. A name,
-- not a regrole: a restore needs no such role (a row whose role is gone fails). Rows staged
-- before 0.4.0 have none: only the staging table's owner applies them.
ALTER TABLE sequin.staging ADD COLUMN staged_by name;

-- A staged row's record and role change only together: whoever edits a record (to fix a
-- failed one, say) becomes its sender, and a role cannot be named by an UPDATE.
CREATE FUNCTION sequin._staging_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- As text: jsonb's equality holds 5 and 5.000 equal, which a text column tells apart.
    IF NEW.record::text IS DISTINCT FROM OLD.record::text THEN
        NEW.staged_by := current_user;
    ELSIF NEW.staged_by IS DISTINCT FROM OLD.staged_by THEN
        RAISE EXCEPTION 'sequin.staging.staged_by is set by the extension: it names the role that staged (or last edited) the record'
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER guard_sender BEFORE UPDATE ON sequin.staging
    FOR EACH ROW EXECUTE FUNCTION sequin._staging_guard();

-- The queue's own trigger functions serve sequin.staging only (they also refuse any other
-- table): nobody else needs to attach them.
REVOKE ALL ON FUNCTION sequin._staging_capture() FROM PUBLIC;
REVOKE ALL ON FUNCTION sequin._staging_flush() FROM PUBLIC;
REVOKE ALL ON FUNCTION sequin._staging_guard() FROM PUBLIC;

-- Pending and failed records survive pg_dump and restore.
SELECT pg_catalog.pg_extension_config_dump('sequin.staging', '');
SELECT pg_catalog.pg_extension_config_dump('sequin.staging_id_seq', '');

-- A collection's counts are shown to whoever may read its target table, unmapped ones (seen
-- only in records that failed) to the counters' owner; the owner sees every row.
CREATE OR REPLACE VIEW sequin.stats AS
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
    ON c.collection_id = m.collection_id
 WHERE pg_catalog.has_table_privilege('sequin.stats_counters', 'SELECT')
    OR (m.target_table IS NOT NULL AND pg_catalog.has_table_privilege(m.target_table, 'SELECT'));
