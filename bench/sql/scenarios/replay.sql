-- Benchmark scenario replay. Loaded by bench/run after setup.sql; its entry in
-- bench/bench.py (SCENARIOS) gives its label, its starting table and its expected counts.
-- bench.gen_replay returns the typed rows of the scenario (see bench.generate in setup.sql).

-- The update's records again: applied after the update, every record is stale.
CREATE FUNCTION bench.gen_replay(scen text, n int, b int,
                                 dup_pct numeric, del_pct numeric, stale_pct numeric)
RETURNS SETOF bench.typed LANGUAGE sql AS $$
  SELECT * FROM bench.gen_update(scen, n, b, dup_pct, del_pct, stale_pct)
$$;
