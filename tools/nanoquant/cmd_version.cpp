// SPDX-License-Identifier: Apache-2.0
// `nanoquant version`: prints the library version (and, once kernels exist, the kernel target).
#include <cstdio>

#include <nanoquant/version.hpp>

#include "command.hpp"

static nanoquant::cli::Registrar reg{"version", [](CLI::App& app) {
    app.add_subcommand("version", "Print the nanoquant version");
    return []() -> int {
        std::printf("nanoquant %s\n", NANOQUANT_VERSION_STRING);
        return nanoquant::cli::kSuccess;
    };
}};
