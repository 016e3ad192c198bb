// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <nanoquant/core/bit_budget.hpp>

using namespace nanoquant;

TEST_CASE("reference rank rule reproduces the official ranks", "[core][budget]")
{
    struct Row { Index m, n; double bpw; Index r; };
    // Method digest §4 and the parity table of issue 2.
    const Row rows[] = {
        {4096, 4096, 1.0, 2016},  {4096, 4096, 0.8, 1600},  {4096, 4096, 0.55, 1088},
        {11008, 4096, 1.0, 2944}, {11008, 4096, 0.8, 2368}, {11008, 4096, 0.55, 1600},
        {14336, 4096, 1.0, 3168}, {14336, 4096, 0.8, 2528}, {14336, 4096, 0.55, 1728},
        {8192, 8192, 1.0, 4064},  {1024, 4096, 1.0, 800},   {1024, 4096, 0.8, 608},
        {256, 256, 1.0, 96},      {256, 256, 0.8, 64},      {256, 256, 0.55, 32},
        {1536, 512, 1.0, 352},    {1536, 512, 0.8, 288},    {1536, 512, 0.55, 192},
        {512, 1536, 1.0, 352},
    };
    for (const Row& r : rows) {
        INFO(r.m << "x" << r.n << " @ " << r.bpw);
        REQUIRE(rank_for_bpw(r.m, r.n, r.bpw) == r.r);
    }
    // DBF (three scales) differs where the digest says so.
    REQUIRE(rank_for_bpw(14336, 4096, 1.0, ScaleLayout::ThreeScales) == 3136);
    REQUIRE(rank_for_bpw(28672, 8192, 0.55, ScaleLayout::ThreeScales) == 3456);
    REQUIRE(rank_for_bpw(28672, 8192, 0.55) == 3488);
}

TEST_CASE("fine rank rule spends the budget and round-trips", "[core][budget]")
{
    REQUIRE(rank_for_bpw(256, 256, 1.0, ScaleLayout::TwoScales, RankRule::fine()) == 112);
    REQUIRE(bpw_for_rank(256, 256, 112) == Approx(1.0));
    REQUIRE(bpw_for_rank(256, 256, 96) == Approx(0.875));
    for (Index m : {100, 256, 777})
        for (Index n : {64, 300, 1024})
            for (double bpw : {0.3, 0.55, 0.8, 1.0, 1.7}) {
                const double need = (16.0 * (m + n) + (m + n)) / double(m * n);
                if (bpw < need) continue;
                const Index r = rank_for_bpw(m, n, bpw, ScaleLayout::TwoScales, RankRule::fine());
                INFO(m << "x" << n << " @ " << bpw << " -> r = " << r);
                if (r < std::min(m, n)) {
                    REQUIRE(bpw_for_rank(m, n, r) <= bpw + 1e-12);
                    REQUIRE(bpw_for_rank(m, n, r + 1) > bpw);
                }
            }
}

TEST_CASE("impossible budgets are errors naming the numbers", "[core][budget][errors]")
{
    REQUIRE_THROWS_WITH(rank_for_bpw(4096, 4096, 0.001),
                        Catch::Contains("bpw = 0.001") && Catch::Contains("smallest budget"));
    REQUIRE_THROWS_WITH(rank_for_bpw(4096, 4096, 0.0), Catch::Contains("positive"));
    REQUIRE_THROWS_WITH(rank_for_bpw(4096, 4096, std::nan("")), Catch::Contains("positive"));
    REQUIRE_THROWS_WITH(rank_for_bpw(0, 4096, 1.0), Catch::Contains("0x4096"));
    REQUIRE_THROWS_AS(rank_for_bpw(16, 16, 2.0), invalid_argument);  // 16x16: scales alone need 2 bpw
    REQUIRE(rank_for_bpw(4, 4, 100.0) == 4);                          // capped at min(m, n)
}
