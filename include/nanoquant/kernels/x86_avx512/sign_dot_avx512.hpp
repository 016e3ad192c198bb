// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file sign_dot_avx512.hpp
/// AVX-512 kernels (F/BW/VL/DQ/VNNI/VBMI) over the tiled layout, compiled through function-level
/// target attributes so that no global -m flag is needed. Only call them when the CPU supports these
/// extensions (dispatch.hpp).
///
/// Lookup tables (in the spirit of T-MAC): for each group of 4 columns the 16 possible signed sums
/// of its 4 inputs are built once per vector; 16 rows sit in the 32-bit lanes of one register and
/// each 4-bit nibble of signs selects one table entry per lane.
///  - Float path (GEMV and GEMM): tables are 16 floats, looked up with VPERMPS (which reads only the
///    low 4 bits of each lane, so a right shift of the tile by 4g selects group g).
///  - Integer GEMV: tables hold exact int16 sums split into a low (u8) and a high (s8) byte plane;
///    VPERMB looks up 4 groups per register (byte k of a lane indexes entries 16k..16k+15), and
///    VPDPBUSD adds the 4 bytes of each lane: y = Σ lo + 256·Σ hi, exact.
///  - Integer GEMM, blocks of 32 tokens: the tokens sit in the int16 lanes instead (detail::lane_batch):
///    per group of 4 columns a table of 16 entries × 32 tokens, one VPADDW per row and group.
///  - Integer GEMM, fewer tokens: each 4-column group of a tile becomes four 0/1 bytes per row
///    (VPERMD by the nibble), shared by 12 or 8 tokens, and VPDPBUSD with each token's 4 inputs
///    broadcast adds Σ_{s=−1} q for 16 rows; Σ s·q = Σ q − 2·Σ_{s=−1} q.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NANOQUANT_HAVE_AVX512_KERNELS 1
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "nanoquant/kernels/kernel_table.hpp"
#include "nanoquant/kernels/scalar/sign_dot_scalar.hpp"
#include "nanoquant/kernels/packed_layer.hpp"

#define NANOQUANT_TARGET_AVX512                                                                        \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,bmi,bmi2," \
                          "popcnt")))

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the pass-through operand, which trips
// -Wmaybe-uninitialized once inlined here; the value is never used.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace nanoquant {
namespace kernels {
namespace avx512 {


namespace detail {
/// Lane e = −1 where bit t of e is set, else +1.
NANOQUANT_TARGET_AVX512 inline __m512 sign_pattern(int t)
{
    const __m512i e = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __mmask16 neg = _mm512_test_epi32_mask(e, _mm512_set1_epi32(1 << t));
    return _mm512_mask_blend_ps(neg, _mm512_set1_ps(1.0f), _mm512_set1_ps(-1.0f));
}

/// The 16 signed sums of x[0..3]: lane e = Σ_t (bit t of e ? −x_t : x_t), in a fixed order.
NANOQUANT_TARGET_AVX512 inline __m512 group_table(const float* x, __m512 s0, __m512 s1, __m512 s2, __m512 s3)
{
    __m512 t = _mm512_mul_ps(_mm512_set1_ps(x[0]), s0);
    t = _mm512_fmadd_ps(_mm512_set1_ps(x[1]), s1, t);
    t = _mm512_fmadd_ps(_mm512_set1_ps(x[2]), s2, t);
    return _mm512_fmadd_ps(_mm512_set1_ps(x[3]), s3, t);
}

/// Sum of the 16 lookups of one strip (2 column words) for one row block, as a fixed tree.
NANOQUANT_TARGET_AVX512 inline __m512 strip_sum(__m512i v0, __m512i v1, const __m512* tab)
{
#define NQ_P(V, K, T) _mm512_permutexvar_ps(K == 0 ? V : _mm512_srli_epi32(V, 4 * K), T)
    const __m512 a0 = _mm512_add_ps(NQ_P(v0, 0, tab[0]), NQ_P(v0, 1, tab[1]));
    const __m512 a1 = _mm512_add_ps(NQ_P(v0, 2, tab[2]), NQ_P(v0, 3, tab[3]));
    const __m512 a2 = _mm512_add_ps(NQ_P(v0, 4, tab[4]), NQ_P(v0, 5, tab[5]));
    const __m512 a3 = _mm512_add_ps(NQ_P(v0, 6, tab[6]), NQ_P(v0, 7, tab[7]));
    const __m512 a4 = _mm512_add_ps(NQ_P(v1, 0, tab[8]), NQ_P(v1, 1, tab[9]));
    const __m512 a5 = _mm512_add_ps(NQ_P(v1, 2, tab[10]), NQ_P(v1, 3, tab[11]));
    const __m512 a6 = _mm512_add_ps(NQ_P(v1, 4, tab[12]), NQ_P(v1, 5, tab[13]));
    const __m512 a7 = _mm512_add_ps(NQ_P(v1, 6, tab[14]), NQ_P(v1, 7, tab[15]));
#undef NQ_P
    return _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                         _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
}
}  // namespace detail

/// Float rows (see DotF32Fn): strips of 64 columns, 16 tables in registers, all row blocks swept
/// per strip.
NANOQUANT_TARGET_AVX512 inline void dot_f32(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                            Index rb_begin, Index rb_end, const float* x, float* out)
{
    if (col_words == 0) {
        for (Index R = rb_begin; R < rb_end; ++R) _mm512_store_ps(out + 16 * R, _mm512_setzero_ps());
        return;
    }
    const __m512 s0 = detail::sign_pattern(0), s1 = detail::sign_pattern(1);
    const __m512 s2 = detail::sign_pattern(2), s3 = detail::sign_pattern(3);
    for (Index c = 0; c < col_words; c += 2) {
        __m512 tab[16];
#pragma GCC unroll 16
        for (int g = 0; g < 16; ++g) tab[g] = detail::group_table(x + 32 * c + 4 * g, s0, s1, s2, s3);
        const std::uint32_t* t0 = tiles + (c * row_blocks) * 16;
        const std::uint32_t* t1 = tiles + ((c + 1) * row_blocks) * 16;
        // The next strip's streams, where the prefetch distance runs past this thread's rows.
        const std::uint32_t* n0 = tiles + ((c + 2) * row_blocks + rb_begin - rb_end) * 16;
        const std::uint32_t* n1 = tiles + ((c + 3) * row_blocks + rb_begin - rb_end) * 16;
        for (Index R = rb_begin; R < rb_end; ++R) {
            // Weights come from DRAM once per call: prefetch 4 KiB ahead in both streams (the
            // hardware prefetcher stops at every 4 KiB page), continuing into this thread's part
            // of the next strip rather than into rows another thread reads.
            const Index P = R + prefetch_tiles(2);
            _mm_prefetch(reinterpret_cast<const char*>(P < rb_end ? t0 + 16 * P : n0 + 16 * P), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(P < rb_end ? t1 + 16 * P : n1 + 16 * P), _MM_HINT_T0);
            const __m512i v0 = _mm512_load_si512(t0 + 16 * R);
            const __m512i v1 = _mm512_load_si512(t1 + 16 * R);
            const __m512 s = detail::strip_sum(v0, v1, tab);
            _mm512_store_ps(out + 16 * R, c == 0 ? s : _mm512_add_ps(_mm512_load_ps(out + 16 * R), s));
        }
    }
}

namespace detail {
/// Integer tables of one column word (32 inputs, groups g = 0..7): four 64-byte planes
/// [A.lo, A.hi, B.lo, B.hi]; A holds groups 0, 2, 4, 6 and B groups 1, 3, 5, 7, group 2k + h at
/// bytes 16k..16k+15 of its plane; lo/hi are the low and high bytes of the exact int16 sums.
NANOQUANT_TARGET_AVX512 inline void build_i8_tables(const std::int8_t* q, Index col_words, std::int8_t* tables)
{
    // Four registers of two groups each, 16 int16 entries per group: (0, 2), (4, 6), (1, 3), (5, 7).
    // Lane l of pair p holds entry e = l & 15 of group ga (l < 16) or gb; x_t of its group comes from
    // one VPERMW of the word's 32 inputs, negated where bit t of e is set (neg[t]).
    const int pairs[4][2] = {{0, 2}, {4, 6}, {1, 3}, {5, 7}};
    __m512i vidx[4][4];
    for (int p = 0; p < 4; ++p)
        for (int t = 0; t < 4; ++t)
            vidx[p][t] = _mm512_mask_blend_epi16(__mmask32(0xFFFF0000u), _mm512_set1_epi16(short(4 * pairs[p][0] + t)),
                                                 _mm512_set1_epi16(short(4 * pairs[p][1] + t)));
    const __mmask32 neg[4] = {__mmask32(0xAAAAAAAAu), __mmask32(0xCCCCCCCCu), __mmask32(0xF0F0F0F0u),
                              __mmask32(0xFF00FF00u)};
    // A plane = the low (or high) bytes of two pair registers: byte i of the plane is byte 2i (or
    // 2i + 1) of their concatenation (VPERMT2B; index bit 6 picks the second register).
    const __m512i iota = _mm512_set_epi64(0x3F3E3D3C3B3A3938LL, 0x3736353433323130LL, 0x2F2E2D2C2B2A2928LL,
                                          0x2726252423222120LL, 0x1F1E1D1C1B1A1918LL, 0x1716151413121110LL,
                                          0x0F0E0D0C0B0A0908LL, 0x0706050403020100LL);
    const __m512i vlo = _mm512_add_epi8(iota, iota), vhi = _mm512_add_epi8(vlo, _mm512_set1_epi8(1));
    const __m512i zero = _mm512_setzero_si512();
    for (Index c = 0; c < col_words; ++c) {
        const __m512i x = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * c)));
        __m512i P[4];
#pragma GCC unroll 4
        for (int p = 0; p < 4; ++p) {
            __m512i sum = zero;
#pragma GCC unroll 4
            for (int t = 0; t < 4; ++t) {
                const __m512i v = _mm512_permutexvar_epi16(vidx[p][t], x);
                sum = _mm512_add_epi16(sum, _mm512_mask_sub_epi16(v, neg[t], zero, v));
            }
            P[p] = sum;
        }
        std::int8_t* T = tables + 256 * c;
        _mm512_store_si512(T, _mm512_permutex2var_epi8(P[0], vlo, P[1]));        // A.lo
        _mm512_store_si512(T + 64, _mm512_permutex2var_epi8(P[0], vhi, P[1]));   // A.hi
        _mm512_store_si512(T + 128, _mm512_permutex2var_epi8(P[2], vlo, P[3]));  // B.lo
        _mm512_store_si512(T + 192, _mm512_permutex2var_epi8(P[2], vhi, P[3]));  // B.hi
    }
}

/// Row blocks per chunk of the int8 GEMV (4096 rows; the chunk's int32 sums, 16 KiB, stay in L1
/// while it passes over every column word). 1024 (sums in L2) measured 5 % faster with cold weights
/// on 11008×4096 but 20 % slower hot; 128 (shorter runs) slower cold (docs/kernels.md).
constexpr Index kI8ChunkBlocks = 256;
}  // namespace detail

/// Integer rows (see DotI8Fn): int16 lookup tables in byte planes, VPERMB + VPDPBUSD, exact.
/// Uses a thread-local table buffer of 256 bytes per column word.
///
/// Order: chunks of kI8ChunkBlocks row blocks; per chunk, one column word at a time over the
/// chunk's rows (its four table planes in registers), adding into the chunk's sums. The tiles are
/// thus read as runs (a run: one column word's tiles of the chunk's rows, contiguous), one run
/// after the other, and each tile prefetches the same row of a run at least kPrefetchBytes ahead:
/// one stream, which DRAM serves faster than the interleaved streams of a strip of column words
/// (docs/kernels.md).
NANOQUANT_TARGET_AVX512 inline void dot_i8(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                           Index rb_begin, Index rb_end, const std::int8_t* q, std::int32_t* out)
{
    if (rb_end <= rb_begin) return;
    // Start the first tiles on their way before building the tables.
    prefetch_first_runs(tiles, row_blocks, col_words, rb_begin, rb_end, detail::kI8ChunkBlocks);
    thread_local AlignedVector<std::int8_t> buf;
    if (buf.size() < std::size_t(256 * col_words)) buf.resize(std::size_t(256 * col_words));
    std::int8_t* tables = buf.data();
    detail::build_i8_tables(q, col_words, tables);
    for (Index R = rb_begin; R < rb_end; ++R) _mm512_store_si512(out + 16 * R, _mm512_setzero_si512());

    const __m512i nib = _mm512_set1_epi32(0x0F0F0F0F);
    const __m512i off = _mm512_set1_epi32(0x30201000);  // byte k indexes entries 16k..16k+15
    const __m512i ones = _mm512_set1_epi8(1);
    for (Index c0 = rb_begin; c0 < rb_end; c0 += detail::kI8ChunkBlocks) {
        const Index c1 = std::min(rb_end, c0 + detail::kI8ChunkBlocks), len = c1 - c0;
        const Index D = prefetch_runs(len);  // runs ahead: at least prefetch_tiles(1) tiles
        for (Index c = 0; c < col_words; ++c) {
            const std::int8_t* T = tables + 256 * c;
            // Planes: A.lo, A.hi (groups 0, 2, 4, 6), B.lo, B.hi (groups 1, 3, 5, 7).
            const __m512i tal = _mm512_load_si512(T), tah = _mm512_load_si512(T + 64);
            const __m512i tbl = _mm512_load_si512(T + 128), tbh = _mm512_load_si512(T + 192);
            const std::uint32_t* t = tiles + c * row_blocks * 16;
            // Tile R of the run D runs ahead: the same rows D words on, or the next chunk's rows
            // (of this thread only: the last chunk prefetches nothing past its words).
            const std::uint32_t* pf = stream_prefetch_base(tiles, row_blocks, col_words, c, D, c1, len, rb_end);
            for (Index R = c0; R < c1; ++R) {
                _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * R), _MM_HINT_T0);
                const __m512i v = _mm512_load_si512(t + 16 * R);
                // (v & nib) | off in one VPTERNLOGD (imm 0xEA = (A & B) | C).
                const __m512i ia = _mm512_ternarylogic_epi32(v, nib, off, 0xEA);
                const __m512i ib = _mm512_ternarylogic_epi32(_mm512_srli_epi32(v, 4), nib, off, 0xEA);
                // Σ lo bytes (unsigned) + 256 · Σ hi bytes (signed): the exact int16 group sums.
                __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_permutexvar_epi8(ia, tal), ones);
                lo = _mm512_dpbusd_epi32(lo, _mm512_permutexvar_epi8(ib, tbl), ones);
                __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_permutexvar_epi8(ia, tah));
                hi = _mm512_dpbusd_epi32(hi, ones, _mm512_permutexvar_epi8(ib, tbh));
                const __m512i s = _mm512_add_epi32(lo, _mm512_slli_epi32(hi, 8));
                _mm512_store_si512(out + 16 * R, _mm512_add_epi32(_mm512_load_si512(out + 16 * R), s));
            }
        }
    }
}

namespace detail {
/// Column words per strip of the token-lane kernels: 32 groups of 4 columns, whose tables
/// (32 × 1 KiB) stay in L1, and whose int16 partial sums cannot overflow (32 · 4 · 127 < 2^15).
constexpr Index kLaneStripWords = 4;  // lane_block's switch covers 1..4 words

/// Int8 lanes: 32 tokens as int16 (exact: a strip's partial sums fit, see kLaneStripWords), added
/// into an int32 accumulator of 32 lanes per row after each strip: even tokens 0, 2, …, 30 in its
/// first 16 lanes, odd tokens in the last 16 (two VPDPWSSD with word masks 1,0 / 0,1 do the
/// widening and the add in one instruction each).
struct LaneI16 {
    using In = std::int16_t;
    using Acc = std::int32_t;
    static constexpr int kTokens = 32;
    NANOQUANT_TARGET_AVX512 static __m512i zero() { return _mm512_setzero_si512(); }
    NANOQUANT_TARGET_AVX512 static __m512i load(const void* p) { return _mm512_load_si512(p); }
    NANOQUANT_TARGET_AVX512 static __m512i add(__m512i a, __m512i b) { return _mm512_add_epi16(a, b); }
    NANOQUANT_TARGET_AVX512 static __m512i sub(__m512i a, __m512i b) { return _mm512_sub_epi16(a, b); }
    NANOQUANT_TARGET_AVX512 static __m512i twice(__m512i a) { return _mm512_slli_epi16(a, 1); }
    NANOQUANT_TARGET_AVX512 static void accumulate(Acc* a, __m512i s)
    {
        const __m512i even = _mm512_set1_epi32(1), odd = _mm512_set1_epi32(1 << 16);
        _mm512_store_si512(a, _mm512_dpwssd_epi32(_mm512_load_si512(a), s, even));
        _mm512_store_si512(a + 16, _mm512_dpwssd_epi32(_mm512_load_si512(a + 16), s, odd));
    }
};

/// For the row block at tile t (word k's tile stride words further), k < W: e[16·k + i] holds the
/// 8 nibbles of row i's word k as bytes nibble · 8 (byte g: group g), so that the entry of group g
/// is at 8 · byte g (an address scale), one VPMULTISHIFTQB for 8 rows.
template <int W>
NANOQUANT_TARGET_AVX512 inline void lane_nibbles(const std::uint32_t* t, Index stride, std::uint64_t* e)
{
    // Byte g of a 64-bit lane = bits 4g − 3 … 4g + 4 of the zero-extended word (bit offsets mod 64;
    // bits 32..63 are zero), so that nibble g lands on bits 3..6.
    const __m512i ctrl = _mm512_set1_epi64(0x1915110D0905013DLL);
    const __m512i mask = _mm512_set1_epi8(0x78);
#pragma GCC unroll 4
    for (int k = 0; k < W; ++k) {
        const __m512i v = _mm512_load_si512(t + k * stride);
        const __m512i lo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v));
        const __m512i hi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(v, 1));
        _mm512_store_si512(e + 16 * k, _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, lo), mask));
        _mm512_store_si512(e + 16 * k + 8, _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, hi), mask));
    }
}

/// The 16 rows of one row block over one strip of W column words (8·W groups of 4 columns; tb: the
/// strip's tables, 1 KiB per group): each row adds, in every group, the table entry its nibble of
/// signs selects, into acc (16 × L). e: lane_nibbles. Each row reads its 8 nibbles of a word with
/// one scalar load and takes them apart in registers (a load per group would double the loads,
/// the limit here).
template <typename Lane, int W>
NANOQUANT_TARGET_AVX512 inline void lane_rows(const char* tb, const std::uint64_t* e, typename Lane::Acc* acc)
{
    for (int i = 0; i < 16; ++i) {
        auto s0 = Lane::zero(), s1 = s0;
#pragma GCC unroll 4
        for (int k = 0; k < W; ++k) {
            std::uint64_t w = e[16 * k + i];
            const char* T = tb + 8192 * k;
#pragma GCC unroll 4
            for (int g = 0; g < 8; g += 2) {
                s0 = Lane::add(s0, Lane::load(T + 1024 * g + 8 * (w & 0xFF)));
                s1 = Lane::add(s1, Lane::load(T + 1024 * (g + 1) + 8 * ((w >> 8) & 0xFF)));
                w >>= 16;
            }
            // Keep the two chains apart: GCC otherwise reassociates them into one chain of
            // dependent adds, which runs at one add per cycle instead of two.
            __asm__("" : "+v"(s0), "+v"(s1));
        }
        Lane::accumulate(acc + i * Lane::kTokens, Lane::add(s0, s1));
    }
}

/// Token-lane GEMM rows for one block of Lane::kTokens tokens (fewer are zero-padded): the
/// transposed inputs Xt (32·col_words columns × kTokens lanes) give, per group of 4 columns, a table
/// of the 16 signed sums with one lane per token (64 bytes per entry, 1 KiB per group); each row
/// then adds one entry per group, chosen by its nibble of signs (lane_nibbles, lane_rows: one
/// vector add with a memory operand, for all tokens at once). acc: rows × kTokens.
template <typename Lane>
NANOQUANT_TARGET_AVX512 inline void lane_block(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                               Index rb_begin, Index rb_end, const typename Lane::In* Xt,
                                               typename Lane::In* tables, typename Lane::Acc* acc)
{
    constexpr int L = Lane::kTokens;
    const Index rows = 16 * (rb_end - rb_begin);
    std::memset(acc, 0, std::size_t(rows) * L * sizeof(typename Lane::Acc));
    for (Index c0 = 0; c0 < col_words; c0 += kLaneStripWords) {
        const Index cw = col_words - c0 < kLaneStripWords ? col_words - c0 : kLaneStripWords;
        const int groups = int(8 * cw);
        // Entry e of group g = Σ_t (bit t of e ? −x : x)[4g + t]: T[e] = T[e without its lowest set
        // bit t] − 2·x_t, a fixed order, so every row sees the same table values.
        for (int g = 0; g < groups; ++g) {
            const typename Lane::In* a = Xt + (32 * c0 + 4 * g) * L;
            auto* T = tables + g * 16 * L;
            decltype(Lane::zero()) d[4];
            for (int t = 0; t < 4; ++t) d[t] = Lane::twice(Lane::load(a + L * t));
            const auto t0 = Lane::add(Lane::add(Lane::load(a), Lane::load(a + L)),
                                      Lane::add(Lane::load(a + 2 * L), Lane::load(a + 3 * L)));
            std::memcpy(T, &t0, 64);
            for (int e = 1; e < 16; ++e) {
                const int t = __builtin_ctz(unsigned(e));
                const auto v = Lane::sub(Lane::load(T + (e & (e - 1)) * L), d[t]);
                std::memcpy(T + e * L, &v, 64);
            }
        }
        const char* tb = reinterpret_cast<const char*>(tables);
        const Index stride = 16 * row_blocks;
        alignas(64) std::uint64_t e[16 * kLaneStripWords];
        for (Index R = rb_begin; R < rb_end; ++R) {
            const std::uint32_t* t = tiles + (c0 * row_blocks + R) * 16;
            typename Lane::Acc* a = acc + (R - rb_begin) * 16 * L;
            // The word count as a constant: fully unrolled loops without per-group tests.
            switch (cw) {
            case 1: lane_nibbles<1>(t, stride, e), lane_rows<Lane, 1>(tb, e, a); break;
            case 2: lane_nibbles<2>(t, stride, e), lane_rows<Lane, 2>(tb, e, a); break;
            case 3: lane_nibbles<3>(t, stride, e), lane_rows<Lane, 3>(tb, e, a); break;
            default: lane_nibbles<4>(t, stride, e), lane_rows<Lane, 4>(tb, e, a); break;
            }
        }
    }
}

/// One stage of a perfect-shuffle transpose of 2^k registers × 2^k lanes (k stages transpose):
/// register 2i takes the low halves of registers i and i + N/2 interleaved, register 2i + 1 the
/// high halves. Element (row, lane) moves to the position whose index bits are rotated left by one.
/// N = 32: 16-bit lanes (VPERMT2W); N = 16: 32-bit lanes (VPERMT2D).
template <int N>
NANOQUANT_TARGET_AVX512 inline void shuffle_stage(__m512i* r, __m512i lo, __m512i hi)
{
    static_assert(N == 16 || N == 32, "16 dword or 32 word lanes");
    __m512i t[N];
#pragma GCC unroll 32
    for (int i = 0; i < N / 2; ++i) {
        if constexpr (N == 32) {
            t[2 * i] = _mm512_permutex2var_epi16(r[i], lo, r[i + N / 2]);
            t[2 * i + 1] = _mm512_permutex2var_epi16(r[i], hi, r[i + N / 2]);
        } else {
            t[2 * i] = _mm512_permutex2var_epi32(r[i], lo, r[i + N / 2]);
            t[2 * i + 1] = _mm512_permutex2var_epi32(r[i], hi, r[i + N / 2]);
        }
    }
#pragma GCC unroll 32
    for (int i = 0; i < N; ++i) r[i] = t[i];
}

/// Xt[32·j + b] = int16(X[b·ldx + j]) for 32 columns j and 32 token lanes b (lanes b ≥ nb are 0):
/// 32 words per register, transposed in 5 perfect-shuffle stages of VPERMT2W.
NANOQUANT_TARGET_AVX512 inline void transpose_in(const std::int8_t* X, Index ldx, Index nb, std::int16_t* Xt)
{
    alignas(64) static constexpr std::uint16_t kLo[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                          8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    const __m512i lo = _mm512_load_si512(kLo), hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    __m512i r[32];
#pragma GCC unroll 32
    for (int b = 0; b < 32; ++b)
        r[b] = b < nb ? _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(X + b * ldx)))
                      : _mm512_setzero_si512();
    for (int s = 0; s < 5; ++s) shuffle_stage<32>(r, lo, hi);
#pragma GCC unroll 32
    for (int j = 0; j < 32; ++j) _mm512_store_si512(Xt + 32 * j, r[j]);
}

/// out[b·ldo + i] = token b of row i of acc (LaneI16 order: token 2k in lane k, token 2k + 1 in lane
/// 16 + k) for 16 rows i and the first nb tokens: two 16 × 16 dword transposes in 4 perfect-shuffle
/// stages of VPERMT2D.
NANOQUANT_TARGET_AVX512 inline void transpose_out(const std::int32_t* acc, Index nb, std::int32_t* out, Index ldo)
{
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    for (int h = 0; h < 2; ++h) {
        __m512i r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) r[i] = _mm512_load_si512(acc + 32 * i + 16 * h);
        for (int s = 0; s < 4; ++s) shuffle_stage<16>(r, lo, hi);
        for (int k = 0; k < 16 && 2 * k + h < nb; ++k) _mm512_storeu_si512(out + (2 * k + h) * ldo, r[k]);
    }
}

/// Batched rows through lane_block: X (token b at X + b·ldx, 32·col_words entries) in blocks of
/// Lane::kTokens tokens, transposed into thread-local buffers; out + b·ldo receives token b.
template <typename Lane, typename XIn, typename Out>
NANOQUANT_TARGET_AVX512 inline void lane_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                               Index rb_begin, Index rb_end, const XIn* X, Index ldx, Index batch,
                                               Out* out, Index ldo)
{
    constexpr int L = Lane::kTokens;
    static_assert(L == 32 && std::is_same<typename Lane::In, std::int16_t>::value &&
                      std::is_same<XIn, std::int8_t>::value && std::is_same<Out, std::int32_t>::value,
                  "the transposes are written for int8 inputs in 32 int16 token lanes and int32 outputs");
    thread_local AlignedVector<typename Lane::In> xt, tables;
    thread_local AlignedVector<typename Lane::Acc> acc;
    const Index cols = 32 * col_words, rows = 16 * (rb_end - rb_begin);
    if (xt.size() < std::size_t(cols * L)) xt.resize(std::size_t(cols * L));
    if (tables.size() < std::size_t(8 * kLaneStripWords * 16 * L)) tables.resize(std::size_t(8 * kLaneStripWords * 16 * L));
    if (acc.size() < std::size_t(rows * L)) acc.resize(std::size_t(rows * L));
    for (Index b0 = 0; b0 < batch; b0 += L) {
        const Index nb = batch - b0 < L ? batch - b0 : L;
        for (Index j0 = 0; j0 < cols; j0 += 32) transpose_in(X + b0 * ldx + j0, ldx, nb, xt.data() + j0 * L);
        lane_block<Lane>(tiles, row_blocks, col_words, rb_begin, rb_end, xt.data(), tables.data(),
                         acc.data());
        for (Index i0 = 0; i0 < rows; i0 += 16)
            transpose_out(acc.data() + i0 * L, nb, out + b0 * ldo + 16 * rb_begin + i0, ldo);
    }
}
}  // namespace detail

/// Batched float rows (see DotF32BatchFn): per strip, every token's 16 tables are built into a
/// thread-local buffer (L1) and the tile indices are shared by all tokens. (Float token lanes, 16
/// tokens per register, were tried through detail::lane_batch: 64 sign-adds per instruction, like
/// VPERMPS + VADDPS, plus the transposes: no faster, so only the int16 lanes use it.)
NANOQUANT_TARGET_AVX512 inline void dot_f32_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                                  Index rb_begin, Index rb_end, const float* X, Index ldx,
                                                  Index batch, float* out, Index ldo)
{
    if (col_words == 0) {
        for (Index b = 0; b < batch; ++b)
            for (Index R = rb_begin; R < rb_end; ++R) _mm512_store_ps(out + b * ldo + 16 * R, _mm512_setzero_ps());
        return;
    }
    thread_local AlignedVector<float> buf, accbuf;
    if (buf.size() < std::size_t(256 * batch)) buf.resize(std::size_t(256 * batch));
    __m512* tabs = reinterpret_cast<__m512*>(buf.data());
    // Partial sums in a contiguous buffer, [row block][token][16], copied to out at the end: the
    // tokens' rows of out lie ldo floats apart, and with ldo a multiple of 1024 (4 KiB) all of them
    // map to the same L1 set, so summing into out directly missed L1 on every update (the kernel was
    // 1.39× slower that way on 4096 output rows, batch 32; docs/kernels.md).
    const Index nrb = rb_end - rb_begin;
    if (accbuf.size() < std::size_t(16 * nrb * batch)) accbuf.resize(std::size_t(16 * nrb * batch));
    float* acc = accbuf.data();
    const __m512 s0 = detail::sign_pattern(0), s1 = detail::sign_pattern(1);
    const __m512 s2 = detail::sign_pattern(2), s3 = detail::sign_pattern(3);
    for (Index c = 0; c < col_words; c += 2) {
        for (Index b = 0; b < batch; ++b)
            for (int g = 0; g < 16; ++g)
                tabs[16 * b + g] = detail::group_table(X + b * ldx + 32 * c + 4 * g, s0, s1, s2, s3);
        const std::uint32_t* t0 = tiles + (c * row_blocks) * 16;
        const std::uint32_t* t1 = tiles + ((c + 1) * row_blocks) * 16;
        for (Index R = rb_begin; R < rb_end; ++R) {
            const __m512i v0 = _mm512_load_si512(t0 + 16 * R);
            const __m512i v1 = _mm512_load_si512(t1 + 16 * R);
            // The 16 nibble indices are shared by all tokens.
            __m512i idx[16];
#pragma GCC unroll 8
            for (int k = 0; k < 8; ++k) {
                idx[k] = _mm512_srli_epi32(v0, 4 * k);
                idx[8 + k] = _mm512_srli_epi32(v1, 4 * k);
            }
            for (Index b = 0; b < batch; ++b) {
                float* o = acc + ((R - rb_begin) * batch + b) * 16;
                const __m512* tb = tabs + 16 * b;
                __m512 a[8];
#pragma GCC unroll 8
                for (int k = 0; k < 8; ++k)
                    a[k] = _mm512_add_ps(_mm512_permutexvar_ps(idx[2 * k], tb[2 * k]),
                                         _mm512_permutexvar_ps(idx[2 * k + 1], tb[2 * k + 1]));
                const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])),
                                               _mm512_add_ps(_mm512_add_ps(a[4], a[5]), _mm512_add_ps(a[6], a[7])));
                _mm512_store_ps(o, c == 0 ? s : _mm512_add_ps(_mm512_load_ps(o), s));
            }
        }
    }
    for (Index R = rb_begin; R < rb_end; ++R)
        for (Index b = 0; b < batch; ++b)
            _mm512_store_ps(out + b * ldo + 16 * R, _mm512_load_ps(acc + ((R - rb_begin) * batch + b) * 16));
}

namespace detail {
/// T tokens × one row block of the batched integer path. Each 4-column group of a tile becomes 16
/// lanes of four 0/1 bytes (VPERMD of a 16-entry dword table by the nibble), shared by all tokens;
/// VPDPBUSD with the token's 4 inputs broadcast then adds Σ_{s=−1} q for 16 rows at once.
template <int T>
NANOQUANT_TARGET_AVX512 inline void i8_batch_block(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                                   Index R, const std::int8_t* Q, Index ldq,
                                                   const std::int32_t* qsums, std::int32_t* out, Index ldo)
{
    const __m512i expand = _mm512_setr_epi32(0x00000000, 0x00000001, 0x00000100, 0x00000101, 0x00010000,
                                             0x00010001, 0x00010100, 0x00010101, 0x01000000, 0x01000001,
                                             0x01000100, 0x01000101, 0x01010000, 0x01010001, 0x01010100, 0x01010101);
    __m512i acc[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_si512();
    for (Index c = 0; c < col_words; ++c) {
        const __m512i v = _mm512_load_si512(tiles + (c * row_blocks + R) * 16);
#pragma GCC unroll 8
        for (int g = 0; g < 8; ++g) {
            const __m512i e = _mm512_permutexvar_epi32(g == 0 ? v : _mm512_srli_epi32(v, 4 * g), expand);
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) {
                std::int32_t q4;
                std::memcpy(&q4, Q + t * ldq + 32 * c + 4 * g, 4);
                acc[t] = _mm512_dpbusd_epi32(acc[t], e, _mm512_set1_epi32(q4));
            }
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
        _mm512_store_si512(out + t * ldo + 16 * R,
                           _mm512_sub_epi32(_mm512_set1_epi32(qsums[t]), _mm512_slli_epi32(acc[t], 1)));
}
}  // namespace detail

/// Batched integer rows (see DotI8BatchFn), exact. Whole blocks of 32 tokens go through the
/// token-lane kernel (detail::lane_batch with int16 lanes), and so does a remainder of 24 or more
/// (zero-padded to 32); a smaller remainder goes through detail::i8_batch_block in blocks of 12,
/// 8, 4, 2, 1 tokens per row block, which runs near the lane kernel's rate for blocks of 8 and 12
/// (docs/kernels.md) and wastes no padded lanes.
NANOQUANT_TARGET_AVX512 inline void dot_i8_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                                 Index rb_begin, Index rb_end, const std::int8_t* Q, Index ldq,
                                                 Index batch, std::int32_t* out, Index ldo)
{
    constexpr Index kLaneMin = 24;
    const Index rem = batch % detail::LaneI16::kTokens;
    const Index lanes = rem >= kLaneMin ? batch : batch - rem;
    if (lanes > 0)
        detail::lane_batch<detail::LaneI16>(tiles, row_blocks, col_words, rb_begin, rb_end, Q, ldq, lanes, out, ldo);
    if (lanes == batch) return;
    Q += lanes * ldq;
    out += lanes * ldo;
    batch -= lanes;
    thread_local AlignedVector<std::int32_t> qsums;
    if (qsums.size() < std::size_t(batch)) qsums.resize(std::size_t(batch));
    for (Index b = 0; b < batch; ++b) {
        std::int32_t s = 0;
        for (Index j = 0; j < 32 * col_words; ++j) s += Q[b * ldq + j];
        qsums[std::size_t(b)] = s;
    }
    for (Index R = rb_begin; R < rb_end; ++R) {
        for (Index t = 0; t < col_words; ++t)
            _mm_prefetch(reinterpret_cast<const char*>(tiles + (t * row_blocks + R + 2) * 16), _MM_HINT_T0);
        // Token blocks of 12 and 8 (accumulators + expanded signs stay in registers; both run at about
        // the same rate per token, blocks of 4 at 60 % of it), then 4, 2, 1: a multiple of 4 from 8 on
        // is all 12s and 8s (16 = 8 + 8, not 12 + 4).
        const Index batch4 = batch - batch % 4;
        Index b = 0;
#define NQ_BLOCK(TB, COND)                                                                                 \
    for (; b + TB <= batch && (COND); b += TB)                                                             \
        detail::i8_batch_block<TB>(tiles, row_blocks, col_words, R, Q + b * ldq, ldq, qsums.data() + b, \
                                   out + b * ldo, ldo);
        NQ_BLOCK(12, batch4 - b != 16)
        NQ_BLOCK(8, true)
        NQ_BLOCK(4, true)
        NQ_BLOCK(2, true)
        NQ_BLOCK(1, true)
#undef NQ_BLOCK
    }
}

/// Int8 quantization (see QuantizeI8Fn): 16 lanes, the tail masked; per entry the scalar reference's
/// products, clamp and rounding (CVTPS2DQ rounds in the current mode, as std::nearbyint), so the
/// same bytes. 7× faster than the SSE2 loop it replaces (a batch of 32 × 4096 inputs: 93 → 13 µs).
NANOQUANT_TARGET_AVX512 inline float quantize_i8(const float* v, Index len, Index padded, std::int8_t* q,
                                                 std::int32_t* qsum)
{
    const auto tail = [](Index left) {
        return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << unsigned(left)) - 1u);
    };
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i m0 = _mm512_setzero_si512(), m1 = m0;
    Index j = 0;
    for (; j + 32 <= len; j += 32) {
        m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_loadu_si512(v + j), abs_mask));
        m1 = _mm512_max_epu32(m1, _mm512_and_si512(_mm512_loadu_si512(v + j + 16), abs_mask));
    }
    for (; j < len; j += 16)
        m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_maskz_loadu_epi32(tail(len - j), v + j), abs_mask));
    const std::uint32_t abits = _mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1));
    float amax, scale;
    *qsum = 0;
    if (scalar::detail::quantize_i8_special(abits, padded, q, &scale, &amax)) return scale;
    const scalar::detail::I8Factors f(amax);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512 pre = _mm512_set1_ps(f.pre), inv = _mm512_set1_ps(f.inv);
    __m512i acc = _mm512_setzero_si512();
    for (j = 0; j < len; j += 16) {
        const __mmask16 k = tail(len - j);
        const __m512 x = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, v + j), pre), inv);
        const __m512i r = _mm512_cvtps_epi32(_mm512_min_ps(hi, _mm512_max_ps(lo, x)));
        acc = _mm512_add_epi32(acc, r);  // masked-off lanes are 0
        _mm512_mask_cvtepi32_storeu_epi8(q + j, k, r);
    }
    *qsum = _mm512_reduce_add_epi32(acc);
    std::memset(q + len, 0, std::size_t(padded - len));
    return amax / 127.0f;
}

/// The AVX-512 variant's table.
inline const KernelTable& table()
{
    static const KernelTable t{KernelTarget::Avx512, "avx512", &dot_f32, &dot_i8, &dot_f32_batch, &dot_i8_batch,
                               &quantize_i8};
    return t;
}

}  // namespace avx512
}  // namespace kernels
}  // namespace nanoquant

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
