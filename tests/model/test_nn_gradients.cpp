// SPDX-License-Identifier: Apache-2.0
// Every backward pass of model/nn.hpp and model/transformer.hpp against central finite differences
// of its forward pass, in float32 on small random layers. The loss is L = Σ c ⊙ f(x) for a fixed
// random c, so ∂L/∂f = c. Each check perturbs a handful of random entries of one parameter (or of
// the input) by ±h and compares (L(+h) − L(−h)) / 2h with the analytic gradient; the tolerance is
// relative to the gradient's scale, and a one-entry mutation of any backward pass breaks it (the
// last test shows the check does fail on a wrong gradient).
#include <catch2/catch.hpp>

#include <functional>
#include <random>

#include "nanoquant/model/transformer.hpp"

using namespace nanoquant;
using namespace nanoquant::model;

namespace {

Mat randn(Index r, Index c, std::mt19937& g, float scale = 1.0f)
{
    std::normal_distribution<float> N(0.0f, scale);
    Mat m(r, c);
    for (Index j = 0; j < c; ++j)
        for (Index i = 0; i < r; ++i) m(i, j) = N(g);
    return m;
}
Vec randv(Index n, std::mt19937& g, float scale = 1.0f, float mean = 0.0f)
{
    Vec v = randn(n, 1, g, scale);
    v.array() += mean;
    return v;
}

Linear dense_linear(Index in, Index out, std::mt19937& g)
{
    Linear l;
    l.w = randn(out, in, g, 1.0f / std::sqrt(float(in)));
    l.b = randv(out, g, 0.1f);
    return l;
}

/// A factorized layer whose latents are far from zero (so ±h never flips a sign: the STE gradient is
/// then the true gradient of the layer with respect to the signs taken as continuous values).
Linear factorized_linear(Index in, Index out, Index r, std::mt19937& g)
{
    Linear l;
    l.factorized = true;
    l.f.u = randn(out, r, g);
    l.f.vt = randn(r, in, g);
    for (Index i = 0; i < l.f.u.size(); ++i) l.f.u.data()[i] += l.f.u.data()[i] < 0 ? -1.0f : 1.0f;
    for (Index i = 0; i < l.f.vt.size(); ++i) l.f.vt.data()[i] += l.f.vt.data()[i] < 0 ? -1.0f : 1.0f;
    l.f.s_out = randv(out, g, 0.1f, 1.0f / std::sqrt(float(r)));
    l.f.s_mid = randv(r, g, 0.1f, 1.0f);
    l.f.s_in = randv(in, g, 0.1f, 1.0f / std::sqrt(float(in)));
    l.b = randv(out, g, 0.1f);
    return l;
}

/// Compares `analytic` (the gradient of loss() with respect to the entries of p) with central
/// differences of loss() at `probes` random entries.
/// `crossed`, when given, is set by loss() when the perturbed point lies in another smooth piece than
/// the unperturbed one (a ReLU input changed sign): such probes are drawn again, since a difference
/// quotient across a kink mixes two slopes.
void check_grad(const std::string& what, float* p, Index size, const float* analytic,
                const std::function<double()>& loss, std::mt19937& g, double h = 1e-2, int probes = 12,
                bool* crossed = nullptr)
{
    std::uniform_int_distribution<Index> pick(0, size - 1);
    double scale = 0;
    for (Index i = 0; i < size; ++i) scale = std::max(scale, double(std::abs(analytic[i])));
    int redrawn = 0;
    for (int k = 0; k < probes; ++k) {
        const Index i = pick(g);
        const float saved = p[i];
        if (crossed) *crossed = false;
        p[i] = saved + float(h);
        const double lp = loss();
        p[i] = saved - float(h);
        const double lm = loss();
        p[i] = saved;
        if (crossed && *crossed) {
            REQUIRE(++redrawn <= probes);  // most probes must be usable
            --k;
            continue;
        }
        const double fd = (lp - lm) / (2 * h);
        INFO(what << " entry " << i << ": finite difference " << fd << ", analytic " << analytic[i]);
        CHECK(std::abs(fd - double(analytic[i])) <= 2e-3 * scale + 1e-4);
    }
}

double dot(const Mat& a, const Mat& b) { return (a.cast<double>().array() * b.cast<double>().array()).sum(); }

}  // namespace

TEST_CASE("model linear backward matches finite differences (dense)", "[model][grad]")
{
    std::mt19937 g(1);
    Linear l = dense_linear(7, 5, g);
    Mat x = randn(6, 7, g), c = randn(6, 5, g);
    LinearCache cache;
    linear_forward(l, x, &cache);
    LinearGrad gr = LinearGrad::zeros_like(l);
    Mat dx;
    linear_backward(l, cache, c, gr, &dx);
    auto loss = [&] { return dot(linear_forward(l, x, nullptr), c); };
    check_grad("W", l.w.data(), l.w.size(), gr.w.data(), loss, g);
    check_grad("b", l.b.data(), l.b.size(), gr.b.data(), loss, g);
    check_grad("x", x.data(), x.size(), dx.data(), loss, g);
}

TEST_CASE("model linear backward matches finite differences (factorized scales and input)", "[model][grad]")
{
    std::mt19937 g(2);
    Linear l = factorized_linear(9, 6, 4, g);
    Mat x = randn(5, 9, g), c = randn(5, 6, g);
    LinearCache cache;
    linear_forward(l, x, &cache);
    LinearGrad gr = LinearGrad::zeros_like(l);
    Mat dx;
    linear_backward(l, cache, c, gr, &dx);
    auto loss = [&] { return dot(linear_forward(l, x, nullptr), c); };
    check_grad("s_out", l.f.s_out.data(), l.f.s_out.size(), gr.f.s_out.data(), loss, g);
    check_grad("s_mid", l.f.s_mid.data(), l.f.s_mid.size(), gr.f.s_mid.data(), loss, g);
    check_grad("s_in", l.f.s_in.data(), l.f.s_in.size(), gr.f.s_in.data(), loss, g);
    check_grad("b", l.b.data(), l.b.size(), gr.b.data(), loss, g);
    check_grad("x", x.data(), x.size(), dx.data(), loss, g);
}

TEST_CASE("model linear latent gradient is the gradient wrt the signs (identity STE)", "[model][grad]")
{
    // With the signs taken as continuous entries of a dense Ū, V̄ᵀ the layer is multilinear; the
    // latent gradient must equal ∂L/∂Ū there. Check it against a dense twin whose weight is
    // Ŵ(Ū, V̄ᵀ) differentiated by finite differences in Ū and V̄ᵀ.
    std::mt19937 g(3);
    Linear l = factorized_linear(8, 5, 3, g);
    Mat x = randn(4, 8, g), c = randn(4, 5, g);
    LinearCache cache;
    linear_forward(l, x, &cache);
    LinearGrad gr = LinearGrad::zeros_like(l);
    linear_backward(l, cache, c, gr, nullptr);
    Mat U = sign_of(l.f.u), Vt = sign_of(l.f.vt);
    auto loss = [&] {
        LayerCache<float> lc;
        Mat y = layer_forward<float>(U, Vt, l.f, x, lc);
        y.rowwise() += l.b.transpose();
        return dot(y, c);
    };
    check_grad("sign(u)", U.data(), U.size(), gr.f.u.data(), loss, g);
    check_grad("sign(vt)", Vt.data(), Vt.size(), gr.f.vt.data(), loss, g);
}

TEST_CASE("model layernorm backward matches finite differences", "[model][grad]")
{
    std::mt19937 g(4);
    LayerNorm n{randv(10, g, 0.3f, 1.0f), randv(10, g, 0.3f)};
    Mat x = randn(7, 10, g, 2.0f), c = randn(7, 10, g);
    x.col(0).array() += 3.0f;
    LayerNormCache cache;
    layernorm_forward(n, x, &cache);
    LayerNormGrad gr = LayerNormGrad::zeros_like(n);
    Mat dx;
    layernorm_backward(n, cache, c, gr, &dx);
    auto loss = [&] { return dot(layernorm_forward(n, x, nullptr), c); };
    check_grad("gamma", n.gamma.data(), n.gamma.size(), gr.gamma.data(), loss, g);
    check_grad("beta", n.beta.data(), n.beta.size(), gr.beta.data(), loss, g);
    check_grad("x", x.data(), x.size(), dx.data(), loss, g);
}

TEST_CASE("model attention backward matches finite differences", "[model][grad]")
{
    std::mt19937 g(5);
    const Ragged batch = Ragged::from_lengths({3, 1, 5, 0, 2});
    Mat qkv = randn(batch.tokens(), 3 * 8, g), c = randn(batch.tokens(), 8, g);
    AttentionCache cache;
    attention_forward(qkv, batch, 2, 0.5f, &cache);
    const Mat dqkv = attention_backward(cache, c, batch, 2, 0.5f);
    auto loss = [&] { return dot(attention_forward(qkv, batch, 2, 0.5f, nullptr), c); };
    check_grad("qkv", qkv.data(), qkv.size(), dqkv.data(), loss, g, 1e-2, 40);
}

TEST_CASE("model attention keeps sentences apart", "[model]")
{
    // A sentence's output must not depend on the other sentences of its batch.
    std::mt19937 g(6);
    const Ragged batch = Ragged::from_lengths({4, 3});
    Mat qkv = randn(7, 12, g);
    const Mat o = attention_forward(qkv, batch, 2, 0.7f, nullptr);
    qkv.bottomRows(3) = randn(3, 12, g);
    const Mat o2 = attention_forward(qkv, batch, 2, 0.7f, nullptr);
    CHECK(o.topRows(4) == o2.topRows(4));
    const Mat alone = attention_forward(Mat(qkv.topRows(4)), Ragged::from_lengths({4}), 2, 0.7f, nullptr);
    // Same arithmetic, but Eigen may pick another kernel for a standalone matrix: last-bit differences.
    CHECK((alone - o.topRows(4)).cwiseAbs().maxCoeff() <= 1e-6f);
}

TEST_CASE("model pooling head backward matches finite differences", "[model][grad]")
{
    std::mt19937 g(7);
    PoolingHead H;
    H.dense = dense_linear(6, 5, g);
    const Ragged batch = Ragged::from_lengths({2, 4, 1});
    Mat x = randn(batch.tokens(), 6, g), c = randn(3, 5, g);
    PoolingHeadCache cache;
    head_forward(H, x, batch, &cache);
    PoolingHeadGrad gr = PoolingHeadGrad::zeros_like(H);
    Mat dx;
    head_backward(H, cache, c, batch, gr, &dx);
    auto loss = [&] { return dot(head_forward(H, x, batch, nullptr), c); };
    check_grad("W", H.dense.w.data(), H.dense.w.size(), gr.dense.w.data(), loss, g);
    check_grad("b", H.dense.b.data(), H.dense.b.size(), gr.dense.b.data(), loss, g);
    check_grad("x", x.data(), x.size(), dx.data(), loss, g);
}

namespace {
TransformerLayer small_layer(bool dense_residual, bool factorized, std::mt19937& g)
{
    TransformerLayer L;
    const Index din = dense_residual ? 6 : 8, dm = 8, dff = 12;
    L.ln_attn = {randv(din, g, 0.2f, 1.0f), randv(din, g, 0.2f)};
    L.ln_ffn = {randv(dm, g, 0.2f, 1.0f), randv(dm, g, 0.2f)};
    L.qkv = factorized ? factorized_linear(din, 3 * din, 4, g) : dense_linear(din, 3 * din, g);
    L.out = dense_linear(din, dm, g);
    L.has_dense = dense_residual;
    if (dense_residual) L.dense = factorized ? factorized_linear(din, dm, 3, g) : dense_linear(din, dm, g);
    L.up = dense_linear(dm, dff, g);
    L.down = factorized ? factorized_linear(dff, dm, 4, g) : dense_linear(dff, dm, g);
    L.heads = 2;
    L.q_scale = 0.6f;
    return L;
}
}  // namespace

TEST_CASE("model transformer layer backward matches finite differences", "[model][grad]")
{
    for (const bool dense_residual : {true, false}) {
        for (const bool factorized : {false, true}) {
            DYNAMIC_SECTION("dense residual " << dense_residual << " factorized " << factorized)
            {
                std::mt19937 g(8);
                TransformerLayer L = small_layer(dense_residual, factorized, g);
                const Ragged batch = Ragged::from_lengths({3, 5, 1});
                Mat x = randn(batch.tokens(), L.qkv.in(), g), c = randn(batch.tokens(), 8, g);
                TransformerLayerCache cache;
                transformer_forward(L, x, batch, &cache);
                TransformerLayerGrad gr = TransformerLayerGrad::zeros_like(L);
                Mat dx;
                transformer_backward(L, cache, c, batch, gr, &dx);
                const Eigen::Array<bool, -1, -1> relu_on = cache.ffn_pre.array() > 0.0f;
                bool crossed = false;
                auto loss = [&] {
                    TransformerLayerCache pc;
                    const double l = dot(transformer_forward(L, x, batch, &pc), c);
                    if (((pc.ffn_pre.array() > 0.0f) != relu_on).any()) crossed = true;
                    return l;
                };
                check_grad("x", x.data(), x.size(), dx.data(), loss, g, 1e-3, 30, &crossed);
                check_grad("ln_attn.gamma", L.ln_attn.gamma.data(), L.ln_attn.gamma.size(), gr.ln_attn.gamma.data(),
                           loss, g, 1e-3, 12, &crossed);
                check_grad("ln_ffn.beta", L.ln_ffn.beta.data(), L.ln_ffn.beta.size(), gr.ln_ffn.beta.data(), loss, g, 1e-3, 12, &crossed);
                check_grad("out.w", L.out.w.data(), L.out.w.size(), gr.out.w.data(), loss, g, 1e-3, 12, &crossed);
                check_grad("up.b", L.up.b.data(), L.up.b.size(), gr.up.b.data(), loss, g, 1e-3, 12, &crossed);
                if (factorized) {
                    check_grad("qkv.s_in", L.qkv.f.s_in.data(), L.qkv.f.s_in.size(), gr.qkv.f.s_in.data(), loss, g, 1e-3, 12, &crossed);
                    check_grad("down.s_out", L.down.f.s_out.data(), L.down.f.s_out.size(), gr.down.f.s_out.data(),
                               loss, g, 1e-3, 12, &crossed);
                    if (dense_residual)
                        check_grad("dense.s_mid", L.dense.f.s_mid.data(), L.dense.f.s_mid.size(),
                                   gr.dense.f.s_mid.data(), loss, g, 1e-3, 12, &crossed);
                } else {
                    check_grad("qkv.w", L.qkv.w.data(), L.qkv.w.size(), gr.qkv.w.data(), loss, g, 1e-3, 12, &crossed);
                    check_grad("down.w", L.down.w.data(), L.down.w.size(), gr.down.w.data(), loss, g, 1e-3, 12, &crossed);
                    if (dense_residual)
                        check_grad("dense.w", L.dense.w.data(), L.dense.w.size(), gr.dense.w.data(), loss, g, 1e-3, 12, &crossed);
                }
                // Without an input gradient the parameter gradients are the same.
                TransformerLayerGrad gr2 = TransformerLayerGrad::zeros_like(L);
                transformer_backward(L, cache, c, batch, gr2, nullptr);
                CHECK(gr2.ln_attn.gamma == gr.ln_attn.gamma);
                CHECK(gr2.out.w == gr.out.w);
            }
        }
    }
}

TEST_CASE("model gradient check fails on a wrong gradient", "[model][grad]")
{
    // The same comparison as check_grad, on a layernorm gradient with one entry mutated: it must fail.
    std::mt19937 g(9);
    LayerNorm n{randv(6, g, 0.3f, 1.0f), randv(6, g, 0.3f)};
    Mat x = randn(4, 6, g), c = randn(4, 6, g);
    LayerNormCache cache;
    layernorm_forward(n, x, &cache);
    LayerNormGrad gr = LayerNormGrad::zeros_like(n);
    layernorm_backward(n, cache, c, gr, nullptr);
    gr.gamma(2) += 0.05f * std::max(1.0f, std::abs(gr.gamma(2)));
    const float saved = n.gamma(2);
    const double h = 1e-2;
    n.gamma(2) = saved + float(h);
    const double lp = dot(layernorm_forward(n, x, nullptr), c);
    n.gamma(2) = saved - float(h);
    const double lm = dot(layernorm_forward(n, x, nullptr), c);
    const double fd = (lp - lm) / (2 * h);
    const double scale = gr.gamma.cwiseAbs().maxCoeff();
    CHECK_FALSE(std::abs(fd - double(gr.gamma(2))) <= 2e-3 * scale + 1e-4);
}
