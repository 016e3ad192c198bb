// SPDX-License-Identifier: Apache-2.0
// The USE-Lite pipeline on a small calibration set (WordNet sentences from the golden reference
// data), short settings so the test takes seconds: each stage's invariants, not its final quality
// (that is measured by scripts/use-lite-results.sh, docs/use-lite.md).
#include <catch2/catch.hpp>

#include <algorithm>

#include <fstream>

#include <nlohmann/json.hpp>

#include "nanoquant/model/pipeline.hpp"
#include "nanoquant/model/tokenizer.hpp"

using namespace nanoquant;
using namespace nanoquant::model;

namespace {

std::string package_file(const std::string& name)
{
    const std::string model = NANOQUANT_USE_LITE_MODEL;
    return model.substr(0, model.find_last_of('/') + 1) + name;
}

struct Fixture {
    UseLite model;
    std::vector<std::vector<std::int32_t>> calib;
};

const Fixture& fixture()
{
    static const Fixture f = [] {
        const std::string p = NANOQUANT_USE_LITE_MODEL;
        if (!std::ifstream(p).good()) FAIL("USE-Lite model " << p << " not found: run scripts/fetch-use-lite.sh");
        Fixture x;
        x.model = UseLite::from_tfjs(TfjsModel::load(p));
        const UseLiteTokenizer tok = UseLiteTokenizer::load(package_file("vocab.json"));
        std::ifstream in(std::string(NANOQUANT_DATA_DIR) + "/use_lite/golden.json");
        const auto j = nlohmann::json::parse(in);
        for (const auto& s : j.at("sentences")) {
            const std::string t = s.get<std::string>();
            if (t.size() > 20 && t.size() < 200) x.calib.push_back(tok.encode(t));
            if (x.calib.size() == 32) break;
        }
        return x;
    }();
    return f;
}

PipelineOptions quick(PipelineStage stage, double bpw = 1.0)
{
    PipelineOptions o;
    o.bpw = bpw;
    o.stage = stage;
    o.threads = 2;
    o.admm_iterations = 8;
    o.layer_epochs = 1;
    o.mitigation_epochs = 1;
    o.block_epochs = 1;
    o.model_epochs = 2;
    o.batch_sentences = 16;
    return o;
}

}  // namespace

TEST_CASE("model.pipeline: every matmul weight is factorized at the budget and the rest stays float", "[model]")
{
    const Fixture& f = fixture();
    const PipelineResult r = quantize_use_lite(f.model, f.calib, quick(PipelineStage::Admm, 0.8));
    REQUIRE(r.layers.size() == 10);
    for (const auto& l : r.layers) {
        INFO(l.name);
        CHECK(l.rank == rank_for_bpw(l.rows, l.cols, 0.8));
        CHECK(l.bpw <= 0.8);
    }
    UseLite q = r.model;
    for (auto& p : q.linears()) {
        INFO(p.first);
        REQUIRE(p.second->factorized);
        REQUIRE(p.second->packed);
        // Saved form: ±1 latents and float16 scales.
        CHECK((p.second->f.u.array().abs() == 1.0f).all());
        for (Index i = 0; i < p.second->f.s_out.size(); ++i)
            CHECK(io::half_to_float(io::float_to_half(p.second->f.s_out(i))) == p.second->f.s_out(i));
    }
    CHECK(q.embeddings == f.model.embeddings);
    CHECK(q.layers[1].ln_ffn.gamma == f.model.layers[1].ln_ffn.gamma);
    REQUIRE(r.stages.size() == 1);
    CHECK(r.stages[0].stage == "admm");
}

TEST_CASE("model.pipeline: the layer stage improves on its ADMM start and runs are reproducible", "[model]")
{
    const Fixture& f = fixture();
    const PipelineResult a = quantize_use_lite(f.model, f.calib, quick(PipelineStage::Layer, 0.55));
    REQUIRE(a.stages.size() == 2);
    CHECK(a.stages[1].calib_cosine > a.stages[0].calib_cosine);
    const PipelineResult b = quantize_use_lite(f.model, f.calib, quick(PipelineStage::Layer, 0.55));
    const Mat ea = a.model.encode(f.calib), eb = b.model.encode(f.calib);
    CHECK(ea == eb);
}

TEST_CASE("model.pipeline: block and full stages with full never worse than block on the held-out sentences", "[model]")
{
    const Fixture& f = fixture();
    PipelineOptions o = quick(PipelineStage::Full, 0.55);
    o.holdout = 0.25;
    o.model_epochs = 3;
    std::vector<std::string> seen;
    std::vector<UseLite> snapshots;
    const PipelineResult r = quantize_use_lite(f.model, f.calib, o, [&](const std::string& s, const UseLite& m) {
        seen.push_back(s);
        snapshots.push_back(m);
    });
    REQUIRE(seen == std::vector<std::string>{"block", "full"});
    REQUIRE(r.stages.size() == 2);
    std::vector<std::vector<std::int32_t>> tr, ho;
    model::detail::split_holdout(f.calib, o.holdout, o.seed, tr, ho);
    CHECK(ho.size() == 8);
    CHECK(r.holdout_sentences == Index(ho.size()));
    CHECK(r.train_sentences == Index(tr.size()));
    // The model stage keeps its best iterate (the block model included) by the embedding loss on the
    // held-out sentences: recomputed here through the packed inference path.
    const Mat target = f.model.encode(ho);
    const double block = model::detail::embedding_mse(snapshots[0].encode(ho), target, nullptr);
    const double full = model::detail::embedding_mse(snapshots[1].encode(ho), target, nullptr);
    CHECK(full <= block + 1e-4);
    // A quantized model must still be far better than chance on the sentences it was tuned on.
    CHECK(r.stages[0].calib_cosine > 0.5);
    // The packed inference path (no cache) agrees with the training path (float math on ±1 signs).
    UseLite q = r.model;
    Ragged batch;
    Mat h = q.embed(f.calib, batch);
    for (const auto& L : q.layers) {
        TransformerLayerCache c;  // a cache forces the float path
        h = transformer_forward(L, h, batch, &c);
    }
    PoolingHeadCache hc;
    const Mat e_float_path = head_forward(q.head, h, batch, &hc);
    const Mat e_packed = q.encode(f.calib);
    CHECK((e_float_path - e_packed).cwiseAbs().maxCoeff() < 1e-4f);
}

TEST_CASE("model.pipeline: the held-out split is a seeded partition in input order", "[model]")
{
    std::vector<std::vector<std::int32_t>> ids;
    for (std::int32_t i = 0; i < 40; ++i) ids.push_back({i});
    std::vector<std::vector<std::int32_t>> tr, ho, tr2, ho2, tr3, ho3;
    model::detail::split_holdout(ids, 0.25, 7, tr, ho);
    CHECK(ho.size() == 10);
    CHECK(tr.size() == 30);
    std::vector<std::int32_t> all;
    for (const auto* part : {&tr, &ho}) {
        for (std::size_t k = 1; k < part->size(); ++k) CHECK((*part)[k - 1][0] < (*part)[k][0]);
        for (const auto& v : *part) all.push_back(v[0]);
    }
    std::sort(all.begin(), all.end());
    for (std::int32_t i = 0; i < 40; ++i) CHECK(all[std::size_t(i)] == i);
    model::detail::split_holdout(ids, 0.25, 7, tr2, ho2);
    CHECK(ho2 == ho);
    model::detail::split_holdout(ids, 0.25, 8, tr3, ho3);
    CHECK(ho3 != ho);
    model::detail::split_holdout(ids, 0.0, 7, tr3, ho3);
    CHECK(ho3.empty());
    CHECK(tr3 == ids);
    model::detail::split_holdout({{1}, {2}}, 0.01, 7, tr3, ho3);  // at least one held out, at least one trained on
    CHECK(ho3.size() == 1);
    CHECK(tr3.size() == 1);
}

TEST_CASE("model.pipeline: bad options and calibration sets are errors naming the value", "[model]")
{
    const Fixture& f = fixture();
    PipelineOptions o = quick(PipelineStage::Admm);
    o.bpw = -1;
    CHECK_THROWS_WITH(quantize_use_lite(f.model, f.calib, o), Catch::Contains("bpw must be > 0, got -1"));
    o = quick(PipelineStage::Admm);
    CHECK_THROWS_WITH(quantize_use_lite(f.model, {f.calib[0]}, o), Catch::Contains("at least 2 sentences, got 1"));
    CHECK_THROWS_WITH(parse_pipeline_stage("blocks"), Catch::Contains("got 'blocks'"));
    o = quick(PipelineStage::Admm);
    o.holdout = 0.6;
    CHECK_THROWS_WITH(quantize_use_lite(f.model, f.calib, o), Catch::Contains("holdout must be in [0, 0.5], got 0.6"));
}

TEST_CASE("model.pipeline: the embedding loss gradient matches finite differences", "[model][grad]")
{
    // Pointwise squared distance plus the relational (similarity-matrix) term.
    Mat e = Mat::Random(5, 4), ehat = Mat::Random(5, 4);
    Mat de;
    model::detail::embedding_mse(ehat, e, &de);
    const double h = 1e-2;
    for (Index j = 0; j < ehat.cols(); ++j)
        for (Index i = 0; i < ehat.rows(); ++i) {
            const float saved = ehat(i, j);
            ehat(i, j) = saved + float(h);
            const double lp = model::detail::embedding_mse(ehat, e, nullptr);
            ehat(i, j) = saved - float(h);
            const double lm = model::detail::embedding_mse(ehat, e, nullptr);
            ehat(i, j) = saved;
            INFO("entry " << i << "," << j);
            CHECK(std::abs((lp - lm) / (2 * h) - double(de(i, j))) <= 1e-3 * (1 + std::abs(de(i, j))));
        }
    // And it vanishes at the target.
    CHECK(model::detail::embedding_mse(e, e, nullptr) == 0.0);
}
