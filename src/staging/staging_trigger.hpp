// The staging path: applying rows inserted into sequin.staging (or a user's table with a
// jsonb column "record"). The SQL-callable functions are in entry/staging_functions.cpp.
// C-shaped server code.
#pragma once

extern "C" {
#include "postgres.h"
#include "commands/trigger.h"
}

#include "pg/record_counts.hpp"

namespace sequin {

// AFTER INSERT ... FOR EACH STATEMENT ... REFERENCING NEW TABLE (staging_trigger.cpp).
void apply_transition_table(TriggerData *trigger);

// sequin.apply_staging (apply_staging.cpp): applies up to max_rows (-1: all) waiting rows,
// failed ones too with retry_failed.
void drain_staging(int64 max_rows, bool retry_failed, ApplyCounts *total);

// BEFORE INSERT row trigger of immediate mode (staging_capture.cpp): takes the record and
// returns NULL to skip the row's write, or returns the row to store it as it is.
HeapTuple capture_staged_row(TriggerData *trigger);

// AFTER INSERT statement trigger of immediate mode: applies what is left captured.
void flush_captured_records();

} // namespace sequin
