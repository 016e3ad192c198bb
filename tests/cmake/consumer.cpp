// SPDX-License-Identifier: Apache-2.0
// A downstream project's first program: pack signs, build a factorization, apply it, and store a
// tensor in a safetensors file. It links nanoquant::nanoquant only, so it builds with exactly what
// the package brings in (Eigen, OpenMP, nlohmann-json for io/).
#include <nanoquant/io/safetensors.hpp>
#include <nanoquant/nanoquant.hpp>

#include <cstdio>
#include <string>

#include <unistd.h>

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
    bool ok = (What * Eigen::VectorXf::Ones(5) - y).norm() < 1e-4f;

    // safetensors round trip (row-major bytes, read back as a column-major matrix).
    const std::string path = "/tmp/nq_consumer_" + std::to_string(::getpid()) + ".safetensors";
    const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> R = W;
    nanoquant::io::SafetensorsWriter w;
    w.add_floats("W", nanoquant::io::StDType::F32, {8, 5}, R.data(), std::size_t(R.size()));
    w.write(path);
    {
        const nanoquant::io::SafetensorsFile file(path);
        ok = ok && file.read_matrix<float>("W") == W;
    }
    std::remove(path.c_str());
    std::printf("nanoquant %s consumer: %s\n", NANOQUANT_VERSION_STRING, ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
}
