// The column types of a collection's tombstones, checked once per compiled mapping:
// tombstones of other types are refused, those from before 0.3.0 are converted.
#include "apply/tombstone_table.hpp"
#include "apply/tombstones.hpp"
#include "pg/fixed_settings.hpp"
#include "pg/kept_plan.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
}

namespace sequin {

namespace {

// Names the mapping and column in errors raised while reading a tombstone's text.
struct ReadingTombstone {
    const CompiledMapping *mapping;
    const char *column;
};

void reading_tombstone_context(void *arg) {
    const ReadingTombstone *reading = static_cast<const ReadingTombstone *>(arg);
    errcontext("reading a tombstone of mapping \"%s\", column \"%s\" (sequin.prune_tombstones "
               "or a DELETE on sequin.tombstones removes it)",
               reading->mapping->row.collection_id.c_str(), reading->column);
}

// Tombstones of another type than the column's now (a key or order column was retyped):
// refused, naming the mapping and the column. Converting them would run casts.
void refuse_other_types(CompiledMapping *mapping, const PlanRun &as_owner) {
    static SPIPlanPtr plan = nullptr;
    static const Oid types[4] = {TEXTOID, REGTYPEARRAYOID, REGTYPEOID, TEXTOID};
    kept_plan(&plan,
              "SELECT key_types, version_type, key_signature FROM sequin.tombstones "
              "WHERE collection_id OPERATOR(pg_catalog.=) $1 AND key_types IS NOT NULL "
              "AND (key_types OPERATOR(pg_catalog.<>) $2 "
              "OR version_type OPERATOR(pg_catalog.<>) $3 "
              "OR key_signature OPERATOR(pg_catalog.<>) $4 COLLATE \"C\") LIMIT 1",
              4, types);
    Datum args[4] = {CStringGetTextDatum(mapping->row.collection_id.c_str()),
                     key_types_array(*mapping),
                     ObjectIdGetDatum(mapping->tombstone_version.base_type),
                     CStringGetTextDatum(mapping->key_signature.c_str())};
    if (run_kept_plan(plan, "find tombstones of other types", args, nullptr, as_owner) == 0)
        return;
    const char *collection = mapping->row.collection_id.c_str();
    bool isnull;
    HeapTuple tuple = SPI_tuptable->vals[0];
    TupleDesc desc = SPI_tuptable->tupdesc;
    Datum *stored;
    bool *nulls;
    int count;
    deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tuple, desc, 1, &isnull)), REGTYPEOID,
                      sizeof(Oid), true, TYPALIGN_INT, &stored, &nulls, &count);
    const MappedColumn *column = nullptr;
    Oid was = InvalidOid, now = InvalidOid;
    if (count == static_cast<int>(mapping->key_columns.size())) {
        for (int k = 0; k < count && !column; k++)
            if (DatumGetObjectId(stored[k]) != mapping->tombstone_key[k].base_type) {
                column = &mapping->columns[mapping->key_columns[k]];
                was = DatumGetObjectId(stored[k]);
                now = mapping->tombstone_key[k].base_type;
            }
        Oid version = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
        if (!column && version != mapping->tombstone_version.base_type) {
            column = &mapping->columns[mapping->order_column];
            was = version;
            now = mapping->tombstone_version.base_type;
        }
    }
    const char *hint = "Delete them (DELETE FROM sequin.tombstones WHERE collection_id = '%s', as "
                       "the extension's owner) or prune them with sequin.prune_tombstones(); they "
                       "are not converted, as that would run casts with the owner's rights.";
    if (column)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("mapping \"%s\": column \"%s\" is of type %s now, but the "
                               "collection's tombstones hold its values as %s",
                               collection, column->name.c_str(), format_type_be(now),
                               format_type_extended(was, -1, FORMAT_TYPE_ALLOW_INVALID)),
                        errhint(hint, collection)));
    char *signature = SPI_getvalue(tuple, desc, 3);
    ereport(ERROR,
            (errcode(ERRCODE_DATATYPE_MISMATCH),
             errmsg("mapping \"%s\": its key is now (%s), but the collection's tombstones "
                    "were written for the key (%s)",
                    collection, mapping->key_signature.c_str(), signature ? signature : "unknown"),
             errhint(hint, collection)));
}

// Tombstones from before 0.3.0 (text written under the session's settings, no hash): read
// with the column types and the fixed settings (the caller's rights), written back in the
// fixed form with their hash (the owner's, plain values).
void adopt_old_tombstones(CompiledMapping *mapping, const PlanRun &as_owner) {
    static SPIPlanPtr select_plan = nullptr, update_plan = nullptr;
    static const Oid select_types[1] = {TEXTOID};
    kept_plan(&select_plan,
              "SELECT ctid, key, version FROM sequin.tombstones "
              "WHERE collection_id OPERATOR(pg_catalog.=) $1 AND key_types IS NULL",
              1, select_types);
    Datum collection = CStringGetTextDatum(mapping->row.collection_id.c_str());
    uint64 rows = run_kept_plan(select_plan, "find tombstones from before 0.3.0", &collection,
                                nullptr, as_owner);
    if (rows == 0)
        return;
    SPITupleTable *old_rows = SPI_tuptable;
    static const Oid update_types[7] = {TIDOID,          TEXTARRAYOID, TEXTOID, INT8OID,
                                        REGTYPEARRAYOID, REGTYPEOID,   TEXTOID};
    kept_plan(&update_plan,
              "UPDATE sequin.tombstones SET key = $2, version = $3, key_hash = $4, "
              "key_types = $5, version_type = $6, key_signature = $7 "
              "WHERE ctid OPERATOR(pg_catalog.=) $1",
              7, update_types);
    int key_count = static_cast<int>(mapping->key_columns.size());
    Datum *texts = static_cast<Datum *>(palloc(sizeof(Datum) * (key_count + 1)));
    ReadingTombstone reading = {mapping, nullptr};
    ErrorContextCallback callback = {error_context_stack, reading_tombstone_context, &reading};
    error_context_stack = &callback;
    for (uint64 row = 0; row < rows; row++) {
        HeapTuple tuple = old_rows->vals[row];
        bool isnull, key_null, version_null;
        Datum tid = SPI_getbinval(tuple, old_rows->tupdesc, 1, &isnull);
        Datum key = SPI_getbinval(tuple, old_rows->tupdesc, 2, &key_null);
        Datum version = SPI_getbinval(tuple, old_rows->tupdesc, 3, &version_null);
        Datum *stored;
        bool *nulls;
        int count = 0;
        if (!key_null)
            deconstruct_array(DatumGetArrayTypeP(key), TEXTOID, -1, false, TYPALIGN_INT, &stored,
                              &nulls, &count);
        if (count != key_count)
            continue; // not a key of this mapping: never matches, pruned with the rest
        int settings = enter_fixed_settings();
        uint32 hash = 0;
        for (int k = 0; k < key_count; k++) {
            reading.column = mapping->columns[mapping->key_columns[k]].name.c_str();
            Datum value = read_value(mapping->tombstone_key[k], stored[k]);
            hash = hash_combine(hash, key_column_hash(mapping, k, value));
            texts[k] =
                CStringGetTextDatum(OutputFunctionCall(&mapping->tombstone_key[k].output, value));
        }
        char version_nulls[8] = "       ";
        Datum version_text = (Datum)0;
        if (version_null) {
            version_nulls[2] = 'n';
        } else {
            reading.column = mapping->columns[mapping->order_column].name.c_str();
            Datum value = read_value(mapping->tombstone_version, version);
            version_text =
                CStringGetTextDatum(OutputFunctionCall(&mapping->tombstone_version.output, value));
        }
        leave_fixed_settings(settings);
        Datum args[7] = {tid,
                         text_array(texts, key_count),
                         version_text,
                         Int64GetDatum(static_cast<int64>(hash)),
                         key_types_array(*mapping),
                         ObjectIdGetDatum(mapping->tombstone_version.base_type),
                         CStringGetTextDatum(mapping->key_signature.c_str())};
        run_kept_plan(update_plan, "convert a tombstone from before 0.3.0", args, version_nulls,
                      as_owner);
    }
    error_context_stack = callback.previous;
    SPI_freetuptable(old_rows);
}

} // namespace

void check_tombstone_types(CompiledMapping *mapping, Oid owner) {
    if (mapping->tombstone_key.empty())
        return;
    (void)tombstones_index();
    PlanRun as_owner;
    as_owner.as_user = owner;
    refuse_other_types(mapping, as_owner);
    adopt_old_tombstones(mapping, as_owner);
}

} // namespace sequin
