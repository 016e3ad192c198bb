// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file bit_budget.hpp
/// Bits per weight <-> rank for the factorization W ≈ diag(s_out)·U·diag(s_mid)·Vᵀ·diag(s_in).
///
/// Accounting (method digest §4): every sign costs 1 bit, every scale 16 bits. For an m×n matrix
/// with rank r,
/// \f[ \mathrm{bits} = r(m+n) + 16(m+n) + [\text{mid}]\,16r, \qquad \mathrm{bpw} = \mathrm{bits}/(mn). \f]
/// The reference rule solves for r, floors it, rounds it down to a multiple of 32, uses 32 when
/// that gives 0, clamps to [32, min(m,n)]. RankRule::fine() rounds to a multiple of 1 instead,
/// which spends the budget fully on small matrices (256×256 at 1.0 bpw: rank 112 instead of 96).

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// How scale vectors are stored: two (s_out, s_in) or three (with the per-rank s_mid).
enum class ScaleLayout {
    TwoScales,   ///< s_out and s_in (NanoQuant's export)
    ThreeScales  ///< s_out, s_mid and s_in (DBF's export, lossless w.r.t. the ADMM solution)
};

/// Number of 16-bit scale vectors in a layout.
inline int num_scale_vectors(ScaleLayout layout) { return layout == ScaleLayout::TwoScales ? 2 : 3; }

/// Rounding of the rank derived from a bit budget.
struct RankRule {
    /// The rank is rounded down to a multiple of this (reference: 32). Must be >= 1.
    Index alignment = 32;
    /// Smallest rank returned (reference: 32). Must be >= 1. May exceed the budget on tiny
    /// matrices, as in the reference; it is still capped at min(m, n).
    Index min_rank = 32;

    /// The official code's rule: multiple of 32, at least 32.
    static RankRule reference() { return RankRule{32, 32}; }
    /// Multiple of `a` (default 1), at least `a`: spends the budget fully.
    static RankRule fine(Index a = 1) { return RankRule{a, a}; }
};

/// Effective bits per weight of an m×n factorization of rank r.
inline double bpw_for_rank(Index m, Index n, Index r, ScaleLayout layout = ScaleLayout::TwoScales)
{
    NANOQUANT_CHECK(m > 0 && n > 0, "bpw_for_rank", "shape must be positive, got " << m << "x" << n);
    NANOQUANT_CHECK(r >= 0, "bpw_for_rank", "rank must be >= 0, got " << r);
    const double mid = layout == ScaleLayout::ThreeScales ? 16.0 * double(r) : 0.0;
    const double bits = double(r) * double(m + n) + 16.0 * double(m + n) + mid;
    return bits / (double(m) * double(n));
}

namespace detail {
/// The bit accounting of a budget: total, scale and per-rank bits, and the real-valued rank it buys.
struct BudgetBits {
    double mn, total_bits, scale_bits, per_rank, r_star;
};
inline BudgetBits budget_bits(Index m, Index n, double bpw, ScaleLayout layout)
{
    BudgetBits b;
    b.mn = double(m) * double(n);
    b.total_bits = bpw * b.mn;
    b.scale_bits = 16.0 * double(m + n);
    b.per_rank = double(m + n) + (layout == ScaleLayout::ThreeScales ? 16.0 : 0.0);
    b.r_star = (b.total_bits - b.scale_bits) / b.per_rank;
    return b;
}
}  // namespace detail

/// Why `bpw` bits per weight cannot hold an m×n factorization (its scale vectors plus one rank), as
/// a sentence with the numbers; empty when it can. rank_for_bpw() throws exactly when this is not
/// empty, with this text, so a caller can ask first instead of catching.
/// \throws nanoquant::invalid_argument for a non-positive shape or a bpw that is not positive and finite.
inline std::string budget_shortfall(Index m, Index n, double bpw, ScaleLayout layout = ScaleLayout::TwoScales)
{
    constexpr const char* where = "budget_shortfall";
    NANOQUANT_CHECK(m > 0 && n > 0, where, "shape must be positive, got " << m << "x" << n);
    NANOQUANT_CHECK(std::isfinite(bpw) && bpw > 0, where, "bpw must be a positive number, got " << bpw);
    const detail::BudgetBits b = detail::budget_bits(m, n, bpw, layout);
    if (b.r_star >= 1.0) return {};
    std::ostringstream os;
    os << "bpw = " << bpw << " gives " << b.total_bits << " bits for a " << m << "x" << n << " matrix, but its "
       << num_scale_vectors(layout) << " scale vectors alone need " << b.scale_bits << " bits and each rank "
       << b.per_rank << " more: the smallest budget is " << (b.scale_bits + b.per_rank) / b.mn << " bpw";
    return os.str();
}

/// Rank of an m×n factorization for a target of `bpw` bits per weight.
/// \throws nanoquant::invalid_argument if bpw is not a positive finite number, or if the budget
///         cannot hold the scales plus at least one rank (the message gives the numbers).
inline Index rank_for_bpw(Index m, Index n, double bpw, ScaleLayout layout = ScaleLayout::TwoScales,
                          RankRule rule = RankRule::reference())
{
    constexpr const char* where = "rank_for_bpw";
    NANOQUANT_CHECK(m > 0 && n > 0, where, "shape must be positive, got " << m << "x" << n);
    NANOQUANT_CHECK(std::isfinite(bpw) && bpw > 0, where, "bpw must be a positive number, got " << bpw);
    NANOQUANT_CHECK(rule.alignment >= 1 && rule.min_rank >= 1, where,
                    "RankRule needs alignment >= 1 and min_rank >= 1, got " << rule.alignment << " and "
                                                                            << rule.min_rank);
    const std::string shortfall = budget_shortfall(m, n, bpw, layout);
    NANOQUANT_CHECK(shortfall.empty(), where, shortfall);
    Index r = static_cast<Index>(std::floor(detail::budget_bits(m, n, bpw, layout).r_star));
    r = (r / rule.alignment) * rule.alignment;
    if (r == 0) r = rule.alignment;
    r = std::max(r, rule.min_rank);
    return std::min(r, std::min(m, n));
}

}  // namespace nanoquant
