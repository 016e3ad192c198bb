// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file npy.hpp
/// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
///
/// Read: dtypes float32 (`<f4`), float16 (`<f2`), float64 (`<f8`), big-endian variants (`>f4`...),
/// and bfloat16 as written by ml_dtypes-based tools, whose descr is the 2-byte void `<V2`/`|V2`
/// (nanoquant reads any 2-byte void as bfloat16; there is no other common 2-byte void). C and
/// Fortran order; 1-D arrays (read as n×1) and 2-D arrays. Every check happens here, at the
/// boundary, and fails with nanoquant::io_error naming the file and the numbers: magic, version,
/// header length beyond the file, header syntax, dtype, ndim, shape × itemsize against the bytes
/// present (truncated or trailing data).
///
/// Write: float32, C order, a version 1.0 header padded to 64 bytes (as numpy writes it), through
/// an atomic temporary-file-and-rename.

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/io/atomic_file.hpp"
#include "nanoquant/io/half.hpp"
#include "nanoquant/io/mapped_file.hpp"

namespace nanoquant {
namespace io {

/// Element types nanoquant reads from .npy files.
enum class NpyDType {
    Float16,   ///< IEEE binary16 (`f2`)
    BFloat16,  ///< bfloat16, stored by numpy as a 2-byte void (`V2`)
    Float32,   ///< IEEE binary32 (`f4`)
    Float64    ///< IEEE binary64 (`f8`)
};

/// Size in bytes of one element.
inline std::size_t npy_itemsize(NpyDType t)
{
    switch (t) {
    case NpyDType::Float16:
    case NpyDType::BFloat16: return 2;
    case NpyDType::Float32: return 4;
    case NpyDType::Float64: return 8;
    }
    return 0;
}

/// Name of the dtype as numpy spells it ("float32", ...).
inline const char* to_string(NpyDType t)
{
    switch (t) {
    case NpyDType::Float16: return "float16";
    case NpyDType::BFloat16: return "bfloat16";
    case NpyDType::Float32: return "float32";
    case NpyDType::Float64: return "float64";
    }
    return "?";
}

/// The parsed header of a .npy file: everything needed to locate and decode the data.
struct NpyHeader {
    int major_version = 0;            ///< 1, 2 or 3
    int minor_version = 0;            ///< 0
    std::string descr;                ///< the descr string as written, e.g. "<f4"
    NpyDType dtype = NpyDType::Float32;
    bool big_endian = false;          ///< data stored most significant byte first
    bool fortran_order = false;       ///< column-major data
    std::vector<Index> shape;         ///< 1 or 2 entries
    std::size_t data_offset = 0;      ///< byte offset of the first element in the file
    std::size_t data_bytes = 0;       ///< element count × itemsize (checked against the file)

    /// Rows of the matrix view (shape[0]).
    Index rows() const { return shape.empty() ? 0 : shape[0]; }
    /// Columns of the matrix view (shape[1], or 1 for a 1-D array).
    Index cols() const { return shape.size() < 2 ? 1 : shape[1]; }
};

}  // namespace io
namespace detail {

/// Minimal parser for the Python literal in a .npy header:
/// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class NpyDictParser {
public:
    NpyDictParser(const char* p, std::size_t n, const std::string& file)
        : m_begin(p), m_p(p), m_end(p + n), m_file(file)
    {
    }

    void parse(io::NpyHeader& h)
    {
        bool have_descr = false, have_order = false, have_shape = false;
        skip_ws();
        expect('{');
        for (;;) {
            skip_ws();
            if (peek() == '}') {
                ++m_p;
                break;
            }
            const std::string key = parse_string();
            skip_ws();
            expect(':');
            skip_ws();
            if (key == "descr") {
                if (peek() == '[')
                    fail("structured dtypes (descr is a list) are not supported; expected a float32, "
                         "float16, float64 or bfloat16 array");
                h.descr = parse_string();
                have_descr = true;
            } else if (key == "fortran_order") {
                h.fortran_order = parse_bool();
                have_order = true;
            } else if (key == "shape") {
                h.shape = parse_shape();
                have_shape = true;
            } else {
                fail("unexpected key '" + key + "' in the header");
            }
            skip_ws();
            if (peek() == ',') {
                ++m_p;
                continue;
            }
            skip_ws();
            expect('}');
            break;
        }
        skip_ws();
        if (m_p != m_end) fail("unexpected characters after the header dictionary");
        if (!have_descr) fail("header has no 'descr'");
        if (!have_order) fail("header has no 'fortran_order'");
        if (!have_shape) fail("header has no 'shape'");
    }

private:
    [[noreturn]] void fail(const std::string& what) const
    {
        ::nanoquant::detail::raise_io_error(m_file + ": invalid .npy header: " + what);
    }
    char peek() const { return m_p < m_end ? *m_p : '\0'; }
    void skip_ws()
    {
        while (m_p < m_end && (*m_p == ' ' || *m_p == '\t' || *m_p == '\n' || *m_p == '\r')) ++m_p;
    }
    void expect(char c)
    {
        if (peek() != c) fail(std::string("expected '") + c + "' at header byte " + std::to_string(pos()));
        ++m_p;
    }
    std::size_t pos() const { return static_cast<std::size_t>(m_p - m_begin); }
    std::string parse_string()
    {
        const char q = peek();
        if (q != '\'' && q != '"') fail("expected a quoted string at header byte " + std::to_string(pos()));
        ++m_p;
        std::string s;
        while (m_p < m_end && *m_p != q) {
            if (s.size() > 256) fail("string longer than 256 characters");
            s.push_back(*m_p++);
        }
        if (m_p >= m_end) fail("unterminated string");
        ++m_p;
        return s;
    }
    bool parse_bool()
    {
        if (match("True")) return true;
        if (match("False")) return false;
        fail("'fortran_order' must be True or False");
    }
    bool match(const char* word)
    {
        const std::size_t n = std::strlen(word);
        if (static_cast<std::size_t>(m_end - m_p) >= n && std::memcmp(m_p, word, n) == 0) {
            m_p += n;
            return true;
        }
        return false;
    }
    std::vector<Index> parse_shape()
    {
        std::vector<Index> shape;
        expect('(');
        for (;;) {
            skip_ws();
            if (peek() == ')') {
                ++m_p;
                break;
            }
            if (shape.size() >= 32) fail("shape has more than 32 dimensions");
            if (!std::isdigit(static_cast<unsigned char>(peek())))
                fail("shape entries must be non-negative integers");
            std::int64_t v = 0;
            while (std::isdigit(static_cast<unsigned char>(peek()))) {
                const int d = *m_p++ - '0';
                if (v > (std::numeric_limits<std::int64_t>::max() - d) / 10) fail("shape entry overflows 64 bits");
                v = v * 10 + d;
            }
            if (peek() == 'L') ++m_p;  // Python 2 long suffix
            shape.push_back(static_cast<Index>(v));
            skip_ws();
            if (peek() == ',') {
                ++m_p;
                continue;
            }
            skip_ws();
            expect(')');
            break;
        }
        return shape;
    }

    const char* m_begin;
    const char* m_p;
    const char* m_end;
    const std::string& m_file;
};

inline std::uint32_t npy_le(const std::uint8_t* p, int n)
{
    std::uint32_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

}  // namespace detail
namespace io {

/// Parses and checks the header of the .npy bytes [data, data + size). `file` names the source
/// in error messages. Checks that the data section holds exactly shape × itemsize bytes.
/// \throws nanoquant::io_error naming `file` and the numbers.
inline NpyHeader parse_npy_header(const std::uint8_t* data, std::size_t size, const std::string& file)
{
    using ::nanoquant::detail::raise_io_error;
    static const std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (size == 0) ::nanoquant::detail::raise_io_error(file + ": empty file (0 bytes), not a .npy file");
    if (size < 10 || std::memcmp(data, magic, 6) != 0)
        ::nanoquant::detail::raise_io_error(file + ": not a .npy file (missing the \\x93NUMPY magic; file has " +
                       std::to_string(size) + " bytes)");
    NpyHeader h;
    h.major_version = data[6];
    h.minor_version = data[7];
    if (h.major_version < 1 || h.major_version > 3 || h.minor_version != 0)
        ::nanoquant::detail::raise_io_error(file + ": unsupported .npy format version " + std::to_string(h.major_version) + "." +
                       std::to_string(h.minor_version) + " (supported: 1.0, 2.0, 3.0)");
    const std::size_t len_bytes = h.major_version == 1 ? 2 : 4;
    if (size < 8 + len_bytes) ::nanoquant::detail::raise_io_error(file + ": truncated .npy header (" + std::to_string(size) + " bytes)");
    const std::size_t header_len = detail::npy_le(data + 8, static_cast<int>(len_bytes));
    const std::size_t header_start = 8 + len_bytes;
    if (header_len > size - header_start)
        ::nanoquant::detail::raise_io_error(file + ": header length " + std::to_string(header_len) + " goes beyond the file (" +
                       std::to_string(size - header_start) + " bytes after the length field)");
    detail::NpyDictParser(reinterpret_cast<const char*>(data + header_start), header_len, file).parse(h);
    h.data_offset = header_start + header_len;

    // dtype
    const std::string& d = h.descr;
    if (d.size() < 2) ::nanoquant::detail::raise_io_error(file + ": unsupported dtype '" + d + "'");
    const char order = d[0];
    const std::string kind = d.substr(1);
    if (order != '<' && order != '>' && order != '|' && order != '=')
        ::nanoquant::detail::raise_io_error(file + ": unsupported dtype '" + d + "' (bad byte-order character)");
    h.big_endian = order == '>';
    if (kind == "f4") h.dtype = NpyDType::Float32;
    else if (kind == "f2") h.dtype = NpyDType::Float16;
    else if (kind == "f8") h.dtype = NpyDType::Float64;
    else if (kind == "V2") h.dtype = NpyDType::BFloat16;
    else
        ::nanoquant::detail::raise_io_error(file + ": unsupported dtype '" + d +
                       "' (nanoquant reads float32 '<f4', float16 '<f2', float64 '<f8' and bfloat16 '<V2')");

    // ndim and shape
    if (h.shape.size() != 1 && h.shape.size() != 2)
        ::nanoquant::detail::raise_io_error(file + ": array has " + std::to_string(h.shape.size()) +
                       " dimensions; nanoquant reads 1-D and 2-D arrays");
    const std::size_t item = npy_itemsize(h.dtype);
    std::size_t bytes = item;
    for (Index s : h.shape) {
        const std::size_t us = static_cast<std::size_t>(s);
        if (us != 0 && bytes > std::numeric_limits<std::size_t>::max() / us)
            ::nanoquant::detail::raise_io_error(file + ": shape overflows the address space");
        bytes *= us;
    }
    const std::size_t avail = size - h.data_offset;
    std::string shape_str = "(";
    for (std::size_t i = 0; i < h.shape.size(); ++i) shape_str += (i ? ", " : "") + std::to_string(h.shape[i]);
    shape_str += ")";
    if (bytes > avail)
        ::nanoquant::detail::raise_io_error(file + ": truncated: shape " + shape_str + " of " + to_string(h.dtype) + " needs " +
                       std::to_string(bytes) + " data bytes, the file has " + std::to_string(avail));
    if (bytes < avail)
        ::nanoquant::detail::raise_io_error(file + ": " + std::to_string(avail - bytes) + " unexpected bytes after the data of shape " +
                       shape_str + " (" + std::to_string(bytes) + " data bytes)");
    h.data_bytes = bytes;
    return h;
}

/// Decodes element `k` (in storage order) of a checked .npy data section.
inline double npy_element(const std::uint8_t* base, const NpyHeader& h, std::size_t k)
{
    const std::size_t item = npy_itemsize(h.dtype);
    std::uint8_t b[8];
    const std::uint8_t* p = base + k * item;
    for (std::size_t i = 0; i < item; ++i) b[i] = h.big_endian ? p[item - 1 - i] : p[i];
    switch (h.dtype) {
    case NpyDType::Float16: {
        std::uint16_t v;
        std::memcpy(&v, b, 2);
        return half_to_float(v);
    }
    case NpyDType::BFloat16: {
        std::uint16_t v;
        std::memcpy(&v, b, 2);
        return bf16_to_float(v);
    }
    case NpyDType::Float32: {
        float v;
        std::memcpy(&v, b, 4);
        return v;
    }
    case NpyDType::Float64: {
        double v;
        std::memcpy(&v, b, 8);
        return v;
    }
    }
    return 0.0;
}

/// Decodes the .npy bytes [data, data + size) into a matrix (1-D arrays become n×1).
/// float64 data read into Matrix<float> is rounded to nearest.
template <typename Scalar>
Matrix<Scalar> decode_npy(const std::uint8_t* data, std::size_t size, const std::string& file)
{
    const NpyHeader h = parse_npy_header(data, size, file);
    const Index rows = h.rows(), cols = h.cols();
    Matrix<Scalar> M(rows, cols);
    if (M.size() == 0) return M;  // e.g. (10^16, 0): no loop over a dimension of an empty array
    const std::uint8_t* base = data + h.data_offset;
    if (h.dtype == NpyDType::Float32 && !h.big_endian && std::is_same<Scalar, float>::value && h.fortran_order) {
        if (h.data_bytes) std::memcpy(M.data(), base, h.data_bytes);
        return M;
    }
    std::size_t k = 0;
    if (h.fortran_order) {
        for (Index j = 0; j < cols; ++j)
            for (Index i = 0; i < rows; ++i) M(i, j) = static_cast<Scalar>(npy_element(base, h, k++));
    } else {
        for (Index i = 0; i < rows; ++i)
            for (Index j = 0; j < cols; ++j) M(i, j) = static_cast<Scalar>(npy_element(base, h, k++));
    }
    return M;
}

/// Reads the header of a .npy file (memory-mapped; no data is read).
inline NpyHeader read_npy_header(const std::string& path)
{
    MappedFile f(path);
    return parse_npy_header(f.data(), f.size(), path);
}

/// Reads a 1-D or 2-D .npy file into a matrix (1-D: n×1). \throws nanoquant::io_error.
template <typename Scalar = float>
Matrix<Scalar> load_npy(const std::string& path)
{
    MappedFile f(path);
    return decode_npy<Scalar>(f.data(), f.size(), path);
}

/// The header bytes of a C-order .npy file holding `shape` elements of `descr` (default float32):
/// version 1.0, padded with spaces to a multiple of 64 bytes, ending in a newline.
inline std::string npy_header_bytes(const std::vector<Index>& shape, const char* descr = "<f4")
{
    std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
    for (std::size_t i = 0; i < shape.size(); ++i) dict += (i ? ", " : "") + std::to_string(shape[i]);
    if (shape.size() == 1) dict += ",";
    dict += "), }";
    std::size_t total = 10 + dict.size() + 1;
    const std::size_t padded = (total + 63) / 64 * 64;
    dict.append(padded - total, ' ');
    dict += '\n';
    NANOQUANT_CHECK(dict.size() <= 65535, "npy_header_bytes", "header too long: " << dict.size());
    std::string out("\x93NUMPY\x01\x00", 8);
    out.push_back(static_cast<char>(dict.size() & 0xff));
    out.push_back(static_cast<char>(dict.size() >> 8));
    return out + dict;
}

/// Writes `M` as a 2-D float32 C-order .npy file (atomically). \throws nanoquant::io_error.
template <typename Derived>
void save_npy(const std::string& path, const Eigen::MatrixBase<Derived>& M)
{
    const std::string header = npy_header_bytes({M.rows(), M.cols()});
    std::vector<float> buf(static_cast<std::size_t>(M.rows() * M.cols()));
    std::size_t k = 0;
    for (Index i = 0; i < M.rows(); ++i)
        for (Index j = 0; j < M.cols(); ++j) buf[k++] = static_cast<float>(M(i, j));
    AtomicFileWriter w(path);
    w.write(header.data(), header.size());
    w.write(buf.data(), buf.size() * sizeof(float));
    w.commit();
}

/// Writes `v` as a 1-D float32 .npy file (atomically).
template <typename Scalar>
void save_npy_vector(const std::string& path, const Vector<Scalar>& v)
{
    const std::string header = npy_header_bytes({v.size()});
    std::vector<float> buf(static_cast<std::size_t>(v.size()));
    for (Index i = 0; i < v.size(); ++i) buf[static_cast<std::size_t>(i)] = static_cast<float>(v(i));
    AtomicFileWriter w(path);
    w.write(header.data(), header.size());
    w.write(buf.data(), buf.size() * sizeof(float));
    w.commit();
}

}  // namespace io
}  // namespace nanoquant
