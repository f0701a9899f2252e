// Reading a target table's description: see target_table.hpp.
#include "mapping/target_table.hpp"
#include "pg/error_boundary.hpp"

extern "C" {
#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
}

namespace sequin {

// Reads the target table's columns and unique indexes. Server calls, guarded.
TargetTable describe_target(Oid relid) {
    TargetTable table;
    struct RawColumn {
        NameData name;
        AttrNumber attnum;
        Oid type_oid;
        int32 typmod;
        Oid collation;
        bool generated, identity_always;
    };
    struct RawIndex {
        Oid oid;
        bool primary, usable, deferrable;
        int nkeys;
        AttrNumber keys[INDEX_MAX_KEYS];
        Oid opfamilies[INDEX_MAX_KEYS];
        Oid opcintypes[INDEX_MAX_KEYS];
        Oid collations[INDEX_MAX_KEYS];
    };
    // Raw copies first (no C++ objects while server code may longjmp), then C++ data.
    int ncolumns = 0, nindexes = 0;
    RawColumn *raw_columns = nullptr;
    RawIndex *raw_indexes = nullptr;
    char *qualified = nullptr, *display = nullptr;
    char relkind = 0, relpersistence = 0;
    bool has_children = false;
    pg_guard([&] {
        Relation rel = try_relation_open(relid, AccessShareLock);
        if (!rel)
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                            errmsg("target table with OID %u does not exist", relid),
                            errhint("The table was dropped, or replaced by a new one (as Citus's "
                                    "undistribute_table and alter_distributed_table do): point the "
                                    "mapping at the table again with sequin.create_mapping.")));
        relkind = rel->rd_rel->relkind;
        has_children = relkind == RELKIND_RELATION && rel->rd_rel->relhassubclass &&
                       find_inheritance_children(relid, NoLock) != NIL;
        relpersistence = rel->rd_rel->relpersistence;
        const char *nspname = get_namespace_name(RelationGetNamespace(rel));
        qualified = quote_qualified_identifier(nspname, RelationGetRelationName(rel));
        display = qualified;
        TupleDesc desc = RelationGetDescr(rel);
        raw_columns = static_cast<RawColumn *>(palloc0(sizeof(RawColumn) * (desc->natts + 1)));
        for (int i = 0; i < desc->natts; i++) {
            Form_pg_attribute att = TupleDescAttr(desc, i);
            if (att->attisdropped)
                continue;
            RawColumn &c = raw_columns[ncolumns++];
            c.name = att->attname;
            c.attnum = att->attnum;
            c.type_oid = att->atttypid;
            c.typmod = att->atttypmod;
            c.collation = att->attcollation;
            c.generated = att->attgenerated != '\0';
            c.identity_always = att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;
        }
        List *index_oids = RelationGetIndexList(rel);
        raw_indexes =
            static_cast<RawIndex *>(palloc0(sizeof(RawIndex) * (list_length(index_oids) + 1)));
        ListCell *cell;
        foreach (cell, index_oids) {
            HeapTuple tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(cell)));
            if (!HeapTupleIsValid(tuple))
                continue;
            Form_pg_index index = (Form_pg_index)GETSTRUCT(tuple);
            if (index->indisunique) {
                RawIndex &r = raw_indexes[nindexes++];
                r.oid = index->indexrelid;
                r.primary = index->indisprimary;
                r.deferrable = !index->indimmediate;
                r.usable = index->indisvalid &&
                           heap_attisnull(tuple, Anum_pg_index_indexprs, nullptr) &&
                           heap_attisnull(tuple, Anum_pg_index_indpred, nullptr);
                r.nkeys = index->indnkeyatts;
                bool isnull;
                oidvector *opclasses = reinterpret_cast<oidvector *>(DatumGetPointer(
                    SysCacheGetAttr(INDEXRELID, tuple, Anum_pg_index_indclass, &isnull)));
                oidvector *collations = reinterpret_cast<oidvector *>(DatumGetPointer(
                    SysCacheGetAttr(INDEXRELID, tuple, Anum_pg_index_indcollation, &isnull)));
                for (int k = 0; k < r.nkeys; k++) {
                    r.keys[k] = index->indkey.values[k];
                    r.opfamilies[k] = get_opclass_family(opclasses->values[k]);
                    r.opcintypes[k] = get_opclass_input_type(opclasses->values[k]);
                    r.collations[k] = collations->values[k];
                }
            }
            ReleaseSysCache(tuple);
        }
        relation_close(rel, AccessShareLock);
    });
    table.qualified_name = qualified;
    table.display_name = display;
    table.relkind = relkind;
    table.relpersistence = relpersistence;
    table.has_inheritance_children = has_children;
    for (int i = 0; i < ncolumns; i++) {
        const RawColumn &c = raw_columns[i];
        table.columns.push_back({NameStr(c.name), c.attnum, c.type_oid, c.typmod, c.collation,
                                 c.generated, c.identity_always});
    }
    for (int i = 0; i < nindexes; i++) {
        const RawIndex &r = raw_indexes[i];
        TargetIndex index{r.oid, r.primary, r.deferrable, {}, {}, {}, {}};
        if (r.usable) {
            index.keys.assign(r.keys, r.keys + r.nkeys);
            index.opfamilies.assign(r.opfamilies, r.opfamilies + r.nkeys);
            index.opcintypes.assign(r.opcintypes, r.opcintypes + r.nkeys);
            index.collations.assign(r.collations, r.collations + r.nkeys);
        }
        table.unique_indexes.push_back(index);
    }
    return table;
}

} // namespace sequin
