// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <limits>
#include <vector>

#include <nanoquant/kernels/gemv.hpp>
#include "gemv_benchmark.hpp"  // bench/support: a harness, not part of the installed library

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernel_test_util.hpp"

using namespace nanoquant;
using namespace nanoquant::kernels;

namespace {

/// Float32 unit roundoff u = 2^-24.
constexpr double kUnitRoundoff = std::numeric_limits<float>::epsilon() / 2;
/// λ of the probabilistic rounding-error bound (Higham and Mary, 2019): the rounding errors of a
/// float sum of L terms of random sign add like a random walk, |δ| ≈ u·sqrt(Σ partial sums²)
/// ≈ 0.9·u·Σ|terms| with standard deviation about 0.5·u·Σ|terms|, whatever the order or blocking
/// of the sum; λ = 8 is 15 standard deviations. (The worst case L·u·Σ|terms| is 11008·u on the
/// large case: too loose to see a wrong column.)
constexpr double kLambda = 8.0;

/// Per-output float error bound of the exact path against the float64 product, from its two stages:
/// t_k = Σ_j v_kj·xs_j (xs = s_in ⊙ x rounded to float) has |δt_k| <= λ·u·Σ_j |xs_j|; those errors,
/// independent across k, reach y_i through U's signs and s_mid, so they add in quadrature:
/// λ·u·||s_mid||₂·Σ_j |xs_j|. The second stage sums r terms s_mid_k·t_k: λ·u·Σ_k |s_mid_k·t_k|.
/// Both are scaled by |s_out_i|. A one-column or one-sign change moves an output by about
/// |s_mid_k·xs_j| (times sqrt(r) for a column): 1/(λ·u·sqrt(r)·n) of the first term, so several
/// times the bound even at n = 11008 (the mutation test below proves that it is caught).
Vector<double> error_bound(const Factorization<float>& f, const Vector<float>& x)
{
    const Vector<double> xs = f.s_in.cast<double>().cwiseProduct(x.cast<double>());
    Vector<double> t = f.vt.unpack<double>() * xs;
    Vector<double> mid = Vector<double>::Ones(f.rank());
    if (f.has_mid_scale()) mid = f.s_mid.cast<double>();
    t = mid.cwiseProduct(t);
    const double stage1 = mid.norm() * xs.cwiseAbs().sum();
    const double stage2 = t.cwiseAbs().sum();
    return (kLambda * kUnitRoundoff * (stage1 + stage2)) * f.s_out.cast<double>().cwiseAbs();
}

Vector<double> dense_product(const Factorization<float>& f, const Vector<float>& x)
{
    Factorization<double> d;
    d.u = f.u;
    d.vt = f.vt;
    d.s_out = f.s_out.cast<double>();
    d.s_in = f.s_in.cast<double>();
    if (f.has_mid_scale()) d.s_mid = f.s_mid.cast<double>();
    return d.reconstruct() * x.cast<double>();
}

/// The number of outputs farther than their bound from the reference (every comparison of the float
/// path goes through this; the mutation test checks that it sees a one-column and a one-sign error).
Index outside_bound(const Vector<float>& y, const Vector<double>& ref, const Vector<double>& bound)
{
    Index bad = 0;
    for (Index i = 0; i < y.size(); ++i) bad += !(std::abs(double(y[i]) - ref[i]) <= bound[i]);
    return bad;
}

void require_within(const Vector<float>& y, const Vector<double>& ref, const Vector<double>& bound)
{
    REQUIRE(y.size() == ref.size());
    for (Index i = 0; i < y.size(); ++i) {
        if (std::abs(double(y[i]) - ref[i]) <= bound[i]) continue;
        INFO("row " << i << ": got " << y[i] << ", expected " << ref[i] << ", bound " << bound[i]);
        REQUIRE(std::abs(double(y[i]) - ref[i]) <= bound[i]);
    }
    REQUIRE(outside_bound(y, ref, bound) == 0);
}

/// What a kernel with one wrong column or sign would return, from the float64 product
/// y = s_out ⊙ U·(s_mid ⊙ Vᵀ·(s_in ⊙ x)): input column j dropped, the sign of Vᵀ(k, j) flipped, the
/// sign of U(i, k') flipped. j, k and k' are taken at the median magnitude of their terms (a column
/// whose x_j is near 0 changes nothing, so no check can claim every column), i is the middle row.
struct Mutations {
    Vector<double> drop_column, flip_vt, flip_u;
};

Index median_index(const Vector<double>& v)
{
    std::vector<Index> idx(std::size_t(v.size()));
    for (Index i = 0; i < v.size(); ++i) idx[std::size_t(i)] = i;
    std::nth_element(idx.begin(), idx.begin() + v.size() / 2, idx.end(),
                     [&](Index a, Index b) { return std::abs(v[a]) < std::abs(v[b]); });
    return idx[std::size_t(v.size() / 2)];
}

Mutations mutations(const Factorization<float>& f, const Vector<float>& x, const Vector<double>& ref)
{
    const Vector<double> xs = f.s_in.cast<double>().cwiseProduct(x.cast<double>());
    const Matrix<double> U = f.u.unpack<double>(), V = f.vt.unpack<double>();
    Vector<double> mid = Vector<double>::Ones(f.rank());
    if (f.has_mid_scale()) mid = f.s_mid.cast<double>();
    const Vector<double> mt = mid.cwiseProduct(V * xs);
    const Vector<double> so = f.s_out.cast<double>();
    const Index j = median_index(xs), k = median_index(mid), k2 = median_index(mt), i = f.rows() / 2;
    Mutations M;
    M.drop_column = ref - so.cwiseProduct(U * mid.cwiseProduct(V.col(j))) * xs[j];
    M.flip_vt = ref - so.cwiseProduct(U.col(k)) * (2 * mid[k] * V(k, j) * xs[j]);
    M.flip_u = ref;
    M.flip_u[i] -= 2 * so[i] * U(i, k2) * mt[k2];
    return M;
}

/// `y` passes the comparison with the true reference and fails it against every mutation.
void require_mutations_caught(const Vector<float>& y, const Vector<double>& ref, const Mutations& M,
                              const Vector<double>& bound)
{
    REQUIRE(outside_bound(y, ref, bound) == 0);
    CHECK(outside_bound(y, M.drop_column, bound) > 0);
    CHECK(outside_bound(y, M.flip_vt, bound) > 0);
    CHECK(outside_bound(y, M.flip_u, bound) > 0);
}

bool bit_equal(const Matrix<float>& a, const Matrix<float>& b)
{
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.size())) == 0;
}

std::vector<const KernelTable*> all_tables()
{
    std::vector<const KernelTable*> v;
    for (KernelTarget t : supported_targets()) v.push_back(&kernel_table(t));
    return v;
}

// Sizes around every lane width (8, 16, 64 floats/bytes; 512-bit padding blocks), primes and 1.
const std::vector<Index> kDims = {1, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 127, 128, 129, 257, 511, 512, 513, 1031};
const std::vector<Index> kRanks = {1, 3, 16, 17, 32, 63, 64, 65, 511, 512, 513};

}  // namespace

TEST_CASE("every variant computes the exact float product on edge shapes", "[kernels][gemv]")
{
    std::uint64_t seed = 100;
    for (const KernelTable* K : all_tables()) {
        for (std::size_t s = 0; s < kDims.size(); ++s) {
            const Index m = kDims[s], n = kDims[(s * 7 + 3) % kDims.size()];
            const Index r = kRanks[s % kRanks.size()];
            const bool mid = s % 2 == 1;
            const auto f = nqtest::random_factorization(m, n, r, mid, ++seed);
            const PackedLayer L = pack_layer(f);
            const Vector<float> x = nqtest::random_matrix(n, 1, ++seed);
            INFO("variant " << K->name << " shape " << m << "x" << n << " rank " << r << " mid " << mid);
            GemvOptions opt;
            opt.kernels = K;
            const Vector<float> y = gemv(L, x, opt);
            require_within(y, dense_product(f, x), error_bound(f, x));
            // The scalar reference through the same driver agrees within both errors.
            opt.kernels = &kernel_table(KernelTarget::Scalar);
            const Vector<float> y_ref = gemv(L, x, opt);
            require_within(y, y_ref.cast<double>(), 2 * error_bound(f, x));
        }
    }
}

TEST_CASE("batched float GEMM matches per-token GEMV on every variant", "[kernels][gemm]")
{
    for (const KernelTable* K : all_tables()) {
        for (Index batch : {2, 3, 5, 8, 13, 16, 17, 32, 40}) {
            const Index m = 65 + batch, n = 129 + 3 * batch, r = 33 + batch;
            const auto f = nqtest::random_factorization(m, n, r, batch % 2 == 0, 500 + batch);
            const PackedLayer L = pack_layer(f);
            const Matrix<float> X = nqtest::random_matrix(n, batch, 900 + batch);
            GemvOptions opt;
            opt.kernels = K;
            const Matrix<float> Y = gemm(L, X, opt);
            INFO("variant " << K->name << " batch " << batch);
            for (Index b = 0; b < batch; ++b) {
                const Vector<float> x = X.col(b);
                require_within(Y.col(b), dense_product(f, x), error_bound(f, x));
            }
        }
    }
}

TEST_CASE("per-thread scratch is given back when calls need far less than a large batch took", "[kernels][gemm]")
{
    const kernels::detail::GemvScratch& S = kernels::detail::gemv_scratch();
    const auto f = nqtest::random_factorization(64, 4096, 32, false, 11);
    const PackedLayer L = pack_layer(f);
    GemvOptions opt;
    opt.num_threads = 1;
    const Matrix<float> big = nqtest::random_matrix(4096, 1200, 12);  // 1200 tokens: about 19.7 MB of inputs
    const Matrix<float> Yb = gemm(L, big, opt);
    const std::size_t after_big = S.xs.size();
    CHECK(after_big * sizeof(float) > kernels::detail::kScratchKeepBytes);
    const Matrix<float> x1 = nqtest::random_matrix(4096, 4, 13);
    const Matrix<float> y1 = gemm(L, x1, opt);
    CHECK(S.xs.size() < after_big / 8);
    for (Index b = 0; b < 4; ++b) {
        const Vector<float> x = x1.col(b);
        require_within(y1.col(b), dense_product(f, x), error_bound(f, x));
    }
    // Calls within 8× of the buffer (or below the threshold) keep it.
    const float* kept = S.xs.data();
    gemm(L, nqtest::random_matrix(4096, 2, 14), opt);
    CHECK(S.xs.data() == kept);
}

TEST_CASE("int8 path is bit-exact across variants and batch sizes and thread counts", "[kernels][int8]")
{
    const auto tables = all_tables();
    std::uint64_t seed = 7000;
    for (std::size_t s = 0; s < kDims.size(); s += 2) {
        const Index m = kDims[s], n = kDims[(s * 5 + 2) % kDims.size()], r = kRanks[(s / 2) % kRanks.size()];
        const auto f = nqtest::random_factorization(m, n, r, s % 4 == 0, ++seed);
        const PackedLayer L = pack_layer(f);
        const Matrix<float> X = nqtest::random_matrix(n, 5, ++seed);
        GemvOptions opt;
        opt.precision = Precision::Int8;
        opt.kernels = &kernel_table(KernelTarget::Scalar);
        const Matrix<float> ref = gemm(L, X, opt);
        Matrix<float> ref1(m, 5);
        for (Index b = 0; b < 5; ++b) ref1.col(b) = gemv(L, Vector<float>(X.col(b)), opt);
        INFO("shape " << m << "x" << n << " rank " << r);
        REQUIRE(bit_equal(ref, ref1));
        for (const KernelTable* K : tables) {
            for (int threads : {1, 2, 3}) {
                opt.kernels = K;
                opt.num_threads = threads;
                INFO("variant " << K->name << " threads " << threads);
                REQUIRE(bit_equal(gemm(L, X, opt), ref));
                Matrix<float> y1(m, 5);
                for (Index b = 0; b < 5; ++b) y1.col(b) = gemv(L, Vector<float>(X.col(b)), opt);
                REQUIRE(bit_equal(y1, ref));
            }
        }
    }
}

TEST_CASE("int8 GEMV is bit-exact for any thread count: column-word split and row chunks", "[kernels][int8][threads]")
{
    // With several threads the int8 GEMV splits each stage into two halves of its column-word pairs,
    // each cut into one piece of rows per thread, and adds the int32 partial sums. Shapes: a stage of
    // one pair (r = 40 and 3, n = 40: the first half empty), halves of unequal length (n = 1000: 16
    // pairs, r = 129 and 300: 3 and 5), fewer row blocks than threads (r = 3, m = 70: empty pieces,
    // thread 0's among them); a thread's adjacent pieces of one half are one kernel call. The AVX-512
    // kernel passes over the rows in chunks of 256 row blocks (4096 rows), each chunk over every
    // column word, prefetching across words and chunks: 2100 rows make one chunk, 4097 rows a second
    // chunk of one row block, 20000 rows five chunks.
    const auto tables = all_tables();
    std::uint64_t seed = 8300;
    for (auto [m, n, r] : {std::array<Index, 3>{300, 65, 40}, std::array<Index, 3>{70, 1000, 300},
                           std::array<Index, 3>{2100, 1345, 129}, std::array<Index, 3>{4097, 40, 3},
                           std::array<Index, 3>{20000, 70, 70}}) {
        const auto f = nqtest::random_factorization(m, n, r, true, ++seed);
        const PackedLayer L = pack_layer(f);
        const Vector<float> x = nqtest::random_matrix(n, 1, ++seed).col(0);
        const Vector<float> x2 = nqtest::random_matrix(n, 1, ++seed).col(0);  // alternated: no stale sums pass
        GemvOptions opt;
        opt.precision = Precision::Int8;
        opt.kernels = &kernel_table(KernelTarget::Scalar);
        const Vector<float> ref = gemv(L, x, opt), ref2 = gemv(L, x2, opt);
        for (const KernelTable* K : tables) {
            for (int threads : {1, 2, 3, 4, 5, 8}) {
                opt.kernels = K;
                opt.num_threads = threads;
                INFO("variant " << K->name << " shape " << m << "x" << n << " rank " << r << " threads " << threads);
                REQUIRE(std::memcmp(gemv(L, x, opt).data(), ref.data(), sizeof(float) * std::size_t(m)) == 0);
                REQUIRE(std::memcmp(gemv(L, x2, opt).data(), ref2.data(), sizeof(float) * std::size_t(m)) == 0);
            }
        }
    }
}

TEST_CASE("int8 GEMM of many tokens (row-pair kernel) is bit-exact with extreme inputs included", "[kernels][int8]")
{
    // The AVX-512 variant runs passes of at most 32 tokens (59 = 30 + 29), pairs row blocks (an odd
    // count pairs the last with itself), cuts strips of 64 columns into groups of 5 (one straddles
    // the two column words), keeps int16 sums over 4 strips (256 columns) and works in chunks of 128
    // row pairs (4200 rows: two chunks). The extreme column below drives row 0 of Vᵀ to |Σ q| = 127·n,
    // the int16 worst case (32512 over 4 strips of n = 513; 5 strips would overflow, and fail here).
    const auto tables = all_tables();
    std::uint64_t seed = 9100;
    for (Index batch : {2, 5, 16, 17, 28, 32, 33, 59, 70, 100}) {
        for (auto [m, n, r] : {std::array<Index, 3>{33, 129, 17}, std::array<Index, 3>{130, 513, 65},
                               std::array<Index, 3>{16, 64, 1}, std::array<Index, 3>{4200, 70, 130}}) {
            const auto f = nqtest::random_factorization(m, n, r, batch % 2 == 1, ++seed);
            const PackedLayer L = pack_layer(f);
            Matrix<float> X = nqtest::random_matrix(n, batch, ++seed);
            const Matrix<float> vt = f.vt.unpack<float>();
            for (Index j = 0; j < n; ++j) X(j, 0) = vt(0, j) / f.s_in(j);
            // Calls alternate between X and other inputs X2, so that sums left in the scratch buffers by
            // the previous call cannot stand in for sums a call failed to compute.
            const Matrix<float> X2 = nqtest::random_matrix(n, batch, ++seed);
            GemvOptions opt;
            opt.precision = Precision::Int8;
            opt.kernels = &kernel_table(KernelTarget::Scalar);
            const Matrix<float> ref = gemm(L, X, opt);
            const Matrix<float> ref2 = gemm(L, X2, opt);
            for (const KernelTable* K : tables) {
                // 2 threads split the tokens from 16 on, 3 threads from 24 on (lookup-table kernels; amx from
                // 64 and 96: i8_tokens_per_thread).
                for (int threads : {1, 2, 3}) {
                    opt.kernels = K;
                    opt.num_threads = threads;
                    INFO("variant " << K->name << " batch " << batch << " shape " << m << "x" << n << " rank " << r
                                    << " threads " << threads);
                    REQUIRE(bit_equal(gemm(L, X, opt), ref));
                    REQUIRE(bit_equal(gemm(L, X2, opt), ref2));
                }
            }
        }
    }
}

TEST_CASE("batched int8 kernels on raw tiles: any row range and token count and stride with nothing else written",
          "[kernels][int8]")
{
    // Straight at the kernel: the AMX variant packs tokens in groups of 16 (pairs of groups, a lone
    // group, a last group of fewer rows), pairs row blocks (an odd range ends with one), and reads
    // the activations with any stride (4096 puts a tile's 16 rows in one cache set). Entries outside
    // the range keep a sentinel no sum can equal (|sum| <= 127 · 4096).
    if (!target_supported(KernelTarget::Amx))
        WARN("the amx variant is not available here (it needs AMX-INT8 and Linux >= 5.16): not tested");
    std::uint64_t seed = 77;
    const KernelTable& S = kernel_table(KernelTarget::Scalar);
    for (Index batch : {1, 2, 15, 16, 17, 31, 32, 33, 48, 50}) {
        for (auto [row_blocks, col_words, a, e] :
             {std::array<Index, 4>{1, 2, 0, 1}, std::array<Index, 4>{5, 4, 1, 4}, std::array<Index, 4>{6, 6, 0, 6},
              std::array<Index, 4>{7, 128, 2, 7}}) {
            const Index ldq = batch % 3 == 0 ? 4096 : 32 * col_words + 64 * (batch % 2);
            nanoquant::detail::Rng rng(++seed);
            AlignedVector<std::uint32_t> tiles(std::size_t(col_words * row_blocks * 16));
            for (auto& w : tiles) w = std::uint32_t(rng.next_u64());
            AlignedVector<std::int8_t> Q(std::size_t(batch * ldq));
            for (auto& q : Q) q = std::int8_t(int(rng.below(255)) - 127);
            if (batch > 2)  // the extremes: a token of all +127, one of all −127
                for (Index j = 0; j < 32 * col_words; ++j) Q[std::size_t(j)] = 127, Q[std::size_t(ldq + j)] = -127;
            const Index ldo = 16 * row_blocks + 16;
            constexpr std::int32_t kUnset = std::numeric_limits<std::int32_t>::min();
            AlignedVector<std::int32_t> ref(std::size_t(batch * ldo), kUnset);
            S.dot_i8_batch(tiles.data(), row_blocks, col_words, a, e, Q.data(), ldq, batch, ref.data(), ldo);
            for (Index b = 0; b < batch; ++b)
                for (Index i = 0; i < ldo; ++i)
                    REQUIRE((ref[std::size_t(b * ldo + i)] == kUnset) == (i < 16 * a || i >= 16 * e));
            for (const KernelTable* K : all_tables()) {
                INFO("variant " << K->name << " batch " << batch << " row blocks [" << a << ", " << e << ") of "
                                << row_blocks << ", " << col_words << " column words, ldq " << ldq);
                AlignedVector<std::int32_t> out(ref.size(), kUnset);
                K->dot_i8_batch(tiles.data(), row_blocks, col_words, a, e, Q.data(), ldq, batch, out.data(), ldo);
                REQUIRE(out == ref);
            }
        }
    }
}

TEST_CASE("int8 path error against the exact product is small", "[kernels][int8]")
{
    const auto f = nqtest::random_factorization(512, 768, 320, true, 77);
    const PackedLayer L = pack_layer(f);
    const Matrix<float> X = nqtest::random_matrix(768, 8, 78);
    GemvOptions opt;
    const Matrix<float> exact = gemm(L, X, opt);
    opt.precision = Precision::Int8;
    const Matrix<float> approx = gemm(L, X, opt);
    const double rel = (approx - exact).norm() / exact.norm();
    INFO("relative error " << rel);
    // Two absmax int8 quantizations of Gaussian-like vectors: ~1% each (docs/kernels.md).
    REQUIRE(rel < 0.03);
    REQUIRE(rel > 0.0);
}

TEST_CASE("exact float path gives identical results for any thread count", "[kernels][threads]")
{
    // The GEMV always sums each stage in two parts of column words (each cut into one piece of rows
    // per thread, the pieces dealt out in runs: with 3 threads one thread takes the end of the first
    // part and the start of the second); the GEMM splits rows (3 tokens), or tokens from
    // kTokensPerThread per thread on (43 tokens: 21 + 22 on 2 threads, 14 + 14 + 15 on 3, 8 or 9
    // each on 5; rows again on 8).
    const auto f = nqtest::random_factorization(1000, 777, 300, false, 31);
    const PackedLayer L = pack_layer(f);
    const Matrix<float> X = nqtest::random_matrix(777, 43, 32);
    const Matrix<float> X3 = nqtest::random_matrix(777, 3, 33);  // other inputs: no stale scratch is right
    REQUIRE(5 * nanoquant::kernels::detail::kTokensPerThread <= 43);
    REQUIRE(8 * nanoquant::kernels::detail::kTokensPerThread > 43);
    for (const KernelTable* K : all_tables()) {
        GemvOptions opt;
        opt.kernels = K;
        const Matrix<float> Y1 = gemm(L, X, opt);
        const Matrix<float> Y13 = gemm(L, X3, opt);
        const Vector<float> y1 = gemv(L, Vector<float>(X.col(0)), opt);
        for (int threads : {2, 3, 4, 5, 8}) {
            opt.num_threads = threads;
            INFO("variant " << K->name << " threads " << threads);
            REQUIRE(bit_equal(gemm(L, X, opt), Y1));
            REQUIRE(bit_equal(gemm(L, X3, opt), Y13));
            REQUIRE(bit_equal(gemv(L, Vector<float>(X.col(0)), opt), y1));
        }
    }
}

TEST_CASE("the stage barrier lets no thread into a phase before every thread has left the last one",
          "[kernels][threads]")
{
#ifdef _OPENMP
    // Phase k: every thread writes k into its slot, meets the others, checks that every slot holds k,
    // meets them again. A thread let through early sees k - 1 somewhere (or overwrites a slot with
    // k + 1 before another thread checked it). Spinning (the team fits the processors) and OpenMP's
    // barrier (it does not) both, with teams of 2, 3 and 4.
    for (const bool spin : {true, false}) {
        for (int n : {2, 3, 4}) {
            if (spin && n > omp_get_num_procs()) continue;  // spinning on a shared core is only slow
            nanoquant::kernels::detail::TeamBarrier barrier(spin);
            std::vector<int> slot(std::size_t(n), -1);
            int wrong = 0, team = 0;
            constexpr int kPhases = 2000;
#pragma omp parallel num_threads(n) reduction(+ : wrong)
            {
                const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
                team = nt;
                for (int k = 0; k < kPhases; ++k) {
                    slot[std::size_t(t)] = k;
                    barrier.wait(nt);
                    for (int u = 0; u < nt; ++u) wrong += slot[std::size_t(u)] != k;
                    barrier.wait(nt);
                }
            }
            INFO("spin " << spin << " team " << team << " of " << n);
            REQUIRE(wrong == 0);
            for (int u = 0; u < team; ++u) REQUIRE(slot[std::size_t(u)] == kPhases - 1);
        }
    }
#else
    SUCCEED("built without OpenMP: gemm() runs on one thread and never waits");
#endif
}

TEST_CASE("calls made concurrently inside a caller's parallel region are independent", "[kernels][threads]")
{
#ifdef _OPENMP
    // Each thread of the caller's team runs its own gemm (serial inside, whatever num_threads
    // says) on its own tokens; the results must equal the same calls made one after another.
    // (The int8 path once quantized the rank vector under "omp single", which bound to the caller's
    // team: one thread did it for its own call only.)
    const auto f = nqtest::random_factorization(300, 200, 70, true, 41);
    const PackedLayer L = pack_layer(f);
    constexpr int kThreads = 3;
    for (const Precision p : {Precision::Float32, Precision::Int8}) {
        for (int inner : {1, 2}) {
            GemvOptions opt;
            opt.precision = p;
            opt.num_threads = inner;
            std::vector<Matrix<float>> X, ref, got(kThreads);
            for (int t = 0; t < kThreads; ++t) {
                X.push_back(nqtest::random_matrix(200, 1 + 8 * t, 50 + t));  // batch 1, 9, 17
                ref.push_back(gemm(L, X.back(), opt));
            }
            for (int rep = 0; rep < 20; ++rep) {
                int team = 0;
#pragma omp parallel num_threads(kThreads)
                {
                    const int t = omp_get_thread_num();
#pragma omp single
                    team = omp_get_num_threads();
                    if (t < kThreads) got[std::size_t(t)] = gemm(L, X[std::size_t(t)], opt);
                }
                for (int t = 0; t < team && t < kThreads; ++t) {
                    INFO("int8 " << (p == Precision::Int8) << " inner threads " << inner << " caller thread " << t);
                    REQUIRE(bit_equal(got[std::size_t(t)], ref[std::size_t(t)]));
                }
            }
        }
    }
#else
    SUCCEED("built without OpenMP: no caller's parallel region to test");
#endif
}

TEST_CASE("a 4096x11008 layer agrees with the dense product on every variant", "[kernels][large]")
{
    const Index m = 4096, n = 11008, r = 96;
    const auto f = nqtest::random_factorization(m, n, r, false, 4242);
    const PackedLayer L = pack_layer(f);
    const Vector<float> x = nqtest::random_matrix(n, 1, 4243);
    // Dense reference from the two unpacked factors (cheaper than the 4096x11008 reconstruct()).
    const Vector<double> xs = f.s_in.cast<double>().cwiseProduct(x.cast<double>());
    const Vector<double> t = f.vt.unpack<double>() * xs;
    const Vector<double> ref = f.s_out.cast<double>().cwiseProduct(f.u.unpack<double>() * t);
    const Vector<double> bound = error_bound(f, x);
    const Mutations M = mutations(f, x, ref);
    for (const KernelTable* K : all_tables()) {
        GemvOptions opt;
        opt.kernels = K;
        opt.num_threads = 2;
        INFO("variant " << K->name);
        const Vector<float> y = gemv(L, x, opt);
        require_within(y, ref, bound);
        // At n = 11008 one missing column or one flipped sign must still be seen.
        require_mutations_caught(y, ref, M, bound);
    }
}

TEST_CASE("the float comparisons catch one dropped column and one flipped sign on every variant",
          "[kernels][gemv]")
{
    // Each comparison of the float path (GEMV and GEMM against the float64 product, a variant against
    // the scalar reference) run against a reference with one input column dropped, one sign of Vᵀ
    // flipped and one sign of U flipped: every one must report a row outside its bound, and the true
    // reference none.
    std::uint64_t seed = 600;
    for (auto [m, n, r, mid] : {std::array<Index, 4>{300, 1031, 129, 1}, std::array<Index, 4>{257, 513, 1, 0},
                                std::array<Index, 4>{65, 2000, 513, 1}}) {
        const auto f = nqtest::random_factorization(m, n, r, mid != 0, ++seed);
        const PackedLayer L = pack_layer(f);
        const Matrix<float> X = nqtest::random_matrix(n, 3, ++seed);
        const Vector<float> x = X.col(1);
        const Vector<double> ref = dense_product(f, x), bound = error_bound(f, x);
        const Mutations M = mutations(f, x, ref);
        GemvOptions opt;
        opt.kernels = &kernel_table(KernelTarget::Scalar);
        const Vector<float> y_scalar = gemv(L, x, opt);
        const Vector<double> ys = y_scalar.cast<double>();
        const Mutations M_scalar{ys + (M.drop_column - ref), ys + (M.flip_vt - ref), ys + (M.flip_u - ref)};
        for (const KernelTable* K : all_tables()) {
            INFO("variant " << K->name << " shape " << m << "x" << n << " rank " << r << " mid " << mid);
            opt.kernels = K;
            const Vector<float> y = gemv(L, x, opt);
            require_mutations_caught(y, ref, M, bound);
            const Vector<float> y_gemm = gemm(L, X, opt).col(1);
            require_mutations_caught(y_gemm, ref, M, bound);
            require_mutations_caught(y, ys, M_scalar, 2 * bound);
        }
    }
}

namespace {
/// The CPU's feature flags as Linux reports them (/proc/cpuinfo), empty elsewhere: a source
/// independent of the dispatch code's own CPUID and __builtin_cpu_supports checks.
std::set<std::string> cpuinfo_flags()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("flags", 0) != 0 && line.rfind("Features", 0) != 0) continue;
        std::istringstream words(line.substr(line.find(':') + 1));
        std::set<std::string> flags;
        for (std::string w; words >> w;) flags.insert(w);
        return flags;
    }
    return {};
}
}  // namespace

TEST_CASE("kernel variants: every variant this CPU can run is tested here", "[kernels][dispatch][variants]")
{
    // Every kernel test loops over supported_targets(). The variants this CPU can run, from the
    // kernel's flags: if target_supported() regressed (or a build dropped a variant), a variant
    // would silently lose its tests; this fails instead. Prints the tested set (scripts/check.sh
    // shows it). AVX-512 and AMX cannot be emulated (qemu-user has neither): they are tested only on
    // CPUs that have them (docs/testing.md).
    const std::set<std::string> cpu = cpuinfo_flags();
    const auto has = [&](std::initializer_list<const char*> names) {
        for (const char* n : names)
            if (!cpu.count(n)) return false;
        return true;
    };
    std::set<std::string> expected = {"scalar"};
#if defined(__x86_64__)
    REQUIRE(!cpu.empty());  // Linux: /proc/cpuinfo lists the flags
    if (has({"avx2", "fma", "bmi2"})) expected.insert("avx2");
    const bool avx512 = has({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512vbmi", "avx2", "fma",
                             "bmi2"});
    if (avx512) expected.insert("avx512");
    if (avx512 && has({"amx_tile", "amx_int8", "avx512_bitalg"})) expected.insert("amx");
#elif defined(__aarch64__)
    expected.insert("neon");
#endif
    std::set<std::string> tested;
    for (const KernelTable* K : all_tables()) tested.insert(K->name);
    std::string tested_s, untested_s;
    for (const char* v : {"scalar", "avx2", "avx512", "amx", "neon"}) {
        std::string& list = tested.count(v) ? tested_s : untested_s;
        list += (list.empty() ? "" : " ") + std::string(v);
    }
    std::printf("kernel variants tested on this CPU: %s; not available here: %s\n", tested_s.c_str(),
                untested_s.empty() ? "none" : untested_s.c_str());
    CHECK(tested == expected);
}

TEST_CASE("NANOQUANT_KERNEL picks the active variant or fails naming the variable and the value",
          "[kernels][dispatch][env]")
{
    // ctest runs this case once without the variable and once per value (tests/kernels/CMakeLists.txt:
    // kernels.env_kernel_*): the variable is read once per process, at the first use.
    const char* env = std::getenv("NANOQUANT_KERNEL");
    const std::string v = env ? env : "";
    INFO("NANOQUANT_KERNEL='" << v << "'");
    if (v.empty()) {
        REQUIRE(std::string(kernel_target_name()) == target_name(supported_targets().back()));
    } else if (v == "scalar") {
        REQUIRE(std::string(kernel_target_name()) == "scalar");
        REQUIRE(&active_kernels() == &kernel_table(KernelTarget::Scalar));
    } else if (v == "sse9") {
        REQUIRE_THROWS_WITH(active_kernels(), Catch::Contains("NANOQUANT_KERNEL: unknown kernel target 'sse9' "
                                                              "(expected scalar, avx2, avx512, amx or neon)"));
        REQUIRE_THROWS_AS(active_kernels(), nanoquant::invalid_argument);  // still failing: nothing cached
    } else if (v == "neon" || v == "avx2") {  // the variant of the other architecture
        REQUIRE_FALSE(target_supported(parse_kernel_target(v)));
        REQUIRE_THROWS_WITH(active_kernels(),
                            Catch::Contains("NANOQUANT_KERNEL: kernel target '" + v + "' is not available on this CPU or build"));
    } else {
        FAIL("no expectation for this value");
    }
}

TEST_CASE("dispatch: names and forcing and errors", "[kernels][dispatch]")
{
    const std::string active = kernel_target_name();
    bool found = false;
    for (KernelTarget t : supported_targets()) found = found || active == target_name(t);
    REQUIRE(found);
    set_kernel_target(KernelTarget::Scalar);
    REQUIRE(std::string(kernel_target_name()) == "scalar");
    reset_kernel_target();
    REQUIRE(std::string(kernel_target_name()) == target_name(supported_targets().back()));
    REQUIRE(parse_kernel_target("avx2") == KernelTarget::Avx2);
    REQUIRE_THROWS_WITH(parse_kernel_target("sse9"), Catch::Contains("unknown kernel target 'sse9'"));
#if defined(__x86_64__)
    REQUIRE_THROWS_WITH(set_kernel_target(KernelTarget::Neon), Catch::Contains("'neon' is not available"));
#endif
}

TEST_CASE("bad arguments give clear errors", "[kernels][errors]")
{
    const auto f = nqtest::random_factorization(5, 6, 2, false, 1);
    const PackedLayer L = pack_layer(f);
    REQUIRE_THROWS_WITH(gemv(L, Vector<float>::Ones(7)), Catch::Contains("x has 7 entries, expected n = 6"));
    GemvOptions bad;
    bad.num_threads = -1;
    REQUIRE_THROWS_WITH(gemv(L, Vector<float>::Ones(6), bad), Catch::Contains("num_threads must be >= 0, got -1"));
    GemvOptions i8;
    i8.precision = Precision::Int8;
    Vector<float> x = Vector<float>::Ones(6);
    x[2] = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_WITH(gemv(L, x, i8), Catch::Contains("non-finite"));
    Factorization<float> broken = f;
    broken.s_in.resize(3);
    REQUIRE_THROWS_WITH(pack_layer(broken), Catch::Contains("s_in has 3 entries"));
}

TEST_CASE("read_signs touches one word of every 64-byte line of both stages for any thread count",
          "[kernels][benchmark]")
{
    // Reference: XOR of the first 8 bytes of every tile (tiles are 64 bytes, 16 words).
    const auto reference = [](const PackedLayer& L) {
        std::uint64_t acc = 0;
        for (const TiledSigns* T : {&L.vt, &L.u})
            for (std::size_t w = 0; w < T->words.size(); w += 16)
                acc ^= std::uint64_t(T->words[w]) | (std::uint64_t(T->words[w + 1]) << 32);
        return acc;
    };
    for (auto [m, n, r] : {std::array<Index, 3>{17, 33, 5}, {70, 130, 19}, {300, 97, 41}}) {
        CAPTURE(m, n, r);
        const PackedLayer L = random_packed_layer(m, n, r, 7);
        const std::uint64_t want = reference(L);
        REQUIRE(want != 0);  // random signs: a zero would hide a missed line
        for (int threads : {1, 2, 3, 8}) {
            CAPTURE(threads);
            CHECK(read_signs(L, threads) == want);
        }
        // A change to any tile's first word of either stage changes the result.
        PackedLayer M = L;
        M.u.words[M.u.words.size() - 16] ^= 1u;
        CHECK(read_signs(M, 2) == (want ^ 1u));
    }
}

TEST_CASE("int8 quantization: planted values and ties to even and tiny inputs and the same bytes on every variant",
          "[kernels][int8]")
{
    constexpr Index kPad = 64;
    struct Out {
        std::vector<std::int8_t> q;
        std::int32_t qsum = -1;
        float scale = -1.0f;
    };
    const auto run = [&](const KernelTable& K, const std::vector<float>& v) {
        Out o;
        const Index padded = Index(v.size()) + kPad;
        o.q.assign(std::size_t(padded), std::int8_t(0x55));  // garbage the quantizer must overwrite
        o.scale = K.quantize_i8(v.data(), Index(v.size()), padded, o.q.data(), &o.qsum);
        return o;
    };
    const auto sum = [](const std::vector<std::int8_t>& q) {
        std::int32_t s = 0;
        for (std::int8_t x : q) s += x;
        return s;
    };
    for (const KernelTable* K : all_tables()) {
        INFO("variant " << K->name);
        // amax = 127: v · 127/amax = v, so the rounding is visible: halves go to the even neighbour.
        const Out a = run(*K, {127.0f, 2.5f, -3.5f, 0.5f, -0.5f, 1.5f, 63.5f, -127.0f, 0.0f, 100.25f});
        const std::vector<std::int8_t> want = {127, 2, -4, 0, 0, 2, 64, -127, 0, 100};
        CHECK(std::vector<std::int8_t>(a.q.begin(), a.q.begin() + 10) == want);
        CHECK(std::all_of(a.q.begin() + 10, a.q.end(), [](std::int8_t x) { return x == 0; }));
        CHECK(a.qsum == 64 + 100);
        CHECK(a.scale == 1.0f);
        // Denormal inputs: 127/amax overflows float below amax ≈ 2^-121; the quantizer must still give
        // round(v · 127/amax) (it once gave −128 for the zeros: 0 · inf = NaN).
        const float u = std::ldexp(1.0f, -135);  // amax = 4u = 2^-133
        const Out d = run(*K, {4 * u, 0.0f, -4 * u, 2 * u, 3 * u, -u});
        const std::vector<std::int8_t> want_d = {127, 0, -127, 64, 95, -32};  // 63.5 → 64, 95.25, −31.75
        CHECK(std::vector<std::int8_t>(d.q.begin(), d.q.begin() + 6) == want_d);
        CHECK(d.qsum == sum(d.q));
        CHECK(d.scale == 4 * u / 127.0f);
        // All zeros: scale 0, no codes; a non-finite entry: NaN (the caller reports it), no codes.
        const Out z = run(*K, std::vector<float>(37, 0.0f));
        CHECK(z.scale == 0.0f);
        CHECK(z.qsum == 0);
        CHECK(std::all_of(z.q.begin(), z.q.end(), [](std::int8_t x) { return x == 0; }));
        for (float bad : {NAN, INFINITY, -INFINITY}) {
            std::vector<float> v(41, 1.0f);
            v[33] = bad;
            const Out b = run(*K, v);
            CHECK(std::isnan(b.scale));
            CHECK(std::all_of(b.q.begin(), b.q.end(), [](std::int8_t x) { return x == 0; }));
        }
    }
    // Random vectors of every length around the lane widths (8, 16, 32 entries per step): each variant
    // returns the scalar reference's bytes, sum and scale.
    const KernelTable& S = kernel_table(KernelTarget::Scalar);
    std::uint64_t seed = 11;
    for (Index len : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 100, 1031, 4096}) {
        const Matrix<float> X = nqtest::random_matrix(len, 1, ++seed) * float(len % 3 + 1);
        const std::vector<float> v(X.data(), X.data() + len);
        const Out ref = run(S, v);
        CHECK(ref.qsum == sum(ref.q));
        for (const KernelTable* K : all_tables()) {
            INFO("variant " << K->name << ", length " << len);
            const Out o = run(*K, v);
            CHECK(o.q == ref.q);
            CHECK(o.qsum == ref.qsum);
            CHECK(std::memcmp(&o.scale, &ref.scale, 4) == 0);
        }
    }
}
