// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the .npy reader on arbitrary bytes. Any outcome but a decoded matrix or a
// nanoquant::io_error (a crash, a sanitizer report, another exception) is a bug.
#include <cstddef>
#include <cstdint>

#include <nanoquant/io/npy.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    try {
        const auto M = nanoquant::io::decode_npy<float>(data, size, "fuzz.npy");
        volatile float sink = M.size() ? M(M.rows() - 1, M.cols() - 1) : 0.0f;
        (void)sink;
        const auto D = nanoquant::io::decode_npy<double>(data, size, "fuzz.npy");
        (void)D;
    } catch (const nanoquant::io_error&) {
    }
    return 0;
}
