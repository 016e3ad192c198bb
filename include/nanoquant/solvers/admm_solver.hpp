// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file admm_solver.hpp
/// AdmmSolver<Scalar>: NanoQuant's ADMM for the low-rank binary factorization (method digest
/// §1.2; docs/algorithm.md gives every step with the option names used here).
///
/// Memory: besides W itself, the solver holds W̃ = diag(√o)·W·diag(√i) as one m×n copy (only when
/// the importance is not the identity or Scalar differs... see docs/algorithm.md "Memory"), the
/// six factor iterates (3·(m+n)·r values), r×r Grams, and the export's O((m+n)·r) buffers.

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "nanoquant/core/checks.hpp"
#include "nanoquant/core/factorization.hpp"
#include "nanoquant/core/types.hpp"
#include "nanoquant/detail/random.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/solvers/admm_export.hpp"
#include "nanoquant/solvers/admm_kernels.hpp"
#include "nanoquant/solvers/admm_options.hpp"
#include "nanoquant/solvers/admm_result.hpp"
#include "nanoquant/solvers/admm_sign_products.hpp"
#include "nanoquant/solvers/scale_refit.hpp"
#include "nanoquant/solvers/status.hpp"

namespace nanoquant {

namespace detail {

/// The ADMM iterates of the preconditioned problem in solver orientation (rows >= cols).
/// B is stored transposed (Bt = Bᵀ, n×r) so that both X-updates are right-hand solves on
/// column-major tall matrices.
template <typename Scalar>
struct AdmmState {
    Matrix<Scalar> Ax, Az, Au;  // m×r
    Matrix<Scalar> Bx, Bz, Bu;  // n×r (transposed B)
    SvidFactors<Scalar> fa, fb;  // rank-1 magnitudes of A_z and B_z
};

/// Sum over columns of per-column partial sums, in a fixed order (thread-count independent).
inline double ordered_sum(const std::vector<double>& v)
{
    double s = 0;
    for (double x : v) s += x;
    return s;
}

/// Fused Z-update and dual update of one factor: V = X + U; Z_new = P(V) (power iteration drawn
/// from rng); U ← V − Z_new; returns (‖X − Z_new‖², ‖Z_new − Z_old‖²). With `factors`, also
/// stores Z_new's rank-1 magnitude there (Z_new = sign ⊙ σ u vᵀ).
template <typename Scalar>
std::pair<double, double> z_and_dual_update(const Matrix<Scalar>& X, Matrix<Scalar>& Z, Matrix<Scalar>& U,
                                            int power_iterations, Rng& rng, bool start_on_rows, int threads,
                                            double eps, SvidFactors<Scalar>* factors = nullptr)
{
    const Index p = X.rows(), q = X.cols();
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && p * q > 32768)
#endif
    for (Index k = 0; k < q; ++k) U.col(k) += X.col(k);
    const SvidFactors<Scalar> f = svid_rank1<Scalar>(U, power_iterations, rng, start_on_rows, threads, eps);
    std::vector<double> prim(static_cast<std::size_t>(q)), dual(static_cast<std::size_t>(q));
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && p * q > 32768)
#endif
    for (Index k = 0; k < q; ++k) {
        const Scalar s = f.sigma * f.v(k);
        Scalar* z = Z.col(k).data();
        Scalar* u = U.col(k).data();
        const Scalar* x = X.col(k).data();
        const Scalar* a = f.u.data();
        Scalar pa = 0, da = 0;
        for (Index i = 0; i < p; ++i) {
            const Scalar v = u[i];
            const Scalar mag = s * a[i];
            const Scalar zn = v >= Scalar(0) ? mag : -mag;
            const Scalar dx = x[i] - zn, dz = zn - z[i];
            pa += dx * dx;
            da += dz * dz;
            z[i] = zn;
            u[i] = v - zn;
        }
        prim[static_cast<std::size_t>(k)] = double(pa);
        dual[static_cast<std::size_t>(k)] = double(da);
    }
    if (factors) *factors = f;
    return {ordered_sum(prim), ordered_sum(dual)};
}

/// Rows [begin, end) of task `t` of `nt` over the concatenation of two row ranges of sizes m and
/// n, intersected with each: {a0, a1, b0, b1} (b rows counted from 0).
inline void task_rows(int t, int nt, Index m, Index n, Index& a0, Index& a1, Index& b0, Index& b1)
{
    const Index total = m + n;
    const Index lo = total * t / nt, hi = total * (t + 1) / nt;
    a0 = std::min(lo, m);
    a1 = std::min(hi, m);
    b0 = std::max(lo, m) - m;
    b1 = std::max(hi, m) - m;
}

/// GA = AᵀA and GB = BᵀB (both triangles), the rows of A and B split over `nt` threads (each a
/// single-threaded SYRK into its own buffer; buffers summed in task order). For nt == 1 this is
/// one SYRK each. The summation order depends on nt (documented in docs/algorithm.md).
template <typename Scalar>
void parallel_grams(const Matrix<Scalar>& A, const Matrix<Scalar>& B, Matrix<Scalar>& GA, Matrix<Scalar>& GB,
                    int nt, std::vector<Matrix<Scalar>>& scratch)
{
    const Index r = A.cols(), m = A.rows(), n = B.rows();
    scratch.resize(std::size_t(2 * nt));
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int t = 0; t < nt; ++t) {
        Index a0, a1, b0, b1;
        task_rows(t, nt, m, n, a0, a1, b0, b1);
        Matrix<Scalar>& ga = scratch[std::size_t(2 * t)];
        Matrix<Scalar>& gb = scratch[std::size_t(2 * t + 1)];
        ga.setZero(r, r);
        gb.setZero(r, r);
        if (a1 > a0) ga.template selfadjointView<Eigen::Lower>().rankUpdate(A.middleRows(a0, a1 - a0).transpose());
        if (b1 > b0) gb.template selfadjointView<Eigen::Lower>().rankUpdate(B.middleRows(b0, b1 - b0).transpose());
    }
    GA = scratch[0];
    GB = scratch[1];
    for (int t = 1; t < nt; ++t) {
        GA += scratch[std::size_t(2 * t)];
        GB += scratch[std::size_t(2 * t + 1)];
    }
    GA.template triangularView<Eigen::StrictlyUpper>() = GA.transpose();
    GB.template triangularView<Eigen::StrictlyUpper>() = GB.transpose();
}

/// Both ridge X-updates at once: RA ← RA·(KA + λ_A I)⁻¹, RB ← RB·(KB + λ_B I)⁻¹ (see
/// ridge_solve_right). The two Cholesky factorizations run concurrently, then the rows of RA and
/// RB (independent right-hand sides) are split over `nt` threads, each a single-threaded
/// triangular solve. Falls back to ridge_solve_right when a factorization fails.
template <typename Scalar>
void parallel_ridge_solves(Matrix<Scalar>& KA, Matrix<Scalar>& RA, Matrix<Scalar>& KB, Matrix<Scalar>& RB, double rho,
                           double reg, double eps, int nt)
{
    Eigen::LLT<Matrix<Scalar>> la, lb;
    Matrix<Scalar>* Ks[2] = {&KA, &KB};
    Eigen::LLT<Matrix<Scalar>>* Ls[2] = {&la, &lb};
#ifdef _OPENMP
#pragma omp parallel for num_threads(std::min(nt, 2)) schedule(static, 1) if (nt > 1)
#endif
    for (int w = 0; w < 2; ++w) {
        Matrix<Scalar>& K = *Ks[w];
        const double lambda = std::max(rho * double(K.diagonal().mean()) + reg, eps);
        K.diagonal().array() += Scalar(lambda);
        Ls[w]->compute(K);
    }
    if (la.info() != Eigen::Success || lb.info() != Eigen::Success) {
        // Rare (λ >= reg > 0 keeps K + λI positive definite in exact arithmetic): K already holds
        // K + λI, take the general path (its GEMMs on nt threads, a per-call setting).
        with_openmp_threads(nt, [&] {
            const Matrix<Scalar> RtA = KA.partialPivLu().solve(RA.transpose());
            RA = RtA.transpose();
            const Matrix<Scalar> RtB = KB.partialPivLu().solve(RB.transpose());
            RB = RtB.transpose();
        });
        return;
    }
    const Index m = RA.rows(), n = RB.rows();
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int t = 0; t < nt; ++t) {
        Index a0, a1, b0, b1;
        task_rows(t, nt, m, n, a0, a1, b0, b1);
        if (a1 > a0) {
            auto blk = RA.middleRows(a0, a1 - a0);
            la.matrixU().template solveInPlace<Eigen::OnTheRight>(blk);
            la.matrixL().template solveInPlace<Eigen::OnTheRight>(blk);
        }
        if (b1 > b0) {
            auto blk = RB.middleRows(b0, b1 - b0);
            lb.matrixU().template solveInPlace<Eigen::OnTheRight>(blk);
            lb.matrixL().template solveInPlace<Eigen::OnTheRight>(blk);
        }
    }
}

}  // namespace detail

/// The NanoQuant ADMM solver. Stores its options by value; reusable and free of hidden state. It
/// uses AdmmOptions::num_threads threads and changes no process-wide Eigen or OpenMP setting, so
/// solves on several std::threads, with different thread counts, do not interfere.
template <typename Scalar>
class AdmmSolver {
public:
    /// \throws nanoquant::invalid_argument if an option is out of range (rank is checked against
    ///         W's shape at solve time).
    explicit AdmmSolver(AdmmOptions<Scalar> opts) : m_opts(std::move(opts))
    {
        m_opts.validate_fields();  // the rank's upper bound is checked against W in solve()
    }

    /// The options in force.
    const AdmmOptions<Scalar>& options() const { return m_opts; }

    /// Factorizes W (m×n) with identity importance.
    /// \throws nanoquant::invalid_argument for an empty W, non-finite values, or a rank outside
    ///         [1, min(m, n)].
    ///
    /// W may be any Eigen expression of Scalar: a Matrix, a Map of a row-major buffer or one with
    /// arbitrary strides (a numpy view from the Python module). It is read in place, never copied
    /// (apart from the preconditioned copy W̃ above); the results do not depend on its layout.
    template <typename Derived>
    AdmmResult<Scalar> solve(const Eigen::MatrixBase<Derived>& W) const
    {
        return solve(W, Vector<Scalar>::Ones(W.cols()), Vector<Scalar>::Ones(W.rows()));
    }

    /// Factorizes W (m×n) minimizing ‖D_o(W − Ŵ)D_i‖_F, D_o = diag(√importance_out) (m),
    /// D_i = diag(√importance_in) (n). Importances must be finite and > 0.
    /// \throws nanoquant::invalid_argument for an empty W, non-finite values, bad importance
    ///         shapes or values, or a rank outside [1, min(m, n)].
    template <typename Derived>
    AdmmResult<Scalar> solve(const Eigen::MatrixBase<Derived>& W, const Eigen::Ref<const Vector<Scalar>>& importance_in,
                             const Eigen::Ref<const Vector<Scalar>>& importance_out) const
    {
        static_assert(std::is_same<typename Derived::Scalar, Scalar>::value,
                      "AdmmSolver<Scalar>::solve: W must hold Scalar values");
        constexpr const char* where = "AdmmSolver::solve";
        check_nonempty(W, where, "W");
        check_finite(W, where, "W");
        const Vector<Scalar> imp_in = importance_in, imp_out = importance_out;
        detail::check_importance(imp_in, W.cols(), where, "importance_in");
        detail::check_importance(imp_out, W.rows(), where, "importance_out");
        const Index m = W.rows(), n = W.cols();
        m_opts.validate(m, n, where);  // the option checks again, with W's shape, reported as solve's
        const auto t0 = std::chrono::steady_clock::now();
        const int nt = resolve_num_threads(m_opts.num_threads);
        const bool transpose = m < n;
        // Solver orientation: Wt is mm×nn with mm >= nn.
        const Index mm = transpose ? n : m, nn = transpose ? m : n;
        const Vector<Scalar> o = transpose ? imp_in : imp_out;   // rows of the solver's matrix
        const Vector<Scalar> i = transpose ? imp_out : imp_in;   // cols of the solver's matrix
        Matrix<Scalar> Wt(mm, nn);
        {
            const Vector<Scalar> so = o.cwiseSqrt(), si = i.cwiseSqrt();
            if (transpose) Wt = so.asDiagonal() * W.transpose() * si.asDiagonal();
            else Wt = so.asDiagonal() * W * si.asDiagonal();
        }
        AdmmResult<Scalar> res;
        detail::AdmmState<Scalar> st;
        // Threads: every loop and product of run() splits over nt threads explicitly (its two GEMMs
        // by rows, detail::split_rows_product); the export's few Eigen products see nt as the OpenMP
        // default of this call only (with_openmp_threads). No process-wide setting changes.
        run(Wt, st, res, nt, t0);
        if (res.status != SolverStatus::NumericalIssue) {
            detail::with_openmp_threads(nt, [&] { export_into(W, st, o, i, transpose, res); });
        }
        res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return res;
    }

    /// Whether solve() forms its products with the packed-sign kernels (AdmmOptions::sign_products:
    /// Packed, or Auto with Scalar = float and the AVX-512 float kernels active: variant avx512, or
    /// amx, which has them too).
    bool use_packed_products() const
    {
        if (!std::is_same<Scalar, float>::value) return false;
        if (m_opts.sign_products == SignProducts::Packed) return true;
        const kernels::KernelTarget t = kernels::active_kernels().target;
        return m_opts.sign_products == SignProducts::Auto &&
               (t == kernels::KernelTarget::Avx512 || t == kernels::KernelTarget::Amx);
    }

private:
    AdmmOptions<Scalar> m_opts;

    /// The packed-product helper when Scalar = float and `packed`; nothing otherwise.
    struct SignProductsImpl {
        bool packed = false;
        std::unique_ptr<detail::AdmmSignProducts> impl;
        SignProductsImpl(const Matrix<Scalar>& Wt, bool want) { init(Wt, want); }
        void init(const Matrix<float>& Wt, bool want)
        {
            packed = want;
            if (want) impl.reset(new detail::AdmmSignProducts(Wt, kernels::active_kernels()));
        }
        void init(const Matrix<double>&, bool) {}
        void wt_times(const Matrix<float>& Z, const Vector<float>& a, const Vector<float>& b, Matrix<float>& dst, int nt)
        {
            impl->wt_times(Z, a, b, dst, nt);
        }
        void wtt_times(const Matrix<float>& Wt, const Matrix<float>& Z, const Vector<float>& a, const Vector<float>& b,
                       Matrix<float>& dst, int nt)
        {
            impl->wtt_times(Wt, Z, a, b, dst, nt);
        }
        // Never called (packed is false for double); present so that run() compiles for double.
        void wt_times(const Matrix<double>&, const Vector<double>&, const Vector<double>&, Matrix<double>&, int) {}
        void wtt_times(const Matrix<double>&, const Matrix<double>&, const Vector<double>&, const Vector<double>&,
                       Matrix<double>&, int)
        {
        }
    };

    /// The ADMM iterations on the preconditioned matrix Wt (solver orientation).
    void run(const Matrix<Scalar>& Wt, detail::AdmmState<Scalar>& st, AdmmResult<Scalar>& res, int nt,
             std::chrono::steady_clock::time_point t0) const
    {
        const Index m = Wt.rows(), n = Wt.cols(), r = m_opts.rank;
        const int T = m_opts.iterations, piters = m_opts.power_iterations;
        const double eps = m_opts.eps, reg = m_opts.reg;
        detail::Rng rng(m_opts.seed);
        // Random init: A_x (m×r) then B_x (r×n), both column-major draws of N(0, 1).
        st.Ax.resize(m, r);
        for (Index k = 0; k < r; ++k)
            for (Index a = 0; a < m; ++a) st.Ax(a, k) = Scalar(rng.normal());
        st.Bx.resize(n, r);
        for (Index j = 0; j < n; ++j)
            for (Index k = 0; k < r; ++k) st.Bx(j, k) = Scalar(rng.normal());
        st.Az.setZero(m, r);
        st.Bz.setZero(n, r);
        st.Au.setZero(m, r);
        st.Bu.setZero(n, r);
        // Duals start at the projection residual: U = X − P(X) (done by the fused update with U = 0).
        detail::z_and_dual_update<Scalar>(st.Ax, st.Az, st.Au, piters, rng, false, nt, eps, &st.fa);
        detail::z_and_dual_update<Scalar>(st.Bx, st.Bz, st.Bu, piters, rng, true, nt, eps, &st.fb);
        if (T == 0) {
            // The reference skips the projection when T == 0; nanoquant exports P(X) so that the
            // result still lies in the SVID set (documented in docs/algorithm.md).
            res.status = SolverStatus::MaxIterations;
            res.iterations = 0;
            res.primal_residual = res.dual_residual = 0;
            return;
        }
        double wnorm2 = 0;
        for (Index j = 0; j < n; ++j) wnorm2 += Wt.col(j).template cast<double>().squaredNorm();
        // W̃·B_z and W̃ᵀ·A_z: SGEMM, or the packed-sign kernels (admm_sign_products.hpp).
        SignProductsImpl products(Wt, use_packed_products());
        auto magnitudes = [&](const SvidFactors<Scalar>& f, Vector<Scalar>& a, Vector<Scalar>& b) {
            a = f.u.cwiseAbs() * f.sigma;
            b = f.v.cwiseAbs();
        };
        Vector<Scalar> mag_a, mag_b;
        const bool want_records = m_opts.trace_every > 0 || static_cast<bool>(m_opts.callback);
        auto record_due = [&](int it) {
            if (!want_records) return false;
            if (m_opts.trace_every == 0) return true;
            return it % m_opts.trace_every == 0 || it == T;
        };
        Matrix<Scalar> GA, GB, KA, KB;
        std::vector<Matrix<Scalar>> gram_scratch;
        Vector<Scalar> da, db;
        double prev_obj = std::numeric_limits<double>::quiet_NaN();
        double last_primal = 0, last_dual = 0, last_rho = 0, last_seconds = 0, znorm = 0;
        res.status = SolverStatus::MaxIterations;
        int done = 0;
        auto emit = [&](int it, double obj) -> bool {
            IterationRecord rec;
            rec.iteration = it;
            rec.objective = obj;
            rec.primal_residual = last_primal;
            rec.dual_residual = last_dual;
            rec.rho = last_rho;
            rec.seconds = last_seconds;
            if (m_opts.trace_every > 0) res.trace.push_back(rec);
            if (m_opts.callback && !m_opts.callback(rec)) return false;
            return true;
        };
        // Objective of the current Z from the products of the next X-update:
        // ‖W̃ − A_z D_b B_zᵀ‖² = ‖W̃‖² − 2⟨A_z, (W̃ B_zt) D_b⟩ + ⟨G_A, D_b G_B D_b⟩.
        auto objective = [&](const Matrix<Scalar>& WB) {
            double cross = 0;
            for (Index k = 0; k < r; ++k) cross += double(db(k)) * double(st.Az.col(k).dot(WB.col(k)));
            const double fit = double(GA.cwiseProduct(KA).sum());
            return wnorm2 > 0 ? (wnorm2 - 2 * cross + fit) / wnorm2 : 0.0;
        };
        for (int t = 0; t <= T; ++t) {
            // After the last iteration the products below only serve the objective.
            if (t == T && !record_due(T) && m_opts.tolerance == 0) break;
            // Grams of the current Z (shared by this X-update and the objective of iteration t).
            detail::parallel_grams<Scalar>(st.Az, st.Bz, GA, GB, nt, gram_scratch);
            da.resize(r);
            db.resize(r);
            for (Index k = 0; k < r; ++k) {
                da(k) = Scalar(1.0 / std::max(std::sqrt(double(GA(k, k))), eps));
                db(k) = Scalar(1.0 / std::max(std::sqrt(double(GB(k, k))), eps));
            }
            KA = db.asDiagonal() * GB * db.asDiagonal();  // Gram of X_A = B_zᵀ D_b
            KB = da.asDiagonal() * GA * da.asDiagonal();  // Gram of X_B = A_z D_a
            if (products.packed) {
                magnitudes(st.fb, mag_a, mag_b);
                products.wt_times(st.Bz, mag_a, mag_b, st.Ax, nt);  // W̃ B_zᵀ (m×r)
            } else {
                detail::split_rows_product(st.Ax, Wt, st.Bz, nt);  // W̃ B_zᵀ (m×r)
            }
            if (t > 0) {
                const double obj = objective(st.Ax);
                const bool finite = std::isfinite(obj) && std::isfinite(last_primal) && std::isfinite(last_dual);
                if (!finite) {
                    res.status = SolverStatus::NumericalIssue;
                    break;
                }
                bool stop = false;
                if (record_due(t) && !emit(t, obj)) {
                    res.status = SolverStatus::Stalled;
                    stop = true;
                }
                if (!stop && m_opts.tolerance > 0 && std::isfinite(prev_obj)) {
                    const double rel_change = std::abs(prev_obj - obj) / std::max(obj, eps);
                    const double rel_dz = last_rho > 0 ? last_dual / (last_rho * std::max(znorm, eps)) : INFINITY;
                    if (rel_change <= m_opts.tolerance && rel_dz <= m_opts.tolerance) {
                        res.status = SolverStatus::Converged;
                        stop = true;
                    }
                }
                prev_obj = obj;
                if (stop || t == T) break;
            }
            if (t == T) break;
            const double rho = rho_at(m_opts.schedule, t, T);
            // Right-hand sides (Jacobi: both from the previous Z):
            //   A: W̃ B_zᵀ D_b + ρ(A_z − A_u)        B (transposed): W̃ᵀ A_z D_a + ρ(Bt_z − Bt_u)
            if (products.packed) {
                magnitudes(st.fa, mag_a, mag_b);
                products.wtt_times(Wt, st.Az, mag_a, mag_b, st.Bx, nt);
            } else {
                detail::split_rows_product(st.Bx, Wt.transpose(), st.Az, nt);
            }
            const Scalar srho = Scalar(rho);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
            for (Index k = 0; k < r; ++k) {
                st.Ax.col(k) = st.Ax.col(k) * db(k) + srho * (st.Az.col(k) - st.Au.col(k));
                st.Bx.col(k) = st.Bx.col(k) * da(k) + srho * (st.Bz.col(k) - st.Bu.col(k));
            }
            // X-updates: A_x = RHS_A (K_A + λI)⁻¹, Bt_x = RHS_B (K_B + λI)⁻¹, λ = ρ·mean(diag K) + reg.
            detail::parallel_ridge_solves<Scalar>(KA, st.Ax, KB, st.Bx, rho, reg, eps, nt);
            // Z-updates and dual updates.
            const auto pa = detail::z_and_dual_update<Scalar>(st.Ax, st.Az, st.Au, piters, rng, false, nt, eps, &st.fa);
            const auto pb = detail::z_and_dual_update<Scalar>(st.Bx, st.Bz, st.Bu, piters, rng, true, nt, eps, &st.fb);
            last_primal = std::sqrt(pa.first) + std::sqrt(pb.first);
            last_dual = rho * (std::sqrt(pa.second) + std::sqrt(pb.second));
            last_rho = rho;
            znorm = double(st.Az.norm()) + double(st.Bz.norm());
            last_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            done = t + 1;
            if (!std::isfinite(last_primal) || !std::isfinite(last_dual)) {
                res.status = SolverStatus::NumericalIssue;
                break;
            }
        }
        res.iterations = done;
        res.primal_residual = last_primal;
        res.dual_residual = last_dual;
    }

    /// Export (two- or three-scale), transpose back, latents, errors, optional refit.
    template <typename Derived>
    void export_into(const Eigen::MatrixBase<Derived>& W, const detail::AdmmState<Scalar>& st,
                     const Vector<Scalar>& o, const Vector<Scalar>& i, bool transpose, AdmmResult<Scalar>& res) const
    {
        const Matrix<Scalar> B = st.Bz.transpose();
        Factorization<Scalar> f = m_opts.export_mode == ExportMode::TwoScale
                                      ? export_two_scale<Scalar>(st.Az, B, o, i, m_opts.eps)
                                      : export_three_scale<Scalar>(st.Az, B, o, i, m_opts.eps);
        if (m_opts.keep_latents) {
            // Latents = the last projection argument X + U_prev = A_u + A_z, de-preconditioned and balanced.
            const double beta = detail::balance_beta<Scalar>(st.Az, B, o, i);
            Matrix<Scalar> Al = (st.Au + st.Az);
            Matrix<Scalar> Bl = (st.Bu + st.Bz).transpose();
            Al = (o.cwiseSqrt().cwiseInverse() * Scalar(beta)).asDiagonal() * Al;
            Bl = Bl * (i.cwiseSqrt().cwiseInverse() / Scalar(beta)).asDiagonal();
            if (transpose) {
                res.u_latent = Bl.transpose();
                res.vt_latent = Al.transpose();
            } else {
                res.u_latent = std::move(Al);
                res.vt_latent = std::move(Bl);
            }
        }
        if (transpose) f = transposed(f);
        const Vector<Scalar> imp_in = transpose ? o : i, imp_out = transpose ? i : o;
        const FactorizationErrors e = factorization_errors<Scalar>(W, f, imp_in, imp_out);
        res.weighted_relative_error_before_refit = e.weighted;
        if (m_opts.refit_scales) {
            refit_scales<Scalar>(W, f, imp_in, imp_out, m_opts.refit_max_rounds, m_opts.refit_tolerance);
            const FactorizationErrors e2 = factorization_errors<Scalar>(W, f, imp_in, imp_out);
            res.relative_error = e2.relative;
            res.weighted_relative_error = e2.weighted;
        } else {
            res.relative_error = e.relative;
            res.weighted_relative_error = e.weighted;
        }
        res.factorization = std::move(f);
    }
};

}  // namespace nanoquant
