// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file sign_dot_neon.hpp
/// AArch64 NEON kernels (placeholder until written).
