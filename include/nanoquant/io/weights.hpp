// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file weights.hpp
/// load_weight(): reads one 2-D weight matrix named on a command line: `FILE.npy`,
/// `FILE.safetensors:TENSOR` or `INDEX.json:TENSOR` (a sharded checkpoint). A safetensors file
/// holding exactly one tensor may be named without `:TENSOR`.

#include <string>
#include <sys/stat.h>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/io/checkpoint.hpp"
#include "nanoquant/io/npy.hpp"

namespace nanoquant {
namespace io {

/// Reads the 2-D weight matrix named by `spec` (see the file comment). The matrix is rows ×
/// cols as stored (out_features × in_features for PyTorch linear layers).
/// \throws nanoquant::io_error naming the file (and tensor) if it is missing, malformed, not
///         2-D, of an unsupported dtype, or empty.
template <typename Scalar = float>
Matrix<Scalar> load_weight(const std::string& spec)
{
    struct stat st;
    const bool exists = ::stat(spec.c_str(), &st) == 0;
    if (exists && ends_with(spec, ".npy")) {
        MappedFile f(spec);
        const NpyHeader h = parse_npy_header(f.data(), f.size(), spec);
        if (h.shape.size() != 2)
            ::nanoquant::detail::raise_io_error(spec + ": array is " + std::to_string(h.shape.size()) +
                                   "-D with shape (" + std::to_string(h.shape[0]) +
                                   ",); expected a 2-D weight matrix");
        if (h.rows() == 0 || h.cols() == 0)
            ::nanoquant::detail::raise_io_error(spec + ": array has 0 elements (shape (" + std::to_string(h.rows()) + ", " +
                                   std::to_string(h.cols()) + ")); expected a non-empty 2-D weight matrix");
        return decode_npy<Scalar>(f.data(), f.size(), spec);
    }
    std::string file = spec, tensor;
    if (!exists) {
        const std::size_t colon = spec.find_last_of(':');
        if (colon == std::string::npos) ::nanoquant::detail::raise_io_error(spec + ": no such file");
        file = spec.substr(0, colon);
        tensor = spec.substr(colon + 1);
        if (::stat(file.c_str(), &st) != 0) ::nanoquant::detail::raise_io_error(file + ": no such file (from '" + spec + "')");
    }
    if (ends_with(file, ".npy")) ::nanoquant::detail::raise_io_error(spec + ": a .npy file holds one array; drop ':" + tensor + "'");
    if (!ends_with(file, ".safetensors") && !ends_with(file, ".json"))
        ::nanoquant::detail::raise_io_error(file + ": unknown file type; expected FILE.npy, FILE.safetensors:TENSOR or "
                                      "INDEX.json:TENSOR");
    const Checkpoint ck(file);
    if (tensor.empty()) {
        if (ck.entries().size() != 1)
            ::nanoquant::detail::raise_io_error(file + ": holds " + std::to_string(ck.entries().size()) +
                                   " tensors; name one as " + file + ":TENSOR");
        tensor = ck.entries()[0].name;
    }
    const SafetensorsFile& sf = ck.shard_of(tensor);
    const TensorInfo& t = sf.info(tensor);
    if (t.shape.size() != 2)
        ::nanoquant::detail::raise_io_error(file + ": tensor '" + tensor + "' has shape " + t.shape_string() +
                               "; expected a 2-D weight matrix");
    if (t.numel() == 0)
        ::nanoquant::detail::raise_io_error(file + ": tensor '" + tensor + "' has 0 elements (shape " + t.shape_string() +
                               "); expected a non-empty 2-D weight matrix");
    return sf.read_matrix<Scalar>(tensor);
}

}  // namespace io
}  // namespace nanoquant
