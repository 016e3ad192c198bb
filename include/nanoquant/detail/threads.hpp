// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file threads.hpp
/// Thread counts passed explicitly: resolve_num_threads() and a per-call OpenMP default
/// (detail::with_openmp_threads) that never changes a process-wide Eigen or OpenMP setting.

#include <algorithm>
#include <exception>
#include <utility>

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
/// Exceptions thrown by fn are rethrown on the caller's side of the region.
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

}  // namespace detail

}  // namespace nanoquant
