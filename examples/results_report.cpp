// SPDX-License-Identifier: Apache-2.0
// Regenerates every number of docs/results.md (run through scripts/make_results.sh).
//
//   results_report [--out DIR] [--data DIR] [--matrices a,b,...] [--bpw 0.55,0.8,1.0,2.0]
//                  [--recon-bpw 0.55,0.8,1.0,2.0] [--tokens 2048] [--epochs N] [--seed S]
//                  [--iterations 400] [--products auto|dense|packed]
//
// For every real matrix W in tests/data and every target bpw it fits each method at that budget and
// writes DIR/errors.csv with one row per (matrix, method, bpw):
//   weight_err   = ‖W − Ŵ‖_F / ‖W‖_F
//   weighted_err = ‖(W − Ŵ) D_i‖_F / ‖W D_i‖_F, D_i = diag(√i_norm), i_norm from the calibration tokens
//   out_err      = ‖X(W − Ŵ)ᵀ‖_F / ‖X Wᵀ‖_F on the calibration tokens X
//   out_err_test = the same on held-out tokens from the same distribution
// Activations: make_outlier_activations (4 outlier channels 20–100× larger, seed --seed, calibration
// token_seed 1, held-out token_seed 2). All methods get the same i_norm (o_norm = ones: the model
// has no gradients here). Ranks use RankRule::fine() so every method spends the same budget.
// It also writes DIR/convergence.csv (ADMM objective per iteration) and DIR/recon_curve.csv
// (layer reconstruction loss per epoch).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nanoquant/baselines/dbf.hpp>
#include <nanoquant/baselines/residual_binary.hpp>
#include <nanoquant/baselines/svd16.hpp>
#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/io/npy.hpp>
#include <nanoquant/refine/importance.hpp>
#include <nanoquant/refine/layer_reconstruction.hpp>
#include "synthetic.hpp"  // tests/support: synthetic data, not part of the installed library
#include <nanoquant/solvers/admm_solver.hpp>

using namespace nanoquant;

namespace {

std::vector<std::string> split(const std::string& s)
{
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

struct Row {
    std::string matrix, method;
    double target_bpw, bpw, weight_err, weighted_err, out_err, out_err_test;
};

double weighted_err(const Matrix<float>& W, const Matrix<float>& What, const Vector<float>& imp_in)
{
    const Vector<double> s = imp_in.cast<double>().cwiseSqrt();
    return ((W - What).cast<double>() * s.asDiagonal()).norm() / (W.cast<double>() * s.asDiagonal()).norm();
}

const char* const kUsage =
    "usage: results_report [--out DIR] [--data DIR] [--matrices a,b,...] [--bpw 0.55,0.8,1.0,2.0]\n"
    "                      [--recon-bpw 0.55,0.8,1.0,2.0] [--tokens 2048] [--epochs N] [--seed S]\n"
    "                      [--iterations 400] [--products auto|dense|packed]\n";

/// Parses a number, or exits with a message naming the option and the value.
template <typename T>
T number(const std::string& option, const std::string& v, T lo)
{
    std::size_t used = 0;
    double x = 0;
    try {
        x = std::stod(v, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != v.size() || !(x >= double(lo)) || x != x) {
        std::cerr << "results_report: " << option << " needs a number >= " << lo << ", got '" << v << "'\n";
        std::exit(2);
    }
    return T(x);
}

}  // namespace

int main(int argc, char** argv)
{
    std::string out_dir = ".", data_dir = NANOQUANT_DATA_DIR;
    std::vector<std::string> matrices = {"use_lite_L0_attn_q", "use_lite_L1_attn_q", "use_lite_L1_attn_o",
                                         "use_lite_L0_ffn_up", "use_lite_L1_ffn_up", "use_lite_L1_ffn_down"};
    std::vector<double> bpws = {0.55, 0.8, 1.0, 2.0};
    Index tokens = 2048, epochs = LayerReconstructionOptions{}.epochs;
    int iterations = 400;
    std::uint64_t seed = 0;
    std::vector<double> recon_bpws = {0.55, 0.8, 1.0, 2.0};
    SignProducts products = SignProducts::Auto;
    for (int i = 1; i < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--help" || k == "-h") {
            std::cout << kUsage;
            return 0;
        }
        static const char* const known[] = {"--out", "--data", "--matrices", "--bpw", "--recon-bpw", "--tokens",
                                            "--epochs", "--seed", "--iterations", "--products"};
        if (std::find(std::begin(known), std::end(known), k) == std::end(known)) {
            std::cerr << "results_report: unknown option " << k << "\n" << kUsage;
            return 2;
        }
        if (i + 1 >= argc) {
            std::cerr << "results_report: option " << k << " needs a value\n" << kUsage;
            return 2;
        }
        const std::string v = argv[i + 1];
        if (k == "--out") out_dir = v;
        else if (k == "--data") data_dir = v;
        else if (k == "--matrices") matrices = split(v);
        else if (k == "--bpw") { bpws.clear(); for (auto& b : split(v)) bpws.push_back(number<double>(k, b, 0.0)); }
        else if (k == "--recon-bpw") { recon_bpws.clear(); for (auto& b : split(v)) recon_bpws.push_back(number<double>(k, b, 0.0)); }
        else if (k == "--tokens") tokens = number<Index>(k, v, 1);
        else if (k == "--epochs") epochs = number<Index>(k, v, 0);
        else if (k == "--iterations") iterations = number<int>(k, v, 0);
        else if (k == "--seed") {
            if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) {
                std::cerr << "results_report: --seed needs a non-negative integer below 10^19, got '" << v << "'\n";
                return 2;
            }
            seed = std::stoull(v);
        }
        else if (k == "--products") {
            if (v == "auto") products = SignProducts::Auto;
            else if (v == "dense") products = SignProducts::Dense;
            else if (v == "packed") products = SignProducts::Packed;
            else { std::cerr << "results_report: --products must be auto, dense or packed, got '" << v << "'\n"; return 2; }
        }
        else { std::cerr << "results_report: unknown option " << k << "\n" << kUsage; return 2; }
    }
    std::vector<Row> rows;
    std::ofstream conv(out_dir + "/convergence.csv"), curve(out_dir + "/recon_curve.csv");
    conv << "matrix,target_bpw,iteration,objective\n";
    curve << "matrix,target_bpw,epoch,out_err\n";
    for (const auto& name : matrices) {
        const Matrix<float> W = io::load_npy<float>(data_dir + "/" + name + ".npy");
        const Index m = W.rows(), n = W.cols();
        const auto cal = make_synthetic_calibration<float>(W, tokens, seed);
        const Matrix<float>& X = cal.X;
        const Matrix<float>& Xt = cal.X_heldout;
        const Vector<float>& i_norm = cal.i_norm;
        const Vector<float>& o_norm = cal.o_norm;
        const Matrix<float>& Y = cal.Y;
        auto add = [&](const std::string& method, double target, double bpw, const Matrix<float>& What) {
            rows.push_back({name, method, target, bpw, double((W - What).norm() / W.norm()), weighted_err(W, What, i_norm),
                            output_relative_error<float>(W, What, X), output_relative_error<float>(W, What, Xt)});
            const Row& r = rows.back();
            std::fprintf(stderr, "%-22s %-14s %.2f bpw=%.3f w=%.4f wi=%.4f out=%.4f test=%.4f\n", name.c_str(),
                         method.c_str(), target, bpw, r.weight_err, r.weighted_err, r.out_err, r.out_err_test);
        };
        for (double bpw : bpws) {
            // NanoQuant ADMM, reference two-scale export.
            AdmmOptions<float> o2;
            o2.rank = rank_for_bpw(m, n, bpw, ScaleLayout::TwoScales, RankRule::fine());
            o2.iterations = iterations;
            o2.seed = seed;
            o2.trace_every = 1;
            o2.sign_products = products;
            const auto r2 = AdmmSolver<float>(o2).solve(W, i_norm, o_norm);
            r2.throw_if_failed();
            add("admm-2scale", bpw, r2.factorization.bits_per_weight(), r2.factorization.reconstruct());
            for (const auto& t : r2.trace) conv << name << "," << bpw << "," << t.iteration << "," << t.objective << "\n";
            // Three-scale export + scale refit (the initialization layer reconstruction starts from).
            AdmmOptions<float> o3 = o2;
            o3.rank = rank_for_bpw(m, n, bpw, ScaleLayout::ThreeScales, RankRule::fine());
            o3.export_mode = ExportMode::ThreeScale;
            o3.refit_scales = true;
            o3.keep_latents = true;
            o3.trace_every = 0;
            const auto r3 = AdmmSolver<float>(o3).solve(W, i_norm, o_norm);
            r3.throw_if_failed();
            add("admm-3scale", bpw, r3.factorization.bits_per_weight(), r3.factorization.reconstruct());
            // Layer reconstruction from the three-scale init.
            bool do_recon = false;
            for (double b : recon_bpws) do_recon = do_recon || std::abs(b - bpw) < 1e-9;
            if (do_recon) {
                LayerReconstructionOptions lo;
                lo.epochs = epochs;
                lo.seed = seed;
                const auto start = make_layer_params<float>(r3.factorization, W, &r3.u_latent, &r3.vt_latent);
                const auto rec = reconstruct_layer<float>(start, X, Y, lo);
                add("admm-3scale+recon", bpw, rec.factorization.bits_per_weight(), rec.factorization.reconstruct());
                curve << name << "," << bpw << ",0," << rec.rel_error_before() << "\n";
                for (std::size_t e = 0; e < rec.epoch_loss.size(); ++e)
                    curve << name << "," << bpw << "," << e + 1 << "," << std::sqrt(rec.epoch_loss[e]) << "\n";
                curve << name << "," << bpw << ",final," << rec.rel_error_after() << "\n";
            }
            // DBF ADMM variant (three scales).
            DbfOptions<float> dopt;
            dopt.rank = o3.rank;
            dopt.iterations = iterations;
            dopt.seed = seed;
            const auto dbf = dbf_factorize<float>(W, dopt, i_norm, o_norm);
            add("dbf", bpw, dbf.factorization.bits_per_weight(), dbf.factorization.reconstruct());
            // 16-bit truncated SVD at the same bits.
            const auto sv = svd16<float>(W, svd16_rank_for_bpw(m, n, bpw), i_norm, o_norm);
            add("svd16", bpw, sv.bits_per_weight(), sv.reconstruct());
            // Full-size sign paths: K = round(bpw) paths where that is >= 1 bit.
            const Index K = static_cast<Index>(std::floor(bpw + 1e-9));
            if (K >= 1) {
                ResidualBinaryOptions ro;
                ro.paths = K;
                const auto rb = residual_binarize<float>(W, ro, i_norm, o_norm);
                add(K == 1 ? "sign" : "residual-" + std::to_string(K), bpw, rb.bits_per_weight(), rb.reconstruct());
            }
        }
    }
    std::ofstream csv(out_dir + "/errors.csv");
    csv << "matrix,method,target_bpw,bpw,weight_err,weighted_err,out_err,out_err_test\n";
    for (const auto& r : rows)
        csv << r.matrix << "," << r.method << "," << r.target_bpw << "," << r.bpw << "," << r.weight_err << ","
            << r.weighted_err << "," << r.out_err << "," << r.out_err_test << "\n";
    return 0;
}
