// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nanoquant/detail/random.hpp>
#include <nanoquant/io/npy.hpp>

using namespace nanoquant;
using namespace nanoquant::io;

namespace {

std::string temp_path(const std::string& name)
{
    return "/tmp/nq_test_npy_" + std::to_string(::getpid()) + "_" + name;
}


/// A .npy file with an explicit version and dict (no padding rules imposed), then `data`.
std::string npy_bytes(int major, const std::string& dict, const std::string& data)
{
    std::string h = dict + "\n";
    std::string out("\x93NUMPY", 6);
    out.push_back(static_cast<char>(major));
    out.push_back('\0');
    const std::size_t n = h.size();
    out.push_back(static_cast<char>(n & 0xff));
    out.push_back(static_cast<char>((n >> 8) & 0xff));
    if (major > 1) {
        out.push_back(static_cast<char>((n >> 16) & 0xff));
        out.push_back(static_cast<char>((n >> 24) & 0xff));
    }
    return out + h + data;
}

template <typename T>
std::string raw(const std::vector<T>& v, bool swap = false)
{
    std::string s(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
    if (swap)
        for (std::size_t i = 0; i < v.size(); ++i)
            std::reverse(s.begin() + long(i * sizeof(T)), s.begin() + long((i + 1) * sizeof(T)));
    return s;
}

std::string io_message(const std::string& bytes)
{
    try {
        decode_npy<float>(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "x.npy");
    } catch (const nanoquant::io_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("npy: the real float32 matrices load with their shapes and exact values", "[io][npy]")
{
    const std::string path = std::string(NANOQUANT_DATA_DIR) + "/use_lite_L0_ffn_up.npy";
    const NpyHeader h = read_npy_header(path);
    REQUIRE(h.major_version == 1);
    REQUIRE(h.dtype == NpyDType::Float32);
    REQUIRE_FALSE(h.fortran_order);
    REQUIRE(h.rows() == 1536);
    REQUIRE(h.cols() == 512);
    const Matrix<float> W = load_npy<float>(path);
    REQUIRE(W.rows() == 1536);
    REQUIRE(W.cols() == 512);
    // element (i, j) of a C-order file is the float at data_offset + 4 (i * 512 + j)
    std::ifstream in(path, std::ios::binary);
    for (auto ij : {std::pair<int, int>{0, 0}, {0, 1}, {1, 0}, {1535, 511}, {700, 33}}) {
        float v;
        in.seekg(static_cast<long>(h.data_offset + 4 * (std::size_t(ij.first) * 512 + std::size_t(ij.second))));
        in.read(reinterpret_cast<char*>(&v), 4);
        REQUIRE(W(ij.first, ij.second) == v);
    }
    const Matrix<double> Wd = load_npy<double>(path);
    REQUIRE(Wd.cast<float>() == W);
}

TEST_CASE("npy: write then read is bit-identical and the header is what numpy writes", "[io][npy]")
{
    nanoquant::detail::Rng rng(3);
    for (auto shape : {std::pair<Index, Index>{5, 7}, {1, 1}, {64, 3}, {0, 4}}) {
        Matrix<float> M(shape.first, shape.second);
        for (Index j = 0; j < M.cols(); ++j)
            for (Index i = 0; i < M.rows(); ++i) M(i, j) = static_cast<float>(rng.normal());
        const std::string p = temp_path("rt.npy");
        save_npy(p, M);
        const NpyHeader h = read_npy_header(p);
        REQUIRE(h.data_offset % 64 == 0);
        REQUIRE(h.descr == "<f4");
        const Matrix<float> R = load_npy<float>(p);
        REQUIRE(R.rows() == M.rows());
        REQUIRE(R.cols() == M.cols());
        if (M.size() > 0) REQUIRE(std::memcmp(R.data(), M.data(), sizeof(float) * std::size_t(M.size())) == 0);
        std::remove(p.c_str());
    }
    Vector<float> v(3);
    v << 1.5f, -2.0f, 3.25f;
    const std::string p = temp_path("vec.npy");
    save_npy_vector(p, v);
    const NpyHeader h = read_npy_header(p);
    REQUIRE(h.shape.size() == 1);
    REQUIRE(load_npy<float>(p) == Matrix<float>(v));
    std::remove(p.c_str());
}

TEST_CASE("npy: versions 1/2/3 and C/Fortran order and f2/f4/f8/bf16 and big-endian decode the same matrix",
          "[io][npy]")
{
    // M = [[1, 2, 3], [4, 5, 6]] (values exact in every dtype)
    const std::vector<float> c_order = {1, 2, 3, 4, 5, 6}, f_order = {1, 4, 2, 5, 3, 6};
    Matrix<float> M(2, 3);
    M << 1, 2, 3, 4, 5, 6;
    auto dict = [](const std::string& d, bool fortran, const std::string& shape) {
        return "{'descr': '" + d + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + shape +
               ", }";
    };
    auto as_half = [](const std::vector<float>& v) {
        std::vector<std::uint16_t> h;
        for (float f : v) h.push_back(float_to_half(f));
        return h;
    };
    auto as_bf16 = [](const std::vector<float>& v) {
        std::vector<std::uint16_t> h;
        for (float f : v) h.push_back(float_to_bf16(f));
        return h;
    };
    auto as_double = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
    std::vector<std::string> files;
    for (int major : {1, 2, 3}) {
        files.push_back(npy_bytes(major, dict("<f4", false, "(2, 3)"), raw(c_order)));
        files.push_back(npy_bytes(major, dict("<f4", true, "(2, 3)"), raw(f_order)));
    }
    files.push_back(npy_bytes(1, dict("<f2", false, "(2, 3)"), raw(as_half(c_order))));
    files.push_back(npy_bytes(1, dict("<f2", true, "(2, 3)"), raw(as_half(f_order))));
    files.push_back(npy_bytes(1, dict("<V2", false, "(2, 3)"), raw(as_bf16(c_order))));
    files.push_back(npy_bytes(1, dict("|V2", true, "(2, 3)"), raw(as_bf16(f_order))));
    files.push_back(npy_bytes(1, dict("<f8", false, "(2, 3)"), raw(as_double(c_order))));
    files.push_back(npy_bytes(1, dict(">f4", false, "(2, 3)"), raw(c_order, true)));
    files.push_back(npy_bytes(1, "{\"descr\":\"<f4\",\"shape\":(2,3),\"fortran_order\":False}", raw(c_order)));
    files.push_back(npy_bytes(1, dict("<f4", false, "(2L, 3L)"), raw(c_order)));
    for (const auto& f : files) {
        INFO(f.substr(0, 80));
        const Matrix<float> R = decode_npy<float>(reinterpret_cast<const std::uint8_t*>(f.data()), f.size(), "m.npy");
        REQUIRE(R == M);
    }
    const std::string v = npy_bytes(1, dict("<f4", false, "(3,)"), raw(std::vector<float>{7, 8, 9}));
    const Matrix<float> R = decode_npy<float>(reinterpret_cast<const std::uint8_t*>(v.data()), v.size(), "v.npy");
    REQUIRE(R.rows() == 3);
    REQUIRE(R.cols() == 1);
    REQUIRE(R(2, 0) == 9);
}

TEST_CASE("npy: an empty array with a huge dimension decodes at once (found by the fuzzer)", "[io][npy]")
{
    // Shape (37400047019551615, 0): 0 elements, so valid; the decoder used to loop over the rows.
    const std::string bytes =
        npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (37400047019551615, 0), }", "");
    const Matrix<float> M = decode_npy<float>(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "x.npy");
    CHECK(M.rows() == 37400047019551615);
    CHECK(M.cols() == 0);
    const std::string fortran =
        npy_bytes(1, "{'descr': '<f2', 'fortran_order': True, 'shape': (0, 37400047019551615), }", "");
    CHECK(decode_npy<double>(reinterpret_cast<const std::uint8_t*>(fortran.data()), fortran.size(), "x.npy").size() == 0);
}

TEST_CASE("npy: every malformation is an io_error naming the file and the numbers", "[io][npy]")
{
    const std::string good_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    const std::string data = raw(std::vector<float>(6, 1.0f));
    const std::string good = npy_bytes(1, good_dict, data);
    REQUIRE(io_message(good).empty());

    CHECK_THAT(io_message(""), Catch::Contains("x.npy") && Catch::Contains("empty file"));
    CHECK_THAT(io_message("hello world, not npy"), Catch::Contains("magic"));
    std::string v9 = good;
    v9[6] = 9;
    CHECK_THAT(io_message(v9), Catch::Contains("version 9.0"));
    std::string longhdr = good;
    longhdr[8] = '\xff';
    longhdr[9] = '\x7f';
    CHECK_THAT(io_message(longhdr), Catch::Contains("header length 32767 goes beyond the file"));
    CHECK_THAT(io_message(good.substr(0, good.size() - 5)),
               Catch::Contains("truncated") && Catch::Contains("needs 24 data bytes, the file has 19"));
    CHECK_THAT(io_message(good.substr(0, 40)), Catch::Contains("x.npy"));
    CHECK_THAT(io_message(good + "xyz"), Catch::Contains("3 unexpected bytes"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", data)),
               Catch::Contains("unsupported dtype '<i4'"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }", data)),
               Catch::Contains("3 dimensions"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", raw(std::vector<float>{1}))),
               Catch::Contains("0 dimensions"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 9223372036854775807), }", data)),
               Catch::Contains("overflow"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 3), }", data)),
               Catch::Contains("overflows 64 bits"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }", data)),
               Catch::Contains("True or False"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr': '<f4', 'shape': (2, 3), }", data)), Catch::Contains("fortran_order"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }", data)),
               Catch::Contains("structured"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", data)),
               Catch::Contains("unexpected key 'x'"));
    CHECK_THAT(io_message(npy_bytes(1, "{'descr: '<f4', 'fortran_order': False, 'shape': (2, 3)", data)),
               Catch::Contains("invalid .npy header"));
    REQUIRE_THROWS_WITH(load_npy<float>("/nonexistent/file.npy"), Catch::Contains("/nonexistent/file.npy"));
}

TEST_CASE("npy: files written by numpy itself (v1/v2/v3 C/Fortran f2/f4/f8 big-endian) decode exactly",
          "[io][npy]")
{
    // fuzz/corpus/npy/ holds np.save / np.lib.format.write_array outputs of arange(12).reshape(3, 4)
    const std::string dir = std::string(NANOQUANT_DATA_DIR) + "/../../fuzz/corpus/npy/";
    Matrix<float> M(3, 4);
    for (Index i = 0; i < 3; ++i)
        for (Index j = 0; j < 4; ++j) M(i, j) = float(4 * i + j);
    for (const char* f : {"f32_c.npy", "f32_f.npy", "f16.npy", "be.npy", "v2.npy", "v3.npy"}) {
        INFO(f);
        REQUIRE(load_npy<float>(dir + f) == M);
    }
    REQUIRE(read_npy_header(dir + "v3.npy").major_version == 3);
    REQUIRE(read_npy_header(dir + "f32_f.npy").fortran_order);
    const Matrix<double> v = load_npy<double>(dir + "f64_1d.npy");
    REQUIRE(v.rows() == 5);
    REQUIRE(v(4, 0) == 4.0);
    Matrix<float> B(2, 2);
    B << 1, 2, 3, 4;
    REQUIRE(load_npy<float>(dir + "bf16.npy") == B);
}
