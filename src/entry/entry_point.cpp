// The one wrapper of every SQL-callable function: see entry_point.hpp.
#include "entry/entry_point.hpp"
#include "pg/error_boundary.hpp"

namespace sequin {

Datum run_entry(FunctionCallInfo fcinfo, EntryBody body) {
    Datum result = (Datum)0;
    run_cpp([&] { result = body(fcinfo); });
    return result;
}

} // namespace sequin
