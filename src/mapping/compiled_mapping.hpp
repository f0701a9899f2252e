// A compiled mapping: one row of sequin.mappings validated against its target table, with
// the column types resolved and the statements the applier runs, prepared and kept.
// Built by the mapping compiler, kept by the mapping cache, read by the applier.
#pragma once

extern "C" {
#include "postgres.h"
#include "executor/spi.h"
#include "fmgr.h"
}

#include <array>
#include <string>
#include <vector>

#include "mapping/citus_table.hpp"
#include "mapping/mapping_row.hpp"
#include "mapping/mapping_source.hpp"
#include "pg/json_path.hpp"
#include "pg/value_converter.hpp"

namespace sequin {

enum class OnDelete { Delete, Upsert, Ignore };

struct MappedColumn {
    std::string name;
    AttrNumber attnum = 0;
    SourceKind kind = SourceKind::Path;
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
    int param_number = 0;       // $n of the column's array in the upsert statement
    // Citus: the column's value in a VALUES row: "$n" followed by this (a cast, for a value
    // that travels as text), or for "$now" this expression.
    std::string values_sql;
    int key_slot = -1; // its first path step in identity_keys or value_keys (a Path)
};

// A path kept with the strings its steps point into.
struct StoredPath {
    std::vector<std::string> keys;
    std::vector<PathStep> steps;
    JsonPath path{0, nullptr};
    void set(std::vector<std::string> new_keys, const std::vector<int> &array_indexes);
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

// How the target's unique index tells a key column's values apart: its operator family's
// comparison with the index's collation, and a hash consistent with that equality (for
// duplicates within a call and the tombstones' look-up key).
struct KeyEquality {
    FmgrInfo compare;
    Oid collation = InvalidOid;
    Oid equality_operator = InvalidOid;      // the statements' key condition
    RegProcedure equality_proc = InvalidOid; // for an index scan of the key
    AttrNumber index_column = 0;             // the column's place in the unique index
    FmgrInfo hash; // fn_oid is InvalidOid when no hash agrees with the equality
};

// A key or order column's values as tombstone text: the base type's output and input
// functions, run under fixed settings (pg/fixed_settings.hpp).
struct TombstoneColumn {
    Oid base_type = InvalidOid;
    int32 base_typmod = -1;
    FmgrInfo output;
    FmgrInfo input;
    Oid input_ioparam = InvalidOid;
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
    // Per key column (in key_columns' order): its unique index's equality, and its form in
    // tombstones; then the order column's. Empty when compiled with deferred checks.
    std::vector<KeyEquality> key_equality;
    Oid key_index = InvalidOid; // the unique index that backs the key
    std::vector<TombstoneColumn> tombstone_key;
    TombstoneColumn tombstone_version;
    bool tombstone_types_checked = false; // tombstones of other column types looked for
    // What a key means: per key column its name, base type, the unique index's operator
    // family and collation. Tombstones written under another meaning are refused.
    std::string key_signature;
    // Per key column: " COLLATE <the unique index's collation>" where the column has another
    // (the statements' key condition), else empty.
    std::vector<std::string> key_collate_sql;

    // The applier's statements (see statement_builder.cpp for their shapes).
    PreparedStatement lookup;       // stored versions of a batch's keys (caller's rights)
    PreparedStatement upsert;       // INSERT ... ON CONFLICT DO UPDATE (caller's rights)
    PreparedStatement insert_new;   // INSERT ... ON CONFLICT DO NOTHING, keys believed new
    PreparedStatement insert_plain; // INSERT without ON CONFLICT: tried first for new keys
    PreparedStatement remove;       // DELETE ... USING unnest (caller's rights)
    PreparedStatement tomb_insert;  // record tombstones (extension owner; apply/tombstones)
    // MERGE of a looked-up chunk, with and without deletes (caller's rights). Prepared at
    // first use: a target MERGE cannot write (rules, say) keeps the statements above.
    PreparedStatement merge_write;
    PreparedStatement merge_upserts;
    bool merge_unusable = false; // preparing it failed, or a Citus target
    // A Citus target (mapping/citus_table.hpp): its statements are planned with their
    // parameters' values, and upserts count what they wrote from RETURNING.
    CitusKind citus = CitusKind::None;
    int distribution_key = -1; // Distributed: index into key_columns of its distribution column
    // Citus: the upsert as INSERT ... VALUES (one row per record) ... ON CONFLICT, which Citus
    // sends to the rows' shard as it is: its head up to VALUES, and what follows the rows.
    std::string values_head, values_tail;

    PreparedStatement shard_of; // Citus: the shards of distribution column values

    // Child collections (SPEC "Child collections: lists inside a record").
    std::vector<std::string> children; // collection_ids of the mappings naming this one parent
    bool is_child = false;
    StoredPath list_path;     // child: the list, from the parent's root
    StoredPath has_more_path; // child: "has_more" in the object that holds the list's last key
    std::vector<int> parent_key_columns; // child: indexes into columns, in the parent key's order
    bool key_from_element = true;        // every key column is read from the record (element)
    Oid parent_target = InvalidOid;      // child: the parent's table (a change recompiles it)
    bool partitioned = false;            // the target is a partitioned table
    // Child: the rows of some parents (parent key arrays) whose keys are not among the given
    // keys (child key arrays), deleted; RETURNING their keys when this mapping has children.
    PreparedStatement remove_unlisted;
    // Child: its elements as updates of stored rows, RETURNING the record numbers it updated.
    PreparedStatement update_listed;

    std::array<PreparedStatement *, 11> statements() {
        return {&lookup,   &upsert,          &insert_new,   &insert_plain,
                &remove,   &tomb_insert,     &merge_write,  &merge_upserts,
                &shard_of, &remove_unlisted, &update_listed};
    }

    // The target's size when the statements were planned (a local heap table): plans made
    // while it was empty, say, would scan it whole once it has grown; the mapping is compiled
    // anew when the table has grown well past it (mapping_cache.cpp).
    bool tracks_size = false;
    BlockNumber planned_blocks = 0;

    MemoryContext context = nullptr; // value types, FmgrInfo caches
    bool stale = false;              // the catalog or the target changed: recompile
    int pins = 0;                    // calls using it (mapping_cache.hpp)

    CompiledMapping() = default;
    CompiledMapping(const CompiledMapping &) = delete;
    CompiledMapping &operator=(const CompiledMapping &) = delete;
    ~CompiledMapping();
};

} // namespace sequin
