// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file dbf.hpp
/// The DBF (Double Binary Factorization) ADMM variant (method digest §2), as a baseline beside
/// NanoQuant's ADMM. It reuses nanoquant's ADMM building blocks (solvers/admm_kernels.hpp:
/// svid_projection and the ridge X-update ridge_solve_right) and differs from AdmmSolver in:
///  1. init A_z, B_z ~ N(0, 1), duals at zero, no initial projection;
///  2. Gauss–Seidel order: A is updated first, B then uses the new A_z;
///  3. an inner ADMM loop per factor: step 1 solves (K + λ₁I)F = XᵀY + ρ_s(Z − U) with
///     ρ_s = min(1, t/(T−3))³; steps 2–3 use ρ = 1: Z = P(F + U), U += F − Z, F = (K + λI)⁻¹(XᵀY + Z − U);
///     the loop ends with Z = P(F + U), U += F − Z;
///  4. the three-scale export, which is exact for the ADMM model: A_z = diag(a) S_A diag(c),
///     B_z = diag(p) S_B diag(q) (SVID-set matrices) give s_out = a/√o, s_mid = c ⊙ p / ‖A_z col‖,
///     s_in = q/√i.
/// λ = ρ·mean(diag K) + 0.03 (mean(diag K) = 1: the regressors have unit-norm columns). DBF computes
/// explicit inverses; here each solve is a Cholesky (same mathematics). The transpose rule is kept
/// (the core always runs with rows ≥ columns).

#include <cmath>
#include <limits>
#include <cstdint>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/factorization.hpp"
#include "nanoquant/detail/random.hpp"
#include "nanoquant/solvers/admm_kernels.hpp"

namespace nanoquant {

/// Options of dbf_factorize().
template <typename Scalar>
struct DbfOptions {
    /// Rank r, in [1, min(m, n)]. Required (default 0 is rejected).
    Index rank = 0;
    /// Outer iterations T. Default 400 (the NanoQuant port's value; the DBF notebook used 260); >= 0.
    int iterations = 400;
    /// Inner ADMM steps per factor and outer iteration. Default 3 (DBF); >= 1.
    int inner_steps = 3;
    /// Power iterations of each SVID projection. Default 5; >= 1.
    int power_iterations = 5;
    /// Ridge added to λ. Default 3e-2; >= 0.
    double reg = 3e-2;
    /// Seed of the initialization and of the power-iteration starts. Default 0.
    std::uint64_t seed = 0;

    /// Throws nanoquant::invalid_argument naming the bad field and its value.
    void validate(Index m, Index n) const
    {
        constexpr const char* w = "DbfOptions::validate";
        NANOQUANT_CHECK(rank >= 1 && rank <= std::min(m, n), w,
                        "rank must be in [1, min(m, n)] = [1, " << std::min(m, n) << "], got " << rank);
        NANOQUANT_CHECK(iterations >= 0, w, "iterations must be >= 0, got " << iterations);
        NANOQUANT_CHECK(inner_steps >= 1, w, "inner_steps must be >= 1, got " << inner_steps);
        NANOQUANT_CHECK(power_iterations >= 1, w, "power_iterations must be >= 1, got " << power_iterations);
        NANOQUANT_CHECK(std::isfinite(reg) && reg >= 0, w, "reg must be finite and >= 0, got " << reg);
    }
};

/// Result of dbf_factorize().
template <typename Scalar>
struct DbfResult {
    Factorization<Scalar> factorization;  ///< three-scale factorization of W
    double relative_error = 0;            ///< ‖W − Ŵ‖_F / ‖W‖_F (NaN when a scale is not finite)
    double weighted_relative_error = 0;   ///< ‖D_o(W − Ŵ)D_i‖_F / ‖D_o W D_i‖_F
};

namespace detail {

/// Exact decomposition of an SVID-set matrix Z = S ⊙ (a cᵀ) (a, c >= 0): a and c up to a shared
/// factor, from the row and column sums of |Z|.
template <typename Scalar>
void split_svid(const Matrix<Scalar>& Z, Vector<double>& a, Vector<double>& c)
{
    const Matrix<double> A = Z.template cast<double>().cwiseAbs();
    a = A.rowwise().sum();
    const double total = a.sum();
    if (total <= 0) {
        a = Vector<double>::Zero(Z.rows());
        c = Vector<double>::Zero(Z.cols());
        return;
    }
    c = A.colwise().sum().transpose() / total;  // A = a cᵀ exactly when rank-1: Σ_ij a_i c_j = total·Σc
}

/// One DBF inner loop for a p×r factor: regressors Xr (q×r, unit-norm columns), C = target·Xr (p×r).
template <typename Scalar>
void dbf_inner(const Matrix<Scalar>& K, const Matrix<Scalar>& C, Matrix<Scalar>& F, Matrix<Scalar>& Z,
               Matrix<Scalar>& U, double rho_s, const DbfOptions<Scalar>& o, Rng& rng, bool start_on_rows)
{
    Matrix<Scalar> Kc = K;
    F = C + Scalar(rho_s) * (Z - U);
    ridge_solve_right<Scalar>(Kc, F, rho_s, o.reg, 1e-12);
    Matrix<Scalar> T;
    for (int s = 1; s < o.inner_steps; ++s) {
        T = F + U;
        svid_projection<Scalar>(T, Z, o.power_iterations, rng, start_on_rows);
        U += F - Z;
        Kc = K;
        F = C + (Z - U);
        ridge_solve_right<Scalar>(Kc, F, 1.0, o.reg, 1e-12);
    }
    T = F + U;
    svid_projection<Scalar>(T, Z, o.power_iterations, rng, start_on_rows);
    U += F - Z;
}

template <typename Scalar>
Vector<Scalar> inv_col_norms(const Matrix<Scalar>& Z)
{
    Vector<Scalar> d(Z.cols());
    for (Index k = 0; k < Z.cols(); ++k) d(k) = Scalar(1.0 / std::max(double(Z.col(k).norm()), 1e-12));
    return d;
}

}  // namespace detail

/// DBF ADMM factorization of W (m×n) under importance weights (see the file comment).
/// \param imp_in, imp_out importance (i_norm length n, o_norm length m, > 0); empty = ones
/// \throws nanoquant::invalid_argument on bad options, shapes or non-finite input
template <typename Scalar>
DbfResult<Scalar> dbf_factorize(const Eigen::Ref<const Matrix<Scalar>>& W, const DbfOptions<Scalar>& opts,
                                const Vector<Scalar>& imp_in = Vector<Scalar>(),
                                const Vector<Scalar>& imp_out = Vector<Scalar>())
{
    constexpr const char* where = "dbf_factorize";
    check_nonempty(W, where, "W");
    check_finite(W, where, "W");
    opts.validate(W.rows(), W.cols());
    const Vector<Scalar> vi = imp_in.size() ? imp_in : Vector<Scalar>(Vector<Scalar>::Ones(W.cols()));
    const Vector<Scalar> vo = imp_out.size() ? imp_out : Vector<Scalar>(Vector<Scalar>::Ones(W.rows()));
    check_shape(vi, W.cols(), 1, where, "imp_in");
    check_shape(vo, W.rows(), 1, where, "imp_out");
    check_finite(vi, where, "imp_in");
    check_finite(vo, where, "imp_out");
    NANOQUANT_CHECK(vi.minCoeff() > 0 && vo.minCoeff() > 0, where,
                    "importance must be > 0, got min(imp_in) = " << vi.minCoeff() << ", min(imp_out) = " << vo.minCoeff());
    // Transpose rule: the core runs with rows >= columns.
    const bool tr = W.rows() < W.cols();
    const Matrix<Scalar> Wc = tr ? Matrix<Scalar>(W.transpose()) : Matrix<Scalar>(W);
    const Vector<Scalar> so = (tr ? vi : vo).cwiseSqrt(), si = (tr ? vo : vi).cwiseSqrt();
    const Index m = Wc.rows(), n = Wc.cols(), r = opts.rank;
    const Matrix<Scalar> Wt = so.asDiagonal() * Wc * si.asDiagonal();  // W̃

    detail::Rng rng(opts.seed);
    // A (m×r) and Bt (n×r, B transposed) so both updates have the same "p×r" form.
    Matrix<Scalar> Az(m, r), Bz(n, r);
    for (Index k = 0; k < r; ++k)
        for (Index i = 0; i < m; ++i) Az(i, k) = Scalar(rng.normal());
    for (Index k = 0; k < r; ++k)
        for (Index j = 0; j < n; ++j) Bz(j, k) = Scalar(rng.normal());
    Matrix<Scalar> Au = Matrix<Scalar>::Zero(m, r), Bu = Matrix<Scalar>::Zero(n, r), F, Xr, K, C;
    const int T = opts.iterations;
    for (int t = 0; t < T; ++t) {
        const double x = T > 3 ? std::min(1.0, double(t) / double(T - 3)) : 1.0;
        const double rho_s = x * x * x;
        // A update against the row-normalized B (Bt column-normalized).
        Xr = Bz * detail::inv_col_norms(Bz).asDiagonal();
        K.noalias() = Xr.transpose() * Xr;
        C.noalias() = Wt * Xr;
        detail::dbf_inner<Scalar>(K, C, F, Az, Au, rho_s, opts, rng, false);
        // B update against the new, column-normalized A_z (Gauss–Seidel).
        Xr = Az * detail::inv_col_norms(Az).asDiagonal();
        K.noalias() = Xr.transpose() * Xr;
        C.noalias() = Wt.transpose() * Xr;
        detail::dbf_inner<Scalar>(K, C, F, Bz, Bu, rho_s, opts, rng, true);
    }
    // Export: W̃ ≈ A_z diag(1/‖A_z col‖) B_zᵀ with A_z = diag(a) S_A diag(c), Bt_z = diag(q) S_B diag(p).
    const Vector<Scalar> mid = detail::inv_col_norms(Az);
    Vector<double> a, c, q, p;
    detail::split_svid(Az, a, c);
    detail::split_svid(Bz, q, p);
    Factorization<Scalar> f;
    auto sgn = [](Scalar v) { return v < Scalar(0) ? Scalar(-1) : Scalar(1); };
    const Matrix<Scalar> SA = Az.unaryExpr(sgn), SBt = Bz.unaryExpr(sgn);
    Vector<Scalar> s_out = (a.array() / so.template cast<double>().array()).matrix().template cast<Scalar>();
    Vector<Scalar> s_in = (q.array() / si.template cast<double>().array()).matrix().template cast<Scalar>();
    Vector<Scalar> s_mid = (c.array() * p.array() * mid.template cast<double>().array()).matrix().template cast<Scalar>();
    if (!tr) {
        f.u = PackedSignMatrix::pack(SA);
        f.vt = PackedSignMatrix::pack(Matrix<Scalar>(SBt.transpose()));
        f.s_out = s_out;
        f.s_in = s_in;
    } else {
        // Ŵᵀ = diag(s_out) S_A diag(mid) S_Bᵀ diag(s_in)  =>  Ŵ = diag(s_in) S_B diag(mid) S_Aᵀ diag(s_out).
        f.u = PackedSignMatrix::pack(SBt);
        f.vt = PackedSignMatrix::pack(Matrix<Scalar>(SA.transpose()));
        f.s_out = s_in;
        f.s_in = s_out;
    }
    f.s_mid = s_mid;
    DbfResult<Scalar> res;
    res.factorization = std::move(f);
    const auto& rf = res.factorization;
    if (!rf.s_out.allFinite() || !rf.s_mid.allFinite() || !rf.s_in.allFinite()) {
        // The iteration broke down (W too large for Scalar, say): the errors say so, the caller decides.
        res.relative_error = res.weighted_relative_error = std::numeric_limits<double>::quiet_NaN();
        return res;
    }
    const Matrix<double> Wd = W.template cast<double>();
    const Matrix<double> E = Wd - res.factorization.reconstruct().template cast<double>();
    res.relative_error = E.norm() / std::max(Wd.norm(), 1e-300);
    const Vector<double> wo = vo.template cast<double>().cwiseSqrt(), wi = vi.template cast<double>().cwiseSqrt();
    res.weighted_relative_error =
        (wo.asDiagonal() * E * wi.asDiagonal()).norm() / std::max((wo.asDiagonal() * Wd * wi.asDiagonal()).norm(), 1e-300);
    return res;
}

}  // namespace nanoquant
