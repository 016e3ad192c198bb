// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <nanoquant/refine/mitigation.hpp>
#include "synthetic.hpp"  // tests/support: synthetic data, not part of the installed library

using namespace nanoquant;

TEST_CASE("ridge mitigation recovers a planted W exactly and streams like the one-shot solve", "[refine]")
{
    detail::Rng rng(2);
    const Index m = 12, n = 9, T = 200;
    Matrix<double> Wstar(m, n);
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < m; ++i) Wstar(i, j) = rng.normal();
    const Matrix<double> Xt = make_outlier_activations<double>(T, n, {1, 20, 40, 2, 0.5, 3});
    const Matrix<double> Y = Xt * Wstar.transpose();
    RidgeMitigationOptions o;
    o.ridge = 0;
    const Matrix<double> W = mitigate_error_propagation<double>(Xt, Y, o);
    CHECK((W - Wstar).norm() <= 1e-9 * Wstar.norm());

    // Batched accumulation equals the one-shot solve; a ridge pulls toward W0.
    o.ridge = 0.5;
    const Matrix<double> W0 = Matrix<double>::Zero(m, n);
    const Matrix<double> one = mitigate_error_propagation<double>(Xt, Y, o, W0);
    RidgeAccumulator acc(n, m);
    for (Index t = 0; t < T; t += 64) {
        const Index b = std::min<Index>(64, T - t);
        acc.add<double>(Xt.middleRows(t, b), Y.middleRows(t, b));
    }
    CHECK((acc.solve<double>(o, W0) - one).norm() <= 1e-10 * one.norm());
    CHECK(one.norm() < W.norm());
    // Anchored at the truth, the ridge changes nothing.
    CHECK((mitigate_error_propagation<double>(Xt, Y, o, Wstar) - Wstar).norm() <= 1e-9 * Wstar.norm());
}

TEST_CASE("mitigation lowers the output error of a layer fed perturbed inputs", "[refine]")
{
    detail::Rng rng(8);
    const Index m = 16, n = 10, T = 400;
    Matrix<double> W(m, n), P(n, n);
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < m; ++i) W(i, j) = rng.normal();
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < n; ++i) P(i, j) = (i == j ? 1.0 : 0.0) + 0.2 * rng.normal();
    const Matrix<double> X = make_outlier_activations<double>(T, n, {1, 20, 40, 2, 0.5, 6});
    const Matrix<double> Xt = X * P;  // what a compressed predecessor would produce
    const Matrix<double> Y = X * W.transpose();
    const Matrix<double> Wm = mitigate_error_propagation<double>(Xt, Y, {}, W);
    CHECK((Xt * Wm.transpose() - Y).norm() < 0.5 * (Xt * W.transpose() - Y).norm());
}

TEST_CASE("mitigation rejects bad input", "[refine]")
{
    using Catch::Matchers::Contains;
    RidgeAccumulator acc(3, 2);
    REQUIRE_THROWS_WITH(acc.solve<double>(), Contains("no tokens were added"));
    REQUIRE_THROWS_WITH(acc.add<double>(Matrix<double>::Ones(4, 3), Matrix<double>::Ones(5, 2)),
                        Contains("Xt has 4 tokens but Y has 5"));
    acc.add<double>(Matrix<double>::Ones(4, 3), Matrix<double>::Ones(4, 2));
    RidgeMitigationOptions o;
    o.ridge = 0;
    REQUIRE_THROWS_WITH(acc.solve<double>(o), Contains("not positive definite"));
    o.ridge = -1;
    REQUIRE_THROWS_WITH(acc.solve<double>(o), Contains("ridge must be a finite number >= 0, got -1"));
    REQUIRE_THROWS_WITH(acc.solve<double>({}, Matrix<double>::Ones(3, 3)), Contains("W0 must be 2x3"));
}
