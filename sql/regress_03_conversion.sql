-- Every row of the SPEC's conversion table, through the target column's type.
\i sql/include/regress_setup.psql
\set VERBOSITY terse
CREATE SCHEMA conv;
CREATE TYPE conv.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN conv.positive AS int CHECK (VALUE > 0);
CREATE TABLE conv.t (
    id text PRIMARY KEY, j json, jb jsonb, t text, vc varchar(5), u uuid, num numeric,
    num2 numeric(10,2), d date, tm time, iv interval, mood conv.mood, ip inet,
    i2 smallint, i4 int, i8 bigint, f4 real, f8 double precision, b boolean,
    ts timestamp, ts3 timestamp(3), tstz timestamptz, pos conv.positive, ints int[], texts text[]);
SELECT sequin.create_mapping('conv', 'conv.t', (
  SELECT jsonb_object_agg(c, 'v.' || c) || '{"id": "id"}'
    FROM unnest(ARRAY['j','jb','t','vc','u','num','num2','d','tm','iv','mood','ip','i2','i4','i8',
                      'f4','f8','b','ts','ts3','tstz','pos','ints','texts']) AS c));

CREATE FUNCTION conv.put(v jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM conv.t;
    PERFORM * FROM sequin.sequin_upsert(jsonb_build_object('id', 'r', 'collection_id', 'conv', 'v', v));
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SET TimeZone = 'Europe/Berlin';
SET DateStyle = 'ISO';

-- json/jsonb take any value as is (a JSON string stays a JSON string).
SELECT conv.put('{"j": {"a": [1, 2]}, "jb": "a string"}');
SELECT j, jb FROM conv.t;
SELECT conv.put('{"jb": {"x": null, "y": 1.50}, "j": 3}');
SELECT j, jb FROM conv.t;
-- numbers and booleans into text are their JSON text.
SELECT conv.put('{"t": 42.10, "vc": true}');
SELECT t, vc FROM conv.t;
SELECT conv.put('{"t": "plain", "vc": "12345"}');
SELECT t, vc FROM conv.t;
SELECT conv.put('{"vc": "123456"}');
-- strings through the type's input function.
SELECT conv.put('{"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "num": "12.50", "d": "2024-05-01",
                  "tm": "12:30:00", "iv": "1 day 2 hours", "mood": "happy", "ip": "10.0.0.1/32",
                  "i4": "17", "b": "yes"}');
SELECT u, num, d, tm, iv, mood, ip, i4, b FROM conv.t;
SELECT conv.put('{"u": "not-a-uuid"}');
SELECT conv.put('{"mood": "angry"}');
SELECT conv.put('{"i4": "seven"}');
-- timestamps: an offset is converted to UTC; no offset is taken as written.
SELECT conv.put('{"ts": "2024-05-01T14:00:00+02:00", "tstz": "2024-05-01T14:00:00+02:00"}');
SELECT ts, tstz FROM conv.t;
SELECT conv.put('{"ts": "2024-05-01T12:00:00Z"}');
SELECT ts FROM conv.t;
SELECT conv.put('{"ts": "2024-05-01 14:00:00", "tstz": "2024-05-01 14:00:00"}');
SELECT ts, tstz FROM conv.t;
SELECT conv.put('{"ts": "2024-05-01T14:00:00.123456-05:30", "ts3": "2024-05-01T14:00:00.123456"}');
SELECT ts, ts3 FROM conv.t;
SELECT conv.put('{"ts": "not a time"}');
-- numbers: exact; fractions and overflow into integers are errors.
SELECT conv.put('{"i2": 32767, "i4": -2147483648, "i8": 9223372036854775807, "num": 1234567890123456789012345678901234567890.0123456789}');
SELECT i2, i4, i8, num FROM conv.t;
SELECT conv.put('{"i8": 1e3, "i4": 2.000}');
SELECT i8, i4 FROM conv.t;
SELECT conv.put('{"i4": 3.5}');
SELECT conv.put('{"i2": 32768}');
SELECT conv.put('{"i8": 9223372036854775808}');
SELECT conv.put('{"num2": 3.14159, "f4": 1.5, "f8": 0.1}');
SELECT num2, f4, f8 FROM conv.t;
SELECT conv.put('{"num2": 123456789012.5}');
-- numbers into timestamp, timestamptz and date are Unix epoch seconds.
SELECT conv.put('{"ts": 1680000000, "tstz": 1680000000.5, "d": 1680000000}');
SELECT ts, tstz, d FROM conv.t;
-- booleans
SELECT conv.put('{"b": false}');
SELECT b FROM conv.t;
SELECT conv.put('{"b": 1}');
-- arrays
SELECT conv.put('{"ints": [1, 2, null, 4], "texts": ["a", "b c", 5]}');
SELECT ints, texts FROM conv.t;
SELECT conv.put('{"ints": [], "texts": "{x,y}"}');
SELECT ints, texts FROM conv.t;
SELECT conv.put('{"ints": [1, "x"]}');
SELECT conv.put('{"ints": {"a": 1}}');
-- domains check their constraint.
SELECT conv.put('{"pos": 5}');
SELECT pos FROM conv.t;
SELECT conv.put('{"pos": -5}');
-- anything else names the column, the JSON type and the column type.
SELECT conv.put('{"i4": true}');
SELECT conv.put('{"t": {"nested": 1}}');
SELECT conv.put('{"u": 12}');
SELECT conv.put('{"d": [1]}');

-- RFC 3339 timestamps are read by a fast path; it must agree with PostgreSQL's parser, and
-- every other spelling (or invalid value) must get PostgreSQL's own result or error.
CREATE FUNCTION conv.expected_ts(s text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN format('%s | %s | %s',
        CASE WHEN s ~ '([zZ]|[+-][0-9:]+|[A-Za-z/]{3,})$' THEN (s::timestamptz AT TIME ZONE 'UTC')
             ELSE s::timestamp END,
        s::timestamptz,
        CASE WHEN s ~ '([zZ]|[+-][0-9:]+|[A-Za-z/]{3,})$' THEN (s::timestamptz AT TIME ZONE 'UTC')::timestamp(3)
             ELSE s::timestamp(3) END);
EXCEPTION WHEN OTHERS THEN
    RETURN 'error';
END $$;
CREATE FUNCTION conv.converted_ts(s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
    IF conv.put(jsonb_build_object('ts', s, 'tstz', s, 'ts3', s)) <> 'ok' THEN
        RETURN 'error';
    END IF;
    SELECT format('%s | %s | %s', ts, tstz, ts3) INTO r FROM conv.t;
    RETURN r;
END $$;
SELECT s, conv.converted_ts(s) AS converted, conv.converted_ts(s) = conv.expected_ts(s) AS agrees
FROM unnest(ARRAY[
    '2024-02-29T00:00:00Z', '2023-02-29T00:00:00Z', '2024-04-31T12:00:00Z',
    '2000-02-29 23:59:59.999999-15:59', '1900-02-29T00:00:00Z', '0001-01-01T00:00:00+01:00',
    '9999-12-31T23:59:59.999999-15:59', '2024-05-01t14:00:00.5z', '2024-05-01T14:00:00+0530',
    '2024-05-01T14:00:00-07', '2024-05-01T24:00:00Z', '2024-05-01T23:59:60Z',
    '2024-05-01T14:00:00.1234567Z', '2024-05-01T14:00:00.Z', '2024-05-01T14:00:00+16:00',
    '2024-05-01T14:00:00 +02:00', '2024-05-01T14:00:00+02:60', '2024-05-01T14:60:00Z',
    '2024-13-01T00:00:00Z', '2024-05-01T14:00:00', '2024-05-01T14:00:00.123',
    '10000-01-01T00:00:00Z', '2024-05-01T14:00:00 Europe/Paris', '2024-05-01T14:00Z',
    '2024-5-01T14:00:00Z', '2024-05-01T14:00:00+02:00:00']) AS s;
-- 2000 random instants in random RFC 3339 spellings, applied as one batch.
SELECT setseed(0.25);
CREATE TABLE conv.ts_random AS
SELECT i, to_char(t, 'YYYY-MM-DD') || (ARRAY['T', 't', ' '])[1 + i % 3] || to_char(t, 'HH24:MI:SS')
          || CASE WHEN i % 7 = 0 THEN '' ELSE '.' || left(to_char(t, 'US'), 1 + i % 6) END
          || (ARRAY['', 'Z', 'z', '+', '-', '+', '-'])[1 + i % 7]
          || CASE WHEN i % 7 >= 3 THEN lpad((random() * 15)::int::text, 2, '0')
                  || (ARRAY['', ':', ''])[1 + i % 3]
                  || CASE WHEN i % 3 = 0 THEN '' ELSE lpad((random() * 59)::int::text, 2, '0') END
                  ELSE '' END AS s
FROM (SELECT i, timestamp '0001-01-01' + random() * (timestamp '9999-12-31' - timestamp '0001-01-01') AS t
      FROM generate_series(1, 2000) AS i) AS g;
DELETE FROM conv.t;
SELECT inserted FROM sequin.sequin_upsert((
    SELECT jsonb_agg(jsonb_build_object('id', i::text, 'collection_id', 'conv',
                                        'v', jsonb_build_object('ts', s, 'tstz', s, 'ts3', s)))
    FROM conv.ts_random));
SELECT count(*) AS compared,
       count(*) FILTER (WHERE format('%s | %s | %s', t.ts, t.tstz, t.ts3) <> conv.expected_ts(r.s)) AS disagree
FROM conv.ts_random r JOIN conv.t t ON t.id = r.i::text;

-- A record's top-level values are found in one pass over its entries. Records with 3 to
-- 100 keys (jsonb stores an offset only every 32 entries; over 64 keys use a heap buffer),
-- values of every JSON type, keys of different lengths: each column must hold exactly
-- what the -> operator finds.
CREATE TABLE conv.wide (id text PRIMARY KEY, k1 jsonb, k2 jsonb, k31 jsonb, k32 jsonb,
                        k33 jsonb, k64 jsonb, k65 jsonb, k99 jsonb, long jsonb, inner_v text);
SELECT sequin.create_mapping('wide', 'conv.wide', '{"id": "id", "k1": "k1", "k2": "k2",
    "k31": "k31", "k32": "k32", "k33": "k33", "k64": "k64", "k65": "k65", "k99": "k99",
    "long": "a_rather_long_key_name_that_sorts_last", "inner_v": "k3.inner"}');
CREATE TABLE conv.wide_records AS
SELECT keys, jsonb_object_agg('k' || i, CASE i % 5 WHEN 0 THEN to_jsonb(repeat('s', i % 7))
                                                 WHEN 1 THEN to_jsonb(i + 0.5)
                                                 WHEN 2 THEN to_jsonb(i % 2 = 0)
                                                 WHEN 3 THEN jsonb_build_object('inner', 'v' || i)
                                                 ELSE 'null'::jsonb END)
             || jsonb_build_object('id', 'w' || keys, 'collection_id', 'wide',
                                   'a_rather_long_key_name_that_sorts_last', keys) AS r
FROM unnest(ARRAY[3, 31, 32, 33, 64, 65, 100]) AS keys, generate_series(1, keys) AS i
GROUP BY keys;
SELECT inserted FROM sequin.sequin_upsert((SELECT jsonb_agg(r ORDER BY keys) FROM conv.wide_records));
SELECT count(*) AS compared,
       count(*) FILTER (WHERE (w.k1, w.k2, w.k31, w.k32, w.k33, w.k64, w.k65, w.k99, w.long, w.inner_v)
           IS DISTINCT FROM (nullif(r->'k1', 'null'), nullif(r->'k2', 'null'), nullif(r->'k31', 'null'),
                             nullif(r->'k32', 'null'), nullif(r->'k33', 'null'), nullif(r->'k64', 'null'),
                             nullif(r->'k65', 'null'), nullif(r->'k99', 'null'),
                             r->'a_rather_long_key_name_that_sorts_last', r->'k3'->>'inner')) AS differ
FROM conv.wide_records JOIN conv.wide w ON w.id = 'w' || keys;
SELECT id, k1, k2, k33, k65, k99, long, inner_v FROM conv.wide ORDER BY id;
