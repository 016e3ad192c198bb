// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file safetensors.hpp
/// Reading and writing safetensors files (https://github.com/huggingface/safetensors).
///
/// Layout: an 8-byte little-endian header length N, N bytes of a UTF-8 JSON object
/// `{"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [BEGIN, END]}, ..., "__metadata__": {str: str}}`,
/// then the data section; offsets are relative to its start, data is C order, little-endian.
///
/// Reading (SafetensorsFile) memory-maps the file and parses the header once with nlohmann::json;
/// no tensor byte is read until asked for, so reading one tensor of a 10 GB file touches only
/// that tensor's pages. All checks happen when the header is parsed and fail with
/// nanoquant::io_error naming the file, the tensor and the numbers: file shorter than 8 bytes,
/// header length beyond the file (or above 100 MB), invalid JSON or UTF-8, a header that is not
/// an object, unknown dtype, malformed shape or offsets, shape × itemsize ≠ byte span, offsets
/// beyond the data section (truncated file), overlapping tensors, gaps between tensors, trailing
/// bytes. After that, every tensor view lies inside the mapping.
///
/// Writing (SafetensorsWriter) is atomic (temporary file, fsync, rename). The header is padded
/// with spaces so the data section starts at a multiple of 8 bytes, as the reference writer does.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nanoquant/core/types.hpp"
#include "nanoquant/error.hpp"
#include "nanoquant/io/atomic_file.hpp"
#include "nanoquant/io/half.hpp"
#include "nanoquant/io/mapped_file.hpp"

namespace nanoquant {
namespace io {

/// Element types of the safetensors format.
enum class StDType {
    BOOL,     ///< 1 byte
    U8,       ///< uint8
    I8,       ///< int8
    F8_E4M3,  ///< float8 e4m3fn (copied, not converted)
    F8_E5M2,  ///< float8 e5m2 (copied, not converted)
    U16,      ///< uint16
    I16,      ///< int16
    F16,      ///< IEEE binary16
    BF16,     ///< bfloat16
    U32,      ///< uint32
    I32,      ///< int32
    F32,      ///< IEEE binary32
    U64,      ///< uint64
    I64,      ///< int64
    F64       ///< IEEE binary64
};

}  // namespace io
namespace detail {
struct StDTypeName {
    io::StDType type;
    const char* name;
    std::size_t size;
};
inline const StDTypeName* st_dtype_table(std::size_t& n)
{
    static const StDTypeName table[] = {
        {io::StDType::BOOL, "BOOL", 1}, {io::StDType::U8, "U8", 1},       {io::StDType::I8, "I8", 1},
        {io::StDType::F8_E4M3, "F8_E4M3", 1}, {io::StDType::F8_E5M2, "F8_E5M2", 1},
        {io::StDType::U16, "U16", 2},   {io::StDType::I16, "I16", 2},     {io::StDType::F16, "F16", 2},
        {io::StDType::BF16, "BF16", 2}, {io::StDType::U32, "U32", 4},     {io::StDType::I32, "I32", 4},
        {io::StDType::F32, "F32", 4},   {io::StDType::U64, "U64", 8},     {io::StDType::I64, "I64", 8},
        {io::StDType::F64, "F64", 8}};
    n = sizeof(table) / sizeof(table[0]);
    return table;
}
}  // namespace detail
namespace io {

/// The dtype's name as written in safetensors headers ("F32", ...).
inline const char* to_string(StDType t)
{
    std::size_t n;
    const auto* tab = detail::st_dtype_table(n);
    for (std::size_t i = 0; i < n; ++i)
        if (tab[i].type == t) return tab[i].name;
    return "?";
}

/// Bytes per element.
inline std::size_t itemsize(StDType t)
{
    std::size_t n;
    const auto* tab = detail::st_dtype_table(n);
    for (std::size_t i = 0; i < n; ++i)
        if (tab[i].type == t) return tab[i].size;
    return 0;
}

/// Parses a dtype name; returns false if unknown.
inline bool parse_st_dtype(const std::string& s, StDType& out)
{
    std::size_t n;
    const auto* tab = detail::st_dtype_table(n);
    for (std::size_t i = 0; i < n; ++i)
        if (s == tab[i].name) {
            out = tab[i].type;
            return true;
        }
    return false;
}

/// One tensor entry of a safetensors header, checked against the file.
struct TensorInfo {
    std::string name;                 ///< tensor name (header key)
    StDType dtype = StDType::F32;     ///< element type
    std::vector<std::int64_t> shape;  ///< dimensions (C order); empty = scalar
    std::size_t begin = 0;            ///< first byte, relative to the data section
    std::size_t end = 0;              ///< one past the last byte, relative to the data section

    /// Number of elements (product of the shape; 1 for a scalar).
    std::size_t numel() const
    {
        std::size_t n = 1;
        for (auto s : shape) n *= static_cast<std::size_t>(s);
        return n;
    }
    /// Size in bytes (end - begin).
    std::size_t nbytes() const { return end - begin; }
    /// "[2, 3]"
    std::string shape_string() const
    {
        std::string s = "[";
        for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
        return s + "]";
    }
};

/// A parsed view of safetensors bytes that it does not own (see SafetensorsFile for files).
class SafetensorsView {
public:
    /// Largest header accepted (the reference implementation's limit).
    static constexpr std::size_t kMaxHeaderBytes = 100u * 1000u * 1000u;

    SafetensorsView() = default;

    /// Parses and checks [data, data + size). `file` names the source in error messages.
    /// \throws nanoquant::io_error on any malformation (see the file comment).
    SafetensorsView(const std::uint8_t* data, std::size_t size, std::string file)
        : m_file(std::move(file)), m_base(data), m_size(size)
    {
        parse();
    }

    /// Name of the source, as given.
    const std::string& file() const { return m_file; }
    /// Tensors sorted by their offset in the data section (which is file order).
    const std::vector<TensorInfo>& tensors() const { return m_tensors; }
    /// The `__metadata__` string map (empty if absent).
    const std::map<std::string, std::string>& metadata() const { return m_metadata; }
    /// Byte offset of the data section in the file (8 + header length).
    std::size_t data_offset() const { return m_data_offset; }
    /// Header length N from the first 8 bytes.
    std::size_t header_bytes() const { return m_data_offset - 8; }
    /// Total size in bytes.
    std::size_t size() const { return m_size; }

    /// True if a tensor called `name` exists.
    bool contains(const std::string& name) const { return m_index.count(name) != 0; }

    /// The entry of `name`. \throws nanoquant::io_error naming the file and the tensor if absent.
    const TensorInfo& info(const std::string& name) const
    {
        const auto it = m_index.find(name);
        if (it == m_index.end()) {
            std::string some;
            for (std::size_t i = 0; i < m_tensors.size() && i < 5; ++i)
                some += (i ? ", " : "") + m_tensors[i].name;
            if (m_tensors.size() > 5) some += ", ...";
            ::nanoquant::detail::raise_io_error(m_file + ": no tensor named '" + name + "' (the file has " +
                                   std::to_string(m_tensors.size()) + " tensors" +
                                   (some.empty() ? std::string() : ": " + some) + ")");
        }
        return m_tensors[it->second];
    }

    /// Pointer to the first byte of `t` (inside the viewed bytes; may be unaligned).
    const std::uint8_t* data(const TensorInfo& t) const { return m_base + m_data_offset + t.begin; }

    /// Tensor `name` converted to float, in C order. Supports F32, F16, BF16 and F64 (F64 rounded
    /// to float; read_matrix<double> keeps its full precision).
    /// \throws nanoquant::io_error for other dtypes.
    std::vector<float> read_floats(const std::string& name) const
    {
        const TensorInfo& t = info(name);
        std::vector<float> out(t.numel());
        convert_into(t, out.data());
        return out;
    }

    /// Tensor `name` as a matrix: 2-D tensors as rows × cols, 1-D tensors as n×1.
    /// \throws nanoquant::io_error for other ranks or dtypes.
    template <typename Scalar = float>
    Matrix<Scalar> read_matrix(const std::string& name) const
    {
        const TensorInfo& t = info(name);
        if (t.shape.size() != 1 && t.shape.size() != 2)
            ::nanoquant::detail::raise_io_error(m_file + ": tensor '" + name + "' has shape " + t.shape_string() + " (" +
                                   std::to_string(t.shape.size()) + " dimensions); expected 1-D or 2-D");
        const Index rows = static_cast<Index>(t.shape[0]);
        const Index cols = t.shape.size() == 2 ? static_cast<Index>(t.shape[1]) : 1;
        if (rows == 0 || cols == 0) {  // e.g. [10^16, 0]: no loop over a dimension of an empty tensor
            convert_into<Scalar>(t, nullptr);  // the dtype check still applies
            return Matrix<Scalar>(rows, cols);
        }
        // Each value converted once, straight to Scalar (F64 -> double is exact, as in the .npy reader).
        Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> C(rows, cols);
        convert_into(t, C.data());
        return Matrix<Scalar>(C);
    }

private:
    /// The values of `t` converted to Scalar (float or double), in C order, into out[0 .. numel).
    /// \throws nanoquant::io_error for a dtype other than F32, F16, BF16 and F64.
    template <typename Scalar>
    void convert_into(const TensorInfo& t, Scalar* out) const
    {
        const std::size_t n = t.numel();
        const std::uint8_t* p = data(t);
        switch (t.dtype) {
        case StDType::F32:
            for (std::size_t i = 0; i < n; ++i) {
                float v;
                std::memcpy(&v, p + 4 * i, 4);
                out[i] = static_cast<Scalar>(v);
            }
            break;
        case StDType::F16:
            for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Scalar>(half_to_float(load_u16(p + 2 * i)));
            break;
        case StDType::BF16:
            for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Scalar>(bf16_to_float(load_u16(p + 2 * i)));
            break;
        case StDType::F64:
            for (std::size_t i = 0; i < n; ++i) {
                double v;
                std::memcpy(&v, p + 8 * i, 8);
                out[i] = static_cast<Scalar>(v);
            }
            break;
        default:
            ::nanoquant::detail::raise_io_error(m_file + ": tensor '" + t.name + "' has dtype " + to_string(t.dtype) +
                                   "; only F32, F16, BF16 and F64 tensors can be read as floats");
        }
    }

    static std::uint16_t load_u16(const std::uint8_t* p)
    {
        return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
    }

    [[noreturn]] void fail(const std::string& what) const { ::nanoquant::detail::raise_io_error(m_file + ": " + what); }

    void parse()
    {
        if (m_size == 0) fail("empty file (0 bytes), not a safetensors file");
        if (m_size < 8)
            fail("file has " + std::to_string(m_size) +
                 " bytes, too short for the 8-byte header length of a safetensors file");
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | m_base[i];
        if (n > m_size - 8)
            fail("header length " + std::to_string(n) + " goes beyond the file (" + std::to_string(m_size - 8) +
                 " bytes after the 8-byte length field); not a safetensors file or truncated");
        if (n > kMaxHeaderBytes)
            fail("header length " + std::to_string(n) + " exceeds the limit of " +
                 std::to_string(kMaxHeaderBytes) + " bytes");
        if (n < 2) fail("header length " + std::to_string(n) + " is too short for a JSON object");
        m_data_offset = 8 + static_cast<std::size_t>(n);
        const char* hb = reinterpret_cast<const char*>(m_base + 8);
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(hb, hb + n);
        } catch (const nlohmann::json::exception& e) {
            fail(std::string("header is not valid UTF-8 JSON: ") + e.what());
        }
        if (!j.is_object()) fail(std::string("header is a JSON ") + j.type_name() + ", expected an object");
        const std::size_t data_size = m_size - m_data_offset;
        for (auto it = j.begin(); it != j.end(); ++it) {
            const std::string& key = it.key();
            const nlohmann::json& v = it.value();
            if (key == "__metadata__") {
                if (!v.is_object()) fail("__metadata__ must be an object of strings");
                for (auto m = v.begin(); m != v.end(); ++m) {
                    if (!m.value().is_string())
                        fail("__metadata__ entry '" + m.key() + "' is a " + m.value().type_name() +
                             ", expected a string");
                    m_metadata[m.key()] = m.value().get<std::string>();
                }
                continue;
            }
            m_tensors.push_back(parse_entry(key, v, data_size));
        }
        std::sort(m_tensors.begin(), m_tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
            return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
        });
        std::size_t pos = 0;
        const TensorInfo* prev = nullptr;
        for (const TensorInfo& t : m_tensors) {
            if (t.begin < pos)
                fail("tensor '" + t.name + "' data_offsets [" + std::to_string(t.begin) + ", " +
                     std::to_string(t.end) + "] overlap tensor '" + prev->name + "' [" +
                     std::to_string(prev->begin) + ", " + std::to_string(prev->end) + "]");
            if (t.begin > pos)
                fail("gap of " + std::to_string(t.begin - pos) + " bytes before tensor '" + t.name +
                     "' (data_offsets start at " + std::to_string(t.begin) + ", previous data ends at " +
                     std::to_string(pos) + ")");
            pos = t.end;
            prev = &t;
        }
        if (pos != data_size)
            fail("the data section has " + std::to_string(data_size) + " bytes but the tensors cover " +
                 std::to_string(pos) + " (" + std::to_string(data_size - pos) + " trailing bytes)");
        for (std::size_t i = 0; i < m_tensors.size(); ++i) m_index[m_tensors[i].name] = i;
    }

    TensorInfo parse_entry(const std::string& name, const nlohmann::json& v, std::size_t data_size) const
    {
        const std::string where = "tensor '" + name + "': ";
        if (!v.is_object()) fail(where + "entry is a " + v.type_name() + ", expected an object");
        TensorInfo t;
        t.name = name;
        const auto d = v.find("dtype");
        if (d == v.end() || !d->is_string()) fail(where + "missing or non-string \"dtype\"");
        if (!parse_st_dtype(d->get<std::string>(), t.dtype))
            fail(where + "unknown dtype \"" + d->get<std::string>() + "\"");
        const auto s = v.find("shape");
        if (s == v.end() || !s->is_array()) fail(where + "missing or non-array \"shape\"");
        if (s->size() > 64) fail(where + "shape has " + std::to_string(s->size()) + " dimensions");
        std::size_t numel = 1;
        bool overflow = false;
        for (const auto& e : *s) {
            if (!e.is_number_unsigned()) fail(where + "shape entries must be non-negative integers, got " + e.dump());
            const std::uint64_t dim = e.get<std::uint64_t>();
            if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                fail(where + "shape entry " + std::to_string(dim) + " is too large");
            t.shape.push_back(static_cast<std::int64_t>(dim));
            if (dim != 0 && numel > std::numeric_limits<std::size_t>::max() / dim) overflow = true;
            numel *= static_cast<std::size_t>(dim);
        }
        const auto o = v.find("data_offsets");
        if (o == v.end() || !o->is_array() || o->size() != 2 || !(*o)[0].is_number_unsigned() ||
            !(*o)[1].is_number_unsigned())
            fail(where + "\"data_offsets\" must be two non-negative integers");
        const std::uint64_t b = (*o)[0].get<std::uint64_t>(), e = (*o)[1].get<std::uint64_t>();
        if (b > e)
            fail(where + "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] end before they begin");
        if (e > data_size)
            fail(where + "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                 "] reach beyond the data section of " + std::to_string(data_size) + " bytes (truncated file?)");
        t.begin = static_cast<std::size_t>(b);
        t.end = static_cast<std::size_t>(e);
        const std::size_t item = itemsize(t.dtype);
        if (overflow || (numel != 0 && numel > std::numeric_limits<std::size_t>::max() / item) ||
            numel * item != t.nbytes())
            fail(where + "shape " + t.shape_string() + " of " + to_string(t.dtype) + " needs " +
                 (overflow ? std::string("more than 2^64") : std::to_string(numel * item)) +
                 " bytes but data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] span " +
                 std::to_string(t.nbytes()));
        return t;
    }

    std::string m_file;
    const std::uint8_t* m_base = nullptr;
    std::size_t m_size = 0;
    std::size_t m_data_offset = 0;
    std::vector<TensorInfo> m_tensors;
    std::map<std::string, std::size_t> m_index;
    std::map<std::string, std::string> m_metadata;
};

/// A memory-mapped, parsed safetensors file (read-only). Holds the mapping for its lifetime;
/// pointers from data() stay valid as long as the object lives.
class SafetensorsFile : public SafetensorsView {
public:
    /// Maps and parses `path`. \throws nanoquant::io_error naming the file.
    explicit SafetensorsFile(const std::string& path) : SafetensorsFile(MappedFile(path)) {}

    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

private:
    explicit SafetensorsFile(MappedFile&& m)
        : SafetensorsView(m.data(), m.size(), m.path()), m_map(std::make_unique<MappedFile>(std::move(m)))
    {
    }
    std::unique_ptr<MappedFile> m_map;  // the bytes the view points into
};

/// Builds a safetensors file in memory (header) and streams it to disk atomically.
/// Tensor data is either owned (add) or borrowed (add_view: the caller keeps it alive until
/// write() returns, e.g. a view into a SafetensorsFile being copied).
class SafetensorsWriter {
public:
    /// Adds a tensor whose bytes are owned by the writer. \throws nanoquant::invalid_argument if the
    /// name is taken or reserved, or the byte count does not match shape × itemsize.
    void add(const std::string& name, StDType dtype, std::vector<std::int64_t> shape, std::vector<std::uint8_t> bytes)
    {
        check(name, dtype, shape, bytes.size());
        m_owned.push_back(std::make_unique<std::vector<std::uint8_t>>(std::move(bytes)));
        m_entries.push_back({name, dtype, std::move(shape), m_owned.back()->data(), m_owned.back()->size()});
    }

    /// Adds a tensor whose bytes the caller keeps alive until write() returns.
    void add_view(const std::string& name, StDType dtype, std::vector<std::int64_t> shape, const std::uint8_t* data,
                  std::size_t nbytes)
    {
        check(name, dtype, shape, nbytes);
        m_entries.push_back({name, dtype, std::move(shape), data, nbytes});
    }

    /// Adds float values (C order) stored as F32, F16 or BF16 (rounded to nearest even).
    /// \throws nanoquant::invalid_argument if a finite value overflows F16.
    void add_floats(const std::string& name, StDType dtype, std::vector<std::int64_t> shape, const float* v,
                    std::size_t n)
    {
        std::vector<std::uint8_t> bytes;
        if (dtype == StDType::F32) {
            bytes.resize(n * 4);
            if (n) std::memcpy(bytes.data(), v, n * 4);
        } else if (dtype == StDType::F16 || dtype == StDType::BF16) {
            bytes.resize(n * 2);
            for (std::size_t i = 0; i < n; ++i) {
                const std::uint16_t h = dtype == StDType::F16 ? float_to_half(v[i]) : float_to_bf16(v[i]);
                if (dtype == StDType::F16)
                    NANOQUANT_CHECK(!(std::isfinite(v[i]) && (h & 0x7c00u) == 0x7c00u), "SafetensorsWriter::add_floats",
                                    "tensor '" << name << "' value " << v[i] << " at index " << i
                                               << " overflows F16 (max 65504); store it as F32");
                bytes[2 * i] = static_cast<std::uint8_t>(h & 0xff);
                bytes[2 * i + 1] = static_cast<std::uint8_t>(h >> 8);
            }
        } else {
            NANOQUANT_CHECK(false, "SafetensorsWriter::add_floats",
                            "dtype must be F32, F16 or BF16, got " << to_string(dtype));
        }
        add(name, dtype, std::move(shape), std::move(bytes));
    }

    /// Sets a `__metadata__` entry.
    void set_metadata(const std::string& key, const std::string& value) { m_metadata[key] = value; }

    /// Number of tensors added.
    std::size_t size() const { return m_entries.size(); }

    /// The header JSON text (without the length prefix or padding).
    std::string header_json() const
    {
        nlohmann::json h = nlohmann::json::object();
        if (!m_metadata.empty()) h["__metadata__"] = m_metadata;
        std::size_t off = 0;
        for (const auto& e : m_entries) {
            h[e.name] = {{"dtype", to_string(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.nbytes}}};
            off += e.nbytes;
        }
        return h.dump();
    }

    /// Writes the file atomically (temporary file in the same directory, fsync, rename).
    /// Returns the number of bytes written. \throws nanoquant::io_error.
    std::size_t write(const std::string& path) const
    {
        std::string header = header_json();
        const std::size_t padded = (8 + header.size() + 7) / 8 * 8 - 8;
        header.append(padded - header.size(), ' ');
        std::uint8_t len[8];
        std::uint64_t n = header.size();
        for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(n >> (8 * i));
        AtomicFileWriter w(path);
        w.write(len, 8);
        w.write(header.data(), header.size());
        for (const auto& e : m_entries)
            if (e.nbytes) w.write(e.data, e.nbytes);
        const std::size_t total = w.bytes_written();
        w.commit();
        return total;
    }

private:
    struct Entry {
        std::string name;
        StDType dtype;
        std::vector<std::int64_t> shape;
        const std::uint8_t* data;
        std::size_t nbytes;
    };

    void check(const std::string& name, StDType dtype, const std::vector<std::int64_t>& shape, std::size_t nbytes)
    {
        constexpr const char* where = "SafetensorsWriter::add";
        NANOQUANT_CHECK(name != "__metadata__", where, "the name __metadata__ is reserved");
        NANOQUANT_CHECK(m_names.insert(name).second, where, "tensor '" << name << "' added twice");
        std::size_t numel = 1;
        for (auto s : shape) {
            NANOQUANT_CHECK(s >= 0, where, "tensor '" << name << "' has a negative dimension " << s);
            numel *= static_cast<std::size_t>(s);
        }
        NANOQUANT_CHECK(numel * itemsize(dtype) == nbytes, where,
                        "tensor '" << name << "' of " << to_string(dtype) << " with " << numel << " elements needs "
                                   << numel * itemsize(dtype) << " bytes, got " << nbytes);
    }

    std::vector<Entry> m_entries;
    std::vector<std::unique_ptr<std::vector<std::uint8_t>>> m_owned;
    std::map<std::string, std::string> m_metadata;
    std::set<std::string> m_names;
};

}  // namespace io
}  // namespace nanoquant
