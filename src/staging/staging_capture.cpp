// Immediate mode of sequin.staging without storing the records that apply.
//
// A BEFORE INSERT row trigger takes each new record into a buffer and skips the row's heap
// write; every 10,000 records, and at the end of the statement (an AFTER statement
// trigger), the buffer is applied in Isolate mode. Only the records that fail are written
// to sequin.staging, as 'failed' rows with their error. A record that applies is therefore
// never written and deleted again: no heap, index or WAL work for it in staging. The cost
// for users: the INSERT/COPY command tag counts only the rows that stayed (the failed ones).
// Everything happens inside the inserting statement, so a rollback undoes all of it.
// C-shaped server code.
#include "staging/staging_trigger.hpp"
#include "apply/apply_records.hpp"
#include "pg/kept_plan.hpp"
#include "pg/run_as_owner.hpp"
#include "staging/staging_queue.hpp"

extern "C" {
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
}

#include <cstring>

namespace sequin {

namespace {

constexpr int kFlushRecords = 10000;

// Records captured by the running statement(s), in arrival order, with the ids their rows
// were given (a failed record is stored under its id).
struct CaptureBuffer {
    MemoryContext context; // child of TopTransactionContext
    Jsonb **records;
    int64 *ids;
    int count;
    int capacity;
    SubTransactionId subxact; // where capturing began: its abort discards the buffer
};

CaptureBuffer buffer;
// What the statement's flushes did, told to its client at its end.
ApplyCounts statement_counts;
bool flushing = false;         // applying a buffer: nested staging inserts are stored
bool storing_failures = false; // our own INSERT of failed records: let it through
bool callbacks_registered = false;

void discard_buffer() {
    if (buffer.context)
        MemoryContextDelete(buffer.context);
    memset(&buffer, 0, sizeof buffer);
}

// Transaction end frees TopTransactionContext (and the buffer with it).
void on_transaction_end(XactEvent event, void *) {
    if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
        event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
        event == XACT_EVENT_PREPARE) {
        memset(&buffer, 0, sizeof buffer);
        memset(&statement_counts, 0, sizeof statement_counts);
        flushing = storing_failures = false;
    }
}

// A failed statement inside a savepoint: its captured records go with it. (A
// subtransaction started later, say by a function in the INSERT's SELECT, keeps them.)
void on_subtransaction_abort(SubXactEvent event, SubTransactionId subxact, SubTransactionId,
                             void *) {
    if (event == SUBXACT_EVENT_ABORT_SUB && buffer.context && subxact <= buffer.subxact)
        discard_buffer();
}

void register_callbacks() {
    if (callbacks_registered)
        return;
    RegisterXactCallback(on_transaction_end, nullptr);
    RegisterSubXactCallback(on_subtransaction_abort, nullptr);
    callbacks_registered = true;
}

void capture(Datum record, int64 id) {
    if (!buffer.context) {
        buffer.context = AllocSetContextCreate(TopTransactionContext, "sequin staging capture",
                                               ALLOCSET_DEFAULT_SIZES);
        buffer.capacity = 1024;
        buffer.records = static_cast<Jsonb **>(
            MemoryContextAlloc(buffer.context, sizeof(Jsonb *) * buffer.capacity));
        buffer.ids = static_cast<int64 *>(
            MemoryContextAlloc(buffer.context, sizeof(int64) * buffer.capacity));
        buffer.subxact = GetCurrentSubTransactionId();
    }
    if (buffer.count == buffer.capacity) {
        buffer.capacity *= 2;
        buffer.records =
            static_cast<Jsonb **>(repalloc(buffer.records, sizeof(Jsonb *) * buffer.capacity));
        buffer.ids = static_cast<int64 *>(repalloc(buffer.ids, sizeof(int64) * buffer.capacity));
    }
    MemoryContext old = MemoryContextSwitchTo(buffer.context);
    buffer.ids[buffer.count] = id;
    buffer.records[buffer.count++] = DatumGetJsonbPCopy(record);
    MemoryContextSwitchTo(old);
}

struct Failures {
    Datum *records;
    Datum *ids;
    Datum *errors;
    int count;
    const CaptureBuffer *from;
    MemoryContext context; // outlives the applier's own memory
};

void collect_failure(void *arg, int index, int, const char *message) {
    Failures *f = static_cast<Failures *>(arg);
    f->records[f->count] = JsonbPGetDatum(f->from->records[index]);
    f->ids[f->count] = Int64GetDatum(f->from->ids[index]);
    MemoryContext old = MemoryContextSwitchTo(f->context);
    f->errors[f->count] = CStringGetTextDatum(message);
    MemoryContextSwitchTo(old);
    f->count++;
}

// Failed records stay: written to sequin.staging as the table's owner, like the rest of
// the queue's bookkeeping, under the ids their rows were given, marked as staged by the
// inserting role.
void store_failures(const Failures &f) {
    static SPIPlanPtr plan = nullptr;
    static const Oid types[4] = {JSONBARRAYOID, TEXTARRAYOID, NAMEOID, INT8ARRAYOID};
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    kept_plan(&plan,
              "INSERT INTO sequin.staging (id, record, status, error, attempts, staged_by) "
              "SELECT f.id, f.record, 'failed', f.error, 1, $3 FROM ROWS FROM "
              "(pg_catalog.unnest($4), pg_catalog.unnest($1), pg_catalog.unnest($2)) "
              "AS f(id, record, error)",
              4, types);
    Datum args[4] = {
        PointerGetDatum(construct_array(f.records, f.count, JSONBOID, -1, false, TYPALIGN_INT)),
        PointerGetDatum(construct_array(f.errors, f.count, TEXTOID, -1, false, TYPALIGN_INT)),
        current_role_name(),
        PointerGetDatum(construct_array(f.ids, f.count, INT8OID, 8, true, TYPALIGN_DOUBLE))};
    PlanRun as_owner;
    as_owner.as_user = sequin_relation_owner("staging");
    storing_failures = true;
    run_kept_plan(plan, "keep failed records in sequin.staging", args, nullptr, as_owner);
    storing_failures = false;
    SPI_finish();
}

// Applies the captured records; the failed ones are stored.
void flush() {
    if (buffer.count == 0)
        return;
    CaptureBuffer taken = buffer; // detached: subtransactions of the apply cannot discard it
    memset(&buffer, 0, sizeof buffer);

    MemoryContext old = MemoryContextSwitchTo(taken.context);
    InputRecord *records = static_cast<InputRecord *>(palloc(sizeof(InputRecord) * taken.count));
    for (int i = 0; i < taken.count; i++) {
        records[i].record = &taken.records[i]->root;
        records[i].position = taken.ids[i];
        records[i].label = "staging row";
    }
    Failures failures;
    failures.records = static_cast<Datum *>(palloc(sizeof(Datum) * taken.count));
    failures.ids = static_cast<Datum *>(palloc(sizeof(Datum) * taken.count));
    failures.errors = static_cast<Datum *>(palloc(sizeof(Datum) * taken.count));
    failures.count = 0;
    failures.from = &taken;
    failures.context = taken.context;
    flushing = true;
    PG_TRY();
    {
        ApplyCounts counts;
        apply_records(records, taken.count, ApplyMode::Isolate, collect_failure, &failures,
                      &counts);
        if (failures.count > 0)
            store_failures(failures);
        statement_counts.inserted += counts.inserted;
        statement_counts.updated += counts.updated;
        statement_counts.deleted += counts.deleted;
        statement_counts.skipped += counts.skipped;
        statement_counts.failed += counts.failed;
    }
    PG_CATCH();
    {
        flushing = storing_failures = false;
        PG_RE_THROW();
    }
    PG_END_TRY();
    flushing = false;
    MemoryContextSwitchTo(old);
    MemoryContextDelete(taken.context);
}

int attribute_number(TupleDesc desc, const char *name) {
    int attnum = SPI_fnumber(desc, name);
    if (attnum <= 0)
        elog(ERROR, "sequin.staging has no column \"%s\"", name);
    return attnum;
}

// The row as stored, with the inserting role in staged_by whatever the inserter wrote there
// (a schema from before 0.4.0 has no such column).
HeapTuple stamp_inserter(TriggerData *td, HeapTuple tuple) {
    TupleDesc desc = RelationGetDescr(td->tg_relation);
    int attnum = SPI_fnumber(desc, "staged_by");
    if (attnum <= 0)
        return tuple;
    int columns[1] = {attnum};
    Datum values[1] = {current_role_name()};
    bool nulls[1] = {false};
    return heap_modify_tuple_by_cols(tuple, desc, 1, columns, values, nulls);
}

} // namespace

HeapTuple capture_staged_row(TriggerData *td) {
    HeapTuple tuple = td->tg_trigtuple;
    if (storing_failures)
        return tuple; // our own INSERT of failed records names their inserter
    // A restore (pg_dump's scripts turn check_function_bodies off) by the queue's owner: the
    // rows as dumped, with their roles, neither applied nor stamped.
    if (!check_function_bodies && has_privs_of_role(GetUserId(), sequin_relation_owner("staging")))
        return tuple;
    if (flushing || apply_mode_is_deferred())
        return stamp_inserter(td, tuple); // stored: applied later
    TupleDesc desc = RelationGetDescr(td->tg_relation);
    bool isnull;
    Datum status = heap_getattr(tuple, attribute_number(desc, "status"), desc, &isnull);
    if (isnull || strcmp(TextDatumGetCString(status), "pending") != 0)
        return stamp_inserter(td, tuple); // inserted as failed by hand: kept for a retry
    Datum record = heap_getattr(tuple, attribute_number(desc, "record"), desc, &isnull);
    if (isnull)
        return tuple; // the NOT NULL constraint reports it
    Datum id = heap_getattr(tuple, attribute_number(desc, "id"), desc, &isnull);
    if (isnull)
        return stamp_inserter(td, tuple); // the NOT NULL constraint of the key reports it
    register_callbacks();
    capture(record, DatumGetInt64(id));
    if (buffer.count >= kFlushRecords)
        flush();
    return nullptr;
}

void flush_captured_records() {
    if (storing_failures || flushing)
        return;
    flush();
    // The statement's client learns what happened (its command tag counts only the rows
    // that stayed): a NOTICE, or a WARNING when records failed.
    ApplyCounts counts = statement_counts;
    memset(&statement_counts, 0, sizeof statement_counts);
    int64 applied = counts.inserted + counts.updated + counts.deleted;
    if (applied + counts.skipped + counts.failed == 0)
        return;
    ereport(counts.failed > 0 ? WARNING : NOTICE,
            (errmsg("sequin.staging: %lld records applied (%lld inserted, %lld updated, %lld "
                    "deleted), %lld skipped, %lld failed",
                    static_cast<long long>(applied), static_cast<long long>(counts.inserted),
                    static_cast<long long>(counts.updated), static_cast<long long>(counts.deleted),
                    static_cast<long long>(counts.skipped), static_cast<long long>(counts.failed)),
             counts.failed > 0 ? errhint("The failed records stay in sequin.staging with their "
                                         "error: SELECT id, error FROM sequin.staging WHERE "
                                         "status = 'failed'.")
                               : 0));
}

} // namespace sequin
