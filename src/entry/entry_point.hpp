// How every SQL-callable function of the extension is defined. SEQUIN_FUNCTION(name) makes
// the extern "C" function `name` (with its PG_FUNCTION_INFO_V1 record) and runs the body that
// follows through run_entry: a C++ exception from the body becomes an ereport(ERROR) after
// the handler has ended. A server error raised in a C-shaped body (ereport, longjmp) passes
// through run_entry untouched: its frame holds no object with a destructor.
#pragma once

extern "C" {
#include "postgres.h"
#include "fmgr.h"
}

namespace sequin {

typedef Datum (*EntryBody)(FunctionCallInfo fcinfo);

Datum run_entry(FunctionCallInfo fcinfo, EntryBody body);

} // namespace sequin

#define SEQUIN_FUNCTION(name)                                                                      \
    static Datum name##_body(FunctionCallInfo fcinfo);                                             \
    extern "C" {                                                                                   \
    PG_FUNCTION_INFO_V1(name);                                                                     \
    }                                                                                              \
    extern "C" Datum name(PG_FUNCTION_ARGS) {                                                      \
        return sequin::run_entry(fcinfo, name##_body);                                             \
    }                                                                                              \
    static Datum name##_body(FunctionCallInfo fcinfo)
