// SPDX-License-Identifier: Apache-2.0
#pragma once

// Subcommand registry of the nanoquant tool. A cmd_NAME.cpp file defines
//
//   static nanoquant::cli::Registrar reg{"NAME", [](CLI::App& app) {
//       auto* cmd = app.add_subcommand("NAME", "one-line description");
//       ... options ...
//       return [=]() -> int { ... run, return exit code ... };
//   }};
//
// Exit codes (every command): 0 success, 1 runtime failure (bad file, numerical failure),
// 2 usage error (bad option or value). Errors go to stderr as one line.

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace nanoquant {
namespace cli {

enum ExitCode : int { kSuccess = 0, kRuntimeError = 1, kUsageError = 2 };

/// Adds its subcommand to `app` and returns the function that runs it.
using Setup = std::function<std::function<int()>(CLI::App& app)>;

struct Entry {
    std::string name;
    Setup setup;
};

inline std::vector<Entry>& registry()
{
    static std::vector<Entry> entries;
    return entries;
}

struct Registrar {
    Registrar(std::string name, Setup setup) { registry().push_back({std::move(name), std::move(setup)}); }
};

}  // namespace cli
}  // namespace nanoquant
