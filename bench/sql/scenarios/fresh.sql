-- Benchmark scenario fresh. Loaded by bench/run after setup.sql; its entry in
-- bench/bench.py (SCENARIOS) gives its label, its starting table and its expected counts.
-- bench.gen_fresh returns the typed rows of the scenario (see bench.generate in setup.sql).

-- Ids 1..n at version 1, in batches of b (also the data of --scale).
CREATE FUNCTION bench.gen_fresh(scen text, n int, b int,
                                dup_pct numeric, del_pct numeric, stale_pct numeric)
RETURNS SETOF bench.typed LANGUAGE sql AS $$
  SELECT t.*
  FROM generate_series(1, n) k,
       LATERAL bench.typed_row(scen, ((k - 1) / b)::int, ((k - 1) % b)::int, k, 1, false, 1) t
$$;
