// Reading pg_dist_partition: see citus_table.hpp.
#include "mapping/citus_table.hpp"
#include "pg/error_boundary.hpp"

extern "C" {
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "nodes/primnodes.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
}

namespace sequin {

CitusTable citus_table(Oid relid) {
    CitusTable table;
    pg_guard([&] {
        Oid catalog = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
        Oid index =
            get_relname_relid("pg_dist_partition_logical_relid_index", PG_CATALOG_NAMESPACE);
        if (!OidIsValid(catalog) || !OidIsValid(index))
            return;
        Relation rel = table_open(catalog, AccessShareLock);
        TupleDesc desc = RelationGetDescr(rel);
        ScanKeyData key;
        ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
        SysScanDesc scan = systable_beginscan(rel, index, true, nullptr, 1, &key);
        HeapTuple tuple = systable_getnext(scan);
        if (HeapTupleIsValid(tuple)) {
            bool isnull;
            int method_at = -1, key_at = -1, model_at = -1;
            for (int i = 0; i < desc->natts; i++) {
                const char *name = NameStr(TupleDescAttr(desc, i)->attname);
                if (strcmp(name, "partmethod") == 0)
                    method_at = i + 1;
                else if (strcmp(name, "partkey") == 0)
                    key_at = i + 1;
                else if (strcmp(name, "repmodel") == 0)
                    model_at = i + 1;
            }
            if (method_at < 0 || key_at < 0 || model_at < 0)
                ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                                errmsg("pg_dist_partition has an unknown layout (a Citus "
                                       "version this extension does not know)")));
            table.method = DatumGetChar(heap_getattr(tuple, method_at, desc, &isnull));
            char model = DatumGetChar(heap_getattr(tuple, model_at, desc, &isnull));
            Datum partkey = heap_getattr(tuple, key_at, desc, &isnull);
            if (table.method == 'h' && !isnull) {
                Node *node = static_cast<Node *>(stringToNode(TextDatumGetCString(partkey)));
                if (node && IsA(node, Var)) {
                    table.kind = CitusKind::Distributed;
                    table.distribution_column = reinterpret_cast<Var *>(node)->varattno;
                }
            } else if (table.method == 'n') {
                table.kind = model == 't' ? CitusKind::Reference : CitusKind::SingleNode;
            }
        }
        systable_endscan(scan);
        table_close(rel, AccessShareLock);
    });
    return table;
}

} // namespace sequin
