// SPDX-License-Identifier: Apache-2.0
#include <array>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <nanoquant/solvers/admm_solver.hpp>
#include "random_matrices.hpp"  // tests/support

using namespace nanoquant;
using testing::gaussian;

namespace {
/// W = diag(s_out)·U·Vᵀ·diag(s_in) with random signs and positive scales in [0.5, 1.5].
template <typename S>
Matrix<S> planted(Index m, Index n, Index r, std::uint64_t seed)
{
    detail::Rng rng(seed);
    Matrix<S> U(m, r), Vt(r, n);
    for (Index k = 0; k < r; ++k)
        for (Index i = 0; i < m; ++i) U(i, k) = rng.uniform() < 0.5 ? S(-1) : S(1);
    for (Index j = 0; j < n; ++j)
        for (Index k = 0; k < r; ++k) Vt(k, j) = rng.uniform() < 0.5 ? S(-1) : S(1);
    Vector<S> so(m), si(n);
    for (Index i = 0; i < m; ++i) so(i) = S(0.5 + rng.uniform());
    for (Index j = 0; j < n; ++j) si(j) = S(0.5 + rng.uniform());
    return so.asDiagonal() * U * Vt * si.asDiagonal();
}

template <typename S>
AdmmOptions<S> small_options(Index rank, int iters = 100)
{
    AdmmOptions<S> o;
    o.rank = rank;
    o.iterations = iters;
    o.num_threads = 1;
    return o;
}
}  // namespace

TEMPLATE_TEST_CASE("a planted sign x scale factorization is recovered", "[solvers][admm]", float, double)
{
    using S = TestType;
    const Index m = 96, n = 64, r = 4;
    const Matrix<S> W = planted<S>(m, n, r, 17);
    // The best of a few seeds must reach the bound (ADMM on a nonconvex set is seed-dependent).
    double best = 1;
    for (std::uint64_t seed = 0; seed < 4; ++seed) {
        auto o = small_options<S>(r, 200);
        o.seed = seed;
        o.export_mode = ExportMode::ThreeScale;
        o.refit_scales = true;
        const auto res = AdmmSolver<S>(o).solve(W);
        INFO("seed " << seed << " status " << to_string(res.status) << " err " << res.relative_error);
        REQUIRE(res.ok());
        best = std::min(best, res.relative_error);
    }
    INFO("best relative error " << best);
    REQUIRE(best < 0.05);
}

TEMPLATE_TEST_CASE("result fields are consistent with the exported factorization", "[solvers][admm]", float, double)
{
    using S = TestType;
    const Matrix<S> W = gaussian<S>(40, 30, 1);
    auto o = small_options<S>(8, 30);
    o.trace_every = 7;
    const auto res = AdmmSolver<S>(o).solve(W);
    REQUIRE(res.status == SolverStatus::MaxIterations);
    REQUIRE(res.ok());
    REQUIRE_FALSE(res.converged());
    REQUIRE(res.iterations == 30);
    REQUIRE(res.factorization.rows() == 40);
    REQUIRE(res.factorization.cols() == 30);
    REQUIRE(res.factorization.rank() == 8);
    REQUIRE_FALSE(res.factorization.has_mid_scale());
    REQUIRE(res.relative_error == Approx(relative_error<S>(W, res.factorization)).epsilon(1e-4));
    REQUIRE(res.weighted_relative_error == Approx(res.relative_error).epsilon(1e-12));
    // Trace every 7 iterations plus the last one: 7, 14, 21, 28, 30.
    REQUIRE(res.trace.size() == 5);
    REQUIRE(res.trace.back().iteration == 30);
    REQUIRE(res.trace.front().iteration == 7);
    REQUIRE(res.trace.back().primal_residual == Approx(res.primal_residual));
    REQUIRE(res.trace.back().rho == Approx(29.0 / 30.0));
    for (const auto& rec : res.trace) {
        REQUIRE(rec.objective > 0);
        REQUIRE(rec.objective < 1.5);
        REQUIRE(rec.seconds >= 0);
    }
}

TEST_CASE("the trace objective equals the directly computed normalized error", "[solvers][admm]")
{
    // The trace's objective of iteration t is ‖W̃ − A_z·D_b·B_zᵀ‖²/‖W̃‖² of that iteration's Z
    // (D_b = diag(1/‖B_z column‖)), computed by the solver from Gram matrices. At rank 1 with identity
    // importance (W̃ = W) the two-scale export of the final Z is Ŵ = A_z·B_zᵀ/‖A_z‖ with ‖s_out‖ = β =
    // sqrt(‖B_z‖/‖A_z‖), so the model of the objective is Ŵ/‖s_out‖²: its error, computed directly
    // in double, must equal the trace's last value. A wide W (solved transposed) and a tall one.
    for (auto [m, n, iters] : {std::array<int, 3>{50, 40, 30}, std::array<int, 3>{30, 70, 7}}) {
        const Matrix<double> W = gaussian<double>(m, n, 2);
        auto o = small_options<double>(1, iters);
        o.trace_every = 1;
        const auto res = AdmmSolver<double>(o).solve(W);
        REQUIRE(res.trace.size() == std::size_t(iters));
        REQUIRE(res.trace.back().iteration == iters);
        const auto& f = res.factorization;
        // a wide W is solved as Wᵀ: the solver's s_out is the exported s_in
        const double beta2 = (m < n ? f.s_in : f.s_out).squaredNorm();
        const Matrix<double> model = f.reconstruct() / beta2;
        const double direct = (W - model).squaredNorm() / W.squaredNorm();
        INFO(m << "x" << n << ": trace " << res.trace.back().objective << ", direct " << direct);
        REQUIRE(std::abs(res.trace.back().objective - direct) <= 1e-10);
        REQUIRE(direct > 0.1);  // a real error, not a degenerate 0 = 0
    }
}

TEMPLATE_TEST_CASE("a seed reproduces the result exactly and another seed differs", "[solvers][admm]", float, double)
{
    using S = TestType;
    const Matrix<S> W = gaussian<S>(70, 50, 3);
    for (int threads : {1, 2}) {
        auto o = small_options<S>(16, 25);
        o.num_threads = threads;
        o.seed = 42;
        const auto a = AdmmSolver<S>(o).solve(W);
        const auto b = AdmmSolver<S>(o).solve(W);
        REQUIRE(a.factorization.u == b.factorization.u);
        REQUIRE(a.factorization.vt == b.factorization.vt);
        REQUIRE(a.factorization.s_out == b.factorization.s_out);
        REQUIRE(a.factorization.s_in == b.factorization.s_in);
        REQUIRE(a.relative_error == b.relative_error);
        o.seed = 43;
        const auto c = AdmmSolver<S>(o).solve(W);
        REQUIRE(c.factorization.u != a.factorization.u);
    }
}

TEST_CASE("transpose rule: a wide W is solved as its transpose", "[solvers][admm]")
{
    const Matrix<double> W = gaussian<double>(30, 70, 4);
    const Vector<double> imp_in = gaussian<double>(70, 1, 5).cwiseAbs().array() + 0.1;
    const Vector<double> imp_out = gaussian<double>(30, 1, 6).cwiseAbs().array() + 0.1;
    for (ExportMode mode : {ExportMode::TwoScale, ExportMode::ThreeScale}) {
        auto o = small_options<double>(12, 40);
        o.export_mode = mode;
        o.keep_latents = true;
        const auto wide = AdmmSolver<double>(o).solve(W, imp_in, imp_out);
        const Matrix<double> Wt = W.transpose();
        const auto tall = AdmmSolver<double>(o).solve(Wt, imp_out, imp_in);
        // Same problem, same draws: the wide result is exactly the transposed tall one.
        REQUIRE(wide.factorization.u == tall.factorization.vt.transposed());
        REQUIRE(wide.factorization.vt == tall.factorization.u.transposed());
        REQUIRE(wide.factorization.s_out == tall.factorization.s_in);
        REQUIRE(wide.factorization.s_in == tall.factorization.s_out);
        REQUIRE(wide.factorization.s_mid == tall.factorization.s_mid);
        REQUIRE(wide.weighted_relative_error == Approx(tall.weighted_relative_error).epsilon(1e-12));
        REQUIRE(wide.u_latent.rows() == 30);
        REQUIRE(wide.u_latent.cols() == 12);
        REQUIRE(wide.vt_latent.rows() == 12);
        REQUIRE(wide.vt_latent.cols() == 70);
        REQUIRE(wide.u_latent == tall.vt_latent.transpose());
        // sign(latent) = exported sign.
        REQUIRE(PackedSignMatrix::pack(wide.u_latent) == wide.factorization.u);
        REQUIRE(PackedSignMatrix::pack(wide.vt_latent) == wide.factorization.vt);
    }
}

TEST_CASE("bad input gives clear errors", "[solvers][admm][errors]")
{
    auto o = small_options<float>(4, 5);
    const AdmmSolver<float> solver(o);
    Matrix<float> W = gaussian<float>(10, 8, 7);
    Matrix<float> bad = W;
    bad(3, 2) = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_AS(solver.solve(bad), invalid_argument);
    REQUIRE_THROWS_WITH(solver.solve(bad), Catch::Contains("AdmmSolver::solve") && Catch::Contains("W has 1 non-finite value") &&
                                               Catch::Contains("row 3, col 2"));
    bad(3, 2) = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(solver.solve(bad), Catch::Contains("non-finite") && Catch::Contains("inf"));
    REQUIRE_THROWS_WITH(solver.solve(Matrix<float>(0, 8)), Catch::Contains("W must be non-empty, got 0x8"));
    REQUIRE_THROWS_WITH(solver.solve(Matrix<float>(8, 0)), Catch::Contains("W must be non-empty, got 8x0"));
    // 1×1: rank 4 > min(m, n) = 1; rank 1 works.
    REQUIRE_THROWS_WITH(solver.solve(Matrix<float>::Ones(1, 1)),
                        Catch::Contains("rank must be in [1, min(m, n)] = [1, 1]") && Catch::Contains("got 4"));
    auto o1 = small_options<float>(1, 5);
    const auto one = AdmmSolver<float>(o1).solve(Matrix<float>::Constant(1, 1, -2.5f));
    REQUIRE(one.ok());
    REQUIRE(std::isfinite(one.relative_error));
    // The Jacobi updates never change the sign of a 1x1 product sign(A_z)·B_z, so the two-scale
    // result may carry the wrong sign; the three-scale export with refit fits it exactly.
    o1.export_mode = ExportMode::ThreeScale;
    o1.refit_scales = true;
    const auto one3 = AdmmSolver<float>(o1).solve(Matrix<float>::Constant(1, 1, -2.5f));
    REQUIRE(one3.relative_error < 1e-5);
    // rank 0 and rank > min(m, n).
    auto o0 = small_options<float>(0);
    REQUIRE_THROWS_WITH(AdmmSolver<float>(o0), Catch::Contains("rank must be >= 1") && Catch::Contains("got 0"));
    auto o9 = small_options<float>(9);
    REQUIRE_THROWS_WITH(AdmmSolver<float>(o9).solve(W), Catch::Contains("[1, 8]") && Catch::Contains("got 9"));
    // Bad options, each naming the field and the value.
    auto check = [](AdmmOptions<float> opt, const char* text) {
        INFO(text);
        REQUIRE_THROWS_AS(AdmmSolver<float>(opt), invalid_argument);
        REQUIRE_THROWS_WITH(AdmmSolver<float>(opt), Catch::Contains(text));
    };
    auto b = o;
    b.iterations = -1;
    check(b, "iterations must be >= 0, got -1");
    b = o;
    b.power_iterations = 0;
    check(b, "power_iterations must be >= 1, got 0");
    b = o;
    b.reg = -1;
    check(b, "reg must be finite and >= 0, got -1");
    b = o;
    b.eps = 0;
    check(b, "eps must be finite and > 0, got 0");
    b = o;
    b.tolerance = std::nan("");
    check(b, "tolerance must be finite and >= 0, got nan");
    b = o;
    b.num_threads = -2;
    check(b, "num_threads must be >= 0, got -2");
    b = o;
    b.trace_every = -1;
    check(b, "trace_every must be >= 0, got -1");
    b = o;
    b.refit_max_rounds = 0;
    check(b, "refit_max_rounds must be >= 1, got 0");
    b = o;
    b.schedule = static_cast<RhoSchedule>(17);
    check(b, "schedule has no valid value (17)");
    // Importance vectors: wrong size, non-positive.
    REQUIRE_THROWS_WITH(solver.solve(W, Vector<float>::Ones(7), Vector<float>::Ones(10)),
                        Catch::Contains("importance_in must be 8x1, got 7x1"));
    Vector<float> imp = Vector<float>::Ones(10);
    imp(4) = 0;
    REQUIRE_THROWS_WITH(solver.solve(W, Vector<float>::Ones(8), imp),
                        Catch::Contains("importance_out(4) = 0") && Catch::Contains("must be finite and > 0"));
}

TEST_CASE("a NaN during the iterations stops with NumericalIssue and empty factors", "[solvers][admm][errors]")
{
    // Finite but huge: W̃·B overflows float to inf, then inf − inf = NaN.
    const Matrix<float> W = Matrix<float>::Constant(20, 10, 3e38f);
    auto o = small_options<float>(4, 10);
    o.trace_every = 1;
    const auto res = AdmmSolver<float>(o).solve(W);
    REQUIRE(res.status == SolverStatus::NumericalIssue);
    REQUIRE_FALSE(res.ok());
    REQUIRE(res.factorization.rows() == 0);
    REQUIRE(res.factorization.rank() == 0);
    REQUIRE(std::isnan(res.relative_error));
    REQUIRE_THROWS_AS(res.throw_if_failed(), numerical_error);
    REQUIRE_THROWS_WITH(res.throw_if_failed(), Catch::Contains("numerical-issue"));
}

TEST_CASE("callback can stop the solve and tolerance stops with Converged", "[solvers][admm]")
{
    const Matrix<double> W = planted<double>(96, 64, 4, 17);
    auto o = small_options<double>(4, 300);
    int calls = 0;
    o.callback = [&](const IterationRecord& r) {
        ++calls;
        return r.iteration < 10;
    };
    const auto stopped = AdmmSolver<double>(o).solve(W);
    REQUIRE(stopped.status == SolverStatus::Stalled);
    REQUIRE(stopped.ok());
    REQUIRE(calls == 10);
    REQUIRE(stopped.iterations == 10);
    REQUIRE(stopped.factorization.rank() == 4);

    // The Z iterates settle as ρ approaches 1; a loose tolerance stops a little before the end.
    const Matrix<double> G = gaussian<double>(70, 50, 3);
    auto t = small_options<double>(16, 300);
    t.tolerance = 3e-2;
    const auto conv = AdmmSolver<double>(t).solve(G);
    INFO("iterations " << conv.iterations << " status " << to_string(conv.status));
    REQUIRE(conv.status == SolverStatus::Converged);
    REQUIRE(conv.converged());
    REQUIRE(conv.iterations < 300);
}

TEST_CASE("iterations = 0 exports the projected random start", "[solvers][admm]")
{
    const Matrix<double> W = gaussian<double>(12, 9, 10);
    auto o = small_options<double>(3, 0);
    const auto res = AdmmSolver<double>(o).solve(W);
    REQUIRE(res.ok());
    REQUIRE(res.iterations == 0);
    REQUIRE(res.factorization.rank() == 3);
}

TEST_CASE("a solve leaves Eigen's process-wide thread count as it found it", "[solvers][admm]")
{
    // The caller's setting is made different from every num_threads the solves ask for (1, 2, all),
    // so a solve that set its own count and did not restore the caller's would be seen.
#ifndef _OPENMP
    SUCCEED("built without OpenMP: Eigen runs on one thread and has no setting to change");
    return;
#endif
    const int original = Eigen::nbThreads();
    for (int caller : {3, 5}) {
        Eigen::setNbThreads(caller);
        REQUIRE(Eigen::nbThreads() == caller);
        for (int threads : {1, 2, 0}) {
            auto o = small_options<double>(3, 3);
            o.num_threads = threads;
            AdmmSolver<double>(o).solve(gaussian<double>(10, 10, 1));
            INFO("caller " << caller << " solve num_threads " << threads);
            REQUIRE(Eigen::nbThreads() == caller);
        }
    }
    Eigen::setNbThreads(original);
}

TEST_CASE("a solve leaves Eigen's and OpenMP's thread settings untouched", "[solvers][admm][threads]")
{
    const int eigen_before = Eigen::nbThreads();
#ifdef _OPENMP
    const int omp_before = omp_get_max_threads();
#endif
    for (const int nt : {1, 2, 3}) {
        auto o = small_options<double>(3, 3);
        o.num_threads = nt;
        AdmmSolver<double>(o).solve(gaussian<double>(40, 30, 1));
        REQUIRE(Eigen::nbThreads() == eigen_before);
#ifdef _OPENMP
        REQUIRE(omp_get_max_threads() == omp_before);
#endif
    }
}

TEST_CASE("solves on two std::threads with different thread counts give their own results", "[solvers][admm][threads]")
{
    // Large enough that the products and loops of a solve really split (p·q > 32768, GEMM sizes
    // over Eigen's parallel threshold), so a shared setting would change the arithmetic.
    const Matrix<float> W = gaussian<float>(300, 200, 5);
    auto options = [](int nt) {
        AdmmOptions<float> o;
        o.rank = 64;
        o.iterations = 12;
        o.seed = 3;
        o.num_threads = nt;
        o.sign_products = SignProducts::Dense;  // Eigen's GEMM path, the one a global setting steers
        return o;
    };
    const AdmmResult<float> alone1 = AdmmSolver<float>(options(1)).solve(W);
    const AdmmResult<float> alone3 = AdmmSolver<float>(options(3)).solve(W);
    for (int round = 0; round < 3; ++round) {
        AdmmResult<float> r1, r3;
        std::thread a([&] { r1 = AdmmSolver<float>(options(1)).solve(W); });
        std::thread b([&] { r3 = AdmmSolver<float>(options(3)).solve(W); });
        a.join();
        b.join();
        REQUIRE(r1.factorization.reconstruct() == alone1.factorization.reconstruct());
        REQUIRE(r3.factorization.reconstruct() == alone3.factorization.reconstruct());
        REQUIRE(r1.relative_error == alone1.relative_error);
        REQUIRE(r3.relative_error == alone3.relative_error);
    }
}
