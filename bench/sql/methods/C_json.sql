-- Benchmark method C_json. Loaded by bench/run after setup.sql; its entry in
-- bench/bench.py (METHODS) says how it is timed and on which scenarios.

-- (C) floor for (E): the records COPY'd as JSON text into a jsonb column, nothing applied.
-- Unlogged: (E) writes no row of a record that applies, so this floor writes no WAL either.
CREATE UNLOGGED TABLE bench.parsed (record jsonb NOT NULL);
