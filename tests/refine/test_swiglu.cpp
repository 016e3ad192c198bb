// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <Eigen/SVD>

#include <nanoquant/refine/swiglu_block.hpp>
#include "synthetic.hpp"  // tests/support: synthetic data, not part of the installed library
#include "random_matrices.hpp"  // tests/support

using namespace nanoquant;
using testing::rand_pos;
using testing::randn;

namespace {
LayerParams<double> rand_layer(Index m, Index n, Index r, bool mid, detail::Rng& rng)
{
    LayerParams<double> p;
    p.u = randn(m, r, rng, 0.5);
    p.vt = randn(r, n, rng, 0.5);
    p.s_out = rand_pos(m, rng);
    if (mid) p.s_mid = rand_pos(r, rng);
    p.s_in = rand_pos(n, rng);
    return p;
}

// Central-difference check of every entry of `an` against f(entry += h).
template <typename Get>
double worst_rel(const Matrix<double>& an, SwiGluParams<double> p, Get&& get, const Matrix<double>& X,
                 const Matrix<double>& Y, const Vector<double>& w)
{
    double worst = 0;
    for (Index j = 0; j < an.cols(); ++j)
        for (Index i = 0; i < an.rows(); ++i) {
            const double h = 1e-6;
            auto q = p;
            get(q)(i, j) += h;
            const double lp = swiglu_loss<double>(q, X, Y, w, false);
            get(q)(i, j) -= 2 * h;
            const double lm = swiglu_loss<double>(q, X, Y, w, false);
            const double fd = (lp - lm) / (2 * h);
            worst = std::max(worst, std::abs(fd - an(i, j)) / std::max({std::abs(fd), std::abs(an(i, j)), 1e-8}));
        }
    return worst;
}
}  // namespace

TEST_CASE("SwiGLU block backward matches central finite differences (float64)", "[refine]")
{
    detail::Rng rng(21);
    const Index d = 5, h = 7, B = 9;
    SwiGluParams<double> p{rand_layer(h, d, 3, true, rng), rand_layer(h, d, 4, false, rng), rand_layer(d, h, 3, true, rng)};
    const Matrix<double> X = randn(B, d, rng), Y = randn(B, d, rng);
    const Vector<double> w = rand_pos(d, rng);
    SwiGluParams<double> g = p.zeros_like();
    Matrix<double> dX;
    swiglu_loss<double>(p, X, Y, w, false, &g, &dX);
    using P = SwiGluParams<double>;
    CHECK(worst_rel(g.gate.u, p, [](P& q) -> Matrix<double>& { return q.gate.u; }, X, Y, w) < 1e-6);
    CHECK(worst_rel(g.gate.vt, p, [](P& q) -> Matrix<double>& { return q.gate.vt; }, X, Y, w) < 1e-6);
    CHECK(worst_rel(g.up.u, p, [](P& q) -> Matrix<double>& { return q.up.u; }, X, Y, w) < 1e-6);
    CHECK(worst_rel(g.up.vt, p, [](P& q) -> Matrix<double>& { return q.up.vt; }, X, Y, w) < 1e-6);
    CHECK(worst_rel(g.down.u, p, [](P& q) -> Matrix<double>& { return q.down.u; }, X, Y, w) < 1e-6);
    CHECK(worst_rel(g.down.vt, p, [](P& q) -> Matrix<double>& { return q.down.vt; }, X, Y, w) < 1e-6);
    auto vec_check = [&](const Vector<double>& an, auto get) {
        return worst_rel(Matrix<double>(an), p, [&](P& q) { return Eigen::Map<Matrix<double>>(get(q).data(), get(q).size(), 1); }, X, Y, w);
    };
    CHECK(vec_check(g.gate.s_in, [](P& q) -> Vector<double>& { return q.gate.s_in; }) < 1e-6);
    CHECK(vec_check(g.gate.s_mid, [](P& q) -> Vector<double>& { return q.gate.s_mid; }) < 1e-6);
    CHECK(vec_check(g.gate.s_out, [](P& q) -> Vector<double>& { return q.gate.s_out; }) < 1e-6);
    CHECK(vec_check(g.up.s_out, [](P& q) -> Vector<double>& { return q.up.s_out; }) < 1e-6);
    CHECK(vec_check(g.up.s_in, [](P& q) -> Vector<double>& { return q.up.s_in; }) < 1e-6);
    CHECK(vec_check(g.down.s_mid, [](P& q) -> Vector<double>& { return q.down.s_mid; }) < 1e-6);
    CHECK(vec_check(g.down.s_out, [](P& q) -> Vector<double>& { return q.down.s_out; }) < 1e-6);
    CHECK(vec_check(g.down.s_in, [](P& q) -> Vector<double>& { return q.down.s_in; }) < 1e-6);
    // dX by finite differences.
    double worst = 0;
    for (Index j = 0; j < X.cols(); ++j)
        for (Index i = 0; i < X.rows(); ++i) {
            Matrix<double> Xp = X, Xm = X;
            Xp(i, j) += 1e-6;
            Xm(i, j) -= 1e-6;
            const double fd = (swiglu_loss<double>(p, Xp, Y, w, false) - swiglu_loss<double>(p, Xm, Y, w, false)) / 2e-6;
            worst = std::max(worst, std::abs(fd - dX(i, j)) / std::max({std::abs(fd), std::abs(dX(i, j)), 1e-8}));
        }
    CHECK(worst < 1e-6);
}

TEST_CASE("SwiGLU block reconstruction lowers the block output error and is seed-reproducible", "[refine]")
{
    detail::Rng rng(4);
    const Index d = 24, h = 48, r = 12;
    const Matrix<double> Wg = randn(h, d, rng, 0.3), Wu = randn(h, d, rng, 0.3), Wd = randn(d, h, rng, 0.3);
    const Matrix<double> X = make_outlier_activations<double>(512, d, {2, 20, 40, 4, 0.5, 12});
    const Matrix<double> Y = swiglu_dense_forward<double>(Wg, Wu, Wd, X);
    // Start: each layer from its own truncated-SVD signs with least-squares-free unit scales, i.e. a poor start.
    auto start_layer = [&](const Matrix<double>& W) {
        Eigen::JacobiSVD<Matrix<double>> svd(W, Eigen::ComputeThinU | Eigen::ComputeThinV);
        Factorization<double> f;
        f.u = PackedSignMatrix::pack(svd.matrixU().leftCols(r));
        f.vt = PackedSignMatrix::pack(Matrix<double>(svd.matrixV().leftCols(r).transpose()));
        const double s = std::sqrt(W.norm() / (std::sqrt(double(W.rows() * W.cols())) * r));
        f.s_out = Vector<double>::Constant(W.rows(), s);
        f.s_in = Vector<double>::Constant(W.cols(), s);
        return make_layer_params<double>(f, W);
    };
    const SwiGluParams<double> start{start_layer(Wg), start_layer(Wu), start_layer(Wd)};
    LayerReconstructionOptions o;
    o.epochs = 8;
    o.batch_size = 64;
    o.seed = 3;
    const auto a = reconstruct_swiglu_block<double>(start, X, Y, o);
    INFO("before " << a.loss_before << " after " << a.loss_after);
    CHECK(a.loss_after < 0.85 * a.loss_before);
    for (double l : a.epoch_loss) CHECK(a.loss_after <= l);
    const auto b = reconstruct_swiglu_block<double>(start, X, Y, o);
    CHECK(a.down.u == b.down.u);
    CHECK(a.loss_after == b.loss_after);
    // The hardened layers give the reported loss.
    const Matrix<double> Yh = swiglu_dense_forward<double>(a.gate.reconstruct(), a.up.reconstruct(), a.down.reconstruct(), X);
    CHECK((Yh - Y).squaredNorm() / Y.squaredNorm() == Approx(a.loss_after).epsilon(1e-8));

    using Catch::Matchers::Contains;
    SwiGluParams<double> bad = start;
    bad.down = start.gate;
    REQUIRE_THROWS_WITH(reconstruct_swiglu_block<double>(bad, X, Y, o), Contains("down is 48x24, expected 24x48"));
}
