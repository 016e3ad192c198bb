// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file sign_dot_scalar.hpp
/// The scalar reference kernels: plain loops over the tiled layout that define what every SIMD
/// variant computes (docs/packed_format.md). The float path sums s_ij·x_j in column order; the
/// integer path is exact, so every variant must reproduce it bit for bit.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

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

namespace detail {
/// max |v[j]| as a bit pattern: for non-negative floats the integer order is the float order, and
/// Inf/NaN (all-ones exponent) sort above every finite value, so `abits >= 0x7F800000` flags a
/// non-finite entry. (An integer max reduction also vectorizes without -ffast-math.)
inline std::uint32_t absmax_bits(const float* v, Index len)
{
    std::uint32_t abits = 0;
    for (Index j = 0; j < len; ++j) {
        std::uint32_t b;
        std::memcpy(&b, v + j, 4);
        b &= 0x7FFFFFFFu;
        abits = b > abits ? b : abits;
    }
    return abits;
}

/// The two factors of q = round((v · pre) · inv), from amax > 0 (finite): inv = 127/(amax · pre),
/// with pre = 1, or 2^100 when amax < 2^-100 (near the denormal range 127/amax overflows to
/// infinity, and 0 · inf = NaN; the power of two is exact, so q is still round(v · 127/amax)).
struct I8Factors {
    float pre, inv;
    explicit I8Factors(float amax) : pre(amax < 0x1p-100f ? 0x1p100f : 1.0f), inv(127.0f / (amax * pre)) {}
};

/// The all-zero and non-finite cases of QuantizeI8Fn, shared by every variant: if max |v| (bits
/// abits) is 0 (or a denormal flushed by DAZ) or not finite, zeroes q[0..padded) and returns true
/// with *scale = 0 or NaN; otherwise sets *amax and returns false.
inline bool quantize_i8_special(std::uint32_t abits, Index padded, std::int8_t* q, float* scale, float* amax)
{
    std::memcpy(amax, &abits, 4);
    const bool finite = abits < 0x7F800000u;
    if (finite && *amax != 0.0f) return false;
    std::memset(q, 0, std::size_t(padded));
    *scale = finite ? 0.0f : NAN;  // a non-finite entry: the caller reports it
    return true;
}

/// One quantized entry (|v| <= amax, so the clamp only catches a 1-ulp overshoot).
inline std::int8_t quantize_one(float v, const I8Factors& f)
{
    return static_cast<std::int8_t>(std::nearbyint(std::max(-127.0f, std::min(127.0f, (v * f.pre) * f.inv))));
}
}  // namespace detail

/// Reference int8 quantization (see QuantizeI8Fn).
inline float quantize_i8(const float* v, Index len, Index padded, std::int8_t* q, std::int32_t* qsum)
{
    float amax, scale;
    *qsum = 0;
    if (detail::quantize_i8_special(detail::absmax_bits(v, len), padded, q, &scale, &amax)) return scale;
    const detail::I8Factors f(amax);
    std::int32_t s = 0;
    for (Index j = 0; j < len; ++j) {
        q[j] = detail::quantize_one(v[j], f);
        s += q[j];
    }
    std::memset(q + len, 0, std::size_t(padded - len));
    *qsum = s;
    return amax / 127.0f;
}

/// The scalar variant's table.
inline const KernelTable& table()
{
    static const KernelTable t{KernelTarget::Scalar, "scalar", &dot_f32, &dot_i8, &dot_f32_batch, &dot_i8_batch,
                               &quantize_i8, kLutTokensPerThread};
    return t;
}

}  // namespace scalar
}  // namespace kernels
}  // namespace nanoquant
