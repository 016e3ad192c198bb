// SPDX-License-Identifier: Apache-2.0
// `nanoquant demo`: compresses the real weight matrices shipped in tests/data at 1.0, 0.8 and
// 0.55 bits per weight and prints a table of error, effective bpw and time (the reference rank
// rule, two-scale export, linear schedule: the settings of the parity table in the README), and
// the GEMV time of the packed kernels against a dense Eigen float32 GEMV of the same shape,
// measured in the same run (kernels::compare_gemv, hot cache, 1 thread, median of 5 rounds).
//
// The data directory is the first of: --data-dir, $NANOQUANT_DATA_DIR, DIR_OF_BINARY/data,
// the installed data relative to the installed binary (DIR_OF_BINARY/../share/nanoquant/data with
// the default layout; `cmake --install` puts it there), ./tests/data, ./data, and the source
// tree's tests/data this binary was built from.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/io/npy.hpp>
#include "gemv_benchmark.hpp"  // bench/support: a harness, not part of the installed library
#include <nanoquant/solvers/admm_solver.hpp>

#include "command.hpp"

namespace {

using namespace nanoquant;

struct DemoArgs {
    std::string data_dir;
    int iters = 0;
    int threads = 0;
    bool all = false;
    bool no_gemv = false;
};

const char* const kDemoMatrices[] = {"use_lite_L0_attn_q", "use_lite_L0_ffn_up", "use_lite_L1_ffn_down"};
const char* const kAllMatrices[] = {"use_lite_L0_attn_q", "use_lite_L0_ffn_up", "use_lite_L1_attn_q",
                                    "use_lite_L1_attn_o", "use_lite_L1_ffn_up", "use_lite_L1_ffn_down"};
constexpr int kDefaultDemoIters = 50;

bool has_matrices(const std::string& dir)
{
    struct stat st;
    return !dir.empty() && ::stat((dir + "/use_lite_L0_attn_q.npy").c_str(), &st) == 0;
}

std::string exe_dir()
{
    char buf[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "";
    std::string p(buf, static_cast<std::size_t>(n));
    return p.substr(0, p.find_last_of('/'));
}

std::string find_data_dir(const std::string& given)
{
    if (!given.empty()) {
        if (!has_matrices(given))
            throw io_error(given + ": no use_lite_L0_attn_q.npy here (--data-dir must hold the demo matrices)");
        return given;
    }
    std::vector<std::string> cands;
    if (const char* e = std::getenv("NANOQUANT_DATA_DIR")) cands.push_back(e);
    const std::string ed = exe_dir();
    if (!ed.empty()) {
        cands.push_back(ed + "/data");
#ifdef NANOQUANT_INSTALLED_DATA_REL
        if (std::string(NANOQUANT_INSTALLED_DATA_REL) != "../share/nanoquant/data")
            cands.push_back(ed + "/" + NANOQUANT_INSTALLED_DATA_REL);
#endif
        cands.push_back(ed + "/../share/nanoquant/data");
    }
    cands.push_back("tests/data");
    cands.push_back("data");
#ifdef NANOQUANT_DATA_DIR
    cands.push_back(NANOQUANT_DATA_DIR);
#endif
    for (const auto& c : cands)
        if (has_matrices(c)) return c;
    std::string tried;
    for (const auto& c : cands) tried += (tried.empty() ? "" : ", ") + c;
    throw io_error("cannot find the demo matrices (use_lite_*.npy); tried " + tried + "; pass --data-dir DIR");
}

int run(const DemoArgs& a)
{
    if (a.iters < 0) throw nanoquant::invalid_argument("--iters must be >= 1, got " + std::to_string(a.iters));
    if (a.threads < 0) throw nanoquant::invalid_argument("--threads must be >= 0, got " + std::to_string(a.threads));
    const std::string dir = find_data_dir(a.data_dir);
    const int iters = a.iters > 0 ? a.iters : kDefaultDemoIters;
    std::printf("nanoquant demo: real weight matrices from %s\n", dir.c_str());
    std::printf("ADMM, linear rho schedule, two-scale export, reference rank rule (multiple of 32), seed 0, %d "
                "iterations%s\n\n",
                iters, a.iters > 0 ? "" : " (the reference uses 400; fewer here to keep the demo under a minute; "
                                          "--iters 400 for the full schedule)");
    std::printf("%-22s %11s %7s %5s %7s %10s %8s", "matrix", "shape", "target", "rank", "bpw", "rel_error", "time");
    if (!a.no_gemv) std::printf(" %10s %10s %8s", "dense us", "packed us", "speedup");
    std::printf("\n");
    std::string gemv_path;
    const double budgets[] = {1.0, 0.8, 0.55};
    double total = 0;
    std::vector<std::string> names;
    if (a.all)
        for (const char* n : kAllMatrices) names.push_back(n);
    else
        for (const char* n : kDemoMatrices) names.push_back(n);
    for (const auto& name : names) {
        const Matrix<float> W = io::load_npy<float>(dir + "/" + name + ".npy");
        for (double bpw : budgets) {
            AdmmOptions<float> o;
            o.rank = rank_for_bpw(W.rows(), W.cols(), bpw);
            o.iterations = iters;
            o.num_threads = a.threads;
            const auto t0 = std::chrono::steady_clock::now();
            const AdmmResult<float> r = AdmmSolver<float>(o).solve(W);
            r.throw_if_failed();
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            total += s;
            const std::string shape = std::to_string(W.rows()) + "x" + std::to_string(W.cols());
            std::printf("%-22s %11s %7.2f %5lld %7.4f %10.4f %7.2fs", name.c_str(), shape.c_str(), bpw,
                        static_cast<long long>(r.factorization.rank()), r.factorization.bits_per_weight(),
                        r.relative_error, s);
            if (!a.no_gemv) {
                kernels::GemvBenchOptions g;
                g.cold = false;
                g.rounds = 5;
                g.min_round_seconds = 0.01;
                const kernels::GemvComparison c = kernels::compare_gemv(W.rows(), W.cols(), bpw, g);
                const kernels::PathTiming* best = nullptr;
                for (const auto& p : c.paths)
                    if (p.exact && (!best || p.us < best->us)) best = &p;
                if (best) {
                    gemv_path = best->name;
                    std::printf(" %10.2f %10.2f %7.2fx", c.dense_us, best->us, best->speedup);
                }
            }
            std::printf("\n");
            std::fflush(stdout);
        }
    }
    if (!gemv_path.empty())
        std::printf("\nGEMV: one token, 1 thread, weights hot in cache, float32 activations; packed = best kernel "
                    "(%s) vs dense Eigen float32 W*x, same run (a shared machine makes these noisy).",
                    gemv_path.c_str());
    std::printf("\ntotal solve time %.1f s. bpw counts 1 bit per sign and 16 bits per scale; rel_error = "
                "||W - W_hat||_F / ||W||_F.\n",
                total);
    return cli::kSuccess;
}

nanoquant::cli::Registrar reg{"demo", [](CLI::App& app) {
    auto args = std::make_shared<DemoArgs>();
    auto* cmd = app.add_subcommand("demo", "Compress the real matrices shipped with nanoquant at 1.0/0.8/0.55 bpw");
    cmd->add_option("--data-dir", args->data_dir, "Directory holding the use_lite_*.npy matrices");
    cmd->add_option("--iters", args->iters,
                    "ADMM iterations (default " + std::to_string(kDefaultDemoIters) + "; the reference uses 400)");
    cmd->add_option("--threads", args->threads, "Threads (default 0 = all)");
    cmd->add_flag("--all", args->all, "All six matrices instead of three");
    cmd->add_flag("--no-gemv", args->no_gemv, "Skip the GEMV timing");
    return [args]() { return run(*args); };
}};

}  // namespace
