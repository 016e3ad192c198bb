// SPDX-License-Identifier: Apache-2.0
// Built with aarch64-linux-gnu-g++ and run under qemu-aarch64 by ctest (kernels.neon_qemu): the NEON
// variant against the scalar reference on edge shapes. Float: lookup tables, another summation order,
// so within 1e-5 (relative, norm-wise) of the scalar reference and of the dense product; int8: exact.
// Exit code 0 = pass. No Catch2 (the test runs on a foreign ABI).
#include <cstdio>
#include <cstring>

#include <nanoquant/kernels/gemv.hpp>

#include "kernel_test_util.hpp"

using namespace nanoquant;
using namespace nanoquant::kernels;

int main()
{
    if (!target_supported(KernelTarget::Neon) || std::string(kernel_target_name()) != "neon") {
        std::printf("FAIL: the NEON variant is not the active one (active: %s)\n", kernel_target_name());
        return 1;
    }
    int failures = 0;
    const Index dims[] = {1, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 131};
    std::uint64_t seed = 1;
    for (Index s = 0; s < Index(sizeof dims / sizeof dims[0]); ++s) {
        const Index m = dims[s], n = dims[(s * 7 + 3) % 15], r = dims[(s * 3 + 5) % 15];
        const auto f = nqtest::random_factorization(m, n, r, s % 2 == 0, ++seed);
        const PackedLayer L = pack_layer(f);
        const Matrix<float> X = nqtest::random_matrix(n, 5, ++seed);
        for (Precision p : {Precision::Float32, Precision::Int8}) {
            GemvOptions neon, ref;
            neon.precision = ref.precision = p;
            neon.kernels = &kernel_table(KernelTarget::Neon);
            ref.kernels = &kernel_table(KernelTarget::Scalar);
            const Matrix<float> A = gemm(L, X, neon), B = gemm(L, X, ref);
            const Vector<float> a1 = gemv(L, Vector<float>(X.col(0)), neon);
            bool same;
            if (p == Precision::Int8) {
                same = std::memcmp(A.data(), B.data(), sizeof(float) * std::size_t(A.size())) == 0 &&
                       std::memcmp(a1.data(), B.data(), sizeof(float) * std::size_t(m)) == 0;
            } else {
                const double bn = B.cast<double>().norm() + 1e-30;
                same = (A - B).cast<double>().norm() / bn < 1e-5 &&
                       (a1 - B.col(0)).cast<double>().norm() / (B.col(0).cast<double>().norm() + 1e-30) < 1e-5;
            }
            // The float path must also agree with the dense product (relative to the term magnitudes).
            const Matrix<double> D = f.reconstruct().cast<double>() * X.cast<double>();
            const double err = (A.cast<double>() - D).norm() / (D.norm() + 1e-30);
            const bool close = p == Precision::Int8 || err < 1e-5;
            if (!same || !close) {
                std::printf("FAIL: %ldx%ld r%ld %s: same-as-scalar %d, rel err vs dense %.3g\n", long(m), long(n),
                            long(r), p == Precision::Float32 ? "f32" : "int8", int(same), err);
                ++failures;
            }
        }
    }
    // Int8 over several row chunks (128 row blocks = 2048 rows) and int16 fold windows (8 column words
    // = 256 columns): bit-exact against the scalar reference, GEMV and a batch; float over the same
    // chunks against the dense product.
    {
        const Index m = 2100, n = 600, r = 301;
        const auto f = nqtest::random_factorization(m, n, r, true, 4242);
        const PackedLayer L = pack_layer(f);
        const Matrix<float> X = nqtest::random_matrix(n, 3, 4343);
        GemvOptions neon, ref;
        neon.precision = ref.precision = Precision::Int8;
        neon.kernels = &kernel_table(KernelTarget::Neon);
        ref.kernels = &kernel_table(KernelTarget::Scalar);
        const Matrix<float> A = gemm(L, X, neon), B = gemm(L, X, ref);
        const Vector<float> a1 = gemv(L, Vector<float>(X.col(2)), neon);
        if (std::memcmp(A.data(), B.data(), sizeof(float) * std::size_t(A.size())) != 0 ||
            std::memcmp(a1.data(), B.col(2).data(), sizeof(float) * std::size_t(m)) != 0) {
            std::printf("FAIL: %ldx%ld r%ld int8 (several chunks and fold windows) differs from scalar\n", long(m),
                        long(n), long(r));
            ++failures;
        }
        // The float GEMV over the same chunks (128 row blocks), against the dense product.
        neon.precision = ref.precision = Precision::Float32;
        const Matrix<float> F = gemm(L, X, neon);
        const Matrix<double> D = f.reconstruct().cast<double>() * X.cast<double>();
        const double err = (F.cast<double>() - D).norm() / (D.norm() + 1e-30);
        if (!(err < 1e-5)) {
            std::printf("FAIL: %ldx%ld r%ld f32 (several chunks): rel err vs dense %.3g\n", long(m), long(n), long(r),
                        err);
            ++failures;
        }
    }
    std::printf("%s: NEON vs scalar on %zu shapes and one large shape, %d failure(s)\n",
                failures ? "FAIL" : "PASS", sizeof dims / sizeof dims[0], failures);
    return failures ? 1 : 0;
}
