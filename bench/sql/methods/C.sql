-- Benchmark method C. Loaded by bench/run after setup.sql; its entry in
-- bench/bench.py (METHODS) says how it is timed and on which scenarios.

-- (C) Floor: the same rows already typed in a table; the statement of (A) minus the JSON.
CREATE FUNCTION bench.upsert_typed(scen text, bno int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  WITH recs AS (
    SELECT DISTINCT ON (id) *
    FROM bench.typed
    WHERE scenario = scen AND batch_no = bno
    ORDER BY id, updated_idx DESC
  ), del AS (
    DELETE FROM stripe.subscriptions AS t
    USING recs
    WHERE recs.deleted AND t.id = recs.id
      AND (t.updated_idx IS NULL OR t.updated_idx < recs.updated_idx)
  )
  INSERT INTO stripe.subscriptions AS t
    (id, upstream_id, customer_id, plan_id, quantity, internal_id, updated_idx,
     upstream_created_at, upstream_updated_at, updated_at)
  SELECT id, upstream_id, customer_id, plan_id, quantity, internal_id, updated_idx,
         upstream_created_at, upstream_updated_at, now() AT TIME ZONE 'UTC'
  FROM recs
  WHERE NOT deleted
  ON CONFLICT (id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, plan_id = EXCLUDED.plan_id,
    quantity = EXCLUDED.quantity, internal_id = EXCLUDED.internal_id,
    updated_idx = EXCLUDED.updated_idx,
    upstream_created_at = EXCLUDED.upstream_created_at,
    upstream_updated_at = EXCLUDED.upstream_updated_at,
    updated_at = EXCLUDED.updated_at
  WHERE t.updated_idx IS NULL OR t.updated_idx < EXCLUDED.updated_idx;
END $$;
