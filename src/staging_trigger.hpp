// The staging path: the statement-level trigger that applies records inserted into
// sequin.staging (or a user's table with a jsonb column "record"), and apply_staging().
#pragma once

extern "C" {
#include "postgres.h"
}

extern "C" {
// Defines sequin.apply_mode; called from _PG_init.
void sequin_define_staging_settings(void);
// sequin.apply_mode = deferred: staged rows wait for apply_staging().
bool sequin_apply_mode_is_deferred(void);
}
