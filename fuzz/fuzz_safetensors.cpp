// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the safetensors reader and the factorized-layer loader on arbitrary bytes.
// Every tensor that parses is read in full (floats converted, raw bytes summed; 1-D and 2-D float
// tensors also as a matrix), so a view that reaches past the buffer is caught by AddressSanitizer.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <nanoquant/io/factorized_file.hpp>
#include <nanoquant/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    using namespace nanoquant::io;
    // Copy into an exactly-sized heap buffer so that ASan sees any read past the end.
    std::vector<std::uint8_t> buf(data, data + size);
    try {
        const SafetensorsView v(buf.data(), buf.size(), "fuzz.safetensors");
        unsigned sum = 0;
        for (const auto& t : v.tensors()) {
            const std::uint8_t* p = v.data(t);
            for (std::size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
            if (t.dtype == StDType::F32 || t.dtype == StDType::F16 || t.dtype == StDType::BF16 ||
                t.dtype == StDType::F64)
            {
                sum += static_cast<unsigned>(v.read_floats(t.name).size());
                if (t.shape.size() == 1 || t.shape.size() == 2)
                    sum += static_cast<unsigned>(v.read_matrix<float>(t.name).size());
            }
        }
        for (const auto& name : factorized_layer_names(v)) {
            try {
                const auto l = load_factorized_layer<float>(v, name);
                sum += static_cast<unsigned>(l.f.rank());
            } catch (const nanoquant::io_error&) {
            }
        }
        volatile unsigned sink = sum;
        (void)sink;
    } catch (const nanoquant::io_error&) {
    }
    return 0;
}
