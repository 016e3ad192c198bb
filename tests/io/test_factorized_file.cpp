// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include <unistd.h>

#include <nanoquant/detail/random.hpp>
#include <nanoquant/io/factorized_file.hpp>

using namespace nanoquant;
using namespace nanoquant::io;

namespace {

std::string temp_path(const std::string& name)
{
    return "/tmp/nq_test_ff_" + std::to_string(::getpid()) + "_" + name;
}

Factorization<float> random_factorization(Index m, Index n, Index r, bool mid, std::uint64_t seed)
{
    nanoquant::detail::Rng rng(seed);
    Factorization<float> f;
    f.u = PackedSignMatrix(m, r);
    f.vt = PackedSignMatrix(r, n);
    for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < r; ++j) f.u.set_sign(i, j, rng.uniform() < 0.5 ? -1 : 1);
    for (Index i = 0; i < r; ++i)
        for (Index j = 0; j < n; ++j) f.vt.set_sign(i, j, rng.uniform() < 0.5 ? -1 : 1);
    f.s_out = Vector<float>::Random(m);
    f.s_in = Vector<float>::Random(n);
    if (mid) f.s_mid = Vector<float>::Random(r);
    return f;
}

std::string load_message(const std::string& path, const std::string& layer)
{
    try {
        const SafetensorsFile f(path);
        load_factorized_layer<float>(f, layer);
    } catch (const nanoquant::io_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("factorized file: sign bytes follow the documented bit order", "[io][format]")
{
    PackedSignMatrix P(2, 11);
    P.set_sign(0, 0, -1);   // byte 0 bit 0
    P.set_sign(0, 9, -1);   // byte 1 bit 1
    P.set_sign(1, 7, -1);   // byte 0 bit 7
    P.set_sign(1, 10, -1);  // byte 1 bit 2
    REQUIRE(sign_bytes(P) == std::vector<std::uint8_t>{0x01, 0x02, 0x80, 0x04});
    REQUIRE(signs_from_bytes(sign_bytes(P).data(), 2, 11, "P") == P);
    const std::vector<std::uint8_t> bad = {0x01, 0x02 | 0x08, 0x80, 0x04};  // bit 11 is padding
    REQUIRE_THROWS_WITH(signs_from_bytes(bad.data(), 2, 11, "P"), Catch::Contains("padding bits set in row 0"));
}

TEST_CASE("factorized file: save/load round trip keeps signs exactly and scales at F16 or F32", "[io][format]")
{
    for (StDType sd : {StDType::F16, StDType::F32}) {
        std::vector<FactorizedLayer<float>> layers = {
            {"a.weight", random_factorization(37, 53, 13, false, 1), {{"rel_error", 0.25}}},
            {"b", random_factorization(64, 65, 64, true, 2), {}},
            {"c", random_factorization(1, 1, 1, true, 3), {}}};
        const std::string p = temp_path("rt.safetensors");
        save_factorized(p, layers, sd);
        const auto back = load_factorized<float>(p);
        REQUIRE(back.size() == 3);
        for (std::size_t k = 0; k < 3; ++k) {
            const auto& a = layers[k];
            const auto it = std::find_if(back.begin(), back.end(), [&](const auto& l) { return l.name == a.name; });
            REQUIRE(it != back.end());
            const auto& b = *it;
            REQUIRE(b.f.u == a.f.u);
            REQUIRE(b.f.vt == a.f.vt);
            REQUIRE(b.f.has_mid_scale() == a.f.has_mid_scale());
            auto rounded = [&](const Vector<float>& s) {
                Vector<float> r = s;
                if (sd == StDType::F16)
                    for (Index i = 0; i < r.size(); ++i) r(i) = half_to_float(float_to_half(r(i)));
                return r;
            };
            REQUIRE(b.f.s_out == rounded(a.f.s_out));
            REQUIRE(b.f.s_in == rounded(a.f.s_in));
            REQUIRE(b.f.s_mid == rounded(a.f.s_mid));
            REQUIRE(b.info["rank"] == a.f.rank());
            REQUIRE(b.info["scale_dtype"] == to_string(sd));
            REQUIRE(b.info["bpw"].get<double>() == a.f.bits_per_weight());
        }
        const SafetensorsFile f(p);
        REQUIRE(f.info("a.weight.u").shape == std::vector<std::int64_t>{37, 2});
        REQUIRE(f.info("a.weight.vt").shape == std::vector<std::int64_t>{13, 7});
        REQUIRE(f.metadata().at("nanoquant.format_version") == "1");
        REQUIRE(nlohmann::json::parse(f.metadata().at("nanoquant.layer.a.weight"))["rel_error"] == 0.25);
        std::remove(p.c_str());
    }
}

TEST_CASE("factorized file: inconsistent files are io_errors naming the layer", "[io][format]")
{
    const auto f = random_factorization(8, 9, 4, false, 5);
    const std::string p = temp_path("bad.safetensors");
    {  // wrong shape in the metadata
        SafetensorsWriter w;
        add_factorized_layer(w, "x", f);
        w.set_metadata("nanoquant.layer.x", R"({"shape":[8,10],"rank":4,"scales":2})");
        w.write(p);
        CHECK_THAT(load_message(p, "x"),
                   Catch::Contains("layer 'x'") && Catch::Contains("'x.s_in' has shape [9], expected [10]"));
    }
    {  // rank above min(m, n)
        SafetensorsWriter w;
        add_factorized_layer(w, "x", f);
        w.set_metadata("nanoquant.layer.x", R"({"shape":[8,9],"rank":40,"scales":2})");
        w.write(p);
        CHECK_THAT(load_message(p, "x"), Catch::Contains("rank 40"));
    }
    {  // version
        SafetensorsWriter w;
        add_factorized_layer(w, "x", f);
        w.set_metadata("nanoquant.format_version", "7");
        w.write(p);
        CHECK_THAT(load_message(p, "x"), Catch::Contains("format version \"7\""));
    }
    {  // missing tensor
        SafetensorsWriter w;
        set_factorized_format_metadata(w);
        w.set_metadata("nanoquant.layer.x", R"({"shape":[8,9],"rank":4,"scales":3})");
        w.write(p);
        CHECK_THAT(load_message(p, "x"), Catch::Contains("missing tensor 'x.u'"));
    }
    {  // not a factorized file
        SafetensorsWriter w;
        w.add("x", StDType::U8, {1}, {0});
        w.write(p);
        CHECK_THAT(load_message(p, "x"), Catch::Contains("not a nanoquant factorized file"));
    }
    {  // F16 overflow is refused at write time
        auto g = f;
        g.s_out(0) = 1e6f;
        SafetensorsWriter w;
        REQUIRE_THROWS_WITH(add_factorized_layer(w, "x", g), Catch::Contains("overflows F16"));
    }
    std::remove(p.c_str());
}
