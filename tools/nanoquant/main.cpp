// SPDX-License-Identifier: Apache-2.0
// nanoquant: the command-line tool. Subcommands register themselves (command.hpp).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>

#include <nanoquant/error.hpp>
#include <nanoquant/version.hpp>

#include "command.hpp"

int main(int argc, char** argv)
{
    using namespace nanoquant::cli;
    CLI::App app{"nanoquant: sub-1-bit low-rank binary factorization of weight matrices"};
    app.set_version_flag("--version", std::string("nanoquant ") + NANOQUANT_VERSION_STRING);
    app.require_subcommand(1);

    auto& entries = registry();
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
    std::map<std::string, std::function<int()>> runners;
    for (auto& e : entries) runners[e.name] = e.setup(app);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "nanoquant: %s (see --help)\n", e.what());
        return kUsageError;
    }

    for (auto* sub : app.get_subcommands()) {
        try {
            return runners.at(sub->get_name())();
        } catch (const nanoquant::invalid_argument& e) {
            std::fprintf(stderr, "nanoquant %s: %s\n", sub->get_name().c_str(), e.what());
            return kUsageError;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "nanoquant %s: %s\n", sub->get_name().c_str(), e.what());
            return kRuntimeError;
        }
    }
    return kUsageError;
}
