// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file gemv.hpp
/// Entry point of the packed-sign kernels: y = s_out ⊙ (U · (s_mid ⊙ (Vᵀ · (s_in ⊙ x)))) for one
/// token (gemv) or a batch (gemm), on a PackedLayer (packed_layer.hpp), with the variant chosen by
/// dispatch.hpp. Two precisions:
///  - Precision::Float32: float32 activations and accumulation ("exact": no quantization; only
///    the float summation order differs from the dense product);
///  - Precision::Int8: the input of each stage (s_in ⊙ x, then the rank vector t) is quantized to
///    int8 with one absmax scale per token and stage, the sign products are exact in int32, and
///    results are bit-identical on every variant and thread count. Its error is in docs/kernels.md.
/// Threads (OpenMP) never change a result. The GEMMs partition the tokens (from 8 per thread on,
/// detail::kTokensPerThread; int8 from the kernels' KernelTable::i8_tokens_per_thread, 32 for amx) or
/// else the output rows. The GEMVs split each stage into two halves of
/// its column words, each cut into one piece of rows per thread, and add the two partial sums in a
/// fixed order (float32 for any thread count, so that its sums are grouped the same way; int8, exact
/// in int32, when threaded): with 2 threads each reads one block of memory per stage instead of
/// short runs of every column word (11008×4096, cold: 1.4× → 1.6–1.8× over 1 thread).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <emmintrin.h>  // _mm_pause (SSE2: every x86-64 CPU)
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/kernels/dispatch.hpp"
#include "nanoquant/kernels/packed_layer.hpp"

namespace nanoquant {
namespace kernels {

/// Arithmetic of the activations.
enum class Precision {
    Float32,  ///< float32 activations, exact up to float summation order
    Int8      ///< int8 activations (per-token absmax), int32 sign sums: faster, approximate
};

/// Options of gemv()/gemm().
struct GemvOptions {
    /// Threads (over output rows for a GEMM, over column halves and rows for a GEMV): 0 = OpenMP's default
    /// (omp_get_max_threads), 1 = serial. Must be >= 0. Ignored (serial) without OpenMP or inside an
    /// enclosing parallel region. The results are the same for any value.
    int num_threads = 1;
    /// Float32 (default) or Int8 activations.
    Precision precision = Precision::Float32;
    /// Kernel variant; nullptr (default) = active_kernels(). For tests and benchmarks.
    const KernelTable* kernels = nullptr;

    /// Throws nanoquant::invalid_argument naming the field if a value is out of range.
    void validate(const char* where = "GemvOptions::validate") const
    {
        NANOQUANT_CHECK(num_threads >= 0, where, "num_threads must be >= 0, got " << num_threads);
    }
};

namespace detail {

/// `#pragma omp simd` where OpenMP is on (the nanoquant CMake target propagates it): GCC's -O2 does
/// not vectorize a loop whose trip count is only known at run time (GCC 12's "very cheap" cost
/// model), and the element-wise loops around the kernels cost 8-20 % of a call when left scalar.
#if defined(_OPENMP)
#define NANOQUANT_SIMD_LOOP _Pragma("omp simd")
#else
#define NANOQUANT_SIMD_LOOP
#endif

/// dst[i] = scale[i] · src[i] for i in [lo, hi).
inline void scale_into(float* dst, const float* scale, const float* src, Index lo, Index hi)
{
    NANOQUANT_SIMD_LOOP
    for (Index i = lo; i < hi; ++i) dst[i] = scale[i] * src[i];
}

/// dst[i] = scale[i] · (step · src[i]) for i in [lo, hi): exact int32 sums back to float.
inline void scale_into(float* dst, const float* scale, float step, const std::int32_t* src, Index lo, Index hi)
{
    NANOQUANT_SIMD_LOOP
    for (Index i = lo; i < hi; ++i) dst[i] = scale[i] * (step * float(src[i]));
}

/// dst[i] = scale[i] · (step · (a[i] + b[i])) for i in [lo, hi): the two parts' exact int32 sums of a
/// split stage, added and scaled back to float (the sum first, as the float32 one).
inline void sum_scale_into(float* dst, const float* scale, float step, const std::int32_t* a, const std::int32_t* b,
                           Index lo, Index hi)
{
    NANOQUANT_SIMD_LOOP
    for (Index i = lo; i < hi; ++i) dst[i] = scale[i] * (step * float(a[i] + b[i]));
}

/// dst[i] = scale[i] · (a[i] + b[i]) for i in [lo, hi): the two parts' float32 sums of a split stage.
inline void sum_scale_into(float* dst, const float* scale, const float* a, const float* b, Index lo, Index hi)
{
    NANOQUANT_SIMD_LOOP
    for (Index i = lo; i < hi; ++i) dst[i] = scale[i] * (a[i] + b[i]);
}

/// Prefetches the lines of v[lo, hi) (a layer's scales, cold in DRAM like its signs, wanted right
/// after a barrier: prefetched before it, their latency overlaps the wait).
inline void prefetch_range(const float* v, Index lo, Index hi)
{
#if defined(__GNUC__) || defined(__clang__)
    for (Index i = lo; i < hi; i += 16) __builtin_prefetch(v + i, 0, 3);
#else
    (void)v, (void)lo, (void)hi;
#endif
}

/// Per-thread scratch reused across calls (see grow()).
struct GemvScratch {
    AlignedVector<float> xs, t, o1, o2, fscale, fpart1, fpart2;
    AlignedVector<std::int8_t> q1, q2;
    AlignedVector<std::int32_t> d1, d2, qsum, part1, part2;
};
inline GemvScratch& gemv_scratch()
{
    thread_local GemvScratch s;
    return s;
}
/// Scratch buffers above this size are given back when a call needs far less (see grow()).
constexpr std::size_t kScratchKeepBytes = std::size_t(16) << 20;

/// `v` with room for n elements (contents unspecified). A buffer is reused across calls and grows
/// to the largest need; one more than 8× larger than this call needs and above kScratchKeepBytes is
/// replaced by one of the needed size, so one large batch does not pin its memory for the lifetime
/// of the thread (alternating calls within 8×, or below the threshold, never reallocate).
template <typename T>
inline T* grow(AlignedVector<T>& v, Index n)
{
    const std::size_t want = std::size_t(n);
    if (v.size() < want || (v.size() > 8 * want && v.size() * sizeof(T) > kScratchKeepBytes)) AlignedVector<T>(want).swap(v);
    return v.data();
}

/// One spin-wait step: PAUSE on x86, YIELD on AArch64.
inline void cpu_relax()
{
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
    _mm_pause();
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    __asm__ __volatile__("yield");
#endif
}

/// The barrier between the stages of one gemm() call, shared by the threads of its parallel region
/// (all of them call wait() with the team's size). `#pragma omp barrier` in GCC's libgomp ends every
/// crossing with a futex_wake system call, which costs more than a cache line's round trip between
/// two cores on virtual machines (figures: docs/benchmark-log.md, "Thread barriers"). When
/// the team fits the machine's processors (`spin`), this one is a counter and a generation in their
/// own cache lines, with no system call: the last thread to arrive resets the counter and bumps the
/// generation, the others spin on it (PAUSE) and, after kSpins rounds (on the order of a
/// millisecond; libgomp spins 300 000 rounds before it sleeps), yield the core at every round. A team
/// larger than the processors meets at OpenMP's barrier instead: there some threads wait for a core
/// while others spin, and spinning would hold the core a waiting peer needs.
class TeamBarrier {
public:
    explicit TeamBarrier(bool spin) : spin_(spin) {}

    void wait(int nthreads)
    {
        if (nthreads <= 1) return;
#ifdef _OPENMP
        if (!spin_) {
#pragma omp barrier
            return;
        }
#else
        (void)spin_;
#endif
        const unsigned g = gen_.load(std::memory_order_acquire);
        if (count_.fetch_add(1, std::memory_order_acq_rel) == nthreads - 1) {
            count_.store(0, std::memory_order_relaxed);
            gen_.store(g + 1, std::memory_order_release);
            return;
        }
        for (int spins = 0; gen_.load(std::memory_order_acquire) == g;) {
            if (spins < kSpins) {
                cpu_relax();
                ++spins;
            } else {
                std::this_thread::yield();
            }
        }
    }

private:
    static constexpr int kSpins = 1 << 16;
    alignas(64) std::atomic<int> count_{0};
    alignas(64) std::atomic<unsigned> gen_{0};
    bool spin_;
};

#ifdef _OPENMP
/// omp_get_num_procs() as of the first call: libgomp asks the kernel for the thread's affinity mask
/// (a sched_getaffinity system call) every time, too slow for every gemm() call.
inline int num_procs()
{
    static const int procs = omp_get_num_procs();
    return procs;
}
#endif

/// Tokens per thread from which a float32 GEMM on several threads splits the tokens rather than the
/// rows (every float GEMM kernel builds lookup tables; the int8 GEMM's is KernelTable::i8_tokens_per_thread).
constexpr Index kTokensPerThread = kLutTokensPerThread;

/// Row blocks (or other items) [begin, end) of `blocks` for thread (or piece) `tid` of `nth`
/// (contiguous, balanced).
inline void block_range(Index blocks, Index tid, Index nth, Index& begin, Index& end)
{
    begin = blocks * tid / nth;
    end = blocks * (tid + 1) / nth;
}

/// Column words [c0, c1) of part p of `parts`: contiguous, balanced, boundaries even (as col_words
/// is, and as the kernels' strips of two words need), possibly empty.
inline void col_word_range(Index col_words, Index p, Index parts, Index& c0, Index& c1)
{
    const Index pairs = col_words / 2;
    c0 = 2 * (pairs * p / parts);
    c1 = 2 * (pairs * (p + 1) / parts);
}

/// The kernel of a stage input's type (int8 or float32) over column words [c0, c1) and row blocks
/// [a, e): the tiles and the input start at word c0.
inline void dot_words(const KernelTable& K, const TiledSigns& S, Index c0, Index c1, Index a, Index e,
                      const std::int8_t* q, std::int32_t* out)
{
    K.dot_i8(S.words.data() + c0 * S.row_blocks * kTileRows, S.row_blocks, c1 - c0, a, e, q + 32 * c0, out);
}
inline void dot_words(const KernelTable& K, const TiledSigns& S, Index c0, Index c1, Index a, Index e, const float* x,
                      float* out)
{
    K.dot_f32(S.words.data() + c0 * S.row_blocks * kTileRows, S.row_blocks, c1 - c0, a, e, x + 32 * c0, out);
}

/// Parts of column words of a GEMV stage (see gemm()): two halves, for any thread count.
constexpr Index kSplitParts = 2;

/// A stage split by column words (the GEMVs, see gemm()): two halves of the column words
/// (col_word_range), each cut into `pieces` ranges of row blocks; the 2 × pieces items, half by
/// half, are dealt out in contiguous runs (block_range over the items), and a thread's items in one
/// half, adjacent pieces, make one call. It writes the sums over the first half of those rows into
/// `out` and over the second into `part`, from the stage input `in` (dot_words); sum_scale_into
/// adds them up. The signs of a half are one contiguous block of memory (docs/packed_format.md), so a
/// thread that owns a whole half reads it as one stream instead of short runs of every column word.
template <typename In, typename T>
inline void split_stage(const KernelTable& K, const TiledSigns& S, const In* in, Index pieces, int tid, int nth,
                        T* out, T* part)
{
    constexpr Index parts = kSplitParts;
    Index i0, i1;
    block_range(parts * pieces, tid, nth, i0, i1);
    for (Index p = i0 / pieces; p < parts && p * pieces < i1; ++p) {
        // This thread's pieces [j0, j1) of half p, and their row blocks [a, e).
        const Index j0 = std::max(i0, p * pieces) - p * pieces, j1 = std::min(i1, (p + 1) * pieces) - p * pieces;
        if (j1 <= j0) break;  // no items at all
        Index c0, c1, a, e, unused;
        col_word_range(S.col_words, p, parts, c0, c1);
        block_range(S.row_blocks, j0, pieces, a, unused);
        block_range(S.row_blocks, j1 - 1, pieces, unused, e);
        T* dst = p == 0 ? out : part;
        if (c1 > c0) dot_words(K, S, c0, c1, a, e, in, dst);
        else std::fill(dst + kTileRows * a, dst + kTileRows * e, T(0));
    }
}

/// Prefetches the first tiles a thread reads in a stage, row blocks [a, e) of column words [c0, c1):
/// up to kPrefetchBytes over the first two words (the kernels' first streams). Issued before work the
/// thread does anyway (quantizing the input, waiting at a barrier), so that the DRAM latency of the
/// stage's start overlaps it; the kernels' own prefetches take over from there.
inline void prefetch_stage_start(const TiledSigns& S, Index c0, Index c1, Index a, Index e)
{
#if defined(__GNUC__) || defined(__clang__)
    const Index tiles = std::min(e - a, prefetch_tiles(2));
    for (Index c = c0; c < std::min(c1, c0 + 2); ++c)
        for (Index R = a; R < a + tiles; ++R) __builtin_prefetch(S.words.data() + (c * S.row_blocks + R) * kTileRows, 0, 3);
#else
    (void)S, (void)c0, (void)c1, (void)a, (void)e;
#endif
}

/// prefetch_stage_start() for thread `tid`'s first item of split_stage().
inline void prefetch_split_start(const TiledSigns& S, Index pieces, int tid, int nth)
{
    Index i0, i1, c0, c1, a, e;
    block_range(kSplitParts * pieces, tid, nth, i0, i1);
    if (i1 <= i0) return;
    col_word_range(S.col_words, i0 / pieces, kSplitParts, c0, c1);
    block_range(S.row_blocks, i0 % pieces, pieces, a, e);
    prefetch_stage_start(S, c0, c1, a, e);
}

inline void check_layer_io(const PackedLayer& L, Index batch, Index ldx, Index ldy, const GemvOptions& opt)
{
    constexpr const char* where = "kernels::gemm";
    opt.validate(where);
    NANOQUANT_CHECK(batch >= 0, where, "batch must be >= 0, got " << batch);
    NANOQUANT_CHECK(ldx >= L.n, where, "ldx = " << ldx << " is smaller than the input size n = " << L.n);
    NANOQUANT_CHECK(ldy >= L.m, where, "ldy = " << ldy << " is smaller than the output size m = " << L.m);
    L.validate(where);
}

}  // namespace detail

/// Y = Ŵ X for `batch` tokens: token b reads X + b·ldx (n floats) and writes Y + b·ldy (m floats).
/// Batch 1 uses the GEMV kernels, larger batches the GEMM kernels (which reuse each sign word
/// across tokens). X and Y must not overlap.
/// \throws nanoquant::invalid_argument on bad options, strides or (Int8) non-finite input.
inline void gemm(const PackedLayer& L, const float* X, Index ldx, Index batch, float* Y, Index ldy,
                 const GemvOptions& opt = {})
{
    detail::check_layer_io(L, batch, ldx, ldy, opt);
    if (batch == 0 || L.m == 0) return;
    const KernelTable& K = opt.kernels ? *opt.kernels : active_kernels();
    const Index m = L.m, r = L.r, n = L.n;
    const Index np = L.vt.cols_padded(), rp = L.u.cols_padded();    // padded inputs of the stages
    const Index r16 = L.vt.rows_padded(), m16 = L.u.rows_padded();  // padded outputs of the stages
    detail::GemvScratch& S = detail::gemv_scratch();
    float* xs = detail::grow(S.xs, batch * np);
    float* t = detail::grow(S.t, batch * rp);
    float* fscale = detail::grow(S.fscale, 2 * batch);
    const bool int8 = opt.precision == Precision::Int8;
    float* o1 = nullptr;
    float* o2 = nullptr;
    std::int8_t* q1 = nullptr;
    std::int8_t* q2 = nullptr;
    std::int32_t *d1 = nullptr, *d2 = nullptr, *qsum = nullptr;

    int nth = opt.num_threads;
#ifdef _OPENMP
    if (nth == 0) nth = omp_get_max_threads();
    if (omp_in_parallel()) nth = 1;
#else
    nth = 1;
#endif
    nth = std::max(1, nth);
    // The GEMVs split each stage into two halves of its column words (split_stage), each cut into one
    // piece of rows per thread, and add the two partial sums in a fixed order: float32 always, whatever
    // the thread count, so that its sums are grouped the same way for any thread count; int8 on
    // several threads (int32 sums are exact: any split gives the same result). With 2 threads each
    // thread reads one half, one contiguous block: split by rows only, each thread read short runs of
    // every column word, which wastes DRAM bandwidth. One part per thread (instead of two halves)
    // makes every thread go over every row on many cores (docs/benchmark-log.md, "Many cores").
    const bool split = batch == 1 && (!int8 || nth > 1);
    // Thread 0 (this one)'s first tiles of stage 1 come in while it prepares the input.
    if (split) detail::prefetch_split_start(L.vt, nth, 0, nth);
    else if (batch == 1) detail::prefetch_stage_start(L.vt, 0, L.vt.col_words, 0, L.vt.row_blocks);
    for (Index b = 0; b < batch; ++b) {
        float* xb = xs + b * np;
        const float* in = X + b * ldx;
        detail::scale_into(xb, L.s_in.data(), in, 0, n);
        std::fill(xb + n, xb + np, 0.0f);
        std::fill(t + b * rp + r, t + (b + 1) * rp, 0.0f);
    }
    if (int8) {
        q1 = detail::grow(S.q1, batch * np);
        q2 = detail::grow(S.q2, batch * rp);
        d1 = detail::grow(S.d1, batch * r16);
        d2 = detail::grow(S.d2, batch * m16);
        qsum = detail::grow(S.qsum, batch);
        for (Index b = 0; b < batch; ++b) {
            fscale[b] = K.quantize_i8(xs + b * np, n, np, q1 + b * np, qsum + b);
            NANOQUANT_CHECK(!std::isnan(fscale[b]), "kernels::gemm",
                            "the Int8 path needs finite inputs, but s_in ⊙ x of token " << b
                                                                                     << " has a non-finite entry");
        }
    } else {
        o1 = detail::grow(S.o1, batch * r16);
        o2 = detail::grow(S.o2, batch * m16);
    }

    std::int32_t *part1 = nullptr, *part2 = nullptr;
    float *fpart1 = nullptr, *fpart2 = nullptr;
    if (split && int8) {
        part1 = detail::grow(S.part1, r16);
        part2 = detail::grow(S.part2, m16);
    } else if (split) {
        fpart1 = detail::grow(S.fpart1, r16);
        fpart2 = detail::grow(S.fpart2, m16);
    }
    const float* s_mid = L.s_mid.data();
    const float* s_out = L.s_out.data();
    // The barrier of this call's team (see TeamBarrier). A call made inside a caller's parallel region
    // is serial (nthreads = 1), never waits, and so uses no OpenMP construct: a barrier there would
    // bind to the caller's team.
#ifdef _OPENMP
    detail::TeamBarrier barrier(nth <= detail::num_procs());
#else
    detail::TeamBarrier barrier(true);
#endif
    // The GEMMs of fewer tokens per thread than the split threshold (kTokensPerThread, int8
    // K.i8_tokens_per_thread) and the int8 GEMV on one thread:
    // each thread owns whole row blocks of each stage; the two stages meet at a barrier.
    auto body = [&](int tid, int nthreads) {
        Index a, e;
        detail::block_range(L.vt.row_blocks, tid, nthreads, a, e);
        if (e > a) {
            const Index k0 = 16 * a, k1 = std::min(16 * e, r);
            const std::uint32_t* T1 = L.vt.words.data();
            if (!int8) {
                K.dot_f32_batch(T1, L.vt.row_blocks, L.vt.col_words, a, e, xs, np, batch, o1, r16);
                for (Index b = 0; b < batch; ++b) detail::scale_into(t + b * rp, s_mid, o1 + b * r16, k0, k1);
            } else {
                if (batch == 1) K.dot_i8(T1, L.vt.row_blocks, L.vt.col_words, a, e, q1, d1);
                else K.dot_i8_batch(T1, L.vt.row_blocks, L.vt.col_words, a, e, q1, np, batch, d1, r16);
                for (Index b = 0; b < batch; ++b)
                    detail::scale_into(t + b * rp, s_mid, fscale[b], d1 + b * r16, k0, k1);
            }
        }
        // The rank vector t is complete once every thread is done with stage 1; int8 then quantizes
        // it, each thread its share of the tokens. (The GEMV's first tiles of stage 2 come in
        // meanwhile.)
        detail::block_range(L.u.row_blocks, tid, nthreads, a, e);
        if (batch == 1) detail::prefetch_stage_start(L.u, 0, L.u.col_words, a, e);
        barrier.wait(nthreads);
        if (int8) {
            Index b0, b1;
            detail::block_range(batch, tid, nthreads, b0, b1);
            for (Index b = b0; b < b1; ++b)
                fscale[batch + b] = K.quantize_i8(t + b * rp, r, rp, q2 + b * rp, qsum + b);
            barrier.wait(nthreads);
        }
        if (e > a) {
            const Index i0 = 16 * a, i1 = std::min(16 * e, m);
            const std::uint32_t* T2 = L.u.words.data();
            if (!int8) {
                K.dot_f32_batch(T2, L.u.row_blocks, L.u.col_words, a, e, t, rp, batch, o2, m16);
                for (Index b = 0; b < batch; ++b) detail::scale_into(Y + b * ldy, s_out, o2 + b * m16, i0, i1);
            } else {
                if (batch == 1) K.dot_i8(T2, L.u.row_blocks, L.u.col_words, a, e, q2, d2);
                else K.dot_i8_batch(T2, L.u.row_blocks, L.u.col_words, a, e, q2, rp, batch, d2, m16);
                for (Index b = 0; b < batch; ++b)
                    detail::scale_into(Y + b * ldy, s_out, fscale[batch + b], d2 + b * m16, i0, i1);
            }
        }
    };
    // The GEMVs split by column words (split): two partial sums per stage. After stage 1 every thread
    // adds up the whole rank vector t (r entries, against r·n sign-adds in the stage) into its own
    // scratch, and int8 quantizes it there, rather than each thread its rows followed by a second
    // barrier; after stage 2 each thread adds up its rows of y. Two barriers in all.
    auto body_split = [&](int tid, int nthreads) {
        const Index pieces = nthreads;
        // This thread's rank vector: the caller's scratch on thread 0, a worker's own on the others.
        detail::GemvScratch& mine = detail::gemv_scratch();
        float* tt = tid == 0 ? t : detail::grow(mine.t, rp);
        // This thread's rows [i0, i1) of y: it adds up stage 2's two parts there and writes them.
        Index ra, re;
        detail::block_range(L.u.row_blocks, tid, nthreads, ra, re);
        const Index i0 = std::min(kTileRows * ra, m), i1 = std::min(kTileRows * re, m);
        // The two barriers; before each, this thread prefetches what it reads right after it.
        const auto meet_after_stage1 = [&] {
            detail::prefetch_range(s_mid, 0, r);
            detail::prefetch_split_start(L.u, pieces, tid, nthreads);
            barrier.wait(nthreads);
        };
        const auto meet_after_stage2 = [&] {
            detail::prefetch_range(s_out, i0, i1);
            barrier.wait(nthreads);
        };
        if (int8) {
            detail::split_stage(K, L.vt, q1, pieces, tid, nthreads, d1, part1);
            meet_after_stage1();
            std::int8_t* qt = tid == 0 ? q2 : detail::grow(mine.q2, rp);
            std::int32_t unused_qsum;
            detail::sum_scale_into(tt, s_mid, fscale[0], d1, part1, 0, r);
            const float step = K.quantize_i8(tt, r, rp, qt, &unused_qsum);
            if (tid == 0) fscale[1] = step;
            detail::split_stage(K, L.u, qt, pieces, tid, nthreads, d2, part2);
            meet_after_stage2();
            if (i1 > i0) detail::sum_scale_into(Y, s_out, step, d2, part2, i0, i1);
        } else {
            detail::split_stage(K, L.vt, xs, pieces, tid, nthreads, o1, fpart1);
            meet_after_stage1();
            detail::sum_scale_into(tt, s_mid, o1, fpart1, 0, r);
            std::fill(tt + r, tt + rp, 0.0f);
            detail::split_stage(K, L.u, tt, pieces, tid, nthreads, o2, fpart2);
            meet_after_stage2();
            if (i1 > i0) detail::sum_scale_into(Y, s_out, o2, fpart2, i0, i1);
        }
    };
    // The GEMMs of at least that many tokens per thread: each thread takes a contiguous share of
    // the tokens through both stages, over every row, with no barrier. Splitting rows, every thread
    // builds every token's lookup tables for every strip of columns, to use them on half the rows;
    // splitting tokens, every thread makes the rows' indices, to use them for half the tokens, which is
    // cheaper once each thread has enough tokens (docs/kernels.md, "Threads"). The AMX int8 GEMM unpacks signs once for all tokens instead, and
    // splits tokens only from 32 per thread. The results are the same: each token's sums do not
    // depend on which tokens or rows share a kernel call.
    auto body_tokens = [&](int tid, int nthreads) {
        Index b0, b1;
        detail::block_range(batch, tid, nthreads, b0, b1);
        const Index nb = b1 - b0;
        if (nb == 0) return;
        const std::uint32_t* T1 = L.vt.words.data();
        const std::uint32_t* T2 = L.u.words.data();
        if (!int8) {
            K.dot_f32_batch(T1, L.vt.row_blocks, L.vt.col_words, 0, L.vt.row_blocks, xs + b0 * np, np, nb,
                            o1 + b0 * r16, r16);
            for (Index b = b0; b < b1; ++b) detail::scale_into(t + b * rp, s_mid, o1 + b * r16, 0, r);
            K.dot_f32_batch(T2, L.u.row_blocks, L.u.col_words, 0, L.u.row_blocks, t + b0 * rp, rp, nb, o2 + b0 * m16,
                            m16);
            for (Index b = b0; b < b1; ++b) detail::scale_into(Y + b * ldy, s_out, o2 + b * m16, 0, m);
        } else {
            K.dot_i8_batch(T1, L.vt.row_blocks, L.vt.col_words, 0, L.vt.row_blocks, q1 + b0 * np, np, nb,
                           d1 + b0 * r16, r16);
            for (Index b = b0; b < b1; ++b) {
                detail::scale_into(t + b * rp, s_mid, fscale[b], d1 + b * r16, 0, r);
                fscale[batch + b] = K.quantize_i8(t + b * rp, r, rp, q2 + b * rp, qsum + b);
            }
            K.dot_i8_batch(T2, L.u.row_blocks, L.u.col_words, 0, L.u.row_blocks, q2 + b0 * rp, rp, nb, d2 + b0 * m16,
                           m16);
            for (Index b = b0; b < b1; ++b)
                detail::scale_into(Y + b * ldy, s_out, fscale[batch + b], d2 + b * m16, 0, m);
        }
    };
    const bool by_tokens =
        !split && nth > 1 && batch >= (int8 ? K.i8_tokens_per_thread : detail::kTokensPerThread) * nth;
    if (nth == 1) {
        if (split) body_split(0, 1);
        else body(0, 1);
    } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
        {
            if (split) body_split(omp_get_thread_num(), omp_get_num_threads());
            else if (by_tokens) body_tokens(omp_get_thread_num(), omp_get_num_threads());
            else body(omp_get_thread_num(), omp_get_num_threads());
        }
#else
        (void)body_tokens, (void)by_tokens;  // nth is 1 without OpenMP
#endif
    }
    if (int8) {
        // A non-finite rank vector t (scales too large) cannot be quantized: report it.
        for (Index b = 0; b < batch; ++b)
            NANOQUANT_CHECK(!std::isnan(fscale[batch + b]), "kernels::gemm",
                            "the Int8 path produced a non-finite rank vector t for token " << b
                                                                                           << " (scales too large)");
    }
}

/// y = Ŵ x for one token (x: n floats, y: m floats; must not overlap).
/// \throws nanoquant::invalid_argument on bad options or (Int8) non-finite input.
inline void gemv(const PackedLayer& L, const float* x, float* y, const GemvOptions& opt = {})
{
    gemm(L, x, L.n, 1, y, L.m, opt);
}

/// y = Ŵ x, Eigen front door.
/// \throws nanoquant::invalid_argument if x.size() != L.n (or as gemv()).
inline Vector<float> gemv(const PackedLayer& L, const Eigen::Ref<const Vector<float>>& x, const GemvOptions& opt = {})
{
    NANOQUANT_CHECK(x.size() == L.n, "kernels::gemv", "x has " << x.size() << " entries, expected n = " << L.n);
    Vector<float> y(L.m);
    gemv(L, x.data(), y.data(), opt);
    return y;
}

/// Y = Ŵ X for the columns of X (n × batch, column-major), Eigen front door.
/// \throws nanoquant::invalid_argument if X.rows() != L.n (or as gemm()).
inline Matrix<float> gemm(const PackedLayer& L, const Eigen::Ref<const Matrix<float>>& X, const GemvOptions& opt = {})
{
    NANOQUANT_CHECK(X.rows() == L.n, "kernels::gemm", "X has " << X.rows() << " rows, expected n = " << L.n);
    Matrix<float> Y(L.m, X.cols());
    gemm(L, X.data(), X.outerStride(), X.cols(), Y.data(), L.m, opt);
    return Y;
}

}  // namespace kernels
}  // namespace nanoquant
