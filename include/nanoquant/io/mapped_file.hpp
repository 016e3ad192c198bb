// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file mapped_file.hpp
/// MappedFile: a read-only memory mapping of a whole file (POSIX mmap). Pages are read from disk
/// only when touched, so opening a 10 GB checkpoint to read one tensor costs the pages of that
/// tensor, not 10 GB of RAM. A zero-length file gives an empty mapping (data() == nullptr).

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nanoquant/error.hpp"

namespace nanoquant {
namespace io {

/// A read-only, private memory mapping of a file. Movable, not copyable.
class MappedFile {
public:
    MappedFile() = default;

    /// Maps `path`. \throws nanoquant::io_error naming the file if it cannot be opened, is not a
    /// regular file, or cannot be mapped.
    explicit MappedFile(const std::string& path) : m_path(path)
    {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) ::nanoquant::detail::raise_io_error(path + ": cannot open: " + std::strerror(errno));
        struct stat st;
        if (::fstat(fd, &st) != 0) {
            const int err = errno;
            ::close(fd);
            ::nanoquant::detail::raise_io_error(path + ": cannot stat: " + std::strerror(err));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            ::nanoquant::detail::raise_io_error(path + ": not a regular file");
        }
        m_size = static_cast<std::size_t>(st.st_size);
        if (m_size > 0) {
            void* p = ::mmap(nullptr, m_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int err = errno;
                ::close(fd);
                ::nanoquant::detail::raise_io_error(path + ": cannot map " + std::to_string(m_size) +
                                       " bytes: " + std::strerror(err));
            }
            m_data = static_cast<const std::uint8_t*>(p);
        }
        ::close(fd);
    }

    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& o) noexcept { swap(o); }
    MappedFile& operator=(MappedFile&& o) noexcept
    {
        if (this != &o) {
            MappedFile tmp(std::move(o));
            swap(tmp);
        }
        return *this;
    }
    ~MappedFile()
    {
        if (m_data) ::munmap(const_cast<std::uint8_t*>(m_data), m_size);
    }

    /// First byte of the mapping, or nullptr for an empty file.
    const std::uint8_t* data() const { return m_data; }
    /// File size in bytes.
    std::size_t size() const { return m_size; }
    /// The path given to the constructor.
    const std::string& path() const { return m_path; }

private:
    void swap(MappedFile& o) noexcept
    {
        std::swap(m_path, o.m_path);
        std::swap(m_data, o.m_data);
        std::swap(m_size, o.m_size);
    }

    std::string m_path;
    const std::uint8_t* m_data = nullptr;
    std::size_t m_size = 0;
};

}  // namespace io
}  // namespace nanoquant
