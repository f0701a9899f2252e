// Citus: an upsert as INSERT ... VALUES, one row per record, each value a parameter. Citus
// sends such a statement, split by shard, to the rows' shards as it is, over the connection
// it keeps to each worker; an INSERT ... SELECT from the batch's arrays would be planned on
// the coordinator, copied to the shard as an intermediate result, and inserted from there.
#include "apply/chunk.hpp"
#include "pg/fixed_settings.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
}

namespace sequin {

namespace {

// PostgreSQL's limit on a statement's parameters.
constexpr int kMaxParams = 65535;

// per_row: the parameters of a row (its columns but "$now"); outputs: per column, the
// output function of a value that travels as text.
uint64 execute_rows(Chunk *chunk, const int *records, int count, int per_row, const Oid *outputs) {
    CompiledMapping *mapping = chunk->mapping;
    int nargs = per_row * count;
    Oid *types = static_cast<Oid *>(palloc(sizeof(Oid) * (nargs ? nargs : 1)));
    Datum *values = static_cast<Datum *>(palloc(sizeof(Datum) * (nargs ? nargs : 1)));
    char *nulls = static_cast<char *>(palloc(nargs + 1));
    StringInfoData sql;
    initStringInfo(&sql);
    appendStringInfoString(&sql, mapping->values_head.c_str());
    int arg = 0;
    // Values passed as text (arrays, say) are written under fixed settings, and Citus writes
    // every value into the text it sends to the workers with the session's settings: the
    // statement runs under them too (its errors restore the session's).
    int settings = enter_fixed_settings();
    for (int i = 0; i < count; i++) {
        const Datum *row = row_values(chunk, records[i]);
        const bool *row_null = row_nulls(chunk, records[i]);
        appendStringInfoString(&sql, i ? ", (" : "(");
        for (int c = 0; c < chunk->column_count; c++) {
            const MappedColumn &column = mapping->columns[c];
            if (c)
                appendStringInfoString(&sql, ", ");
            if (column.is_now) {
                appendStringInfoString(&sql, column.values_sql.c_str());
                continue;
            }
            appendStringInfo(&sql, "$%d%s", arg + 1, column.values_sql.c_str());
            nulls[arg] = row_null[c] ? 'n' : ' ';
            if (column.param_as_text) {
                types[arg] = TEXTOID;
                values[arg] = (Datum)0;
                if (!row_null[c])
                    values[arg] = CStringGetTextDatum(OidOutputFunctionCall(outputs[c], row[c]));
            } else {
                types[arg] = column.type->type_oid;
                values[arg] = row[c];
            }
            arg++;
        }
        appendStringInfoChar(&sql, ')');
    }
    nulls[arg] = '\0';
    appendStringInfoString(&sql, mapping->values_tail.c_str());
    int rc = SPI_execute_with_args(sql.data, nargs, types, values, nulls, false, 0);
    leave_fixed_settings(settings);
    if (rc < 0)
        elog(ERROR, "sequin_upsert: statement failed (%s): %s", SPI_result_code_string(rc),
             mapping->values_head.c_str());
    return SPI_processed;
}

// Marks written[] for the records (of one statement: distinct keys) whose rows the statement
// returned, by key: columns 2.. of each returned row, in key column order.
void mark_returned_keys(Chunk *chunk, const int *records, int count) {
    CompiledMapping *mapping = chunk->mapping;
    int key_count = static_cast<int>(mapping->key_columns.size());
    // Open addressing over the records' key hashes.
    int slots = 16;
    while (slots < 2 * count)
        slots <<= 1;
    int *table = static_cast<int *>(palloc(sizeof(int) * slots));
    memset(table, 0xff, sizeof(int) * slots); // -1: empty
    for (int i = 0; i < count; i++) {
        uint32 slot = chunk->keys[records[i]].hash & (slots - 1);
        while (table[slot] >= 0)
            slot = (slot + 1) & (slots - 1);
        table[slot] = i;
    }
    Datum *key = static_cast<Datum *>(palloc(sizeof(Datum) * key_count));
    for (uint64 row = 0; row < SPI_processed; row++) {
        uint32 hash = 0;
        for (int k = 0; k < key_count; k++) {
            bool isnull;
            key[k] = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, k + 2, &isnull);
            hash = hash_combine(hash, key_column_hash(mapping, k, key[k]));
        }
        for (uint32 slot = hash & (slots - 1); table[slot] >= 0; slot = (slot + 1) & (slots - 1)) {
            int record = records[table[slot]];
            if (chunk->keys[record].hash != hash)
                continue;
            const Datum *values = row_values(chunk, record);
            bool equal = true;
            for (int k = 0; k < key_count && equal; k++) {
                KeyEquality &eq = mapping->key_equality[k];
                equal = DatumGetInt32(FunctionCall2Coll(&eq.compare, eq.collation, key[k],
                                                        values[mapping->key_columns[k]])) == 0;
            }
            if (equal) {
                chunk->written[record] = true;
                break;
            }
        }
    }
}

} // namespace

uint64 execute_values_upsert(Chunk *chunk, const int *records, int count) {
    CompiledMapping *mapping = chunk->mapping;
    int per_row = 0;
    Oid *outputs = static_cast<Oid *>(palloc0(sizeof(Oid) * (chunk->column_count + 1)));
    for (int c = 0; c < chunk->column_count; c++) {
        const MappedColumn &column = mapping->columns[c];
        per_row += !column.is_now;
        bool varlena;
        if (column.param_as_text)
            getTypeOutputInfo(column.type->type_oid, &outputs[c], &varlena);
    }
    int rows = Max(1, kMaxParams / (per_row + 1)); // several statements past the limit
    uint64 written = 0;
    int64 inserted = 0;
    for (int i = 0; chunk->written && i < count; i++)
        chunk->written[records[i]] = false; // a rolled-back attempt's
    for (int start = 0; start < count; start += rows) {
        written += execute_rows(chunk, records + start, Min(rows, count - start), per_row, outputs);
        if (chunk->written)
            mark_returned_keys(chunk, records + start, Min(rows, count - start));
        for (uint64 row = 0; row < SPI_processed; row++) {
            bool isnull;
            inserted += DatumGetBool(
                SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull));
        }
        SPI_freetuptable(SPI_tuptable);
    }
    chunk->returned_inserted = inserted;
    return written;
}

} // namespace sequin
