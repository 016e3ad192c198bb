// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file scale_refit_output.hpp
/// Output-aware scale refit of a layer: exact least squares of the calibration output loss over
/// the scales, signs fixed. Used by reconstruct_layer() at the start, after every epoch and in
/// every polish round.

#include <Eigen/Cholesky>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/refine/calibration.hpp"
#include "nanoquant/refine/layer_params.hpp"

namespace nanoquant {

/// Output-aware scale refit: with the signs of `p` fixed, exact block-coordinate least squares of
/// the (weighted) output loss Σ_t Σ_i w_i (Ŷ_ti − Y_ti)² over s_out, then s_mid (if present), then
/// s_in, `rounds` times. Each block is a linear least-squares problem, written here on the
/// calibration statistics H = XᵀX and C = XᵀY (CalibrationStats), with B = diag(s_in) V̄ (n×r),
/// B_m = B diag(s_mid) and M = B_m Ūᵀ diag(s_out) (n×m):
///  - s_out_i = ⟨Z_:i, Y_:i⟩ / ‖Z_:i‖² with Z = X B_m Ūᵀ: ‖Z_:i‖² = ū_iᵀ (B_mᵀ H B_m) ū_i and
///    ⟨Z_:i, Y_:i⟩ = ū_iᵀ (B_mᵀ C)_:i;
///  - s_mid: G = (Ūᵀ diag(w ⊙ s_out²) Ū) ⊙ (Bᵀ H B), rhs_k = Σ_i (Bᵀ C)_ki w_i s_out_i Ū_ik;
///  - s_in:  G = H ⊙ (M̃ diag(w) M̃ᵀ), rhs_j = Σ_i C_ji w_i M̃_ji, M̃ = V̄ diag(s_mid) Ūᵀ diag(s_out);
/// solved in double by Cholesky with a relative ridge of 1e-10 (LDLT fallback). Every block step is an
/// exact minimization, so the loss never increases. Cost per round O(n² (m + r) + n m r), independent
/// of the number of tokens.
/// \param w per-output-channel weights (length m, >= 0), empty = ones
/// \throws nanoquant::invalid_argument on shape mismatches, bad weights or rounds < 0
template <typename Scalar>
void refit_scales_output(LayerParams<Scalar>& p, const CalibrationStats& stats, const Vector<Scalar>& w = Vector<Scalar>(),
                         int rounds = 2)
{
    constexpr const char* where = "refit_scales_output";
    p.validate(where);
    NANOQUANT_CHECK(rounds >= 0, where, "rounds must be >= 0, got " << rounds);
    stats.check(p.rows(), p.cols(), where);
    detail::check_output_weights(w, p.rows(), where, "w");
    const Matrix<double>& H = stats.xtx;
    const Matrix<double>& C = stats.xty;
    const Matrix<double> U = sign_of(p.u).template cast<double>(), Vb = sign_of(p.vt).template cast<double>().transpose();
    const Vector<double> wd = w.size() ? Vector<double>(w.template cast<double>()) : Vector<double>(Vector<double>::Ones(p.rows()));
    Vector<double> so = p.s_out.template cast<double>(), sm = p.s_mid.template cast<double>(),
                   si = p.s_in.template cast<double>();
    const bool mid = p.has_mid_scale();
    auto solve_spd = [](Matrix<double> G, const Vector<double>& b, const Vector<double>& fallback) {
        G.diagonal().array() += 1e-10 * (G.diagonal().mean() + 1e-300);
        Eigen::LLT<Matrix<double>> llt(G);
        Vector<double> x = llt.info() == Eigen::Success ? Vector<double>(llt.solve(b)) : Vector<double>(G.ldlt().solve(b));
        return x.allFinite() ? x : fallback;
    };
    for (int round = 0; round < rounds; ++round) {
        const Matrix<double> B = si.asDiagonal() * Vb;  // n × r
        const Matrix<double> HB = H * B;
        const Matrix<double> BtHB = B.transpose() * HB;  // r × r, = TᵀT with T = X B
        const Matrix<double> BtC = B.transpose() * C;    // r × m, = TᵀY
        // s_out
        {
            const Matrix<double> Um = mid ? Matrix<double>(U * sm.asDiagonal()) : U;  // m × r
            const Vector<double> den = (Um * BtHB).cwiseProduct(Um).rowwise().sum();
            const Vector<double> num = Um.cwiseProduct(BtC.transpose()).rowwise().sum();
            for (Index i = 0; i < so.size(); ++i)
                if (den(i) > 0) so(i) = num(i) / den(i);
        }
        // s_mid
        if (mid) {
            const Vector<double> wso = wd.cwiseProduct(so);
            const Matrix<double> G = (U.transpose() * wso.cwiseProduct(so).asDiagonal() * U).cwiseProduct(BtHB);
            const Vector<double> rhs = BtC.cwiseProduct(U.transpose() * wso.asDiagonal()).rowwise().sum();
            sm = solve_spd(G, rhs, sm);
        }
        // s_in
        Matrix<double> M = mid ? Matrix<double>(Vb * sm.asDiagonal()) : Vb;
        M = M * U.transpose() * so.asDiagonal();  // n × m
        const Matrix<double> G = H.cwiseProduct(M * wd.asDiagonal() * M.transpose());
        const Vector<double> rhs = C.cwiseProduct(M * wd.asDiagonal()).rowwise().sum();
        si = solve_spd(G, rhs, si);
    }
    p.s_out = so.template cast<Scalar>();
    if (mid) p.s_mid = sm.template cast<Scalar>();
    p.s_in = si.template cast<Scalar>();
}

/// refit_scales_output() on the calibration set itself (X: tokens × n, Y: tokens × m): computes its
/// CalibrationStats first (O(T n (n + m))); callers that refit repeatedly keep the stats instead.
/// \throws nanoquant::invalid_argument on shape mismatches, non-finite inputs, bad weights or rounds < 0
template <typename Scalar>
void refit_scales_output(LayerParams<Scalar>& p, const Eigen::Ref<const Matrix<Scalar>>& X,
                         const Eigen::Ref<const Matrix<Scalar>>& Y, const Vector<Scalar>& w = Vector<Scalar>(),
                         int rounds = 2)
{
    constexpr const char* where = "refit_scales_output";
    p.validate(where);
    detail::check_calibration_set(p.rows(), p.cols(), X, Y, w, where);
    refit_scales_output<Scalar>(p, calibration_stats<Scalar>(X, Y), w, rounds);
}

}  // namespace nanoquant
