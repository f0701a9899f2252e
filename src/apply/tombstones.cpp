// Tombstones: see tombstones.hpp.
#include "apply/tombstones.hpp"
#include "apply/statement_params.hpp"
#include "apply/tombstone_table.hpp"
#include "pg/fixed_settings.hpp"
#include "pg/kept_plan.hpp"

extern "C" {
#include "access/genam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
}

namespace sequin {

namespace {

// Does the collection have any tombstone that snapshot sees (NULL: a new MVCC snapshot)?
bool any_tombstone(Chunk *chunk, Snapshot snapshot) {
    TombstoneTable table;
    open_tombstones(&table, *chunk->mapping, snapshot);
    ScanKeyData key;
    collection_scan_key(table, *chunk->mapping, &key);
    SysScanDesc scan = systable_beginscan(table.rel, table.index, true, table.snapshot, 1, &key);
    bool found = HeapTupleIsValid(systable_getnext(scan));
    systable_endscan(scan);
    close_tombstones(&table);
    return found;
}

} // namespace

bool collection_has_any_tombstone(Chunk *chunk, SnapshotData *dirty) {
    return any_tombstone(chunk, dirty);
}

bool collection_has_tombstones(Chunk *chunk) {
    return chunk->mapping->order_column >= 0 && any_tombstone(chunk, nullptr);
}

TransactionId concurrent_tombstone(Chunk *chunk, TombstoneTable *table, int record,
                                   SnapshotData *dirty, bool *committed) {
    scan_key_hash(table, chunk->keys[record].hash);
    TransactionId writer = InvalidTransactionId;
    *committed = false;
    HeapTuple tuple;
    while ((tuple = next_of_key_hash(table)) != nullptr) {
        // Its writer in progress, as the dirty snapshot saw it for this tuple.
        TransactionId in_progress = dirty->xmin;
        Datum version;
        if (!binding_version(chunk, *table, tuple, record, &version) ||
            record_is_newer(chunk, record, version))
            continue;
        if (TransactionIdIsValid(in_progress) &&
            !TransactionIdIsCurrentTransactionId(in_progress)) {
            writer = in_progress;
        } else {
            *committed = true;
            break;
        }
    }
    return *committed ? InvalidTransactionId : writer;
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
    skip_tombstoned_among(chunk, scratch, count);
}

void skip_tombstoned_among(Chunk *chunk, const int *records, int count) {
    if (chunk->mapping->order_column < 0 || count == 0)
        return;
    TombstoneTable table;
    open_tombstones(&table, *chunk->mapping);
    int settings = enter_fixed_settings();
    for (int i = 0; i < count; i++) {
        int record = records[i];
        if (chunk->state[record] != Upsert && chunk->state[record] != Delete)
            continue;
        Datum newest;
        if (newest_tombstone(chunk, &table, record, &newest) &&
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
        if (newest_tombstone(chunk, &table, record, &newest) &&
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
    Datum caller = NameGetDatum(&table.caller_name);
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
    add_param(&params, caller);
    add_param(&params,
              PointerGetDatum(construct_array(binds_all, rows, BOOLOID, 1, true, TYPALIGN_CHAR)));
    add_param(&params, CStringGetTextDatum(mapping->key_signature.c_str()));
    // Prepared here, at its first use, not with the mapping: it needs the 0.3.0 schema.
    PreparedStatement &insert = mapping->tomb_insert;
    kept_plan(&insert.plan, insert.sql.c_str(), static_cast<int>(insert.arg_types.size()),
              insert.arg_types.data(), CURSOR_OPT_GENERIC_PLAN);
    run_statement(chunk, insert, &params, true);
}

} // namespace sequin
