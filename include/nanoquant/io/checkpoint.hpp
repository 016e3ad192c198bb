// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file checkpoint.hpp
/// Checkpoint: the tensors of a model, held in one safetensors file or sharded over several
/// files listed by a Hugging Face index (`model.safetensors.index.json`:
/// `{"metadata": {...}, "weight_map": {"TENSOR": "SHARD.safetensors", ...}}`, shard names relative
/// to the index's directory). Every shard is memory-mapped and checked when opened.

#include <algorithm>
#include <cstddef>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "nanoquant/error.hpp"
#include "nanoquant/io/safetensors.hpp"

namespace nanoquant {
namespace io {

/// True if `s` ends with `suffix`.
inline bool ends_with(const std::string& s, const std::string& suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// A single-file or sharded safetensors checkpoint, opened read-only.
class Checkpoint {
public:
    /// Where one tensor lives.
    struct Entry {
        std::string name;     ///< tensor name
        std::size_t shard;    ///< index into shards()
    };

    /// Opens `path`: a `.safetensors` file, or a `*.json` index of shards.
    /// \throws nanoquant::io_error naming the file, the tensor and the numbers.
    explicit Checkpoint(const std::string& path) : m_path(path)
    {
        if (ends_with(path, ".json")) {
            open_index(path);
        } else {
            m_shards.push_back(std::make_unique<SafetensorsFile>(path));
            for (const auto& t : m_shards[0]->tensors()) add_entry(t.name, 0);
            m_metadata = m_shards[0]->metadata();
        }
    }

    /// The path given to the constructor.
    const std::string& path() const { return m_path; }
    /// True for an index of shards.
    bool sharded() const { return m_sharded; }
    /// Tensors in shard order, then file order.
    const std::vector<Entry>& entries() const { return m_entries; }
    /// The opened shards (one for a single file).
    const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return m_shards; }
    /// Metadata: the file's `__metadata__`, or the string values of the index's "metadata".
    const std::map<std::string, std::string>& metadata() const { return m_metadata; }

    /// True if the checkpoint holds `name`.
    bool contains(const std::string& name) const { return m_where.count(name) != 0; }

    /// The shard that holds `name`. \throws nanoquant::io_error if absent.
    const SafetensorsFile& shard_of(const std::string& name) const
    {
        const auto it = m_where.find(name);
        if (it == m_where.end())
            ::nanoquant::detail::raise_io_error(m_path + ": no tensor named '" + name + "' (the checkpoint has " +
                                   std::to_string(m_entries.size()) + " tensors)");
        return *m_shards[it->second];
    }
    /// The header entry of `name`.
    const TensorInfo& info(const std::string& name) const { return shard_of(name).info(name); }

    /// Total size in bytes of all shard files.
    std::size_t total_bytes() const
    {
        std::size_t n = 0;
        for (const auto& s : m_shards) n += s->size();
        return n;
    }

private:
    void add_entry(const std::string& name, std::size_t shard)
    {
        if (!m_where.emplace(name, shard).second)
            ::nanoquant::detail::raise_io_error(m_path + ": tensor '" + name + "' appears in more than one shard");
        m_entries.push_back({name, shard});
    }

    void open_index(const std::string& path)
    {
        m_sharded = true;
        std::ifstream in(path, std::ios::binary);
        if (!in) ::nanoquant::detail::raise_io_error(path + ": cannot open the checkpoint index");
        std::ostringstream ss;
        ss << in.rdbuf();
        // A JSON object may repeat a key, and the parsed object keeps one of the values: a tensor
        // listed twice in the weight_map would silently be read from one of its two shards. The
        // callback records the weight_map's (tensor, shard) pairs as written, repeats included.
        std::vector<std::string> parents;  // the key whose value each open object is
        std::string last_key;
        std::vector<std::pair<std::string, std::string>> listed;
        const auto record = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& v) {
            using E = nlohmann::json::parse_event_t;
            if (ev == E::object_start) parents.push_back(last_key);
            else if (ev == E::object_end && !parents.empty()) parents.pop_back();
            else if (ev == E::key) last_key = v.get<std::string>();
            else if (ev == E::value && parents.size() == 2 && parents[1] == "weight_map" && v.is_string())
                listed.emplace_back(last_key, v.get<std::string>());
            return true;
        };
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(ss.str(), record);
        } catch (const nlohmann::json::exception& e) {
            ::nanoquant::detail::raise_io_error(path + ": not a valid JSON checkpoint index: " + e.what());
        }
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            ::nanoquant::detail::raise_io_error(path + ": checkpoint index has no \"weight_map\" object");
        std::map<std::string, std::string> first_listed;
        for (const auto& [tensor, shard] : listed) {
            const auto ins = first_listed.emplace(tensor, shard);
            if (!ins.second)
                ::nanoquant::detail::raise_io_error(path + ": tensor '" + tensor + "' is listed twice in the weight_map (shards '" +
                                       ins.first->second + "' and '" + shard + "')");
        }
        if (j.contains("metadata") && j["metadata"].is_object())
            for (auto it = j["metadata"].begin(); it != j["metadata"].end(); ++it)
                m_metadata[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
        const std::size_t slash = path.find_last_of('/');
        const std::string dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
        std::map<std::string, std::size_t> shard_ids;
        std::map<std::size_t, std::vector<std::string>> names_by_shard;
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it.value().is_string())
                ::nanoquant::detail::raise_io_error(path + ": weight_map entry '" + it.key() + "' is not a file name");
            const std::string shard = it.value().get<std::string>();
            if (shard.empty() || shard[0] == '/' || shard.find("..") != std::string::npos)
                ::nanoquant::detail::raise_io_error(path + ": weight_map entry '" + it.key() + "' names shard '" + shard +
                                       "', which is not a relative path inside the checkpoint directory");
            auto ins = shard_ids.emplace(shard, m_shards.size());
            if (ins.second) m_shards.push_back(std::make_unique<SafetensorsFile>(dir + shard));
            names_by_shard[ins.first->second].push_back(it.key());
        }
        for (std::size_t s = 0; s < m_shards.size(); ++s) {
            const auto& names = names_by_shard[s];
            for (const auto& n : names)
                if (!m_shards[s]->contains(n))
                    ::nanoquant::detail::raise_io_error(path + ": tensor '" + n + "' is listed in shard " + m_shards[s]->file() +
                                           ", which does not contain it");
            for (const auto& t : m_shards[s]->tensors())  // keep file order
                if (std::find(names.begin(), names.end(), t.name) != names.end()) add_entry(t.name, s);
        }
    }

    std::string m_path;
    bool m_sharded = false;
    std::vector<std::unique_ptr<SafetensorsFile>> m_shards;
    std::vector<Entry> m_entries;
    std::map<std::string, std::size_t> m_where;
    std::map<std::string, std::string> m_metadata;
};

}  // namespace io
}  // namespace nanoquant
