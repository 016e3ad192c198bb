// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file sign_dot_avx2.hpp
/// AVX2 kernels over the tiled layout, compiled through function-level target attributes (no global
/// -m flag needed). Only call them when the CPU supports AVX2, FMA and BMI2 (dispatch.hpp).
///
/// Eight rows of a tile sit in the lanes of one register. For column b, VPSLLVD moves bit b of every
/// lane to the sign position; VBLENDVPS (float) or VPSIGND (integer) then applies the sign to the
/// broadcast input. The float sum runs in column order, like the scalar reference. This is the
/// portable x86 fallback; the AVX-512 variant is the fast one.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NANOQUANT_HAVE_AVX2_KERNELS 1
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "nanoquant/kernels/kernel_table.hpp"
#include "nanoquant/kernels/scalar/sign_dot_scalar.hpp"

#define NANOQUANT_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,popcnt")))

namespace nanoquant {
namespace kernels {
namespace avx2 {

namespace detail {
/// Up to 4 tokens × 8 rows (half h of row block R) of the float path.
NANOQUANT_TARGET_AVX2 inline void f32_rows(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index R,
                                           int h, const float* X, Index ldx, int T, float* out, Index ldo)
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i one = _mm256_set1_epi32(1);
    for (Index c = 0; c < col_words; ++c) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(tiles + (c * row_blocks + R) * 16 + 8 * h));
        __m256i cnt = _mm256_set1_epi32(31);
        for (int b = 0; b < 32; ++b) {
            const __m256 m = _mm256_castsi256_ps(_mm256_sllv_epi32(v, cnt));
            cnt = _mm256_sub_epi32(cnt, one);
            for (int t = 0; t < T; ++t) {
                const float xv = X[t * ldx + 32 * c + b];
                acc[t] = _mm256_add_ps(acc[t], _mm256_blendv_ps(_mm256_set1_ps(xv), _mm256_set1_ps(-xv), m));
            }
        }
    }
    for (int t = 0; t < T; ++t) _mm256_store_ps(out + t * ldo + 16 * R + 8 * h, acc[t]);
}

/// Up to 4 tokens × 8 rows of the integer path (exact).
NANOQUANT_TARGET_AVX2 inline void i8_rows(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index R,
                                          int h, const std::int8_t* Q, Index ldq, int T, std::int32_t* out, Index ldo)
{
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    const __m256i one = _mm256_set1_epi32(1);
    for (Index c = 0; c < col_words; ++c) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(tiles + (c * row_blocks + R) * 16 + 8 * h));
        __m256i cnt = _mm256_set1_epi32(31);
        for (int b = 0; b < 32; ++b) {
            // Negative where the bit is set, positive (>= 1) otherwise: the sign operand of VPSIGND.
            const __m256i s = _mm256_or_si256(_mm256_sllv_epi32(v, cnt), one);
            cnt = _mm256_sub_epi32(cnt, one);
            for (int t = 0; t < T; ++t)
                acc[t] = _mm256_add_epi32(acc[t], _mm256_sign_epi32(_mm256_set1_epi32(Q[t * ldq + 32 * c + b]), s));
        }
    }
    for (int t = 0; t < T; ++t)
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + t * ldo + 16 * R + 8 * h), acc[t]);
}
}  // namespace detail

/// Float rows (see DotF32Fn).
NANOQUANT_TARGET_AVX2 inline void dot_f32(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                          Index rb_begin, Index rb_end, const float* x, float* out)
{
    for (Index R = rb_begin; R < rb_end; ++R)
        for (int h = 0; h < 2; ++h) detail::f32_rows(tiles, row_blocks, col_words, R, h, x, 0, 1, out, 0);
}

/// Integer rows (see DotI8Fn).
NANOQUANT_TARGET_AVX2 inline void dot_i8(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                         Index rb_begin, Index rb_end, const std::int8_t* q, std::int32_t* out)
{
    for (Index R = rb_begin; R < rb_end; ++R)
        for (int h = 0; h < 2; ++h) detail::i8_rows(tiles, row_blocks, col_words, R, h, q, 0, 1, out, 0);
}

/// Batched float rows (see DotF32BatchFn): each sign mask is applied to 4 tokens.
NANOQUANT_TARGET_AVX2 inline void dot_f32_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                                Index rb_begin, Index rb_end, const float* X, Index ldx, Index batch,
                                                float* out, Index ldo)
{
    for (Index b = 0; b < batch; b += 4) {
        const int T = int(batch - b < 4 ? batch - b : 4);
        for (Index R = rb_begin; R < rb_end; ++R)
            for (int h = 0; h < 2; ++h)
                detail::f32_rows(tiles, row_blocks, col_words, R, h, X + b * ldx, ldx, T, out + b * ldo, ldo);
    }
}

/// Batched integer rows (see DotI8BatchFn): each sign mask is applied to 4 tokens.
NANOQUANT_TARGET_AVX2 inline void dot_i8_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                               Index rb_begin, Index rb_end, const std::int8_t* Q, Index ldq,
                                               Index batch, std::int32_t* out, Index ldo)
{
    for (Index b = 0; b < batch; b += 4) {
        const int T = int(batch - b < 4 ? batch - b : 4);
        for (Index R = rb_begin; R < rb_end; ++R)
            for (int h = 0; h < 2; ++h)
                detail::i8_rows(tiles, row_blocks, col_words, R, h, Q + b * ldq, ldq, T, out + b * ldo, ldo);
    }
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
    float amax;
    std::memcpy(&amax, &abits, 4);
    *qsum = 0;
    if (abits >= 0x7F800000u || amax == 0.0f) {  // as the scalar reference
        std::memset(q, 0, std::size_t(padded));
        return abits >= 0x7F800000u ? NAN : 0.0f;
    }
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
                               &quantize_i8};
    return t;
}

}  // namespace avx2
}  // namespace kernels
}  // namespace nanoquant
#endif
