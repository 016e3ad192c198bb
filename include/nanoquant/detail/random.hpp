// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file random.hpp
/// A small, fully specified random number generator. std::normal_distribution differs between
/// standard libraries, so nanoquant draws its own numbers: results are reproducible from a seed on
/// every compiler and platform.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace nanoquant {
namespace detail {

/// xoshiro256** seeded through splitmix64 (Blackman & Vigna). Normal deviates by Box-Muller.
class Rng {
public:
    explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

    void reseed(std::uint64_t seed)
    {
        std::uint64_t z = seed;
        for (auto& s : m_s) s = splitmix64(z);
        m_has_spare = false;
    }

    std::uint64_t next_u64()
    {
        const std::uint64_t result = rotl(m_s[1] * 5, 7) * 9;
        const std::uint64_t t = m_s[1] << 17;
        m_s[2] ^= m_s[0];
        m_s[3] ^= m_s[1];
        m_s[1] ^= m_s[2];
        m_s[0] ^= m_s[3];
        m_s[2] ^= t;
        m_s[3] = rotl(m_s[3], 45);
        return result;
    }

    /// Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

    /// Uniform integer in [0, n) (n > 0), by rejection (exactly uniform).
    std::uint64_t below(std::uint64_t n)
    {
        const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n);
        std::uint64_t x = next_u64();
        while (x >= limit) x = next_u64();
        return x % n;
    }

    /// Standard normal deviate (Box-Muller, both values used).
    double normal()
    {
        if (m_has_spare) {
            m_has_spare = false;
            return m_spare;
        }
        double u1 = uniform();
        while (u1 <= 0.0) u1 = uniform();
        const double u2 = uniform();
        const double rad = std::sqrt(-2.0 * std::log(u1));
        const double ang = 6.283185307179586476925286766559 * u2;
        m_spare = rad * std::sin(ang);
        m_has_spare = true;
        return rad * std::cos(ang);
    }

    /// Fisher-Yates shuffle of `v` in place (from the back: element i swaps with one of [0, i]),
    /// so a seed gives the same order everywhere.
    template <typename Vec>
    void shuffle(Vec& v)
    {
        for (std::size_t i = v.size(); i > 1; --i) {
            using std::swap;
            swap(v[i - 1], v[static_cast<std::size_t>(below(static_cast<std::uint64_t>(i)))]);
        }
    }

    /// A seed for an independent stream (e.g. one per call site or per thread).
    std::uint64_t split() { return next_u64() ^ 0x9E3779B97F4A7C15ULL; }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    static std::uint64_t splitmix64(std::uint64_t& x)
    {
        std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    std::uint64_t m_s[4] = {0, 0, 0, 0};
    double m_spare = 0.0;
    bool m_has_spare = false;
};

}  // namespace detail
}  // namespace nanoquant
