// SPDX-License-Identifier: Apache-2.0
// `nanoquant inspect FILE`: lists the tensors of a .npy, safetensors file or sharded checkpoint
// index, and the factorized layers (shape, rank, scales, bpw, bytes, rel_error) of files written
// by nanoquant. --json prints one JSON object instead.
#include <cstdio>
#include <memory>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include <nanoquant/io/checkpoint.hpp>
#include <nanoquant/io/factorized_file.hpp>
#include <nanoquant/io/npy.hpp>

#include "command.hpp"

namespace {

using namespace nanoquant;

struct InspectArgs {
    std::string input;
    bool json = false;
};

std::string human_bytes(double b)
{
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024.0 && u < 4) {
        b /= 1024.0;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
    return buf;
}

int inspect_npy(const InspectArgs& a)
{
    const io::NpyHeader h = io::read_npy_header(a.input);
    nlohmann::json j = {{"file", a.input},   {"format", "npy"},
                        {"version", std::to_string(h.major_version) + "." + std::to_string(h.minor_version)},
                        {"dtype", io::to_string(h.dtype)}, {"descr", h.descr},
                        {"fortran_order", h.fortran_order}, {"shape", h.shape}, {"bytes", h.data_bytes}};
    if (a.json) {
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::string shape;
        for (std::size_t i = 0; i < h.shape.size(); ++i) shape += (i ? " x " : "") + std::to_string(h.shape[i]);
        std::printf("%s: .npy v%d.%d, %s (%s), %s, %s order, %s\n", a.input.c_str(), h.major_version,
                    h.minor_version, io::to_string(h.dtype), h.descr.c_str(), shape.c_str(),
                    h.fortran_order ? "Fortran" : "C", human_bytes(double(h.data_bytes)).c_str());
    }
    return cli::kSuccess;
}

int inspect_safetensors(const InspectArgs& a)
{
    const io::Checkpoint ck(a.input);
    nlohmann::json j = {{"file", a.input}, {"format", "safetensors"}, {"sharded", ck.sharded()},
                        {"shards", ck.shards().size()}, {"bytes", ck.total_bytes()}};
    nlohmann::json layers = nlohmann::json::array(), tensors = nlohmann::json::array();
    std::set<std::string> layer_tensors;
    std::size_t layer_bytes = 0, dense_equiv = 0;
    for (const auto& shard : ck.shards()) {
        for (const auto& name : io::factorized_layer_names(*shard)) {
            const auto l = io::load_factorized_layer<float>(*shard, name);
            nlohmann::json e = {{"name", name},
                                {"shape", {l.f.rows(), l.f.cols()}},
                                {"rank", l.f.rank()},
                                {"scales", l.f.has_mid_scale() ? 3 : 2},
                                {"scale_dtype", l.info.value("scale_dtype", "?")},
                                {"bpw", l.f.bits_per_weight()}};
            std::size_t bytes = 0;
            for (const char* s : {".u", ".vt", ".s_out", ".s_mid", ".s_in"})
                if (shard->contains(name + s)) {
                    bytes += shard->info(name + s).nbytes();
                    layer_tensors.insert(name + s);
                }
            e["bytes"] = bytes;
            if (l.info.contains("rel_error")) e["rel_error"] = l.info["rel_error"];
            if (l.info.contains("solver")) e["solver"] = l.info["solver"];
            layer_bytes += bytes;
            dense_equiv += static_cast<std::size_t>(l.f.rows() * l.f.cols()) * 2;  // vs 16-bit dense
            layers.push_back(e);
        }
    }
    for (const auto& en : ck.entries()) {
        if (layer_tensors.count(en.name)) continue;
        const auto& t = ck.info(en.name);
        tensors.push_back({{"name", t.name}, {"dtype", io::to_string(t.dtype)}, {"shape", t.shape}, {"bytes", t.nbytes()}});
    }
    j["factorized_layers"] = layers;
    j["tensors"] = tensors;
    if (!ck.metadata().empty()) j["metadata"] = ck.metadata();
    // A whole model written by nanoquant (e.g. `nanoquant quantize MODEL.json`: "use-lite").
    const auto arch = ck.metadata().find("nanoquant.architecture");
    nlohmann::json how;
    if (arch != ck.metadata().end()) {
        j["architecture"] = arch->second;
        const auto q = ck.metadata().find("nanoquant.quantization");
        if (q != ck.metadata().end()) how = nlohmann::json::parse(q->second, nullptr, false);
        if (how.is_object()) j["quantization"] = how;
    }
    if (a.json) {
        std::printf("%s\n", j.dump().c_str());
        return cli::kSuccess;
    }
    std::printf("%s: safetensors%s, %zu tensors, %s\n", a.input.c_str(),
                ck.sharded() ? (" (" + std::to_string(ck.shards().size()) + " shards)").c_str() : "",
                ck.entries().size(), human_bytes(double(ck.total_bytes())).c_str());
    if (arch != ck.metadata().end()) {
        std::printf("architecture: %s", arch->second.c_str());
        if (how.is_object()) {
            if (how.contains("pipeline") && how["pipeline"].is_string())
                std::printf(", pipeline %s", how["pipeline"].get<std::string>().c_str());
            if (how.contains("bpw") && how["bpw"].is_number()) std::printf(" at %.3g bpw", how["bpw"].get<double>());
            if (how.contains("seed") && how["seed"].is_number_unsigned())
                std::printf(", seed %llu", static_cast<unsigned long long>(how["seed"].get<std::uint64_t>()));
            if (how.contains("stages") && how["stages"].is_array())
                for (const auto& s : how["stages"])
                    if (s.is_object() && s.value("stage", nlohmann::json()).is_string() &&
                        s.value("calib_cosine", nlohmann::json()).is_number() &&
                        s.value("calib_recall_at_10", nlohmann::json()).is_number())
                        std::printf("; %s: calibration cosine %.4f, recall@10 %.4f",
                                    s["stage"].get<std::string>().c_str(), s["calib_cosine"].get<double>(),
                                    s["calib_recall_at_10"].get<double>());
        }
        std::printf("\n");
    }
    if (!layers.empty()) {
        std::printf("\n%zu factorized layers (nanoquant format v%s):\n", layers.size(),
                    ck.shards()[0]->metadata().count("nanoquant.format_version")
                        ? ck.shards()[0]->metadata().at("nanoquant.format_version").c_str()
                        : "?");
        std::printf("  %-48s %13s %6s %6s %7s %11s %9s\n", "name", "shape", "rank", "scales", "bpw", "bytes",
                    "rel_error");
        for (const auto& e : layers) {
            const std::string shape = std::to_string(e["shape"][0].get<long long>()) + "x" +
                                      std::to_string(e["shape"][1].get<long long>());
            char err[32] = "-";
            if (e.contains("rel_error") && e["rel_error"].is_number())
                std::snprintf(err, sizeof err, "%.4f", e["rel_error"].get<double>());
            std::printf("  %-48s %13s %6lld %3d/%s %7.4f %11s %9s\n", e["name"].get<std::string>().c_str(),
                        shape.c_str(), e["rank"].get<long long>(), e["scales"].get<int>(),
                        e["scale_dtype"].get<std::string>().c_str(), e["bpw"].get<double>(),
                        human_bytes(double(e["bytes"].get<std::size_t>())).c_str(), err);
        }
        std::printf("  total %s for the factorized layers (%s as 16-bit dense)\n", human_bytes(double(layer_bytes)).c_str(),
                    human_bytes(double(dense_equiv)).c_str());
    }
    if (!tensors.empty()) {
        std::printf("\n%zu %stensors:\n", tensors.size(), layers.empty() ? "" : "other ");
        std::printf("  %-48s %8s %20s %11s\n", "name", "dtype", "shape", "bytes");
        for (const auto& t : tensors) {
            std::string shape = "[";
            for (std::size_t i = 0; i < t["shape"].size(); ++i)
                shape += (i ? ", " : "") + std::to_string(t["shape"][i].get<long long>());
            shape += "]";
            std::printf("  %-48s %8s %20s %11s\n", t["name"].get<std::string>().c_str(),
                        t["dtype"].get<std::string>().c_str(), shape.c_str(),
                        human_bytes(double(t["bytes"].get<std::size_t>())).c_str());
        }
    }
    return cli::kSuccess;
}

int run(const InspectArgs& a)
{
    if (io::ends_with(a.input, ".npy")) return inspect_npy(a);
    return inspect_safetensors(a);
}

nanoquant::cli::Registrar reg{"inspect", [](CLI::App& app) {
    auto args = std::make_shared<InspectArgs>();
    auto* cmd = app.add_subcommand("inspect", "List the tensors or factorized layers of a .npy/safetensors file");
    cmd->add_option("file", args->input, "FILE.npy, FILE.safetensors or model.safetensors.index.json")->required();
    cmd->add_flag("--json", args->json, "Print one JSON object");
    return [args]() { return run(*args); };
}};

}  // namespace
