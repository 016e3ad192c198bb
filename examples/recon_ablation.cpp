// SPDX-License-Identifier: Apache-2.0
// Output-error reduction of layer reconstruction against its ADMM initialization, for option
// variants (the numbers of the "Layer reconstruction" findings in docs/results.md):
//
//   recon_ablation MATRIX BPW [--iterations 100] [--tokens 2048] [--seed 0] VARIANT...
//
// MATRIX is a name in tests/data (without .npy), VARIANT a comma-separated list of
// LayerReconstructionOptions overrides, "default" for none:
//   e=epochs  lr=lr_latent  ls=lr_scale  b=batch_size  r=polish_rounds  v=polish_v_sweeps  rf=refit_rounds
// e.g. `recon_ablation use_lite_L0_attn_q 0.55 e=10,lr=0.02,v=0 default` compares the previous
// defaults with the current ones. Setup as examples/results_report.cpp: make_outlier_activations
// (seed --seed, calibration token_seed 1, held-out token_seed 2), i_norm from the calibration tokens,
// three-scale ADMM export + scale refit at rank_for_bpw(..., RankRule::fine()). For each variant it
// prints the output error ‖X(W − Ŵ)ᵀ‖/‖XWᵀ‖ on the calibration and held-out tokens and its change.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/io/npy.hpp>
#include <nanoquant/refine/importance.hpp>
#include <nanoquant/refine/layer_reconstruction.hpp>
#include "synthetic.hpp"  // tests/support: synthetic data, not part of the installed library
#include <nanoquant/solvers/admm_solver.hpp>

using namespace nanoquant;

namespace {

// Applies "k=v,k=v" to o; returns false (after a message) on an unknown key.
bool apply_variant(const std::string& spec, LayerReconstructionOptions& o)
{
    if (spec == "default") return true;
    std::size_t pos = 0;
    while (pos < spec.size()) {
        std::size_t end = spec.find(',', pos);
        if (end == std::string::npos) end = spec.size();
        const std::string kv = spec.substr(pos, end - pos);
        const std::size_t eq = kv.find('=');
        const std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
        if (k == "e") o.epochs = std::atol(v.c_str());
        else if (k == "lr") o.lr_latent = std::atof(v.c_str());
        else if (k == "ls") o.lr_scale = std::atof(v.c_str());
        else if (k == "b") o.batch_size = std::atol(v.c_str());
        else if (k == "r") o.polish_rounds = std::atoi(v.c_str());
        else if (k == "v") o.polish_v_sweeps = std::atoi(v.c_str());
        else if (k == "rf") o.refit_rounds = std::atoi(v.c_str());
        else {
            std::fprintf(stderr, "recon_ablation: unknown variant key '%s' in '%s'\n", k.c_str(), spec.c_str());
            return false;
        }
        pos = end + 1;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc < 4) {
        std::fprintf(stderr, "usage: recon_ablation MATRIX BPW [--iterations N] [--tokens T] [--seed S] VARIANT...\n");
        return 2;
    }
    const std::string name = argv[1];
    const double bpw = std::atof(argv[2]);
    int iterations = 100;
    Index tokens = 2048;
    std::uint64_t seed = 0;
    int a = 3;
    for (; a + 1 < argc && std::string(argv[a]).rfind("--", 0) == 0; a += 2) {
        const std::string k = argv[a], v = argv[a + 1];
        if (k == "--iterations") iterations = std::atoi(v.c_str());
        else if (k == "--tokens") tokens = std::atol(v.c_str());
        else if (k == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
        else {
            std::fprintf(stderr, "recon_ablation: unknown option %s\n", k.c_str());
            return 2;
        }
    }
    try {
        const Matrix<float> W = io::load_npy<float>(std::string(NANOQUANT_DATA_DIR) + "/" + name + ".npy");
        const Index m = W.rows(), n = W.cols();
        const auto cal = make_synthetic_calibration<float>(W, tokens, seed);
        const Matrix<float>& X = cal.X;
        const Matrix<float>& Xt = cal.X_heldout;
        const Vector<float>& i_norm = cal.i_norm;
        const Vector<float>& o_norm = cal.o_norm;
        const Matrix<float>& Y = cal.Y;
        AdmmOptions<float> o;
        o.rank = rank_for_bpw(m, n, bpw, ScaleLayout::ThreeScales, RankRule::fine());
        o.iterations = iterations;
        o.seed = seed;
        o.export_mode = ExportMode::ThreeScale;
        o.refit_scales = true;
        o.keep_latents = true;
        const auto init = AdmmSolver<float>(o).solve(W, i_norm, o_norm);
        init.throw_if_failed();
        const Matrix<float> W0 = init.factorization.reconstruct();
        const double e0 = output_relative_error<float>(W, W0, X), t0 = output_relative_error<float>(W, W0, Xt);
        std::printf("%s %.2f bpw rank %ld: ADMM init out_err %.4f, held-out %.4f\n", name.c_str(), bpw, long(o.rank),
                    e0, t0);
        std::fflush(stdout);
        const auto start = make_layer_params<float>(init.factorization, W, &init.u_latent, &init.vt_latent);
        for (; a < argc; ++a) {
            LayerReconstructionOptions lo;
            lo.seed = seed;
            if (!apply_variant(argv[a], lo)) return 2;
            const auto rec = reconstruct_layer<float>(start, X, Y, lo);
            const Matrix<float> W1 = rec.factorization.reconstruct();
            const double e1 = output_relative_error<float>(W, W1, X), t1 = output_relative_error<float>(W, W1, Xt);
            std::printf("%s %.2f %-22s out_err %.4f (%+.1f %%)  held-out %.4f (%+.1f %%)  best epoch %ld, "
                        "polish flips %ld, %.1f s\n",
                        name.c_str(), bpw, argv[a], e1, 100 * (e1 / e0 - 1), t1, 100 * (t1 / t0 - 1),
                        long(rec.best_epoch), long(rec.polish_flips), rec.seconds);
            std::fflush(stdout);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "recon_ablation: %s\n", e.what());
        return 1;
    }
    return 0;
}
