// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file types.hpp
/// Eigen aliases used across nanoquant. All dense matrices are column-major (Eigen's default)
/// unless a name says otherwise.

#include <Eigen/Core>

namespace nanoquant {

using Index = Eigen::Index;

template <typename Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

template <typename Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

template <typename Scalar>
using RowMajorMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace nanoquant
