// SPDX-License-Identifier: Apache-2.0
// `nanoquant factorize W.npy | FILE.safetensors:TENSOR`: factorizes one weight matrix, prints a
// summary (or one JSON object with --json) and optionally writes the factorized layer (-o, the
// format of docs/format.md).
//
// Extending: a new method adds its name to kMethods and a branch in run_method(); its own flags
// go in the "method-specific flags" block of the setup function.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include <nanoquant/core/factorization.hpp>
#include <nanoquant/io/factorized_file.hpp>
#include <nanoquant/io/weights.hpp>
#include <nanoquant/solvers/admm_solver.hpp>

#include "command.hpp"
#include "factorize_options.hpp"

namespace {

using namespace nanoquant;

struct FactorizeArgs {
    std::string input;
    std::string output;
    std::string name;
    std::string method = "admm";
    bool json = false;
    cli::FactorizeFlags flags;
};

/// The outcome of a method, whatever it is.
struct MethodResult {
    Factorization<float> f;
    std::string status;
    int iterations = 0;
    double rel_error = 0;
    nlohmann::json extra = nlohmann::json::object();  ///< method-specific facts for --json / metadata
};

const char* const kMethods = "admm";

/// The place where the factorization method is chosen.
MethodResult run_method(const FactorizeArgs& a, const Matrix<float>& W)
{
    if (a.method == "admm") {
        const AdmmOptions<float> opts = a.flags.admm_options<float>(W.rows(), W.cols());
        const AdmmResult<float> r = AdmmSolver<float>(opts).solve(W);
        r.throw_if_failed();
        MethodResult out;
        out.f = r.factorization;
        out.status = to_string(r.status);
        out.iterations = r.iterations;
        out.rel_error = r.relative_error;
        return out;
    }
    throw nanoquant::invalid_argument("--method: unknown method '" + a.method + "' (expected " + kMethods + ")");
    return {};
}

std::string default_layer_name(const std::string& input)
{
    const std::size_t colon = input.find_last_of(':');
    if (colon != std::string::npos && !io::ends_with(input, ".npy")) return input.substr(colon + 1);
    std::string base = input.substr(input.find_last_of('/') == std::string::npos ? 0 : input.find_last_of('/') + 1);
    const std::size_t dot = base.find_last_of('.');
    return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

int run(const FactorizeArgs& a)
{
    const Matrix<float> W = io::load_weight<float>(a.input);
    cli::check_weight_finite(W, a.input);
    const auto t0 = std::chrono::steady_clock::now();
    MethodResult r = run_method(a, W);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    nlohmann::json j;
    j["status"] = r.status;
    j["input"] = a.input;
    j["method"] = a.method;
    j["rows"] = W.rows();
    j["cols"] = W.cols();
    j["rank"] = r.f.rank();
    j["bpw"] = r.f.bits_per_weight();
    if (!a.flags.rank_given()) j["target_bpw"] = a.flags.target_bpw();
    j["iterations"] = r.iterations;
    j["seconds"] = seconds;
    j["rel_error"] = r.rel_error;
    j["export"] = a.flags.export_mode;
    j["schedule"] = a.flags.schedule;
    j["refit_scales"] = a.flags.refit_scales;
    j["seed"] = a.flags.seed;
    j["storage_bytes"] = r.f.storage_bytes();
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) j[it.key()] = it.value();

    if (!a.output.empty()) {
        const std::string name = a.name.empty() ? default_layer_name(a.input) : a.name;
        nlohmann::json info = {{"solver", a.flags.to_json(r.f.rank())}, {"rel_error", r.rel_error}, {"source", a.input}};
        info["solver"]["method"] = a.method;
        io::SafetensorsWriter w;
        io::add_factorized_layer(w, name, r.f, a.flags.scale_st_dtype(), info);
        w.write(a.output);
        // What a reader of the file gets (scales rounded to the stored dtype).
        const io::SafetensorsFile back(a.output);
        const auto loaded = io::load_factorized_layer<float>(back, name);
        j["output"] = a.output;
        j["layer"] = name;
        j["rel_error_stored"] = relative_error<float>(W, loaded.f);
        j["file_bytes"] = back.size();
    }

    if (a.json) {
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("%s: %lld x %lld, rank %lld, %.4f bpw (%s, %s schedule, %s%s)\n", a.input.c_str(),
                    static_cast<long long>(W.rows()), static_cast<long long>(W.cols()),
                    static_cast<long long>(r.f.rank()), r.f.bits_per_weight(), a.method.c_str(),
                    a.flags.schedule.c_str(), a.flags.export_mode.c_str(),
                    a.flags.refit_scales ? ", refit scales" : "");
        std::printf("  rel_error %.6f after %d iterations in %.2f s (status %s)\n", r.rel_error, r.iterations,
                    seconds, r.status.c_str());
        if (!a.output.empty())
            std::printf("  wrote %s (layer '%s', %zu bytes, stored rel_error %.6f)\n", a.output.c_str(),
                        j["layer"].get<std::string>().c_str(), j["file_bytes"].get<std::size_t>(),
                        j["rel_error_stored"].get<double>());
    }
    return cli::kSuccess;
}

nanoquant::cli::Registrar reg{"factorize", [](CLI::App& app) {
    auto args = std::make_shared<FactorizeArgs>();
    auto* cmd = app.add_subcommand("factorize", "Factorize one weight matrix (W.npy or FILE.safetensors:TENSOR)");
    cmd->add_option("input", args->input, "W.npy, FILE.safetensors:TENSOR or INDEX.json:TENSOR")->required();
    cmd->add_option("-o,--output", args->output, "Write the factorized layer here (safetensors, docs/format.md)");
    cmd->add_option("--name", args->name, "Layer name in the output file (default: tensor name or file stem)");
    cmd->add_option("--method", args->method, std::string("Factorization method: ") + kMethods + " (default admm)");
    cmd->add_flag("--json", args->json, "Print one JSON object instead of the summary");
    args->flags.add_to(cmd, 1.0);
    // method-specific flags go here
    return [args]() { return run(*args); };
}};

}  // namespace
