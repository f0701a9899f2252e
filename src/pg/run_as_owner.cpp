// Running the extension's bookkeeping statements as the owner of its tables.
#include "pg/run_as_owner.hpp"

extern "C" {
#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
}

namespace sequin {

Oid sequin_relation(const char *name) {
    Oid nsp = get_namespace_oid("sequin", true);
    return OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
}

Oid sequin_relation_owner(const char *name) {
    HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(sequin_relation(name)));
    if (!HeapTupleIsValid(tuple))
        elog(ERROR, "sequin.%s is missing: is the extension sequin_upsert installed?", name);
    Oid owner = ((Form_pg_class)GETSTRUCT(tuple))->relowner;
    ReleaseSysCache(tuple);
    return owner;
}

int spi_execute_as(Oid user, SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
                   long count) {
    Oid saved_user;
    int saved_security;
    GetUserIdAndSecContext(&saved_user, &saved_security);
    SetUserIdAndSecContext(user, saved_security | SECURITY_LOCAL_USERID_CHANGE);
    int rc = SPI_execute_plan(plan, values, nulls, read_only, count);
    SetUserIdAndSecContext(saved_user, saved_security);
    return rc;
}

Datum current_role_name() {
    Name name = static_cast<Name>(palloc0(NAMEDATALEN));
    namestrcpy(name, GetUserNameFromId(GetUserId(), false));
    return NameGetDatum(name);
}

void run_as_role(Oid role, void (*fn)(void *arg), void *arg) {
    Oid saved_user;
    int saved_security;
    GetUserIdAndSecContext(&saved_user, &saved_security);
    SetUserIdAndSecContext(role, saved_security | SECURITY_LOCAL_USERID_CHANGE |
                                     SECURITY_RESTRICTED_OPERATION);
    int level = NewGUCNestLevel();
    (void)set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
                            GUC_ACTION_SAVE, true, 0, false);
    fn(arg);
    AtEOXact_GUC(false, level);
    SetUserIdAndSecContext(saved_user, saved_security);
}

} // namespace sequin
