-- Benchmark scenario mix. Loaded by bench/run after setup.sql; its entry in
-- bench/bench.py (SCENARIOS) gives its label, its starting table and its expected counts.
-- bench.gen_mix returns the typed rows of the scenario (see bench.generate in setup.sql).

-- Per batch, dup_pct % of the records repeat an id of the same batch with another version
-- (lower or higher); among the rest del_pct % (of the batch) are deletes and stale_pct % are
-- older than the stored row; ids n/2+1.. so half of the batch updates stored rows and half
-- inserts new ones. A duplicated id is never deleted.
CREATE FUNCTION bench.gen_mix(scen text, n int, b int,
                              dup_pct numeric, del_pct numeric, stale_pct numeric)
RETURNS SETOF bench.typed LANGUAGE sql AS $$
  WITH slots AS (
    SELECT k, k / b AS bno, k % b AS p,
           least(b, n - (k / b) * b) AS sz
    FROM generate_series(0, n - 1) k
  ), classed AS (
    SELECT s.*, floor(sz * dup_pct / 100)::int AS d_cnt FROM slots s
  ), rows AS (
    SELECT bno, k,
      CASE WHEN p < sz - d_cnt THEN
             -- a unique id: slot j = p
             (n / 2 + bno * b + p + 1)::bigint
           ELSE
             -- a duplicate of unique slot j = p - (sz - d_cnt) (< d_cnt: never a delete)
             (n / 2 + bno * b + (p - (sz - d_cnt)) + 1)::bigint
      END AS i,
      CASE WHEN p >= sz - d_cnt THEN
             CASE WHEN (p - (sz - d_cnt)) % 2 = 0 THEN 2 ELSE 4 END
           WHEN p < d_cnt THEN 3
           -- the remaining pool: sz - 2 * d_cnt slots, r uniform over 0..99
           WHEN (((bno * b + p) * 37) % 100) * (sz - 2 * d_cnt)
                < del_pct * sz THEN 3
           WHEN (((bno * b + p) * 37) % 100) * (sz - 2 * d_cnt)
                < (del_pct + stale_pct) * sz THEN 0
           ELSE 3
      END AS v,
      p >= d_cnt AND p < sz - d_cnt
        AND (((bno * b + p) * 37) % 100) * (sz - 2 * d_cnt) < del_pct * sz AS del
    FROM classed
  )
  SELECT t.*
  FROM (SELECT rows.*,
               row_number() OVER (PARTITION BY bno ORDER BY md5(k::text)) - 1 AS newpos
        FROM rows) s,
       -- The duplicates of an id share its upstream_id: whether a new row gets the
       -- one of its lowest or its highest version is left out of the comparison.
       LATERAL bench.typed_row(scen, s.bno::int, s.newpos::int, s.i, s.v, s.del, 3) t
$$;

-- What the generated mix holds (printed with the results), once its starting table is built.
CREATE FUNCTION bench.info_mix() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN (
    SELECT format('%s records, %s distinct ids, %s deletes, %s stale, %s of the ids already stored',
                  count(*), count(DISTINCT t.id), count(*) FILTER (WHERE t.deleted),
                  count(*) FILTER (WHERE t.updated_idx < 1000000000),
                  count(DISTINCT t.id) FILTER (WHERE s.id IS NOT NULL))
    FROM bench.typed t LEFT JOIN bench.state_mix s USING (id)
    WHERE scenario = 'mix');
END $$;
