// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file use_lite_file.hpp
/// A (quantized) USE-Lite encoder in one safetensors file, as `nanoquant quantize MODEL.json`
/// writes it and `nanoquant encode` reads it. The file is a valid nanoquant factorized file
/// (docs/format.md): every factorized matmul weight NAME ("layer0.qkv", …, "head.dense", the names
/// of UseLite::linears()) is stored by io::add_factorized_layer (packed signs, F16 scales, the
/// "nanoquant.layer.NAME" metadata entry), and next to them, as F32:
///
///   embeddings               [vocab, width]
///   timing_inv               [width/2]
///   layerL.ln_attn.gamma     [d_in]      layerL.ln_attn.beta   [d_in]
///   layerL.ln_ffn.gamma      [d_model]   layerL.ln_ffn.beta    [d_model]
///   NAME.bias                [out]       of every matmul weight
///   NAME.weight              [out, in]   of a matmul weight left dense (row-major, y = x Wᵀ + b)
///   tokenizer.vocab_json     U8 [bytes]  optional: the bytes of the package's vocab.json, so that
///                                        the file encodes text on its own (use_lite_tokenizer)
///
/// Metadata: "nanoquant.architecture" = "use-lite"; "nanoquant.use_lite.config" = a JSON object
/// with the shapes and scalars of the architecture ({"vocab", "width", "output", "head_l2_eps",
/// "layers": [{"d_in", "d_attn", "d_model", "d_ff", "heads", "q_scale", "dense", "ln_eps"}, …]});
/// "nanoquant.quantization" = the caller's JSON (pipeline, bpw, seed, stage metrics, …).
///
/// The loader checks the architecture entry first (a factorized file of a checkpoint or of
/// `nanoquant factorize` is refused with one line saying what it is), then every expected tensor,
/// its dtype and shape, that no other tensor is present and that every float is finite; every
/// failure is one nanoquant::io_error naming the file. Factorized weights come back with latents
/// ±1 (the stored signs), the stored scales and their packed inference form (`Linear::packed`), so
/// UseLite::encode runs them through nanoquant::kernels::gemm.
///
/// What is stored is sign(latents) and the scales rounded to F16: a model saved after
/// UseLite::finalize (which does exactly that rounding) loads back bit for bit.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "nanoquant/error.hpp"
#include "nanoquant/io/factorized_file.hpp"
#include "nanoquant/io/safetensors.hpp"
#include "nanoquant/kernels/packed_layer.hpp"
#include "nanoquant/model/tokenizer.hpp"
#include "nanoquant/model/use_lite.hpp"

namespace nanoquant {
namespace model {

/// Metadata key naming the architecture of a model file.
constexpr const char* kArchitectureKey = "nanoquant.architecture";
/// Its value for USE-Lite.
constexpr const char* kUseLiteArchitecture = "use-lite";
/// Metadata key of the architecture's shapes and scalars.
constexpr const char* kUseLiteConfigKey = "nanoquant.use_lite.config";
/// Metadata key of the caller's description of how the file was made.
constexpr const char* kQuantizationInfoKey = "nanoquant.quantization";
/// Tensor holding the bytes of vocab.json (optional).
constexpr const char* kVocabTensor = "tokenizer.vocab_json";

namespace detail {

/// The shapes and scalars of `m` (see the file comment).
inline nlohmann::json use_lite_config(const UseLite& m)
{
    nlohmann::json layers = nlohmann::json::array();
    for (const TransformerLayer& L : m.layers) {
        // Floats go through double: the JSON text round-trips the double, hence the float.
        layers.push_back({{"d_in", L.qkv.in()},
                          {"d_attn", L.qkv.out() / 3},
                          {"d_model", L.out.out()},
                          {"d_ff", L.up.out()},
                          {"heads", L.heads},
                          {"q_scale", double(L.q_scale)},
                          {"dense", L.has_dense},
                          {"ln_eps", double(L.ln_attn.eps)},
                          {"ln_ffn_eps", double(L.ln_ffn.eps)}});
    }
    return {{"vocab", m.vocab_size()},     {"width", m.width()},
            {"output", m.output_size()},   {"head_l2_eps", double(m.head.l2_eps)},
            {"layers", layers}};
}

/// Expected [out, in] of each matmul weight from a config (UseLite::linears() order).
inline std::vector<std::pair<std::string, std::pair<Index, Index>>> use_lite_linear_shapes(const nlohmann::json& c)
{
    std::vector<std::pair<std::string, std::pair<Index, Index>>> v;
    Index last = 0;
    for (std::size_t l = 0; l < c["layers"].size(); ++l) {
        const nlohmann::json& L = c["layers"][l];
        const Index d_in = L["d_in"], d_attn = L["d_attn"], d_model = L["d_model"], d_ff = L["d_ff"];
        const std::string p = "layer" + std::to_string(l) + ".";
        v.push_back({p + "qkv", {3 * d_attn, d_in}});
        v.push_back({p + "out", {d_model, d_attn}});
        if (L["dense"].get<bool>()) v.push_back({p + "dense", {d_model, d_in}});
        v.push_back({p + "up", {d_ff, d_model}});
        v.push_back({p + "down", {d_model, d_ff}});
        last = d_model;
    }
    v.push_back({"head.dense", {c["output"].get<Index>(), last}});
    return v;
}

}  // namespace detail

/// Writes `m` to `path` (atomically: the name only ever holds a complete file) in the layout of
/// the file comment, with `info` (a JSON object, or null) under "nanoquant.quantization" and, when
/// not empty, `vocab_json` (the text of the package's vocab.json) as tensor tokenizer.vocab_json.
/// Returns the bytes written.
/// \throws nanoquant::invalid_argument if `m` is not a USE-Lite-shaped model (every matmul weight
///         needs a bias) or a scale overflows F16; nanoquant::io_error if the file cannot be written
inline std::size_t save_use_lite(const std::string& path, const UseLite& m,
                                 const nlohmann::json& info = nlohmann::json::object(),
                                 const std::string& vocab_json = std::string())
{
    constexpr const char* where = "model::save_use_lite";
    NANOQUANT_CHECK(m.layers.size() == 2, where, "USE-Lite has 2 layers, the model " << m.layers.size());
    NANOQUANT_CHECK(info.is_object() || info.is_null(), where, "info must be a JSON object, got a " << info.type_name());
    io::SafetensorsWriter w;
    io::set_factorized_format_metadata(w);
    w.set_metadata(kArchitectureKey, kUseLiteArchitecture);
    w.set_metadata(kUseLiteConfigKey, detail::use_lite_config(m).dump());
    if (info.is_object()) w.set_metadata(kQuantizationInfoKey, info.dump());

    auto add_vec = [&](const std::string& name, const Vec& v) {
        w.add_floats(name, io::StDType::F32, {std::int64_t(v.size())}, v.data(), std::size_t(v.size()));
    };
    auto add_mat = [&](const std::string& name, const Mat& M) {
        const RowMajorMatrix<float> r = M;  // C order on disk
        w.add_floats(name, io::StDType::F32, {std::int64_t(r.rows()), std::int64_t(r.cols())}, r.data(),
                     std::size_t(r.size()));
    };
    add_mat("embeddings", m.embeddings);
    add_vec("timing_inv", m.timing_inv);
    for (std::size_t l = 0; l < m.layers.size(); ++l) {
        const TransformerLayer& L = m.layers[l];
        const std::string p = "layer" + std::to_string(l) + ".";
        add_vec(p + "ln_attn.gamma", L.ln_attn.gamma);
        add_vec(p + "ln_attn.beta", L.ln_attn.beta);
        add_vec(p + "ln_ffn.gamma", L.ln_ffn.gamma);
        add_vec(p + "ln_ffn.beta", L.ln_ffn.beta);
    }
    for (const auto& p : m.linears()) {
        const Linear& l = *p.second;
        NANOQUANT_CHECK(l.b.size() == l.out(), where,
                        "'" << p.first << "' has " << l.b.size() << " biases, expected " << l.out());
        if (l.factorized) {
            io::add_factorized_layer(w, p.first, l.f.harden(), io::StDType::F16);
        } else {
            add_mat(p.first + ".weight", l.w);
        }
        add_vec(p.first + ".bias", l.b);
    }
    if (!vocab_json.empty())
        w.add_view(kVocabTensor, io::StDType::U8, {std::int64_t(vocab_json.size())},
                   reinterpret_cast<const std::uint8_t*>(vocab_json.data()), vocab_json.size());
    return w.write(path);
}

/// True if `path` is a safetensors file whose "nanoquant.architecture" is "use-lite" (false for
/// anything else, unreadable files included; load_use_lite says what is wrong).
inline bool is_use_lite_file(const std::string& path)
{
    try {
        const io::SafetensorsFile f(path);
        const auto it = f.metadata().find(kArchitectureKey);
        return it != f.metadata().end() && it->second == kUseLiteArchitecture;
    } catch (const std::exception&) {
        return false;
    }
}

/// The caller's JSON stored by save_use_lite (null if none). \throws nanoquant::io_error if invalid
inline nlohmann::json use_lite_info(const io::SafetensorsView& v)
{
    const auto it = v.metadata().find(kQuantizationInfoKey);
    if (it == v.metadata().end()) return nullptr;
    try {
        return nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception& e) {
        ::nanoquant::detail::raise_io_error(v.file() + ": metadata \"" + kQuantizationInfoKey +
                                            "\" is not valid JSON: " + e.what());
    }
}

namespace detail {

/// The architecture entry of `v`: "use-lite", or an io_error that says what the file is instead.
inline void check_use_lite_architecture(const io::SafetensorsView& v)
{
    const auto arch = v.metadata().find(kArchitectureKey);
    if (arch == v.metadata().end()) {
        const auto fmt = v.metadata().find("nanoquant.format");
        if (fmt != v.metadata().end() && fmt->second == io::kFactorizedFormatName)
            ::nanoquant::detail::raise_io_error(
                v.file() + ": a nanoquant factorized file without \"" + kArchitectureKey +
                "\" metadata (written by `nanoquant quantize` of a safetensors checkpoint or by `nanoquant "
                "factorize`), not a USE-Lite model; give the package's model.json or a file written by `nanoquant "
                "quantize MODEL.json`");
        ::nanoquant::detail::raise_io_error(v.file() + ": a safetensors file without \"" + kArchitectureKey +
                                            "\" metadata, not a USE-Lite model written by `nanoquant quantize "
                                            "MODEL.json`");
    }
    if (arch->second != kUseLiteArchitecture)
        ::nanoquant::detail::raise_io_error(v.file() + ": a model of architecture \"" + arch->second + "\", not \"" +
                                            kUseLiteArchitecture + "\"");
}

/// The config of `v`, checked for consistency. \throws nanoquant::io_error naming the file
inline nlohmann::json read_use_lite_config(const io::SafetensorsView& v)
{
    auto fail = [&](const std::string& msg) {
        ::nanoquant::detail::raise_io_error(v.file() + ": metadata \"" + kUseLiteConfigKey + "\": " + msg);
    };
    const auto it = v.metadata().find(kUseLiteConfigKey);
    if (it == v.metadata().end())
        ::nanoquant::detail::raise_io_error(v.file() + ": no \"" + kUseLiteConfigKey + "\" metadata");
    nlohmann::json c;
    try {
        c = nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception& e) {
        fail(std::string("not valid JSON: ") + e.what());
    }
    // Sizes are bounded so that products stay far from overflow (USE-Lite's largest is 8002).
    constexpr std::int64_t kMaxDim = 1 << 20;
    auto dim = [&](const nlohmann::json& o, const char* key, const std::string& at) -> Index {
        if (!o.is_object() || !o.contains(key) || !o[key].is_number_integer() || o[key].get<std::int64_t>() < 1 ||
            o[key].get<std::int64_t>() > kMaxDim)
            fail(at + "\"" + key + "\" must be an integer in [1, " + std::to_string(kMaxDim) + "]");
        return o[key].get<Index>();
    };
    auto positive = [&](const nlohmann::json& o, const char* key, const std::string& at) {
        if (!o.contains(key) || !o[key].is_number() || !std::isfinite(o[key].get<double>()) ||
            !(o[key].get<double>() > 0))
            fail(at + "\"" + key + "\" must be a positive number");
    };
    if (!c.is_object()) fail(std::string("a JSON ") + c.type_name() + ", expected an object");
    const Index width = dim(c, "width", "");
    dim(c, "vocab", "");
    dim(c, "output", "");
    positive(c, "head_l2_eps", "");
    if (width % 2 != 0) fail("\"width\" must be even (sine and cosine halves), got " + std::to_string(width));
    if (!c.contains("layers") || !c["layers"].is_array() || c["layers"].size() != 2)
        fail("\"layers\" must be an array of 2 objects (USE-Lite has 2 layers)");
    Index prev = width;
    for (std::size_t l = 0; l < 2; ++l) {
        const nlohmann::json& L = c["layers"][l];
        const std::string at = "layer " + std::to_string(l) + ": ";
        const Index d_in = dim(L, "d_in", at), d_attn = dim(L, "d_attn", at), d_model = dim(L, "d_model", at);
        dim(L, "d_ff", at);
        const Index heads = dim(L, "heads", at);
        positive(L, "q_scale", at);
        positive(L, "ln_eps", at);
        positive(L, "ln_ffn_eps", at);
        if (!L.contains("dense") || !L["dense"].is_boolean()) fail(at + "\"dense\" must be true or false");
        if (d_in != prev)
            fail(at + "\"d_in\" = " + std::to_string(d_in) + " but the input has " + std::to_string(prev) + " channels");
        if (d_attn % heads != 0)
            fail(at + "\"d_attn\" = " + std::to_string(d_attn) + " is not a multiple of \"heads\" = " +
                 std::to_string(heads));
        if (!L["dense"].get<bool>() && d_model != d_in)
            fail(at + "without a dense residual projection \"d_model\" must equal \"d_in\"");
        prev = d_model;
    }
    return c;
}

}  // namespace detail

/// Reads a file written by save_use_lite (see the file comment for what is checked).
/// \throws nanoquant::io_error naming the file and what is wrong
inline UseLite load_use_lite(const io::SafetensorsView& v)
{
    detail::check_use_lite_architecture(v);
    const nlohmann::json c = detail::read_use_lite_config(v);
    auto fail = [&](const std::string& msg) { ::nanoquant::detail::raise_io_error(v.file() + ": " + msg); };
    std::set<std::string> used;
    auto shape_str = [](const std::vector<std::int64_t>& s) {
        io::TensorInfo t;
        t.shape = s;
        return t.shape_string();
    };
    auto floats = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
        if (!v.contains(name)) fail("missing tensor '" + name + "' (expected shape " + shape_str(shape) + ")");
        const io::TensorInfo& t = v.info(name);
        if (t.dtype != io::StDType::F32 && t.dtype != io::StDType::F16 && t.dtype != io::StDType::BF16)
            fail("tensor '" + name + "' has dtype " + io::to_string(t.dtype) + ", expected F32");
        if (t.shape != shape)
            fail("tensor '" + name + "' has shape " + t.shape_string() + ", expected " + shape_str(shape));
        used.insert(name);
        std::vector<float> x = v.read_floats(name);
        for (std::size_t i = 0; i < x.size(); ++i)
            if (!std::isfinite(x[i])) fail("tensor '" + name + "' holds a non-finite value at index " + std::to_string(i));
        return x;
    };
    auto vec = [&](const std::string& name, Index n) {
        const std::vector<float> x = floats(name, {std::int64_t(n)});
        return Vec(Eigen::Map<const Vec>(x.data(), n));
    };
    auto mat = [&](const std::string& name, Index rows, Index cols) {
        const std::vector<float> x = floats(name, {std::int64_t(rows), std::int64_t(cols)});
        return Mat(Eigen::Map<const RowMajorMatrix<float>>(x.data(), rows, cols));
    };

    UseLite m;
    const Index width = c["width"];
    m.embeddings = mat("embeddings", c["vocab"].get<Index>(), width);
    m.timing_inv = vec("timing_inv", width / 2);
    for (std::size_t l = 0; l < 2; ++l) {
        const nlohmann::json& Lc = c["layers"][l];
        TransformerLayer& L = m.layers[l];
        const std::string p = "layer" + std::to_string(l) + ".";
        const Index d_in = Lc["d_in"], d_model = Lc["d_model"];
        L.ln_attn.gamma = vec(p + "ln_attn.gamma", d_in);
        L.ln_attn.beta = vec(p + "ln_attn.beta", d_in);
        L.ln_ffn.gamma = vec(p + "ln_ffn.gamma", d_model);
        L.ln_ffn.beta = vec(p + "ln_ffn.beta", d_model);
        L.ln_attn.eps = float(Lc["ln_eps"].get<double>());
        L.ln_ffn.eps = float(Lc["ln_ffn_eps"].get<double>());
        L.heads = Lc["heads"];
        L.q_scale = float(Lc["q_scale"].get<double>());
        L.has_dense = Lc["dense"];
    }
    m.head.l2_eps = float(c["head_l2_eps"].get<double>());

    const auto shapes = detail::use_lite_linear_shapes(c);
    const auto linears = m.linears();
    if (linears.size() != shapes.size())  // the config's "dense" flags set has_dense above
        fail("internal: " + std::to_string(linears.size()) + " matmul weights, the config describes " +
             std::to_string(shapes.size()));
    const std::vector<std::string> fact_names = io::factorized_layer_names(v);
    const std::set<std::string> fact(fact_names.begin(), fact_names.end());
    for (std::size_t k = 0; k < linears.size(); ++k) {
        const std::string& name = linears[k].first;
        Linear& lin = *linears[k].second;
        const Index out = shapes[k].second.first, in = shapes[k].second.second;
        if (fact.count(name)) {
            if (v.contains(name + ".weight"))
                fail("'" + name + "' is stored both factorized and as the dense tensor '" + name + ".weight'");
            const io::FactorizedLayer<float> fl = io::load_factorized_layer<float>(v, name);
            if (fl.f.rows() != out || fl.f.cols() != in)
                fail("factorized layer '" + name + "' is " + std::to_string(fl.f.rows()) + "x" +
                     std::to_string(fl.f.cols()) + ", expected " + std::to_string(out) + "x" + std::to_string(in));
            for (const char* s : {".u", ".vt", ".s_out", ".s_mid", ".s_in"})
                if (v.contains(name + s)) used.insert(name + s);
            set_factorized(lin, fl.f);
        } else {
            if (!v.contains(name + ".weight"))
                fail("matmul weight '" + name + "' is neither a factorized layer (no \"" +
                     std::string(io::kLayerKeyPrefix) + name + "\" metadata) nor a dense tensor '" + name + ".weight'");
            lin.factorized = false;
            lin.w = mat(name + ".weight", out, in);
        }
        lin.b = vec(name + ".bias", out);
    }
    if (v.contains(kVocabTensor)) {
        const io::TensorInfo& t = v.info(kVocabTensor);
        if (t.dtype != io::StDType::U8 || t.shape.size() != 1)
            fail(std::string("tensor '") + kVocabTensor + "' must be 1-D U8 (the bytes of vocab.json), got " +
                 io::to_string(t.dtype) + " " + t.shape_string());
        used.insert(kVocabTensor);
    }
    for (const auto& t : v.tensors())
        if (!used.count(t.name)) fail("unexpected tensor '" + t.name + "' (not part of a USE-Lite model)");
    return m;
}

/// Reads the file at `path` written by save_use_lite. \throws nanoquant::io_error naming the file
inline UseLite load_use_lite(const std::string& path)
{
    const io::SafetensorsFile f(path);
    return load_use_lite(f);
}

/// Bytes of a USE-Lite file by kind.
struct UseLiteSizes {
    struct Layer {
        std::string name;
        Index rows = 0, cols = 0, rank = 0;  ///< rank 0: kept dense
        double bpw = 0;                      ///< the factorization's bits per weight (32 when dense F32)
        std::size_t sign_bytes = 0, scale_bytes = 0, dense_bytes = 0;
    };
    std::size_t file_bytes = 0;       ///< the whole file
    std::size_t header_bytes = 0;     ///< 8-byte length + JSON header (with the metadata)
    std::size_t sign_bytes = 0;       ///< packed signs of the factorized weights
    std::size_t scale_bytes = 0;      ///< their scale vectors
    std::size_t float_bytes = 0;      ///< every other tensor (embeddings, norms, biases, dense weights)
    std::size_t embedding_bytes = 0;  ///< of which the token embeddings
    std::size_t tokenizer_bytes = 0;  ///< the stored vocab.json
    std::vector<Layer> layers;        ///< the matmul weights, UseLite::linears() order
};

/// Sizes of a parsed USE-Lite file (checked as by load_use_lite). file = header + tensors.
inline UseLiteSizes use_lite_sizes(const io::SafetensorsView& v)
{
    detail::check_use_lite_architecture(v);
    const nlohmann::json c = detail::read_use_lite_config(v);
    UseLiteSizes s;
    s.file_bytes = v.size();
    s.header_bytes = v.data_offset();
    std::set<std::string> counted;
    for (const auto& p : detail::use_lite_linear_shapes(c)) {
        UseLiteSizes::Layer L;
        L.name = p.first;
        L.rows = p.second.first;
        L.cols = p.second.second;
        if (v.metadata().count(io::kLayerKeyPrefix + p.first)) {
            const io::FactorizedLayer<float> fl = io::load_factorized_layer<float>(v, p.first);
            L.rank = fl.f.rank();
            L.bpw = fl.f.bits_per_weight();
            for (const char* suf : {".u", ".vt", ".s_out", ".s_mid", ".s_in"}) {
                const std::string tn = p.first + suf;
                if (!v.contains(tn)) continue;
                counted.insert(tn);
                (suf[1] == 's' ? L.scale_bytes : L.sign_bytes) += v.info(tn).nbytes();
            }
            s.sign_bytes += L.sign_bytes;
            s.scale_bytes += L.scale_bytes;
        } else if (v.contains(p.first + ".weight")) {
            L.dense_bytes = v.info(p.first + ".weight").nbytes();
            L.bpw = 8.0 * double(L.dense_bytes) / double(L.rows * L.cols);
        }
        s.layers.push_back(L);
    }
    for (const auto& t : v.tensors()) {
        if (counted.count(t.name)) continue;
        if (t.name == kVocabTensor) {
            s.tokenizer_bytes += t.nbytes();
            continue;
        }
        s.float_bytes += t.nbytes();
        if (t.name == "embeddings") s.embedding_bytes += t.nbytes();
    }
    return s;
}

/// The tokenizer stored in a USE-Lite file (tensor tokenizer.vocab_json, read with the rules of
/// UseLiteTokenizer::load). \throws nanoquant::io_error naming the file if it has none or it is malformed
inline UseLiteTokenizer use_lite_tokenizer(const io::SafetensorsView& v)
{
    const std::string where = v.file() + ": tensor '" + kVocabTensor + "'";
    if (!v.contains(kVocabTensor))
        ::nanoquant::detail::raise_io_error(v.file() + ": no tensor '" + kVocabTensor +
                                            "': the file holds no tokenizer vocabulary");
    const io::TensorInfo& t = v.info(kVocabTensor);
    if (t.dtype != io::StDType::U8 || t.shape.size() != 1 || t.nbytes() == 0)
        ::nanoquant::detail::raise_io_error(where + " must be non-empty 1-D U8 (the bytes of vocab.json)");
    const auto* text = reinterpret_cast<const char*>(v.data(t));
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text, text + t.nbytes());
    } catch (const nlohmann::json::exception& e) {
        ::nanoquant::detail::raise_io_error(where + ": not valid UTF-8 JSON: " + e.what());
    }
    if (!j.is_array() || j.size() <= std::size_t(UseLiteTokenizer::kReservedIds) ||
        j.size() > std::size_t(std::numeric_limits<std::int32_t>::max()))
        ::nanoquant::detail::raise_io_error(where + ": expected an array of more than " +
                                            std::to_string(UseLiteTokenizer::kReservedIds) + " [piece, score] pairs");
    std::vector<std::pair<std::string, double>> vocab;
    vocab.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
        const nlohmann::json& e = j[i];
        if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !(e[1].is_number() || e[1].is_null()))
            ::nanoquant::detail::raise_io_error(where + ": entry " + std::to_string(i) + " " + e.dump() +
                                                " is not a [piece, score] pair");
        vocab.emplace_back(e[0].get<std::string>(), e[1].is_number() ? e[1].get<double>() : 0.0);  // null = 0
    }
    return UseLiteTokenizer(std::move(vocab), where);
}

/// Sizes of the USE-Lite file at `path`. \throws nanoquant::io_error naming the file
inline UseLiteSizes use_lite_sizes(const std::string& path)
{
    const io::SafetensorsFile f(path);
    return use_lite_sizes(f);
}

}  // namespace model
}  // namespace nanoquant
