// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file calibration.hpp
/// The calibration set of a layer (inputs X, tokens × n; targets Y, tokens × m; per-output weights
/// w) and what is measured on it: the one check every refine/ entry point makes, dense targets,
/// the weighted output loss of a LayerParams and the output error of a dense approximation.

#include <algorithm>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/refine/layer_params.hpp"

namespace nanoquant {

namespace detail {
/// Shapes of a calibration set for a layer with m outputs and n inputs (at least one token).
inline void check_calibration(Index m, Index n, Index xr, Index xc, Index yr, Index yc, const char* where)
{
    NANOQUANT_CHECK(xc == n, where, "X has " << xc << " columns, expected the layer's inputs n = " << n);
    NANOQUANT_CHECK(yc == m, where, "Y has " << yc << " columns, expected the layer's outputs m = " << m);
    NANOQUANT_CHECK(xr == yr, where, "X has " << xr << " tokens (rows) but Y has " << yr);
    NANOQUANT_CHECK(xr > 0, where, "X must hold at least one token, got 0 rows");
}

/// Per-output weights `w` (named `w_name`): empty, or m finite values >= 0.
template <typename Scalar>
void check_output_weights(const Vector<Scalar>& w, Index m, const char* where, const char* w_name)
{
    if (w.size() == 0) return;
    NANOQUANT_CHECK(w.size() == m, where, w_name << " has " << w.size() << " entries, expected 0 or m = " << m);
    check_finite(w, where, w_name);
    NANOQUANT_CHECK(w.minCoeff() >= 0, where, w_name << " must be >= 0, min is " << w.minCoeff());
}

/// The whole calibration-set check of refine/'s entry points: shapes (check_calibration), finite X
/// and Y, and per-output weights `w` that are empty or m finite values >= 0 (named `w_name`).
template <typename Scalar>
void check_calibration_set(Index m, Index n, const Eigen::Ref<const Matrix<Scalar>>& X,
                           const Eigen::Ref<const Matrix<Scalar>>& Y, const Vector<Scalar>& w, const char* where,
                           const char* w_name = "w")
{
    check_calibration(m, n, X.rows(), X.cols(), Y.rows(), Y.cols(), where);
    check_finite(X, where, "X");
    check_finite(Y, where, "Y");
    check_output_weights(w, m, where, w_name);
}
}  // namespace detail

/// Sufficient statistics of a calibration set (X: tokens × n, Y: tokens × m) for the exact steps
/// of the layer reconstruction (refit_scales_output, polish_u_signs, polish_v_signs). Their loss is
/// quadratic in the layer's matrix Ŵ,
///   Σ_t Σ_i w_i (Ŵx_t − y_t)_i² = Σ_i w_i (ŵ_iᵀ XᵀX ŵ_i − 2 ŵ_iᵀ (XᵀY)_:i + ‖Y_:i‖²),
/// so XᵀX, XᵀY and the column norms of Y are all those steps read. Computed once, in double, in
/// O(T n (n + m)), they make every later step independent of the number of tokens T.
struct CalibrationStats {
    Matrix<double> xtx;  ///< n × n, XᵀX
    Matrix<double> xty;  ///< n × m, XᵀY
    Vector<double> yty;  ///< m, ‖Y_:i‖²
    Index tokens = 0;

    /// Shapes for a layer with m outputs and n inputs, at least one token.
    void check(Index m, Index n, const char* where) const
    {
        NANOQUANT_CHECK(xtx.rows() == n && xtx.cols() == n, where,
                        "stats.xtx is " << xtx.rows() << "x" << xtx.cols() << ", expected n x n = " << n << "x" << n);
        NANOQUANT_CHECK(xty.rows() == n && xty.cols() == m, where,
                        "stats.xty is " << xty.rows() << "x" << xty.cols() << ", expected n x m = " << n << "x" << m);
        NANOQUANT_CHECK(yty.size() == m, where, "stats.yty has " << yty.size() << " entries, expected m = " << m);
        NANOQUANT_CHECK(tokens > 0, where, "stats hold no token");
    }
};

/// The CalibrationStats of (X, Y), accumulated in double over chunks of `chunk` tokens.
/// \throws nanoquant::invalid_argument on mismatched shapes, no token or non-finite values
template <typename Scalar>
CalibrationStats calibration_stats(const Eigen::Ref<const Matrix<Scalar>>& X, const Eigen::Ref<const Matrix<Scalar>>& Y,
                                   Index chunk = 4096)
{
    constexpr const char* where = "calibration_stats";
    NANOQUANT_CHECK(chunk >= 1, where, "chunk must be >= 1, got " << chunk);
    detail::check_calibration_set<Scalar>(Y.cols(), X.cols(), X, Y, Vector<Scalar>(), where);
    const Index n = X.cols(), m = Y.cols();
    CalibrationStats st;
    st.tokens = X.rows();
    st.xtx = Matrix<double>::Zero(n, n);
    st.xty = Matrix<double>::Zero(n, m);
    st.yty = Vector<double>::Zero(m);
    for (Index t0 = 0; t0 < X.rows(); t0 += chunk) {
        const Index c = std::min(chunk, X.rows() - t0);
        const Matrix<double> Xc = X.middleRows(t0, c).template cast<double>();
        const Matrix<double> Yc = Y.middleRows(t0, c).template cast<double>();
        st.xtx.template selfadjointView<Eigen::Lower>().rankUpdate(Xc.transpose());
        st.xty.noalias() += Xc.transpose() * Yc;
        st.yty += Yc.colwise().squaredNorm().transpose();
    }
    st.xtx.template triangularView<Eigen::StrictlyUpper>() = st.xtx.transpose();
    return st;
}

/// Dense targets Y = X Wᵀ (tokens × m) of the layer W (m × n) on inputs X (tokens × n).
template <typename Scalar>
Matrix<Scalar> dense_targets(const Eigen::Ref<const Matrix<Scalar>>& W, const Eigen::Ref<const Matrix<Scalar>>& X)
{
    NANOQUANT_CHECK(X.cols() == W.cols(), "dense_targets",
                    "X has " << X.cols() << " columns but W has " << W.cols() << " (inputs)");
    return X * W.transpose();
}

/// Full-set weighted relative squared output error of the hardened model of `p` on (X, Y),
/// evaluated in chunks of `chunk` tokens (double accumulation). `w` empty = all ones.
template <typename Scalar>
double layer_loss(const LayerParams<Scalar>& p, const Eigen::Ref<const Matrix<Scalar>>& X,
                  const Eigen::Ref<const Matrix<Scalar>>& Y, const Vector<Scalar>& w = Vector<Scalar>(),
                  Index chunk = 2048)
{
    const Matrix<Scalar> ue = sign_of(p.u), vte = sign_of(p.vt);
    LayerCache<Scalar> cache;
    double num = 0, den = 0;
    for (Index t0 = 0; t0 < X.rows(); t0 += chunk) {
        const Index b = std::min(chunk, X.rows() - t0);
        const Matrix<Scalar> Yhat = layer_forward<Scalar>(ue, vte, p, X.middleRows(t0, b), cache);
        Matrix<double> E = (Yhat - Y.middleRows(t0, b)).template cast<double>();
        Matrix<double> Yd = Y.middleRows(t0, b).template cast<double>();
        if (w.size()) {
            const Vector<double> sw = w.template cast<double>().cwiseSqrt();
            E = E * sw.asDiagonal();
            Yd = Yd * sw.asDiagonal();
        }
        num += E.squaredNorm();
        den += Yd.squaredNorm();
    }
    return den > 0 ? num / den : num;
}

/// Relative output error ‖X(W − Ŵ)ᵀ‖_F / ‖X Wᵀ‖_F of a dense approximation Ŵ (double accumulation).
template <typename Scalar>
double output_relative_error(const Eigen::Ref<const Matrix<Scalar>>& W, const Eigen::Ref<const Matrix<Scalar>>& What,
                             const Eigen::Ref<const Matrix<Scalar>>& X)
{
    constexpr const char* where = "output_relative_error";
    check_shape(What, W.rows(), W.cols(), where, "What");
    NANOQUANT_CHECK(X.cols() == W.cols(), where, "X has " << X.cols() << " columns, expected n = " << W.cols());
    const Matrix<double> Xd = X.template cast<double>();
    const Matrix<double> Y = Xd * W.template cast<double>().transpose();
    const Matrix<double> E = Xd * (W.template cast<double>() - What.template cast<double>()).transpose();
    const double ny = Y.norm();
    return ny > 0 ? E.norm() / ny : E.norm();
}

}  // namespace nanoquant
