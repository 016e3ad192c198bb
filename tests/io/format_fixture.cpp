// SPDX-License-Identifier: Apache-2.0
// Writes OUTDIR/layers.safetensors (several factorized layers) and, for each layer NAME,
// OUTDIR/NAME.expected.npy = float32(Factorization<double>::reconstruct()) of the layer as loaded
// back by nanoquant. tests/io/check_format_snippet.py runs the numpy snippet from docs/format.md
// on the same file and requires identical float32 bits.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <nanoquant/detail/random.hpp>
#include <nanoquant/io/factorized_file.hpp>
#include <nanoquant/io/npy.hpp>

using namespace nanoquant;

static Factorization<float> random_factorization(Index m, Index n, Index r, bool mid, std::uint64_t seed)
{
    detail::Rng rng(seed);
    Matrix<float> U(m, r), Vt(r, n);
    for (Index j = 0; j < r; ++j)
        for (Index i = 0; i < m; ++i) U(i, j) = rng.uniform() < 0.5 ? -1.0f : 1.0f;
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < r; ++i) Vt(i, j) = rng.uniform() < 0.5 ? -1.0f : 1.0f;
    Factorization<float> f;
    f.u = PackedSignMatrix::pack(U);
    f.vt = PackedSignMatrix::pack(Vt);
    auto scales = [&](Index k, double lo, double hi) {
        Vector<float> s(k);
        for (Index i = 0; i < k; ++i) s(i) = static_cast<float>(lo + (hi - lo) * rng.uniform());
        return s;
    };
    f.s_out = scales(m, 1e-3, 0.2);
    f.s_in = scales(n, 0.3, 3.0);
    if (mid) f.s_mid = scales(r, 0.01, 40.0);
    return f;
}

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    try {
        const std::string dir = argv[1];
        const std::string a = dir + "/layers.safetensors", b = dir + "/layers_f32.safetensors";
        std::vector<io::FactorizedLayer<float>> layers = {
            {"two", random_factorization(37, 53, 13, false, 1), {{"rel_error", 0.5}}},
            {"model.layers.0.mlp.up_proj.weight", random_factorization(64, 40, 24, true, 2), {}},
            {"wide", random_factorization(9, 200, 9, true, 3), {}},
        };
        io::save_factorized(a, layers);
        std::vector<io::FactorizedLayer<float>> f32 = {{"two_f32", random_factorization(30, 17, 16, false, 4), {}}};
        io::save_factorized(b, f32, io::StDType::F32);
        for (const std::string& path : {a, b})
            for (const auto& l : io::load_factorized<double>(path))
                io::save_npy(dir + "/" + l.name + ".expected.npy", l.f.reconstruct().cast<float>());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "format_fixture: %s\n", e.what());
        return 1;
    }
    return 0;
}
