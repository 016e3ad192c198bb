// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the checkpoint index reader (io::Checkpoint on a model.safetensors.index.json).
// The input is the index's text; it sits in a private directory next to two valid shards
// (a.safetensors: tensors "w" and "v"; b.safetensors: tensor "x"), so inputs can name real shards,
// missing ones, the index itself or paths the reader must refuse. Every entry that opens is looked
// up and its tensor read in full, so a wrong shard or offset is caught by AddressSanitizer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

#include <nanoquant/io/checkpoint.hpp>

namespace {
void write_file(const std::string& path, const std::string& bytes)
{
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
    std::fclose(f);
}

std::string shard(const std::string& header, std::size_t data_bytes)
{
    std::string h = header;
    while ((8 + h.size()) % 8) h += ' ';
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((std::uint64_t(h.size()) >> (8 * i)) & 0xff);
    return out + h + std::string(data_bytes, '\x3f');
}

const std::string& directory()
{
    // Never destroyed: a static string's destructor would be registered after the atexit cleanup
    // below (its construction ends later), so it would run first and the cleanup would read freed memory.
    static const std::string& dir = *new std::string([] {
        char tmpl[] = "/tmp/nq_fuzz_index_XXXXXX";
        if (!mkdtemp(tmpl)) std::abort();
        const std::string d = tmpl;
        write_file(d + "/a.safetensors",
                   shard(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                         R"("v":{"dtype":"F16","shape":[4],"data_offsets":[24,32]}})", 32));
        write_file(d + "/b.safetensors", shard(R"({"x":{"dtype":"BF16","shape":[3,1],"data_offsets":[0,6]}})", 6));
        std::atexit([] {
            for (const char* f : {"/a.safetensors", "/b.safetensors", "/model.safetensors.index.json"})
                std::remove((directory() + f).c_str());
            rmdir(directory().c_str());
        });
        return d;
    }());
    return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    using namespace nanoquant::io;
    const std::string index = directory() + "/model.safetensors.index.json";
    write_file(index, std::string(reinterpret_cast<const char*>(data), size));
    try {
        const Checkpoint ck(index);
        unsigned sum = static_cast<unsigned>(ck.metadata().size() + ck.total_bytes());
        for (const auto& e : ck.entries()) {
            const TensorInfo& t = ck.info(e.name);
            const SafetensorsFile& s = ck.shard_of(e.name);
            if (&s != ck.shards()[e.shard].get()) std::abort();  // the entry and the lookup agree
            for (float v : s.read_floats(t.name)) sum += static_cast<unsigned>(v != 0);
        }
        volatile unsigned sink = sum;
        (void)sink;
    } catch (const nanoquant::io_error&) {
    }
    return 0;
}
