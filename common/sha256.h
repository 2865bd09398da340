// SHA-256 (OpenSSL's EVP), written as lowercase hex (common/hex.h): what
// `--sha256` expects and what a mismatch message shows.
#pragma once

#include <cstddef>
#include <string>

struct evp_md_ctx_st;

namespace dopt {

// An incremental SHA-256. Not copyable; one thread at a time.
class Sha256 {
public:
    Sha256();  // throws std::bad_alloc when OpenSSL cannot allocate
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    void update(const void* data, std::size_t n);
    // The digest of every byte since construction or the last reset(), as
    // 64 lowercase hex digits; then starts over, as reset() does.
    std::string finish_hex();
    // Forgets every byte given so far.
    void reset();

private:
    evp_md_ctx_st* ctx_;  // OpenSSL's EVP_MD_CTX
};

// The SHA-256 of the whole file open at `fd` (read with pread from byte 0,
// the file offset untouched), as 64 lowercase hex digits; "" when it cannot
// be read.
std::string sha256_of_fd(int fd);

}  // namespace dopt
