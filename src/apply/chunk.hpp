// A chunk: up to sequin.batch_size records of one collection, with everything derived from
// them, as parallel arrays indexed by the record's place in the chunk. The applier's steps
// (apply/*.cpp) share it; this header declares them in the order they run:
//   chunk_conversion  record -> upsert or delete, key, version; then the other values
//   citus_shards      Citus: the shard of each key, and the coordinator's shard locks
//   duplicate_keys    one record per key (the newest); key order for writes
//   stored_lookup     stored versions of the chunk's keys: stale is skipped
//   tombstones        deleted keys: a late record is skipped; deletes leave tombstones
//   chunk_writes      INSERT / UPDATE / DELETE with one array per column
//   merged_write      one MERGE for a looked-up chunk, when the table still agrees
//   write_strategy    which of those run first, from what the last chunk was like
//   write_isolation   subtransactions: a failing record is found and reported or raised
// C-shaped server code: no objects with destructors live in these frames.
#pragma once

#include "apply/apply_records.hpp"
#include "mapping/compiled_mapping.hpp"

extern "C" {
#include "lib/stringinfo.h"
}

namespace sequin {

enum RecordState : uint8 {
    Pending, // not converted yet
    Done,    // written, skipped or failed: nothing more to do
    Upsert,  // to insert or update
    Delete   // to delete
};

// An element of a parent's list, applied as a record of a child mapping (its InputRecord's
// record is the element when it is an object, else NULL).
struct ElementSource {
    int parent_input;            // the parent's record: an index into the parent call's inputs
    int list_index;              // "$index"
    JsonbValue element;          // "$element" (jbvBinary for an object or array)
    JsonbContainer *parent_root; // "$parent.<path>" reads from here
};

struct ChildCounts; // child_collections.cpp

// What every chunk of one call shares: how failures are handled, and the counts.
struct CallSettings {
    ApplyMode mode;
    FailureCallback on_failure;
    void *callback_arg;
    ApplyCounts *counts;
    Oid bookkeeping_owner;     // owner of the extension's tables (tombstones)
    const InputRecord *inputs; // the records given to apply_records
    // The counts of child collections (sequin.stats), shared by a call and its children.
    ChildCounts *child_counts;
    // A child mapping's call: the parent's call, what each input is an element of, and the
    // keys converted (the keys listed, which stay).
    const CallSettings *parent_call;
    const char *child_collection;
    const ElementSource *elements;
    struct ListedKeys *listed_keys;
};

// A record's key: its typed values' binary forms (the order in which rows are written),
// and a hash that agrees with the unique index's equality (duplicates, tombstones).
struct RecordKey {
    char *bytes;
    int length;
    uint32 hash;
    int64 shard; // Citus: the shard of a distributed target that holds it (else 0)
};

struct Chunk {
    CompiledMapping *mapping;
    const CallSettings *call;
    const InputRecord *inputs;
    const int *members; // record of the chunk -> index in inputs
    int count;
    int column_count;
    Datum *values; // count rows of column_count values
    bool *nulls;
    uint8 *state;       // RecordState
    bool *stored;       // a row with its key is stored
    bool *stored_older; // ... with an older version (or none): the record is newer
    bool *removed;      // a delete that removed a row
    RecordKey *keys;
    // A record that won over earlier ones of its key: the record whose keep_on_conflict
    // values the row keeps (the one that inserted it, applied one by one), or -1.
    int *keep_source;
    int *superseded_by; // a record skipped for a later one of its key: that record, or -1
    bool *failed;       // the record failed (Isolate: reported)
    // Conversion's working state. next and column live in memory, not in locals, so that
    // they are right after a longjmp out of a conversion.
    StringInfoData key_scratch;
    JsonbValue *top_values; // a record's top-level values of the phase's keys
    bool *top_found;
    int next;
    const char *column;      // being converted, for messages
    int write_attempt;       // of the statement being written (write_isolation.cpp)
    int64 returned_inserted; // Citus: rows the last upsert returned as inserted
    // Citus, a parent of child collections: the record's row was written (RETURNING).
    bool *written;
    bool all_upserts_written; // the chunk's upserts were all written (no probe needed)
};

inline Datum *row_values(Chunk *chunk, int record) {
    return chunk->values + static_cast<size_t>(record) * chunk->column_count;
}
inline bool *row_nulls(Chunk *chunk, int record) {
    return chunk->nulls + static_cast<size_t>(record) * chunk->column_count;
}

// ---- record_failure.cpp
// A record failed: Atomic raises error (its SQLSTATE and detail kept, the message naming
// the record and column, unless it names the record already), Isolate reports it to the
// callback and counts it.
void fail_record(const InputRecord &input, const char *column, ErrorData *error,
                 const CallSettings &call);
void fail_chunk_record(Chunk *chunk, int record, const char *column, ErrorData *error);
// A record that cannot even be grouped (not an object, no collection_id).
void fail_input(const InputRecord &input, int sqlstate, const char *reason,
                const CallSettings &call);

// ---- chunk_conversion.cpp
typedef void (*RecordStep)(Chunk *chunk, int record);
// Phase 1: upsert or delete, key and version (sets state and keys).
void convert_identity(Chunk *chunk, int record);
// Phase 2, for records still to upsert: the other mapped values.
void convert_values(Chunk *chunk, int record);
// Runs step over every record; a failing record fails alone (Isolate) or raises (Atomic).
void convert_chunk(Chunk *chunk, RecordStep step);

// ---- citus_shards.cpp
// A distributed target: each record's shard (keys[].shard), the order in which its keys are
// written, shard by shard; statements then reach one shard each.
void assign_shards(Chunk *chunk);
// A Citus target, before the look-up: the coordinator's lock on each shard the chunk writes,
// in shard order, held to the end of the transaction. Writers of one shard take turns: on
// the workers a delete and an insert of one key cannot miss each other (see README).
void lock_shards(Chunk *chunk);
// Records [0, count) of one shard as far as records[0]'s: how many.
int same_shard_run(const Chunk *chunk, const int *records, int count);

// ---- citus_values.cpp
// A Citus target's upsert of records as INSERT ... VALUES ... ON CONFLICT: returns the rows
// written, and sets returned_inserted to those it inserted (and written[] of a parent of
// child collections: the records whose rows it returned).
uint64 execute_values_upsert(Chunk *chunk, const int *records, int count);

// ---- duplicate_keys.cpp
// Several records of one key: the newest stays (array order without an order column), the
// others are skipped, as if applied one by one; the row keeps the keep_on_conflict values of
// the record that would have inserted it (chunk->keep_source).
void keep_newest_per_key(Chunk *chunk);
// The hash of key column k's value, agreeing with the unique index's equality (0 when no
// hash agrees with it); a key's hash combines its columns' with hash_combine.
uint32 key_column_hash(CompiledMapping *mapping, int k, Datum value);
// Are the key values in a and b (rows of column_count values) equal for the unique index?
bool keys_equal(Chunk *chunk, const Datum *a, const Datum *b);
// The order in which keys are written, the same in every session and every chunk: by hash,
// then binary form (equal keys of other binary forms are neighbours).
int compare_record_keys(const RecordKey &a, const RecordKey &b);
// Sorts records (chunk indexes) by key: concurrent writers then lock shared keys in the
// same order.
void sort_by_key(Chunk *chunk, int *records, int count);

// ---- stored_lookup.cpp
typedef bool (*RecordFilter)(const Chunk *chunk, int record);
bool is_pending(const Chunk *chunk, int record);
bool is_upsert(const Chunk *chunk, int record);
bool is_delete(const Chunk *chunk, int record);
bool is_new_upsert(const Chunk *chunk, int record);
// Collects the records that wanted() selects into records; returns how many.
int select_records(const Chunk *chunk, int *records, RecordFilter wanted);
// Marks which wanted records' keys are stored, and skips those that are stale.
void lookup_stored_versions(Chunk *chunk, int *scratch, RecordFilter wanted);
// The same for records (a distributed target: one look-up per shard; records get sorted).
void lookup_records(Chunk *chunk, int *records, int count);

// ---- child_collections.cpp
// After a parent chunk is written: its applied records' lists land in the child tables (rows
// not listed anymore deleted), and the children of the rows it deleted are deleted; in each
// child mapping's order, recursively. winners: the records that were to be upserted after
// duplicates were dropped; since: the command id before the chunk's writes.
void apply_children(Chunk *chunk, const bool *winners, CommandId since);
// Applies count records (list elements) of a child mapping, in chunks (apply_records.cpp).
void apply_child_records(CompiledMapping *mapping, const InputRecord *records, int count,
                         const CallSettings &call);
// The counts of a call's child collections, kept in context.
ChildCounts *new_child_counts(MemoryContext context);
// The keys of a child chunk's records, kept for the deletion of the rows not listed.
void keep_listed_keys(Chunk *chunk);
// Adds the child collections' counts of a call to sequin.stats.
void add_child_stats(const CallSettings &call);
// The counts of a call's child collections, to restore after a rolled-back attempt.
ChildCounts *save_child_counts(const CallSettings &call);
void restore_child_counts(const CallSettings &call, ChildCounts *saved);

// ---- chunk_writes.cpp
enum WriteKind {
    WriteUpsert,     // ON CONFLICT DO UPDATE, guarded by the version (inserts counted in the table)
    WriteDelete,     // DELETE guarded by the version, and tombstones
    WriteInsertNew,  // ON CONFLICT DO NOTHING: keys believed new
    WriteInsertPlain // plain INSERT: fails as a whole if one key exists
};
// Runs one write for records; returns the rows it wrote.
uint64 execute_write(Chunk *chunk, WriteKind kind, const int *records, int count);
// Sorts records by key and writes them (write_isolation's write_records), one statement per
// shard of a distributed target.
void write_in_key_order(Chunk *chunk, WriteKind kind, int *records, int count);
// A plain INSERT of records (keys believed new), in a subtransaction: NULL when it ran (the
// records are done and counted), else its error, with nothing written.
ErrorData *insert_plain(Chunk *chunk, const int *records, int count, uint64 *written);
// Inserts the upserts believed new; returns how many it inserted (see chunk_writes.cpp).
int64 insert_new_keys(Chunk *chunk, int *scratch);
// Writes a looked-up chunk's records in key order, each run of deletes or of upserts one
// statement: every writer then takes its keys' locks in one order (the rows it updates or
// deletes, the keys it inserts), and writers cannot deadlock on each other.
void write_in_key_runs(Chunk *chunk, int *scratch);
// A chunk without deletes, after a shortcut (insert-first; Citus's upsert-first): what is
// left to upsert.
void write_chunk(Chunk *chunk, int *scratch);

// ---- merged_write.cpp
// Writes records (a looked-up chunk's, in key order) by one MERGE and returns true, or
// returns false with nothing written: write_in_key_runs then writes them run by run. Sets
// *error when the MERGE failed otherwise than by a concurrent change (a record's error, say),
// which writing all runs at once would only meet again.
bool write_merged(Chunk *chunk, const int *records, int count, ErrorData **error);
// The update-first shortcut: records (all upserts) as updates of stored older rows, by one
// MERGE in key order. True when it updated every one; else false, nothing written, and
// *error set when the cause was a record's error rather than a key not stored older.
bool update_all_merged(Chunk *chunk, int *records, int count, ErrorData **error);

// ---- write_strategy.cpp
// Looks up, converts the values of and writes the records of a chunk whose identities are
// converted and deduplicated, in the order chosen from what the collection's last chunk was
// like.
void apply_with_strategy(Chunk *chunk, int *scratch);

} // namespace sequin
