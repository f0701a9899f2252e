#!/usr/bin/env python3
"""Black-box, model-based concurrency checks of sequin.sequin_upsert with deletes (issue 11).

Driven by test/suites/12_delete_races.sh, which creates the database; this prints TAP lines
("ok - ID: ...", "not ok - ID: ...") and exits 1 when a check failed. Standard library only: every session is a
`psql` process fed through a pipe, so the driver can hold a transaction open in one session
while another one runs (or blocks) and then commit it.

Parts (each check id is the first word of its TAP line):
  race-*      the issue's two scripted races (an insert held open while a delete of the same
              key commits, and the reverse), on an absent key and on a stored one: the end
              state must be that of one call after the other (never a row beside a newer
              tombstone);
  rr-*, ser-* REPEATABLE READ / SERIALIZABLE: a transaction whose snapshot is older than a
              committed change of the key gets 40001 (as a plain UPDATE does) or ends in a
              serial outcome;
  model-*     4-6 sessions send random transactions of one call of 1-16 records (upserts,
              deletes, late and replayed records; a third of the keys taken from transactions
              still open) over 10-40 keys, at READ COMMITTED, REPEATABLE READ and
              SERIALIZABLE, holding some open while others commit, committing or rolling
              back at random. No call may fail but with 40001 at REPEATABLE READ and above
              (a deadlock fails it). Every 0.5-2 s all transactions end (a checkpoint) and the
              table must equal the serial model: per key, among the records of committed
              transactions, the highest version wins and the key is absent when that record
              is a delete (checked at each checkpoint, before later records of a key can
              overwrite a wrong row);
  bench-*     pgbench, 8 clients, batches of 16 records over 20 keys, without and with 5 %
              deletes, and calls of 120 records in 4 chunks (sequin.batch_size = 32) with 25 %
              deletes over 200 keys: no failed call, no deadlock (pg_stat_database), end state
              equal to the model (tps printed);
  replay-*    a replay (every record stale) of upserts right after a call that inserted them,
              and as a session's first call, and a replay of deletes: works in BEGIN READ
              ONLY, takes no transaction id, and sequin.stats counts it;
  prepared-*  after PREPARE TRANSACTION of a session's first call, its next call does not
              wait for the prepared transaction (needs max_prepared_transactions > 0).

Environment: SEQUIN_RACE_DB (database, with the extension created), SEQUIN_RACE_SEED,
SEQUIN_RACE_SECONDS (time budget, default 30), SEQUIN_RACE_PARTS (default "races replay
prepared model bench": the parts to run).
"""
import json
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time

DB = os.environ.get("SEQUIN_RACE_DB", "sequin_delete_races")
SEED = int(os.environ.get("SEQUIN_RACE_SEED", "1"))
SECONDS = float(os.environ.get("SEQUIN_RACE_SECONDS", "30"))
PARTS = set(os.environ.get("SEQUIN_RACE_PARTS", "races replay prepared model bench").split())
PSQL = os.environ.get("SEQUIN_PSQL", "psql")
PGBENCH = os.environ.get("SEQUIN_PGBENCH", "pgbench")

rng = random.Random(SEED)
failures = 0
reported = set()


# ---- TAP ---------------------------------------------------------------------------------
def comment(text):
    for line in str(text).splitlines() or [""]:
        print("# " + line, flush=True)


def tap(check, ok, desc, diag=()):
    """One TAP line."""
    global failures
    assert check not in reported, check
    reported.add(check)
    print(("ok" if ok else "not ok") + " - " + check + ": " + desc, flush=True)
    if not ok:
        for d in diag:
            comment("  " + d)
        failures += 1
    return ok


def skip(check, desc, why):
    reported.add(check)
    print("ok - %s: %s # SKIP %s" % (check, desc, why), flush=True)


# ---- psql sessions -----------------------------------------------------------------------
class SessionDied(Exception):
    pass


class Result:
    def __init__(self, ok, sqlstate, message, rows):
        self.ok, self.sqlstate, self.message, self.rows = ok, sqlstate, message, rows

    def __repr__(self):
        if self.ok:
            return "ok %s" % ("|".join(self.rows) or "(no rows)")
        return "ERROR %s %s" % (self.sqlstate, self.message)


class Session:
    """A psql process fed through a pipe. send() starts one statement; poll() collects its
    result, which psql marks with an \\echo line carrying :ERROR and :SQLSTATE."""

    all = []

    def __init__(self, name, options=""):
        self.name = name
        env = dict(os.environ)
        env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c client_min_messages=warning " + options).strip()
        self.proc = subprocess.Popen(
            [PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=terse", "-d", DB],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, env=env)
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.seq = 0
        self.pending = None
        self.sent_sql = None
        self.sent_at = 0.0
        self.out = []
        self.err = None
        Session.all.append(self)
        r = self.run("SELECT pg_backend_pid()")
        if not r.ok:
            raise SessionDied("%s: could not connect: %r %s" % (name, r, "".join(self.stderr)))
        self.pid = int(r.rows[0])

    def _read_out(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, sql):
        assert self.pending is None, (self.name, self.sent_sql)
        self.seq += 1
        self.pending = self.seq
        self.sent_sql = sql
        self.sent_at = time.time()
        self.out, self.err = [], None
        text = (sql.rstrip().rstrip(";") + ";\n"
                "\\if :ERROR\n\\echo @@ERR :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE\n\\endif\n"
                "\\echo @@DONE %d :ERROR :SQLSTATE\n" % self.seq)
        try:
            self.proc.stdin.write(text)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise SessionDied("%s: %s" % (self.name, e))

    def poll(self, timeout=0.0):
        """The pending statement's Result, or None if it has not ended within timeout."""
        assert self.pending is not None
        deadline = time.time() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                return None
            if line is None:
                raise SessionDied("%s: psql ended: %s" % (self.name, "".join(self.stderr[-5:])))
            if line.startswith("@@ERR "):
                self.err = line[6:]
            elif line.startswith("@@DONE "):
                _, seq, error, state = line.split(" ", 3)
                if int(seq) != self.pending:
                    continue
                self.pending = None
                if error == "true":
                    st, _, msg = (self.err or "? ?").partition(" ")
                    return Result(False, state if state != "00000" else st, msg, self.out)
                return Result(True, "00000", "", self.out)
            else:
                self.out.append(line)

    def run(self, sql, timeout=60.0):
        self.send(sql)
        r = self.poll(timeout)
        if r is None:
            raise SessionDied("%s: no answer in %.0f s to: %s" % (self.name, timeout, sql[:200]))
        return r

    def one(self, sql):
        r = self.run(sql)
        if not r.ok:
            raise RuntimeError("%s: %s failed: %r" % (self.name, sql[:300], r))
        return r.rows[0] if r.rows else None

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self in Session.all:
            Session.all.remove(self)

    @staticmethod
    def close_all():
        for s in list(Session.all):
            if s.pending is not None:
                s.proc.kill()
            s.close()


def wait_done_or_blocked(ctl, s, timeout=5.0):
    """Waits until s's pending statement ended ("done", its Result) or waits on a lock
    ("blocked", None); ("running", None) after timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = s.poll(0.1)
        if r is not None:
            return "done", r
        w = ctl.one("SELECT coalesce(wait_event_type, '') FROM pg_stat_activity WHERE pid = %d" % s.pid)
        if w == "Lock":
            return "blocked", None
    return "running", None


# ---- records -------------------------------------------------------------------------------
def rec(coll, key, v, deleted=False):
    r = {"id": key, "collection_id": coll, "updated_idx": v}
    if deleted:
        r["deleted"] = True
    else:
        r["data"] = {"p": "p%d" % v}
    return r


def call(records):
    return "SELECT * FROM sequin.sequin_upsert($json$%s$json$::jsonb)" % json.dumps(records)


def counts(r):
    """(inserted, updated, deleted, skipped) of a successful call's result."""
    return tuple(int(x) for x in r.rows[0].split("|"))


def make_target(ctl, name):
    ctl.one("CREATE TABLE public.%s (id text PRIMARY KEY, payload text, v bigint)" % name)
    ctl.one("SELECT sequin.create_mapping('%s', 'public.%s', "
            "'{\"id\": \"id\", \"payload\": \"data.p\", \"v\": \"updated_idx\"}', order_column => 'v')"
            % (name, name))


def table_state(ctl, table):
    r = ctl.run("SELECT id, payload, v FROM public.%s ORDER BY id" % table)
    out = {}
    for line in r.rows:
        i, p, v = line.split("|")
        out[i] = (p, int(v) if v else None)
    return out


def tombstones(ctl, coll):
    """{key: max tombstone version} (the key's first element)."""
    r = ctl.run("SELECT key[1], max(version::text::numeric) FROM sequin.tombstones "
                "WHERE collection_id = '%s' GROUP BY 1" % coll)
    return {k: int(float(v)) for k, v in (line.split("|") for line in r.rows)}


def rows_beside_newer_tombstone(ctl, table):
    r = ctl.run("SELECT count(*) FROM public.%s i JOIN sequin.tombstones t "
                "ON t.collection_id = '%s' AND t.key = ARRAY[i.id] AND t.version::text::numeric > i.v"
                % (table, table))
    return int(r.rows[0])


def deadlocks(ctl, settle=True):
    if settle:
        time.sleep(1)  # backends report their statistics when they end
    ctl.one("SELECT pg_stat_force_next_flush()")
    return int(ctl.one("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"))


def describe_key(ctl, table, key):
    row = ctl.run("SELECT payload, v FROM public.%s WHERE id = '%s'" % (table, key)).rows
    ts = ctl.run("SELECT version FROM sequin.tombstones WHERE collection_id = '%s' AND key = ARRAY['%s']"
                 % (table, key)).rows
    return "row %s, tombstone %s" % ("(" + row[0].replace("|", ", v ") + ")" if row else "absent",
                                    ", ".join(ts) if ts else "none")


# ---- scripted races ---------------------------------------------------------------------
def scripted_races(ctl):
    """The issue's races: one session's call held open while another session's call of the
    same key runs and commits, then the first commits. A correct extension makes the second
    wait (or otherwise ends as one after the other); the end state is then the serial one."""
    a, b = Session("A"), Session("B")
    n = [0]

    def race(check, held_deleted, stored, desc):
        n[0] += 1
        key = "race%d" % n[0]
        if stored:
            ctl.one(call([rec("races", key, 1)]))
        held_v, other_v = (5, 2) if held_deleted else (2, 5)
        held = rec("races", key, held_v, deleted=held_deleted)
        other = rec("races", key, other_v, deleted=not held_deleted)
        r1 = a.run("BEGIN")
        r2 = a.run(call([held]))
        b.send(call([other]))
        how, rb = wait_done_or_blocked(ctl, b, 5.0)
        rc = a.run("COMMIT")
        if rb is None:
            rb = b.poll(30.0)
        if rb is None:
            b.proc.kill()
            tap(check, False, desc, ["the second call did not end 30 s after the first committed"])
            return
        state = describe_key(ctl, "races", key)
        present = ctl.one("SELECT count(*) FROM public.races WHERE id = '%s'" % key) != "0"
        ok = r1.ok and r2.ok and rc.ok and rb.ok and not present
        tap(check, ok, "%s: the key ends absent (%s; second call %s: %s)" % (
            desc, state, "waited" if how == "blocked" else "did not wait", rb),
            ["held call: %r, commit: %r" % (r2, rc)])

    race("race-insert-open-delete", False, False,
         "an insert (v2) held open, a delete of the same absent key (v5) commits, then the insert")
    race("race-delete-open-insert", True, False,
         "a delete (v5) of an absent key held open, an insert of it (v2) commits, then the delete")
    race("race-update-open-delete", False, True,
         "an update (v1 -> v2) held open, a delete of the key (v5) commits, then the update")
    race("race-delete-open-update", True, True,
         "a delete (v5) of a stored key (v1) held open, an update of it (v2) commits, then the delete")
    a.close()
    b.close()


def isolation_races(ctl):
    """A transaction at REPEATABLE READ (or SERIALIZABLE) takes its snapshot, another session
    changes the key and commits, then the first one's call touches the key. PostgreSQL raises
    40001 for a plain UPDATE or DELETE of a row changed since the snapshot, and for an INSERT
    ... ON CONFLICT that meets a row its snapshot cannot see; the extension must raise 40001 or
    end in a serial outcome (never a row beside a newer tombstone)."""
    a, b = Session("A"), Session("B")
    n = [0]

    def race(check, level, stored, other, mine, expect, desc):
        n[0] += 1
        key = "rr%d" % n[0]
        if stored is not None:
            ctl.one(call([rec("races", key, stored)]))
        a.one("BEGIN ISOLATION LEVEL " + level)
        a.one("SELECT count(*) FROM public.races")  # the snapshot
        rb = b.run(call([rec("races", key, other[0], deleted=other[1])]))
        ra = a.run(call([rec("races", key, mine[0], deleted=mine[1])]))
        rc = a.run("COMMIT") if ra.ok else a.run("ROLLBACK")
        final = ctl.run("SELECT v FROM public.races WHERE id = '%s'" % key).rows
        final = int(final[0]) if final else None
        state = describe_key(ctl, "races", key)
        serial_error = (not ra.ok and ra.sqlstate == "40001") or (ra.ok and not rc.ok and rc.sqlstate == "40001")
        # A's call failing with 40001 leaves B's change alone; A's succeeding, both in order.
        after_b_alone = None if other[1] else other[0]
        ok = rb.ok and ((serial_error and final == after_b_alone) or
                        (ra.ok and rc.ok and final == expect))
        outcome = "40001" if serial_error else ("%r, commit %r" % (ra, rc))
        tap(check, ok, "%s: 40001 or a serial outcome (got %s; %s)" % (desc, outcome, state),
            ["expected the key %s" % ("absent" if expect is None else "at v%d" % expect)])

    race("rr-update-vs-delete", "REPEATABLE READ", 1, (5, True), (3, False), None,
         "REPEATABLE READ: row v1 in the snapshot, another session deletes it at v5, then an update to v3")
    race("rr-insert-vs-delete", "REPEATABLE READ", None, (5, True), (3, False), None,
         "REPEATABLE READ: key absent in the snapshot, another session deletes it at v5 (tombstone), then an insert at v3")
    race("rr-delete-vs-insert", "REPEATABLE READ", None, (3, False), (5, True), None,
         "REPEATABLE READ: key absent in the snapshot, another session inserts it at v3, then a delete at v5")
    race("rr-update-vs-update", "REPEATABLE READ", 1, (9, False), (5, False), 9,
         "REPEATABLE READ: row v1 in the snapshot, another session updates it to v9, then an update to v5")
    race("ser-insert-vs-delete", "SERIALIZABLE", None, (5, True), (3, False), None,
         "SERIALIZABLE: key absent in the snapshot, another session deletes it at v5, then an insert at v3")
    a.close()
    b.close()


# ---- the random model ----------------------------------------------------------------------
LEVELS = [("READ COMMITTED", 0.6), ("REPEATABLE READ", 0.25), ("SERIALIZABLE", 0.15)]


def pick_level():
    x, acc = rng.random(), 0.0
    for level, p in LEVELS:
        acc += p
        if x < acc:
            return level
    return LEVELS[0][0]


class Model:
    """What was sent, and the serial outcome of what committed."""

    def __init__(self, keys):
        self.keys = keys
        self.hot = keys[:max(3, len(keys) // 4)]
        self.used = {k: set() for k in keys}
        self.sent = {k: [] for k in keys}  # every record sent for a key (for replays)
        self.best = {}  # key -> (version, deleted) among committed records
        self.committed = set()  # id() of the sent records whose transaction committed

    def records(self, coll, inflight):
        """1-16 records; a third of the keys are taken from transactions still open or
        running (inflight), so that calls meet each other's uncommitted writes."""
        out = []
        for _ in range(rng.randint(1, 16)):
            y = rng.random()
            k = rng.choice(inflight if inflight and y < 0.35 else self.hot if y < 0.65 else self.keys)
            x = rng.random()
            if x < 0.12 and self.sent[k]:
                r = dict(rng.choice(self.sent[k]))  # a replay: the same record again
                self.sent[k].append(r)
                out.append(r)
                continue
            top = max(self.used[k], default=0)
            if x < 0.35 and top > 1:  # late: below the newest version sent
                v = rng.randint(1, top - 1)
                if v in self.used[k]:
                    continue
            else:
                v = top + rng.randint(1, 20)
            self.used[k].add(v)
            r = rec(coll, k, v, deleted=rng.random() < 0.3)
            self.sent[k].append(r)
            out.append(r)
        if not out:
            return self.records(coll, inflight)
        return out

    def commit(self, records):
        for r in records:
            self.committed.add(id(r))
            cur = self.best.get(r["id"])
            if cur is None or r["updated_idx"] > cur[0]:
                self.best[r["id"]] = (r["updated_idx"], bool(r.get("deleted")))

    def history(self, key):
        """The records sent for key, each with whether its transaction committed."""
        return [(r, id(r) in self.committed) for r in self.sent.get(key, [])]

    def expected(self):
        return {k: ("p%d" % v, v) for k, (v, d) in self.best.items() if not d}


class Txn:
    def __init__(self, autocommit):
        self.autocommit = autocommit
        self.level = "READ COMMITTED" if autocommit else pick_level()
        self.records = None
        self.state = "new"  # new -> begun -> calling -> open | aborted


def model_phase(ctl, seconds):
    nsess = rng.randint(4, 6)
    nkeys = rng.randint(10, 40)
    model = Model(["k%02d" % i for i in range(nkeys)])
    dl0 = deadlocks(ctl, settle=False)
    # A deadlock is found after deadlock_timeout (1 s by default): sooner here, so that the
    # sessions get more done in the time (a superuser setting: left alone for other roles).
    options = "-c statement_timeout=120s"
    if ctl.one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == "t":
        options += " -c deadlock_timeout=100ms"
    sessions = [Session("S%d" % i, options) for i in range(nsess)]
    txn = {s: None for s in sessions}
    stat = dict(calls=0, committed=0, rolled_back=0, serialization=0, held=0, waited=0)
    errors, bad_counts = [], []

    def finished_call(s, r):
        t = txn[s]
        stat["calls"] += 1
        if time.time() - s.sent_at > 0.2:
            stat["waited"] += 1
        if r.ok:
            c = counts(r)
            if sum(c) != len(t.records) or len(c) != 4:
                bad_counts.append("%s: %d records, counts %r" % (s.name, len(t.records), c))
            if t.autocommit:
                model.commit(t.records)
                stat["committed"] += 1
                txn[s] = None
            else:
                t.state = "open"
        else:
            if r.sqlstate == "40001" and t.level != "READ COMMITTED":
                stat["serialization"] += 1
            else:
                errors.append("%s at %s: %s %s" % (s.name, t.level, r.sqlstate, r.message))
            if t.autocommit:
                txn[s] = None
                stat["rolled_back"] += 1
            else:
                t.state = "aborted"

    def end_txn(s, commit):
        t = txn[s]
        if t.state == "aborted" or not commit:
            s.one("ROLLBACK")
            stat["rolled_back"] += 1
        else:
            r = s.run("COMMIT")
            if r.ok:
                if t.records:
                    model.commit(t.records)
                stat["committed"] += 1
            elif r.sqlstate == "40001" and t.level != "READ COMMITTED":
                stat["serialization"] += 1
                stat["rolled_back"] += 1
            else:
                errors.append("%s COMMIT at %s: %s %s" % (s.name, t.level, r.sqlstate, r.message))
                stat["rolled_back"] += 1
        txn[s] = None

    def advance(s):
        t = txn[s]
        if t is None:
            t = txn[s] = Txn(autocommit=rng.random() < 0.2)
            if not t.autocommit:
                s.one("BEGIN ISOLATION LEVEL " + t.level)
                t.state = "begun"
                if t.level != "READ COMMITTED" and rng.random() < 0.5:
                    s.one("SELECT count(*) FROM public.items")  # an early snapshot
                    return
        if t.state in ("new", "begun"):
            inflight = sorted({r["id"] for u in txn.values() if u is not None and u.records for r in u.records})
            t.records = model.records("items", inflight)
            t.state = "calling"
            s.send(call(t.records))
        elif t.state == "open":
            if rng.random() < 0.4:
                stat["held"] += 1
                return  # stays open while the others go on
            end_txn(s, rng.random() < 0.8)
        elif t.state == "aborted":
            end_txn(s, False)

    def poll_all(timeout):
        moved = False
        for s in sessions:
            if s.pending is not None:
                r = s.poll(timeout)
                if r is not None:
                    finished_call(s, r)
                    moved = True
        return moved

    def drain():
        """Every open transaction ends (committed or rolled back as it would have been), every
        waiting call ends; None, or what still hung after 60 s without progress."""
        last = time.time()
        while any(txn[s] is not None or s.pending is not None for s in sessions):
            if poll_all(0.02):
                last = time.time()
            for s in sessions:
                t = txn[s]
                if s.pending is None and t is not None:
                    if t.state in ("new", "begun"):
                        t.records = []
                        end_txn(s, True)
                    elif t.state in ("open", "aborted"):
                        end_txn(s, rng.random() < 0.8)
                    last = time.time()
            if time.time() - last > 60:
                return ["%s: %s" % (s.name, s.sent_sql[:200]) for s in sessions if s.pending is not None]
        return None

    # Checkpoints: every 0.5-2 s all transactions end and the table is compared with the model,
    # so that a wrong row is seen before later records of its key overwrite it.
    checkpoints = []  # (seconds since start, keys that differ, rows beside a newer tombstone, diag)
    hung = None
    start = time.time()
    try:
        next_cp = start + rng.uniform(0.5, 2.0)
        while True:
            now = time.time()
            if now >= next_cp or now - start >= seconds:
                hung = drain()
                if hung:
                    break
                ndiff, nbeside, diag = model_diff(ctl, "items", model.expected(), model.history)
                checkpoints.append((time.time() - start, ndiff, nbeside, diag))
                if now - start >= seconds:
                    break
                next_cp = time.time() + rng.uniform(0.5, 2.0)
            poll_all(0.0)
            idle = [s for s in sessions if s.pending is None]
            if not idle:
                time.sleep(0.005)
                continue
            advance(rng.choice(idle))
            if rng.random() < 0.3:
                time.sleep(rng.random() * 0.02)
    except SessionDied as e:
        hung = [str(e)]
    finally:
        for s in sessions:
            if s.pending is not None:
                s.proc.kill()
            s.close()
    elapsed = time.time() - start
    dl = deadlocks(ctl) - dl0

    comment("model: seed %d, %d sessions, %d keys, %.1f s: %d calls (%d waited > 0.2 s), %d transactions "
            "committed, %d rolled back, %d serialization failures (40001), %d holds, %d checkpoints, "
            "%d deadlocks detected"
            % (SEED, nsess, nkeys, elapsed, stat["calls"], stat["waited"], stat["committed"],
               stat["rolled_back"], stat["serialization"], stat["held"], len(checkpoints), dl))
    tap("model-no-hang", hung is None, "every call and transaction of the random sessions ended",
        hung or [])
    tap("model-progress", stat["committed"] >= 20 and len(checkpoints) >= 2,
        "the random sessions committed transactions (%d) and reached checkpoints (%d)"
        % (stat["committed"], len(checkpoints)))
    tap("model-no-failed-call", not errors,
        "no call failed except 40001 at REPEATABLE READ / SERIALIZABLE (%d failed)" % len(errors),
        errors[:8] + (["... %d more" % (len(errors) - 8)] if len(errors) > 8 else []))
    tap("model-counts", not bad_counts,
        "every call's inserted + updated + deleted + skipped = its records", bad_counts[:5])
    bad = [cp for cp in checkpoints if cp[1]]
    diag = []
    if bad:
        diag = ["first at checkpoint %d (%.1f s):" % (checkpoints.index(bad[0]) + 1, bad[0][0])] + bad[0][3]
    tap("model-end-state", checkpoints and not bad,
        "whenever all transactions had ended (%d checkpoints), the table equaled the serial model "
        "(%d checkpoints differ, at most %d keys; %d keys at the end)"
        % (len(checkpoints), len(bad), max([cp[1] for cp in checkpoints] or [0]), len(model.expected())), diag)
    beside = [cp[2] for cp in checkpoints if cp[2]]
    tap("model-tombstones", checkpoints and not beside,
        "at every checkpoint, no row sat beside a newer tombstone (%d checkpoints with such rows, at most %d)"
        % (len(beside), max(beside or [0])))


def model_diff(ctl, table, expected, history):
    """(keys whose row differs from the model, rows beside a newer tombstone, diagnostics)."""
    actual = table_state(ctl, table)
    diff = sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
    diag = []
    for k in diff[:6]:
        e, a = expected.get(k), actual.get(k)
        diag.append("%s: model %s, table %s (%s)" % (
            k, "absent" if e is None else "v%d" % e[1], "absent" if a is None else "v%s %s" % (a[1], a[0]),
            describe_key(ctl, table, k)))
        h = history(k)
        if h:
            diag.append("   last records sent for %s (* = committed): %s" % (k, ", ".join(
                ("del " if r[0].get("deleted") else "") + "v%d" % r[0]["updated_idx"] + ("*" if r[1] else "")
                for r in h[-12:])))
    if len(diff) > 6:
        diag.append("... %d more" % (len(diff) - 6))
    return len(diff), rows_beside_newer_tombstone(ctl, table), diag


def compare_with_model(ctl, table, expected, check, tomb_check, history, who):
    ndiff, beside, diag = model_diff(ctl, table, expected, history)
    tap(check, ndiff == 0, "after %s, the table equals the serial model (%d keys present in the model; %d differ)"
        % (who, len(expected), ndiff), diag)
    tap(tomb_check, beside == 0, "after %s, no row sits beside a newer tombstone (%d do)" % (who, beside))


# ---- pgbench ------------------------------------------------------------------------------
BENCH_SCRIPT = r"""
WITH r AS MATERIALIZED (
  SELECT 'k' || (1 + floor(random() * :nkeys))::int AS id, d,
         -- versions from a sequence, 10 % of them late; even for upserts, odd for deletes, so
         -- two records of a key with equal versions are the same record (payload 'p' || v)
         2 * (CASE WHEN random() < 0.1 THEN greatest(1, n - floor(random() * 100)::bigint) ELSE n END)
           + d::int AS v
  FROM (SELECT nextval('public.bench_seq') AS n, random() < :pdel AS d
        FROM generate_series(1, :batch)) s
), sent AS (INSERT INTO public.bench_sent SELECT id, v, d FROM r)
SELECT * FROM sequin.sequin_upsert((
  SELECT jsonb_agg(CASE WHEN d THEN jsonb_build_object('id', id, 'collection_id', 'bench', 'updated_idx', v, 'deleted', true)
                   ELSE jsonb_build_object('id', id, 'collection_id', 'bench', 'updated_idx', v,
                                           'data', jsonb_build_object('p', 'p' || v)) END)
  FROM r));
"""


def pgbench(ctl, script, seconds, pdel, nkeys=20, clients=8, batch=16, options=""):
    dl0 = deadlocks(ctl, settle=False)  # after a 1 s settle at the end of the previous part
    env = dict(os.environ)
    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c client_min_messages=warning " + options).strip()
    p = subprocess.run([PGBENCH, "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "--failures-detailed",
                        "--random-seed", str(SEED), "-D", "nkeys=%d" % nkeys, "-D", "pdel=%s" % pdel,
                        "-D", "batch=%d" % batch, "-f", script, DB],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       timeout=seconds + 180)
    out = p.stdout

    def num(pattern):
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None

    res = dict(rc=p.returncode, out=out,
               processed=int(num(r"number of transactions actually processed: (\d+)") or 0),
               failed=int(num(r"number of failed transactions: (\d+)") or 0),
               deadlock_failures=int(num(r"number of deadlock failures: (\d+)") or 0),
               tps=num(r"tps = ([0-9.]+)") or 0.0,
               aborted=len(re.findall(r"client \d+ script \d+ aborted", out)),
               deadlocks=deadlocks(ctl) - dl0)
    res["errors"] = [line for line in out.splitlines() if "error" in line.lower()][:6]
    return res


def bench_phase(ctl, seconds_plain, seconds_del, seconds_chunks):
    ctl.one("CREATE SEQUENCE public.bench_seq")
    ctl.one("CREATE TABLE public.bench_sent (id text, v bigint, d boolean)")
    make_target(ctl, "bench")
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "sequin_races_%d.pgbench" % os.getpid())
    with open(path, "w") as f:
        f.write(BENCH_SCRIPT)
    try:
        runs = []
        # The third load: calls of 120 records, 25 % deletes, over 200 keys, in chunks of 32
        # (sequin.batch_size): a call's chunks, and its deletes and upserts, in one key order.
        loads = (("nodel", "0 % deletes", "0", seconds_plain, 20, 16, ""),
                 ("del", "5 % deletes", "0.05", seconds_del, 20, 16, ""),
                 ("chunks", "25 % deletes in calls of 4 chunks", "0.25", seconds_chunks, 200, 120,
                  "-c sequin.batch_size=32"))
        for suffix, label, pdel, secs, nkeys, batch, options in loads:
            ctl.one("TRUNCATE public.bench, public.bench_sent")
            ctl.one("DELETE FROM sequin.tombstones WHERE collection_id = 'bench'")
            res = pgbench(ctl, path, secs, pdel, nkeys=nkeys, batch=batch, options=options)
            runs.append((label, res))
            comment("pgbench, 8 clients, batches of %d over %d keys, %s, %d s: %.1f tps, %d calls, %d failed "
                    "(%d deadlock failures), %d clients aborted, pg_stat_database.deadlocks +%d"
                    % (batch, nkeys, label, secs, res["tps"], res["processed"], res["failed"],
                       res["deadlock_failures"], res["aborted"], res["deadlocks"]))
            diag = res["errors"] or res["out"].splitlines()[-8:]
            tap("bench-%s-ran" % suffix, res["aborted"] == 0 and res["processed"] > 0,
                "pgbench with %s: every client ran to the end (%d calls, %d aborted; pgbench exit %d)"
                % (label, res["processed"], res["aborted"], res["rc"]), diag)
            tap("bench-%s-no-failed-call" % suffix, res["failed"] == 0,
                "pgbench with %s: no failed call (%d failed of %d, %d of them deadlocks; %d deadlocks detected)"
                % (label, res["failed"], res["processed"] + res["failed"], res["deadlock_failures"],
                   res["deadlocks"]), diag)
            tap("bench-%s-no-deadlock" % suffix, res["deadlocks"] == 0,
                "pgbench with %s: writers lock in one order, the server detected no deadlock (%d)"
                % (label, res["deadlocks"]), diag)
            expected = {}
            for line in ctl.run("SELECT DISTINCT ON (id) id, v, d FROM public.bench_sent ORDER BY id, v DESC").rows:
                k, v, d = line.split("|")
                if d == "f":
                    expected[k] = ("p" + v, int(v))
            compare_with_model(ctl, "bench", expected, "bench-%s-end-state" % suffix,
                               "bench-%s-tombstones" % suffix, lambda k: [], "pgbench with " + label)
        if runs[0][1]["tps"] > 0:
            comment("pgbench: tps with 5 %% deletes / without: %.3f" % (runs[1][1]["tps"] / runs[0][1]["tps"]))
    finally:
        os.unlink(path)


# ---- replays ------------------------------------------------------------------------------
def replay_checks(ctl):
    """A replay (every record stale) right after a call that inserted new keys (so the session
    may have chosen to try INSERT first), as a session's first call, and of deletes: it must
    work in BEGIN READ ONLY and take no transaction id. The sessions stay connected until the
    end, so that each new one has a backend slot of its own, with no sequin.stats counter row
    for the collection yet; sequin.stats must count every skipped record of the calls that
    succeeded."""
    make_target(ctl, "ro")
    stats0 = int(ctl.one("SELECT coalesce(sum(skipped), 0) FROM sequin.stats WHERE collection_id = 'ro'"))
    skipped_returned = [0]
    sessions = []

    def new_session(name):
        s = Session(name)
        sessions.append(s)
        return s

    def upserts(prefix):
        return [rec("ro", "%s%02d" % (prefix, i), 7) for i in range(20)]

    def run_call(s, records):
        r = s.run(call(records))
        if r.ok:
            skipped_returned[0] += counts(r)[3]
        return r

    def all_skipped(r, records):
        return r.ok and r.rows == ["0|0|0|%d" % len(records)]

    def replay(check, s, records, read_only, desc, first):
        s.one("BEGIN READ ONLY" if read_only else "BEGIN")
        r = run_call(s, records)
        x = s.run("SELECT txid_current_if_assigned() IS NULL") if r.ok else None
        s.run("COMMIT" if r.ok else "ROLLBACK")
        if read_only:
            tap(check, all_skipped(r, records),
                "%s works in BEGIN READ ONLY and reports all %d skipped (%sreplay: %r)"
                % (desc, len(records), first, r))
        else:
            tap(check, all_skipped(r, records) and x.rows == ["t"],
                "%s takes no transaction id (%sreplay: %r; txid_current_if_assigned() is null: %s)"
                % (desc, first, r, "|".join(x.rows) if x else "-"))

    u1, u2 = upserts("a"), upserts("b")
    s = new_session("W1")
    r0 = run_call(s, u1)
    replay("replay-upserts-read-only-after-insert", s, u1, True,
           "a replay of upserts right after the same session's call inserted them", "insert: %r; " % r0)
    s = new_session("W2")
    r0 = run_call(s, u2)
    replay("replay-upserts-no-xid-after-insert", s, u2, False,
           "a replay of upserts right after the same session's call inserted them", "insert: %r; " % r0)
    replay("replay-upserts-read-only-first-call", new_session("R1"), u1 + u2, True,
           "a replay of upserts as the first call of a new session", "")
    replay("replay-upserts-no-xid-first-call", new_session("R2"), u1 + u2, False,
           "a replay of upserts as the first call of a new session", "")
    # Deletes: 5 of stored rows (v7 -> deleted at v8), 5 of absent keys (tombstones only).
    dels = [rec("ro", "a%02d" % i, 8, deleted=True) for i in range(5)]
    dels += [rec("ro", "gone%d" % i, 8, deleted=True) for i in range(5)]
    r0 = run_call(new_session("D0"), dels)
    replay("replay-deletes-read-only", new_session("D1"), dels, True,
           "a replay of deletes (of stored rows and of absent keys)", "deletes: %r; " % r0)
    replay("replay-deletes-no-xid", new_session("D2"), dels, False,
           "a replay of deletes (of stored rows and of absent keys)", "deletes: %r; " % r0)
    for s in sessions:
        s.close()
    got = int(ctl.one("SELECT coalesce(sum(skipped), 0) FROM sequin.stats WHERE collection_id = 'ro'")) - stats0
    tap("replay-counted", got == skipped_returned[0],
        "sequin.stats counts the skipped records that the successful calls returned, READ ONLY "
        "first calls included (+%d, returned %d)" % (got, skipped_returned[0]))


# ---- prepared transactions -------------------------------------------------------------
def prepared_check(ctl):
    desc = "after PREPARE TRANSACTION of a session's first call, its next call does not wait for it"
    mpt = int(ctl.one("SHOW max_prepared_transactions"))
    if mpt <= 0:
        skip("prepared-next-call", desc,
             "max_prepared_transactions = 0 (start the cluster with SEQUIN_PG_OPTS='-c max_prepared_transactions=10')")
        return
    make_target(ctl, "prep")
    gid = "sequin_races_%d" % os.getpid()
    s = Session("P", "-c statement_timeout=10s")
    try:
        s.one("BEGIN")
        r0 = s.run(call([rec("prep", "p1", 1)]))
        rp = s.run("PREPARE TRANSACTION '%s'" % gid)
        t0 = time.time()
        r1 = s.run(call([rec("prep", "p2", 1)]), timeout=40)
        took = time.time() - t0
        tap("prepared-next-call", r0.ok and rp.ok and r1.ok,
            "%s (first call %r, prepare %r, next call %r after %.1f s; statement_timeout 10 s)"
            % (desc, r0, rp, r1, took))
    finally:
        s.close()
        for g in ctl.run("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()").rows:
            ctl.run("ROLLBACK PREPARED '%s'" % g)


# ---- main --------------------------------------------------------------------------------
def main():
    # The scripted parts run first; what is left of the budget goes to the random sessions
    # (40 %), pgbench without deletes (15 %), with deletes (20 %) and with large calls (10 %);
    # the rest covers the
    # statistics' settling (1 s after each load) and the set-up.
    budget = max(SECONDS, 15.0)
    start = time.time()
    comment("delete races: seed %d, budget %.0f s, parts: %s (rerun: SEQUIN_RACE_SEED=%d SEQUIN_RACE_SECONDS=%.0f)"
            % (SEED, budget, " ".join(sorted(PARTS)), SEED, budget))
    ctl = Session("ctl")
    try:
        make_target(ctl, "races")
        make_target(ctl, "items")
        if "races" in PARTS:
            scripted_races(ctl)
            isolation_races(ctl)
        if "replay" in PARTS:
            replay_checks(ctl)
        if "prepared" in PARTS:
            prepared_check(ctl)
        left = budget - (time.time() - start)
        if "model" in PARTS:
            model_phase(ctl, max(6.0, 0.4 * left))
        if "bench" in PARTS:
            bench_phase(ctl, max(3, int(round(0.15 * left))), max(6, int(round(0.2 * left))),
                        max(4, int(round(0.1 * left))))
    except (SessionDied, RuntimeError, subprocess.TimeoutExpired) as e:
        tap("driver", False, "the driver ran every part", [str(e)])
    finally:
        Session.close_all()
    comment("delete races: %.1f s" % (time.time() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
