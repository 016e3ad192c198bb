// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file dispatch.hpp
/// Run-time choice of the kernel variant. The CPU is inspected once; the best supported variant
/// (amx > avx512 > avx2 > scalar on x86-64, neon > scalar on AArch64) is cached in a function-local
/// static. The environment variable NANOQUANT_KERNEL=scalar|avx2|avx512|amx|neon, read at that first
/// use, or set_kernel_target() force one.

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "nanoquant/error.hpp"
#include "nanoquant/kernels/kernel_table.hpp"
#include "nanoquant/kernels/scalar/sign_dot_scalar.hpp"
#include "nanoquant/kernels/x86_avx2/sign_dot_avx2.hpp"
#include "nanoquant/kernels/x86_avx512/sign_dot_avx512.hpp"
#include "nanoquant/kernels/x86_amx/sign_dot_amx.hpp"
#include "nanoquant/kernels/arm_neon/sign_dot_neon.hpp"

namespace nanoquant {
namespace kernels {

/// The name of a target: "scalar", "avx2", "avx512", "amx" or "neon".
inline const char* target_name(KernelTarget t)
{
    switch (t) {
    case KernelTarget::Scalar: return "scalar";
    case KernelTarget::Avx2: return "avx2";
    case KernelTarget::Avx512: return "avx512";
    case KernelTarget::Amx: return "amx";
    case KernelTarget::Neon: return "neon";
    }
    return "unknown";
}

/// Whether this build contains `t` and this CPU can run it.
inline bool target_supported(KernelTarget t)
{
    switch (t) {
    case KernelTarget::Scalar: return true;
    case KernelTarget::Avx2:
#if defined(NANOQUANT_HAVE_AVX2_KERNELS)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
#else
        return false;
#endif
    case KernelTarget::Avx512:
#if defined(NANOQUANT_HAVE_AVX512_KERNELS)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi") &&
               __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
#else
        return false;
#endif
    case KernelTarget::Amx:
#if defined(NANOQUANT_HAVE_AMX_KERNELS)
        return target_supported(KernelTarget::Avx512) && amx::amx_available();
#else
        return false;
#endif
    case KernelTarget::Neon:
#if defined(NANOQUANT_HAVE_NEON_KERNELS)
        return true;
#else
        return false;
#endif
    }
    return false;
}

/// The kernel table of `t`.
/// \throws nanoquant::invalid_argument if `t` is not supported here (target_supported()).
inline const KernelTable& kernel_table(KernelTarget t)
{
    NANOQUANT_CHECK(target_supported(t), "kernels::kernel_table",
                    "kernel target '" << target_name(t) << "' is not available on this CPU or build");
    switch (t) {
#if defined(NANOQUANT_HAVE_AVX2_KERNELS)
    case KernelTarget::Avx2: return avx2::table();
#endif
#if defined(NANOQUANT_HAVE_AVX512_KERNELS)
    case KernelTarget::Avx512: return avx512::table();
#endif
#if defined(NANOQUANT_HAVE_AMX_KERNELS)
    case KernelTarget::Amx: return amx::table();
#endif
#if defined(NANOQUANT_HAVE_NEON_KERNELS)
    case KernelTarget::Neon: return neon::table();
#endif
    default: return scalar::table();
    }
}

/// Every target this build and CPU can run, best last.
inline std::vector<KernelTarget> supported_targets()
{
    std::vector<KernelTarget> out;
    for (KernelTarget t :
         {KernelTarget::Scalar, KernelTarget::Neon, KernelTarget::Avx2, KernelTarget::Avx512, KernelTarget::Amx})
        if (target_supported(t)) out.push_back(t);
    return out;
}

/// Parses "scalar", "avx2", "avx512", "amx" or "neon".
/// \throws nanoquant::invalid_argument naming the value otherwise.
inline KernelTarget parse_kernel_target(const std::string& s)
{
    for (KernelTarget t :
         {KernelTarget::Scalar, KernelTarget::Avx2, KernelTarget::Avx512, KernelTarget::Amx, KernelTarget::Neon})
        if (s == target_name(t)) return t;
    NANOQUANT_CHECK(false, "kernels::parse_kernel_target",
                    "unknown kernel target '" << s << "' (expected scalar, avx2, avx512, amx or neon)");
    return KernelTarget::Scalar;
}

namespace detail {
inline KernelTarget best_target()
{
    const auto all = supported_targets();
    return all.back();
}
/// The active table; initialised once from NANOQUANT_KERNEL or the CPU.
inline std::atomic<const KernelTable*>& active_table()
{
    static std::atomic<const KernelTable*> slot{[] {
        const char* env = std::getenv("NANOQUANT_KERNEL");
        if (env && *env) {
            bool known = false;
            for (KernelTarget t :
                 {KernelTarget::Scalar, KernelTarget::Avx2, KernelTarget::Avx512, KernelTarget::Amx, KernelTarget::Neon})
                known = known || std::strcmp(env, target_name(t)) == 0;
            NANOQUANT_CHECK(known, "NANOQUANT_KERNEL",
                            "unknown kernel target '" << env << "' (expected scalar, avx2, avx512, amx or neon)");
            const KernelTarget t = parse_kernel_target(env);
            NANOQUANT_CHECK(target_supported(t), "NANOQUANT_KERNEL",
                            "kernel target '" << env << "' is not available on this CPU or build");
            return &kernel_table(t);
        }
        return &kernel_table(best_target());
    }()};
    return slot;
}
}  // namespace detail

/// The kernels used by gemv()/gemm() now.
/// \throws nanoquant::invalid_argument on first use if NANOQUANT_KERNEL names an unknown or
///         unsupported target.
inline const KernelTable& active_kernels() { return *detail::active_table().load(std::memory_order_acquire); }

/// Name of the active kernel variant ("scalar", "avx2", "avx512", "amx" or "neon").
inline const char* kernel_target_name() { return active_kernels().name; }

/// Forces the variant used from now on by every thread.
/// \throws nanoquant::invalid_argument if `t` is not supported on this CPU or build.
inline void set_kernel_target(KernelTarget t)
{
    const KernelTable* table = &kernel_table(t);
    detail::active_table().store(table, std::memory_order_release);
}

/// Restores the automatically detected best variant (ignores NANOQUANT_KERNEL).
inline void reset_kernel_target() { set_kernel_target(detail::best_target()); }

}  // namespace kernels
}  // namespace nanoquant
