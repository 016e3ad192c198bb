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
    const double mn = double(m) * double(n);
    const double total_bits = bpw * mn;
    const double scale_bits = 16.0 * double(m + n);
    const double per_rank = double(m + n) + (layout == ScaleLayout::ThreeScales ? 16.0 : 0.0);
    const double r_star = (total_bits - scale_bits) / per_rank;
    NANOQUANT_CHECK(r_star >= 1.0, where,
                    "bpw = " << bpw << " gives " << total_bits << " bits for a " << m << "x" << n
                             << " matrix, but its " << num_scale_vectors(layout)
                             << " scale vectors alone need " << scale_bits << " bits and each rank "
                             << per_rank << " more: the smallest budget is "
                             << (scale_bits + per_rank) / mn << " bpw");
    Index r = static_cast<Index>(std::floor(r_star));
    r = (r / rule.alignment) * rule.alignment;
    if (r == 0) r = rule.alignment;
    r = std::max(r, rule.min_rank);
    return std::min(r, std::min(m, n));
}

}  // namespace nanoquant
