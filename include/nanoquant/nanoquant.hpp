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
#include "nanoquant/solvers/status.hpp"
#include "nanoquant/solvers/admm_options.hpp"
#include "nanoquant/solvers/admm_result.hpp"
#include "nanoquant/solvers/admm_kernels.hpp"
#include "nanoquant/solvers/admm_export.hpp"
#include "nanoquant/solvers/scale_refit.hpp"
#include "nanoquant/solvers/admm_solver.hpp"
