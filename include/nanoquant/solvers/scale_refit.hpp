// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file scale_refit.hpp
/// Scale refit with the signs fixed: closed-form importance-weighted least squares for s_out,
/// s_mid (when present) and s_in, alternating. Also factorization_errors(), the unweighted and
/// weighted relative errors of a factorization computed block by block (no m×n temporary).

#include <algorithm>
#include <cmath>
#include <utility>

#include <Eigen/Cholesky>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/factorization.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// Relative errors of a factorization.
struct FactorizationErrors {
    double relative = 0;  ///< ‖W − Ŵ‖_F / ‖W‖_F
    double weighted = 0;  ///< ‖D_o(W − Ŵ)D_i‖_F / ‖D_o W D_i‖_F, D_o = diag(√importance_out), D_i = diag(√importance_in)
};

namespace detail {

template <typename Scalar>
void check_importance(const Vector<Scalar>& v, Index size, const char* where, const char* name)
{
    check_shape(v, size, 1, where, name);
    for (Index i = 0; i < v.size(); ++i)
        NANOQUANT_CHECK(std::isfinite(double(v(i))) && v(i) > 0, where,
                        name << "(" << i << ") = " << double(v(i)) << ": importance must be finite and > 0");
}

}  // namespace detail

/// Unweighted and importance-weighted relative errors of `f` against W, accumulated in double,
/// reconstructing Ŵ in blocks of 256 columns (memory O(256·m + (m+n)·r)).
/// \throws nanoquant::invalid_argument on shape mismatch or invalid importance.
/// W: any Eigen expression of Scalar (Matrix, or a Map with any layout; the sums do not depend on it).
template <typename Scalar, typename Derived>
FactorizationErrors factorization_errors(const Eigen::MatrixBase<Derived>& W, const Factorization<Scalar>& f,
                                         const Vector<Scalar>& importance_in, const Vector<Scalar>& importance_out)
{
    constexpr const char* where = "factorization_errors";
    f.validate(where);
    check_shape(W, f.rows(), f.cols(), where, "W");
    detail::check_importance(importance_in, W.cols(), where, "importance_in");
    detail::check_importance(importance_out, W.rows(), where, "importance_out");
    const Index m = W.rows(), n = W.cols();
    Matrix<Scalar> Us = f.s_out.asDiagonal() * f.u.template unpack<Scalar>();
    if (f.has_mid_scale()) Us = Us * f.s_mid.asDiagonal();
    const Matrix<Scalar> Vt = f.vt.template unpack<Scalar>();
    constexpr Index kBlock = 256;
    Matrix<Scalar> block;
    double e2 = 0, w2 = 0, ew2 = 0, ww2 = 0;
    for (Index j0 = 0; j0 < n; j0 += kBlock) {
        const Index len = std::min(kBlock, n - j0);
        block.noalias() = Us * (Vt.middleCols(j0, len) * f.s_in.segment(j0, len).asDiagonal());
        for (Index j = 0; j < len; ++j) {
            const double wi = double(importance_in(j0 + j));
            for (Index i = 0; i < m; ++i) {
                const double w = double(W(i, j0 + j));
                const double d = w - double(block(i, j));
                const double wo = double(importance_out(i)) * wi;
                e2 += d * d;
                w2 += w * w;
                ew2 += wo * d * d;
                ww2 += wo * w * w;
            }
        }
    }
    FactorizationErrors r;
    r.relative = w2 > 0 ? std::sqrt(e2 / w2) : (e2 > 0 ? INFINITY : 0.0);
    r.weighted = ww2 > 0 ? std::sqrt(ew2 / ww2) : (ew2 > 0 ? INFINITY : 0.0);
    return r;
}

/// Refits the scales of `f` with its signs fixed, minimizing ‖D_o(W − Ŵ)D_i‖_F by alternating
/// exact least-squares steps: s_out (row by row), s_mid (an r×r normal-equation solve, when f
/// has a mid scale), s_in (column by column). Each step is the exact minimizer of a convex
/// quadratic in its block, so the error cannot rise in exact arithmetic; in addition the
/// refit measures the error before and after and keeps the original scales if rounding made
/// it worse. Stops after `max_rounds` rounds or when a round lowers the weighted error by less
/// than `rel_tol` (relative).
/// \param W m×n, \param f factorization of W (modified in place)
/// \param importance_in i (n, > 0), \param importance_out o (m, > 0)
/// \return the final weighted relative error
/// \throws nanoquant::invalid_argument on bad shapes, non-finite W, bad importance or options.
/// W: any Eigen expression of Scalar (Matrix, or a Map with any layout; Eigen's products pack it
/// into the same blocks whatever its storage order, so the result does not depend on it).
template <typename Scalar, typename Derived>
double refit_scales(const Eigen::MatrixBase<Derived>& W, Factorization<Scalar>& f,
                    const Vector<Scalar>& importance_in, const Vector<Scalar>& importance_out, int max_rounds = 20,
                    double rel_tol = 1e-6)
{
    constexpr const char* where = "refit_scales";
    NANOQUANT_CHECK(max_rounds >= 1, where, "max_rounds must be >= 1, got " << max_rounds);
    NANOQUANT_CHECK(std::isfinite(rel_tol) && rel_tol >= 0, where, "rel_tol must be finite and >= 0, got " << rel_tol);
    check_finite(W, where, "W");
    const FactorizationErrors before = factorization_errors<Scalar>(W, f, importance_in, importance_out);
    const Index m = W.rows(), n = W.cols(), r = f.rank();
    const Factorization<Scalar> original = f;
    const Matrix<Scalar> U = f.u.template unpack<Scalar>();
    const Matrix<Scalar> Vt = f.vt.template unpack<Scalar>();
    const bool mid = f.has_mid_scale();
    Vector<Scalar> sm = mid ? f.s_mid : Vector<Scalar>::Ones(r);
    double ww2 = 0;
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < m; ++i) {
            const double w = double(W(i, j));
            ww2 += double(importance_out(i)) * double(importance_in(j)) * w * w;
        }
    double prev = before.weighted;
    Matrix<Scalar> P1, P2, Tmp;
    Matrix<Scalar> C(r, r), D(r, r);
    for (int round = 0; round < max_rounds; ++round) {
        // s_out: num_i = Σ_j i_j W_ij M_ij, den_i = Σ_j i_j M_ij², M = U diag(sm) Vᵀ diag(s_in).
        {
            const Vector<Scalar> a = importance_in.cwiseProduct(f.s_in);
            P1.noalias() = W * (Vt * a.asDiagonal()).transpose();  // m×r
            const Vector<Scalar> c = a.cwiseProduct(f.s_in);
            C.noalias() = Vt * c.asDiagonal() * Vt.transpose();  // r×r
            Tmp.noalias() = U * (sm.asDiagonal() * C * sm.asDiagonal());
            for (Index i = 0; i < m; ++i) {
                double num = 0, den = 0;
                for (Index k = 0; k < r; ++k) {
                    num += double(P1(i, k)) * double(U(i, k)) * double(sm(k));
                    den += double(Tmp(i, k)) * double(U(i, k));
                }
                if (den > 0 && std::isfinite(num / den)) f.s_out(i) = Scalar(num / den);
            }
        }
        // P2 = (diag(o ⊙ s_out) U)ᵀ W (r×n), D = Uᵀ diag(o ⊙ s_out²) U.
        const Vector<Scalar> b = importance_out.cwiseProduct(f.s_out);
        P2.noalias() = (b.asDiagonal() * U).transpose() * W;
        D.noalias() = U.transpose() * (b.cwiseProduct(f.s_out)).asDiagonal() * U;
        if (mid) {
            // Normal equations (D ⊙ C) s_mid = h, h_k = Σ_j P2_kj i_j s_in_j V_kj, C = V diag(i ⊙ s_in²) Vᵀ.
            const Vector<Scalar> c = importance_in.cwiseProduct(f.s_in).cwiseProduct(f.s_in);
            C.noalias() = Vt * c.asDiagonal() * Vt.transpose();
            const Vector<Scalar> a = importance_in.cwiseProduct(f.s_in);
            Matrix<double> G = D.template cast<double>().cwiseProduct(C.template cast<double>());
            Vector<double> h(r);
            for (Index k = 0; k < r; ++k) {
                double acc = 0;
                for (Index j = 0; j < n; ++j) acc += double(P2(k, j)) * double(a(j)) * double(Vt(k, j));
                h(k) = acc;
            }
            const Eigen::LDLT<Matrix<double>> ldlt(G);
            const Vector<double> s = ldlt.solve(h);
            if (ldlt.info() == Eigen::Success && s.allFinite()) sm = s.template cast<Scalar>();
        }
        // s_in: num_j = Σ_i o_i W_ij N_ij = Σ_k sm_k V_kj P2_kj, den_j = Σ_kl V_kj sm_k D_kl sm_l V_lj.
        Tmp.noalias() = (sm.asDiagonal() * D * sm.asDiagonal()) * Vt;  // r×n
        double cross = 0, fit = 0;
        for (Index j = 0; j < n; ++j) {
            double num = 0, den = 0;
            for (Index k = 0; k < r; ++k) {
                num += double(sm(k)) * double(Vt(k, j)) * double(P2(k, j));
                den += double(Tmp(k, j)) * double(Vt(k, j));
            }
            if (den > 0 && std::isfinite(num / den)) f.s_in(j) = Scalar(num / den);
            const double s = double(f.s_in(j)), ij = double(importance_in(j));
            cross += ij * s * num;
            fit += ij * s * s * den;
        }
        if (mid) f.s_mid = sm;
        // ‖D_o(W − Ŵ)D_i‖² = ‖W̃‖² − 2⟨W̃, Ŵ̃⟩ + ‖Ŵ̃‖² from the products at hand.
        const double err = ww2 > 0 ? std::sqrt(std::max(0.0, ww2 - 2 * cross + fit) / ww2) : 0.0;
        if (!(prev - err > rel_tol * prev)) break;
        prev = err;
    }
    const FactorizationErrors after = factorization_errors<Scalar>(W, f, importance_in, importance_out);
    if (!(after.weighted <= before.weighted)) {
        f = original;
        return before.weighted;
    }
    return after.weighted;
}

}  // namespace nanoquant
