// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file reconstruction_options.hpp
/// Options and result of reconstruct_layer() (refine/layer_reconstruction.hpp).

#include <cmath>
#include <cstdint>
#include <vector>

#include "nanoquant/core/factorization.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/refine/layer_params.hpp"

namespace nanoquant {

/// Options of reconstruct_layer().
struct LayerReconstructionOptions {
    /// Passes over the calibration tokens. Default 20; >= 0 (0 returns the start).
    Index epochs = 20;
    /// Tokens per Adam step. Default 64; >= 1 (clamped to the number of tokens).
    Index batch_size = 64;
    /// Peak Adam rate of the latents (unit-RMS latents, see file comment). Default 3e-2; >= 0 (0 freezes).
    double lr_latent = 3e-2;
    /// Peak Adam rate of the scales, relative to each scale vector's RMS at the start. Default 1e-2; >= 0.
    double lr_scale = 1e-2;
    /// The cosine schedule decays to lr_min_ratio·lr at the last step. Default 1e-2; range [0, 1].
    double lr_min_ratio = 1e-2;
    /// Adam β1. Default 0.9; range [0, 1).
    double beta1 = 0.9;
    /// Adam β2. Default 0.999; range [0, 1).
    double beta2 = 0.999;
    /// Adam ε (added to √v̂). Default 1e-12 (the loss is normalized, so gradients are small); > 0.
    double eps = 1e-12;
    /// Rescale latents to unit RMS per row of u and per column of vt before tuning. Default true.
    bool normalize_latents = true;
    /// Evaluate the full calibration loss after each epoch and return the best iterate. Default true.
    bool keep_best = true;
    /// Shuffle the tokens every epoch (seeded). Default true.
    bool shuffle = true;
    /// Seed of the shuffling. Default 0.
    std::uint64_t seed = 0;
    /// Tokens per chunk when the full calibration loss is evaluated. Default 2048; >= 1.
    Index eval_chunk = 2048;
    /// Rounds of "polish U signs (polish_u_signs, 2 sweeps) + polish V signs (polish_v_signs,
    /// polish_v_sweeps) + refit scales" after the Adam epochs, stopping early after a round without
    /// a flip; 0 = off (the reference has no such step). Default 4; >= 0.
    int polish_rounds = 4;
    /// Sweeps of the V sign polish in each polish round; 0 = polish U only. Default 2; >= 0.
    int polish_v_sweeps = 2;
    /// Rounds of the exact output-aware scale refit (refit_scales_output) applied to the start and
    /// after every epoch; 0 = scales are tuned by Adam only (the reference). Default 2; >= 0.
    int refit_rounds = 2;
    /// Threads of the reconstruction's own parallel loops (the U sign polish; its result does not
    /// depend on the count). 0 = the caller's OpenMP default (omp_get_max_threads()). >= 0. The
    /// many small Eigen products of the Adam steps run with the caller's OpenMP default (which
    /// nanoquant never changes): giving each its own count would need a nested OpenMP region per
    /// product, and libgomp starts fresh threads for every nested team.
    int num_threads = 0;

    /// Throws nanoquant::invalid_argument naming the bad field and its value.
    void validate() const
    {
        constexpr const char* w = "LayerReconstructionOptions::validate";
        NANOQUANT_CHECK(epochs >= 0, w, "epochs must be >= 0, got " << epochs);
        NANOQUANT_CHECK(batch_size >= 1, w, "batch_size must be >= 1, got " << batch_size);
        NANOQUANT_CHECK(std::isfinite(lr_latent) && lr_latent >= 0, w, "lr_latent must be >= 0, got " << lr_latent);
        NANOQUANT_CHECK(std::isfinite(lr_scale) && lr_scale >= 0, w, "lr_scale must be >= 0, got " << lr_scale);
        NANOQUANT_CHECK(lr_min_ratio >= 0 && lr_min_ratio <= 1, w,
                        "lr_min_ratio must be in [0, 1], got " << lr_min_ratio);
        NANOQUANT_CHECK(beta1 >= 0 && beta1 < 1, w, "beta1 must be in [0, 1), got " << beta1);
        NANOQUANT_CHECK(beta2 >= 0 && beta2 < 1, w, "beta2 must be in [0, 1), got " << beta2);
        NANOQUANT_CHECK(eps > 0, w, "eps must be > 0, got " << eps);
        NANOQUANT_CHECK(eval_chunk >= 1, w, "eval_chunk must be >= 1, got " << eval_chunk);
        NANOQUANT_CHECK(polish_rounds >= 0, w, "polish_rounds must be >= 0, got " << polish_rounds);
        NANOQUANT_CHECK(polish_v_sweeps >= 0, w, "polish_v_sweeps must be >= 0, got " << polish_v_sweeps);
        NANOQUANT_CHECK(refit_rounds >= 0, w, "refit_rounds must be >= 0, got " << refit_rounds);
        NANOQUANT_CHECK(num_threads >= 0, w, "num_threads must be >= 0, got " << num_threads);
    }
};

/// Result of reconstruct_layer().
template <typename Scalar>
struct LayerReconstructionResult {
    Factorization<Scalar> factorization;  ///< hardened signs + tuned scales of the returned iterate
    LayerParams<Scalar> params;           ///< latents and scales of the returned iterate
    double loss_before = 0;               ///< full calibration loss of the start (weighted relative squared error)
    double loss_after = 0;                ///< full calibration loss of the returned iterate
    std::vector<double> epoch_loss;       ///< full loss after each epoch (only with keep_best)
    Index best_epoch = 0;                 ///< epoch of the returned iterate (0 = the start)
    Index steps = 0;                      ///< Adam steps taken
    Index flipped_u = 0;                  ///< entries of U whose sign changed from the start
    Index flipped_v = 0;                  ///< entries of Vᵀ whose sign changed from the start
    Index polish_flips = 0;               ///< flips made by the final sign polish
    double seconds = 0;                   ///< wall time
    double train_seconds = 0;             ///< wall time of the Adam steps alone (no loss evaluations)
    /// Relative output errors √loss.
    double rel_error_before() const { return std::sqrt(loss_before); }
    double rel_error_after() const { return std::sqrt(loss_after); }
};

}  // namespace nanoquant
