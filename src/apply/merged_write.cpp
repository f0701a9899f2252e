// A looked-up chunk written by one MERGE, rows in key order: the fast path of
// write_in_key_runs. Each record's action is what the look-up found (insert a key not
// stored, update a stored older row, delete a stored older row) and fires only while the
// table still agrees, so the rows MERGE reports equal the actions expected exactly when the
// table did not change since the look-up: the counts are then the look-up's. Any other
// outcome (a concurrent change, a trigger's NULL, a bad record, a target MERGE cannot write)
// rolls the MERGE back and leaves the chunk to the runs of chunk_writes.cpp, which find
// out what happened record by record. It never waits for another writer while holding the
// chunk's locks: a writer in progress at one of its keys sends it to the runs as well.
#include "apply/chunk.hpp"
#include "apply/statement_params.hpp"
#include "apply/tombstones.hpp"
#include "apply/write_isolation.hpp"
#include "apply/write_races.hpp"
#include "pg/kept_plan.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
}

namespace sequin {

namespace {

enum MergeAction : int32 { MergeInsert = 0, MergeUpdate = 1, MergeDelete = 2 };

// The MERGE wrote other rows than the look-up expected (raised to roll it back).
bool table_changed = false;

// The records of the chunk's MERGE (records in key order) and their actions; deletes of keys
// not stored, or stored newer, only leave tombstones. Returns how many act.
int merge_actions(Chunk *chunk, const int *records, int count, int *acting, int32 *actions,
                  int *deletes, int *delete_count) {
    int acts = 0;
    *delete_count = 0;
    for (int i = 0; i < count; i++) {
        int record = records[i];
        if (chunk->state[record] == Delete) {
            deletes[(*delete_count)++] = record;
            if (!(chunk->stored[record] && chunk->stored_older[record]))
                continue;
            actions[acts] = MergeDelete;
        } else {
            actions[acts] = chunk->stored[record] ? MergeUpdate : MergeInsert;
        }
        acting[acts++] = record;
    }
    return acts;
}

// MERGE's plan, prepared at its first use; NULL when the target cannot take a MERGE.
SPIPlanPtr merge_plan(PreparedStatement &statement, CompiledMapping *mapping) {
    if (mapping->merge_unusable || statement.sql.empty())
        return nullptr;
    if (statement.plan)
        return statement.plan;
    ErrorData *error = try_in_subtransaction([&] {
        kept_plan(&statement.plan, statement.sql.c_str(),
                  static_cast<int>(statement.arg_types.size()), statement.arg_types.data(),
                  CURSOR_OPT_GENERIC_PLAN);
    });
    if (error) { // say, a table with rules
        FreeErrorData(error);
        mapping->merge_unusable = true;
        return nullptr;
    }
    return statement.plan;
}

// Runs the MERGE of acting (with their actions); raises (to be rolled back) when it wrote
// other rows than expected.
void run_merge(Chunk *chunk, PreparedStatement &statement, const int *acting, const int32 *actions,
               int acts) {
    CompiledMapping *mapping = chunk->mapping;
    StatementParams params;
    params_init(&params, chunk);
    for (int i = 0; i < chunk->column_count; i++)
        if (!mapping->columns[i].is_now)
            add_param(&params, column_array(chunk, i, acting, acts));
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * acts));
    for (int i = 0; i < acts; i++)
        elements[i] = Int32GetDatum(actions[i]);
    add_param(&params,
              PointerGetDatum(construct_array(elements, acts, INT4OID, 4, true, TYPALIGN_INT)));
    uint64 written = run_statement(chunk, statement, &params, false);
    table_changed = written != static_cast<uint64>(acts);
    if (table_changed)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("the table changed since the look-up")));
}

// The MERGE and what follows it: tombstones, and the races settled.
void merge_and_settle(Chunk *chunk, PreparedStatement &statement, const int *acting,
                      const int32 *actions, int acts, const int *deletes, int delete_count,
                      int *inserts, bool *removed) {
    if (acts > 0)
        run_merge(chunk, statement, acting, actions, acts);
    int insert_count = 0;
    for (int i = 0; i < acts; i++)
        if (actions[i] == MergeInsert)
            inserts[insert_count++] = acting[i];
    for (int i = 0; i < delete_count; i++) // the MERGE removed what the look-up found
        removed[i] = chunk->stored[deletes[i]] && chunk->stored_older[deletes[i]];
    chunk->write_attempt = 1;
    if (delete_count > 0) {
        write_tombstones(chunk, deletes, delete_count, removed);
        settle_deletes(chunk, deletes, delete_count, false);
    }
    settle_inserts(chunk, inserts, insert_count, false);
}

// Of a failed MERGE's error: the error itself when it is a record's (or the caller's: a
// privilege), NULL when it is a race (freed) or MERGE cannot write the target.
ErrorData *record_error(CompiledMapping *mapping, ErrorData *failure) {
    TransactionId yield_to;
    int conflict_at;
    bool conflict = take_write_conflict(failure->sqlerrcode, &yield_to, &conflict_at);
    if (failure->sqlerrcode == ERRCODE_FEATURE_NOT_SUPPORTED) // say, a foreign partition
        mapping->merge_unusable = true;
    else if (!conflict && !table_changed && !is_retryable_deadlock(failure->sqlerrcode) &&
             failure->sqlerrcode != ERRCODE_UNIQUE_VIOLATION) // a key inserted meanwhile
        return failure;
    FreeErrorData(failure);
    return nullptr;
}

} // namespace

bool update_all_merged(Chunk *chunk, int *records, int count, ErrorData **error) {
    CompiledMapping *mapping = chunk->mapping;
    *error = nullptr;
    if (count == 0)
        return true;
    PreparedStatement &statement = mapping->merge_upserts;
    if (!merge_plan(statement, mapping))
        return false;
    sort_by_key(chunk, records, count);
    int32 *actions = static_cast<int32 *>(palloc(sizeof(int32) * count));
    for (int i = 0; i < count; i++)
        actions[i] = MergeUpdate;
    TransactionId yield_to;
    int conflict_at;
    (void)take_write_conflict(0, &yield_to, &conflict_at); // none is pending yet
    table_changed = false;
    ErrorData *failure = try_in_subtransaction(
        [&] { run_merge(chunk, statement, records, actions, count); }, Retries::Fallback);
    if (failure) {
        *error = record_error(mapping, failure);
        return false;
    }
    chunk->call->counts->updated += count;
    for (int i = 0; i < count; i++)
        chunk->state[records[i]] = Done;
    return true;
}

bool write_merged(Chunk *chunk, const int *records, int count, ErrorData **error) {
    CompiledMapping *mapping = chunk->mapping;
    *error = nullptr;
    if (count < 2) // one statement either way
        return false;
    int *acting = static_cast<int *>(palloc(sizeof(int) * count));
    int32 *actions = static_cast<int32 *>(palloc(sizeof(int32) * count));
    int *deletes = static_cast<int *>(palloc(sizeof(int) * count));
    int delete_count;
    int acts = merge_actions(chunk, records, count, acting, actions, deletes, &delete_count);
    bool deleting = false;
    for (int i = 0; i < acts; i++)
        deleting |= actions[i] == MergeDelete;
    PreparedStatement &statement = deleting ? mapping->merge_write : mapping->merge_upserts;
    if (acts > 0 && !merge_plan(statement, mapping)) {
        elog(DEBUG1,
             "sequin_upsert: %d records of \"%s\" written run by run: MERGE cannot write %s", count,
             mapping->row.collection_id.c_str(), mapping->target_name.c_str());
        return false;
    }
    // A delete's other values were never converted: they travel as NULLs.
    for (int i = 0; i < delete_count; i++)
        for (int c = 0; c < chunk->column_count; c++)
            if (!mapping->columns[c].is_key && !mapping->columns[c].is_order)
                row_nulls(chunk, deletes[i])[c] = true;
    int *inserts = static_cast<int *>(palloc(sizeof(int) * count));
    bool *removed = static_cast<bool *>(palloc0(sizeof(bool) * count));
    TransactionId yield_to;
    int conflict_at;
    (void)take_write_conflict(0, &yield_to, &conflict_at); // none is pending yet
    table_changed = false;
    ErrorData *failure = try_in_subtransaction(
        [&] {
            merge_and_settle(chunk, statement, acting, actions, acts, deletes, delete_count,
                             inserts, removed);
        },
        Retries::Fallback);
    if (failure) {
        elog(DEBUG1, "sequin_upsert: %d records of \"%s\" written run by run: %s", count,
             mapping->row.collection_id.c_str(), failure->message);
        *error = record_error(mapping, failure);
        return false;
    }
    ApplyCounts *counts = chunk->call->counts;
    for (int i = 0; i < acts; i++) {
        switch (actions[i]) {
        case MergeInsert:
            counts->inserted++;
            break;
        case MergeUpdate:
            counts->updated++;
            break;
        default:
            counts->deleted++;
            chunk->removed[acting[i]] = true;
        }
        chunk->state[acting[i]] = Done;
    }
    for (int i = 0; i < delete_count; i++)
        if (chunk->state[deletes[i]] != Done) {
            counts->skipped++;
            chunk->state[deletes[i]] = Done;
        }
    return true;
}

} // namespace sequin
