// sequin.stats counters: one row per (collection, backend slot), updated once per
// collection per call. C-shaped server code.
#include "stats.hpp"
#include "bookkeeping.hpp"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
}

namespace {
bool track_stats = true;
SPIPlanPtr add_plan = nullptr;
} // namespace

void sequin_define_stats_settings(void) {
    DefineCustomBoolVariable("sequin.track_stats",
                             "Count applied, skipped and failed records per collection "
                             "(the sequin.stats view).",
                             nullptr, &track_stats, true, PGC_USERSET, 0, nullptr, nullptr,
                             nullptr);
}

namespace sequin {

void stats_add(const char *collection, int length, const ApplyCounts &delta, Oid owner) {
    if (!track_stats)
        return;
    if (!OidIsValid(sequin_relation("stats_counters")))
        return; // extension not yet updated to 0.2.0
    if (!add_plan) {
        Oid types[8] = {TEXTOID, INT4OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, BOOLOID};
        SPIPlanPtr plan = SPI_prepare(
            "INSERT INTO sequin.stats_counters AS s (collection_id, backend_slot, inserted, "
            "updated, deleted, skipped, failed, last_applied) VALUES ($1, $2, $3, $4, $5, $6, $7, "
            "CASE WHEN $8 THEN pg_catalog.now() END) "
            "ON CONFLICT (collection_id, backend_slot) DO UPDATE SET "
            "inserted = s.inserted OPERATOR(pg_catalog.+) EXCLUDED.inserted, "
            "updated = s.updated OPERATOR(pg_catalog.+) EXCLUDED.updated, "
            "deleted = s.deleted OPERATOR(pg_catalog.+) EXCLUDED.deleted, "
            "skipped = s.skipped OPERATOR(pg_catalog.+) EXCLUDED.skipped, "
            "failed = s.failed OPERATOR(pg_catalog.+) EXCLUDED.failed, "
            "last_applied = COALESCE(EXCLUDED.last_applied, s.last_applied)",
            8, types);
        if (!plan)
            elog(ERROR, "could not prepare the stats update: %s",
                 SPI_result_code_string(SPI_result));
        SPI_keepplan(plan);
        add_plan = plan;
    }
    bool applied = delta.inserted + delta.updated + delta.deleted > 0;
    // A mapped collection_id fits in an index (sequin.mappings has one on it); an unknown
    // one from a record may not: its counters go under its first 200 bytes.
    if (length > 200)
        length = pg_mbcliplen(collection, length, 200);
    Datum args[8] = {PointerGetDatum(cstring_to_text_with_len(collection, length)),
                     Int32GetDatum(MyBackendId),
                     Int64GetDatum(delta.inserted),
                     Int64GetDatum(delta.updated),
                     Int64GetDatum(delta.deleted),
                     Int64GetDatum(delta.skipped),
                     Int64GetDatum(delta.failed),
                     BoolGetDatum(applied)};
    int rc = spi_execute_as(owner, add_plan, args, nullptr, false, 0);
    if (rc != SPI_OK_INSERT)
        elog(ERROR, "could not update sequin.stats_counters: %s", SPI_result_code_string(rc));
}

} // namespace sequin
