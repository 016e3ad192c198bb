// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <nanoquant/baselines/dbf.hpp>
#include <nanoquant/baselines/residual_binary.hpp>
#include <nanoquant/baselines/svd16.hpp>
#include <nanoquant/detail/random.hpp>
#include "random_matrices.hpp"  // tests/support

using namespace nanoquant;
using testing::rand_pos;
using testing::randn;

namespace {
double rel(const Matrix<double>& W, const Matrix<double>& A) { return (W - A).norm() / W.norm(); }
}  // namespace

TEST_CASE("sign binarization recovers a planted diag(h) S diag(g) exactly", "[refine][baselines]")
{
    detail::Rng rng(1);
    const Vector<double> h = rand_pos(20, rng), g = rand_pos(13, rng);
    const Matrix<double> S = randn(20, 13, rng).unaryExpr([](double v) { return v < 0 ? -1.0 : 1.0; });
    const Matrix<double> W = h.asDiagonal() * S * g.asDiagonal();
    const auto rb = sign_binarize<double>(W);
    REQUIRE(rb.num_paths() == 1);
    CHECK(rel(W, rb.reconstruct()) < 1e-10);
    CHECK(rb.bits_per_weight() == Approx(1.0 + 16.0 * 33.0 / 260.0));
    // Weighted: still exact (the planted point is optimal under any weights).
    const auto rw = sign_binarize<double>(W, rand_pos(13, rng), rand_pos(20, rng));
    CHECK(rel(W, rw.reconstruct()) < 1e-10);
    // apply() agrees with reconstruct().
    const Matrix<double> X = randn(13, 4, rng);
    CHECK((rb.apply(X) - rb.reconstruct() * X).norm() < 1e-12 * X.norm() * W.norm());
}

TEST_CASE("residual paths: more paths and the refit lower the error and a planted 2-path W is fit well", "[refine][baselines]")
{
    detail::Rng rng(2);
    const Matrix<double> W = randn(64, 48, rng);
    ResidualBinaryOptions o;
    o.paths = 1;
    const double e1 = rel(W, residual_binarize<double>(W, o).reconstruct());
    o.paths = 2;
    o.refit_rounds = 0;
    const double e2_greedy = rel(W, residual_binarize<double>(W, o).reconstruct());
    o.refit_rounds = 8;
    const auto r2 = residual_binarize<double>(W, o);
    const double e2 = rel(W, r2.reconstruct());
    o.paths = 3;
    const double e3 = rel(W, residual_binarize<double>(W, o).reconstruct());
    INFO(e1 << " " << e2_greedy << " " << e2 << " " << e3);
    CHECK(e2_greedy < e1);
    CHECK(e2 <= e2_greedy);
    CHECK(e3 < e2);
    CHECK(r2.bits_per_weight() == Approx(2.0 + 32.0 * 112.0 / (64.0 * 48.0)));
    CHECK(r2.storage_bytes() == 2 * (64 * 6 + 2 * 112));
    // Gaussian W: one path keeps ~ sqrt(1 - 2/pi) = 0.60 relative error.
    CHECK(e1 == Approx(std::sqrt(1 - 2 / 3.14159265358979)).margin(0.05));

    // Planted: W = big path + small path whose magnitude is below the first everywhere.
    const Matrix<double> S1 = randn(40, 30, rng).unaryExpr([](double v) { return v < 0 ? -1.0 : 1.0; });
    const Matrix<double> S2 = randn(40, 30, rng).unaryExpr([](double v) { return v < 0 ? -1.0 : 1.0; });
    const Matrix<double> P = 4.0 * S1 + 1.0 * S2;
    const auto rp = residual_binarize<double>(P, ResidualBinaryOptions{});
    CHECK(rel(P, rp.reconstruct()) < 1e-8);
}

TEST_CASE("svd16 at equal bits: rank rule and planted low rank and half-precision storage", "[refine][baselines]")
{
    using Catch::Matchers::Contains;
    CHECK(svd16_rank_for_bpw(512, 512, 1.0) == 16);
    CHECK(svd16_rank_for_bpw(64, 64, 0.01) == 1);
    detail::Rng rng(3);
    const Matrix<double> W = randn(30, 4, rng) * randn(4, 20, rng);
    const auto lr = svd16<double>(W, 4);
    CHECK(rel(W, lr.reconstruct()) < 2e-3);   // half precision, not exact
    CHECK(rel(W, lr.reconstruct()) > 1e-7);
    CHECK(lr.bits_per_weight() == Approx(16.0 * 4 * 50 / 600.0));
    for (Index i = 0; i < lr.l.size(); ++i) CHECK(double(float(Eigen::half(float(lr.l(i))))) == lr.l(i));
    REQUIRE_THROWS_WITH(svd16<double>(W, 0), Contains("rank must be in [1, min(m, n) = 20], got 0"));
    REQUIRE_THROWS_WITH(residual_binarize<double>(W, ResidualBinaryOptions{0, 1, 1}), Contains("paths must be >= 1"));
    REQUIRE_THROWS_WITH(sign_binarize<double>(W, Vector<double>::Zero(20)), Contains("imp_in must be > 0"));
}

TEST_CASE("dbf recovers a planted three-scale binary factorization and its error falls with the rank", "[refine][baselines]")
{
    using Catch::Matchers::Contains;
    detail::Rng rng(4);
    const Index m = 64, n = 48, r = 8;
    auto sgn = [](const Matrix<double>& M) { return Matrix<double>(M.unaryExpr([](double v) { return v < 0 ? -1.0 : 1.0; })); };
    const Vector<double> h = rand_pos(m, rng), g = rand_pos(n, rng), s = rand_pos(r, rng);
    const Matrix<double> U = sgn(randn(m, r, rng)), V = sgn(randn(n, r, rng));
    const Matrix<double> W = h.asDiagonal() * U * s.asDiagonal() * V.transpose() * g.asDiagonal();
    DbfOptions<double> o;
    o.rank = r;
    o.iterations = 50;
    const auto planted = dbf_factorize<double>(W, o);
    // The transpose rule (rows < cols) must give the same quality.
    const Matrix<double> Wt = W.transpose();
    const auto planted_t = dbf_factorize<double>(Wt, o);
    // A Gaussian matrix of the same shape at the same rank, for scale.
    const Matrix<double> G = randn(m, n, rng);
    const auto gauss = dbf_factorize<double>(G, o);
    INFO("planted " << planted.relative_error << ", transposed " << planted_t.relative_error << ", gaussian "
                    << gauss.relative_error);
    REQUIRE(planted.factorization.rank() == r);
    REQUIRE(planted.factorization.has_mid_scale());
    CHECK(planted.relative_error < 0.06);
    CHECK(planted_t.relative_error < 0.06);
    CHECK(gauss.relative_error > 0.5);
    // The reported error is the error of the returned factorization.
    CHECK(planted.relative_error == Approx(rel(W, planted.factorization.reconstruct())).epsilon(1e-9));
    CHECK(planted_t.factorization.rows() == n);

    // On a Gaussian matrix more rank means less error.
    double prev = 1.0;
    for (Index rank : {4, 8, 16, 32}) {
        o.rank = rank;
        const double e = dbf_factorize<double>(G, o).relative_error;
        INFO("rank " << rank << ": " << e);
        CHECK(e < prev);
        prev = e;
    }
    o.rank = 0;
    REQUIRE_THROWS_WITH(dbf_factorize<double>(G, o), Contains("rank must be in [1, min(m, n)] = [1, 48], got 0"));
}
