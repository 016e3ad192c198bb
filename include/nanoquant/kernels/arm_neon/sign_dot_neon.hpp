// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file sign_dot_neon.hpp
/// AArch64 NEON kernels over the tiled layout (NEON is baseline on AArch64: no flag needed).
///
/// Float path: lookup tables (dot_f32). Per group of 4 columns the 16 signed sums of its inputs are
/// 64 bytes, four registers; four rows of a tile sit in the lanes of one register, and TBL with the
/// four table registers picks each row's entry by the bytes 4·nibble + 0..3 (one MLA makes them).
/// Integer path: lookup tables of exact int16 sums in byte planes, TBL (dot_i8), as in the x86
/// variants. Batched calls run the GEMV per token (the tiles then come from cache).

#if defined(__aarch64__) && defined(__ARM_NEON)
#define NANOQUANT_HAVE_NEON_KERNELS 1
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>

#include "nanoquant/kernels/kernel_table.hpp"
#include "nanoquant/kernels/packed_layer.hpp"
#include "nanoquant/kernels/scalar/sign_dot_scalar.hpp"

namespace nanoquant {
namespace kernels {
namespace neon {

namespace detail {
/// Float tables of one column word (32 inputs, groups g = 0..7): entry e of group g at 16g + e =
/// Σ_t (bit t of e ? −x : x)[4g + t] (one multiply and three FMAs by ±1, so the sums of x in t order),
/// 512 bytes per word.
inline void build_f32_tables(const float* x, Index col_words, float* tables)
{
    float32x4_t sgn[4][4];  // [t][q]: lanes e = 4q .. 4q + 3
    for (int t = 0; t < 4; ++t)
        for (int q = 0; q < 4; ++q) {
            float v[4];
            for (int l = 0; l < 4; ++l) v[l] = ((4 * q + l) >> t) & 1 ? -1.0f : 1.0f;
            sgn[t][q] = vld1q_f32(v);
        }
    for (Index c = 0; c < col_words; ++c)
        for (int g = 0; g < 8; ++g) {
            const float* xg = x + 32 * c + 4 * g;
            float* T = tables + 512 * c + 16 * g;
            for (int q = 0; q < 4; ++q) {
                float32x4_t s = vmulq_n_f32(sgn[0][q], xg[0]);
                s = vfmaq_n_f32(s, sgn[1][q], xg[1]);
                s = vfmaq_n_f32(s, sgn[2][q], xg[2]);
                s = vfmaq_n_f32(s, sgn[3][q], xg[3]);
                vst1q_f32(T + 4 * q, s);
            }
        }
}

/// Row blocks per chunk of the float GEMV: its sums, 64 bytes per row block (8 KiB), and the chunk's
/// tiles of one column word (8 KiB, read once per half word) stay in L1.
constexpr Index kF32ChunkBlocks = 128;

/// Integer tables of one column word (32 inputs, groups g = 0..7): per group the 16 exact int16 sums
/// Σ_t (bit t of e ? −q : q)[4g + t] as a low-byte plane and a high-byte plane of 16 bytes each, at
/// bytes 32g and 32g + 16 (256 bytes per word).
inline void build_i8_tables(const std::int8_t* q, Index col_words, std::uint8_t* tables)
{
    int16x8_t sgn[4][2];
    for (int t = 0; t < 4; ++t)
        for (int h = 0; h < 2; ++h) {
            std::int16_t v[8];
            for (int e = 0; e < 8; ++e) v[e] = ((8 * h + e) >> t) & 1 ? -1 : 1;
            sgn[t][h] = vld1q_s16(v);
        }
    for (Index c = 0; c < col_words; ++c)
        for (int g = 0; g < 8; ++g) {
            const std::int8_t* x = q + 32 * c + 4 * g;
            int16x8_t s[2];
            for (int h = 0; h < 2; ++h) {
                s[h] = vmulq_n_s16(sgn[0][h], x[0]);
                for (int t = 1; t < 4; ++t) s[h] = vmlaq_n_s16(s[h], sgn[t][h], x[t]);
            }
            std::uint8_t* T = tables + 256 * c + 32 * g;
            vst1q_u8(T, vreinterpretq_u8_s8(vcombine_s8(vmovn_s16(s[0]), vmovn_s16(s[1]))));
            vst1q_u8(T + 16, vreinterpretq_u8_s8(vcombine_s8(vshrn_n_s16(s[0], 8), vshrn_n_s16(s[1], 8))));
        }
}

/// Row blocks per chunk of the int8 GEMV (int16 partial sums 32 B and int32 sums 64 B per row block).
constexpr Index kI8ChunkBlocks = 128;
/// Column words summed in int16 before they go to the int32 sums: 8 groups of at most 4·127 per word,
/// 8 · 4064 < 2^15.
constexpr Index kI8FoldWords = 8;
}  // namespace detail

/// Float rows (see DotF32Fn): lookup tables (build_f32_tables). Order: chunks of rows, one column
/// word at a time, in two halves of 4 groups (their 16 table registers held); each row's sum adds its
/// groups in column order, so the result does not depend on the thread count.
inline void dot_f32(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin, Index rb_end,
                    const float* x, float* out)
{
    if (rb_end <= rb_begin) return;
    prefetch_first_runs(tiles, row_blocks, col_words, rb_begin, rb_end, detail::kF32ChunkBlocks);
    thread_local AlignedVector<float> buf;
    if (buf.size() < std::size_t(512 * col_words)) buf.resize(std::size_t(512 * col_words));
    detail::build_f32_tables(x, col_words, buf.data());
    for (Index i = 16 * rb_begin; i < 16 * rb_end; ++i) out[i] = 0.0f;
    const uint32x4_t nib = vdupq_n_u32(0x0F), bytes = vdupq_n_u32(0x03020100);
    int32x4_t shift[8];
    for (int g = 0; g < 8; ++g) shift[g] = vdupq_n_s32(-4 * g);
    for (Index c0 = rb_begin; c0 < rb_end; c0 += detail::kF32ChunkBlocks) {
        const Index c1 = std::min(rb_end, c0 + detail::kF32ChunkBlocks), len = c1 - c0;
        const Index D = prefetch_runs(len);
        for (Index c = 0; c < col_words; ++c) {
            const std::uint32_t* t = tiles + c * row_blocks * 16;
            const std::uint32_t* pf = stream_prefetch_base(tiles, row_blocks, col_words, c, D, c1, len, rb_end);
            for (int h = 0; h < 2; ++h) {
                uint8x16x4_t tb[4];
                for (int k = 0; k < 4; ++k)
                    tb[k] = vld1q_u8_x4(reinterpret_cast<const std::uint8_t*>(buf.data() + 512 * c + 16 * (4 * h + k)));
                for (Index R = c0; R < c1; ++R) {
                    if (h == 0) __builtin_prefetch(pf + 16 * R);
                    for (int qr = 0; qr < 4; ++qr) {
                        const uint32x4_t v = vld1q_u32(t + 16 * R + 4 * qr);
                        float* o = out + 16 * R + 4 * qr;
                        float32x4_t acc = vld1q_f32(o);
                        for (int k = 0; k < 4; ++k) {
                            // Bytes 4·n .. 4·n + 3 of the group's 64-byte table: the float of entry n.
                            const uint32x4_t n = vandq_u32(vshlq_u32(v, shift[4 * h + k]), nib);
                            const uint8x16_t idx = vreinterpretq_u8_u32(vmlaq_n_u32(bytes, n, 0x04040404u));
                            acc = vaddq_f32(acc, vreinterpretq_f32_u8(vqtbl4q_u8(tb[k], idx)));
                        }
                        vst1q_f32(o, acc);
                    }
                }
            }
        }
    }
}

/// Integer rows (see DotI8Fn), exact: lookup tables as in the x86 variants. VLD4 splits a tile into
/// its 4 bytes per row (register k: byte k of the 16 rows); each nibble looks up the low and the
/// high byte of its group's int16 sum with TBL, and ZIP1/ZIP2 rejoin them (rows 0..7, 8..15).
/// Partial sums stay int16 for kI8FoldWords words. Order: chunks of rows, one column word at a time
/// (its 16 table registers held), the tiles read as one prefetched stream.
inline void dot_i8(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin, Index rb_end,
                   const std::int8_t* q, std::int32_t* out)
{
    if (rb_end <= rb_begin) return;
    prefetch_first_runs(tiles, row_blocks, col_words, rb_begin, rb_end, detail::kI8ChunkBlocks);
    thread_local AlignedVector<std::uint8_t> buf;
    thread_local AlignedVector<std::int16_t> part;
    if (buf.size() < std::size_t(256 * col_words)) buf.resize(std::size_t(256 * col_words));
    if (part.size() < std::size_t(16 * detail::kI8ChunkBlocks)) part.resize(std::size_t(16 * detail::kI8ChunkBlocks));
    const std::uint8_t* tables = buf.data();
    detail::build_i8_tables(q, col_words, buf.data());
    for (Index i = 16 * rb_begin; i < 16 * rb_end; ++i) out[i] = 0;
    const uint8x16_t nib = vdupq_n_u8(0x0F);
    for (Index c0 = rb_begin; c0 < rb_end; c0 += detail::kI8ChunkBlocks) {
        const Index c1 = std::min(rb_end, c0 + detail::kI8ChunkBlocks), len = c1 - c0;
        const Index D = prefetch_runs(len);
        std::int16_t* P = part.data();  // P + 16·(R − c0): row block R's partial sums
        for (Index w0 = 0; w0 < col_words; w0 += detail::kI8FoldWords) {
            const Index w1 = std::min(col_words, w0 + detail::kI8FoldWords);
            for (Index i = 0; i < 16 * len; ++i) P[i] = 0;
            for (Index c = w0; c < w1; ++c) {
                uint8x16_t tl[8], th[8];
                for (int g = 0; g < 8; ++g) {
                    tl[g] = vld1q_u8(tables + 256 * c + 32 * g);
                    th[g] = vld1q_u8(tables + 256 * c + 32 * g + 16);
                }
                const std::uint32_t* t = tiles + c * row_blocks * 16;
                const std::uint32_t* pf = stream_prefetch_base(tiles, row_blocks, col_words, c, D, c1, len, rb_end);
                for (Index R = c0; R < c1; ++R) {
                    __builtin_prefetch(pf + 16 * R);
                    const uint8x16x4_t b = vld4q_u8(reinterpret_cast<const std::uint8_t*>(t + 16 * R));
                    int16x8_t lo = vld1q_s16(P + 16 * (R - c0)), hi = vld1q_s16(P + 16 * (R - c0) + 8);
                    for (int k = 0; k < 4; ++k) {
                        const uint8x16_t ia = vandq_u8(b.val[k], nib), ib = vshrq_n_u8(b.val[k], 4);
                        const uint8x16_t la = vqtbl1q_u8(tl[2 * k], ia), ha = vqtbl1q_u8(th[2 * k], ia);
                        const uint8x16_t lb = vqtbl1q_u8(tl[2 * k + 1], ib), hb = vqtbl1q_u8(th[2 * k + 1], ib);
                        lo = vaddq_s16(lo, vreinterpretq_s16_u8(vzip1q_u8(la, ha)));
                        hi = vaddq_s16(hi, vreinterpretq_s16_u8(vzip2q_u8(la, ha)));
                        lo = vaddq_s16(lo, vreinterpretq_s16_u8(vzip1q_u8(lb, hb)));
                        hi = vaddq_s16(hi, vreinterpretq_s16_u8(vzip2q_u8(lb, hb)));
                    }
                    vst1q_s16(P + 16 * (R - c0), lo);
                    vst1q_s16(P + 16 * (R - c0) + 8, hi);
                }
            }
            for (Index R = c0; R < c1; ++R)
                for (int h = 0; h < 4; ++h) {
                    std::int32_t* o = out + 16 * R + 4 * h;
                    vst1q_s32(o, vaddw_s16(vld1q_s32(o), vld1_s16(P + 16 * (R - c0) + 4 * h)));
                }
        }
    }
}

/// Batched float rows (see DotF32BatchFn): one dot_f32 per token (the tiles then come from cache).
inline void dot_f32_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                          Index rb_end, const float* X, Index ldx, Index batch, float* out, Index ldo)
{
    for (Index b = 0; b < batch; ++b)
        dot_f32(tiles, row_blocks, col_words, rb_begin, rb_end, X + b * ldx, out + b * ldo);
}

/// Batched integer rows (see DotI8BatchFn): one dot_i8 per token (the tiles then come from cache).
inline void dot_i8_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                         Index rb_end, const std::int8_t* Q, Index ldq, Index batch, std::int32_t* out, Index ldo)
{
    for (Index b = 0; b < batch; ++b) dot_i8(tiles, row_blocks, col_words, rb_begin, rb_end, Q + b * ldq, out + b * ldo);
}

/// The NEON variant's table.
inline const KernelTable& table()
{
    static const KernelTable t{KernelTarget::Neon, "neon", &dot_f32, &dot_i8, &dot_f32_batch, &dot_i8_batch,
                               &scalar::quantize_i8, kLutTokensPerThread};
    return t;
}

}  // namespace neon
}  // namespace kernels
}  // namespace nanoquant
#endif
