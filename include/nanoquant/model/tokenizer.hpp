// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file tokenizer.hpp
/// The tokenizer of Google's Universal Sentence Encoder Lite, exactly as its TF.js runtime
/// (`@tensorflow-models/universal-sentence-encoder@1.3.3`, tokenizer/index.js) computes it:
///
/// - s = "▁" + NFKC(text) with every U+0020 replaced by "▁" (U+2581); an empty text gives no
///   ids at all (the JavaScript adds the "▁" only to a non-empty normalized string). No
///   lowercasing, trimming or collapsing of spaces: two spaces give a lone "▁" (id 30).
/// - Unigram Viterbi: at each start i, every piece with id ≥ 6 that is a prefix of s[i:] (a trie
///   walk); if none matches, one candidate (id 0, length 1, score 0). best[] starts at 0, and 0
///   also means "unset": a candidate ending at e with sc = score + best[start] replaces the
///   current one when best[e] == 0 or sc ≥ best[e], candidates visited by start ascending (so
///   ties go to the later-starting, shorter piece). Backtrack from the end by piece lengths,
///   merge runs of the unknown id 0 into one, reverse.
///
/// Symbols are UTF-16 code units, as in the JavaScript (its ES5 build iterates a string by code
/// units). For this vocabulary that equals code points: no piece holds a character beyond the
/// BMP, so an astral character is unknown either way and its two surrogates merge into one 0.
/// Scores are doubles (JavaScript numbers), so ties are decided on the same values. NFKC comes
/// from utf8proc, never from hand-written tables; pure-ASCII text skips it (ASCII is NFKC-stable).
///
/// vocab.json quirks kept as they are: null scores count as 0 (JavaScript's null + x), and a
/// piece listed twice keeps the last id and score (the trie insert overwrites).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/io/mapped_file.hpp"

namespace nanoquant {
namespace model {

namespace detail {

/// Decodes UTF-8 into code points. On invalid input (bad lead or continuation byte, overlong
/// form, surrogate, value above U+10FFFF, truncated sequence) returns false and the byte offset
/// of the offending sequence's first byte in `bad_offset`.
inline bool decode_utf8(const std::string& s, std::vector<std::uint32_t>& out, std::size_t& bad_offset)
{
    out.clear();
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned c = p[i];
        if (c < 0x80) {
            out.push_back(c);
            ++i;
            continue;
        }
        std::size_t len;
        std::uint32_t cp;
        std::uint32_t min;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            bad_offset = i;
            return false;
        }
        if (n - i < len) {
            bad_offset = i;
            return false;
        }
        for (std::size_t k = 1; k < len; ++k) {
            const unsigned cc = p[i + k];
            if ((cc & 0xC0) != 0x80) {
                bad_offset = i;
                return false;
            }
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            bad_offset = i;
            return false;
        }
        out.push_back(cp);
        i += len;
    }
    return true;
}

/// Appends the UTF-16 code units of code point `cp` (valid, not a surrogate).
inline void append_utf16(std::uint32_t cp, std::vector<std::uint16_t>& out)
{
    if (cp < 0x10000) {
        out.push_back(static_cast<std::uint16_t>(cp));
    } else {
        cp -= 0x10000;
        out.push_back(static_cast<std::uint16_t>(0xD800 + (cp >> 10)));
        out.push_back(static_cast<std::uint16_t>(0xDC00 + (cp & 0x3FF)));
    }
}

}  // namespace detail

/// The USE-Lite tokenizer (see the file comment for the exact rules).
class UseLiteTokenizer {
public:
    /// First id that is a real piece; ids 0..5 are "�" (unknown), <s>, </s> and three extra tokens.
    static constexpr std::int32_t kReservedIds = 6;
    /// The unknown id, the only reserved id ever produced.
    static constexpr std::int32_t kUnknownId = 0;

    /// Reads dist/vocab.json: a JSON array of [piece, score] pairs (piece a string, score a number
    /// or null). \throws nanoquant::io_error naming the file when it cannot be read, is not JSON
    /// (or not UTF-8), or an entry is malformed (the message gives the entry's index).
    static UseLiteTokenizer load(const std::string& vocab_json_path)
    {
        // MappedFile: io_error naming the path when missing, unreadable or not a regular file.
        const io::MappedFile file(vocab_json_path);
        if (file.size() == 0) ::nanoquant::detail::raise_io_error(vocab_json_path + ": empty file (0 bytes), not a vocab.json");
        const auto* text = reinterpret_cast<const char*>(file.data());
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(text, text + file.size());
        } catch (const nlohmann::json::exception& e) {
            ::nanoquant::detail::raise_io_error(vocab_json_path + ": not valid UTF-8 JSON: " + e.what());
        }
        if (!j.is_array())
            ::nanoquant::detail::raise_io_error(vocab_json_path + ": the vocabulary is a JSON " +
                                                j.type_name() + ", expected an array of [piece, score] pairs");
        if (j.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
            ::nanoquant::detail::raise_io_error(vocab_json_path + ": too many entries");
        std::vector<std::pair<std::string, double>> vocab;
        vocab.reserve(j.size());
        for (std::size_t i = 0; i < j.size(); ++i) {
            const nlohmann::json& e = j[i];
            const std::string where = vocab_json_path + ": entry " + std::to_string(i) + " ";
            if (!e.is_array() || e.size() != 2 || !e[0].is_string())
                ::nanoquant::detail::raise_io_error(where + e.dump() + " is not a [piece, score] pair");
            double score = 0.0;  // null scores are 0, as JavaScript's null + x == x
            if (e[1].is_number())
                score = e[1].get<double>();
            else if (!e[1].is_null())
                ::nanoquant::detail::raise_io_error(where + "has a score " + e[1].dump() +
                                                    "; expected a number or null");
            vocab.emplace_back(e[0].get<std::string>(), score);
        }
        if (vocab.size() <= static_cast<std::size_t>(kReservedIds))
            ::nanoquant::detail::raise_io_error(vocab_json_path + ": " + std::to_string(vocab.size()) +
                                                " entries; the first " + std::to_string(kReservedIds) +
                                                " are reserved, so a vocabulary needs more");
        return UseLiteTokenizer(std::move(vocab), vocab_json_path);
    }

    /// Builds a tokenizer from [piece, score] pairs in id order (ids 0..5 reserved as in vocab.json).
    /// `source` names the vocabulary in error messages. \throws nanoquant::io_error naming
    /// `source` and the piece's id if a piece is not valid UTF-8.
    UseLiteTokenizer(std::vector<std::pair<std::string, double>> vocab, std::string source = "vocabulary")
        : m_source(std::move(source)), m_root(65536, kNone)
    {
        m_piece_units.resize(vocab.size(), 1);
        m_nodes.push_back({-1, 0.0});  // the root
        std::vector<std::uint32_t> cps;
        std::vector<std::uint16_t> units;
        for (std::size_t id = 0; id < vocab.size(); ++id) {
            std::size_t bad = 0;
            if (!detail::decode_utf8(vocab[id].first, cps, bad))
                ::nanoquant::detail::raise_io_error(m_source + ": piece " + std::to_string(id) +
                                                    " is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
            units.clear();
            for (auto cp : cps) detail::append_utf16(cp, units);
            // JavaScript's piece.length (UTF-16 units) is what the backtrack steps by.
            m_piece_units[id] = static_cast<std::int32_t>(units.size());
            if (id < static_cast<std::size_t>(kReservedIds) || units.empty()) continue;
            std::uint32_t node = 0;
            for (std::size_t k = 0; k < units.size(); ++k) node = child_or_insert(node, units[k]);
            m_nodes[node].id = static_cast<std::int32_t>(id);  // a repeated piece: the last one wins
            m_nodes[node].score = vocab[id].second;
        }
    }

    /// Token ids of `utf8` (all of them; the model truncates to 128 positions itself). Empty text
    /// gives an empty vector. \throws nanoquant::invalid_argument naming the byte offset of the
    /// first invalid UTF-8 sequence.
    std::vector<std::int32_t> encode(const std::string& utf8) const
    {
        std::vector<std::uint16_t> s;
        normalize(utf8, s);
        const std::size_t n = s.size();
        std::vector<std::int32_t> out;
        if (n == 0) return out;
        std::vector<double> best(n + 1, 0.0);
        std::vector<std::int32_t> words(n + 1, 0);
        // Forward pass. The JavaScript visits, for each end, the candidates by start ascending; a
        // pass by start ascending updates every best[end] in that same order, and best[start] is
        // final when start is reached (every candidate ending there started earlier).
        for (std::size_t i = 0; i < n; ++i) {
            bool matched = false;
            std::uint32_t node = m_root[s[i]];
            for (std::size_t k = i; node != kNone;) {
                const Node& nd = m_nodes[node];
                if (nd.id >= 0) {
                    matched = true;
                    relax(best, words, i, k + 1, nd.id, nd.score);
                }
                if (++k == n) break;
                node = child(node, s[k]);
            }
            if (!matched) relax(best, words, i, i + 1, kUnknownId, 0.0);
        }
        // Backtrack by the pieces' lengths; a position no candidate ended at holds id 0 (length 1).
        std::vector<std::int32_t> rev;
        for (std::size_t it = n; it > 0;) {
            const std::int32_t id = words[it];
            rev.push_back(id);
            // max(1, .): an empty piece 0 would make the JavaScript loop forever; here it steps by 1.
            const std::size_t len = std::max<std::size_t>(1, static_cast<std::size_t>(m_piece_units[static_cast<std::size_t>(id)]));
            it = len >= it ? 0 : it - len;
        }
        out.reserve(rev.size());
        bool prev_unknown = false;
        for (std::size_t k = 0; k < rev.size(); ++k) {
            const bool unknown = rev[k] == kUnknownId;
            if (!(prev_unknown && unknown)) out.push_back(rev[k]);
            prev_unknown = unknown;
        }
        std::vector<std::int32_t> ids(out.rbegin(), out.rend());
        return ids;
    }

    /// Number of vocabulary entries (8000 for USE-Lite; ids 0..vocab_size()-1).
    Index vocab_size() const { return static_cast<Index>(m_piece_units.size()); }

    /// "▁" + NFKC(text) with spaces as "▁", in UTF-16 code units (the symbols of the Viterbi).
    /// \throws nanoquant::invalid_argument naming the byte offset of invalid UTF-8.
    static void normalize(const std::string& utf8, std::vector<std::uint16_t>& out)
    {
        out.clear();
        std::vector<std::uint32_t> cps;
        std::size_t bad = 0;
        if (!detail::decode_utf8(utf8, cps, bad)) {
            const unsigned b = static_cast<unsigned char>(utf8[bad]);
            char hex[8];
            std::snprintf(hex, sizeof hex, "0x%02X", b);
            ::nanoquant::detail::raise_invalid_argument(
                "UseLiteTokenizer::encode", "the text is not valid UTF-8: invalid byte " + std::string(hex) +
                                                " at byte offset " + std::to_string(bad));
        }
        bool ascii = true;
        for (auto cp : cps) ascii = ascii && cp < 0x80;
        if (!ascii) {
            utf8proc_uint8_t* dst = nullptr;
            const utf8proc_ssize_t r = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                                                    static_cast<utf8proc_ssize_t>(utf8.size()), &dst,
                                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                                                                                   UTF8PROC_COMPAT));
            if (r < 0) {
                std::free(dst);
                ::nanoquant::detail::raise_invalid_argument("UseLiteTokenizer::encode",
                                                            std::string("NFKC normalization failed: ") +
                                                                utf8proc_errmsg(r));
            }
            const std::string nfkc(reinterpret_cast<const char*>(dst), static_cast<std::size_t>(r));
            std::free(dst);
            if (!detail::decode_utf8(nfkc, cps, bad))
                ::nanoquant::detail::raise_invalid_argument("UseLiteTokenizer::encode",
                                                            "NFKC normalization produced invalid UTF-8");
        }
        if (cps.empty()) return;
        out.reserve(cps.size() + 2);
        out.push_back(kSpace);
        for (auto cp : cps) {
            if (cp == 0x20) cp = kSpace;
            detail::append_utf16(cp, out);
        }
    }

private:
    static constexpr std::uint16_t kSpace = 0x2581;  // "▁"
    static constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();

    struct Node {
        std::int32_t id;  // piece ending here, or -1
        double score;
    };

    static void relax(std::vector<double>& best, std::vector<std::int32_t>& words, std::size_t start,
                      std::size_t end, std::int32_t id, double score)
    {
        const double sc = score + best[start];
        if (best[end] == 0.0 || sc >= best[end]) {
            best[end] = sc;
            words[end] = id;
        }
    }

    static std::uint64_t edge_key(std::uint32_t node, std::uint16_t unit)
    {
        return (static_cast<std::uint64_t>(node) << 16) | unit;
    }

    std::uint32_t child(std::uint32_t node, std::uint16_t unit) const
    {
        if (node == 0) return m_root[unit];
        const auto it = m_edges.find(edge_key(node, unit));
        return it == m_edges.end() ? kNone : it->second;
    }

    std::uint32_t child_or_insert(std::uint32_t node, std::uint16_t unit)
    {
        const std::uint32_t c = child(node, unit);
        if (c != kNone) return c;
        const auto fresh = static_cast<std::uint32_t>(m_nodes.size());
        m_nodes.push_back({-1, 0.0});
        if (node == 0)
            m_root[unit] = fresh;
        else
            m_edges.emplace(edge_key(node, unit), fresh);
        return fresh;
    }

    std::string m_source;
    std::vector<std::int32_t> m_piece_units;  // UTF-16 length of each piece (JavaScript's .length)
    std::vector<Node> m_nodes;                // trie nodes; 0 is the root
    std::vector<std::uint32_t> m_root;        // the root's children, indexed by code unit
    std::unordered_map<std::uint64_t, std::uint32_t> m_edges;  // (node, unit) -> child, below the root
};

}  // namespace model
}  // namespace nanoquant
