// SPDX-License-Identifier: Apache-2.0
// Factorizes a real weight matrix with the NanoQuant ADMM solver and writes its convergence trace
// as CSV (one row per iteration): iteration, objective, primal_residual, dual_residual, rho,
// seconds. A summary goes to stderr.
//
//   admm_convergence [W.npy] [bpw] [iterations] [out.csv] [two-scale|three-scale]
//
// Defaults: tests/data/use_lite_L0_attn_q.npy, 1.0 bpw (reference rank rule), 400 iterations,
// CSV on stdout, two-scale export. scripts/plot_convergence.sh turns the CSV into
// docs/img/admm_convergence.png.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include <nanoquant/core/bit_budget.hpp>
#include <nanoquant/io/npy.hpp>
#include <nanoquant/solvers/admm_solver.hpp>

int main(int argc, char** argv)
{
    using namespace nanoquant;
    try {
        const std::string path = argc > 1 ? argv[1] : std::string(NANOQUANT_DATA_DIR) + "/use_lite_L0_attn_q.npy";
        const double bpw = argc > 2 ? std::atof(argv[2]) : 1.0;
        const int iterations = argc > 3 ? std::atoi(argv[3]) : 400;
        const std::string out = argc > 4 ? argv[4] : "-";
        const Matrix<float> W = io::load_npy<float>(path);
        AdmmOptions<float> opts;
        opts.rank = rank_for_bpw(W.rows(), W.cols(), bpw);
        opts.iterations = iterations;
        opts.trace_every = 1;
        if (argc > 5) opts.export_mode = parse_export_mode(argv[5]);
        const AdmmResult<float> res = AdmmSolver<float>(opts).solve(W);
        res.throw_if_failed();
        std::ofstream file;
        if (out != "-") {
            file.open(out);
            if (!file) throw io_error("cannot write " + out);
        }
        std::ostream& os = out == "-" ? std::cout : file;
        os << "iteration,objective,primal_residual,dual_residual,rho,seconds\n";
        os.precision(8);
        for (const IterationRecord& r : res.trace)
            os << r.iteration << ',' << r.objective << ',' << r.primal_residual << ',' << r.dual_residual << ','
               << r.rho << ',' << r.seconds << '\n';
        std::cerr << path << ": " << W.rows() << "x" << W.cols() << ", rank " << opts.rank << " ("
                  << res.factorization.bits_per_weight() << " bpw), " << res.iterations << " iterations, "
                  << to_string(res.status) << ", rel_error " << res.relative_error << ", " << res.seconds << " s\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "admm_convergence: " << e.what() << "\n";
        return 1;
    }
}
