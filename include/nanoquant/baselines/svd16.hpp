// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file svd16.hpp
/// Truncated-SVD baseline at a given bit budget: W ≈ L R with L (m×k) and R (k×n) stored in IEEE
/// half precision (16 bits per entry), k = ⌊bpw·mn / (16(m+n))⌋ (at least 1). With importance
/// weights the SVD is taken of diag(√imp_out) W diag(√imp_in) and unweighted afterwards, which is the
/// optimal rank-k fit in the weighted norm (Eckart–Young). The factors are rounded to half precision
/// (balanced √σ split), so the reported error includes the 16-bit storage.

#include <algorithm>
#include <cmath>

#include <Eigen/Dense>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// A low-rank factorization with 16-bit factors.
template <typename Scalar>
struct LowRank16 {
    Matrix<Scalar> l;  ///< m×k, values exactly representable in half precision
    Matrix<Scalar> r;  ///< k×n, values exactly representable in half precision

    Index rows() const { return l.rows(); }
    Index cols() const { return r.cols(); }
    Index rank() const { return l.cols(); }
    /// The dense approximation L R.
    Matrix<Scalar> reconstruct() const { return l * r; }
    /// 16 k (m + n) / (m n).
    double bits_per_weight() const
    {
        return 16.0 * double(rank()) * double(rows() + cols()) / (double(rows()) * double(cols()));
    }
};

/// Largest rank k whose 16-bit factors fit in bpw·mn bits (at least 1, at most min(m, n)).
inline Index svd16_rank_for_bpw(Index m, Index n, double bpw)
{
    NANOQUANT_CHECK(m > 0 && n > 0, "svd16_rank_for_bpw", "shape must be positive, got " << m << "x" << n);
    NANOQUANT_CHECK(std::isfinite(bpw) && bpw > 0, "svd16_rank_for_bpw", "bpw must be > 0, got " << bpw);
    const Index k = static_cast<Index>(std::floor(bpw * double(m) * double(n) / (16.0 * double(m + n))));
    return std::max<Index>(1, std::min(k, std::min(m, n)));
}

/// Rank-`rank` truncated SVD of W in 16-bit factors; see the file comment.
/// \throws nanoquant::invalid_argument on an empty/non-finite W, a rank outside [1, min(m,n)] or bad weights
template <typename Scalar>
LowRank16<Scalar> svd16(const Eigen::Ref<const Matrix<Scalar>>& W, Index rank,
                        const Vector<Scalar>& imp_in = Vector<Scalar>(), const Vector<Scalar>& imp_out = Vector<Scalar>())
{
    constexpr const char* where = "svd16";
    check_nonempty(W, where, "W");
    check_finite(W, where, "W");
    const Index m = W.rows(), n = W.cols();
    NANOQUANT_CHECK(rank >= 1 && rank <= std::min(m, n), where,
                    "rank must be in [1, min(m, n) = " << std::min(m, n) << "], got " << rank);
    Vector<double> a = Vector<double>::Ones(m), b = Vector<double>::Ones(n);
    if (imp_out.size()) {
        NANOQUANT_CHECK(imp_out.size() == m && imp_out.minCoeff() > 0, where,
                        "imp_out must have m = " << m << " positive entries, got " << imp_out.size());
        a = imp_out.template cast<double>();
    }
    if (imp_in.size()) {
        NANOQUANT_CHECK(imp_in.size() == n && imp_in.minCoeff() > 0, where,
                        "imp_in must have n = " << n << " positive entries, got " << imp_in.size());
        b = imp_in.template cast<double>();
    }
    const Vector<double> sa = a.cwiseSqrt(), sb = b.cwiseSqrt();
    const Matrix<double> Wt = sa.asDiagonal() * W.template cast<double>() * sb.asDiagonal();
    Eigen::BDCSVD<Matrix<double>> svd(Wt, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Vector<double> rs = svd.singularValues().head(rank).cwiseSqrt();
    Matrix<double> L = sa.cwiseInverse().asDiagonal() * svd.matrixU().leftCols(rank) * rs.asDiagonal();
    Matrix<double> R = rs.asDiagonal() * svd.matrixV().leftCols(rank).transpose() * sb.cwiseInverse().asDiagonal();
    auto to_half = [](double v) { return double(static_cast<float>(Eigen::half(static_cast<float>(v)))); };
    LowRank16<Scalar> out;
    out.l = L.unaryExpr(to_half).template cast<Scalar>();
    out.r = R.unaryExpr(to_half).template cast<Scalar>();
    return out;
}

}  // namespace nanoquant
