// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file sign_dot_neon.hpp
/// AArch64 NEON kernels over the tiled layout (NEON is baseline on AArch64: no flag needed).
///
/// Four rows of a tile sit in the lanes of one register. For column b, VTST against 1<<b gives an
/// all-ones lane where the sign is −1, and a bit-select picks −x or +x, accumulated in column order:
/// the float result is the scalar reference's, operation for operation; the integer result is exact.
/// Batched calls apply each column's mask to up to 4 tokens.

#if defined(__aarch64__) && defined(__ARM_NEON)
#define NANOQUANT_HAVE_NEON_KERNELS 1
#include <arm_neon.h>

#include <cstdint>

#include "nanoquant/kernels/kernel_table.hpp"
#include "nanoquant/kernels/scalar/sign_dot_scalar.hpp"

namespace nanoquant {
namespace kernels {
namespace neon {

namespace detail {
/// Up to 4 tokens × 4 rows (quarter h of row block R), float path.
inline void f32_rows(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index R, int h, const float* X,
                     Index ldx, int T, float* out, Index ldo)
{
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (Index c = 0; c < col_words; ++c) {
        const uint32x4_t v = vld1q_u32(tiles + (c * row_blocks + R) * 16 + 4 * h);
        for (int b = 0; b < 32; ++b) {
            const uint32x4_t m = vtstq_u32(v, vdupq_n_u32(1u << b));
            for (int t = 0; t < T; ++t) {
                const float32x4_t xv = vdupq_n_f32(X[t * ldx + 32 * c + b]);
                acc[t] = vaddq_f32(acc[t], vbslq_f32(m, vnegq_f32(xv), xv));
            }
        }
    }
    for (int t = 0; t < T; ++t) vst1q_f32(out + t * ldo + 16 * R + 4 * h, acc[t]);
}

/// Up to 4 tokens × 4 rows, integer path (exact).
inline void i8_rows(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index R, int h,
                    const std::int8_t* Q, Index ldq, int T, std::int32_t* out, Index ldo)
{
    int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    for (Index c = 0; c < col_words; ++c) {
        const uint32x4_t v = vld1q_u32(tiles + (c * row_blocks + R) * 16 + 4 * h);
        for (int b = 0; b < 32; ++b) {
            const uint32x4_t m = vtstq_u32(v, vdupq_n_u32(1u << b));
            for (int t = 0; t < T; ++t) {
                const int32x4_t qv = vdupq_n_s32(Q[t * ldq + 32 * c + b]);
                acc[t] = vaddq_s32(acc[t], vbslq_s32(m, vnegq_s32(qv), qv));
            }
        }
    }
    for (int t = 0; t < T; ++t) vst1q_s32(out + t * ldo + 16 * R + 4 * h, acc[t]);
}
}  // namespace detail

/// Float rows (see DotF32Fn).
inline void dot_f32(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin, Index rb_end,
                    const float* x, float* out)
{
    for (Index R = rb_begin; R < rb_end; ++R)
        for (int h = 0; h < 4; ++h) detail::f32_rows(tiles, row_blocks, col_words, R, h, x, 0, 1, out, 0);
}

/// Integer rows (see DotI8Fn).
inline void dot_i8(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin, Index rb_end,
                   const std::int8_t* q, std::int32_t* out)
{
    for (Index R = rb_begin; R < rb_end; ++R)
        for (int h = 0; h < 4; ++h) detail::i8_rows(tiles, row_blocks, col_words, R, h, q, 0, 1, out, 0);
}

/// Batched float rows (see DotF32BatchFn).
inline void dot_f32_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                          Index rb_end, const float* X, Index ldx, Index batch, float* out, Index ldo)
{
    for (Index b = 0; b < batch; b += 4) {
        const int T = int(batch - b < 4 ? batch - b : 4);
        for (Index R = rb_begin; R < rb_end; ++R)
            for (int h = 0; h < 4; ++h)
                detail::f32_rows(tiles, row_blocks, col_words, R, h, X + b * ldx, ldx, T, out + b * ldo, ldo);
    }
}

/// Batched integer rows (see DotI8BatchFn).
inline void dot_i8_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                         Index rb_end, const std::int8_t* Q, Index ldq, Index batch, std::int32_t* out, Index ldo)
{
    for (Index b = 0; b < batch; b += 4) {
        const int T = int(batch - b < 4 ? batch - b : 4);
        for (Index R = rb_begin; R < rb_end; ++R)
            for (int h = 0; h < 4; ++h)
                detail::i8_rows(tiles, row_blocks, col_words, R, h, Q + b * ldq, ldq, T, out + b * ldo, ldo);
    }
}

/// The NEON variant's table.
inline const KernelTable& table()
{
    static const KernelTable t{KernelTarget::Neon, "neon", &dot_f32, &dot_i8, &dot_f32_batch, &dot_i8_batch,
                               &scalar::quantize_i8};
    return t;
}

}  // namespace neon
}  // namespace kernels
}  // namespace nanoquant
#endif
