// Run as owner: the extension's own tables (tombstones, counters, the staging queue) are read and
// written with their owner's rights: callers need no grants on them and cannot read them directly.
#pragma once

extern "C" {
#include "postgres.h"
#include "executor/spi.h"
}

namespace sequin {

// The current role's name, as a Datum of type name.
Datum current_role_name();

// Runs fn as role the way PostgreSQL runs maintenance commands as a table's owner: as a
// SECURITY_RESTRICTED_OPERATION, with search_path pg_catalog, pg_temp, in a GUC nest level of
// its own, so that neither role's objects, settings or temporary tables act for the other.
// Switching needs no privilege. An error on the way is cleaned up by the (sub)transaction
// abort, which restores the identity and the settings. fn must not raise through live C++
// objects (C-shaped code).
void run_as_role(Oid role, void (*fn)(void *arg), void *arg);

// OID of the relation sequin.<name>, or InvalidOid when it does not exist.
Oid sequin_relation(const char *name);

// Owner of sequin.<name>; an error when it does not exist.
Oid sequin_relation_owner(const char *name);

// SPI_execute_plan as user, then back to the caller's identity (an error on the way is
// cleaned up by the (sub)transaction abort, which restores the identity too).
int spi_execute_as(Oid user, SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
                   long count);

} // namespace sequin
