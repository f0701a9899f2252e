-- The first slice: a mapping, one insert, one update that keeps a keep_on_conflict column,
-- the counts row, unknown collections, and errors crossing the C++ boundary.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
CREATE SCHEMA stripe;
CREATE TABLE stripe.subscriptions (
  id text PRIMARY KEY, upstream_id text, customer_id text, plan_id text, quantity integer,
  internal_id text, updated_idx bigint,
  upstream_updated_at timestamp, upstream_created_at timestamp,
  inserted_at timestamp NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now());

INSERT INTO sequin.mappings (collection_id, target_table, columns, keep_on_conflict, order_column)
VALUES ('stripe:subscription', 'stripe.subscriptions',
  '{"id": "id", "upstream_id": "upstream_id", "customer_id": "data.stripe_customer_id",
    "plan_id": "data.plan_id", "quantity": "data.quantity", "internal_id": "id",
    "updated_idx": "updated_idx", "upstream_created_at": "upstream_created_at",
    "upstream_updated_at": "upstream_updated_at", "updated_at": "$now"}',
  '{upstream_id}', 'updated_idx');
SELECT collection_id, target_table, conflict_columns, keep_on_conflict, order_column, on_delete, required
  FROM sequin.mappings;

-- NULL is an empty batch.
SELECT * FROM sequin.sequin_upsert(NULL);

-- One record: inserted, every value typed.
BEGIN;
SELECT * FROM sequin.sequin_upsert('{"id": "9f1c", "upstream_id": "sub_1NbX", "collection_id": "stripe:subscription",
  "data": {"stripe_customer_id": "cus_1", "plan_id": "plan_basic", "quantity": 3, "created": 1680000000},
  "deleted": false, "inserted_at": "2024-05-01T12:00:00Z", "provider": "stripe", "updated_idx": 12345,
  "upstream_created_at": "2024-04-01T10:00:00Z", "upstream_updated_at": "2024-05-01T11:59:00Z"}');
SELECT id, upstream_id, customer_id, plan_id, quantity, internal_id, updated_idx,
       upstream_updated_at, upstream_created_at, updated_at = (now() AT TIME ZONE 'UTC') AS updated_now
  FROM stripe.subscriptions;
COMMIT;

-- A newer version updates every mapped column except upstream_id (keep_on_conflict).
SELECT * FROM sequin.sequin_upsert('{"id": "9f1c", "upstream_id": "sub_CHANGED", "collection_id": "stripe:subscription",
  "data": {"stripe_customer_id": "cus_1", "plan_id": "plan_pro", "quantity": 5},
  "updated_idx": 12346, "upstream_created_at": "2024-04-01T10:00:00Z",
  "upstream_updated_at": "2024-05-02T08:00:00Z"}');
SELECT id, upstream_id, plan_id, quantity, updated_idx, upstream_updated_at FROM stripe.subscriptions;

-- Unknown collection: 42704, naming it and the record.
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"id": "r1", "collection_id": "stripe:nothing"}')$$);
-- Not an object or array.
SELECT try($$SELECT * FROM sequin.sequin_upsert('42')$$);
SELECT try($$SELECT * FROM sequin.sequin_upsert('[{"id": "r1", "collection_id": "stripe:subscription", "upstream_id": "u", "updated_idx": 1}, 7]')$$);
SELECT count(*) AS rows_after_failed_calls FROM stripe.subscriptions;

-- The boundary, server -> C++ -> SQL: a server error raised inside a guarded SPI call in
-- the C++ mapping cache (permission denied on the catalog) surfaces with its SQLSTATE and
-- message, and the session goes on.
CALL create_role_once('sequin_no_catalog');
GRANT USAGE ON SCHEMA stripe TO sequin_no_catalog;
REVOKE SELECT ON sequin.mappings FROM PUBLIC;
SET ROLE sequin_no_catalog;
SELECT try($$SELECT * FROM sequin.explain_mapping('stripe:subscription')$$);
SELECT try($$SELECT * FROM sequin.sequin_upsert('{"id": "x", "collection_id": "stripe:subscription"}')$$);
RESET ROLE;
GRANT SELECT ON sequin.mappings TO PUBLIC;
SELECT 'session still usable' AS after_error, count(*) FROM stripe.subscriptions;

-- C++ -> SQL: the mapping compiler's C++ exception becomes an ERROR with its SQLSTATE.
SELECT try($$INSERT INTO sequin.mappings (collection_id, target_table, columns)
             VALUES ('bad', 'stripe.subscriptions', '{"id": 42}')$$);
SELECT try($$INSERT INTO sequin.mappings (collection_id, target_table, columns)
             VALUES ('bad', 'stripe.subscriptions', '[]')$$);
SELECT count(*) AS bad_mappings_stored FROM sequin.mappings WHERE collection_id = 'bad';
REVOKE USAGE ON SCHEMA stripe FROM sequin_no_catalog;
DROP ROLE sequin_no_catalog;
