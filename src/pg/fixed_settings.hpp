// Settings pinned while values are written as text to be read back later (tombstones): the
// text then means the same whatever the session's DateStyle, TimeZone, IntervalStyle,
// extra_float_digits or lc_monetary. C-shaped server code.
#pragma once

extern "C" {
#include "postgres.h"
}

namespace sequin {

// Sets the fixed settings in a new GUC nest level; returns the level for leave_fixed_settings.
// An error before leaving is fine: the (sub)transaction's abort restores the settings.
int enter_fixed_settings();
void leave_fixed_settings(int level);

} // namespace sequin
