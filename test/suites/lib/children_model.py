#!/usr/bin/env python3
"""Model-based check of child collections (the SPEC's "Child collections: lists inside a record").

Driven by test/suites/17_children_model.sh, which creates the database with the extension; this
creates the tables and mappings, prints TAP lines ("ok - ...", "not ok - ...") and exits 1 when a
check failed. Needs psycopg2 (Debian's python3-psycopg2).

Three levels: parent p (mapping 't:p', order column updated_idx), child c (mapping 't:c', the list
"data.items.data" of each parent record, key id, p_id = $parent.id, pos = $index) and grandchild g
(mapping 't:g', the list "subs" of each child element, key id, c_id = $parent.id).

Per run (one seed): K parents get several versions each (distinct updated_idx per parent, random),
each an upsert with a random list drawn from the parent's own item ids (so no item moves between
parents; each item with a random "subs" list drawn from the item's own grandchild ids), or a delete.
In a third of the seeds, parents come in groups of 3 that share one pool of item ids, so an item
moves from one parent to another (the README: "an element whose key moves to another parent's list
moves with it", keeping its own children); a call then never holds two parents of one group.
A list is sometimes absent (its key, or the enclosing object, missing), null, empty, or partial
("has_more": true in the enclosing object: data.items for the children, the element itself for its
subs). All records are shuffled, some duplicated, and sent in random calls: arrays of 1-20
records, single objects, a record twice in one array; or through sequin.staging (multi-row and
single-row INSERTs applied by the statement); or staged with sequin.apply_mode = deferred in
1-3 INSERTs and applied by one sequin.apply_staging() (a call for the model). After every run the whole content of p, c and g (the run's ids) must equal the
model, and each call's counts must equal the model's (and add up to the records sent).

The model (the SPEC's rules):
  * within one call, the records of a parent key apply as if sent one by one in version order,
    and the superseded ones (all but the newest) count as skipped: "a stale or superseded parent
    record touches no child", so only the call's newest record of a key can touch its children;
  * that record is applied only if its version is newer than every earlier record of its key
    (the stored row's version, or the tombstone a delete left; an equal one is skipped);
  * an applied upsert inserts or updates the parent row, then its list: absent or null leaves
    the children as they are; otherwise every element is upserted (child row: id, p_id, qty,
    pos = $index; then the element's own "subs" list, by the same rules, for its grandchildren)
    and, unless the enclosing object says "has_more": true, the parent's child rows not in the
    list are deleted, each with its grandchildren;
  * an applied delete removes the parent row, its children and their children; a delete of an
    absent row is skipped (and still leaves a tombstone);
  * counts: inserted / updated / deleted for the applied record of a key, skipped for the rest.

On a mismatch it prints the seed, what differs, the calls that hold the parents concerned, and
then shrinks the case: the records of one failing parent only, then record by record, replayed
under fresh ids, to a minimal sequence of calls that still fails (printed as SQL to paste into
psql after the set-up, which is printed too).

Environment:
  SEQUIN_CHILDREN_DB       database (the extension created)
  SEQUIN_CHILDREN_SEEDS    seeds to run, space-separated (default 1 to 40, about 5 s); "random"
                           picks 40 random ones. The seed picks the mode too (seed % 5: array,
                           single, mixed, staging, deferred) unless SEQUIN_CHILDREN_MODE names one.
  SEQUIN_CHILDREN_MOVES    1 / 0: items move between parents in every / no seed (default: the
                           seed picks, (seed // 5) % 3 == 2)
  SEQUIN_CHILDREN_PARENTS  parents per run (default 30)
  SEQUIN_CHILDREN_SHRINK   0 to skip shrinking a failing case (default 1)
Reproduce one run:  SEQUIN_CHILDREN_SEEDS=5 SEQUIN_SUITES='17_*' bash test/run suites
"""
import json
import os
import random
import sys
import time

import psycopg2

DB = os.environ.get("SEQUIN_CHILDREN_DB", "sequin_children_model")
SEEDS_ENV = os.environ.get("SEQUIN_CHILDREN_SEEDS", " ".join(str(i) for i in range(1, 41))).split()
MODE_ENV = os.environ.get("SEQUIN_CHILDREN_MODE", "")
MOVES_ENV = os.environ.get("SEQUIN_CHILDREN_MOVES", "")
PARENTS = int(os.environ.get("SEQUIN_CHILDREN_PARENTS", "30"))
SHRINK = os.environ.get("SEQUIN_CHILDREN_SHRINK", "1") != "0"
MODES = ["array", "single", "mixed", "staging", "deferred"]

SETUP_SQL = """\
CREATE TABLE p (id text PRIMARY KEY, updated_idx bigint, name text);
CREATE TABLE c (id text PRIMARY KEY, p_id text NOT NULL, qty int, pos int);
CREATE TABLE g (id text PRIMARY KEY, c_id text NOT NULL, v text);
SELECT sequin.create_mapping(collection_id => 't:p', target_table => 'p',
    columns => '{"id": "id", "updated_idx": "updated_idx", "name": "data.name"}',
    order_column => 'updated_idx');
SELECT sequin.create_mapping(collection_id => 't:c', target_table => 'c',
    columns => '{"id": "id", "p_id": "$parent.id", "qty": "qty", "pos": "$index"}',
    parent => 't:p', list_source => '"data.items.data"', parent_key_columns => '{p_id}');
SELECT sequin.create_mapping(collection_id => 't:g', target_table => 'g',
    columns => '{"id": "id", "c_id": "$parent.id", "v": "v"}',
    parent => 't:c', list_source => '"subs"', parent_key_columns => '{c_id}');
"""

failures = 0


def comment(text):
    for line in str(text).splitlines() or [""]:
        print("# " + line, flush=True)


def tap(ok, desc, diag=()):
    global failures
    print(("ok" if ok else "not ok") + " - " + desc, flush=True)
    if not ok:
        failures += 1
        for d in diag:
            comment("  " + d)
    return ok


# ---- records -------------------------------------------------------------------------------
def pick_list_mode(rng):
    """How a parent version carries its list of items."""
    return rng.choices(
        ["no_key", "no_items", "null", "empty", "partial", "full"],
        [8, 5, 8, 8, 16, 55])[0]


def gen_element(rng, item_id, n_subs):
    el = {"id": item_id, "object": "item", "qty": rng.choice([None] + list(range(0, 50)))}
    mode = rng.choices(["absent", "null", "empty", "list", "partial"], [15, 8, 10, 57, 10])[0]
    if mode == "null":
        el["subs"] = None
    elif mode == "empty":
        el["subs"] = []
    elif mode in ("list", "partial"):
        subs = rng.sample(range(n_subs), rng.randint(0, n_subs))
        el["subs"] = [{"id": "%s_g%d" % (item_id, s), "v": "v%d" % rng.randint(0, 999)} for s in subs]
        if mode == "partial":
            el["has_more"] = True
        elif rng.random() < 0.1:
            el["has_more"] = False
    return el


def gen_records(rng, run, n_parents, moves):
    """All records of one run: per parent 1-7 versions (distinct updated_idx), some deletes.
    moves: parents come in groups of 3 that draw from one pool of item ids (an item then moves
    from one parent's list to another's); else each parent has its own item ids."""
    records = []
    pools = {}
    for k in range(n_parents):
        if moves:
            group = "%s_q%d" % (run, k // 3)
            pid = "%sp%d" % (group, k)
        else:
            group = pid = "%s_p%d" % (run, k)
        if group not in pools:
            pools[group] = (rng.randint(1, 6), rng.randint(1, 4))
        n_items, n_subs = pools[group]
        versions = rng.sample(range(1, 1000), rng.randint(1, 7))
        for v in versions:
            rec = {"id": pid, "collection_id": "t:p", "updated_idx": v}
            if rng.random() < 0.15:
                rec["deleted"] = True
                if rng.random() < 0.5:  # a delete that carries a list: it still removes all
                    rec["data"] = {"name": "d%d" % v, "items": {"data": [gen_element(rng, "%s_i0" % group, n_subs)]}}
                records.append(rec)
                continue
            if rng.random() < 0.05:
                rec["deleted"] = False
            data = {"name": "n%d" % v}
            mode = pick_list_mode(rng)
            if mode == "no_items":
                pass
            elif mode == "no_key":
                data["items"] = {"object": "list", "url": "/v1/items"}
            elif mode == "null":
                data["items"] = {"object": "list", "data": None}
            elif mode == "empty":
                data["items"] = {"object": "list", "data": [], "has_more": False}
            else:
                ids = rng.sample(range(n_items), rng.randint(0 if mode == "partial" else 1, n_items))
                items = {"object": "list",
                         "data": [gen_element(rng, "%s_i%d" % (group, i), n_subs) for i in ids]}
                if mode == "partial":
                    items["has_more"] = True
                elif rng.random() < 0.5:
                    items["has_more"] = False
                data["items"] = items
            rec["data"] = data
            records.append(rec)
    return records


def arrange_calls(rng, records, mode, moves):
    """Shuffles the records (adding some duplicates) and cuts them into calls. With moves, a call
    never holds two parents of one group (which of two parents listing the same item in one call
    gets it is not defined).
    A call is (kind, [records]): kind 'array' (one sequin_upsert of an array), 'object' (one
    sequin_upsert of a single object), 'staging' (one INSERT INTO sequin.staging of its rows)."""
    seq = list(records)
    rng.shuffle(seq)
    for _ in range(len(records) // 10):  # replays of a record later on
        r = rng.choice(records)
        seq.insert(rng.randint(0, len(seq)), r)
    calls = []
    i = 0
    while i < len(seq):
        if mode == "single":
            n = 1
        elif mode == "array":
            n = rng.randint(1, 20)
        elif mode in ("staging", "deferred"):
            n = rng.choice([1, 1, rng.randint(2, 20)])
        else:
            n = rng.choice([1, 1, 2, 3, rng.randint(1, 30)])
        batch = []
        while i < len(seq) and len(batch) < n:
            r = seq[i]
            if moves and any(group_of(b["id"]) == group_of(r["id"]) and b["id"] != r["id"] for b in batch):
                break
            batch.append(r)
            i += 1
        if len(batch) > 1 and rng.random() < 0.2:  # the same record twice in one call
            batch.insert(rng.randint(0, len(batch)), rng.choice(batch))
        if mode in ("staging", "deferred"):
            kind = mode
        elif len(batch) == 1 and (mode == "single" or rng.random() < 0.5):
            kind = "object"
        else:
            kind = "array"
        calls.append((kind, batch))
    return calls


# ---- the model -------------------------------------------------------------------------------
class Model:
    def __init__(self):
        self.hw = {}  # parent id -> highest version seen (stored row's, or a tombstone's)
        self.p = {}  # id -> (updated_idx, name)
        self.c = {}  # id -> (p_id, qty, pos)
        self.g = {}  # id -> (c_id, v)

    def _remove_child(self, cid):
        del self.c[cid]
        for gid in [gid for gid, (c_id, _) in self.g.items() if c_id == cid]:
            del self.g[gid]

    def _apply_subs(self, cid, el):
        subs = el.get("subs")
        if subs is None:
            return
        for s in subs:
            self.g[s["id"]] = (cid, s.get("v"))
        if el.get("has_more") is True:
            return
        keep = {s["id"] for s in subs}
        for gid in [gid for gid, (c_id, _) in self.g.items() if c_id == cid and gid not in keep]:
            del self.g[gid]

    def _apply_list(self, pid, rec):
        items = (rec.get("data") or {}).get("items")
        if not isinstance(items, dict) or items.get("data") is None:
            return
        lst = items["data"]
        for idx, el in enumerate(lst):
            self.c[el["id"]] = (pid, el.get("qty"), idx)
            self._apply_subs(el["id"], el)
        if items.get("has_more") is True:
            return
        keep = {el["id"] for el in lst}
        for cid in [cid for cid, (p_id, _, _) in self.c.items() if p_id == pid and cid not in keep]:
            self._remove_child(cid)

    def apply_one(self, rec):
        """Applies one record that is the newest of its key in its call: its count's name."""
        pid, v = rec["id"], rec["updated_idx"]
        if pid in self.hw and v <= self.hw[pid]:
            return "skipped"
        self.hw[pid] = v
        if rec.get("deleted") is True:
            if pid not in self.p:
                return "skipped"
            del self.p[pid]
            for cid in [cid for cid, (p_id, _, _) in self.c.items() if p_id == pid]:
                self._remove_child(cid)
            return "deleted"
        kind = "updated" if pid in self.p else "inserted"
        self.p[pid] = (v, (rec.get("data") or {}).get("name"))
        self._apply_list(pid, rec)
        return kind

    def apply_call(self, records, one_by_one=False):
        """(inserted, updated, deleted, skipped) of one call. one_by_one: every record of a key
        applies in version order (the alternative reading, for diagnostics only)."""
        counts = {"inserted": 0, "updated": 0, "deleted": 0, "skipped": 0}
        by_key = {}
        for r in records:
            by_key.setdefault(r["id"], []).append(r)
        for recs in by_key.values():
            ordered = sorted(recs, key=lambda r: r["updated_idx"])  # stable: ties in array order
            if one_by_one:
                for r in ordered:
                    counts[self.apply_one(r)] += 1
                continue
            newest = ordered[-1]
            top = [r for r in ordered if r["updated_idx"] == newest["updated_idx"]][0]
            counts["skipped"] += len(recs) - 1
            counts[self.apply_one(top)] += 1
        return (counts["inserted"], counts["updated"], counts["deleted"], counts["skipped"])


# ---- the database ------------------------------------------------------------------------
def connect():
    conn = psycopg2.connect(dbname=DB)
    conn.autocommit = True
    conn.set_client_encoding("UTF8")
    cur = conn.cursor()
    cur.execute("SET client_min_messages = warning")
    return conn


def rename(records, old, new):
    return json.loads(json.dumps(records).replace(old + "_", new + "_"))


def send(cur, kind, batch):
    """Runs one call; returns its counts (None for staging)."""
    if kind == "deferred":
        # Staged with apply_mode = deferred (in 1-3 INSERTs), then one apply_staging() of them.
        cur.execute("SET sequin.apply_mode = deferred")
        try:
            cuts = sorted({0, len(batch)} | {(len(batch) * k) // 3 for k in (1, 2)})
            for a, b in zip(cuts, cuts[1:]):
                if a < b:
                    send(cur, "staging", batch[a:b])
        finally:
            cur.execute("RESET sequin.apply_mode")
        cur.execute("SELECT inserted, updated, deleted, skipped, failed FROM sequin.apply_staging(max_rows => %s)",
                    (len(batch),))
        row = tuple(int(x) for x in cur.fetchone())
        if row[4]:
            left, errors = staging_failures(cur)
            raise StagingFailed("apply_staging() of %d rows: %d failed: %s" % (len(batch), row[4], errors))
        return row[:4]
    if kind == "staging":
        if len(batch) == 1:
            cur.execute("INSERT INTO sequin.staging(record) VALUES (%s::jsonb)", (json.dumps(batch[0]),))
        else:
            cur.execute("INSERT INTO sequin.staging(record) SELECT r FROM jsonb_array_elements(%s::jsonb) "
                        "WITH ORDINALITY AS a(r, n) ORDER BY n", (json.dumps(batch),))
        return None
    arg = json.dumps(batch[0] if kind == "object" else batch)
    cur.execute("SELECT inserted, updated, deleted, skipped FROM sequin.sequin_upsert(%s::jsonb)", (arg,))
    return tuple(int(x) for x in cur.fetchone())


class StagingFailed(Exception):
    pgcode = None

    @property
    def pgerror(self):
        return str(self) + " (stayed in sequin.staging)"


def staging_failures(cur):
    cur.execute("SELECT count(*), string_agg(left(error, 300), ' | ') FROM sequin.staging")
    return cur.fetchone()


def db_state(cur, run):
    pat = run + r"\_%"
    cur.execute("SELECT id, updated_idx, name FROM p WHERE id LIKE %s", (pat,))
    p = {i: (v, n) for i, v, n in cur.fetchall()}
    cur.execute("SELECT id, p_id, qty, pos FROM c WHERE id LIKE %s", (pat,))
    c = {i: (pi, q, pos) for i, pi, q, pos in cur.fetchall()}
    cur.execute("SELECT id, c_id, v FROM g WHERE id LIKE %s", (pat,))
    g = {i: (ci, v) for i, ci, v in cur.fetchall()}
    return p, c, g


def diff_tables(model, state):
    """Lines that say how the tables differ from the model (empty when equal), and the parents
    concerned."""
    lines, parents = [], set()
    for name, want, got in (("p", model.p, state[0]), ("c", model.c, state[1]), ("g", model.g, state[2])):
        for k in sorted(set(want) | set(got)):
            w, h = want.get(k), got.get(k)
            if w != h:
                lines.append("%s %s: expected %s, got %s" % (name, k, "(absent)" if w is None else w,
                                                               "(absent)" if h is None else h))
                parents.add(parent_of(k))
    return lines, parents


def parent_of(row_id):
    """The group of ids a row or record id belongs to: its parent's id, or with moves
    (R0_q2p7, R0_q2_i1, R0_q2_i1_g0) the group of parents that share item ids (R0_q2)."""
    return group_of(row_id)


def group_of(row_id):
    parts = row_id.split("_")
    return parts[0] + "_" + parts[1].split("p")[0] if parts[1].startswith("q") else "_".join(parts[:2])


def run_calls(cur, calls, model, counts_log=None):
    """Sends the calls in order, applying them to the model too. Returns (error or None,
    number of calls sent, count mismatches)."""
    bad_counts = []
    for n, (kind, batch) in enumerate(calls):
        want = model.apply_call(batch)
        try:
            got = send(cur, kind, batch)
        except (psycopg2.Error, StagingFailed) as e:
            if kind in ("staging", "deferred"):
                cur.execute("DELETE FROM sequin.staging")  # rows that stayed (failed or pending)
            return ("call %d (%s of %d records) failed: %s %s"
                    % (n, kind, len(batch), e.pgcode, (e.pgerror or str(e)).strip()), n, bad_counts)
        if kind == "staging":
            left, errors = staging_failures(cur)
            if left:
                return ("call %d (staging, %d rows): %d rows stayed in sequin.staging: %s"
                        % (n, len(batch), left, errors), n, bad_counts)
        elif got != want:
            bad_counts.append((n, len(batch), want, got))
        if counts_log is not None:
            counts_log.append((n, len(batch), got))
    return None, len(calls), bad_counts


def format_call(kind, batch):
    if kind == "deferred":
        return ("SET sequin.apply_mode = deferred; %s RESET sequin.apply_mode; "
                "SELECT * FROM sequin.apply_staging(max_rows => %d);" % (format_call("staging", batch), len(batch)))
    if kind == "staging":
        if len(batch) == 1:
            return "INSERT INTO sequin.staging(record) VALUES ('%s');" % json.dumps(batch[0])
        return ("INSERT INTO sequin.staging(record) SELECT r FROM jsonb_array_elements('%s') "
                "WITH ORDINALITY AS a(r, n) ORDER BY n;" % json.dumps(batch))
    arg = batch[0] if kind == "object" else batch
    return "SELECT * FROM sequin.sequin_upsert('%s');" % json.dumps(arg)


# ---- shrinking -------------------------------------------------------------------------------
class Shrinker:
    def __init__(self, cur, base, what):
        self.cur = cur
        self.base = base
        self.what = what  # the failure kept while shrinking: "tables", "counts" or "error"
        self.n = 0
        self.trials = 0

    def fails(self, calls, old):
        """Replays CALLS (whose ids carry the prefix OLD) under fresh ids: does it still fail?"""
        self.trials += 1
        self.n += 1
        run = "%sS%d" % (self.base, self.n)
        calls = [(kind, rename(batch, old, run)) for kind, batch in calls]
        model = Model()
        err, _, bad_counts = run_calls(self.cur, calls, model)
        if err is not None:
            if "stayed in sequin.staging" in err:
                self.cur.execute("DELETE FROM sequin.staging")
            return self.what == "error"
        if self.what == "counts":
            return bool(bad_counts)
        lines, _ = diff_tables(model, db_state(self.cur, run))
        return self.what == "tables" and bool(lines)

    def shrink(self, calls, old, limit=400):
        """Removes records one at a time while the case still fails."""
        changed = True
        while changed and self.trials < limit:
            changed = False
            for ci in range(len(calls)):
                if ci >= len(calls):
                    break
                kind, batch = calls[ci]
                for ri in range(len(batch)):
                    if self.trials >= limit:
                        break
                    trial_batch = batch[:ri] + batch[ri + 1:]
                    trial = calls[:ci] + ([(kind, trial_batch)] if trial_batch else []) + calls[ci + 1:]
                    if self.fails(trial, old):
                        calls = trial
                        changed = True
                        break
                if changed:
                    break
        return calls


def report_minimal(cur, calls, old, tag):
    run = "min" + tag
    calls = [(kind, rename(batch, old, run)) for kind, batch in calls]
    model = Model()
    log = []
    err, _, bad_counts = run_calls(cur, calls, model, log)
    cur.execute("SELECT current_setting('sequin.batch_size', true)")
    comment("minimal reproducer (%d calls; ids renamed to the prefix %s; sequin.batch_size = %s):"
            % (len(calls), run, cur.fetchone()[0]))
    for kind, batch in calls:
        comment("  " + format_call(kind, batch))
    if err:
        comment("  -> " + err)
        if "stayed in sequin.staging" in err:
            cur.execute("DELETE FROM sequin.staging")
        return
    for n, size, got in log:
        comment("  call %d: counts %s" % (n, got))
    for n, size, want, got in bad_counts:
        comment("  call %d (%d records): counts expected %s, got %s" % (n, size, want, got))
    lines, _ = diff_tables(model, db_state(cur, run))
    for line in lines:
        comment("  " + line)
    alt = Model()
    for kind, batch in calls:
        alt.apply_call(batch, one_by_one=True)
    alt_lines, _ = diff_tables(alt, db_state(cur, run))
    if lines and not alt_lines:
        comment("  (the tables equal the other reading: every record of a key in one call applied "
                "one by one in version order, superseded ones touching children too)")


# ---- a run -------------------------------------------------------------------------------
def one_run(cur, seed, index):
    mode = MODE_ENV or MODES[seed % len(MODES)]
    moves = MOVES_ENV == "1" if MOVES_ENV else (seed // len(MODES)) % 3 == 2
    rng = random.Random(seed)
    run = "R%d" % index
    batch_size = rng.choice([None, None, 1, 2, 3, 7])
    cur.execute("RESET sequin.batch_size" if batch_size is None else "SET sequin.batch_size = %d" % batch_size)
    records = gen_records(rng, run, PARENTS, moves)
    calls = arrange_calls(rng, records, mode, moves)
    desc = "seed %d (mode %s%s, batch_size %s): %d parents, %d records in %d calls" % (
        seed, mode, ", items move between parents" if moves else "", batch_size or "default", PARENTS, sum(len(b) for _, b in calls), len(calls))
    model = Model()
    t0 = time.time()
    err, sent, bad_counts = run_calls(cur, calls, model)
    elapsed = time.time() - t0
    if err:
        tap(False, "%s: every call succeeds" % desc, [err, "the call: " + format_call(*calls[sent])[:2000]])
        if "stayed in sequin.staging" in err:
            cur.execute("DELETE FROM sequin.staging")
        shrink_and_report(cur, calls[:sent + 1], run, {parent_of(r["id"]) for r in calls[sent][1]}, seed,
                          "error")
        return
    state = db_state(cur, run)
    lines, parents = diff_tables(model, state)
    ok = tap(not lines, "%s: p, c and g equal the model (%d/%d/%d rows, %.1f s)" % (
        desc, len(model.p), len(model.c), len(model.g), elapsed),
        ["seed %d: %d rows differ" % (seed, len(lines))] + lines[:40])
    if mode != "staging":
        sums = [(n, size, got) for n, size, want, got in bad_counts if sum(got) != size]
        tap(not sums, "seed %d: inserted + updated + deleted + skipped = the records sent, in all %d calls"
            % (seed, len(calls)),
            ["call %d: %d records, counts %s" % s for s in sums[:20]])
        tap(not bad_counts, "seed %d: each call's counts equal the model's" % seed,
            ["call %d (%d records): expected %s, got %s: %s" % (n, size, want, got,
                                                                 format_call(*calls[n])[:600])
             for n, size, want, got in bad_counts[:10]])
        if ok and bad_counts:  # the parents of the first call whose counts are wrong
            parents = {parent_of(r["id"]) for r in calls[bad_counts[0][0]][1]}
    if ok and mode != "staging":
        # A replay of every record in one call: all stale, nothing changes.
        replay = list(records)
        random.Random(seed + 1).shuffle(replay)
        want = model.apply_call(replay)
        try:
            got = send(cur, "array", replay)
            lines2, _ = diff_tables(model, db_state(cur, run))
            tap(got == want == (0, 0, 0, len(replay)) and not lines2,
                "seed %d: a replay of all %d records in one call skips them all and changes nothing" % (seed, len(replay)),
                ["counts expected %s, got %s" % (want, got)] + lines2[:20])
        except psycopg2.Error as e:
            tap(False, "seed %d: a replay of all records in one call succeeds" % seed, [(e.pgerror or str(e)).strip()])
    if not ok or bad_counts:
        alt = Model()
        for _, batch in calls:
            alt.apply_call(batch, one_by_one=True)
        alt_lines, _ = diff_tables(alt, state)
        if not alt_lines:
            comment("  (the tables equal the other reading: every record of a key in one call applied one "
                    "by one in version order, superseded ones touching children too)")
        shrink_and_report(cur, calls, run, parents, seed, "tables" if not ok else "counts")


def shrink_and_report(cur, calls, run, parents, seed, what):
    parents = sorted(parents)
    comment("seed %d: parents concerned: %s" % (seed, " ".join(parents)))
    for pid in parents[:2]:
        sub = [(kind, [r for r in batch if group_of(r["id"]) == pid]) for kind, batch in calls]
        sub = [(kind, batch) for kind, batch in sub if batch]
        comment("seed %d, parent %s: its records in arrival order (%d calls):" % (seed, pid, len(sub)))
        for kind, batch in sub:
            comment("  " + format_call(kind, batch)[:1500])
    if not SHRINK:
        return
    sh = Shrinker(cur, "X%d" % seed, what)
    comment("seed %d: shrinking (keeping the failure: %s)" % (seed, what))
    for pid in parents[:3] if what == "tables" else parents:
        sub = [(kind, [r for r in batch if group_of(r["id"]) == pid]) for kind, batch in calls]
        sub = [(kind, batch) for kind, batch in sub if batch]
        if sh.fails(sub, run):
            small = sh.shrink(sub, run)
            report_minimal(cur, small, run, "%d_%d" % (seed, sh.n))
            return
    comment("seed %d: no single parent's records fail alone (an interaction between parents?)" % seed)


def main():
    seeds = SEEDS_ENV
    if seeds == ["random"]:
        seeds = [str(random.SystemRandom().randint(1, 10 ** 6)) for _ in range(40)]
    seeds = [int(s) for s in seeds]
    comment("seeds: %s (reproduce one: SEQUIN_CHILDREN_SEEDS='<seed>')" % " ".join(map(str, seeds)))
    conn = connect()
    cur = conn.cursor()
    try:
        cur.execute(SETUP_SQL)
    except psycopg2.Error as e:
        tap(False, "set-up: tables p, c, g and the mappings t:p, t:c (child of t:p), t:g (child of t:c)",
            [(e.pgerror or str(e)).strip()])
        return 1
    tap(True, "set-up: tables p, c, g and the mappings t:p, t:c (child of t:p), t:g (child of t:c)")
    comment("set-up SQL (for a reproducer):")
    for line in SETUP_SQL.splitlines():
        comment("  " + line)
    for index, seed in enumerate(seeds):
        try:
            one_run(cur, seed, index)
        except psycopg2.Error as e:
            tap(False, "seed %d: the run ends without an unexpected error" % seed, [(e.pgerror or str(e)).strip()])
    # A record of a child collection is refused (its rows come from the parent's records).
    try:
        cur.execute("SELECT * FROM sequin.sequin_upsert(%s::jsonb)",
                    (json.dumps({"id": "x", "collection_id": "t:c", "updated_idx": 1}),))
        tap(False, "a record sent with a child mapping's collection_id is refused (the call succeeded)")
    except psycopg2.Error as e:
        tap(True, "a record sent with a child mapping's collection_id is refused (%s)" % e.pgcode)
    conn.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
