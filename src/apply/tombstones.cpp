// Tombstones: see tombstones.hpp.
#include "apply/tombstones.hpp"
#include "apply/statement_params.hpp"
#include "pg/fixed_settings.hpp"
#include "pg/kept_plan.hpp"
#include "pg/run_as_owner.hpp"

extern "C" {
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
}

namespace sequin {

namespace {

// sequin.tombstones opened for a look-up, with the numbers of the columns read.
struct TombstoneTable {
    Relation rel;
    Oid index; // tombstones_lookup: (collection_id, key_hash)
    Snapshot snapshot;
    AttrNumber collection_id, key_hash, key, version, key_types, version_type, created_by,
        binds_all;
    Oid caller;
    bool caller_under_rls; // row-level security applies to the caller on the target
};

AttrNumber column_number(TupleDesc desc, const char *name) {
    for (int i = 0; i < desc->natts; i++)
        if (!TupleDescAttr(desc, i)->attisdropped &&
            strcmp(NameStr(TupleDescAttr(desc, i)->attname), name) == 0)
            return static_cast<AttrNumber>(i + 1);
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("sequin.tombstones has no column \"%s\": the extension's schema is "
                           "older than its library",
                           name),
                    errhint("Run ALTER EXTENSION sequin_upsert UPDATE.")));
    return InvalidAttrNumber;
}

// The tombstones' index (0.3.0): its absence means a schema older than this library.
Oid tombstones_index() {
    Oid index = sequin_relation("tombstones_lookup");
    if (!OidIsValid(index))
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("sequin.tombstones_lookup is missing: the extension's schema is "
                               "older than its library"),
                        errhint("Run ALTER EXTENSION sequin_upsert UPDATE.")));
    return index;
}

void open_tombstones(TombstoneTable *table, const CompiledMapping &mapping) {
    table->index = tombstones_index();
    table->rel = table_open(sequin_relation("tombstones"), AccessShareLock);
    TupleDesc desc = RelationGetDescr(table->rel);
    table->collection_id = column_number(desc, "collection_id");
    table->key_hash = column_number(desc, "key_hash");
    table->key = column_number(desc, "key");
    table->version = column_number(desc, "version");
    table->key_types = column_number(desc, "key_types");
    table->version_type = column_number(desc, "version_type");
    table->created_by = column_number(desc, "created_by");
    table->binds_all = column_number(desc, "binds_all");
    table->snapshot = RegisterSnapshot(GetTransactionSnapshot());
    table->caller = GetUserId();
    table->caller_under_rls =
        check_enable_rls(mapping.row.target_table, InvalidOid, true) == RLS_ENABLED;
}

void close_tombstones(TombstoneTable *table) {
    UnregisterSnapshot(table->snapshot);
    table_close(table->rel, AccessShareLock);
}

// Scan keys on collection_id (and key_hash unless with_hash is false).
int tombstone_scan_keys(const TombstoneTable &table, const CompiledMapping &mapping,
                        ScanKeyData *keys, bool with_hash, uint32 hash) {
    Oid collation =
        TupleDescAttr(RelationGetDescr(table.rel), table.collection_id - 1)->attcollation;
    ScanKeyEntryInitialize(&keys[0], 0, table.collection_id, BTEqualStrategyNumber, InvalidOid,
                           collation, F_TEXTEQ,
                           CStringGetTextDatum(mapping.row.collection_id.c_str()));
    if (!with_hash)
        return 1;
    ScanKeyInit(&keys[1], table.key_hash, BTEqualStrategyNumber, F_INT8EQ,
                Int64GetDatum(static_cast<int64>(hash)));
    return 2;
}

// Does the tombstone bind the caller? Under row-level security, only the caller's own do.
bool binds_caller(const TombstoneTable &table, HeapTuple tuple) {
    TupleDesc desc = RelationGetDescr(table.rel);
    bool isnull;
    Oid creator = DatumGetObjectId(heap_getattr(tuple, table.created_by, desc, &isnull));
    if (!isnull && creator == table.caller)
        return true;
    if (table.caller_under_rls)
        return false;
    Datum binds_all = heap_getattr(tuple, table.binds_all, desc, &isnull);
    return isnull || DatumGetBool(binds_all);
}

// A tombstone's text as a value of column's base type (under the fixed settings).
Datum read_value(TombstoneColumn &column, Datum stored) {
    return InputFunctionCall(&column.input, TextDatumGetCString(stored), column.input_ioparam,
                             column.base_typmod);
}

// Is the tombstone's key (text[]) equal to the record's key for the unique index?
bool key_matches(Chunk *chunk, const TombstoneTable &table, HeapTuple tuple, int record) {
    CompiledMapping *mapping = chunk->mapping;
    bool isnull;
    Datum stored = heap_getattr(tuple, table.key, RelationGetDescr(table.rel), &isnull);
    if (isnull)
        return false;
    Datum *texts;
    bool *nulls;
    int count;
    deconstruct_array(DatumGetArrayTypeP(stored), TEXTOID, -1, false, TYPALIGN_INT, &texts, &nulls,
                      &count);
    if (count != static_cast<int>(mapping->key_columns.size()))
        return false;
    const Datum *values = row_values(chunk, record);
    for (int k = 0; k < count; k++) {
        if (nulls[k])
            return false;
        KeyEquality &equality = mapping->key_equality[k];
        Datum value = read_value(mapping->tombstone_key[k], texts[k]);
        if (DatumGetInt32(FunctionCall2Coll(&equality.compare, equality.collation, value,
                                            values[mapping->key_columns[k]])) != 0)
            return false;
    }
    return true;
}

// The newest version among the tombstones of the record's key that bind the caller.
bool newest_tombstone(Chunk *chunk, const TombstoneTable &table, int record, Datum *newest) {
    CompiledMapping *mapping = chunk->mapping;
    ScanKeyData keys[2];
    int nkeys = tombstone_scan_keys(table, *mapping, keys, true, chunk->keys[record].hash);
    SysScanDesc scan =
        systable_beginscan(table.rel, table.index, true, table.snapshot, nkeys, keys);
    bool found = false;
    HeapTuple tuple;
    while (HeapTupleIsValid(tuple = systable_getnext(scan))) {
        if (!binds_caller(table, tuple) || !key_matches(chunk, table, tuple, record))
            continue;
        bool isnull;
        Datum stored = heap_getattr(tuple, table.version, RelationGetDescr(table.rel), &isnull);
        if (isnull)
            continue;
        Datum version = read_value(mapping->tombstone_version, stored);
        if (!found || DatumGetInt32(FunctionCall2Coll(
                          &mapping->order_compare, mapping->order_collation, version, *newest)) > 0)
            *newest = version;
        found = true;
    }
    systable_endscan(scan);
    return found;
}

// Is the record's version newer than newest (the record's NULL version is never newer)?
bool record_is_newer(Chunk *chunk, int record, Datum newest) {
    CompiledMapping *mapping = chunk->mapping;
    int order = mapping->order_column;
    if (row_nulls(chunk, record)[order])
        return false;
    return DatumGetInt32(FunctionCall2Coll(&mapping->order_compare, mapping->order_collation,
                                           row_values(chunk, record)[order], newest)) > 0;
}

Datum text_array(Datum *texts, int count) {
    return PointerGetDatum(construct_array(texts, count, TEXTOID, -1, false, TYPALIGN_INT));
}

Datum oid_array(const Oid *oids, int count, Oid element_type) {
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (count ? count : 1)));
    for (int i = 0; i < count; i++)
        elements[i] = ObjectIdGetDatum(oids[i]);
    return PointerGetDatum(
        construct_array(elements, count, element_type, sizeof(Oid), true, TYPALIGN_INT));
}

Datum key_types_array(const CompiledMapping &mapping) {
    int count = static_cast<int>(mapping.tombstone_key.size());
    Oid *types = static_cast<Oid *>(palloc(sizeof(Oid) * (count ? count : 1)));
    for (int k = 0; k < count; k++)
        types[k] = mapping.tombstone_key[k].base_type;
    return oid_array(types, count, REGTYPEOID);
}

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
    static const Oid types[3] = {TEXTOID, REGTYPEARRAYOID, REGTYPEOID};
    kept_plan(&plan,
              "SELECT key_types, version_type FROM sequin.tombstones "
              "WHERE collection_id OPERATOR(pg_catalog.=) $1 AND key_types IS NOT NULL "
              "AND (key_types OPERATOR(pg_catalog.<>) $2 "
              "OR version_type OPERATOR(pg_catalog.<>) $3) LIMIT 1",
              3, types);
    Datum args[3] = {CStringGetTextDatum(mapping->row.collection_id.c_str()),
                     key_types_array(*mapping),
                     ObjectIdGetDatum(mapping->tombstone_version.base_type)};
    if (run_kept_plan(plan, "find tombstones of other types", args, nullptr, as_owner) == 0)
        return;
    bool isnull;
    HeapTuple tuple = SPI_tuptable->vals[0];
    Datum *stored;
    bool *nulls;
    int count;
    deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull)),
                      REGTYPEOID, sizeof(Oid), true, TYPALIGN_INT, &stored, &nulls, &count);
    const MappedColumn *column = &mapping->columns[mapping->order_column];
    Oid was = DatumGetObjectId(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
    Oid now = mapping->tombstone_version.base_type;
    for (int k = 0; k < count && k < static_cast<int>(mapping->key_columns.size()); k++)
        if (DatumGetObjectId(stored[k]) != mapping->tombstone_key[k].base_type) {
            column = &mapping->columns[mapping->key_columns[k]];
            was = DatumGetObjectId(stored[k]);
            now = mapping->tombstone_key[k].base_type;
            break;
        }
    ereport(ERROR,
            (errcode(ERRCODE_DATATYPE_MISMATCH),
             errmsg("mapping \"%s\": column \"%s\" is of type %s now, but the collection's "
                    "tombstones hold its values as %s",
                    mapping->row.collection_id.c_str(), column->name.c_str(), format_type_be(now),
                    format_type_extended(was, -1, FORMAT_TYPE_ALLOW_INVALID)),
             errhint("Delete them (DELETE FROM sequin.tombstones WHERE collection_id = '%s', as "
                     "its owner) or prune them with sequin.prune_tombstones(); they are not "
                     "converted, as that would run casts with the owner's rights.",
                     mapping->row.collection_id.c_str())));
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
    static const Oid update_types[6] = {TIDOID,  TEXTARRAYOID,    TEXTOID,
                                        INT8OID, REGTYPEARRAYOID, REGTYPEOID};
    kept_plan(&update_plan,
              "UPDATE sequin.tombstones SET key = $2, version = $3, key_hash = $4, "
              "key_types = $5, version_type = $6 WHERE ctid OPERATOR(pg_catalog.=) $1",
              6, update_types);
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
        char version_nulls[7] = "      ";
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
        Datum args[6] = {tid,
                         text_array(texts, key_count),
                         version_text,
                         Int64GetDatum(static_cast<int64>(hash)),
                         key_types_array(*mapping),
                         ObjectIdGetDatum(mapping->tombstone_version.base_type)};
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

bool collection_has_tombstones(Chunk *chunk) {
    CompiledMapping *mapping = chunk->mapping;
    if (mapping->order_column < 0)
        return false;
    TombstoneTable table;
    open_tombstones(&table, *mapping);
    ScanKeyData keys[2];
    int nkeys = tombstone_scan_keys(table, *mapping, keys, false, 0);
    SysScanDesc scan =
        systable_beginscan(table.rel, table.index, true, table.snapshot, nkeys, keys);
    bool found = HeapTupleIsValid(systable_getnext(scan));
    systable_endscan(scan);
    close_tombstones(&table);
    return found;
}

namespace {

// Records of keys not stored: upserts (a late record for a deleted key), and deletes (a
// replayed delete, which then writes nothing).
bool is_unstored(const Chunk *chunk, int record) {
    return (chunk->state[record] == Upsert || chunk->state[record] == Delete) &&
           !chunk->stored[record];
}

} // namespace

void skip_tombstoned(Chunk *chunk, int *scratch) {
    int count = select_records(chunk, scratch, is_unstored);
    if (count == 0 || !collection_has_tombstones(chunk))
        return;
    TombstoneTable table;
    open_tombstones(&table, *chunk->mapping);
    int settings = enter_fixed_settings();
    for (int i = 0; i < count; i++) {
        int record = scratch[i];
        Datum newest;
        if (newest_tombstone(chunk, table, record, &newest) &&
            !record_is_newer(chunk, record, newest)) {
            chunk->state[record] = Done;
            chunk->call->counts->skipped++;
        }
    }
    leave_fixed_settings(settings);
    close_tombstones(&table);
}

void write_tombstones(Chunk *chunk, const int *records, int count, const bool *removed) {
    CompiledMapping *mapping = chunk->mapping;
    if (mapping->order_column < 0 || count == 0)
        return;
    int key_count = static_cast<int>(mapping->key_columns.size());
    Datum *keys = static_cast<Datum *>(palloc(sizeof(Datum) * count * key_count));
    Datum *versions = static_cast<Datum *>(palloc(sizeof(Datum) * count));
    Datum *hashes = static_cast<Datum *>(palloc(sizeof(Datum) * count));
    Datum *binds_all = static_cast<Datum *>(palloc(sizeof(Datum) * count));
    int rows = 0;
    TombstoneTable table;
    open_tombstones(&table, *mapping);
    int settings = enter_fixed_settings();
    for (int i = 0; i < count; i++) {
        int record = records[i];
        Datum newest;
        if (newest_tombstone(chunk, table, record, &newest) &&
            !record_is_newer(chunk, record, newest))
            continue; // a tombstone as new binds the caller already: a replay writes nothing
        int order = mapping->order_column;
        if (row_nulls(chunk, record)[order])
            continue; // a tombstone without a version would bind nothing
        const Datum *values = row_values(chunk, record);
        for (int k = 0; k < key_count; k++)
            keys[rows * key_count + k] = CStringGetTextDatum(OutputFunctionCall(
                &mapping->tombstone_key[k].output, values[mapping->key_columns[k]]));
        versions[rows] = CStringGetTextDatum(
            OutputFunctionCall(&mapping->tombstone_version.output, values[order]));
        hashes[rows] = Int64GetDatum(static_cast<int64>(chunk->keys[record].hash));
        binds_all[rows] = BoolGetDatum(!table.caller_under_rls || removed[i]);
        rows++;
    }
    leave_fixed_settings(settings);
    Oid caller = table.caller;
    close_tombstones(&table);
    if (rows == 0)
        return;
    StatementParams params;
    params_init(&params, chunk);
    add_param(&params, CStringGetTextDatum(mapping->row.collection_id.c_str()));
    add_param(&params, text_array(keys, rows * key_count));
    add_param(&params, Int32GetDatum(key_count));
    add_param(&params, text_array(versions, rows));
    add_param(&params,
              PointerGetDatum(construct_array(hashes, rows, INT8OID, 8, true, TYPALIGN_DOUBLE)));
    add_param(&params, key_types_array(*mapping));
    add_param(&params, ObjectIdGetDatum(mapping->tombstone_version.base_type));
    add_param(&params, ObjectIdGetDatum(caller));
    add_param(&params,
              PointerGetDatum(construct_array(binds_all, rows, BOOLOID, 1, true, TYPALIGN_CHAR)));
    // Prepared here, at its first use, not with the mapping: it needs the 0.3.0 schema.
    PreparedStatement &insert = mapping->tomb_insert;
    kept_plan(&insert.plan, insert.sql.c_str(), static_cast<int>(insert.arg_types.size()),
              insert.arg_types.data(), CURSOR_OPT_GENERIC_PLAN);
    run_statement(chunk, insert, &params, true);
}

} // namespace sequin
