// Records of one key within a chunk: found by the hash of their typed key values (one that
// agrees with the unique index's equality) in an open addressing hash table, so that one statement
// never meets a key twice (PostgreSQL's "ON CONFLICT DO UPDATE command cannot affect row a second
// time"); and the key order in which rows are written.
#include "apply/chunk.hpp"

namespace sequin {

namespace {

// Does record a, later than b, replace it, as the version guard would if b were stored?
// A stored NULL version is replaced by any record (NULL too); a NULL record replaces only
// that; otherwise a newer version replaces an older one (equal does not).
bool newer_version(Chunk *chunk, int a, int b) {
    CompiledMapping *mapping = chunk->mapping;
    int order = mapping->order_column;
    bool a_null = row_nulls(chunk, a)[order];
    bool b_null = row_nulls(chunk, b)[order];
    if (a_null || b_null)
        return b_null;
    Datum result = FunctionCall2Coll(&mapping->order_compare, mapping->order_collation,
                                     row_values(chunk, a)[order], row_values(chunk, b)[order]);
    return DatumGetInt32(result) > 0;
}

// Equal for the unique index: 1.0 and 1 in a numeric key, 'ABC' and 'abc' under a
// case-insensitive collation.
bool same_key(Chunk *chunk, int a, int b) {
    const RecordKey &key_a = chunk->keys[a], &key_b = chunk->keys[b];
    if (key_a.hash != key_b.hash)
        return false;
    if (key_a.length == key_b.length && memcmp(key_a.bytes, key_b.bytes, key_a.length) == 0)
        return true;
    return keys_equal(chunk, row_values(chunk, a), row_values(chunk, b));
}

int compare_keys(const void *a, const void *b, void *arg) {
    const Chunk *chunk = static_cast<const Chunk *>(arg);
    return compare_record_keys(chunk->keys[*static_cast<const int *>(a)],
                               chunk->keys[*static_cast<const int *>(b)]);
}

} // namespace

int compare_record_keys(const RecordKey &a, const RecordKey &b) {
    if (a.shard != b.shard)
        return a.shard < b.shard ? -1 : 1;
    if (a.hash != b.hash)
        return a.hash < b.hash ? -1 : 1;
    int order = memcmp(a.bytes, b.bytes, Min(a.length, b.length));
    return order != 0 ? order : a.length - b.length;
}

uint32 key_column_hash(CompiledMapping *mapping, int k, Datum value) {
    KeyEquality &equality = mapping->key_equality[k];
    if (!OidIsValid(equality.hash.fn_oid))
        return 0;
    return DatumGetUInt32(FunctionCall1Coll(&equality.hash, equality.collation, value));
}

bool keys_equal(Chunk *chunk, const Datum *a, const Datum *b) {
    CompiledMapping *mapping = chunk->mapping;
    for (size_t k = 0; k < mapping->key_columns.size(); k++) {
        int column = mapping->key_columns[k];
        KeyEquality &equality = mapping->key_equality[k];
        if (DatumGetInt32(FunctionCall2Coll(&equality.compare, equality.collation, a[column],
                                            b[column])) != 0)
            return false;
    }
    return true;
}

namespace {

// The order in which a key's records apply "as if sent one by one": by version, NULL first
// (any record replaces a NULL), then in array order.
int compare_versions(const void *a, const void *b, void *arg) {
    Chunk *chunk = static_cast<Chunk *>(arg);
    int x = *static_cast<const int *>(a), y = *static_cast<const int *>(b);
    CompiledMapping *mapping = chunk->mapping;
    int order = mapping->order_column;
    bool x_null = row_nulls(chunk, x)[order], y_null = row_nulls(chunk, y)[order];
    if (x_null != y_null)
        return x_null ? -1 : 1;
    if (!x_null) {
        int result = DatumGetInt32(
            FunctionCall2Coll(&mapping->order_compare, mapping->order_collation,
                              row_values(chunk, x)[order], row_values(chunk, y)[order]));
        if (result != 0)
            return result;
    }
    return (x > y) - (x < y);
}

} // namespace

void keep_newest_per_key(Chunk *chunk) {
    // With an order column, records apply in version order (the SPEC): which one inserts a
    // new key, and so whose keep_on_conflict values stay, follows that order.
    int *sequence = static_cast<int *>(palloc(sizeof(int) * (chunk->count ? chunk->count : 1)));
    int pending = 0;
    for (int record = 0; record < chunk->count; record++)
        if (chunk->state[record] != Done)
            sequence[pending++] = record;
    if (chunk->mapping->order_column >= 0)
        qsort_arg(sequence, pending, sizeof(int), compare_versions, chunk);
    int size = 16;
    while (size < 2 * chunk->count)
        size <<= 1;
    int *slots = static_cast<int *>(palloc0(sizeof(int) * size)); // record + 1, 0 = empty
    // Applied one by one from an absent key: is a row present, and which record inserted it
    // (its keep_on_conflict values stay when later records update the row)?
    bool *present = static_cast<bool *>(palloc0(sizeof(bool) * size));
    int *inserter = static_cast<int *>(palloc(sizeof(int) * size));
    for (int i = 0; i < pending; i++) {
        int record = sequence[i];
        bool upsert = chunk->state[record] == Upsert;
        int slot = chunk->keys[record].hash & (size - 1);
        while (true) {
            int kept = slots[slot] - 1;
            if (kept < 0) {
                slots[slot] = record + 1;
                present[slot] = upsert;
                inserter[slot] = upsert ? record : -1;
                break;
            }
            if (same_key(chunk, kept, record)) {
                // As if applied one by one: the later record wins unless it is not newer.
                // (In version order a later record is never older; ties stay in array order.)
                bool later_wins =
                    chunk->mapping->order_column < 0 || newer_version(chunk, record, kept);
                int loser = later_wins ? kept : record;
                chunk->state[loser] = Done;
                chunk->superseded_by[loser] = later_wins ? record : kept;
                chunk->call->counts->skipped++;
                slots[slot] = (later_wins ? record : kept) + 1;
                if (later_wins) {
                    if (upsert && !present[slot])
                        inserter[slot] = record;
                    present[slot] = upsert;
                }
                break;
            }
            slot = (slot + 1) & (size - 1);
        }
    }
    for (int slot = 0; slot < size; slot++) {
        int winner = slots[slot] - 1;
        if (winner >= 0 && present[slot] && inserter[slot] != winner)
            chunk->keep_source[winner] = inserter[slot];
    }
    pfree(inserter);
    pfree(present);
    pfree(slots);
    pfree(sequence);
}

void sort_by_key(Chunk *chunk, int *records, int count) {
    qsort_arg(records, count, sizeof(int), compare_keys, chunk);
}

} // namespace sequin
