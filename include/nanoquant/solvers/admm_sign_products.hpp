// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file admm_sign_products.hpp
/// The two large products of an ADMM iteration, W̃·B_z and W̃ᵀ·A_z, through the packed-sign GEMM
/// kernels instead of SGEMM (AdmmOptions::sign_products).
///
/// Every Z iterate lies in the SVID set: Z = sign ⊙ (σ u vᵀ), so Z = diag(a)·S·diag(b) with
/// S = the sign bits of Z, a = σ|u| and b = |v| (|Z_ik| = σ|u_i||v_k|; a zero magnitude makes the
/// sign irrelevant). Hence (rows of P indexed by "tokens" t)
///
///     P = T·Z,   P_tk = b_k · Σ_e S_ek · (a_e T_te),
///
/// a batched sign GEMM (kernels::KernelTable::dot_f32_batch) of the tokens a ⊙ T_t against Sᵀ,
/// with the output columns scaled by b. A sign-add costs a table lookup instead of a multiply-add:
/// on AVX-512 the kernel does ~4× the useful work per cycle of SGEMM. Float only.
///
/// Memory: one row-major copy of W̃ (the tokens of W̃·B_z are its rows), the Sᵀ tiles of the
/// larger factor, and per thread one chunk of 64 scaled tokens and their outputs.
/// Deterministic: each token's arithmetic does not depend on the number of threads.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nanoquant/core/types.hpp"
#include "nanoquant/kernels/dispatch.hpp"
#include "nanoquant/kernels/packed_layer.hpp"

namespace nanoquant {
namespace detail {

/// Packs the sign bits of Z (p×r, column-major) as the tiles of Sᵀ (r × p): row k of Sᵀ is
/// column k of Z; a set bit is a negative entry (the sign bit of the float). `T` keeps its
/// storage between calls of the same shape (padding stays zero).
inline void pack_sign_tiles_transposed(const Matrix<float>& Z, kernels::TiledSigns& T, int threads)
{
    const Index p = Z.rows(), r = Z.cols();
    const Index rb = (r + kernels::kTileRows - 1) / kernels::kTileRows, cw = (p + 63) / 64 * 2;
    if (T.rows != r || T.cols != p) {
        T.rows = r;
        T.cols = p;
        T.row_blocks = rb;
        T.col_words = cw;
        T.words.assign(std::size_t(cw * rb * kernels::kTileRows), 0u);
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#else
    (void)threads;
#endif
    for (Index k = 0; k < r; ++k) {
        const float* z = Z.col(k).data();
        std::uint32_t* lane = T.words.data() + (k / kernels::kTileRows) * kernels::kTileRows + k % kernels::kTileRows;
        const Index full = p / 32;
        for (Index c = 0; c < full; ++c) {
            std::uint32_t bits[32];
            std::memcpy(bits, z + 32 * c, sizeof bits);
            std::uint32_t w = 0;
            for (int b = 0; b < 32; ++b) w |= (bits[b] >> 31) << b;
            lane[c * rb * kernels::kTileRows] = w;
        }
        if (full * 32 < p) {
            std::uint32_t w = 0;
            for (Index e = full * 32; e < p; ++e) {
                std::uint32_t bits;
                std::memcpy(&bits, z + e, sizeof bits);
                w |= (bits >> 31) << (e - full * 32);
            }
            lane[full * rb * kernels::kTileRows] = w;
        }
    }
}

/// W̃·B_z and W̃ᵀ·A_z of the ADMM iteration by packed-sign GEMM (see the file comment).
class AdmmSignProducts {
public:
    /// Tokens per kernel call (and per scheduling unit): fixed, so results do not depend on the
    /// thread count; small enough that the chunk's tables and outputs stay in L2.
    static constexpr Index kChunk = 32;

    /// \param Wt the preconditioned matrix (m×n); a row-major copy is kept.
    /// \param K the kernel variant to use.
    AdmmSignProducts(const Matrix<float>& Wt, const kernels::KernelTable& K) : m_kernels(&K), m_m(Wt.rows()), m_n(Wt.cols())
    {
        m_rows = Wt;  // row-major copy: token i of W̃·B_z is row i, contiguous
    }

    /// dst (m×r) = W̃·Z for Z (n×r) = diag(a)·sign(Z)·diag(b) (a = σ|u|: n, b = |v|: r).
    void wt_times(const Matrix<float>& Z, const Vector<float>& a, const Vector<float>& b, Matrix<float>& dst, int nt)
    {
        run(m_rows.data(), m_n, m_m, m_n, Z, a, b, dst, nt);
    }

    /// dst (n×r) = W̃ᵀ·Z for Z (m×r) = diag(a)·sign(Z)·diag(b) (a: m, b: r). `Wt` is the same
    /// matrix the object was built from (its columns are the tokens).
    void wtt_times(const Matrix<float>& Wt, const Matrix<float>& Z, const Vector<float>& a, const Vector<float>& b,
                   Matrix<float>& dst, int nt)
    {
        run(Wt.data(), m_m, m_n, m_m, Z, a, b, dst, nt);
    }

private:
    struct ThreadBuffers {
        kernels::AlignedVector<float> x, out;
    };

    /// dst (ntok × r): dst(t, k) = b_k Σ_e sign(Z_ek) a_e tok[t·stride + e], e < len.
    void run(const float* tok, Index stride, Index ntok, Index len, const Matrix<float>& Z, const Vector<float>& a,
             const Vector<float>& b, Matrix<float>& dst, int nt)
    {
        const Index r = Z.cols();
        pack_sign_tiles_transposed(Z, m_tiles, nt);
        dst.resize(ntok, r);
        const Index ldx = m_tiles.cols_padded(), ldo = m_tiles.rows_padded();
        const Index chunks = (ntok + kChunk - 1) / kChunk;
        const int threads = int(std::max<Index>(1, std::min<Index>(nt, chunks)));
        m_buffers.resize(std::size_t(threads));
        const kernels::KernelTable& K = *m_kernels;
        const kernels::TiledSigns& T = m_tiles;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
        for (Index ch = 0; ch < chunks; ++ch) {
#ifdef _OPENMP
            ThreadBuffers& buf = m_buffers[std::size_t(omp_get_thread_num())];
#else
            ThreadBuffers& buf = m_buffers[0];
#endif
            if (buf.x.size() < std::size_t(kChunk * ldx)) buf.x.assign(std::size_t(kChunk * ldx), 0.0f);
            if (buf.out.size() < std::size_t(kChunk * ldo)) buf.out.assign(std::size_t(kChunk * ldo), 0.0f);
            const Index t0 = ch * kChunk, cnt = std::min(kChunk, ntok - t0);
            for (Index t = 0; t < cnt; ++t) {
                const float* src = tok + (t0 + t) * stride;
                float* x = buf.x.data() + t * ldx;
                for (Index e = 0; e < len; ++e) x[e] = a(e) * src[e];
                std::fill(x + len, x + ldx, 0.0f);
            }
            K.dot_f32_batch(T.words.data(), T.row_blocks, T.col_words, 0, T.row_blocks, buf.x.data(), ldx, cnt,
                            buf.out.data(), ldo);
            for (Index k = 0; k < r; ++k) {
                float* d = dst.col(k).data() + t0;
                const float* o = buf.out.data() + k;
                const float bk = b(k);
                for (Index t = 0; t < cnt; ++t) d[t] = bk * o[t * ldo];
            }
        }
    }

    const kernels::KernelTable* m_kernels;
    Index m_m, m_n;
    RowMajorMatrix<float> m_rows;
    kernels::TiledSigns m_tiles;
    std::vector<ThreadBuffers> m_buffers;
};

}  // namespace detail
}  // namespace nanoquant
