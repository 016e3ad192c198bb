// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file error.hpp
/// Exceptions and the argument/invariant check macros used throughout nanoquant.
///
/// - nanoquant::invalid_argument: the caller passed something unusable (shape mismatch, NaN/Inf,
///   impossible bit budget, bad option). The message names the function, the argument, the rule
///   and the offending value.
/// - nanoquant::numerical_error: a computation broke down (non-finite iterate, failed factorization).
/// - nanoquant::io_error: a file is missing, truncated or malformed; the message names the file.
///
/// Message format. invalid_argument from the library reads "nanoquant::<where>: <what>", where
/// <where> is the function's name inside namespace nanoquant ("AdmmSolver::solve",
/// "kernels::gemm") and <what> names the argument, the rule and the value. Call sites pass <where>
/// without the "nanoquant::" prefix (NANOQUANT_CHECK(cond, "kernels::gemm", ...)); a <where> that
/// carries it anyway is not prefixed twice (tests/core/test_errors.cpp pins the format). io_error
/// reads "<file>: <what>". Callers that need a fact about a failure (which value is not finite,
/// whether a bit budget fits) get it from the check functions themselves (core/checks.hpp
/// find_non_finite, core/bit_budget.hpp budget_shortfall), never by parsing what().

#include <sstream>
#include <stdexcept>
#include <string>

namespace nanoquant {

/// Bad input from the caller.
class invalid_argument : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

/// A numerical breakdown (NaN/Inf produced, solver failure) reported by `throw_if_failed()`.
class numerical_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A file that cannot be read or written, or whose contents are malformed.
class io_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {

/// "nanoquant::<where>: <what>" (see the file comment), with <where> taken as given when it already
/// starts with "nanoquant::".
inline std::string error_message(const char* where, const std::string& what)
{
    static constexpr char prefix[] = "nanoquant::";
    const std::string w = where ? where : "";
    const bool qualified = w.compare(0, sizeof(prefix) - 1, prefix) == 0;
    return (qualified ? w : prefix + w) + ": " + what;
}

[[noreturn]] inline void raise_invalid_argument(const char* where, const std::string& what)
{
    throw ::nanoquant::invalid_argument(error_message(where, what));
}

[[noreturn]] inline void raise_io_error(const std::string& what)
{
    throw ::nanoquant::io_error(what);
}

}  // namespace detail
}  // namespace nanoquant

/// Always-on argument check. `msg` is a stream expression: `NANOQUANT_CHECK(r > 0, "f", "rank = " << r)`.
#define NANOQUANT_CHECK(cond, where, msg)                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            std::ostringstream nanoquant_check_os_;                            \
            nanoquant_check_os_ << msg;                                        \
            ::nanoquant::detail::raise_invalid_argument(where,                 \
                                                        nanoquant_check_os_.str()); \
        }                                                                      \
    } while (0)

/// Internal invariant; compiled out under NDEBUG or NANOQUANT_NO_DEBUG.
#if defined(NDEBUG) || defined(NANOQUANT_NO_DEBUG)
#define NANOQUANT_ASSERT(cond) ((void)0)
#else
#include <cassert>
#define NANOQUANT_ASSERT(cond) assert(cond)
#endif
