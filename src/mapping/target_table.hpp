// What the mapping compiler needs to know of a target table: its columns and unique
// indexes, copied out of the relcache. C++ zone: server reads are guarded.
#pragma once

extern "C" {
#include "postgres.h"
#include "access/attnum.h"
}

#include <string>
#include <vector>

namespace sequin {

struct TargetColumn {
    std::string name;
    AttrNumber attnum;
    Oid type_oid;
    int32 typmod;
    Oid collation;
    bool generated;
    bool identity_always;
};

struct TargetIndex {
    Oid oid;
    bool primary;
    bool deferrable;
    std::vector<AttrNumber> keys; // empty when the index cannot arbitrate ON CONFLICT
    // Per key column: its operator class's family and input type, and its collation: what
    // makes two keys equal for this index.
    std::vector<Oid> opfamilies;
    std::vector<Oid> opcintypes;
    std::vector<Oid> collations;
};

struct TargetTable {
    std::string qualified_name; // quoted
    std::string display_name;
    char relkind;
    char relpersistence;
    bool has_inheritance_children; // a plain table others INHERIT from
    std::vector<TargetColumn> columns;
    std::vector<TargetIndex> unique_indexes;
};

// Reads relid's columns and unique indexes. Throws PgError 42P01 when it does not exist.
TargetTable describe_target(Oid relid);

} // namespace sequin
