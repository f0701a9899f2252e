// The statement builder: the SQL text and parameter types of every statement the applier
// runs for a compiled mapping, one array parameter per column (the batch travels as arrays,
// unnested in step). Every identifier is quoted; every value is a parameter.
// C++ zone: throws PgError; server calls are guarded.
#pragma once

#include "mapping/compiled_mapping.hpp"

namespace sequin {

// Fills the statements of m (columns, keys and order column already resolved).
void build_statements(CompiledMapping &m);

// The schema-qualified SQL name of a type, for casts.
std::string type_sql(Oid type_oid);

// The type with its modifier, for messages.
std::string type_display(Oid type_oid, int32 typmod);

// OPERATOR(schema.op) for an operator.
std::string operator_sql_of(Oid opr);

// OPERATOR(schema.op) for a type's default btree operator (TYPECACHE_EQ_OPR or
// TYPECACHE_LT_OPR). Throws 42883, naming column and what, when the type has none.
std::string operator_sql(Oid type_oid, int which, const std::string &column, const char *what);

} // namespace sequin
