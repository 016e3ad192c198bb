// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file version.hpp
/// The only source of nanoquant's version; CMake parses these three lines.
#define NANOQUANT_VERSION_MAJOR 0
#define NANOQUANT_VERSION_MINOR 1
#define NANOQUANT_VERSION_PATCH 0

#define NANOQUANT_VERSION_STRING "0.1.0"
