// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file sign_dot_avx2.hpp
/// AVX2 kernels over the tiled layout, compiled through function-level target attributes (no global
/// -m flag needed). Only call them when the CPU supports AVX2, FMA and BMI2 (dispatch.hpp).
///
/// Lookup tables, as in the AVX-512 variant, with the AVX2 instructions:
///  - Float path: 8 rows of a tile in the lanes of a register; tables of 3 columns (8 floats),
///    looked up with VPERMPS (low 3 bits of each lane; a shift by 3g selects group g).
///  - Integer path: tables of 4 columns, exact int16 sums split into low/high byte planes; the bytes
///    of a tile are transposed so that one 128-bit lane holds the nibbles of 16 rows, VPSHUFB looks
///    up both planes and VPUNPCK{L,H}BW rejoins the int16 sums.
/// Batched calls run blocks of 4 tokens through the same kernels, sharing each tile's index work.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NANOQUANT_HAVE_AVX2_KERNELS 1
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "nanoquant/kernels/kernel_table.hpp"
#include "nanoquant/kernels/packed_layer.hpp"
#include "nanoquant/kernels/scalar/sign_dot_scalar.hpp"

#define NANOQUANT_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,popcnt")))

namespace nanoquant {
namespace kernels {
namespace avx2 {

namespace detail {
/// Float tables of one column word: 11 groups (columns 3g, 3g + 1, 3g + 2 for g < 10; columns 30,
/// 31 for g = 10) of 8 signed sums, T_g[e] = Σ_t (bit t of e ? −x : x)[3g + t], one register each
/// (352 bytes per word; word c's at tables + stride·c).
constexpr int kF32Groups = 11;
NANOQUANT_TARGET_AVX2 inline void build_f32_tables(const float* x, Index col_words, float* tables, Index stride)
{
    __m256 sgn[3];
    for (int t = 0; t < 3; ++t) {
        alignas(32) float v[8];
        for (int e = 0; e < 8; ++e) v[e] = (e >> t) & 1 ? -1.0f : 1.0f;
        sgn[t] = _mm256_load_ps(v);
    }
    for (Index c = 0; c < col_words; ++c) {
        const float* xc = x + 32 * c;
        float* T = tables + stride * c;
        for (int g = 0; g < kF32Groups; ++g) {
            const float* xg = xc + 3 * g;
            __m256 sum = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(xg[0]), sgn[0]),
                                       _mm256_mul_ps(_mm256_set1_ps(xg[1]), sgn[1]));
            if (g < kF32Groups - 1) sum = _mm256_add_ps(sum, _mm256_mul_ps(_mm256_set1_ps(xg[2]), sgn[2]));
            _mm256_store_ps(T + 8 * g, sum);
        }
    }
}

/// Row blocks per chunk of the float GEMV (float sums: 64 B per row block, 8 KiB).
constexpr Index kF32ChunkBlocks = 128;

/// Integer tables of one column word (32 inputs, groups g = 0..7, exact int16 sums of ±q over 4
/// inputs, split into low and high byte planes): eight 32-byte registers
/// [A0.lo, A0.hi, A1.lo, A1.hi, B0.lo, B0.hi, B1.lo, B1.hi] with the groups (lower 16 bytes | upper
/// 16 bytes) A0 = (0 | 4), A1 = (1 | 5), B0 = (2 | 6), B1 = (3 | 7): the order in which i8_tokens'
/// index registers meet them. Word c's registers start at tables + stride·c.
NANOQUANT_TARGET_AVX2 inline void build_i8_tables(const std::int8_t* q, Index col_words, std::int8_t* tables,
                                                  Index stride)
{
    // Entry e of a group = Σ_t sign_t(e)·x_t with sign_t(e) = −1 where bit t of e is set (VPSIGNW).
    __m256i sgn[4];
    for (int t = 0; t < 4; ++t) {
        alignas(32) std::int16_t v[16];
        for (int e = 0; e < 16; ++e) v[e] = (e >> t) & 1 ? -1 : 1;
        sgn[t] = _mm256_load_si256(reinterpret_cast<const __m256i*>(v));
    }
    // Low bytes of the 16 entries to bytes 0..7 of each 128-bit lane, high bytes to 8..15; VPERMQ
    // (0, 2, 1, 3) then gives [lo 0..15 | hi 0..15].
    const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,  //
                                           0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const int order[4][2] = {{0, 4}, {1, 5}, {2, 6}, {3, 7}};
    alignas(32) std::int16_t x[32];
    for (Index c = 0; c < col_words; ++c) {
        const __m128i* src = reinterpret_cast<const __m128i*>(q + 32 * c);
        _mm256_store_si256(reinterpret_cast<__m256i*>(x), _mm256_cvtepi8_epi16(_mm_loadu_si128(src)));
        _mm256_store_si256(reinterpret_cast<__m256i*>(x + 16), _mm256_cvtepi8_epi16(_mm_loadu_si128(src + 1)));
        std::int8_t* T = tables + stride * c;
        for (int p = 0; p < 4; ++p) {
            __m256i planes[2];
            for (int h = 0; h < 2; ++h) {
                const std::int16_t* xg = x + 4 * order[p][h];
                __m256i sum = _mm256_sign_epi16(_mm256_set1_epi16(xg[0]), sgn[0]);
                for (int t = 1; t < 4; ++t) sum = _mm256_add_epi16(sum, _mm256_sign_epi16(_mm256_set1_epi16(xg[t]), sgn[t]));
                planes[h] = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(sum, split), 0xD8);
            }
            _mm256_store_si256(reinterpret_cast<__m256i*>(T + 64 * p), _mm256_permute2x128_si256(planes[0], planes[1], 0x20));
            _mm256_store_si256(reinterpret_cast<__m256i*>(T + 64 * p + 32), _mm256_permute2x128_si256(planes[0], planes[1], 0x31));
        }
    }
}

/// Row blocks per chunk of the int8 GEMV: the chunk's int16 partial sums (64 B per row block) and
/// int32 sums (64 B) take 16 KiB, within the 32 KiB L1 of AVX2-only cores.
constexpr Index kI8ChunkBlocks = 128;
/// Column words summed in int16 before they are added to the int32 sums: 4 groups of ±4·127 per
/// word and 16-bit lane, 16 · 2032 < 2^15.
constexpr Index kI8FoldWords = 16;

/// The exact int16 sums that the nibbles idx (one per byte: row j of each 128-bit lane) select from
/// the table planes tl/th (low/high bytes), added to lo (rows 0..7) and hi (rows 8..15).
NANOQUANT_TARGET_AVX2 inline void lookup_i8(__m256i idx, __m256i tl, __m256i th, __m256i& lo, __m256i& hi)
{
    const __m256i l = _mm256_shuffle_epi8(tl, idx), h = _mm256_shuffle_epi8(th, idx);
    lo = _mm256_add_epi16(lo, _mm256_unpacklo_epi8(l, h));
    hi = _mm256_add_epi16(hi, _mm256_unpackhi_epi8(l, h));
}

/// Adds the int16 partial sums of one row block (rows 0..7 and 8..15, each register holding its
/// rows' groups 0..3 in the lower 128 bits and groups 4..7 in the upper) to its int32 sums.
NANOQUANT_TARGET_AVX2 inline void fold_i8(const std::int16_t* part, std::int32_t* out)
{
    for (int h = 0; h < 2; ++h) {
        const __m256i p = _mm256_load_si256(reinterpret_cast<const __m256i*>(part + 16 * h));
        const __m256i s = _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(p)),
                                           _mm256_cvtepi16_epi32(_mm256_extracti128_si256(p, 1)));
        __m256i* o = reinterpret_cast<__m256i*>(out + 8 * h);
        _mm256_store_si256(o, _mm256_add_epi32(_mm256_load_si256(o), s));
    }
}

/// The float rows of TB tokens (token t: inputs X + t·ldx, sums out + t·ldo): see dot_f32. The 11
/// shifted index registers of 8 rows are shared by the TB tokens; each token's tables come from L1
/// (TB · 352 bytes per column word).
template <int TB>
NANOQUANT_TARGET_AVX2 inline void f32_tokens(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                             Index rb_begin, Index rb_end, const float* X, Index ldx, float* out,
                                             Index ldo)
{
    if (rb_end <= rb_begin) return;
    constexpr Index per_word = 8 * kF32Groups;  // floats of one token's tables of one word
    // Start the first tiles on their way before building the tables.
    prefetch_first_runs(tiles, row_blocks, col_words, rb_begin, rb_end, kF32ChunkBlocks);
    thread_local AlignedVector<float> buf;
    const std::size_t words = std::size_t(per_word * TB * col_words);
    if (buf.size() < words) buf.resize(words);
    // Tables of word c, token t at per_word·(TB·c + t).
    const float* tables = buf.data();
    for (int t = 0; t < TB; ++t) build_f32_tables(X + t * ldx, col_words, buf.data() + per_word * t, per_word * TB);
    for (int t = 0; t < TB; ++t)
        for (Index R = rb_begin; R < rb_end; ++R)
            for (int h = 0; h < 2; ++h) _mm256_store_ps(out + t * ldo + 16 * R + 8 * h, _mm256_setzero_ps());
    for (Index c0 = rb_begin; c0 < rb_end; c0 += kF32ChunkBlocks) {
        const Index c1 = std::min(rb_end, c0 + kF32ChunkBlocks), len = c1 - c0;
        const Index D = prefetch_runs(len);
        for (Index c = 0; c < col_words; ++c) {
            const float* T = tables + per_word * TB * c;
            const std::uint32_t* t = tiles + c * row_blocks * 16;
            const std::uint32_t* pf = stream_prefetch_base(tiles, row_blocks, col_words, c, D, c1, len, rb_end);
            for (Index R = c0; R < c1; ++R) {
                _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * R), _MM_HINT_T0);
#pragma GCC unroll 2
                for (int h = 0; h < 2; ++h) {
                    const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(t + 16 * R + 8 * h));
                    __m256i idx[kF32Groups];
#pragma GCC unroll 11
                    for (int g = 0; g < kF32Groups; ++g) idx[g] = g == 0 ? v : _mm256_srli_epi32(v, 3 * g);
#pragma GCC unroll 4
                    for (int k = 0; k < TB; ++k) {
                        const float* Tk = T + per_word * k;
                        // Two chains, summed in a fixed order.
                        __m256 a = _mm256_permutevar8x32_ps(_mm256_load_ps(Tk), idx[0]);
                        __m256 b = _mm256_permutevar8x32_ps(_mm256_load_ps(Tk + 8), idx[1]);
#pragma GCC unroll 10
                        for (int g = 2; g < kF32Groups; g += 2) {
                            a = _mm256_add_ps(a, _mm256_permutevar8x32_ps(_mm256_load_ps(Tk + 8 * g), idx[g]));
                            if (g + 1 < kF32Groups)
                                b = _mm256_add_ps(b, _mm256_permutevar8x32_ps(_mm256_load_ps(Tk + 8 * g + 8), idx[g + 1]));
                        }
                        float* o = out + k * ldo + 16 * R + 8 * h;
                        _mm256_store_ps(o, _mm256_add_ps(_mm256_load_ps(o), _mm256_add_ps(a, b)));
                    }
                }
            }
        }
    }
}
}  // namespace detail

/// Float rows (see DotF32Fn): lookup tables of 3 columns (8 entries: VPERMPS reads the low 3 bits
/// of each lane, so a right shift by 3g selects group g; 11 groups per 32-bit word). Per 8 rows of a
/// tile: 11 shifts, 11 VPERMPS and 11 adds for 256 signs. Order as the int8 GEMV: chunks of rows,
/// one column word at a time (each row adds its word's sum to its total, in word order), tiles read
/// as one prefetched stream. Uses a thread-local buffer of 352 bytes per column word for the tables.
NANOQUANT_TARGET_AVX2 inline void dot_f32(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                          Index rb_begin, Index rb_end, const float* x, float* out)
{
    detail::f32_tokens<1>(tiles, row_blocks, col_words, rb_begin, rb_end, x, 0, out, 0);
}

namespace detail {
/// The int8 rows of TB tokens (token t: inputs Q + t·ldq, sums out + t·ldo): see dot_i8. The index
/// work of a tile (transpose, nibbles) is shared by the TB tokens; each token's 8 table registers
/// come from L1 (TB · 256 bytes per column word); chunks of kI8ChunkBlocks / TB row blocks keep every
/// token's int16 and int32 sums within 16 KiB.
template <int TB>
NANOQUANT_TARGET_AVX2 inline void i8_tokens(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                            Index rb_begin, Index rb_end, const std::int8_t* Q, Index ldq,
                                            std::int32_t* out, Index ldo)
{
    if (rb_end <= rb_begin) return;
    constexpr Index chunk = kI8ChunkBlocks / TB;
    // Start the first tiles on their way before building the tables.
    prefetch_first_runs(tiles, row_blocks, col_words, rb_begin, rb_end, chunk);
    thread_local AlignedVector<std::int8_t> buf;
    thread_local AlignedVector<std::int16_t> part;
    if (buf.size() < std::size_t(256 * TB * col_words)) buf.resize(std::size_t(256 * TB * col_words));
    if (part.size() < std::size_t(32 * TB * chunk)) part.resize(std::size_t(32 * TB * chunk));
    // Tables of word c, token t at 256·(TB·c + t): a word's tables of all tokens are contiguous.
    std::int8_t* tables = buf.data();
    for (int t = 0; t < TB; ++t) build_i8_tables(Q + t * ldq, col_words, tables + 256 * t, 256 * TB);
    for (int t = 0; t < TB; ++t)
        for (Index R = rb_begin; R < rb_end; ++R)
            for (int h = 0; h < 2; ++h)
                _mm256_store_si256(reinterpret_cast<__m256i*>(out + t * ldo + 16 * R + 8 * h), _mm256_setzero_si256());

    // Byte k of the 4 rows of each 128-bit lane to dword k of that lane, then dwords (0, 4, 1, 5, ...).
    const __m256i tr = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,  //
                                        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i nib = _mm256_set1_epi8(0x0F);
    for (Index c0 = rb_begin; c0 < rb_end; c0 += chunk) {
        const Index c1 = std::min(rb_end, c0 + chunk), len = c1 - c0;
        const Index D = prefetch_runs(len);  // runs ahead: at least prefetch_tiles(1) tiles
        // P + 32·(TB·(R − c0) + t): the partial sums of row block R, token t.
        std::int16_t* P = part.data();
        for (Index w0 = 0; w0 < col_words; w0 += kI8FoldWords) {
            const Index w1 = std::min(col_words, w0 + kI8FoldWords);
            for (Index i = 0; i < 32 * TB * len; i += 16)
                _mm256_store_si256(reinterpret_cast<__m256i*>(P + i), _mm256_setzero_si256());
            for (Index c = w0; c < w1; ++c) {
                const __m256i* T = reinterpret_cast<const __m256i*>(tables + 256 * TB * c);
                const std::uint32_t* t = tiles + c * row_blocks * 16;
                // Tile R of the run D runs ahead, as in the AVX-512 GEMV: the same rows D words on,
                // or the next chunk's rows (of this thread only).
                const std::uint32_t* pf = stream_prefetch_base(tiles, row_blocks, col_words, c, D, c1, len, rb_end);
                for (Index R = c0; R < c1; ++R) {
                    _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * R), _MM_HINT_T0);
                    const __m256i* v = reinterpret_cast<const __m256i*>(t + 16 * R);
                    const __m256i u0 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(_mm256_load_si256(v), tr), perm);
                    const __m256i u1 = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(_mm256_load_si256(v + 1), tr), perm);
                    // Byte j of each 128-bit lane = row j: A = (byte 0 | byte 2), B = (byte 1 | byte 3).
                    const __m256i A = _mm256_unpacklo_epi64(u0, u1), B = _mm256_unpackhi_epi64(u0, u1);
                    const __m256i ia0 = _mm256_and_si256(A, nib), ia1 = _mm256_and_si256(_mm256_srli_epi16(A, 4), nib);
                    const __m256i ib0 = _mm256_and_si256(B, nib), ib1 = _mm256_and_si256(_mm256_srli_epi16(B, 4), nib);
#pragma GCC unroll 4
                    for (int k = 0; k < TB; ++k) {
                        const __m256i* Tk = T + 8 * k;
                        __m256i lo = _mm256_setzero_si256(), hi = lo;  // rows 0..7, rows 8..15
                        lookup_i8(ia0, _mm256_load_si256(Tk), _mm256_load_si256(Tk + 1), lo, hi);
                        lookup_i8(ia1, _mm256_load_si256(Tk + 2), _mm256_load_si256(Tk + 3), lo, hi);
                        lookup_i8(ib0, _mm256_load_si256(Tk + 4), _mm256_load_si256(Tk + 5), lo, hi);
                        lookup_i8(ib1, _mm256_load_si256(Tk + 6), _mm256_load_si256(Tk + 7), lo, hi);
                        __m256i* p = reinterpret_cast<__m256i*>(P + 32 * (TB * (R - c0) + k));
                        _mm256_store_si256(p, _mm256_add_epi16(_mm256_load_si256(p), lo));
                        _mm256_store_si256(p + 1, _mm256_add_epi16(_mm256_load_si256(p + 1), hi));
                    }
                }
            }
            for (Index R = c0; R < c1; ++R)
                for (int k = 0; k < TB; ++k) fold_i8(P + 32 * (TB * (R - c0) + k), out + k * ldo + 16 * R);
        }
    }
}
}  // namespace detail

/// Integer rows (see DotI8Fn), exact: lookup tables in the spirit of T-MAC. Per tile (16 rows ×
/// 32 columns) a VPSHUFB byte transpose and a VPERMD put byte k of all 16 rows in one 128-bit lane
/// (index registers A = bytes (0 | 2), B = bytes (1 | 3)); each nibble then selects, with VPSHUFB,
/// the low and the high byte of its group's exact int16 sum, and VPUNPCK{L,H}BW rejoins them.
/// Partial sums stay int16 for kI8FoldWords column words (no overflow), then go to the int32 sums.
/// Order as the AVX-512 GEMV: chunks of rows, one column word at a time, so the tiles are read as
/// one prefetched stream. Uses a thread-local buffer of 256 bytes per column word for the tables.
NANOQUANT_TARGET_AVX2 inline void dot_i8(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                         Index rb_begin, Index rb_end, const std::int8_t* q, std::int32_t* out)
{
    detail::i8_tokens<1>(tiles, row_blocks, col_words, rb_begin, rb_end, q, 0, out, 0);
}

namespace detail {
/// Calls run(std::integral_constant<int, TB>, b) for blocks of TB = 4 tokens starting at b, then of
/// 2, then 1: the token blocks of the batched kernels (f32_tokens, i8_tokens).
template <typename Run>
inline void token_blocks(Index batch, Run&& run)
{
    Index b = 0;
    for (; b + 4 <= batch; b += 4) run(std::integral_constant<int, 4>{}, b);
    for (; b + 2 <= batch; b += 2) run(std::integral_constant<int, 2>{}, b);
    if (b < batch) run(std::integral_constant<int, 1>{}, b);
}
}  // namespace detail

/// Batched float rows (see DotF32BatchFn): blocks of 4 tokens share each tile's index work
/// (detail::f32_tokens), the remainder goes by 2 and 1.
NANOQUANT_TARGET_AVX2 inline void dot_f32_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                                Index rb_begin, Index rb_end, const float* X, Index ldx, Index batch,
                                                float* out, Index ldo)
{
    detail::token_blocks(batch, [&](auto tb, Index b) {
        detail::f32_tokens<decltype(tb)::value>(tiles, row_blocks, col_words, rb_begin, rb_end, X + b * ldx, ldx,
                                                out + b * ldo, ldo);
    });
}

/// Batched integer rows (see DotI8BatchFn): blocks of 4 tokens share each tile's index work
/// (detail::i8_tokens), the remainder goes by 2 and 1.
NANOQUANT_TARGET_AVX2 inline void dot_i8_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                               Index rb_begin, Index rb_end, const std::int8_t* Q, Index ldq,
                                               Index batch, std::int32_t* out, Index ldo)
{
    detail::token_blocks(batch, [&](auto tb, Index b) {
        detail::i8_tokens<decltype(tb)::value>(tiles, row_blocks, col_words, rb_begin, rb_end, Q + b * ldq, ldq,
                                               out + b * ldo, ldo);
    });
}

/// Int8 quantization (see QuantizeI8Fn): 8 lanes, the tail through the scalar reference's per-entry
/// function; the same products, clamp and rounding, so the same bytes.
NANOQUANT_TARGET_AVX2 inline float quantize_i8(const float* v, Index len, Index padded, std::int8_t* q,
                                               std::int32_t* qsum)
{
    const Index full = len - len % 8;
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
    __m256i m = _mm256_setzero_si256();
    for (Index j = 0; j < full; j += 8)
        m = _mm256_max_epu32(m, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + j)), abs_mask));
    alignas(32) std::uint32_t part[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(part), m);
    std::uint32_t abits = scalar::detail::absmax_bits(v + full, len - full);
    for (std::uint32_t p : part) abits = p > abits ? p : abits;
    float amax, scale;
    *qsum = 0;
    if (scalar::detail::quantize_i8_special(abits, padded, q, &scale, &amax)) return scale;
    const scalar::detail::I8Factors f(amax);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256 pre = _mm256_set1_ps(f.pre), inv = _mm256_set1_ps(f.inv);
    __m256i acc = _mm256_setzero_si256();
    for (Index j = 0; j < full; j += 8) {
        const __m256 x = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(v + j), pre), inv);
        const __m256i r = _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, x)));
        acc = _mm256_add_epi32(acc, r);
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(q + j), _mm_packs_epi16(w, w));
    }
    alignas(32) std::int32_t sums[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums), acc);
    std::int32_t s = 0;
    for (std::int32_t p : sums) s += p;
    for (Index j = full; j < len; ++j) {
        q[j] = scalar::detail::quantize_one(v[j], f);
        s += q[j];
    }
    *qsum = s;
    std::memset(q + len, 0, std::size_t(padded - len));
    return amax / 127.0f;
}

/// The AVX2 variant's table.
inline const KernelTable& table()
{
    static const KernelTable t{KernelTarget::Avx2, "avx2", &dot_f32, &dot_i8, &dot_f32_batch, &dot_i8_batch,
                               &quantize_i8, kLutTokensPerThread};
    return t;
}

}  // namespace avx2
}  // namespace kernels
}  // namespace nanoquant
#endif
