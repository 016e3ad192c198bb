// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file gemv_benchmark.hpp
/// Measurement helpers shared by bench/bench_gemv.cpp and `nanoquant bench-gemv`: random layers in
/// the inference layout, pools of copies larger than the last-level cache ("cold" weights streamed
/// from DRAM, as in decoding), a dense Eigen float32 baseline, and a median-of-rounds comparison.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nanoquant/core/bit_budget.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/detail/random.hpp"
#include "nanoquant/kernels/gemv.hpp"

namespace nanoquant {
namespace kernels {

/// A random m×n rank-r layer (uniform random signs, scales in [0.5, 1.5)), seeded.
inline PackedLayer random_packed_layer(Index m, Index n, Index r, std::uint64_t seed)
{
    NANOQUANT_CHECK(m > 0 && n > 0 && r > 0, "kernels::random_packed_layer",
                    "shape and rank must be positive, got " << m << "x" << n << " rank " << r);
    nanoquant::detail::Rng rng(seed);
    PackedLayer L;
    L.m = m;
    L.n = n;
    L.r = r;
    auto fill = [&](TiledSigns& T, Index rows, Index cols) {
        T.rows = rows;
        T.cols = cols;
        T.row_blocks = (rows + kTileRows - 1) / kTileRows;
        T.col_words = (cols + 63) / 64 * 2;
        T.words.assign(std::size_t(T.col_words * T.row_blocks * kTileRows), 0u);
        for (Index c = 0; c < T.col_words; ++c) {
            const Index valid = std::max<Index>(0, std::min<Index>(32, cols - 32 * c));
            const std::uint32_t mask = valid == 32 ? ~std::uint32_t(0) : (std::uint32_t(1) << valid) - 1;
            for (Index i = 0; i < rows; ++i)
                T.words[std::size_t((c * T.row_blocks + i / kTileRows) * kTileRows + i % kTileRows)] =
                    std::uint32_t(rng.next_u64()) & mask;
        }
    };
    fill(L.vt, r, n);
    fill(L.u, m, r);
    auto scales = [&](AlignedVector<float>& v, Index len) {
        v.resize(std::size_t(len));
        for (auto& s : v) s = float(0.5 + rng.uniform());
    };
    scales(L.s_in, n);
    scales(L.s_mid, r);
    scales(L.s_out, m);
    L.has_mid_scale = true;
    return L;
}

/// Size in bytes of the CPU's last-level data cache: sysconf(_SC_LEVEL3_CACHE_SIZE) where the C
/// library reports it, else /sys/devices/system/cpu/cpu0/cache/index3/size (Linux), else 0 (unknown).
inline std::size_t last_level_cache_bytes()
{
#if defined(_SC_LEVEL3_CACHE_SIZE)
    const long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v > 0) return std::size_t(v);
#endif
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index3/size");
    std::size_t kib = 0;
    char unit = 0;
    if (f >> kib >> unit && (unit == 'K' || unit == 'k')) return kib << 10;
    if (unit == 'M' || unit == 'm') return kib << 20;
    return 0;
}

/// Bytes a pool of weight copies must exceed to be streamed from DRAM: twice the last-level
/// cache, and at least `floor` (also the value when the cache size is unknown).
inline std::size_t cold_pool_bytes(std::size_t floor)
{
    return std::max(floor, 2 * last_level_cache_bytes());
}

/// The first supported target (in supported_targets() order) whose kernel for this path is target
/// t's own: a variant that borrows another's kernel (amx's float32 kernels and int8 GEMV are
/// avx512's) is not timed again under its own name.
inline KernelTarget kernel_owner(KernelTarget t, Precision p, bool batched)
{
    const KernelTable& kt = kernel_table(t);
    const auto same = [&](const KernelTable& k) {
        if (p == Precision::Float32) return batched ? k.dot_f32_batch == kt.dot_f32_batch : k.dot_f32 == kt.dot_f32;
        return batched ? k.dot_i8_batch == kt.dot_i8_batch : k.dot_i8 == kt.dot_i8;
    };
    for (KernelTarget u : supported_targets())
        if (same(kernel_table(u))) return u;
    return t;
}

namespace detail {
/// XOR of one 8-byte word per 64-byte line of [p, p + bytes) (p 64-byte aligned, bytes a multiple
/// of 64), four independent chains, prefetching 8 KiB ahead as the kernels do.
inline std::uint64_t xor_lines(const unsigned char* p, std::size_t bytes)
{
    const auto word = [](const unsigned char* q) {
        std::uint64_t v;
        std::memcpy(&v, q, sizeof v);
        return v;
    };
    std::uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    std::size_t o = 0;
    for (; o + 256 <= bytes; o += 256) {
#if defined(__GNUC__)
        if (o + 8192 + 256 <= bytes)
            for (std::size_t k = 0; k < 256; k += 64) __builtin_prefetch(p + o + 8192 + k);
#endif
        a0 ^= word(p + o);
        a1 ^= word(p + o + 64);
        a2 ^= word(p + o + 128);
        a3 ^= word(p + o + 192);
    }
    for (; o < bytes; o += 64) a0 ^= word(p + o);
    return a0 ^ a1 ^ a2 ^ a3;
}
}  // namespace detail

/// Touches every 64-byte line of the layer's packed signs (both stages) once: one 8-byte load per
/// line, each stage's lines split in contiguous parts over `threads`; returns a value that depends
/// on every load. Timed over the same cycled copies as a kernel, this is the memory floor of a call
/// (compare_gemv's read_floor_us): a kernel that reads those bytes from memory can hardly be faster.
/// It is a measurement, not a proof: when the machine's bandwidth varies, a kernel timed at another
/// moment can come out faster.
inline std::uint64_t read_signs(const PackedLayer& L, int threads)
{
    const auto part = [&](const TiledSigns& T, int tid, int nth) {
        const std::size_t lines = T.words.size() * sizeof(std::uint32_t) / 64;  // tiles are 64 bytes
        const std::size_t a = lines * std::size_t(tid) / std::size_t(nth);
        const std::size_t e = lines * std::size_t(tid + 1) / std::size_t(nth);
        return detail::xor_lines(reinterpret_cast<const unsigned char*>(T.words.data()) + 64 * a, 64 * (e - a));
    };
#ifdef _OPENMP
    if (threads > 1) {
        std::uint64_t acc = 0;
#pragma omp parallel num_threads(threads) reduction(^ : acc)
        acc ^= part(L.vt, omp_get_thread_num(), omp_get_num_threads()) ^
               part(L.u, omp_get_thread_num(), omp_get_num_threads());
        return acc;
    }
#endif
    (void)threads;
    return part(L.vt, 0, 1) ^ part(L.u, 0, 1);
}

/// Options of compare_gemv().
struct GemvBenchOptions {
    /// Threads for every measured path, the dense baseline included (>= 1).
    int threads = 1;
    /// Tokens per call (>= 1); > 1 measures GEMM.
    Index batch = 1;
    /// Cycle through copies of the weights larger than the last-level cache (true, default) or
    /// reuse one copy (hot).
    bool cold = true;
    /// Bytes the cycled packed copies must exceed (default: 2 × the last-level cache, >= 256 MiB).
    std::size_t packed_pool_bytes = cold_pool_bytes(std::size_t(256) << 20);
    /// Bytes the cycled dense copies must exceed (default: 2 × the last-level cache, >= 512 MiB).
    std::size_t dense_pool_bytes = cold_pool_bytes(std::size_t(512) << 20);
    /// Rounds; each round times every path once, and the reported time is the median (default 7).
    int rounds = 7;
    /// Minimum seconds per path per round (default 0.02).
    double min_round_seconds = 0.02;
    /// Seed of the random layer and inputs.
    std::uint64_t seed = 1;
};

/// One measured path of compare_gemv().
struct PathTiming {
    std::string name;    ///< e.g. "avx512-f32" or "avx512-int8"
    bool exact = true;   ///< float32 activations (true) or int8 (false)
    double us = 0;       ///< median µs per call (one call = `batch` tokens)
    double speedup = 0;  ///< dense_us / us
    /// With batch > 1: median µs of one single-token GEMV on the same path, in the same run, and
    /// batch_gain = batch · gemv_us / us, the per-token throughput of the batched call over
    /// `batch` separate GEMVs (0 when batch == 1).
    double gemv_us = 0;
    double batch_gain = 0;
};

/// Result of compare_gemv(): every figure from the same run.
struct GemvComparison {
    Index m = 0, n = 0, rank = 0, batch = 1;  ///< shape, rank and tokens per call
    int threads = 1;                          ///< threads used
    double bpw = 0;                           ///< effective bits per weight of `rank`
    double dense_us = 0;                      ///< median µs of the dense Eigen float32 baseline
    /// Fastest round of read_signs() over the same pool and threads: the memory floor of a packed
    /// call (with cold weights, the DRAM bandwidth this machine gives `threads` threads). A floor, so
    /// the best round rather than the median: on a machine with noisy neighbours the median of a
    /// bandwidth test moves with them.
    double read_floor_us = 0;
    std::size_t sign_bytes = 0;               ///< bytes of packed signs per layer (padded tiles)
    std::vector<PathTiming> paths;            ///< packed paths, every supported variant × precision
};

namespace detail {
/// Median µs per call of `fn(i)` over `rounds`, called with a running counter i.
template <typename Fn>
double time_call_us(Fn&& fn, double min_seconds, std::size_t& counter)
{
    using clock = std::chrono::steady_clock;
    fn(counter++);  // warm-up
    std::size_t iters = 0;
    const auto t0 = clock::now();
    double elapsed = 0;
    do {
        fn(counter++);
        ++iters;
        elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    } while (elapsed < min_seconds);
    return elapsed * 1e6 / double(iters);
}

/// Dense y = W x (or Y = W X) with output rows split over `threads` (row-major W).
inline void dense_apply(const RowMajorMatrix<float>& W, const Matrix<float>& X, Matrix<float>& Y, int threads)
{
    if (threads <= 1) {
        if (X.cols() == 1) Y.col(0).noalias() = W * X.col(0);
        else Y.noalias() = W * X;
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        const Index m = W.rows(), a = m * tid / nth, e = m * (tid + 1) / nth;
        if (X.cols() == 1) Y.col(0).segment(a, e - a).noalias() = W.middleRows(a, e - a) * X.col(0);
        else Y.middleRows(a, e - a).noalias() = W.middleRows(a, e - a) * X;
    }
#else
    Y.noalias() = W * X;
#endif
}
}  // namespace detail

/// Times a dense Eigen float32 product and every packed path (each supported SIMD variant, float32
/// and int8; the scalar reference is left out) for an m×n layer at `bpw` bits per weight
/// (rank_for_bpw with the reference rule), interleaving them over `rounds` rounds and reporting
/// medians, so that machine noise hits all paths alike.
/// \throws nanoquant::invalid_argument on bad shape, bpw or options.
inline GemvComparison compare_gemv(Index m, Index n, double bpw, const GemvBenchOptions& o = {})
{
    constexpr const char* where = "kernels::compare_gemv";
    NANOQUANT_CHECK(o.threads >= 1, where, "threads must be >= 1, got " << o.threads);
    NANOQUANT_CHECK(o.batch >= 1, where, "batch must be >= 1, got " << o.batch);
    NANOQUANT_CHECK(o.rounds >= 1, where, "rounds must be >= 1, got " << o.rounds);
    const Index r = rank_for_bpw(m, n, bpw);
    GemvComparison res;
    res.m = m;
    res.n = n;
    res.rank = r;
    res.batch = o.batch;
    res.threads = o.threads;
    res.bpw = bpw_for_rank(m, n, r);

    const PackedLayer base = random_packed_layer(m, n, r, o.seed);
    res.sign_bytes = base.sign_bytes();
    const std::size_t packed_copies =
        o.cold ? std::max<std::size_t>(2, o.packed_pool_bytes / std::max<std::size_t>(1, base.sign_bytes()) + 1) : 1;
    std::vector<PackedLayer> layers(packed_copies, base);
    const std::size_t dense_bytes = std::size_t(m) * std::size_t(n) * sizeof(float);
    const std::size_t dense_copies = o.cold ? std::max<std::size_t>(2, o.dense_pool_bytes / dense_bytes + 1) : 1;
    std::vector<RowMajorMatrix<float>> dense(dense_copies);
    {
        nanoquant::detail::Rng rng(o.seed + 1);
        for (auto& W : dense) {
            W.resize(m, n);
            for (Index i = 0; i < W.size(); ++i) W.data()[i] = float(rng.uniform() - 0.5);
        }
    }
    Matrix<float> X(n, o.batch), Y(m, o.batch);
    {
        nanoquant::detail::Rng rng(o.seed + 2);
        for (Index i = 0; i < X.size(); ++i) X.data()[i] = float(rng.normal());
    }

    struct Path {
        PathTiming t;
        GemvOptions opt;
        std::vector<double> samples, gemv_samples;
    };
    std::vector<Path> paths;
    for (KernelTarget tg : supported_targets()) {
        if (tg == KernelTarget::Scalar) continue;
        for (Precision p : {Precision::Float32, Precision::Int8}) {
            if (kernel_owner(tg, p, o.batch > 1) != tg) continue;  // timed under its owner's name
            Path P;
            P.t.name = std::string(target_name(tg)) + (p == Precision::Float32 ? "-f32" : "-int8");
            P.t.exact = p == Precision::Float32;
            P.opt.kernels = &kernel_table(tg);
            P.opt.precision = p;
            P.opt.num_threads = o.threads;
            paths.push_back(P);
        }
    }
    if (paths.empty()) {  // no SIMD variant: measure the scalar reference
        Path P;
        P.t.name = "scalar-f32";
        P.opt.num_threads = o.threads;
        P.opt.kernels = &kernel_table(KernelTarget::Scalar);
        paths.push_back(P);
    }
    std::vector<double> dense_samples, read_samples;
    std::size_t counter = 0;
    volatile std::uint64_t sink = 0;  // a volatile store keeps the reads
    for (int round = 0; round < o.rounds; ++round) {
        dense_samples.push_back(detail::time_call_us(
            [&](std::size_t i) { detail::dense_apply(dense[i % dense_copies], X, Y, o.threads); },
            o.min_round_seconds, counter));
        read_samples.push_back(detail::time_call_us(
            [&](std::size_t i) { sink = read_signs(layers[i % packed_copies], o.threads); }, o.min_round_seconds,
            counter));
        for (Path& P : paths) {
            P.samples.push_back(detail::time_call_us(
                [&](std::size_t i) {
                    gemm(layers[i % packed_copies], X.data(), n, o.batch, Y.data(), m, P.opt);
                },
                o.min_round_seconds, counter));
            if (o.batch > 1)
                P.gemv_samples.push_back(detail::time_call_us(
                    [&](std::size_t i) { gemm(layers[i % packed_copies], X.data(), n, 1, Y.data(), m, P.opt); },
                    o.min_round_seconds, counter));
        }
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    res.dense_us = median(dense_samples);
    res.read_floor_us = *std::min_element(read_samples.begin(), read_samples.end());
    for (Path& P : paths) {
        P.t.us = median(P.samples);
        P.t.speedup = res.dense_us / P.t.us;
        if (o.batch > 1) {
            P.t.gemv_us = median(P.gemv_samples);
            P.t.batch_gain = double(o.batch) * P.t.gemv_us / P.t.us;
        }
        res.paths.push_back(P.t);
    }
    return res;
}

}  // namespace kernels
}  // namespace nanoquant
