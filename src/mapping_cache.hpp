// Per-backend cache of compiled mappings, invalidated when sequin.mappings or a target
// table changes (relcache callback; the catalog's trigger sends a relcache invalidation).
#pragma once

#include "mapping_compiler.hpp"

namespace sequin {

// Reads a mapping row through SPI (connected by the caller). Throws PgError 42704 when the
// collection has no mapping.
MappingRow read_mapping_row(const std::string &collection_id);

// The compiled mapping of collection_id, compiled on first use or after an invalidation.
// SPI must be connected. The pointer stays valid while pinned (mapping_pin/unpin).
CompiledMapping *mapping_for(const std::string &collection_id);

void mapping_cache_register_callbacks();

} // namespace sequin

extern "C" {
// C-shaped access for the applier: raises the error with ereport (no C++ frames live).
sequin::CompiledMapping *sequin_mapping_for(const char *collection_id, int length);
void sequin_mapping_unpin(sequin::CompiledMapping *mapping);
}
