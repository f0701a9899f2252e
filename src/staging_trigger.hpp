// The staging path: the statement-level trigger that applies records inserted into
// sequin.staging (or a user's table with a jsonb column "record"), and apply_staging().
#pragma once

extern "C" {
// Defines sequin.apply_mode; called from _PG_init.
void sequin_define_staging_settings(void);
}
