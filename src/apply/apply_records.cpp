// The applier's orchestration: records are grouped by collection (in the order of the
// collections' names), each group is applied in chunks of sequin.batch_size records (in key
// order when there are several), and what happened is added to the collection's counters. The steps
// of a chunk are in the files listed in chunk.hpp. C-shaped server code.
#include "apply/apply_records.hpp"
#include "apply/chunk.hpp"
#include "apply/tombstones.hpp"
#include "apply/write_isolation.hpp"
#include "mapping/mapping_cache.hpp"
#include "pg/json_path.hpp"
#include "pg/run_as_owner.hpp"
#include "pg/stats_counters.hpp"

extern "C" {
#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/memutils.h"
}

int sequin_batch_size = 1000;

namespace sequin {

namespace {

// The elements of a chunk of parents' lists are applied as one chunk of the child mapping up
// to this many times sequin.batch_size elements: duplicate keys in the lists then meet in one
// chunk, as a parent's duplicates do.
constexpr int kChildChunkBatches = 10;

// Records of one collection, in input order.
struct Group {
    const char *collection;
    int collection_len;
    int *members;
    int count;
};

// Allocates the chunk's arrays (in the current memory context).
void init_chunk(Chunk *chunk) {
    int count = chunk->count;
    size_t cells = static_cast<size_t>(count) * chunk->column_count;
    chunk->values = static_cast<Datum *>(palloc(sizeof(Datum) * (cells ? cells : 1)));
    chunk->nulls = static_cast<bool *>(palloc(sizeof(bool) * (cells ? cells : 1)));
    chunk->state = static_cast<uint8 *>(palloc0(count));
    chunk->stored = static_cast<bool *>(palloc0(count));
    chunk->stored_older = static_cast<bool *>(palloc0(count));
    chunk->removed = static_cast<bool *>(palloc0(count));
    chunk->keys = static_cast<RecordKey *>(palloc0(sizeof(RecordKey) * count));
    chunk->keep_source = static_cast<int *>(palloc(sizeof(int) * (count ? count : 1)));
    memset(chunk->keep_source, 0xff, sizeof(int) * count); // -1
    chunk->superseded_by = static_cast<int *>(palloc(sizeof(int) * (count ? count : 1)));
    memset(chunk->superseded_by, 0xff, sizeof(int) * count); // -1
    chunk->failed = static_cast<bool *>(palloc0(count ? count : 1));
    initStringInfo(&chunk->key_scratch);
    const CompiledMapping *mapping = chunk->mapping;
    size_t top_keys = Max(mapping->identity_keys.size(), mapping->value_keys.size());
    chunk->top_values = static_cast<JsonbValue *>(palloc(sizeof(JsonbValue) * top_keys));
    chunk->top_found = static_cast<bool *>(palloc(sizeof(bool) * top_keys));
}

Chunk make_chunk(CompiledMapping *mapping, const CallSettings &call, const InputRecord *records,
                 const int *members, int count);

void apply_chunk(Chunk *chunk);

// Converts the identities of a chunk, keeps one record per key, and applies the rest, then
// the lists of the records it applied (child collections). In Isolate mode, the records
// skipped for a later one of their key that then failed are applied after all, as a chunk
// of their own: sent one by one, they would have applied.
void apply_chunk_rows(Chunk *chunk) {
    init_chunk(chunk);
    int *scratch = static_cast<int *>(palloc(sizeof(int) * chunk->count));
    convert_chunk(chunk, convert_identity);
    keep_listed_keys(chunk);
    assign_shards(chunk);
    keep_newest_per_key(chunk);
    bool *winners = nullptr;
    CommandId since = InvalidCommandId;
    if (!chunk->mapping->children.empty()) {
        winners = static_cast<bool *>(palloc(chunk->count + 1));
        for (int record = 0; record < chunk->count; record++)
            winners[record] = chunk->state[record] == Upsert;
        CommandCounterIncrement(); // rows written before have an older command id
        since = GetCurrentCommandId(false);
        if (chunk->mapping->citus != CitusKind::None)
            chunk->written = static_cast<bool *>(palloc0(chunk->count + 1));
    }
    apply_with_strategy(chunk, scratch);
    if (winners)
        apply_children(chunk, winners, since);
    if (chunk->call->mode != ApplyMode::Isolate)
        return;
    int revived = 0;
    for (int record = 0; record < chunk->count; record++) {
        int winner = chunk->superseded_by[record];
        if (winner < 0)
            continue;
        while (chunk->superseded_by[winner] >= 0)
            winner = chunk->superseded_by[winner];
        if (chunk->failed[winner])
            scratch[revived++] = chunk->members[record];
    }
    if (revived == 0)
        return;
    chunk->call->counts->skipped -= revived; // counted as superseded
    Chunk again = make_chunk(chunk->mapping, *chunk->call, chunk->inputs, scratch, revived);
    apply_chunk(&again);
}

// A failure reported while a chunk with child collections is applied: held back until the
// chunk's subtransaction commits.
struct HeldFailure {
    int index;
    int sqlstate;
    const char *message;
};

struct HeldFailures {
    HeldFailure *failures;
    int count;
    int capacity;
};

void hold_failure(void *arg, int index, int sqlstate, const char *message) {
    HeldFailures *held = static_cast<HeldFailures *>(arg);
    if (held->count == held->capacity) {
        held->capacity = Max(8, held->capacity * 2);
        held->failures = static_cast<HeldFailure *>(
            held->failures ? repalloc(held->failures, sizeof(HeldFailure) * held->capacity)
                           : palloc(sizeof(HeldFailure) * held->capacity));
    }
    held->failures[held->count++] = {index, sqlstate, pstrdup(message)};
}

// A mapping with child collections: a record whose children fail fails as a whole, its own row
// rolled back. The chunk is applied in a subtransaction; if that fails, in halves, down to the
// record, which is reported failed (Isolate) or whose error is raised naming it (Atomic: an
// error of the children's set-based statements names no record by itself).
void apply_chunk_with_children(Chunk *chunk) {
    const CallSettings &call = *chunk->call;
    ApplyCounts before = *call.counts;
    ChildCounts *saved = save_child_counts(call);
    HeldFailures held = {nullptr, 0, 0};
    CallSettings holding = call;
    holding.on_failure = hold_failure;
    holding.callback_arg = &held;
    chunk->call = &holding;
    ErrorData *error = try_in_subtransaction([&] { apply_chunk_rows(chunk); });
    chunk->call = &call;
    if (!error) {
        for (int i = 0; i < held.count; i++)
            call.on_failure(call.callback_arg, held.failures[i].index, held.failures[i].sqlstate,
                            held.failures[i].message);
        return;
    }
    *call.counts = before;
    restore_child_counts(call, saved);
    if (chunk->count == 1) {
        fail_record(chunk->inputs[chunk->members[0]], nullptr, error, call);
        return;
    }
    FreeErrorData(error);
    int half = chunk->count / 2;
    Chunk first = make_chunk(chunk->mapping, call, chunk->inputs, chunk->members, half);
    apply_chunk(&first);
    Chunk second =
        make_chunk(chunk->mapping, call, chunk->inputs, chunk->members + half, chunk->count - half);
    apply_chunk(&second);
}

void apply_chunk(Chunk *chunk) {
    if (!chunk->mapping->children.empty())
        apply_chunk_with_children(chunk);
    else
        apply_chunk_rows(chunk);
}

Chunk make_chunk(CompiledMapping *mapping, const CallSettings &call, const InputRecord *records,
                 const int *members, int count) {
    Chunk chunk;
    memset(&chunk, 0, sizeof chunk);
    chunk.mapping = mapping;
    chunk.call = &call;
    chunk.inputs = records;
    chunk.members = members;
    chunk.count = count;
    chunk.column_count = static_cast<int>(mapping->columns.size());
    return chunk;
}

// A group's record with its key, to sort a group by key.
struct KeyedMember {
    int member;
    RecordKey key;
};

int compare_keyed_members(const void *a, const void *b) {
    const KeyedMember &x = *static_cast<const KeyedMember *>(a);
    const KeyedMember &y = *static_cast<const KeyedMember *>(b);
    int order = compare_record_keys(x.key, y.key);
    return order != 0 ? order : (x.member > y.member) - (x.member < y.member);
}

// A group larger than one chunk is applied in key order across its chunks (the order in
// which each chunk writes): concurrent calls then lock shared keys in one order, and the
// records of one key, in input order, meet in one chunk, so that what is counted and written
// does not depend on sequin.batch_size. The identities are converted twice for that; records
// that fail, or are done (a delete ignored), drop out here. Returns the chunks' ends.
int *sort_group_by_key(Group *group, CompiledMapping *mapping, const InputRecord *records,
                       const CallSettings &call, MemoryContext chunk_context, int batch,
                       int *chunk_count) {
    MemoryContext group_context = CurrentMemoryContext;
    KeyedMember *keyed = static_cast<KeyedMember *>(palloc(sizeof(KeyedMember) * group->count));
    int kept = 0;
    for (int start = 0; start < group->count; start += batch) {
        MemoryContext old = MemoryContextSwitchTo(chunk_context);
        Chunk chunk = make_chunk(mapping, call, records, group->members + start,
                                 Min(batch, group->count - start));
        init_chunk(&chunk);
        convert_chunk(&chunk, convert_identity);
        assign_shards(&chunk);
        MemoryContextSwitchTo(group_context);
        for (int record = 0; record < chunk.count; record++) {
            if (chunk.state[record] == Done)
                continue;
            KeyedMember &entry = keyed[kept++];
            entry.member = group->members[start + record];
            entry.key = chunk.keys[record];
            entry.key.bytes = static_cast<char *>(palloc(Max(entry.key.length, 1)));
            memcpy(entry.key.bytes, chunk.keys[record].bytes, entry.key.length);
        }
        MemoryContextSwitchTo(old);
        MemoryContextReset(chunk_context);
        CHECK_FOR_INTERRUPTS();
    }
    qsort(keyed, kept, sizeof(KeyedMember), compare_keyed_members);
    int *ends = static_cast<int *>(palloc(sizeof(int) * (kept / batch + 2)));
    *chunk_count = 0;
    for (int i = 0; i < kept; i++) {
        group->members[i] = keyed[i].member;
        // A chunk ends after batch records, but not inside one key (one hash: equal keys
        // of other binary forms, say numeric 1.0 and 1, are neighbours too).
        bool full = *chunk_count == 0 ? i + 1 >= batch : i + 1 - ends[*chunk_count - 1] >= batch;
        if (i + 1 == kept || (full && keyed[i + 1].key.hash != keyed[i].key.hash))
            ends[(*chunk_count)++] = i + 1;
    }
    group->count = kept;
    return ends;
}

// The mapping of a group, its tombstones checked once per compilation.
CompiledMapping *pin_checked_mapping(const Group &group, const CallSettings &call) {
    CompiledMapping *mapping = pin_mapping(group.collection, group.collection_len);
    if (mapping->is_child) {
        unpin_mapping(mapping);
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("collection \"%s\" is a child collection of \"%s\": its rows come "
                               "from the lists in that collection's records",
                               mapping->row.collection_id.c_str(), mapping->row.parent->c_str())));
    }
    if (mapping->order_column >= 0 && !mapping->tombstone_types_checked) {
        check_tombstone_types(mapping, call.bookkeeping_owner);
        mapping->tombstone_types_checked = true;
    }
    return mapping;
}

// The mapping of a group; NULL when it has none (Isolate: its records failed).
CompiledMapping *group_mapping(const Group &group, const InputRecord *records,
                               const CallSettings &call) {
    CompiledMapping *mapping = nullptr;
    if (call.mode == ApplyMode::Atomic) {
        MemoryContext context = CurrentMemoryContext;
        PG_TRY();
        { mapping = pin_checked_mapping(group, call); }
        PG_CATCH();
        {
            MemoryContextSwitchTo(context);
            ErrorData *error = CopyErrorData();
            FlushErrorState();
            fail_record(records[group.members[0]], nullptr, error, call);
        }
        PG_END_TRY();
        return mapping;
    }
    ErrorData *error = try_in_subtransaction([&] { mapping = pin_checked_mapping(group, call); });
    if (error) {
        for (int i = 0; i < group.count; i++)
            fail_record(records[group.members[i]], nullptr, error, call);
        return nullptr;
    }
    return mapping;
}

// Applies a group of the mapping's records in chunks.
void apply_mapping_group(CompiledMapping *mapping, const Group &group, const InputRecord *records,
                         const CallSettings &call, MemoryContext chunk_context) {
    if (mapping->key_columns.empty())
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
                 errmsg("mapping \"%s\" has no conflict key", mapping->row.collection_id.c_str())));
    int batch = sequin_batch_size > 0 ? sequin_batch_size : 1000;
    int chunk_count = 1;
    int single_end = group.count;
    int *ends = &single_end;
    Group sorted = group;
    if (mapping->is_child && group.count > kChildChunkBatches * batch) {
        // A child's records (list elements) have no version: applied in chunks in their
        // order, later ones win as within a chunk. (Their rows are written under their
        // parents' row locks.) A chunk of parents' lists is one chunk unless it is very long.
        int size = kChildChunkBatches * batch;
        chunk_count = (group.count + size - 1) / size;
        ends = static_cast<int *>(palloc(sizeof(int) * chunk_count));
        for (int c = 0; c < chunk_count; c++)
            ends[c] = Min(group.count, (c + 1) * size);
    } else if (group.count > batch && !mapping->is_child) {
        ends =
            sort_group_by_key(&sorted, mapping, records, call, chunk_context, batch, &chunk_count);
    }
    for (int c = 0, start = 0; c < chunk_count; start = ends[c++]) {
        MemoryContext old = MemoryContextSwitchTo(chunk_context);
        Chunk chunk = make_chunk(mapping, call, records, sorted.members + start, ends[c] - start);
        apply_chunk(&chunk);
        MemoryContextSwitchTo(old);
        MemoryContextReset(chunk_context);
        CHECK_FOR_INTERRUPTS();
    }
}

// Applies a group; false when its collection has no mapping (its records failed).
bool apply_group_records(const Group &group, const InputRecord *records, const CallSettings &call,
                         MemoryContext chunk_context) {
    CompiledMapping *mapping = group_mapping(group, records, call);
    if (!mapping)
        return false;
    apply_mapping_group(mapping, group, records, call, chunk_context);
    unpin_mapping(mapping);
    return true;
}

// Applies one collection's records; sets what happened to them in *delta. False when the
// collection has no mapping.
bool apply_group(const Group &group, const InputRecord *records, const CallSettings &call,
                 MemoryContext chunk_context, ApplyCounts *delta) {
    ApplyCounts *counts = call.counts;
    ApplyCounts before = *counts;
    bool mapped = apply_group_records(group, records, call, chunk_context);
    *delta = {counts->inserted - before.inserted, counts->updated - before.updated,
              counts->deleted - before.deleted, counts->skipped - before.skipped,
              counts->failed - before.failed};
    return mapped;
}

int compare_groups(const void *a, const void *b) {
    const Group &x = *static_cast<const Group *>(a);
    const Group &y = *static_cast<const Group *>(b);
    int order = memcmp(x.collection, y.collection, Min(x.collection_len, y.collection_len));
    return order != 0 ? order : x.collection_len - y.collection_len;
}

// Groups the records by collection, in the order of the collections' names, so that calls
// mixing collections write them in one order. Records without a collection fail here.
// Returns the number of groups.
int group_by_collection(const InputRecord *records, int count, const CallSettings &call,
                        Group **groups_out) {
    Group *groups = static_cast<Group *>(palloc0(sizeof(Group) * count));
    int *group_of = static_cast<int *>(palloc(sizeof(int) * count));
    int group_count = 0, last = -1;
    int slot_count = 16;
    while (slot_count < 2 * count)
        slot_count <<= 1;
    int *slots = static_cast<int *>(palloc0(sizeof(int) * slot_count)); // group + 1, 0 = empty
    for (int i = 0; i < count; i++) {
        group_of[i] = -1;
        const InputRecord &input = records[i];
        JsonbValue collection;
        if (!input.record || !JsonContainerIsObject(input.record)) {
            fail_input(input, ERRCODE_INVALID_PARAMETER_VALUE, "record is not a JSON object", call);
            continue;
        }
        if (!json_key_find(input.record, "collection_id", &collection) ||
            collection.type != jbvString) {
            fail_input(input, ERRCODE_NOT_NULL_VIOLATION, "record has no \"collection_id\" string",
                       call);
            continue;
        }
        const char *name = collection.val.string.val;
        int len = collection.val.string.len;
        int found = -1;
        if (last >= 0 && groups[last].collection_len == len &&
            memcmp(groups[last].collection, name, len) == 0) {
            found = last;
        } else { // open addressing over the groups: linear in the number of records
            uint32 slot =
                hash_bytes(reinterpret_cast<const unsigned char *>(name), len) & (slot_count - 1);
            for (;; slot = (slot + 1) & (slot_count - 1)) {
                int j = slots[slot] - 1;
                if (j < 0) {
                    found = group_count++;
                    groups[found].collection = name;
                    groups[found].collection_len = len;
                    slots[slot] = found + 1;
                    break;
                }
                if (groups[j].collection_len == len &&
                    memcmp(groups[j].collection, name, len) == 0) {
                    found = j;
                    break;
                }
            }
        }
        group_of[i] = last = found;
        groups[found].count++;
    }
    for (int g = 0; g < group_count; g++) {
        groups[g].members = static_cast<int *>(palloc(sizeof(int) * groups[g].count));
        groups[g].count = 0;
    }
    for (int i = 0; i < count; i++)
        if (group_of[i] >= 0) {
            Group &group = groups[group_of[i]];
            group.members[group.count++] = i;
        }
    pfree(slots);
    qsort(groups, group_count, sizeof(Group), compare_groups);
    *groups_out = groups;
    return group_count;
}

} // namespace

void apply_child_records(CompiledMapping *mapping, const InputRecord *records, int count,
                         const CallSettings &call) {
    MemoryContext chunk_context =
        AllocSetContextCreate(CurrentMemoryContext, "sequin child chunk", ALLOCSET_DEFAULT_SIZES);
    Group group;
    group.collection = mapping->row.collection_id.c_str();
    group.collection_len = static_cast<int>(mapping->row.collection_id.size());
    group.members = static_cast<int *>(palloc(sizeof(int) * count));
    group.count = count;
    for (int i = 0; i < count; i++)
        group.members[i] = i;
    apply_mapping_group(mapping, group, records, call, chunk_context);
    MemoryContextDelete(chunk_context);
}

void apply_records(const InputRecord *records, int count, ApplyMode mode,
                   FailureCallback on_failure, void *callback_arg, ApplyCounts *counts) {
    memset(counts, 0, sizeof *counts);
    if (count == 0)
        return;
    // A call from a trigger of a target nests; unbounded, it stops here.
    check_stack_depth();
    MemoryContext call_context =
        AllocSetContextCreate(CurrentMemoryContext, "sequin apply", ALLOCSET_DEFAULT_SIZES);
    MemoryContext chunk_context =
        AllocSetContextCreate(call_context, "sequin chunk", ALLOCSET_DEFAULT_SIZES);
    MemoryContext old = MemoryContextSwitchTo(call_context);

    CallSettings call;
    memset(&call, 0, sizeof call);
    call.mode = mode;
    call.on_failure = on_failure;
    call.callback_arg = callback_arg;
    call.counts = counts;
    call.inputs = records;
    call.child_counts = new_child_counts(call_context);
    Group *groups;
    int group_count = group_by_collection(records, count, call, &groups);

    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    MemoryContextSwitchTo(call_context);
    call.bookkeeping_owner = sequin_relation_owner("tombstones");
    // Counted once every group is applied: a call that fails counts nothing (the counters
    // are written in place, so they would outlive its rollback).
    ApplyCounts *deltas =
        static_cast<ApplyCounts *>(palloc0(sizeof(ApplyCounts) * (group_count + 1)));
    bool *mapped = static_cast<bool *>(palloc0(sizeof(bool) * (group_count + 1)));
    for (int g = 0; g < group_count; g++)
        mapped[g] = apply_group(groups[g], records, call, chunk_context, &deltas[g]);
    for (int g = 0; g < group_count; g++)
        stats_add(groups[g].collection, groups[g].collection_len, mapped[g], deltas[g],
                  call.bookkeeping_owner);
    add_child_stats(call);
    SPI_finish();
    MemoryContextSwitchTo(old);
    MemoryContextDelete(call_context);
}

} // namespace sequin
