// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <nanoquant/core/factorization.hpp>
#include <nanoquant/detail/random.hpp>

using namespace nanoquant;

namespace {
template <typename Scalar>
Factorization<Scalar> random_factorization(Index m, Index n, Index r, bool mid, std::uint64_t seed)
{
    detail::Rng rng(seed);
    auto gauss = [&](Index a, Index b) {
        Matrix<Scalar> X(a, b);
        for (Index j = 0; j < b; ++j)
            for (Index i = 0; i < a; ++i) X(i, j) = Scalar(rng.normal());
        return X;
    };
    Factorization<Scalar> f;
    f.u = PackedSignMatrix::pack(gauss(m, r));
    f.vt = PackedSignMatrix::pack(gauss(r, n));
    f.s_out = gauss(m, 1).cwiseAbs();
    f.s_in = gauss(n, 1).cwiseAbs();
    if (mid) f.s_mid = gauss(r, 1).cwiseAbs();
    return f;
}
}  // namespace

TEMPLATE_TEST_CASE("reconstruct matches the defining product", "[core][factorization]", float, double)
{
    using S = TestType;
    for (bool mid : {false, true}) {
        const auto f = random_factorization<S>(13, 9, 5, mid, 3);
        const Matrix<S> U = f.u.template unpack<S>();
        const Matrix<S> V = f.vt.template unpack<S>().transpose();
        Matrix<S> expected(13, 9);
        for (Index i = 0; i < 13; ++i)
            for (Index j = 0; j < 9; ++j) {
                S acc = 0;
                for (Index k = 0; k < 5; ++k) acc += U(i, k) * (mid ? f.s_mid(k) : S(1)) * V(j, k);
                expected(i, j) = f.s_out(i) * acc * f.s_in(j);
            }
        REQUIRE((f.reconstruct() - expected).norm() <= S(1e-5) * expected.norm());
        const Matrix<S> X = Matrix<S>::Random(9, 4);
        REQUIRE((f.apply(X) - expected * X).norm() <= S(1e-5) * (expected * X).norm());
    }
}

TEST_CASE("bits per weight and storage bytes", "[core][factorization]")
{
    const auto f2 = random_factorization<float>(256, 256, 96, false, 1);
    REQUIRE(f2.bits_per_weight() == Approx(0.875));
    REQUIRE(f2.storage_bytes() == 256u * 12u + 96u * 32u + 2u * 512u);
    const auto f3 = random_factorization<float>(100, 30, 7, true, 1);
    REQUIRE(f3.bits_per_weight() == Approx((7.0 * 130 + 16.0 * 137) / 3000.0));
    REQUIRE(f3.storage_bytes() == 100u * 1u + 7u * 4u + 2u * 137u);
}

TEST_CASE("validate names the inconsistent part", "[core][factorization][errors]")
{
    auto f = random_factorization<double>(8, 6, 3, true, 2);
    REQUIRE_NOTHROW(f.validate());
    auto g = f;
    g.s_in.resize(5);
    REQUIRE_THROWS_WITH(g.validate(), Catch::Contains("s_in has 5 entries, expected cols = 6"));
    g = f;
    g.s_mid(1) = std::numeric_limits<double>::infinity();
    REQUIRE_THROWS_WITH(g.reconstruct(), Catch::Contains("s_mid has 1 non-finite value"));
    g = f;
    g.vt = PackedSignMatrix(4, 6);
    REQUIRE_THROWS_WITH(g.validate(), Catch::Contains("ranks differ"));
    REQUIRE_THROWS_WITH(f.apply(Eigen::MatrixXd::Ones(5, 1)), Catch::Contains("expected cols = 6"));
}

TEST_CASE("relative_error is zero for an exact factorization", "[core][factorization]")
{
    const auto f = random_factorization<double>(20, 11, 4, false, 9);
    const Eigen::MatrixXd W = f.reconstruct();
    REQUIRE(relative_error<double>(W, f) < 1e-14);
    REQUIRE(relative_error<double>(2.0 * W, f) == Approx(0.5));
}
