-- Benchmark method E. Loaded by bench/run after setup.sql; its entry in
-- bench/bench.py (METHODS) says how it is timed and on which scenarios.

-- (E) applies every record in the COPY into sequin.staging: 'ok' when none was left there,
-- else '<rows> <failed>' and the first error.
CREATE FUNCTION bench.staging_left() RETURNS text LANGUAGE sql AS $$
  SELECT CASE WHEN count(*) = 0 THEN 'ok'
              ELSE count(*) || ' ' || count(*) FILTER (WHERE status = 'failed')
                   || coalesce(' first error: ' || min(error), '') END
  FROM sequin.staging
$$;
