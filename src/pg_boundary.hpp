// The C++ <-> PostgreSQL error boundary.
//
// PostgreSQL reports errors by longjmp (ereport), which skips C++ destructors; C++ reports
// them by exceptions, which must never unwind through PostgreSQL's C frames. Two tools keep
// the two apart:
//   * pg_guard(fn): runs server code from C++; a server error becomes a PgError exception
//     carrying the SQLSTATE and texts. The transaction is then unusable until the error is
//     re-raised (which the entry point does), exactly as after PG_CATCH.
//   * SEQUIN_ENTRY_BEGIN/END: wraps the C++ body of every extern "C" entry point; any
//     exception is copied into plain C data and re-raised with ereport after the handler.
#pragma once

extern "C" {
#include "postgres.h"
#include "utils/elog.h"
}

#include <csetjmp>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>

namespace sequin {

// A server error (or one of ours) travelling through C++ code.
class PgError : public std::exception {
  public:
    PgError(int sqlstate, std::string message, std::string detail = {}, std::string hint = {})
        : sqlstate_(sqlstate), message_(std::move(message)), detail_(std::move(detail)),
          hint_(std::move(hint)) {}
    const char *what() const noexcept override { return message_.c_str(); }
    int sqlstate() const { return sqlstate_; }
    const std::string &message() const { return message_; }
    const std::string &detail() const { return detail_; }
    const std::string &hint() const { return hint_; }

  private:
    int sqlstate_;
    std::string message_, detail_, hint_;
};

// Copies the current server error out of the error stack and flushes it.
PgError take_server_error(MemoryContext caller_context);

// Runs fn() (server code; it must create no objects with destructors) and turns an
// ereport(ERROR) inside it into a PgError.
template <typename Fn> auto pg_guard(Fn &&fn) -> decltype(fn()) {
    MemoryContext caller_context = CurrentMemoryContext;
    sigjmp_buf *saved_exception_stack = PG_exception_stack;
    ErrorContextCallback *saved_context_stack = error_context_stack;
    sigjmp_buf local_jump;
    if (sigsetjmp(local_jump, 0) == 0) {
        PG_exception_stack = &local_jump;
        // A C++ exception from fn() itself must leave the server's stacks as they were too.
        try {
            if constexpr (std::is_void_v<decltype(fn())>) {
                fn();
                PG_exception_stack = saved_exception_stack;
                error_context_stack = saved_context_stack;
                return;
            } else {
                auto result = fn();
                PG_exception_stack = saved_exception_stack;
                error_context_stack = saved_context_stack;
                return result;
            }
        } catch (...) {
            PG_exception_stack = saved_exception_stack;
            error_context_stack = saved_context_stack;
            throw;
        }
    }
    PG_exception_stack = saved_exception_stack;
    error_context_stack = saved_context_stack;
    throw take_server_error(caller_context);
}

// Plain-C copy of an exception, so it can be reported after the catch block has ended.
struct PendingError {
    bool pending = false;
    int sqlstate = 0;
    char message[1024];
    char detail[1024];
    char hint[512];
};

void capture_exception(PendingError &out, const std::exception_ptr &error) noexcept;
[[noreturn]] void raise_pending(const PendingError &error);

} // namespace sequin

// Every extern "C" entry point wraps its C++ body in these.
#define SEQUIN_ENTRY_BEGIN                                                                         \
    sequin::PendingError sequin_pending_error_;                                                    \
    try {

#define SEQUIN_ENTRY_END                                                                           \
    }                                                                                              \
    catch (...) {                                                                                  \
        sequin::capture_exception(sequin_pending_error_, std::current_exception());                \
    }                                                                                              \
    if (sequin_pending_error_.pending)                                                             \
        sequin::raise_pending(sequin_pending_error_);
