// The C++ <-> PostgreSQL error boundary.
//
// PostgreSQL reports errors by longjmp (ereport), which skips C++ destructors; C++ reports
// them by exceptions, which must never unwind through PostgreSQL's C frames. Two tools keep
// the two apart:
//   * pg_guard(fn): runs server code from C++; a server error becomes a PgError exception
//     carrying the SQLSTATE and texts. The transaction is then unusable until the error is
//     re-raised (which the entry point does), exactly as after PG_CATCH.
//   * run_entry (entry/entry_point.hpp): every extern "C" entry point runs its body through
//     it; any exception is copied into plain C data and re-raised with ereport after the
//     handler has ended.
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

// Runs fn() (server code) and turns an ereport(ERROR) inside it into a PgError. fn is a
// lambda that captures by reference and returns plain data (a pointer, a number, a Datum):
// the checks below hold it to that, so a longjmp out of fn skips no destructor of a capture
// or a result. Its body must create no C++ objects either (build strings outside it).
template <typename Fn> auto pg_guard(Fn &&fn) -> decltype(fn()) {
    using Result = decltype(fn());
    static_assert(std::is_trivially_destructible_v<std::remove_reference_t<Fn>>,
                  "pg_guard: capture by reference; a captured object would be skipped by longjmp");
    static_assert(std::is_void_v<Result> || std::is_trivially_destructible_v<Result>,
                  "pg_guard: return plain data and build C++ objects from it outside the guard");
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

// Runs C++ code from C-shaped code (or from PostgreSQL): an exception thrown by fn is raised
// with ereport(ERROR) once its handler has ended. A longjmp out of fn passes through: this
// frame holds no object with a destructor.
template <typename Fn> void run_cpp(Fn &&fn) {
    PendingError pending;
    try {
        fn();
    } catch (...) {
        capture_exception(pending, std::current_exception());
    }
    if (pending.pending)
        raise_pending(pending);
}

} // namespace sequin
