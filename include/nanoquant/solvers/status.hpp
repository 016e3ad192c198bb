// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file status.hpp
/// Enumerations shared by the solvers (penalty schedule, export layout, outcome) with their
/// text forms, and the IterationRecord of a convergence trace. The names and formulas are those
/// of docs/algorithm.md.

#include <cmath>
#include <string>

#include "nanoquant/error.hpp"

namespace nanoquant {

/// How the ADMM penalty ρ grows with the iteration t = 0 … T−1 (x = t/T ∈ [0, 1)).
/// Every schedule starts at ρ(0) = 0 and ends just below 1.
enum class RhoSchedule {
    Linear,    ///< ρ = x (the reference CLI's default, and nanoquant's)
    Cubic,     ///< ρ = x³ (the default of the reference function itself)
    Logistic,  ///< ρ = (σ(12(x − ½)) − σ(−6)) / (σ(6) − σ(−6)), σ the logistic function [ours]
    ExpDecay,  ///< ρ = (1 − e^{−5x}) / (1 − e^{−5}): fast rise, decaying increments [ours]
    ExpGrowth  ///< ρ = (e^{5x} − 1) / (e^{5} − 1): slow rise, growing increments [ours]
};

/// Which scale vectors the exported factorization carries.
enum class ExportMode {
    TwoScale,   ///< s_out, s_in: the reference export (drops the per-rank scale of the ADMM model)
    ThreeScale  ///< s_out, s_mid, s_in: lossless with respect to the ADMM solution (as DBF)
};

/// How the ADMM solver forms its two large products per iteration, W̃·B_z and W̃ᵀ·A_z.
enum class SignProducts {
    Auto,   ///< Packed for float when the active kernel variant is AVX-512, Dense otherwise
    Dense,  ///< Eigen's SGEMM/DGEMM on the dense Z iterates
    Packed  ///< packed-sign GEMM kernels on Z = diag(a)·sign·diag(b) (float only; admm_sign_products.hpp)
};

/// Outcome of a solve.
enum class SolverStatus {
    Converged,      ///< `tolerance > 0` and the stopping test passed before the iteration cap
    MaxIterations,  ///< all `iterations` ran (the normal outcome of the reference's fixed schedule)
    Stalled,        ///< stopped early on request: the callback returned false
    NumericalIssue  ///< a NaN or infinity appeared; the factorization is left empty
};

/// "linear", "cubic", "logistic", "exp-decay", "exp-growth".
inline const char* to_string(RhoSchedule s)
{
    switch (s) {
    case RhoSchedule::Linear: return "linear";
    case RhoSchedule::Cubic: return "cubic";
    case RhoSchedule::Logistic: return "logistic";
    case RhoSchedule::ExpDecay: return "exp-decay";
    case RhoSchedule::ExpGrowth: return "exp-growth";
    }
    return "?";
}

/// "two-scale", "three-scale".
inline const char* to_string(ExportMode m)
{
    return m == ExportMode::TwoScale ? "two-scale" : "three-scale";
}

/// "converged", "max-iterations", "stalled", "numerical-issue".
inline const char* to_string(SolverStatus s)
{
    switch (s) {
    case SolverStatus::Converged: return "converged";
    case SolverStatus::MaxIterations: return "max-iterations";
    case SolverStatus::Stalled: return "stalled";
    case SolverStatus::NumericalIssue: return "numerical-issue";
    }
    return "?";
}

/// Parses the text of to_string(RhoSchedule) (also accepts '_' for '-').
/// \throws nanoquant::invalid_argument naming the text and the accepted values.
inline RhoSchedule parse_rho_schedule(std::string text)
{
    for (auto& c : text)
        if (c == '_') c = '-';
    for (RhoSchedule s : {RhoSchedule::Linear, RhoSchedule::Cubic, RhoSchedule::Logistic,
                          RhoSchedule::ExpDecay, RhoSchedule::ExpGrowth})
        if (text == to_string(s)) return s;
    NANOQUANT_CHECK(false, "parse_rho_schedule",
                    "unknown schedule '" << text
                                         << "' (expected linear, cubic, logistic, exp-decay or exp-growth)");
    return RhoSchedule::Linear;
}

/// Parses "two-scale" / "three-scale" (also "two_scale", "2", "three_scale", "3").
/// \throws nanoquant::invalid_argument naming the text and the accepted values.
inline ExportMode parse_export_mode(std::string text)
{
    for (auto& c : text)
        if (c == '_') c = '-';
    if (text == "two-scale" || text == "2") return ExportMode::TwoScale;
    if (text == "three-scale" || text == "3") return ExportMode::ThreeScale;
    NANOQUANT_CHECK(false, "parse_export_mode",
                    "unknown export mode '" << text << "' (expected two-scale or three-scale)");
    return ExportMode::TwoScale;
}

/// ρ for iteration t of T (t in [0, T)). See RhoSchedule for the formulas.
inline double rho_at(RhoSchedule s, int t, int T)
{
    const double x = T > 0 ? double(t) / double(T) : 0.0;
    auto sigm = [](double z) { return 1.0 / (1.0 + std::exp(-z)); };
    switch (s) {
    case RhoSchedule::Linear: return x;
    case RhoSchedule::Cubic: return x * x * x;
    case RhoSchedule::Logistic:
        return (sigm(12.0 * (x - 0.5)) - sigm(-6.0)) / (sigm(6.0) - sigm(-6.0));
    case RhoSchedule::ExpDecay: return (1.0 - std::exp(-5.0 * x)) / (1.0 - std::exp(-5.0));
    case RhoSchedule::ExpGrowth: return (std::exp(5.0 * x) - 1.0) / (std::exp(5.0) - 1.0);
    }
    return x;
}

/// One line of a convergence trace, describing the state after `iteration` completed iterations.
struct IterationRecord {
    int iteration = 0;            ///< completed iterations (1-based)
    double objective = 0;         ///< ‖W̃ − A_z·diag(1/‖B_z row‖)·B_z‖²_F / ‖W̃‖²_F (squared, weighted)
    double primal_residual = 0;   ///< ‖A_x − A_z‖_F + ‖B_x − B_z‖_F of that iteration
    double dual_residual = 0;     ///< ρ·(‖ΔA_z‖_F + ‖ΔB_z‖_F) of that iteration
    double rho = 0;               ///< the penalty ρ used in that iteration
    double seconds = 0;           ///< wall time since the solve started, at the end of that iteration
};

}  // namespace nanoquant
