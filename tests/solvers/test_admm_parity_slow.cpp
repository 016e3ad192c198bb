// SPDX-License-Identifier: Apache-2.0
// Parity with the official implementation on the real matrices of tests/data (issue 2): identity
// importance, 400 iterations, linear schedule, reference rank rule, two-scale export, within
// +0.01 of the official rel_error (lower is allowed); and the three-scale export with scale refit
// strictly below the two-scale export on every matrix and budget. Labelled `slow`.
#include <catch2/catch.hpp>

#include <string>

#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/io/npy.hpp>
#include <nanoquant/solvers/admm_solver.hpp>

using namespace nanoquant;

namespace {
struct Case {
    const char* name;
    double bpw;
    Index rank;       // the reference rule's rank, as listed in the issue
    double official;  // official rel_error
};
}  // namespace

TEST_CASE("parity with the official rel_error on real matrices", "[solvers][parity][slow]")
{
    const Case cases[] = {
        {"use_lite_L0_attn_q", 1.0, 96, 0.5914},    {"use_lite_L0_attn_q", 0.8, 64, 0.6925},
        {"use_lite_L0_attn_q", 0.55, 32, 0.8172},   {"use_lite_L0_ffn_up", 1.0, 352, 0.4999},
        {"use_lite_L0_ffn_up", 0.8, 288, 0.5589},   {"use_lite_L0_ffn_up", 0.55, 192, 0.6653},
        {"use_lite_L1_ffn_down", 1.0, 352, 0.4927}, {"use_lite_L1_ffn_down", 0.8, 288, 0.5483},
        {"use_lite_L1_ffn_down", 0.55, 192, 0.6513},
    };
    for (const Case& c : cases) {
        const Matrix<float> W = io::load_npy<float>(std::string(NANOQUANT_DATA_DIR) + "/" + c.name + ".npy");
        const Index rank = rank_for_bpw(W.rows(), W.cols(), c.bpw, ScaleLayout::TwoScales, RankRule::reference());
        REQUIRE(rank == c.rank);
        AdmmOptions<float> o;  // defaults: 400 iterations, linear schedule, two-scale, seed 0
        o.rank = rank;
        const auto two = AdmmSolver<float>(o).solve(W);
        o.export_mode = ExportMode::ThreeScale;
        o.refit_scales = true;
        const auto three = AdmmSolver<float>(o).solve(W);
        INFO(c.name << " bpw " << c.bpw << " rank " << rank << ": two-scale " << two.relative_error << " (official "
                    << c.official << "), three-scale+refit " << three.relative_error);
        CHECK(two.ok());
        CHECK(two.iterations == 400);
        CHECK(two.relative_error <= c.official + 0.01);
        CHECK(three.relative_error < two.relative_error);
        WARN(c.name << " bpw " << c.bpw << " rank " << rank << ": two-scale " << two.relative_error << " (official "
                    << c.official << "), three-scale+refit " << three.relative_error << ", "
                    << two.seconds << " s");
    }
}
