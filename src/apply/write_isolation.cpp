// Write isolation: see write_isolation.hpp.
#include "apply/write_isolation.hpp"
#include "apply/tombstones.hpp"
#include "apply/write_races.hpp"

extern "C" {
#include "miscadmin.h"
#include "storage/lmgr.h"
}

#include <cstring>

namespace sequin {

namespace {

// How often a statement chosen as a deadlock victim runs again before the call fails. A
// writer that waited for one of the call's earlier statements waits for its transaction
// to end, so only a cycle on the statement's own writes clears by running it again.
constexpr int kDeadlockRetries = 5;
// How often a statement that met a concurrent delete or insert of its keys runs again; each
// time after that writer has ended, so the bound is only a safeguard.
constexpr int kConflictRetries = 50;

} // namespace

// Adds what a successful write did to the call's counts.
void count_written(Chunk *chunk, WriteKind kind, const int *records, int count, uint64 written) {
    ApplyCounts *counts = chunk->call->counts;
    switch (kind) {
    case WriteUpsert: {
        // One statement inserts and updates: what it inserted is counted in the table (a key
        // stored at the look-up may have been deleted since), or from Citus's RETURNING.
        const CompiledMapping *mapping = chunk->mapping;
        int64 inserted =
            mapping->citus != CitusKind::None || (mapping->is_child && !mapping->partitioned)
                ? chunk->returned_inserted
                : count_inserted_here(chunk, records, count, nullptr);
        if (inserted < 0) { // not a heap: by the look-up
            int64 believed_new = 0;
            for (int i = 0; i < count; i++)
                believed_new += !chunk->stored[records[i]];
            inserted = Min(believed_new, static_cast<int64>(written));
        }
        counts->inserted += inserted;
        counts->updated += written - inserted;
        break;
    }
    case WriteInsertPlain:
    case WriteInsertNew: // the caller accounts for the keys that were not new
        counts->inserted += written;
        return;
    case WriteDelete:
        counts->deleted += written;
        break;
    }
    counts->skipped += count - static_cast<int64>(written);
}

namespace {

// After a write conflict: the records of the statement that are still to write, looked up
// anew (a key deleted meanwhile is skipped now), copied to a list of the retry's own.
int records_still_to_write(Chunk *chunk, WriteKind kind, const int *&records, int count) {
    if (kind != WriteDelete)
        skip_tombstoned_among(chunk, records, count);
    int *still = static_cast<int *>(palloc(sizeof(int) * count));
    int kept = 0;
    for (int i = 0; i < count; i++)
        if (chunk->state[records[i]] == (kind == WriteDelete ? Delete : Upsert))
            still[kept++] = records[i];
        else if (chunk->written) // its row, returned by the rolled-back attempt, is gone
            chunk->written[records[i]] = false;
    records = still;
    return kept;
}

} // namespace

bool skipped_after_all(Chunk *chunk, WriteKind kind, int record) {
    if (kind == WriteDelete || chunk->mapping->order_column < 0)
        return false;
    int one[1] = {record};
    lookup_records(chunk, one, 1);
    if (chunk->state[record] == Upsert)
        skip_tombstoned_among(chunk, one, 1);
    return chunk->state[record] != Upsert;
}

bool is_retryable_deadlock(int sqlstate) {
    return sqlstate == ERRCODE_T_R_DEADLOCK_DETECTED && !IsolationUsesXactSnapshot();
}

bool is_transaction_level_error(int sqlstate) {
    const char *state = unpack_sql_state(sqlstate);
    return strncmp(state, "40", 2) == 0 || strncmp(state, "53", 2) == 0 ||
           strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0 ||
           strncmp(state, "XX", 2) == 0;
}

bool returned_for_retry(int sqlstate, Retries retries) {
    if (retries == Retries::None)
        return false;
    if (is_retryable_deadlock(sqlstate) || write_conflict_retryable(sqlstate))
        return true;
    const char *state = unpack_sql_state(sqlstate);
    return retries == Retries::Fallback && !IsolationUsesXactSnapshot() &&
           strncmp(state, "53", 2) != 0 && strncmp(state, "57", 2) != 0 &&
           strncmp(state, "58", 2) != 0;
}

void write_records(Chunk *chunk, WriteKind kind, const int *records, int count) {
    if (count == 0)
        return;
    uint64 written = 0;
    ErrorData *error = nullptr;
    for (int attempt = 1;; attempt++) {
        chunk->write_attempt = attempt;
        TransactionId yield_to;
        int conflict_at;
        (void)take_write_conflict(0, &yield_to, &conflict_at); // none is pending yet
        error = try_in_subtransaction([&] { written = execute_write(chunk, kind, records, count); },
                                      Retries::WriteRaces);
        if (!error)
            break;
        bool conflict = take_write_conflict(error->sqlerrcode, &yield_to, &conflict_at);
        bool deadlock = is_retryable_deadlock(error->sqlerrcode);
        if (!conflict && !deadlock)
            break; // a record's error: found below
        if ((deadlock && attempt >= kDeadlockRetries) || (conflict && attempt >= kConflictRetries))
            ReThrowError(error);
        FreeErrorData(error);
        if (conflict) {
            // Our write is rolled back: wait for the writer we yielded to, then look the
            // records up anew. A conflict met before the last key: the statement now ends at
            // that key, and the keys after it are written next.
            if (TransactionIdIsValid(yield_to))
                XactLockTableWait(yield_to, nullptr, nullptr, XLTW_None);
            if (conflict_at >= 0 && conflict_at < count - 1) {
                const int *prefix = records;
                int prefix_count = records_still_to_write(chunk, kind, prefix, conflict_at + 1);
                write_records(chunk, kind, prefix, prefix_count);
                write_records(chunk, kind, records + conflict_at + 1, count - conflict_at - 1);
                return;
            }
            count = records_still_to_write(chunk, kind, records, count);
            if (count == 0)
                return;
        }
        CHECK_FOR_INTERRUPTS();
    }
    if (!error) {
        count_written(chunk, kind, records, count, written);
        return;
    }
    if (count == 1) {
        if (skipped_after_all(chunk, kind, records[0]))
            FreeErrorData(error);
        else
            fail_chunk_record(chunk, records[0], nullptr, error);
        return;
    }
    FreeErrorData(error);
    write_records(chunk, kind, records, count / 2);
    write_records(chunk, kind, records + count / 2, count - count / 2);
}

} // namespace sequin
