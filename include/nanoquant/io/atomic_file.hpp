// SPDX-License-Identifier: Apache-2.0
#pragma once

/// \file atomic_file.hpp
/// AtomicFileWriter: writes a file so that the final name only ever holds a complete file.
/// The bytes go to a temporary file in the same directory (`.NAME.tmp.PID.N`), which is
/// fsync'ed, then renamed over the final name, then the directory is fsync'ed. An interrupted
/// run leaves at most a stray temporary file, never a half-written file under the final name.

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nanoquant/error.hpp"

namespace nanoquant {
namespace io {

/// Streams bytes to a temporary file and publishes it atomically with commit().
/// If commit() is not reached (exception, early return) the destructor removes the temporary.
class AtomicFileWriter {
public:
    /// Creates the temporary file next to `path`. \throws nanoquant::io_error naming it.
    explicit AtomicFileWriter(std::string path) : m_path(std::move(path))
    {
        static std::atomic<unsigned> counter{0};
        const std::size_t slash = m_path.find_last_of('/');
        m_dir = slash == std::string::npos ? std::string(".") : m_path.substr(0, slash == 0 ? 1 : slash);
        const std::string base = slash == std::string::npos ? m_path : m_path.substr(slash + 1);
        if (base.empty()) ::nanoquant::detail::raise_io_error(m_path + ": not a file name");
        m_tmp = (slash == std::string::npos ? std::string() : m_path.substr(0, slash + 1)) + "." + base +
                ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
        m_fd = ::open(m_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (m_fd < 0)
            ::nanoquant::detail::raise_io_error(m_path + ": cannot create temporary file " + m_tmp + ": " +
                                   std::strerror(errno));
    }

    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    ~AtomicFileWriter()
    {
        if (m_fd >= 0) ::close(m_fd);
        if (!m_committed) ::unlink(m_tmp.c_str());
    }

    /// Appends `n` bytes. \throws nanoquant::io_error (disk full, I/O error).
    void write(const void* data, std::size_t n)
    {
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            const std::size_t chunk = n < (std::size_t(1) << 30) ? n : (std::size_t(1) << 30);
            const ssize_t w = ::write(m_fd, p, chunk);
            if (w < 0) {
                if (errno == EINTR) continue;
                ::nanoquant::detail::raise_io_error(m_path + ": write failed after " + std::to_string(m_written) +
                                       " bytes: " + std::strerror(errno));
            }
            p += w;
            n -= static_cast<std::size_t>(w);
            m_written += static_cast<std::size_t>(w);
        }
    }

    /// Bytes written so far.
    std::size_t bytes_written() const { return m_written; }

    /// fsync, close, rename over the final path, fsync the directory.
    void commit()
    {
        if (::fsync(m_fd) != 0)
            ::nanoquant::detail::raise_io_error(m_path + ": fsync failed: " + std::strerror(errno));
        const int fd = m_fd;
        m_fd = -1;
        if (::close(fd) != 0) ::nanoquant::detail::raise_io_error(m_path + ": close failed: " + std::strerror(errno));
        if (::rename(m_tmp.c_str(), m_path.c_str()) != 0)
            ::nanoquant::detail::raise_io_error(m_path + ": cannot rename " + m_tmp + " into place: " +
                                   std::strerror(errno));
        m_committed = true;
        const int dfd = ::open(m_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            ::fsync(dfd);  // best effort: some file systems refuse fsync on directories
            ::close(dfd);
        }
    }

private:
    std::string m_path, m_dir, m_tmp;
    int m_fd = -1;
    bool m_committed = false;
    std::size_t m_written = 0;
};

}  // namespace io
}  // namespace nanoquant
