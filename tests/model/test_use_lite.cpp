// SPDX-License-Identifier: Apache-2.0
// The float32 USE-Lite encoder against Google's runtime: embeddings of every sentence of the golden
// and held-out sets (tests/data/use_lite/, written by scripts/use-lite-reference.sh with TF.js
// 4.22) within cosine 0.99999 and max abs difference 1e-5, from token ids made by our tokenizer;
// and a sentence's embedding does not depend on the batch it is encoded in.
#include <catch2/catch.hpp>

#include <fstream>

#include <nlohmann/json.hpp>

#include "nanoquant/io/npy.hpp"
#include "nanoquant/model/tokenizer.hpp"
#include "nanoquant/model/use_lite.hpp"

using namespace nanoquant;
using namespace nanoquant::model;

namespace {

std::string package_file(const std::string& name)
{
    const std::string model = NANOQUANT_USE_LITE_MODEL;
    return model.substr(0, model.find_last_of('/') + 1) + name;
}

const UseLite& real_model()
{
    static const UseLite m = [] {
        const std::string p = NANOQUANT_USE_LITE_MODEL;
        if (!std::ifstream(p).good())
            FAIL("USE-Lite model " << p << " not found: run scripts/fetch-use-lite.sh");
        return UseLite::from_tfjs(TfjsModel::load(p));
    }();
    return m;
}

struct Reference {
    std::vector<std::string> sentences;
    std::vector<std::vector<std::int32_t>> ids;
    Mat embeddings;
};

Reference load_reference(const std::string& stem)
{
    const std::string dir = std::string(NANOQUANT_DATA_DIR) + "/use_lite/";
    std::ifstream in(dir + stem + ".json");
    REQUIRE(in.good());
    const nlohmann::json j = nlohmann::json::parse(in);
    Reference r;
    r.sentences = j.at("sentences").get<std::vector<std::string>>();
    r.ids = j.at("token_ids").get<std::vector<std::vector<std::int32_t>>>();
    r.embeddings = io::load_npy<float>(dir + stem + "_embeddings.npy");
    REQUIRE(r.embeddings.rows() == Index(r.sentences.size()));
    REQUIRE(r.embeddings.cols() == 512);
    return r;
}

void check_against(const std::string& stem)
{
    const Reference ref = load_reference(stem);
    const UseLiteTokenizer tok = UseLiteTokenizer::load(package_file("vocab.json"));
    std::vector<std::vector<std::int32_t>> ids;
    for (const auto& s : ref.sentences) ids.push_back(tok.encode(s));
    REQUIRE(ids == ref.ids);
    const Mat emb = real_model().encode(ids, 2);
    double worst_cos = 1, worst_abs = 0;
    for (Index i = 0; i < emb.rows(); ++i) {
        const double c = emb.row(i).cast<double>().dot(ref.embeddings.row(i).cast<double>()) /
                         (emb.row(i).cast<double>().norm() * ref.embeddings.row(i).cast<double>().norm());
        const double a = (emb.row(i) - ref.embeddings.row(i)).cwiseAbs().maxCoeff();
        INFO(stem << " sentence " << i << ": \"" << ref.sentences[std::size_t(i)] << "\"");
        CHECK(c >= 0.99999);
        CHECK(a <= 1e-5);
        worst_cos = std::min(worst_cos, c);
        worst_abs = std::max(worst_abs, a);
    }
    WARN(stem << ": " << emb.rows() << " sentences, worst cosine " << worst_cos << ", worst max abs difference "
              << worst_abs);
}

}  // namespace

TEST_CASE("model.use_lite: float embeddings equal TF.js on the golden sentences", "[model]")
{
    check_against("golden");
}

TEST_CASE("model.use_lite: float embeddings equal TF.js on the held-out sentences", "[model]")
{
    check_against("heldout");
}

TEST_CASE("model.use_lite: a sentence's embedding does not depend on its batch", "[model]")
{
    const UseLiteTokenizer tok = UseLiteTokenizer::load(package_file("vocab.json"));
    const std::vector<std::string> text = {"A short one.", "", "a much longer sentence with many more tokens in it than the others",
                                           "Zwei Wörter"};
    std::vector<std::vector<std::int32_t>> ids;
    for (const auto& s : text) ids.push_back(tok.encode(s));
    const Mat together = real_model().encode(ids);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const Mat alone = real_model().encode({ids[i]});
        INFO("sentence " << i);
        CHECK((alone.row(0) - together.row(Index(i))).cwiseAbs().maxCoeff() <= 1e-6f);
    }
}

TEST_CASE("model.use_lite: token ids outside the vocabulary are an error", "[model]")
{
    CHECK_THROWS_AS(real_model().encode({{5, 8002}}), nanoquant::invalid_argument);
    CHECK_THROWS_AS(real_model().encode({{-1}}), nanoquant::invalid_argument);
}
