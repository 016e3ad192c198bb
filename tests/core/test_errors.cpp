// SPDX-License-Identifier: Apache-2.0
// The error convention of include/nanoquant/error.hpp: invalid_argument reads
// "nanoquant::<where>: <what>" with the prefix exactly once, whatever the call site passes; the
// facts the CLI needs come from check functions, not from parsing messages.
#include <catch2/catch.hpp>

#include <limits>
#include <regex>
#include <string>

#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/core/checks.hpp>
#include <nanoquant/kernels/dispatch.hpp>
#include <nanoquant/kernels/gemv.hpp>
#include <nanoquant/solvers/admm_solver.hpp>

using namespace nanoquant;

namespace {

/// The message of the invalid_argument `fn` throws ("" if it throws none).
template <typename Fn>
std::string message_of(Fn fn)
{
    try {
        fn();
    } catch (const nanoquant::invalid_argument& e) {
        return e.what();
    }
    return "";
}

/// "nanoquant::" once, then a qualified name, ": " and a non-empty text.
void require_format(const std::string& msg, const std::string& where)
{
    INFO(msg);
    static const std::regex format(R"(^nanoquant::[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*: \S.*$)");
    REQUIRE(std::regex_match(msg, format));
    REQUIRE(msg.rfind("nanoquant::" + where + ": ", 0) == 0);
    REQUIRE(msg.find("nanoquant::nanoquant") == std::string::npos);
}

}  // namespace

TEST_CASE("error messages read nanoquant::where: what with the prefix once", "[core][errors]")
{
    SECTION("the macro, with and without a qualified where")
    {
        require_format(message_of([] { NANOQUANT_CHECK(false, "kernels::gemm", "x is " << 3); }), "kernels::gemm");
        const std::string q = message_of([] { NANOQUANT_CHECK(false, "nanoquant::kernels::gemm", "x is 3"); });
        require_format(q, "kernels::gemm");
        REQUIRE(q == "nanoquant::kernels::gemm: x is 3");
    }
    SECTION("entry points of several areas")
    {
        require_format(message_of([] { rank_for_bpw(4, 4, 0.001); }), "rank_for_bpw");
        require_format(message_of([] { kernels::parse_kernel_target("no-such-kernel"); }),
                       "kernels::parse_kernel_target");
        Factorization<float> f;
        f.s_out = Vector<float>::Ones(8);
        f.s_in = Vector<float>::Ones(6);
        f.u = PackedSignMatrix(8, 2);
        f.vt = PackedSignMatrix(2, 5);  // 5 columns against 6 input scales: invalid
        require_format(message_of([&] { kernels::pack_layer(f); }), "kernels::pack_layer");
        f.vt = PackedSignMatrix(2, 6);
        const kernels::PackedLayer L = kernels::pack_layer(f);
        const std::string gemv_msg = message_of([&] { kernels::gemv(L, Vector<float>::Ones(5), {}); });
        require_format(gemv_msg, "kernels::gemv");
        REQUIRE(gemv_msg.find("x has 5 entries") != std::string::npos);
        require_format(message_of([&] { kernels::gemm(L, Matrix<float>::Ones(4, 2), {}); }), "kernels::gemm");
        AdmmOptions<float> o;
        o.rank = 7;  // more than min(m, n) = 4: reported as solve's, without a catch-and-rewrite
        const std::string solve_msg = message_of([&] { AdmmSolver<float>(o).solve(Matrix<float>::Ones(4, 9)); });
        require_format(solve_msg, "AdmmSolver::solve");
        REQUIRE(solve_msg.find("rank must be in [1, min(m, n)] = [1, 4]") != std::string::npos);
        o.rank = 0;
        require_format(message_of([&] { AdmmSolver<float>{o}; }), "AdmmOptions::validate");
    }
}

TEST_CASE("budget_shortfall is empty exactly when rank_for_bpw succeeds", "[core][errors][budget]")
{
    for (const double bpw : {0.001, 0.01, 0.05, 0.1, 0.126, 0.2, 0.55, 1.0}) {
        for (const Index m : {2, 16, 256}) {
            for (const ScaleLayout layout : {ScaleLayout::TwoScales, ScaleLayout::ThreeScales}) {
                INFO(m << "x" << 2 * m << " at " << bpw);
                const std::string why = budget_shortfall(m, 2 * m, bpw, layout);
                const std::string msg = message_of([&] { rank_for_bpw(m, 2 * m, bpw, layout); });
                if (why.empty()) REQUIRE(msg.empty());
                else REQUIRE(msg == "nanoquant::rank_for_bpw: " + why);
            }
        }
    }
    REQUIRE(budget_shortfall(4096, 4096, 1.0).empty());
    REQUIRE(budget_shortfall(2, 3, 1.0).find("the smallest budget is") != std::string::npos);
}

TEST_CASE("find_non_finite reports what check_finite says", "[core][errors]")
{
    Matrix<double> X = Matrix<double>::Zero(3, 4);
    REQUIRE(find_non_finite(X).count == 0);
    X(2, 1) = std::numeric_limits<double>::infinity();
    X(0, 3) = std::numeric_limits<double>::quiet_NaN();
    const NonFinite r = find_non_finite(X);
    REQUIRE(r.count == 2);
    REQUIRE(r.first_row == 2);
    REQUIRE(r.first_col == 1);
    REQUIRE(r.first_value == std::numeric_limits<double>::infinity());
    REQUIRE(message_of([&] { check_finite(X, "f", "X"); }) == "nanoquant::f: " + r.describe("X"));
    REQUIRE(r.describe("X") == "X has 2 non-finite values (first at row 2, col 1: inf)");
}
