// SPDX-License-Identifier: Apache-2.0
// From a weight matrix to a fast factorized layer, the shortest path through the library:
//   1. load W (out × in, float32 .npy), 2. factorize it with the NanoQuant ADMM solver at a bit
//   budget, 3. pack the factorization for inference, 4. apply it to a vector with the float32 and the
//   int8 kernels, checked against the dense products and timed against a dense Eigen GEMV.
//
//   compress_and_run [W.npy] [bpw] [iterations]
//
// Defaults: tests/data/use_lite_L1_ffn_up.npy, 1.0 bpw, 200 ADMM iterations. A real layer of a
// model is 10-100× larger; `nanoquant bench-gemv` times the kernels at such sizes.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/detail/random.hpp>
#include <nanoquant/io/npy.hpp>
#include <nanoquant/kernels/gemv.hpp>
#include <nanoquant/solvers/admm_solver.hpp>

namespace {
/// Median wall time of `calls` calls of f, in microseconds.
template <typename F>
double median_us(F&& f, int calls = 201)
{
    std::vector<double> t;
    for (int i = 0; i < calls; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::nth_element(t.begin(), t.begin() + calls / 2, t.end());
    return t[std::size_t(calls / 2)];
}
}  // namespace

int main(int argc, char** argv)
{
    using namespace nanoquant;
    try {
        const std::string path = argc > 1 ? argv[1] : std::string(NANOQUANT_DATA_DIR) + "/use_lite_L1_ffn_up.npy";
        const double bpw = argc > 2 ? std::atof(argv[2]) : 1.0;
        const int iterations = argc > 3 ? std::atoi(argv[3]) : 200;

        // 1-2. Load and factorize: Ŵ = diag(s_out) · U · Vᵀ · diag(s_in), U, V ∈ {±1}.
        const Matrix<float> W = io::load_npy<float>(path);
        AdmmOptions<float> opts;
        opts.rank = rank_for_bpw(W.rows(), W.cols(), bpw);
        opts.iterations = iterations;
        const AdmmResult<float> res = AdmmSolver<float>(opts).solve(W);
        res.throw_if_failed();
        const Factorization<float>& f = res.factorization;
        std::cout << path << ": " << W.rows() << " x " << W.cols() << ", rank " << f.rank() << ", "
                  << f.bits_per_weight() << " bits per weight, ||W - What|| / ||W|| = " << res.relative_error << "\n";

        // 3. Pack for the kernels (docs/packed_format.md).
        const kernels::PackedLayer L = kernels::pack_layer(f);

        // 4. y = What x with both kernel paths, against the dense products.
        detail::Rng rng(1);
        Vector<float> x(W.cols());
        for (Index j = 0; j < x.size(); ++j) x[j] = float(rng.normal());
        const Vector<double> y_hat = f.reconstruct().cast<double>() * x.cast<double>();  // What x, double
        const Vector<double> y_dense = W.cast<double>() * x.cast<double>();              // W x
        kernels::GemvOptions opt;  // 1 thread, float32, the best variant for this CPU
        std::cout << "kernel variant: " << kernels::kernel_target_name() << "\n";
        for (kernels::Precision p : {kernels::Precision::Float32, kernels::Precision::Int8}) {
            opt.precision = p;
            const Vector<float> y = kernels::gemv(L, x, opt);
            const double err_hat = (y.cast<double>() - y_hat).norm() / y_hat.norm();
            const double err_w = (y.cast<double>() - y_dense).norm() / y_dense.norm();
            Vector<float> out(W.rows());
            const double us = median_us([&] { kernels::gemv(L, x.data(), out.data(), opt); });
            std::cout << (p == kernels::Precision::Float32 ? "float32" : "int8   ") << " path: " << us
                      << " us per call, error vs What x " << err_hat << ", vs W x " << err_w << "\n";
        }
        Vector<float> yd(W.rows());
        const double dense_us = median_us([&] { yd.noalias() = W * x; });
        std::cout << "dense Eigen W x: " << dense_us << " us per call (float32, same thread)\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "compress_and_run: " << e.what() << "\n";
        return 1;
    }
}
