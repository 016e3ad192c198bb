// SPDX-License-Identifier: Apache-2.0
// The USE-Lite results of docs/use-lite.md: every pipeline stage at several bit budgets and the
// data-free baselines, measured by the agreement of the compressed model's sentence embeddings with
// the float model's on an evaluation set (mean cosine, recall@10). Run by scripts/use-lite-results.sh:
//   use_lite_results MODEL.json CALIB.txt EVAL.txt OUT.csv [--bpw 0.55,0.8,1.0,2.0] [--threads 2]
//                    [--admm-iters 400] [--baselines-only] [--no-baselines]
// One CSV row per (method, bpw): method,bpw_nominal,bpw_avg,mean_cosine,recall10,seconds.
// `layer` runs report `admm` too (its first stage), `full` runs report `block` (the stages are
// snapshots of one deterministic run, identical to running the shorter pipeline with the same seed).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "nanoquant/baselines/dbf.hpp"
#include "nanoquant/baselines/residual_binary.hpp"
#include "nanoquant/baselines/svd16.hpp"
#include "nanoquant/model/pipeline.hpp"
#include "nanoquant/model/tokenizer.hpp"

using namespace nanoquant;
using namespace nanoquant::model;

namespace {

std::vector<std::vector<std::int32_t>> read_ids(const std::string& path, const UseLiteTokenizer& tok)
{
    std::ifstream in(path);
    if (!in) throw io_error(path + ": cannot open");
    std::vector<std::vector<std::int32_t>> ids;
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) ids.push_back(tok.encode(line));
    return ids;
}

std::vector<double> parse_list(const std::string& s)
{
    std::vector<double> v;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) v.push_back(std::stod(item));
    return v;
}

/// Average bits per weight over every matmul weight of `m` given each weight's bits.
struct BitCount {
    double bits = 0, weights = 0;
    void add(Index rows, Index cols, double bpw)
    {
        bits += bpw * double(rows) * double(cols);
        weights += double(rows) * double(cols);
    }
    double avg() const { return weights > 0 ? bits / weights : 0; }
};

double avg_bpw(UseLite& m)
{
    BitCount c;
    for (auto& p : m.linears()) {
        const Linear& l = *p.second;
        c.add(l.out(), l.in(), l.factorized ? bpw_for_rank(l.out(), l.in(), l.f.rank()) : 32.0);
    }
    return c.avg();
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc < 5) {
        std::fprintf(stderr,
                     "usage: use_lite_results MODEL.json CALIB.txt EVAL.txt OUT.csv [--bpw LIST] [--threads N] "
                     "[--admm-iters N] [--baselines-only] [--no-baselines]\n");
        return 2;
    }
    const std::string model_json = argv[1], calib = argv[2], eval = argv[3], out = argv[4];
    std::vector<double> bpws = {0.55, 0.8, 1.0, 2.0};
    int threads = 2, admm_iters = 400;
    bool baselines = true, pipelines = true;
    for (int i = 5; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--bpw" && i + 1 < argc) bpws = parse_list(argv[++i]);
        else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else if (a == "--admm-iters" && i + 1 < argc) admm_iters = std::atoi(argv[++i]);
        else if (a == "--baselines-only") pipelines = false;
        else if (a == "--no-baselines") baselines = false;
        else {
            std::fprintf(stderr, "use_lite_results: unknown argument '%s'\n", a.c_str());
            return 2;
        }
    }
    const std::string dir = model_json.substr(0, model_json.find_last_of('/') + 1);
    const UseLite fm = UseLite::from_tfjs(TfjsModel::load(model_json));
    const UseLiteTokenizer tok = UseLiteTokenizer::load(dir + "vocab.json");
    const auto cal = read_ids(calib, tok), ev = read_ids(eval, tok);
    const Mat ef = fm.encode(ev, threads);
    std::ofstream csv(out);
    csv << "method,bpw_nominal,bpw_avg,mean_cosine,recall10,seconds\n";
    auto row = [&](const std::string& method, double nominal, double avg, const Mat& e, double secs) {
        const EmbeddingAgreement a = embedding_agreement(ef, e);
        csv << method << "," << nominal << "," << avg << "," << a.mean_cosine << "," << a.recall_at_k << "," << secs
            << "\n";
        csv.flush();
        std::fprintf(stderr, "%-10s bpw %.2f (avg %.3f): cosine %.4f recall@10 %.4f (%.0f s)\n", method.c_str(), nominal,
                     avg, a.mean_cosine, a.recall_at_k, secs);
    };
    row("float", 32, 32, fm.encode(ev, threads), 0);

    if (baselines) {
        // Data-free replacements of every matmul weight (embeddings, norms, biases float).
        struct Baseline {
            std::string name;
            double nominal;
        };
        for (const Baseline& b : {Baseline{"sign", 1.0}, Baseline{"residual-2", 2.0}, Baseline{"svd16", 1.0},
                                  Baseline{"dbf", 1.0}, Baseline{"admm-datafree", 1.0}}) {
            const auto t0 = std::chrono::steady_clock::now();
            UseLite q = fm;
            BitCount bits;
            for (auto& p : q.linears()) {
                Mat& W = p.second->w;
                const Index m = W.rows(), n = W.cols();
                if (b.name == "sign" || b.name == "residual-2") {
                    ResidualBinaryOptions ro;
                    ro.paths = b.name == "sign" ? 1 : 2;
                    if (ro.paths == 1) ro.refit_rounds = 0;
                    const auto r = residual_binarize<float>(W, ro);
                    W = r.reconstruct();
                    bits.add(m, n, r.bits_per_weight());
                } else if (b.name == "svd16") {
                    const auto r = svd16<float>(W, svd16_rank_for_bpw(m, n, b.nominal));
                    W = r.reconstruct();
                    bits.add(m, n, r.bits_per_weight());
                } else if (b.name == "dbf") {
                    DbfOptions<float> o;
                    o.rank = rank_for_bpw(m, n, b.nominal, ScaleLayout::ThreeScales);
                    o.iterations = admm_iters;
                    const auto r = dbf_factorize<float>(W, o);
                    W = r.factorization.reconstruct();
                    bits.add(m, n, r.factorization.bits_per_weight());
                } else {
                    AdmmOptions<float> o;
                    o.rank = rank_for_bpw(m, n, b.nominal);
                    o.iterations = admm_iters;
                    o.num_threads = threads;
                    const auto r = AdmmSolver<float>(o).solve(W);
                    r.throw_if_failed();
                    W = r.factorization.reconstruct();
                    bits.add(m, n, r.factorization.bits_per_weight());
                }
            }
            row(b.name, b.nominal, bits.avg(), q.encode(ev, threads),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
    }
    if (pipelines) {
        for (const double bpw : bpws) {
            for (const PipelineStage stage : {PipelineStage::Layer, PipelineStage::Full}) {
                PipelineOptions o;
                o.bpw = bpw;
                o.stage = stage;
                o.threads = threads;
                o.admm_iterations = admm_iters;
                o.progress = [](const std::string& s) { std::fprintf(stderr, "  %s\n", s.c_str()); };
                // A stage's time is the pipeline's time up to it (the evaluation here excluded).
                const auto t0 = std::chrono::steady_clock::now();
                double in_callbacks = 0;
                quantize_use_lite(fm, cal, o, [&](const std::string& st, const UseLite& q) {
                    const auto c0 = std::chrono::steady_clock::now();
                    const double elapsed = std::chrono::duration<double>(c0 - t0).count() - in_callbacks;
                    UseLite copy = q;
                    row(st, bpw, avg_bpw(copy), q.encode(ev, threads), elapsed);
                    in_callbacks += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
                });
            }
        }
    }
    return 0;
}
