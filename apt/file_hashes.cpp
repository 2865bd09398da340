#include "apt/file_hashes.h"

#include "common/hex.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <openssl/evp.h>
#include <unistd.h>

namespace dopt::apt {

namespace {

const EVP_MD* digest_of(const std::string& kind) {
    if (kind == "SHA512") return EVP_sha512();
    if (kind == "SHA256") return EVP_sha256();
    if (kind == "SHA1") return EVP_sha1();
    if (kind == "MD5Sum") return EVP_md5();
    return nullptr;
}

struct Digest {
    std::string kind;
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
};

}  // namespace

const std::vector<std::string>& known_hash_kinds() {
    static const std::vector<std::string> kinds = {"SHA512", "SHA256", "SHA1", "MD5Sum"};
    return kinds;
}

bool hash_file(const std::string& path, const std::vector<std::string>& kinds,
               std::vector<std::pair<std::string, std::string>>& fields, std::uint64_t& size,
               std::string& error) {
    std::vector<Digest> digests;
    for (const auto& kind : kinds) {
        const EVP_MD* md = digest_of(kind);
        if (md == nullptr) continue;
        digests.emplace_back();
        digests.back().kind = kind;
        if (!digests.back().ctx || EVP_DigestInit_ex(digests.back().ctx.get(), md, nullptr) != 1) {
            error = "hashing " + path + ": OpenSSL could not start " + kind;
            return false;
        }
    }
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        error = "reading " + path + ": " + std::strerror(errno);
        return false;
    }
    size = 0;
    std::vector<unsigned char> buf(1 << 20);
    for (;;) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            error = "reading " + path + ": " + std::strerror(errno);
            close(fd);
            return false;
        }
        if (n == 0) break;
        size += static_cast<std::uint64_t>(n);
        for (auto& d : digests) EVP_DigestUpdate(d.ctx.get(), buf.data(), static_cast<size_t>(n));
    }
    close(fd);
    for (auto& d : digests) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(d.ctx.get(), md, &len);
        fields.emplace_back(d.kind + "-Hash", to_hex(md, len));
    }
    fields.emplace_back("Checksum-FileSize-Hash", std::to_string(size));
    return true;
}

}  // namespace dopt::apt
