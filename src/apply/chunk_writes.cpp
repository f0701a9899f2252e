// The writes of a chunk, each one prepared statement fed with one array per column, rows
// always in key order: new keys by INSERT, upserts by INSERT ... ON CONFLICT DO UPDATE
// guarded by the version, deletes by DELETE (plus their tombstones).
#include "apply/chunk.hpp"
#include "apply/statement_params.hpp"
#include "apply/tombstones.hpp"
#include "apply/write_isolation.hpp"
#include "apply/write_races.hpp"

extern "C" {
#include "executor/spi.h"
#include "storage/lmgr.h"
}

namespace sequin {

namespace {

const PreparedStatement &row_write_statement(const CompiledMapping &mapping, WriteKind kind) {
    switch (kind) {
    case WriteInsertNew:
        return mapping.insert_new;
    case WriteInsertPlain:
        return mapping.insert_plain;
    default:
        return mapping.upsert;
    }
}

} // namespace

uint64 execute_write(Chunk *chunk, WriteKind kind, const int *records, int count) {
    CompiledMapping *mapping = chunk->mapping;
    StatementParams params;
    params_init(&params, chunk);
    if (kind == WriteDelete) {
        key_params(chunk, &params, records, count, true, mapping->order_column >= 0, false);
        uint64 deleted = run_statement(chunk, mapping->remove, &params, false);
        bool *removed = static_cast<bool *>(palloc0(sizeof(bool) * count));
        for (uint64 row = 0; row < SPI_processed; row++) { // RETURNING the record number
            bool isnull;
            int record = DatumGetInt32(
                SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull));
            chunk->removed[record] = true;
        }
        SPI_freetuptable(SPI_tuptable);
        for (int i = 0; i < count; i++)
            removed[i] = chunk->removed[records[i]];
        // Tombstones for every delete, applied or not (a delete of an absent key too).
        write_tombstones(chunk, records, count, removed);
        settle_deletes(chunk, records, count);
        return deleted;
    }
    uint64 written;
    if (kind == WriteUpsert && mapping->citus != CitusKind::None) {
        written = execute_values_upsert(chunk, records, count);
    } else {
        for (int i = 0; i < chunk->column_count; i++)
            if (!mapping->columns[i].is_now)
                add_param(&params, column_array(chunk, i, records, count));
        written = run_statement(chunk, row_write_statement(*mapping, kind), &params, false);
        if (kind == WriteUpsert && mapping->is_child && !mapping->partitioned) {
            // RETURNING whether each was inserted
            chunk->returned_inserted = 0;
            for (uint64 row = 0; row < SPI_processed; row++) {
                bool isnull;
                chunk->returned_inserted += DatumGetBool(
                    SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull));
            }
            SPI_freetuptable(SPI_tuptable);
        }
    }
    settle_inserts(chunk, records, count);
    return written;
}

void write_in_key_order(Chunk *chunk, WriteKind kind, int *records, int count) {
    sort_by_key(chunk, records, count);
    for (int start = 0; start < count;) { // a statement per shard (Citus; else one)
        int run = same_shard_run(chunk, records + start, count - start);
        write_records(chunk, kind, records + start, run);
        start += run;
    }
}

namespace {

WriteKind key_run_kind(const Chunk *chunk, int record) {
    return chunk->state[record] == Delete ? WriteDelete : WriteUpsert;
}

// The runs of records[0, count), in key order: each with write_records (a subtransaction per
// statement), or plain: one statement per run, inside the caller's subtransaction.
void write_runs(Chunk *chunk, const int *records, int count, bool plain) {
    for (int start = 0; start < count;) {
        WriteKind kind = key_run_kind(chunk, records[start]);
        int end = start + same_shard_run(chunk, records + start, count - start); // Citus
        for (int i = start + 1; i < end; i++)
            if (key_run_kind(chunk, records[i]) != kind) {
                end = i;
                break;
            }
        if (plain) {
            uint64 written = execute_write(chunk, kind, records + start, end - start);
            count_written(chunk, kind, records + start, end - start, written);
        } else {
            write_records(chunk, kind, records + start, end - start);
        }
        for (int i = start; i < end; i++)
            chunk->state[records[i]] = Done;
        start = end;
    }
}

} // namespace

void write_in_key_runs(Chunk *chunk, int *scratch) {
    int count = 0;
    for (int record = 0; record < chunk->count; record++)
        if (chunk->state[record] == Upsert || chunk->state[record] == Delete)
            scratch[count++] = record;
    if (count == 0)
        return;
    sort_by_key(chunk, scratch, count);
    size_t states = static_cast<size_t>(chunk->count);
    uint8 *state_before = static_cast<uint8 *>(palloc(states));
    memcpy(state_before, chunk->state, states);
    ApplyCounts counts_before = *chunk->call->counts;
    ErrorData *merge_error;
    if (write_merged(chunk, scratch, count, &merge_error))
        return;
    if (merge_error) { // found run by run
        FreeErrorData(merge_error);
        write_runs(chunk, scratch, count, false);
        return;
    }
    // Then all runs in one subtransaction: a chunk mixing deletes and upserts takes a run
    // per alternation, and a subtransaction each (with its transaction id) would cost more
    // than the writes. Any error (a bad record, a write conflict, a deadlock) rolls it back,
    // and the runs are written again one subtransaction each, where write_records finds the
    // record or waits. A writer waiting for our rows waits for that one subtransaction,
    // which the rollback ends.
    ErrorData *error = try_in_subtransaction([&] { write_runs(chunk, scratch, count, true); },
                                             Retries::WriteRaces);
    if (!error)
        return;
    TransactionId yield_to;
    int conflict_at;
    bool conflict = take_write_conflict(error->sqlerrcode, &yield_to, &conflict_at);
    if (!conflict && !is_retryable_deadlock(error->sqlerrcode) && count == 1) {
        // The one record's own error: written again, it would only raise it again (and a
        // call nested in a trigger of the target would double its time with each level).
        memcpy(chunk->state, state_before, states);
        *chunk->call->counts = counts_before;
        fail_chunk_record(chunk, scratch[0], nullptr, error);
        return;
    }
    FreeErrorData(error);
    memcpy(chunk->state, state_before, states);
    memset(chunk->removed, 0, states);
    *chunk->call->counts = counts_before;
    write_runs(chunk, scratch, count, false);
}

void write_chunk(Chunk *chunk, int *scratch) {
    // One INSERT ... ON CONFLICT DO UPDATE in key order (which locks rows in that order, as a
    // join of the batch with the table need not), counted in the table.
    int count = select_records(chunk, scratch, is_upsert);
    write_in_key_order(chunk, WriteUpsert, scratch, count);
    for (int i = 0; i < count; i++)
        chunk->state[scratch[i]] = Done;
}

// Keys believed new: a plain INSERT first, which skips ON CONFLICT's probe of the index
// before each row (the unique check of the insertion itself remains). If any key does
// exist after all, it fails as a whole, and INSERT ... ON CONFLICT DO NOTHING counts exactly
// what it inserts. The keys that turned out to exist (inserted meanwhile by another
// session) are looked up and left to write_chunk() as updates, or skipped as stale.
ErrorData *insert_plain(Chunk *chunk, const int *records, int count, uint64 *written) {
    ErrorData *error = try_in_subtransaction(
        [&] { *written = execute_write(chunk, WriteInsertPlain, records, count); },
        Retries::WriteRaces);
    if (error)
        return error;
    ApplyCounts *counts = chunk->call->counts;
    counts->inserted += *written;
    counts->skipped += count - static_cast<int64>(*written); // a BEFORE trigger's NULL
    for (int i = 0; i < count; i++)
        chunk->state[records[i]] = Done;
    return nullptr;
}

int64 insert_new_keys(Chunk *chunk, int *scratch) {
    int count = select_records(chunk, scratch, is_new_upsert);
    if (count == 0)
        return 0;
    ApplyCounts *counts = chunk->call->counts;
    sort_by_key(chunk, scratch, count);
    uint64 written = 0;
    ErrorData *error = insert_plain(chunk, scratch, count, &written);
    if (!error)
        return written;
    TransactionId yield_to;
    int conflict_at;
    bool conflict = take_write_conflict(error->sqlerrcode, &yield_to, &conflict_at);
    if (!conflict && error->sqlerrcode != ERRCODE_UNIQUE_VIOLATION && count == 1) {
        // The record's own error (say, from a trigger of the target): running it again as
        // ON CONFLICT would only raise it again, and a call nested in such a trigger would
        // double its time with each level.
        if (skipped_after_all(chunk, WriteInsertPlain, scratch[0]))
            FreeErrorData(error);
        else
            fail_chunk_record(chunk, scratch[0], nullptr, error);
        return 0;
    }
    if (conflict) { // a key deleted meanwhile
        if (TransactionIdIsValid(yield_to))
            XactLockTableWait(yield_to, nullptr, nullptr, XLTW_None);
        skip_tombstoned_among(chunk, scratch, count);
    }
    FreeErrorData(error);
    count = select_records(chunk, scratch, is_new_upsert);
    int64 inserted_before = counts->inserted;
    write_in_key_order(chunk, WriteInsertNew, scratch, count);
    int64 inserted = counts->inserted - inserted_before;
    int remaining = select_records(chunk, scratch, is_new_upsert); // inserted, or existing
    if (inserted == remaining) {
        for (int i = 0; i < remaining; i++)
            chunk->state[scratch[i]] = Done;
        return inserted;
    }
    // The rows this statement inserted are done; the others (stored meanwhile, or held back
    // by a trigger) are looked up.
    bool *inserted_flags = static_cast<bool *>(palloc0(sizeof(bool) * remaining));
    if (count_inserted_here(chunk, scratch, remaining, inserted_flags) >= 0) {
        for (int i = 0; i < remaining; i++)
            if (inserted_flags[i])
                chunk->state[scratch[i]] = Done;
        run_lookups(chunk, [&] { lookup_stored_versions(chunk, scratch, is_new_upsert); });
        return inserted;
    }
    // Not a heap: the rows just inserted are found with their own version and marked
    // skipped (a NULL version is newer than nothing, so such rows are written once more).
    int64 skipped_before = counts->skipped;
    run_lookups(chunk, [&] { lookup_stored_versions(chunk, scratch, is_new_upsert); });
    counts->skipped = skipped_before + (counts->skipped - skipped_before - inserted);
    return inserted;
}

} // namespace sequin
