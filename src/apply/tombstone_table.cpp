// Reading sequin.tombstones: see tombstone_table.hpp.
#include "apply/tombstone_table.hpp"
#include "pg/compat.hpp"
#include "pg/run_as_owner.hpp"

extern "C" {
#include "executor/spi.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
}

namespace sequin {

namespace {

AttrNumber column_number(TupleDesc desc, const char *name) {
    int attnum = SPI_fnumber(desc, name);
    if (attnum > 0)
        return static_cast<AttrNumber>(attnum);
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("sequin.tombstones has no column \"%s\": the extension's schema is "
                           "older than its library",
                           name),
                    errhint("Run ALTER EXTENSION sequin_upsert UPDATE.")));
    return InvalidAttrNumber;
}

Datum oid_array(const Oid *oids, int count, Oid element_type) {
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (count ? count : 1)));
    for (int i = 0; i < count; i++)
        elements[i] = ObjectIdGetDatum(oids[i]);
    return PointerGetDatum(
        construct_array(elements, count, element_type, sizeof(Oid), true, TYPALIGN_INT));
}

// A tombstone that cannot be read (say, an enum value renamed since): which mapping, and how
// to get rid of it.
void reading_tombstones_context(void *arg) {
    const TombstoneTable *table = static_cast<const TombstoneTable *>(arg);
    errcontext("reading the tombstones of mapping \"%s\" (sequin.prune_tombstones(), or a DELETE "
               "on sequin.tombstones as the extension's owner, removes them)",
               table->mapping->row.collection_id.c_str());
}

} // namespace

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

// Opens the table to read with snapshot, or with a new MVCC snapshot when it is NULL.
void open_tombstones(TombstoneTable *table, const CompiledMapping &mapping, Snapshot snapshot) {
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
    table->registered = snapshot == nullptr;
    table->snapshot = snapshot ? snapshot : RegisterSnapshot(GetTransactionSnapshot());
    table->mapping = &mapping;
    table->index_rel = nullptr;
    table->key_scan = nullptr;
    table->slot = nullptr;
    table->context.previous = error_context_stack;
    table->context.callback = reading_tombstones_context;
    table->context.arg = table;
    error_context_stack = &table->context;
    table->caller = GetUserId();
    namestrcpy(&table->caller_name, GetUserNameFromId(table->caller, false));
    table->caller_under_rls =
        check_enable_rls(mapping.row.target_table, InvalidOid, true) == RLS_ENABLED;
}

void close_tombstones(TombstoneTable *table) {
    if (table->key_scan) {
        index_endscan(table->key_scan);
        ExecDropSingleTupleTableSlot(table->slot);
        index_close(table->index_rel, AccessShareLock);
    }
    error_context_stack = table->context.previous;
    if (table->registered)
        UnregisterSnapshot(table->snapshot);
    table_close(table->rel, AccessShareLock);
}

// The scan key on collection_id (heap column numbers, for systable_beginscan).
void collection_scan_key(const TombstoneTable &table, const CompiledMapping &mapping,
                         ScanKeyData *key) {
    Oid collation =
        TupleDescAttr(RelationGetDescr(table.rel), table.collection_id - 1)->attcollation;
    ScanKeyEntryInitialize(key, 0, table.collection_id, BTEqualStrategyNumber, InvalidOid,
                           collation, F_TEXTEQ,
                           CStringGetTextDatum(mapping.row.collection_id.c_str()));
}

// Does the tombstone bind the caller? Under row-level security, only the caller's own do.
bool binds_caller(const TombstoneTable &table, HeapTuple tuple) {
    TupleDesc desc = RelationGetDescr(table.rel);
    bool isnull;
    Datum creator = heap_getattr(tuple, table.created_by, desc, &isnull);
    if (!isnull && strcmp(NameStr(*DatumGetName(creator)), NameStr(table.caller_name)) == 0)
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

bool binding_version(Chunk *chunk, const TombstoneTable &table, HeapTuple tuple, int record,
                     Datum *version) {
    if (!binds_caller(table, tuple) || !key_matches(chunk, table, tuple, record))
        return false;
    bool isnull;
    Datum stored = heap_getattr(tuple, table.version, RelationGetDescr(table.rel), &isnull);
    if (isnull)
        return false; // a tombstone without a version binds nothing
    *version = read_value(chunk->mapping->tombstone_version, stored);
    return true;
}

// The newest version among the tombstones of the record's key that bind the caller.
bool newest_tombstone(Chunk *chunk, TombstoneTable *table, int record, Datum *newest) {
    CompiledMapping *mapping = chunk->mapping;
    scan_key_hash(table, chunk->keys[record].hash);
    bool found = false;
    HeapTuple tuple;
    while ((tuple = next_of_key_hash(table)) != nullptr) {
        Datum version;
        if (!binding_version(chunk, *table, tuple, record, &version))
            continue;
        if (!found || DatumGetInt32(FunctionCall2Coll(
                          &mapping->order_compare, mapping->order_collation, version, *newest)) > 0)
            *newest = version;
        found = true;
    }
    return found;
}

void scan_key_hash(TombstoneTable *table, uint32 hash) {
    if (!table->key_scan) {
        table->index_rel = index_open(table->index, AccessShareLock);
        table->key_scan = sequin_index_beginscan(table->rel, table->index_rel, table->snapshot, 2);
        table->slot = table_slot_create(table->rel, nullptr);
    }
    // Index columns: collection_id, key_hash.
    ScanKeyData keys[2];
    ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
                           table->index_rel->rd_indcollation[0], F_TEXTEQ,
                           CStringGetTextDatum(table->mapping->row.collection_id.c_str()));
    ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid, InvalidOid, F_INT8EQ,
                           Int64GetDatum(static_cast<int64>(hash)));
    index_rescan(table->key_scan, keys, 2, nullptr, 0);
}

HeapTuple next_of_key_hash(TombstoneTable *table) {
    if (!index_getnext_slot(table->key_scan, ForwardScanDirection, table->slot))
        return nullptr;
    bool should_free;
    return ExecFetchSlotHeapTuple(table->slot, false, &should_free);
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

Datum key_types_array(const CompiledMapping &mapping) {
    int count = static_cast<int>(mapping.tombstone_key.size());
    Oid *types = static_cast<Oid *>(palloc(sizeof(Oid) * (count ? count : 1)));
    for (int k = 0; k < count; k++)
        types[k] = mapping.tombstone_key[k].base_type;
    return oid_array(types, count, REGTYPEOID);
}

} // namespace sequin
