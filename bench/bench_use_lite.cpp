// SPDX-License-Identifier: Apache-2.0
// `encode` throughput of USE-Lite: the float32 model (Eigen GEMMs) against the same model with every
// matmul weight factorized and run through the packed kernels (GEMM over the tokens of a batch), in
// the same run. Sentences: the 100 WordNet sentences of tests/data/use_lite/golden.json, 64 per call.
// The quantized model is made with a short ADMM (its quality does not change its speed: the ranks
// are those of the bit budget). Report: items/s = sentences per second; compare the two rows.
#include <benchmark/benchmark.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "nanoquant/core/bit_budget.hpp"
#include "nanoquant/model/tokenizer.hpp"
#include "nanoquant/model/use_lite.hpp"
#include "nanoquant/solvers/admm_solver.hpp"

using namespace nanoquant;
using namespace nanoquant::model;

namespace {

struct Setup {
    UseLite float_model;
    std::vector<std::vector<std::int32_t>> ids;
};

const Setup& setup()
{
    static const Setup s = [] {
        Setup x;
        const std::string model = NANOQUANT_USE_LITE_MODEL;
        x.float_model = UseLite::from_tfjs(TfjsModel::load(model));
        const auto tok = UseLiteTokenizer::load(model.substr(0, model.find_last_of('/') + 1) + "vocab.json");
        std::ifstream in(std::string(NANOQUANT_DATA_DIR) + "/use_lite/golden.json");
        const auto j = nlohmann::json::parse(in);
        const auto sentences = j.at("sentences").get<std::vector<std::string>>();
        for (std::size_t i = sentences.size() - 100; i < sentences.size() && x.ids.size() < 64; ++i)
            x.ids.push_back(tok.encode(sentences[i]));
        return x;
    }();
    return s;
}

const UseLite& quantized(double bpw)
{
    static std::map<double, UseLite> cache;
    auto it = cache.find(bpw);
    if (it == cache.end()) {
        UseLite q = setup().float_model;
        for (auto& p : q.linears()) {
            Linear& l = *p.second;
            AdmmOptions<float> a;
            a.rank = rank_for_bpw(l.out(), l.in(), bpw);
            a.iterations = 5;
            a.num_threads = 1;
            const AdmmResult<float> r = AdmmSolver<float>(a).solve(l.w);
            r.throw_if_failed();
            set_factorized(l, r.factorization);  // packed: encode runs the packed kernels
        }
        it = cache.emplace(bpw, std::move(q)).first;
    }
    return it->second;
}

void run(benchmark::State& state, const UseLite& m, int threads)
{
    const auto& ids = setup().ids;
    for (auto _ : state) benchmark::DoNotOptimize(m.encode(ids, threads).data());
    state.SetItemsProcessed(state.iterations() * Index(ids.size()));
}

void BM_encode_float(benchmark::State& state) { run(state, setup().float_model, int(state.range(0))); }
void BM_encode_quantized_1bpw(benchmark::State& state) { run(state, quantized(1.0), int(state.range(0))); }
void BM_encode_quantized_055bpw(benchmark::State& state) { run(state, quantized(0.55), int(state.range(0))); }

}  // namespace

BENCHMARK(BM_encode_float)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_encode_quantized_1bpw)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_encode_quantized_055bpw)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
