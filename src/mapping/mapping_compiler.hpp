// The mapping compiler: turns one row of sequin.mappings into a CompiledMapping, validated
// against the target table, with the column types resolved and the statements built.
// C++ zone: throws PgError; every server call inside is guarded.
#pragma once

#include <memory>

#include "mapping/compiled_mapping.hpp"

namespace sequin {

// Compiles and validates row. With deferred_checks (a restore: check_function_bodies off),
// checks that need the target's indexes are left for the first upsert.
// With prepare, the statements are prepared and kept (SPI must be connected).
// A child mapping is checked against its parent's mapping (compiled without its own parent
// for that) unless resolve_parent is false.
std::unique_ptr<CompiledMapping> compile_mapping(const MappingRow &row, bool deferred_checks,
                                                 bool prepare, bool resolve_parent = true);

// The child mappings of row (a mapping being changed) checked against it: its key, types and
// target must still be theirs. Throws PgError naming the child's problem.
void check_child_mappings(const MappingRow &row);

} // namespace sequin
