#include "common/sha256.h"

#include <cerrno>
#include <new>
#include <openssl/evp.h>
#include <sys/types.h>
#include <unistd.h>
#include <vector>

#include "common/hex.h"

namespace dopt {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
        EVP_MD_CTX_free(ctx_);
        throw std::bad_alloc();
    }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(const void* data, std::size_t n) { EVP_DigestUpdate(ctx_, data, n); }

std::string Sha256::finish_hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    reset();
    return to_hex(md, len);
}

void Sha256::reset() { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }

std::string sha256_of_fd(int fd) {
    Sha256 sha;
    std::vector<char> buf(1 << 20);
    off_t off = 0;
    for (;;) {
        ssize_t n = ::pread(fd, buf.data(), buf.size(), off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return "";
        if (n == 0) break;
        sha.update(buf.data(), static_cast<std::size_t>(n));
        off += n;
    }
    return sha.finish_hex();
}

}  // namespace dopt
