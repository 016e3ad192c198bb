// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include <nanoquant/detail/random.hpp>
#include <nanoquant/io/half.hpp>

using namespace nanoquant::io;

static std::uint32_t bits_of(float f)
{
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

TEST_CASE("every half survives half -> float -> half", "[io][half]")
{
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const float f = half_to_float(static_cast<std::uint16_t>(h));
        if (std::isnan(f)) {
            REQUIRE((float_to_half(f) & 0x7c00u) == 0x7c00u);
            REQUIRE((float_to_half(f) & 0x3ffu) != 0);
            continue;
        }
        REQUIRE(float_to_half(f) == h);
    }
}

TEST_CASE("half_to_float agrees with the exact value of the bit pattern", "[io][half]")
{
    for (std::uint32_t h = 0; h < 0x7c00u; ++h) {
        const int e = int(h >> 10), m = int(h & 0x3ff);
        const double v = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, e - 15);
        REQUIRE(double(half_to_float(static_cast<std::uint16_t>(h))) == v);
        REQUIRE(double(half_to_float(static_cast<std::uint16_t>(h | 0x8000u))) == -v);
    }
}

TEST_CASE("float_to_half rounds to nearest with ties to even (checked against a brute-force nearest)", "[io][half]")
{
    nanoquant::detail::Rng rng(7);
    auto nearest = [](float f) {
        // brute force over the positive halves (monotone table): pick the nearest, ties to even
        const double a = std::fabs(double(f));
        std::uint32_t best = 0;
        double bd = INFINITY;
        for (std::uint32_t h = 0; h <= 0x7c00u; ++h) {
            const double d = std::fabs(double(half_to_float(static_cast<std::uint16_t>(h))) - a);
            if (d < bd || (d == bd && (h & 1u) == 0)) {
                bd = d;
                best = h;
            }
        }
        // overflow: IEEE rounds values >= 65520 to inf
        if (a >= 65520.0) best = 0x7c00u;
        return static_cast<std::uint16_t>(best | (std::signbit(f) ? 0x8000u : 0u));
    };
    for (int k = 0; k < 300; ++k) {
        const float f = static_cast<float>(rng.normal() * std::ldexp(1.0, int(rng.below(44)) - 28));
        REQUIRE(float_to_half(f) == nearest(f));
    }
    // exact ties
    REQUIRE(float_to_half(1.0f + 1.0f / 2048.0f) == 0x3c00u);           // tie -> even (down)
    REQUIRE(float_to_half(1.0f + 3.0f / 2048.0f) == 0x3c02u);           // tie -> even (up)
    REQUIRE(float_to_half(std::ldexp(1.0f, -25)) == 0x0000u);           // half the smallest subnormal
    REQUIRE(float_to_half(std::ldexp(1.5f, -25)) == 0x0001u);
    REQUIRE(float_to_half(65504.0f) == 0x7bffu);
    REQUIRE(float_to_half(65520.0f) == 0x7c00u);
    REQUIRE(float_to_half(-0.0f) == 0x8000u);
}

TEST_CASE("bfloat16 conversions are exact and round to nearest even", "[io][half]")
{
    for (std::uint32_t b = 0; b < 65536; ++b) {
        const float f = bf16_to_float(static_cast<std::uint16_t>(b));
        REQUIRE(bits_of(f) == (b << 16));
        if (!std::isnan(f)) REQUIRE(float_to_bf16(f) == b);
    }
    REQUIRE(float_to_bf16(bf16_to_float(0x3f80) + std::ldexp(1.0f, -8)) == 0x3f80);  // tie -> even
    REQUIRE(float_to_bf16(bf16_to_float(0x3f81) + std::ldexp(1.0f, -8)) == 0x3f82);
}
