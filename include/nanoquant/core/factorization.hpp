// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file factorization.hpp
/// Factorization<Scalar>: the low-rank binary factorization
/// \f[ \hat W = \mathrm{diag}(s_{out})\, U\, \mathrm{diag}(s_{mid})\, V^\top \mathrm{diag}(s_{in}),
///     \quad U \in \{\pm1\}^{m\times r},\; V \in \{\pm1\}^{n\times r}. \f]
/// U is stored as an m×r PackedSignMatrix (`u`), V transposed as an r×n PackedSignMatrix (`vt`),
/// so both stages of y = Ŵx read packed rows: t = s_mid ⊙ (Vᵀ (s_in ⊙ x)), y = s_out ⊙ (U t).
/// `s_mid` is empty when the layout has two scales (it then acts as all ones).

#include <cstddef>

#include "nanoquant/core/bit_budget.hpp"
#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/packed_signs.hpp"
#include "nanoquant/core/types.hpp"

namespace nanoquant {

namespace detail {
/// The shape and scale rules shared by Factorization::validate and LayerParams::validate: the
/// factors' ranks agree (`u_name` is m × r, `vt_name` r' × n), s_out has m entries, s_in n, s_mid 0
/// or r, and every scale is finite.
template <typename Scalar>
void check_factor_layout(Index m, Index r, Index r_vt, Index n, const Vector<Scalar>& s_out,
                         const Vector<Scalar>& s_mid, const Vector<Scalar>& s_in, const char* where,
                         const char* u_name, const char* vt_name)
{
    NANOQUANT_CHECK(r_vt == r, where,
                    u_name << " is " << m << "x" << r << " but " << vt_name << " is " << r_vt << "x" << n
                           << ": the ranks differ");
    NANOQUANT_CHECK(s_out.size() == m, where, "s_out has " << s_out.size() << " entries, expected rows = " << m);
    NANOQUANT_CHECK(s_in.size() == n, where, "s_in has " << s_in.size() << " entries, expected cols = " << n);
    NANOQUANT_CHECK(s_mid.size() == 0 || s_mid.size() == r, where,
                    "s_mid has " << s_mid.size() << " entries, expected 0 or rank = " << r);
    check_finite(s_out, where, "s_out");
    check_finite(s_mid, where, "s_mid");
    check_finite(s_in, where, "s_in");
}
}  // namespace detail

template <typename Scalar>
struct Factorization {
    static_assert(std::is_floating_point<Scalar>::value,
                  "Factorization<Scalar>: Scalar must be float or double");

    PackedSignMatrix u;    ///< U, m×r signs
    PackedSignMatrix vt;   ///< Vᵀ, r×n signs
    Vector<Scalar> s_out;  ///< m output scales
    Vector<Scalar> s_mid;  ///< r per-rank scales, or empty (two-scale layout)
    Vector<Scalar> s_in;   ///< n input scales

    Index rows() const { return u.rows(); }
    Index cols() const { return vt.cols(); }
    Index rank() const { return u.cols(); }
    bool has_mid_scale() const { return s_mid.size() != 0; }
    ScaleLayout layout() const { return has_mid_scale() ? ScaleLayout::ThreeScales : ScaleLayout::TwoScales; }

    /// Throws nanoquant::invalid_argument unless the shapes agree and the scales are finite.
    void validate(const char* where = "Factorization::validate") const
    {
        detail::check_factor_layout(u.rows(), u.cols(), vt.rows(), vt.cols(), s_out, s_mid, s_in, where,
                                    "U", "Vt");
    }

    /// The dense m×n matrix Ŵ.
    Matrix<Scalar> reconstruct() const
    {
        validate("Factorization::reconstruct");
        Matrix<Scalar> U = u.template unpack<Scalar>();
        if (has_mid_scale()) U = U * s_mid.asDiagonal();
        const Matrix<Scalar> Vt = vt.template unpack<Scalar>();
        return s_out.asDiagonal() * (U * Vt) * s_in.asDiagonal();
    }

    /// Plain reference y = Ŵx (two stages, dense arithmetic on unpacked signs; no SIMD). The
    /// columns of X are independent inputs (n × tokens) and the result is m × tokens.
    Matrix<Scalar> apply(const Eigen::Ref<const Matrix<Scalar>>& X) const
    {
        constexpr const char* where = "Factorization::apply";
        validate(where);
        NANOQUANT_CHECK(X.rows() == cols(), where,
                        "X has " << X.rows() << " rows, expected cols = " << cols());
        Matrix<Scalar> t = vt.template unpack<Scalar>() * (s_in.asDiagonal() * X);
        if (has_mid_scale()) t = s_mid.asDiagonal() * t;
        return s_out.asDiagonal() * (u.template unpack<Scalar>() * t);
    }

    /// Effective bits per weight (signs at 1 bit, scales at 16 bits).
    double bits_per_weight() const { return bpw_for_rank(rows(), cols(), rank(), layout()); }

    /// Stored bytes: signs packed with rows padded to whole bytes, plus 2 bytes per scale.
    std::size_t storage_bytes() const
    {
        const std::size_t scales =
            static_cast<std::size_t>(s_out.size() + s_mid.size() + s_in.size()) * 2u;
        return u.packed_bytes() + vt.packed_bytes() + scales;
    }
};

/// Relative Frobenius error ‖W − Ŵ‖_F / ‖W‖_F computed in double (0 when W = 0 and Ŵ = 0).
template <typename Scalar>
double relative_error(const Eigen::Ref<const Matrix<Scalar>>& W, const Factorization<Scalar>& f)
{
    check_shape(W, f.rows(), f.cols(), "relative_error", "W");
    const Matrix<double> D = W.template cast<double>() - f.reconstruct().template cast<double>();
    const double nw = W.template cast<double>().norm();
    if (nw == 0.0) return D.norm() == 0.0 ? 0.0 : INFINITY;
    return D.norm() / nw;
}

}  // namespace nanoquant
