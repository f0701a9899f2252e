// Settings pinned while values are written as text to be read back later (tombstones, and
// the literals Citus sends to its workers): the text then means the same whatever the
// session's DateStyle, TimeZone, IntervalStyle, extra_float_digits, lc_monetary or
// standard_conforming_strings. C-shaped server code.
#pragma once

extern "C" {
#include "postgres.h"
}

namespace sequin {

// Sets the fixed settings in a new GUC nest level; returns the level for leave_fixed_settings.
// An error before leaving is fine: the (sub)transaction's abort restores the settings.
int enter_fixed_settings();
void leave_fixed_settings(int level);

// The settings that input functions read besides TimeZone (DateStyle's field order for
// "05/01/2024", IntervalStyle's sign rule for "-1 1:00:00"), fixed while records' values are
// converted: a value means the same in every session. Left with leave_fixed_settings.
int enter_input_settings();

} // namespace sequin
