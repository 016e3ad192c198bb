// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file admm_result.hpp
/// AdmmResult<Scalar>: what AdmmSolver::solve returns.

#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "nanoquant/core/factorization.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/solvers/status.hpp"

namespace nanoquant {

/// The outcome of one ADMM solve.
template <typename Scalar>
struct AdmmResult {
    /// The exported factorization of W (in W's orientation, m×n). Empty (0×0) when
    /// status == NumericalIssue, so that it never looks valid.
    Factorization<Scalar> factorization;
    /// How the solve ended. See SolverStatus.
    SolverStatus status = SolverStatus::NumericalIssue;
    /// Completed ADMM iterations.
    int iterations = 0;
    /// ‖A_x − A_z‖_F + ‖B_x − B_z‖_F of the last iteration (preconditioned problem).
    double primal_residual = std::numeric_limits<double>::quiet_NaN();
    /// ρ·(‖ΔA_z‖_F + ‖ΔB_z‖_F) of the last iteration.
    double dual_residual = std::numeric_limits<double>::quiet_NaN();
    /// ‖W − Ŵ‖_F / ‖W‖_F of the exported factorization (unweighted; NaN on NumericalIssue).
    double relative_error = std::numeric_limits<double>::quiet_NaN();
    /// ‖D_o(W − Ŵ)D_i‖_F / ‖D_o W D_i‖_F with D_o = diag(√importance_out), D_i = diag(√importance_in)
    /// (equals relative_error under identity importance).
    double weighted_relative_error = std::numeric_limits<double>::quiet_NaN();
    /// Weighted relative error of the export before the scale refit (equals
    /// weighted_relative_error when refit_scales is off).
    double weighted_relative_error_before_refit = std::numeric_limits<double>::quiet_NaN();
    /// Wall time of the whole solve (seconds), export and refit included.
    double seconds = 0;
    /// The convergence trace (empty unless trace_every > 0).
    std::vector<IterationRecord> trace;
    /// Latent U (m×r): sign(u_latent) are the exported U signs' latents. Empty unless keep_latents.
    Matrix<Scalar> u_latent;
    /// Latent Vᵀ (r×n). Empty unless keep_latents.
    Matrix<Scalar> vt_latent;

    /// True when the factorization is valid (every status but NumericalIssue).
    bool ok() const { return status != SolverStatus::NumericalIssue; }
    /// True only for SolverStatus::Converged (the tolerance test passed).
    bool converged() const { return status == SolverStatus::Converged; }

    /// Throws nanoquant::numerical_error when !ok(), naming the status and iteration.
    void throw_if_failed() const
    {
        if (ok()) return;
        std::ostringstream os;
        os << "nanoquant::AdmmSolver::solve: " << to_string(status) << " after " << iterations
           << " iterations (a NaN or infinity appeared; W may be too large for the scalar type)";
        throw numerical_error(os.str());
    }
};

}  // namespace nanoquant
