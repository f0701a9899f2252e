// sequin.apply_staging(): applies the waiting rows of sequin.staging in arrival order, in
// slices. FOR UPDATE SKIP LOCKED: concurrent callers share the queue without waiting or
// applying a row twice. C-shaped server code.
#include "staging/staging_trigger.hpp"
#include "pg/kept_plan.hpp"
#include "pg/run_as_owner.hpp"
#include "staging/staging_queue.hpp"

extern "C" {
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
}

namespace sequin {

namespace {

// Consecutive staged rows of one role.
struct StagedRun {
    Oid owner; // of sequin.staging
    InputRecord *records;
    int64 *ids;
    int count;
    ApplyCounts *total;
};

void apply_run(void *arg) {
    StagedRun *run = static_cast<StagedRun *>(arg);
    apply_staged_slice(run->owner, run->records, run->ids, run->count, run->total);
}

// Applies a run of rows staged by staged_by (NULL: before 0.4.0) with that role's rights.
void apply_run_as_stager(StagedRun *run, const char *staged_by) {
    if (!staged_by) {
        if (has_privs_of_role(GetUserId(), run->owner)) {
            apply_run(run);
            return;
        }
        fail_staged_rows(run->owner, run->ids, run->count,
                         "staged before sequin_upsert 0.4.0, with no role recorded: only the "
                         "owner of sequin.staging applies it",
                         run->total);
        return;
    }
    Oid role = get_role_oid(staged_by, true);
    if (!OidIsValid(role)) {
        char *error =
            psprintf("the role that staged this record, \"%s\", no longer exists", staged_by);
        fail_staged_rows(run->owner, run->ids, run->count, error, run->total);
        return;
    }
    run_as_role(role, apply_run, run);
}

} // namespace

void drain_staging(int64 max_rows, bool retry_failed, ApplyCounts *total) {
    static SPIPlanPtr select_plan = nullptr;
    Oid owner = sequin_relation_owner("staging");
    if (get_attnum(sequin_relation("staging"), "staged_by") == InvalidAttrNumber)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("sequin.staging has no column \"staged_by\": the extension's "
                               "schema is older than its library"),
                        errhint("Run ALTER EXTENSION sequin_upsert UPDATE.")));
    PlanRun as_owner;
    as_owner.as_user = owner;
    memset(total, 0, sizeof *total);

    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    MemoryContext slice_context = AllocSetContextCreate(
        TopTransactionContext, "sequin apply_staging", ALLOCSET_DEFAULT_SIZES);
    int64 last_id = 0, done = 0;
    while (max_rows < 0 || done < max_rows) {
        int limit = kStagingSliceRows;
        if (max_rows >= 0 && max_rows - done < limit)
            limit = static_cast<int>(max_rows - done);
        Oid types[3] = {INT8OID, BOOLOID, INT4OID};
        Datum args[3] = {Int64GetDatum(last_id), BoolGetDatum(retry_failed), Int32GetDatum(limit)};
        kept_plan(&select_plan,
                  "SELECT id, record, staged_by FROM sequin.staging "
                  "WHERE id OPERATOR(pg_catalog.>) $1 AND (status OPERATOR(pg_catalog.=) "
                  "'pending' OR ($2 AND status OPERATOR(pg_catalog.=) 'failed')) "
                  "ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
                  3, types);
        int n = static_cast<int>(
            run_kept_plan(select_plan, "read sequin.staging", args, nullptr, as_owner));
        if (n == 0)
            break;
        SPITupleTable *table = SPI_tuptable;
        MemoryContext old = MemoryContextSwitchTo(slice_context);
        InputRecord *records = static_cast<InputRecord *>(palloc(sizeof(InputRecord) * n));
        int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * n));
        char **stagers = static_cast<char **>(palloc(sizeof(char *) * n));
        for (int i = 0; i < n; i++) {
            bool isnull;
            ids[i] = DatumGetInt64(SPI_getbinval(table->vals[i], table->tupdesc, 1, &isnull));
            Datum record = SPI_getbinval(table->vals[i], table->tupdesc, 2, &isnull);
            records[i].position = ids[i];
            records[i].label = "staging row";
            records[i].record = isnull ? nullptr : &DatumGetJsonbPCopy(record)->root;
            Datum staged_by = SPI_getbinval(table->vals[i], table->tupdesc, 3, &isnull);
            stagers[i] = isnull ? nullptr : pstrdup(NameStr(*DatumGetName(staged_by)));
        }
        last_id = ids[n - 1];
        SPI_freetuptable(table);
        // In arrival order, each run of one role's rows with that role's rights.
        for (int start = 0, end; start < n; start = end) {
            for (end = start + 1; end < n; end++)
                if ((stagers[end] == nullptr) != (stagers[start] == nullptr) ||
                    (stagers[end] && strcmp(stagers[end], stagers[start]) != 0))
                    break;
            StagedRun run = {owner, records + start, ids + start, end - start, total};
            apply_run_as_stager(&run, stagers[start]);
        }
        MemoryContextSwitchTo(old);
        MemoryContextReset(slice_context);
        done += n;
        if (n < limit)
            break;
        CHECK_FOR_INTERRUPTS();
    }
    MemoryContextDelete(slice_context);
    SPI_finish();
}

} // namespace sequin
