// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <nanoquant/refine/layer_reconstruction.hpp>
#include "synthetic.hpp"  // tests/support: synthetic data, not part of the installed library
#include "random_matrices.hpp"  // tests/support

using namespace nanoquant;
using testing::rand_pos;
using testing::randn;

namespace {


// Loss of continuous effective matrices (the function whose gradient layer_backward computes).
double loss_of(const Matrix<double>& ue, const Matrix<double>& vte, const LayerParams<double>& p,
               const Matrix<double>& X, const Matrix<double>& Y, const Vector<double>& w)
{
    LayerCache<double> c;
    const Matrix<double> Yh = layer_forward<double>(ue, vte, p, X, c);
    return weighted_output_loss<double>(Yh, Y, w, nullptr);
}

// Central differences with step h, relative error |fd - an| / max(|fd|, |an|, floor).
template <typename Perturb>
double max_fd_rel_error(Matrix<double> analytic, Perturb&& f, double scale_floor)
{
    double worst = 0;
    for (Index j = 0; j < analytic.cols(); ++j)
        for (Index i = 0; i < analytic.rows(); ++i) {
            const double h = 1e-6;
            const double fd = (f(i, j, h) - f(i, j, -h)) / (2 * h);
            const double an = analytic(i, j);
            const double den = std::max({std::abs(fd), std::abs(an), scale_floor});
            worst = std::max(worst, std::abs(fd - an) / den);
        }
    return worst;
}

void fd_check(bool mid, bool weighted)
{
    detail::Rng rng(7);
    const Index m = 7, n = 5, r = 3, B = 11;
    LayerParams<double> p;
    p.u = randn(m, r, rng);
    p.vt = randn(r, n, rng);
    p.s_out = rand_pos(m, rng);
    if (mid) p.s_mid = rand_pos(r, rng);
    p.s_in = rand_pos(n, rng);
    const Matrix<double> X = randn(B, n, rng), Y = randn(B, m, rng);
    const Vector<double> w = weighted ? rand_pos(m, rng) : Vector<double>();
    // Continuous effective matrices (not ±1) so every term of the gradient is exercised.
    const Matrix<double> ue = randn(m, r, rng), vte = randn(r, n, rng);
    LayerCache<double> c;
    Matrix<double> dY, dX;
    const Matrix<double> Yh = layer_forward<double>(ue, vte, p, X, c);
    weighted_output_loss<double>(Yh, Y, w, &dY);
    LayerParams<double> g = p.zeros_like();
    layer_backward<double>(ue, vte, p, X, c, dY, g, &dX);

    const double floor = 1e-8;
    CHECK(max_fd_rel_error(g.u, [&](Index i, Index j, double h) {
              Matrix<double> u2 = ue; u2(i, j) += h; return loss_of(u2, vte, p, X, Y, w); }, floor) < 1e-6);
    CHECK(max_fd_rel_error(g.vt, [&](Index i, Index j, double h) {
              Matrix<double> v2 = vte; v2(i, j) += h; return loss_of(ue, v2, p, X, Y, w); }, floor) < 1e-6);
    CHECK(max_fd_rel_error(g.s_out, [&](Index i, Index, double h) {
              auto q = p; q.s_out(i) += h; return loss_of(ue, vte, q, X, Y, w); }, floor) < 1e-6);
    CHECK(max_fd_rel_error(g.s_in, [&](Index i, Index, double h) {
              auto q = p; q.s_in(i) += h; return loss_of(ue, vte, q, X, Y, w); }, floor) < 1e-6);
    if (mid)
        CHECK(max_fd_rel_error(g.s_mid, [&](Index i, Index, double h) {
                  auto q = p; q.s_mid(i) += h; return loss_of(ue, vte, q, X, Y, w); }, floor) < 1e-6);
    CHECK(max_fd_rel_error(dX, [&](Index i, Index j, double h) {
              Matrix<double> X2 = X; X2(i, j) += h; return loss_of(ue, vte, p, X2, Y, w); }, floor) < 1e-6);
}

// A factorization of a planted W: random signs and positive scales.
Factorization<double> random_factorization(Index m, Index n, Index r, bool mid, detail::Rng& rng)
{
    Factorization<double> f;
    f.u = PackedSignMatrix::pack(randn(m, r, rng));
    f.vt = PackedSignMatrix::pack(randn(r, n, rng));
    f.s_out = rand_pos(m, rng);
    if (mid) f.s_mid = rand_pos(r, rng);
    f.s_in = rand_pos(n, rng) * 0.1;
    return f;
}

}  // namespace

TEST_CASE("layer backward matches central finite differences (float64)", "[refine]")
{
    SECTION("two scales, unweighted") { fd_check(false, false); }
    SECTION("three scales, unweighted") { fd_check(true, false); }
    SECTION("three scales, importance-weighted") { fd_check(true, true); }
}

TEST_CASE("hardened params reproduce the factorization they started from", "[refine]")
{
    detail::Rng rng(3);
    const auto f = random_factorization(9, 6, 4, true, rng);
    const Matrix<double> W = randn(9, 6, rng);
    auto p = make_layer_params<double>(f, W);
    normalize_latents(p);
    const auto h = p.harden();
    CHECK(h.u == f.u);
    CHECK(h.vt == f.vt);
    // Given latents: only magnitudes are used, signs stay those of f.
    const Matrix<double> ul = randn(9, 4, rng), vl = randn(4, 6, rng);
    auto p2 = make_layer_params<double>(f, W, &ul, &vl);
    CHECK(p2.harden().u == f.u);
    CHECK(p2.u.cwiseAbs().isApprox(ul.cwiseAbs()));
    // Forward pass of the params equals Factorization::apply.
    const Matrix<double> X = randn(5, 6, rng);
    LayerCache<double> c;
    const Matrix<double> Y1 = layer_forward<double>(sign_of(p.u), sign_of(p.vt), p, X, c);
    const Matrix<double> Y2 = f.apply(X.transpose()).transpose();
    CHECK((Y1 - Y2).norm() <= 1e-12 * Y2.norm());
}

TEST_CASE("reconstruction recovers a planted factorization's outputs from a perturbed start", "[refine]")
{
    detail::Rng rng(11);
    const Index m = 48, n = 32, r = 8;
    const auto target = random_factorization(m, n, r, false, rng);
    const Matrix<double> W = target.reconstruct();
    const Matrix<double> X = make_outlier_activations<double>(512, n, {2, 20, 50, 4, 0.5, 5});
    const Matrix<double> Y = dense_targets<double>(W, X);
    // Start: the planted signs with a few flipped and scales off by up to ±30 %.
    Factorization<double> start = target;
    Matrix<double> U = target.u.unpack<double>();
    for (int k = 0; k < 20; ++k) U(Index(rng.below(m)), Index(rng.below(r))) *= -1;
    start.u = PackedSignMatrix::pack(U);
    for (Index i = 0; i < m; ++i) start.s_out(i) *= 0.7 + 0.6 * rng.uniform();
    for (Index j = 0; j < n; ++j) start.s_in(j) *= 0.7 + 0.6 * rng.uniform();
    auto p = make_layer_params<double>(start, W);
    LayerReconstructionOptions o;
    o.epochs = 30;
    o.batch_size = 64;
    o.lr_latent = 1e-2;
    o.lr_scale = 1e-2;
    const auto res = reconstruct_layer<double>(p, X, Y, o);
    INFO("before " << res.rel_error_before() << " after " << res.rel_error_after() << " best epoch " << res.best_epoch
                   << " flips " << res.flipped_u << "/" << res.flipped_v);
    CHECK(res.rel_error_before() > 0.1);
    CHECK(res.rel_error_after() < 0.5 * res.rel_error_before());
    CHECK(res.flipped_u + res.flipped_v > 0);
    // The reported loss is the loss of the returned factorization.
    const double e = output_relative_error<double>(W, res.factorization.reconstruct(), X);
    CHECK(e == Approx(res.rel_error_after()).epsilon(1e-9));
}

TEST_CASE("reconstruction never returns something worse than its start and is seed-reproducible", "[refine]")
{
    detail::Rng rng(5);
    const Index m = 40, n = 24;
    const Matrix<double> W = randn(m, n, rng);
    const auto f = random_factorization(m, n, 6, true, rng);
    const Matrix<float> X = make_outlier_activations<float>(256, n, {3, 20, 100, 4, 0.5, 9});
    const Matrix<float> Wf = W.cast<float>();
    const Matrix<float> Y = dense_targets<float>(Wf, X);
    Factorization<float> ff;
    ff.u = f.u; ff.vt = f.vt; ff.s_out = f.s_out.cast<float>(); ff.s_mid = f.s_mid.cast<float>(); ff.s_in = f.s_in.cast<float>();
    const auto p = make_layer_params<float>(ff, Wf);
    LayerReconstructionOptions o;
    o.epochs = 4;
    o.seed = 42;
    const auto a = reconstruct_layer<float>(p, X, Y, o);
    const auto b = reconstruct_layer<float>(p, X, Y, o);
    CHECK(a.loss_after <= a.loss_before);
    for (double l : a.epoch_loss) CHECK(a.loss_after <= l);
    CHECK(a.factorization.u == b.factorization.u);
    CHECK(a.factorization.vt == b.factorization.vt);
    CHECK(a.params.s_in == b.params.s_in);
    CHECK(a.loss_after == b.loss_after);
    o.seed = 43;
    const auto c = reconstruct_layer<float>(p, X, Y, o);
    CHECK(c.params.s_in != a.params.s_in);
    // Zero epochs returns the start unchanged.
    o.epochs = 0;
    const auto z = reconstruct_layer<float>(p, X, Y, o);
    CHECK(z.factorization.u == ff.u);
    CHECK(z.loss_after == z.loss_before);
}

TEST_CASE("reconstruction rejects bad inputs with clear messages", "[refine]")
{
    using Catch::Matchers::Contains;
    detail::Rng rng(1);
    const auto f = random_factorization(6, 4, 2, false, rng);
    const Matrix<double> W = randn(6, 4, rng);
    const auto p = make_layer_params<double>(f, W);
    const Matrix<double> X = randn(10, 4, rng), Y = randn(10, 6, rng);
    REQUIRE_THROWS_WITH(reconstruct_layer<double>(p, randn(10, 5, rng), Y), Contains("X has 5 columns"));
    REQUIRE_THROWS_WITH(reconstruct_layer<double>(p, X, randn(9, 6, rng)), Contains("X has 10 tokens (rows) but Y has 9"));
    LayerReconstructionOptions o;
    o.batch_size = 0;
    REQUIRE_THROWS_AS(reconstruct_layer<double>(p, X, Y, o), nanoquant::invalid_argument);
    REQUIRE_THROWS_WITH(reconstruct_layer<double>(p, X, Y, o), Contains("batch_size must be >= 1, got 0"));
    o = {};
    o.lr_min_ratio = 2;
    REQUIRE_THROWS_WITH(reconstruct_layer<double>(p, X, Y, o), Contains("lr_min_ratio"));
    Matrix<double> Xn = X;
    Xn(3, 2) = std::nan("");
    REQUIRE_THROWS_WITH(reconstruct_layer<double>(p, Xn, Y), Contains("X has 1 non-finite value"));
    Vector<double> w = -Vector<double>::Ones(6);
    REQUIRE_THROWS_WITH(reconstruct_layer<double>(p, X, Y, {}, w), Contains("w_out must be >= 0"));
    const Matrix<double> bad = randn(5, 2, rng);
    REQUIRE_THROWS_WITH(make_layer_params<double>(f, W, &bad), Contains("u_latent must be 6x2, got 5x2"));
}

TEST_CASE("calibration statistics equal the plain products in any chunking and are checked against the layer", "[refine]")
{
    detail::Rng rng(5);
    const Index T = 37, n = 9, m = 7;
    const Matrix<float> X = randn(T, n, rng).cast<float>(), Y = randn(T, m, rng).cast<float>();
    const Matrix<double> Xd = X.cast<double>(), Yd = Y.cast<double>();
    for (const Index chunk : {Index(1), Index(5), Index(37), Index(4096)}) {
        INFO("chunk " << chunk);
        const CalibrationStats st = calibration_stats<float>(X, Y, chunk);
        CHECK(st.tokens == T);
        CHECK((st.xtx - Xd.transpose() * Xd).cwiseAbs().maxCoeff() < 1e-12 * Xd.squaredNorm());
        CHECK((st.xty - Xd.transpose() * Yd).cwiseAbs().maxCoeff() < 1e-12 * Xd.norm() * Yd.norm());
        CHECK((st.yty - Yd.colwise().squaredNorm().transpose()).cwiseAbs().maxCoeff() < 1e-12 * Yd.squaredNorm());
        CHECK(st.xtx == st.xtx.transpose());
    }
    using Catch::Matchers::Contains;
    const CalibrationStats st = calibration_stats<float>(X, Y);
    LayerParams<float> p;
    p.u = Matrix<float>::Ones(m + 1, 2);
    p.vt = Matrix<float>::Ones(2, n);
    p.s_out = Vector<float>::Ones(m + 1);
    p.s_in = Vector<float>::Ones(n);
    REQUIRE_THROWS_WITH(refit_scales_output<float>(p, st), Contains("stats.xty is 9x7, expected n x m = 9x8"));
    REQUIRE_THROWS_WITH(calibration_stats<float>(X, Y.topRows(3)), Contains("X has 37 tokens (rows) but Y has 3"));
    REQUIRE_THROWS_WITH(calibration_stats<float>(X, Y, 0), Contains("chunk must be >= 1, got 0"));
}

TEST_CASE("output-aware scale refit and U sign polish never increase the loss and refit is a stationary point", "[refine]")
{
    detail::Rng rng(17);
    const Index m = 30, n = 20, r = 6;
    const Matrix<double> W = randn(m, n, rng);
    const auto f = random_factorization(m, n, r, true, rng);
    const Matrix<double> X = make_outlier_activations<double>(300, n, {2, 20, 60, 4, 0.5, 2});
    const Matrix<double> Y = dense_targets<double>(W, X);
    const Vector<double> w = rand_pos(m, rng);
    auto p = make_layer_params<double>(f, W);
    const double l0 = layer_loss<double>(p, X, Y, w);
    refit_scales_output<double>(p, X, Y, w, 1);
    const double l1 = layer_loss<double>(p, X, Y, w);
    refit_scales_output<double>(p, X, Y, w, 20);
    const double l2 = layer_loss<double>(p, X, Y, w);
    CHECK(l1 < l0);
    CHECK(l2 <= l1 * (1 + 1e-12));
    // After many rounds the scale gradient (from layer_backward) is small relative to the start's (block coordinate descent).
    auto grad = [&](const LayerParams<double>& q) {
        LayerCache<double> c;
        Matrix<double> dY;
        const Matrix<double> ue = sign_of(q.u), vte = sign_of(q.vt);
        weighted_output_loss<double>(layer_forward<double>(ue, vte, q, X, c), Y, w, &dY);
        LayerParams<double> g = q.zeros_like();
        layer_backward<double>(ue, vte, q, X, c, dY, g);
        return g;
    };
    const auto g0 = grad(make_layer_params<double>(f, W));
    const auto g2 = grad(p);
    CHECK(g2.s_out.norm() < 0.05 * g0.s_out.norm());
    CHECK(g2.s_in.norm() < 0.05 * g0.s_in.norm());
    REQUIRE(p.has_mid_scale());
    CHECK(g2.s_mid.norm() < 0.05 * g0.s_mid.norm());
    // Sign polish: monotone, and a second full polish of a converged row set flips nothing new at 0 sweeps.
    const Index flips = polish_u_signs<double>(p, X, Y, 5);
    const double l3 = layer_loss<double>(p, X, Y, w);
    CHECK(flips > 0);
    CHECK(l3 < l2);
    CHECK(polish_u_signs<double>(p, X, Y, 0) == 0);
    // Polishing a planted exact factorization flips nothing.
    auto exact = make_layer_params<double>(f, f.reconstruct());
    CHECK(polish_u_signs<double>(exact, X, dense_targets<double>(f.reconstruct(), X), 3) == 0);
}

TEST_CASE("V sign polish: every accepted flip changes the loss by exactly its prediction and the loss never rises", "[refine]")
{
    auto run = [](bool mid, bool weighted) {
        detail::Rng rng(23);
        const Index m = 26, n = 18, r = 7;
        const Matrix<double> W = randn(m, n, rng);
        const auto f = random_factorization(m, n, r, mid, rng);
        const Matrix<double> X = make_outlier_activations<double>(200, n, {2, 20, 60, 4, 0.5, 3});
        const Matrix<double> Y = dense_targets<double>(W, X);
        const Vector<double> w = weighted ? rand_pos(m, rng) : Vector<double>();
        auto p = make_layer_params<double>(f, W);
        refit_scales_output<double>(p, X, Y, w, 2);
        const double l0 = layer_loss<double>(p, X, Y, w);
        double prev = l0, worst = 0;
        Index calls = 0, rises = 0;
        const Index flips = polish_v_signs<double>(p, X, Y, w, 4, [&](Index, Index, double predicted) {
            const double now = layer_loss<double>(p, X, Y, w);
            worst = std::max(worst, std::abs((now - prev) - predicted) / l0);
            if (!(predicted < 0) || !(now < prev)) ++rises;
            prev = now;
            ++calls;
        });
        INFO("mid " << mid << " weighted " << weighted << ": " << flips << " flips, loss " << l0 << " -> " << prev);
        CHECK(flips > 0);
        CHECK(calls == flips);
        CHECK(worst < 1e-11);
        CHECK(rises == 0);
        CHECK(layer_loss<double>(p, X, Y, w) == Approx(prev).epsilon(1e-12));
        // A further polish finds the same loss or lower; with the local optimum reached, nothing flips.
        polish_v_signs<double>(p, X, Y, w, 50);
        CHECK(polish_v_signs<double>(p, X, Y, w, 1) == 0);
        CHECK(layer_loss<double>(p, X, Y, w) <= prev);
    };
    SECTION("three scales, importance-weighted") { run(true, true); }
    SECTION("two scales, unweighted") { run(false, false); }
}

TEST_CASE("V sign polish recovers planted signs and leaves an exact factorization alone", "[refine]")
{
    detail::Rng rng(29);
    const Index m = 40, n = 24, r = 6;
    const auto target = random_factorization(m, n, r, true, rng);
    const Matrix<double> W = target.reconstruct();
    const Matrix<double> X = make_outlier_activations<double>(400, n, {2, 20, 60, 4, 0.5, 4});
    const Matrix<double> Y = dense_targets<double>(W, X);
    const Vector<double> w = rand_pos(m, rng);
    auto exact = make_layer_params<double>(target, W);
    CHECK(polish_v_signs<double>(exact, X, Y, w, 3) == 0);
    // Start: the planted factorization with 6 signs of V flipped (distinct entries).
    Factorization<double> start = target;
    Matrix<double> Vt = target.vt.unpack<double>();
    for (int flipped = 0; flipped < 6;) {
        const Index k = Index(rng.below(r)), j = Index(rng.below(n));
        if (Vt(k, j) != target.vt.unpack<double>()(k, j)) continue;
        Vt(k, j) *= -1;
        ++flipped;
    }
    start.vt = PackedSignMatrix::pack(Vt);
    auto p = make_layer_params<double>(start, W);
    const double before = layer_loss<double>(p, X, Y, w);
    const Index flips = polish_v_signs<double>(p, X, Y, w, 3);
    INFO("loss " << before << " -> " << layer_loss<double>(p, X, Y, w) << " with " << flips << " flips");
    CHECK(before > 1e-5);
    // Greedy steps may flip a correct sign on the way and back: at least the 6, and an even surplus.
    CHECK(flips >= 6);
    CHECK((flips - 6) % 2 == 0);
    CHECK(p.harden().vt == target.vt);
    CHECK(layer_loss<double>(p, X, Y, w) < 1e-20);
}

TEST_CASE("V sign polish rejects bad inputs with clear messages", "[refine]")
{
    using Catch::Matchers::Contains;
    detail::Rng rng(2);
    const auto f = random_factorization(6, 4, 2, true, rng);
    const Matrix<double> W = randn(6, 4, rng);
    auto p = make_layer_params<double>(f, W);
    const Matrix<double> X = randn(10, 4, rng), Y = randn(10, 6, rng);
    REQUIRE_THROWS_WITH(polish_v_signs<double>(p, X, Y, {}, -1), Contains("sweeps must be >= 0, got -1"));
    REQUIRE_THROWS_WITH(polish_v_signs<double>(p, X, Y, Vector<double>::Ones(5)), Contains("w has 5 entries"));
    REQUIRE_THROWS_WITH(polish_v_signs<double>(p, X, Y, -Vector<double>::Ones(6)), Contains("w must be >= 0"));
    REQUIRE_THROWS_WITH(polish_v_signs<double>(p, randn(10, 5, rng), Y), Contains("X has 5 columns, expected the layer's inputs n = 4"));
    LayerReconstructionOptions o;
    o.polish_v_sweeps = -2;
    REQUIRE_THROWS_WITH(reconstruct_layer<double>(p, X, Y, o), Contains("polish_v_sweeps must be >= 0, got -2"));
}
