// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file random_matrices.hpp
/// Seeded random matrices for nanoquant's tests and benchmarks (not installed): one definition of
/// the Gaussian and positive fills, so that every program draws the same numbers from the same seed.
/// Entries are drawn from nanoquant::detail::Rng column by column (column-major order).

#include <cstdint>

#include "nanoquant/core/types.hpp"
#include "nanoquant/detail/random.hpp"

namespace nanoquant {
namespace testing {

/// rows × cols entries scale·N(0, 1) from `rng` (advanced), column by column.
template <typename S = double>
Matrix<S> randn(Index rows, Index cols, detail::Rng& rng, double scale = 1.0)
{
    Matrix<S> M(rows, cols);
    for (Index j = 0; j < cols; ++j)
        for (Index i = 0; i < rows; ++i) M(i, j) = S(scale * rng.normal());
    return M;
}

/// rows × cols standard normal entries from a fresh Rng(seed).
template <typename S = double>
Matrix<S> gaussian(Index rows, Index cols, std::uint64_t seed)
{
    detail::Rng rng(seed);
    return randn<S>(rows, cols, rng);
}

/// n entries uniform in [0.5, 1.5) from `rng` (advanced): positive scales or weights.
template <typename S = double>
Vector<S> rand_pos(Index n, detail::Rng& rng)
{
    Vector<S> v(n);
    for (Index i = 0; i < n; ++i) v(i) = S(0.5 + rng.uniform());
    return v;
}

}  // namespace testing
}  // namespace nanoquant
