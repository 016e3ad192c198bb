// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file packed_layer.hpp
/// PackedLayer: the inference layout of a factorized layer (normative: docs/packed_format.md).
///
/// Both sign matrices are stored as TiledSigns: 64-byte tiles of 16 rows × 32 columns (one uint32
/// lane per row, set bit = −1 as in PackedSignMatrix), column-word major, zero (+1) padding. The
/// layout lets SIMD kernels keep 16 rows in the lanes of one register and look up several signs
/// at once in per-column-group tables. Stage 1 reads `vt` (Vᵀ, r × n), stage 2 reads `u` (U, m × r).
/// Scales are float32; `s_mid` holds r ones when the factorization has two scales.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "nanoquant/core/factorization.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {
namespace kernels {

/// Minimal allocator returning 64-byte aligned storage (one cache line, one zmm register).
template <typename T>
struct AlignedAllocator {
    using value_type = T;
    /// Alignment in bytes of every allocation.
    static constexpr std::size_t kAlignment = 64;
    AlignedAllocator() = default;
    template <typename U>
    AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
    /// Allocates n objects (the byte count is rounded up to a multiple of 64).
    T* allocate(std::size_t n)
    {
        std::size_t bytes = (n * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
        if (bytes == 0) bytes = kAlignment;
        void* p = std::aligned_alloc(kAlignment, bytes);
        if (!p) throw std::bad_alloc();
        return static_cast<T*>(p);
    }
    /// Frees storage from allocate().
    void deallocate(T* p, std::size_t) noexcept { std::free(p); }
    template <typename U>
    bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
    template <typename U>
    bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};

/// A std::vector whose data() is 64-byte aligned.
template <typename T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

/// Rows per tile (one 32-bit lane per row in a 512-bit register).
constexpr Index kTileRows = 16;
/// Columns per tile (the bits of one 32-bit lane).
constexpr Index kTileCols = 32;

/// A ±1 matrix in the tiled inference layout (normative: docs/packed_format.md).
///
/// Rows are grouped in row blocks of 16 (rows padded with +1), columns in column words of 32
/// (columns padded with +1 to a multiple of 64, so `col_words` is even). Tile (c, R) holds column
/// word c of row block R as 16 little-endian uint32: lane l is row 16R + l, bit b of the lane is
/// column 32c + b; a set bit is −1. Tiles are stored column-word major: tile (c, R) starts at
/// uint32 index (c·row_blocks + R)·16, so a kernel sweeping one column strip over all row blocks
/// streams memory sequentially. Every tile is one 64-byte cache line (the buffer is 64-byte aligned).
struct TiledSigns {
    Index rows = 0;        ///< logical rows
    Index cols = 0;        ///< logical columns
    Index row_blocks = 0;  ///< ceil(rows / 16)
    Index col_words = 0;   ///< 2·ceil(cols / 64)
    AlignedVector<std::uint32_t> words;  ///< col_words · row_blocks · 16 lanes

    /// Padded length of the vector operand: 32·col_words (= 64·ceil(cols/64)).
    Index cols_padded() const { return col_words * kTileCols; }
    /// Padded number of outputs: 16·row_blocks.
    Index rows_padded() const { return row_blocks * kTileRows; }
    /// First lane of tile (c, R).
    const std::uint32_t* tile(Index c, Index R) const { return words.data() + (c * row_blocks + R) * kTileRows; }
    /// +1 or −1 at (i, j) (no bounds check).
    int sign(Index i, Index j) const
    {
        return ((tile(j / kTileCols, i / kTileRows)[i % kTileRows] >> (j % kTileCols)) & 1u) ? -1 : 1;
    }

    /// Tiles a PackedSignMatrix (one pass, no arithmetic).
    static TiledSigns from(const PackedSignMatrix& P)
    {
        TiledSigns T;
        T.rows = P.rows();
        T.cols = P.cols();
        T.row_blocks = (T.rows + kTileRows - 1) / kTileRows;
        T.col_words = (T.cols + 63) / 64 * 2;
        T.words.assign(std::size_t(T.col_words * T.row_blocks * kTileRows), 0u);
        for (Index i = 0; i < T.rows; ++i) {
            const std::uint64_t* row = P.row_data(i);
            for (Index c = 0; c < T.col_words && c * kTileCols < T.cols; ++c)
                T.words[std::size_t((c * T.row_blocks + i / kTileRows) * kTileRows + i % kTileRows)] =
                    std::uint32_t(row[c / 2] >> (32 * (c % 2)));
        }
        return T;
    }
};

/// A factorized layer y = s_out ⊙ (U · (s_mid ⊙ (Vᵀ · (s_in ⊙ x)))) in the inference layout.
/// Build one with pack_layer().
struct PackedLayer {
    Index m = 0;     ///< output size (rows of U)
    Index n = 0;     ///< input size (columns of Vᵀ)
    Index r = 0;     ///< rank
    TiledSigns vt;   ///< Vᵀ (r × n): stage 1
    TiledSigns u;    ///< U (m × r): stage 2
    AlignedVector<float> s_in;   ///< n input scales
    AlignedVector<float> s_mid;  ///< r per-rank scales (ones for a two-scale factorization)
    AlignedVector<float> s_out;  ///< m output scales
    bool has_mid_scale = false;  ///< whether s_mid came from the factorization

    /// Bytes of packed signs (both matrices, padding included).
    std::size_t sign_bytes() const { return (vt.words.size() + u.words.size()) * sizeof(std::uint32_t); }

    /// Throws nanoquant::invalid_argument unless the shapes, paddings and scale sizes agree.
    void validate(const char* where = "PackedLayer::validate") const
    {
        auto ok = [](const TiledSigns& T, Index rows, Index cols) {
            return T.rows == rows && T.cols == cols && T.row_blocks == (rows + kTileRows - 1) / kTileRows &&
                   T.col_words == (cols + 63) / 64 * 2 &&
                   T.words.size() == std::size_t(T.col_words * T.row_blocks * kTileRows);
        };
        NANOQUANT_CHECK(m >= 0 && n >= 0 && r >= 0, where, "negative shape " << m << "x" << n << " rank " << r);
        NANOQUANT_CHECK(ok(vt, r, n) && ok(u, m, r), where,
                        "sign tiles do not match the shape " << m << "x" << n << " rank " << r);
        NANOQUANT_CHECK(s_in.size() == std::size_t(n) && s_mid.size() == std::size_t(r) &&
                            s_out.size() == std::size_t(m),
                        where, "scale sizes " << s_in.size() << "/" << s_mid.size() << "/" << s_out.size()
                                              << " do not match n/r/m = " << n << "/" << r << "/" << m);
    }
};

/// Converts a factorization to the inference layout (one call; scales are rounded to float).
/// \throws nanoquant::invalid_argument if `f` is inconsistent (Factorization::validate).
template <typename Scalar>
PackedLayer pack_layer(const Factorization<Scalar>& f)
{
    f.validate("kernels::pack_layer");
    PackedLayer L;
    L.m = f.rows();
    L.n = f.cols();
    L.r = f.rank();
    L.vt = TiledSigns::from(f.vt);
    L.u = TiledSigns::from(f.u);
    L.s_in.resize(std::size_t(L.n));
    L.s_out.resize(std::size_t(L.m));
    L.s_mid.assign(std::size_t(L.r), 1.0f);
    for (Index j = 0; j < L.n; ++j) L.s_in[std::size_t(j)] = float(f.s_in[j]);
    for (Index i = 0; i < L.m; ++i) L.s_out[std::size_t(i)] = float(f.s_out[i]);
    L.has_mid_scale = f.has_mid_scale();
    if (L.has_mid_scale)
        for (Index k = 0; k < L.r; ++k) L.s_mid[std::size_t(k)] = float(f.s_mid[k]);
    return L;
}

}  // namespace kernels
}  // namespace nanoquant
