// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file layer_params.hpp
/// LayerParams<Scalar>: the continuous parameters of one factorized linear layer during
/// calibration-based tuning, and its hand-written forward and backward passes.
///
/// The layer computes, for a batch X (tokens × n, one token per row),
/// \f[ \hat Y = \big(((X\,\mathrm{diag}(s_{in}))\,\bar V^\top \mathrm{diag}(s_{mid}))\,\bar U^\top\big)\,\mathrm{diag}(s_{out}), \f]
/// i.e. Ŷ = X Ŵᵀ with Ŵ = diag(s_out) Ū diag(s_mid) V̄ᵀ diag(s_in). During tuning Ū = sign(u), V̄ᵀ = sign(vt)
/// (sign(0) = +1) and the straight-through estimator (identity STE, as in the reference) passes
/// ∂L/∂Ū to u unchanged. The forward/backward functions below take the *effective* matrices Ū, V̄ᵀ as
/// plain continuous inputs, which is what the finite-difference tests check; the STE is the caller's
/// choice of Ū = sign(u).
///
/// Cost of one forward + backward on B tokens: six GEMMs of B·r·(m or n) multiply-adds.

#include <cmath>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/factorization.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// Continuous parameters (or gradients, or Adam moments) of one factorized layer.
template <typename Scalar>
struct LayerParams {
    Matrix<Scalar> u;      ///< m×r latent of U (or its gradient)
    Matrix<Scalar> vt;     ///< r×n latent of Vᵀ (or its gradient)
    Vector<Scalar> s_out;  ///< m output scales
    Vector<Scalar> s_mid;  ///< r per-rank scales, or empty (two-scale layout, acts as ones, never trained)
    Vector<Scalar> s_in;   ///< n input scales

    Index rows() const { return u.rows(); }
    Index cols() const { return vt.cols(); }
    Index rank() const { return u.cols(); }
    bool has_mid_scale() const { return s_mid.size() != 0; }

    /// Same shapes, all zeros.
    LayerParams zeros_like() const
    {
        LayerParams z;
        z.u = Matrix<Scalar>::Zero(u.rows(), u.cols());
        z.vt = Matrix<Scalar>::Zero(vt.rows(), vt.cols());
        z.s_out = Vector<Scalar>::Zero(s_out.size());
        z.s_mid = Vector<Scalar>::Zero(s_mid.size());
        z.s_in = Vector<Scalar>::Zero(s_in.size());
        return z;
    }

    /// Throws nanoquant::invalid_argument unless the shapes agree and every value is finite.
    void validate(const char* where = "LayerParams::validate") const
    {
        // The rules of Factorization::validate (one copy: detail::check_factor_layout), plus finite latents.
        detail::check_factor_layout(u.rows(), u.cols(), vt.rows(), vt.cols(), s_out, s_mid, s_in, where,
                                    "u", "vt");
        check_finite(u, where, "u");
        check_finite(vt, where, "vt");
    }

    /// Hardens the latents: U = sign(u), Vᵀ = sign(vt) (sign(0) = +1), scales copied.
    Factorization<Scalar> harden() const
    {
        Factorization<Scalar> f;
        f.u = PackedSignMatrix::pack(u);
        f.vt = PackedSignMatrix::pack(vt);
        f.s_out = s_out;
        f.s_mid = s_mid;
        f.s_in = s_in;
        return f;
    }
};

/// sign(x) with sign(0) := +1, elementwise.
template <typename Derived>
Matrix<typename Derived::Scalar> sign_of(const Eigen::MatrixBase<Derived>& X)
{
    using S = typename Derived::Scalar;
    return X.unaryExpr([](S v) { return v < S(0) ? S(-1) : S(1); });
}

/// Intermediate values of a layer forward pass, kept for the backward pass.
template <typename Scalar>
struct LayerCache {
    Matrix<Scalar> a;   ///< X diag(s_in), B×n
    Matrix<Scalar> t;   ///< a V̄ (= a · V̄ᵀᵀ), B×r
    Matrix<Scalar> t2;  ///< t diag(s_mid), B×r (aliases t when there is no mid scale: left empty)
    Matrix<Scalar> z;   ///< t2 Ūᵀ, B×m
};

/// Forward pass Ŷ = X Ŵᵀ with effective matrices ue (m×r) and vte (r×n) and the scales of `p`
/// (p.u, p.vt are not read). Fills `cache` for layer_backward().
template <typename Scalar>
Matrix<Scalar> layer_forward(const Matrix<Scalar>& ue, const Matrix<Scalar>& vte, const LayerParams<Scalar>& p,
                             const Eigen::Ref<const Matrix<Scalar>>& X, LayerCache<Scalar>& cache)
{
    cache.a.noalias() = X * p.s_in.asDiagonal();
    cache.t.noalias() = cache.a * vte.transpose();
    if (p.has_mid_scale()) {
        cache.t2.noalias() = cache.t * p.s_mid.asDiagonal();
        cache.z.noalias() = cache.t2 * ue.transpose();
    } else {
        cache.t2.resize(0, 0);
        cache.z.noalias() = cache.t * ue.transpose();
    }
    return cache.z * p.s_out.asDiagonal();
}

/// Backward pass of layer_forward(): given dL/dŶ (B×m), writes dL/dŪ into g.u, dL/dV̄ᵀ into g.vt,
/// and the scale gradients into g.s_out, g.s_mid, g.s_in (g must have p's shapes). If dX is not null
/// it receives dL/dX (B×n). Gradients are overwritten, not accumulated.
template <typename Scalar>
void layer_backward(const Matrix<Scalar>& ue, const Matrix<Scalar>& vte, const LayerParams<Scalar>& p,
                    const Eigen::Ref<const Matrix<Scalar>>& X, const LayerCache<Scalar>& cache,
                    const Matrix<Scalar>& dY, LayerParams<Scalar>& g, Matrix<Scalar>* dX = nullptr)
{
    // ds_out_i = Σ_t dY_ti z_ti ; dz = dY diag(s_out)
    g.s_out = (dY.array() * cache.z.array()).colwise().sum().transpose();
    const Matrix<Scalar> dz = dY * p.s_out.asDiagonal();
    const Matrix<Scalar>& t2 = p.has_mid_scale() ? cache.t2 : cache.t;
    g.u.noalias() = dz.transpose() * t2;             // m×r
    Matrix<Scalar> dt = dz * ue;                     // B×r, = dL/dt2
    if (p.has_mid_scale()) {
        g.s_mid = (dt.array() * cache.t.array()).colwise().sum().transpose();
        dt = dt * p.s_mid.asDiagonal();              // dL/dt
    }
    g.vt.noalias() = dt.transpose() * cache.a;       // r×n
    const Matrix<Scalar> da = dt * vte;              // B×n
    g.s_in = (da.array() * X.array()).colwise().sum().transpose();
    if (dX) *dX = da * p.s_in.asDiagonal();
}

/// Importance-weighted relative squared output error of a batch and its gradient seed:
/// \f[ L = \frac{\sum_{t,i} w_i (\hat Y_{ti} - Y_{ti})^2}{\sum_{t,i} w_i Y_{ti}^2}, \qquad
///     \frac{\partial L}{\partial \hat Y} = \frac{2\, (\hat Y - Y)\,\mathrm{diag}(w)}{\sum w Y^2}. \f]
/// `w` empty means all ones. If dY is not null it receives ∂L/∂Ŷ. A zero target gives the
/// denominator 1 (then L is the absolute weighted squared error).
template <typename Scalar>
double weighted_output_loss(const Matrix<Scalar>& Yhat, const Eigen::Ref<const Matrix<Scalar>>& Y,
                            const Vector<Scalar>& w, Matrix<Scalar>* dY)
{
    Matrix<Scalar> E = Yhat - Y;
    double num, den;
    if (w.size() == 0) {
        num = E.template cast<double>().squaredNorm();
        den = Y.template cast<double>().squaredNorm();
    } else {
        const Vector<double> wd = w.template cast<double>();
        num = (E.template cast<double>().array().square().rowwise() * wd.transpose().array()).sum();
        den = (Y.template cast<double>().array().square().rowwise() * wd.transpose().array()).sum();
    }
    if (den <= 0) den = 1.0;
    if (dY) {
        if (w.size() == 0) *dY = E * Scalar(2.0 / den);
        else *dY = (E * w.asDiagonal()) * Scalar(2.0 / den);
    }
    return num / den;
}

}  // namespace nanoquant
