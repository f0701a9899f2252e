-- sequin_upsert benchmark: schema, target table, mapping, the data every scenario shares,
-- the driver and the contents check. Run by bench/run in a fresh database (psql -v
-- ON_ERROR_STOP=1), before bench/sql/scenarios/*.sql (one generator per scenario) and
-- bench/sql/methods/*.sql (what each method needs).
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS sequin_upsert;
CREATE SCHEMA bench;
CREATE SCHEMA stripe;

-- The SPEC's running example, verbatim.
CREATE TABLE stripe.subscriptions (
  id text PRIMARY KEY, upstream_id text, customer_id text, plan_id text, quantity integer,
  internal_id text, updated_idx bigint,
  upstream_updated_at timestamp, upstream_created_at timestamp,
  inserted_at timestamp NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now());

INSERT INTO sequin.mappings (collection_id, target_table, columns, keep_on_conflict, order_column)
VALUES ('stripe:subscription', 'stripe.subscriptions',
  '{"id": "id", "upstream_id": "upstream_id", "customer_id": "data.stripe_customer_id",
    "plan_id": "data.plan_id", "quantity": "data.quantity", "internal_id": "id",
    "updated_idx": "updated_idx", "upstream_created_at": "upstream_created_at",
    "upstream_updated_at": "upstream_updated_at", "updated_at": "$now"}',
  '{upstream_id}', 'updated_idx');

------------------------------------------------------------------------------------------
-- Data. bench.typed is the ground truth (typed values); bench.records holds the same rows
-- as Sequin records, bench.batches the records as jsonb arrays of B records.
------------------------------------------------------------------------------------------
CREATE TABLE bench.typed (
  scenario text, batch_no int, pos int,
  id text, upstream_id text, customer_id text, plan_id text, quantity integer,
  internal_id text, updated_idx bigint,
  upstream_updated_at timestamp, upstream_created_at timestamp,
  deleted boolean NOT NULL,
  PRIMARY KEY (scenario, batch_no, pos));

CREATE TABLE bench.records (
  scenario text, batch_no int, pos int, record jsonb NOT NULL,
  PRIMARY KEY (scenario, batch_no, pos));

CREATE TABLE bench.batches (
  scenario text, batch_no int, records jsonb NOT NULL,
  PRIMARY KEY (scenario, batch_no));
-- Out of line but uncompressed: reading a batch costs no decompression inside a method.
ALTER TABLE bench.batches ALTER COLUMN records SET STORAGE EXTERNAL;

-- One big array for the memory measurement of --scale.
CREATE TABLE bench.big (records jsonb NOT NULL);
ALTER TABLE bench.big ALTER COLUMN records SET STORAGE EXTERNAL;

-- A timestamp (UTC) as an ISO 8601 string with a UTC offset; three spellings.
CREATE FUNCTION bench.ts_text(ts timestamp, variant int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE variant
    WHEN 0 THEN to_char(ts, 'YYYY-MM-DD"T"HH24:MI:SS.US') || 'Z'
    WHEN 1 THEN to_char(ts + interval '2 hours', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+02:00'
    ELSE to_char(ts - interval '5 hours 30 minutes', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '-05:30'
  END $$;

-- The typed row of subscription number i at version v (deterministic).
--   upstream_id changes with uv (the version, except among the in-batch duplicates of the
--   mix), so keep_on_conflict is visible in the contents: an update keeps the stored one;
--   plan_id is absent from the record for every 89th i, quantity is JSON null for every 97th.
CREATE FUNCTION bench.typed_row(scen text, batch_no int, pos int, i bigint, v int,
                                deleted boolean, uv int)
RETURNS bench.typed LANGUAGE sql IMMUTABLE AS $$
  SELECT ROW(scen, batch_no, pos,
    'rec_' || lpad(i::text, 9, '0'),
    'sub_' || substr(md5(i::text || '/' || uv::text), 1, 14),
    'cus_' || lpad((i % 50000)::text, 8, '0'),
    CASE WHEN i % 89 = 0 THEN NULL ELSE 'plan_' || ((i + v) % 7)::text END,
    CASE WHEN i % 97 = 0 THEN NULL ELSE (1 + (i * 7 + v * 3) % 20)::int END,
    'rec_' || lpad(i::text, 9, '0'),
    v::bigint * 1000000000 + i,
    timestamp '2024-01-01' + i * interval '1 second' + v * interval '1 hour'
      + (i % 997) * interval '1 microsecond',
    timestamp '2023-01-01' + i * interval '1 second',
    deleted)::bench.typed $$;

-- The Sequin record of a typed row (unmapped fields included for a realistic size).
CREATE FUNCTION bench.to_record(t bench.typed) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
      'id', t.id,
      'upstream_id', t.upstream_id,
      'collection_id', 'stripe:subscription',
      'data', jsonb_build_object(
          'id', t.upstream_id,
          'object', 'subscription',
          'stripe_customer_id', t.customer_id,
          'quantity', t.quantity,
          'status', 'active',
          'created', extract(epoch FROM t.upstream_created_at)::bigint,
          'metadata', jsonb_build_object('source', 'bench'))
        || CASE WHEN t.plan_id IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('plan_id', t.plan_id) END,
      'inserted_at', '2024-05-01T12:00:00Z',
      'provider', 'stripe',
      'stream_id', '7b9d3c5e-0000-4000-8000-000000000001',
      'sync', '3e1a2b4c-0000-4000-8000-000000000002',
      'updated_idx', t.updated_idx,
      'upstream_created_at', bench.ts_text(t.upstream_created_at,
                                           (right(t.id, 3)::int + 1) % 3),
      'upstream_updated_at', bench.ts_text(t.upstream_updated_at, right(t.id, 3)::int % 3))
    -- "deleted" absent means false: leave it out of every 5th live record.
    || CASE WHEN t.deleted THEN '{"deleted": true}'::jsonb
            WHEN right(t.id, 1) IN ('0', '5') THEN '{}'::jsonb
            ELSE '{"deleted": false}'::jsonb END $$;

-- Generates one scenario's typed rows (then records and batches, see bench.materialize)
-- with bench.gen_<generator> (default: the scenario's name), defined in
-- bench/sql/scenarios/<generator>.sql. --scale uses the scenario 'scale', generator 'fresh'.
CREATE FUNCTION bench.generate(scen text, n int, b int,
                               dup_pct numeric DEFAULT 10, del_pct numeric DEFAULT 5,
                               stale_pct numeric DEFAULT 0, generator text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM bench.typed WHERE scenario = scen;
  EXECUTE format('INSERT INTO bench.typed SELECT * FROM bench.%I($1, $2, $3, $4, $5, $6)',
                 'gen_' || coalesce(generator, scen))
    USING scen, n, b, dup_pct, del_pct, stale_pct;
END $$;

-- Records and batches of a scenario from its typed rows.
CREATE FUNCTION bench.materialize(scen text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM bench.records WHERE scenario = scen;
  DELETE FROM bench.batches WHERE scenario = scen;
  INSERT INTO bench.records
    SELECT t.scenario, t.batch_no, t.pos, bench.to_record(t)
    FROM bench.typed t WHERE t.scenario = scen;
  INSERT INTO bench.batches
    SELECT scen, batch_no, jsonb_agg(record ORDER BY pos)
    FROM bench.records WHERE scenario = scen GROUP BY batch_no;
END $$;

-- The driver, bench.run(method, scenario, max_batches) => (seconds, counts), is created by
-- bench/bench.py from its table of methods (run_procedure_sql).

------------------------------------------------------------------------------------------
-- Resetting the target to a scenario's starting state, and checking the contents.
------------------------------------------------------------------------------------------
CREATE TABLE bench.reference (scenario text PRIMARY KEY, method text, row_count bigint, checksum text);

-- The compared contents: every column except inserted_at and updated_at.
CREATE VIEW bench.contents AS
  SELECT id, ROW(id, upstream_id, customer_id, plan_id, quantity, internal_id, updated_idx,
                 upstream_updated_at, upstream_created_at)::text AS r
  FROM stripe.subscriptions;

CREATE FUNCTION bench.reset(scen text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE stripe.subscriptions, sequin.tombstones, sequin.staging;
  EXECUTE format('INSERT INTO stripe.subscriptions SELECT * FROM bench.%I',
                 'state_' || scen);
END $$;

-- 'ok <rows> <md5>' or 'MISMATCH ...' with the first differences against the reference
-- (the first method run of the scenario, normally (A)).
CREATE FUNCTION bench.check(scen text, method text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  n bigint; sum text; ref bench.reference; diff text;
BEGIN
  SELECT count(*), coalesce(md5(string_agg(r, E'\n' ORDER BY id COLLATE "C")), '-')
    INTO n, sum FROM bench.contents;
  SELECT * INTO ref FROM bench.reference WHERE scenario = scen;
  IF NOT FOUND THEN
    INSERT INTO bench.reference VALUES (scen, method, n, sum);
    EXECUTE format('DROP TABLE IF EXISTS bench.%I', 'expected_' || scen);
    EXECUTE format('CREATE TABLE bench.%I AS SELECT * FROM bench.contents',
                   'expected_' || scen);
    RETURN format('ok %s %s', n, sum);
  END IF;
  IF ref.row_count = n AND ref.checksum = sum THEN
    RETURN format('ok %s %s', n, sum);
  END IF;
  EXECUTE format($q$
    SELECT string_agg(line, E'\n') FROM (
      SELECT coalesce(e.id, a.id) AS d_id,
             format('    id %%s: expected %%s, got %%s', coalesce(e.id, a.id),
                    coalesce(e.r, '(no row)'), coalesce(a.r, '(no row)')) AS line
      FROM bench.%I e FULL JOIN bench.contents a ON a.id = e.id
      WHERE e.r IS DISTINCT FROM a.r
      ORDER BY coalesce(e.id, a.id) COLLATE "C" LIMIT 5) d $q$, 'expected_' || scen) INTO diff;
  RETURN format(E'MISMATCH: %s rows, checksum %s; reference (%s): %s rows, checksum %s\n%s',
                n, sum, ref.method, ref.row_count, ref.checksum, coalesce(diff, ''));
END $$;

-- The counts that sequin_upsert (or any method returning (inserted, updated, deleted,
-- skipped)) must return for a scenario applied batch by batch (one call per batch) to its
-- starting table, derived from the records and the SPEC's rules, as 'inserted=..
-- updated=.. deleted=.. skipped=..'. Every record counts once. Of the records of one id in
-- one batch, those superseded by a higher version count as skipped; the highest applies only
-- if it is newer (updated_idx) than the stored row or than the tombstone an earlier delete
-- left, else it is skipped. A delete that applies counts as deleted if the row was stored,
-- else as skipped (it leaves a tombstone).
CREATE FUNCTION bench.expected_counts(scen text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  r record;
  cur_id text;
  cur_batch int;
  present boolean;
  ver bigint;
  ins bigint := 0; upd bigint := 0; del bigint := 0; skp bigint := 0;
BEGIN
  FOR r IN EXECUTE format($q$
      SELECT t.id, t.batch_no, t.updated_idx AS v, t.deleted,
             s.id IS NOT NULL AS stored, s.updated_idx AS stored_v
      FROM bench.typed t LEFT JOIN bench.%I s ON s.id = t.id
      WHERE t.scenario = $1
      ORDER BY t.id, t.batch_no, t.updated_idx DESC, t.pos DESC $q$, 'state_' || scen) USING scen
  LOOP
    IF cur_id IS DISTINCT FROM r.id THEN
      -- bench.reset empties sequin.tombstones: only the stored row counts at the start.
      cur_id := r.id; cur_batch := NULL; present := r.stored; ver := r.stored_v;
    END IF;
    IF cur_batch IS NOT DISTINCT FROM r.batch_no THEN
      skp := skp + 1;  -- superseded in its batch
    ELSIF ver IS NOT NULL AND r.v <= ver THEN
      skp := skp + 1;  -- stale
    ELSIF r.deleted THEN
      IF present THEN del := del + 1; ELSE skp := skp + 1; END IF;
      present := false; ver := r.v;
    ELSIF present THEN
      upd := upd + 1; ver := r.v;
    ELSE
      ins := ins + 1; present := true; ver := r.v;
    END IF;
    cur_batch := r.batch_no;
  END LOOP;
  RETURN format('inserted=%s updated=%s deleted=%s skipped=%s', ins, upd, del, skp);
END $$;
