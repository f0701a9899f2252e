-- Benchmark method B. Loaded by bench/run after setup.sql; its entry in
-- bench/bench.py (METHODS) says how it is timed and on which scenarios.

-- (B) What most users write: a PL/pgSQL loop, one dynamic EXECUTE ... USING per record.
CREATE FUNCTION bench.upsert_record(r jsonb, target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce((r->>'deleted')::boolean, false) THEN
    EXECUTE format('DELETE FROM %s WHERE id = $1 AND (updated_idx IS NULL OR updated_idx < $2)',
                   target)
      USING r->>'id', (r->>'updated_idx')::bigint;
  ELSE
    EXECUTE format(
      'INSERT INTO %s AS t (id, upstream_id, customer_id, plan_id, quantity, internal_id,'
      ' updated_idx, upstream_created_at, upstream_updated_at, updated_at)'
      ' VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)'
      ' ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id,'
      ' plan_id = EXCLUDED.plan_id, quantity = EXCLUDED.quantity,'
      ' internal_id = EXCLUDED.internal_id, updated_idx = EXCLUDED.updated_idx,'
      ' upstream_created_at = EXCLUDED.upstream_created_at,'
      ' upstream_updated_at = EXCLUDED.upstream_updated_at, updated_at = EXCLUDED.updated_at'
      ' WHERE t.updated_idx IS NULL OR t.updated_idx < EXCLUDED.updated_idx', target)
      USING r->>'id', r->>'upstream_id', r->'data'->>'stripe_customer_id',
            r->'data'->>'plan_id', (r->'data'->>'quantity')::int, r->>'id',
            (r->>'updated_idx')::bigint,
            (r->>'upstream_created_at')::timestamptz AT TIME ZONE 'UTC',
            (r->>'upstream_updated_at')::timestamptz AT TIME ZONE 'UTC',
            now() AT TIME ZONE 'UTC';
  END IF;
END $$;

CREATE FUNCTION bench.upsert_per_record(batch jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE r jsonb;
BEGIN
  FOR r IN SELECT value FROM jsonb_array_elements(batch) LOOP
    PERFORM bench.upsert_record(r, 'stripe.subscriptions');
  END LOOP;
END $$;
