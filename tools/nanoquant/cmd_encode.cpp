// SPDX-License-Identifier: Apache-2.0
// `nanoquant encode MODEL TEXT.txt -o EMB.npy [--threads N]`: USE-Lite sentence embeddings, one
// float32 row of 512 per line of TEXT.txt, in order, written as a C-order .npy [lines, 512].
//
// MODEL is the package's dist/model.json (float32, vocab.json beside it) or a file written by
// `nanoquant quantize MODEL.json` (its factorized layers run through the packed kernels: one GEMM
// over the tokens of a batch; the tokenizer comes from the file). Every line counts, an empty one
// too (the embedding of the empty sentence); a final line ending adds no line; "\r\n" is read as
// "\n". Sentences are encoded in batches of --batch; a sentence's embedding does not depend on its
// batch. Bad input is one line on stderr naming the file, exit code 1, and no output file.
#ifdef NANOQUANT_HAVE_MODEL

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nanoquant/io/npy.hpp>

#include "command.hpp"
#include "factorize_options.hpp"
#include "use_lite_cli.hpp"

namespace {

using namespace nanoquant;

struct EncodeArgs {
    std::string model;
    std::string text;
    std::string output;
    int threads = 0;
    int batch = 256;
    bool quiet = false;
};

int run(const EncodeArgs& a)
{
    cli::usage_check(a.threads >= 0, "--threads must be >= 0, got " + std::to_string(a.threads));
    cli::usage_check(a.batch >= 1, "--batch must be >= 1, got " + std::to_string(a.batch));
    const int threads = cli::setup_threads(a.threads);
    const auto t0 = std::chrono::steady_clock::now();
    const cli::TextLines text = cli::read_text_lines(a.text, /*skip_empty=*/false);
    const cli::LoadedUseLite m = cli::load_use_lite_any(a.model);
    const auto t1 = std::chrono::steady_clock::now();

    const Index n = Index(text.lines.size());
    model::Mat emb(n, m.model.output_size());
    std::size_t tokens = 0;
    for (Index s0 = 0; s0 < n; s0 += a.batch) {
        const Index s1 = std::min<Index>(n, s0 + a.batch);
        std::vector<std::vector<std::int32_t>> ids;
        ids.reserve(std::size_t(s1 - s0));
        for (Index s = s0; s < s1; ++s) {
            ids.push_back(m.tokenizer.encode(text.lines[std::size_t(s)]));
            tokens += std::min<std::size_t>(ids.back().size(), std::size_t(model::kUseLiteMaxLength));
        }
        emb.middleRows(s0, s1 - s0) = m.model.encode(ids, threads);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    io::save_npy(a.output, emb);
    if (!a.quiet) {
        const double load = std::chrono::duration<double>(t1 - t0).count();
        std::printf("wrote %s: %lld x %lld float32 embeddings of %s (%s model); %zu tokens; encoded in %.2f s "
                    "(%.0f sentences/s, %d threads; loading %.2f s)\n",
                    a.output.c_str(), static_cast<long long>(emb.rows()), static_cast<long long>(emb.cols()),
                    a.text.c_str(), m.quantized ? "quantized" : "float32", tokens, secs,
                    secs > 0 ? double(n) / secs : 0.0, threads, load);
    }
    return cli::kSuccess;
}

nanoquant::cli::Registrar reg{"encode", [](CLI::App& app) {
    auto args = std::make_shared<EncodeArgs>();
    auto* cmd = app.add_subcommand("encode", "Sentence embeddings of USE-Lite (float or quantized), one row per line");
    cmd->add_option("model", args->model,
                    "The package's dist/model.json or a file written by `nanoquant quantize MODEL.json`")
        ->required();
    cmd->add_option("text", args->text, "UTF-8 text file, one sentence per line (every line counts)")->required();
    cmd->add_option("-o,--output", args->output, "Output .npy file: float32 [lines, 512], C order")->required();
    cmd->add_option("--threads", args->threads, "Threads (default 0 = all)");
    cmd->add_option("--batch", args->batch, "Sentences per batch (default 256)");
    cmd->add_flag("-q,--quiet", args->quiet, "Print nothing on success");
    return [args]() { return run(*args); };
}};

}  // namespace

#endif  // NANOQUANT_HAVE_MODEL
