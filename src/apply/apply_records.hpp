// The applier: applies a batch of Sequin records (any mix of collections) with set-based
// prepared statements. C-shaped server code: it raises with ereport, and the only C++ it
// calls is behind pin_mapping(), which raises its own errors the same way.
#pragma once

extern "C" {
#include "postgres.h"
#include "utils/jsonb.h"
}

#include "pg/record_counts.hpp"

namespace sequin {

// Atomic: the first bad record raises an error naming it (sequin_upsert).
// Isolate: a bad record is handed to the failure callback and the others still apply (staging).
enum class ApplyMode { Atomic, Isolate };

struct InputRecord {
    JsonbContainer *record; // a record object, or any JSON value (then it fails cleanly)
    int64 position;         // shown in messages after label: "record 3", "staging row 7"
    const char *label;      // what position counts
};

// Called in Isolate mode for each failed record (index: its place in the records given to
// apply_records); message already names the record (label and position) and column.
typedef void (*FailureCallback)(void *arg, int index, int sqlstate, const char *message);

// Applies count records in order. SPI must not be connected (the applier connects).
void apply_records(const InputRecord *records, int count, ApplyMode mode,
                   FailureCallback on_failure, void *callback_arg, ApplyCounts *counts);

} // namespace sequin
