// Tombstones: the deleted keys of a collection with the version of their delete, so that a
// late record cannot bring a deleted row back. Keys and versions are kept in
// sequin.tombstones as text written under fixed settings (pg/fixed_settings.hpp), found by
// (collection_id, key_hash) with a hash that agrees with the target's unique index, and
// compared here as typed values: with that index's equality (its operator family and
// collation) and the order column's ordering. They are read in C and written by a plain
// INSERT as the extension's owner: bookkeeping runs no function, cast or operator of the
// caller's types with the owner's rights (comparisons run with the caller's).
// Under row-level security, a caller's tombstone for a key its DELETE did not remove binds
// only that caller, and such a caller is bound only by its own tombstones.
// C-shaped server code.
#pragma once

#include "apply/chunk.hpp"
#include "apply/tombstone_table.hpp"

extern "C" {
#include "utils/snapshot.h"
}

namespace sequin {

// Has anything of this collection ever been deleted? One index probe.
bool collection_has_tombstones(Chunk *chunk);

// Skips the records of keys not stored (upserts, and deletes: a replayed delete writes
// nothing) whose tombstone is as new as the record, or newer.
void skip_tombstoned(Chunk *chunk, int *scratch);

// The same for the given records still to upsert or delete, whether stored or not.
void skip_tombstoned_among(Chunk *chunk, const int *records, int count);

// Records tombstones for the deletes in records (removed[i]: its DELETE removed a row),
// except where one as new or newer binds the caller already.
void write_tombstones(Chunk *chunk, const int *records, int count, const bool *removed);

// With a dirty snapshot (InitDirtySnapshot): has the collection any tombstone, committed or
// being written?
bool collection_has_any_tombstone(Chunk *chunk, SnapshotData *dirty);

// With a dirty snapshot: a tombstone of the record's key that binds the caller and is as new
// as the record, or newer. *committed when one is committed (or the caller's own); else
// returns the transaction writing one, or InvalidTransactionId.
// table: opened with open_tombstones(..., dirty), under enter_fixed_settings().
TransactionId concurrent_tombstone(Chunk *chunk, TombstoneTable *table, int record,
                                   SnapshotData *dirty, bool *committed);

// Once per compiled mapping: refuses tombstones written for other key or order column
// types (naming the mapping and the column), and gives those from before 0.3.0, which have
// no hash yet, their hash and types.
void check_tombstone_types(CompiledMapping *mapping, Oid owner);

} // namespace sequin
