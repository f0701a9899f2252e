// Per-collection counters behind the sequin.stats view. Each backend adds to its own row
// (collection, backend slot), so concurrent writers never wait on a shared counter row.
#pragma once

#include "batch_applier.hpp"

extern "C" {
void sequin_define_stats_settings(void);
}

namespace sequin {

// Adds delta to the counters of one collection (as the extension owner). SPI connected.
// Does nothing when sequin.track_stats is off or the schema predates the counters.
void stats_add(const char *collection, int length, const ApplyCounts &delta, Oid owner);

} // namespace sequin
