// The staging trigger and sequin.apply_staging(). Records are read in arrival order in
// slices, applied in Isolate mode (sequin.staging) or Atomic mode (a user's own table), and
// in sequin.staging the applied rows are deleted and the failed ones marked, so that no
// record is ever lost. C-shaped server code.
#include "batch_applier.hpp"
#include "bookkeeping.hpp"
#include "staging_trigger.hpp"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"
#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(sequin_staging_trigger);
PG_FUNCTION_INFO_V1(sequin_apply_staging);
}

#include <cstring>
#include <utility>

namespace {

enum ApplyModeSetting { ApplyImmediate, ApplyDeferred };
const struct config_enum_entry apply_mode_options[] = {
    {"immediate", ApplyImmediate, false}, {"deferred", ApplyDeferred, false}, {nullptr, 0, false}};
int apply_mode = ApplyImmediate;

// Rows read from staging per apply: bounds memory for any size of COPY.
constexpr int kSliceRows = 10000;

// Failures of one slice, collected by the applier's callback.
struct SliceResult {
    int64 *failed_ids;
    char **failed_errors;
    int failed_count;
    MemoryContext context; // outlives the applier's own memory
};

void collect_failure(void *arg, int64 position, int sqlstate, const char *message) {
    SliceResult *result = static_cast<SliceResult *>(arg);
    result->failed_ids[result->failed_count] = position;
    result->failed_errors[result->failed_count] = MemoryContextStrdup(result->context, message);
    result->failed_count++;
}

SPIPlanPtr keep_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types) {
    if (!*plan) {
        SPIPlanPtr prepared = SPI_prepare(sql, nargs, types);
        if (!prepared)
            elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
        SPI_keepplan(prepared);
        *plan = prepared;
    }
    return *plan;
}

Datum int8_array(const int64 *values, int n) {
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (n ? n : 1)));
    for (int i = 0; i < n; i++)
        elements[i] = Int64GetDatum(values[i]);
    return PointerGetDatum(construct_array(elements, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
}

// Applied rows leave staging; failed rows stay, marked. Runs as the staging table's owner:
// whoever may insert a record need not be able to edit the queue.
void settle_slice(Oid owner, const int64 *ids, int n, const SliceResult &result) {
    static SPIPlanPtr delete_plan = nullptr, fail_plan = nullptr;

    int64 *applied = static_cast<int64 *>(palloc(sizeof(int64) * (n ? n : 1)));
    int napplied = 0;
    for (int i = 0, f = 0; i < n; i++) { // both lists are in id order
        while (f < result.failed_count && result.failed_ids[f] < ids[i])
            f++;
        if (f < result.failed_count && result.failed_ids[f] == ids[i])
            continue;
        applied[napplied++] = ids[i];
    }
    if (napplied > 0) {
        Oid types[1] = {INT8ARRAYOID};
        Datum args[1] = {int8_array(applied, napplied)};
        keep_plan(&delete_plan,
                  "DELETE FROM sequin.staging WHERE id OPERATOR(pg_catalog.=) ANY ($1)", 1, types);
        if (sequin::spi_execute_as(owner, delete_plan, args, nullptr, false, 0) != SPI_OK_DELETE)
            elog(ERROR, "could not remove applied rows from sequin.staging");
    }
    if (result.failed_count > 0) {
        Oid types[2] = {INT8ARRAYOID, TEXTARRAYOID};
        Datum *errors = static_cast<Datum *>(palloc(sizeof(Datum) * result.failed_count));
        for (int i = 0; i < result.failed_count; i++)
            errors[i] = CStringGetTextDatum(result.failed_errors[i]);
        Datum args[2] = {int8_array(result.failed_ids, result.failed_count),
                         PointerGetDatum(construct_array(errors, result.failed_count, TEXTOID, -1,
                                                         false, TYPALIGN_INT))};
        keep_plan(&fail_plan,
                  "UPDATE sequin.staging AS s SET status = 'failed', error = f.error, "
                  "attempts = s.attempts OPERATOR(pg_catalog.+) 1 "
                  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS f(id, error) "
                  "WHERE s.id OPERATOR(pg_catalog.=) f.id",
                  2, types);
        if (sequin::spi_execute_as(owner, fail_plan, args, nullptr, false, 0) != SPI_OK_UPDATE)
            elog(ERROR, "could not mark failed rows in sequin.staging");
    }
}

// Applies one slice of staged records (ids in arrival order) and settles it.
void apply_staged_slice(Oid owner, sequin::InputRecord *records, int64 *ids, int n,
                        sequin::ApplyCounts *total) {
    SliceResult result;
    result.failed_ids = static_cast<int64 *>(palloc(sizeof(int64) * (n ? n : 1)));
    result.failed_errors = static_cast<char **>(palloc(sizeof(char *) * (n ? n : 1)));
    result.failed_count = 0;
    result.context = CurrentMemoryContext;
    sequin::ApplyCounts counts;
    sequin::apply_records(records, n, sequin::ApplyMode::Isolate, collect_failure, &result,
                          &counts);
    // The applier reports failures grouped by collection: settle_slice wants id order.
    for (int i = 1; i < result.failed_count; i++)
        for (int j = i; j > 0 && result.failed_ids[j - 1] > result.failed_ids[j]; j--) {
            std::swap(result.failed_ids[j - 1], result.failed_ids[j]);
            std::swap(result.failed_errors[j - 1], result.failed_errors[j]);
        }
    settle_slice(owner, ids, n, result);
    total->inserted += counts.inserted;
    total->updated += counts.updated;
    total->deleted += counts.deleted;
    total->skipped += counts.skipped;
    total->failed += counts.failed;
}

int attribute_number(TupleDesc desc, const char *name, Oid type, bool required) {
    for (int i = 0; i < desc->natts; i++) {
        Form_pg_attribute att = TupleDescAttr(desc, i);
        if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0) {
            if (att->atttypid != type)
                ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                                errmsg("column \"%s\" of the staged table must be of type %s", name,
                                       format_type_be(type))));
            return i + 1;
        }
    }
    if (required)
        ereport(ERROR,
                (errcode(ERRCODE_UNDEFINED_COLUMN),
                 errmsg("a table with the staging trigger needs a jsonb column \"%s\"", name)));
    return 0;
}

} // namespace

bool sequin_apply_mode_is_deferred(void) {
    return apply_mode == ApplyDeferred;
}

void sequin_define_staging_settings(void) {
    DefineCustomEnumVariable("sequin.apply_mode",
                             "immediate: rows inserted into sequin.staging are applied by the "
                             "inserting statement; deferred: they wait for apply_staging().",
                             nullptr, &apply_mode, ApplyImmediate, apply_mode_options, PGC_USERSET,
                             0, nullptr, nullptr, nullptr);
}

// AFTER INSERT ... FOR EACH STATEMENT ... REFERENCING NEW TABLE: applies the new rows of a
// user's table (Atomic). On sequin.staging itself it runs only under the 0.1.0 schema, until
// ALTER EXTENSION ... UPDATE replaces it with the capture triggers (staging_capture.cpp).
Datum sequin_staging_trigger(PG_FUNCTION_ARGS) {
    TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
        !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event) ||
        !td->tg_newtable)
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("sequin.staging_trigger() must be attached AFTER INSERT ... "
                               "REFERENCING NEW TABLE AS ... FOR EACH STATEMENT")));
    Relation rel = td->tg_relation;
    Oid relid = RelationGetRelid(rel);
    const bool is_staging = relid == sequin::sequin_relation("staging");
    if (is_staging && apply_mode == ApplyDeferred)
        return PointerGetDatum(nullptr);

    TupleDesc desc = RelationGetDescr(rel);
    int record_att = attribute_number(desc, "record", JSONBOID, true);
    int id_att = is_staging ? attribute_number(desc, "id", INT8OID, true) : 0;
    Oid owner = is_staging ? sequin::sequin_relation_owner("staging") : InvalidOid;

    MemoryContext slice_context =
        AllocSetContextCreate(CurrentMemoryContext, "sequin staging slice", ALLOCSET_DEFAULT_SIZES);
    TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
    MemoryContext old = MemoryContextSwitchTo(slice_context);
    Tuplestorestate *rows = td->tg_newtable;
    tuplestore_rescan(rows);
    sequin::ApplyCounts total;
    memset(&total, 0, sizeof total);
    int64 ordinal = 0;
    bool more = true;
    if (is_staging && SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    while (more) {
        MemoryContextSwitchTo(slice_context);
        sequin::InputRecord *records =
            static_cast<sequin::InputRecord *>(palloc(sizeof(sequin::InputRecord) * kSliceRows));
        int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * kSliceRows));
        int n = 0;
        while (n < kSliceRows && (more = tuplestore_gettupleslot(rows, true, false, slot))) {
            bool isnull;
            Datum record = slot_getattr(slot, record_att, &isnull);
            ids[n] = id_att ? DatumGetInt64(slot_getattr(slot, id_att, &isnull)) : ordinal;
            records[n].position = ids[n];
            records[n].label = is_staging ? "staging row" : "record";
            records[n].record = isnull ? nullptr : &DatumGetJsonbPCopy(record)->root;
            ordinal++;
            n++;
        }
        if (n > 0) {
            if (is_staging) {
                apply_staged_slice(owner, records, ids, n, &total);
            } else {
                sequin::ApplyCounts counts;
                sequin::apply_records(records, n, sequin::ApplyMode::Atomic, nullptr, nullptr,
                                      &counts);
            }
        }
        ExecClearTuple(slot);
        MemoryContextSwitchTo(old);
        MemoryContextReset(slice_context);
        CHECK_FOR_INTERRUPTS();
    }
    if (is_staging)
        SPI_finish();
    ExecDropSingleTupleTableSlot(slot);
    MemoryContextSwitchTo(old);
    MemoryContextDelete(slice_context);
    return PointerGetDatum(nullptr);
}

// sequin.apply_staging(max_rows, retry_failed): applies waiting rows in arrival order.
// FOR UPDATE SKIP LOCKED: concurrent callers share the queue without waiting or doubling.
Datum sequin_apply_staging(PG_FUNCTION_ARGS) {
    static SPIPlanPtr select_plan = nullptr;
    int64 max_rows = PG_ARGISNULL(0) ? -1 : PG_GETARG_INT32(0);
    bool retry_failed = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
    if (!PG_ARGISNULL(0) && PG_GETARG_INT32(0) < 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("max_rows must not be negative")));
    Oid owner = sequin::sequin_relation_owner("staging");
    sequin::ApplyCounts total;
    memset(&total, 0, sizeof total);

    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    MemoryContext slice_context = AllocSetContextCreate(
        TopTransactionContext, "sequin apply_staging", ALLOCSET_DEFAULT_SIZES);
    int64 last_id = 0, done = 0;
    while (max_rows < 0 || done < max_rows) {
        int limit = kSliceRows;
        if (max_rows >= 0 && max_rows - done < limit)
            limit = static_cast<int>(max_rows - done);
        Oid types[3] = {INT8OID, BOOLOID, INT4OID};
        Datum args[3] = {Int64GetDatum(last_id), BoolGetDatum(retry_failed), Int32GetDatum(limit)};
        keep_plan(&select_plan,
                  "SELECT id, record FROM sequin.staging "
                  "WHERE id OPERATOR(pg_catalog.>) $1 AND (status OPERATOR(pg_catalog.=) "
                  "'pending' OR ($2 AND status OPERATOR(pg_catalog.=) 'failed')) "
                  "ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
                  3, types);
        int rc = sequin::spi_execute_as(owner, select_plan, args, nullptr, false, 0);
        if (rc != SPI_OK_SELECT)
            elog(ERROR, "could not read sequin.staging");
        int n = static_cast<int>(SPI_processed);
        if (n == 0)
            break;
        SPITupleTable *table = SPI_tuptable;
        MemoryContext old = MemoryContextSwitchTo(slice_context);
        sequin::InputRecord *records =
            static_cast<sequin::InputRecord *>(palloc(sizeof(sequin::InputRecord) * n));
        int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * n));
        for (int i = 0; i < n; i++) {
            bool isnull;
            ids[i] = DatumGetInt64(SPI_getbinval(table->vals[i], table->tupdesc, 1, &isnull));
            Datum record = SPI_getbinval(table->vals[i], table->tupdesc, 2, &isnull);
            records[i].position = ids[i];
            records[i].label = "staging row";
            records[i].record = isnull ? nullptr : &DatumGetJsonbPCopy(record)->root;
        }
        last_id = ids[n - 1];
        SPI_freetuptable(table);
        apply_staged_slice(owner, records, ids, n, &total);
        MemoryContextSwitchTo(old);
        MemoryContextReset(slice_context);
        done += n;
        if (n < limit)
            break;
        CHECK_FOR_INTERRUPTS();
    }
    MemoryContextDelete(slice_context);
    SPI_finish();
    sequin::return_counts(fcinfo, total);
    return (Datum)0;
}
