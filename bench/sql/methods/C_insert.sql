-- Benchmark method C_insert. Loaded by bench/run after setup.sql; its entry in
-- bench/bench.py (METHODS) says how it is timed and on which scenarios.

-- (C) Floor for the fresh insert: typed rows, plain INSERT into the empty table.
CREATE FUNCTION bench.insert_typed(scen text, bno int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO stripe.subscriptions
    (id, upstream_id, customer_id, plan_id, quantity, internal_id, updated_idx,
     upstream_created_at, upstream_updated_at, updated_at)
  SELECT id, upstream_id, customer_id, plan_id, quantity, internal_id, updated_idx,
         upstream_created_at, upstream_updated_at, now() AT TIME ZONE 'UTC'
  FROM bench.typed
  WHERE scenario = scen AND batch_no = bno;
END $$;
