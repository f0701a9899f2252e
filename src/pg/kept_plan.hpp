// Statements prepared once per backend and kept (SPI_prepare + SPI_keepplan), and how they
// are run: every cached plan of the extension goes through these two functions.
// C-shaped server code: both raise with ereport.
#pragma once

extern "C" {
#include "postgres.h"
#include "executor/spi.h"
}

namespace sequin {

// Prepares sql into *slot unless it is there already, and returns it (SPI connected). Plans
// over the extension's own tables live for the backend: the plan cache re-plans them when
// those tables change. Plans of a mapping are freed with the mapping (free_kept_plan).
SPIPlanPtr kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *arg_types,
                     int cursor_options = 0);

void free_kept_plan(SPIPlanPtr *slot);

// How run_kept_plan runs a plan.
struct PlanRun {
    Oid as_user = InvalidOid; // the extension's bookkeeping: run as this role
    // A join with the batch visits (and locks) rows in its order, by index probes.
    bool nested_loop_only = false;
    bool read_only = false;
    long max_rows = 0; // 0: all
};

// Runs plan with the parameters; returns SPI_processed (SPI_tuptable holds any result).
// what names the statement in the error raised when SPI itself fails.
uint64 run_kept_plan(SPIPlanPtr plan, const char *what, Datum *values, const char *nulls,
                     const PlanRun &how);

} // namespace sequin
