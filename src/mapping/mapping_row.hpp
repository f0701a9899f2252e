// A row of sequin.mappings as plain C++ data, and the one reader of such a row: used by the
// mapping cache (by collection_id) and by the validation trigger (the row being written).
// C++ zone: throws PgError; every server call inside is guarded.
#pragma once

extern "C" {
#include "postgres.h"
#include "access/htup.h"
#include "access/tupdesc.h"
}

#include <optional>
#include <string>
#include <vector>

namespace sequin {

struct MappingRow {
    std::string collection_id;
    Oid target_table = InvalidOid;
    std::string columns_json;
    std::optional<std::vector<std::string>> conflict_columns;
    std::vector<std::string> keep_on_conflict;
    std::optional<std::string> order_column;
    std::string on_delete = "delete";
    std::optional<std::vector<std::string>> required;
    // A child mapping (SPEC "Child collections"): its parent's collection_id, where the list
    // sits in the parent's record (a source, as JSON text), and the columns holding the
    // parent's key. All absent for a top-level mapping.
    std::optional<std::string> parent;
    std::optional<std::string> list_source_json;
    std::optional<std::vector<std::string>> parent_key_columns;
    bool catalog_has_children = false; // the catalog has those columns (0.5.0 and later)
};

// The mapping row in tuple (a tuple of sequin.mappings, described by desc).
MappingRow mapping_row_of(HeapTuple tuple, TupleDesc desc);

// The row of collection_id, read through SPI (connected by the caller). Throws PgError
// 42704 when the collection has no mapping.
MappingRow fetch_mapping_row(const std::string &collection_id);

// The collection_ids of the child mappings that name collection_id as parent, in bytewise
// order (the order their rows are written in).
std::vector<std::string> fetch_child_collections(const std::string &collection_id);

} // namespace sequin
