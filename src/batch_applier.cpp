// The applier. For each collection in a batch, in chunks of sequin.batch_size records:
//   1. convert each record's key and version (the record's JSON walked in place);
//   2. keep one record per key: the newest version (array order without an order column);
//   3. look up the stored versions of the chunk's keys in one statement, and skip stale
//      records before converting or writing anything else (a replay is read-only);
//   4. check tombstones for keys that are not stored, so a late record cannot resurrect a
//      deleted row;
//   5. convert the other values of the records that remain, and write them with prepared
//      statements fed with one array per column: new keys by a plain INSERT (or, if one
//      exists after all, INSERT ... ON CONFLICT DO NOTHING), stored keys by an UPDATE
//      guarded by the version (what it misses is looked up again, and written by INSERT ...
//      ON CONFLICT DO UPDATE), deletes by DELETE ... USING.
// After a chunk of new keys (a fresh load) the next chunk skips steps 3 and 4 and inserts
// first; after a chunk of updates, the next one starts with a guarded UPDATE and looks up
// only what it did not update (both only while the collection has no tombstones).
// Writes run in a subtransaction per statement; when one fails, it is split in halves until
// the failing record is found: Atomic mode raises its error, Isolate mode reports it and
// applies the rest. C-shaped code: no objects with destructors live in these frames.
#include "batch_applier.hpp"
#include "bookkeeping.hpp"
#include "json_path.hpp"
#include "mapping_cache.hpp"
#include "stats.hpp"
#include "value_converter.hpp"

extern "C" {
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "access/htup_details.h"
#include "catalog/pg_class.h"
}

#include <cstring>

int sequin_batch_size = 1000;

namespace sequin {

namespace {

enum RecordState : uint8 { Pending, Done, Upsert, Delete };

// One chunk of records of one collection, with everything derived from them.
struct Chunk {
    CompiledMapping *m;
    ApplyMode mode;
    FailureCallback on_failure;
    void *callback_arg;
    ApplyCounts *counts;
    const InputRecord *inputs;
    const int *members; // chunk record -> input index
    int n;
    int ncols;
    Datum *values; // n * ncols
    bool *nulls;
    uint8 *state;
    bool *exists;
    bool *newer;
    uint32 *key_hash;
    char **key;
    int *key_len;
    StringInfoData key_scratch; // builds one record's key at a time
    JsonbValue *top_values;     // the record's top-level values of the phase's keys
    bool *top_found;
    int next;           // conversion progress (survives a longjmp: lives in memory)
    const char *column; // column being converted, for messages
    Oid owner;          // extension owner, for bookkeeping statements
};

// How often a statement chosen as a deadlock victim runs again before the call fails.
constexpr int kDeadlockRetries = 5;

// Kinds of write, each one prepared statement (deletes also write tombstones).
enum WriteKind {
    WriteInsert,
    WriteUpdate,
    WriteDelete,
    WriteInsertNew,
    WriteInsertPlain,
    WriteUpdateFirst // the records it updates are done; the others go on to a look-up
};

// A deadlock victim at READ COMMITTED: rolling back the statement's subtransaction frees
// its locks, and the statement can simply run again (with a new snapshot).
bool is_retryable_deadlock(int sqlstate) {
    return sqlstate == ERRCODE_T_R_DEADLOCK_DETECTED && !IsolationUsesXactSnapshot();
}

bool is_transaction_level_error(int sqlstate) {
    // Serialization failures, deadlocks, cancels, out of memory: not a record's fault.
    const char *state = unpack_sql_state(sqlstate);
    return strncmp(state, "40", 2) == 0 || strncmp(state, "53", 2) == 0 ||
           strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0 ||
           strncmp(state, "XX", 2) == 0;
}

// Runs fn in a subtransaction. Returns NULL, or the error (the subtransaction rolled back).
// A deadlock is returned only to a caller that retries it (retries_deadlock).
template <typename Fn> ErrorData *try_in_subtransaction(Fn &&fn, bool retries_deadlock = false) {
    MemoryContext context = CurrentMemoryContext;
    ResourceOwner owner = CurrentResourceOwner;
    ErrorData *volatile error = nullptr;
    BeginInternalSubTransaction(nullptr);
    MemoryContextSwitchTo(context);
    PG_TRY();
    {
        fn();
        ReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(context);
        CurrentResourceOwner = owner;
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(context);
        error = CopyErrorData();
        FlushErrorState();
        RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(context);
        CurrentResourceOwner = owner;
        if (is_transaction_level_error(error->sqlerrcode) &&
            !(retries_deadlock && is_retryable_deadlock(error->sqlerrcode)))
            ReThrowError(error);
    }
    PG_END_TRY();
    return error;
}

void append_json_scalar(StringInfo out, JsonbContainer *record, const char *key) {
    JsonbValue value;
    if (!record || !json_key_find(record, key, &value)) {
        appendStringInfoString(out, "none");
    } else if (value.type == jbvString) {
        appendStringInfo(out, "\"%.*s\"", value.val.string.len, value.val.string.val);
    } else if (value.type == jbvNumeric) {
        appendStringInfoString(out, DatumGetCString(DirectFunctionCall1(
                                        numeric_out, NumericGetDatum(value.val.numeric))));
    } else {
        appendStringInfoString(out, json_type_name(value));
    }
}

// "record 3 (id "sub_1", collection_id "stripe:subscription"): column "quantity": <reason>"
char *describe_failure(const InputRecord &in, const char *column, const char *reason) {
    StringInfoData out;
    initStringInfo(&out);
    appendStringInfo(&out, "%s %lld (id ", in.label, static_cast<long long>(in.position));
    append_json_scalar(&out, in.record, "id");
    appendStringInfoString(&out, ", collection_id ");
    append_json_scalar(&out, in.record, "collection_id");
    appendStringInfoString(&out, "): ");
    if (column)
        appendStringInfo(&out, "column \"%s\": ", column);
    appendStringInfoString(&out, reason);
    return out.data;
}

// A record failed: Atomic raises (error's SQLSTATE and detail kept), Isolate reports it.
void fail_record(const InputRecord &in, const char *column, ErrorData *error, ApplyMode mode,
                 FailureCallback on_failure, void *arg, ApplyCounts *counts) {
    char *message = describe_failure(in, column, error->message ? error->message : "error");
    if (mode == ApplyMode::Atomic) {
        error->message = message;
        error->context = nullptr;
        ReThrowError(error);
    }
    counts->failed++;
    on_failure(arg, in.position, error->sqlerrcode, message);
}

void fail_chunk_record(Chunk *c, int r, const char *column, ErrorData *error) {
    c->state[r] = Done;
    fail_record(c->inputs[c->members[r]], column, error, c->mode, c->on_failure, c->callback_arg,
                c->counts);
}

// ---- 1. conversion -----------------------------------------------------------------

void append_key_part(StringInfo key, const ValueType *vt, Datum value) {
    const char *bytes;
    int length;
    if (vt->typbyval) {
        bytes = reinterpret_cast<const char *>(&value);
        length = sizeof(Datum);
    } else if (vt->typlen == -1) {
        struct varlena *v = PG_DETOAST_DATUM_PACKED(value);
        bytes = VARDATA_ANY(v);
        length = VARSIZE_ANY_EXHDR(v);
    } else if (vt->typlen > 0) {
        bytes = DatumGetPointer(value);
        length = vt->typlen;
    } else {
        bytes = DatumGetCString(value);
        length = strlen(bytes);
    }
    appendBinaryStringInfo(key, reinterpret_cast<const char *>(&length), sizeof length);
    appendBinaryStringInfo(key, bytes, length);
}

// Finds the top-level values of a phase's keys in the record: one pass over its entries.
void find_top_values(Chunk *c, const InputRecord &in, const std::vector<PathStep> &keys) {
    json_find_keys(in.record, keys.data(), static_cast<int>(keys.size()), c->top_values,
                   c->top_found);
}

// Converts column i of the record whose top-level values were found last (values and
// nulls already point at the record's row).
void convert_column(Chunk *c, int i, Datum *values, bool *nulls) {
    MappedColumn &col = c->m->columns[i];
    JsonbValue value;
    c->column = col.name.c_str();
    if (!c->top_found[col.key_slot] ||
        !json_path_find_from(c->top_values[col.key_slot], col.path, &value) ||
        value.type == jbvNull) {
        if (col.required)
            ereport(ERROR, (errcode(ERRCODE_NOT_NULL_VIOLATION),
                            errmsg("required value is missing (source path has no value)")));
        value_check_null(col.type);
        return;
    }
    values[i] = value_convert(col.type, &value);
    nulls[i] = false;
}

// Phase 1: what the record is (upsert or delete) and its identity: key and version.
void convert_identity(Chunk *c, int r) {
    CompiledMapping *m = c->m;
    const InputRecord &in = c->inputs[c->members[r]];
    Datum *values = c->values + static_cast<size_t>(r) * c->ncols;
    bool *nulls = c->nulls + static_cast<size_t>(r) * c->ncols;
    c->column = nullptr;

    find_top_values(c, in, m->identity_keys);
    bool is_delete = false;
    if (c->top_found[m->deleted_slot]) {
        const JsonbValue &value = c->top_values[m->deleted_slot];
        if (value.type == jbvBool)
            is_delete = value.val.boolean;
        else if (value.type != jbvNull)
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("\"deleted\" must be a boolean, not a JSON %s",
                                   json_type_name(value))));
    }
    if (is_delete && m->on_delete == OnDelete::Ignore) {
        c->state[r] = Done;
        c->counts->skipped++;
        return;
    }
    if (is_delete && m->on_delete == OnDelete::Upsert)
        is_delete = false;

    for (int i = 0; i < c->ncols; i++) {
        nulls[i] = true;
        values[i] = (Datum)0;
        if (m->columns[i].is_key || m->columns[i].is_order)
            convert_column(c, i, values, nulls);
        if (m->columns[i].is_key && nulls[i]) // even when not listed in "required"
            ereport(ERROR, (errcode(ERRCODE_NOT_NULL_VIOLATION),
                            errmsg("conflict column value is missing: a record needs its key")));
    }
    c->column = nullptr;

    StringInfo key = &c->key_scratch;
    resetStringInfo(key);
    for (int k : m->key_columns)
        append_key_part(key, m->columns[k].type, values[k]);
    c->key[r] = static_cast<char *>(palloc(key->len));
    memcpy(c->key[r], key->data, key->len);
    c->key_len[r] = key->len;
    c->key_hash[r] = hash_bytes(reinterpret_cast<const unsigned char *>(key->data), key->len);
    c->state[r] = is_delete ? Delete : Upsert;
}

// Phase 2, only for records that will be written: the other mapped values. (A stale
// record is skipped without converting them: a replay converts keys and versions only.)
void convert_values(Chunk *c, int r) {
    if (c->state[r] != Upsert)
        return;
    const InputRecord &in = c->inputs[c->members[r]];
    Datum *values = c->values + static_cast<size_t>(r) * c->ncols;
    bool *nulls = c->nulls + static_cast<size_t>(r) * c->ncols;
    find_top_values(c, in, c->m->value_keys);
    for (int i = 0; i < c->ncols; i++) {
        const MappedColumn &col = c->m->columns[i];
        if (!col.is_now && !col.is_key && !col.is_order)
            convert_column(c, i, values, nulls);
    }
    c->column = nullptr;
}

typedef void (*RecordStep)(Chunk *c, int r);

// Runs step over every record of the chunk. A failing record: Atomic raises its error;
// Isolate rolls back the step's subtransaction (a domain's CHECK may have run any SQL),
// reports the record, and resumes after it.
void convert_chunk(Chunk *c, RecordStep step) {
    c->next = 0;
    if (c->mode == ApplyMode::Atomic) {
        MemoryContext context = CurrentMemoryContext;
        PG_TRY();
        {
            for (; c->next < c->n; c->next++)
                step(c, c->next);
        }
        PG_CATCH();
        {
            MemoryContextSwitchTo(context);
            ErrorData *error = CopyErrorData();
            FlushErrorState();
            fail_chunk_record(c, c->next, c->column, error);
        }
        PG_END_TRY();
        return;
    }
    while (c->next < c->n) {
        ErrorData *error = try_in_subtransaction([c, step] {
            for (; c->next < c->n; c->next++)
                step(c, c->next);
        });
        if (error) {
            fail_chunk_record(c, c->next, c->column, error);
            c->next++;
        }
    }
}

// ---- 2. one record per key ------------------------------------------------------------

// Does record a carry a newer version than record b? (NULL is oldest; equal is not newer.)
bool newer_version(Chunk *c, int a, int b) {
    int o = c->m->order_column;
    bool a_null = c->nulls[static_cast<size_t>(a) * c->ncols + o];
    bool b_null = c->nulls[static_cast<size_t>(b) * c->ncols + o];
    if (a_null || b_null)
        return !a_null && b_null;
    Datum result = FunctionCall2Coll(&c->m->order_compare, c->m->order_collation,
                                     c->values[static_cast<size_t>(a) * c->ncols + o],
                                     c->values[static_cast<size_t>(b) * c->ncols + o]);
    return DatumGetInt32(result) > 0;
}

void keep_newest_per_key(Chunk *c) {
    int size = 16;
    while (size < 2 * c->n)
        size <<= 1;
    int *slots = static_cast<int *>(palloc0(sizeof(int) * size)); // record + 1, 0 = empty
    for (int r = 0; r < c->n; r++) {
        if (c->state[r] == Done)
            continue;
        int slot = c->key_hash[r] & (size - 1);
        while (true) {
            int w = slots[slot] - 1;
            if (w < 0) {
                slots[slot] = r + 1;
                break;
            }
            if (c->key_hash[w] == c->key_hash[r] && c->key_len[w] == c->key_len[r] &&
                memcmp(c->key[w], c->key[r], c->key_len[r]) == 0) {
                // As if applied one by one: the later record wins unless it is not newer.
                bool r_wins = c->m->order_column < 0 || newer_version(c, r, w);
                int loser = r_wins ? w : r;
                c->state[loser] = Done;
                c->counts->skipped++;
                slots[slot] = (r_wins ? r : w) + 1;
                break;
            }
            slot = (slot + 1) & (size - 1);
        }
    }
    pfree(slots);
}

// ---- parameters -----------------------------------------------------------------------

Datum index_array(const int *subset, int n) {
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (n ? n : 1)));
    for (int i = 0; i < n; i++)
        elements[i] = Int32GetDatum(subset[i]);
    return PointerGetDatum(construct_array(elements, n, INT4OID, 4, true, TYPALIGN_INT));
}

// The values of column col for the records in subset, as the array the statement expects.
Datum column_array(Chunk *c, int col, const int *subset, int n) {
    const MappedColumn &mc = c->m->columns[col];
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (n ? n : 1)));
    bool *nulls = static_cast<bool *>(palloc(sizeof(bool) * (n ? n : 1)));
    Oid output_fn = InvalidOid;
    bool varlena;
    if (mc.param_as_text)
        getTypeOutputInfo(mc.type->type_oid, &output_fn, &varlena);
    for (int i = 0; i < n; i++) {
        size_t at = static_cast<size_t>(subset[i]) * c->ncols + col;
        nulls[i] = c->nulls[at];
        elements[i] = c->values[at];
        if (mc.param_as_text && !nulls[i])
            elements[i] = CStringGetTextDatum(OidOutputFunctionCall(output_fn, elements[i]));
    }
    int dims[1] = {n};
    int lower_bounds[1] = {1};
    if (mc.param_as_text)
        return PointerGetDatum(construct_md_array(elements, nulls, 1, dims, lower_bounds, TEXTOID,
                                                  -1, false, TYPALIGN_INT));
    return PointerGetDatum(construct_md_array(elements, nulls, 1, dims, lower_bounds,
                                              mc.type->type_oid, mc.type->typlen, mc.type->typbyval,
                                              mc.type->typalign));
}

// A statement's parameters: one array per mapped column at most, plus a few.
struct Params {
    Datum *values;
    char *nulls;
    int count;
    int capacity;
};

void params_init(Params *p, const Chunk *c) {
    p->capacity = c->ncols + 4;
    p->values = static_cast<Datum *>(palloc(sizeof(Datum) * p->capacity));
    p->nulls = static_cast<char *>(palloc(p->capacity + 1));
    p->count = 0;
    p->nulls[0] = '\0';
}

void add_param(Params *p, Datum value) {
    if (p->count >= p->capacity)
        elog(ERROR, "sequin_upsert: too many statement parameters");
    p->values[p->count] = value;
    p->nulls[p->count] = ' ';
    p->count++;
    p->nulls[p->count] = '\0';
}

// [index array,] key arrays, [order array] [, collection_id]: the shape of the
// lookup, remove and tombstone statements.
void key_params(Chunk *c, Params *p, const int *subset, int n, bool with_index, bool with_order,
                bool with_collection) {
    p->count = 0;
    if (with_index)
        add_param(p, index_array(subset, n));
    for (int k : c->m->key_columns)
        add_param(p, column_array(c, k, subset, n));
    if (with_order)
        add_param(p, column_array(c, c->m->order_column, subset, n));
    if (with_collection)
        add_param(p, CStringGetTextDatum(c->m->row.collection_id.c_str()));
}

uint64 run_statement(const PreparedStatement &s, Params *p, bool as_owner, Oid owner) {
    MemoryContext context = CurrentMemoryContext;
    // The plan is made (or remade) at execution: a join with the batch may then only be a
    // nested loop over the batch. On error, the subtransaction's abort restores the settings.
    int guc_level = -1;
    if (s.join_in_batch_order) {
        guc_level = NewGUCNestLevel();
        for (const char *setting : {"enable_hashjoin", "enable_mergejoin"})
            (void)set_config_option(setting, "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
                                    true, 0, false);
    }
    // Bookkeeping statements touch the extension's own tables, not the caller's.
    int rc = as_owner ? spi_execute_as(owner, s.plan, p->values, p->nulls, false, 0)
                      : SPI_execute_plan(s.plan, p->values, p->nulls, false, 0);
    if (guc_level >= 0)
        AtEOXact_GUC(true, guc_level);
    if (rc < 0)
        elog(ERROR, "sequin_upsert: statement failed (%s): %s", SPI_result_code_string(rc),
             s.sql.c_str());
    MemoryContextSwitchTo(context);
    return SPI_processed;
}

// ---- 3./4. look-ups -------------------------------------------------------------------

// Collects the records that wanted() selects into subset; returns how many.
int pending_records(Chunk *c, int *subset, bool (*wanted)(Chunk *, int)) {
    int n = 0;
    for (int r = 0; r < c->n; r++)
        if (wanted(c, r))
            subset[n++] = r;
    return n;
}

bool is_pending(Chunk *c, int r) {
    return c->state[r] == Upsert || c->state[r] == Delete;
}
bool is_upsert(Chunk *c, int r) {
    return c->state[r] == Upsert;
}
bool is_delete(Chunk *c, int r) {
    return c->state[r] == Delete;
}
bool is_new_upsert(Chunk *c, int r) {
    return c->state[r] == Upsert && !c->exists[r];
}
typedef bool (*RecordFilter)(Chunk *c, int r);

// Marks which of the wanted records' keys are stored, and skips those that are stale.
void lookup_stored_versions(Chunk *c, int *subset, RecordFilter wanted) {
    int n = pending_records(c, subset, wanted);
    if (n == 0)
        return;
    Params p;
    params_init(&p, c);
    key_params(c, &p, subset, n, true, c->m->order_column >= 0, false);
    run_statement(c->m->lookup, &p, false, c->owner);
    for (uint64 row = 0; row < SPI_processed; row++) {
        bool isnull;
        HeapTuple tuple = SPI_tuptable->vals[row];
        int r = DatumGetInt32(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull));
        bool newer = DatumGetBool(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
        c->exists[r] = true;
        c->newer[r] = newer && !isnull;
    }
    SPI_freetuptable(SPI_tuptable);
    for (int i = 0; i < n; i++) {
        int r = subset[i];
        if (c->exists[r] && !c->newer[r]) { // stale: the stored row is as new or newer
            c->state[r] = Done;
            c->counts->skipped++;
        }
    }
}

// Has anything of this collection ever been deleted? One probe instead of one per key.
bool collection_has_tombstones(Chunk *c) {
    if (c->m->order_column < 0)
        return false;
    Params p;
    params_init(&p, c);
    add_param(&p, CStringGetTextDatum(c->m->row.collection_id.c_str()));
    return run_statement(c->m->tomb_any, &p, true, c->owner) > 0;
}

void skip_tombstoned(Chunk *c, int *subset) {
    int n = pending_records(c, subset, is_new_upsert);
    if (n == 0 || !collection_has_tombstones(c))
        return;
    Params p;
    params_init(&p, c);
    key_params(c, &p, subset, n, true, true, true);
    run_statement(c->m->tomb_lookup, &p, true, c->owner);
    for (uint64 row = 0; row < SPI_processed; row++) {
        bool isnull;
        int r = DatumGetInt32(
            SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull));
        if (c->state[r] == Upsert) {
            c->state[r] = Done;
            c->counts->skipped++;
        }
    }
    SPI_freetuptable(SPI_tuptable);
}

// ---- 5. writes ------------------------------------------------------------------------

// Runs one write for the records in subset; returns the rows it wrote.
uint64 execute_write(Chunk *c, WriteKind kind, const int *subset, int n) {
    Params p;
    params_init(&p, c);
    if (kind == WriteDelete) {
        key_params(c, &p, subset, n, false, c->m->order_column >= 0, false);
        uint64 deleted = run_statement(c->m->remove, &p, false, c->owner);
        if (c->m->order_column >= 0) { // tombstones for every delete, applied or not
            key_params(c, &p, subset, n, false, true, true);
            run_statement(c->m->tomb_upsert, &p, true, c->owner);
        }
        return deleted;
    }
    p.count = 0;
    for (int i = 0; i < c->ncols; i++)
        if (!c->m->columns[i].is_now)
            add_param(&p, column_array(c, i, subset, n));
    if (kind == WriteUpdateFirst)
        add_param(&p, index_array(subset, n));
    const PreparedStatement &s = kind == WriteInsertNew     ? c->m->insert_new
                                 : kind == WriteInsertPlain ? c->m->insert_plain
                                 : kind == WriteUpdateFirst ? c->m->update_first
                                                            : c->m->upsert;
    uint64 written = run_statement(s, &p, false, c->owner);
    if (kind == WriteUpdateFirst) {
        for (uint64 row = 0; row < SPI_processed; row++) {
            bool isnull;
            int r = DatumGetInt32(
                SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull));
            c->state[r] = Done;
        }
        SPI_freetuptable(SPI_tuptable);
    }
    return written;
}

// Writes in a subtransaction; a failing write is split in halves down to the bad record.
void write_records(Chunk *c, WriteKind kind, const int *subset, int n) {
    if (n == 0)
        return;
    uint64 written = 0;
    ErrorData *error = nullptr;
    for (int attempt = 1; attempt <= kDeadlockRetries; attempt++) {
        error = try_in_subtransaction([&] { written = execute_write(c, kind, subset, n); }, true);
        if (!error || !is_retryable_deadlock(error->sqlerrcode))
            break;
        if (attempt == kDeadlockRetries)
            ReThrowError(error);
        FreeErrorData(error);
        CHECK_FOR_INTERRUPTS();
    }
    if (!error) {
        ApplyCounts *counts = c->counts;
        switch (kind) {
        case WriteInsertPlain:
        case WriteInsertNew: // the caller accounts for the keys that were not new
            counts->inserted += written;
            return;
        case WriteInsert:
            counts->inserted += written;
            break;
        case WriteUpdate:
            counts->updated += written;
            break;
        case WriteUpdateFirst: // the rest is not skipped yet: it is looked up next
            counts->updated += written;
            return;
        case WriteDelete:
            counts->deleted += written;
            break;
        }
        counts->skipped += n - static_cast<int64>(written);
        return;
    }
    if (n == 1) {
        fail_chunk_record(c, subset[0], nullptr, error);
        return;
    }
    FreeErrorData(error);
    write_records(c, kind, subset, n / 2);
    write_records(c, kind, subset + n / 2, n - n / 2);
}

// Rows are written in key order: concurrent calls then lock shared keys in the same order
// and cannot deadlock on each other.
int compare_keys(const void *a, const void *b, void *arg) {
    const Chunk *c = static_cast<const Chunk *>(arg);
    int ra = *static_cast<const int *>(a), rb = *static_cast<const int *>(b);
    int common = Min(c->key_len[ra], c->key_len[rb]);
    int order = memcmp(c->key[ra], c->key[rb], common);
    return order != 0 ? order : c->key_len[ra] - c->key_len[rb];
}

void write_records_in_key_order(Chunk *c, WriteKind kind, int *subset, int n) {
    qsort_arg(subset, n, sizeof(int), compare_keys, c);
    write_records(c, kind, subset, n);
}

// Runs look-ups; they fail for the whole chunk (say, no SELECT right on the target).
template <typename Fn> void run_lookups(Chunk *c, Fn &&lookups) {
    if (c->mode == ApplyMode::Atomic) {
        lookups();
        return;
    }
    ErrorData *error = try_in_subtransaction(lookups);
    if (error)
        for (int r = 0; r < c->n; r++)
            if (c->state[r] != Done)
                fail_chunk_record(c, r, nullptr, error);
}

// Writes the records still to upsert whose key is (stored) or is not stored, as kind. They
// are done then, except those a WriteUpdateFirst did not update.
void write_upserts(Chunk *c, int *subset, bool stored, WriteKind kind) {
    int n = 0;
    for (int r = 0; r < c->n; r++)
        if (c->state[r] == Upsert && c->exists[r] == stored)
            subset[n++] = r;
    write_records_in_key_order(c, kind, subset, n);
    if (kind != WriteUpdateFirst)
        for (int i = 0; i < n; i++)
            c->state[subset[i]] = Done;
}

void write_chunk(Chunk *c, int *subset) {
    write_upserts(c, subset, false, WriteInsert);
    // Stored rows with an older version: one guarded UPDATE, cheaper than ON CONFLICT. What
    // it did not update was changed by another session meanwhile: it is looked up again
    // (without locks), so that a record now stale is skipped rather than locking its row in
    // a second statement, which, holding the UPDATE's locks, could deadlock with that session.
    write_upserts(c, subset, true, WriteUpdateFirst);
    if (pending_records(c, subset, is_upsert) > 0) {
        for (int r = 0; r < c->n; r++)
            if (c->state[r] == Upsert)
                c->exists[r] = c->newer[r] = false;
        run_lookups(c, [&] {
            lookup_stored_versions(c, subset, is_upsert);
            skip_tombstoned(c, subset);
        });
        write_upserts(c, subset, false, WriteInsert);
        write_upserts(c, subset, true, WriteUpdate);
    }
    int n = pending_records(c, subset, is_delete);
    write_records_in_key_order(c, WriteDelete, subset, n);
}

// Keys believed new: INSERT ... ON CONFLICT DO NOTHING counts exactly what it inserts. The
// keys that turned out to exist (inserted meanwhile by another session) are looked up and
// left to write_chunk() as updates, or skipped as stale. Returns how many were inserted.
int64 insert_new_keys(Chunk *c, int *subset) {
    int n = pending_records(c, subset, is_new_upsert);
    if (n == 0)
        return 0;
    // A plain INSERT skips ON CONFLICT's probe of the index before each row (the unique
    // check of the insertion itself remains). If any key does exist after all, it fails
    // as a whole and the records take the ON CONFLICT path below.
    qsort_arg(subset, n, sizeof(int), compare_keys, c);
    uint64 written = 0;
    ErrorData *error =
        try_in_subtransaction([&] { written = execute_write(c, WriteInsertPlain, subset, n); });
    if (!error) {
        c->counts->inserted += written;
        for (int i = 0; i < n; i++)
            c->state[subset[i]] = Done;
        return written;
    }
    FreeErrorData(error);
    int64 inserted_before = c->counts->inserted;
    write_records_in_key_order(c, WriteInsertNew, subset, n);
    int64 inserted = c->counts->inserted - inserted_before;
    int remaining = pending_records(c, subset, is_new_upsert); // inserted, or existing
    if (inserted == remaining) {
        for (int i = 0; i < remaining; i++)
            c->state[subset[i]] = Done;
        return inserted;
    }
    int64 skipped_before = c->counts->skipped;
    run_lookups(c, [&] { lookup_stored_versions(c, subset, is_new_upsert); });
    // The rows just inserted were found with their own version and marked skipped.
    c->counts->skipped = skipped_before + (c->counts->skipped - skipped_before - inserted);
    return inserted;
}

// How a chunk is applied, chosen from what the previous chunk of the collection was like:
//   LookUpFirst: look up stored versions (and tombstones) first; stale records are skipped
//     without writing (a replay is read-only); then insert, update and delete.
//   InsertFirst (the last chunk had mostly new keys: a fresh load): insert before looking
//     anything up; only keys that turn out to exist are looked up.
//   UpdateFirst (the last chunk mostly updated stored keys): one UPDATE for all upserts,
//     guarded by the version; only the records it did not update are looked up.
// The two shortcuts skip the tombstone check, so they are used only while the collection
// has no tombstones; deletes are always looked up first.
enum class Strategy { LookUpFirst, InsertFirst, UpdateFirst };

void apply_chunk_records(Chunk *c, int *subset, Strategy strategy) {
    CompiledMapping *m = c->m;
    int upserts = pending_records(c, subset, is_upsert);
    int64 updated_first = 0;
    if (strategy == Strategy::UpdateFirst) {
        convert_chunk(c, convert_values);
        int64 updated_before = c->counts->updated;
        write_records_in_key_order(c, WriteUpdateFirst, subset,
                                   pending_records(c, subset, is_upsert));
        updated_first = c->counts->updated - updated_before;
    }
    run_lookups(c, [&] {
        lookup_stored_versions(c, subset,
                               strategy == Strategy::InsertFirst ? is_delete : is_pending);
        if (strategy != Strategy::InsertFirst)
            skip_tombstoned(c, subset);
    });
    int existing = static_cast<int>(updated_first), newer = existing;
    for (int r = 0; r < c->n; r++)
        if (c->exists[r] && c->state[r] != Delete) {
            existing++;
            newer += c->newer[r];
        }
    if (strategy != Strategy::UpdateFirst)
        convert_chunk(c, convert_values);
    if (m->order_column >= 0) {
        int64 inserted = insert_new_keys(c, subset);
        if (strategy == Strategy::InsertFirst)
            existing = static_cast<int>(upserts - inserted);
    }
    write_chunk(c, subset);
    using Expect = CompiledMapping::Expect;
    if (upserts > 0 && existing * 20 <= upserts && m->order_column >= 0)
        m->expect = Expect::NewKeys;
    else if (upserts > 0 && newer * 20 >= upserts * 19)
        m->expect = Expect::StoredKeys;
    else
        m->expect = Expect::Mixed;
}

void apply_chunk(Chunk *c) {
    size_t cells = static_cast<size_t>(c->n) * c->ncols;
    c->values = static_cast<Datum *>(palloc(sizeof(Datum) * (cells ? cells : 1)));
    c->nulls = static_cast<bool *>(palloc(sizeof(bool) * (cells ? cells : 1)));
    c->state = static_cast<uint8 *>(palloc0(c->n));
    c->exists = static_cast<bool *>(palloc0(c->n));
    c->newer = static_cast<bool *>(palloc0(c->n));
    c->key_hash = static_cast<uint32 *>(palloc0(sizeof(uint32) * c->n));
    c->key = static_cast<char **>(palloc0(sizeof(char *) * c->n));
    c->key_len = static_cast<int *>(palloc0(sizeof(int) * c->n));
    int *subset = static_cast<int *>(palloc(sizeof(int) * c->n));
    initStringInfo(&c->key_scratch);
    size_t top_keys = Max(c->m->identity_keys.size(), c->m->value_keys.size());
    c->top_values = static_cast<JsonbValue *>(palloc(sizeof(JsonbValue) * top_keys));
    c->top_found = static_cast<bool *>(palloc(sizeof(bool) * top_keys));

    convert_chunk(c, convert_identity);
    keep_newest_per_key(c);
    Strategy strategy = c->m->expect == CompiledMapping::Expect::NewKeys ? Strategy::InsertFirst
                        : c->m->expect == CompiledMapping::Expect::StoredKeys
                            ? Strategy::UpdateFirst
                            : Strategy::LookUpFirst;
    if (strategy != Strategy::LookUpFirst) {
        bool has_tombstones = false;
        run_lookups(c, [&] { has_tombstones = collection_has_tombstones(c); });
        if (has_tombstones)
            strategy = Strategy::LookUpFirst;
    }
    apply_chunk_records(c, subset, strategy);
}

// Records of one collection, in input order.
struct Group {
    const char *collection;
    int collection_len;
    int *members;
    int count;
};

void fail_input(const InputRecord &in, int sqlstate, const char *reason, ApplyMode mode,
                FailureCallback on_failure, void *arg, ApplyCounts *counts) {
    ErrorData error;
    memset(&error, 0, sizeof error);
    error.elevel = ERROR;
    error.sqlerrcode = sqlstate;
    error.message = const_cast<char *>(reason);
    ErrorData *copy = static_cast<ErrorData *>(palloc(sizeof(ErrorData)));
    *copy = error;
    fail_record(in, nullptr, copy, mode, on_failure, arg, counts);
}

void apply_group_records(const Group &g, const InputRecord *records, ApplyMode mode,
                         FailureCallback on_failure, void *arg, ApplyCounts *counts, Oid owner,
                         MemoryContext chunk_context) {
    CompiledMapping *mapping = nullptr;
    if (mode == ApplyMode::Atomic) {
        MemoryContext context = CurrentMemoryContext;
        PG_TRY();
        { mapping = sequin_mapping_for(g.collection, g.collection_len); }
        PG_CATCH();
        {
            MemoryContextSwitchTo(context);
            ErrorData *error = CopyErrorData();
            FlushErrorState();
            fail_record(records[g.members[0]], nullptr, error, mode, on_failure, arg, counts);
        }
        PG_END_TRY();
    } else {
        ErrorData *error = try_in_subtransaction(
            [&] { mapping = sequin_mapping_for(g.collection, g.collection_len); });
        if (error) {
            for (int i = 0; i < g.count; i++)
                fail_record(records[g.members[i]], nullptr, error, mode, on_failure, arg, counts);
            return;
        }
    }
    if (mapping->key_columns.empty())
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
                 errmsg("mapping \"%s\" has no conflict key", mapping->row.collection_id.c_str())));
    int batch = sequin_batch_size > 0 ? sequin_batch_size : 1000;
    for (int start = 0; start < g.count; start += batch) {
        MemoryContext old = MemoryContextSwitchTo(chunk_context);
        Chunk chunk;
        memset(&chunk, 0, sizeof chunk);
        chunk.m = mapping;
        chunk.mode = mode;
        chunk.on_failure = on_failure;
        chunk.callback_arg = arg;
        chunk.counts = counts;
        chunk.inputs = records;
        chunk.members = g.members + start;
        chunk.n = g.count - start < batch ? g.count - start : batch;
        chunk.ncols = static_cast<int>(mapping->columns.size());
        chunk.owner = owner;
        apply_chunk(&chunk);
        MemoryContextSwitchTo(old);
        MemoryContextReset(chunk_context);
        CHECK_FOR_INTERRUPTS();
    }
    sequin_mapping_unpin(mapping);
}

// Applies one collection's records and adds what happened to its counters.
void apply_group(const Group &g, const InputRecord *records, ApplyMode mode,
                 FailureCallback on_failure, void *arg, ApplyCounts *counts, Oid owner,
                 MemoryContext chunk_context) {
    ApplyCounts before = *counts;
    apply_group_records(g, records, mode, on_failure, arg, counts, owner, chunk_context);
    ApplyCounts delta = {counts->inserted - before.inserted, counts->updated - before.updated,
                         counts->deleted - before.deleted, counts->skipped - before.skipped,
                         counts->failed - before.failed};
    stats_add(g.collection, g.collection_len, delta, owner);
}

} // namespace

void apply_records(const InputRecord *records, int count, ApplyMode mode,
                   FailureCallback on_failure, void *callback_arg, ApplyCounts *counts) {
    memset(counts, 0, sizeof *counts);
    if (count == 0)
        return;
    MemoryContext call_context =
        AllocSetContextCreate(CurrentMemoryContext, "sequin apply", ALLOCSET_DEFAULT_SIZES);
    MemoryContext chunk_context =
        AllocSetContextCreate(call_context, "sequin chunk", ALLOCSET_DEFAULT_SIZES);
    MemoryContext old = MemoryContextSwitchTo(call_context);

    // Group by collection, in order of first appearance.
    Group *groups = static_cast<Group *>(palloc0(sizeof(Group) * count));
    int *group_of = static_cast<int *>(palloc(sizeof(int) * count));
    int ngroups = 0, last = -1;
    for (int i = 0; i < count; i++) {
        group_of[i] = -1;
        const InputRecord &in = records[i];
        JsonbValue collection;
        if (!in.record || !JsonContainerIsObject(in.record)) {
            fail_input(in, ERRCODE_INVALID_PARAMETER_VALUE, "record is not a JSON object", mode,
                       on_failure, callback_arg, counts);
            continue;
        }
        if (!json_key_find(in.record, "collection_id", &collection) ||
            collection.type != jbvString) {
            fail_input(in, ERRCODE_NOT_NULL_VIOLATION, "record has no \"collection_id\" string",
                       mode, on_failure, callback_arg, counts);
            continue;
        }
        const char *name = collection.val.string.val;
        int len = collection.val.string.len;
        int g = -1;
        if (last >= 0 && groups[last].collection_len == len &&
            memcmp(groups[last].collection, name, len) == 0)
            g = last;
        for (int j = 0; g < 0 && j < ngroups; j++)
            if (groups[j].collection_len == len && memcmp(groups[j].collection, name, len) == 0)
                g = j;
        if (g < 0) {
            g = ngroups++;
            groups[g].collection = name;
            groups[g].collection_len = len;
        }
        group_of[i] = last = g;
        groups[g].count++;
    }
    for (int g = 0; g < ngroups; g++) {
        groups[g].members = static_cast<int *>(palloc(sizeof(int) * groups[g].count));
        groups[g].count = 0;
    }
    for (int i = 0; i < count; i++)
        if (group_of[i] >= 0) {
            Group &g = groups[group_of[i]];
            g.members[g.count++] = i;
        }

    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    MemoryContextSwitchTo(call_context);
    Oid owner = sequin_relation_owner("tombstones");
    for (int g = 0; g < ngroups; g++)
        apply_group(groups[g], records, mode, on_failure, callback_arg, counts, owner,
                    chunk_context);
    SPI_finish();
    MemoryContextSwitchTo(old);
    MemoryContextDelete(call_context);
}

void return_counts(FunctionCallInfo fcinfo, const ApplyCounts &counts) {
    InitMaterializedSRF(fcinfo, 0);
    ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    Datum values[5] = {Int64GetDatum(counts.inserted), Int64GetDatum(counts.updated),
                       Int64GetDatum(counts.deleted), Int64GetDatum(counts.skipped),
                       Int64GetDatum(counts.failed)};
    bool nulls[5] = {false, false, false, false, false};
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

InputRecord *records_of_argument(Jsonb *records, int *count) {
    if (JB_ROOT_IS_SCALAR(records))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("records must be a JSON object or an array of objects, not a "
                               "scalar")));
    if (JB_ROOT_IS_OBJECT(records)) {
        InputRecord *one = static_cast<InputRecord *>(palloc(sizeof(InputRecord)));
        one->record = &records->root;
        one->position = 0;
        one->label = "record";
        *count = 1;
        return one;
    }
    int n = JB_ROOT_COUNT(records);
    InputRecord *all = static_cast<InputRecord *>(palloc(sizeof(InputRecord) * (n ? n : 1)));
    JsonbIterator *it = JsonbIteratorInit(&records->root);
    JsonbValue value;
    JsonbIteratorToken token;
    int i = 0;
    while ((token = JsonbIteratorNext(&it, &value, true)) != WJB_DONE) {
        if (token != WJB_ELEM)
            continue;
        all[i].position = i;
        all[i].label = "record";
        all[i].record = value.type == jbvBinary ? value.val.binary.data : nullptr;
        i++;
    }
    *count = i;
    return all;
}

} // namespace sequin
