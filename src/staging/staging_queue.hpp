// The queue sequin.staging: sequin.apply_mode, and applying a slice of its rows so that no
// record is lost (applied rows leave, failed rows stay marked with their error).
// C-shaped server code.
#pragma once

#include "apply/apply_records.hpp"

namespace sequin {

// Defines sequin.apply_mode; called from _PG_init.
void define_staging_settings();

// sequin.apply_mode = deferred: staged rows wait for apply_staging().
bool apply_mode_is_deferred();

// Rows read from staging per apply: bounds memory for any size of COPY.
constexpr int kStagingSliceRows = 10000;

// Applies n staged records (ids in arrival order, records[i].position = ids[i]) in Isolate
// mode, deletes the applied rows and marks the failed ones (as owner, the queue's owner),
// and adds the counts to total. SPI connected.
void apply_staged_slice(Oid owner, InputRecord *records, int64 *ids, int n, ApplyCounts *total);

// Marks n staged rows failed with error, unapplied (as the queue's owner), and counts them.
void fail_staged_rows(Oid owner, const int64 *ids, int n, const char *error, ApplyCounts *total);

} // namespace sequin
