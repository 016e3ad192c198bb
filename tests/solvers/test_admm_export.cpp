// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <nanoquant/solvers/admm_solver.hpp>
#include "random_matrices.hpp"  // tests/support

using namespace nanoquant;
using testing::gaussian;

namespace {
template <typename S>
Vector<S> positive(Index n, std::uint64_t seed)
{
    detail::Rng rng(seed);
    Vector<S> v(n);
    for (Index i = 0; i < n; ++i) v(i) = S(0.2 + 2.0 * rng.uniform());
    return v;
}

/// A_z, B_z in the SVID set, as the solver's Z iterates are.
template <typename S>
std::pair<Matrix<S>, Matrix<S>> svid_pair(Index m, Index n, Index r, std::uint64_t seed)
{
    detail::Rng rng(seed);
    Matrix<S> Az, Bz;
    svid_projection<S>(gaussian<S>(m, r, seed + 1), Az, 5, rng);
    svid_projection<S>(gaussian<S>(r, n, seed + 2), Bz, 5, rng);
    return {Az, Bz};
}
}  // namespace

TEMPLATE_TEST_CASE("three-scale export is lossless w.r.t. the ADMM model", "[solvers][export]", float, double)
{
    using S = TestType;
    const Index m = 37, n = 23, r = 9;
    const auto z = svid_pair<S>(m, n, r, 3);
    const Vector<S> o = positive<S>(m, 4), i = positive<S>(n, 5);
    const Factorization<S> f = export_three_scale<S>(z.first, z.second, o, i);
    REQUIRE(f.has_mid_scale());
    // The model: diag(1/√o) A_z diag(1/‖A_z[:,k]‖) B_z diag(1/√i), in double.
    const Matrix<double> A = z.first.template cast<double>(), B = z.second.template cast<double>();
    const Vector<double> ca = A.colwise().norm().transpose();
    const Matrix<double> M = o.template cast<double>().cwiseSqrt().cwiseInverse().asDiagonal() * A *
                             ca.cwiseInverse().asDiagonal() * B *
                             i.template cast<double>().cwiseSqrt().cwiseInverse().asDiagonal();
    const Matrix<double> What = f.reconstruct().template cast<double>();
    const double tol = std::is_same<S, float>::value ? 2e-6 : 1e-13;
    REQUIRE((What - M).norm() <= tol * M.norm());
    // s_out and s_in are normalized to unit RMS.
    REQUIRE(f.s_out.template cast<double>().norm() / std::sqrt(double(m)) == Approx(1.0).epsilon(1e-5));
    REQUIRE(f.s_in.template cast<double>().norm() / std::sqrt(double(n)) == Approx(1.0).epsilon(1e-5));
}

TEMPLATE_TEST_CASE("two-scale export follows the reference formulas", "[solvers][export]", float, double)
{
    using S = TestType;
    const Index m = 19, n = 14, r = 6;
    const auto z = svid_pair<S>(m, n, r, 7);
    const Vector<S> o = positive<S>(m, 8), i = positive<S>(n, 9);
    const Factorization<S> f = export_two_scale<S>(z.first, z.second, o, i);
    REQUIRE_FALSE(f.has_mid_scale());
    // Plain transcription of the reference export (method digest §1.2), in double.
    Matrix<double> A(m, r), B(r, n);
    for (Index k = 0; k < r; ++k)
        for (Index a = 0; a < m; ++a) A(a, k) = double(z.first(a, k)) / std::sqrt(double(o(a)));
    for (Index j = 0; j < n; ++j)
        for (Index k = 0; k < r; ++k) B(k, j) = double(z.second(k, j)) / std::sqrt(double(i(j)));
    const double beta = std::sqrt(B.norm() / A.norm());
    A *= beta;
    B /= beta;
    Matrix<double> Af(m, r);
    for (Index k = 0; k < r; ++k) Af.col(k) = A.col(k) / z.first.col(k).template cast<double>().norm();
    for (Index j = 0; j < n; ++j) {
        double s = 0;
        for (Index k = 0; k < r; ++k) {
            s += std::abs(B(k, j));
            REQUIRE(f.vt.sign(k, j) == (B(k, j) >= 0 ? 1 : -1));
        }
        REQUIRE(double(f.s_in(j)) == Approx(s / r).epsilon(1e-5));
    }
    for (Index a = 0; a < m; ++a) {
        double s = 0;
        for (Index k = 0; k < r; ++k) {
            s += std::abs(Af(a, k));
            REQUIRE(f.u.sign(a, k) == (Af(a, k) >= 0 ? 1 : -1));
        }
        REQUIRE(double(f.s_out(a)) == Approx(s / r).epsilon(1e-5));
    }
}

TEST_CASE("export rejects mismatched shapes", "[solvers][export][errors]")
{
    const Matrix<double> A = gaussian<double>(5, 3, 1), B = gaussian<double>(4, 6, 2);
    REQUIRE_THROWS_WITH(export_two_scale<double>(A, B, Vector<double>::Ones(5), Vector<double>::Ones(6)),
                        Catch::Contains("A_z is 5x3 but B_z is 4x6"));
    const Matrix<double> B3 = gaussian<double>(3, 6, 2);
    REQUIRE_THROWS_WITH(export_three_scale<double>(A, B3, Vector<double>::Ones(4), Vector<double>::Ones(6)),
                        Catch::Contains("importance_out must be 5x1, got 4x1"));
}

TEMPLATE_TEST_CASE("factorization_errors agrees with relative_error", "[solvers][refit]", float, double)
{
    using S = TestType;
    const Matrix<S> W = gaussian<S>(300, 270, 1);  // > one 256-column block
    const auto z = svid_pair<S>(300, 270, 5, 2);
    const Factorization<S> f = export_three_scale<S>(z.first, z.second, Vector<S>::Ones(300), Vector<S>::Ones(270));
    const auto e = factorization_errors<S>(W, f, Vector<S>::Ones(270), Vector<S>::Ones(300));
    REQUIRE(e.relative == Approx(relative_error<S>(W, f)).epsilon(1e-5));
    REQUIRE(e.weighted == Approx(e.relative).epsilon(1e-12));
}

TEMPLATE_TEST_CASE("scale refit never raises the weighted error and recovers planted scales", "[solvers][refit]",
                   float, double)
{
    using S = TestType;
    const Index m = 40, n = 30, r = 6;
    for (bool mid : {false, true}) {
        for (std::uint64_t seed = 0; seed < 4; ++seed) {
            const auto z = svid_pair<S>(m, n, r, 10 + seed);
            const Vector<S> o = positive<S>(m, 20 + seed), i = positive<S>(n, 30 + seed);
            Factorization<S> f = mid ? export_three_scale<S>(z.first, z.second, o, i)
                                     : export_two_scale<S>(z.first, z.second, o, i);
            const Matrix<S> W = gaussian<S>(m, n, 40 + seed);
            const double before = factorization_errors<S>(W, f, i, o).weighted;
            const double after = refit_scales<S>(W, f, i, o, 10, 0.0);
            INFO("mid " << mid << " seed " << seed << " before " << before << " after " << after);
            REQUIRE(after <= before);
            REQUIRE(after == Approx(factorization_errors<S>(W, f, i, o).weighted).epsilon(1e-6));
        }
        // Planted: W is exactly a factorization; refit from wrong scales must approach it.
        const auto z = svid_pair<S>(m, n, r, 50);
        Factorization<S> truth = export_three_scale<S>(z.first, z.second, Vector<S>::Ones(m), Vector<S>::Ones(n));
        if (!mid) truth.s_mid.resize(0);
        const Matrix<S> W = truth.reconstruct();
        Factorization<S> f = truth;
        f.s_out.setOnes();
        f.s_in.setOnes();
        if (mid) f.s_mid.setOnes();
        const double after = refit_scales<S>(W, f, Vector<S>::Ones(n), Vector<S>::Ones(m), 200, 0.0);
        INFO("planted mid " << mid << " after " << after);
        REQUIRE(after < 0.02);
    }
}

TEST_CASE("refit_scales rejects bad arguments", "[solvers][refit][errors]")
{
    const auto z = svid_pair<double>(6, 5, 2, 1);
    Factorization<double> f = export_two_scale<double>(z.first, z.second, Vector<double>::Ones(6), Vector<double>::Ones(5));
    const Matrix<double> W = gaussian<double>(6, 5, 2);
    REQUIRE_THROWS_WITH(refit_scales<double>(W, f, Vector<double>::Ones(5), Vector<double>::Ones(6), 0, 0.0),
                        Catch::Contains("max_rounds must be >= 1, got 0"));
    REQUIRE_THROWS_WITH(refit_scales<double>(W, f, Vector<double>::Ones(4), Vector<double>::Ones(6), 3, 0.0),
                        Catch::Contains("importance_in must be 5x1, got 4x1"));
    const Matrix<double> W2 = gaussian<double>(7, 5, 2);
    REQUIRE_THROWS_WITH(refit_scales<double>(W2, f, Vector<double>::Ones(5), Vector<double>::Ones(7), 3, 0.0),
                        Catch::Contains("W must be 6x5, got 7x5"));
}
