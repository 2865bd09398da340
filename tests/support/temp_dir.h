// Files for C++ tests: a private temporary folder removed at scope exit, and
// whole-file reads and writes. Header-only; include as
// "tests/support/temp_dir.h" (the project root is on every include path).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>

namespace dopt::test {

// A fresh folder /tmp/dopt-test-XXXXXX (mode 0700, from mkdtemp), removed
// with everything in it when the object goes out of scope. Throws
// std::runtime_error when the folder cannot be made.
class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/dopt-test-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }

    // The path of `name` inside the folder (nothing is created).
    std::string file(const std::string& name) const { return path_ + "/" + name; }

    // The folder `name` inside this one, created (with parents) if missing.
    std::string subdir(const std::string& name) const {
        std::filesystem::create_directories(file(name));
        return file(name);
    }

    // Writes `bytes` to `name` inside the folder (replacing it) and returns
    // its path. Throws std::runtime_error when the write fails.
    std::string write(const std::string& name, const std::string& bytes) const;

private:
    std::string path_;
};

// The whole content of `path`; empty when it cannot be read.
inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Replaces the content of `path` with `bytes`. Throws std::runtime_error
// when the file cannot be written.
inline void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.good()) throw std::runtime_error("cannot write " + path);
}

inline std::string TempDir::write(const std::string& name, const std::string& bytes) const {
    write_file(file(name), bytes);
    return file(name);
}

}  // namespace dopt::test
