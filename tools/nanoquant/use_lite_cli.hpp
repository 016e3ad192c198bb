// SPDX-License-Identifier: Apache-2.0
#pragma once

// What `nanoquant quantize MODEL.json` and `nanoquant encode` share: telling a TF.js model.json
// from other inputs, loading USE-Lite (the package or a file written by quantize) with its
// tokenizer, reading a text file of one sentence per line with every bad-input case a one-line
// io_error naming the file (exit code 1), and the process-wide thread setting made once at start.
//
// Only compiled where the model layer is available (NANOQUANT_HAVE_MODEL: nanoquant::model, which
// needs utf8proc).

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <nanoquant/error.hpp>
#include <nanoquant/io/mapped_file.hpp>
#include <nanoquant/io/safetensors.hpp>
#include <nanoquant/model/tfjs_model.hpp>
#include <nanoquant/model/tokenizer.hpp>
#include <nanoquant/model/use_lite.hpp>
#include <nanoquant/model/use_lite_file.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanoquant {
namespace cli {

/// The thread count to use for --threads N (0 = the OpenMP default, i.e. every core). Sets Eigen's
/// and OpenMP's process-wide counts to it: a command calls this once, at start-up, before any
/// work; everything nanoquant runs itself gets the count explicitly as well.
inline int setup_threads(int requested)
{
    int n = requested;
#ifdef _OPENMP
    if (n <= 0) n = omp_get_max_threads();
    omp_set_num_threads(n);
#else
    if (n <= 0) n = 1;
#endif
    if (n < 1) n = 1;
    Eigen::setNbThreads(n);
    return n;
}

/// True if the file at `path` is a JSON object with a "weightsManifest" (a TF.js model.json), by
/// its content. False for anything else (a safetensors file, a checkpoint index, invalid JSON).
/// \throws nanoquant::io_error naming the file when it cannot be opened.
inline bool is_tfjs_model_json(const std::string& path)
{
    const io::MappedFile f(path);
    const char* p = reinterpret_cast<const char*>(f.data());
    const std::size_t n = f.size();
    std::size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) ++i;
    if (i == n || p[i] != '{') return false;
    const nlohmann::json j = nlohmann::json::parse(p + i, p + n, nullptr, /*allow_exceptions=*/false);
    return j.is_object() && j.contains("weightsManifest");
}

/// True if the file starts (after white space) with '{': a JSON file, to be read as model.json.
inline bool starts_like_json(const std::string& path)
{
    const io::MappedFile f(path);
    const char* p = reinterpret_cast<const char*>(f.data());
    std::size_t i = 0;
    while (i < f.size() && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) ++i;
    return i < f.size() && p[i] == '{';
}

/// `path`'s folder with a trailing '/', or "" for a bare name.
inline std::string folder_of(const std::string& path)
{
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

inline std::size_t file_size(const std::string& path)
{
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
}

/// Bytes of model.json plus every shard its manifest names (the model as distributed).
inline std::size_t tfjs_model_bytes(const std::string& model_json)
{
    std::size_t total = file_size(model_json);
    const io::MappedFile f(model_json);
    const char* p = reinterpret_cast<const char*>(f.data());
    const nlohmann::json j = nlohmann::json::parse(p, p + f.size(), nullptr, false);
    if (!j.is_object() || !j.contains("weightsManifest") || !j["weightsManifest"].is_array()) return total;
    for (const auto& g : j["weightsManifest"])
        if (g.is_object() && g.contains("paths") && g["paths"].is_array())
            for (const auto& s : g["paths"])
                if (s.is_string()) total += file_size(folder_of(model_json) + s.get<std::string>());
    return total;
}

/// The whole text of a file. \throws nanoquant::io_error naming it
inline std::string read_file_text(const std::string& path)
{
    const io::MappedFile f(path);
    return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

/// USE-Lite from the package's model.json: weights and the tokenizer of vocab.json beside it.
/// A model.json of another TF.js model is an io_error naming it, not a usage error.
struct LoadedUseLite {
    model::UseLite model;
    model::UseLiteTokenizer tokenizer;
    std::string vocab_json;  ///< the text of vocab.json (empty for a file written by quantize)
    bool quantized = false;  ///< read from a file written by quantize
};

inline model::UseLite use_lite_from_package(const std::string& model_json)
{
    const model::TfjsModel tf = model::TfjsModel::load(model_json);
    try {
        return model::UseLite::from_tfjs(tf);
    } catch (const nanoquant::invalid_argument& e) {
        // "nanoquant::TfjsModel::tensor: no weight named 'X' in PATH (it has N weights)"
        std::string msg = e.what();
        const auto colon = msg.find(": ");
        if (msg.rfind("nanoquant::", 0) == 0 && colon != std::string::npos) msg = msg.substr(colon + 2);
        throw io_error(model_json + ": not the USE-Lite model (" + msg + ")");
    }
}

/// MODEL of `encode`: the package's model.json (JSON, by content) or a file written by quantize.
inline LoadedUseLite load_use_lite_any(const std::string& path)
{
    if (starts_like_json(path)) {
        model::UseLite m = use_lite_from_package(path);
        const std::string vocab = folder_of(path) + "vocab.json";
        return {std::move(m), model::UseLiteTokenizer::load(vocab), read_file_text(vocab), false};
    }
    const io::SafetensorsFile f(path);
    model::UseLite m = model::load_use_lite(f);
    return {std::move(m), model::use_lite_tokenizer(f), std::string(), true};
}

/// The lines of a UTF-8 text file, one sentence each ("\n" or "\r\n" endings; a final line
/// ending adds no line). With `skip_empty`, empty lines are left out (their numbers too).
struct TextLines {
    std::vector<std::string> lines;
    std::vector<std::size_t> numbers;  ///< 1-based line number of each kept line
    std::size_t total = 0;             ///< lines in the file
};

/// \throws nanoquant::io_error naming the file: missing/unreadable, empty (0 bytes), a NUL byte
///         or invalid UTF-8 (naming the line and byte), or nothing left to read.
inline TextLines read_text_lines(const std::string& path, bool skip_empty)
{
    const io::MappedFile f(path);
    if (f.size() == 0)
        throw io_error(path + ": empty file (0 bytes); expected UTF-8 text, one sentence per line");
    const char* p = reinterpret_cast<const char*>(f.data());
    const std::size_t n = f.size();
    TextLines out;
    std::vector<std::uint32_t> cps;
    std::size_t b = 0, number = 0;
    while (b < n) {
        std::size_t e = b;
        while (e < n && p[e] != '\n') ++e;
        ++number;
        std::string line(p + b, e - b);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const std::size_t nul = line.find('\0');
        if (nul != std::string::npos)
            throw io_error(path + ": line " + std::to_string(number) + ": a NUL byte at byte " +
                           std::to_string(nul + 1) + " of the line: a binary file, not UTF-8 text");
        std::size_t bad = 0;
        if (!model::detail::decode_utf8(line, cps, bad))
            throw io_error(path + ": line " + std::to_string(number) + ": invalid UTF-8 at byte " +
                           std::to_string(bad + 1) + " of the line: not UTF-8 text");
        if (!(skip_empty && line.empty())) {
            out.lines.push_back(std::move(line));
            out.numbers.push_back(number);
        }
        b = e + 1;
    }
    out.total = number;
    return out;
}

}  // namespace cli
}  // namespace nanoquant
