// SPDX-License-Identifier: Apache-2.0
// Packed-sign GEMV/GEMM against a dense Eigen float32 GEMV of the same shape, in the same run.
//
// Names: gemv/<path>/<M>x<N>/r<rank>/b<batch>/t<threads>/<cold|hot>, path = dense or
// <variant>-<f32|int8>. Counters: us (per call), speedup (dense µs / this µs, the dense case of the
// same shape/batch/threads/mode runs just before), Gsignadds_per_s (r·(m+n)·batch / time), and for
// batch > 1 gemv_us (single-token GEMV on the same path and pool, timed in the same benchmark) and
// batch_gain = batch · gemv_us / us (per-token throughput of the batched call over separate GEMVs).
// gemv/read-floor/<M>x<N>/r<rank>/t<threads>/<mode> reads the same pool's packed signs once per call
// (kernels::read_signs: the memory floor, as GB/s in bytes_per_second); the packed paths after it
// report floor = floor µs / this µs (1 = as fast as the memory delivers the signs).
// "cold" cycles through copies of the weights larger than twice the last-level cache (and at least
// 512 MiB dense, 256 MiB packed; kernels::cold_pool_bytes), as in decoding; "hot" reuses one copy.
//
// Default run (short): 4096x4096 at 1.0 and 0.55 bpw, 1 and 2 threads, batch 1 and 32, cold.
// NANOQUANT_BENCH_FULL=1: shapes 4096x4096, 11008x4096, 4096x11008, 14336x4096; 1.0/0.8/0.55 bpw;
// batch 1/8/32; threads 1/2; cold and hot.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "gemv_benchmark.hpp"  // bench/support: a harness, not part of the installed library

using namespace nanoquant;
using namespace nanoquant::kernels;

namespace {

struct Pools {
    Index m = 0, n = 0, r = 0;
    std::vector<PackedLayer> layers;
    std::vector<RowMajorMatrix<float>> dense;
    bool cold = true;
};

Pools& pools() { static Pools p; return p; }

/// Ensures the pools hold (m, n, r) weights for `cold`; rebuilt only when the case changes.
void prepare(Index m, Index n, Index r, bool cold)
{
    Pools& p = pools();
    if (p.m == m && p.n == n && p.cold == cold && !p.dense.empty() && (r == 0 || (p.r == r && !p.layers.empty())))
        return;
    if (!(p.m == m && p.n == n && p.cold == cold)) {
        p.dense.clear();
        p.dense.shrink_to_fit();
        const std::size_t bytes = std::size_t(m) * std::size_t(n) * 4;
        const std::size_t copies = cold ? std::max<std::size_t>(2, nanoquant::kernels::cold_pool_bytes(std::size_t(512) << 20) / bytes + 1) : 1;
        nanoquant::detail::Rng rng(11);
        p.dense.resize(copies);
        for (auto& W : p.dense) {
            W.resize(m, n);
            for (Index i = 0; i < W.size(); ++i) W.data()[i] = float(rng.uniform() - 0.5);
        }
        p.layers.clear();
        p.r = 0;
    }
    if (r != 0 && p.r != r) {
        p.layers.clear();
        const PackedLayer base = random_packed_layer(m, n, r, 12);
        const std::size_t copies =
            cold ? std::max<std::size_t>(2, nanoquant::kernels::cold_pool_bytes(std::size_t(256) << 20) / base.sign_bytes() + 1) : 1;
        p.layers.assign(copies, base);
        p.r = r;
    }
    p.m = m;
    p.n = n;
    p.cold = cold;
}

std::map<std::tuple<Index, Index, Index, int, bool>, double>& dense_us() { static std::map<std::tuple<Index, Index, Index, int, bool>, double> d; return d; }
/// Memory floor per (m, n, r, threads, cold).
std::map<std::tuple<Index, Index, Index, int, bool>, double>& floor_us() { static std::map<std::tuple<Index, Index, Index, int, bool>, double> d; return d; }

Matrix<float> inputs(Index n, Index batch)
{
    nanoquant::detail::Rng rng(13);
    Matrix<float> X(n, batch);
    for (Index i = 0; i < X.size(); ++i) X.data()[i] = float(rng.normal());
    return X;
}

void run_dense(benchmark::State& state, Index m, Index n, Index batch, int threads, bool cold)
{
    prepare(m, n, 0, cold);
    const Matrix<float> X = inputs(n, batch);
    Matrix<float> Y(m, batch);
    std::size_t i = 0;
    const auto& D = pools().dense;
    kernels::detail::dense_apply(D[0], X, Y, threads);
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) {
        kernels::detail::dense_apply(D[i++ % D.size()], X, Y, threads);
        benchmark::DoNotOptimize(Y.data());
    }
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
                      double(state.iterations());
    dense_us()[{m, n, batch, threads, cold}] = us;
    state.counters["us"] = us;
    state.counters["speedup"] = 1.0;
    state.SetBytesProcessed(std::int64_t(state.iterations()) * m * n * 4);
}

void run_floor(benchmark::State& state, Index m, Index n, Index r, int threads, bool cold)
{
    prepare(m, n, r, cold);
    const auto& Ls = pools().layers;
    std::size_t i = 0;
    std::uint64_t acc = read_signs(Ls[0], threads);
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) {
        acc ^= read_signs(Ls[i++ % Ls.size()], threads);
        benchmark::DoNotOptimize(acc);
    }
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
                      double(state.iterations());
    floor_us()[{m, n, r, threads, cold}] = us;
    state.counters["us"] = us;
    state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(Ls[0].sign_bytes()));
}

void run_packed(benchmark::State& state, Index m, Index n, Index r, Index batch, int threads, bool cold,
                KernelTarget target, Precision prec)
{
    prepare(m, n, r, cold);
    const Matrix<float> X = inputs(n, batch);
    Matrix<float> Y(m, batch);
    GemvOptions opt;
    opt.kernels = &kernel_table(target);
    opt.precision = prec;
    opt.num_threads = threads;
    const auto& Ls = pools().layers;
    std::size_t i = 0;
    gemm(Ls[0], X.data(), n, batch, Y.data(), m, opt);
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) {
        gemm(Ls[i++ % Ls.size()], X.data(), n, batch, Y.data(), m, opt);
        benchmark::DoNotOptimize(Y.data());
    }
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
                      double(state.iterations());
    state.counters["us"] = us;
    const auto it = dense_us().find({m, n, batch, threads, cold});
    if (it != dense_us().end()) state.counters["speedup"] = it->second / us;
    const auto fl = floor_us().find({m, n, r, threads, cold});
    if (fl != floor_us().end()) state.counters["floor"] = fl->second / us;
    state.counters["Gsignadds_per_s"] = double(r) * double(m + n) * double(batch) / (us * 1e3);
    if (batch > 1) {
        // Baseline of the batch: single-token GEMVs on the same path and pool, timed right here.
        const std::size_t calls = std::max<std::size_t>(20, std::size_t(state.iterations()));
        const auto g0 = std::chrono::steady_clock::now();
        for (std::size_t k = 0; k < calls; ++k) {
            gemm(Ls[i++ % Ls.size()], X.data(), n, 1, Y.data(), m, opt);
            benchmark::DoNotOptimize(Y.data());
        }
        const double gemv_us =
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - g0).count() / double(calls);
        state.counters["gemv_us"] = gemv_us;
        state.counters["batch_gain"] = double(batch) * gemv_us / us;  // per-token throughput over GEMVs
    }
    state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(Ls[0].sign_bytes()));
}

void register_all()
{
    const bool full = std::getenv("NANOQUANT_BENCH_FULL") && std::string(std::getenv("NANOQUANT_BENCH_FULL")) == "1";
    std::vector<std::pair<Index, Index>> shapes = {{4096, 4096}};
    std::vector<double> bpws = {1.0, 0.55};
    std::vector<Index> batches = {1, 32};
    std::vector<bool> modes = {true};
    if (full) {
        shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {14336, 4096}};
        bpws = {1.0, 0.8, 0.55};
        batches = {1, 8, 32};
        modes = {true, false};
    }
    std::vector<KernelTarget> targets;
    for (KernelTarget t : supported_targets())
        if (t != KernelTarget::Scalar) targets.push_back(t);
    for (auto [m, n] : shapes)
        for (bool cold : modes)
            for (Index batch : batches)
                for (int threads : {1, 2}) {
                    const std::string suffix = "/b" + std::to_string(batch) + "/t" + std::to_string(threads) +
                                               (cold ? "/cold" : "/hot");
                    const std::string shape = std::to_string(m) + "x" + std::to_string(n);
                    benchmark::RegisterBenchmark(("gemv/dense/" + shape + suffix).c_str(), run_dense, m, n, batch,
                                                 threads, cold)
                        ->UseRealTime()
                        ->Unit(benchmark::kMicrosecond)
                        ->MinTime(0.2);
                    for (double bpw : bpws) {
                        const Index r = rank_for_bpw(m, n, bpw);
                        if (batch == 1)
                            benchmark::RegisterBenchmark(("gemv/read-floor/" + shape + "/r" + std::to_string(r) +
                                                          "/t" + std::to_string(threads) + (cold ? "/cold" : "/hot"))
                                                             .c_str(),
                                                         run_floor, m, n, r, threads, cold)
                                ->UseRealTime()
                                ->Unit(benchmark::kMicrosecond)
                                ->MinTime(0.2);
                        for (KernelTarget t : targets)
                            for (Precision p : {Precision::Float32, Precision::Int8}) {
                                // at batch > 1 only the best target's kernels; each kernel under its owner's name
                                if (batch > 1 && t != kernel_owner(targets.back(), p, true)) continue;
                                if (kernel_owner(t, p, batch > 1) != t) continue;
                                const std::string name = std::string("gemv/") + target_name(t) +
                                                         (p == Precision::Float32 ? "-f32/" : "-int8/") + shape +
                                                         "/r" + std::to_string(r) + suffix;
                                benchmark::RegisterBenchmark(name.c_str(), run_packed, m, n, r, batch, threads, cold,
                                                             t, p)
                                    ->UseRealTime()
                                    ->Unit(benchmark::kMicrosecond)
                                    ->MinTime(0.2);
                            }
                    }
                }
}

}  // namespace

int main(int argc, char** argv)
{
    register_all();
    benchmark::Initialize(&argc, argv);
    benchmark::AddCustomContext("kernel_target", kernel_target_name());
#ifdef _OPENMP
    benchmark::AddCustomContext("openmp_max_threads", std::to_string(omp_get_max_threads()));
#endif
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
