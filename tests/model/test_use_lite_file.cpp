// SPDX-License-Identifier: Apache-2.0
// The USE-Lite model file (model/use_lite_file.hpp): a model saved after UseLite::finalize loads
// back bit for bit (every parameter, the architecture's scalars, identical embeddings through the
// packed kernels); an unfinalized model loads as its hardened, F16-rounded form; the size report
// adds up to the file; and every malformed file is one io_error naming the file and what is wrong.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "nanoquant/io/factorized_file.hpp"
#include "nanoquant/io/half.hpp"
#include "nanoquant/model/use_lite.hpp"
#include "nanoquant/model/tokenizer.hpp"
#include "nanoquant/model/use_lite_file.hpp"

using namespace nanoquant;
using namespace nanoquant::model;

namespace {

std::string tmp_path(const std::string& name)
{
    return std::string("test_use_lite_file_") + name + ".safetensors";
}

Mat randn(Index r, Index c, std::mt19937& g, float s = 0.3f)
{
    std::normal_distribution<float> n(0.0f, s);
    Mat M(r, c);
    for (Index j = 0; j < c; ++j)
        for (Index i = 0; i < r; ++i) M(i, j) = n(g);
    return M;
}

Vec randv(Index n, std::mt19937& g, float mean = 0.0f, float s = 0.3f)
{
    return (randn(n, 1, g, s).array() + mean).matrix();
}

Linear dense_linear(Index out, Index in, std::mt19937& g)
{
    Linear l;
    l.w = randn(out, in, g);
    l.b = randv(out, g);
    return l;
}

/// A small USE-Lite-shaped model: vocab 20, width 8; layer 0 8 -> 16 with a dense residual
/// projection, layer 1 16 -> 16; FFN 24; output 12; 2 heads.
UseLite tiny_model(unsigned seed)
{
    std::mt19937 g(seed);
    UseLite m;
    m.embeddings = randn(20, 8, g);
    m.timing_inv = randv(4, g, 0.5f, 0.2f);
    const Index d_in[2] = {8, 16}, d_model = 16, d_ff = 24;
    for (int l = 0; l < 2; ++l) {
        TransformerLayer& L = m.layers[std::size_t(l)];
        const Index d = d_in[l];
        L.ln_attn = {randv(d, g, 1.0f), randv(d, g), 1e-6f};
        L.ln_ffn = {randv(d_model, g, 1.0f), randv(d_model, g), 1e-5f};
        L.qkv = dense_linear(3 * d, d, g);
        L.out = dense_linear(d_model, d, g);
        L.has_dense = (l == 0);
        if (L.has_dense) L.dense = dense_linear(d_model, d, g);
        L.up = dense_linear(d_ff, d_model, g);
        L.down = dense_linear(d_model, d_ff, g);
        L.heads = 2;
        L.q_scale = l == 0 ? 0.125f : 0.1767767f;
    }
    m.head.dense = dense_linear(12, d_model, g);
    return m;
}

/// Replaces every matmul weight but `keep_dense` by a random factorization of rank `rank`
/// (real-valued latents and scales that are not F16 values: what training leaves behind).
void factorize_randomly(UseLite& m, Index rank, std::mt19937& g, const std::string& keep_dense = "",
                        bool three_scales = false)
{
    for (auto& p : m.linears()) {
        if (p.first == keep_dense) continue;
        Linear& l = *p.second;
        const Index out = l.out(), in = l.in(), r = std::min<Index>(rank, std::min(out, in));
        l.factorized = true;
        l.w.resize(0, 0);
        l.f.u = randn(out, r, g);
        l.f.vt = randn(r, in, g);
        l.f.s_out = randv(out, g, 0.5f, 0.1f);
        l.f.s_in = randv(in, g, 0.5f, 0.1f);
        if (three_scales) l.f.s_mid = randv(r, g, 1.0f, 0.1f);
    }
}

std::vector<std::vector<std::int32_t>> some_ids()
{
    return {{1, 2, 3}, {}, {19, 0, 7, 7, 7, 12, 5}, {4}};
}

void require_same(const Linear& a, const Linear& b, const std::string& name)
{
    INFO(name);
    REQUIRE(a.factorized == b.factorized);
    CHECK(a.b == b.b);
    if (!a.factorized) {
        CHECK(a.w == b.w);
        return;
    }
    CHECK(a.f.u == b.f.u);
    CHECK(a.f.vt == b.f.vt);
    CHECK(a.f.s_out == b.f.s_out);
    CHECK(a.f.s_mid == b.f.s_mid);
    CHECK(a.f.s_in == b.f.s_in);
    CHECK(b.packed != nullptr);
}

void require_same(UseLite& a, UseLite& b)
{
    CHECK(a.embeddings == b.embeddings);
    CHECK(a.timing_inv == b.timing_inv);
    for (std::size_t l = 0; l < 2; ++l) {
        const TransformerLayer &x = a.layers[l], &y = b.layers[l];
        INFO("layer " << l);
        CHECK(x.ln_attn.gamma == y.ln_attn.gamma);
        CHECK(x.ln_attn.beta == y.ln_attn.beta);
        CHECK(x.ln_ffn.gamma == y.ln_ffn.gamma);
        CHECK(x.ln_ffn.beta == y.ln_ffn.beta);
        CHECK(x.ln_attn.eps == y.ln_attn.eps);
        CHECK(x.ln_ffn.eps == y.ln_ffn.eps);
        CHECK(x.heads == y.heads);
        CHECK(x.q_scale == y.q_scale);
        CHECK(x.has_dense == y.has_dense);
    }
    CHECK(a.head.l2_eps == b.head.l2_eps);
    const auto la = a.linears(), lb = b.linears();
    REQUIRE(la.size() == lb.size());
    for (std::size_t k = 0; k < la.size(); ++k) {
        REQUIRE(la[k].first == lb[k].first);
        require_same(*la[k].second, *lb[k].second, la[k].first);
    }
}

// ------------------------------------------------------------------ rewriting a file ----------

struct Edit {
    std::function<bool(const std::string&)> drop = [](const std::string&) { return false; };
    std::map<std::string, std::string> set_meta;
    std::set<std::string> erase_meta;
    /// Replaces tensor `name` by F32 values of another shape.
    std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>> replace;
    std::vector<std::pair<std::string, std::vector<float>>> add;
};

/// A copy of `src` at `dst` with the edits applied.
void rewrite(const std::string& src, const std::string& dst, const Edit& e)
{
    const io::SafetensorsFile f(src);
    io::SafetensorsWriter w;
    for (const auto& kv : f.metadata())
        if (!e.erase_meta.count(kv.first)) w.set_metadata(kv.first, kv.second);
    for (const auto& kv : e.set_meta) w.set_metadata(kv.first, kv.second);
    for (const auto& t : f.tensors()) {
        if (e.drop(t.name)) continue;
        const auto r = e.replace.find(t.name);
        if (r != e.replace.end())
            w.add_floats(t.name, io::StDType::F32, r->second.first, r->second.second.data(), r->second.second.size());
        else
            w.add_view(t.name, t.dtype, t.shape, f.data(t), t.nbytes());
    }
    for (const auto& a : e.add) w.add_floats(a.first, io::StDType::F32, {std::int64_t(a.second.size())}, a.second.data(), a.second.size());
    w.write(dst);
}

/// load_use_lite(path) throws an io_error whose message names the file and contains `what`.
void require_io_error(const std::string& path, const std::string& what)
{
    INFO(path << ": expecting '" << what << "'");
    try {
        load_use_lite(path);
        FAIL("no error");
    } catch (const io_error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(msg.find(path) != std::string::npos);
        CHECK(msg.find(what) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
    }
}

}  // namespace

TEST_CASE("model.use_lite_file: a finalized model loads back bit for bit", "[model]")
{
    for (const bool three : {false, true}) {
        INFO("three scales: " << three);
        std::mt19937 g(7);
        UseLite m = tiny_model(3);
        factorize_randomly(m, 5, g, "layer1.out", three);  // one weight left dense
        m.finalize();
        const std::string path = tmp_path(three ? "roundtrip3" : "roundtrip2");
        const nlohmann::json info = {{"pipeline", "admm"}, {"bpw", 0.8}, {"seed", 3}};
        const std::size_t bytes = save_use_lite(path, m, info);
        CHECK(is_use_lite_file(path));
        UseLite back = load_use_lite(path);
        require_same(m, back);
        CHECK_FALSE(back.layers[1].out.factorized);
        // the same embeddings through the packed kernels (the empty sentence included)
        CHECK(m.encode(some_ids()) == back.encode(some_ids()));
        CHECK(m.encode(some_ids(), 2) == back.encode(some_ids(), 2));
        const io::SafetensorsFile f(path);
        CHECK(use_lite_info(f) == info);
        // the file is also a nanoquant factorized file: the generic reader sees every factorized layer
        CHECK(io::factorized_layer_names(f).size() == 9);
        // sizes add up: header + signs + scales + floats = file
        const UseLiteSizes s = use_lite_sizes(f);
        CHECK(s.file_bytes == bytes);
        CHECK(s.header_bytes + s.sign_bytes + s.scale_bytes + s.float_bytes == s.file_bytes);
        CHECK(s.embedding_bytes == 20 * 8 * 4);
        std::size_t signs = 0, scales = 0;
        for (const auto& p : m.linears()) {
            const Linear& l = *p.second;
            if (!l.factorized) continue;
            const std::size_t r = std::size_t(l.f.rank()), o = std::size_t(l.out()), i = std::size_t(l.in());
            signs += o * ((r + 7) / 8) + r * ((i + 7) / 8);
            scales += 2 * (o + i + (three ? r : 0));
        }
        CHECK(s.sign_bytes == signs);
        CHECK(s.scale_bytes == scales);
        REQUIRE(s.layers.size() == 10);
        CHECK(s.layers[6].name == "layer1.out");
        CHECK(s.layers[6].rank == 0);
        CHECK(s.layers[6].dense_bytes == 16 * 16 * 4);
        CHECK(s.layers[0].rank == 5);
        std::remove(path.c_str());
    }
}

TEST_CASE("model.use_lite_file: an unfinalized model is stored as its hardened F16 form", "[model]")
{
    std::mt19937 g(11);
    UseLite m = tiny_model(5);
    factorize_randomly(m, 4, g);
    const std::string path = tmp_path("unfinalized");
    save_use_lite(path, m, nullptr);
    UseLite fin = m;
    fin.finalize();
    UseLite back = load_use_lite(path);
    require_same(fin, back);
    CHECK(fin.encode(some_ids()) == back.encode(some_ids()));
    CHECK(use_lite_info(io::SafetensorsFile(path)).is_null());
    std::remove(path.c_str());
}

TEST_CASE("model.use_lite_file: the real float model round trips with identical embeddings and tokens", "[model]")
{
    const std::string p = NANOQUANT_USE_LITE_MODEL;
    if (!std::ifstream(p).good()) FAIL("USE-Lite model " << p << " not found: run scripts/fetch-use-lite.sh");
    UseLite m = UseLite::from_tfjs(TfjsModel::load(p));
    const std::string vocab_path = p.substr(0, p.find_last_of('/') + 1) + "vocab.json";
    std::ifstream vin(vocab_path, std::ios::binary);
    const std::string vocab((std::istreambuf_iterator<char>(vin)), std::istreambuf_iterator<char>());
    const std::string path = tmp_path("real_float");
    save_use_lite(path, m, nullptr, vocab);
    UseLite back = load_use_lite(path);
    require_same(m, back);
    const UseLiteTokenizer tok = UseLiteTokenizer::load(vocab_path);
    const io::SafetensorsFile f(path);
    const UseLiteTokenizer stored = use_lite_tokenizer(f);
    std::vector<std::vector<std::int32_t>> ids;
    for (const char* s : {"The quick brown fox.", "", "Zwei Wörter und noch mehr", "  double  spaces ﬁ ①"}) {
        ids.push_back(tok.encode(s));
        CHECK(stored.encode(s) == ids.back());
    }
    CHECK(m.encode(ids) == back.encode(ids));
    const UseLiteSizes s = use_lite_sizes(f);
    CHECK(s.sign_bytes == 0);
    CHECK(s.embedding_bytes == 8002u * 256u * 4u);
    CHECK(s.tokenizer_bytes == vocab.size());
    CHECK(s.header_bytes + s.float_bytes + s.tokenizer_bytes == s.file_bytes);
    std::remove(path.c_str());
}

TEST_CASE("model.use_lite_file: malformed files are one io_error naming the file", "[model]")
{
    std::mt19937 g(13);
    UseLite m = tiny_model(9);
    factorize_randomly(m, 4, g, "head.dense");
    m.finalize();
    const std::string good = tmp_path("good");
    save_use_lite(good, m, {{"pipeline", "admm"}});
    const std::string bad = tmp_path("bad");
    auto check = [&](const Edit& e, const std::string& what) {
        rewrite(good, bad, e);
        require_io_error(bad, what);
    };
    auto config = nlohmann::json::parse(io::SafetensorsFile(good).metadata().at(kUseLiteConfigKey));

    SECTION("missing float tensor")
    {
        Edit e;
        e.drop = [](const std::string& n) { return n == "layer1.ln_ffn.beta"; };
        check(e, "missing tensor 'layer1.ln_ffn.beta' (expected shape [16])");
    }
    SECTION("missing bias")
    {
        Edit e;
        e.drop = [](const std::string& n) { return n == "layer0.qkv.bias"; };
        check(e, "missing tensor 'layer0.qkv.bias'");
    }
    SECTION("wrong shape")
    {
        Edit e;
        e.replace["timing_inv"] = {{3}, {0.1f, 0.2f, 0.3f}};
        check(e, "tensor 'timing_inv' has shape [3], expected [4]");
    }
    SECTION("non-finite value")
    {
        Edit e;
        e.replace["layer0.ln_attn.gamma"] = {{8}, {1, 1, 1, std::nanf(""), 1, 1, 1, 1}};
        check(e, "tensor 'layer0.ln_attn.gamma' holds a non-finite value at index 3");
    }
    SECTION("unexpected tensor")
    {
        Edit e;
        e.add.push_back({"layer2.ln_attn.gamma", {1.0f}});
        check(e, "unexpected tensor 'layer2.ln_attn.gamma'");
    }
    SECTION("a matmul weight neither factorized nor dense")
    {
        Edit e;
        e.drop = [](const std::string& n) { return n.rfind("layer0.up.", 0) == 0 && n != "layer0.up.bias"; };
        e.erase_meta.insert("nanoquant.layer.layer0.up");
        check(e, "matmul weight 'layer0.up' is neither a factorized layer");
    }
    SECTION("a dense weight missing")
    {
        Edit e;
        e.drop = [](const std::string& n) { return n == "head.dense.weight"; };
        check(e, "matmul weight 'head.dense' is neither");
    }
    SECTION("a factorized layer of the wrong size")
    {
        config["layers"][0]["d_ff"] = 32;
        Edit e;
        e.set_meta[kUseLiteConfigKey] = config.dump();
        check(e, "factorized layer 'layer0.up' is 24x16, expected 32x16");
    }
    SECTION("a factorized layer missing its signs")
    {
        Edit e;
        e.drop = [](const std::string& n) { return n == "layer1.down.vt"; };
        check(e, "missing tensor 'layer1.down.vt'");
    }
    SECTION("no architecture, a nanoquant factorized file")
    {
        Edit e;
        e.erase_meta.insert(kArchitectureKey);
        check(e, "a nanoquant factorized file without \"nanoquant.architecture\" metadata");
    }
    SECTION("a file of nanoquant factorize")
    {
        std::vector<io::FactorizedLayer<float>> layers(1);
        layers[0].name = "w";
        layers[0].f = m.layers[0].qkv.f.harden();
        io::save_factorized(bad, layers);
        require_io_error(bad, "not a USE-Lite model");
    }
    SECTION("a plain safetensors file")
    {
        io::SafetensorsWriter w;
        const float x[2] = {1, 2};
        w.add_floats("w", io::StDType::F32, {2}, x, 2);
        w.write(bad);
        require_io_error(bad, "a safetensors file without \"nanoquant.architecture\" metadata");
    }
    SECTION("another architecture")
    {
        Edit e;
        e.set_meta[kArchitectureKey] = "llama";
        check(e, "a model of architecture \"llama\", not \"use-lite\"");
        CHECK_FALSE(is_use_lite_file(bad));
    }
    SECTION("config: missing, invalid, inconsistent")
    {
        Edit e;
        e.erase_meta.insert(kUseLiteConfigKey);
        check(e, "no \"nanoquant.use_lite.config\" metadata");
        Edit e2;
        e2.set_meta[kUseLiteConfigKey] = "{\"width\": ";
        check(e2, "\"nanoquant.use_lite.config\": not valid JSON");
        auto c = config;
        c["layers"][1]["d_in"] = 12;
        Edit e3;
        e3.set_meta[kUseLiteConfigKey] = c.dump();
        check(e3, "layer 1: \"d_in\" = 12 but the input has 16 channels");
        c = config;
        c["layers"].erase(1);
        Edit e4;
        e4.set_meta[kUseLiteConfigKey] = c.dump();
        check(e4, "\"layers\" must be an array of 2 objects");
        c = config;
        c["layers"][0]["heads"] = 3;
        Edit e5;
        e5.set_meta[kUseLiteConfigKey] = c.dump();
        check(e5, "layer 0: \"d_attn\" = 8 is not a multiple of \"heads\" = 3");
        c = config;
        c["vocab"] = -4;
        Edit e6;
        e6.set_meta[kUseLiteConfigKey] = c.dump();
        check(e6, "\"vocab\" must be an integer in [1, 1048576]");
    }
    SECTION("a tokenizer vocabulary of the wrong kind")
    {
        Edit e;
        e.add.push_back({kVocabTensor, {1.0f, 2.0f}});
        check(e, "tensor 'tokenizer.vocab_json' must be 1-D U8");
        rewrite(good, bad, Edit());
        try {
            use_lite_tokenizer(io::SafetensorsFile(bad));
            FAIL("no error");
        } catch (const io_error& ex) {
            CHECK_THAT(ex.what(), Catch::Contains(bad) && Catch::Contains("holds no tokenizer vocabulary"));
        }
    }
    SECTION("truncated file")
    {
        std::ifstream in(good, std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(bad, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() - 100));
        require_io_error(bad, "reach beyond the data section");
        CHECK_FALSE(is_use_lite_file(bad));
    }
    SECTION("missing file")
    {
        require_io_error(tmp_path("does_not_exist"), "cannot open");
        CHECK_FALSE(is_use_lite_file(tmp_path("does_not_exist")));
    }
    std::remove(bad.c_str());
    std::remove(good.c_str());
}
