// The mapping compiler: turns one row of sequin.mappings into a CompiledMapping — validated
// against the target table, with the column types resolved and the SQL the applier runs.
// C++ zone: throws PgError; every server call inside is guarded.
#pragma once

extern "C" {
#include "postgres.h"
#include "executor/spi.h"
#include "fmgr.h"
}

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "json_path.hpp"
#include "value_converter.hpp"

namespace sequin {

enum class OnDelete { Delete, Upsert, Ignore };

// A row of sequin.mappings, as plain C++ data.
struct MappingRow {
    std::string collection_id;
    Oid target_table = InvalidOid;
    std::string columns_json;
    std::optional<std::vector<std::string>> conflict_columns;
    std::vector<std::string> keep_on_conflict;
    std::optional<std::string> order_column;
    std::string on_delete = "delete";
    std::optional<std::vector<std::string>> required;
};

struct MappedColumn {
    std::string name;
    AttrNumber attnum = 0;
    bool is_now = false; // source "$now": filled by SQL, not from the record
    std::vector<std::string> path_keys;
    std::vector<PathStep> path_steps; // point into path_keys
    JsonPath path{0, nullptr};
    ValueType *type = nullptr; // in the mapping's memory context
    bool required = false;
    bool is_key = false;
    bool is_order = false;
    bool keep_on_conflict = false;
    bool param_as_text = false; // passed as text[] and cast in SQL (array columns)
    Oid param_element_type = InvalidOid;
    int param_number = 0; // $n of the column's array in the upsert statement
    int key_slot = -1;    // its first path step in identity_keys or value_keys
};

// One prepared statement with its text and parameter types, kept across calls.
struct PreparedStatement {
    std::string sql;
    std::vector<Oid> arg_types;
    std::vector<std::string> arg_descriptions; // for explain_mapping
    SPIPlanPtr plan = nullptr;
    // A join of the batch with the target, planned as a nested loop over the batch so that
    // target rows are visited (and locked) in the batch's key order, as INSERT does.
    bool join_in_batch_order = false;
};

struct CompiledMapping {
    MappingRow row;
    std::string target_name; // quoted, schema-qualified
    std::vector<MappedColumn> columns;
    std::vector<int> key_columns; // indexes into columns
    int order_column = -1;        // index into columns, or -1
    OnDelete on_delete = OnDelete::Delete;
    // The top-level record keys each conversion phase reads, in jsonb's key order: found
    // in one pass over a record. Phase 1 (identity): "deleted", key and order columns;
    // phase 2: the other columns.
    std::vector<PathStep> identity_keys;
    std::vector<PathStep> value_keys;
    int deleted_slot = -1;  // "deleted" in identity_keys
    FmgrInfo order_compare; // btree comparison of the order column's type
    Oid order_collation = InvalidOid;

    // The applier's statements (see mapping_compiler.cpp for their shapes).
    PreparedStatement lookup;       // stored versions of a batch's keys (caller's rights)
    PreparedStatement upsert;       // INSERT ... ON CONFLICT DO UPDATE (caller's rights)
    PreparedStatement update_first; // UPDATE ... FROM the batch, RETURNING what it updated
    PreparedStatement insert_new;   // INSERT ... ON CONFLICT DO NOTHING, keys believed new
    PreparedStatement insert_plain; // INSERT without ON CONFLICT: tried first for new keys
    PreparedStatement remove;       // DELETE ... USING unnest (caller's rights)
    PreparedStatement tomb_any;     // does the collection have tombstones at all (extension owner)
    PreparedStatement tomb_lookup;  // tombstones newer than a batch (extension owner)
    PreparedStatement tomb_upsert;  // record tombstones (extension owner)

    // What the last chunk's keys were, which decides how the next chunk is applied:
    // mostly new (insert first), mostly stored with older versions (update first), or
    // anything else (look up first). See batch_applier.cpp.
    enum class Expect { Mixed, NewKeys, StoredKeys } expect = Expect::Mixed;

    MemoryContext context = nullptr; // value types, FmgrInfo caches
    bool stale = false;
    int pins = 0;

    ~CompiledMapping();
};

// Compiles and validates row. With deferred_checks (a restore: check_function_bodies off),
// checks that need the target's indexes are left for the first upsert.
// With prepare, the statements are prepared and kept (SPI must be connected).
std::unique_ptr<CompiledMapping> compile_mapping(const MappingRow &row, bool deferred_checks,
                                                 bool prepare);

} // namespace sequin
