// sequin.stats counters: one row per (collection, backend slot). Only the backend in that
// slot writes its row, so writers never wait on each other.
//
// Like PostgreSQL's own statistics the counters are not transactional: after the first
// call of a backend for a collection (which inserts its row), a call adds to the row in
// place (sequin_inplace_update, pg/compat.hpp, on the unlogged table): no new row version,
// no transaction id, no WAL. A call that only skips stale records thus stays a read-only
// transaction. C-shaped server code.
#include "pg/stats_counters.hpp"
#include "pg/kept_plan.hpp"
#include "pg/compat.hpp"
#include "pg/run_as_owner.hpp"

extern "C" {
#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
}

namespace sequin {
namespace {

bool track_stats = true;
SPIPlanPtr insert_plan = nullptr;

// Columns of sequin.stats_counters (see the 0.1.0--0.2.0 script).
enum StatsColumn {
    ColCollection = 1,
    ColSlot,
    ColInserted,
    ColUpdated,
    ColDeleted,
    ColSkipped,
    ColFailed,
    ColLastApplied,
    StatsColumns = ColLastApplied
};

struct AddArgs {
    const ApplyCounts *delta;
    bool applied;
};

// The counters row old plus the delta (runs with the row's buffer locked: no reads).
HeapTuple add_counts(HeapTuple old, TupleDesc desc, void *arg) {
    const AddArgs *args = static_cast<const AddArgs *>(arg);
    const ApplyCounts &delta = *args->delta;
    Datum values[StatsColumns];
    bool nulls[StatsColumns];
    heap_deform_tuple(old, desc, values, nulls);
    const int64 adds[] = {delta.inserted, delta.updated, delta.deleted, delta.skipped,
                          delta.failed};
    for (int col = ColInserted; col <= ColFailed; col++)
        values[col - 1] = Int64GetDatum(DatumGetInt64(values[col - 1]) + adds[col - ColInserted]);
    if (args->applied)
        values[ColLastApplied - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
    // Same columns, all fixed width but the untouched key: the tuple keeps its size.
    return heap_form_tuple(desc, values, nulls);
}

// Backends whose own row is held by another transaction (one this backend prepared and
// has not finished, say) count in the row of slot + kSlotStride, and so on.
constexpr int32 kSlotStride = 1 << 20;
constexpr int kSlotTries = 8;

struct CountersTable {
    Relation rel;
    Oid index; // (collection_id, backend_slot)
};

// Adds delta in place to the row of (collection, slot). False when there is none
// (committed, or this transaction's own).
bool add_in_place(const CountersTable &table, text *collection, int32 slot,
                  const ApplyCounts &delta, bool applied) {
    ScanKeyData keys[2];
    ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(collection));
    ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(slot));
    AddArgs args = {&delta, applied};
    return sequin_inplace_update(table.rel, table.index, 2, keys, add_counts, &args);
}

// Is the row of (collection, slot) inserted or deleted by another transaction still in
// progress? Writing it would wait for that transaction: forever, if this backend prepared it.
bool row_in_doubt(const CountersTable &table, text *collection, int32 slot) {
    SnapshotData dirty;
    InitDirtySnapshot(dirty);
    ScanKeyData keys[2];
    ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(collection));
    ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(slot));
    SysScanDesc scan = systable_beginscan(table.rel, table.index, true, &dirty, 2, keys);
    bool in_doubt = HeapTupleIsValid(systable_getnext(scan)) &&
                    (TransactionIdIsValid(dirty.xmin) || TransactionIdIsValid(dirty.xmax));
    systable_endscan(scan);
    return in_doubt;
}

// A row of the collection that no other transaction is inserting or deleting (a
// reset_stats() not yet committed, say): its slot, or -1. Writing such a row would wait.
int32 settled_slot(const CountersTable &table, text *collection) {
    SnapshotData dirty;
    InitDirtySnapshot(dirty);
    ScanKeyData keys[1];
    ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(collection));
    SysScanDesc scan = systable_beginscan(table.rel, table.index, true, &dirty, 1, keys);
    int32 slot = -1;
    HeapTuple tuple;
    while (slot < 0 && HeapTupleIsValid(tuple = systable_getnext(scan))) {
        if (TransactionIdIsValid(dirty.xmin) || TransactionIdIsValid(dirty.xmax))
            continue;
        bool isnull;
        Datum value = heap_getattr(tuple, 2, RelationGetDescr(table.rel), &isnull);
        if (!isnull)
            slot = DatumGetInt32(value);
    }
    systable_endscan(scan);
    return slot;
}

// The first call of a backend for a collection creates its row.
void insert_row(Oid owner, text *collection, int32 slot, const ApplyCounts &delta, bool applied) {
    static const Oid types[8] = {TEXTOID, INT4OID, INT8OID, INT8OID,
                                 INT8OID, INT8OID, INT8OID, BOOLOID};
    kept_plan(&insert_plan,
              "INSERT INTO sequin.stats_counters AS s (collection_id, backend_slot, inserted, "
              "updated, deleted, skipped, failed, last_applied) VALUES ($1, $2, $3, $4, $5, $6, "
              "$7, CASE WHEN $8 THEN pg_catalog.transaction_timestamp() ELSE '-infinity' END) "
              "ON CONFLICT (collection_id, backend_slot) DO UPDATE SET "
              "inserted = s.inserted OPERATOR(pg_catalog.+) EXCLUDED.inserted, "
              "updated = s.updated OPERATOR(pg_catalog.+) EXCLUDED.updated, "
              "deleted = s.deleted OPERATOR(pg_catalog.+) EXCLUDED.deleted, "
              "skipped = s.skipped OPERATOR(pg_catalog.+) EXCLUDED.skipped, "
              "failed = s.failed OPERATOR(pg_catalog.+) EXCLUDED.failed, "
              "last_applied = GREATEST(EXCLUDED.last_applied, s.last_applied)",
              8, types);
    Datum args[8] = {PointerGetDatum(collection),   Int32GetDatum(slot),
                     Int64GetDatum(delta.inserted), Int64GetDatum(delta.updated),
                     Int64GetDatum(delta.deleted),  Int64GetDatum(delta.skipped),
                     Int64GetDatum(delta.failed),   BoolGetDatum(applied)};
    PlanRun how;
    how.as_user = owner;
    run_kept_plan(insert_plan, "insert into sequin.stats_counters", args, nullptr, how);
}

} // namespace

void define_stats_settings() {
    DefineCustomBoolVariable("sequin.track_stats",
                             "Count applied, skipped and failed records per collection "
                             "(the sequin.stats view).",
                             nullptr, &track_stats, true, PGC_USERSET, 0, nullptr, nullptr,
                             nullptr);
}

void stats_add(const char *collection, int length, bool mapped, const ApplyCounts &delta,
               Oid owner) {
    if (!track_stats)
        return;
    Oid relid = sequin_relation("stats_counters");
    if (!OidIsValid(relid))
        return; // extension not yet updated to 0.2.0
    bool applied = delta.inserted + delta.updated + delta.deleted > 0;
    // A mapped collection_id fits in an index (sequin.mappings has one on it): its counters go
    // under its whole name, beside its mapping. An unknown one from a record may not fit:
    // its counters go under its first 200 bytes.
    if (!mapped && length > 200)
        length = pg_mbcliplen(collection, length, 200);
    text *name = cstring_to_text_with_len(collection, length);
    // A call that wrote nothing and has no transaction id (a replay) must not take one, nor
    // write in a read-only transaction: it adds to any row of the collection in place, and
    // is not counted when the collection has none yet.
    // (Failed records are written to sequin.staging: that call takes one anyway.)
    bool may_insert = !XactReadOnly && (applied || delta.failed > 0 ||
                                        TransactionIdIsValid(GetTopTransactionIdIfAny()));
    CountersTable table;
    table.rel = table_open(relid, RowExclusiveLock);
    table.index = sequin_primary_key_index(table.rel);
    if (!OidIsValid(table.index))
        elog(ERROR, "sequin.stats_counters has no primary key");
    int32 slot = sequin_backend_slot();
    bool counted = false;
    for (int attempt = 0; attempt < kSlotTries && !counted; attempt++, slot += kSlotStride) {
        if (row_in_doubt(table, name, slot))
            continue;
        if (!add_in_place(table, name, slot, delta, applied)) {
            if (may_insert) {
                insert_row(owner, name, slot, delta, applied);
            } else {
                int32 other = settled_slot(table, name);
                if (other >= 0)
                    (void)add_in_place(table, name, other, delta, applied);
            }
        }
        counted = true;
    }
    table_close(table.rel, RowExclusiveLock);
}

} // namespace sequin
