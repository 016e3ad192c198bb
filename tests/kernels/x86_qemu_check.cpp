// SPDX-License-Identifier: Apache-2.0
// Run by ctest under qemu-x86_64 with an older CPU model (kernels.x86_qemu_*): on a CPU without
// AVX-512 the dispatcher must pick the variant named in argv[1] (avx2 on Haswell, scalar on
// Nehalem), and that variant, running there, must give the scalar reference's int8 results bit for
// bit and its float results to float rounding, with 1 and 2 threads, over several row chunks and
// column-word windows. Built with plain flags (no -march), so any instruction the CPU lacks in a
// path that runs there is an illegal-instruction failure. No Catch2 (the host ABI is the same, but
// the test must stay small under emulation). Exit code 0 = pass.
#include <cstdio>
#include <cstring>
#include <string>

#include <nanoquant/kernels/gemv.hpp>

#include "kernel_test_util.hpp"

using namespace nanoquant;
using namespace nanoquant::kernels;

int main(int argc, char** argv)
{
    const std::string want = argc > 1 ? argv[1] : "avx2";
    if (want != kernel_target_name()) {
        std::printf("FAIL: active variant %s, expected %s on this CPU\n", kernel_target_name(), want.c_str());
        return 1;
    }
    int failures = 0;
    // 2100 and 4097 rows: several row chunks of every one-stream kernel; 1031 and 600 columns: several
    // int16 fold windows; the small shapes: tails.
    const Index shapes[][3] = {{1, 1, 1}, {17, 33, 5}, {300, 1031, 129}, {2100, 600, 301}, {4097, 520, 64}};
    std::uint64_t seed = 5;
    for (const auto& sh : shapes) {
        const auto f = nqtest::random_factorization(sh[0], sh[1], sh[2], true, ++seed);
        const PackedLayer L = pack_layer(f);
        const Matrix<float> X = nqtest::random_matrix(sh[1], 7, ++seed);
        for (Precision p : {Precision::Float32, Precision::Int8}) {
            GemvOptions opt, ref;
            opt.precision = ref.precision = p;
            ref.kernels = &kernel_table(KernelTarget::Scalar);
            const Matrix<float> B = gemm(L, X, ref);
            for (int threads : {1, 2}) {
                opt.num_threads = threads;
                const Matrix<float> A = gemm(L, X, opt);
                const Vector<float> a3 = gemv(L, Vector<float>(X.col(3)), opt);
                const double err = (A - B).norm() / (B.norm() + 1e-30);
                const bool ok = p == Precision::Int8
                                    ? std::memcmp(A.data(), B.data(), sizeof(float) * std::size_t(A.size())) == 0 &&
                                          std::memcmp(a3.data(), B.col(3).data(), sizeof(float) * std::size_t(sh[0])) == 0
                                    : err < 1e-5;
                if (!ok) {
                    std::printf("FAIL: %ldx%ld r%ld %s, %d thread(s): rel. difference from scalar %.3g\n", long(sh[0]),
                                long(sh[1]), long(sh[2]), p == Precision::Int8 ? "int8" : "f32", threads, err);
                    ++failures;
                }
            }
        }
    }
    std::printf("%s: %s variant vs scalar on %zu shapes, %d failure(s)\n", failures ? "FAIL" : "PASS",
                kernel_target_name(), sizeof shapes / sizeof shapes[0], failures);
    return failures ? 1 : 0;
}
