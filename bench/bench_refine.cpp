// SPDX-License-Identifier: Apache-2.0
// Speed of layer reconstruction: one epoch of STE + Adam tuning of a 4096×4096 layer at 1.0 bpw
// (rank 2016) on 4096 calibration tokens, next to the float GEMM rate measured in the same run.
//
// One epoch = T/B Adam steps, each six GEMMs of B·r·n multiply-adds (m = n), i.e. 12·T·r·n flops per
// epoch; refine/epoch reports that count as a rate ("flop_rate") so it can be read against
// gemm/... ("flop_rate" of a plain Eigen float GEMM with the same inner shapes).
//   build/bench/bench_refine --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/refine/layer_reconstruction.hpp>
#include "synthetic.hpp"  // tests/support: synthetic data, not part of the installed library
#include "random_matrices.hpp"  // tests/support

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace nanoquant;

namespace {

constexpr Index kN = 4096, kTokens = 4096;

void BM_gemm(benchmark::State& state)
{
    // The shape of the largest GEMMs of a step: (B×n)·(n×r) with B = batch tokens.
    const Index B = state.range(0), r = rank_for_bpw(kN, kN, 1.0);
    const Matrix<float> A = testing::gaussian<float>(B, kN, 1), Bm = testing::gaussian<float>(kN, r, 2);
    Matrix<float> C(B, r);
    for (auto _ : state) {
        C.noalias() = A * Bm;
        benchmark::DoNotOptimize(C.data());
    }
    state.counters["flop_rate"] = benchmark::Counter(2.0 * double(B) * double(kN) * double(r),
                                                     benchmark::Counter::kIsIterationInvariantRate);
#ifdef _OPENMP
    state.counters["threads"] = omp_get_max_threads();
#endif
}

void BM_reconstruction_epoch(benchmark::State& state)
{
    const Index r = rank_for_bpw(kN, kN, 1.0);  // 2016
    LayerParams<float> p;
    p.u = testing::gaussian<float>(kN, r, 3);
    p.vt = testing::gaussian<float>(r, kN, 4);
    p.s_out = Vector<float>::Constant(kN, 0.01f);
    p.s_in = Vector<float>::Constant(kN, 0.01f);
    OutlierActivationOptions ao;
    ao.seed = 5;
    const Matrix<float> X = make_outlier_activations<float>(kTokens, kN, ao);
    const Matrix<float> Y = testing::gaussian<float>(kTokens, kN, 6);
    LayerReconstructionOptions o;
    o.epochs = 1;
    o.batch_size = state.range(0);
    o.keep_best = false;
    for (auto _ : state) {
        const auto res = reconstruct_layer<float>(p, X, Y, o);
        state.SetIterationTime(res.train_seconds);
        benchmark::DoNotOptimize(res.loss_after);
    }
    state.counters["flop_rate"] = benchmark::Counter(12.0 * double(kTokens) * double(r) * double(kN),
                                                     benchmark::Counter::kIsIterationInvariantRate);
    state.counters["steps"] = double((kTokens + o.batch_size - 1) / o.batch_size);
}

}  // namespace

BENCHMARK(BM_gemm)->Name("gemm/f32/Bx4096x2016")->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_reconstruction_epoch)
    ->Name("refine/epoch/4096x4096/r2016/T4096")
    ->Arg(128)
    ->Arg(512)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);
BENCHMARK_MAIN();
