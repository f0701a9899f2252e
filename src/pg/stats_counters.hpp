// Per-collection counters behind the sequin.stats view. Each backend adds to its own row
// (collection, backend slot), so concurrent writers never wait on a shared counter row.
// C-shaped server code.
#pragma once

#include "pg/record_counts.hpp"

namespace sequin {

// Defines sequin.track_stats; called from _PG_init.
void define_stats_settings();

// Adds delta to the counters of one collection (mapped: it has a mapping), as the extension
// owner. SPI connected.
// Does nothing when sequin.track_stats is off or the schema predates the counters.
void stats_add(const char *collection, int length, bool mapped, const ApplyCounts &delta,
               Oid owner);

} // namespace sequin
