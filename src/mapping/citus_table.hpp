// Whether a target table is a Citus table, and how its rows are placed: read from Citus's
// catalog pg_dist_partition when Citus is installed. C++ zone: server reads are guarded.
#pragma once

extern "C" {
#include "postgres.h"
#include "access/attnum.h"
}

namespace sequin {

enum class CitusKind {
    None,        // a plain table (or no Citus)
    Distributed, // hash-distributed by one column
    Reference,   // a copy on every node
    SingleNode   // all rows in one shard (a Citus local or single-shard table)
};

struct CitusTable {
    CitusKind kind = CitusKind::None;
    AttrNumber distribution_column = InvalidAttrNumber; // Distributed only
    char method = '\0';                                 // pg_dist_partition.partmethod
};

// Reads relid's row of pg_dist_partition (none when Citus is not installed).
CitusTable citus_table(Oid relid);

} // namespace sequin
