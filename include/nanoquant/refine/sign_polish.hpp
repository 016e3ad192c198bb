// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file sign_polish.hpp
/// Exact greedy sign polishes of a layer's U and V̄ against its calibration output loss: every flip
/// taken lowers the loss. Used by reconstruct_layer() after the Adam epochs.

#include <algorithm>
#include <utility>
#include <vector>

#include "nanoquant/core/types.hpp"
#include "nanoquant/detail/threads.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/refine/calibration.hpp"
#include "nanoquant/refine/layer_params.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanoquant {

/// Exact greedy sign polish of U: with V̄ and the scales fixed, the output loss separates over output
/// channels, L = Σ_i w_i s_out_i² ‖Y_:i/s_out_i − T₂ u_i‖² with T₂ = X diag(s_in) V̄ diag(s_mid) and
/// u_i the i-th row of Ū. Each row is a binary least-squares problem, improved here by coordinate
/// descent: flipping u_ik changes the row's loss by 4(G_kk + u_ik(b_k − g_k)) with G = T₂ᵀT₂,
/// b = T₂ᵀY_:i/s_out_i and g = G u_i, and a flip is taken whenever that is negative. At most
/// `sweeps` passes over k per row; the loss never increases. The latent keeps its magnitude and
/// takes the new sign. Cost on the calibration statistics (CalibrationStats: XᵀX, XᵀY)
/// O(n² r + n m r + m r² · sweeps), independent of the number of tokens. Rows are independent: the result does
/// not depend on `num_threads` (0 = the caller's OpenMP default, else that many threads).
/// \return the number of flips
template <typename Scalar>
Index polish_u_signs(LayerParams<Scalar>& p, const CalibrationStats& stats, int sweeps = 2, int num_threads = 0)
{
    constexpr const char* where = "polish_u_signs";
    p.validate(where);
    NANOQUANT_CHECK(sweeps >= 0, where, "sweeps must be >= 0, got " << sweeps);
    NANOQUANT_CHECK(num_threads >= 0, where, "num_threads must be >= 0, got " << num_threads);
    stats.check(p.rows(), p.cols(), where);
    const int nt = resolve_num_threads(num_threads);
    // T₂ = X Bm with Bm = diag(s_in) V̄ diag(s_mid): G = T₂ᵀT₂ = Bmᵀ (XᵀX) Bm, T₂ᵀY = Bmᵀ (XᵀY).
    Matrix<double> Bm = p.s_in.template cast<double>().asDiagonal() * sign_of(p.vt).template cast<double>().transpose();
    if (p.has_mid_scale()) Bm = Bm * p.s_mid.template cast<double>().asDiagonal();
    const Matrix<double> G = Bm.transpose() * (stats.xtx * Bm);
    const Matrix<double> B = Bm.transpose() * stats.xty;  // r × m
    const Index r = p.rank();
    Index flips = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16) reduction(+ : flips) if (nt > 1)
#else
    (void)nt;
#endif
    for (Index i = 0; i < p.rows(); ++i) {
        const double so = double(p.s_out(i));
        if (so == 0.0) continue;
        Vector<double> u(r);
        for (Index k = 0; k < r; ++k) u(k) = p.u(i, k) < Scalar(0) ? -1.0 : 1.0;
        const Vector<double> b = B.col(i) / so;
        Vector<double> g = G * u;
        for (int s = 0; s < sweeps; ++s) {
            Index changed = 0;
            for (Index k = 0; k < r; ++k) {
                const double delta = G(k, k) + u(k) * (b(k) - g(k));
                if (delta < -1e-12 * G(k, k)) {
                    g.noalias() -= (2.0 * u(k)) * G.col(k);
                    u(k) = -u(k);
                    p.u(i, k) = -p.u(i, k);
                    if (p.u(i, k) == Scalar(0)) p.u(i, k) = Scalar(u(k));
                    ++changed;
                }
            }
            flips += changed;
            if (changed == 0) break;
        }
    }
    return flips;
}

/// polish_u_signs() on the calibration set itself (X: tokens × n, Y: tokens × m); computes its
/// CalibrationStats first.
template <typename Scalar>
Index polish_u_signs(LayerParams<Scalar>& p, const Eigen::Ref<const Matrix<Scalar>>& X,
                     const Eigen::Ref<const Matrix<Scalar>>& Y, int sweeps = 2, int num_threads = 0)
{
    constexpr const char* where = "polish_u_signs";
    p.validate(where);
    detail::check_calibration_set(p.rows(), p.cols(), X, Y, Vector<Scalar>(), where);
    return polish_u_signs<Scalar>(p, calibration_stats<Scalar>(X, Y), sweeps, num_threads);
}

/// Exact greedy sign polish of V̄ (the columns of vtᵀ): with Ū and the scales fixed the weighted
/// output loss is a binary quadratic in V̄ (n×r),
/// \f[ L(\bar V) = \|A \bar V M - Y_w\|_F^2 = \mathrm{tr}(\bar V^\top H \bar V P) - 2\,\mathrm{tr}(\bar V^\top C) + c, \f]
/// with A = X diag(s_in), M = diag(s_mid) Ūᵀ diag(s_out ⊙ √w), Y_w = Y diag(√w), H = AᵀA (n×n),
/// P = M Mᵀ (r×r) and C = Aᵀ Y_w Mᵀ (n×r). Flipping V̄_jk (δ = −2V̄_jk) changes L by
/// 2δ G_jk + δ² H_jj P_kk − 2δ C_jk = 4(H_jj P_kk − V̄_jk (G_jk − C_jk)) with G = H V̄ P.
/// Coordinate descent over the rank index k (outer) and the input j (inner) takes every flip with a
/// strictly negative change (below −1e-12·H_jj P_kk), so the loss never increases. Within column k
/// only G(:,k) is read, so an accepted flip updates G(:,k) at once (O(n)) and the rest of its rank-1
/// update δ H(:,j) P(k,:) is applied once per column for all of that column's flips (O(n·(r + flips))).
/// G is recomputed exactly at the start of every sweep; at most `sweeps` sweeps, stopping after the
/// first sweep without a flip. The latent keeps its magnitude and takes the new sign.
/// Cost on the calibration statistics O(n² (r + m) + n m r) per call plus O(n² r + n r² + n·flips)
/// per sweep.
/// \param w per-output-channel weights (length m, >= 0) as in weighted_output_loss(), empty = ones
/// \param on_flip called after every accepted flip as on_flip(j, k, dL) with dL the predicted change of
///        layer_loss(p, X, Y, w) (p already updated); for tests
/// \return the number of flips
/// \throws nanoquant::invalid_argument on shape mismatches, non-finite inputs, negative weights or sweeps < 0
template <typename Scalar, typename OnFlip>
Index polish_v_signs(LayerParams<Scalar>& p, const CalibrationStats& stats, const Vector<Scalar>& w, int sweeps,
                     OnFlip&& on_flip)
{
    constexpr const char* where = "polish_v_signs";
    p.validate(where);
    NANOQUANT_CHECK(sweeps >= 0, where, "sweeps must be >= 0, got " << sweeps);
    stats.check(p.rows(), p.cols(), where);
    detail::check_output_weights(w, p.rows(), where, "w");
    if (sweeps == 0 || p.rank() == 0 || p.cols() == 0) return 0;
    const Index n = p.cols(), r = p.rank();
    const Vector<double> wd =
        w.size() ? Vector<double>(w.template cast<double>()) : Vector<double>(Vector<double>::Ones(p.rows()));
    const Vector<double> sw = wd.cwiseSqrt();
    const Vector<double> si = p.s_in.template cast<double>();
    Matrix<double> M = sign_of(p.u).template cast<double>().transpose() *
                       p.s_out.template cast<double>().cwiseProduct(sw).asDiagonal();  // r × m
    if (p.has_mid_scale()) M = p.s_mid.template cast<double>().asDiagonal() * M;
    // A = X diag(s_in): H = AᵀA = diag(s_in) XᵀX diag(s_in), C = Aᵀ Y diag(√w) Mᵀ = diag(s_in) XᵀY diag(√w) Mᵀ.
    const Matrix<double> H = si.asDiagonal() * stats.xtx * si.asDiagonal();
    const Matrix<double> P = M * M.transpose();
    const Matrix<double> C = si.asDiagonal() * (stats.xty * sw.asDiagonal() * M.transpose());
    double den = stats.yty.dot(wd);
    if (den <= 0) den = 1.0;  // as layer_loss
    Matrix<double> V = sign_of(p.vt).template cast<double>().transpose();  // n × r
    Index flips = 0;
    std::vector<Index> flipped;  // rows j flipped in the current column k
    Vector<double> hd(n);
    for (int s = 0; s < sweeps; ++s) {
        Matrix<double> G = H * (V * P);
        Index changed = 0;
        for (Index k = 0; k < r; ++k) {
            const double pkk = P(k, k);
            flipped.clear();
            for (Index j = 0; j < n; ++j) {
                const double curv = H(j, j) * pkk;
                const double quarter = curv - V(j, k) * (G(j, k) - C(j, k));  // change / 4
                if (quarter < -1e-12 * curv) {
                    const double delta = -2.0 * V(j, k);
                    G.col(k).noalias() += (delta * pkk) * H.col(j);
                    V(j, k) = -V(j, k);
                    p.vt(k, j) = -p.vt(k, j);
                    if (p.vt(k, j) == Scalar(0)) p.vt(k, j) = Scalar(V(j, k));
                    flipped.push_back(j);
                    on_flip(j, k, 4.0 * quarter / den);
                }
            }
            if (!flipped.empty()) {
                // The deferred rest of the rank-1 updates: G(:, l) += (H d) P(k, l) for l != k, with
                // d_j = δ_j = 2 V̄_jk (new sign) on the flipped rows.
                hd.setZero();
                for (const Index j : flipped) hd.noalias() += (2.0 * V(j, k)) * H.col(j);
                for (Index l = 0; l < r; ++l)
                    if (l != k) G.col(l).noalias() += P(k, l) * hd;
                changed += static_cast<Index>(flipped.size());
            }
        }
        flips += changed;
        if (changed == 0) break;
    }
    return flips;
}

/// polish_v_signs() on the calibration set itself (X: tokens × n, Y: tokens × m); computes its
/// CalibrationStats first.
template <typename Scalar, typename OnFlip>
Index polish_v_signs(LayerParams<Scalar>& p, const Eigen::Ref<const Matrix<Scalar>>& X,
                     const Eigen::Ref<const Matrix<Scalar>>& Y, const Vector<Scalar>& w, int sweeps,
                     OnFlip&& on_flip)
{
    constexpr const char* where = "polish_v_signs";
    p.validate(where);
    detail::check_calibration_set(p.rows(), p.cols(), X, Y, w, where);
    return polish_v_signs<Scalar>(p, calibration_stats<Scalar>(X, Y), w, sweeps, std::forward<OnFlip>(on_flip));
}

/// polish_v_signs() without a flip callback.
template <typename Scalar>
Index polish_v_signs(LayerParams<Scalar>& p, const Eigen::Ref<const Matrix<Scalar>>& X,
                     const Eigen::Ref<const Matrix<Scalar>>& Y, const Vector<Scalar>& w = Vector<Scalar>(),
                     int sweeps = 2)
{
    return polish_v_signs<Scalar>(p, X, Y, w, sweeps, [](Index, Index, double) {});
}

/// polish_v_signs() on calibration statistics without a flip callback.
template <typename Scalar>
Index polish_v_signs(LayerParams<Scalar>& p, const CalibrationStats& stats, const Vector<Scalar>& w = Vector<Scalar>(),
                     int sweeps = 2)
{
    return polish_v_signs<Scalar>(p, stats, w, sweeps, [](Index, Index, double) {});
}

}  // namespace nanoquant
