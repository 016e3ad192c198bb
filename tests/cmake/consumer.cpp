// SPDX-License-Identifier: Apache-2.0
// A downstream project's first program: pack signs, build a factorization, apply it.
#include <nanoquant/nanoquant.hpp>

#include <cstdio>

int main()
{
    Eigen::MatrixXf W = Eigen::MatrixXf::Random(8, 5);
    nanoquant::Factorization<float> f;
    f.u = nanoquant::PackedSignMatrix::pack(W.leftCols(2));
    f.vt = nanoquant::PackedSignMatrix::pack(W.topRows(2));
    f.s_out = Eigen::VectorXf::Ones(8);
    f.s_in = Eigen::VectorXf::Ones(5);
    const Eigen::MatrixXf What = f.reconstruct();
    const Eigen::MatrixXf y = f.apply(Eigen::MatrixXf::Ones(5, 1));
    const bool ok = (What * Eigen::VectorXf::Ones(5) - y).norm() < 1e-4f;
    std::printf("nanoquant %s consumer: %s\n", NANOQUANT_VERSION_STRING, ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
}
