// SPDX-License-Identifier: Apache-2.0
// The packed-sign products of the ADMM iteration (admm_sign_products.hpp) against plain double
// products, on every kernel variant this CPU runs; and the solver with Packed against Dense.
#include <catch2/catch.hpp>

#include <nanoquant/solvers/admm_sign_products.hpp>
#include <nanoquant/solvers/admm_solver.hpp>
#include "random_matrices.hpp"  // tests/support

using namespace nanoquant;

namespace {
/// An SVID-set matrix Z = P(X) with its magnitudes a = σ|u|, b = |v|.
struct SvidSample {
    Matrix<float> Z;
    Vector<float> a, b;
};

SvidSample svid_sample(Index p, Index r, std::uint64_t seed)
{
    SvidSample s;
    detail::Rng rng(seed + 1);
    // One power iteration from a random start: u and v may keep negative entries, which the
    // decomposition Z = diag(σ|u|)·sign(Z)·diag(|v|) must handle.
    const SvidFactors<float> f = svid_projection<float>(testing::gaussian<float>(p, r, seed), s.Z, 1, rng);
    s.a = f.u.cwiseAbs() * f.sigma;
    s.b = f.v.cwiseAbs();
    return s;
}
}  // namespace

TEST_CASE("sign tiles of Zᵀ hold the sign bits of Z", "[solvers][admm][packed]")
{
    const SvidSample s = svid_sample(77, 21, 3);
    kernels::TiledSigns T;
    detail::pack_sign_tiles_transposed(s.Z, T, 2);
    REQUIRE(T.rows == 21);
    REQUIRE(T.cols == 77);
    for (Index k = 0; k < 21; ++k)
        for (Index e = 0; e < 77; ++e) REQUIRE(T.sign(k, e) == (std::signbit(s.Z(e, k)) ? -1 : 1));
    // Padding rows and columns are +1 (zero bits).
    for (Index k = 21; k < T.rows_padded(); ++k)
        for (Index e = 0; e < T.cols_padded(); ++e) REQUIRE(T.sign(k, e) == 1);
    for (Index k = 0; k < 21; ++k)
        for (Index e = 77; e < T.cols_padded(); ++e) REQUIRE(T.sign(k, e) == 1);
}

TEST_CASE("packed W̃·Z and W̃ᵀ·Z agree with double products on every kernel variant", "[solvers][admm][packed]")
{
    for (kernels::KernelTarget target : kernels::supported_targets()) {
        const kernels::KernelTable& K = kernels::kernel_table(target);
        for (auto shape : {std::array<Index, 3>{1, 1, 1}, {7, 3, 2}, {130, 70, 17}, {200, 129, 64}, {333, 513, 40}}) {
            const Index m = shape[0], n = shape[1], r = shape[2];
            INFO("target " << K.name << " shape " << m << "x" << n << " r " << r);
            const Matrix<float> Wt = testing::gaussian<float>(m, n, 7);
            detail::AdmmSignProducts P(Wt, K);
            const SvidSample zb = svid_sample(n, r, 11), za = svid_sample(m, r, 13);
            Matrix<float> d1, d2, d1t, d2t;
            P.wt_times(zb.Z, zb.a, zb.b, d1, 1);
            P.wtt_times(Wt, za.Z, za.a, za.b, d2, 1);
            const Matrix<double> r1 = Wt.cast<double>() * zb.Z.cast<double>();
            const Matrix<double> r2 = Wt.cast<double>().transpose() * za.Z.cast<double>();
            REQUIRE(d1.rows() == m);
            REQUIRE(d1.cols() == r);
            REQUIRE(d2.rows() == n);
            REQUIRE(d2.cols() == r);
            CHECK((d1.cast<double>() - r1).norm() <= 1e-5 * r1.norm());
            CHECK((d2.cast<double>() - r2).norm() <= 1e-5 * r2.norm());
            // The thread count does not change a single bit.
            P.wt_times(zb.Z, zb.a, zb.b, d1t, 2);
            P.wtt_times(Wt, za.Z, za.a, za.b, d2t, 2);
            CHECK(d1t == d1);
            CHECK(d2t == d2);
        }
    }
}

TEST_CASE("the solver with packed products matches the dense products to rounding", "[solvers][admm][packed]")
{
    const Matrix<float> W = testing::gaussian<float>(150, 96, 21);
    const Vector<float> imp_in = (testing::gaussian<float>(96, 1, 22).array().abs() + 0.5f).matrix();
    const Vector<float> imp_out = (testing::gaussian<float>(150, 1, 23).array().abs() + 0.5f).matrix();
    AdmmOptions<float> o;
    o.rank = 40;
    o.iterations = 60;
    o.trace_every = 10;
    o.sign_products = SignProducts::Dense;
    const auto dense = AdmmSolver<float>(o).solve(W, imp_in, imp_out);
    o.sign_products = SignProducts::Packed;
    const AdmmSolver<float> packed_solver(o);
    REQUIRE(packed_solver.use_packed_products());
    const auto packed = packed_solver.solve(W, imp_in, imp_out);
    REQUIRE(dense.trace.size() == packed.trace.size());
    for (std::size_t t = 0; t < dense.trace.size(); ++t) {
        INFO("iteration " << dense.trace[t].iteration);
        CHECK(packed.trace[t].objective == Approx(dense.trace[t].objective).epsilon(1e-3));
    }
    CHECK(packed.weighted_relative_error == Approx(dense.weighted_relative_error).epsilon(1e-3));
    // Dense is what double always uses; Packed is refused for double.
    AdmmOptions<double> od;
    od.rank = 4;
    od.sign_products = SignProducts::Packed;
    REQUIRE_THROWS_WITH(AdmmSolver<double>(od), Catch::Contains("sign_products = Packed needs Scalar = float"));
    od.sign_products = SignProducts::Auto;
    REQUIRE_FALSE(AdmmSolver<double>(od).use_packed_products());
}
