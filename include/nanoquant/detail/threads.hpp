// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file threads.hpp
/// Thread counts passed explicitly: resolve_num_threads() and a per-call OpenMP default
/// (detail::with_openmp_threads) that never changes a process-wide Eigen or OpenMP setting.

#include <algorithm>
#include <exception>
#include <utility>

#include "nanoquant/core/types.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanoquant {

/// Number of threads `n` stands for: n itself when > 0, else the OpenMP default (1 without OpenMP).
inline int resolve_num_threads(int n)
{
    if (n > 0) return n;
#ifdef _OPENMP
    return std::max(1, omp_get_max_threads());
#else
    return 1;
#endif
}

namespace detail {

/// Runs fn() with `num_threads` as the OpenMP default of the calling code, without touching any
/// process-wide setting: fn runs in an OpenMP region of one thread whose task alone gets
/// nthreads-var = num_threads (omp_set_num_threads inside a region sets only the current task's
/// value). Eigen's GEMM reads that value through omp_get_max_threads(), so Eigen's own products in
/// fn use num_threads threads; the region is inactive, so the explicit `num_threads(n)` loops in fn
/// run on n threads as usual. Two calls on two std::threads with different counts do not interfere.
/// (An application that calls Eigen::setNbThreads itself overrides this for Eigen's products.)
/// Exceptions thrown by fn are rethrown on the caller's side of the region. Cost: OpenMP regions
/// inside fn are nested, and libgomp starts fresh threads for nested teams (no pool), so use it
/// around work that opens few regions (a solve's export, a rare fallback), not around a loop of
/// small parallel steps.
template <typename Fn>
void with_openmp_threads(int num_threads, Fn&& fn)
{
#ifdef _OPENMP
    std::exception_ptr error;
#pragma omp parallel num_threads(1)
    {
        omp_set_num_threads(std::max(1, num_threads));
        try {
            fn();
        } catch (...) {
            error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
#else
    (void)num_threads;
    fn();
#endif
}

/// dst = lhs·rhs with the rows of dst split over `nt` threads in one top-level OpenMP region (its
/// threads come from the pool), each block one Eigen GEMM on its own thread: inside the team Eigen
/// does not parallelize again, and each task's OpenMP default is set to 1 for the case of a team of
/// one (a per-task value; nothing process-wide changes). The blocks are fixed by nt, so the result
/// depends on nt (GEMM blocking) and on nothing else.
template <typename Dst, typename Lhs, typename Rhs>
void split_rows_product(Dst& dst, const Lhs& lhs, const Rhs& rhs, int nt)
{
    nt = std::max(1, nt);
    const Index m = lhs.rows();
    dst.resize(m, rhs.cols());
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int t = 0; t < nt; ++t) {
#ifdef _OPENMP
        omp_set_num_threads(1);
#endif
        const Index lo = m * t / nt, hi = m * (t + 1) / nt;
        if (hi > lo) dst.middleRows(lo, hi - lo).noalias() = lhs.middleRows(lo, hi - lo) * rhs;
    }
}

}  // namespace detail

}  // namespace nanoquant
