// Races between deletes and inserts of one key: see write_races.hpp.
#include "apply/write_races.hpp"
#include "apply/tombstones.hpp"
#include "pg/compat.hpp"
#include "pg/fixed_settings.hpp"

extern "C" {
#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "utils/lsyscache.h"
#include "executor/tuptable.h"
#include "storage/lmgr.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
}

#include <algorithm>

namespace sequin {

namespace {

// A DELETE that missed a committed row runs again at most this often.
constexpr int kRedoAttempts = 3;

// The conflict raised last, for take_write_conflict.
bool conflict_raised = false;
TransactionId conflict_yield_to = InvalidTransactionId;
int conflict_at = -1;

[[noreturn]] void raise_conflict(TransactionId yield_to, int at, const char *what) {
    conflict_raised = true;
    conflict_yield_to = yield_to;
    conflict_at = at;
    ereport(ERROR,
            (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
             errmsg("could not serialize access due to a concurrent %s of the same key", what)));
    pg_unreachable();
}

// Another transaction's write in progress at the key of records[at] (records in key order):
// wait for it when it is younger than this statement's (it will yield to us if it sees our
// write), yield to it when it is older. Waiting holds the statement's locks; keys after this
// one are locked too unless it is the last, and the other writer may want them: then yield,
// and the retry ends its statement at this key (write_isolation.cpp), so waits keep key order.
void wait_or_yield(TransactionId writer, int at, int count, const char *what, bool may_wait) {
    if (!may_wait || TransactionIdPrecedes(writer, GetCurrentTransactionId()) || at < count - 1)
        raise_conflict(writer, at, what);
    XactLockTableWait(writer, nullptr, nullptr, XLTW_None);
}

// Scan keys for the record's key on the unique index (index_column positions, the index's
// equality and collation).
ScanKeyData *key_scan_keys(Chunk *chunk, int record) {
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
    // A btree scan wants its keys in the index's column order, which conflict_columns need
    // not follow.
    std::sort(keys, keys + key_count,
              [](const ScanKeyData &a, const ScanKeyData &b) { return a.sk_attno < b.sk_attno; });
    return keys;
}

// Runs visit(leaf, leaf's index) on the table, or on each partition of a partitioned one
// (whose indexes are attached to index_oid), until visit returns true; returns that.
template <typename Visit> bool any_leaf(Oid heap_oid, Oid index_oid, Visit &&visit) {
    if (get_rel_relkind(heap_oid) != RELKIND_PARTITIONED_TABLE)
        return visit(heap_oid, index_oid);
    List *partitions = find_inheritance_children(heap_oid, AccessShareLock);
    ListCell *cell;
    foreach (cell, partitions) {
        Relation partition = table_open(lfirst_oid(cell), AccessShareLock);
        Oid partition_index = index_get_partition(partition, index_oid);
        table_close(partition, AccessShareLock);
        if (OidIsValid(partition_index) && any_leaf(lfirst_oid(cell), partition_index, visit))
            return true;
    }
    return false;
}

// Does the table (partitions included) hold a row of the record's key that snapshot sees?
// One index probe, without SQL: no plan to go stale as the table grows.
bool row_exists(Chunk *chunk, Oid heap_oid, Oid index_oid, int record, Snapshot snapshot) {
    int key_count = static_cast<int>(chunk->mapping->key_columns.size());
    return any_leaf(heap_oid, index_oid, [&](Oid leaf, Oid leaf_index) {
        Relation heap = table_open(leaf, AccessShareLock);
        Relation index = index_open(leaf_index, AccessShareLock);
        TupleTableSlot *slot = table_slot_create(heap, nullptr);
        IndexScanDesc scan = sequin_index_beginscan(heap, index, snapshot, key_count);
        index_rescan(scan, key_scan_keys(chunk, record), key_count, nullptr, 0);
        bool found = index_getnext_slot(scan, ForwardScanDirection, slot);
        index_endscan(scan);
        ExecDropSingleTupleTableSlot(slot);
        index_close(index, AccessShareLock);
        table_close(heap, AccessShareLock);
        return found;
    });
}

// The rows of the record's key in the table (partitions included), as a dirty snapshot sees
// them: returns the transaction writing one, or sets *older when a committed row holds a
// version older than the record's (one this statement's DELETE should have removed).
TransactionId concurrent_row(Chunk *chunk, Oid heap_oid, Oid index_oid, int record,
                             SnapshotData *dirty, bool *older) {
    CompiledMapping *mapping = chunk->mapping;
    int key_count = static_cast<int>(mapping->key_columns.size());
    int order = mapping->order_column;
    TransactionId writer = InvalidTransactionId;
    *older = false;
    any_leaf(heap_oid, index_oid, [&](Oid leaf, Oid leaf_index) {
        Relation heap = table_open(leaf, AccessShareLock);
        Relation index = index_open(leaf_index, AccessShareLock);
        TupleTableSlot *slot = table_slot_create(heap, nullptr);
        // A partition may number its columns otherwise than the partitioned table.
        AttrNumber order_attnum = get_attnum(leaf, mapping->columns[order].name.c_str());
        IndexScanDesc scan = sequin_index_beginscan(heap, index, dirty, key_count);
        index_rescan(scan, key_scan_keys(chunk, record), key_count, nullptr, 0);
        while (index_getnext_slot(scan, ForwardScanDirection, slot)) {
            TransactionId in_progress =
                TransactionIdIsValid(dirty->xmin) ? dirty->xmin : dirty->xmax;
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
        ExecDropSingleTupleTableSlot(slot);
        index_close(index, AccessShareLock);
        table_close(heap, AccessShareLock);
        return TransactionIdIsValid(writer) || *older;
    });
    return writer;
}

} // namespace

void settle_inserts(Chunk *chunk, const int *records, int count, bool may_wait) {
    CompiledMapping *mapping = chunk->mapping;
    if (mapping->order_column < 0 || count == 0)
        return;
    SnapshotData dirty;
    InitDirtySnapshot(dirty);
    if (!collection_has_any_tombstone(chunk, &dirty))
        return; // a delete starting now finds our rows instead
    TombstoneTable table;
    open_tombstones(&table, *mapping, &dirty);
    int settings = enter_fixed_settings();
    for (int i = 0; i < count; i++) {
        int record = records[i];
        while (true) {
            bool committed;
            TransactionId writer = concurrent_tombstone(chunk, &table, record, &dirty, &committed);
            if (committed)
                raise_conflict(InvalidTransactionId, -1, "delete");
            if (!TransactionIdIsValid(writer))
                break;
            wait_or_yield(writer, i, count, "delete", may_wait);
        }
    }
    leave_fixed_settings(settings);
    close_tombstones(&table);
}

void settle_deletes(Chunk *chunk, const int *records, int count, bool may_wait) {
    CompiledMapping *mapping = chunk->mapping;
    if (mapping->order_column < 0 || count == 0 || !OidIsValid(mapping->key_index))
        return;
    SnapshotData dirty;
    InitDirtySnapshot(dirty);
    bool redo = false;
    for (int i = 0; i < count && !redo; i++) {
        while (true) {
            bool older;
            TransactionId writer = concurrent_row(chunk, mapping->row.target_table,
                                                  mapping->key_index, records[i], &dirty, &older);
            if (!TransactionIdIsValid(writer)) {
                // A committed row the DELETE did not see: it came after the statement's
                // snapshot (run again), or row-level security hides it from the caller
                // (running again would not help: the retries stop).
                redo = older && chunk->write_attempt < kRedoAttempts;
                break;
            }
            wait_or_yield(writer, i, count, "insert", may_wait);
        }
    }
    if (redo)
        raise_conflict(InvalidTransactionId, -1, "insert");
}

bool first_upsert_is_stored(Chunk *chunk) {
    CompiledMapping *mapping = chunk->mapping;
    if (!OidIsValid(mapping->key_index))
        return true; // no probe: look up as usual
    for (int record = 0; record < chunk->count; record++)
        if (chunk->state[record] == Upsert) {
            Snapshot snapshot = RegisterSnapshot(GetTransactionSnapshot());
            bool found =
                row_exists(chunk, mapping->row.target_table, mapping->key_index, record, snapshot);
            UnregisterSnapshot(snapshot);
            return found;
        }
    return false;
}

namespace {

// Runs visit(i, tuple) on the row of each of records' keys as this statement left them
// (SnapshotSelf), the rows of this transaction included. False when the table is not a heap.
template <typename Visit>
bool visit_own_rows(Chunk *chunk, const int *records, int count, Visit &&visit) {
    CompiledMapping *mapping = chunk->mapping;
    if (!OidIsValid(mapping->key_index))
        return false;
    int key_count = static_cast<int>(mapping->key_columns.size());
    // Each leaf is opened once, its index scan rescanned for each record not found yet.
    bool *found = static_cast<bool *>(palloc0(sizeof(bool) * (count ? count : 1)));
    int remaining = count;
    bool known = true;
    if (remaining > 0)
        any_leaf(mapping->row.target_table, mapping->key_index, [&](Oid leaf, Oid leaf_index) {
            Relation heap = table_open(leaf, AccessShareLock);
            if (heap->rd_tableam != GetHeapamTableAmRoutine()) {
                known = false;
                table_close(heap, AccessShareLock);
                return true;
            }
            Relation index = index_open(leaf_index, AccessShareLock);
            TupleTableSlot *slot = table_slot_create(heap, nullptr);
            IndexScanDesc scan = sequin_index_beginscan(heap, index, SnapshotSelf, key_count);
            for (int i = 0; i < count; i++) {
                if (found[i])
                    continue;
                index_rescan(scan, key_scan_keys(chunk, records[i]), key_count, nullptr, 0);
                if (!index_getnext_slot(scan, ForwardScanDirection, slot))
                    continue;
                found[i] = true;
                remaining--;
                bool should_free;
                HeapTuple tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
                visit(i, tuple->t_data);
                if (should_free)
                    heap_freetuple(tuple);
            }
            index_endscan(scan);
            ExecDropSingleTupleTableSlot(slot);
            index_close(index, AccessShareLock);
            table_close(heap, AccessShareLock);
            return remaining == 0;
        });
    pfree(found);
    return known;
}

} // namespace

int count_inserted_here(Chunk *chunk, const int *records, int count, bool *inserted_flags) {
    int inserted = 0;
    // An inserted row is a first version (no HEAP_UPDATED), written by this transaction.
    bool known = visit_own_rows(chunk, records, count, [&](int i, HeapTupleHeader row) {
        if (TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmin(row)) &&
            !(row->t_infomask & HEAP_UPDATED)) {
            inserted++;
            if (inserted_flags)
                inserted_flags[i] = true;
        }
    });
    return known ? inserted : -1;
}

bool rows_written_since(Chunk *chunk, const int *records, int count, CommandId since,
                        bool *written) {
    return visit_own_rows(chunk, records, count, [&](int i, HeapTupleHeader row) {
        written[i] = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmin(row)) &&
                     HeapTupleHeaderGetCmin(row) >= since;
    });
}

bool write_conflict_retryable(int sqlstate) {
    // Yielding is not a conflict yet, at any isolation level: the other writer may still
    // roll back. At REPEATABLE READ and above only a write found committed is one.
    return conflict_raised && sqlstate == ERRCODE_T_R_SERIALIZATION_FAILURE &&
           (!IsolationUsesXactSnapshot() || TransactionIdIsValid(conflict_yield_to));
}

bool take_write_conflict(int sqlstate, TransactionId *yield_to, int *at) {
    bool taken = conflict_raised && sqlstate == ERRCODE_T_R_SERIALIZATION_FAILURE;
    *yield_to = conflict_yield_to;
    *at = conflict_at;
    conflict_at = -1;
    conflict_raised = false;
    conflict_yield_to = InvalidTransactionId;
    return taken;
}

} // namespace sequin
