// Reading sequin.tombstones in C: the rows of a key, which of them bind the caller, their
// values as typed values (read under fixed settings), compared with a record's. Shared by
// the tombstone steps (tombstones.cpp, tombstone_types.cpp). C-shaped server code.
#pragma once

#include "apply/chunk.hpp"

extern "C" {
#include "access/htup.h"
#include "access/genam.h"
#include "access/relscan.h"
#include "executor/tuptable.h"
#include "utils/rel.h"
#include "utils/snapshot.h"
}

namespace sequin {

// sequin.tombstones opened for a look-up, with the numbers of the columns read.
struct TombstoneTable {
    Relation rel;
    Oid index; // tombstones_lookup: (collection_id, key_hash)
    Snapshot snapshot;
    bool registered; // snapshot is ours to unregister
    AttrNumber collection_id, key_hash, key, version, key_types, version_type, created_by,
        binds_all;
    Oid caller;
    NameData caller_name; // created_by holds role names: a restore needs no such role
    const CompiledMapping *mapping;
    ErrorContextCallback context; // names the mapping in errors while the table is open
    bool caller_under_rls;        // row-level security applies to the caller on the target
    // One index scan kept open while the table is, rescanned per key (scan_key_hash).
    Relation index_rel;
    IndexScanDesc key_scan;
    TupleTableSlot *slot;
};

// The tombstones' index (0.3.0): its absence means a schema older than this library.
Oid tombstones_index();
// Opens the table to read with snapshot, or with a new MVCC snapshot when it is NULL.
void open_tombstones(TombstoneTable *table, const CompiledMapping &mapping,
                     Snapshot snapshot = nullptr);
void close_tombstones(TombstoneTable *table);
// The scan key on collection_id (heap column numbers, for systable_beginscan).
void collection_scan_key(const TombstoneTable &table, const CompiledMapping &mapping,
                         ScanKeyData *key);
// Starts over on the tombstones of the collection with one key hash; next_of_key_hash
// returns them one by one (valid until the next call), then NULL.
void scan_key_hash(TombstoneTable *table, uint32 hash);
HeapTuple next_of_key_hash(TombstoneTable *table);
// Does the tombstone bind the caller? Under row-level security, only the caller's own do.
bool binds_caller(const TombstoneTable &table, HeapTuple tuple);
// A tombstone's text as a value of column's base type (under the fixed settings).
Datum read_value(TombstoneColumn &column, Datum stored);
// Is the tombstone's key (text[]) equal to the record's key for the unique index?
bool key_matches(Chunk *chunk, const TombstoneTable &table, HeapTuple tuple, int record);
// Is tuple a tombstone of the record's key that binds the caller? Then *version is its
// version (a tombstone without one binds nothing).
bool binding_version(Chunk *chunk, const TombstoneTable &table, HeapTuple tuple, int record,
                     Datum *version);
// The newest version among the tombstones of the record's key that bind the caller.
bool newest_tombstone(Chunk *chunk, TombstoneTable *table, int record, Datum *newest);
// Is the record's version newer than newest (the record's NULL version is never newer)?
bool record_is_newer(Chunk *chunk, int record, Datum newest);
Datum text_array(Datum *texts, int count);
// The mapping's key column base types as a regtype[].
Datum key_types_array(const CompiledMapping &mapping);

} // namespace sequin
