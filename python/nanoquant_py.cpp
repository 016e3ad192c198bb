// SPDX-License-Identifier: Apache-2.0
// The `nanoquant` Python module: a thin pybind11 layer over the C++ headers (docs/python.md).
//
// factorize() maps its keyword arguments to C++ exactly as `nanoquant factorize` maps its flags
// (the same cli::FactorizeFlags / ReconstructionFlags of tools/nanoquant/factorize_options.hpp), so
// a float32 matrix gives bit-identical factors and rel_error for the same seed and threads.
// W is read in place through an Eigen::Map of the numpy buffer (C order, Fortran order or any
// positive strides); only arrays Eigen cannot map (negative or unaligned strides) are copied.
// The GIL is released during solves and kernels; the solver's callback re-acquires it every
// kSignalCheckSeconds to run PyErr_CheckSignals, so Ctrl-C stops a long solve (status "stalled")
// and raises KeyboardInterrupt. C++ errors become Python exceptions with the same messages:
// nanoquant::invalid_argument -> ValueError, numerical_error and io_error -> RuntimeError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <nanoquant/baselines/dbf.hpp>
#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/core/factorization.hpp>
#include <nanoquant/io/factorized_file.hpp>
#include <nanoquant/kernels/dispatch.hpp>
#include <nanoquant/kernels/gemv.hpp>
#include <nanoquant/kernels/packed_layer.hpp>
#include <nanoquant/refine/importance.hpp>
#include <nanoquant/refine/layer_reconstruction.hpp>
#include <nanoquant/solvers/admm_solver.hpp>
#include <nanoquant/version.hpp>

#include "factorize_options.hpp"

namespace py = pybind11;
using namespace nanoquant;

namespace {

/// How often (wall seconds) a running solve takes the GIL to look for Ctrl-C.
constexpr double kSignalCheckSeconds = 0.05;

/// Python keyword names for the CLI flag names in messages from the shared flag checks.
std::string python_names(std::string msg)
{
    static const std::pair<const char*, const char*> names[] = {
        {"--batch-size", "batch_size"}, {"--lr-scale", "lr_scale"}, {"--polish-rounds", "polish_rounds"},
        {"--refit-rounds", "refit_rounds"}, {"--scale-dtype", "scale_dtype"}, {"--fine-rank", "fine_rank"},
        {"--bpw", "bpw"}, {"--rank", "rank"}, {"--iters", "iters"}, {"--threads", "threads"},
        {"--epochs", "epochs"}, {"--lr", "lr"}, {"--calib", "calib"}, {"--export", "export"},
        {"--schedule", "schedule"}, {"--seed", "seed"}};
    for (const auto& p : names) {
        const std::string from = p.first;
        for (std::size_t at = msg.find(from); at != std::string::npos; at = msg.find(from, at + 1)) {
            const char next = at + from.size() < msg.size() ? msg[at + from.size()] : ' ';
            if (std::isalnum(static_cast<unsigned char>(next)) || next == '-') continue;  // --lr vs --lr-scale
            msg.replace(at, from.size(), p.second);
        }
    }
    return msg;
}

[[noreturn]] void value_error(const std::string& msg) { throw nanoquant::invalid_argument("nanoquant." + msg); }

std::string shape_text(const py::array& a)
{
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string dtype_text(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

/// Calls fn(view) with an Eigen expression reading the 2-D array `a` of T in place: a column-major
/// Map (Fortran order), a row-major Map (C order), a Map with two strides (other positive
/// strides), or, only when Eigen cannot map the buffer (negative, zero or unaligned strides), a
/// column-major copy.
template <typename T, typename Fn>
auto with_matrix(const py::array& a, Fn&& fn)
{
    const Index m = a.shape(0), n = a.shape(1);
    const T* p = static_cast<const T*>(a.data());
    const py::ssize_t isz = py::ssize_t(sizeof(T));
    py::ssize_t s0 = a.strides(0), s1 = a.strides(1);
    // The stride of a dimension of length 1 is never used: choose the contiguous one.
    if (n == 1) s1 = isz;
    if (m == 1) s0 = isz;
    const bool mappable = m > 0 && n > 0 && s0 > 0 && s1 > 0 && s0 % isz == 0 && s1 % isz == 0;
    const Index r = s0 / isz, c = s1 / isz;
    if (mappable && r == 1) {
        using Map = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;
        return fn(Map(p, m, n, Eigen::OuterStride<>(std::max<Index>(c, 1))));
    }
    if (mappable && c == 1) {
        using Map = Eigen::Map<const RowMajorMatrix<T>, 0, Eigen::OuterStride<>>;
        return fn(Map(p, m, n, Eigen::OuterStride<>(r)));
    }
    if (mappable) {
        using Map = Eigen::Map<const Matrix<T>, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
        return fn(Map(p, m, n, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(c, r)));
    }
    const auto f = py::array_t<T, py::array::f_style | py::array::forcecast>::ensure(a);
    using Map = Eigen::Map<const Matrix<T>>;
    return fn(Map(f.data(), m, n));
}

/// A column-major float32 copy of a 2-D array of any real dtype (calibration inputs).
Matrix<float> to_matrix(const py::array& a, const char* what)
{
    if (a.ndim() != 2)
        value_error(std::string("factorize: ") + what + " must be a 2-D array (tokens x n), got shape " + shape_text(a));
    const auto f = py::array_t<float, py::array::f_style | py::array::forcecast>::ensure(a);
    if (!f) throw py::error_already_set();
    return Eigen::Map<const Matrix<float>>(f.data(), a.shape(0), a.shape(1));
}

/// A vector of T from a 1-D array of `size` positive finite values.
template <typename T>
Vector<T> to_vector(const py::handle& h, const char* what)
{
    const auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(h);
    if (!a) throw py::error_already_set();
    if (a.ndim() != 1)
        value_error(std::string("factorize: ") + what + " must be a 1-D array, got shape " + shape_text(a));
    return Eigen::Map<const Vector<T>>(a.data(), a.shape(0));
}

/// Restores OpenMP's thread count of the calling thread (set like the CLI's --threads).
struct OmpThreads {
#ifdef _OPENMP
    int previous = omp_get_max_threads();
    explicit OmpThreads(int n)
    {
        if (n > 0) omp_set_num_threads(n);
    }
    ~OmpThreads() { omp_set_num_threads(previous); }
#else
    explicit OmpThreads(int) {}
#endif
};

/// The outcome of factorize() or load(): a float32 or float64 factorization with its facts.
struct Result {
    bool is_double = false;
    Factorization<float> f32;
    Factorization<double> f64;
    std::string method = "admm";
    std::string status;
    int iterations = 0;
    double seconds = 0;
    double rel_error = 0;
    double primal_residual = 0;
    double dual_residual = 0;
    std::vector<IterationRecord> trace;
    nlohmann::json solver = nlohmann::json::object();  ///< the options, as the CLI records them with -o
    nlohmann::json extra = nlohmann::json::object();   ///< calibration facts (as the CLI's --json)

    Index rows() const { return is_double ? f64.rows() : f32.rows(); }
    Index cols() const { return is_double ? f64.cols() : f32.cols(); }
    Index rank() const { return is_double ? f64.rank() : f32.rank(); }
    double bpw() const { return is_double ? f64.bits_per_weight() : f32.bits_per_weight(); }
    const PackedSignMatrix& u() const { return is_double ? f64.u : f32.u; }
    const PackedSignMatrix& vt() const { return is_double ? f64.vt : f32.vt; }
};

template <typename T>
py::array vector_array(const Vector<T>& v)
{
    py::array_t<T> a(v.size());
    if (v.size()) std::memcpy(a.mutable_data(), v.data(), sizeof(T) * std::size_t(v.size()));
    return a;
}

/// A numpy array owning the column-major Eigen matrix M (no copy).
template <typename T>
py::array matrix_array(Matrix<T>&& M)
{
    auto* heap = new Matrix<T>(std::move(M));
    py::capsule owner(heap, [](void* p) { delete static_cast<Matrix<T>*>(p); });
    const py::ssize_t isz = sizeof(T);
    return py::array_t<T>({py::ssize_t(heap->rows()), py::ssize_t(heap->cols())},
                          {isz, isz * py::ssize_t(heap->rows())}, heap->data(), owner);
}

/// ±1 signs as an int8 array: U (m×r) or, transposed, V (n×r) from Vᵀ.
py::array sign_array(const PackedSignMatrix& P, bool transpose)
{
    const Index rows = transpose ? P.cols() : P.rows(), cols = transpose ? P.rows() : P.cols();
    py::array_t<std::int8_t> a({py::ssize_t(rows), py::ssize_t(cols)});
    auto w = a.mutable_unchecked<2>();
    for (Index i = 0; i < rows; ++i)
        for (Index k = 0; k < cols; ++k)
            w(i, k) = std::int8_t(transpose ? P.sign(k, i) : P.sign(i, k));
    return a;
}

py::object json_to_py(const nlohmann::json& j) { return py::module_::import("json").attr("loads")(j.dump()); }

/// Runs the ADMM solve on the view W with the GIL released; Ctrl-C ends it (KeyboardInterrupt).
template <typename S, typename Derived>
AdmmResult<S> solve_admm(AdmmOptions<S> opts, const Eigen::MatrixBase<Derived>& W, const Vector<S>* imp_in,
                         const Vector<S>* imp_out)
{
    bool interrupted = false;
    auto last = std::chrono::steady_clock::now();
    opts.callback = [&](const IterationRecord&) {
        const auto now = std::chrono::steady_clock::now();
        if (std::chrono::duration<double>(now - last).count() < kSignalCheckSeconds) return true;
        last = now;
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) interrupted = true;  // leaves the exception set
        return !interrupted;
    };
    AdmmResult<S> res;
    {
        py::gil_scoped_release nogil;
        const AdmmSolver<S> solver(opts);
        res = imp_in ? solver.solve(W, *imp_in, *imp_out) : solver.solve(W);
    }
    if (interrupted) throw py::error_already_set();
    res.throw_if_failed();
    return res;
}

struct CalibArgs {
    py::object X;
    py::object epochs, batch_size, lr, lr_scale, polish_rounds, refit_rounds;
    bool given() const { return !X.is_none(); }
};

/// The layer reconstruction of the CLI's --calib (cmd_factorize.cpp refine()), float32 only.
void refine(Result& out, const Eigen::Ref<const Matrix<float>>& W, const Matrix<float>& X, const cli::FactorizeFlags& flags,
            const cli::ReconstructionFlags& recon, const Matrix<float>& u_latent, const Matrix<float>& vt_latent)
{
    const LayerReconstructionOptions lo = recon.options(flags.seed);
    const bool latents = u_latent.size() != 0;
    LayerReconstructionResult<float> rec;
    double before = 0, after = 0;
    {
        py::gil_scoped_release nogil;
        const LayerParams<float> start =
            make_layer_params<float>(out.f32, W, latents ? &u_latent : nullptr, latents ? &vt_latent : nullptr);
        const Matrix<float> Y = dense_targets<float>(W, X);
        rec = reconstruct_layer<float>(start, X, Y, lo);
        before = output_relative_error<float>(W, out.f32.reconstruct(), X);
        out.f32 = rec.factorization;
        out.extra["rel_error_init"] = out.rel_error;
        out.rel_error = relative_error<float>(W, out.f32);
        after = output_relative_error<float>(W, out.f32.reconstruct(), X);
    }
    out.extra["out_rel_error_before"] = before;
    out.extra["out_rel_error"] = after;
    out.extra["tokens"] = X.rows();
    out.extra["epochs"] = lo.epochs;
    out.extra["recon_steps"] = rec.steps;
    out.extra["recon_best_epoch"] = rec.best_epoch;
    out.extra["flipped_u"] = rec.flipped_u;
    out.extra["flipped_v"] = rec.flipped_v;
}

/// fn(Ref<const Matrix<float>>): in place for column-major views, through a column-major copy
/// otherwise (the calibration refinement and dbf take a contiguous column-major W).
template <typename Derived, typename Fn>
void with_ref(const Eigen::MatrixBase<Derived>& W, Fn&& fn)
{
    if constexpr (std::is_same<typename Derived::Scalar, float>::value) {
        using Ref = Eigen::Ref<const Matrix<float>, 0, Eigen::OuterStride<>>;
        if constexpr (!(Derived::Flags & Eigen::RowMajorBit) && int(Derived::InnerStrideAtCompileTime) == 1) {
            fn(Ref(W.derived()));
        } else {
            const Matrix<float> copy = W;
            fn(Ref(copy));
        }
    }
}

template <typename S, typename Derived>
Result factorize_view(const Eigen::MatrixBase<Derived>& W, const std::string& method, cli::FactorizeFlags& flags,
                      const py::object& importance, const CalibArgs& calib, const cli::ReconstructionFlags& recon,
                      int trace_every)
{
    const Index m = W.rows(), n = W.cols();
    Result out;
    out.is_double = std::is_same<S, double>::value;
    out.method = method;
    if (method != "admm" && method != "dbf")
        value_error("factorize: method must be 'admm' or 'dbf' (the methods that produce a low-rank binary "
                    "factorization; sign, residual-K and svd are `nanoquant factorize` baselines only), got '" +
                    method + "'");
    if (!std::is_same<S, float>::value && (method == "dbf" || calib.given()))
        value_error("factorize: method='dbf' and calib need a float32 W (as `nanoquant factorize`), got float64; "
                    "pass W.astype(numpy.float32)");
    if (calib.given() && !importance.is_none())
        value_error("factorize: give calib (importance from calibration inputs) or importance, not both");
    if (trace_every < 0) value_error("factorize: trace_every must be >= 0, got " + std::to_string(trace_every));
    const OmpThreads omp_threads(flags.threads);  // as the CLI: baselines and reconstruction too
    Vector<S> imp_in, imp_out;
    Matrix<float> X;
    if (calib.given()) {
        X = to_matrix(calib.X, "calib");
        const std::string want = "expected tokens x n with n = " + std::to_string(n) + " (the columns of W, " +
                                 std::to_string(m) + " x " + std::to_string(n) + ")";
        if (X.cols() != n)
            value_error("factorize: calib has " + std::to_string(X.cols()) + " columns (shape (" +
                        std::to_string(X.rows()) + ", " + std::to_string(X.cols()) + ")); " + want);
        if (X.rows() == 0)
            value_error("factorize: calib holds 0 tokens (shape (0, " + std::to_string(n) + ")); at least one is needed");
        check_finite(X, "factorize", "calib");
        recon.options(flags.seed);  // option errors before any work
        Vector<float> ii;
        {
            py::gil_scoped_release nogil;
            ii = channel_importance<float>(X, 256);
        }
        imp_in = ii.template cast<S>();
        imp_out = Vector<S>::Ones(m);
    } else if (!importance.is_none()) {
        // importance = the input-channel importance (n), or a pair (importance_in, importance_out).
        if (py::isinstance<py::tuple>(importance) || py::isinstance<py::list>(importance)) {
            const py::sequence seq = importance;
            if (seq.size() != 2)
                value_error("factorize: importance must be an array of n values or a pair (importance_in, "
                            "importance_out), got a sequence of " + std::to_string(seq.size()));
            imp_in = to_vector<S>(seq[0], "importance[0]");
            imp_out = to_vector<S>(seq[1], "importance[1]");
        } else {
            imp_in = to_vector<S>(importance, "importance");
            imp_out = Vector<S>::Ones(m);
        }
    }
    const bool weighted = imp_in.size() != 0 || imp_out.size() != 0;
    if (method == "admm") {
        AdmmOptions<S> opts = flags.admm_options<S>(m, n);
        opts.keep_latents = calib.given();
        opts.trace_every = trace_every;
        const AdmmResult<S> r = solve_admm<S>(opts, W, weighted ? &imp_in : nullptr, weighted ? &imp_out : nullptr);
        if constexpr (std::is_same<S, float>::value) out.f32 = r.factorization;
        else out.f64 = r.factorization;
        out.status = to_string(r.status);
        out.iterations = r.iterations;
        out.seconds = r.seconds;
        out.rel_error = r.relative_error;
        out.primal_residual = r.primal_residual;
        out.dual_residual = r.dual_residual;
        out.trace = r.trace;
        out.solver = flags.to_json(r.factorization.rank());
        if constexpr (std::is_same<S, float>::value) {
            if (calib.given()) with_ref(W, [&](const Eigen::Ref<const Matrix<float>>& Wr) {
                refine(out, Wr, X, flags, recon, r.u_latent, r.vt_latent);
            });
        }
    } else if constexpr (std::is_same<S, float>::value) {
        // `nanoquant factorize --method dbf`: --schedule, --export and --refit-scales are usage errors.
        if (flags.schedule != "linear") value_error("factorize: schedule applies to method='admm' only");
        if (flags.export_mode != "two-scale") value_error("factorize: export applies to method='admm' only (dbf always exports three scales)");
        if (flags.refit_scales) value_error("factorize: refit_scales applies to method='admm' only");
        flags.admm_options<float>(m, n);  // validates bpw/rank/iters/threads, naming the argument
        DbfOptions<float> opts;
        opts.rank = flags.rank_given() ? flags.rank
                                       : rank_for_bpw(m, n, flags.target_bpw(), ScaleLayout::ThreeScales,
                                                      flags.fine_rank ? RankRule::fine() : RankRule::reference());
        opts.iterations = flags.iters;
        opts.seed = flags.seed;
        with_ref(W, [&](const Eigen::Ref<const Matrix<float>>& Wr) {
            DbfResult<float> r;
            const auto t0 = std::chrono::steady_clock::now();
            {
                py::gil_scoped_release nogil;
                r = dbf_factorize<float>(Wr, opts, imp_in, imp_out);
            }
            if (!std::isfinite(r.relative_error) || !r.factorization.reconstruct().allFinite())
                throw numerical_error("dbf_factorize: a NaN or infinity appeared after " + std::to_string(opts.iterations) +
                                      " iterations");
            out.f32 = r.factorization;
            out.status = "max-iterations";
            out.iterations = opts.iterations;
            out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            out.rel_error = r.relative_error;
            out.solver = {{"method", "dbf"}, {"rank", opts.rank}, {"iterations", opts.iterations}, {"seed", opts.seed},
                          {"export", "three-scale"}, {"rank_rule", flags.fine_rank ? "fine" : "reference"}};
            if (!flags.rank_given()) out.solver["target_bpw"] = flags.target_bpw();
            if (calib.given()) refine(out, Wr, X, flags, recon, Matrix<float>(), Matrix<float>());
        });
    }
    out.solver["method"] = method;
    return out;
}

Result factorize(const py::array& W, const py::object& bpw, const py::object& rank, const std::string& method, int iters,
                 const std::string& schedule, std::uint64_t seed, const std::string& export_mode, bool refit_scales,
                 const py::object& importance, const CalibArgs& calib, int threads, int trace_every, bool fine_rank)
{
    if (W.ndim() != 2)
        value_error("factorize: W must be a 2-D array (out x in), got a " + std::to_string(W.ndim()) + "-D array of shape " +
                    shape_text(W));
    const bool f32 = W.dtype().is(py::dtype::of<float>()), f64 = W.dtype().is(py::dtype::of<double>());
    if (!f32 && !f64)
        value_error("factorize: W must be float32 or float64, got " + dtype_text(W) + " (convert with W.astype(numpy.float32))");
    cli::FactorizeFlags flags;
    if (!bpw.is_none() && !rank.is_none()) value_error("factorize: give bpw or rank, not both");
    // (FactorizeFlags marks "not given" with -1, so the values are checked here first.)
    if (!bpw.is_none()) {
        flags.bpw = bpw.cast<double>();
        if (!(flags.bpw > 0 && std::isfinite(flags.bpw)))
            value_error("factorize: bpw must be a positive number, got " + py::repr(bpw).cast<std::string>());
    }
    if (!rank.is_none()) {
        flags.rank = rank.cast<Index>();
        if (flags.rank < 1) value_error("factorize: rank must be >= 1, got " + std::to_string(flags.rank));
    }
    flags.iters = iters;
    flags.seed = seed;
    flags.schedule = schedule;
    flags.export_mode = export_mode;
    flags.refit_scales = refit_scales;
    flags.threads = threads;
    flags.fine_rank = fine_rank;
    cli::ReconstructionFlags recon;
    auto set = [](const py::object& o, auto& field) {
        if (!o.is_none()) field = o.cast<std::remove_reference_t<decltype(field)>>();
    };
    set(calib.epochs, recon.opts.epochs);
    set(calib.batch_size, recon.opts.batch_size);
    set(calib.lr, recon.opts.lr_latent);
    set(calib.lr_scale, recon.opts.lr_scale);
    set(calib.polish_rounds, recon.opts.polish_rounds);
    set(calib.refit_rounds, recon.opts.refit_rounds);
    if (!calib.given())
        for (const py::object* o : {&calib.epochs, &calib.batch_size, &calib.lr, &calib.lr_scale, &calib.polish_rounds,
                                    &calib.refit_rounds})
            if (!o->is_none()) value_error("factorize: epochs, batch_size, lr, lr_scale, polish_rounds and refit_rounds need calib");
    try {
        if (f32)
            return with_matrix<float>(W, [&](const auto& view) {
                return factorize_view<float>(view, method, flags, importance, calib, recon, trace_every);
            });
        return with_matrix<double>(W, [&](const auto& view) {
            return factorize_view<double>(view, method, flags, importance, calib, recon, trace_every);
        });
    } catch (const nanoquant::invalid_argument& e) {
        throw nanoquant::invalid_argument(python_names(e.what()));
    }
}

py::dict trace_dict(const Result& r)
{
    const std::size_t k = r.trace.size();
    py::array_t<std::int32_t> it(k);
    py::array_t<double> err(k), primal(k), dual(k), rho(k), sec(k);
    for (std::size_t i = 0; i < k; ++i) {
        const IterationRecord& t = r.trace[i];
        it.mutable_at(i) = t.iteration;
        err.mutable_at(i) = t.objective;
        primal.mutable_at(i) = t.primal_residual;
        dual.mutable_at(i) = t.dual_residual;
        rho.mutable_at(i) = t.rho;
        sec.mutable_at(i) = t.seconds;
    }
    py::dict d;
    d["iteration"] = it;
    d["error"] = err;
    d["primal_residual"] = primal;
    d["dual_residual"] = dual;
    d["rho"] = rho;
    d["seconds"] = sec;
    return d;
}

void save(const Result& r, const std::string& path, const std::string& name, const std::string& scale_dtype)
{
    if (scale_dtype != "f16" && scale_dtype != "f32")
        value_error("Result.save: scale_dtype must be 'f16' or 'f32', got '" + scale_dtype + "'");
    const io::StDType dt = scale_dtype == "f16" ? io::StDType::F16 : io::StDType::F32;
    nlohmann::json info = {{"solver", r.solver}, {"rel_error", r.rel_error}, {"source", "python"}};
    io::SafetensorsWriter w;
    if (r.is_double) io::add_factorized_layer(w, name, r.f64, dt, info);
    else io::add_factorized_layer(w, name, r.f32, dt, info);
    py::gil_scoped_release nogil;
    w.write(path);
}

std::vector<std::string> layer_names(const std::string& path)
{
    const io::SafetensorsFile file(path);
    return io::factorized_layer_names(file);
}

Result load(const std::string& path, const py::object& name)
{
    const io::SafetensorsFile file(path);
    const std::vector<std::string> names = io::factorized_layer_names(file);
    std::string layer;
    if (name.is_none()) {
        if (names.size() != 1) {
            std::string list;
            for (const auto& s : names) list += (list.empty() ? "'" : ", '") + s + "'";
            value_error("load: " + path + " holds " + std::to_string(names.size()) +
                        " factorized layers; pass name= (one of " + (list.empty() ? "none" : list) + ")");
        }
        layer = names[0];
    } else {
        layer = name.cast<std::string>();
    }
    const io::FactorizedLayer<float> l = io::load_factorized_layer<float>(file, layer);
    Result r;
    r.f32 = l.f;
    r.status = "loaded";
    r.solver = l.info.contains("solver") ? l.info["solver"] : nlohmann::json::object();
    r.method = r.solver.value("method", std::string("admm"));
    r.rel_error = l.info.contains("rel_error") && l.info["rel_error"].is_number() ? l.info["rel_error"].get<double>()
                                                                                 : std::nan("");
    return r;
}

/// A packed layer with the kernels' options.
struct Layer {
    kernels::PackedLayer L;
};

kernels::GemvOptions gemv_options(const std::string& precision, int threads)
{
    kernels::GemvOptions o;
    if (precision == "float32") o.precision = kernels::Precision::Float32;
    else if (precision == "int8") o.precision = kernels::Precision::Int8;
    else value_error("PackedLayer: precision must be 'float32' or 'int8', got '" + precision + "'");
    if (threads < 0) value_error("PackedLayer: threads must be >= 0, got " + std::to_string(threads));
    o.num_threads = threads;
    return o;
}

/// y = Ŵ x for x of shape (n,) or X of shape (n, batch) (as reconstruct() @ x).
py::array apply_layer(const Layer& self, const py::array& x, const std::string& precision, int threads)
{
    const kernels::PackedLayer& L = self.L;
    const kernels::GemvOptions opt = gemv_options(precision, threads);
    if (x.ndim() == 1) {
        const auto xv = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(x);
        if (!xv) throw py::error_already_set();
        if (xv.shape(0) != L.n)
            value_error("PackedLayer: x has " + std::to_string(xv.shape(0)) + " entries, expected n = " + std::to_string(L.n));
        py::array_t<float> y(L.m);
        const float* xp = xv.data();
        float* yp = y.mutable_data();
        {
            py::gil_scoped_release nogil;
            kernels::gemv(L, xp, yp, opt);
        }
        return y;
    }
    if (x.ndim() != 2)
        value_error("PackedLayer: x must be a vector (n,) or a batch (n, tokens), got shape " + shape_text(x));
    // Tokens are the columns (reconstruct() @ X): X.T of a C-order (tokens, n) array is read in place.
    const auto X = py::array_t<float, py::array::f_style | py::array::forcecast>::ensure(x);
    if (!X) throw py::error_already_set();
    if (X.shape(0) != L.n)
        value_error("PackedLayer: X has " + std::to_string(X.shape(0)) + " rows, expected n = " + std::to_string(L.n) +
                    " (X is n x tokens; for tokens x n pass X.T)");
    const Index batch = X.shape(1);
    py::array_t<float, py::array::f_style> Y({py::ssize_t(L.m), py::ssize_t(batch)});
    const float* xp = X.data();
    float* yp = Y.mutable_data();
    {
        py::gil_scoped_release nogil;
        kernels::gemm(L, xp, L.n, batch, yp, L.m, opt);
    }
    return Y;
}

/// Seconds per call of `calls` C++ GEMV calls on x (the baseline of bench/python_overhead.py).
double time_gemv_cpp(const Layer& self, const py::array_t<float, py::array::c_style | py::array::forcecast>& x, int calls,
                     const std::string& precision, int threads)
{
    const kernels::GemvOptions opt = gemv_options(precision, threads);
    if (x.ndim() != 1 || x.shape(0) != self.L.n) value_error("_time_gemv_cpp: x must have n entries");
    if (calls < 1) value_error("_time_gemv_cpp: calls must be >= 1");
    std::vector<float> y(std::size_t(self.L.m));
    const float* xp = x.data();
    py::gil_scoped_release nogil;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) kernels::gemv(self.L, xp, y.data(), opt);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
}

}  // namespace

PYBIND11_MODULE(nanoquant, mod)
{
    mod.doc() = "nanoquant: sub-1-bit low-rank binary factorization of weight matrices (docs/python.md)";
    mod.attr("__version__") = NANOQUANT_VERSION_STRING;

    // nanoquant::invalid_argument -> ValueError; numerical_error, io_error -> RuntimeError.
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const nanoquant::invalid_argument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const nanoquant::numerical_error& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        } catch (const nanoquant::io_error& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        }
    });

    py::class_<Layer>(mod, "PackedLayer", "A factorized layer in the packed inference layout (Result.pack())")
        .def("__call__", &apply_layer, py::arg("x"), py::kw_only(), py::arg("precision") = "float32",
             py::arg("threads") = 1,
             "y = W_hat @ x for x of shape (n,) or (n, tokens); float32 result. precision 'float32' (exact up to "
             "summation order) or 'int8' (int8 activations, ~1-2 % further error); threads: 0 = all, 1 = serial")
        .def_property_readonly("shape", [](const Layer& l) { return py::make_tuple(l.L.m, l.L.n); })
        .def_property_readonly("rank", [](const Layer& l) { return l.L.r; })
        .def_property_readonly("sign_bytes", [](const Layer& l) { return l.L.sign_bytes(); })
        .def_property_readonly_static("kernel", [](py::object) { return std::string(kernels::kernel_target_name()); })
        .def("_time_gemv_cpp", &time_gemv_cpp, py::arg("x"), py::arg("calls"), py::arg("precision") = "float32",
             py::arg("threads") = 1, "seconds per call of a C++ loop of GEMV calls (benchmark baseline)")
        .def("__repr__", [](const Layer& l) {
            return "<nanoquant.PackedLayer " + std::to_string(l.L.m) + "x" + std::to_string(l.L.n) + " rank " +
                   std::to_string(l.L.r) + ", kernel " + kernels::kernel_target_name() + ">";
        });

    py::class_<Result>(mod, "Result", "A low-rank binary factorization W_hat = diag(s_out) U diag(s_mid) V^T diag(s_in)")
        .def_property_readonly("U", [](const Result& r) { return sign_array(r.u(), false); }, "U, m x rank, int8 +-1")
        .def_property_readonly("V", [](const Result& r) { return sign_array(r.vt(), true); }, "V, n x rank, int8 +-1")
        .def_property_readonly("s_out", [](const Result& r) {
            return r.is_double ? vector_array(r.f64.s_out) : vector_array(r.f32.s_out); })
        .def_property_readonly("s_mid", [](const Result& r) -> py::object {
            if (r.is_double) return r.f64.has_mid_scale() ? py::object(vector_array(r.f64.s_mid)) : py::none();
            return r.f32.has_mid_scale() ? py::object(vector_array(r.f32.s_mid)) : py::none();
        }, "per-rank scales (three-scale export), None for two scales")
        .def_property_readonly("s_in", [](const Result& r) {
            return r.is_double ? vector_array(r.f64.s_in) : vector_array(r.f32.s_in); })
        .def_property_readonly("shape", [](const Result& r) { return py::make_tuple(r.rows(), r.cols()); })
        .def_property_readonly("dtype", [](const Result& r) {
            return r.is_double ? py::dtype::of<double>() : py::dtype::of<float>(); })
        .def_property_readonly("rank", &Result::rank)
        .def_property_readonly("bpw", &Result::bpw, "effective bits per weight (signs 1 bit, scales 16 bits)")
        .def_readonly("rel_error", &Result::rel_error, "||W - W_hat||_F / ||W||_F")
        .def_readonly("status", &Result::status, "converged, max-iterations, stalled or loaded")
        .def_readonly("method", &Result::method)
        .def_readonly("iterations", &Result::iterations)
        .def_readonly("seconds", &Result::seconds)
        .def_readonly("primal_residual", &Result::primal_residual)
        .def_readonly("dual_residual", &Result::dual_residual)
        .def_property_readonly("trace", &trace_dict,
             "dict of numpy arrays: iteration, error (squared weighted objective), primal_residual, dual_residual, rho, seconds")
        .def_property_readonly("info", [](const Result& r) {
            nlohmann::json j = r.extra;
            j["solver"] = r.solver;
            return json_to_py(j);
        }, "the solver options (as recorded in files) and calibration facts")
        .def("reconstruct", [](const Result& r) {
            if (r.is_double) return matrix_array<double>(r.f64.reconstruct());
            return matrix_array<float>(r.f32.reconstruct());
        }, "the dense m x n W_hat")
        .def("save", &save, py::arg("path"), py::kw_only(), py::arg("name") = "layer", py::arg("scale_dtype") = "f16",
             "write the factorized-layer safetensors format (docs/format.md)")
        .def("pack", [](const Result& r) {
            Layer l;
            l.L = r.is_double ? kernels::pack_layer(r.f64) : kernels::pack_layer(r.f32);
            return l;
        }, "the packed inference layout (scales rounded to float32)")
        .def("__repr__", [](const Result& r) {
            return "<nanoquant.Result " + std::to_string(r.rows()) + "x" + std::to_string(r.cols()) + " rank " +
                   std::to_string(r.rank()) + ", " + std::to_string(r.bpw()) + " bpw, rel_error " +
                   std::to_string(r.rel_error) + ", " + r.status + ">";
        });

    mod.def("factorize",
            [](const py::array& W, const py::object& bpw, const py::object& rank, const std::string& method, int iters,
               const std::string& schedule, std::uint64_t seed, const std::string& export_mode, bool refit_scales,
               const py::object& importance, const py::object& calib, int threads, int trace_every, bool fine_rank,
               py::object epochs, py::object batch_size, py::object lr, py::object lr_scale, py::object polish_rounds,
               py::object refit_rounds) {
                CalibArgs c{calib, epochs, batch_size, lr, lr_scale, polish_rounds, refit_rounds};
                return factorize(W, bpw, rank, method, iters, schedule, seed, export_mode, refit_scales, importance, c,
                                 threads, trace_every, fine_rank);
            },
            py::arg("W").noconvert(), py::kw_only(), py::arg("bpw") = py::none(), py::arg("rank") = py::none(),
            py::arg("method") = "admm", py::arg("iters") = 400, py::arg("schedule") = "linear", py::arg("seed") = 0,
            py::arg("export") = "two-scale", py::arg("refit_scales") = false, py::arg("importance") = py::none(),
            py::arg("calib") = py::none(), py::arg("threads") = 1, py::arg("trace_every") = 1,
            py::arg("fine_rank") = false, py::arg("epochs") = py::none(), py::arg("batch_size") = py::none(),
            py::arg("lr") = py::none(), py::arg("lr_scale") = py::none(), py::arg("polish_rounds") = py::none(),
            py::arg("refit_rounds") = py::none(),
            "Factorize the 2-D float32/float64 array W (out x in) as `nanoquant factorize` does (docs/python.md).");

    mod.def("load", &load, py::arg("path"), py::arg("name") = py::none(),
            "Load a factorized layer from the safetensors format of Result.save / `nanoquant factorize -o`");
    mod.def("layer_names", &layer_names, py::arg("path"), "Names of the factorized layers in a file");
    mod.def("rank_for_bpw",
            [](Index m, Index n, double bpw, const std::string& layout, bool fine_rank) {
                const ScaleLayout l = parse_export_mode(layout) == ExportMode::ThreeScale ? ScaleLayout::ThreeScales
                                                                                          : ScaleLayout::TwoScales;
                return rank_for_bpw(m, n, bpw, l, fine_rank ? RankRule::fine() : RankRule::reference());
            },
            py::arg("m"), py::arg("n"), py::arg("bpw"), py::kw_only(), py::arg("export") = "two-scale",
            py::arg("fine_rank") = false, "The rank of an m x n factorization for a bit budget (the CLI's rule)");
    mod.def("bpw_for_rank",
            [](Index m, Index n, Index r, const std::string& layout) {
                const ScaleLayout l = parse_export_mode(layout) == ExportMode::ThreeScale ? ScaleLayout::ThreeScales
                                                                                          : ScaleLayout::TwoScales;
                return bpw_for_rank(m, n, r, l);
            },
            py::arg("m"), py::arg("n"), py::arg("rank"), py::kw_only(), py::arg("export") = "two-scale",
            "Effective bits per weight of an m x n factorization of rank r");
    mod.def("kernel", []() { return std::string(kernels::kernel_target_name()); }, "the active kernel variant");
}
