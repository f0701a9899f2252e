// Differences between the PostgreSQL versions sequin_upsert builds for (15, 17, 18), in one
// place, behind PG_VERSION_NUM. Code elsewhere calls these helpers and has no #if of its own.
//
//   16  AdjustTimestampForTypmod() takes Node *escontext: sequin_adjust_timestamp_for_typmod()
//   17  MyBackendId (1-based, storage/backendid.h) is MyProcNumber (0-based,
//       storage/procnumber.h): sequin_backend_slot()
//   18  RelationGetPrimaryKeyIndex() takes bool deferrable_ok: sequin_primary_key_index()
//   18  index_beginscan() takes IndexScanInstrumentation *: sequin_index_beginscan()
//   18  heap_inplace_update() is gone; systable_inplace_update_begin/_finish/_cancel exist
//       since 15.9, 16.5 and 17.1: sequin_inplace_update()
//
// 16 is not built or tested: its thresholds are from the PostgreSQL sources' history.
// C-shaped server code: no objects with destructors, nothing here throws.
#pragma once

extern "C" {
#include "postgres.h"
#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "fmgr.h"
#include "utils/datetime.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#if PG_VERSION_NUM >= 170000
#include "storage/procnumber.h"
#else
#include "storage/backendid.h"
#endif
}

#if PG_VERSION_NUM < 150000
#error "sequin_upsert needs PostgreSQL 15 or later"
#endif

// systable_inplace_update_begin() and friends: PostgreSQL 18, and the back branches from the
// November 2024 minor releases on (the fix for lost in-place updates was back-patched to
// all supported branches; heap_inplace_update() stayed there, deprecated, and is gone in 18).
#if PG_VERSION_NUM >= 170001 || (PG_VERSION_NUM >= 160005 && PG_VERSION_NUM < 170000) ||           \
    (PG_VERSION_NUM >= 150009 && PG_VERSION_NUM < 160000)
#define SEQUIN_HAVE_SYSTABLE_INPLACE 1
#else
#define SEQUIN_HAVE_SYSTABLE_INPLACE 0
#endif

// This backend's slot number: unique among the backends running at one time, reused after a
// backend exits. 15/16: MyBackendId, 1..MaxBackends. 17+: MyProcNumber, 0-based (and defined
// for auxiliary processes too). Only uniqueness matters to its users (the stats rows).
static inline int32 sequin_backend_slot(void) {
#if PG_VERSION_NUM >= 170000
    return static_cast<int32>(MyProcNumber);
#else
    return static_cast<int32>(MyBackendId);
#endif
}

// Rounds *time to typmod's fractional digits; an out-of-range typmod or result raises
// ERROR. 16+ can report soft errors through escontext: passing NULL keeps 15's ereport.
static inline void sequin_adjust_timestamp_for_typmod(Timestamp *time, int32 typmod) {
#if PG_VERSION_NUM >= 160000
    (void)AdjustTimestampForTypmod(time, typmod, nullptr);
#else
    AdjustTimestampForTypmod(time, typmod);
#endif
}

// The relation's primary key index, or InvalidOid. 18 asks whether a DEFERRABLE primary key
// will do: false keeps the meaning of earlier versions (a deferrable one is not reported).
static inline Oid sequin_primary_key_index(Relation rel) {
#if PG_VERSION_NUM >= 180000
    return RelationGetPrimaryKeyIndex(rel, false);
#else
    return RelationGetPrimaryKeyIndex(rel);
#endif
}

// An index scan with nkeys scan keys and no ORDER BY keys. 18 takes an
// IndexScanInstrumentation * (for EXPLAIN ANALYZE): none here.
static inline IndexScanDesc sequin_index_beginscan(Relation heap, Relation index, Snapshot snapshot,
                                                   int nkeys) {
#if PG_VERSION_NUM >= 180000
    return index_beginscan(heap, index, snapshot, nullptr, nkeys, 0);
#else
    return index_beginscan(heap, index, snapshot, nkeys, 0);
#endif
}

// Makes the same-length replacement of old (a copy the caller may read; not to be freed).
typedef HeapTuple (*SequinInplaceMutator)(HeapTuple old, TupleDesc desc, void *arg);

// Overwrites in place (no new row version, no transaction id; WAL only for a logged table)
// the row of rel that the index scan with keys finds, with mutate(old). Returns false, having
// written nothing, when no row is found. mutate runs with the row's buffer exclusively
// locked: it must be short and must not read rel again. The replacement must have the
// old row's length (heap_inplace_update_and_unlock raises "wrong tuple length" otherwise).
//
// With systable_inplace_update_*: the scan uses a fresh MVCC snapshot (passing one is not
// allowed), so it sees committed rows and the caller's own from earlier commands, and the
// row is locked (tuple lock InplaceUpdateTupleLock, then the buffer): a concurrent
// UPDATE/DELETE of the row in progress is waited for, and the row looked up again. Without
// (before 15.9/16.5/17.1): SnapshotSelf and heap_inplace_update, which neither locks the
// row nor waits, and may write to a version a concurrent UPDATE has just replaced.
static inline bool sequin_inplace_update(Relation rel, Oid index, int nkeys, ScanKeyData *keys,
                                         SequinInplaceMutator mutate, void *arg) {
#if SEQUIN_HAVE_SYSTABLE_INPLACE
    HeapTuple old = nullptr;
    void *state = nullptr;
    systable_inplace_update_begin(rel, index, true, nullptr, nkeys, keys, &old, &state);
    if (!HeapTupleIsValid(old))
        return false;
    HeapTuple replacement = mutate(old, RelationGetDescr(rel), arg);
    if (!HeapTupleIsValid(replacement)) {
        systable_inplace_update_cancel(state);
        heap_freetuple(old);
        return true;
    }
    // Unlocking uses the replacement's t_self: it must name the locked row.
    replacement->t_self = old->t_self;
    systable_inplace_update_finish(state, replacement);
#else
    SysScanDesc scan = systable_beginscan(rel, index, true, SnapshotSelf, nkeys, keys);
    HeapTuple found = systable_getnext(scan);
    if (!HeapTupleIsValid(found)) {
        systable_endscan(scan);
        return false;
    }
    HeapTuple old = heap_copytuple(found);
    HeapTuple replacement = mutate(old, RelationGetDescr(rel), arg);
    if (HeapTupleIsValid(replacement)) {
        replacement->t_self = old->t_self;
        heap_inplace_update(rel, replacement);
    }
    systable_endscan(scan);
#endif
    if (HeapTupleIsValid(replacement))
        heap_freetuple(replacement);
    heap_freetuple(old);
    return true;
}
