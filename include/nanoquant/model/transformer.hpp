// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file transformer.hpp
/// A pre-norm transformer layer and a mean-pooling output head built from the pieces of nn.hpp,
/// each with forward and backward passes over a ragged batch.
///
/// TransformerLayer (USE-Lite's KonaTransformer layer; a plain pre-norm layer when there is no
/// residual projection):
///   a  = LN₁(x);  o = Attention(qkv(a));  h = R(x) + out(o),  R = dense (if present) or identity
///   y  = h + down(ReLU(up(LN₂(h))))
/// PoolingHead: y = l2_normalize(tanh(dense(mean_pool(x)))).

#include <functional>
#include <string>
#include <vector>

#include "nanoquant/model/nn.hpp"

namespace nanoquant {
namespace model {

struct TransformerLayer {
    LayerNorm ln_attn;
    Linear qkv;        ///< d_in → 3·d_attn
    Linear out;        ///< d_attn → d_model
    bool has_dense = false;
    Linear dense;      ///< d_in → d_model residual projection (when has_dense)
    LayerNorm ln_ffn;
    Linear up;         ///< d_model → d_ff
    Linear down;       ///< d_ff → d_model
    Index heads = 1;
    float q_scale = 1.0f;

    /// The matmul weights in the order they are quantized (the reference's q, v, o, k, gate, up, down
    /// order mapped to this layer: the fused qkv first, then the attention output, the residual
    /// projection, the FFN).
    std::vector<std::pair<std::string, Linear*>> linears()
    {
        std::vector<std::pair<std::string, Linear*>> v{{"qkv", &qkv}, {"out", &out}};
        if (has_dense) v.emplace_back("dense", &dense);
        v.emplace_back("up", &up);
        v.emplace_back("down", &down);
        return v;
    }
    std::vector<std::pair<std::string, const Linear*>> linears() const
    {
        std::vector<std::pair<std::string, const Linear*>> v;
        for (auto& p : const_cast<TransformerLayer*>(this)->linears()) v.emplace_back(p.first, p.second);
        return v;
    }
    std::vector<std::pair<std::string, LayerNorm*>> norms() { return {{"ln_attn", &ln_attn}, {"ln_ffn", &ln_ffn}}; }
};

struct TransformerLayerGrad {
    LayerNormGrad ln_attn, ln_ffn;
    LinearGrad qkv, out, dense, up, down;

    static TransformerLayerGrad zeros_like(const TransformerLayer& L)
    {
        TransformerLayerGrad g;
        g.ln_attn = LayerNormGrad::zeros_like(L.ln_attn);
        g.ln_ffn = LayerNormGrad::zeros_like(L.ln_ffn);
        g.qkv = LinearGrad::zeros_like(L.qkv);
        g.out = LinearGrad::zeros_like(L.out);
        if (L.has_dense) g.dense = LinearGrad::zeros_like(L.dense);
        g.up = LinearGrad::zeros_like(L.up);
        g.down = LinearGrad::zeros_like(L.down);
        return g;
    }
    /// The gradient of the Linear called `name` in TransformerLayer::linears().
    LinearGrad& linear(const std::string& name)
    {
        if (name == "qkv") return qkv;
        if (name == "out") return out;
        if (name == "dense") return dense;
        if (name == "up") return up;
        NANOQUANT_CHECK(name == "down", "model::TransformerLayerGrad::linear", "no linear named '" << name << "'");
        return down;
    }
};

struct TransformerLayerCache {
    LayerNormCache ln_attn, ln_ffn;
    LinearCache qkv, out, dense, up, down;
    AttentionCache attn;
    Mat ffn_pre;  ///< up(LN₂(h)) before the ReLU
};

inline Mat transformer_forward(const TransformerLayer& L, const Mat& x, const Ragged& batch,
                               TransformerLayerCache* c, int threads = 1)
{
    const Mat a = layernorm_forward(L.ln_attn, x, c ? &c->ln_attn : nullptr);
    const Mat qkv = linear_forward(L.qkv, a, c ? &c->qkv : nullptr, threads);
    const Mat o = attention_forward(qkv, batch, L.heads, L.q_scale, c ? &c->attn : nullptr, threads);
    Mat h = linear_forward(L.out, o, c ? &c->out : nullptr, threads);
    if (L.has_dense) h += linear_forward(L.dense, x, c ? &c->dense : nullptr, threads);
    else h += x;
    const Mat a2 = layernorm_forward(L.ln_ffn, h, c ? &c->ln_ffn : nullptr);
    Mat z = linear_forward(L.up, a2, c ? &c->up : nullptr, threads);
    if (c) c->ffn_pre = z;
    z = z.cwiseMax(0.0f);
    h += linear_forward(L.down, z, c ? &c->down : nullptr, threads);
    return h;
}

/// Adds the parameter gradients into g; dx (if not null) receives ∂L/∂x.
inline void transformer_backward(const TransformerLayer& L, const TransformerLayerCache& c, const Mat& dy,
                                 const Ragged& batch, TransformerLayerGrad& g, Mat* dx, int threads = 1)
{
    // y = h + down(relu(up(LN2(h))))
    Mat dz;
    linear_backward(L.down, c.down, dy, g.down, &dz);
    dz = (c.ffn_pre.array() > 0.0f).select(dz, 0.0f);
    Mat da2;
    linear_backward(L.up, c.up, dz, g.up, &da2);
    Mat dh;
    layernorm_backward(L.ln_ffn, c.ln_ffn, da2, g.ln_ffn, &dh);
    dh += dy;
    // h = R(x) + out(attn(qkv(LN1(x))))
    Mat d_o;
    linear_backward(L.out, c.out, dh, g.out, &d_o);
    const Mat dqkv = attention_backward(c.attn, d_o, batch, L.heads, L.q_scale, threads);
    Mat da;
    linear_backward(L.qkv, c.qkv, dqkv, g.qkv, &da);
    if (!dx) {
        if (L.has_dense) linear_backward(L.dense, c.dense, dh, g.dense, nullptr);
        // LN₁'s parameter gradients still need its backward pass:
        layernorm_backward(L.ln_attn, c.ln_attn, da, g.ln_attn, nullptr);
        return;
    }
    layernorm_backward(L.ln_attn, c.ln_attn, da, g.ln_attn, dx);
    if (L.has_dense) {
        Mat dr;
        linear_backward(L.dense, c.dense, dh, g.dense, &dr);
        *dx += dr;
    } else {
        *dx += dh;
    }
}

// ---------------------------------------------------------------------------------------------

struct PoolingHead {
    Linear dense;
    float l2_eps = 1e-12f;
};
struct PoolingHeadGrad {
    LinearGrad dense;
    static PoolingHeadGrad zeros_like(const PoolingHead& h) { return {LinearGrad::zeros_like(h.dense)}; }
};
struct PoolingHeadCache {
    LinearCache dense;
    Mat y;  ///< tanh output, before normalization
};

/// Sentences × d_out unit-norm embeddings.
inline Mat head_forward(const PoolingHead& H, const Mat& x, const Ragged& batch, PoolingHeadCache* c,
                        int threads = 1)
{
    const Mat pooled = mean_pool(x, batch);
    Mat y = linear_forward(H.dense, pooled, c ? &c->dense : nullptr, threads).array().tanh().matrix();
    if (c) c->y = y;
    return l2_normalize(y, H.l2_eps);
}

inline void head_backward(const PoolingHead& H, const PoolingHeadCache& c, const Mat& demb, const Ragged& batch,
                          PoolingHeadGrad& g, Mat* dx)
{
    Mat dy = l2_normalize_backward(c.y, demb, H.l2_eps);
    dy = dy.array() * (1.0f - c.y.array().square());
    Mat dpooled;
    linear_backward(H.dense, c.dense, dy, g.dense, dx ? &dpooled : nullptr);
    if (dx) *dx = mean_pool_backward(dpooled, batch);
}

}  // namespace model
}  // namespace nanoquant
