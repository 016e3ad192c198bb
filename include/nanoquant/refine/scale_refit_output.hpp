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
/// s_in, `rounds` times. Each block is a linear least-squares problem:
///  - s_out_i = ⟨Z_:i, Y_:i⟩ / ‖Z_:i‖², Z = X diag(s_in) V̄ diag(s_mid) Ūᵀ;
///  - s_mid: G = (Ūᵀ diag(w ⊙ s_out²) Ū) ⊙ (TᵀT), rhs = colsum(T ⊙ (Y diag(w ⊙ s_out) Ū)), T = X diag(s_in) V̄;
///  - s_in:  G = (XᵀX) ⊙ (M diag(w) Mᵀ), rhs = colsum(X ⊙ (Y diag(w) Mᵀ)), M = V̄ diag(s_mid) Ūᵀ diag(s_out);
/// solved in double by Cholesky with a relative ridge of 1e-10 (LDLT fallback). Every block step is an
/// exact minimization, so the loss never increases. Cost per round O(T(n+m)r + n²(T+m)).
template <typename Scalar>
void refit_scales_output(LayerParams<Scalar>& p, const Eigen::Ref<const Matrix<Scalar>>& X,
                         const Eigen::Ref<const Matrix<Scalar>>& Y, const Vector<Scalar>& w = Vector<Scalar>(),
                         int rounds = 2)
{
    constexpr const char* where = "refit_scales_output";
    p.validate(where);
    NANOQUANT_CHECK(rounds >= 0, where, "rounds must be >= 0, got " << rounds);
    detail::check_calibration_set(p.rows(), p.cols(), X, Y, w, where);
    const Matrix<double> Xd = X.template cast<double>(), Yd = Y.template cast<double>();
    const Matrix<double> U = sign_of(p.u).template cast<double>(), Vb = sign_of(p.vt).template cast<double>().transpose();
    const Vector<double> wd = w.size() ? Vector<double>(w.template cast<double>()) : Vector<double>(Vector<double>::Ones(p.rows()));
    Vector<double> so = p.s_out.template cast<double>(), sm = p.s_mid.template cast<double>(),
                   si = p.s_in.template cast<double>();
    const bool mid = p.has_mid_scale();
    const Matrix<double> XtX = Xd.transpose() * Xd;
    auto solve_spd = [](Matrix<double> G, const Vector<double>& b, const Vector<double>& fallback) {
        G.diagonal().array() += 1e-10 * (G.diagonal().mean() + 1e-300);
        Eigen::LLT<Matrix<double>> llt(G);
        Vector<double> x = llt.info() == Eigen::Success ? Vector<double>(llt.solve(b)) : Vector<double>(G.ldlt().solve(b));
        return x.allFinite() ? x : fallback;
    };
    for (int round = 0; round < rounds; ++round) {
        // s_out
        Matrix<double> T = Xd * si.asDiagonal() * Vb;  // tokens × r
        Matrix<double> Tm = mid ? Matrix<double>(T * sm.asDiagonal()) : T;
        const Matrix<double> Z = Tm * U.transpose();
        for (Index i = 0; i < so.size(); ++i) {
            const double den = Z.col(i).squaredNorm();
            if (den > 0) so(i) = Z.col(i).dot(Yd.col(i)) / den;
        }
        // s_mid
        if (mid) {
            const Matrix<double> G = (U.transpose() * wd.cwiseProduct(so).cwiseProduct(so).asDiagonal() * U)
                                         .cwiseProduct(T.transpose() * T);
            const Vector<double> rhs =
                T.cwiseProduct(Yd * wd.cwiseProduct(so).asDiagonal() * U).colwise().sum().transpose();
            sm = solve_spd(G, rhs, sm);
        }
        // s_in
        Matrix<double> M = mid ? Matrix<double>(Vb * sm.asDiagonal()) : Vb;
        M = M * U.transpose() * so.asDiagonal();  // n × m
        const Matrix<double> G = XtX.cwiseProduct(M * wd.asDiagonal() * M.transpose());
        const Vector<double> rhs = Xd.cwiseProduct(Yd * wd.asDiagonal() * M.transpose()).colwise().sum().transpose();
        si = solve_spd(G, rhs, si);
    }
    p.s_out = so.template cast<Scalar>();
    if (mid) p.s_mid = sm.template cast<Scalar>();
    p.s_in = si.template cast<Scalar>();
}

}  // namespace nanoquant
