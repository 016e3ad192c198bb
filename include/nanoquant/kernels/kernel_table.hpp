// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file kernel_table.hpp
/// The signature every kernel variant implements: signed sums of a vector (or a batch of vectors)
/// over the rows of a TiledSigns matrix (packed_layer.hpp). The two stages of a PackedLayer GEMV
/// are two calls.
///
/// Conventions shared by all functions below:
///  - `tiles` is TiledSigns::words.data(), `row_blocks` and `col_words` its fields;
///  - a call computes the row blocks [rb_begin, rb_end) (rows 16·rb_begin ... 16·rb_end − 1,
///    padding rows included) and writes out[16·R + l] for those rows;
///  - the vector operand holds 32·col_words entries, zero past the logical length;
///  - `tiles`, the vector operands and `out` are 64-byte aligned (as AlignedVector and the GEMV's
///    scratch are; some variants use aligned loads and stores);
///  - `out[i]` receives \f$\sum_j s_{ij} x_j\f$.

#include <cstddef>
#include <cstdint>

#include "nanoquant/core/types.hpp"

namespace nanoquant {
namespace kernels {

/// Bytes of signs a GEMV kernel keeps prefetched ahead of its loads, over all the column-word
/// streams it reads at once (a prefetch never faults, so running past the buffer end is harmless).
/// The default covers DRAM latency at one core's bandwidth without evicting the lines not yet read
/// (AVX-512 float32: 2 streams, 64 tiles ahead in each; the dated comparison of 4, 8 and 16 KiB is
/// in docs/benchmark-log.md); the int8 GEMVs (AVX-512, AVX2) read one stream and prefetch
/// at least this far (a whole run, see their dot_i8).
#ifndef NANOQUANT_PREFETCH_BYTES
#define NANOQUANT_PREFETCH_BYTES 8192
#endif
constexpr Index kPrefetchBytes = NANOQUANT_PREFETCH_BYTES;
/// Tiles (64 bytes) ahead in each of `streams` streams.
constexpr Index prefetch_tiles(Index streams) { return kPrefetchBytes / (64 * streams); }
/// Runs of `len` tiles that cover at least kPrefetchBytes (>= 1).
constexpr Index prefetch_runs(Index len) { return len <= 0 ? 1 : (prefetch_tiles(1) + len - 1) / len; }

/// Prefetch base of the one-stream GEMVs, which read a chunk of row blocks [c1 − len, c1) one
/// column word c at a time (a run: that word's tiles of the chunk, contiguous) and prefetch tile R
/// at base + 16·R, D runs ahead: the same rows D words on, or, past the last word, the rows of the
/// next chunk of the caller's range [.., rb_end); after the last chunk nothing new (the run itself).
inline const std::uint32_t* stream_prefetch_base(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                                 Index c, Index D, Index c1, Index len, Index rb_end)
{
    const std::uint32_t* t = tiles + c * row_blocks * 16;
    if (c + D < col_words) return t + D * row_blocks * 16;
    if (c1 < rb_end) return tiles + (c + D - col_words) * row_blocks * 16 + 16 * len;
    return t;
}

/// Prefetches (to L1) the first runs of a one-stream GEMV over [rb_begin, rb_end) in chunks of
/// `chunk` row blocks: at least kPrefetchBytes, started before the kernel builds its tables.
inline void prefetch_first_runs(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                                Index rb_end, Index chunk)
{
#if defined(__GNUC__) || defined(__clang__)
    const Index len0 = rb_end - rb_begin < chunk ? rb_end - rb_begin : chunk;
    const Index runs = col_words < prefetch_runs(len0) ? col_words : prefetch_runs(len0);
    for (Index k = 0; k < runs; ++k)
        for (Index R = rb_begin; R < rb_begin + len0; ++R) __builtin_prefetch(tiles + (k * row_blocks + R) * 16, 0, 3);
#else
    (void)tiles, (void)row_blocks, (void)col_words, (void)rb_begin, (void)rb_end, (void)chunk;
#endif
}

/// Loads one word in every 4 KiB page that [begin, end) overlaps, so that the pages' translations
/// are in the TLB before a kernel prefetches lines in them: a software prefetch into a page whose
/// translation misses the TLB may be dropped, so prefetching a page ahead only works once the page
/// has been touched (figures: docs/benchmark-log.md).
inline void touch_pages(const std::uint32_t* begin, const std::uint32_t* end)
{
    std::uint32_t x = 0;
    const std::ptrdiff_t n = end - begin;
    for (std::ptrdiff_t i = 0; i < n; i += 1024) x ^= static_cast<const volatile std::uint32_t*>(begin)[i];
    if (n > 0) x ^= static_cast<const volatile std::uint32_t*>(begin)[n - 1];
#if defined(__GNUC__) || defined(__clang__)
    __asm__ volatile("" : : "r"(x));
#else
    (void)x;
#endif
}

/// Float path: out[i] = Σ_j s_ij x_j, float32 arithmetic.
using DotF32Fn = void (*)(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                          Index rb_end, const float* x, float* out);
/// Integer path: out[i] = Σ_j s_ij q_j, exact in int32; |q_j| <= 127.
using DotI8Fn = void (*)(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                         Index rb_end, const std::int8_t* q, std::int32_t* out);
/// Batched float path: token b reads X + b·ldx and writes out + b·ldo (ldx, ldo multiples of 16).
using DotF32BatchFn = void (*)(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                               Index rb_end, const float* X, Index ldx, Index batch, float* out, Index ldo);
/// Batched integer path: token b reads Q + b·ldq (ldq a multiple of 64) and writes out + b·ldo, exact.
using DotI8BatchFn = void (*)(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                              Index rb_end, const std::int8_t* Q, Index ldq, Index batch, std::int32_t* out,
                              Index ldo);
/// Int8 activations (the integer path's input): q[j] = v[j] · 127/amax rounded in the current rounding
/// mode (round to nearest even by default, as std::nearbyint) and clamped to ±127, for j < len, with
/// amax = max |v[j]|; q[len..padded) = 0 and *qsum = Σ q. Returns the scale amax/127 (v ≈ scale·q):
/// 0 for an all-zero v, NaN if v has a non-finite entry. Every variant returns the scalar
/// reference's bytes.
using QuantizeI8Fn = float (*)(const float* v, Index len, Index padded, std::int8_t* q, std::int32_t* qsum);

/// Tokens per thread from which a GEMM of the lookup-table kernels on several threads splits the
/// tokens rather than the rows: a row split makes every thread build every token's lookup tables,
/// which outweighs the shared sign reads once each thread has this many tokens (the crossover
/// measured: docs/benchmark-log.md).
constexpr Index kLutTokensPerThread = 8;

/// Instruction-set targets a kernel variant is written for.
enum class KernelTarget {
    Scalar,  ///< plain C++ reference (always available; defines the results of the integer path)
    Avx2,    ///< x86-64 AVX2 + FMA + BMI2
    Avx512,  ///< x86-64 AVX-512 F/BW/VL/DQ/VNNI/VBMI
    Amx,     ///< Avx512 with the int8 GEMM on AMX-TILE/AMX-INT8 tiles (needs BITALG; Linux)
    Neon     ///< AArch64 Advanced SIMD
};

/// One variant's kernels.
struct KernelTable {
    KernelTarget target;       ///< which variant
    const char* name;          ///< "scalar", "avx2", "avx512", "amx" or "neon"
    DotF32Fn dot_f32;          ///< float GEMV rows
    DotI8Fn dot_i8;            ///< int8 GEMV rows
    DotF32BatchFn dot_f32_batch;  ///< float GEMM rows
    DotI8BatchFn dot_i8_batch;    ///< int8 GEMM rows
    QuantizeI8Fn quantize_i8;     ///< int8 activations of the integer paths
    /// Tokens per thread from which an int8 GEMM on several threads gives each thread a share of the
    /// tokens (over all rows, no barrier) rather than a share of the rows (for every token): the
    /// lookup-table kernels build every token's tables for every strip of columns, which a row split
    /// repeats on every thread (kLutTokensPerThread); the AMX kernel unpacks each row block's signs
    /// once for all the tokens of a call, which a token split repeats instead.
    Index i8_tokens_per_thread;
};

}  // namespace kernels
}  // namespace nanoquant
