// SPDX-License-Identifier: Apache-2.0
// `nanoquant factorize W.npy | FILE.safetensors:TENSOR`: factorizes one weight matrix with one of
// the methods below, prints a summary (or one JSON object with --json) and optionally writes the
// factorized layer (-o, the format of docs/format.md).
//
//   admm        NanoQuant ADMM (solvers/), rank from --bpw or --rank       -o: yes   --calib: yes
//   dbf         DBF ADMM variant (baselines/dbf.hpp), three scales, same rank rule   yes   yes
//   sign        OneBit/SVID sign binarization, ~1 bpw (baselines/residual_binary.hpp)  no   no
//   residual-K  K full-size residual sign paths, ~K bpw                             no   no
//   svd         truncated SVD in 16-bit factors, largest rank within --bpw          no   no
//
// The file format holds low-rank binary factorizations only, so -o is a usage error for sign,
// residual-K and svd. --calib X.npy runs the layer reconstruction (refine/layer_reconstruction.hpp)
// from the method's result against Y = X Wᵀ; it needs a low-rank binary factorization too.
//
// Extending: a new method adds its name to kMethods, a case in parse_method() and run_method(),
// and its flag rules in check_method_flags().
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <nanoquant/baselines/dbf.hpp>
#include <nanoquant/baselines/residual_binary.hpp>
#include <nanoquant/baselines/svd16.hpp>
#include <nanoquant/core/factorization.hpp>
#include <nanoquant/io/factorized_file.hpp>
#include <nanoquant/io/mapped_file.hpp>
#include <nanoquant/io/npy.hpp>
#include <nanoquant/io/weights.hpp>
#include <nanoquant/refine/importance.hpp>
#include <nanoquant/refine/layer_reconstruction.hpp>
#include <nanoquant/solvers/admm_solver.hpp>

#include "command.hpp"
#include "factorize_options.hpp"

namespace {

using namespace nanoquant;

const char* const kMethods = "admm, dbf, sign, residual-K (K = 1..8, e.g. residual-2) or svd";
constexpr Index kMaxPaths = 8;

enum class Method { Admm, Dbf, Residual, Svd };

/// A parsed --method value.
struct MethodSpec {
    Method kind = Method::Admm;
    Index paths = 0;  ///< sign paths of sign (1) and residual-K (K)
    /// True when the result is a low-rank binary Factorization (what -o and --calib need).
    bool factorization() const { return kind == Method::Admm || kind == Method::Dbf; }
};

MethodSpec parse_method(const std::string& s)
{
    MethodSpec m;
    if (s == "admm") return m;
    if (s == "dbf") {
        m.kind = Method::Dbf;
        return m;
    }
    if (s == "svd") {
        m.kind = Method::Svd;
        return m;
    }
    if (s == "sign") {
        m.kind = Method::Residual;
        m.paths = 1;
        return m;
    }
    const std::string prefix = "residual-";
    if (s.compare(0, prefix.size(), prefix) == 0 && s.size() > prefix.size() && s.size() <= prefix.size() + 2 &&
        s.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
        m.kind = Method::Residual;
        m.paths = std::stol(s.substr(prefix.size()));
        cli::usage_check(m.paths >= 1 && m.paths <= kMaxPaths,
                         "--method " + s + ": K must be in [1, " + std::to_string(kMaxPaths) + "], got " +
                             std::to_string(m.paths));
        return m;
    }
    throw nanoquant::invalid_argument("--method: unknown method '" + s + "' (expected " + kMethods + ")");
}

struct FactorizeArgs {
    std::string input;
    std::string output;
    std::string name;
    std::string method = "admm";
    std::string calib;
    bool json = false;
    cli::FactorizeFlags flags;
    cli::ReconstructionFlags recon;
    CLI::App* cmd = nullptr;  ///< the subcommand, to ask which flags were given

    bool given(const std::string& flag) const { return cmd->count(flag) > 0; }
};

/// The outcome of a method, whatever it is.
struct MethodResult {
    bool has_factorization = false;
    Factorization<float> f;             ///< admm, dbf
    Matrix<float> u_latent, vt_latent;  ///< admm with --calib: the solver's latents
    Matrix<float> w_hat;                ///< sign, residual-K, svd: the dense approximation
    Index rank = -1;                    ///< -1 for full-size sign paths (no rank)
    double bpw = 0;
    std::size_t storage_bytes = 0;
    std::string status;
    int iterations = 0;
    double rel_error = 0;
    nlohmann::json extra = nlohmann::json::object();  ///< method-specific facts for --json / metadata
    nlohmann::json solver = nlohmann::json::object();  ///< the options as recorded with -o
};

std::string num(double v)
{
    char b[64];
    std::snprintf(b, sizeof b, "%.4g", v);
    return b;
}

/// Usage errors for flags the chosen method cannot honour (nothing is silently ignored).
void check_method_flags(const FactorizeArgs& a, const MethodSpec& ms, Index m, Index n)
{
    a.flags.validate();  // flag values first: --bpw -1, --rank 0, --iters 0, ... (names the flag)
    auto only = [&](const char* flag, const char* methods) {
        cli::usage_check(!a.given(flag), std::string(flag) + " applies to --method " + methods + " only, not to --method " +
                                             a.method);
    };
    if (ms.kind != Method::Admm) {
        only("--schedule", "admm");
        only("--refit-scales", "admm");
        only("--export", ms.kind == Method::Dbf ? "admm (dbf always exports three scales)" : "admm");
    }
    if (!ms.factorization()) {
        only("--iters", "admm and dbf");
        only("--seed", "admm and dbf");
        only("--fine-rank", "admm and dbf");
        only("--scale-dtype", "admm and dbf (it is the scale dtype of -o)");
        cli::usage_check(a.output.empty(),
                         "-o writes a low-rank binary factorization (docs/format.md), which --method " + a.method +
                             (ms.kind == Method::Svd ? " does not produce (16-bit factors L R)"
                                                     : " does not produce (full-size sign paths)") +
                             "; drop -o or use --method admm or dbf");
        cli::usage_check(a.calib.empty(), "--calib refines a low-rank binary factorization (--method admm or dbf); --method " +
                                              a.method + " is not supported");
    }
    if (ms.kind == Method::Residual) {
        const double K = double(ms.paths);
        const double actual = K + 16.0 * K * double(m + n) / (double(m) * double(n));
        cli::usage_check(!a.flags.rank_given(), "--rank " + std::to_string(a.flags.rank) + " does not apply to --method " +
                                                    a.method + ": it stores full-size sign matrices, not a rank");
        cli::usage_check(!a.flags.bpw_given() || (a.flags.bpw >= K && a.flags.bpw < K + 1),
                         "--bpw " + num(a.flags.bpw) + " does not fit --method " + a.method + ": it stores " +
                             std::to_string(ms.paths) + " sign bit" + (ms.paths == 1 ? "" : "s") +
                             " per weight plus 16-bit scales (" + num(actual) + " bpw at " + std::to_string(m) + " x " +
                             std::to_string(n) + "); give --bpw in [" + num(K) + ", " + num(K + 1) + ") or leave it out");
    }
    if (ms.kind == Method::Svd) {
        const Index kmax = std::min(m, n);
        if (a.flags.rank_given()) {
            cli::usage_check(a.flags.rank >= 1 && a.flags.rank <= kmax,
                             "--rank must be in [1, min(m, n)] = [1, " + std::to_string(kmax) + "], got " +
                                 std::to_string(a.flags.rank));
        } else {
            const double b = a.flags.target_bpw();
            cli::usage_check(b > 0 && std::isfinite(b), "--bpw must be a positive number, got " + num(b));
            const double rank1 = 16.0 * double(m + n) / (double(m) * double(n));
            cli::usage_check(b >= rank1, "--bpw " + num(b) + " is below the smallest svd budget: rank 1 in 16-bit factors takes " +
                                             num(rank1) + " bpw at " + std::to_string(m) + " x " + std::to_string(n));
        }
    }
    if (a.calib.empty())
        for (const char* const* f = cli::ReconstructionFlags::names(); *f; ++f)
            cli::usage_check(!a.given(*f), std::string(*f) + " needs --calib X.npy");
}

double rel_error_dense(const Matrix<float>& W, const Matrix<float>& What)
{
    const Matrix<double> Wd = W.cast<double>();
    return (Wd - What.cast<double>()).norm() / std::max(Wd.norm(), 1e-300);
}

/// The place where the factorization method is chosen. `imp_in`: input-channel importance
/// (from --calib; empty = ones), used by the methods that accept it.
MethodResult run_method(const FactorizeArgs& a, const MethodSpec& ms, const Matrix<float>& W, const Vector<float>& imp_in)
{
    const Index m = W.rows(), n = W.cols();
    const Vector<float> imp_out = imp_in.size() ? Vector<float>(Vector<float>::Ones(m)) : Vector<float>();
    MethodResult out;
    switch (ms.kind) {
    case Method::Admm: {
        AdmmOptions<float> opts = a.flags.admm_options<float>(m, n);
        opts.keep_latents = !a.calib.empty();
        const AdmmResult<float> r = imp_in.size() ? AdmmSolver<float>(opts).solve(W, imp_in, imp_out)
                                                  : AdmmSolver<float>(opts).solve(W);
        r.throw_if_failed();
        out.has_factorization = true;
        out.f = r.factorization;
        out.u_latent = r.u_latent;
        out.vt_latent = r.vt_latent;
        out.status = to_string(r.status);
        out.iterations = r.iterations;
        out.rel_error = r.relative_error;
        out.extra = {{"export", a.flags.export_mode},
                     {"schedule", a.flags.schedule},
                     {"refit_scales", a.flags.refit_scales},
                     {"seed", a.flags.seed}};
        out.solver = a.flags.to_json(out.f.rank());
        break;
    }
    case Method::Dbf: {
        a.flags.admm_options<float>(m, n);  // validates --bpw/--rank/--iters/--threads, naming the flag
        DbfOptions<float> opts;
        opts.rank = a.flags.rank_given()
                        ? a.flags.rank
                        : rank_for_bpw(m, n, a.flags.target_bpw(), ScaleLayout::ThreeScales,
                                       a.flags.fine_rank ? RankRule::fine() : RankRule::reference());
        opts.iterations = a.flags.iters;
        opts.seed = a.flags.seed;
        const DbfResult<float> r = dbf_factorize<float>(W, opts, imp_in, imp_out);
        // The scales first: reconstruct() rejects non-finite scales as a bad argument (exit code 2).
        const auto& fz = r.factorization;
        if (!std::isfinite(r.relative_error) || !fz.s_out.allFinite() || !fz.s_in.allFinite() ||
            (fz.has_mid_scale() && !fz.s_mid.allFinite()) || !fz.reconstruct().allFinite())
            throw numerical_error("dbf_factorize: a NaN or infinity appeared after " + std::to_string(opts.iterations) +
                                  " iterations");
        out.has_factorization = true;
        out.f = r.factorization;
        out.status = "max-iterations";  // DBF runs a fixed number of iterations
        out.iterations = opts.iterations;
        out.rel_error = r.relative_error;
        out.extra = {{"export", "three-scale"}, {"seed", a.flags.seed}};
        out.solver = {{"method", "dbf"},
                      {"rank", opts.rank},
                      {"iterations", opts.iterations},
                      {"seed", opts.seed},
                      {"export", "three-scale"},
                      {"rank_rule", a.flags.fine_rank ? "fine" : "reference"}};
        if (!a.flags.rank_given()) out.solver["target_bpw"] = a.flags.target_bpw();
        break;
    }
    case Method::Residual: {
        ResidualBinaryOptions o;
        o.paths = ms.paths;
        if (ms.paths == 1) o.refit_rounds = 0;  // the refit of one path is the same rank-1 fit
        const ResidualBinary<float> rb = residual_binarize<float>(W, o);
        out.w_hat = rb.reconstruct();
        out.bpw = rb.bits_per_weight();
        out.storage_bytes = rb.storage_bytes();
        out.status = "done";
        out.iterations = int(o.refit_rounds);
        out.rel_error = rel_error_dense(W, out.w_hat);
        out.extra = {{"paths", ms.paths}, {"refit_rounds", o.refit_rounds}};
        break;
    }
    case Method::Svd: {
        const Index k = a.flags.rank_given() ? a.flags.rank : svd16_rank_for_bpw(m, n, a.flags.target_bpw());
        const LowRank16<float> lr = svd16<float>(W, k);
        out.w_hat = lr.reconstruct();
        out.rank = k;
        out.bpw = lr.bits_per_weight();
        out.storage_bytes = 2u * std::size_t(k) * std::size_t(m + n);
        out.status = "done";
        out.iterations = 0;
        out.rel_error = rel_error_dense(W, out.w_hat);
        out.extra = {{"factor_dtype", "f16"}};
        break;
    }
    }
    if (out.has_factorization) {
        out.rank = out.f.rank();
        out.bpw = out.f.bits_per_weight();
        out.storage_bytes = out.f.storage_bytes();
    }
    return out;
}

/// Reads the calibration inputs X (tokens × n) of --calib; io_error (exit 1) naming the file and
/// the numbers on a wrong shape, 0 tokens or a NaN/Inf.
Matrix<float> load_calibration(const std::string& path, const Matrix<float>& W, const std::string& w_source)
{
    cli::usage_check(io::ends_with(path, ".npy"), "--calib expects a .npy file (tokens x n), got '" + path + "'");
    const io::MappedFile file(path);
    const io::NpyHeader h = io::parse_npy_header(file.data(), file.size(), path);
    const std::string want = "expected tokens x n with n = " + std::to_string(W.cols()) + " (the columns of " + w_source +
                             ", " + std::to_string(W.rows()) + " x " + std::to_string(W.cols()) + ")";
    if (h.shape.size() != 2)
        ::nanoquant::detail::raise_io_error(path + ": calibration inputs are 1-D with shape (" + std::to_string(h.shape[0]) +
                                            ",); " + want);
    if (h.cols() != W.cols())
        ::nanoquant::detail::raise_io_error(path + ": calibration inputs have " + std::to_string(h.cols()) +
                                            " columns (shape (" + std::to_string(h.rows()) + ", " +
                                            std::to_string(h.cols()) + ")); " + want);
    if (h.rows() == 0)
        ::nanoquant::detail::raise_io_error(path + ": calibration inputs hold 0 tokens (shape (0, " +
                                            std::to_string(h.cols()) + ")); at least one is needed");
    Matrix<float> X = io::decode_npy<float>(file.data(), file.size(), path);
    const NonFinite bad = find_non_finite(X);
    if (bad.count != 0) throw nanoquant::io_error(path + ": calibration inputs: " + bad.describe("X"));
    return X;
}

/// Layer reconstruction of `r` (admm or dbf) on X; fills the --json fields and replaces r.f.
void refine(const FactorizeArgs& a, const Matrix<float>& W, const Matrix<float>& X, MethodResult& r, nlohmann::json& j)
{
    LayerReconstructionOptions lo = a.recon.options(a.flags.seed);
    lo.num_threads = a.flags.threads;
    const bool latents = r.u_latent.size() != 0;
    const LayerParams<float> start =
        make_layer_params<float>(r.f, W, latents ? &r.u_latent : nullptr, latents ? &r.vt_latent : nullptr);
    const Matrix<float> Y = dense_targets<float>(W, X);
    const LayerReconstructionResult<float> rec = reconstruct_layer<float>(start, X, Y, lo);
    j["out_rel_error_before"] = output_relative_error<float>(W, r.f.reconstruct(), X);
    j["rel_error_init"] = r.rel_error;
    r.f = rec.factorization;
    r.rel_error = relative_error<float>(W, r.f);
    j["out_rel_error"] = output_relative_error<float>(W, r.f.reconstruct(), X);
    j["calib"] = a.calib;
    j["tokens"] = X.rows();
    j["epochs"] = lo.epochs;
    j["batch_size"] = lo.batch_size;
    j["lr"] = lo.lr_latent;
    j["lr_scale"] = lo.lr_scale;
    j["recon_steps"] = rec.steps;
    j["recon_best_epoch"] = rec.best_epoch;
    j["recon_seconds"] = rec.seconds;
    j["flipped_u"] = rec.flipped_u;
    j["flipped_v"] = rec.flipped_v;
}

std::string default_layer_name(const std::string& input)
{
    const std::size_t colon = input.find_last_of(':');
    if (colon != std::string::npos && !io::ends_with(input, ".npy")) return input.substr(colon + 1);
    std::string base = input.substr(input.find_last_of('/') == std::string::npos ? 0 : input.find_last_of('/') + 1);
    const std::size_t dot = base.find_last_of('.');
    return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

int run(const FactorizeArgs& a)
{
    const MethodSpec ms = parse_method(a.method);
    const Matrix<float> W = io::load_weight<float>(a.input);
    cli::check_weight_finite(W, a.input);
    check_method_flags(a, ms, W.rows(), W.cols());
    if (!a.calib.empty()) a.recon.options(a.flags.seed);  // usage errors before any work
    const Matrix<float> X = a.calib.empty() ? Matrix<float>() : load_calibration(a.calib, W, a.input);
    cli::usage_check(a.flags.threads >= 0, "--threads must be >= 0, got " + std::to_string(a.flags.threads));
#ifdef _OPENMP
    // The command's one process-wide setting, made once before any work: the OpenMP default of the
    // baselines (sign, residual, svd), which take no thread count. The solver and the reconstruction
    // get --threads explicitly (AdmmOptions::num_threads, LayerReconstructionOptions::num_threads).
    if (a.flags.threads > 0) omp_set_num_threads(a.flags.threads);
#endif

    const auto t0 = std::chrono::steady_clock::now();
    // With calibration inputs the initialization is importance-weighted (i_norm of X, as in the method).
    const Vector<float> imp_in = X.size() ? channel_importance<float>(X, 256) : Vector<float>();
    MethodResult r = run_method(a, ms, W, imp_in);
    nlohmann::json j;
    if (!a.calib.empty()) refine(a, W, X, r, j);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    j["status"] = r.status;
    j["input"] = a.input;
    j["method"] = a.method;
    j["rows"] = W.rows();
    j["cols"] = W.cols();
    j["rank"] = r.rank >= 0 ? nlohmann::json(r.rank) : nlohmann::json(nullptr);
    j["bpw"] = r.bpw;
    const bool bpw_used = ms.kind == Method::Residual ? a.flags.bpw_given() : !a.flags.rank_given();
    if (bpw_used) j["target_bpw"] = a.flags.target_bpw();
    j["iterations"] = r.iterations;
    j["seconds"] = seconds;
    j["rel_error"] = r.rel_error;
    j["storage_bytes"] = r.storage_bytes;
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) j[it.key()] = it.value();

    if (!a.output.empty()) {
        const std::string name = a.name.empty() ? default_layer_name(a.input) : a.name;
        nlohmann::json info = {{"solver", r.solver}, {"rel_error", r.rel_error}, {"source", a.input}};
        info["solver"]["method"] = a.method;
        if (!a.calib.empty())
            info["reconstruction"] = {{"calib", a.calib},
                                      {"tokens", X.rows()},
                                      {"epochs", j["epochs"]},
                                      {"out_rel_error_before", j["out_rel_error_before"]},
                                      {"out_rel_error", j["out_rel_error"]}};
        io::SafetensorsWriter w;
        io::add_factorized_layer(w, name, r.f, a.flags.scale_st_dtype(), info);
        w.write(a.output);
        // What a reader of the file gets (scales rounded to the stored dtype).
        const io::SafetensorsFile back(a.output);
        const auto loaded = io::load_factorized_layer<float>(back, name);
        j["output"] = a.output;
        j["layer"] = name;
        j["rel_error_stored"] = relative_error<float>(W, loaded.f);
        j["file_bytes"] = back.size();
    }

    if (a.json) {
        std::printf("%s\n", j.dump().c_str());
        return cli::kSuccess;
    }
    const long long m = W.rows(), n = W.cols();
    switch (ms.kind) {
    case Method::Admm:
        std::printf("%s: %lld x %lld, rank %lld, %.4f bpw (admm, %s schedule, %s%s)\n", a.input.c_str(), m, n,
                    static_cast<long long>(r.rank), r.bpw, a.flags.schedule.c_str(), a.flags.export_mode.c_str(),
                    a.flags.refit_scales ? ", refit scales" : "");
        break;
    case Method::Dbf:
        std::printf("%s: %lld x %lld, rank %lld, %.4f bpw (dbf, three-scale)\n", a.input.c_str(), m, n,
                    static_cast<long long>(r.rank), r.bpw);
        break;
    case Method::Residual:
        std::printf("%s: %lld x %lld, %lld full-size sign path%s, %.4f bpw (%s)\n", a.input.c_str(), m, n,
                    static_cast<long long>(ms.paths), ms.paths == 1 ? "" : "s", r.bpw, a.method.c_str());
        break;
    case Method::Svd:
        std::printf("%s: %lld x %lld, rank %lld in 16-bit factors, %.4f bpw (svd)\n", a.input.c_str(), m, n,
                    static_cast<long long>(r.rank), r.bpw);
        break;
    }
    if (ms.factorization())
        std::printf("  rel_error %.6f after %d iterations in %.2f s (status %s)\n", r.rel_error, r.iterations, seconds,
                    r.status.c_str());
    else if (ms.kind == Method::Residual && r.iterations > 0)
        std::printf("  rel_error %.6f after %d scale refit rounds in %.2f s\n", r.rel_error, r.iterations, seconds);
    else
        std::printf("  rel_error %.6f in %.2f s\n", r.rel_error, seconds);
    if (!a.calib.empty())
        std::printf("  calib %s (%lld tokens): output rel_error %.6f -> %.6f after %lld epochs (weight rel_error %.6f -> %.6f)\n",
                    a.calib.c_str(), static_cast<long long>(X.rows()), j["out_rel_error_before"].get<double>(),
                    j["out_rel_error"].get<double>(), static_cast<long long>(j["epochs"].get<Index>()),
                    j["rel_error_init"].get<double>(), r.rel_error);
    if (!a.output.empty())
        std::printf("  wrote %s (layer '%s', %zu bytes, stored rel_error %.6f)\n", a.output.c_str(),
                    j["layer"].get<std::string>().c_str(), j["file_bytes"].get<std::size_t>(),
                    j["rel_error_stored"].get<double>());
    return cli::kSuccess;
}

nanoquant::cli::Registrar reg{"factorize", [](CLI::App& app) {
    auto args = std::make_shared<FactorizeArgs>();
    auto* cmd = app.add_subcommand("factorize", "Factorize one weight matrix (W.npy or FILE.safetensors:TENSOR)");
    args->cmd = cmd;
    cmd->add_option("input", args->input, "W.npy, FILE.safetensors:TENSOR or INDEX.json:TENSOR")->required();
    cmd->add_option("-o,--output", args->output,
                    "Write the factorized layer here (safetensors, docs/format.md); --method admm and dbf only "
                    "(the format holds low-rank binary factorizations, not sign/residual-K/svd)");
    cmd->add_option("--name", args->name, "Layer name in the output file (default: tensor name or file stem)");
    cmd->add_option("--method", args->method, std::string("Method: ") + kMethods + " (default admm; see below)");
    cmd->add_option("--calib", args->calib,
                    "Calibration inputs X.npy (tokens x n): refine the admm/dbf result by layer reconstruction "
                    "(see below)");
    cmd->add_flag("--json", args->json, "Print one JSON object instead of the summary");
    args->flags.add_to(cmd, 1.0);
    args->recon.add_to(cmd);
    cmd->footer(
        "Methods (--method):\n"
        "  admm        NanoQuant ADMM; rank from --bpw (multiples of 32, --fine-rank: of 1) or --rank\n"
        "  dbf         DBF ADMM variant (three scales), same rank rule; uses --iters and --seed\n"
        "  sign        sign(W) with rank-1 scales: 1 bit per weight + 16-bit scales; --bpw, if given, in [1, 2)\n"
        "  residual-K  K residual sign paths (K = 1..8): K bits per weight + scales; --bpw in [K, K+1)\n"
        "  svd         truncated SVD in float16 factors: the largest rank that fits --bpw, or --rank\n"
        "Flags a method cannot use (--rank with sign, --schedule with dbf, --iters with svd, ...) are usage\n"
        "errors (exit code 2).\n"
        "-o writes the factorized-layer format of docs/format.md, which holds low-rank binary factorizations:\n"
        "admm and dbf only; with sign, residual-K or svd it is a usage error.\n"
        "--calib X.npy (tokens x n, float32/float16/float64; admm and dbf only): the initialization is weighted\n"
        "by X's input-channel importance, then refined by layer reconstruction against Y = X W^T (--epochs,\n"
        "--batch-size, --lr, --lr-scale, --polish-rounds, --refit-rounds; --seed also seeds the shuffling).\n"
        "-o writes the refined layer; --json adds out_rel_error and out_rel_error_before (the initialization),\n"
        "both ||X (W - W_hat)^T||_F / ||X W^T||_F on X, and rel_error_init.");
    return [args]() { return run(*args); };
}};

}  // namespace
