// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file pipeline.hpp
/// NanoQuant's model-level pipeline (method digest §5) on the USE-Lite encoder: every matmul weight
/// becomes a binary factorization at a bit budget; embeddings, norms and biases stay float.
///
/// Stages (`PipelineStage`), each a complete pipeline of its own:
/// - Admm:  every weight initialized by ADMM, importance i_norm from the float model's calibration
///          activations of that layer (output importance: ones);
/// - Layer: Admm + per-layer reconstruction (reconstruct_layer) of each weight on the *float*
///          model's inputs and outputs of that layer;
/// - Block: instead, block by block in order (layer 0, layer 1, head), inputs from the already
///          quantized blocks (error propagation), targets from the float model; per weight of a
///          block: mitigation (the still-dense weights of the block tuned on the block output),
///          ADMM on the student inputs, layer reconstruction (latents through the STE, scales,
///          exact sign polish) from the student inputs to the teacher's outputs of that weight,
///          then the weight's scales and bias tuned on the block output;
/// - Full:  Block + model reconstruction: every scale, bias and norm tuned against the float
///          model's final embeddings.
/// A share of the calibration sentences (PipelineOptions::holdout) is held out of training: the
/// block and model stages keep the iterate with the lowest loss on it.
/// docs/use-lite.md says where this departs from the reference recipe and why.

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "nanoquant/core/bit_budget.hpp"
#include "nanoquant/detail/random.hpp"
#include "nanoquant/model/metrics.hpp"
#include "nanoquant/model/use_lite.hpp"
#include "nanoquant/refine/importance.hpp"
#include "nanoquant/refine/layer_reconstruction.hpp"
#include "nanoquant/solvers/admm_solver.hpp"

namespace nanoquant {
namespace model {

enum class PipelineStage { Admm, Layer, Block, Full };

inline const char* to_string(PipelineStage s)
{
    switch (s) {
    case PipelineStage::Admm: return "admm";
    case PipelineStage::Layer: return "layer";
    case PipelineStage::Block: return "block";
    case PipelineStage::Full: return "full";
    }
    return "?";
}

/// "admm", "layer", "block" or "full". \throws nanoquant::invalid_argument naming the value
inline PipelineStage parse_pipeline_stage(const std::string& s)
{
    for (PipelineStage p : {PipelineStage::Admm, PipelineStage::Layer, PipelineStage::Block, PipelineStage::Full})
        if (s == to_string(p)) return p;
    NANOQUANT_CHECK(false, "model::parse_pipeline_stage",
                    "pipeline must be admm, layer, block or full, got '" << s << "'");
    return PipelineStage::Full;
}

struct PipelineOptions {
    /// Bits per weight of every factorized weight (signs + 16-bit scales, method digest §4). > 0.
    double bpw = 1.0;
    /// Last stage to run. Default Full.
    PipelineStage stage = PipelineStage::Full;
    /// Seed of every random choice (ADMM starts, shuffling). Same seed, same model.
    std::uint64_t seed = 0;
    /// Threads of nanoquant's own parallel loops (ADMM, attention, kernels). >= 1.
    int threads = 1;
    /// ADMM iterations per weight. Default 400 (the reference). >= 0.
    int admm_iterations = 400;
    /// Epochs of the per-layer reconstruction (Layer and Block). >= 0.
    int layer_epochs = 4;
    /// Epochs of the mitigation of the still-dense weights before each factorization (Block). >= 0.
    int mitigation_epochs = 1;
    /// Epochs of each weight's STE tuning on its block output (Block). >= 0.
    int block_epochs = 2;
    /// Epochs of the model reconstruction (Full). >= 0.
    int model_epochs = 8;
    /// Peak Adam rate of the model reconstruction, relative to each tensor's RMS. Default 5e-3; >= 0.
    double model_lr = 5e-3;
    /// Sentences per Adam step in the block and model stages. >= 1.
    Index batch_sentences = 32;
    /// Share of the calibration sentences held out of training (a seeded draw, at least one
    /// sentence when > 0): every stage trains on the rest, and the block and model stages keep the
    /// iterate with the lowest loss on the held-out sentences (early stopping against overfitting
    /// the calibration set). 0 = keep the best by the training loss. Default 0.1; in [0, 0.5].
    double holdout = 0.1;
    /// Called with one line of progress per block and stage (empty = silent).
    std::function<void(const std::string&)> progress;

    /// Throws nanoquant::invalid_argument naming the bad field and its value.
    void validate() const
    {
        constexpr const char* w = "model::PipelineOptions::validate";
        NANOQUANT_CHECK(std::isfinite(bpw) && bpw > 0, w, "bpw must be > 0, got " << bpw);
        NANOQUANT_CHECK(threads >= 1, w, "threads must be >= 1, got " << threads);
        NANOQUANT_CHECK(admm_iterations >= 0, w, "admm_iterations must be >= 0, got " << admm_iterations);
        NANOQUANT_CHECK(layer_epochs >= 0, w, "layer_epochs must be >= 0, got " << layer_epochs);
        NANOQUANT_CHECK(mitigation_epochs >= 0, w, "mitigation_epochs must be >= 0, got " << mitigation_epochs);
        NANOQUANT_CHECK(block_epochs >= 0, w, "block_epochs must be >= 0, got " << block_epochs);
        NANOQUANT_CHECK(model_epochs >= 0, w, "model_epochs must be >= 0, got " << model_epochs);
        NANOQUANT_CHECK(std::isfinite(model_lr) && model_lr >= 0, w, "model_lr must be >= 0, got " << model_lr);
        NANOQUANT_CHECK(batch_sentences >= 1, w, "batch_sentences must be >= 1, got " << batch_sentences);
        NANOQUANT_CHECK(std::isfinite(holdout) && holdout >= 0 && holdout <= 0.5, w,
                        "holdout must be in [0, 0.5], got " << holdout);
    }
};

/// Calibration metrics after one stage.
struct StageReport {
    std::string stage;           ///< "admm", "layer", "block" or "full"
    double seconds = 0;          ///< wall time of the stage alone
    double calib_cosine = 0;     ///< mean cosine to the float embeddings on the training sentences
    double calib_recall = 0;     ///< recall@10 agreement on the training sentences
    double holdout_cosine = 0;   ///< the same on the held-out sentences (0 without any)
    double holdout_recall = 0;
};

/// One factorized weight.
struct LayerReport {
    std::string name;  ///< "layer0.qkv", …, "head.dense"
    Index rows = 0, cols = 0, rank = 0;
    double bpw = 0;
};

struct PipelineResult {
    UseLite model;                    ///< the quantized model (scales rounded to float16, packed forms set)
    std::vector<StageReport> stages;  ///< in the order run (Admm: admm; Layer: admm, layer; Block: block; Full: block, full)
    std::vector<LayerReport> layers;
    Index train_sentences = 0;    ///< calibration sentences trained on
    Index holdout_sentences = 0;  ///< calibration sentences held out (PipelineOptions::holdout)
};


namespace detail {

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Adam over a fixed, ordered list of float arrays (the order must be the same at every step).
class MultiAdam {
public:
    struct Slot {
        float* p;
        const float* g;
        Index n;
        double lr;
    };
    explicit MultiAdam(double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-12) : m_b1(beta1), m_b2(beta2), m_eps(eps) {}

    void step(const std::vector<Slot>& slots, double lr_factor)
    {
        if (m_m.empty())
            for (const Slot& s : slots) {
                m_m.emplace_back(std::size_t(s.n), 0.0f);
                m_v.emplace_back(std::size_t(s.n), 0.0f);
            }
        NANOQUANT_ASSERT(m_m.size() == slots.size());
        ++m_t;
        const double c1 = 1.0 - std::pow(m_b1, double(m_t)), c2 = 1.0 - std::pow(m_b2, double(m_t));
        for (std::size_t k = 0; k < slots.size(); ++k) {
            const Slot& s = slots[k];
            const float a = float(s.lr * lr_factor / c1), b1 = float(m_b1), b2 = float(m_b2);
            const float ic2 = float(1.0 / c2), eps = float(m_eps);
            float* m = m_m[k].data();
            float* v = m_v[k].data();
            for (Index i = 0; i < s.n; ++i) {
                m[i] = b1 * m[i] + (1 - b1) * s.g[i];
                v[i] = b2 * v[i] + (1 - b2) * s.g[i] * s.g[i];
                s.p[i] -= a * m[i] / (std::sqrt(v[i] * ic2) + eps);
            }
        }
    }

private:
    double m_b1, m_b2, m_eps;
    long m_t = 0;
    std::vector<std::vector<float>> m_m, m_v;
};

inline double rms(const float* p, Index n)
{
    double s = 0;
    for (Index i = 0; i < n; ++i) s += double(p[i]) * double(p[i]);
    return n ? std::sqrt(s / double(n)) : 0.0;
}

/// Slots of the trainable parts of a linear layer and its gradient. Learning rates: latents
/// `lr_latent` (latents are kept at unit RMS per row/column), everything else relative to the
/// tensor's RMS at the time the slots are made.
inline void linear_slots(Linear& l, LinearGrad& g, bool latents, bool scales, bool bias, bool dense_weight,
                         double lr_latent, double lr_rel, std::vector<MultiAdam::Slot>& out)
{
    auto rel = [&](float* p, const float* gp, Index n) {
        const double r = rms(p, n);
        if (n) out.push_back({p, gp, n, lr_rel * (r > 0 ? r : 1.0)});
    };
    if (l.factorized) {
        if (latents) {
            out.push_back({l.f.u.data(), g.f.u.data(), l.f.u.size(), lr_latent});
            out.push_back({l.f.vt.data(), g.f.vt.data(), l.f.vt.size(), lr_latent});
        }
        if (scales) {
            rel(l.f.s_out.data(), g.f.s_out.data(), l.f.s_out.size());
            if (l.f.has_mid_scale()) rel(l.f.s_mid.data(), g.f.s_mid.data(), l.f.s_mid.size());
            rel(l.f.s_in.data(), g.f.s_in.data(), l.f.s_in.size());
        }
    } else if (dense_weight) {
        rel(l.w.data(), g.w.data(), l.w.size());
    }
    if (bias && l.has_bias()) rel(l.b.data(), g.b.data(), l.b.size());
}

/// Rows of the sentences `ids` (in that order) of X, and their Ragged.
inline Mat gather_sentences(const Mat& X, const Ragged& batch, const std::vector<Index>& ids, Ragged& out)
{
    std::vector<Index> lengths;
    lengths.reserve(ids.size());
    for (const Index s : ids) lengths.push_back(batch.length(s));
    out = Ragged::from_lengths(lengths);
    Mat g(out.tokens(), X.cols());
    for (std::size_t k = 0; k < ids.size(); ++k)
        g.middleRows(out.begin(Index(k)), out.length(Index(k))) = X.middleRows(batch.begin(ids[k]), batch.length(ids[k]));
    return g;
}

/// Relative squared error Σ(ŷ − y)² / Σy² and (optionally) its gradient.
inline double relative_mse(const Mat& yhat, const Mat& y, Mat* dy)
{
    return weighted_output_loss<float>(yhat, y, Vec(), dy);
}

/// Embedding loss of a set of S sentences: the mean of ‖ê − e‖² (= 2 − 2 cos for unit vectors)
/// plus the mean squared difference of the two cosine-similarity matrices, ‖ÊÊᵀ − EEᵀ‖²/S²
/// (relational distillation: what retrieval sees is the similarity between sentences, and matching
/// each embedding alone leaves the errors free to reorder neighbours).
inline double embedding_mse(const Mat& ehat, const Mat& e, Mat* de)
{
    const Mat diff = ehat - e;
    const double S = double(std::max<Index>(1, e.rows()));
    const Mat R = ehat * ehat.transpose() - e * e.transpose();
    if (de) *de = diff * float(2.0 / S) + (R * ehat) * float(4.0 / (S * S));
    return diff.cast<double>().squaredNorm() / S + R.cast<double>().squaredNorm() / (S * S);
}

/// One of the model's stages as a trainable block: layers[0], layers[1] or the head.
struct BlockRef {
    UseLite* model;
    int index;  ///< 0, 1: transformer layers; 2: the head
    bool is_head() const { return index == 2; }
    std::vector<std::pair<std::string, Linear*>> linears() const
    {
        if (is_head()) return {{"dense", &model->head.dense}};
        return model->layers[std::size_t(index)].linears();
    }
    std::string name() const { return is_head() ? "head" : "layer" + std::to_string(index); }
};

/// Forward of one block without a cache (the head returns embeddings).
inline Mat block_forward(const BlockRef& b, const Mat& x, const Ragged& batch, int threads)
{
    if (b.is_head()) return head_forward(b.model->head, x, batch, nullptr, threads);
    return transformer_forward(b.model->layers[std::size_t(b.index)], x, batch, nullptr, threads);
}

/// Loss of a block's output against its targets (relative MSE for a layer, embedding MSE for the head).
inline double block_loss(const BlockRef& b, const Mat& yhat, const Mat& y, Mat* dy)
{
    return b.is_head() ? embedding_mse(yhat, y, dy) : relative_mse(yhat, y, dy);
}

/// Full-set loss of a block on (X, Y), in chunks of sentences.
inline double block_eval(const BlockRef& b, const Mat& X, const Mat& Y, const Ragged& batch, int threads)
{
    const Mat yhat = block_forward(b, X, batch, threads);
    return block_loss(b, yhat, Y, nullptr);
}

/// A set of sentences at one block: its inputs, its targets (token rows for a layer, one row per
/// sentence for the head) and its Ragged.
struct BlockSet {
    const Mat& x;
    const Mat& y;
    const Ragged& batch;
};

/// Adam epochs on a block's output loss over the training set `train`, on the slots chosen by
/// `make_slots(block, grads, slots)`; keeps the best iterate (the start included) by the loss on
/// the selection set `select` (the held-out sentences, or `train` itself).
/// \return (selection loss before, after)
template <typename MakeSlots>
std::pair<double, double> tune_block(const BlockRef& b, const BlockSet& train, const BlockSet& select,
                                     const PipelineOptions& o, int epochs, std::uint64_t seed, MakeSlots&& make_slots)
{
    const Mat& X = train.x;
    const Mat& Y = train.y;
    const Ragged& batch = train.batch;
    const double before = block_eval(b, select.x, select.y, select.batch, o.threads);
    if (epochs <= 0 || before == 0.0) return {before, before};  // 0: nothing to correct (all float so far)
    const Index S = batch.sentences();
    const Index B = std::min<Index>(o.batch_sentences, S);
    const Index steps_per_epoch = (S + B - 1) / B;
    const long total = long(steps_per_epoch) * epochs;
    ::nanoquant::detail::Rng rng(seed);
    std::vector<Index> order(static_cast<std::size_t>(S));
    std::iota(order.begin(), order.end(), Index(0));
    // Sentences are targets' rows for the head, token rows for a layer.
    UseLite best_model = *b.model;
    double best = before;
    MultiAdam adam;
    long step = 0;
    for (int e = 0; e < epochs; ++e) {
        rng.shuffle(order);
        for (Index s0 = 0; s0 < S; s0 += B) {
            const std::vector<Index> ids(order.begin() + s0, order.begin() + std::min(S, s0 + B));
            Ragged rb;
            const Mat xb = gather_sentences(X, batch, ids, rb);
            Mat yb;
            if (b.is_head()) {
                yb.resize(Index(ids.size()), Y.cols());
                for (std::size_t k = 0; k < ids.size(); ++k) yb.row(Index(k)) = Y.row(ids[k]);
            } else {
                Ragged unused;
                yb = gather_sentences(Y, batch, ids, unused);
            }
            Mat dy;
            std::vector<MultiAdam::Slot> slots;
            if (b.is_head()) {
                PoolingHeadCache c;
                const Mat yhat = head_forward(b.model->head, xb, rb, &c, o.threads);
                block_loss(b, yhat, yb, &dy);
                PoolingHeadGrad g = PoolingHeadGrad::zeros_like(b.model->head);
                head_backward(b.model->head, c, dy, rb, g, nullptr);
                make_slots(b, &g.dense, nullptr, slots);
                adam.step(slots, cosine_lr(1.0, 0.05, step, total));
            } else {
                TransformerLayer& L = b.model->layers[std::size_t(b.index)];
                TransformerLayerCache c;
                const Mat yhat = transformer_forward(L, xb, rb, &c, o.threads);
                block_loss(b, yhat, yb, &dy);
                TransformerLayerGrad g = TransformerLayerGrad::zeros_like(L);
                transformer_backward(L, c, dy, rb, g, nullptr, o.threads);
                make_slots(b, nullptr, &g, slots);
                adam.step(slots, cosine_lr(1.0, 0.05, step, total));
            }
            ++step;
        }
        const double l = block_eval(b, select.x, select.y, select.batch, o.threads);
        if (std::isfinite(l) && l < best) {
            best = l;
            best_model = *b.model;
        }
    }
    *b.model = std::move(best_model);
    return {before, best};
}

/// Inputs of every stage of `m` on the calibration set: [0] = x0, [1] = after layer 0, [2] = after
/// layer 1; returns the embeddings.
inline Mat chain_forward(const UseLite& m, const Mat& x0, const Ragged& batch, int threads, std::vector<Mat>* inputs)
{
    Mat h = x0;
    if (inputs) inputs->assign(1, x0);
    for (const auto& L : m.layers) {
        h = transformer_forward(L, h, batch, nullptr, threads);
        if (inputs) inputs->push_back(h);
    }
    return head_forward(m.head, h, batch, nullptr, threads);
}

/// The inputs and (bias-free) float outputs of each weight of block `b` of `m` on `x`.
inline void linear_io(const BlockRef& b, const Mat& x, const Ragged& batch, int threads,
                      std::vector<std::pair<std::string, Mat>>& inputs)
{
    inputs.clear();
    if (b.is_head()) {
        inputs.emplace_back("dense", mean_pool(x, batch));
        return;
    }
    const TransformerLayer& L = b.model->layers[std::size_t(b.index)];
    TransformerLayerCache c;
    transformer_forward(L, x, batch, &c, threads);
    inputs.emplace_back("qkv", c.qkv.x);
    inputs.emplace_back("out", c.out.x);
    if (L.has_dense) inputs.emplace_back("dense", c.dense.x);
    inputs.emplace_back("up", c.up.x);
    inputs.emplace_back("down", c.down.x);
}

inline const Mat& input_of(const std::vector<std::pair<std::string, Mat>>& v, const std::string& name)
{
    for (const auto& p : v)
        if (p.first == name) return p.second;
    NANOQUANT_CHECK(false, "model::pipeline", "no input recorded for '" << name << "'");
    return v.front().second;
}

/// ADMM initialization of a dense linear layer with input importance from X (tokens × in).
inline Linear admm_linear(const Linear& dense, const Mat& X, const PipelineOptions& o, std::uint64_t seed)
{
    const Index m = dense.w.rows(), n = dense.w.cols();
    AdmmOptions<float> a;
    a.rank = rank_for_bpw(m, n, o.bpw);
    a.iterations = o.admm_iterations;
    a.seed = seed;
    a.num_threads = o.threads;
    a.keep_latents = true;
    const Vec imp_in = channel_importance<float>(X, 256);
    const AdmmResult<float> r = AdmmSolver<float>(a).solve(dense.w, imp_in, Vec::Ones(m));
    r.throw_if_failed();
    Linear q;
    q.factorized = true;
    q.f = make_layer_params<float>(r.factorization, dense.w, &r.u_latent, &r.vt_latent);
    normalize_latents(q.f);
    q.b = dense.b;
    return q;
}

/// Per-layer reconstruction of a factorized layer from inputs X to targets Y (bias-free).
inline void reconstruct_linear(Linear& l, const Mat& X, const Mat& Y, const PipelineOptions& o, std::uint64_t seed)
{
    if (o.layer_epochs <= 0) return;
    LayerReconstructionOptions lo;
    lo.epochs = o.layer_epochs;
    lo.seed = seed;
    lo.num_threads = o.threads;
    const LayerReconstructionResult<float> r = reconstruct_layer<float>(l.f, X, Y, lo);
    l.f = r.params;
}

inline std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t k) { return seed * 0x9E3779B97F4A7C15ull + k + 1; }

/// The calibration sentences split into training and held-out ones: a seeded shuffle, the first
/// max(1, round(holdout·S)) held out when holdout > 0 (none when 0). Both keep the input order.
inline void split_holdout(const std::vector<std::vector<std::int32_t>>& ids, double holdout, std::uint64_t seed,
                          std::vector<std::vector<std::int32_t>>& train, std::vector<std::vector<std::int32_t>>& held)
{
    train.clear();
    held.clear();
    const std::size_t S = ids.size();
    std::size_t nh = 0;
    if (holdout > 0 && S >= 2) nh = std::min(S - 1, std::max<std::size_t>(1, std::size_t(std::lround(holdout * double(S)))));
    std::vector<std::size_t> order(S);
    std::iota(order.begin(), order.end(), std::size_t(0));
    ::nanoquant::detail::Rng rng(seed ^ 0x686f6c646f7574ull);  // "holdout"
    rng.shuffle(order);
    std::vector<char> is_held(S, 0);
    for (std::size_t k = 0; k < nh; ++k) is_held[order[k]] = 1;
    for (std::size_t i = 0; i < S; ++i) (is_held[i] ? held : train).push_back(ids[i]);
}

/// The calibration sentences of one split through the float model: block inputs [0..2] and the
/// embeddings.
struct SplitData {
    Ragged batch;
    Mat x0;
    std::vector<Mat> teacher_in;
    Mat teacher_emb;
    bool empty() const { return batch.sentences() == 0; }
};

inline SplitData split_data(const UseLite& float_model, const std::vector<std::vector<std::int32_t>>& ids, int threads)
{
    SplitData d;
    if (ids.empty()) return d;
    d.x0 = float_model.embed(ids, d.batch);
    d.teacher_emb = chain_forward(float_model, d.x0, d.batch, threads, &d.teacher_in);
    return d;
}

}  // namespace detail

/// Runs the pipeline on `float_model` with calibration token ids (at least 2 sentences).
/// `on_stage(stage, model)`, if given, sees the model after each stage, as it would be saved.
/// \throws nanoquant::invalid_argument on bad options or calibration data
inline PipelineResult quantize_use_lite(const UseLite& float_model,
                                        const std::vector<std::vector<std::int32_t>>& calib_ids,
                                        const PipelineOptions& o,
                                        const std::function<void(const std::string&, const UseLite&)>& on_stage = {})
{
    using namespace detail;
    constexpr const char* where = "model::quantize_use_lite";
    o.validate();
    NANOQUANT_CHECK(calib_ids.size() >= 2, where,
                    "the calibration set needs at least 2 sentences, got " << calib_ids.size());
    auto say = [&](const std::string& s) {
        if (o.progress) o.progress(s);
    };
    PipelineResult res;
    std::vector<std::vector<std::int32_t>> train_ids, held_ids;
    split_holdout(calib_ids, o.holdout, o.seed, train_ids, held_ids);
    const SplitData tr = split_data(float_model, train_ids, o.threads);
    const SplitData ho = split_data(float_model, held_ids, o.threads);
    NANOQUANT_CHECK(tr.batch.tokens() > 0, where, "the calibration sentences hold no tokens");
    res.train_sentences = tr.batch.sentences();
    res.holdout_sentences = ho.batch.sentences();
    // The set that picks the best iterate: the held-out sentences, or the training ones.
    const SplitData& sel = ho.empty() ? tr : ho;
    const Mat& x0 = tr.x0;
    const Ragged& batch = tr.batch;
    const std::vector<Mat>& teacher_in = tr.teacher_in;
    const Mat& teacher_emb = tr.teacher_emb;

    auto report = [&](const std::string& stage, const UseLite& trained, double secs) {
        UseLite saved = trained;
        saved.finalize();
        StageReport r{stage, secs, 0, 0, 0, 0};
        const EmbeddingAgreement a = embedding_agreement(teacher_emb, chain_forward(saved, x0, batch, o.threads, nullptr));
        r.calib_cosine = a.mean_cosine;
        r.calib_recall = a.recall_at_k;
        std::ostringstream os;
        os.precision(4);
        os << "stage " << stage << ": " << secs << " s, calibration cosine " << a.mean_cosine << ", recall@10 "
           << a.recall_at_k;
        if (!ho.empty()) {
            const EmbeddingAgreement h =
                embedding_agreement(ho.teacher_emb, chain_forward(saved, ho.x0, ho.batch, o.threads, nullptr));
            r.holdout_cosine = h.mean_cosine;
            r.holdout_recall = h.recall_at_k;
            os << "; held out (" << ho.batch.sentences() << "): cosine " << h.mean_cosine << ", recall@10 "
               << h.recall_at_k;
        }
        res.stages.push_back(r);
        say(os.str());
        if (on_stage) on_stage(stage, saved);
        return saved;
    };

    UseLite q = float_model;
    std::uint64_t k = 0;
    if (o.stage == PipelineStage::Admm || o.stage == PipelineStage::Layer) {
        // Each weight on the float model's own inputs.
        auto t0 = Clock::now();
        std::vector<std::vector<std::pair<std::string, Mat>>> all_io(3);
        for (int bi = 0; bi < 3; ++bi) {
            BlockRef fb{const_cast<UseLite*>(&float_model), bi};
            linear_io(fb, teacher_in[std::size_t(bi)], batch, o.threads, all_io[std::size_t(bi)]);
            BlockRef qb{&q, bi};
            for (auto& p : qb.linears()) {
                *p.second = admm_linear(*p.second, input_of(all_io[std::size_t(bi)], p.first), o, mix_seed(o.seed, k++));
                say(qb.name() + "." + p.first + ": ADMM rank " + std::to_string(p.second->f.rank()));
            }
        }
        res.model = report("admm", q, seconds_since(t0));
        if (o.stage == PipelineStage::Layer) {
            t0 = Clock::now();
            for (int bi = 0; bi < 3; ++bi) {
                BlockRef fb{const_cast<UseLite*>(&float_model), bi};
                BlockRef qb{&q, bi};
                for (auto& p : qb.linears()) {
                    const Mat& X = input_of(all_io[std::size_t(bi)], p.first);
                    const Linear* fl = nullptr;
                    for (auto& f : fb.linears())
                        if (f.first == p.first) fl = f.second;
                    const Mat Y = X * fl->w.transpose();
                    reconstruct_linear(*p.second, X, Y, o, mix_seed(o.seed, k++));
                    say(qb.name() + "." + p.first + ": layer reconstruction done");
                }
            }
            res.model = report("layer", q, seconds_since(t0));
        }
    } else {
        // Block by block: student inputs from the quantized blocks before, teacher targets; the
        // held-out sentences go through the same blocks to pick each tuning's best iterate.
        auto t0 = Clock::now();
        Mat xs = x0, xsel;  // xsel: the held-out sentences' inputs, when there are any
        if (!ho.empty()) xsel = ho.x0;
        for (int bi = 0; bi < 3; ++bi) {
            BlockRef fb{const_cast<UseLite*>(&float_model), bi};
            BlockRef qb{&q, bi};
            const Mat& xt = teacher_in[std::size_t(bi)];
            const Mat& yt = bi < 2 ? teacher_in[std::size_t(bi) + 1] : teacher_emb;
            const Mat& ysel = bi < 2 ? sel.teacher_in[std::size_t(bi) + 1] : sel.teacher_emb;
            std::vector<std::pair<std::string, Mat>> tio, sio;
            linear_io(fb, xt, batch, o.threads, tio);
            const auto names = qb.linears();
            for (std::size_t li = 0; li < names.size(); ++li) {
                const std::string& name = names[li].first;
                Linear& target = *names[li].second;
                // xs, xsel change only between blocks; the sets alias them.
                const BlockSet train{xs, yt, batch};
                const BlockSet select{ho.empty() ? xs : xsel, ysel, sel.batch};
                std::ostringstream os;
                os.precision(4);
                os << qb.name() << "." << name << ":";
                // (1) mitigation: the still-dense weights of the block (this one included) on the block output.
                if (o.mitigation_epochs > 0) {
                    const auto lm = tune_block(qb, train, select, o, o.mitigation_epochs, mix_seed(o.seed, k++),
                                               [&](const BlockRef& b, LinearGrad* hg, TransformerLayerGrad* lg,
                                                   std::vector<MultiAdam::Slot>& slots) {
                                                   for (auto& p : b.linears()) {
                                                       if (p.second->factorized) continue;
                                                       LinearGrad& g = hg ? *hg : lg->linear(p.first);
                                                       linear_slots(*p.second, g, false, false, true, true, 0, 2e-3,
                                                                    slots);
                                                   }
                                               });
                    os << " mitigation " << lm.first << " -> " << lm.second << ";";
                }
                // (2) ADMM on the student inputs of this weight.
                linear_io(qb, xs, batch, o.threads, sio);
                const Mat& Xs = input_of(sio, name);
                const Linear dense = target;
                target = admm_linear(dense, Xs, o, mix_seed(o.seed, k++));
                // (3) layer reconstruction: student inputs → the teacher's output of this weight.
                const Linear* fl = nullptr;
                for (auto& f : fb.linears())
                    if (f.first == name) fl = f.second;
                Mat Yt = input_of(tio, name) * fl->w.transpose();
                if (fl->has_bias()) Yt.rowwise() += (fl->b - dense.b).transpose();
                reconstruct_linear(target, Xs, Yt, o, mix_seed(o.seed, k++));
                // (4) this weight's scales and bias on the block output (its signs stay: the layer
                // reconstruction already chose them by exact descent on its own output).
                const auto lt = tune_block(qb, train, select, o, o.block_epochs, mix_seed(o.seed, k++),
                                           [&](const BlockRef& b, LinearGrad* hg, TransformerLayerGrad* lg,
                                               std::vector<MultiAdam::Slot>& slots) {
                                               for (auto& p : b.linears())
                                                   if (p.first == name)
                                                       linear_slots(*p.second, hg ? *hg : lg->linear(p.first), false,
                                                                    true, true, false, 0, 3e-3, slots);
                                           });
                os << " rank " << target.f.rank() << "; block loss " << lt.first << " -> " << lt.second;
                say(os.str());
            }
            xs = block_forward(qb, xs, batch, o.threads);
            if (!ho.empty()) xsel = block_forward(qb, xsel, sel.batch, o.threads);
        }
        res.model = report("block", q, seconds_since(t0));
        if (o.stage == PipelineStage::Full && o.model_epochs > 0) {
            t0 = Clock::now();
            // Model reconstruction: every scale, bias and norm against the float embeddings.
            const Index S = batch.sentences();
            const Index B = std::min<Index>(o.batch_sentences, S);
            const long total = long((S + B - 1) / B) * o.model_epochs;
            ::nanoquant::detail::Rng rng(mix_seed(o.seed, k++));
            std::vector<Index> order(static_cast<std::size_t>(S));
            std::iota(order.begin(), order.end(), Index(0));
            MultiAdam adam;
            long step = 0;
            // The selection loss of the saved form (hardened signs, float16 scales).
            auto select_loss = [&](const UseLite& m) {
                UseLite rounded = m;
                rounded.finalize();
                return embedding_mse(chain_forward(rounded, sel.x0, sel.batch, o.threads, nullptr), sel.teacher_emb,
                                     nullptr);
            };
            UseLite best = q;
            double best_loss = select_loss(q);
            const double start_loss = best_loss;
            for (int e = 0; e < o.model_epochs; ++e) {
                rng.shuffle(order);
                for (Index s0 = 0; s0 < S; s0 += B) {
                    const std::vector<Index> ids(order.begin() + s0, order.begin() + std::min(S, s0 + B));
                    Ragged rb;
                    Mat h = gather_sentences(x0, batch, ids, rb);
                    Mat eb(Index(ids.size()), teacher_emb.cols());
                    for (std::size_t j = 0; j < ids.size(); ++j) eb.row(Index(j)) = teacher_emb.row(ids[j]);
                    std::array<TransformerLayerCache, 2> lc;
                    for (std::size_t l = 0; l < 2; ++l) h = transformer_forward(q.layers[l], h, rb, &lc[l], o.threads);
                    PoolingHeadCache hc;
                    const Mat emb = head_forward(q.head, h, rb, &hc, o.threads);
                    Mat de;
                    embedding_mse(emb, eb, &de);
                    PoolingHeadGrad hg = PoolingHeadGrad::zeros_like(q.head);
                    Mat dh;
                    head_backward(q.head, hc, de, rb, hg, &dh);
                    std::array<TransformerLayerGrad, 2> lg;
                    for (int l = 1; l >= 0; --l) {
                        lg[std::size_t(l)] = TransformerLayerGrad::zeros_like(q.layers[std::size_t(l)]);
                        Mat dx;
                        transformer_backward(q.layers[std::size_t(l)], lc[std::size_t(l)], dh, rb, lg[std::size_t(l)],
                                             l > 0 ? &dx : nullptr, o.threads);
                        dh = std::move(dx);
                    }
                    std::vector<MultiAdam::Slot> slots;
                    const double lr = o.model_lr;
                    for (std::size_t l = 0; l < 2; ++l) {
                        TransformerLayer& L = q.layers[l];
                        for (auto& p : L.linears())
                            linear_slots(*p.second, lg[l].linear(p.first), false, true, true, false, 0, lr, slots);
                        LayerNormGrad* ng[2] = {&lg[l].ln_attn, &lg[l].ln_ffn};
                        LayerNorm* nn[2] = {&L.ln_attn, &L.ln_ffn};
                        for (int t = 0; t < 2; ++t) {
                            slots.push_back({nn[t]->gamma.data(), ng[t]->gamma.data(), nn[t]->gamma.size(),
                                             lr * rms(nn[t]->gamma.data(), nn[t]->gamma.size())});
                            slots.push_back({nn[t]->beta.data(), ng[t]->beta.data(), nn[t]->beta.size(),
                                             lr * std::max(1e-2, rms(nn[t]->beta.data(), nn[t]->beta.size()))});
                        }
                    }
                    linear_slots(q.head.dense, hg.dense, false, true, true, false, 0, lr, slots);
                    adam.step(slots, cosine_lr(1.0, 0.05, step, total));
                    ++step;
                }
                const double l = select_loss(q);
                std::ostringstream os;
                os.precision(5);
                os << "model reconstruction epoch " << e + 1 << ": " << (ho.empty() ? "calibration" : "held-out")
                   << " embedding loss " << l << " (start " << start_loss << ")";
                say(os.str());
                if (std::isfinite(l) && l < best_loss) {
                    best_loss = l;
                    best = q;
                }
            }
            q = std::move(best);
            res.model = report("full", q, seconds_since(t0));
        } else if (o.stage == PipelineStage::Full) {
            res.model = report("full", q, 0.0);
        }
    }
    for (auto& p : res.model.linears()) {
        const Linear& l = *p.second;
        res.layers.push_back({p.first, l.out(), l.in(), l.f.rank(), bpw_for_rank(l.out(), l.in(), l.f.rank())});
    }
    return res;
}


}  // namespace model
}  // namespace nanoquant
