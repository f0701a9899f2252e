// Child collections (SPEC "Child collections: lists inside a record"): after a parent chunk
// is written, the lists of the parents it applied land in the child tables, set-based: per
// child mapping, the elements of all those lists are applied as the child's records (in
// chunks, in key order, like any records; recursively for lists of lists), then one DELETE
// removes the rows of those parents that their lists no longer hold, and the rows of the
// parents the chunk deleted. A removed row's own children go with it. The parent rows are
// written (and so locked) first: writers of one parent take turns on its children.
// C-shaped server code: errors raise, naming the parent record.
#include "apply/chunk.hpp"
#include "apply/statement_params.hpp"
#include "apply/write_races.hpp"
#include "mapping/mapping_cache.hpp"
#include "pg/fixed_settings.hpp"
#include "pg/json_path.hpp"
#include "pg/kept_plan.hpp"
#include "pg/stats_counters.hpp"

extern "C" {
#include "access/xact.h"
#include "executor/spi.h"
#include "utils/datum.h"
#include "utils/memutils.h"
}

namespace sequin {

// Per child collection of a call, what happened to its rows (sequin.stats).
struct ChildCounts {
    MemoryContext context; // the call's
    int count;
    int capacity;
    const char **collections;
    ApplyCounts *counts;
};

// The keys of the elements applied to one child mapping: they stay.
struct ListedKeys {
    MemoryContext context;
    int key_count;
    int count;
    int capacity;
    Datum **values; // per key column
};

namespace {

ApplyCounts *child_counts_of(const CallSettings &call, const char *collection) {
    ChildCounts *all = call.child_counts;
    for (int i = 0; i < all->count; i++)
        if (strcmp(all->collections[i], collection) == 0)
            return &all->counts[i];
    if (all->count == all->capacity) {
        all->capacity = Max(8, all->capacity * 2);
        MemoryContext old = MemoryContextSwitchTo(all->context);
        if (all->collections) {
            all->collections = static_cast<const char **>(
                repalloc(all->collections, sizeof(char *) * all->capacity));
            all->counts = static_cast<ApplyCounts *>(
                repalloc(all->counts, sizeof(ApplyCounts) * all->capacity));
        } else {
            all->collections = static_cast<const char **>(palloc(sizeof(char *) * all->capacity));
            all->counts = static_cast<ApplyCounts *>(palloc(sizeof(ApplyCounts) * all->capacity));
        }
        MemoryContextSwitchTo(old);
    }
    all->collections[all->count] = MemoryContextStrdup(all->context, collection);
    memset(&all->counts[all->count], 0, sizeof(ApplyCounts));
    return &all->counts[all->count++];
}

// Raises error for the chunk's record (Atomic: the message names it).
[[noreturn]] void fail_parent(Chunk *chunk, int record, int sqlstate, const char *reason) {
    CallSettings atomic = *chunk->call;
    atomic.mode = ApplyMode::Atomic;
    fail_input(chunk->inputs[chunk->members[record]], sqlstate, reason, atomic);
    pg_unreachable();
}

// The list of record in the parent's record (or element): false when absent or null (the
// children stay as they are). Sets *complete unless the list says it is partial.
bool find_list(Chunk *chunk, int record, const CompiledMapping &child, JsonbValue *list,
               bool *complete) {
    JsonbContainer *root = chunk->inputs[chunk->members[record]].record;
    if (!root || !json_path_find(root, child.list_path.path, list) || list->type == jbvNull)
        return false;
    if (list->type != jbvBinary || !JsonContainerIsArray(list->val.binary.data))
        fail_parent(chunk, record, ERRCODE_INVALID_PARAMETER_VALUE,
                    psprintf("the list of child collection \"%s\" is a JSON %s, not an array",
                             child.row.collection_id.c_str(), json_type_name(*list)));
    JsonbValue has_more;
    *complete = !(json_path_find(root, child.has_more_path.path, &has_more) &&
                  has_more.type == jbvBool && has_more.val.boolean);
    return true;
}

// The parent key arrays of records (the parent mapping's key values, in its key order).
void add_parent_keys(StatementParams *params, Chunk *chunk, const int *records, int count) {
    for (int k : chunk->mapping->key_columns)
        add_param(params, column_array(chunk, k, records, count));
}

// Runs a child's remove_unlisted with params (parent keys, then listed keys); the rows it
// removes take their own children with them. Returns the rows removed.
uint64 remove_unlisted(CompiledMapping *child, StatementParams *params, const CallSettings &call);

// The children of the child rows just removed (RETURNING their keys in SPI_tuptable).
void remove_children_of_removed(CompiledMapping *mapping, uint64 removed,
                                const CallSettings &call) {
    if (mapping->children.empty() || removed == 0)
        return;
    int key_count = static_cast<int>(mapping->key_columns.size());
    int rows = static_cast<int>(removed);
    // The removed keys, as arrays, before the next statement replaces SPI_tuptable.
    Datum *key_arrays = static_cast<Datum *>(palloc(sizeof(Datum) * key_count));
    Datum *values = static_cast<Datum *>(palloc(sizeof(Datum) * rows));
    bool *nulls = static_cast<bool *>(palloc(sizeof(bool) * rows));
    for (int k = 0; k < key_count; k++) {
        for (int row = 0; row < rows; row++)
            values[row] =
                SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, k + 1, &nulls[row]);
        key_arrays[k] =
            values_array(mapping->columns[mapping->key_columns[k]], values, nulls, rows);
    }
    SPI_freetuptable(SPI_tuptable);
    for (const std::string &name : mapping->children) {
        CompiledMapping *child = pin_mapping(name.c_str(), static_cast<int>(name.size()));
        StatementParams params;
        params_init_room(&params, key_count + static_cast<int>(child->key_columns.size()));
        for (int k = 0; k < key_count; k++)
            add_param(&params, key_arrays[k]);
        for (int k : child->key_columns) // no key is listed
            add_param(&params, values_array(child->columns[k], nullptr, nullptr, 0));
        remove_unlisted(child, &params, call);
        unpin_mapping(child);
    }
}

uint64 remove_unlisted(CompiledMapping *child, StatementParams *params, const CallSettings &call) {
    PlanRun how;
    how.nested_loop_only = child->remove_unlisted.join_in_batch_order;
    // Citus writes the parameters' values into the text it sends to the workers with the
    // session's settings: fixed, unambiguous forms (as run_statement does).
    int settings = child->citus != CitusKind::None ? enter_fixed_settings() : -1;
    uint64 removed = run_kept_plan(child->remove_unlisted.plan, child->remove_unlisted.sql.c_str(),
                                   params->values, params->nulls, how);
    if (settings >= 0)
        leave_fixed_settings(settings);
    child_counts_of(call, child->row.collection_id.c_str())->deleted += removed;
    remove_children_of_removed(child, removed, call);
    return removed;
}

// One child mapping's rows for the chunk's applied and removed parents.
void apply_child_mapping(Chunk *chunk, CompiledMapping *child, const int *applied,
                         int applied_count, const int *removed, int removed_count) {
    // The elements of the applied parents' lists, and which parents' lists are complete.
    int *complete = static_cast<int *>(palloc(sizeof(int) * (applied_count + removed_count + 1)));
    int complete_count = 0;
    JsonbValue *lists = static_cast<JsonbValue *>(palloc(sizeof(JsonbValue) * (applied_count + 1)));
    bool *has_list = static_cast<bool *>(palloc0(applied_count + 1));
    int element_count = 0;
    for (int i = 0; i < applied_count; i++) {
        bool whole = false;
        has_list[i] = find_list(chunk, applied[i], *child, &lists[i], &whole);
        if (!has_list[i])
            continue;
        element_count += JsonContainerSize(lists[i].val.binary.data);
        if (whole)
            complete[complete_count++] = applied[i];
    }
    InputRecord *inputs =
        static_cast<InputRecord *>(palloc(sizeof(InputRecord) * (element_count + 1)));
    ElementSource *elements =
        static_cast<ElementSource *>(palloc(sizeof(ElementSource) * (element_count + 1)));
    int n = 0;
    for (int i = 0; i < applied_count; i++) {
        if (!has_list[i])
            continue;
        int member = chunk->members[applied[i]];
        JsonbIterator *it = JsonbIteratorInit(lists[i].val.binary.data);
        JsonbValue value;
        JsonbIteratorToken token;
        int index = 0;
        while ((token = JsonbIteratorNext(&it, &value, true)) != WJB_DONE) {
            if (token != WJB_ELEM)
                continue;
            ElementSource &element = elements[n];
            element.parent_input = member;
            element.list_index = index;
            element.element = value;
            element.parent_root = chunk->inputs[member].record;
            InputRecord &input = inputs[n];
            input.record = value.type == jbvBinary && JsonContainerIsObject(value.val.binary.data)
                               ? value.val.binary.data
                               : nullptr;
            input.position = index;
            input.label = "element";
            n++;
            index++;
        }
    }

    ListedKeys listed;
    listed.context = CurrentMemoryContext;
    listed.key_count = static_cast<int>(child->key_columns.size());
    listed.count = 0;
    listed.capacity = Max(n, 1);
    listed.values = static_cast<Datum **>(palloc(sizeof(Datum *) * listed.key_count));
    for (int k = 0; k < listed.key_count; k++)
        listed.values[k] = static_cast<Datum *>(palloc(sizeof(Datum) * listed.capacity));

    const CallSettings &call = *chunk->call;
    CallSettings child_call;
    memset(&child_call, 0, sizeof child_call);
    child_call.mode = ApplyMode::Atomic; // a bad element fails its parent record
    child_call.counts = child_counts_of(call, child->row.collection_id.c_str());
    child_call.bookkeeping_owner = call.bookkeeping_owner;
    child_call.inputs = inputs;
    child_call.child_counts = call.child_counts;
    child_call.parent_call = &call;
    child_call.child_collection = child->row.collection_id.c_str();
    child_call.elements = elements;
    child_call.listed_keys = &listed;
    if (n > 0)
        apply_child_records(child, inputs, n, child_call);

    // The rows of complete lists' parents not listed, and of deleted parents.
    for (int i = 0; i < removed_count; i++)
        complete[complete_count++] = removed[i];
    if (complete_count == 0)
        return;
    StatementParams params;
    params_init_room(
        &params, static_cast<int>(chunk->mapping->key_columns.size() + child->key_columns.size()));
    add_parent_keys(&params, chunk, complete, complete_count);
    bool *no_nulls = static_cast<bool *>(palloc0(listed.count + 1));
    for (int k = 0; k < listed.key_count; k++)
        add_param(&params, values_array(child->columns[child->key_columns[k]], listed.values[k],
                                        no_nulls, listed.count));
    remove_unlisted(child, &params, call);
}

// The parent's key values go into the child's statements as arrays of the child's parent key
// column types, which its compilation checked against the parent's: a mapping compiled before
// the parent's table changed says so rather than pass values of another type.
void check_parent_key_types(const CompiledMapping *parent, const CompiledMapping *child) {
    bool same = parent->key_columns.size() == child->parent_key_columns.size();
    for (size_t k = 0; same && k < parent->key_columns.size(); k++)
        same = parent->columns[parent->key_columns[k]].type->type_oid ==
               child->columns[child->parent_key_columns[k]].type->type_oid;
    if (!same)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("mapping \"%s\": its parent key columns no longer have the types "
                               "of the conflict columns of parent \"%s\"",
                               child->row.collection_id.c_str(), parent->row.collection_id.c_str()),
                        errhint("Give them the same types, then write the child mapping again.")));
}

} // namespace

void keep_listed_keys(Chunk *chunk) {
    ListedKeys *listed = chunk->call->listed_keys;
    if (!listed)
        return;
    CompiledMapping *mapping = chunk->mapping;
    for (int record = 0; record < chunk->count; record++) {
        if (chunk->state[record] != Upsert)
            continue;
        if (listed->count == listed->capacity) {
            listed->capacity *= 2;
            for (int k = 0; k < listed->key_count; k++)
                listed->values[k] = static_cast<Datum *>(
                    repalloc(listed->values[k], sizeof(Datum) * listed->capacity));
        }
        const Datum *values = row_values(chunk, record);
        for (int k = 0; k < listed->key_count; k++) {
            const ValueType *type = mapping->columns[mapping->key_columns[k]].type;
            MemoryContext old = MemoryContextSwitchTo(listed->context);
            listed->values[k][listed->count] =
                datumCopy(values[mapping->key_columns[k]], type->typbyval, type->typlen);
            MemoryContextSwitchTo(old);
        }
        listed->count++;
    }
}

void apply_children(Chunk *chunk, const bool *winners, CommandId since) {
    CompiledMapping *mapping = chunk->mapping;
    int *applied = static_cast<int *>(palloc(sizeof(int) * (chunk->count + 1)));
    int *removed = static_cast<int *>(palloc(sizeof(int) * (chunk->count + 1)));
    int candidates = 0, removed_count = 0;
    // Nothing was written without a transaction id (a replay; on Citus the rows are written
    // on the workers); a record found stale by the look-up wrote nothing.
    bool wrote =
        mapping->citus != CitusKind::None || TransactionIdIsValid(GetTopTransactionIdIfAny());
    for (int record = 0; record < chunk->count; record++) {
        bool stale = chunk->stored[record] && !chunk->stored_older[record];
        if (wrote && winners[record] && !chunk->failed[record] && !stale)
            applied[candidates++] = record;
        if (chunk->removed[record])
            removed[removed_count++] = record;
    }
    // Applied: the parent's row is the one this chunk wrote (a stale record wrote nothing):
    // on Citus, as the upserts returned it; else as the row's xmin and cmin say.
    bool *written = static_cast<bool *>(palloc0(candidates + 1));
    if (chunk->all_upserts_written)
        memset(written, 1, candidates);
    else if (chunk->written)
        for (int i = 0; i < candidates; i++)
            written[i] = chunk->written[applied[i]];
    else if (candidates > 0 && !rows_written_since(chunk, applied, candidates, since, written))
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("mapping \"%s\": child collections need a heap table as parent "
                               "target",
                               mapping->row.collection_id.c_str())));
    int applied_count = 0;
    for (int i = 0; i < candidates; i++)
        if (written[i])
            applied[applied_count++] = applied[i];
    if (applied_count == 0 && removed_count == 0)
        return;
    for (const std::string &name : mapping->children) {
        CompiledMapping *child = pin_mapping(name.c_str(), static_cast<int>(name.size()));
        check_parent_key_types(mapping, child);
        apply_child_mapping(chunk, child, applied, applied_count, removed, removed_count);
        unpin_mapping(child);
    }
}

ChildCounts *new_child_counts(MemoryContext context) {
    ChildCounts *counts =
        static_cast<ChildCounts *>(MemoryContextAllocZero(context, sizeof(ChildCounts)));
    counts->context = context;
    return counts;
}

void add_child_stats(const CallSettings &call) {
    ChildCounts *all = call.child_counts;
    for (int i = 0; i < all->count; i++)
        stats_add(all->collections[i], static_cast<int>(strlen(all->collections[i])), true,
                  all->counts[i], call.bookkeeping_owner);
}

ChildCounts *save_child_counts(const CallSettings &call) {
    ChildCounts *all = call.child_counts;
    ChildCounts *saved = static_cast<ChildCounts *>(palloc(sizeof(ChildCounts)));
    *saved = *all;
    saved->counts = static_cast<ApplyCounts *>(palloc(sizeof(ApplyCounts) * (all->count + 1)));
    memcpy(saved->counts, all->counts, sizeof(ApplyCounts) * all->count);
    return saved;
}

void restore_child_counts(const CallSettings &call, ChildCounts *saved) {
    ChildCounts *all = call.child_counts;
    // Collections first counted since are kept, at zero.
    memcpy(all->counts, saved->counts, sizeof(ApplyCounts) * saved->count);
    for (int i = saved->count; i < all->count; i++)
        memset(&all->counts[i], 0, sizeof(ApplyCounts));
}

} // namespace sequin
