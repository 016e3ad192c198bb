// SPDX-License-Identifier: Apache-2.0
// One ADMM iteration of nanoquant::AdmmSolver<float> at the sizes of issue 2 (1024² r=480,
// 4096² r=2016), next to Eigen's own SGEMM measured in the same process with the same thread
// count. Counters:
//   ms_per_iter     wall time of one iteration (from the solver's trace, setup and export excluded)
//   GFLOPs          (4·m·n·r + 4·(m+n)·r²) / time   (the nominal operation count)
//   sgemm_GFLOPs    Eigen SGEMM (m×n)·(n×r), same threads, measured right before
//   ratio           GFLOPs / sgemm_GFLOPs
// Each size runs twice, with the products W̃·B_z, W̃ᵀ·A_z by SGEMM (`dense`, the baseline) and by
// the packed-sign kernels (`packed`, AdmmOptions::sign_products; the default for float on AVX-512).
// Run: build/bench/bench_admm --benchmark_filter=admm   (args: m, n, r, threads, packed)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>

#include <nanoquant/solvers/admm_solver.hpp>
#include "random_matrices.hpp"  // tests/support

using namespace nanoquant;

namespace {

/// Best-of-reps GFLOP/s of Eigen's SGEMM C = A·B (m×n times n×r) with `threads` threads.
double sgemm_gflops(const Matrix<float>& A, Index r, int threads)
{
    // A benchmark program may set Eigen's process-wide thread count (the library never does).
    const int previous = Eigen::nbThreads();
    Eigen::setNbThreads(resolve_num_threads(threads));
    struct Restore { int n; ~Restore() { Eigen::setNbThreads(n); } } restore{previous};
    const Matrix<float> B = testing::gaussian<float>(A.cols(), r, 7);
    Matrix<float> C(A.rows(), r);
    C.noalias() = A * B;  // warm-up
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        C.noalias() = A * B;
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        benchmark::DoNotOptimize(C.data());
    }
    return 2.0 * double(A.rows()) * double(A.cols()) * double(r) / best * 1e-9;
}

void admm_iteration(benchmark::State& state)
{
    const Index m = state.range(0), n = state.range(1), r = state.range(2);
    const int threads = int(state.range(3));
    const Matrix<float> W = testing::gaussian<float>(m, n, 1);
    const double gemm = sgemm_gflops(W, r, threads);
    // Iterations timed per solve: the trace gives the time at the end of each iteration.
    const int timed = m >= 4096 ? 2 : 10;
    AdmmOptions<float> opts;
    opts.rank = r;
    opts.iterations = timed + 1;
    opts.num_threads = threads;
    opts.trace_every = 1;
    opts.sign_products = state.range(4) ? SignProducts::Packed : SignProducts::Dense;
    const AdmmSolver<float> solver(opts);
    double total = 0;
    long iters = 0;
    for (auto _ : state) {
        const auto res = solver.solve(W);
        if (!res.ok() || res.trace.size() < std::size_t(timed + 1)) {
            state.SkipWithError("solve failed");
            return;
        }
        // Iteration 1 (ρ = 0, cold caches) is excluded.
        const double sec = (res.trace[std::size_t(timed)].seconds - res.trace[0].seconds) / timed;
        state.SetIterationTime(sec);
        total += sec;
        ++iters;
    }
    const double per = total / double(std::max(1L, iters));
    const double flops = 4.0 * double(m) * double(n) * double(r) + 4.0 * double(m + n) * double(r) * double(r);
    state.counters["ms_per_iter"] = per * 1e3;
    state.counters["GFLOPs"] = flops / per * 1e-9;
    state.counters["sgemm_GFLOPs"] = gemm;
    state.counters["ratio"] = flops / per * 1e-9 / gemm;
}

}  // namespace

BENCHMARK(admm_iteration)
    ->Name("admm/float/1024x1024/r480/threads:2/dense")
    ->Args({1024, 1024, 480, 2, 0})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK(admm_iteration)
    ->Name("admm/float/1024x1024/r480/threads:2/packed")
    ->Args({1024, 1024, 480, 2, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK(admm_iteration)
    ->Name("admm/float/4096x4096/r2016/threads:2/dense")
    ->Args({4096, 4096, 2016, 2, 0})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK(admm_iteration)
    ->Name("admm/float/4096x4096/r2016/threads:2/packed")
    ->Args({4096, 4096, 2016, 2, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK(admm_iteration)
    ->Name("admm/float/1536x512/r352/threads:2/dense")
    ->Args({1536, 512, 352, 2, 0})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK(admm_iteration)
    ->Name("admm/float/1536x512/r352/threads:2/packed")
    ->Args({1536, 512, 352, 2, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

int main(int argc, char** argv)
{
    benchmark::Initialize(&argc, argv);
#ifdef __AVX512F__
    benchmark::AddCustomContext("eigen_simd", "avx512");
#elif defined(__AVX2__) && defined(__FMA__)
    benchmark::AddCustomContext("eigen_simd", "avx2+fma");
#else
    benchmark::AddCustomContext("eigen_simd", "sse (build with NANOQUANT_NATIVE=ON for AVX)");
#endif
    benchmark::AddCustomContext("threads", "2 (per benchmark name)");
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
