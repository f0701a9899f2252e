-- sequin_upsert 0.2.0 -> 0.3.0: tombstones compared as typed values.
\echo Use "ALTER EXTENSION sequin_upsert UPDATE TO '0.3.0'" to load this file. \quit

-- Keys and versions stay text, but written under fixed settings (DateStyle ISO, TimeZone
-- UTC, IntervalStyle postgres, extra_float_digits 3), with the base types they are read
-- as. The extension finds a key's tombstones by (collection_id, key_hash), a hash that
-- agrees with the target's unique index, and compares them in C as typed values, with the
-- caller's rights: nothing of a user's types runs as the extension's owner. Several rows may
-- hold one key (say '1.0' and '1' of a numeric key): the newest version counts.
-- created_by (a role's name: a restore needs no such role) / binds_all: under row-level
-- security, a tombstone of a key its creator did not see binds only its creator.
-- key_signature: what the key meant when the tombstone was written (per key column its name,
-- base type, the unique index's operator family and collation): tombstones of another
-- meaning are refused, naming the mapping, rather than compared wrongly.
-- The rows of 0.2.0 are kept as they are: the first use of their mapping reads them with
-- its column types (DateStyle ISO, MDY) and writes them back in the new form. Nothing of
-- a user's runs here.
ALTER TABLE sequin.tombstones DROP CONSTRAINT tombstones_pkey;
ALTER TABLE sequin.tombstones
    ADD COLUMN key_hash bigint,
    ADD COLUMN key_types regtype[],
    ADD COLUMN version_type regtype,
    ADD COLUMN key_signature text,
    ADD COLUMN created_by name,
    ADD COLUMN binds_all boolean;
CREATE INDEX tombstones_lookup ON sequin.tombstones (collection_id, key_hash);
