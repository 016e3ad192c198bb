// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file admm_options.hpp
/// AdmmOptions<Scalar>: every knob of the NanoQuant ADMM solver, with the reference's defaults.
/// Symbols follow docs/algorithm.md.

#include <cmath>
#include <cstdint>
#include <functional>
#include <type_traits>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/solvers/status.hpp"

namespace nanoquant {

/// Options of AdmmSolver. An aggregate: set fields by name, then the solver calls validate().
template <typename Scalar>
struct AdmmOptions {
    static_assert(std::is_floating_point<Scalar>::value,
                  "AdmmOptions<Scalar>: Scalar must be float or double");

    /// r, the number of binary rank-1 terms. Required: 1 <= rank <= min(m, n). Default 0 (unset,
    /// rejected by validate). The CLI derives it from a bit budget with rank_for_bpw().
    Index rank = 0;
    /// T, the number of ADMM iterations. >= 0; 0 exports the initial projection of the random
    /// start. Default 400 (reference `admm_outer_iters`).
    int iterations = 400;
    /// Power iterations of each SVID projection. >= 1. Default 5 (reference `inner_iters`).
    int power_iterations = 5;
    /// `reg`, the ridge added to λ = ρ·mean(diag K) + reg in every X-update. >= 0. Default 3e-2.
    double reg = 3e-2;
    /// `eps`, the floor of λ and of every norm that is divided by. > 0. Default 1e-12.
    double eps = 1e-12;
    /// ρ schedule. Default Linear (reference CLI default).
    RhoSchedule schedule = RhoSchedule::Linear;
    /// Export layout. Default TwoScale (the reference's export).
    ExportMode export_mode = ExportMode::TwoScale;
    /// After export, refit the scales with the signs fixed (refit_scales()). Default false
    /// (the reference does not refit).
    bool refit_scales = false;
    /// Maximum alternating rounds of the scale refit. >= 1. Default 20.
    int refit_max_rounds = 20;
    /// The refit stops when a round lowers the weighted error by less than this fraction.
    /// >= 0. Default 1e-6.
    double refit_tolerance = 1e-6;
    /// Seed of every random draw (initial factors, power-iteration start vectors). Default 0.
    std::uint64_t seed = 0;
    /// Threads for the solve (Eigen's GEMM and nanoquant's own loops). 0 = the OpenMP default
    /// (omp_get_max_threads()). >= 0. Default 0.
    int num_threads = 0;
    /// Early stop: when > 0 the solve ends with SolverStatus::Converged as soon as both the
    /// relative change of the objective, |f_{t−1} − f_t|/f_t, and the relative change of the Z
    /// iterates, (‖ΔA_z‖+‖ΔB_z‖)/(‖A_z‖+‖B_z‖), are <= tolerance. (The primal residual is not
    /// used: with ρ <= 1 it stays at the distance of the ridge solution to the SVID set.)
    /// 0 = off (reference behaviour: run all iterations). Must be finite and >= 0. Default 0.
    double tolerance = 0;
    /// Record an IterationRecord every `trace_every` iterations (and after the last one).
    /// 0 = no trace. >= 0. Default 0.
    int trace_every = 0;
    /// Called with each IterationRecord as it is produced (every `trace_every` iterations, or
    /// every iteration when trace_every = 0). Returning false stops the solve
    /// (SolverStatus::Stalled) and exports the current iterate. Default: none.
    std::function<bool(const IterationRecord&)> callback;
    /// Keep the latent factors that STE refinement starts from (AdmmResult::u_latent m×r,
    /// vt_latent r×n, in the reference's scaling: the last A_x + A_u and B_x + B_u, divided by the
    /// importance and balanced). Default false.
    bool keep_latents = false;
    /// How the two large products of each iteration are formed (SignProducts). Packed computes
    /// the same products through the packed-sign kernels (the Z iterates are sign matrices with
    /// a rank-1 magnitude): 1.3–1.5× less time per iteration on AVX-512 (docs/algorithm.md); it sums in a different
    /// order, so results agree with Dense to float rounding, not bit for bit. Packed needs
    /// Scalar = float. Default Auto (Packed for float on AVX-512, else Dense).
    SignProducts sign_products = SignProducts::Auto;

    /// Throws nanoquant::invalid_argument naming the field, the rule and the value.
    /// \param m, n the shape of W (rows, cols); m, n > 0.
    /// \param where the function the message names (AdmmSolver::solve passes its own name).
    void validate(Index m, Index n, const char* where = "AdmmOptions::validate") const
    {
        NANOQUANT_CHECK(m > 0 && n > 0, where, "W must be non-empty, got " << m << "x" << n);
        const Index mn = m < n ? m : n;
        NANOQUANT_CHECK(rank >= 1 && rank <= mn, where,
                        "rank must be in [1, min(m, n)] = [1, " << mn << "] for a " << m << "x" << n
                                                                << " matrix, got " << rank);
        validate_fields(where);
    }

    /// The checks that do not depend on W's shape (all but the upper bound of rank).
    void validate_fields(const char* where = "AdmmOptions::validate") const
    {
        NANOQUANT_CHECK(rank >= 1, where, "rank must be >= 1 (set it, e.g. with rank_for_bpw), got " << rank);
        NANOQUANT_CHECK(iterations >= 0, where, "iterations must be >= 0, got " << iterations);
        NANOQUANT_CHECK(power_iterations >= 1, where,
                        "power_iterations must be >= 1, got " << power_iterations);
        NANOQUANT_CHECK(std::isfinite(reg) && reg >= 0, where, "reg must be finite and >= 0, got " << reg);
        NANOQUANT_CHECK(std::isfinite(eps) && eps > 0, where, "eps must be finite and > 0, got " << eps);
        NANOQUANT_CHECK(refit_max_rounds >= 1, where,
                        "refit_max_rounds must be >= 1, got " << refit_max_rounds);
        NANOQUANT_CHECK(std::isfinite(refit_tolerance) && refit_tolerance >= 0, where,
                        "refit_tolerance must be finite and >= 0, got " << refit_tolerance);
        NANOQUANT_CHECK(num_threads >= 0, where, "num_threads must be >= 0, got " << num_threads);
        NANOQUANT_CHECK(std::isfinite(tolerance) && tolerance >= 0, where,
                        "tolerance must be finite and >= 0, got " << tolerance);
        NANOQUANT_CHECK(trace_every >= 0, where, "trace_every must be >= 0, got " << trace_every);
        const int sched = static_cast<int>(schedule);
        NANOQUANT_CHECK(sched >= 0 && sched <= static_cast<int>(RhoSchedule::ExpGrowth), where,
                        "schedule has no valid value (" << sched << ")");
        const int sp = static_cast<int>(sign_products);
        NANOQUANT_CHECK(sp >= 0 && sp <= static_cast<int>(SignProducts::Packed), where,
                        "sign_products has no valid value (" << sp << ")");
        NANOQUANT_CHECK((sign_products != SignProducts::Packed || std::is_same<Scalar, float>::value), where,
                        "sign_products = Packed needs Scalar = float (the packed-sign kernels are float32)");
        const int em = static_cast<int>(export_mode);
        NANOQUANT_CHECK(em >= 0 && em <= 1, where, "export_mode has no valid value (" << em << ")");
    }
};

}  // namespace nanoquant
