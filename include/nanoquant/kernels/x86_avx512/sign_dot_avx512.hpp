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
///  - Integer GEMM: 32 rows (two row blocks) sit in the int16 lanes of one register; per token, each
///    group of 5 columns has a table of its 32 exact int16 sums, looked up with VPERMW by the rows'
///    5 signs (detail::pair_block): 160 sign-adds per instruction, the indices shared by all tokens.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NANOQUANT_HAVE_AVX512_KERNELS 1
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

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
/// while it passes over every column word). Larger chunks put the sums in L2 (slower hot), smaller
/// ones shorten the runs the prefetcher sees (slower cold); docs/benchmark-log.md has the figures.
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
    // map to the same L1 set, so summing into out directly would miss L1 on every update.
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
    for (Index b = 0; b < batch; ++b)
        for (Index R = rb_begin; R < rb_end; ++R)
            _mm512_store_ps(out + b * ldo + 16 * R, _mm512_load_ps(acc + ((R - rb_begin) * batch + b) * 16));
}

namespace detail {
/// Groups per strip of the row-pair GEMM: a strip is two column words (64 columns), cut into 12
/// groups of 5 columns and one of 4 (columns 60..63).
constexpr int kPairGroups = 13;
/// Tokens per pass of the row-pair GEMM: their tables, 13 × 64 bytes each (26 KiB for 32), stay in L1.
constexpr Index kPairTokens = 32;
/// Row pairs per chunk of the row-pair GEMM: its sums, 64 + 128 bytes per pair and token (768 KiB
/// for 32 tokens), stay in L2; the tables are rebuilt per chunk.
constexpr Index kPairChunk = 128;
/// Strips whose sums the row-pair GEMM keeps in int16 before widening them: |Σ| <= 4·64·127 = 32512.
constexpr Index kPairStripsI16 = 4;

/// kPairBroadcast.v[c]: VPERMW indices that broadcast word c.
struct PairBroadcast {
    alignas(64) std::uint16_t v[32][32];
};
constexpr PairBroadcast make_pair_broadcast()
{
    PairBroadcast b{};
    for (int c = 0; c < 32; ++c)
        for (int l = 0; l < 32; ++l) b.v[c][l] = std::uint16_t(c);
    return b;
}
inline constexpr PairBroadcast kPairBroadcast = make_pair_broadcast();

/// The tables of `nt` tokens (token b reads Q + b·ldq) for the strip of column words c, c + 1:
/// tab[(b·13 + g)·32 + e] = Σ_k (bit k of e ? −q : +q)[32c + 5g + k] over the group's 5 columns
/// (4 for g = 12, whose entries e and e + 16 are then equal), exact in int16 (|·| <= 5·127).
/// Each q is broadcast with one VPERMW (indices from kPairBroadcast, loaded rather
/// than counted up in a register, which costs more instructions per table) and added or subtracted by entry.
NANOQUANT_TARGET_AVX512 inline void pair_tables(const std::int8_t* Q, Index ldq, Index nt, Index c,
                                                std::int16_t* tab)
{
    const __mmask32 bit[5] = {0xAAAAAAAAu, 0xCCCCCCCCu, 0xF0F0F0F0u, 0xFF00FF00u, 0xFFFF0000u};
    for (Index b = 0; b < nt; ++b) {
        const std::int8_t* q = Q + b * ldq + 32 * c;
        const __m512i q0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
        const __m512i q1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32)));
#pragma GCC unroll 13
        for (int g = 0; g < kPairGroups; ++g) {
            __m512i v = _mm512_setzero_si512();
#pragma GCC unroll 5
            for (int k = 0; k < 5; ++k) {
                if (g == kPairGroups - 1 && k == 4) break;
                const int j = 5 * g + k;
                const __m512i at = _mm512_load_si512(kPairBroadcast.v[j % 32]);
                const __m512i x = _mm512_permutexvar_epi16(at, j < 32 ? q0 : q1);
                v = _mm512_mask_sub_epi16(_mm512_add_epi16(v, x), bit[k], v, x);
            }
            _mm512_store_si512(tab + (b * kPairGroups + g) * 32, v);
        }
    }
}

/// The 13 group indices of a row pair over one strip: rows 16·RA + i in the even int16 lanes 2i,
/// rows 16·RB + i in the odd lanes 2i + 1, group g's 5 sign bits in the low bits of each lane (VPERMW
/// reads only bits 0..4; group 12 has bit 4 clear). a0/a1: RA's tiles of the strip's two words,
/// b0/b1: RB's. The tiles are first cut into four registers of 16-bit halves (columns 0..15, 16..31,
/// 32..47, 48..63, RA's in the even lanes and RB's in the odd ones); a group is then one 16-bit shift
/// of a half, or two and an OR where it straddles two halves (groups 3, 6 and 9): 26 instructions
/// instead of 54 for joining the rows after each group's 32-bit shifts.
NANOQUANT_TARGET_AVX512 inline void pair_indices(__m512i a0, __m512i a1, __m512i b0, __m512i b1, __m512i* idx)
{
    const __mmask32 odd = 0xAAAAAAAAu;
    const __m512i half[4] = {_mm512_mask_blend_epi16(odd, a0, _mm512_slli_epi32(b0, 16)),
                             _mm512_mask_blend_epi16(odd, _mm512_srli_epi32(a0, 16), b0),
                             _mm512_mask_blend_epi16(odd, a1, _mm512_slli_epi32(b1, 16)),
                             _mm512_mask_blend_epi16(odd, _mm512_srli_epi32(a1, 16), b1)};
#pragma GCC unroll 13
    for (int g = 0; g < kPairGroups; ++g) {
        const int k = 5 * g / 16, s = 5 * g % 16;  // group g starts at bit s of half k
        const __m512i lo = _mm512_srli_epi16(half[k], s);
        idx[g] = s + 5 > 16 && k < 3 ? _mm512_or_si512(lo, _mm512_slli_epi16(half[k + 1], 16 - s)) : lo;
    }
}

/// One row pair over one strip for nt tokens (tables T, 13·32 int16 per token): per token the 13
/// VPERMW lookups summed in int16, added to the token's int16 partial sums h (unless First) and
/// either stored there or, when Widen, added into its int32 sums a (two VPDPWSSD: even lanes, block
/// RA, into a[0..15]; odd lanes, block RB, into a[16..31]).
template <bool First, bool Widen>
NANOQUANT_TARGET_AVX512 inline void pair_tokens(const __m512i* idx, const std::int16_t* T, Index nt, std::int16_t* h,
                                                std::int32_t* a)
{
    const __m512i even = _mm512_set1_epi32(1), odd = _mm512_set1_epi32(1 << 16);
    for (Index b = 0; b < nt; ++b, T += kPairGroups * 32, h += 32, a += 32) {
        __m512i s0 = _mm512_permutexvar_epi16(idx[0], _mm512_load_si512(T));
        __m512i s1 = _mm512_permutexvar_epi16(idx[1], _mm512_load_si512(T + 32));
#pragma GCC unroll 13
        for (int g = 2; g < kPairGroups; ++g) {
            const __m512i e = _mm512_permutexvar_epi16(idx[g], _mm512_load_si512(T + 32 * g));
            if (g % 2 == 0) s0 = _mm512_add_epi16(s0, e);
            else s1 = _mm512_add_epi16(s1, e);
        }
        // Two chains of adds, kept apart (GCC would otherwise merge them into one).
        __asm__("" : "+v"(s0), "+v"(s1));
        __m512i s = _mm512_add_epi16(s0, s1);
        if (!First) s = _mm512_add_epi16(s, _mm512_load_si512(h));
        if (Widen) {
            _mm512_store_si512(a, _mm512_dpwssd_epi32(_mm512_load_si512(a), s, even));
            _mm512_store_si512(a + 16, _mm512_dpwssd_epi32(_mm512_load_si512(a + 16), s, odd));
        } else {
            _mm512_store_si512(h, s);
        }
    }
}

/// Row-pair GEMM rows for nt <= kPairTokens tokens: 32 rows (two row blocks) sit in the int16 lanes
/// of one register, and per token each group of 5 columns costs one VPERMW (its 32-entry table
/// read from L1 as the memory operand, indexed by the row's 5 signs) and one VPADDW: 160 sign-adds
/// per VPERMW, the indices shared by all tokens. Sums stay in int16 over kPairStripsI16 strips, then
/// are widened into int32 (pair_tokens). An odd last row block is paired with itself. out + b·ldo
/// receives token b.
NANOQUANT_TARGET_AVX512 inline void pair_block(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                               Index rb_begin, Index rb_end, const std::int8_t* Q, Index ldq,
                                               Index nt, std::int32_t* out, Index ldo)
{
    thread_local AlignedVector<std::int16_t> tab, part;
    thread_local AlignedVector<std::int32_t> acc;
    const Index pairs = (rb_end - rb_begin + 1) / 2;
    const Index chunk = pairs < kPairChunk ? pairs : kPairChunk;
    if (tab.size() < std::size_t(nt * kPairGroups * 32)) tab.resize(std::size_t(nt * kPairGroups * 32));
    if (acc.size() < std::size_t(chunk * nt * 32)) acc.resize(std::size_t(chunk * nt * 32));
    if (part.size() < std::size_t(chunk * nt * 32)) part.resize(std::size_t(chunk * nt * 32));
    const Index ahead = prefetch_tiles(2);  // tiles ahead in each of the strip's two streams
    const Index stride = row_blocks * 16;   // words between a row block's tiles of consecutive column words
    // One word per page of the tiles of strip c (words c, c + 1) for row blocks [a, b): touched a
    // strip ahead so that the prefetches below reach them (touch_pages).
    const auto touch_strip = [&](Index c, Index a, Index b) {
        for (Index k = c; k < c + 2 && k < col_words; ++k)
            touch_pages(tiles + k * stride + 16 * a, tiles + k * stride + 16 * b);
    };
    for (Index p0 = 0; p0 < pairs; p0 += chunk) {
        const Index p1 = p0 + chunk < pairs ? p0 + chunk : pairs;
        std::memset(acc.data(), 0, std::size_t((p1 - p0) * nt * 32) * sizeof(std::int32_t));
        const Index r0 = rb_begin + 2 * p0, r1 = std::min(rb_end, rb_begin + 2 * p1);
        if (p0 == 0) touch_strip(0, r0, r1);
        for (Index c = 0; c < col_words; c += 2) {
            if (c + 2 < col_words) touch_strip(c + 2, r0, r1);
            else touch_strip(0, r1, std::min(rb_end, r1 + 2 * chunk));  // the next chunk's first strip
            pair_tables(Q, ldq, nt, c, tab.data());
            const Index strip = c / 2;
            const bool first = strip % kPairStripsI16 == 0;
            const bool widen = strip % kPairStripsI16 == kPairStripsI16 - 1 || c + 2 >= col_words;
            const std::uint32_t* w0 = tiles + c * stride;
            const std::uint32_t* w1 = w0 + stride;
            for (Index p = p0; p < p1; ++p) {
                const Index RA = rb_begin + 2 * p, RB = RA + 1 < rb_end ? RA + 1 : RA;
                _mm_prefetch(reinterpret_cast<const char*>(w0 + 16 * (RA + ahead)), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(w1 + 16 * (RA + ahead)), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(w0 + 16 * (RA + ahead + 1)), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(w1 + 16 * (RA + ahead + 1)), _MM_HINT_T0);
                __m512i idx[kPairGroups];
                pair_indices(_mm512_load_si512(w0 + 16 * RA), _mm512_load_si512(w1 + 16 * RA),
                             _mm512_load_si512(w0 + 16 * RB), _mm512_load_si512(w1 + 16 * RB), idx);
                std::int32_t* a = acc.data() + (p - p0) * nt * 32;
                std::int16_t* h = part.data() + (p - p0) * nt * 32;
                if (first) {
                    if (widen) pair_tokens<true, true>(idx, tab.data(), nt, h, a);
                    else pair_tokens<true, false>(idx, tab.data(), nt, h, a);
                } else {
                    if (widen) pair_tokens<false, true>(idx, tab.data(), nt, h, a);
                    else pair_tokens<false, false>(idx, tab.data(), nt, h, a);
                }
            }
        }
        for (Index b = 0; b < nt; ++b) {
            for (Index p = p0; p < p1; ++p) {
                const Index RA = rb_begin + 2 * p;
                const std::int32_t* a = acc.data() + ((p - p0) * nt + b) * 32;
                _mm512_storeu_si512(out + b * ldo + 16 * RA, _mm512_load_si512(a));
                if (RA + 1 < rb_end) _mm512_storeu_si512(out + b * ldo + 16 * (RA + 1), _mm512_load_si512(a + 16));
            }
        }
    }
}
}  // namespace detail

/// Batched integer rows (see DotI8BatchFn), exact: the row-pair GEMM (detail::pair_block) in
/// passes of at most kPairTokens tokens, of equal size (40 tokens: 20 + 20).
NANOQUANT_TARGET_AVX512 inline void dot_i8_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                                 Index rb_begin, Index rb_end, const std::int8_t* Q, Index ldq,
                                                 Index batch, std::int32_t* out, Index ldo)
{
    if (rb_end <= rb_begin || batch <= 0) return;
    const Index passes = (batch + detail::kPairTokens - 1) / detail::kPairTokens;
    const Index per = (batch + passes - 1) / passes;
    for (Index b = 0; b < batch; b += per)
        detail::pair_block(tiles, row_blocks, col_words, rb_begin, rb_end, Q + b * ldq, ldq,
                           batch - b < per ? batch - b : per, out + b * ldo, ldo);
}

/// Int8 quantization (see QuantizeI8Fn): 16 lanes, the tail masked; per entry the scalar reference's
/// products, clamp and rounding (CVTPS2DQ rounds in the current mode, as std::nearbyint), so the
/// same bytes.
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
                               &quantize_i8, kLutTokensPerThread};
    return t;
}

}  // namespace avx512
}  // namespace kernels
}  // namespace nanoquant

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
