// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

#include <nanoquant/detail/random.hpp>
#include <nanoquant/io/checkpoint.hpp>
#include <nanoquant/io/npy.hpp>
#include <nanoquant/io/safetensors.hpp>
#include <nanoquant/io/weights.hpp>

using namespace nanoquant;
using namespace nanoquant::io;

namespace {

std::string temp_path(const std::string& name)
{
    return "/tmp/nq_test_st_" + std::to_string(::getpid()) + "_" + name;
}

/// Safetensors bytes from a raw header string and data.
std::string st_bytes(const std::string& header, const std::string& data, std::uint64_t claimed = UINT64_MAX)
{
    const std::uint64_t n = claimed == UINT64_MAX ? header.size() : claimed;
    std::string out;
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    return out + header + data;
}

std::string st_message(const std::string& bytes)
{
    try {
        SafetensorsView v(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "bad.safetensors");
        for (const auto& t : v.tensors())
            if (t.dtype == StDType::F32) v.read_floats(t.name);
    } catch (const nanoquant::io_error& e) {
        return e.what();
    }
    return "";
}

long max_rss_kb()
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

}  // namespace

TEST_CASE("safetensors: writer and reader round trip every dtype byte for byte with metadata", "[io][safetensors]")
{
    nanoquant::detail::Rng rng(11);
    SafetensorsWriter w;
    std::vector<float> a(6 * 5);
    for (auto& x : a) x = static_cast<float>(rng.normal());
    w.add_floats("a.f32", StDType::F32, {6, 5}, a.data(), a.size());
    w.add_floats("a.f16", StDType::F16, {6, 5}, a.data(), a.size());
    w.add_floats("a.bf16", StDType::BF16, {30}, a.data(), a.size());
    w.add("bytes", StDType::U8, {3, 2}, {1, 2, 3, 4, 5, 255});
    w.add("empty", StDType::F32, {0, 4}, {});
    w.add("scalar", StDType::I64, {}, std::vector<std::uint8_t>(8, 7));
    w.set_metadata("format", "pt");
    w.set_metadata("note", "h\xc3\xa9llo");
    const std::string p = temp_path("rt.safetensors");
    const std::size_t written = w.write(p);

    const SafetensorsFile f(p);
    REQUIRE(f.size() == written);
    REQUIRE(f.data_offset() % 8 == 0);
    REQUIRE(f.tensors().size() == 6);
    REQUIRE(f.metadata().at("format") == "pt");
    REQUIRE(f.metadata().at("note") == "h\xc3\xa9llo");
    REQUIRE(f.read_floats("a.f32") == a);
    const auto h = f.read_floats("a.f16");
    const auto b = f.read_floats("a.bf16");
    for (std::size_t i = 0; i < a.size(); ++i) {
        REQUIRE(h[i] == half_to_float(float_to_half(a[i])));
        REQUIRE(b[i] == bf16_to_float(float_to_bf16(a[i])));
    }
    const Matrix<float> M = f.read_matrix<float>("a.f32");
    REQUIRE(M.rows() == 6);
    REQUIRE(M(1, 2) == a[1 * 5 + 2]);  // C order
    const auto& bt = f.info("bytes");
    REQUIRE(bt.dtype == StDType::U8);
    REQUIRE(std::vector<std::uint8_t>(f.data(bt), f.data(bt) + bt.nbytes()) == std::vector<std::uint8_t>{1, 2, 3, 4, 5, 255});
    REQUIRE(f.info("empty").numel() == 0);
    REQUIRE(f.info("scalar").shape.empty());
    REQUIRE_THROWS_WITH(f.info("nope"), Catch::Contains("no tensor named 'nope'"));
    REQUIRE_THROWS_WITH(f.read_floats("bytes"), Catch::Contains("dtype U8"));

    // Copying through add_view reproduces the file exactly.
    SafetensorsWriter w2;
    for (const auto& t : f.tensors()) w2.add_view(t.name, t.dtype, t.shape, f.data(t), t.nbytes());
    for (const auto& kv : f.metadata()) w2.set_metadata(kv.first, kv.second);
    const std::string p2 = temp_path("rt2.safetensors");
    w2.write(p2);
    const SafetensorsFile f2(p2);
    for (const auto& t : f.tensors())
        REQUIRE(std::memcmp(f.data(t), f2.data(f2.info(t.name)), t.nbytes()) == 0);
    std::remove(p.c_str());
    std::remove(p2.c_str());
}

TEST_CASE("safetensors: writer rejects duplicate names and bad sizes and F16 overflow", "[io][safetensors]")
{
    SafetensorsWriter w;
    w.add("x", StDType::U8, {2}, {1, 2});
    REQUIRE_THROWS_WITH(w.add("x", StDType::U8, {2}, {1, 2}), Catch::Contains("added twice"));
    REQUIRE_THROWS_WITH(w.add("y", StDType::F32, {2}, {1, 2}), Catch::Contains("needs 8 bytes, got 2"));
    REQUIRE_THROWS_WITH(w.add("__metadata__", StDType::U8, {1}, {1}), Catch::Contains("reserved"));
    const float big = 1e6f;
    REQUIRE_THROWS_WITH(w.add_floats("z", StDType::F16, {1}, &big, 1), Catch::Contains("overflows F16"));
}

TEST_CASE("safetensors: every malformation is an io_error naming the file and the tensor and the numbers",
          "[io][safetensors]")
{
    const std::string data(24, '\0');
    auto hdr = [](const std::string& body) { return "{" + body + "}"; };
    const std::string good = st_bytes(hdr(R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})"), data);
    REQUIRE(st_message(good).empty());

    CHECK_THAT(st_message(""), Catch::Contains("bad.safetensors") && Catch::Contains("empty file"));
    CHECK_THAT(st_message("abc"), Catch::Contains("3 bytes, too short"));
    CHECK_THAT(st_message(st_bytes("{}", "", 1ull << 63)),
               Catch::Contains("header length 9223372036854775808 goes beyond the file (2 bytes"));
    CHECK_THAT(st_message(st_bytes("{}", "", 5)), Catch::Contains("header length 5 goes beyond"));
    CHECK_THAT(st_message(st_bytes("{\"a\":", "")), Catch::Contains("not valid UTF-8 JSON"));
    CHECK_THAT(st_message(st_bytes("{\"\xff\xfe\":{}}", "")), Catch::Contains("not valid UTF-8 JSON"));
    CHECK_THAT(st_message(st_bytes("[1,2]", "")), Catch::Contains("JSON array, expected an object"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"Q7","shape":[2,3],"data_offsets":[0,24]})"), data)),
               Catch::Contains("tensor 'a'") && Catch::Contains("unknown dtype \"Q7\""));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"F32","shape":[2,4],"data_offsets":[0,24]})"), data)),
               Catch::Contains("tensor 'a'") && Catch::Contains("shape [2, 4] of F32 needs 32 bytes") &&
                   Catch::Contains("span 24"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})"), data.substr(0, 20))),
               Catch::Contains("reach beyond the data section of 20 bytes"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})"), data + "xx")),
               Catch::Contains("2 trailing bytes"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                                       R"("b":{"dtype":"F32","shape":[3],"data_offsets":[8,20]})"),
                                   data.substr(0, 20))),
               Catch::Contains("overlap tensor 'a'") && Catch::Contains("[8, 20]"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[3],"data_offsets":[12,24]})"),
                                   data)),
               Catch::Contains("gap of 4 bytes before tensor 'b'"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[24,0]})"), data)),
               Catch::Contains("end before they begin"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"F32","shape":[-2,3],"data_offsets":[0,24]})"), data)),
               Catch::Contains("non-negative integers"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,24]})"), data)),
               Catch::Contains("more than 2^64"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"dtype":"F32","shape":[2,3]})"), data)), Catch::Contains("data_offsets"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":{"shape":[2,3],"data_offsets":[0,24]})"), data)), Catch::Contains("dtype"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("a":5)"), data)), Catch::Contains("tensor 'a': entry is a number"));
    CHECK_THAT(st_message(st_bytes(hdr(R"("__metadata__":{"k":1})"), "")), Catch::Contains("'k' is a number"));
    // A 0-element tensor is legal in a file; reading it as a weight matrix is an error (weights.hpp).
    REQUIRE(st_message(st_bytes(hdr(R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]})"), "")).empty());
}

TEST_CASE("safetensors: an empty tensor with a huge dimension reads as an empty matrix at once", "[io][safetensors]")
{
    // 0 elements, so a legal tensor; read_matrix used to loop over its 10^16 rows.
    const std::string bytes =
        st_bytes(R"({"e":{"dtype":"F32","shape":[37400047019551615,0],"data_offsets":[0,0]}})", "");
    SafetensorsView v(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "e.safetensors");
    const Matrix<float> M = v.read_matrix<float>("e");
    CHECK(M.rows() == 37400047019551615);
    CHECK(M.cols() == 0);
}

TEST_CASE("safetensors: F64 tensors read at full precision as double and agree with the npy reader", "[io][safetensors]")
{
    // 1 + 2^-40 and 1/3 are not representable in float: a read through float would round them.
    const double vals[6] = {1.0 + std::ldexp(1.0, -40), 1.0 / 3.0, -2.5e-300, 1e300, 0.1, -7.0};
    std::string data(sizeof vals, '\0');
    std::memcpy(&data[0], vals, sizeof vals);
    const std::string bytes = st_bytes(R"({"w":{"dtype":"F64","shape":[2,3],"data_offsets":[0,48]}})", data);
    SafetensorsView v(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "f64.safetensors");
    const Matrix<double> M = v.read_matrix<double>("w");
    REQUIRE(M.rows() == 2);
    REQUIRE(M.cols() == 3);
    for (int k = 0; k < 6; ++k) REQUIRE(M(k / 3, k % 3) == vals[k]);  // bit for bit, C order
    REQUIRE(M(0, 0) != double(float(vals[0])));
    // The float reads round each value once.
    const Matrix<float> F = v.read_matrix<float>("w");
    for (int k = 0; k < 4; ++k) REQUIRE(F(k / 3, k % 3) == static_cast<float>(vals[k]));
    // The same bytes as an '<f8' .npy array give the same doubles through the .npy reader.
    std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string npy = std::string("\x93NUMPY\x01\x00", 8);
    npy += static_cast<char>(header.size() & 0xff);
    npy += static_cast<char>(header.size() >> 8);
    npy += header + data;
    REQUIRE(decode_npy<double>(reinterpret_cast<const std::uint8_t*>(npy.data()), npy.size(), "f64.npy") == M);
}

TEST_CASE("safetensors: a 1 GB sparse file is read for one small tensor without reading the file",
          "[io][safetensors]")
{
    const std::string p = temp_path("big.safetensors");
    const std::uint64_t big = 1ull << 30;
    const std::string header = std::string(R"({"small":{"dtype":"F32","shape":[4,2],"data_offsets":[0,32]},)") +
                               R"("huge":{"dtype":"U8","shape":[)" + std::to_string(big) + R"(],"data_offsets":[32,)" +
                               std::to_string(32 + big) + "]}}";
    std::vector<float> small = {1, 2, 3, 4, 5, 6, 7, 8};
    {
        std::string bytes = st_bytes(header, std::string(reinterpret_cast<const char*>(small.data()), 32));
        std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        REQUIRE(::truncate(p.c_str(), static_cast<off_t>(8 + header.size() + 32 + big)) == 0);
    }
    const long rss_before = max_rss_kb();
    const auto t0 = std::chrono::steady_clock::now();
    const Matrix<float> M = load_weight<float>(p + ":small");
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const long rss_after = max_rss_kb();
    REQUIRE(M.rows() == 4);
    REQUIRE(M(3, 1) == 8.0f);
    INFO("took " << ms << " ms, max RSS grew by " << (rss_after - rss_before) << " KiB");
    CHECK(rss_after - rss_before < 64 * 1024);  // far below the 1 GiB file
    CHECK(ms < 2000.0);  // generous bound for sanitizer builds on a shared machine
    std::remove(p.c_str());
}

TEST_CASE("load_weight: npy and safetensors:TENSOR and sharded index with errors for non-2-D and empty", "[io][weights]")
{
    const std::string npy = std::string(NANOQUANT_DATA_DIR) + "/use_lite_L0_attn_q.npy";
    const Matrix<float> W = load_weight<float>(npy);
    REQUIRE(W.rows() == 256);

    // a two-shard checkpoint with an index
    const std::string dir = temp_path("shards");
    REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
    SafetensorsWriter s1, s2;
    RowMajorMatrix<float> Wr = W;
    s1.add_floats("layer.q.weight", StDType::F32, {256, 256}, Wr.data(), std::size_t(Wr.size()));
    const float norm[3] = {1, 2, 3};
    s2.add_floats("norm.weight", StDType::F32, {3}, norm, 3);
    s2.add("empty.weight", StDType::F32, {0, 5}, {});
    s2.add_floats("cube", StDType::F32, {1, 1, 3}, norm, 3);
    s1.write(dir + "/model-00001-of-00002.safetensors");
    s2.write(dir + "/model-00002-of-00002.safetensors");
    std::ofstream(dir + "/model.safetensors.index.json")
        << R"({"metadata":{"total_size":1},"weight_map":{"layer.q.weight":"model-00001-of-00002.safetensors",)"
        << R"("norm.weight":"model-00002-of-00002.safetensors","empty.weight":"model-00002-of-00002.safetensors",)"
        << R"("cube":"model-00002-of-00002.safetensors"}})";
    const std::string index = dir + "/model.safetensors.index.json";
    const Checkpoint ck(index);
    REQUIRE(ck.sharded());
    REQUIRE(ck.entries().size() == 4);
    REQUIRE(ck.shards().size() == 2);
    REQUIRE(load_weight<float>(index + ":layer.q.weight") == W);
    REQUIRE(load_weight<float>(dir + "/model-00001-of-00002.safetensors") == W);  // single tensor: no name needed
    REQUIRE_THROWS_WITH(load_weight<float>(index + ":norm.weight"), Catch::Contains("expected a 2-D weight matrix"));
    REQUIRE_THROWS_WITH(load_weight<float>(index + ":cube"), Catch::Contains("[1, 1, 3]"));
    REQUIRE_THROWS_WITH(load_weight<float>(index + ":empty.weight"), Catch::Contains("0 elements"));
    REQUIRE_THROWS_WITH(load_weight<float>(index + ":missing"), Catch::Contains("no tensor named 'missing'"));
    REQUIRE_THROWS_WITH(load_weight<float>(dir + "/model-00002-of-00002.safetensors"), Catch::Contains("holds 3 tensors"));
    REQUIRE_THROWS_WITH(load_weight<float>(dir + "/nothing.npy"), Catch::Contains("no such file"));
    REQUIRE(std::system(("rm -rf " + dir).c_str()) == 0);
}
