// The counts row: see counts_result.hpp.
#include "entry/counts_result.hpp"

extern "C" {
#include "funcapi.h"
#include "utils/tuplestore.h"
}

namespace sequin {

void return_counts(FunctionCallInfo fcinfo, const ApplyCounts &counts) {
    InitMaterializedSRF(fcinfo, 0);
    ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    Datum values[5] = {Int64GetDatum(counts.inserted), Int64GetDatum(counts.updated),
                       Int64GetDatum(counts.deleted), Int64GetDatum(counts.skipped),
                       Int64GetDatum(counts.failed)};
    bool nulls[5] = {false, false, false, false, false};
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

} // namespace sequin
