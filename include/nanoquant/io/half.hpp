// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file half.hpp
/// Bit-exact conversions between float and the two 16-bit float formats found in weight files:
/// IEEE 754 binary16 ("F16", numpy float16) and bfloat16 ("BF16", the top half of a float32).
/// float -> 16 bit rounds to nearest, ties to even (as numpy, PyTorch and the hardware do);
/// NaN stays NaN (quiet), values beyond the range become ±infinity.

#include <cstdint>
#include <cstring>

namespace nanoquant {
namespace io {

/// The float32 value of an IEEE binary16 bit pattern (exact: every half is a float).
inline float half_to_float(std::uint16_t h)
{
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    std::uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);  // normal: rebias 15 -> 127
    } else if (mant == 0) {
        bits = sign;  // ±0
    } else {
        // subnormal half: mant * 2^-24; normalise
        std::uint32_t e = 113;  // exponent of 2^-14 in float bias
        while ((mant & 0x400u) == 0) {
            mant <<= 1;
            --e;
        }
        bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

/// The IEEE binary16 bit pattern nearest to `f` (ties to even; overflow -> ±inf; NaN -> quiet NaN).
inline std::uint16_t float_to_half(float f)
{
    std::uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    const std::uint32_t exp = (x >> 23) & 0xffu;
    const std::uint32_t mant = x & 0x7fffffu;
    if (exp == 0xff) return static_cast<std::uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
    const int e = int(exp) - 127 + 15;  // half exponent field if normal
    if (e >= 0x1f) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow
    if (e <= 0) {
        // Result is subnormal or zero: value = 1.mant * 2^(exp-127); half subnormal unit 2^-24.
        if (e < -10) return sign;  // below half of the smallest subnormal (rounds to 0)
        const std::uint32_t m = mant | 0x800000u;  // 24-bit significand
        const int shift = 14 - e;                  // bits to drop: 13 + (1 - e)
        std::uint32_t q = m >> shift;
        const std::uint32_t rem = m & ((1u << shift) - 1u);
        const std::uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) ++q;
        return static_cast<std::uint16_t>(sign | q);  // q may carry into the exponent: correct
    }
    std::uint32_t q = (std::uint32_t(e) << 10) | (mant >> 13);
    const std::uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // carry may reach inf: correct
    return static_cast<std::uint16_t>(sign | q);
}

/// The float32 value of a bfloat16 bit pattern (exact).
inline float bf16_to_float(std::uint16_t b)
{
    const std::uint32_t bits = std::uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

/// The bfloat16 bit pattern nearest to `f` (ties to even; NaN -> quiet NaN).
inline std::uint16_t float_to_bf16(float f)
{
    std::uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
    const std::uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return static_cast<std::uint16_t>(x >> 16);
}

}  // namespace io
}  // namespace nanoquant
