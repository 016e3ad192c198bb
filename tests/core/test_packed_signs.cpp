// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <nanoquant/core/packed_signs.hpp>
#include <nanoquant/detail/random.hpp>

using nanoquant::Index;
using nanoquant::PackedSignMatrix;

namespace {
Eigen::MatrixXd random_pm(Index r, Index c, std::uint64_t seed)
{
    nanoquant::detail::Rng rng(seed);
    Eigen::MatrixXd X(r, c);
    for (Index j = 0; j < c; ++j)
        for (Index i = 0; i < r; ++i) X(i, j) = rng.normal();
    return X;
}
}  // namespace

TEST_CASE("pack/unpack round trip is exact for every shape", "[core][pack]")
{
    for (Index rows : {0, 1, 2, 7, 63, 64, 65})
        for (Index cols : {0, 1, 31, 63, 64, 65, 127, 128, 129, 200}) {
            INFO("shape " << rows << "x" << cols);
            const Eigen::MatrixXd X = random_pm(rows, cols, 17 + rows * 1000 + cols);
            const PackedSignMatrix P = PackedSignMatrix::pack(X);
            REQUIRE(P.rows() == rows);
            REQUIRE(P.cols() == cols);
            REQUIRE(P.words_per_row() == (cols + 63) / 64);
            const Eigen::MatrixXd S = P.unpack<double>();
            REQUIRE(S == X.unaryExpr([](double v) { return v < 0 ? -1.0 : 1.0; }));
            REQUIRE(PackedSignMatrix::pack(S) == P);
            // Padding bits stay clear (+1), so equal matrices have equal words.
            if (cols % 64 != 0)
                for (Index i = 0; i < rows; ++i)
                    REQUIRE((P.row_data(i)[P.words_per_row() - 1] >> (cols % 64)) == 0u);
        }
}

TEST_CASE("bit layout: LSB first and set bit = -1 and sign(0) = +1", "[core][pack]")
{
    Eigen::MatrixXf X(2, 70);
    X.setOnes();
    X(0, 0) = -1.0f;
    X(0, 3) = -2.5f;
    X(0, 65) = -0.1f;
    X(1, 1) = 0.0f;
    X(1, 2) = -0.0f;
    const PackedSignMatrix P = PackedSignMatrix::pack(X);
    REQUIRE(P.row_data(0)[0] == 0b1001u);
    REQUIRE(P.row_data(0)[1] == 0b10u);
    REQUIRE(P.row_data(1)[0] == 0u);
    REQUIRE(P.row_data(1)[1] == 0u);
    // Byte view equals the word view on little-endian targets.
    const auto* bytes = reinterpret_cast<const unsigned char*>(P.row_data(0));
    REQUIRE(bytes[0] == 0x09);
    REQUIRE(bytes[8] == 0x02);
    REQUIRE(P.count_negative() == 3);
    REQUIRE(P.packed_bytes() == 2u * 9u);
}

TEST_CASE("transpose and set_sign agree with dense", "[core][pack]")
{
    const Eigen::MatrixXd X = random_pm(37, 130, 5);
    PackedSignMatrix P = PackedSignMatrix::pack(X);
    REQUIRE(P.transposed().unpack<double>() == P.unpack<double>().transpose());
    REQUIRE(P.transposed().transposed() == P);
    P.set_sign(3, 129, -1);
    P.set_sign(4, 0, +1);
    REQUIRE(P.sign(3, 129) == -1);
    REQUIRE(P.sign(4, 0) == 1);
}

TEST_CASE("pack rejects NaN and names the position", "[core][pack][errors]")
{
    Eigen::MatrixXf X = Eigen::MatrixXf::Ones(3, 3);
    X(2, 1) = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_WITH(PackedSignMatrix::pack(X), Catch::Contains("X(2, 1) is NaN"));
    REQUIRE_THROWS_AS(PackedSignMatrix(-1, 3), nanoquant::invalid_argument);
}
