// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file sign_dot_scalar.hpp
/// The scalar reference kernels: plain loops over the tiled layout that define what every SIMD
/// variant computes (docs/packed_format.md). The float path sums s_ij·x_j in column order; the
/// integer path is exact, so every variant must reproduce it bit for bit.

#include <cstdint>

#include "nanoquant/kernels/kernel_table.hpp"

namespace nanoquant {
namespace kernels {
namespace scalar {

/// Sign of (row lane l of row block R, column j): −1 if the bit is set.
inline bool is_negative(const std::uint32_t* tiles, Index row_blocks, Index R, Index l, Index j)
{
    return (tiles[((j / 32) * row_blocks + R) * 16 + l] >> (j % 32)) & 1u;
}

/// Reference float rows: out[i] = Σ_j s_ij x_j, summed left to right.
inline void dot_f32(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin, Index rb_end,
                    const float* x, float* out)
{
    for (Index R = rb_begin; R < rb_end; ++R)
        for (Index l = 0; l < 16; ++l) {
            float acc = 0.0f;
            for (Index j = 0; j < col_words * 32; ++j)
                acc += is_negative(tiles, row_blocks, R, l, j) ? -x[j] : x[j];
            out[R * 16 + l] = acc;
        }
}

/// Reference integer rows: out[i] = Σ_j s_ij q_j (exact).
inline void dot_i8(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin, Index rb_end,
                   const std::int8_t* q, std::int32_t* out)
{
    for (Index R = rb_begin; R < rb_end; ++R)
        for (Index l = 0; l < 16; ++l) {
            std::int32_t acc = 0;
            for (Index j = 0; j < col_words * 32; ++j)
                acc += is_negative(tiles, row_blocks, R, l, j) ? -std::int32_t(q[j]) : std::int32_t(q[j]);
            out[R * 16 + l] = acc;
        }
}

/// Reference batched float rows (one dot_f32 per token).
inline void dot_f32_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                          Index rb_end, const float* X, Index ldx, Index batch, float* out, Index ldo)
{
    for (Index b = 0; b < batch; ++b)
        dot_f32(tiles, row_blocks, col_words, rb_begin, rb_end, X + b * ldx, out + b * ldo);
}

/// Reference batched integer rows (one dot_i8 per token).
inline void dot_i8_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index rb_begin,
                         Index rb_end, const std::int8_t* Q, Index ldq, Index batch, std::int32_t* out, Index ldo)
{
    for (Index b = 0; b < batch; ++b)
        dot_i8(tiles, row_blocks, col_words, rb_begin, rb_end, Q + b * ldq, out + b * ldo);
}

/// The scalar variant's table.
inline const KernelTable& table()
{
    static const KernelTable t{KernelTarget::Scalar, "scalar", &dot_f32, &dot_i8, &dot_f32_batch, &dot_i8_batch};
    return t;
}

}  // namespace scalar
}  // namespace kernels
}  // namespace nanoquant
