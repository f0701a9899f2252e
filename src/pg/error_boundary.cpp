// The C++ <-> PostgreSQL error boundary: see error_boundary.hpp.
#include "pg/error_boundary.hpp"

extern "C" {
#include "mb/pg_wchar.h"
#include "utils/memutils.h"
}

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>

namespace sequin {

PgError take_server_error(MemoryContext caller_context) {
    MemoryContextSwitchTo(caller_context);
    ErrorData *edata = CopyErrorData();
    FlushErrorState();
    PgError error(edata->sqlerrcode, edata->message ? edata->message : "unknown error",
                  edata->detail ? edata->detail : "", edata->hint ? edata->hint : "");
    FreeErrorData(edata);
    return error;
}

// Copies text into dest, cut at a character boundary of the database encoding when it is
// too long: the client must never receive half a character.
static void copy_text(char *dest, size_t size, const std::string &text) {
    int length = static_cast<int>(std::min(text.size(), size - 1));
    if (text.size() > size - 1)
        length = pg_mbcliplen(text.c_str(), static_cast<int>(text.size()), length);
    memcpy(dest, text.c_str(), length);
    dest[length] = '\0';
}

void capture_exception(PendingError &out, const std::exception_ptr &error) noexcept {
    out.pending = true;
    out.detail[0] = '\0';
    out.hint[0] = '\0';
    try {
        std::rethrow_exception(error);
    } catch (const PgError &e) {
        out.sqlstate = e.sqlstate();
        copy_text(out.message, sizeof out.message, e.message());
        copy_text(out.detail, sizeof out.detail, e.detail());
        copy_text(out.hint, sizeof out.hint, e.hint());
    } catch (const std::bad_alloc &) {
        out.sqlstate = ERRCODE_OUT_OF_MEMORY;
        copy_text(out.message, sizeof out.message, "out of memory in sequin_upsert");
    } catch (const std::exception &e) {
        out.sqlstate = ERRCODE_INTERNAL_ERROR;
        copy_text(out.message, sizeof out.message, std::string("sequin_upsert: ") + e.what());
    } catch (...) {
        out.sqlstate = ERRCODE_INTERNAL_ERROR;
        copy_text(out.message, sizeof out.message, "sequin_upsert: unknown C++ exception");
    }
}

void raise_pending(const PendingError &error) {
    ereport(ERROR, (errcode(error.sqlstate), errmsg_internal("%s", error.message),
                    error.detail[0] ? errdetail_internal("%s", error.detail) : 0,
                    error.hint[0] ? errhint("%s", error.hint) : 0));
    pg_unreachable();
}

} // namespace sequin
