// Run as owner: the extension's own tables (tombstones, counters, the staging queue) are read and
// written with their owner's rights: callers need no grants on them and cannot read them directly.
#pragma once

extern "C" {
#include "postgres.h"
#include "executor/spi.h"
}

namespace sequin {

// OID of the relation sequin.<name>, or InvalidOid when it does not exist.
Oid sequin_relation(const char *name);

// Owner of sequin.<name>; an error when it does not exist.
Oid sequin_relation_owner(const char *name);

// SPI_execute_plan as user, then back to the caller's identity (an error on the way is
// cleaned up by the (sub)transaction abort, which restores the identity too).
int spi_execute_as(Oid user, SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
                   long count);

} // namespace sequin
