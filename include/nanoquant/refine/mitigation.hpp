// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file mitigation.hpp
/// Error-propagation mitigation (method digest §5, "tune_nonfact"): given the inputs X̃ (tokens × n)
/// that the already-compressed preceding layers produce and the dense targets Y (tokens × m, usually
/// X Wᵀ on the dense inputs X), update the dense W before factorizing it so that X̃ Wᵀ ≈ Y.
///
/// The reference takes 256 AdamW steps (lr 1e-4) on the block loss. The problem is a linear least
/// squares, so nanoquant solves it exactly:
/// \f[ \min_W \|\tilde X W^\top - Y\|_F^2 + \lambda \|W - W_0\|_F^2
///     \;\Longleftrightarrow\; (\tilde X^\top \tilde X + \lambda I)\, W^\top = \tilde X^\top Y + \lambda W_0^\top, \f]
/// with λ = ridge · mean(diag X̃ᵀX̃) (relative, so the default is scale-free) and W_0 the dense weight
/// (or 0). One Cholesky of an n×n matrix and two GEMMs, in double. The Gram matrices can be
/// accumulated batch by batch (RidgeAccumulator), so the tokens need not be in memory at once.

#include <Eigen/Cholesky>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

/// Options of the ridge mitigation solve.
struct RidgeMitigationOptions {
    /// Relative ridge λ / mean(diag X̃ᵀX̃). Default 1e-3; >= 0 (0 needs X̃ of full column rank).
    double ridge = 1e-3;

    /// Throws nanoquant::invalid_argument naming the bad field.
    void validate() const
    {
        NANOQUANT_CHECK(std::isfinite(ridge) && ridge >= 0, "RidgeMitigationOptions::validate",
                        "ridge must be a finite number >= 0, got " << ridge);
    }
};

/// Accumulates X̃ᵀX̃ (n×n) and X̃ᵀY (n×m) over batches, then solves for W (m×n).
class RidgeAccumulator {
public:
    /// \param n inputs, \param m outputs (both > 0)
    RidgeAccumulator(Index n, Index m)
    {
        NANOQUANT_CHECK(n > 0 && m > 0, "RidgeAccumulator::RidgeAccumulator",
                        "n and m must be > 0, got " << n << " and " << m);
        m_gram = Matrix<double>::Zero(n, n);
        m_cross = Matrix<double>::Zero(n, m);
    }

    /// Adds a batch of compressed-chain inputs Xt (tokens × n) and dense targets Y (tokens × m).
    template <typename Scalar>
    void add(const Eigen::Ref<const Matrix<Scalar>>& Xt, const Eigen::Ref<const Matrix<Scalar>>& Y)
    {
        constexpr const char* where = "RidgeAccumulator::add";
        NANOQUANT_CHECK(Xt.cols() == m_gram.rows(), where,
                        "Xt has " << Xt.cols() << " columns, expected n = " << m_gram.rows());
        NANOQUANT_CHECK(Y.cols() == m_cross.cols(), where,
                        "Y has " << Y.cols() << " columns, expected m = " << m_cross.cols());
        NANOQUANT_CHECK(Xt.rows() == Y.rows(), where, "Xt has " << Xt.rows() << " tokens but Y has " << Y.rows());
        check_finite(Xt, where, "Xt");
        check_finite(Y, where, "Y");
        const Matrix<double> Xd = Xt.template cast<double>();
        m_gram.selfadjointView<Eigen::Lower>().rankUpdate(Xd.transpose());
        m_cross.noalias() += Xd.transpose() * Y.template cast<double>();
        m_tokens += Xt.rows();
    }

    /// Tokens added so far.
    Index tokens() const { return m_tokens; }

    /// Solves for W (m×n). `W0` (m×n) is the ridge anchor; empty means 0.
    /// \throws nanoquant::invalid_argument if nothing was added, W0 has the wrong shape, or the system
    ///         is singular (ridge 0 with rank-deficient X̃)
    template <typename Scalar>
    Matrix<Scalar> solve(const RidgeMitigationOptions& opts = {}, const Matrix<Scalar>& W0 = Matrix<Scalar>()) const
    {
        constexpr const char* where = "RidgeAccumulator::solve";
        opts.validate();
        NANOQUANT_CHECK(m_tokens > 0, where, "no tokens were added; call add() first");
        const Index n = m_gram.rows(), m = m_cross.cols();
        if (W0.size()) check_shape(W0, m, n, where, "W0");
        Matrix<double> K = m_gram.selfadjointView<Eigen::Lower>();
        const double lambda = opts.ridge * K.diagonal().mean();
        K.diagonal().array() += lambda;
        Matrix<double> rhs = m_cross;
        if (W0.size() && lambda > 0) rhs.noalias() += lambda * W0.template cast<double>().transpose();
        Eigen::LLT<Matrix<double>> llt(K);
        NANOQUANT_CHECK(llt.info() == Eigen::Success, where,
                        "X̃ᵀX̃ + λI is not positive definite (ridge = " << opts.ridge
                                                                       << "): use ridge > 0 or more tokens");
        const Matrix<double> Wt = llt.solve(rhs);
        return Wt.transpose().template cast<Scalar>();
    }

private:
    Matrix<double> m_gram, m_cross;
    Index m_tokens = 0;
};

/// One-shot ridge mitigation: W = argmin ‖X̃Wᵀ − Y‖² + λ‖W − W0‖² (see the file comment).
template <typename Scalar>
Matrix<Scalar> mitigate_error_propagation(const Eigen::Ref<const Matrix<Scalar>>& Xt,
                                          const Eigen::Ref<const Matrix<Scalar>>& Y,
                                          const RidgeMitigationOptions& opts = {},
                                          const Matrix<Scalar>& W0 = Matrix<Scalar>())
{
    check_nonempty(Xt, "mitigate_error_propagation", "Xt");
    check_nonempty(Y, "mitigate_error_propagation", "Y");
    RidgeAccumulator acc(Xt.cols(), Y.cols());
    acc.add<Scalar>(Xt, Y);
    return acc.solve<Scalar>(opts, W0);
}

}  // namespace nanoquant
