// The queue sequin.staging: see staging_queue.hpp.
#include "staging/staging_queue.hpp"
#include "pg/kept_plan.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
}

#include <utility>

namespace sequin {

namespace {

enum ApplyModeSetting { ApplyImmediate, ApplyDeferred };
const struct config_enum_entry apply_mode_options[] = {
    {"immediate", ApplyImmediate, false}, {"deferred", ApplyDeferred, false}, {nullptr, 0, false}};
int apply_mode = ApplyImmediate;

// Failures of one slice, collected by the applier's callback.
struct SliceResult {
    const int64 *ids; // of the slice's records
    int64 *failed_ids;
    char **failed_errors;
    int failed_count;
    MemoryContext context; // outlives the applier's own memory
};

void collect_failure(void *arg, int index, int sqlstate, const char *message) {
    SliceResult *result = static_cast<SliceResult *>(arg);
    result->failed_ids[result->failed_count] = result->ids[index];
    result->failed_errors[result->failed_count] = MemoryContextStrdup(result->context, message);
    result->failed_count++;
}

Datum int8_array(const int64 *values, int n) {
    Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * (n ? n : 1)));
    for (int i = 0; i < n; i++)
        elements[i] = Int64GetDatum(values[i]);
    return PointerGetDatum(construct_array(elements, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
}

int compare_failures(const void *a, const void *b) {
    int64 x = static_cast<const std::pair<int64, char *> *>(a)->first;
    int64 y = static_cast<const std::pair<int64, char *> *>(b)->first;
    return (x > y) - (x < y);
}

void sort_failures(SliceResult *result) {
    int n = result->failed_count;
    auto *pairs = static_cast<std::pair<int64, char *> *>(
        palloc(sizeof(std::pair<int64, char *>) * (n ? n : 1)));
    for (int i = 0; i < n; i++)
        pairs[i] = {result->failed_ids[i], result->failed_errors[i]};
    qsort(pairs, n, sizeof(pairs[0]), compare_failures);
    for (int i = 0; i < n; i++) {
        result->failed_ids[i] = pairs[i].first;
        result->failed_errors[i] = pairs[i].second;
    }
    pfree(pairs);
}

// Applied rows leave staging; failed rows stay, marked. Runs as the staging table's owner:
// whoever may insert a record need not be able to edit the queue.
void settle_slice(Oid owner, const int64 *ids, int n, const SliceResult &result) {
    static SPIPlanPtr delete_plan = nullptr, fail_plan = nullptr;
    PlanRun as_owner;
    as_owner.as_user = owner;

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
        kept_plan(&delete_plan,
                  "DELETE FROM sequin.staging WHERE id OPERATOR(pg_catalog.=) ANY ($1)", 1, types);
        run_kept_plan(delete_plan, "remove applied rows from sequin.staging", args, nullptr,
                      as_owner);
    }
    if (result.failed_count > 0) {
        Oid types[2] = {INT8ARRAYOID, TEXTARRAYOID};
        Datum *errors = static_cast<Datum *>(palloc(sizeof(Datum) * result.failed_count));
        for (int i = 0; i < result.failed_count; i++)
            errors[i] = CStringGetTextDatum(result.failed_errors[i]);
        Datum args[2] = {int8_array(result.failed_ids, result.failed_count),
                         PointerGetDatum(construct_array(errors, result.failed_count, TEXTOID, -1,
                                                         false, TYPALIGN_INT))};
        kept_plan(&fail_plan,
                  "UPDATE sequin.staging AS s SET status = 'failed', error = f.error, "
                  "attempts = s.attempts OPERATOR(pg_catalog.+) 1 "
                  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS f(id, error) "
                  "WHERE s.id OPERATOR(pg_catalog.=) f.id",
                  2, types);
        run_kept_plan(fail_plan, "mark failed rows in sequin.staging", args, nullptr, as_owner);
    }
}

} // namespace

void apply_staged_slice(Oid owner, InputRecord *records, int64 *ids, int n, ApplyCounts *total) {
    SliceResult result;
    result.ids = ids;
    result.failed_ids = static_cast<int64 *>(palloc(sizeof(int64) * (n ? n : 1)));
    result.failed_errors = static_cast<char **>(palloc(sizeof(char *) * (n ? n : 1)));
    result.failed_count = 0;
    result.context = CurrentMemoryContext;
    ApplyCounts counts;
    apply_records(records, n, ApplyMode::Isolate, collect_failure, &result, &counts);
    // The applier reports failures grouped by collection: settle_slice wants id order.
    sort_failures(&result);
    settle_slice(owner, ids, n, result);
    total->inserted += counts.inserted;
    total->updated += counts.updated;
    total->deleted += counts.deleted;
    total->skipped += counts.skipped;
    total->failed += counts.failed;
}

void fail_staged_rows(Oid owner, const int64 *ids, int n, const char *error, ApplyCounts *total) {
    SliceResult result;
    result.ids = ids;
    result.failed_ids = const_cast<int64 *>(ids);
    result.failed_errors = static_cast<char **>(palloc(sizeof(char *) * (n ? n : 1)));
    for (int i = 0; i < n; i++)
        result.failed_errors[i] = const_cast<char *>(error);
    result.failed_count = n;
    result.context = CurrentMemoryContext;
    settle_slice(owner, ids, n, result);
    total->failed += n;
}

void define_staging_settings() {
    DefineCustomEnumVariable("sequin.apply_mode",
                             "immediate: rows inserted into sequin.staging are applied by the "
                             "inserting statement; deferred: they wait for apply_staging().",
                             nullptr, &apply_mode, ApplyImmediate, apply_mode_options, PGC_USERSET,
                             0, nullptr, nullptr, nullptr);
}

bool apply_mode_is_deferred() {
    return apply_mode == ApplyDeferred;
}

} // namespace sequin
