// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file metrics.hpp
/// How close a compressed encoder's sentence embeddings stay to the float model's:
/// - mean cosine: the average over sentences of cos(e_float(s), e_quant(s));
/// - retrieval agreement recall@k: for each sentence, the share of its k nearest neighbours (cosine,
///   itself excluded) under the float embeddings that are still among its k nearest neighbours under
///   the quantized ones, averaged over sentences (1 = same neighbourhoods; k/(N−1) ≈ chance).

#include <algorithm>
#include <numeric>
#include <vector>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"

namespace nanoquant {
namespace model {

struct EmbeddingAgreement {
    double mean_cosine = 0;
    double recall_at_k = 0;
    Index k = 10;
};

namespace detail {
/// Indices of the k largest entries of row i of the similarity matrix S, i itself excluded
/// (ties broken by the smaller index, so the result is deterministic).
inline std::vector<Index> top_k_neighbours(const Matrix<double>& S, Index i, Index k)
{
    std::vector<Index> idx;
    idx.reserve(std::size_t(S.cols()));
    for (Index j = 0; j < S.cols(); ++j)
        if (j != i) idx.push_back(j);
    const Index kk = std::min<Index>(k, Index(idx.size()));
    std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](Index a, Index b) {
        return S(i, a) > S(i, b) || (S(i, a) == S(i, b) && a < b);
    });
    idx.resize(std::size_t(kk));
    std::sort(idx.begin(), idx.end());
    return idx;
}
}  // namespace detail

/// Agreement of `test` embeddings with `reference` ones (sentences × dims, same shape, any norm).
/// \throws nanoquant::invalid_argument on a shape mismatch, fewer than 2 sentences or k < 1
inline EmbeddingAgreement embedding_agreement(const Matrix<float>& reference, const Matrix<float>& test, Index k = 10)
{
    constexpr const char* where = "model::embedding_agreement";
    NANOQUANT_CHECK(reference.rows() == test.rows() && reference.cols() == test.cols(), where,
                    "reference is " << reference.rows() << "x" << reference.cols() << " but test is " << test.rows()
                                    << "x" << test.cols());
    NANOQUANT_CHECK(reference.rows() >= 2, where, "need at least 2 sentences, got " << reference.rows());
    NANOQUANT_CHECK(k >= 1, where, "k must be >= 1, got " << k);
    auto unit = [](const Matrix<float>& E) {
        Matrix<double> U = E.cast<double>();
        for (Index i = 0; i < U.rows(); ++i) {
            const double n = U.row(i).norm();
            if (n > 0) U.row(i) /= n;
        }
        return U;
    };
    const Matrix<double> R = unit(reference), T = unit(test);
    EmbeddingAgreement a;
    a.k = k;
    const Index N = R.rows();
    for (Index i = 0; i < N; ++i) a.mean_cosine += R.row(i).dot(T.row(i));
    a.mean_cosine /= double(N);
    const Matrix<double> SR = R * R.transpose(), ST = T * T.transpose();
    double hits = 0;
    for (Index i = 0; i < N; ++i) {
        const auto nr = detail::top_k_neighbours(SR, i, k), nt = detail::top_k_neighbours(ST, i, k);
        std::vector<Index> common;
        std::set_intersection(nr.begin(), nr.end(), nt.begin(), nt.end(), std::back_inserter(common));
        hits += double(common.size()) / double(nr.size());
    }
    a.recall_at_k = hits / double(N);
    return a;
}

}  // namespace model
}  // namespace nanoquant
