// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file synthetic.hpp
/// Reproducible synthetic calibration activations with the heavy outlier channels LLM activations
/// have. Used by the tests, the benchmark and the results report (docs/results.md) when no real
/// activations are available.
///
/// Model (tokens × n): x_t = (g_t + a_t Q) ⊙ c, with g_t ~ N(0, I_n) per-token noise, a_t ~ N(0, I_L)
/// and Q (L × n, entries N(0, shared_scale²)) a shared low-rank component that correlates the channels,
/// and c the channel scales: 1 for ordinary channels and Uniform[min_factor, max_factor] for
/// `num_outliers` distinct channels chosen at random.

#include <cstdint>
#include <vector>

#include "nanoquant/core/types.hpp"
#include "nanoquant/detail/random.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/refine/importance.hpp"
#include "nanoquant/refine/layer_reconstruction.hpp"

namespace nanoquant {

/// Options of make_outlier_activations().
struct OutlierActivationOptions {
    /// Number of outlier channels. Default 4; range [0, n].
    Index num_outliers = 4;
    /// Smallest outlier channel factor. Default 20; > 0.
    double min_factor = 20.0;
    /// Largest outlier channel factor. Default 100; >= min_factor.
    double max_factor = 100.0;
    /// Rank L of the shared component that correlates channels. Default 8; >= 0.
    Index shared_rank = 8;
    /// Standard deviation of the entries of Q. Default 0.5; >= 0.
    double shared_scale = 0.5;
    /// Seed of the "model": the outlier channels, their factors and Q. Default 0.
    std::uint64_t seed = 0;
    /// Seed of the per-token draws (g_t, a_t). Two calls with the same `seed` and different
    /// `token_seed` give independent tokens from the same distribution (calibration vs held-out).
    /// Default 0.
    std::uint64_t token_seed = 0;
};

/// The outlier channel indices and factors of make_outlier_activations() for the same options.
struct OutlierChannels {
    std::vector<Index> index;    ///< distinct channel indices, in draw order
    std::vector<double> factor;  ///< the factor of each
};

namespace detail {
inline OutlierChannels draw_outlier_channels(Index n, const OutlierActivationOptions& o, Rng& rng)
{
    OutlierChannels oc;
    std::vector<char> taken(static_cast<std::size_t>(n), 0);
    while (static_cast<Index>(oc.index.size()) < o.num_outliers) {
        const Index j = static_cast<Index>(rng.below(static_cast<std::uint64_t>(n)));
        if (taken[static_cast<std::size_t>(j)]) continue;
        taken[static_cast<std::size_t>(j)] = 1;
        oc.index.push_back(j);
        oc.factor.push_back(o.min_factor + (o.max_factor - o.min_factor) * rng.uniform());
    }
    return oc;
}
}  // namespace detail

/// Generates tokens × n activations (see the file comment). Identical for identical arguments on
/// every platform (nanoquant::detail::Rng).
/// \param channels_out if not null, receives the outlier channels and their factors
/// \throws nanoquant::invalid_argument on non-positive sizes or inconsistent options
template <typename Scalar>
Matrix<Scalar> make_outlier_activations(Index tokens, Index n, const OutlierActivationOptions& o = {},
                                        OutlierChannels* channels_out = nullptr)
{
    constexpr const char* where = "make_outlier_activations";
    NANOQUANT_CHECK(tokens > 0 && n > 0, where, "tokens and n must be > 0, got " << tokens << " and " << n);
    NANOQUANT_CHECK(o.num_outliers >= 0 && o.num_outliers <= n, where,
                    "num_outliers must be in [0, n = " << n << "], got " << o.num_outliers);
    NANOQUANT_CHECK(o.min_factor > 0 && o.max_factor >= o.min_factor, where,
                    "need 0 < min_factor <= max_factor, got " << o.min_factor << " and " << o.max_factor);
    NANOQUANT_CHECK(o.shared_rank >= 0 && o.shared_scale >= 0, where,
                    "shared_rank and shared_scale must be >= 0, got " << o.shared_rank << " and "
                                                                       << o.shared_scale);
    detail::Rng rng(o.seed);
    const OutlierChannels oc = detail::draw_outlier_channels(n, o, rng);
    Matrix<double> Q(o.shared_rank, n);
    for (Index j = 0; j < n; ++j)
        for (Index l = 0; l < o.shared_rank; ++l) Q(l, j) = o.shared_scale * rng.normal();
    detail::Rng trng(o.token_seed ^ (0x5DEECE66DULL * (o.seed + 1)));
    Matrix<double> A(tokens, o.shared_rank);
    for (Index l = 0; l < o.shared_rank; ++l)
        for (Index t = 0; t < tokens; ++t) A(t, l) = trng.normal();
    Matrix<double> X(tokens, n);
    for (Index j = 0; j < n; ++j)
        for (Index t = 0; t < tokens; ++t) X(t, j) = trng.normal();
    if (o.shared_rank > 0) X.noalias() += A * Q;
    for (std::size_t k = 0; k < oc.index.size(); ++k) X.col(oc.index[k]) *= oc.factor[k];
    if (channels_out) *channels_out = oc;
    return X.cast<Scalar>();
}

/// A synthetic calibration set for one layer W (m×n), as used by docs/results.md, the
/// reconstruction examples and the slow reconstruction test.
template <typename Scalar>
struct SyntheticCalibration {
    Matrix<Scalar> X;          ///< calibration tokens (tokens × n), token_seed 1
    Matrix<Scalar> X_heldout;  ///< held-out tokens from the same distribution, token_seed 2
    Vector<Scalar> i_norm;     ///< channel_importance(X, 256)
    Vector<Scalar> o_norm;     ///< ones (no output gradients)
    Matrix<Scalar> Y;          ///< dense targets X·Wᵀ
};

/// make_outlier_activations() with default options and `seed` for the calibration (token_seed 1)
/// and held-out (token_seed 2) tokens, the input importance of the calibration tokens (batches of
/// 256 rows), unit output importance and the dense targets of W.
/// 	hrows nanoquant::invalid_argument on non-positive sizes
template <typename Scalar>
SyntheticCalibration<Scalar> make_synthetic_calibration(const Eigen::Ref<const Matrix<Scalar>>& W, Index tokens,
                                                        std::uint64_t seed = 0)
{
    SyntheticCalibration<Scalar> c;
    OutlierActivationOptions ao;
    ao.seed = seed;
    ao.token_seed = 1;
    c.X = make_outlier_activations<Scalar>(tokens, W.cols(), ao);
    ao.token_seed = 2;
    c.X_heldout = make_outlier_activations<Scalar>(tokens, W.cols(), ao);
    c.i_norm = channel_importance<Scalar>(c.X, 256);
    c.o_norm = Vector<Scalar>::Ones(W.rows());
    c.Y = dense_targets<Scalar>(W, c.X);
    return c;
}

}  // namespace nanoquant
