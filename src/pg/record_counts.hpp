// What applying records did, per outcome: returned by calls and added to sequin.stats.
#pragma once

extern "C" {
#include "postgres.h"
}

namespace sequin {

struct ApplyCounts {
    int64 inserted;
    int64 updated;
    int64 deleted;
    int64 skipped;
    int64 failed;
};

} // namespace sequin
