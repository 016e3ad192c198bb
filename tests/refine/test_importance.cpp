// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <nanoquant/refine/importance.hpp>
#include "synthetic.hpp"  // tests/support: synthetic data, not part of the installed library

using namespace nanoquant;

TEST_CASE("importance without clipping or shrinkage is the per-channel mean square", "[refine]")
{
    ImportanceOptions o;
    o.strategy = ImportanceStrategy::Plain;
    o.shrinkage = 0;
    const Matrix<double> X = make_outlier_activations<double>(300, 7, {2, 20, 30, 2, 0.5, 1});
    // Equal batch sizes: mean over batches of batch means = global mean.
    const Vector<double> h = channel_importance<double>(X, 100, o);
    const Vector<double> ref = X.array().square().colwise().mean().transpose();
    CHECK((h - ref).norm() <= 1e-12 * ref.norm());
}

TEST_CASE("shrinkage pulls toward the mean and keeps the mean", "[refine]")
{
    ImportanceOptions o;
    o.strategy = ImportanceStrategy::Plain;
    o.shrinkage = 0.4;
    Matrix<double> X(2, 3);
    X << 1, 2, 3, 1, 2, 3;  // mean squares 1, 4, 9; mean 14/3
    const Vector<double> h = channel_importance<double>(X, 2, o);
    const double mu = 14.0 / 3.0;
    CHECK(h(0) == Approx(0.6 * 1 + 0.4 * mu));
    CHECK(h(1) == Approx(0.6 * 4 + 0.4 * mu));
    CHECK(h(2) == Approx(0.6 * 9 + 0.4 * mu));
    CHECK(h.mean() == Approx(mu));
}

TEST_CASE("online clipping limits a single huge token to the 99.9th-percentile norm", "[refine]")
{
    ImportanceOptions o;
    o.shrinkage = 0;
    // 2000 tokens: k = floor(2000 * 0.001) = 2, so the threshold is the 2nd largest row norm.
    Matrix<double> X = Matrix<double>::Ones(2000, 4);  // row norm 2
    X.row(10) *= 1000.0;                               // one giant token
    X.row(20) *= 3.0;                                  // second largest: norm 6
    ImportanceAccumulator acc(4, o);
    CHECK(acc.clip_rank(2000) == 2);
    acc.add<double>(X);
    CHECK(acc.running_max() == Approx(6.0));
    // Clipped rows: 1998 rows of ones, row 20 (norm 6, entries 3), row 10 clipped to norm 6 (entries 3).
    const double expect = (1998.0 + 9.0 + 9.0) / 2000.0;
    const Vector<double> h = acc.finalize<double>();
    for (Index j = 0; j < 4; ++j) CHECK(h(j) == Approx(expect));
}

TEST_CASE("online accumulator rescales its sum when the running maximum grows", "[refine]")
{
    ImportanceOptions o;
    o.shrinkage = 0;
    o.clip_quantile = 1.0;  // k = 1: the largest norm is the threshold
    ImportanceAccumulator acc(1, o);
    Matrix<double> a(1, 1), b(1, 1);
    a << 1.0;
    b << 2.0;
    acc.add<double>(a);  // G = 1, sum = 1
    acc.add<double>(b);  // tau = 2 > G: sum *= 4 -> 4, then + 4 -> 8
    CHECK(acc.running_max() == Approx(2.0));
    CHECK(acc.finalize<double>()(0) == Approx(8.0 / 2.0));
}

TEST_CASE("importance flags the outlier channels and rejects bad input", "[refine]")
{
    using Catch::Matchers::Contains;
    OutlierChannels oc;
    OutlierActivationOptions ao;
    ao.num_outliers = 3;
    ao.seed = 4;
    const Matrix<float> X = make_outlier_activations<float>(1024, 64, ao, &oc);
    const Vector<float> h = channel_importance<float>(X, 256);
    // The outlier channels are the three largest, each > 100x the mean of the others (factor >= 20).
    Vector<float> others = h;
    for (Index j : oc.index) others(j) = 0;
    for (Index j : oc.index) CHECK(h(j) > others.maxCoeff());
    ImportanceOptions noshrink;
    noshrink.shrinkage = 0;
    const Vector<float> h0 = channel_importance<float>(X, 256, noshrink);
    Vector<float> others0 = h0;
    for (Index j : oc.index) others0(j) = 0;
    const float ordinary_mean = others0.sum() / float(h.size() - 3);
    for (Index j : oc.index) CHECK(h0(j) > 100 * ordinary_mean);
    // Reproducible from the seed, different for another seed.
    CHECK(make_outlier_activations<float>(1024, 64, ao) == X);
    ao.seed = 5;
    CHECK(make_outlier_activations<float>(1024, 64, ao) != X);

    ImportanceAccumulator acc(3);
    REQUIRE_THROWS_WITH(acc.add<double>(Matrix<double>::Ones(4, 2)), Contains("batch has 2 columns, expected 3"));
    REQUIRE_THROWS_WITH(acc.finalize<double>(), Contains("no batch was added"));
    ImportanceOptions bad;
    bad.shrinkage = 1.5;
    REQUIRE_THROWS_WITH(ImportanceAccumulator(3, bad), Contains("shrinkage must be in [0, 1], got 1.5"));
    Matrix<double> nanb = Matrix<double>::Ones(2, 3);
    nanb(1, 1) = std::nan("");
    REQUIRE_THROWS_WITH(acc.add<double>(nanb), Contains("non-finite"));
    REQUIRE_THROWS_WITH(make_outlier_activations<double>(10, 4, {5, 20, 100, 8, 0.5, 0}), Contains("num_outliers"));
}
