// Look-ups before writing: the stored versions of a chunk's keys (a stale record is skipped
// without writing anything: a replay is read-only). Tombstones: apply/tombstones.cpp.
#include "apply/chunk.hpp"
#include "apply/statement_params.hpp"

extern "C" {
#include "executor/spi.h"
#include "utils/builtins.h"
}

namespace sequin {

bool is_pending(const Chunk *chunk, int record) {
    return chunk->state[record] == Upsert || chunk->state[record] == Delete;
}
bool is_upsert(const Chunk *chunk, int record) {
    return chunk->state[record] == Upsert;
}
bool is_delete(const Chunk *chunk, int record) {
    return chunk->state[record] == Delete;
}
bool is_new_upsert(const Chunk *chunk, int record) {
    return chunk->state[record] == Upsert && !chunk->stored[record];
}

int select_records(const Chunk *chunk, int *records, RecordFilter wanted) {
    int count = 0;
    for (int record = 0; record < chunk->count; record++)
        if (wanted(chunk, record))
            records[count++] = record;
    return count;
}

namespace {

// A distributed target: one look-up per shard, which Citus sends to that shard only.
void lookup_by_shard(Chunk *chunk, int *records, int count) {
    sort_by_key(chunk, records, count);
    for (int start = 0; start < count;) {
        int run = same_shard_run(chunk, records + start, count - start);
        lookup_records(chunk, records + start, run);
        start += run;
    }
}

} // namespace

// Marks which of records' keys are stored, and skips the records that are stale.
void lookup_records(Chunk *chunk, int *records, int count) {
    if (count == 0)
        return;
    CompiledMapping *mapping = chunk->mapping;
    if (mapping->citus == CitusKind::Distributed && same_shard_run(chunk, records, count) < count) {
        lookup_by_shard(chunk, records, count);
        return;
    }
    StatementParams params;
    params_init(&params, chunk);
    key_params(chunk, &params, records, count, true, mapping->order_column >= 0, false);
    run_statement(chunk, mapping->lookup, &params, false);
    for (uint64 row = 0; row < SPI_processed; row++) {
        bool isnull;
        HeapTuple tuple = SPI_tuptable->vals[row];
        int record = DatumGetInt32(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull));
        bool older = DatumGetBool(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
        chunk->stored[record] = true;
        chunk->stored_older[record] = older && !isnull;
    }
    SPI_freetuptable(SPI_tuptable);
    for (int i = 0; i < count; i++) {
        int record = records[i];
        if (chunk->stored[record] && !chunk->stored_older[record]) { // stale
            chunk->state[record] = Done;
            chunk->call->counts->skipped++;
        }
    }
}

void lookup_stored_versions(Chunk *chunk, int *scratch, RecordFilter wanted) {
    lookup_records(chunk, scratch, select_records(chunk, scratch, wanted));
}

} // namespace sequin
