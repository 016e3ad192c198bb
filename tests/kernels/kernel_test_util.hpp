// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the kernel tests: seeded random factorizations and a double-precision reference.

#include <nanoquant/core/factorization.hpp>
#include <nanoquant/detail/random.hpp>

#include "../support/random_matrices.hpp"

namespace nqtest {
using nanoquant::Index;

/// Random ±1 factors, positive scales ~|N(0,1)|+0.1, optional s_mid (seeded).
inline nanoquant::Factorization<float> random_factorization(Index m, Index n, Index r, bool mid, std::uint64_t seed)
{
    nanoquant::detail::Rng rng(seed);
    auto gauss = [&](Index a, Index b) {
        nanoquant::Matrix<float> X(a, b);
        for (Index j = 0; j < b; ++j)
            for (Index i = 0; i < a; ++i) X(i, j) = float(rng.normal());
        return X;
    };
    nanoquant::Factorization<float> f;
    f.u = nanoquant::PackedSignMatrix::pack(gauss(m, r));
    f.vt = nanoquant::PackedSignMatrix::pack(gauss(r, n));
    f.s_out = (gauss(m, 1).array().abs() + 0.1f).matrix();
    f.s_in = (gauss(n, 1).array().abs() + 0.1f).matrix();
    if (mid) f.s_mid = (gauss(r, 1).array().abs() + 0.1f).matrix();
    return f;
}

inline nanoquant::Matrix<float> random_matrix(Index a, Index b, std::uint64_t seed)
{
    return nanoquant::testing::gaussian<float>(a, b, seed);
}
}  // namespace nqtest
