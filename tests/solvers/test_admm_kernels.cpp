// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <nanoquant/solvers/admm_kernels.hpp>
#include <nanoquant/solvers/status.hpp>
#include "random_matrices.hpp"  // tests/support

using namespace nanoquant;
using testing::gaussian;

namespace {
}  // namespace

TEMPLATE_TEST_CASE("svid_projection agrees with the plain double reference", "[solvers][svid]", float, double)
{
    using S = TestType;
    for (auto shape : {std::pair<Index, Index>{1, 1}, {7, 3}, {600, 40}, {40, 1100}}) {
        const Matrix<double> X = gaussian(shape.first, shape.second, 11);
        for (int threads : {1, 2}) {
            detail::Rng r1(5), r2(5);
            Matrix<S> Z;
            svid_projection<S>(X.cast<S>(), Z, 5, r1, false, threads);
            const Matrix<double> Zr = svid_projection_reference(X.cast<S>().template cast<double>(), 5, r2);
            INFO("shape " << shape.first << "x" << shape.second << " threads " << threads);
            const double tol = std::is_same<S, float>::value ? 1e-5 : 1e-12;
            REQUIRE((Z.template cast<double>() - Zr).norm() <= tol * Zr.norm());
            // sign(0) = +1 and the signs follow X.
            for (Index j = 0; j < X.cols(); ++j)
                for (Index i = 0; i < X.rows(); ++i) REQUIRE((Z(i, j) >= 0) == (S(X(i, j)) >= 0));
        }
    }
}

TEST_CASE("svid_projection is exact on a sign x rank-1 matrix with sign(0) = +1", "[solvers][svid]")
{
    const Index p = 30, q = 12;
    const Matrix<double> G = gaussian(p, q, 3);
    const Vector<double> a = gaussian(p, 1, 4).cwiseAbs(), b = gaussian(q, 1, 5).cwiseAbs();
    Matrix<double> X(p, q);
    for (Index j = 0; j < q; ++j)
        for (Index i = 0; i < p; ++i) X(i, j) = (G(i, j) >= 0 ? 1.0 : -1.0) * a(i) * b(j);
    detail::Rng rng(1);
    Matrix<double> Z;
    const auto f = svid_projection<double>(X, Z, 30, rng);
    REQUIRE((Z - X).norm() <= 1e-10 * X.norm());
    REQUIRE(f.sigma == Approx(a.norm() * b.norm()).epsilon(1e-10));
    Matrix<double> zero = Matrix<double>::Zero(2, 2);
    zero(0, 0) = -1;
    svid_projection<double>(zero, Z, 5, rng);
    REQUIRE(Z(1, 1) >= 0);  // 0 maps to +|magnitude| (here 0)
    REQUIRE(!std::signbit(Z(1, 1)));
}

TEST_CASE("svid_rank1 with start_on_rows on Xᵀ equals svid_rank1 on X", "[solvers][svid]")
{
    const Matrix<double> X = gaussian(20, 9, 8);
    detail::Rng r1(2), r2(2);
    const auto f = svid_rank1<double>(X, 5, r1, false);
    const Matrix<double> Xt = X.transpose();
    const auto g = svid_rank1<double>(Xt, 5, r2, true);
    REQUIRE(f.sigma == Approx(g.sigma).epsilon(1e-14));
    REQUIRE((f.u - g.v).norm() <= 1e-14);
    REQUIRE((f.v - g.u).norm() <= 1e-14);
}

TEMPLATE_TEST_CASE("ridge_solve_right agrees with the reference ridge update", "[solvers][ridge]", float, double)
{
    using S = TestType;
    const Index p = 50, r = 8, q = 35;
    Matrix<double> X = gaussian(p, r, 1);
    for (Index k = 0; k < r; ++k) X.col(k).normalize();
    const Matrix<double> Y = gaussian(p, q, 2), Z = gaussian(r, q, 3), U = gaussian(r, q, 4);
    for (double rho : {0.0, 0.37, 0.9975}) {
        const Matrix<double> F = ridge_update_reference(X, Y, Z, U, rho, 3e-2, 1e-12);
        Matrix<S> K = (X.transpose() * X).cast<S>();
        Matrix<S> R = (X.transpose() * Y + rho * (Z - U)).transpose().cast<S>();
        const double lambda = ridge_solve_right<S>(K, R, rho, 3e-2, 1e-12);
        REQUIRE(lambda == Approx(rho + 3e-2).epsilon(1e-5));  // unit-norm regressors: mean diag K = 1
        const double tol = std::is_same<S, float>::value ? 1e-4 : 1e-10;
        REQUIRE((R.transpose().template cast<double>() - F).norm() <= tol * F.norm());
    }
}

TEST_CASE("rho schedules start at 0 and rise monotonically and stay below 1", "[solvers][schedule]")
{
    for (RhoSchedule s : {RhoSchedule::Linear, RhoSchedule::Cubic, RhoSchedule::Logistic, RhoSchedule::ExpDecay,
                          RhoSchedule::ExpGrowth}) {
        INFO(to_string(s));
        REQUIRE(rho_at(s, 0, 400) == Approx(0).margin(1e-12));
        double prev = -1;
        for (int t = 0; t < 400; ++t) {
            const double r = rho_at(s, t, 400);
            REQUIRE(r > prev);
            REQUIRE(r < 1.0);
            prev = r;
        }
        REQUIRE(parse_rho_schedule(to_string(s)) == s);
    }
    REQUIRE(rho_at(RhoSchedule::Linear, 399, 400) == Approx(0.9975));
    REQUIRE(rho_at(RhoSchedule::Cubic, 200, 400) == Approx(0.125));
    REQUIRE(parse_rho_schedule("exp_decay") == RhoSchedule::ExpDecay);
    REQUIRE_THROWS_WITH(parse_rho_schedule("quadratic"), Catch::Contains("unknown schedule 'quadratic'"));
    REQUIRE(parse_export_mode("three-scale") == ExportMode::ThreeScale);
    REQUIRE(parse_export_mode(to_string(ExportMode::TwoScale)) == ExportMode::TwoScale);
    REQUIRE_THROWS_WITH(parse_export_mode("four"), Catch::Contains("unknown export mode 'four'"));
    REQUIRE(std::string(to_string(SolverStatus::NumericalIssue)) == "numerical-issue");
}
