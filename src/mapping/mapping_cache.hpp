// Per-backend cache of compiled mappings, invalidated when sequin.mappings or a target
// table changes (relcache callback; the catalog's trigger sends a relcache invalidation).
#pragma once

#include "mapping/compiled_mapping.hpp"

namespace sequin {

// The compiled mapping of collection_id, compiled on first use or after an invalidation.
// SPI must be connected. C++ zone: throws PgError (42704 for an unknown collection).
CompiledMapping *mapping_for(const std::string &collection_id);

// For C-shaped callers (the applier): mapping_for, raising its error with ereport. The
// mapping stays valid until unpin_mapping or the end of the transaction, even if it is
// invalidated meanwhile (a nested call then compiles a new one).
CompiledMapping *pin_mapping(const char *collection_id, int length);
void unpin_mapping(CompiledMapping *mapping);

void mapping_cache_register_callbacks();

} // namespace sequin
