// Races between deletes and inserts of one key: see write_races.hpp.
#include "apply/write_races.hpp"
#include "apply/tombstones.hpp"

extern "C" {
#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "storage/lmgr.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
}

namespace sequin {

namespace {

// A DELETE that missed a committed row runs again at most this often.
constexpr int kRedoAttempts = 3;

// The conflict raised last, for take_write_conflict.
bool conflict_raised = false;
TransactionId conflict_yield_to = InvalidTransactionId;

[[noreturn]] void raise_conflict(TransactionId yield_to, const char *what) {
    conflict_raised = true;
    conflict_yield_to = yield_to;
    ereport(ERROR,
            (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
             errmsg("could not serialize access due to a concurrent %s of the same key", what)));
    pg_unreachable();
}

// Another transaction's write in progress: wait for it when it is younger than this
// statement's (it will yield to us if it sees our write), yield to it when it is older.
void wait_or_yield(TransactionId writer, const char *what) {
    if (TransactionIdPrecedes(writer, GetCurrentTransactionId()))
        raise_conflict(writer, what);
    XactLockTableWait(writer, nullptr, nullptr, XLTW_None);
}

// The rows of the record's key in the target, as a dirty snapshot sees them: returns the
// transaction writing one, or sets *older when a committed row holds a version older than
// the record's (a row this statement's DELETE should have removed).
TransactionId concurrent_row(Chunk *chunk, Relation heap, Relation index, TupleTableSlot *slot,
                             int record, SnapshotData *dirty, bool *older) {
    CompiledMapping *mapping = chunk->mapping;
    int key_count = static_cast<int>(mapping->key_columns.size());
    ScanKeyData *keys = static_cast<ScanKeyData *>(palloc(sizeof(ScanKeyData) * key_count));
    const Datum *values = row_values(chunk, record);
    for (int k = 0; k < key_count; k++) {
        const KeyEquality &equality = mapping->key_equality[k];
        ScanKeyEntryInitialize(&keys[k], 0, equality.index_column, BTEqualStrategyNumber,
                               InvalidOid, equality.collation, equality.equality_proc,
                               values[mapping->key_columns[k]]);
    }
    IndexScanDesc scan = index_beginscan(heap, index, dirty, key_count, 0);
    index_rescan(scan, keys, key_count, nullptr, 0);
    TransactionId writer = InvalidTransactionId;
    *older = false;
    int order = mapping->order_column;
    AttrNumber order_attnum = mapping->columns[order].attnum;
    while (index_getnext_slot(scan, ForwardScanDirection, slot)) {
        TransactionId in_progress = TransactionIdIsValid(dirty->xmin) ? dirty->xmin : dirty->xmax;
        if (TransactionIdIsValid(in_progress) &&
            !TransactionIdIsCurrentTransactionId(in_progress)) {
            writer = in_progress;
            break;
        }
        bool isnull;
        Datum version = slot_getattr(slot, order_attnum, &isnull);
        if (isnull ||
            (!row_nulls(chunk, record)[order] &&
             DatumGetInt32(FunctionCall2Coll(&mapping->order_compare, mapping->order_collation,
                                             version, row_values(chunk, record)[order])) < 0))
            *older = true;
    }
    index_endscan(scan);
    ExecClearTuple(slot);
    return writer;
}

} // namespace

void settle_inserts(Chunk *chunk, const int *records, int count) {
    CompiledMapping *mapping = chunk->mapping;
    if (mapping->order_column < 0 || count == 0)
        return;
    SnapshotData dirty;
    InitDirtySnapshot(dirty);
    if (!collection_has_any_tombstone(chunk, &dirty))
        return; // a delete starting now finds our rows instead
    for (int i = 0; i < count; i++) {
        int record = records[i];
        while (true) {
            bool committed;
            TransactionId writer = concurrent_tombstone(chunk, record, &dirty, &committed);
            if (committed)
                raise_conflict(InvalidTransactionId, "delete");
            if (!TransactionIdIsValid(writer))
                break;
            wait_or_yield(writer, "delete");
        }
    }
}

void settle_deletes(Chunk *chunk, const int *records, int count) {
    CompiledMapping *mapping = chunk->mapping;
    if (mapping->order_column < 0 || count == 0 || !OidIsValid(mapping->key_index))
        return;
    Relation heap = table_open(mapping->row.target_table, AccessShareLock);
    Relation index = index_open(mapping->key_index, AccessShareLock);
    TupleTableSlot *slot = table_slot_create(heap, nullptr);
    SnapshotData dirty;
    InitDirtySnapshot(dirty);
    bool redo = false;
    for (int i = 0; i < count && !redo; i++) {
        while (true) {
            bool older;
            TransactionId writer =
                concurrent_row(chunk, heap, index, slot, records[i], &dirty, &older);
            if (!TransactionIdIsValid(writer)) {
                // A committed row the DELETE did not see: it came after the statement's
                // snapshot (run again), or row-level security hides it from the caller
                // (running again would not help: the retries stop).
                redo = older && chunk->write_attempt < kRedoAttempts;
                break;
            }
            wait_or_yield(writer, "insert");
        }
    }
    ExecDropSingleTupleTableSlot(slot);
    index_close(index, AccessShareLock);
    table_close(heap, AccessShareLock);
    if (redo)
        raise_conflict(InvalidTransactionId, "insert");
}

bool write_conflict_retryable(int sqlstate) {
    return conflict_raised && sqlstate == ERRCODE_T_R_SERIALIZATION_FAILURE &&
           !IsolationUsesXactSnapshot();
}

bool take_write_conflict(int sqlstate, TransactionId *yield_to) {
    bool taken = conflict_raised && sqlstate == ERRCODE_T_R_SERIALIZATION_FAILURE;
    *yield_to = conflict_yield_to;
    conflict_raised = false;
    conflict_yield_to = InvalidTransactionId;
    return taken;
}

} // namespace sequin
