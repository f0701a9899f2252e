-- sequin_upsert benchmark of child collections (`bash bench/run --children`, bench/children.sh):
-- Stripe-shaped subscriptions, each carrying its items in data.items.data, landed in a
-- parent table and a child table. Run in a fresh database (psql -v ON_ERROR_STOP=1).
--
--   (A) bench.expert_children(batch): the hand-written SQL per batch, on the tables
--       bench.hand_subscriptions and bench.hand_subscription_items;
--   (D) sequin.sequin_upsert(batch), on bench.subscriptions and bench.subscription_items
--       through the mappings stripe:subscription and its child stripe:subscription_item
--       (bench.children_map()).
-- Both pairs of tables have the same definitions; bench.children_contents compares them.
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS sequin_upsert;
CREATE SCHEMA bench;

CREATE TABLE bench.subscriptions (
  id text PRIMARY KEY, customer text, status text, currency text,
  created timestamptz, current_period_end timestamptz, updated_idx bigint);
CREATE TABLE bench.subscription_items (
  id text PRIMARY KEY, subscription_id text NOT NULL, price_id text, quantity int,
  position int);
CREATE INDEX ON bench.subscription_items (subscription_id);

CREATE TABLE bench.hand_subscriptions (LIKE bench.subscriptions INCLUDING ALL);
CREATE TABLE bench.hand_subscription_items (LIKE bench.subscription_items INCLUDING ALL);

-- (D)'s mappings: the parent's key is its record's "id"; the child's parent key column is
-- read from "$parent.id", its own key from the element's "id".
-- PL/pgSQL: the call is resolved when the mappings are made, not when this file is loaded.
CREATE FUNCTION bench.children_map() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM sequin.create_mapping('stripe:subscription', 'bench.subscriptions',
    '{"id": "id", "customer": "data.customer", "status": "data.status",
      "currency": "data.currency", "created": "data.created",
      "current_period_end": "data.current_period_end", "updated_idx": "updated_idx"}',
    order_column => 'updated_idx');
  PERFORM sequin.create_mapping(collection_id => 'stripe:subscription_item',
    target_table => 'bench.subscription_items',
    columns => '{"id": "id", "subscription_id": "$parent.id", "price_id": "price.id",
                 "quantity": "quantity", "position": "$index"}',
    parent => 'stripe:subscription', list_source => '"data.items.data"',
    parent_key_columns => '{subscription_id}');
END $$;

------------------------------------------------------------------------------------------
-- Data: subscription i (0-based) at version v. Version 1 (fresh) has the items k = 0, 1, 2;
-- version 2 (update) has k = 1, 2, 3 (item 0 removed, item 3 new, the positions shift),
-- every quantity changed (1..5 at version 1, 10..14 at version 2) and every 10th status.
-- data.items.has_more is false: the list is complete.
------------------------------------------------------------------------------------------
CREATE FUNCTION bench.sub_id(i int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT 'sub_' || lpad(i::text, 9, '0') $$;

CREATE FUNCTION bench.item(i int, v int, k int) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'id', 'si_' || lpad(i::text, 9, '0') || '_' || k,
    'object', 'subscription_item',
    'created', 1680000000 + i,
    'metadata', '{}'::jsonb,
    'price', jsonb_build_object(
        'id', 'price_' || lpad(((i + k) % 50)::text, 4, '0'),
        'object', 'price', 'active', true, 'currency', 'usd',
        'product', 'prod_' || lpad(((i + k) % 50)::text, 4, '0'),
        'recurring', jsonb_build_object('interval', 'month', 'interval_count', 1),
        'type', 'recurring', 'unit_amount', 500 + 100 * k),
    'quantity', CASE v WHEN 1 THEN 1 + (i + k) % 5 ELSE 10 + (i + k) % 5 END,
    'subscription', bench.sub_id(i),
    'tax_rates', '[]'::jsonb) $$;

CREATE FUNCTION bench.sub_record(i int, v int) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'id', bench.sub_id(i),
    'upstream_id', bench.sub_id(i),
    'collection_id', 'stripe:subscription',
    'data', jsonb_build_object(
        'id', bench.sub_id(i),
        'object', 'subscription',
        'customer', 'cus_' || lpad((i % 50000)::text, 8, '0'),
        'status', CASE WHEN v > 1 AND i % 10 = 0 THEN 'past_due' ELSE 'active' END,
        'currency', 'usd',
        'created', 1680000000 + i,
        'current_period_end', 1700000000 + i + v * 2592000,
        'cancel_at_period_end', false,
        'collection_method', 'charge_automatically',
        'items', jsonb_build_object(
            'object', 'list',
            'data', (SELECT jsonb_agg(bench.item(i, v, k) ORDER BY k)
                     FROM generate_series(v - 1, v + 1) k),
            'has_more', false,
            'total_count', 3,
            'url', '/v1/subscription_items?subscription=' || bench.sub_id(i)),
        'metadata', jsonb_build_object('source', 'bench')),
    'deleted', false,
    'inserted_at', '2024-05-01T12:00:00Z',
    'provider', 'stripe',
    'stream_id', '7b9d3c5e-0000-4000-8000-000000000001',
    'sync', '3e1a2b4c-0000-4000-8000-000000000002',
    'updated_idx', v::bigint * 1000000000 + i,
    'upstream_created_at', '2023-04-01T10:00:00Z',
    'upstream_updated_at', to_char(timestamp '2024-01-01' + i * interval '1 second'
                                   + v * interval '1 hour', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) $$;

CREATE TABLE bench.batches (
  phase text, batch_no int, records jsonb NOT NULL, PRIMARY KEY (phase, batch_no));
-- Out of line but uncompressed, as in the main benchmark.
ALTER TABLE bench.batches ALTER COLUMN records SET STORAGE EXTERNAL;

-- fresh: version 1 of subscriptions 0..n-1; update: version 2; replay: the update again.
CREATE FUNCTION bench.children_generate(n int, b int) RETURNS void LANGUAGE sql AS $$
  DELETE FROM bench.batches;
  INSERT INTO bench.batches
    SELECT p.phase, i / b, jsonb_agg(bench.sub_record(i, p.v) ORDER BY i)
    FROM (VALUES ('fresh', 1), ('update', 2)) p(phase, v), generate_series(0, n - 1) i
    GROUP BY p.phase, i / b;
  INSERT INTO bench.batches SELECT 'replay', batch_no, records FROM bench.batches
    WHERE phase = 'update';
$$;

------------------------------------------------------------------------------------------
-- (A) The expert's hand-written SQL: one statement per batch (data-modifying CTEs, one
-- snapshot), its plan prepared once per session (PL/pgSQL):
--   recs     the batch unpacked by jsonb_to_recordset; of several records of one id, the
--            newest (DISTINCT ON);
--   dead,    a deleted record deletes its parent if older, and the parent's items (the
--   dead_items  scenario sends none: kept so that (A) does the checks (D) does);
--   applied  the guarded parent upsert: RETURNING the ids of the parents inserted or
--            updated (a stale record returns nothing);
--   lists,   the item lists of the applied parents, and their elements with their 0-based
--   elems    position;
--   gone     the applied parents' items whose id is not in any new list (when the list is
--            an array and has_more is not true);
--   then     the items of the applied parents upserted by id.
-- gone and the final INSERT touch disjoint rows (an item in a new list is never deleted),
-- so the one snapshot is safe.
------------------------------------------------------------------------------------------
CREATE FUNCTION bench.expert_children(batch jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  WITH recs AS (
    SELECT DISTINCT ON (x.id) x.id, x.updated_idx, coalesce(x.deleted, false) AS deleted,
           x.data
    FROM jsonb_to_recordset(batch) AS x(id text, updated_idx bigint, deleted boolean,
                                        data jsonb)
    ORDER BY x.id, x.updated_idx DESC
  ), dead AS (
    DELETE FROM bench.hand_subscriptions AS t
    USING recs
    WHERE recs.deleted AND t.id = recs.id
      AND (t.updated_idx IS NULL OR t.updated_idx < recs.updated_idx)
    RETURNING t.id
  ), dead_items AS (
    DELETE FROM bench.hand_subscription_items AS c USING dead WHERE c.subscription_id = dead.id
  ), applied AS (
    INSERT INTO bench.hand_subscriptions AS t
      (id, customer, status, currency, created, current_period_end, updated_idx)
    SELECT id, data->>'customer', data->>'status', data->>'currency',
           to_timestamp((data->>'created')::float8),
           to_timestamp((data->>'current_period_end')::float8), updated_idx
    FROM recs
    WHERE NOT deleted
    ON CONFLICT (id) DO UPDATE SET
      customer = EXCLUDED.customer, status = EXCLUDED.status, currency = EXCLUDED.currency,
      created = EXCLUDED.created, current_period_end = EXCLUDED.current_period_end,
      updated_idx = EXCLUDED.updated_idx
    WHERE t.updated_idx IS NULL OR t.updated_idx < EXCLUDED.updated_idx
    RETURNING t.id
  ), lists AS (
    SELECT r.id, r.data->'items' AS items
    FROM applied a JOIN recs r ON r.id = a.id
  ), elems AS (
    SELECT l.id AS subscription_id, e.item, e.ord - 1 AS position
    FROM lists l,
         jsonb_array_elements(CASE WHEN jsonb_typeof(l.items->'data') = 'array'
                                   THEN l.items->'data' END) WITH ORDINALITY AS e(item, ord)
  ), gone AS (
    DELETE FROM bench.hand_subscription_items AS c
    USING lists l
    WHERE c.subscription_id = l.id
      AND jsonb_typeof(l.items->'data') = 'array'
      AND (l.items->'has_more') IS DISTINCT FROM 'true'::jsonb
      AND NOT EXISTS (SELECT 1 FROM elems e WHERE e.item->>'id' = c.id)
  )
  INSERT INTO bench.hand_subscription_items AS c (id, subscription_id, price_id, quantity, position)
  SELECT item->>'id', subscription_id, item->'price'->>'id', (item->>'quantity')::int, position
  FROM elems
  ON CONFLICT (id) DO UPDATE SET
    subscription_id = EXCLUDED.subscription_id, price_id = EXCLUDED.price_id,
    quantity = EXCLUDED.quantity, position = EXCLUDED.position;
END $$;

------------------------------------------------------------------------------------------
-- The driver: applies a phase's batches with one method, one transaction per batch, and
-- returns the time of the calls and their COMMITs (measured in the server; reading a batch
-- is not timed) and, for (D), the summed counts.
------------------------------------------------------------------------------------------
CREATE PROCEDURE bench.children_run(method text, ph text,
                                    INOUT seconds float8 DEFAULT NULL,
                                    INOUT counts text DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
  nb int;
  recs jsonb;
  t0 timestamptz;
  total interval := interval '0';
  c record;
  ins bigint := 0; upd bigint := 0; del bigint := 0; skp bigint := 0;
BEGIN
  SELECT count(*) INTO nb FROM bench.batches WHERE phase = ph;
  FOR bno IN 0 .. nb - 1 LOOP
    SELECT b.records INTO recs FROM bench.batches b WHERE phase = ph AND batch_no = bno;
    t0 := clock_timestamp();
    IF method = 'A' THEN
      PERFORM bench.expert_children(recs);
    ELSIF method = 'D' THEN
      SELECT * INTO c FROM sequin.sequin_upsert(recs);
      ins := ins + c.inserted; upd := upd + c.updated;
      del := del + c.deleted; skp := skp + c.skipped;
    ELSE
      RAISE EXCEPTION 'unknown method %', method;
    END IF;
    COMMIT;
    total := total + (clock_timestamp() - t0);
  END LOOP;
  seconds := extract(epoch FROM total);
  counts := CASE WHEN method = 'D'
                 THEN format('inserted=%s updated=%s deleted=%s skipped=%s', ins, upd, del, skp)
                 ELSE '' END;
END $$;

------------------------------------------------------------------------------------------
-- Starting states and contents. A phase starts from the tables the previous phase left
-- (bench.state_<phase>_subs / _items, saved from (A)'s tables); fresh starts empty.
------------------------------------------------------------------------------------------
CREATE FUNCTION bench.children_tables(method text, OUT subs text, OUT items text)
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE method WHEN 'A' THEN 'bench.hand_subscriptions' ELSE 'bench.subscriptions' END,
         CASE method WHEN 'A' THEN 'bench.hand_subscription_items'
                     ELSE 'bench.subscription_items' END $$;

CREATE FUNCTION bench.children_save(ph text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP TABLE IF EXISTS bench.%I, bench.%I', 'state_' || ph || '_subs',
                 'state_' || ph || '_items');
  EXECUTE format('CREATE TABLE bench.%I AS SELECT * FROM bench.hand_subscriptions',
                 'state_' || ph || '_subs');
  EXECUTE format('CREATE TABLE bench.%I AS SELECT * FROM bench.hand_subscription_items',
                 'state_' || ph || '_items');
END $$;

CREATE FUNCTION bench.children_reset(method text, ph text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE t record := bench.children_tables(method);
BEGIN
  EXECUTE format('TRUNCATE %s, %s', t.subs, t.items);
  IF method = 'D' THEN
    TRUNCATE sequin.tombstones, sequin.staging;
  END IF;
  IF ph <> 'fresh' THEN
    EXECUTE format('INSERT INTO %s SELECT * FROM bench.%I', t.subs, 'state_' || ph || '_subs');
    EXECUTE format('INSERT INTO %s SELECT * FROM bench.%I', t.items, 'state_' || ph || '_items');
  END IF;
END $$;

-- '<parent rows> <md5 of the parents> <item rows> <md5 of the items>', rows in id order.
CREATE FUNCTION bench.children_contents(method text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE t record := bench.children_tables(method); a text; b text;
BEGIN
  EXECUTE format($q$SELECT count(*) || ' ' || coalesce(md5(string_agg(
      ROW(id, customer, status, currency, created, current_period_end, updated_idx)::text,
      E'\n' ORDER BY id COLLATE "C")), '-') FROM %s$q$, t.subs) INTO a;
  EXECUTE format($q$SELECT count(*) || ' ' || coalesce(md5(string_agg(
      ROW(id, subscription_id, price_id, quantity, position)::text,
      E'\n' ORDER BY id COLLATE "C")), '-') FROM %s$q$, t.items) INTO b;
  RETURN a || ' ' || b;
END $$;

-- The first differing rows of (D)'s tables against (A)'s (empty when they are equal).
CREATE FUNCTION bench.children_diff() RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(line, E'\n') FROM (
    (SELECT format('  subscriptions %s: (A) %s, (D) %s', coalesce(a.id, d.id),
                   coalesce(a::text, '(no row)'), coalesce(d::text, '(no row)')) AS line
     FROM bench.hand_subscriptions a FULL JOIN bench.subscriptions d ON d.id = a.id
     WHERE a::text IS DISTINCT FROM d::text
     ORDER BY coalesce(a.id, d.id) COLLATE "C" LIMIT 5)
    UNION ALL
    (SELECT format('  subscription_items %s: (A) %s, (D) %s', coalesce(a.id, d.id),
                   coalesce(a::text, '(no row)'), coalesce(d::text, '(no row)'))
     FROM bench.hand_subscription_items a FULL JOIN bench.subscription_items d ON d.id = a.id
     WHERE a::text IS DISTINCT FROM d::text
     ORDER BY coalesce(a.id, d.id) COLLATE "C" LIMIT 5)) x $$;

-- What every phase must leave, checked on (A)'s tables independently of (D): n parents at
-- the phase's version, 3 items each with the phase's ids, positions 0..2 and quantities.
CREATE FUNCTION bench.children_expected(ph text, n int) RETURNS text LANGUAGE sql AS $$
  WITH v AS (SELECT CASE ph WHEN 'fresh' THEN 1 ELSE 2 END AS v),
  bad_subs AS (
    SELECT count(*) AS c FROM bench.hand_subscriptions s, v
    WHERE s.updated_idx <> v.v::bigint * 1000000000 + right(s.id, 9)::int),
  bad_items AS (
    SELECT count(*) AS c FROM bench.hand_subscription_items it, v
    WHERE right(it.id, 1)::int <> v.v - 1 + it.position
       OR it.quantity <> CASE v.v WHEN 1 THEN 1 ELSE 10 END
                         + (right(it.subscription_id, 9)::int + right(it.id, 1)::int) % 5
       OR it.subscription_id <> 'sub_' || substr(it.id, 4, 9))
  SELECT CASE WHEN (SELECT count(*) FROM bench.hand_subscriptions) = n
               AND (SELECT count(*) FROM bench.hand_subscription_items) = 3 * n
               AND (SELECT c FROM bad_subs) = 0 AND (SELECT c FROM bad_items) = 0
              THEN 'ok' ELSE 'WRONG' END $$;
