// Write isolation: see write_isolation.hpp.
#include "apply/write_isolation.hpp"

extern "C" {
#include "miscadmin.h"
}

#include <cstring>

namespace sequin {

namespace {

// How often a statement chosen as a deadlock victim runs again before the call fails.
constexpr int kDeadlockRetries = 5;

// Adds what a successful write did to the call's counts.
void count_written(Chunk *chunk, WriteKind kind, int count, uint64 written) {
    ApplyCounts *counts = chunk->call->counts;
    switch (kind) {
    case WriteInsertPlain:
    case WriteInsertNew: // the caller accounts for the keys that were not new
        counts->inserted += written;
        return;
    case WriteInsert:
        counts->inserted += written;
        break;
    case WriteUpdate:
        counts->updated += written;
        break;
    case WriteUpdateFirst: // the rest is not skipped yet: it is looked up next
        counts->updated += written;
        return;
    case WriteDelete:
        counts->deleted += written;
        break;
    }
    counts->skipped += count - static_cast<int64>(written);
}

} // namespace

bool is_retryable_deadlock(int sqlstate) {
    return sqlstate == ERRCODE_T_R_DEADLOCK_DETECTED && !IsolationUsesXactSnapshot();
}

bool is_transaction_level_error(int sqlstate) {
    const char *state = unpack_sql_state(sqlstate);
    return strncmp(state, "40", 2) == 0 || strncmp(state, "53", 2) == 0 ||
           strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0 ||
           strncmp(state, "XX", 2) == 0;
}

void write_records(Chunk *chunk, WriteKind kind, const int *records, int count) {
    if (count == 0)
        return;
    uint64 written = 0;
    ErrorData *error = nullptr;
    for (int attempt = 1; attempt <= kDeadlockRetries; attempt++) {
        error = try_in_subtransaction([&] { written = execute_write(chunk, kind, records, count); },
                                      true);
        if (!error || !is_retryable_deadlock(error->sqlerrcode))
            break;
        if (attempt == kDeadlockRetries)
            ReThrowError(error);
        FreeErrorData(error);
        CHECK_FOR_INTERRUPTS();
    }
    if (!error) {
        count_written(chunk, kind, count, written);
        return;
    }
    if (count == 1) {
        fail_chunk_record(chunk, records[0], nullptr, error);
        return;
    }
    FreeErrorData(error);
    write_records(chunk, kind, records, count / 2);
    write_records(chunk, kind, records + count / 2, count - count / 2);
}

} // namespace sequin
