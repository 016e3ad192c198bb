// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file tfjs_model.hpp
/// Reading the weights of a TF.js graph model (model.json + binary shards).
///
/// model.json is an object with "modelTopology" (the graph, kept as JSON for node attributes) and
/// "weightsManifest": an array of groups {"paths": [shard, ...], "weights": [{"name", "shape",
/// "dtype"}, ...]}. The shards of a group, concatenated in order, hold the group's weights laid
/// end to end, little-endian, row-major. Shard paths are relative to model.json's folder.
///
/// Everything is checked when the file is loaded, and every malformation is one
/// nanoquant::io_error naming the file at fault (model.json or the shard) and what is wrong:
/// unreadable or invalid JSON, missing or malformed weightsManifest / paths / weights entries,
/// duplicate names (across groups too), dtypes other than float32 and int32 (quantized weights,
/// i.e. a "quantization" entry, are rejected as unsupported), shapes with negative or non-integer
/// dimensions or whose byte size overflows, shard paths that are empty, absolute or contain "..",
/// shards missing or unreadable, and a group whose weights need a different number of bytes than
/// its shards hold (the message gives both counts, and the shard sizes).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/io/mapped_file.hpp"

namespace nanoquant {
namespace model {

/// One weight of a TF.js model, converted to float.
struct TfjsTensor {
    std::string name;          ///< the manifest name (a graph node name)
    std::string dtype;         ///< "float32" or "int32" (as stored; the values are floats either way)
    std::vector<Index> shape;  ///< dimensions; empty for a scalar
    std::vector<float> values; ///< row-major; int32 values converted to float

    /// Number of elements (product of the shape; 1 for a scalar).
    Index numel() const
    {
        Index n = 1;
        for (Index d : shape) n *= d;
        return n;
    }
    /// "[2, 3]"
    std::string shape_string() const
    {
        std::string s = "[";
        for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
        return s + "]";
    }
};

/// The weights of a TF.js graph model, read and checked at once (see the file comment).
class TfjsModel {
public:
    /// Largest model.json accepted (the real USE-Lite one is 0.25 MB).
    static constexpr std::size_t kMaxJsonBytes = 256u * 1024u * 1024u;

    /// Reads model.json and every shard it names. \throws nanoquant::io_error naming the file.
    static TfjsModel load(const std::string& model_json_path)
    {
        TfjsModel m;
        m.m_path = model_json_path;
        m.parse();
        return m;
    }

    /// The model.json path, as given.
    const std::string& path() const { return m_path; }

    /// True if a weight called `name` exists.
    bool contains(const std::string& name) const { return m_index.count(name) != 0; }

    /// The weight `name`. \throws nanoquant::invalid_argument naming the tensor and the file if absent.
    const TfjsTensor& tensor(const std::string& name) const
    {
        const auto it = m_index.find(name);
        if (it == m_index.end())
            ::nanoquant::detail::raise_invalid_argument(
                "TfjsModel::tensor", "no weight named '" + name + "' in " + m_path + " (it has " +
                                         std::to_string(m_tensors.size()) + " weights)");
        return m_tensors[it->second];
    }

    /// Weight names in manifest order (groups in order, weights in order within a group).
    std::vector<std::string> names() const
    {
        std::vector<std::string> out;
        out.reserve(m_tensors.size());
        for (const auto& t : m_tensors) out.push_back(t.name);
        return out;
    }

    /// All weights, in manifest order.
    const std::vector<TfjsTensor>& tensors() const { return m_tensors; }

    /// The "modelTopology" object (null if model.json has none), for node attributes.
    const nlohmann::json& topology() const { return m_topology; }

private:
    TfjsModel() = default;

    [[noreturn]] void fail(const std::string& what) const { ::nanoquant::detail::raise_io_error(m_path + ": " + what); }

    /// The folder part of model.json's path, with its trailing '/', or "" for a bare name.
    std::string folder() const
    {
        const auto slash = m_path.find_last_of('/');
        return slash == std::string::npos ? std::string() : m_path.substr(0, slash + 1);
    }

    static bool has_dotdot(const std::string& p)
    {
        std::size_t b = 0;
        while (b <= p.size()) {
            std::size_t e = p.find('/', b);
            if (e == std::string::npos) e = p.size();
            if (p.compare(b, e - b, "..") == 0 && e - b == 2) return true;
            b = e + 1;
        }
        return false;
    }

    struct Pending {
        std::size_t tensor;  // index in m_tensors
        std::size_t nbytes;
        bool is_int32;
    };

    void parse()
    {
        // MappedFile: io_error naming the path when missing, unreadable or not a regular file.
        const io::MappedFile file(m_path);
        if (file.size() > kMaxJsonBytes)
            fail(std::to_string(file.size()) + " bytes, above the limit of " + std::to_string(kMaxJsonBytes) +
                 " for a model.json");
        const std::string text(reinterpret_cast<const char*>(file.data()), file.size());
        if (text.empty()) fail("empty file (0 bytes), not a TF.js model.json");
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception& e) {
            fail(std::string("not valid UTF-8 JSON: ") + e.what());
        }
        if (!j.is_object()) fail(std::string("the file is a JSON ") + j.type_name() + ", expected an object");
        if (j.contains("modelTopology")) m_topology = j["modelTopology"];
        const auto wm = j.find("weightsManifest");
        if (wm == j.end()) fail("no \"weightsManifest\": not a TF.js graph-model model.json");
        if (!wm->is_array()) fail(std::string("\"weightsManifest\" is a JSON ") + wm->type_name() + ", expected an array");
        for (std::size_t g = 0; g < wm->size(); ++g) read_group(g, (*wm)[g]);
    }

    void read_group(std::size_t g, const nlohmann::json& grp)
    {
        const std::string where = "weightsManifest group " + std::to_string(g) + ": ";
        if (!grp.is_object()) fail(where + "is a JSON " + grp.type_name() + ", expected an object");
        const auto paths = grp.find("paths");
        if (paths == grp.end() || !paths->is_array()) fail(where + "missing or non-array \"paths\"");
        const auto weights = grp.find("weights");
        if (weights == grp.end() || !weights->is_array()) fail(where + "missing or non-array \"weights\"");

        // The weights' byte sizes, all checked before any shard is touched.
        std::vector<Pending> pending;
        std::size_t need = 0;
        for (std::size_t w = 0; w < weights->size(); ++w) {
            Pending p = read_entry(where, w, (*weights)[w]);
            if (p.nbytes > std::numeric_limits<std::size_t>::max() - need)
                fail(where + "the weights' total size overflows");
            need += p.nbytes;
            pending.push_back(p);
        }

        // The shards: relative paths inside the model's folder, present and readable.
        std::vector<io::MappedFile> shards;
        std::size_t have = 0;
        std::string sizes;
        for (std::size_t k = 0; k < paths->size(); ++k) {
            const nlohmann::json& pj = (*paths)[k];
            if (!pj.is_string()) fail(where + "paths[" + std::to_string(k) + "] is " + pj.dump() + ", expected a string");
            const std::string rel = pj.get<std::string>();
            if (rel.empty()) fail(where + "paths[" + std::to_string(k) + "] is empty");
            if (rel[0] == '/')
                fail(where + "shard path \"" + rel + "\" is absolute; shard paths must be relative to model.json");
            if (has_dotdot(rel))
                fail(where + "shard path \"" + rel + "\" contains \"..\"; shards must lie in model.json's folder");
            if (rel.find('\0') != std::string::npos || rel.find('\\') != std::string::npos || rel.find("://") != std::string::npos)
                fail(where + "shard path " + pj.dump() + " is not a plain relative file path");
            const std::string full = folder() + rel;
            try {
                shards.emplace_back(full);
            } catch (const io_error& e) {
                fail(where + "shard " + std::to_string(k + 1) + " of " + std::to_string(paths->size()) +
                     " (\"" + rel + "\"): " + e.what());
            }
            have += shards.back().size();
            sizes += (k ? " + " : "") + std::to_string(shards.back().size());
        }
        if (have != need) {
            const std::string first = folder() + (*paths)[0].get<std::string>();
            const std::string shard_list =
                paths->size() == 1 ? "shard " + first
                                   : std::to_string(paths->size()) + " shards " + first + " .. " +
                                         folder() + paths->back().get<std::string>();
            fail(where + "the " + std::to_string(pending.size()) + " weights need " + std::to_string(need) +
                 " bytes but the " + shard_list + (paths->size() == 1 ? " holds " : " hold ") + std::to_string(have) +
                 (paths->size() > 1 ? " (" + sizes + ")" : std::string()) +
                 (have < need ? "; truncated or missing data" : "; trailing data"));
        }

        // Copy the values out of the concatenated shards.
        std::size_t shard = 0, off = 0;  // read position
        for (const Pending& p : pending) {
            TfjsTensor& t = m_tensors[p.tensor];
            std::vector<std::uint8_t> bytes(p.nbytes);
            std::size_t done = 0;
            while (done < p.nbytes) {
                while (off == shards[shard].size()) ++shard, off = 0;
                const std::size_t take = std::min(p.nbytes - done, shards[shard].size() - off);
                std::memcpy(bytes.data() + done, shards[shard].data() + off, take);
                done += take;
                off += take;
            }
            const std::size_t n = p.nbytes / 4;
            t.values.resize(n);
            for (std::size_t i = 0; i < n; ++i) {
                const std::uint32_t u = static_cast<std::uint32_t>(bytes[4 * i]) |
                                        (static_cast<std::uint32_t>(bytes[4 * i + 1]) << 8) |
                                        (static_cast<std::uint32_t>(bytes[4 * i + 2]) << 16) |
                                        (static_cast<std::uint32_t>(bytes[4 * i + 3]) << 24);
                if (p.is_int32) {
                    std::int32_t v;
                    std::memcpy(&v, &u, 4);
                    t.values[i] = static_cast<float>(v);
                } else {
                    std::memcpy(&t.values[i], &u, 4);
                }
            }
        }
    }

    Pending read_entry(const std::string& group_where, std::size_t w, const nlohmann::json& e)
    {
        std::string where = group_where + "weights[" + std::to_string(w) + "]";
        if (!e.is_object()) fail(where + " is a JSON " + e.type_name() + ", expected an object");
        const auto name = e.find("name");
        if (name == e.end() || !name->is_string()) fail(where + ": missing or non-string \"name\"");
        TfjsTensor t;
        t.name = name->get<std::string>();
        where += " '" + t.name + "': ";
        if (t.name.empty()) fail(where + "empty name");
        if (m_index.count(t.name)) fail(where + "duplicate name (an earlier weight has the same name)");
        if (e.contains("quantization"))
            fail(where + "quantized weights (\"quantization\": " + e["quantization"].dump() +
                 ") are not supported; only float32 and int32 weights are read");
        const auto dt = e.find("dtype");
        if (dt == e.end() || !dt->is_string()) fail(where + "missing or non-string \"dtype\"");
        t.dtype = dt->get<std::string>();
        if (t.dtype != "float32" && t.dtype != "int32")
            fail(where + "unsupported dtype \"" + t.dtype + "\"; only float32 and int32 weights are read");
        const auto sh = e.find("shape");
        if (sh == e.end() || !sh->is_array()) fail(where + "missing or non-array \"shape\"");
        if (sh->size() > 32) fail(where + "shape has " + std::to_string(sh->size()) + " dimensions");
        // Products over the byte size (4 per element), checked against the largest Index.
        const std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<Index>::max()) / 4;
        std::uint64_t numel = 1;
        bool overflow = false;
        for (const auto& d : *sh) {
            if (!d.is_number_unsigned())
                fail(where + "shape " + sh->dump() + " has the entry " + d.dump() +
                     "; dimensions must be non-negative integers");
            const std::uint64_t v = d.get<std::uint64_t>();
            if (v > limit) overflow = true;
            t.shape.push_back(static_cast<Index>(std::min<std::uint64_t>(v, limit)));
            if (!overflow && v != 0 && numel > limit / v) overflow = true;
            if (!overflow) numel *= v;
        }
        bool empty = false;
        for (Index d : t.shape) empty = empty || d == 0;
        if (overflow && !empty) fail(where + "shape " + sh->dump() + " is too large (its byte size overflows)");
        if (empty) numel = 0;
        m_index.emplace(t.name, m_tensors.size());
        m_tensors.push_back(std::move(t));
        return {m_tensors.size() - 1, static_cast<std::size_t>(numel) * 4, m_tensors.back().dtype == "int32"};
    }

    std::string m_path;
    nlohmann::json m_topology;
    std::vector<TfjsTensor> m_tensors;
    std::unordered_map<std::string, std::size_t> m_index;
};

}  // namespace model
}  // namespace nanoquant
