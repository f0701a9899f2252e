// The staging path's SQL-callable functions: the triggers of sequin.staging (and of a
// user's table) and sequin.apply_staging(). C-shaped: the work is in staging/.
#include "entry/counts_result.hpp"
#include "entry/entry_point.hpp"
#include "pg/run_as_owner.hpp"
#include "staging/staging_trigger.hpp"

// AFTER INSERT ... FOR EACH STATEMENT ... REFERENCING NEW TABLE: applies the new rows.
SEQUIN_FUNCTION(sequin_staging_trigger) {
    TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
        !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event) ||
        !td->tg_newtable)
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("sequin.staging_trigger() must be attached AFTER INSERT ... "
                               "REFERENCING NEW TABLE AS ... FOR EACH STATEMENT")));
    sequin::apply_transition_table(td);
    return PointerGetDatum(nullptr);
}

// sequin.apply_staging(max_rows, retry_failed): applies waiting rows in arrival order.
SEQUIN_FUNCTION(sequin_apply_staging) {
    if (!PG_ARGISNULL(0) && PG_GETARG_INT32(0) < 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("max_rows must not be negative")));
    int64 max_rows = PG_ARGISNULL(0) ? -1 : PG_GETARG_INT32(0);
    bool retry_failed = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
    sequin::ApplyCounts total;
    sequin::drain_staging(max_rows, retry_failed, &total);
    sequin::return_counts(fcinfo, total);
    return (Datum)0;
}

namespace {

// The capture triggers write failed records into sequin.staging as its owner: on any other
// table they would let a role without rights on the queue write into it.
void require_staging_table(TriggerData *td, const char *function) {
    if (RelationGetRelid(td->tg_relation) != sequin::sequin_relation("staging"))
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("%s() serves sequin.staging only", function),
                        errhint("For a table of your own, use sequin.staging_trigger().")));
}

} // namespace

// BEFORE INSERT ... FOR EACH ROW on sequin.staging: take the record, skip the row.
SEQUIN_FUNCTION(sequin_staging_capture) {
    TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
        !TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
        elog(ERROR, "sequin._staging_capture() must be a BEFORE INSERT row trigger");
    require_staging_table(td, "sequin._staging_capture");
    return PointerGetDatum(sequin::capture_staged_row(td));
}

// AFTER INSERT ... FOR EACH STATEMENT on sequin.staging: apply what is left.
SEQUIN_FUNCTION(sequin_staging_flush) {
    if (!CALLED_AS_TRIGGER(fcinfo))
        elog(ERROR, "sequin._staging_flush() must be a statement trigger");
    require_staging_table(reinterpret_cast<TriggerData *>(fcinfo->context),
                          "sequin._staging_flush");
    sequin::flush_captured_records();
    return PointerGetDatum(nullptr);
}
