// SPDX-License-Identifier: Apache-2.0
// `nanoquant bench-gemv --rows M --cols N --bpw B [--threads T] [--batch K] [--json]`: times the
// packed-sign kernels (every SIMD variant on this CPU, float32 and int8 activations) against a dense
// Eigen float32 GEMV of the same shape, in the same run, with weights cycled through more memory
// than the last-level cache, and the memory floor (the time to read the packed signs once, same
// pool, same threads). --json prints one object {"dense_us", "paths": [{name, exact, us, speedup}],
// "read_floor_us"}.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "gemv_benchmark.hpp"  // bench/support: a harness, not part of the installed library

#include "command.hpp"

namespace {
struct BenchGemvArgs {
    long rows = 4096;
    long cols = 4096;
    double bpw = 1.0;
    int threads = 1;
    long batch = 1;
    int rounds = 7;
    bool hot = false;
    bool json = false;
};
}  // namespace

static nanoquant::cli::Registrar reg{"bench-gemv", [](CLI::App& app) {
    auto a = std::make_shared<BenchGemvArgs>();
    auto* cmd = app.add_subcommand("bench-gemv", "Time the packed-sign GEMV kernels against dense Eigen float32");
    cmd->add_option("--rows", a->rows, "output size M (default 4096)")->check(CLI::PositiveNumber);
    cmd->add_option("--cols", a->cols, "input size N (default 4096)")->check(CLI::PositiveNumber);
    cmd->add_option("--bpw", a->bpw, "bits per weight; rank = rank_for_bpw(M, N, B) (default 1.0)")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--threads", a->threads, "threads for every path, dense included (default 1)")
        ->check(CLI::Range(1, 1024));
    cmd->add_option("--batch", a->batch, "tokens per call; > 1 measures GEMM (default 1)")->check(CLI::Range(1L, 4096L));
    cmd->add_option("--rounds", a->rounds, "interleaved rounds; medians are reported (default 7)")
        ->check(CLI::Range(1, 1000));
    cmd->add_flag("--hot", a->hot, "reuse one copy of the weights (cache-resident) instead of cycling");
    cmd->add_flag("--json", a->json, "print one JSON object");
    return [a]() -> int {
        using namespace nanoquant::kernels;
        GemvBenchOptions o;
        o.threads = a->threads;
        o.batch = a->batch;
        o.rounds = a->rounds;
        o.cold = !a->hot;
        GemvComparison c;
        try {
            c = compare_gemv(a->rows, a->cols, a->bpw, o);
        } catch (const nanoquant::invalid_argument& e) {
            std::fprintf(stderr, "nanoquant bench-gemv: %s\n", e.what());
            return nanoquant::cli::kUsageError;
        }
        if (a->json) {
            nlohmann::json paths = nlohmann::json::array();
            for (const auto& p : c.paths) {
                nlohmann::json j = {{"name", p.name}, {"exact", p.exact}, {"us", p.us}, {"speedup", p.speedup}};
                if (c.batch > 1) {
                    j["gemv_us"] = p.gemv_us;
                    j["batch_gain"] = p.batch_gain;
                }
                paths.push_back(j);
            }
            std::printf("%s\n", nlohmann::json{{"dense_us", c.dense_us}, {"paths", paths}, {"read_floor_us", c.read_floor_us}}.dump().c_str());
            return nanoquant::cli::kSuccess;
        }
        const std::size_t llc = last_level_cache_bytes();
        std::printf("%ldx%ld, rank %ld (%.3f bpw), batch %ld, %d thread(s), %s weights, median of %d rounds\n",
                    long(c.m), long(c.n), long(c.rank), c.bpw, long(c.batch), c.threads,
                    o.cold ? "cold (cycled through > 2x LLC)" : "hot", o.rounds);
        if (o.cold)
            std::printf("  last-level cache %s; pools: dense %.0f MiB, packed %.0f MiB\n",
                        llc ? (std::to_string(llc >> 20) + " MiB").c_str() : "unknown",
                        double(o.dense_pool_bytes) / 1048576.0, double(o.packed_pool_bytes) / 1048576.0);
        const double adds = double(c.rank) * double(c.m + c.n) * double(c.batch);
        std::printf("  %-14s %12s %9s %14s %8s\n", "path", "us/call", "speedup", "G sign-adds/s", "% floor");
        std::printf("  %-14s %12.1f %9s %14s %8s\n", "dense-eigen", c.dense_us, "1.00x", "-", "-");
        for (const auto& p : c.paths)
            std::printf("  %-14s %12.1f %8.2fx %14.1f %7.0f%%%s\n", p.name.c_str(), p.us, p.speedup,
                        adds / (p.us * 1e3), 100.0 * c.read_floor_us / p.us, p.exact ? "" : "  (int8 activations)");
        const double sign_bytes = double(c.sign_bytes);
        std::printf("  memory floor: reading the %.2f MiB of packed signs once took %.1f us at best (%.1f GB/s, %d thread(s));\n"
                    "  %% floor = floor / us/call: 100%% = as fast as the memory delivered the signs\n",
                    sign_bytes / 1048576.0, c.read_floor_us, sign_bytes / (c.read_floor_us * 1e3), c.threads);
        if (c.batch > 1) {
            std::printf("  per-token throughput of one batch-%ld call over %ld single-token GEMVs (same path, same run):\n",
                        long(c.batch), long(c.batch));
            for (const auto& p : c.paths)
                std::printf("  %-14s %8.2fx  (GEMV %.1f us)\n", p.name.c_str(), p.batch_gain, p.gemv_us);
        }
        return nanoquant::cli::kSuccess;
    };
}};
