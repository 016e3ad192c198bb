// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file nn.hpp
/// The pieces of a small pre-norm transformer encoder, each with a forward and a hand-written
/// backward pass (checked against finite differences in tests/model/test_nn_gradients.cpp):
/// Linear (dense, or factorized with latent signs through the identity straight-through
/// estimator), LayerNorm, multi-head self-attention, ReLU, mean pooling, tanh and l2 normalization.
///
/// **Activations.** One float32 matrix holds the tokens of a whole batch of sentences, one token per
/// row (tokens × channels), sentences one after the other with no padding: a `Ragged` gives the
/// first row of each sentence. Only attention and pooling look across rows, and both work inside
/// one sentence at a time, so a sentence's result never depends on the other sentences of its
/// batch (the role a padding mask plays in a padded layout; the TF.js graph's −1e9 mask bias gives
/// padded keys a weight of exactly 0 in float32, the same as leaving them out).
///
/// **Backward convention.** `backward` functions take the cache filled by `forward`, the gradient of
/// the loss with respect to the output, and *add* the parameter gradients into a gradient object of
/// the same shapes (so one object can collect several mini-batches); the input gradient, when asked
/// for, is overwritten.

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/factorization.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/io/half.hpp"
#include "nanoquant/kernels/gemv.hpp"
#include "nanoquant/kernels/packed_layer.hpp"
#include "nanoquant/refine/layer_params.hpp"

namespace nanoquant {
namespace model {

using Mat = Matrix<float>;
using Vec = Vector<float>;

/// Row ranges of the sentences of a batch: sentence s owns rows [offsets[s], offsets[s+1]).
struct Ragged {
    std::vector<Index> offsets{0};  ///< sentences + 1 non-decreasing entries, offsets[0] = 0

    Index sentences() const { return Index(offsets.size()) - 1; }
    Index tokens() const { return offsets.back(); }
    Index begin(Index s) const { return offsets[std::size_t(s)]; }
    Index length(Index s) const { return offsets[std::size_t(s) + 1] - offsets[std::size_t(s)]; }

    /// From the lengths of the sentences.
    static Ragged from_lengths(const std::vector<Index>& lengths)
    {
        Ragged r;
        r.offsets.reserve(lengths.size() + 1);
        for (const Index l : lengths) {
            NANOQUANT_CHECK(l >= 0, "model::Ragged::from_lengths", "a sentence length must be >= 0, got " << l);
            r.offsets.push_back(r.offsets.back() + l);
        }
        return r;
    }
    /// Sentences [s0, s1) of this batch, renumbered from row 0.
    Ragged slice(Index s0, Index s1) const
    {
        Ragged r;
        r.offsets.assign(offsets.begin() + s0, offsets.begin() + s1 + 1);
        for (auto& o : r.offsets) o -= offsets[std::size_t(s0)];
        return r;
    }
};

// ---------------------------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------------------------

/// y = x Wᵀ + b for every token (row) x. W is either dense (`w`, out × in) or factorized
/// (`f`: Ŵ = diag(s_out) sign(u) diag(s_mid) sign(vt) diag(s_in), latents u, vt real-valued; the
/// forward pass uses their signs and the backward pass hands ∂L/∂sign(·) to the latents unchanged,
/// the identity STE of the reference). A factorized layer can also carry its packed inference form
/// (`packed`), which `forward` uses when no cache is requested (inference), so a quantized model
/// runs through the same kernels as `nanoquant::kernels::gemm`.
struct Linear {
    Mat w;                   ///< out × in, dense layers only
    LayerParams<float> f;    ///< latents and scales, factorized layers only
    bool factorized = false;
    Vec b;                   ///< out biases, or empty (no bias)
    std::shared_ptr<const kernels::PackedLayer> packed;  ///< inference form of `f` (optional)

    Index out() const { return factorized ? f.rows() : w.rows(); }
    Index in() const { return factorized ? f.cols() : w.cols(); }
    bool has_bias() const { return b.size() != 0; }

    /// The dense matrix this layer applies (Ŵ for a factorized layer).
    Mat effective_weight() const
    {
        if (!factorized) return w;
        return f.harden().reconstruct();
    }
};

/// Makes `l` the factorized layer `f` (±1 signs as latents, its scales, its packed inference form);
/// the bias stays.
inline void set_factorized(Linear& l, const Factorization<float>& f)
{
    l.factorized = true;
    l.w.resize(0, 0);
    l.f.u = f.u.unpack<float>();
    l.f.vt = f.vt.unpack<float>();
    l.f.s_out = f.s_out;
    l.f.s_mid = f.s_mid;
    l.f.s_in = f.s_in;
    l.packed = std::make_shared<const kernels::PackedLayer>(kernels::pack_layer(f));
}

/// The saved form of a factorized layer: latents hardened to ±1, scales rounded to float16 (what
/// the file stores, so a finalized layer loads back bit for bit) and the packed inference form set.
/// A dense layer is left as it is.
inline void finalize(Linear& l)
{
    if (!l.factorized) return;
    auto round16 = [](Vec& v) {
        for (Index i = 0; i < v.size(); ++i) v(i) = io::half_to_float(io::float_to_half(v(i)));
    };
    l.f.u = sign_of(l.f.u);
    l.f.vt = sign_of(l.f.vt);
    round16(l.f.s_out);
    round16(l.f.s_mid);
    round16(l.f.s_in);
    l.packed = std::make_shared<const kernels::PackedLayer>(kernels::pack_layer(l.f.harden()));
}

/// Gradients of a Linear (same shapes as its parameters).
struct LinearGrad {
    Mat w;
    LayerParams<float> f;
    Vec b;

    static LinearGrad zeros_like(const Linear& l)
    {
        LinearGrad g;
        if (l.factorized) g.f = l.f.zeros_like();
        else g.w = Mat::Zero(l.w.rows(), l.w.cols());
        g.b = Vec::Zero(l.b.size());
        return g;
    }
    void set_zero()
    {
        w.setZero();
        b.setZero();
        if (f.u.size() || f.vt.size()) f = f.zeros_like();
    }
};

struct LinearCache {
    Mat x;                       ///< the input
    Mat ue, vte;                 ///< sign(u), sign(vt) (factorized)
    LayerCache<float> lc;        ///< factorized layer intermediates
};

/// Forward pass. With `cache` the (training) float path is taken and the cache filled; without a
/// cache a factorized layer with `packed` set runs the packed float32 kernels with `threads` threads.
inline Mat linear_forward(const Linear& l, const Mat& x, LinearCache* cache, int threads = 1)
{
    NANOQUANT_CHECK(x.cols() == l.in(), "model::linear_forward",
                    "the input has " << x.cols() << " channels, the layer expects " << l.in());
    Mat y;
    if (!l.factorized) {
        y.noalias() = x * l.w.transpose();
    } else if (!cache && l.packed) {
        const RowMajorMatrix<float> xr = x;
        RowMajorMatrix<float> yr(x.rows(), l.out());
        kernels::GemvOptions opt;
        opt.num_threads = threads;
        kernels::gemm(*l.packed, xr.data(), xr.cols(), xr.rows(), yr.data(), yr.cols(), opt);
        y = yr;
    } else {
        LinearCache local;
        LinearCache& c = cache ? *cache : local;
        c.ue = sign_of(l.f.u);
        c.vte = sign_of(l.f.vt);
        y = layer_forward<float>(c.ue, c.vte, l.f, x, c.lc);
    }
    if (l.has_bias()) y.rowwise() += l.b.transpose();
    if (cache) cache->x = x;
    return y;
}

/// Backward pass: adds ∂L/∂(parameters) into g; dx (if not null) receives ∂L/∂x.
inline void linear_backward(const Linear& l, const LinearCache& c, const Mat& dy, LinearGrad& g, Mat* dx)
{
    if (l.has_bias()) g.b += dy.colwise().sum().transpose();
    if (!l.factorized) {
        g.w.noalias() += dy.transpose() * c.x;
        if (dx) dx->noalias() = dy * l.w;
        return;
    }
    LayerParams<float> gl = l.f.zeros_like();
    layer_backward<float>(c.ue, c.vte, l.f, c.x, c.lc, dy, gl, dx);
    g.f.u += gl.u;
    g.f.vt += gl.vt;
    g.f.s_out += gl.s_out;
    if (gl.has_mid_scale()) g.f.s_mid += gl.s_mid;
    g.f.s_in += gl.s_in;
}

// ---------------------------------------------------------------------------------------------
// LayerNorm
// ---------------------------------------------------------------------------------------------

/// y = (x − mean)·rsqrt(var + eps)·γ + β over the channels of each token (biased variance).
struct LayerNorm {
    Vec gamma, beta;
    float eps = 1e-6f;
};
struct LayerNormGrad {
    Vec gamma, beta;
    static LayerNormGrad zeros_like(const LayerNorm& n)
    {
        return {Vec::Zero(n.gamma.size()), Vec::Zero(n.beta.size())};
    }
    void set_zero()
    {
        gamma.setZero();
        beta.setZero();
    }
};
struct LayerNormCache {
    Mat xhat;  ///< normalized input
    Vec rstd;  ///< per token
};

inline Mat layernorm_forward(const LayerNorm& n, const Mat& x, LayerNormCache* cache)
{
    NANOQUANT_CHECK(x.cols() == n.gamma.size(), "model::layernorm_forward",
                    "the input has " << x.cols() << " channels, the norm has " << n.gamma.size());
    const Index T = x.rows(), d = x.cols();
    Mat xhat(T, d);
    Vec rstd(T);
    for (Index t = 0; t < T; ++t) {
        const float mean = x.row(t).mean();
        const float var = (x.row(t).array() - mean).square().mean();
        rstd(t) = 1.0f / std::sqrt(var + n.eps);
        xhat.row(t) = (x.row(t).array() - mean) * rstd(t);
    }
    Mat y = (xhat.array().rowwise() * n.gamma.transpose().array()).rowwise() + n.beta.transpose().array();
    if (cache) {
        cache->xhat = std::move(xhat);
        cache->rstd = std::move(rstd);
    }
    return y;
}

inline void layernorm_backward(const LayerNorm& n, const LayerNormCache& c, const Mat& dy, LayerNormGrad& g,
                               Mat* dx)
{
    g.gamma += (dy.array() * c.xhat.array()).colwise().sum().transpose().matrix();
    g.beta += dy.colwise().sum().transpose();
    if (!dx) return;
    const Mat dxhat = dy.array().rowwise() * n.gamma.transpose().array();
    const Index T = dy.rows();
    dx->resize(T, dy.cols());
    for (Index t = 0; t < T; ++t) {
        const float m1 = dxhat.row(t).mean();
        const float m2 = (dxhat.row(t).array() * c.xhat.row(t).array()).mean();
        dx->row(t) = c.rstd(t) * (dxhat.row(t).array() - m1 - c.xhat.row(t).array() * m2);
    }
}

// ---------------------------------------------------------------------------------------------
// Multi-head self-attention (no projections: those are Linear layers around it)
// ---------------------------------------------------------------------------------------------

/// Attention over one sentence at a time: qkv (tokens × 3d) holds q | k | v, head h uses channels
/// [h·d/heads, (h+1)·d/heads) of each; logits = (q_scale·q) kᵀ, softmax over the keys of the same
/// sentence, o = P v; output tokens × d, heads concatenated.
struct AttentionCache {
    Mat qkv;
    std::vector<Mat> probs;  ///< sentence-major, heads inner: probs[s·heads + h] is T_s × T_s
};

inline Mat attention_forward(const Mat& qkv, const Ragged& batch, Index heads, float q_scale, AttentionCache* cache,
                             int threads = 1)
{
    constexpr const char* where = "model::attention_forward";
    NANOQUANT_CHECK(heads >= 1 && qkv.cols() % (3 * heads) == 0, where,
                    "qkv has " << qkv.cols() << " channels, not a multiple of 3 x heads = " << 3 * heads);
    NANOQUANT_CHECK(qkv.rows() == batch.tokens(), where,
                    "qkv has " << qkv.rows() << " tokens, the batch " << batch.tokens());
    const Index d = qkv.cols() / 3, dh = d / heads, S = batch.sentences();
    Mat o(qkv.rows(), d);
    if (cache) cache->probs.assign(std::size_t(S * heads), Mat());
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4) if (threads > 1)
#endif
    for (Index s = 0; s < S; ++s) {
        const Index t0 = batch.begin(s), T = batch.length(s);
        if (T == 0) continue;
        for (Index h = 0; h < heads; ++h) {
            const auto q = qkv.block(t0, h * dh, T, dh);
            const auto k = qkv.block(t0, d + h * dh, T, dh);
            const auto v = qkv.block(t0, 2 * d + h * dh, T, dh);
            Mat P = (q_scale * q) * k.transpose();
            for (Index i = 0; i < T; ++i) {
                const float mx = P.row(i).maxCoeff();
                P.row(i) = (P.row(i).array() - mx).exp();
                P.row(i) /= P.row(i).sum();
            }
            o.block(t0, h * dh, T, dh).noalias() = P * v;
            if (cache) cache->probs[std::size_t(s * heads + h)] = std::move(P);
        }
    }
    if (cache) cache->qkv = qkv;
    return o;
}

/// ∂L/∂qkv from ∂L/∂o.
inline Mat attention_backward(const AttentionCache& c, const Mat& dout, const Ragged& batch, Index heads,
                              float q_scale, int threads = 1)
{
    const Mat& qkv = c.qkv;
    const Index d = qkv.cols() / 3, dh = d / heads, S = batch.sentences();
    Mat dqkv = Mat::Zero(qkv.rows(), qkv.cols());
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4) if (threads > 1)
#endif
    for (Index s = 0; s < S; ++s) {
        const Index t0 = batch.begin(s), T = batch.length(s);
        if (T == 0) continue;
        for (Index h = 0; h < heads; ++h) {
            const Mat& P = c.probs[std::size_t(s * heads + h)];
            const auto q = qkv.block(t0, h * dh, T, dh);
            const auto k = qkv.block(t0, d + h * dh, T, dh);
            const auto v = qkv.block(t0, 2 * d + h * dh, T, dh);
            const auto dO = dout.block(t0, h * dh, T, dh);
            dqkv.block(t0, 2 * d + h * dh, T, dh).noalias() = P.transpose() * dO;  // dv
            const Mat dP = dO * v.transpose();
            // softmax backward: dlogits = P ⊙ (dP − rowsum(dP ⊙ P))
            const Vec rs = (dP.array() * P.array()).rowwise().sum();
            const Mat dL = P.array() * (dP.colwise() - rs).array();
            dqkv.block(t0, h * dh, T, dh).noalias() = q_scale * (dL * k);
            dqkv.block(t0, d + h * dh, T, dh).noalias() = q_scale * (dL.transpose() * q);
        }
    }
    return dqkv;
}

// ---------------------------------------------------------------------------------------------
// Pooling and the output head's elementwise pieces
// ---------------------------------------------------------------------------------------------

/// Mean over the tokens of each sentence (sentences × channels); an empty sentence gives zeros.
inline Mat mean_pool(const Mat& x, const Ragged& batch)
{
    Mat p = Mat::Zero(batch.sentences(), x.cols());
    for (Index s = 0; s < batch.sentences(); ++s) {
        const Index T = batch.length(s);
        if (T > 0) p.row(s) = x.middleRows(batch.begin(s), T).colwise().sum() / float(T);
    }
    return p;
}

inline Mat mean_pool_backward(const Mat& dp, const Ragged& batch)
{
    Mat dx(batch.tokens(), dp.cols());
    for (Index s = 0; s < batch.sentences(); ++s) {
        const Index T = batch.length(s);
        for (Index t = 0; t < T; ++t) dx.row(batch.begin(s) + t) = dp.row(s) / float(T);
    }
    return dx;
}

/// Rows scaled to unit norm: y = x·rsqrt(max(‖x‖², eps)).
inline Mat l2_normalize(const Mat& x, float eps = 1e-12f)
{
    Mat y(x.rows(), x.cols());
    for (Index i = 0; i < x.rows(); ++i) y.row(i) = x.row(i) / std::sqrt(std::max(x.row(i).squaredNorm(), eps));
    return y;
}

/// ∂L/∂x of l2_normalize from its input x and ∂L/∂y.
inline Mat l2_normalize_backward(const Mat& x, const Mat& dy, float eps = 1e-12f)
{
    Mat dx(x.rows(), x.cols());
    for (Index i = 0; i < x.rows(); ++i) {
        const float n2 = x.row(i).squaredNorm();
        if (n2 <= eps) {
            dx.row(i) = dy.row(i) / std::sqrt(eps);
            continue;
        }
        const float inv = 1.0f / std::sqrt(n2);
        dx.row(i) = inv * (dy.row(i) - (x.row(i).dot(dy.row(i)) / n2) * x.row(i));
    }
    return dx;
}

}  // namespace model
}  // namespace nanoquant
