// The result row of the functions that apply records.
#pragma once

extern "C" {
#include "postgres.h"
#include "fmgr.h"
}

#include "pg/record_counts.hpp"

namespace sequin {

// Returns counts as the one row of a function returning TABLE(inserted, updated, deleted,
// skipped [, failed]): the result's own columns decide whether failed is included.
void return_counts(FunctionCallInfo fcinfo, const ApplyCounts &counts);

} // namespace sequin
