// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file sign_dot_amx.hpp
/// The int8 GEMM on Intel AMX (Advanced Matrix Extensions, AMX-TILE + AMX-INT8: Sapphire Rapids and
/// later Xeons). Every other kernel of this variant is the AVX-512 one (sign_dot_avx512.hpp).
///
/// One TDPBSSD multiplies a 16 × 64 tile of int8 activations (16 tokens, 64 columns) by a 64 × 16
/// tile of ±1 signs (64 columns of one row block) and adds the 16 × 16 int32 products to an
/// accumulator tile: 16384 exact multiply-adds per instruction, where the AVX-512 row-pair GEMM does
/// 160 sign-adds per lookup. What remains on the vector units is turning packed signs into the ±1
/// bytes the tile reads, in its pair-interleaved (VNNI) order: one VPSHUFBITQMB gathers the 64 bits
/// of a tile row from the 16 rows' words, one VPBLENDMB makes them bytes. Each unpacked tile is used
/// by every 16 tokens of the pass.
///
/// Like the other kernels this header needs no compiler flag (function-level target attributes), but
/// a process must ask Linux for the right to use the tile registers (arch_prctl ARCH_REQ_XCOMP_PERM);
/// amx_available() does that once, and dispatch.hpp offers this variant only where it succeeded.

#include "nanoquant/kernels/x86_avx512/sign_dot_avx512.hpp"

#if defined(NANOQUANT_HAVE_AVX512_KERNELS) && defined(__linux__) &&                                     \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11) || (defined(__clang__) && __clang_major__ >= 12))
#define NANOQUANT_HAVE_AMX_KERNELS 1
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NANOQUANT_TARGET_AMX                                                                                 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bitalg,avx2,bmi2,amx-tile,amx-int8")))

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace nanoquant {
namespace kernels {
namespace amx {

/// Whether this CPU has AMX-TILE, AMX-INT8 and the AVX-512 subsets of the avx512 variant plus BITALG,
/// and Linux granted this process the tile state. Asked once; the grant is for the whole process.
inline bool amx_available()
{
    static const bool ok = [] {
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
        const bool tile = (d >> 24) & 1u, int8 = (d >> 25) & 1u, bitalg = (c >> 12) & 1u;
        if (!(tile && int8 && bitalg)) return false;
        // ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18): 0 once granted (Linux >= 5.16).
        return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    }();
    return ok;
}

namespace detail {

/// The tile configuration (palette 1): 64-byte register, rows and bytes per row of tmm0..tmm7.
struct alignas(64) TileConfig {
    std::uint8_t palette = 1;
    std::uint8_t start_row = 0;
    std::uint8_t reserved[14] = {};
    std::uint16_t colsb[16] = {};
    std::uint8_t rows[16] = {};
};

/// Tiles: tmm0, tmm1 activations of token groups 0 and 1 (`tokens` rows of 64 bytes); tmm2, tmm3 the
/// signs of row blocks 0 and 1 (16 rows of 64 bytes: 16 column quads × 16 rows × 4 signs); tmm4 + 2g + r
/// the int32 sums of token group g and row block r (`tokens` rows of 16 sums).
inline TileConfig config(int tokens)
{
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
        c.colsb[t] = 64;
        c.rows[t] = std::uint8_t(t == 2 || t == 3 ? 16 : tokens);
    }
    return c;
}

/// The ±1 bytes of row block tiles t0 (columns 0..31) and t1 (32..63) in a tile's VNNI order:
/// row k of the result holds, for each of the 16 rows i, the signs of columns 4k..4k+3 at bytes
/// 4i..4i+3. Byte 4i+t of the index vector idx[k] (k < 8) is the position of bit 4k+t of row i's word
/// within its 64-bit pair of rows, which VPSHUFBITQMB gathers.
NANOQUANT_TARGET_AMX inline void unpack_signs(const std::uint32_t* t0, const std::uint32_t* t1, const __m512i* idx,
                                              std::int8_t* b)
{
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    const __m512i v0 = _mm512_load_si512(t0), v1 = _mm512_load_si512(t1);
    for (int k = 0; k < 8; ++k) {
        _mm512_store_si512(b + 64 * k, _mm512_mask_blend_epi8(_mm512_bitshuffle_epi64_mask(v0, idx[k]), plus, minus));
        _mm512_store_si512(b + 64 * (k + 8),
                           _mm512_mask_blend_epi8(_mm512_bitshuffle_epi64_mask(v1, idx[k]), plus, minus));
    }
}

/// Sums of NG token groups (16 tokens each, or one group of the configured rows) over NR row blocks
/// from R: A holds the groups' activations in tile order (pack_tokens(), the first group's tile of
/// column step s at A + s·step, the second's 1 KiB on), out the first token's sums.
template <int NG, int NR>
NANOQUANT_TARGET_AMX inline void tile_block(const std::uint32_t* tiles, Index row_blocks, Index col_words, Index R,
                                            const std::int8_t* A, Index step, std::int32_t* out, Index ldo,
                                            const __m512i* idx)
{
    // Two sets of unpacked tiles: the next columns' are unpacked before these are loaded, so that the
    // tile loads do not wait on stores just issued; the unpacking is issued before this step's tile
    // instructions so that the vector units work while the tile unit does (docs/benchmark-log.md).
    alignas(64) std::int8_t bt[2][NR][1024];
    _tile_zero(4);
    if (NR == 2) _tile_zero(5);
    if (NG == 2) _tile_zero(6);
    if (NG == 2 && NR == 2) _tile_zero(7);
    const Index stride = row_blocks * 16;
    const auto unpack = [&](Index c, std::int8_t(*dst)[1024]) NANOQUANT_TARGET_AMX {
        const std::uint32_t* w0 = tiles + c * stride + 16 * R;
        // The next row blocks' tiles of these columns are read after this block's whole sweep.
        _mm_prefetch(reinterpret_cast<const char*>(w0 + 16 * NR), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(w0 + stride + 16 * NR), _MM_HINT_T1);
        if (NR == 2) {
            _mm_prefetch(reinterpret_cast<const char*>(w0 + 16 * NR + 16), _MM_HINT_T1);
            _mm_prefetch(reinterpret_cast<const char*>(w0 + stride + 16 * NR + 16), _MM_HINT_T1);
        }
        for (int r = 0; r < NR; ++r) unpack_signs(w0 + 16 * r, w0 + stride + 16 * r, idx, dst[r]);
    };
    unpack(0, bt[0]);
    for (Index c = 0; c < col_words; c += 2) {
        std::int8_t(*cur)[1024] = bt[(c / 2) & 1];
        if (c + 2 < col_words) unpack(c + 2, bt[((c / 2) & 1) ^ 1]);
        _tile_loadd(2, cur[0], 64);
        if (NR == 2) _tile_loadd(3, cur[NR - 1], 64);
        _tile_loadd(0, A + (c / 2) * step, 64);
        if (NG == 2) _tile_loadd(1, A + (c / 2) * step + 1024, 64);
        _tile_dpbssd(4, 0, 2);
        if (NR == 2) _tile_dpbssd(5, 0, 3);
        if (NG == 2) _tile_dpbssd(6, 1, 2);
        if (NG == 2 && NR == 2) _tile_dpbssd(7, 1, 3);
    }
    const Index ld = ldo * Index(sizeof(std::int32_t));
    _tile_stored(4, out + 16 * R, ld);
    if (NR == 2) _tile_stored(5, out + 16 * (R + 1), ld);
    if (NG == 2) _tile_stored(6, out + 16 * ldo + 16 * R, ld);
    if (NG == 2 && NR == 2) _tile_stored(7, out + 16 * ldo + 16 * (R + 1), ld);
}

/// Row blocks [rb_begin, rb_end) for NG token groups, two row blocks at a time.
template <int NG>
NANOQUANT_TARGET_AMX inline void tile_pass(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                           Index rb_begin, Index rb_end, const std::int8_t* A, Index step,
                                           std::int32_t* out, Index ldo, const __m512i* idx)
{
    Index R = rb_begin;
    for (; R + 2 <= rb_end; R += 2) tile_block<NG, 2>(tiles, row_blocks, col_words, R, A, step, out, ldo, idx);
    if (R < rb_end) tile_block<NG, 1>(tiles, row_blocks, col_words, R, A, step, out, ldo, idx);
}

/// Copies the activations of `batch` tokens (rows of Q, 32·col_words bytes each) into tile order: the
/// 16 × 64 tile of token group g and column step s (columns 64s..64s+63) at A + s·step + 1024·g, with
/// step = 1024·groups; a last group's missing rows are not written (not loaded either). Q's row
/// stride is a multiple of 64 and often of 4 KiB, which puts a tile's 16 rows in one cache set; the
/// copy makes each tile 1 KiB in a row, and costs one pass over the activations.
inline void pack_tokens(const std::int8_t* Q, Index ldq, Index batch, Index col_words, std::int8_t* A)
{
    const Index steps = col_words / 2, step = 1024 * ((batch + 15) / 16);
    for (Index b = 0; b < batch; ++b) {
        std::int8_t* dst = A + 1024 * (b / 16) + 64 * (b % 16);
        for (Index s = 0; s < steps; ++s) std::memcpy(dst + s * step, Q + b * ldq + 64 * s, 64);
    }
}
}  // namespace detail

/// Batched integer rows (see DotI8BatchFn), exact: int32 sums of int8 products, as the reference.
/// Tokens go in pairs of 16-token groups, then a last group of 16, then the rest (fewer rows
/// configured: the tiles load and store only those tokens).
NANOQUANT_TARGET_AMX inline void dot_i8_batch(const std::uint32_t* tiles, Index row_blocks, Index col_words,
                                              Index rb_begin, Index rb_end, const std::int8_t* Q, Index ldq,
                                              Index batch, std::int32_t* out, Index ldo)
{
    if (rb_end <= rb_begin || batch <= 0) return;
    __m512i idx[8];
    {
        alignas(64) std::int8_t b[64];
        for (int p = 0; p < 64; ++p) b[p] = std::int8_t(32 * ((p / 4) & 1) + p % 4);
        const __m512i base = _mm512_load_si512(b);
        for (int k = 0; k < 8; ++k) idx[k] = _mm512_add_epi8(base, _mm512_set1_epi8(char(4 * k)));
    }
    thread_local AlignedVector<std::int8_t> buf;
    const Index step = 1024 * ((batch + 15) / 16);
    if (buf.size() < std::size_t(step * (col_words / 2))) buf.resize(std::size_t(step * (col_words / 2)));
    detail::pack_tokens(Q, ldq, batch, col_words, buf.data());
    const std::int8_t* A = buf.data();
    Index b = 0;
    if (batch >= 16) {
        const detail::TileConfig full = detail::config(16);
        _tile_loadconfig(&full);
        for (; b + 32 <= batch; b += 32)
            detail::tile_pass<2>(tiles, row_blocks, col_words, rb_begin, rb_end, A + 64 * b, step, out + b * ldo, ldo,
                                 idx);
        if (b + 16 <= batch) {
            detail::tile_pass<1>(tiles, row_blocks, col_words, rb_begin, rb_end, A + 64 * b, step, out + b * ldo, ldo,
                                 idx);
            b += 16;
        }
    }
    if (b < batch) {
        const detail::TileConfig tail = detail::config(int(batch - b));
        _tile_loadconfig(&tail);
        detail::tile_pass<1>(tiles, row_blocks, col_words, rb_begin, rb_end, A + 64 * b, step, out + b * ldo, ldo,
                             idx);
    }
    _tile_release();
}

/// Tokens per thread from which an int8 GEMM on several threads splits the tokens (KernelTable): two
/// full token groups, so that either split gives each thread passes of two groups. Below that the
/// row split wins: each thread unpacks its rows' signs once for all tokens (docs/kernels.md).
constexpr Index kTokensPerThread = 32;

/// The AMX variant's table: the AVX-512 kernels with the AMX int8 GEMM.
inline const KernelTable& table()
{
    static const KernelTable t{KernelTarget::Amx,        "amx",           &avx512::dot_f32, &avx512::dot_i8,
                               &avx512::dot_f32_batch, &dot_i8_batch, &avx512::quantize_i8, kTokensPerThread};
    return t;
}

}  // namespace amx
}  // namespace kernels
}  // namespace nanoquant

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
