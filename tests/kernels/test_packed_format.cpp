// SPDX-License-Identifier: Apache-2.0
// Pins the inference layout of docs/packed_format.md: hand-derived bytes and a golden byte file
// generated from the document by make_golden_packed_layer.py.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <fstream>
#include <iterator>
#include <vector>

#include <nanoquant/kernels/packed_layer.hpp>

using namespace nanoquant;
using namespace nanoquant::kernels;

namespace {
/// The golden layer: m = 3, n = 70, r = 5; sign(i, j) = −1 iff (i + 2j) % 3 == 0 in Vᵀ and
/// iff (i + j) % 2 == 1 in U; scales 1.
Factorization<float> golden_factorization()
{
    Factorization<float> f;
    f.vt = PackedSignMatrix(5, 70);
    f.u = PackedSignMatrix(3, 5);
    for (Index i = 0; i < 5; ++i)
        for (Index j = 0; j < 70; ++j) f.vt.set_sign(i, j, (i + 2 * j) % 3 == 0 ? -1 : 1);
    for (Index i = 0; i < 3; ++i)
        for (Index j = 0; j < 5; ++j) f.u.set_sign(i, j, (i + j) % 2 == 1 ? -1 : 1);
    f.s_out = Vector<float>::Ones(3);
    f.s_in = Vector<float>::Ones(70);
    return f;
}

/// The sign bytes exactly as they lie in memory: all of vt, then all of u.
std::vector<unsigned char> layer_bytes(const PackedLayer& L)
{
    std::vector<unsigned char> out(L.sign_bytes());
    std::memcpy(out.data(), L.vt.words.data(), L.vt.words.size() * 4);
    std::memcpy(out.data() + L.vt.words.size() * 4, L.u.words.data(), L.u.words.size() * 4);
    return out;
}
}  // namespace

TEST_CASE("packed layout: hand-derived bytes", "[kernels][format]")
{
    const PackedLayer L = pack_layer(golden_factorization());
    // Vᵀ: 5 rows → 1 row block; 70 columns → padded to 128 → 4 column words (tiles of 64 bytes).
    REQUIRE(L.vt.row_blocks == 1);
    REQUIRE(L.vt.col_words == 4);
    REQUIRE(L.u.row_blocks == 1);
    REQUIRE(L.u.col_words == 2);
    REQUIRE(L.sign_bytes() == (4 + 2) * 64);
    REQUIRE(reinterpret_cast<std::uintptr_t>(L.vt.words.data()) % 64 == 0);
    REQUIRE(reinterpret_cast<std::uintptr_t>(L.u.words.data()) % 64 == 0);
    const auto bytes = layer_bytes(L);
    // Tile (c=0, R=0), lane 0 = Vᵀ row 0, columns 0..31 LSB first, set = −1 where j % 3 == 0:
    // columns 0, 3, 6 → 0x49; 9, 12, 15 → bits 1, 4, 7 → 0x92; 18, 21 → 0x24; 24, 27, 30 → 0x49.
    REQUIRE(bytes[0] == 0x49);
    REQUIRE(bytes[1] == 0x92);
    REQUIRE(bytes[2] == 0x24);
    REQUIRE(bytes[3] == 0x49);
    // Lane 1 = row 1, negative where j % 3 == 1: columns 1, 4, 7 → 0x92.
    REQUIRE(bytes[4] == 0x92);
    // Lanes 5..15 are padding rows (+1 = 0).
    for (int b = 20; b < 64; ++b) REQUIRE(bytes[std::size_t(b)] == 0);
    // Tile (c=2, R=0) starts at byte 128: row 0, columns 64..95: 66, 69 → bits 2, 5; 70+ is padding.
    REQUIRE(bytes[128] == 0x24);
    REQUIRE(bytes[129] == 0);
    // Tile (c=3) covers only padding columns.
    for (int b = 192; b < 256; ++b) REQUIRE(bytes[std::size_t(b)] == 0);
    // U starts at byte 256: row 0 negative at columns 1, 3 → 0x0A; row 1 at 0, 2, 4 → 0x15.
    REQUIRE(bytes[256] == 0x0A);
    REQUIRE(bytes[260] == 0x15);
    REQUIRE(L.s_mid == AlignedVector<float>(5, 1.0f));
    REQUIRE_FALSE(L.has_mid_scale);
}

TEST_CASE("packed layout: golden byte file", "[kernels][format]")
{
    const std::string path = std::string(NANOQUANT_KERNELS_TEST_DIR) + "/golden_packed_layer.bin";
    // The file was written from docs/packed_format.md's rules by tests/kernels/make_golden_packed_layer.py
    // (no nanoquant code) and is only read here: all 384 bytes must be pack_layer()'s.
    const auto bytes = layer_bytes(pack_layer(golden_factorization()));
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    const std::vector<unsigned char> golden((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(golden.size() == 384);
    REQUIRE(bytes.size() == 384);
    for (std::size_t b = 0; b < golden.size(); ++b) {
        INFO("byte " << b);
        REQUIRE(int(bytes[b]) == int(golden[b]));
    }
}

TEST_CASE("pack_layer keeps s_mid and pads every row", "[kernels][format]")
{
    Factorization<float> f = golden_factorization();
    f.s_mid = Vector<float>::LinSpaced(5, 1.0f, 2.0f);
    const PackedLayer L = pack_layer(f);
    REQUIRE(L.has_mid_scale);
    REQUIRE(L.s_mid[4] == 2.0f);
    for (Index i = 0; i < 5; ++i)
        for (Index j = 0; j < 128; ++j) REQUIRE(L.vt.sign(i, j) == (j < 70 ? f.vt.sign(i, j) : 1));
    for (Index i = 5; i < 16; ++i) REQUIRE(L.vt.words[std::size_t(i)] == 0u);
}
