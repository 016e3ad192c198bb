// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file admm_export.hpp
/// Turning an ADMM solution (A_z m×r, B_z r×n of the preconditioned problem
/// W̃ = diag(√o)·W·diag(√i)) into a Factorization of W. Two exports:
/// - export_two_scale: the reference's balancing and scale extraction (method digest §1.2);
/// - export_three_scale: keeps the per-rank scale; lossless with respect to the ADMM model
///   M = diag(1/√o)·A_z·diag(1/‖A_z[:,k]‖)·B_z·diag(1/√i) when A_z and B_z lie in the SVID set.

#include <algorithm>
#include <cmath>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/factorization.hpp"
#include "nanoquant/core/packed_signs.hpp"
#include "nanoquant/core/types.hpp"

namespace nanoquant {

namespace detail {

template <typename Scalar>
void check_export_args(const Eigen::Ref<const Matrix<Scalar>>& A_z, const Eigen::Ref<const Matrix<Scalar>>& B_z,
                       const Vector<Scalar>& importance_out, const Vector<Scalar>& importance_in, const char* where)
{
    NANOQUANT_CHECK(A_z.cols() == B_z.rows(), where,
                    "A_z is " << A_z.rows() << "x" << A_z.cols() << " but B_z is " << B_z.rows() << "x"
                              << B_z.cols() << ": the ranks differ");
    check_shape(importance_out, A_z.rows(), 1, where, "importance_out");
    check_shape(importance_in, B_z.cols(), 1, where, "importance_in");
}

/// The reference's balancing factor β = sqrt(‖B‖_F / ‖A‖_F) of A = A_z/√o, B = B_z/√i (1 if
/// either norm is 0).
template <typename Scalar>
double balance_beta(const Eigen::Ref<const Matrix<Scalar>>& A_z, const Eigen::Ref<const Matrix<Scalar>>& B_z,
                    const Vector<Scalar>& importance_out, const Vector<Scalar>& importance_in)
{
    double na = 0, nb = 0;
    for (Index k = 0; k < A_z.cols(); ++k)
        for (Index i = 0; i < A_z.rows(); ++i) {
            const double a = double(A_z(i, k)) / std::sqrt(double(importance_out(i)));
            na += a * a;
        }
    for (Index j = 0; j < B_z.cols(); ++j) {
        const double s = 1.0 / std::sqrt(double(importance_in(j)));
        for (Index k = 0; k < B_z.rows(); ++k) {
            const double b = double(B_z(k, j)) * s;
            nb += b * b;
        }
    }
    if (na <= 0 || nb <= 0) return 1.0;
    return std::sqrt(std::sqrt(nb) / std::sqrt(na));
}

}  // namespace detail

/// The reference's two-scale export (method digest §1.2, `factorize_admm_nanoquant`):
/// A = A_z/√o (rows), B = B_z/√i (columns); β = √(‖B‖_F/‖A‖_F), A ← βA, B ← B/β;
/// A_final = A·diag(1/‖A_z[:,k]‖); s_in[j] = mean_k |B[k,j]|, s_out[i] = mean_k |A_final[i,k]|;
/// U = sign(A_final), Vᵀ = sign(B) (sign(0) = +1).
/// \param A_z m×r, \param B_z r×n (the Z iterates of the preconditioned problem)
/// \param importance_out o (m, > 0), \param importance_in i (n, > 0)
/// \param eps floor of the column norms divided by
template <typename Scalar>
Factorization<Scalar> export_two_scale(const Eigen::Ref<const Matrix<Scalar>>& A_z,
                                       const Eigen::Ref<const Matrix<Scalar>>& B_z,
                                       const Vector<Scalar>& importance_out, const Vector<Scalar>& importance_in,
                                       double eps = 1e-12)
{
    detail::check_export_args<Scalar>(A_z, B_z, importance_out, importance_in, "export_two_scale");
    const Index m = A_z.rows(), r = A_z.cols(), n = B_z.cols();
    const double beta = detail::balance_beta<Scalar>(A_z, B_z, importance_out, importance_in);
    Factorization<Scalar> f;
    f.u = PackedSignMatrix(m, r);
    f.vt = PackedSignMatrix(r, n);
    f.s_out.setZero(m);
    f.s_in.setZero(n);
    Vector<double> out_acc = Vector<double>::Zero(m);
    for (Index k = 0; k < r; ++k) {
        const double cn = std::max(double(A_z.col(k).template cast<double>().norm()), eps);
        for (Index i = 0; i < m; ++i) {
            const double a = double(A_z(i, k)) / std::sqrt(double(importance_out(i))) * beta / cn;
            out_acc(i) += std::abs(a);
            if (a < 0) f.u.set_sign(i, k, -1);
        }
    }
    for (Index j = 0; j < n; ++j) {
        const double s = 1.0 / (std::sqrt(double(importance_in(j))) * beta);
        double acc = 0;
        for (Index k = 0; k < r; ++k) {
            const double b = double(B_z(k, j)) * s;
            acc += std::abs(b);
            if (b < 0) f.vt.set_sign(k, j, -1);
        }
        f.s_in(j) = Scalar(acc / double(r));
    }
    f.s_out = (out_acc / double(r)).template cast<Scalar>();
    return f;
}

/// The three-scale export: Ŵ = diag(s_out)·sign(A_z)·diag(s_mid)·sign(B_z)·diag(s_in), with the
/// magnitudes read off the rank-1 structure |A_z| = ρ_A c_Aᵀ/‖A_z‖_F, |B_z| = ρ_B c_Bᵀ/‖B_z‖_F
/// (ρ = row norms, c = column norms; exact for matrices in the SVID set):
/// s_out = ρ_A/√o, s_in = c_B/√i, s_mid[k] = ρ_B[k]·(c_A[k]/‖A_z[:,k]‖)/(‖A_z‖_F‖B_z‖_F); then s_out and s_in
/// are scaled to unit RMS and s_mid absorbs the factors. For A_z, B_z in the SVID set,
/// Ŵ = diag(1/√o)·A_z·diag(1/‖A_z[:,k]‖)·B_z·diag(1/√i) up to rounding (lossless).
/// Arguments as export_two_scale.
template <typename Scalar>
Factorization<Scalar> export_three_scale(const Eigen::Ref<const Matrix<Scalar>>& A_z,
                                         const Eigen::Ref<const Matrix<Scalar>>& B_z,
                                         const Vector<Scalar>& importance_out, const Vector<Scalar>& importance_in,
                                         double eps = 1e-12)
{
    detail::check_export_args<Scalar>(A_z, B_z, importance_out, importance_in, "export_three_scale");
    const Index m = A_z.rows(), r = A_z.cols(), n = B_z.cols();
    const Matrix<double> A = A_z.template cast<double>();
    const Matrix<double> B = B_z.template cast<double>();
    const Vector<double> rowA = A.rowwise().norm();
    const Vector<double> colA = A.colwise().norm().transpose();
    const Vector<double> rowB = B.rowwise().norm();
    const Vector<double> colB = B.colwise().norm().transpose();
    const double fa = std::max(A.norm(), eps), fb = std::max(B.norm(), eps);
    Vector<double> s_out(m), s_in(n), s_mid(r);
    for (Index i = 0; i < m; ++i) s_out(i) = rowA(i) / std::sqrt(double(importance_out(i)));
    for (Index j = 0; j < n; ++j) s_in(j) = colB(j) / std::sqrt(double(importance_in(j)));
    for (Index k = 0; k < r; ++k) s_mid(k) = rowB(k) * (colA(k) / std::max(colA(k), eps)) / (fa * fb);
    const double rms_out = std::max(s_out.norm() / std::sqrt(double(m)), eps);
    const double rms_in = std::max(s_in.norm() / std::sqrt(double(n)), eps);
    Factorization<Scalar> f;
    f.u = PackedSignMatrix::pack(A_z);
    f.vt = PackedSignMatrix::pack(B_z);
    f.s_out = (s_out / rms_out).template cast<Scalar>();
    f.s_in = (s_in / rms_in).template cast<Scalar>();
    f.s_mid = (s_mid * (rms_out * rms_in)).template cast<Scalar>();
    return f;
}

/// Ŵ of a factorization of Wᵀ, expressed as a factorization of W (U ↔ V, s_out ↔ s_in).
template <typename Scalar>
Factorization<Scalar> transposed(const Factorization<Scalar>& f)
{
    Factorization<Scalar> t;
    t.u = f.vt.transposed();
    t.vt = f.u.transposed();
    t.s_out = f.s_in;
    t.s_in = f.s_out;
    t.s_mid = f.s_mid;
    return t;
}

}  // namespace nanoquant
