// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file nanoquant.hpp
/// Umbrella header: includes every public nanoquant header. Include the per-component headers
/// instead for faster builds.

#include "nanoquant/version.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/packed_signs.hpp"
#include "nanoquant/core/bit_budget.hpp"
#include "nanoquant/core/factorization.hpp"
#include "nanoquant/detail/threads.hpp"
#include "nanoquant/solvers/status.hpp"
#include "nanoquant/solvers/admm_options.hpp"
#include "nanoquant/solvers/admm_result.hpp"
#include "nanoquant/solvers/admm_kernels.hpp"
#include "nanoquant/solvers/admm_export.hpp"
#include "nanoquant/solvers/scale_refit.hpp"
#include "nanoquant/solvers/admm_solver.hpp"
#include "nanoquant/refine/importance.hpp"
#include "nanoquant/refine/layer_params.hpp"
#include "nanoquant/refine/adam.hpp"
#include "nanoquant/refine/reconstruction_options.hpp"
#include "nanoquant/refine/calibration.hpp"
#include "nanoquant/refine/scale_refit_output.hpp"
#include "nanoquant/refine/sign_polish.hpp"
#include "nanoquant/refine/layer_reconstruction.hpp"
#include "nanoquant/refine/mitigation.hpp"
#include "nanoquant/refine/swiglu_block.hpp"
#include "nanoquant/baselines/dbf.hpp"
#include "nanoquant/baselines/residual_binary.hpp"
#include "nanoquant/baselines/svd16.hpp"
#include "nanoquant/io/npy.hpp"
#include "nanoquant/io/safetensors.hpp"  // io/: needs nlohmann-json (the CMake target brings it)
#include "nanoquant/io/checkpoint.hpp"
#include "nanoquant/io/weights.hpp"
#include "nanoquant/io/factorized_file.hpp"
#include "nanoquant/kernels/gemv.hpp"
