// Kept plans: see kept_plan.hpp.
#include "pg/kept_plan.hpp"
#include "pg/run_as_owner.hpp"

extern "C" {
#include "utils/guc.h"
}

#include <initializer_list>

namespace sequin {

SPIPlanPtr kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *arg_types,
                     int cursor_options) {
    if (*slot)
        return *slot;
    SPIPlanPtr plan = SPI_prepare_cursor(sql, nargs, const_cast<Oid *>(arg_types), cursor_options);
    if (!plan)
        elog(ERROR, "sequin_upsert: could not prepare \"%s\": %s", sql,
             SPI_result_code_string(SPI_result));
    SPI_keepplan(plan);
    *slot = plan;
    return plan;
}

void free_kept_plan(SPIPlanPtr *slot) {
    if (*slot)
        SPI_freeplan(*slot);
    *slot = nullptr;
}

uint64 run_kept_plan(SPIPlanPtr plan, const char *what, Datum *values, const char *nulls,
                     const PlanRun &how) {
    MemoryContext context = CurrentMemoryContext;
    // The plan is made (or remade) at execution, under these settings: a join with the
    // batch can then only be a nested loop over it, probing the table's index (a generic plan
    // made while the table was empty would otherwise scan it whole for each row of the batch
    // once it has grown: the plan is not remade before the next ANALYZE). On error, the
    // (sub)transaction's abort restores the settings.
    int guc_level = -1;
    if (how.nested_loop_only) {
        guc_level = NewGUCNestLevel();
        for (const char *setting : {"enable_hashjoin", "enable_mergejoin", "enable_seqscan"})
            (void)set_config_option(setting, "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
                                    true, 0, false);
    }
    int rc = OidIsValid(how.as_user)
                 ? spi_execute_as(how.as_user, plan, values, nulls, how.read_only, how.max_rows)
                 : SPI_execute_plan(plan, values, nulls, how.read_only, how.max_rows);
    if (guc_level >= 0)
        AtEOXact_GUC(true, guc_level);
    if (rc < 0)
        elog(ERROR, "sequin_upsert: statement failed (%s): %s", SPI_result_code_string(rc), what);
    MemoryContextSwitchTo(context);
    return SPI_processed;
}

} // namespace sequin
