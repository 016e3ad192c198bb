// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file factorized_file.hpp
/// Saving and loading factorized layers in nanoquant's on-disk format (docs/format.md, format
/// version 1): a valid safetensors file where each layer NAME is stored as
///   NAME.u      U8  [m, ceil(r/8)]   packed signs of U (m×r)
///   NAME.vt     U8  [r, ceil(n/8)]   packed signs of Vᵀ (r×n)
///   NAME.s_out  F16 or F32 [m]
///   NAME.s_mid  F16 or F32 [r]       only for the three-scale layout
///   NAME.s_in   F16 or F32 [n]
/// with `__metadata__` entries "nanoquant.format" = "nanoquant-factorized",
/// "nanoquant.format_version" = "1", "nanoquant.bit_order" (the sentence below) and, per layer,
/// "nanoquant.layer.NAME" = a JSON object {"shape": [m, n], "rank": r, "scales": 2 or 3,
/// "scale_dtype": "F16"|"F32", "bpw": ..., plus free-form entries such as "solver" and "rel_error"}.
///
/// Bit order (identical to PackedSignMatrix's byte view): row-major; each row padded to whole
/// bytes; column c at bit c % 8 (least significant first) of byte c / 8; a set bit is −1, a clear
/// bit +1; padding bits are 0.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nanoquant/core/factorization.hpp"
#include "nanoquant/core/packed_signs.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/io/safetensors.hpp"

namespace nanoquant {
namespace io {

/// Value of "nanoquant.format".
constexpr const char* kFactorizedFormatName = "nanoquant-factorized";
/// Value of "nanoquant.format_version" written by this version (the only one read).
constexpr int kFactorizedFormatVersion = 1;
/// Value of "nanoquant.bit_order".
constexpr const char* kFactorizedBitOrder =
    "row-major; rows padded to whole bytes; column c at bit c%8 (LSB first) of byte c/8; set bit = -1, clear bit = "
    "+1; padding bits 0";
/// Prefix of the per-layer metadata keys.
constexpr const char* kLayerKeyPrefix = "nanoquant.layer.";

/// One factorized layer with its descriptive metadata.
template <typename Scalar = float>
struct FactorizedLayer {
    std::string name;              ///< layer name (the original tensor's name in a checkpoint)
    Factorization<Scalar> f;       ///< the factorization
    nlohmann::json info = nlohmann::json::object();  ///< the layer's metadata object (see file comment)
};

/// The bytes of a PackedSignMatrix in the on-disk bit order: rows × ceil(cols/8), row-major.
inline std::vector<std::uint8_t> sign_bytes(const PackedSignMatrix& P)
{
    const Index bpr = (P.cols() + 7) / 8;
    std::vector<std::uint8_t> out(static_cast<std::size_t>(P.rows() * bpr));
    for (Index i = 0; i < P.rows(); ++i) {
        const PackedSignMatrix::Word* row = P.row_data(i);
        for (Index k = 0; k < bpr; ++k)
            out[static_cast<std::size_t>(i * bpr + k)] = static_cast<std::uint8_t>((row[k / 8] >> (8 * (k % 8))) & 0xffu);
    }
    return out;
}

/// A PackedSignMatrix from on-disk sign bytes (rows × ceil(cols/8)). \throws nanoquant::io_error
/// naming `what` if a padding bit is set.
inline PackedSignMatrix signs_from_bytes(const std::uint8_t* bytes, Index rows, Index cols, const std::string& what)
{
    PackedSignMatrix P(rows, cols);
    const Index bpr = (cols + 7) / 8;
    const unsigned pad_mask = cols % 8 == 0 ? 0u : (0xffu << (cols % 8)) & 0xffu;
    for (Index i = 0; i < rows; ++i) {
        PackedSignMatrix::Word* row = P.row_data(i);
        for (Index k = 0; k < bpr; ++k) {
            const std::uint8_t b = bytes[i * bpr + k];
            if (k == bpr - 1 && (b & pad_mask) != 0)
                ::nanoquant::detail::raise_io_error(what + ": padding bits set in row " + std::to_string(i) +
                                                    " (byte " + std::to_string(k) + " = " + std::to_string(b) +
                                                    "); they must be 0");
            row[k / 8] |= PackedSignMatrix::Word(b) << (8 * (k % 8));
        }
    }
    return P;
}

/// Sets the format-wide metadata entries on `w`.
inline void set_factorized_format_metadata(SafetensorsWriter& w)
{
    w.set_metadata("nanoquant.format", kFactorizedFormatName);
    w.set_metadata("nanoquant.format_version", std::to_string(kFactorizedFormatVersion));
    w.set_metadata("nanoquant.bit_order", kFactorizedBitOrder);
}

/// Adds layer `name` (tensors + metadata) to `w`. `scale_dtype` is F16 (default) or F32.
/// `info` is merged into the layer's metadata (e.g. {"solver": {...}, "rel_error": 0.5}).
/// \throws nanoquant::invalid_argument if the factorization is invalid, a scale overflows F16,
///         or `scale_dtype` is not F16/F32.
template <typename Scalar>
void add_factorized_layer(SafetensorsWriter& w, const std::string& name, const Factorization<Scalar>& f,
                          StDType scale_dtype = StDType::F16, const nlohmann::json& info = nlohmann::json::object())
{
    constexpr const char* where = "add_factorized_layer";
    f.validate(where);
    NANOQUANT_CHECK(scale_dtype == StDType::F16 || scale_dtype == StDType::F32, where,
                    "scale_dtype must be F16 or F32, got " << to_string(scale_dtype));
    NANOQUANT_CHECK(!name.empty(), where, "layer name must not be empty");
    const std::int64_t m = f.rows(), n = f.cols(), r = f.rank();
    set_factorized_format_metadata(w);
    w.add(name + ".u", StDType::U8, {m, (r + 7) / 8}, sign_bytes(f.u));
    w.add(name + ".vt", StDType::U8, {r, (n + 7) / 8}, sign_bytes(f.vt));
    auto add_scale = [&](const char* suffix, const Vector<Scalar>& s) {
        const std::vector<float> v(s.data(), s.data() + s.size());
        w.add_floats(name + suffix, scale_dtype, {static_cast<std::int64_t>(v.size())}, v.data(), v.size());
    };
    add_scale(".s_out", f.s_out);
    if (f.has_mid_scale()) add_scale(".s_mid", f.s_mid);
    add_scale(".s_in", f.s_in);
    nlohmann::json meta = info.is_object() ? info : nlohmann::json::object();
    meta["shape"] = {m, n};
    meta["rank"] = r;
    meta["scales"] = f.has_mid_scale() ? 3 : 2;
    meta["scale_dtype"] = to_string(scale_dtype);
    meta["bpw"] = f.bits_per_weight();
    w.set_metadata(kLayerKeyPrefix + name, meta.dump());
}

/// Writes `layers` to `path` (atomically) in the factorized format.
template <typename Scalar>
void save_factorized(const std::string& path, const std::vector<FactorizedLayer<Scalar>>& layers,
                     StDType scale_dtype = StDType::F16)
{
    SafetensorsWriter w;
    set_factorized_format_metadata(w);
    for (const auto& l : layers) add_factorized_layer(w, l.name, l.f, scale_dtype, l.info);
    w.write(path);
}

/// Names of the factorized layers described in the file's metadata (sorted).
inline std::vector<std::string> factorized_layer_names(const SafetensorsView& v)
{
    std::vector<std::string> names;
    const std::string prefix = kLayerKeyPrefix;
    for (const auto& kv : v.metadata())
        if (kv.first.compare(0, prefix.size(), prefix) == 0) names.push_back(kv.first.substr(prefix.size()));
    return names;
}

/// Loads layer `name` from a parsed file, checking every tensor against the layer's metadata.
/// \throws nanoquant::io_error naming the file, the layer and the numbers.
template <typename Scalar = float>
FactorizedLayer<Scalar> load_factorized_layer(const SafetensorsView& v, const std::string& name)
{
    const std::string what = v.file() + ": layer '" + name + "'";
    auto fail = [&](const std::string& msg) { ::nanoquant::detail::raise_io_error(what + ": " + msg); };
    const auto fmt = v.metadata().find("nanoquant.format");
    const auto ver = v.metadata().find("nanoquant.format_version");
    if (fmt == v.metadata().end() || fmt->second != kFactorizedFormatName)
        ::nanoquant::detail::raise_io_error(v.file() + ": not a nanoquant factorized file (no \"nanoquant.format\" = \"" +
                                            kFactorizedFormatName + "\" metadata)");
    if (ver == v.metadata().end() || ver->second != std::to_string(kFactorizedFormatVersion))
        ::nanoquant::detail::raise_io_error(v.file() + ": unsupported nanoquant format version \"" +
                                            (ver == v.metadata().end() ? std::string("missing") : ver->second) +
                                            "\" (this build reads version " +
                                            std::to_string(kFactorizedFormatVersion) + ")");
    const auto key = v.metadata().find(kLayerKeyPrefix + name);
    if (key == v.metadata().end()) fail("no metadata entry \"" + std::string(kLayerKeyPrefix) + name + "\"");
    FactorizedLayer<Scalar> out;
    out.name = name;
    try {
        out.info = nlohmann::json::parse(key->second);
    } catch (const nlohmann::json::exception& e) {
        fail(std::string("metadata is not valid JSON: ") + e.what());
    }
    const nlohmann::json& j = out.info;
    if (!j.is_object() || !j.contains("shape") || !j["shape"].is_array() || j["shape"].size() != 2 ||
        !j["shape"][0].is_number_unsigned() || !j["shape"][1].is_number_unsigned() || !j.contains("rank") ||
        !j["rank"].is_number_unsigned() || !j.contains("scales") || !j["scales"].is_number_unsigned())
        fail("metadata needs \"shape\": [m, n], \"rank\": r and \"scales\": 2|3 as non-negative integers");
    const std::uint64_t m = j["shape"][0], n = j["shape"][1], r = j["rank"], ns = j["scales"];
    if (m == 0 || n == 0 || r == 0 || m > (1u << 31) || n > (1u << 31) || r > std::min(m, n))
        fail("metadata shape [" + std::to_string(m) + ", " + std::to_string(n) + "] with rank " + std::to_string(r) +
             " is not a valid factorization (need 1 <= rank <= min(m, n))");
    if (ns != 2 && ns != 3) fail("metadata \"scales\" must be 2 or 3, got " + std::to_string(ns));
    auto expect = [&](const std::string& suffix, std::vector<std::int64_t> shape, bool is_sign) -> const TensorInfo& {
        const std::string tn = name + suffix;
        if (!v.contains(tn)) fail("missing tensor '" + tn + "'");
        const TensorInfo& t = v.info(tn);
        if (t.shape != shape) {
            TensorInfo want;
            want.shape = shape;
            fail("tensor '" + tn + "' has shape " + t.shape_string() + ", expected " + want.shape_string());
        }
        if (is_sign ? t.dtype != StDType::U8 : (t.dtype != StDType::F16 && t.dtype != StDType::F32))
            fail("tensor '" + tn + "' has dtype " + to_string(t.dtype) + ", expected " + (is_sign ? "U8" : "F16 or F32"));
        return t;
    };
    const auto M = static_cast<std::int64_t>(m), N = static_cast<std::int64_t>(n), R = static_cast<std::int64_t>(r);
    const TensorInfo& tu = expect(".u", {M, (R + 7) / 8}, true);
    const TensorInfo& tv = expect(".vt", {R, (N + 7) / 8}, true);
    out.f.u = signs_from_bytes(v.data(tu), M, R, what + " tensor '" + name + ".u'");
    out.f.vt = signs_from_bytes(v.data(tv), R, N, what + " tensor '" + name + ".vt'");
    auto scale = [&](const char* suffix, std::int64_t len) {
        expect(suffix, {len}, false);
        const std::vector<float> s = v.read_floats(name + suffix);
        Vector<Scalar> out_s(len);
        for (std::int64_t i = 0; i < len; ++i) {
            if (!std::isfinite(s[static_cast<std::size_t>(i)]))
                fail("tensor '" + name + suffix + "' holds a non-finite value at index " + std::to_string(i));
            out_s(i) = static_cast<Scalar>(s[static_cast<std::size_t>(i)]);
        }
        return out_s;
    };
    out.f.s_out = scale(".s_out", M);
    if (ns == 3) out.f.s_mid = scale(".s_mid", R);
    out.f.s_in = scale(".s_in", N);
    return out;
}

/// Loads every factorized layer of the file at `path`.
template <typename Scalar = float>
std::vector<FactorizedLayer<Scalar>> load_factorized(const std::string& path)
{
    const SafetensorsFile f(path);
    std::vector<FactorizedLayer<Scalar>> out;
    for (const auto& name : factorized_layer_names(f)) out.push_back(load_factorized_layer<Scalar>(f, name));
    return out;
}

}  // namespace io
}  // namespace nanoquant
