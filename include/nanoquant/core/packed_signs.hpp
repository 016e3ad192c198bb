// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file packed_signs.hpp
/// PackedSignMatrix: a dense ±1 matrix stored at one bit per entry.
///
/// **Layout (normative, see docs/algorithm.md "Packed signs").** Row-major. Each row occupies
/// `words_per_row() = ceil(cols / 64)` 64-bit words. Column `c` of a row is bit `c % 64` (least
/// significant bit first) of word `c / 64`. A set bit means −1, a clear bit +1 (the official
/// code's convention). Padding bits past the last column are always 0 (+1). Because words are
/// stored in the machine's native (little-endian on every supported target) order, the same
/// bytes read as a byte array put column `c` at bit `c % 8` of byte `c / 8`.
///
/// Packing uses sign(0) := +1 (so −0.0 also packs to +1); NaN is rejected.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {

class PackedSignMatrix {
public:
    using Word = std::uint64_t;
    static constexpr Index kWordBits = 64;

    /// An empty 0×0 matrix.
    PackedSignMatrix() = default;

    /// A rows × cols matrix of +1.
    PackedSignMatrix(Index rows, Index cols) : m_rows(rows), m_cols(cols)
    {
        NANOQUANT_CHECK(rows >= 0 && cols >= 0, "PackedSignMatrix::PackedSignMatrix",
                        "shape must be non-negative, got " << rows << "x" << cols);
        m_wpr = words_for(cols);
        m_words.assign(static_cast<std::size_t>(rows * m_wpr), Word(0));
    }

    /// Packs sign(X) (sign(0) = +1). Throws nanoquant::invalid_argument on NaN.
    template <typename Derived>
    static PackedSignMatrix pack(const Eigen::DenseBase<Derived>& X)
    {
        PackedSignMatrix P(X.rows(), X.cols());
        for (Index i = 0; i < X.rows(); ++i) {
            Word* row = P.row_data(i);
            for (Index j = 0; j < X.cols(); ++j) {
                const double v = static_cast<double>(X(i, j));
                NANOQUANT_CHECK(!std::isnan(v), "PackedSignMatrix::pack",
                                "X(" << i << ", " << j << ") is NaN; its sign is undefined");
                if (v < 0) row[j / kWordBits] |= Word(1) << (j % kWordBits);
            }
        }
        return P;
    }

    /// The ±1 matrix as Eigen values.
    template <typename Scalar>
    Matrix<Scalar> unpack() const
    {
        Matrix<Scalar> X(m_rows, m_cols);
        for (Index i = 0; i < m_rows; ++i)
            for (Index j = 0; j < m_cols; ++j) X(i, j) = Scalar(sign(i, j));
        return X;
    }

    Index rows() const { return m_rows; }
    Index cols() const { return m_cols; }
    /// 64-bit words per row: ceil(cols / 64).
    Index words_per_row() const { return m_wpr; }

    /// +1 or −1 at (i, j). No bounds check beyond NANOQUANT_ASSERT.
    int sign(Index i, Index j) const
    {
        NANOQUANT_ASSERT(i >= 0 && i < m_rows && j >= 0 && j < m_cols);
        return ((row_data(i)[j / kWordBits] >> (j % kWordBits)) & 1u) ? -1 : 1;
    }

    /// Sets entry (i, j) to +1 (s >= 0) or −1 (s < 0).
    void set_sign(Index i, Index j, int s)
    {
        NANOQUANT_ASSERT(i >= 0 && i < m_rows && j >= 0 && j < m_cols);
        Word& w = row_data(i)[j / kWordBits];
        const Word bit = Word(1) << (j % kWordBits);
        w = s < 0 ? (w | bit) : (w & ~bit);
    }

    const Word* row_data(Index i) const { return m_words.data() + i * m_wpr; }
    Word* row_data(Index i) { return m_words.data() + i * m_wpr; }
    const std::vector<Word>& words() const { return m_words; }

    /// The transpose, packed in the same layout.
    PackedSignMatrix transposed() const
    {
        PackedSignMatrix T(m_cols, m_rows);
        for (Index i = 0; i < m_rows; ++i)
            for (Index j = 0; j < m_cols; ++j)
                if (sign(i, j) < 0) T.row_data(j)[i / kWordBits] |= Word(1) << (i % kWordBits);
        return T;
    }

    /// Bytes of sign information when rows are padded to whole bytes (the on-disk size):
    /// rows * ceil(cols / 8).
    std::size_t packed_bytes() const
    {
        return static_cast<std::size_t>(m_rows) * static_cast<std::size_t>((m_cols + 7) / 8);
    }

    /// Number of −1 entries.
    Index count_negative() const
    {
        Index n = 0;
        for (Word w : m_words) n += static_cast<Index>(__builtin_popcountll(w));
        return n;
    }

    friend bool operator==(const PackedSignMatrix& a, const PackedSignMatrix& b)
    {
        return a.m_rows == b.m_rows && a.m_cols == b.m_cols && a.m_words == b.m_words;
    }
    friend bool operator!=(const PackedSignMatrix& a, const PackedSignMatrix& b) { return !(a == b); }

    static Index words_for(Index cols) { return (cols + kWordBits - 1) / kWordBits; }

private:
    Index m_rows = 0;
    Index m_cols = 0;
    Index m_wpr = 0;
    std::vector<Word> m_words;
};

}  // namespace nanoquant
