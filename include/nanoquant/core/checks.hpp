// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file checks.hpp
/// Boundary checks shared by every entry point: finiteness and shapes, with messages that name
/// the function, the argument and the values.

#include <cmath>
#include <sstream>
#include <string>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// The NaNs and infinities of a matrix: how many, and the first in a column-major scan.
struct NonFinite {
    Index count = 0;       ///< number of non-finite entries (0: all finite)
    Index first_row = -1;  ///< position of the first one (-1 when count == 0)
    Index first_col = -1;
    double first_value = 0;  ///< its value (NaN, +inf or -inf)

    /// "<name> has N non-finite value(s) (first at row i, col j: v)"; the text of check_finite().
    std::string describe(const std::string& name) const
    {
        std::ostringstream os;
        os << name << " has " << count << " non-finite value" << (count == 1 ? "" : "s") << " (first at row "
           << first_row << ", col " << first_col << ": " << first_value << ")";
        return os.str();
    }
};

/// Counts the non-finite entries of `X` and finds the first (column-major scan).
template <typename Derived>
NonFinite find_non_finite(const Eigen::DenseBase<Derived>& X)
{
    NonFinite r;
    for (Index j = 0; j < X.cols(); ++j)
        for (Index i = 0; i < X.rows(); ++i)
            if (!std::isfinite(static_cast<double>(X(i, j)))) {
                if (r.count == 0) {
                    r.first_row = i;
                    r.first_col = j;
                    r.first_value = static_cast<double>(X(i, j));
                }
                ++r.count;
            }
    return r;
}

/// Throws nanoquant::invalid_argument if `X` holds a NaN or an infinity. The message gives the
/// count of such values and the position of the first (column-major scan; find_non_finite()).
/// \param where  the calling function, e.g. "AdmmSolver::solve"
/// \param name   the argument's name, e.g. "W"
template <typename Derived>
void check_finite(const Eigen::DenseBase<Derived>& X, const char* where, const char* name)
{
    const NonFinite r = find_non_finite(X);
    NANOQUANT_CHECK(r.count == 0, where, r.describe(name));
}

/// Throws unless `X` is rows × cols.
template <typename Derived>
void check_shape(const Eigen::EigenBase<Derived>& X, Index rows, Index cols, const char* where,
                 const char* name)
{
    NANOQUANT_CHECK(X.rows() == rows && X.cols() == cols, where,
                    name << " must be " << rows << "x" << cols << ", got " << X.rows() << "x"
                         << X.cols());
}

/// Throws if `X` has no elements.
template <typename Derived>
void check_nonempty(const Eigen::EigenBase<Derived>& X, const char* where, const char* name)
{
    NANOQUANT_CHECK(X.rows() > 0 && X.cols() > 0, where,
                    name << " must be non-empty, got " << X.rows() << "x" << X.cols());
}

}  // namespace nanoquant
