// Citus targets: which shard holds each key, and the coordinator's locks by which writers of
// one shard take turns. See chunk.hpp.
#include "apply/chunk.hpp"
#include "apply/statement_params.hpp"

extern "C" {
#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
}

namespace sequin {

namespace {

// The advisory lock tags' last field: PostgreSQL's own advisory locks use 1 and 2, so these
// never meet a user's pg_advisory_lock.
constexpr uint16 kShardLockClass = 0x5351;

int compare_int64(const void *a, const void *b) {
    int64 x = *static_cast<const int64 *>(a), y = *static_cast<const int64 *>(b);
    return (x > y) - (x < y);
}

// A shard (high, low: its id) or a whole table (kTableLock, its oid).
constexpr uint32 kTableLock = 0xFFFFFFFF;

void lock_one(uint32 high, uint32 low) {
    LOCKTAG tag;
    SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, high, low, kShardLockClass);
    (void)LockAcquire(&tag, ExclusiveLock, false, false);
}

} // namespace

void assign_shards(Chunk *chunk) {
    CompiledMapping *mapping = chunk->mapping;
    if (mapping->citus != CitusKind::Distributed)
        return;
    int *records = static_cast<int *>(palloc(sizeof(int) * (chunk->count ? chunk->count : 1)));
    int count = select_records(chunk, records, is_pending);
    if (count == 0)
        return;
    StatementParams params;
    params_init(&params, chunk);
    add_param(&params, ObjectIdGetDatum(mapping->row.target_table));
    add_param(&params,
              column_array(chunk, mapping->key_columns[mapping->distribution_key], records, count));
    run_statement(chunk, mapping->shard_of, &params, false);
    if (SPI_processed != static_cast<uint64>(count))
        elog(ERROR, "sequin_upsert: Citus returned %lu shards for %d keys",
             static_cast<unsigned long>(SPI_processed), count);
    for (int i = 0; i < count; i++) {
        bool isnull;
        Datum shard = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
        chunk->keys[records[i]].shard = isnull ? 0 : DatumGetInt64(shard);
    }
    SPI_freetuptable(SPI_tuptable);
}

void lock_shards(Chunk *chunk) {
    CompiledMapping *mapping = chunk->mapping;
    if (mapping->citus == CitusKind::None || XactReadOnly)
        return;
    if (mapping->citus != CitusKind::Distributed) { // one placement group: the table
        lock_one(kTableLock, mapping->row.target_table);
        return;
    }
    int64 *shards = static_cast<int64 *>(palloc(sizeof(int64) * (chunk->count ? chunk->count : 1)));
    int count = 0;
    for (int record = 0; record < chunk->count; record++)
        if (is_pending(chunk, record))
            shards[count++] = chunk->keys[record].shard;
    qsort(shards, count, sizeof(int64), compare_int64);
    for (int i = 0; i < count; i++)
        if (i == 0 || shards[i] != shards[i - 1])
            lock_one(static_cast<uint32>(static_cast<uint64>(shards[i]) >> 32),
                     static_cast<uint32>(shards[i]));
    pfree(shards);
}

int same_shard_run(const Chunk *chunk, const int *records, int count) {
    if (count == 0)
        return 0;
    int end = 1;
    while (end < count && chunk->keys[records[end]].shard == chunk->keys[records[0]].shard)
        end++;
    return end;
}

} // namespace sequin
