// Write isolation: statements run in subtransactions, so that a failing record can be found
// (by splitting the batch in halves) and failed alone, and a deadlock victim can run again.
// Errors that are not a record's fault (serialization, cancel, out of memory, internal)
// abort the call. C-shaped server code.
#pragma once

#include "apply/chunk.hpp"
#include "apply/write_races.hpp"

extern "C" {
#include "access/xact.h"
#include "utils/resowner.h"
}

namespace sequin {

// A deadlock victim at READ COMMITTED: rolling back the statement's subtransaction frees
// its locks, and the statement can simply run again (with a new snapshot).
bool is_retryable_deadlock(int sqlstate);

// Serialization failures, deadlocks, cancels, out of memory: not a record's fault.
bool is_transaction_level_error(int sqlstate);

// Which transaction-level errors try_in_subtransaction returns rather than raises again.
enum class Retries {
    None,
    WriteRaces, // a deadlock or a write conflict at READ COMMITTED (write_races.hpp)
    // also anything else at READ COMMITTED but a cancel or a lack of resources: the caller
    // writes again another way (apply/merged_write.cpp)
    Fallback
};

// Runs fn in a subtransaction. Returns NULL, or the error (the subtransaction rolled back).
// Transaction-level errors are raised again, except those the caller retries.
bool returned_for_retry(int sqlstate, Retries retries);
template <typename Fn> ErrorData *try_in_subtransaction(Fn &&fn, Retries retries = Retries::None) {
    MemoryContext context = CurrentMemoryContext;
    ResourceOwner owner = CurrentResourceOwner;
    ErrorData *volatile error = nullptr;
    BeginInternalSubTransaction(nullptr);
    MemoryContextSwitchTo(context);
    PG_TRY();
    {
        fn();
        ReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(context);
        CurrentResourceOwner = owner;
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(context);
        error = CopyErrorData();
        FlushErrorState();
        RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(context);
        CurrentResourceOwner = owner;
        if (is_transaction_level_error(error->sqlerrcode) &&
            !returned_for_retry(error->sqlerrcode, retries))
            ReThrowError(error);
    }
    PG_END_TRY();
    return error;
}

// Adds what a successful write of records as kind did to the call's counts.
void count_written(Chunk *chunk, WriteKind kind, const int *records, int count, uint64 written);

// A record whose write failed on its own values (a CHECK, say) that is stale after all: its
// key is stored, or deleted, with a version as new (a write that was not looked up first
// meets the table's constraints before the conflict). Looks it up; true when it is skipped
// now, as it would have been, sent alone.
bool skipped_after_all(Chunk *chunk, WriteKind kind, int record);

// Writes records as kind in a subtransaction, counting what was written; a deadlock victim
// runs again; a failing write is split in halves down to the bad record, which fails.
void write_records(Chunk *chunk, WriteKind kind, const int *records, int count);

// Runs look-ups; in Isolate mode an error fails every record still open in the chunk (say,
// no SELECT right on the target), in Atomic mode it is raised.
template <typename Fn> void run_lookups(Chunk *chunk, Fn &&lookups) {
    if (chunk->call->mode == ApplyMode::Atomic) {
        lookups();
        return;
    }
    ErrorData *error = try_in_subtransaction(lookups);
    if (error)
        for (int record = 0; record < chunk->count; record++)
            if (chunk->state[record] != Done)
                fail_chunk_record(chunk, record, nullptr, error);
}

} // namespace sequin
