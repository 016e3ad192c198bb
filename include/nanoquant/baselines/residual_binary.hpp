// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file residual_binary.hpp
/// Full-size sign baselines: OneBit/SVID sign binarization (K = 1) and RaBiT-style residual
/// binarization with K sign paths (method digest §3 and §8, the [OURS] PTQ variant).
///
/// \f[ \hat W = \sum_{k=1}^{K} \mathrm{diag}(h_k)\, S_k\, \mathrm{diag}(g_k), \qquad S_k \in \{\pm1\}^{m\times n}. \f]
/// Path k codes the residual of the paths before it: S_k = sign(R_{k−1}), R_0 = W, R_k = R_{k−1} − Ŵ_k,
/// and (h_k, g_k) is the best rank-1 fit of |R_{k−1}| (optimal for fixed signs, since
/// ‖R − diag(h) S diag(g)‖ = ‖|R| − h gᵀ‖ when S = sign(R)), under the importance weights if given.
/// Optional refit: alternating exact least squares on all scales with the signs fixed, then the signs
/// of paths ≥ 2 are re-derived from the updated residuals (keeping the hierarchy); the best iterate
/// is kept, so the refit never increases the (weighted) error.
///
/// Bits: K·mn signs + 16·K·(m + n) scale bits, i.e. bpw = K + 16K(m+n)/(mn) (≈ 2.016 for K = 2 at 4096²).

#include <cmath>
#include <cstddef>
#include <vector>

#include <Eigen/Dense>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/packed_signs.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// One sign path diag(h) S diag(g).
template <typename Scalar>
struct BinaryPath {
    PackedSignMatrix signs;  ///< S, m×n
    Vector<Scalar> h;        ///< m row (output) scales
    Vector<Scalar> g;        ///< n column (input) scales
};

/// A sum of K full-size scaled sign matrices (K = 1: OneBit-style sign binarization).
template <typename Scalar>
struct ResidualBinary {
    std::vector<BinaryPath<Scalar>> paths;  ///< the K paths, coarse to fine

    Index num_paths() const { return static_cast<Index>(paths.size()); }
    Index rows() const { return paths.empty() ? 0 : paths.front().signs.rows(); }
    Index cols() const { return paths.empty() ? 0 : paths.front().signs.cols(); }

    /// Throws nanoquant::invalid_argument unless there is at least one path and all shapes agree.
    void validate(const char* where = "ResidualBinary::validate") const
    {
        NANOQUANT_CHECK(!paths.empty(), where, "a ResidualBinary needs at least one path, got 0");
        for (std::size_t k = 0; k < paths.size(); ++k) {
            const auto& p = paths[k];
            NANOQUANT_CHECK(p.signs.rows() == rows() && p.signs.cols() == cols(), where,
                            "path " << k << " signs are " << p.signs.rows() << "x" << p.signs.cols()
                                    << ", expected " << rows() << "x" << cols());
            NANOQUANT_CHECK(p.h.size() == rows() && p.g.size() == cols(), where,
                            "path " << k << " has " << p.h.size() << " row and " << p.g.size()
                                    << " column scales, expected " << rows() << " and " << cols());
            check_finite(p.h, where, "h");
            check_finite(p.g, where, "g");
        }
    }

    /// The dense m×n approximation.
    Matrix<Scalar> reconstruct() const
    {
        validate("ResidualBinary::reconstruct");
        Matrix<Scalar> W = Matrix<Scalar>::Zero(rows(), cols());
        for (const auto& p : paths) W += p.h.asDiagonal() * p.signs.template unpack<Scalar>() * p.g.asDiagonal();
        return W;
    }

    /// Plain reference Y = Ŵ X for X of n × tokens (one pass per path).
    Matrix<Scalar> apply(const Eigen::Ref<const Matrix<Scalar>>& X) const
    {
        validate("ResidualBinary::apply");
        NANOQUANT_CHECK(X.rows() == cols(), "ResidualBinary::apply",
                        "X has " << X.rows() << " rows, expected cols = " << cols());
        Matrix<Scalar> Y = Matrix<Scalar>::Zero(rows(), X.cols());
        for (const auto& p : paths)
            Y += p.h.asDiagonal() * (p.signs.template unpack<Scalar>() * (p.g.asDiagonal() * X));
        return Y;
    }

    /// Bits per weight: K + 16K(m+n)/(mn).
    double bits_per_weight() const
    {
        const double m = double(rows()), n = double(cols()), K = double(num_paths());
        return K + 16.0 * K * (m + n) / (m * n);
    }

    /// Stored bytes: signs with rows padded to whole bytes plus 2 bytes per scale.
    std::size_t storage_bytes() const
    {
        std::size_t b = 0;
        for (const auto& p : paths) b += p.signs.packed_bytes() + 2u * std::size_t(p.h.size() + p.g.size());
        return b;
    }
};

/// Options of residual_binarize().
struct ResidualBinaryOptions {
    /// Number of sign paths K. Default 2 (the 2-bit case); >= 1 (1 = OneBit/SVID sign binarization).
    Index paths = 2;
    /// Rounds of scale refit + sign re-derivation. Default 8; >= 0 (0 = plain greedy residual SVID).
    Index refit_rounds = 8;
    /// Power iterations for each rank-1 fit of |R|. Default 50; >= 1.
    Index power_iterations = 50;

    /// Throws nanoquant::invalid_argument naming the bad field.
    void validate() const
    {
        constexpr const char* w = "ResidualBinaryOptions::validate";
        NANOQUANT_CHECK(paths >= 1, w, "paths must be >= 1, got " << paths);
        NANOQUANT_CHECK(refit_rounds >= 0, w, "refit_rounds must be >= 0, got " << refit_rounds);
        NANOQUANT_CHECK(power_iterations >= 1, w, "power_iterations must be >= 1, got " << power_iterations);
    }
};

namespace detail {

/// Best rank-1 fit h gᵀ of a non-negative matrix A under row weights a and column weights b
/// (minimizes Σ a_i b_j (A_ij − h_i g_j)²) by power iteration on diag(√a) A diag(√b) from a ones start.
inline void weighted_rank1(const Matrix<double>& A, const Vector<double>& a, const Vector<double>& b, Index iters,
                           Vector<double>& h, Vector<double>& g)
{
    const Vector<double> sa = a.cwiseSqrt(), sb = b.cwiseSqrt();
    const Matrix<double> At = sa.asDiagonal() * A * sb.asDiagonal();
    Vector<double> v = Vector<double>::Ones(A.cols()).normalized(), u;
    double sigma = 0;
    for (Index it = 0; it < iters; ++it) {
        u = At * v;
        const double nu = u.norm();
        if (nu == 0) break;
        u /= nu;
        v = At.transpose() * u;
        sigma = v.norm();
        if (sigma == 0) break;
        v /= sigma;
    }
    if (sigma == 0) {
        h = Vector<double>::Zero(A.rows());
        g = Vector<double>::Zero(A.cols());
        return;
    }
    // Split σ evenly; undo the weights (zero weights get the unweighted ratio through sa/sb > 0 only).
    h = (std::sqrt(sigma) * u).cwiseQuotient(sa.cwiseMax(1e-300));
    g = (std::sqrt(sigma) * v).cwiseQuotient(sb.cwiseMax(1e-300));
}

inline double weighted_sq(const Matrix<double>& E, const Vector<double>& a, const Vector<double>& b)
{
    return (a.cwiseSqrt().asDiagonal() * E * b.cwiseSqrt().asDiagonal()).squaredNorm();
}

/// Exact alternating least squares of all path scales with the signs S_k fixed (one row sweep, one
/// column sweep); each is a K×K weighted normal equation per row / column, solved by LDLT with a tiny
/// ridge.
inline void refit_path_scales(const Matrix<double>& W, const std::vector<Matrix<double>>& S,
                              std::vector<Vector<double>>& h, std::vector<Vector<double>>& g,
                              const Vector<double>& a, const Vector<double>& b)
{
    const Index K = static_cast<Index>(S.size()), m = W.rows(), n = W.cols();
    // Rows: W_i: ≈ Σ_k h_ki (S_k,i: ⊙ g_kᵀ), weights b over columns (a_i cancels).
    {
        std::vector<Matrix<double>> P(static_cast<std::size_t>(K));
        for (Index k = 0; k < K; ++k) P[k] = S[k] * g[k].asDiagonal();
        Matrix<double> A(K, K);
        Vector<double> rhs(K);
        for (Index i = 0; i < m; ++i) {
            for (Index k = 0; k < K; ++k) {
                rhs(k) = (P[k].row(i).array() * W.row(i).array() * b.transpose().array()).sum();
                for (Index l = k; l < K; ++l)
                    A(k, l) = A(l, k) = (P[k].row(i).array() * P[l].row(i).array() * b.transpose().array()).sum();
            }
            A.diagonal().array() += 1e-12 * (A.diagonal().maxCoeff() + 1e-300);
            const Vector<double> x = A.ldlt().solve(rhs);
            if (x.allFinite())
                for (Index k = 0; k < K; ++k) h[k](i) = x(k);
        }
    }
    {
        std::vector<Matrix<double>> Q(static_cast<std::size_t>(K));
        for (Index k = 0; k < K; ++k) Q[k] = h[k].asDiagonal() * S[k];
        Matrix<double> A(K, K);
        Vector<double> rhs(K);
        for (Index j = 0; j < n; ++j) {
            for (Index k = 0; k < K; ++k) {
                rhs(k) = (Q[k].col(j).array() * W.col(j).array() * a.array()).sum();
                for (Index l = k; l < K; ++l)
                    A(k, l) = A(l, k) = (Q[k].col(j).array() * Q[l].col(j).array() * a.array()).sum();
            }
            A.diagonal().array() += 1e-12 * (A.diagonal().maxCoeff() + 1e-300);
            const Vector<double> x = A.ldlt().solve(rhs);
            if (x.allFinite())
                for (Index k = 0; k < K; ++k) g[k](j) = x(k);
        }
    }
}

inline Matrix<double> sign_pm1(const Matrix<double>& R)
{
    return R.unaryExpr([](double v) { return v < 0 ? -1.0 : 1.0; });
}

}  // namespace detail

/// Residual binarization of W (m×n) with `opts.paths` sign paths; see the file comment.
/// \param imp_in  input-channel importance (length n, > 0; e.g. i_norm), empty = ones
/// \param imp_out output-channel importance (length m, > 0; e.g. o_norm), empty = ones
/// The fit minimizes ‖diag(√imp_out)(W − Ŵ)diag(√imp_in)‖_F.
/// \throws nanoquant::invalid_argument on empty or non-finite W, bad options or bad weights
template <typename Scalar>
ResidualBinary<Scalar> residual_binarize(const Eigen::Ref<const Matrix<Scalar>>& W, const ResidualBinaryOptions& opts = {},
                                         const Vector<Scalar>& imp_in = Vector<Scalar>(),
                                         const Vector<Scalar>& imp_out = Vector<Scalar>())
{
    constexpr const char* where = "residual_binarize";
    opts.validate();
    check_nonempty(W, where, "W");
    check_finite(W, where, "W");
    const Index m = W.rows(), n = W.cols(), K = opts.paths;
    auto weights = [&](const Vector<Scalar>& v, Index len, const char* name) {
        if (v.size() == 0) return Vector<double>(Vector<double>::Ones(len));
        NANOQUANT_CHECK(v.size() == len, where, name << " has " << v.size() << " entries, expected " << len);
        check_finite(v, where, name);
        NANOQUANT_CHECK(v.minCoeff() > 0, where, name << " must be > 0, min is " << v.minCoeff());
        return Vector<double>(v.template cast<double>());
    };
    const Vector<double> b = weights(imp_in, n, "imp_in"), a = weights(imp_out, m, "imp_out");
    const Matrix<double> Wd = W.template cast<double>();

    std::vector<Matrix<double>> S(static_cast<std::size_t>(K));
    std::vector<Vector<double>> h(static_cast<std::size_t>(K)), g(static_cast<std::size_t>(K));
    Matrix<double> R = Wd;
    for (Index k = 0; k < K; ++k) {
        S[k] = detail::sign_pm1(R);
        detail::weighted_rank1(R.cwiseAbs(), a, b, opts.power_iterations, h[k], g[k]);
        R -= h[k].asDiagonal() * S[k] * g[k].asDiagonal();
    }
    double best = detail::weighted_sq(R, a, b);
    auto bestS = S;
    auto besth = h;
    auto bestg = g;
    for (Index round = 0; round < opts.refit_rounds; ++round) {
        detail::refit_path_scales(Wd, S, h, g, a, b);
        // Re-derive the signs of paths >= 2 from the residual of the paths before them.
        R = Wd;
        for (Index k = 0; k < K; ++k) {
            if (k > 0) S[k] = detail::sign_pm1(R);
            R -= h[k].asDiagonal() * S[k] * g[k].asDiagonal();
        }
        // Scales of a re-signed path must be refit before the error means anything.
        if (K > 1) detail::refit_path_scales(Wd, S, h, g, a, b);
        R = Wd;
        for (Index k = 0; k < K; ++k) R -= h[k].asDiagonal() * S[k] * g[k].asDiagonal();
        const double e = detail::weighted_sq(R, a, b);
        if (e < best) {
            best = e;
            bestS = S;
            besth = h;
            bestg = g;
        }
    }
    ResidualBinary<Scalar> out;
    for (Index k = 0; k < K; ++k)
        out.paths.push_back(BinaryPath<Scalar>{PackedSignMatrix::pack(bestS[k]), besth[k].template cast<Scalar>(),
                                               bestg[k].template cast<Scalar>()});
    return out;
}

/// OneBit/SVID sign binarization: diag(h) sign(W) diag(g) with the optimal (weighted) rank-1 scales
/// of |W| (residual_binarize with one path; the refit of one path is the same fit, so it is skipped).
template <typename Scalar>
ResidualBinary<Scalar> sign_binarize(const Eigen::Ref<const Matrix<Scalar>>& W,
                                     const Vector<Scalar>& imp_in = Vector<Scalar>(),
                                     const Vector<Scalar>& imp_out = Vector<Scalar>())
{
    ResidualBinaryOptions o;
    o.paths = 1;
    o.refit_rounds = 0;
    return residual_binarize<Scalar>(W, o, imp_in, imp_out);
}

}  // namespace nanoquant
