// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file swiglu_block.hpp
/// Block reconstruction of a SwiGLU MLP, y = down(silu(gate·x) ⊙ up·x) (method digest §5, with the
/// whole MLP as the block): the three layers are factorized (gate, up: h×d; down: d×h) and their
/// latents and scales are tuned jointly with Adam and the identity STE against the dense block's
/// outputs, under the importance-weighted loss of weighted_output_loss(). The backward pass is
/// written by hand:
/// \f[ G = X W_g^\top,\; U = X W_u^\top,\; H = \mathrm{silu}(G) \odot U,\; Y = H W_d^\top; \quad
///     dU = dH \odot \mathrm{silu}(G),\; dG = dH \odot U \odot \mathrm{silu}'(G), \f]
/// silu(z) = z σ(z), silu'(z) = σ(z)(1 + z(1 − σ(z))).

#include <chrono>
#include <numeric>

#include "nanoquant/refine/layer_reconstruction.hpp"

namespace nanoquant {

/// Parameters of a factorized SwiGLU MLP (latents + scales per layer).
template <typename Scalar>
struct SwiGluParams {
    LayerParams<Scalar> gate;  ///< h×d
    LayerParams<Scalar> up;    ///< h×d
    LayerParams<Scalar> down;  ///< d×h

    /// Throws nanoquant::invalid_argument unless the three layers chain (d → h → d).
    void validate(const char* where = "SwiGluParams::validate") const
    {
        gate.validate(where);
        up.validate(where);
        down.validate(where);
        NANOQUANT_CHECK(gate.rows() == up.rows() && gate.cols() == up.cols(), where,
                        "gate is " << gate.rows() << "x" << gate.cols() << " but up is " << up.rows() << "x"
                                   << up.cols());
        NANOQUANT_CHECK(down.cols() == gate.rows() && down.rows() == gate.cols(), where,
                        "down is " << down.rows() << "x" << down.cols() << ", expected " << gate.cols() << "x"
                                   << gate.rows());
    }
    SwiGluParams zeros_like() const { return {gate.zeros_like(), up.zeros_like(), down.zeros_like()}; }
};

namespace detail {
template <typename Scalar>
Matrix<Scalar> silu(const Matrix<Scalar>& Z)
{
    return Z.unaryExpr([](Scalar z) { return z / (Scalar(1) + std::exp(-z)); });
}
template <typename Scalar>
Matrix<Scalar> silu_grad(const Matrix<Scalar>& Z)
{
    return Z.unaryExpr([](Scalar z) {
        const Scalar s = Scalar(1) / (Scalar(1) + std::exp(-z));
        return s * (Scalar(1) + z * (Scalar(1) - s));
    });
}
}  // namespace detail

/// Dense SwiGLU block outputs Y = (silu(X W_gᵀ) ⊙ (X W_uᵀ)) W_dᵀ, X tokens × d.
template <typename Scalar>
Matrix<Scalar> swiglu_dense_forward(const Eigen::Ref<const Matrix<Scalar>>& Wg, const Eigen::Ref<const Matrix<Scalar>>& Wu,
                                    const Eigen::Ref<const Matrix<Scalar>>& Wd, const Eigen::Ref<const Matrix<Scalar>>& X)
{
    constexpr const char* where = "swiglu_dense_forward";
    check_shape(Wu, Wg.rows(), Wg.cols(), where, "Wu");
    check_shape(Wd, Wg.cols(), Wg.rows(), where, "Wd");
    NANOQUANT_CHECK(X.cols() == Wg.cols(), where, "X has " << X.cols() << " columns, expected d = " << Wg.cols());
    const Matrix<Scalar> G = X * Wg.transpose();
    const Matrix<Scalar> H = detail::silu(G).cwiseProduct(X * Wu.transpose());
    return H * Wd.transpose();
}

/// Loss (weighted_output_loss) of the block on (X, Y) and, if `grad` is not null, its gradient with
/// respect to every parameter. With `ste` the effective sign matrices are sign(latent) (identity STE);
/// without it the latents themselves are used as continuous matrices (what the finite-difference tests
/// check). If dX is not null it receives ∂L/∂X.
template <typename Scalar>
double swiglu_loss(const SwiGluParams<Scalar>& p, const Eigen::Ref<const Matrix<Scalar>>& X,
                   const Eigen::Ref<const Matrix<Scalar>>& Y, const Vector<Scalar>& w, bool ste,
                   SwiGluParams<Scalar>* grad = nullptr, Matrix<Scalar>* dX = nullptr)
{
    auto eff = [ste](const Matrix<Scalar>& L) { return ste ? sign_of(L) : L; };
    const Matrix<Scalar> gu = eff(p.gate.u), gv = eff(p.gate.vt), uu = eff(p.up.u), uv = eff(p.up.vt),
                         du = eff(p.down.u), dv = eff(p.down.vt);
    LayerCache<Scalar> cg, cu, cd;
    const Matrix<Scalar> G = layer_forward<Scalar>(gu, gv, p.gate, X, cg);
    const Matrix<Scalar> Uo = layer_forward<Scalar>(uu, uv, p.up, X, cu);
    const Matrix<Scalar> S = detail::silu(G);
    const Matrix<Scalar> H = S.cwiseProduct(Uo);
    const Matrix<Scalar> Yh = layer_forward<Scalar>(du, dv, p.down, H, cd);
    if (!grad && !dX) return weighted_output_loss<Scalar>(Yh, Y, w, nullptr);
    Matrix<Scalar> dY, dH;
    const double loss = weighted_output_loss<Scalar>(Yh, Y, w, &dY);
    SwiGluParams<Scalar> local;
    SwiGluParams<Scalar>& g = grad ? *grad : local;
    if (!grad) g = p.zeros_like();
    layer_backward<Scalar>(du, dv, p.down, H, cd, dY, g.down, &dH);
    const Matrix<Scalar> dG = dH.cwiseProduct(Uo).cwiseProduct(detail::silu_grad(G));
    const Matrix<Scalar> dU = dH.cwiseProduct(S);
    Matrix<Scalar> dXg, dXu;
    layer_backward<Scalar>(gu, gv, p.gate, X, cg, dG, g.gate, dX ? &dXg : nullptr);
    layer_backward<Scalar>(uu, uv, p.up, X, cu, dU, g.up, dX ? &dXu : nullptr);
    if (dX) *dX = dXg + dXu;
    return loss;
}

/// Result of reconstruct_swiglu_block().
template <typename Scalar>
struct SwiGluReconstructionResult {
    SwiGluParams<Scalar> params;     ///< the returned iterate (latents + scales)
    Factorization<Scalar> gate, up, down;  ///< hardened layers
    double loss_before = 0;          ///< block loss of the start on the calibration set
    double loss_after = 0;           ///< block loss of the returned iterate
    std::vector<double> epoch_loss;  ///< loss after each epoch (with keep_best)
    Index best_epoch = 0;            ///< epoch of the returned iterate (0 = start)
    Index steps = 0;                 ///< Adam steps
    double seconds = 0;              ///< wall time
};

/// Tunes the three factorized layers jointly against the dense block's outputs Y (tokens × d) on
/// inputs X (tokens × d). Same options and schedule as reconstruct_layer() (learning rates shared by
/// the three layers; latents normalized per layer if opts.normalize_latents).
/// \param w importance of the block's output channels (length d), empty = ones
template <typename Scalar>
SwiGluReconstructionResult<Scalar> reconstruct_swiglu_block(const SwiGluParams<Scalar>& start,
                                                            const Eigen::Ref<const Matrix<Scalar>>& X,
                                                            const Eigen::Ref<const Matrix<Scalar>>& Y,
                                                            const LayerReconstructionOptions& opts = {},
                                                            const Vector<Scalar>& w = Vector<Scalar>())
{
    constexpr const char* where = "reconstruct_swiglu_block";
    opts.validate();
    start.validate(where);
    const Index d = start.gate.cols();
    detail::check_calibration_set(d, d, X, Y, w, where);
    const auto t0 = std::chrono::steady_clock::now();
    SwiGluReconstructionResult<Scalar> res;
    SwiGluParams<Scalar> p = start;
    if (opts.normalize_latents) {
        normalize_latents(p.gate);
        normalize_latents(p.up);
        normalize_latents(p.down);
    }
    auto full_loss = [&](const SwiGluParams<Scalar>& q) {
        double num = 0, den = 0;
        for (Index s = 0; s < X.rows(); s += opts.eval_chunk) {
            const Index b = std::min(opts.eval_chunk, X.rows() - s);
            const Matrix<Scalar> Yb = Y.middleRows(s, b);
            double l = swiglu_loss<Scalar>(q, X.middleRows(s, b), Yb, w, true);
            const double e = w.size() ? double((Yb.array().square().rowwise() * w.transpose().array()).sum())
                                      : double(Yb.squaredNorm());
            num += l * (e > 0 ? e : 1.0);
            den += e;
        }
        return den > 0 ? num / den : num;
    };
    res.loss_before = full_loss(p);
    detail::BestIterate<SwiGluParams<Scalar>> best(p, res.loss_before);
    detail::TokenBatches batches(X.rows(), opts.batch_size, opts.seed, opts.shuffle);
    const long total = long(batches.count()) * long(opts.epochs);
    AdamState<Scalar> ag(p.gate, opts.beta1, opts.beta2, opts.eps), au(p.up, opts.beta1, opts.beta2, opts.eps),
        ad(p.down, opts.beta1, opts.beta2, opts.eps);
    const AdamRates rg = detail::peak_rates(p.gate, opts), ru = detail::peak_rates(p.up, opts),
                    rd = detail::peak_rates(p.down, opts);
    SwiGluParams<Scalar> g = p.zeros_like();
    Matrix<Scalar> Xb, Yb;
    for (Index epoch = 1; epoch <= opts.epochs; ++epoch) {
        batches.next_epoch();
        for (Index bi = 0; bi < batches.count(); ++bi) {
            batches.gather<Scalar>(bi, X, Y, Xb, Yb);
            swiglu_loss<Scalar>(p, Xb, Yb, w, true, &g);
            const double f = cosine_lr(1.0, opts.lr_min_ratio, res.steps, total);
            ag.step(p.gate, g.gate, detail::scaled_rates(rg, f));
            au.step(p.up, g.up, detail::scaled_rates(ru, f));
            ad.step(p.down, g.down, detail::scaled_rates(rd, f));
            ++res.steps;
        }
        if (opts.keep_best) {
            res.epoch_loss.push_back(full_loss(p));
            best.offer(p, res.epoch_loss.back(), epoch);
        }
    }
    best.finish(opts.keep_best, p, opts.epochs, [&] { return full_loss(p); });
    res.best_epoch = best.epoch;
    res.loss_after = best.loss;
    res.params = best.params;
    res.gate = best.params.gate.harden();
    res.up = best.params.up.harden();
    res.down = best.params.down.harden();
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return res;
}

}  // namespace nanoquant
