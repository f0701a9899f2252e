-- Benchmark method A2. Loaded by bench/run after setup.sql; its entry in
-- bench/bench.py (METHODS) says how it is timed and on which scenarios.

-- (A') The same statement with the records unpacked by jsonb_to_recordset (the top-level
--      fields parsed once per record instead of one ->> look-up per field).
CREATE FUNCTION bench.upsert_expert_recordset(batch jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  WITH recs AS (
    SELECT DISTINCT ON (x.id) x.*
    FROM jsonb_to_recordset(batch) AS x(id text, upstream_id text, data jsonb, deleted boolean,
         updated_idx bigint, upstream_created_at timestamptz, upstream_updated_at timestamptz)
    ORDER BY x.id, x.updated_idx DESC
  ), del AS (
    DELETE FROM stripe.subscriptions AS t
    USING recs
    WHERE recs.deleted AND t.id = recs.id
      AND (t.updated_idx IS NULL OR t.updated_idx < recs.updated_idx)
  )
  INSERT INTO stripe.subscriptions AS t
    (id, upstream_id, customer_id, plan_id, quantity, internal_id, updated_idx,
     upstream_created_at, upstream_updated_at, updated_at)
  SELECT id, upstream_id, data->>'stripe_customer_id', data->>'plan_id',
         (data->>'quantity')::int, id, updated_idx,
         upstream_created_at AT TIME ZONE 'UTC', upstream_updated_at AT TIME ZONE 'UTC',
         now() AT TIME ZONE 'UTC'
  FROM recs
  WHERE NOT coalesce(deleted, false)
  ON CONFLICT (id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, plan_id = EXCLUDED.plan_id,
    quantity = EXCLUDED.quantity, internal_id = EXCLUDED.internal_id,
    updated_idx = EXCLUDED.updated_idx,
    upstream_created_at = EXCLUDED.upstream_created_at,
    upstream_updated_at = EXCLUDED.upstream_updated_at,
    updated_at = EXCLUDED.updated_at
  WHERE t.updated_idx IS NULL OR t.updated_idx < EXCLUDED.updated_idx;
END $$;
