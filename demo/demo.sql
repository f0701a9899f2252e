-- sequin_upsert demo: sample Stripe records in, typed rows out.
--
-- Run by demo/run from the repository root (psql -v ON_ERROR_STOP=1 -f demo/demo.sql in a
-- fresh database); the \copy paths below are relative to that directory.
-- The records in demo/records/*.jsonl are Sequin records, one JSON object per line,
-- whose "data" is shaped like Stripe's customer and subscription objects.

\set QUIET on
\encoding UTF8
SET client_min_messages = warning;
SET timezone = 'UTC';
\pset null '(null)'
\pset footer off

\echo
\echo '=== 1. Install the extension; the tables are the ones an application already has'
CREATE EXTENSION sequin_upsert;
CREATE SCHEMA stripe;

-- The SPEC's running example (the seed's Ecto schema).
CREATE TABLE stripe.subscriptions (
  id text PRIMARY KEY, upstream_id text, customer_id text, plan_id text, quantity integer,
  internal_id text, updated_idx bigint,
  upstream_updated_at timestamp, upstream_created_at timestamp,
  inserted_at timestamp NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now());

CREATE TABLE stripe.customers (
  id text PRIMARY KEY,
  upstream_id text,
  email text,
  name text,
  currency text,
  balance bigint,              -- Stripe amounts are integers in the currency's minor unit
  delinquent boolean,
  metadata jsonb,
  crm_account_id text,         -- from metadata key "crm.account_id" (a key with a dot)
  created timestamptz,         -- Stripe's data.created is Unix epoch seconds
  updated_idx bigint,
  upstream_updated_at timestamp,
  updated_at timestamp DEFAULT now());
-- A subscription's items (data.items.data in Stripe's object) in a table of their own.
CREATE TABLE stripe.subscription_items (
  id text PRIMARY KEY,
  subscription_id text NOT NULL,  -- the parent's key (stripe.subscriptions.id)
  price_id text,
  quantity integer,
  position integer,
  created timestamptz);
CREATE INDEX ON stripe.subscription_items (subscription_id);
\echo 'created stripe.subscriptions, stripe.subscription_items and stripe.customers'

\echo
\echo '=== 2. Map each collection to its table'
-- A plain INSERT into the catalog (the SPEC's running example) ...
INSERT INTO sequin.mappings (collection_id, target_table, columns, keep_on_conflict, order_column)
VALUES ('stripe:subscription', 'stripe.subscriptions',
  '{"id": "id", "upstream_id": "upstream_id", "customer_id": "data.stripe_customer_id",
    "plan_id": "data.plan_id", "quantity": "data.quantity", "internal_id": "id",
    "updated_idx": "updated_idx", "upstream_created_at": "upstream_created_at",
    "upstream_updated_at": "upstream_updated_at", "updated_at": "$now"}',
  '{upstream_id}', 'updated_idx');

-- ... or the convenience function. A JSON array path reaches a key that contains a dot.
-- (\gset only keeps the function's void result off the screen.)
SELECT sequin.create_mapping(
  collection_id    => 'stripe:customer',
  target_table     => 'stripe.customers',
  columns          => '{"id": "id", "upstream_id": "upstream_id",
                        "email": "data.email", "name": "data.name",
                        "currency": "data.currency", "balance": "data.balance",
                        "delinquent": "data.delinquent", "metadata": "data.metadata",
                        "crm_account_id": ["data", "metadata", "crm.account_id"],
                        "created": "data.created", "updated_idx": "updated_idx",
                        "upstream_updated_at": "upstream_updated_at", "updated_at": "$now"}',
  keep_on_conflict => '{upstream_id}',
  order_column     => 'updated_idx') \gset

-- A child mapping: the list at data.items.data of each subscription record, one row per
-- element; its columns are read from the element, "$parent.id" from the subscription record.
SELECT sequin.create_mapping(
  collection_id      => 'stripe:subscription_item',
  target_table       => 'stripe.subscription_items',
  columns            => '{"id": "id", "subscription_id": "$parent.id", "price_id": "price.id",
                          "quantity": "quantity", "position": "$index", "created": "created"}',
  parent             => 'stripe:subscription',
  list_source        => '"data.items.data"',
  parent_key_columns => '{subscription_id}') \gset

SELECT collection_id, target_table, keep_on_conflict, order_column, on_delete, parent
  FROM sequin.mappings ORDER BY collection_id;

\echo
\echo '=== 3. Load the sample records: 5 customers and 6 subscriptions in one call'
-- One record per line; CSV with quote and delimiter characters that never occur in the
-- data, so each line arrives verbatim (no backslash processing).
CREATE TEMP TABLE incoming (n bigserial PRIMARY KEY, record jsonb NOT NULL);
\copy incoming (record) FROM 'demo/records/customers.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
\copy incoming (record) FROM 'demo/records/subscriptions.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')

SELECT record->>'collection_id' AS collection_id, count(*) AS records
  FROM incoming GROUP BY 1 ORDER BY 1;

SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(record ORDER BY n) FROM incoming));

\echo
\echo '=== 4. Typed rows'
SELECT upstream_id, name, email, currency, balance, delinquent, created
  FROM stripe.customers ORDER BY created;
SELECT upstream_id, crm_account_id, metadata FROM stripe.customers ORDER BY created;
SELECT upstream_id, customer_id, plan_id, quantity, updated_idx, upstream_created_at
  FROM stripe.subscriptions ORDER BY upstream_created_at;
\echo 'The items of each subscription, from the list inside its record:'
SELECT s.upstream_id, i.id AS item, i.price_id, i.quantity, i.position, i.created
  FROM stripe.subscription_items i JOIN stripe.subscriptions s ON s.id = i.subscription_id
 ORDER BY s.upstream_created_at, i.position;

\echo
\echo '=== 5a. Update: Acme goes from 3 to 5 seats (a newer updated_idx)'
\echo 'The record also brings another upstream_id: keep_on_conflict = {upstream_id} keeps the stored one.'
SELECT * FROM sequin.sequin_upsert('{
  "id": "3b8d6f1a-4c2e-4a9b-9e7d-1f5c3a8b6d01", "upstream_id": "sub_SHOULD_NOT_OVERWRITE",
  "collection_id": "stripe:subscription", "deleted": false, "provider": "stripe",
  "updated_idx": 1714568400000,
  "upstream_created_at": "2024-01-02T11:00:00Z", "upstream_updated_at": "2024-05-01T13:00:00Z",
  "data": {"id": "sub_1PBa2cLkT9wXyZ7qAcme0001", "object": "subscription", "status": "active",
           "customer": "cus_Q2mX8kTfY4cLwN", "stripe_customer_id": "cus_Q2mX8kTfY4cLwN",
           "plan_id": "plan_pro_monthly", "quantity": 5, "created": 1704193200}}');
SELECT upstream_id, quantity, updated_idx, upstream_updated_at,
       updated_at > inserted_at AS touched_since_insert
  FROM stripe.subscriptions WHERE id = '3b8d6f1a-4c2e-4a9b-9e7d-1f5c3a8b6d01';

\echo
\echo '=== 5a-items. The next version of Acme lists two items: the seats item changes, a new add-on item'
\echo 'arrives. Then a later version drops the seats item: its row goes, in the same transaction.'
\set acme_items '{"id": "3b8d6f1a-4c2e-4a9b-9e7d-1f5c3a8b6d01", "upstream_id": "sub_1PBa2cLkT9wXyZ7qAcme0001", "collection_id": "stripe:subscription", "deleted": false, "provider": "stripe", "updated_idx": 1714570000000, "upstream_created_at": "2024-01-02T11:00:00Z", "upstream_updated_at": "2024-05-01T13:26:40Z", "data": {"id": "sub_1PBa2cLkT9wXyZ7qAcme0001", "object": "subscription", "stripe_customer_id": "cus_Q2mX8kTfY4cLwN", "plan_id": "plan_pro_monthly", "quantity": 6, "items": {"object": "list", "has_more": false, "data": [{"id": "si_wXyZ7qAcme0001", "object": "subscription_item", "created": 1704193200, "price": {"id": "plan_pro_monthly"}, "quantity": 6}, {"id": "si_wXyZ7qAcme0009", "object": "subscription_item", "created": 1714570000, "price": {"id": "plan_support_addon"}, "quantity": 1}]}}}'
SELECT * FROM sequin.sequin_upsert(:'acme_items');
SELECT id AS item, price_id, quantity, position FROM stripe.subscription_items
 WHERE subscription_id = '3b8d6f1a-4c2e-4a9b-9e7d-1f5c3a8b6d01' ORDER BY position;
SELECT * FROM sequin.sequin_upsert(jsonb_set(jsonb_set(:'acme_items'::jsonb, '{updated_idx}', '1714570000001'),
    '{data,items,data}', (:'acme_items'::jsonb)->'data'->'items'->'data'->1 || '[]'::jsonb));
SELECT id AS item, price_id, quantity, position FROM stripe.subscription_items
 WHERE subscription_id = '3b8d6f1a-4c2e-4a9b-9e7d-1f5c3a8b6d01' ORDER BY position;

\echo
\echo '=== 5b. Stale replay: send the whole initial load again'
\echo 'Every record is equal to or older than the stored version: all skipped, nothing changes'
\echo '(a skipped subscription touches none of its items either).'
SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(record ORDER BY n) FROM incoming));
SELECT upstream_id, quantity, updated_idx
  FROM stripe.subscriptions WHERE id = '3b8d6f1a-4c2e-4a9b-9e7d-1f5c3a8b6d01';
SELECT count(*) AS acme_items FROM stripe.subscription_items
 WHERE subscription_id = '3b8d6f1a-4c2e-4a9b-9e7d-1f5c3a8b6d01';

\echo
\echo '=== 5c. Delete: the Pied Piper trial customer is deleted in Stripe'
SELECT * FROM sequin.sequin_upsert('{
  "id": "e6f0a4c8-1d3b-4e9a-8c7f-9b4d2a6e3c55", "upstream_id": "cus_Q6qB2oXjC8gPaS",
  "collection_id": "stripe:customer", "deleted": true, "provider": "stripe",
  "updated_idx": 1714572000000, "upstream_updated_at": "2024-05-01T14:00:00Z",
  "data": {"id": "cus_Q6qB2oXjC8gPaS", "object": "customer", "deleted": true}}');
SELECT upstream_id, name, updated_idx FROM stripe.customers ORDER BY created;
\echo 'The deleted key and its version are remembered:'
SELECT collection_id, key, version FROM sequin.tombstones;

\echo
\echo '=== 5d. A late, stale update for the deleted customer (older updated_idx than the delete)'
SELECT * FROM sequin.sequin_upsert('{
  "id": "e6f0a4c8-1d3b-4e9a-8c7f-9b4d2a6e3c55", "upstream_id": "cus_Q6qB2oXjC8gPaS",
  "collection_id": "stripe:customer", "deleted": false, "provider": "stripe",
  "updated_idx": 1714568000000, "upstream_updated_at": "2024-05-01T12:53:20Z",
  "data": {"id": "cus_Q6qB2oXjC8gPaS", "object": "customer", "name": "Pied Piper Inc.",
           "email": "richard@piedpiper.example.com", "currency": null, "balance": 0,
           "delinquent": false, "metadata": {"signup_source": "website"}, "created": 1714466400}}');
SELECT count(*) AS pied_piper_rows FROM stripe.customers WHERE upstream_id = 'cus_Q6qB2oXjC8gPaS';

\echo
\echo '=== 5e. A bad record: quantity "three". The call fails as a whole, with a clear error'
\echo 'Batch: a good new subscription for Initech, then a bad one for Zoë.'
\set good_sub '{"id": "0b5e7c9a-2d4f-4e1b-9c3a-6f8d0b2e4a07", "upstream_id": "sub_1PBe6gPoX3aBcD1uIntc0002", "collection_id": "stripe:subscription", "deleted": false, "provider": "stripe", "updated_idx": 1714575600000, "upstream_created_at": "2024-05-01T15:00:00Z", "upstream_updated_at": "2024-05-01T15:00:00Z", "data": {"id": "sub_1PBe6gPoX3aBcD1uIntc0002", "object": "subscription", "status": "active", "customer": "cus_Q5pA1nWiB7fOzR", "stripe_customer_id": "cus_Q5pA1nWiB7fOzR", "plan_id": "plan_support_addon", "quantity": 1, "created": 1714575600}}'
\set bad_sub '{"id": "1c6f8d0b-3e5a-4f2c-8d4b-7a9e1c3f5b08", "upstream_id": "sub_1PBf7hQpY4bCdE2vZoel0002", "collection_id": "stripe:subscription", "deleted": false, "provider": "stripe", "updated_idx": 1714575600001, "upstream_created_at": "2024-05-01T15:00:01Z", "upstream_updated_at": "2024-05-01T15:00:01Z", "data": {"id": "sub_1PBf7hQpY4bCdE2vZoel0002", "object": "subscription", "status": "active", "customer": "cus_Q4oZ0mVhA6eNyQ", "stripe_customer_id": "cus_Q4oZ0mVhA6eNyQ", "plan_id": "plan_pro_monthly", "quantity": "three", "created": 1714575601}}'
\set ON_ERROR_STOP 0
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(:'good_sub'::jsonb, :'bad_sub'::jsonb));
\set ON_ERROR_STOP 1
\echo 'SQLSTATE' :LAST_ERROR_SQLSTATE
\echo 'Atomic: the good record of that call was not written either.'
SELECT count(*) AS subscriptions FROM stripe.subscriptions;

\echo
\echo '=== 5f. Staging: the same two records, inserted into sequin.staging'
\echo 'The INSERT succeeds; the good record is applied, the bad one stays with its error.'
INSERT INTO sequin.staging (record) VALUES (:'good_sub'), (:'bad_sub');
\x on
SELECT id, status, error, attempts FROM sequin.staging ORDER BY id;
\x off
SELECT upstream_id, customer_id, plan_id, quantity
  FROM stripe.subscriptions WHERE customer_id = 'cus_Q5pA1nWiB7fOzR' ORDER BY upstream_id;

\echo
\echo 'Fix the failed record and retry it:'
UPDATE sequin.staging SET record = jsonb_set(record, '{data,quantity}', '3') WHERE status = 'failed';
SELECT * FROM sequin.apply_staging(retry_failed => true);
SELECT count(*) AS left_in_staging FROM sequin.staging;
SELECT upstream_id, customer_id, plan_id, quantity, updated_idx, upstream_created_at
  FROM stripe.subscriptions ORDER BY upstream_created_at;

\echo
\echo '=== 6. What happened, per collection (sequin.stats)'
SELECT collection_id, inserted, updated, deleted, skipped, failed FROM sequin.stats ORDER BY collection_id;

\echo
\echo 'Done. demo/demo.sql shows the SQL behind each step.'
