// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file adam.hpp
/// Adam (Kingma & Ba) with bias correction on LayerParams, and the cosine learning-rate schedule
/// used by the reference's tuning stages (cosine from lr to min_ratio·lr).

#include <cmath>

#include "nanoquant/refine/layer_params.hpp"

namespace nanoquant {

/// Cosine schedule: lr(t) = lr·(min_ratio + (1 − min_ratio)·½(1 + cos(π t / T))), t in [0, T].
inline double cosine_lr(double lr, double min_ratio, long step, long total_steps)
{
    if (total_steps <= 0) return lr;
    const double x = std::min(1.0, double(step) / double(total_steps));
    return lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * x)));
}

/// Per-group learning rates of one Adam step on a LayerParams. A rate of 0 freezes the group.
struct AdamRates {
    double u = 0;      ///< rate of u
    double vt = 0;     ///< rate of vt
    double s_out = 0;  ///< rate of s_out
    double s_mid = 0;  ///< rate of s_mid
    double s_in = 0;   ///< rate of s_in
};

/// Adam state (first and second moments) for one LayerParams.
template <typename Scalar>
class AdamState {
public:
    /// \param beta1, beta2, eps the usual Adam constants (validated by the caller's options)
    AdamState(const LayerParams<Scalar>& like, double beta1, double beta2, double eps)
        : m_m(like.zeros_like()), m_v(like.zeros_like()), m_b1(beta1), m_b2(beta2), m_eps(eps)
    {
    }

    /// One step p ← p − rate · m̂/(√v̂ + eps) per group.
    void step(LayerParams<Scalar>& p, const LayerParams<Scalar>& g, const AdamRates& r)
    {
        ++m_t;
        const double c1 = 1.0 - std::pow(m_b1, double(m_t));
        const double c2 = 1.0 - std::pow(m_b2, double(m_t));
        update(p.u, g.u, m_m.u, m_v.u, r.u, c1, c2);
        update(p.vt, g.vt, m_m.vt, m_v.vt, r.vt, c1, c2);
        update(p.s_out, g.s_out, m_m.s_out, m_v.s_out, r.s_out, c1, c2);
        if (p.has_mid_scale()) update(p.s_mid, g.s_mid, m_m.s_mid, m_v.s_mid, r.s_mid, c1, c2);
        update(p.s_in, g.s_in, m_m.s_in, m_v.s_in, r.s_in, c1, c2);
    }

    /// Number of steps taken.
    long steps() const { return m_t; }

private:
    template <typename M>
    void update(M& p, const M& g, M& m, M& v, double rate, double c1, double c2) const
    {
        if (rate == 0.0 || p.size() == 0) return;
        const Scalar b1 = Scalar(m_b1), b2 = Scalar(m_b2);
        m.array() = b1 * m.array() + (Scalar(1) - b1) * g.array();
        v.array() = b2 * v.array() + (Scalar(1) - b2) * g.array().square();
        const Scalar a = Scalar(rate / c1), ic2 = Scalar(1.0 / std::sqrt(c2)), e = Scalar(m_eps);
        p.array() -= a * m.array() / ((v.array().sqrt() * ic2) + e);
    }

    LayerParams<Scalar> m_m, m_v;
    double m_b1, m_b2, m_eps;
    long m_t = 0;
};

}  // namespace nanoquant
