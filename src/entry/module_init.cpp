// The module: its magic block, and _PG_init (settings and cache callbacks).
#include "mapping/mapping_cache.hpp"
#include "pg/stats_counters.hpp"
#include "staging/staging_queue.hpp"

extern "C" {
#include "postgres.h"
#include "fmgr.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

extern int sequin_batch_size;

void _PG_init(void);
}

void _PG_init(void) {
    DefineCustomIntVariable(
        "sequin.batch_size", "Records per set-based statement when applying a batch.", nullptr,
        &sequin_batch_size, 1000, 1, 1000000, PGC_USERSET, 0, nullptr, nullptr, nullptr);
    sequin::define_staging_settings();
    sequin::define_stats_settings();
    MarkGUCPrefixReserved("sequin");
    sequin::mapping_cache_register_callbacks();
}
