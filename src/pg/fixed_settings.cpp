// Fixed settings for text that must read back the same: see fixed_settings.hpp.
#include "pg/fixed_settings.hpp"

extern "C" {
#include "utils/guc.h"
}

namespace sequin {

namespace {

template <size_t N> int enter_settings(const char *const (&settings)[N][2]) {
    int level = NewGUCNestLevel();
    for (const auto &setting : settings)
        (void)set_config_option(setting[0], setting[1], PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
                                true, 0, false);
    return level;
}

} // namespace

int enter_fixed_settings() {
    static const char *const settings[][2] = {
        {"DateStyle", "ISO, MDY"},
        {"IntervalStyle", "postgres"},
        {"TimeZone", "UTC"},
        {"extra_float_digits", "3"},
        {"lc_monetary", "C"},
        {"bytea_output", "hex"},
        {"standard_conforming_strings", "on"}, // Citus writes string literals for the workers
    };
    return enter_settings(settings);
}

int enter_input_settings() {
    static const char *const settings[][2] = {
        {"DateStyle", "ISO, MDY"},
        {"IntervalStyle", "postgres"},
    };
    return enter_settings(settings);
}

void leave_fixed_settings(int level) {
    AtEOXact_GUC(true, level);
}

} // namespace sequin
