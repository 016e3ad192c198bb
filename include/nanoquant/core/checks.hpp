// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file checks.hpp
/// Boundary checks shared by every entry point: finiteness and shapes, with messages that name
/// the function, the argument and the values.

#include <cmath>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// Throws nanoquant::invalid_argument if `X` holds a NaN or an infinity. The message gives the
/// count of such values and the position of the first (column-major scan).
/// \param where  the calling function, e.g. "AdmmSolver::solve"
/// \param name   the argument's name, e.g. "W"
template <typename Derived>
void check_finite(const Eigen::DenseBase<Derived>& X, const char* where, const char* name)
{
    Index count = 0, first_row = -1, first_col = -1;
    for (Index j = 0; j < X.cols(); ++j)
        for (Index i = 0; i < X.rows(); ++i)
            if (!std::isfinite(static_cast<double>(X(i, j)))) {
                if (count == 0) {
                    first_row = i;
                    first_col = j;
                }
                ++count;
            }
    NANOQUANT_CHECK(count == 0, where,
                    name << " has " << count << " non-finite value" << (count == 1 ? "" : "s")
                         << " (first at row " << first_row << ", col " << first_col << ": "
                         << static_cast<double>(X(first_row, first_col)) << ")");
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
