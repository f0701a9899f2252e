#!/usr/bin/env python3
"""Benchmark of sequin_upsert against the hand-written alternatives (issue 5).

  bash bench/run [--n N] [--batch B] [--runs R] [--smoke]      the comparison
  bash bench/run --scale [--scale-max N] [--batch B] [--runs R] scaling and memory
  bash bench/run --concurrent [--seconds S]                     concurrent writers
  bash bench/run --citus [--n N] [--batch B] [--runs R]          on Citus (bench/citus.sh)
  bash bench/run --children [--n N] [--batch B] [--runs R]       child collections
                 (bench/children.sh; --children --help lists its options)

Installs what is missing, builds and installs the extension, starts a throwaway
PostgreSQL 15 cluster (or uses the server the PG* variables point at), and works in a
fresh database (default sequin_bench). Details, methods and scenarios: bench/README.md.

Comparison: N Sequin records for the SPEC's running example (stripe.subscriptions) in
batches of B records, the scenarios ({scenario_labels}), every
method on the same data from the same starting table, each run R times (median). Prints
scenario | method | records/s | ratio to (A), writes bench/results/latest.md, and exits
1 if the methods do not leave identical table contents, if sequin_upsert does not return
the expected counts, or if a method fails.

Options:
  --n N              records per scenario (default 100000)
  --batch B          records per batch / per sequin_upsert call (default 1000)
  --runs R           runs per method and scenario; the median is reported (default 3)
  --dup-pct P        mix: % of records repeating an id of their batch (default 10)
  --del-pct P        mix: % of records that are deletes (default 5)
  --stale-pct P      mix: % of records older than the stored row (default 0)
  --methods LIST     comma-separated subset of {methods}
                     (default all)
  --scenarios LIST   comma-separated subset of {scenarios} (default all)
  --smoke            N=2000, B=200, R=1: checks the contents and counts only (CI)
  --scale            time per record of (D) for N = 10k, 100k, 1M, and the backend's peak
                     memory for one 100k-record sequin_upsert call and a 1M-row COPY into
                     sequin.staging; writes bench/results/scale.md
  --scale-max N      cap the sizes of --scale (default 1000000)
  --concurrent       pgbench, 8 clients sending batches of 16 records over 400 keys (random
                     versions), with 0 % and with 5 % deletes: tps, failed calls, the
                     deadlocks counted in pg_stat_database, the ratio of the two tps, and
                     whether the table equals the serial outcome; writes concurrent.md
  --seconds S        --concurrent: seconds per load (default 15)
  --existing-server  use the server the PG* variables point at (no apt-get, no new cluster)
  --db NAME          database to (re)create and work in (default sequin_bench)
  --keep-db          leave the database on a server we did not start (default: drop it)
Environment: SEQUIN_BENCH_NO_BUILD=1 skips `make && make install` (so does
SEQUIN_NO_INSTALL=1).
"""
# The driver of the benchmark (its usage above is `bash bench/run --help`). bench/run sets
# up the server and calls it twice: `bench.py check ARGS` checks the options before
# anything is installed or started, `bench.py run ARGS` measures and reports. Python 3
# standard library only; it talks to the server through psql.

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "bench" / "sql"
RESULTS = ROOT / "bench" / "results"


######################################################################################
# The methods and the scenarios. Adding one is one entry here plus its SQL file:
# bench/sql/methods/<name>.sql (optional) or bench/sql/scenarios/<name>.sql.
######################################################################################
@dataclass(frozen=True)
class Check:
    """A check run after the timed part: `sql` is an expression ({scen} and {method} are
    substituted) whose text starts with 'ok' when the check passes; `problem` heads the
    failure message."""

    problem: str
    sql: str


# The contents of the target against the scenario's reference (the first method run).
CONTENTS = Check("contents differ from the reference", "bench.check('{scen}', '{method}')")


@dataclass(frozen=True)
class Method:
    """One way of applying the records.

    name       --methods; bench/sql/methods/<name>.sql is loaded when it exists.
    label      the row label of the table.
    call       a method applied batch by batch: the SQL call that applies batch `bno` of
               scenario `scen`, given as jsonb in `recs`; the procedure bench.run calls it
               in a loop, one transaction per batch, timing the call and its COMMIT in the
               server. When `call` uses `recs`, the batch is read before the timer starts.
    counts     the call returns (inserted, updated, deleted, skipped): they are summed over
               the batches and must equal the scenario's expected counts.
    copy       a method timed around one psql `\\copy <copy> FROM <file>` of all records.
    data       the file that `copy` reads: records_<scen>.copy (one JSON record a line) or
               typed_<scen>.copy (the typed columns TYPED_COLUMNS, text format).
    before     SQL run after the reset, before the timed part (not timed).
    checks     the checks after every run.
    scenarios  the scenarios it runs on (empty: every one).
    """

    name: str
    label: str
    call: str = ""
    counts: bool = False
    copy: str = ""
    data: str = "records"
    before: str = ""
    checks: tuple[Check, ...] = (CONTENTS,)
    scenarios: tuple[str, ...] = ()

    @property
    def reads_batch(self) -> bool:
        return re.search(r"\brecs\b", self.call) is not None


TYPED_COLUMNS = ("id, upstream_id, customer_id, plan_id, quantity, internal_id, updated_idx, "
                 "upstream_updated_at, upstream_created_at")

METHODS = [
    Method("A", "(A) expert set-based SQL", call="bench.upsert_expert(recs)"),
    Method("A2", "(A') expert SQL, jsonb_to_recordset", call="bench.upsert_expert_recordset(recs)"),
    Method("B", "(B) per-record plpgsql EXECUTE", call="bench.upsert_per_record(recs)"),
    Method("C", "(C) floor: typed INSERT ON CONFLICT", call="bench.upsert_typed(scen, bno)"),
    Method("C_insert", "(C) floor: typed INSERT, empty table", call="bench.insert_typed(scen, bno)",
           scenarios=("fresh",)),
    Method("C_copy", "(C) floor: typed COPY, empty table",
           copy=f"stripe.subscriptions({TYPED_COLUMNS})", data="typed", scenarios=("fresh",)),
    # What (E) pays before applying anything: COPY parsing the JSON text.
    Method("C_json", "(C) floor: COPY of the JSON, no apply", copy="bench.parsed(record)",
           before="TRUNCATE bench.parsed;",
           checks=(Check("", "(SELECT 'ok (a floor: ' || count(*) || ' records parsed, "
                             "the target not written)' FROM bench.parsed)"),)),
    Method("D", "(D) sequin.sequin_upsert", call="sequin.sequin_upsert(recs)", counts=True),
    Method("E", "(E) COPY sequin.staging", copy="sequin.staging(record)",
           checks=(CONTENTS, Check("rows left in sequin.staging (rows, failed)",
                                   "bench.staging_left()"))),
]


@dataclass(frozen=True)
class Scenario:
    """One data set and the table it is applied to.

    name     --scenarios; bench/sql/scenarios/<name>.sql defines bench.gen_<name>, which
             returns its typed rows (the records are made from them).
    label    the row label of the table.
    start    the starting table: the table after the scenario `start` was applied to its
             own starting table (with the typed floor (C)); None: the empty table.
    counts   optional: the counts a method with `counts` must return, {n} = the number of
             records. They are also derived from the data (bench.expected_counts in
             setup.sql), for every scenario: the two must agree.
    info     an SQL expression describing the generated data, printed with the results.
    """

    name: str
    label: str
    start: str | None
    counts: str = ""
    info: str = ""


SCENARIOS = [
    Scenario("fresh", "fresh insert", None, "inserted={n} updated=0 deleted=0 skipped=0"),
    Scenario("update", "update all", "fresh", "inserted=0 updated={n} deleted=0 skipped=0"),
    Scenario("replay", "replay (all stale)", "update",
             "inserted=0 updated=0 deleted=0 skipped={n}"),
    Scenario("mix", "mix", "fresh", info="bench.info_mix()"),
]

METHOD = {m.name: m for m in METHODS}
SCENARIO = {s.name: s for s in SCENARIOS}
# Every method and scenario named in an entry exists, and a scenario starts from one
# listed before it (the starting tables are built in this order).
assert METHODS and all(s in SCENARIO for m in METHODS for s in m.scenarios)
assert all(bool(m.call) != bool(m.copy) for m in METHODS)
assert all(s.start is None or [x.name for x in SCENARIOS].index(s.start) < i
           for i, s in enumerate(SCENARIOS))


######################################################################################
# Options
######################################################################################
class Usage(Exception):
    """A bad command line: the message, then exit 2."""


@dataclass
class Options:
    n: int = 100000
    batch: int = 1000
    runs: int = 3
    dup_pct: str = "10"
    del_pct: str = "5"
    stale_pct: str = "0"
    methods: tuple[str, ...] = tuple(m.name for m in METHODS)
    scenarios: tuple[str, ...] = tuple(s.name for s in SCENARIOS)
    smoke: bool = False
    scale: bool = False
    scale_max: int = 1000000
    concurrent: bool = False
    seconds: int = 15
    existing: bool = False
    db: str = "sequin_bench"
    keep_db: bool = False
    help: bool = False


def usage_text() -> str:
    return __doc__.format(methods=",".join(METHOD), scenarios=",".join(SCENARIO),
                          scenario_labels=", ".join(s.label for s in SCENARIOS))


def parse_args(argv: list[str]) -> Options:
    """The command line of bench/run, with the checks and messages it always had."""
    o = Options()
    args = list(argv)

    def value(opt: str) -> str:
        if not args:
            raise Usage(f"{opt} needs a value")
        return args.pop(0)

    def positive(opt: str) -> int:
        v = value(opt)
        if not re.fullmatch(r"[0-9]+", v) or int(v) == 0:
            raise Usage(f"{opt} needs a positive integer, got '{v}'")
        return int(v)

    def pct(opt: str) -> str:
        v = value(opt)
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", v):
            raise Usage(f"{opt} needs a percentage, got '{v}'")
        return v

    def names(opt: str, known: dict, what: str) -> tuple[str, ...]:
        items = tuple(x for x in value(opt).split(",") if x)
        if not items:
            raise Usage(f"{opt} needs a value")
        for x in items:
            if x not in known:
                raise Usage(f"unknown {what} {x}")
        return items

    # option -> (attribute of Options, how its value is read; None: a flag)
    spec = {
        "--n": ("n", positive), "--batch": ("batch", positive), "--runs": ("runs", positive),
        "--dup-pct": ("dup_pct", pct), "--del-pct": ("del_pct", pct),
        "--stale-pct": ("stale_pct", pct),
        "--methods": ("methods", lambda opt: names(opt, METHOD, "method")),
        "--scenarios": ("scenarios", lambda opt: names(opt, SCENARIO, "scenario")),
        "--smoke": ("smoke", None), "--scale": ("scale", None),
        "--scale-max": ("scale_max", positive), "--existing-server": ("existing", None),
        "--concurrent": ("concurrent", None), "--seconds": ("seconds", positive),
        "--db": ("db", value), "--keep-db": ("keep_db", None),
    }
    while args:
        a = args.pop(0)
        if a in ("-h", "--help"):
            o.help = True
            return o
        if a not in spec:
            raise Usage(f"unknown option {a}\n\n{usage_text()}")
        attr, read = spec[a]
        setattr(o, attr, read(a) if read else True)
    if o.smoke:
        o.n, o.batch, o.runs = 2000, 200, 1
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", o.db):
        raise Usage("--db: use a plain lower-case name")
    if not 2 * float(o.dup_pct) + float(o.del_pct) + float(o.stale_pct) < 100:
        raise Usage("--dup-pct twice plus --del-pct plus --stale-pct must stay below 100")
    return o


######################################################################################
# psql
######################################################################################
PGBIN = os.environ.get("SEQUIN_PGBIN", "/usr/lib/postgresql/15/bin")


class BenchError(Exception):
    """psql exited non-zero (the message is its stderr), or the bench cannot go on."""


def psql(script: str, *, db: str | None = None) -> str:
    """Runs a psql script (stdin), stopping at the first error; returns its output."""
    cmd = [f"{PGBIN}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    if db:
        cmd += ["-d", db]
    p = subprocess.run(cmd, input=script, text=True, capture_output=True)
    if p.returncode:
        raise BenchError(p.stderr.strip() or f"psql exited with status {p.returncode}")
    return p.stdout.rstrip("\n")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run_procedure_sql() -> str:
    """The procedure bench.run(method, scen, max_batches) => (seconds, counts): applies the
    scenario's batches in order with one method, one transaction per batch, and returns the
    time spent in the method calls and commits (measured in the server) and, for a method
    with counts, the summed counts. One CASE arm per method with a `call`."""
    arms = []
    for m in METHODS:
        if not m.call:
            continue
        if m.counts:
            arms.append(f"""      WHEN '{m.name}' THEN
        SELECT * INTO c FROM {m.call};
        ins := ins + c.inserted; upd := upd + c.updated;
        del := del + c.deleted; skp := skp + c.skipped;""")
        else:
            arms.append(f"      WHEN '{m.name}' THEN PERFORM {m.call};")
    reading = ", ".join(f"'{m.name}'" for m in METHODS if m.reads_batch) or "NULL"
    counting = ", ".join(f"'{m.name}'" for m in METHODS if m.counts) or "NULL"
    nl = "\n"
    return f"""CREATE PROCEDURE bench.run(method text, scen text, max_batches int,
                           INOUT seconds float8 DEFAULT NULL, INOUT counts text DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
  nb int;
  bno int;
  recs jsonb;
  t0 timestamptz;
  total interval := interval '0';
  c record;
  ins bigint := 0; upd bigint := 0; del bigint := 0; skp bigint := 0;
BEGIN
  SELECT count(*) INTO nb FROM bench.batches
    WHERE scenario = scen AND (max_batches IS NULL OR batch_no < max_batches);
  FOR bno IN 0 .. nb - 1 LOOP
    IF method IN ({reading}) THEN
      -- In a procedure the value is detoasted here, outside the timed part.
      SELECT b.records INTO recs FROM bench.batches b WHERE scenario = scen AND batch_no = bno;
    END IF;
    t0 := clock_timestamp();
    CASE method
{nl.join(arms)}
      ELSE RAISE EXCEPTION 'unknown method %', method;
    END CASE;
    COMMIT;
    total := total + (clock_timestamp() - t0);
  END LOOP;
  seconds := extract(epoch FROM total);
  counts := CASE WHEN method IN ({counting})
                 THEN format('inserted=%s updated=%s deleted=%s skipped=%s', ins, upd, del, skp)
                 ELSE '' END;
END $$;
"""


######################################################################################
# The bench: set-up, data, one run of a method
######################################################################################
@dataclass
class RunResult:
    seconds: float
    seconds_text: str
    counts: str
    problems: list[str]  # failed checks, each "<problem>:\n<result>"


class Bench:
    def __init__(self, o: Options, argv: list[str], work: Path):
        self.o = o
        self.args_given = " ".join(argv)
        self.work = work
        self.nrec: dict[str, int] = {}
        pg_config = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")
        so_dir = subprocess.run([pg_config, "--pkglibdir"], text=True,
                                capture_output=True).stdout.strip()
        self.so_file = f"{so_dir}/sequin_upsert.so"
        # Which build of the extension is measured: its version and the library's mtime (a
        # re-install during the run would mix two builds in one table: warn about it).
        self.so_mtime_start = self.so_mtime()
        # Other work on the machine skews the figures: the load average is printed with them.
        try:
            self.load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        except OSError:
            self.load_start = "unknown"

    def pgs(self, script: str) -> str:
        return psql(script, db=self.o.db)

    def so_mtime(self) -> str:
        try:
            mtime = datetime.fromtimestamp(os.stat(self.so_file).st_mtime)
            return mtime.strftime("%Y-%m-%d %H:%M:%S")
        except OSError:
            return "unknown"

    def ext_info(self) -> str:
        v = self.pgs("SELECT extversion FROM pg_extension WHERE extname = 'sequin_upsert'")
        return f"sequin_upsert {v}, library built {self.so_mtime_start}"

    def so_changed_warning(self) -> str:
        now = self.so_mtime()
        if now == self.so_mtime_start:
            return ""
        return (f"WARNING: {self.so_file} changed during the run ({self.so_mtime_start} -> {now}): "
                "the figures mix two builds.")

    def server_version(self) -> str:
        return self.pgs("SHOW server_version")

    def machine(self) -> str:
        """'<extension info>, <n> CPUs, <UTC time>.' for the reports."""
        return (f"{self.ext_info()}, {len(os.sched_getaffinity(0))} CPUs, "
                f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%MZ')}.")

    def command_line(self) -> str:
        cmd = "bash bench/run" + (f" {self.args_given}" if self.args_given else "")
        return f"Command: `{cmd}`. Load average at the start: {self.load_start}."

    def setup(self) -> None:
        """The schema, the scenarios' generators, the methods' SQL and the driver."""
        self.pgs((SQL_DIR / "setup.sql").read_text())
        for s in SCENARIOS:
            self.pgs((SQL_DIR / "scenarios" / f"{s.name}.sql").read_text())
        for m in METHODS:
            f = SQL_DIR / "methods" / f"{m.name}.sql"
            if f.exists():
                self.pgs(f.read_text())
        self.pgs(run_procedure_sql())

    def generate(self, scen: str, n: int, generator: str | None = None) -> None:
        o = self.o
        gen = f"'{generator}'" if generator else "NULL"
        self.pgs(f"SELECT bench.generate('{scen}', {n}, {o.batch}, {o.dup_pct}, {o.del_pct}, "
                 f"{o.stale_pct}, {gen});\nSELECT bench.materialize('{scen}');")

    def export(self, data: str, scen: str) -> Path:
        """Writes the COPY input `data`_`scen`.copy (once) and returns its path."""
        path = self.work / f"{data}_{scen}.copy"
        if not path.exists():
            table, columns = {"records": ("bench.records", "record"),
                              "typed": ("bench.typed", TYPED_COLUMNS)}[data]
            self.pgs(f"\\copy (SELECT {columns} FROM {table} WHERE scenario = '{scen}' "
                     f"ORDER BY batch_no, pos) TO '{path}'")
        return path

    def timed_copy(self, target: str, path: Path) -> str:
        """psql lines that \\copy a file into target and print SECONDS <time of the COPY>."""
        return f"""SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset
\\copy {target} FROM '{path}'
SELECT extract(epoch FROM clock_timestamp()) - :t0 AS seconds \\gset
\\echo SECONDS :seconds"""

    def run_once(self, scen: str, m: Method, max_batches: int | None = None,
                 checks: bool = True) -> RunResult:
        """Runs one method on one scenario from the scenario's starting state, then its
        checks. Raises BenchError if psql failed."""
        if m.call:
            maxb = "NULL" if max_batches is None else str(max_batches)
            timed = (f"CALL bench.run('{m.name}', '{scen}', {maxb}) \\gset\n"
                     "\\echo SECONDS :seconds\n\\echo COUNTS :counts")
        else:
            timed = self.timed_copy(m.copy, self.export(m.data, scen))
        lines = [f"SET sequin.batch_size = {self.o.batch};",
                 f"SELECT bench.reset('{scen}') \\g /dev/null",
                 "VACUUM (ANALYZE) stripe.subscriptions;",
                 "CHECKPOINT;"]
        if m.before:
            lines.append(m.before)
        lines.append(timed)
        outs = []
        for i, c in enumerate(m.checks if checks else ()):
            out = self.work / f"check_{i}"
            outs.append((c, out))
            lines += [f"\\o {out}", f"SELECT {c.sql.format(scen=scen, method=m.name)};", "\\o"]
        text = self.pgs("\n".join(lines) + "\n")
        sec = re.search(r"^SECONDS (\S+)", text, re.M)
        counts = re.search(r"^COUNTS (.*)$", text, re.M)
        problems = []
        for c, out in outs:
            result = out.read_text().rstrip("\n")
            if not result.startswith("ok"):
                sep = "\n" if "\n" in result else " "
                problems.append(f"{c.problem}:{sep}{result}" if c.problem else result)
        if not sec:
            raise BenchError(f"no timing in the output of psql:\n{text}")
        return RunResult(float(sec.group(1)), sec.group(1), counts.group(1) if counts else "",
                         problems)


def elapsed(t0: float) -> str:
    return f"{time.time() - t0:.1f}"


######################################################################################
# The comparison
######################################################################################
def selected_scenarios(o: Options) -> list[Scenario]:
    """The selected scenarios, in table order."""
    return [s for s in SCENARIOS if s.name in o.scenarios]


def scen_methods(o: Options, s: Scenario) -> list[Method]:
    """The selected methods that run on scenario s, in table order."""
    return [m for m in METHODS
            if m.name in o.methods and (not m.scenarios or s.name in m.scenarios)]


def prepare(b: Bench) -> tuple[dict[str, str], dict[str, str]]:
    """Generates every scenario, builds the starting tables and the COPY inputs. Returns the
    scenarios' descriptions and the counts a method with counts must return per selected
    scenario (derived from the data; equal to the scenario's own `counts` when it has any)."""
    o = b.o
    t0 = time.time()
    log(f"generating N={o.n} records per scenario, B={o.batch} "
        f"(mix: dup {o.dup_pct} %, delete {o.del_pct} %, stale {o.stale_pct} %)")
    for s in SCENARIOS:
        b.generate(s.name, o.n)
    # The starting tables, built with the typed floor (C) (checked against every method),
    # in the order of SCENARIOS: a scenario starts where its `start` ended.
    script = []
    for s in SCENARIOS:
        if s.start is None:
            script.append(f"CREATE TABLE bench.state_{s.name} AS "
                          "SELECT * FROM stripe.subscriptions WITH NO DATA;")
        else:
            script += [f"SELECT bench.reset('{s.start}') \\g /dev/null",
                       f"CALL bench.run('C', '{s.start}', NULL) \\g /dev/null",
                       f"CREATE TABLE bench.state_{s.name} AS SELECT * FROM stripe.subscriptions;"]
    script.append("TRUNCATE stripe.subscriptions;")
    b.pgs("\n".join(script) + "\n")
    for s in selected_scenarios(o):
        for m in scen_methods(o, s):
            if m.copy:
                b.export(m.data, s.name)
    for line in b.pgs("SELECT scenario || ' ' || count(*) FROM bench.records "
                      "GROUP BY scenario").splitlines():
        name, n = line.split(" ")
        b.nrec[name] = int(n)
    infos = {s.name: b.pgs(f"SELECT {s.info}") for s in SCENARIOS if s.info}
    log(f"data ready in {elapsed(t0)}s" + "".join(f"; {k}: {v}" for k, v in infos.items()))

    expected: dict[str, str] = {}
    if any(METHOD[m].counts for m in o.methods):
        for s in selected_scenarios(o):
            expected[s.name] = b.pgs(f"SELECT bench.expected_counts('{s.name}')")
            plain = s.counts.format(n=b.nrec[s.name])
            if plain and plain != expected[s.name]:
                raise BenchError(f"scenario {s.name}: the counts derived from the data "
                                 f"({expected[s.name]}) are not the scenario's ({plain})")
    return infos, expected


@dataclass
class Tally:
    """What the runs of the comparison gave, keyed by (scenario, method)."""

    times: dict = field(default_factory=dict)          # -> [seconds of each run]
    failed: set = field(default_factory=set)           # psql failed: not run again
    content_mismatch: set = field(default_factory=set)
    count_mismatch: set = field(default_factory=set)
    content_failures: list = field(default_factory=list)
    count_failures: list = field(default_factory=list)


def measure(b: Bench, expected: dict[str, str]) -> Tally:
    """Runs every selected method on every selected scenario R times (runs interleaved
    across methods), checking the contents and the counts after each run."""
    o, t = b.o, Tally()
    for s in selected_scenarios(o):
        for run in range(1, o.runs + 1):
            for m in scen_methods(o, s):
                key = (s.name, m.name)
                if key in t.failed:
                    continue
                t0 = time.time()
                try:
                    r = b.run_once(s.name, m)
                except BenchError as e:
                    t.failed.add(key)
                    t.content_failures.append(
                        f"{s.name} / {m.label}: failed: {' '.join(str(e).splitlines())}")
                    log(f"{s.name} / {m.name} run {run}: FAILED")
                    continue
                for p in r.problems:
                    t.content_mismatch.add(key)
                    t.content_failures.append(f"{s.name} / {m.label} run {run}: {p}")
                if m.counts and r.counts != expected[s.name]:
                    t.count_mismatch.add(key)
                    total = sum(int(x) for x in re.findall(r"=(\d+)", r.counts))
                    t.count_failures.append(
                        f"{s.name} / {m.label} run {run}: returned {r.counts}, expected "
                        f"{expected[s.name]} (they add up to {total} of {b.nrec[s.name]} records)")
                t.times.setdefault(key, []).append(r.seconds)
                log(f"{s.name} / {m.name} run {run}: {r.seconds_text}s (wall {elapsed(t0)}s) "
                    + ("MISMATCH" if r.problems else "ok") + (f" ({r.counts})" if r.counts else ""))
    return t


def report(b: Bench, infos: dict[str, str], expected: dict[str, str], t: Tally) -> int:
    """Prints the table and writes it to bench/results; 1 if a check failed."""
    o = b.o
    md = [
        "## sequin_upsert benchmark",
        "",
        f"N = {o.n} records per scenario, B = {o.batch} records per batch, "
        f"median of {o.runs} run(s);",
        *[f"{k}: {v}." for k, v in infos.items()],
        f"PostgreSQL {b.server_version()}, {b.machine()}",
        b.command_line(),
        "",
        "| scenario | method | median s | records/s | ratio to (A) |",
        "|---|---|---:|---:|---:|",
    ]
    print(f"\n{'scenario':<20} | {'method':<38} | {'median s':>9} | {'records/s':>10} | "
          "ratio to (A)")
    print("-" * 98)
    for s in selected_scenarios(o):
        ta = t.times.get((s.name, "A"), [])
        med_a = statistics.median(ta) if ta else None
        for m in scen_methods(o, s):
            key = (s.name, m.name)
            tm = t.times.get(key, [])
            if key in t.failed or not tm:
                print(f"{s.label:<20} | {m.label:<38} | {'-':>9} | {'FAILED':>10} | -")
                md.append(f"| {s.label} | {m.label} | - | FAILED | - |")
                continue
            med = statistics.median(tm)
            rps = f"{b.nrec[s.name] / med:.0f}"
            ratio = "-" if med_a is None else f"{med_a / med:.2f}"
            if key in t.content_mismatch:
                ratio += " (CONTENTS MISMATCH)"
            if key in t.count_mismatch:
                ratio += " (COUNTS MISMATCH)"
            print(f"{s.label:<20} | {m.label:<38} | {med:9.3f} | {rps:>10} | {ratio}")
            md.append(f"| {s.label} | {m.label} | {med:.3f} | {rps} | {ratio} |")
    tail = []
    w = b.so_changed_warning()
    if w:
        tail += ["", "Warnings:", f"- {w}"]
    if t.content_failures:
        tail += ["", "FAILURES (the methods must leave identical contents):",
                 *[f"- {x}" for x in t.content_failures]]
    if t.count_failures:
        tail += ["", "FAILURES (sequin_upsert must return the expected counts):",
                 *[f"- {x}" for x in t.count_failures]]
    if tail:
        print("\n".join(tail))
    md += tail
    # A smoke run does not overwrite the figures of a real one.
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = RESULTS / ("smoke.md" if o.smoke else "latest.md")
    result.write_text("\n".join(md) + "\n")
    print(f"\nwritten to {result.relative_to(ROOT)}")
    if t.content_failures:
        print("bench: CONTENTS CHECK FAILED", file=sys.stderr)
    else:
        print("contents check: every method left identical contents in every scenario")
    if t.count_failures:
        print("bench: COUNTS CHECK FAILED", file=sys.stderr)
    elif expected:
        print("counts check: sequin_upsert returned the expected counts in every scenario")
    return 1 if t.content_failures or t.count_failures else 0


def compare(b: Bench) -> int:
    infos, expected = prepare(b)
    return report(b, infos, expected, measure(b, expected))


######################################################################################
# --scale: time per record of (D) at growing N; peak memory of the backend
######################################################################################
def proc_field(name: str) -> str:
    """SQL expression: a field of the backend's /proc/self/status in kB (NULL if unreadable)."""
    return (f"(SELECT (regexp_match(pg_read_file('/proc/self/status'), '{name}:\\s+(\\d+)'))[1]"
            "::bigint)")


def mb(kb: str | int) -> str:
    kb = str(kb)
    return f"{int(kb) / 1024:.1f}" if re.fullmatch(r"[0-9]+", kb) else "n/a"


def scale_times(b: Bench, sizes: list[int], md: list[str]) -> int:
    """Times (D) on a fresh insert of the first n records for each size; 1 on a failure."""
    o, status = b.o, 0
    print(f"\n{'N':<10} | {'median seconds':>14} | {'µs per record':>13} | {'records/s':>10}")
    for n in sizes:
        times = []
        for _ in range(o.runs):
            try:
                r = b.run_once("scale", METHOD["D"], -(-n // o.batch), checks=False)
            except BenchError as e:
                print(f"ERROR: (D) at N={n} failed:\n{e}", file=sys.stderr)
                status = 1
                break
            times.append(r.seconds)
            if r.counts != f"inserted={n} updated=0 deleted=0 skipped=0":
                print(f"COUNTS MISMATCH at N={n}: sequin_upsert returned {r.counts}, expected "
                      f"inserted={n}", file=sys.stderr)
                status = 1
            rows = b.pgs("SELECT count(*) FROM stripe.subscriptions")
            if rows != str(n):
                print(f"CONTENTS MISMATCH at N={n}: {rows} rows in stripe.subscriptions, "
                      f"expected {n}", file=sys.stderr)
                status = 1
        else:
            med = statistics.median(times)
            us, rps = f"{med * 1e6 / n:.2f}", f"{n / med:.0f}"
            print(f"{n:<10} | {med:14.3f} | {us:>13} | {rps:>10}")
            md.append(f"| {n} | {med:.3f} | {us} | {rps} |")
    return status


def mem_probe(b: Bench, name: str, cmd: str, md: list[str]) -> int:
    """The backend's memory around one psql command; 1 if it failed. Peak RSS (VmHWM) is
    read by the backend itself from /proc/self/status (pg_read_file, superuser); it includes
    the shared buffers the backend touched (RssShmem, up to shared_buffers). The backend's
    private memory (RssAnon) has no peak counter: it is sampled from here every 20 ms when
    /proc/<pid> is readable."""
    pidf, outf, errf = b.work / "pid", b.work / "mem.out", b.work / "err"
    pidf.unlink(missing_ok=True)
    script = f"""SET sequin.batch_size = {b.o.batch};
SELECT bench.reset('scale') \\g /dev/null
CHECKPOINT;
SELECT count(*) FROM sequin.sequin_upsert('[]') \\g /dev/null
SELECT {proc_field('VmHWM')} AS hwm0, {proc_field('RssAnon')} AS anon0 \\gset
\\o {pidf}
SELECT pg_backend_pid();
\\o
SELECT pg_sleep(0.3) \\g /dev/null
{cmd}
SELECT {proc_field('VmHWM')} AS hwm1, {proc_field('RssAnon')} AS anon1,
       {proc_field('RssShmem')} AS shm1 \\gset
\\echo MEM :hwm0 :anon0 :hwm1 :anon1 :shm1
SELECT 'ROWS ' || count(*) FROM stripe.subscriptions;
SELECT 'STAGING ' || count(*) FROM sequin.staging;
"""
    with open(outf, "w") as out, open(errf, "w") as err:
        p = subprocess.Popen([f"{PGBIN}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                              "-d", b.o.db], stdin=subprocess.PIPE, stdout=out, stderr=err,
                             text=True)
        p.stdin.write(script)
        p.stdin.close()
        peak, pid = 0, ""
        while p.poll() is None:
            try:
                if not pid and pidf.exists():
                    pid = (pidf.read_text().splitlines() or [""])[0].strip()
                if pid:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("RssAnon:"):
                            peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
    if p.returncode:
        print(f"ERROR: memory probe '{name}' failed:\n{errf.read_text()}", file=sys.stderr)
        return 1
    text = outf.read_text()
    hwm0, anon0, hwm1, _, shm1 = (re.search(r"^MEM (.*)$", text, re.M).group(1).split(" ")
                                  + [""] * 5)[:5]
    rows = re.search(r"^ROWS (.*)$", text, re.M).group(1)
    staged = re.search(r"^STAGING (.*)$", text, re.M).group(1)
    speak = mb(peak) if peak > 0 else "n/a"
    print(f"{name:<46} | {mb(hwm0):>8} | {mb(hwm1):>9} | {mb(shm1):>9} | {mb(anon0):>9} | "
          f"{speak:>9} | {rows} rows, {staged} left in staging")
    md.append(f"| {name} | {mb(hwm0)} | {mb(hwm1)} | {mb(shm1)} | {mb(anon0)} | {speak} | "
              f"{rows} rows, {staged} in staging |")
    return 0


def scale(b: Bench) -> int:
    """--scale: the times of (D) at growing N, then the memory probes; writes scale.md."""
    o = b.o
    sizes = [s for s in (10000, 100000, 1000000) if s <= o.scale_max] or [o.scale_max]
    maxn = sizes[-1]
    arr_n = min(maxn, 100000)
    t0 = time.time()
    log(f"generating {maxn} records (B={o.batch})")
    b.generate("scale", maxn, "fresh")
    b.pgs("CREATE TABLE bench.state_scale AS SELECT * FROM stripe.subscriptions WITH NO DATA;\n"
          "INSERT INTO bench.big SELECT jsonb_agg(record ORDER BY batch_no, pos)\n"
          "  FROM bench.records\n"
          f"  WHERE scenario = 'scale' AND batch_no::bigint * {o.batch} + pos < {arr_n};")
    copy_file = b.export("records", "scale")
    log(f"data ready in {elapsed(t0)}s")

    md = [
        "## sequin_upsert scaling: (D) sequin.sequin_upsert, fresh insert",
        "",
        f"B = {o.batch} records per call, median of {o.runs} runs; "
        f"PostgreSQL {b.server_version()},",
        b.machine(),
        b.command_line(),
        "",
        "| N | median seconds | µs per record | records/s |",
        "|---:|---:|---:|---:|",
    ]
    status = scale_times(b, sizes, md)

    arr_mb = b.pgs("SELECT round(pg_column_size(records) / 1048576.0, 1) FROM bench.big")
    copy_mb = f"{copy_file.stat().st_size / 1048576:.1f}"
    md += [
        "",
        "### Backend memory (MB)",
        "",
        "VmHWM = peak RSS of the backend, includes the shared buffers it touched (RssShmem);",
        "RssAnon = its private memory (peak sampled every 20 ms from /proc/<pid>/status).",
        f"The {arr_n}-record array is {arr_mb} MB of jsonb; the COPY input is {copy_mb} MB.",
        "",
        "| what | VmHWM before | VmHWM after | RssShmem after | RssAnon before | peak RssAnon "
        "| result |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    print(f"\nBackend memory in MB (array: {arr_mb} MB of jsonb, COPY input: {copy_mb} MB)")
    print(f"{'what':<46} | {'VmHWM0':>8} | {'VmHWM':>9} | {'RssShmem':>9} | {'RssAnon0':>9} | "
          f"{'peakAnon':>9} | result")
    for name, cmd in [
        (f"(D) sequin_upsert, one {arr_n}-record array",
         "SELECT * FROM sequin.sequin_upsert((SELECT records FROM bench.big)) \\g /dev/null"),
        (f"(A) expert SQL, one {arr_n}-record array",
         "SELECT bench.upsert_expert((SELECT records FROM bench.big)) \\g /dev/null"),
        (f"(E) COPY of {maxn} rows into sequin.staging",
         f"\\copy sequin.staging(record) FROM '{copy_file}'"),
    ]:
        status |= mem_probe(b, name, cmd, md)
    w = b.so_changed_warning()
    if w:
        print(w, file=sys.stderr)
        md += ["", w]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_md = RESULTS / "scale.md"
    out_md.write_text("\n".join(md) + "\n")
    print(f"\nwritten to {out_md.relative_to(ROOT)}")
    return status


######################################################################################
# --concurrent
######################################################################################
CONCURRENT_SETUP = """
CREATE TABLE bench.items (id text PRIMARY KEY, payload text, v bigint);
SELECT sequin.create_mapping('bench:items', 'bench.items',
    '{"id": "id", "payload": "data.p", "v": "updated_idx"}', order_column => 'v');
-- Every record sent, so that the end state can be compared with the serial outcome.
CREATE UNLOGGED TABLE bench.sent (id text, v bigint, deleted boolean);
"""

# One call: 16 records over 400 keys, random versions (never twice the same for a key: the
# serial outcome is then well defined), a share of deletes. What was sent is logged in the
# same transaction, so a failed call logs nothing.
CONCURRENT_SCRIPT = """\\set delpct {delpct}
BEGIN;
CREATE TEMP TABLE IF NOT EXISTS batch (id text, v bigint, deleted boolean) ON COMMIT DELETE ROWS;
INSERT INTO batch SELECT 'k' || (1 + floor(random() * 400))::int,
       (random() * 1e15)::bigint, random() * 100 < :delpct FROM generate_series(1, 16);
SELECT * FROM sequin.sequin_upsert((SELECT jsonb_agg(jsonb_build_object('id', id,
    'collection_id', 'bench:items', 'updated_idx', v, 'deleted', deleted,
    'data', jsonb_build_object('p', 'p' || v))) FROM batch));
INSERT INTO bench.sent SELECT * FROM batch;
COMMIT;
"""

CONCURRENT_MODEL = """
SELECT count(*) FROM (
  (SELECT id, v FROM (SELECT DISTINCT ON (id) id, v, deleted FROM bench.sent
                       ORDER BY id, v DESC) s WHERE NOT deleted
   EXCEPT SELECT id, v FROM bench.items)
  UNION ALL
  (SELECT id, v FROM bench.items
   EXCEPT SELECT id, v FROM (SELECT DISTINCT ON (id) id, v, deleted FROM bench.sent
                              ORDER BY id, v DESC) s WHERE NOT deleted)) d
"""


def concurrent_load(b: Bench, delpct: int, script: Path) -> dict[str, str]:
    """One pgbench load; returns tps, calls, failed, deadlocks and the model check."""
    o = b.o
    b.pgs("TRUNCATE bench.items, bench.sent; DELETE FROM sequin.tombstones "
          "WHERE collection_id = 'bench:items';")
    script.write_text(CONCURRENT_SCRIPT.replace("{delpct}", str(delpct)))
    deadlocks_sql = ("SELECT pg_stat_force_next_flush(); SELECT deadlocks FROM pg_stat_database "
                     "WHERE datname = current_database()")
    before = int(b.pgs(deadlocks_sql).split()[-1])
    run = subprocess.run([f"{PGBIN}/pgbench", "-n", "-c", "8", "-j", "2", "-T", str(o.seconds),
                          "-f", str(script), o.db], text=True, capture_output=True)
    out = run.stdout + run.stderr
    time.sleep(1)  # backends report their statistics when they end
    after = int(b.pgs(deadlocks_sql).split()[-1])
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    calls = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    aborted = len(re.findall(r"client \d+ aborted", out))
    return {"tps": tps.group(1) if tps else "0", "calls": calls.group(1) if calls else "0",
            "failed": str(int(failed.group(1) if failed else 0) + aborted),
            "deadlocks": str(after - before),
            "differ": b.pgs(CONCURRENT_MODEL).strip(), "rc": str(run.returncode),
            "output": out}


def concurrent(b: Bench) -> int:
    """--concurrent: 8 pgbench clients with 0 % and 5 % deletes; writes concurrent.md."""
    b.pgs(CONCURRENT_SETUP)
    script = b.work / "concurrent.sql"
    results = {}
    for delpct in (0, 5):
        log(f"concurrent: 8 clients, batches of 16 over 400 keys, {delpct} % deletes, "
            f"{b.o.seconds} s")
        results[delpct] = concurrent_load(b, delpct, script)
    ratio = float(results[5]["tps"]) / max(float(results[0]["tps"]), 1e-9)
    md = [
        "## sequin_upsert: concurrent writers",
        "",
        f"pgbench -c 8, {b.o.seconds} s per load; each call sends 16 records over 400 keys "
        f"with random versions; PostgreSQL {b.server_version()},",
        b.machine(),
        b.command_line(),
        "",
        "| deletes | tps | calls | failed calls | deadlocks (pg_stat_database) | keys not as the "
        "serial outcome |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    status = 0
    print(f"\n{'deletes':>8} | {'tps':>9} | {'calls':>7} | {'failed':>6} | {'deadlocks':>9} | "
          "keys differing from the serial outcome")
    for delpct, r in results.items():
        print(f"{delpct:>7}% | {float(r['tps']):>9.1f} | {r['calls']:>7} | {r['failed']:>6} | "
              f"{r['deadlocks']:>9} | {r['differ']}")
        md.append(f"| {delpct} % | {float(r['tps']):.1f} | {r['calls']} | {r['failed']} | "
                  f"{r['deadlocks']} | {r['differ']} |")
        if r["failed"] != "0" or r["differ"] != "0" or r["rc"] != "0":
            status = 1
            print(f"FAILURE with {delpct} % deletes:\n{r['output']}", file=sys.stderr)
    print(f"tps with 5 % deletes / without: {ratio:.2f} (target: at least 0.5)")
    md += ["", f"tps with 5 % deletes / without: {ratio:.2f} (target: at least 0.5)."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_md = RESULTS / "concurrent.md"
    out_md.write_text("\n".join(md) + "\n")
    print(f"\nwritten to {out_md.relative_to(ROOT)}")
    return status


######################################################################################
# Main
######################################################################################
def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "run"):
        print("usage: bench.py check|run [options] (called by bench/run)", file=sys.stderr)
        return 2
    mode, args = argv[0], argv[1:]
    try:
        o = parse_args(args)
    except Usage as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    if o.help:
        if mode == "check":
            print(usage_text().rstrip("\n"))
        return 3
    if mode == "check":
        # What bench/run needs to know before it sets up the server.
        if o.existing:
            print("existing-server")
        return 0

    # run: bench/run started the server (or PG* point at one) and exported PG_CONFIG and
    # SEQUIN_PGBIN.
    env = os.environ
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c client_min_messages=warning"
    ours = env.get("SEQUIN_CLUSTER_OWNED", "0") == "1"
    psql(f"DROP DATABASE IF EXISTS {o.db}", db="postgres")
    psql(f"CREATE DATABASE {o.db}", db="postgres")
    env["PGDATABASE"] = o.db
    try:
        with tempfile.TemporaryDirectory(prefix="sequin_bench.") as work:
            b = Bench(o, args, Path(work))
            b.setup()
            if o.concurrent:
                return concurrent(b)
            return scale(b) if o.scale else compare(b)
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    finally:
        if not ours and not o.keep_db:
            try:
                psql(f"DROP DATABASE IF EXISTS {o.db}", db="postgres")
            except BenchError:
                pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
