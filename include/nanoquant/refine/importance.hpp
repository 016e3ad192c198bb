// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file importance.hpp
/// Streaming per-channel importance statistics (method digest §1.1).
///
/// From calibration inputs X (tokens × n) the input importance i_norm[j] ≈ E[x_j²]; from output
/// gradients G (tokens × m) the output importance o_norm[i] ≈ E[g_i²]. Batches are added one at a
/// time (ImportanceAccumulator::add), so the tokens never have to be in memory at once.
///
/// The default strategy is the reference's "online" robust clipping. For each batch:
///  1. row norms ‖x_t‖₂; τ = the k-th largest, k = max(1, ⌊T·(1 − clip_quantile)⌋);
///  2. a running maximum G: if τ > G, the accumulated sum is first multiplied by (τ/G)², then G = τ;
///  3. every row is clipped, x_t ← x_t · min(1, G/‖x_t‖);
///  4. the per-channel mean over the batch of x_t² is added to the accumulator.
/// finalize() divides by the number of batches and applies the shrinkage
/// h ← (1 − shrinkage)·h + shrinkage·mean(h).

#include <algorithm>
#include <cmath>
#include <vector>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// How rows are clipped before accumulation.
enum class ImportanceStrategy {
    Online,  ///< reference default: running 99.9th-percentile row-norm clipping (see file comment)
    Plain    ///< no clipping: the plain mean of x² over all batches (DBF's statistic, divided by batches)
};

/// Options of ImportanceAccumulator.
struct ImportanceOptions {
    /// Row-clipping strategy. Default Online (the reference's `calib_strategy="online"`).
    ImportanceStrategy strategy = ImportanceStrategy::Online;
    /// Quantile of the per-token row norms used as the clipping threshold. Default 0.999; range (0, 1].
    double clip_quantile = 0.999;
    /// Shrinkage toward the mean applied by finalize(). Default 0.4 (reference); range [0, 1].
    double shrinkage = 0.4;

    /// Throws nanoquant::invalid_argument naming the bad field and its value.
    void validate() const
    {
        NANOQUANT_CHECK(clip_quantile > 0.0 && clip_quantile <= 1.0, "ImportanceOptions::validate",
                        "clip_quantile must be in (0, 1], got " << clip_quantile);
        NANOQUANT_CHECK(shrinkage >= 0.0 && shrinkage <= 1.0, "ImportanceOptions::validate",
                        "shrinkage must be in [0, 1], got " << shrinkage);
    }
};

/// Accumulates per-channel second moments batch by batch. Statistics are kept in double.
class ImportanceAccumulator {
public:
    /// \param channels number of channels (columns of every batch), > 0
    explicit ImportanceAccumulator(Index channels, ImportanceOptions opts = {})
        : m_opts(opts), m_sum(Vector<double>::Zero(channels > 0 ? channels : 0))
    {
        m_opts.validate();
        NANOQUANT_CHECK(channels > 0, "ImportanceAccumulator::ImportanceAccumulator",
                        "channels must be > 0, got " << channels);
    }

    /// Adds one batch (tokens × channels, any number of tokens >= 1).
    /// \throws nanoquant::invalid_argument on a column-count mismatch, an empty batch or NaN/Inf.
    template <typename Scalar>
    void add(const Eigen::Ref<const Matrix<Scalar>>& batch)
    {
        constexpr const char* where = "ImportanceAccumulator::add";
        NANOQUANT_CHECK(batch.cols() == m_sum.size(), where,
                        "batch has " << batch.cols() << " columns, expected " << m_sum.size());
        NANOQUANT_CHECK(batch.rows() > 0, where, "batch must hold at least one token, got 0 rows");
        check_finite(batch, where, "batch");
        const Matrix<double> X = batch.template cast<double>();
        const Index T = X.rows();
        Vector<double> scale = Vector<double>::Ones(T);
        if (m_opts.strategy == ImportanceStrategy::Online) {
            const Vector<double> norms = X.rowwise().norm();
            const double tau = kth_largest(norms, clip_rank(T));
            if (m_batches == 0 || m_running_max == 0.0) {
                m_running_max = std::max(m_running_max, tau);
            } else if (tau > m_running_max) {
                const double ratio = tau / m_running_max;
                m_sum *= ratio * ratio;
                m_running_max = tau;
            }
            for (Index t = 0; t < T; ++t)
                if (norms(t) > m_running_max) scale(t) = m_running_max / norms(t);
        }
        m_sum += (scale.asDiagonal() * X).array().square().colwise().sum().transpose().matrix() /
                 double(T);
        ++m_batches;
    }

    /// Number of batches added so far.
    Index batches() const { return m_batches; }
    /// The current clipping threshold G (0 before the first batch or with the Plain strategy).
    double running_max() const { return m_running_max; }
    /// Index k (1-based) of the row norm used as the threshold in a batch of T tokens.
    Index clip_rank(Index T) const
    {
        const Index k = static_cast<Index>(std::floor(double(T) * (1.0 - m_opts.clip_quantile) + 1e-9));
        return std::max<Index>(1, k);
    }

    /// The importance vector: accumulated sum / batches, then shrunk toward its mean.
    /// \throws nanoquant::invalid_argument if no batch was added.
    template <typename Scalar = double>
    Vector<Scalar> finalize() const
    {
        NANOQUANT_CHECK(m_batches > 0, "ImportanceAccumulator::finalize",
                        "no batch was added; call add() at least once");
        Vector<double> h = m_sum / double(m_batches);
        const double mean = h.mean();
        h = (1.0 - m_opts.shrinkage) * h.array() + m_opts.shrinkage * mean;
        return h.template cast<Scalar>();
    }

private:
    static double kth_largest(const Vector<double>& v, Index k)
    {
        std::vector<double> a(v.data(), v.data() + v.size());
        k = std::min<Index>(k, static_cast<Index>(a.size()));
        std::nth_element(a.begin(), a.begin() + (k - 1), a.end(), std::greater<double>());
        return a[static_cast<std::size_t>(k - 1)];
    }

    ImportanceOptions m_opts;
    Vector<double> m_sum;
    double m_running_max = 0.0;
    Index m_batches = 0;
};

/// Convenience: the importance of all rows of X added in batches of `batch_rows` tokens.
template <typename Scalar>
Vector<Scalar> channel_importance(const Eigen::Ref<const Matrix<Scalar>>& X, Index batch_rows,
                                  ImportanceOptions opts = {})
{
    NANOQUANT_CHECK(batch_rows > 0, "channel_importance", "batch_rows must be > 0, got " << batch_rows);
    check_nonempty(X, "channel_importance", "X");
    ImportanceAccumulator acc(X.cols(), opts);
    for (Index t0 = 0; t0 < X.rows(); t0 += batch_rows) {
        const Index b = std::min(batch_rows, X.rows() - t0);
        acc.add<Scalar>(X.middleRows(t0, b));
    }
    return acc.finalize<Scalar>();
}

}  // namespace nanoquant
