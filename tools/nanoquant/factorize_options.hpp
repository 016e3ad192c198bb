// SPDX-License-Identifier: Apache-2.0
#pragma once

// Solver options shared by `nanoquant factorize`, `quantize` and `demo`: one definition of the
// command-line flags, their defaults and their translation into AdmmOptions, so the commands
// cannot drift apart. Bad values throw nanoquant::invalid_argument (exit code 2).

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/core/checks.hpp>
#include <nanoquant/error.hpp>
#include <nanoquant/io/safetensors.hpp>
#include <nanoquant/refine/layer_reconstruction.hpp>
#include <nanoquant/solvers/admm_options.hpp>
#include <nanoquant/solvers/status.hpp>

namespace nanoquant {
namespace cli {

/// Throws nanoquant::invalid_argument("MESSAGE") (exit code 2) unless `cond`.
inline void usage_check(bool cond, const std::string& message)
{
    if (!cond) throw nanoquant::invalid_argument(message);
}

/// The solver flags of the factorizing commands.
struct FactorizeFlags {
    double bpw = -1;                ///< target bits per weight (see bpw_given())
    Index rank = -1;                ///< explicit rank (see rank_given())
    int iters = 400;                ///< ADMM iterations
    std::uint64_t seed = 0;         ///< random seed
    std::string schedule = "linear";
    std::string export_mode = "two-scale";
    bool refit_scales = false;
    int threads = 0;                ///< 0 = OpenMP default
    bool fine_rank = false;         ///< RankRule::fine() instead of the reference rule
    std::string scale_dtype = "f16";

    /// Registers the flags on `cmd`. `default_bpw` is used when neither --bpw nor --rank is given.
    void add_to(CLI::App* cmd, double default_bpw, bool with_rank = true)
    {
        m_default_bpw = default_bpw;
        m_bpw_opt = cmd->add_option("--bpw", bpw, "Target bits per weight (default " + fmt(default_bpw) + ")");
        if (with_rank) m_rank_opt = cmd->add_option("--rank", rank, "Explicit rank instead of --bpw")->excludes(m_bpw_opt);
        cmd->add_option("--iters", iters, "ADMM iterations (default 400)");
        cmd->add_option("--seed", seed, "Random seed (default 0)");
        cmd->add_option("--schedule", schedule,
                        "rho schedule: linear (default), cubic, logistic, exp-decay, exp-growth");
        cmd->add_option("--export", export_mode, "Scale export: two-scale (default) or three-scale");
        cmd->add_flag("--refit-scales", refit_scales, "Refit the scales by least squares with the signs fixed");
        cmd->add_option("--threads", threads, "Threads (default 0 = all)");
        cmd->add_flag("--fine-rank", fine_rank,
                      "Round the rank from --bpw to a multiple of 1 (RankRule::fine) instead of 32");
        cmd->add_option("--scale-dtype", scale_dtype, "Stored scale dtype with -o: f16 (default) or f32");
    }

    /// Layout implied by --export.
    ScaleLayout layout() const
    {
        return parse_export_mode(export_mode) == ExportMode::ThreeScale ? ScaleLayout::ThreeScales
                                                                        : ScaleLayout::TwoScales;
    }

    /// Scale dtype for the output file.
    io::StDType scale_st_dtype() const
    {
        usage_check(scale_dtype == "f16" || scale_dtype == "f32", "--scale-dtype must be f16 or f32, got '" + scale_dtype + "'");
        return scale_dtype == "f16" ? io::StDType::F16 : io::StDType::F32;
    }

    /// Target bpw (the default when neither --bpw nor --rank was given).
    double target_bpw() const { return bpw_given() ? bpw : m_default_bpw; }
    /// True when --bpw was given (any value, -1 included: it is rejected by validate()).
    bool bpw_given() const { return m_bpw_opt ? m_bpw_opt->count() > 0 : bpw != -1; }
    /// True when --rank was given.
    bool rank_given() const { return m_rank_opt ? m_rank_opt->count() > 0 : rank != -1; }

    /// Checks every flag value that does not depend on a matrix shape (invalid_argument names the
    /// flag): --bpw positive and finite, --rank >= 1, --iters >= 1, --threads >= 0, a known
    /// schedule, export and scale dtype. Whether a budget fits a given shape is admm_options()'s.
    void validate() const
    {
        usage_check(!rank_given() || rank >= 1, "--rank must be >= 1, got " + std::to_string(rank));
        usage_check(!bpw_given() || (bpw > 0 && std::isfinite(bpw)), "--bpw must be a positive number, got " + fmt(bpw));
        usage_check(iters >= 1, "--iters must be >= 1, got " + std::to_string(iters));
        usage_check(threads >= 0, "--threads must be >= 0, got " + std::to_string(threads));
        scale_st_dtype();
        parse_rho_schedule(schedule);
        parse_export_mode(export_mode);
    }

    /// AdmmOptions for an m×n matrix; validates every flag (invalid_argument names the flag) and
    /// the budget for this shape (invalid_argument from rank_for_bpw() when --bpw cannot hold
    /// the scales plus one rank of an m×n matrix).
    template <typename Scalar = float>
    AdmmOptions<Scalar> admm_options(Index m, Index n) const
    {
        validate();
        AdmmOptions<Scalar> o;
        o.schedule = parse_rho_schedule(schedule);
        o.export_mode = parse_export_mode(export_mode);
        o.refit_scales = refit_scales;
        o.iterations = iters;
        o.seed = seed;
        o.num_threads = threads;
        if (rank_given()) {
            o.rank = rank;
        } else {
            o.rank = rank_for_bpw(m, n, target_bpw(), layout(), fine_rank ? RankRule::fine() : RankRule::reference());
        }
        o.validate(m, n);
        return o;
    }

    /// The options as recorded in output files and --json.
    nlohmann::json to_json(Index rank_used) const
    {
        nlohmann::json j = {{"method", "admm"},       {"rank", rank_used},          {"iterations", iters},
                            {"seed", seed},           {"schedule", schedule},       {"export", export_mode},
                            {"refit_scales", refit_scales}, {"rank_rule", fine_rank ? "fine" : "reference"}};
        if (!rank_given()) j["target_bpw"] = target_bpw();
        return j;
    }

private:
    static std::string fmt(double v)
    {
        std::ostringstream os;
        os << v;
        return os.str();
    }
    double m_default_bpw = 1.0;
    CLI::Option* m_bpw_opt = nullptr;
    CLI::Option* m_rank_opt = nullptr;
};

/// The layer-reconstruction flags (`--calib` runs): bound straight to a LayerReconstructionOptions,
/// so the defaults shown in --help are the library's (refine/layer_reconstruction.hpp).
struct ReconstructionFlags {
    LayerReconstructionOptions opts;  ///< library defaults until a flag overrides them

    /// Registers --epochs, --batch-size, --lr, --lr-scale, --polish-rounds and --refit-rounds on `cmd`.
    void add_to(CLI::App* cmd)
    {
        const LayerReconstructionOptions d;
        cmd->add_option("--epochs", opts.epochs, "With --calib: passes over the calibration tokens (default " +
                                                     std::to_string(d.epochs) + ")");
        cmd->add_option("--batch-size", opts.batch_size,
                        "With --calib: tokens per Adam step (default " + std::to_string(d.batch_size) + ")");
        cmd->add_option("--lr", opts.lr_latent,
                        "With --calib: peak Adam rate of the unit-RMS sign latents (default " + fmt(d.lr_latent) + ")");
        cmd->add_option("--lr-scale", opts.lr_scale,
                        "With --calib: peak Adam rate of the scales, relative to their RMS (default " +
                            fmt(d.lr_scale) + ")");
        cmd->add_option("--polish-rounds", opts.polish_rounds,
                        "With --calib: rounds of exact U and V sign polish + scale refit after the epochs (default " +
                            std::to_string(d.polish_rounds) + ", 0 = off)");
        cmd->add_option("--refit-rounds", opts.refit_rounds,
                        "With --calib: rounds of the exact output-aware scale refit per epoch (default " +
                            std::to_string(d.refit_rounds) + ", 0 = off)");
    }

    /// The names of the flags, for "needs --calib" checks.
    static const char* const* names()
    {
        static const char* const n[] = {"--epochs", "--batch-size", "--lr", "--lr-scale", "--polish-rounds",
                                        "--refit-rounds", nullptr};
        return n;
    }

    /// The options with `seed`; validates them, naming the flag (exit code 2).
    LayerReconstructionOptions options(std::uint64_t seed) const
    {
        usage_check(opts.epochs >= 0, "--epochs must be >= 0, got " + std::to_string(opts.epochs));
        usage_check(opts.batch_size >= 1, "--batch-size must be >= 1, got " + std::to_string(opts.batch_size));
        usage_check(std::isfinite(opts.lr_latent) && opts.lr_latent >= 0,
                    "--lr must be a number >= 0, got " + fmt(opts.lr_latent));
        usage_check(std::isfinite(opts.lr_scale) && opts.lr_scale >= 0,
                    "--lr-scale must be a number >= 0, got " + fmt(opts.lr_scale));
        usage_check(opts.polish_rounds >= 0, "--polish-rounds must be >= 0, got " + std::to_string(opts.polish_rounds));
        usage_check(opts.refit_rounds >= 0, "--refit-rounds must be >= 0, got " + std::to_string(opts.refit_rounds));
        LayerReconstructionOptions o = opts;
        o.seed = seed;
        o.validate();
        return o;
    }

private:
    static std::string fmt(double v)
    {
        std::ostringstream os;
        os << v;
        return os.str();
    }
};

/// Throws nanoquant::io_error naming `source` if W holds a NaN or an infinity.
template <typename Scalar>
void check_weight_finite(const Matrix<Scalar>& W, const std::string& source)
{
    try {
        check_finite(W, "load", "W");
    } catch (const nanoquant::invalid_argument& e) {
        const std::string msg = e.what();
        const std::size_t p = msg.find("W has");
        throw nanoquant::io_error(source + ": " + (p == std::string::npos ? msg : msg.substr(p + 2)));
    }
}

}  // namespace cli
}  // namespace nanoquant
