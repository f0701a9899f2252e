// How a chunk is applied, chosen from what the previous chunk of the collection was like:
//   LookUpFirst: look up stored versions (and tombstones) first; stale records are skipped
//     without writing (a replay is read-only); then insert, update and delete.
//   InsertFirst (the last chunk had mostly new keys: a fresh load): insert before looking
//     anything up; only keys that turn out to exist are looked up.
//   UpdateFirst (the last chunk mostly updated stored keys): one UPDATE for all upserts,
//     guarded by the version; only the records it did not update are looked up.
// The two shortcuts skip the tombstone check, so they are used only while the collection
// has no tombstones; deletes are always looked up first. A looked-up chunk is written in one
// key order across its deletes and upserts (write_in_key_runs), so that concurrent writers
// cannot deadlock; the shortcuts write each kind in key order. A read-only transaction, and an
// insert-first chunk whose first key is stored, look up first: a replay writes nothing. Every
// strategy writes the same rows: the choice is only about speed, so the memory of past chunks is a
// per-backend hint kept here, keyed by target table and collection, not in the cached mapping.
#include "apply/chunk.hpp"
#include "apply/statement_params.hpp"
#include "apply/tombstones.hpp"
#include "apply/write_races.hpp"
#include "apply/write_isolation.hpp"

extern "C" {
#include "access/xact.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
}

namespace sequin {

namespace {

enum class Strategy { LookUpFirst, InsertFirst, UpdateFirst };

enum class LastChunk : uint8 { Mixed, NewKeys, StoredKeys };

struct LastChunkKey {
    Oid target_table;
    uint32 collection_hash; // a collision only costs speed
};

struct LastChunkEntry {
    LastChunkKey key;
    LastChunk last;
};

HTAB *last_chunks = nullptr;

LastChunkKey last_chunk_key(const CompiledMapping &mapping) {
    LastChunkKey key;
    memset(&key, 0, sizeof key);
    key.target_table = mapping.row.target_table;
    const std::string &collection = mapping.row.collection_id;
    key.collection_hash = hash_bytes(reinterpret_cast<const unsigned char *>(collection.data()),
                                     static_cast<int>(collection.size()));
    return key;
}

LastChunkEntry *last_chunk_entry(const CompiledMapping &mapping) {
    if (!last_chunks) {
        HASHCTL control;
        memset(&control, 0, sizeof control);
        control.keysize = sizeof(LastChunkKey);
        control.entrysize = sizeof(LastChunkEntry);
        control.hcxt = TopMemoryContext;
        last_chunks =
            hash_create("sequin last chunks", 64, &control, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
    }
    LastChunkKey key = last_chunk_key(mapping);
    bool found;
    auto *entry = static_cast<LastChunkEntry *>(hash_search(last_chunks, &key, HASH_ENTER, &found));
    if (!found)
        entry->last = LastChunk::Mixed;
    return entry;
}

Strategy choose_strategy(Chunk *chunk, int *scratch, LastChunk last) {
    Strategy strategy = last == LastChunk::NewKeys      ? Strategy::InsertFirst
                        : last == LastChunk::StoredKeys ? Strategy::UpdateFirst
                                                        : Strategy::LookUpFirst;
    // A write tried first would fail in a read-only transaction, even if nothing is to be
    // written (a replay). Deletes are looked up first, so that all the chunk's stored rows
    // can be locked in one order before any is written.
    if (XactReadOnly || select_records(chunk, scratch, is_delete) > 0)
        return Strategy::LookUpFirst;
    // On Citus a plain INSERT runs as COPY, whose errors lose their SQLSTATE.
    if (chunk->mapping->citus != CitusKind::None)
        return Strategy::LookUpFirst;
    if (strategy != Strategy::LookUpFirst) {
        bool has_tombstones = false;
        run_lookups(chunk, [&] { has_tombstones = collection_has_tombstones(chunk); });
        if (has_tombstones)
            return Strategy::LookUpFirst;
    }
    // An INSERT tried first takes a transaction id even when it fails: one key is looked
    // up first, so that a replay (all keys stored) writes nothing.
    if (strategy == Strategy::InsertFirst) {
        bool stored = false;
        run_lookups(chunk, [&] { stored = first_upsert_is_stored(chunk); });
        if (stored)
            return Strategy::LookUpFirst;
    }
    // The update-first MERGE converts every record and runs before anything is looked up: the
    // first record is looked up first, so that a replay (its first record stale) is looked up
    // as a whole, not converted and merged for nothing.
    if (strategy == Strategy::UpdateFirst && chunk->mapping->order_column >= 0) {
        int count = select_records(chunk, scratch, is_upsert);
        if (count > 0) {
            run_lookups(chunk, [&] { lookup_records(chunk, scratch, 1); });
            if (chunk->state[scratch[0]] != Upsert)
                return Strategy::LookUpFirst;
        }
    }
    return strategy;
}

// Citus, after a chunk that wrote (new keys or updates): the upserts without a look-up, each
// shard's one INSERT ... VALUES ... ON CONFLICT, counted from what it returns; a look-up per
// shard is a round trip to a worker. Not with deletes or tombstones, nor in a read-only
// transaction; and one key is looked up first, so that a replay writes nothing. False: look
// the chunk up as usual.
bool citus_upsert_first(Chunk *chunk, int *scratch, LastChunkEntry *memory) {
    if (memory->last == LastChunk::Mixed || XactReadOnly ||
        select_records(chunk, scratch, is_delete) > 0)
        return false;
    bool has_tombstones = false;
    run_lookups(chunk, [&] { has_tombstones = collection_has_tombstones(chunk); });
    int count = select_records(chunk, scratch, is_upsert);
    if (has_tombstones || count == 0)
        return false;
    lock_shards(chunk);
    run_lookups(chunk, [&] { lookup_records(chunk, scratch, 1); });
    if (chunk->state[scratch[0]] != Upsert) { // stale (or failed): a replay, perhaps
        memory->last = LastChunk::Mixed;
        return false;
    }
    convert_chunk(chunk, convert_values);
    count = select_records(chunk, scratch, is_upsert);
    ApplyCounts before = *chunk->call->counts;
    write_chunk(chunk, scratch);
    const ApplyCounts &after = *chunk->call->counts;
    memory->last = after.skipped != before.skipped || after.failed != before.failed
                       ? LastChunk::Mixed
                   : after.inserted - before.inserted == count ? LastChunk::NewKeys
                                                               : LastChunk::StoredKeys;
    return true;
}

// A child's records are upserts without a version or tombstones: written at once by INSERT ...
// ON CONFLICT DO UPDATE (its inserts counted from RETURNING), in list order: the rows of a
// parent's list are written under the parent row's lock, and lie together in the table as
// they were inserted, so that they are visited in the table's order. After a chunk of new
// keys (a fresh load) a plain INSERT is tried first, which skips ON CONFLICT's probe of the
// index before each row; if a key exists after all, it fails as a whole and the upsert runs.
// Updates the stored rows of records (a child chunk's upserts): one UPDATE, without the
// lock that ON CONFLICT takes before it updates. Returns the records left to insert, moved to
// the front of records. On an error (a record's), nothing is updated: all are left.
int update_listed_rows(Chunk *chunk, int *records, int count) {
    CompiledMapping *mapping = chunk->mapping;
    bool *updated = static_cast<bool *>(palloc0(chunk->count + 1));
    uint64 rows = 0;
    ErrorData *error = try_in_subtransaction(
        [&] {
            StatementParams params;
            params_init(&params, chunk);
            for (int i = 0; i < chunk->column_count; i++)
                if (!mapping->columns[i].is_now)
                    add_param(&params, column_array(chunk, i, records, count));
            add_param(&params, record_number_array(records, count));
            rows = run_statement(chunk, mapping->update_listed, &params, false);
            for (uint64 row = 0; row < rows; row++) {
                bool isnull;
                updated[DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
                                                    1, &isnull))] = true;
            }
            SPI_freetuptable(SPI_tuptable);
        },
        Retries::WriteRaces);
    if (error) { // found record by record by the upsert
        FreeErrorData(error);
        return count;
    }
    chunk->call->counts->updated += static_cast<int64>(rows);
    int left = 0;
    for (int i = 0; i < count; i++) {
        if (updated[records[i]])
            chunk->state[records[i]] = Done;
        else
            records[left++] = records[i];
    }
    return left;
}

void write_child_chunk(Chunk *chunk, int *scratch, LastChunkEntry *memory) {
    convert_chunk(chunk, convert_values);
    int count = select_records(chunk, scratch, is_upsert);
    if (count == 0)
        return;
    // Unless the last chunk was all new keys (a fresh load), the stored rows are updated first.
    bool updated_some = false;
    if (memory->last != LastChunk::NewKeys) {
        int left = update_listed_rows(chunk, scratch, count);
        updated_some = left < count;
        count = left;
        if (count == 0) {
            memory->last = LastChunk::StoredKeys;
            return;
        }
    }
    uint64 written = 0;
    ErrorData *error = insert_plain(chunk, scratch, count, &written);
    if (!error) {
        memory->last = updated_some ? LastChunk::Mixed : LastChunk::NewKeys;
        return;
    }
    // A key stored after all (or a record's error, found by the upsert): upserted.
    FreeErrorData(error);
    write_records(chunk, WriteUpsert, scratch, count);
    for (int i = 0; i < count; i++)
        chunk->state[scratch[i]] = Done;
    memory->last = LastChunk::Mixed;
}

} // namespace

void apply_with_strategy(Chunk *chunk, int *scratch) {
    CompiledMapping *mapping = chunk->mapping;
    LastChunkEntry *memory = last_chunk_entry(*mapping);
    if (mapping->is_child && mapping->citus == CitusKind::None) {
        write_child_chunk(chunk, scratch, memory);
        return;
    }
    if (mapping->citus != CitusKind::None && citus_upsert_first(chunk, scratch, memory))
        return;
    Strategy strategy = choose_strategy(chunk, scratch, memory->last);
    bool ordered = mapping->order_column >= 0;
    int upserts = select_records(chunk, scratch, is_upsert);
    bool converted = false;
    if (strategy == Strategy::UpdateFirst) {
        convert_chunk(chunk, convert_values);
        converted = true;
        int count = select_records(chunk, scratch, is_upsert);
        ErrorData *error;
        if (update_all_merged(chunk, scratch, count, &error)) {
            chunk->all_upserts_written = true;
            return; // every key stored older: the memory stays
        }
        if (error && count == 1) { // the record's own error, which it would only meet again
            fail_chunk_record(chunk, scratch[0], nullptr, error);
            return;
        }
        if (error) { // a record's error: found run by run, as upserts
            FreeErrorData(error);
            write_records(chunk, WriteUpsert, scratch, count);
            for (int i = 0; i < count; i++)
                chunk->state[scratch[i]] = Done;
            memory->last = LastChunk::Mixed;
            return;
        }
        strategy = Strategy::LookUpFirst; // some key was not stored older: look up as usual
    }
    lock_shards(chunk);
    run_lookups(chunk, [&] {
        lookup_stored_versions(chunk, scratch,
                               strategy == Strategy::InsertFirst ? is_delete : is_pending);
        if (strategy != Strategy::InsertFirst)
            skip_tombstoned(chunk, scratch);
    });
    int stored = 0, older = 0;
    for (int record = 0; record < chunk->count; record++)
        if (chunk->stored[record] && chunk->state[record] != Delete) {
            stored++;
            older += chunk->stored_older[record];
        }
    if (!converted)
        convert_chunk(chunk, convert_values);
    if (strategy == Strategy::LookUpFirst) {
        write_in_key_runs(chunk, scratch);
    } else {
        if (ordered) {
            int64 inserted = insert_new_keys(chunk, scratch);
            if (strategy == Strategy::InsertFirst)
                stored = static_cast<int>(upserts - inserted);
        }
        write_chunk(chunk, scratch);
    }
    if (upserts > 0 && stored * 20 <= upserts && ordered)
        memory->last = LastChunk::NewKeys;
    else if (upserts > 0 && older == upserts) // the update-first MERGE is all or nothing
        memory->last = LastChunk::StoredKeys;
    else
        memory->last = LastChunk::Mixed;
}

} // namespace sequin
