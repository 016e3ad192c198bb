// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file admm_kernels.hpp
/// Building blocks of the ADMM solvers (NanoQuant's and the DBF variant): the SVID projection
/// (sign × rank-1 magnitude, by power iteration), the ridge X-update (Cholesky), a per-call
/// OpenMP thread count that leaves process-wide settings alone, and plain double-precision references of the first two for tests.
/// Symbols follow docs/algorithm.md.

#include <algorithm>
#include <cmath>
#include <vector>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/LU>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nanoquant/core/types.hpp"
#include "nanoquant/detail/random.hpp"
#include "nanoquant/detail/threads.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// The rank-1 magnitude of the SVID projection: |X| ≈ σ·u·vᵀ (u, v unit vectors).
template <typename Scalar>
struct SvidFactors {
    Scalar sigma = 0;  ///< σ = ‖|X| v‖
    Vector<Scalar> u;  ///< left vector (X.rows())
    Vector<Scalar> v;  ///< right vector (X.cols())
};

namespace detail {

/// Rows per block of the parallel loops. Fixed (not derived from the thread count) so that every
/// element sees the same arithmetic whatever the number of threads.
constexpr Index kRowBlock = 512;

/// y = |X|·x (y: X.rows()). Parallel over fixed row blocks; each y(i) sums over columns in order.
template <typename Scalar>
void abs_matvec(const Eigen::Ref<const Matrix<Scalar>>& X, const Vector<Scalar>& x, Vector<Scalar>& y,
                int threads)
{
    const Index p = X.rows(), q = X.cols();
    y.resize(p);
    const Index nb = (p + kRowBlock - 1) / kRowBlock;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && p * q > 32768)
#else
    (void)threads;
#endif
    for (Index b = 0; b < nb; ++b) {
        const Index i0 = b * kRowBlock, len = std::min(kRowBlock, p - i0);
        auto ys = y.segment(i0, len);
        ys.setZero();
        for (Index k = 0; k < q; ++k) ys += X.col(k).segment(i0, len).cwiseAbs() * x(k);
    }
}

/// y = |X|ᵀ·x (y: X.cols()). Parallel over columns; each y(k) is one dot product.
template <typename Scalar>
void abs_tmatvec(const Eigen::Ref<const Matrix<Scalar>>& X, const Vector<Scalar>& x, Vector<Scalar>& y,
                 int threads)
{
    const Index q = X.cols();
    y.resize(q);
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && X.size() > 32768)
#else
    (void)threads;
#endif
    for (Index k = 0; k < q; ++k) y(k) = X.col(k).cwiseAbs().dot(x);
}

template <typename Scalar>
Scalar safe_normalize(Vector<Scalar>& x, double eps)
{
    const Scalar n = x.norm();
    x /= std::max(n, Scalar(eps));
    return n;
}

}  // namespace detail

/// The rank-1 magnitude (σ, u, v) of the SVID projection of X by `power_iterations` steps of the
/// power method on |X|, exactly as the reference: v₀ ~ N(0, I) normalized (one normal draw per
/// entry from `rng`); repeat {u = |X|v/‖·‖; v = |X|ᵀu/‖·‖}; then σ = ‖|X|v‖, u = |X|v/σ.
/// With `start_on_rows` the roles of rows and columns swap (the start vector has X.rows()
/// entries): svid_rank1(Xᵀ, …, true) then draws and computes exactly what svid_rank1(X, …) does,
/// with u and v exchanged. Norms are floored at `eps`.
/// Deterministic for a given rng state, whatever `threads` is.
template <typename Scalar>
SvidFactors<Scalar> svid_rank1(const Eigen::Ref<const Matrix<Scalar>>& X, int power_iterations, detail::Rng& rng,
                               bool start_on_rows = false, int threads = 1, double eps = 1e-12)
{
    SvidFactors<Scalar> f;
    // "a" is the side the start vector lives on, "b" the other one.
    const Index na = start_on_rows ? X.rows() : X.cols();
    Vector<Scalar> a(na), b;
    for (Index i = 0; i < na; ++i) a(i) = Scalar(rng.normal());
    detail::safe_normalize(a, eps);
    auto to_b = [&](const Vector<Scalar>& in, Vector<Scalar>& out) {
        if (start_on_rows) detail::abs_tmatvec<Scalar>(X, in, out, threads);
        else detail::abs_matvec<Scalar>(X, in, out, threads);
    };
    auto to_a = [&](const Vector<Scalar>& in, Vector<Scalar>& out) {
        if (start_on_rows) detail::abs_matvec<Scalar>(X, in, out, threads);
        else detail::abs_tmatvec<Scalar>(X, in, out, threads);
    };
    for (int it = 0; it < power_iterations; ++it) {
        to_b(a, b);
        detail::safe_normalize(b, eps);
        to_a(b, a);
        detail::safe_normalize(a, eps);
    }
    to_b(a, b);
    f.sigma = detail::safe_normalize(b, eps);
    if (start_on_rows) {
        f.u = std::move(a);
        f.v = std::move(b);
    } else {
        f.u = std::move(b);
        f.v = std::move(a);
    }
    return f;
}

/// The SVID projection Z = P(X) = sign(X) ⊙ (σ u vᵀ) with sign(0) = +1 (see svid_rank1 for σ, u, v).
/// \param X the matrix to project (p×q)
/// \param Z output, resized to p×q (may not alias X)
/// \return the rank-1 magnitude used
template <typename Scalar>
SvidFactors<Scalar> svid_projection(const Eigen::Ref<const Matrix<Scalar>>& X, Matrix<Scalar>& Z, int power_iterations,
                                    detail::Rng& rng, bool start_on_rows = false, int threads = 1,
                                    double eps = 1e-12)
{
    SvidFactors<Scalar> f = svid_rank1<Scalar>(X, power_iterations, rng, start_on_rows, threads, eps);
    Z.resize(X.rows(), X.cols());
    for (Index k = 0; k < X.cols(); ++k) {
        const Scalar s = f.sigma * f.v(k);
        for (Index i = 0; i < X.rows(); ++i) {
            const Scalar mag = s * f.u(i);
            Z(i, k) = X(i, k) >= Scalar(0) ? mag : -mag;
        }
    }
    return f;
}

/// Plain double-precision reference of svid_projection (forms |X| explicitly; no threads, no
/// blocking). Draws from `rng` exactly as svid_projection does.
inline Matrix<double> svid_projection_reference(const Matrix<double>& X, int power_iterations, detail::Rng& rng,
                                                double eps = 1e-12)
{
    const Matrix<double> A = X.cwiseAbs();
    Vector<double> v(X.cols());
    for (Index i = 0; i < v.size(); ++i) v(i) = rng.normal();
    v /= std::max(v.norm(), eps);
    Vector<double> u;
    for (int it = 0; it < power_iterations; ++it) {
        u = A * v;
        u /= std::max(u.norm(), eps);
        v = A.transpose() * u;
        v /= std::max(v.norm(), eps);
    }
    u = A * v;
    const double sigma = u.norm();
    u /= std::max(sigma, eps);
    Matrix<double> Z(X.rows(), X.cols());
    for (Index i = 0; i < X.rows(); ++i)
        for (Index k = 0; k < X.cols(); ++k)
            Z(i, k) = (X(i, k) >= 0 ? 1.0 : -1.0) * sigma * u(i) * v(k);
    return Z;
}

/// The ridge X-update in "right" form: R ← R·(K + λI)⁻¹ with λ = max(ρ·mean(diag K) + reg, eps),
/// by Cholesky (K + λI = LLᵀ, two blocked triangular solves from the right); if the Cholesky
/// factorization fails, by LU with partial pivoting. K is r×r symmetric (both triangles set) and
/// is overwritten by K + λI; R is p×r.
/// In the reference's notation solve(X, Y, Z, U, ρ) = (K + λI)⁻¹(XᵀY + ρ(Z − U)) with K = XᵀX; the
/// solver calls this with R = (XᵀY + ρ(Z − U))ᵀ, which yields the transposed solution.
/// \return λ
template <typename Scalar>
double ridge_solve_right(Matrix<Scalar>& K, Eigen::Ref<Matrix<Scalar>> R, double rho, double reg, double eps)
{
    const double lambda = std::max(rho * double(K.diagonal().mean()) + reg, eps);
    K.diagonal().array() += Scalar(lambda);
    const Eigen::LLT<Matrix<Scalar>> llt(K);
    if (llt.info() == Eigen::Success) {
        llt.matrixU().template solveInPlace<Eigen::OnTheRight>(R);
        llt.matrixL().template solveInPlace<Eigen::OnTheRight>(R);
    } else {
        // (K + λI) is symmetric, so R·(K + λI)⁻¹ = ((K + λI)⁻¹ Rᵀ)ᵀ.
        const Matrix<Scalar> Rt = K.partialPivLu().solve(R.transpose());
        R = Rt.transpose();
    }
    return lambda;
}

/// Plain double-precision reference of the reference's ridge solve:
/// F = (K + λI)⁻¹(XᵀY + ρ(Z − U)), K = XᵀX, λ = max(ρ·mean(diag K) + reg, eps).
/// \param X regressors p×r, Y targets p×q, Z and U r×q.
inline Matrix<double> ridge_update_reference(const Matrix<double>& X, const Matrix<double>& Y, const Matrix<double>& Z,
                                             const Matrix<double>& U, double rho, double reg, double eps)
{
    Matrix<double> K = X.transpose() * X;
    K = 0.5 * (K + K.transpose()).eval();
    const double lambda = std::max(rho * K.diagonal().mean() + reg, eps);
    K.diagonal().array() += lambda;
    const Matrix<double> rhs = X.transpose() * Y + rho * (Z - U);
    return K.partialPivLu().solve(rhs);
}

}  // namespace nanoquant
