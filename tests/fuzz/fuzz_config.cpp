// Fuzzes doptd's config loading: dopt::agent::load_config (agent/config.h)
// on a file holding the input. The contract: a ConfigError ("FILE:LINE:
// ...") or a Config; anything else (a crash, a sanitizer report, a leak,
// another exception escaping) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "agent/config.h"

namespace {

// One file, rewritten for each input. It is unlinked at once and read
// through /proc/self/fd, so that a crash leaves nothing behind. In /dev/shm
// when there is one: on ext4, truncating and rewriting a file makes close()
// write it out, which would cost more than the parsing.
struct ConfigFile {
    std::string path;
    int fd = -1;
    ConfigFile() {
        for (const char* dir : {"/dev/shm", "/tmp"}) {
            std::string name = std::string(dir) + "/dopt-fuzz-config-XXXXXX";
            fd = ::mkstemp(name.data());
            if (fd < 0) continue;
            ::unlink(name.c_str());
            path = "/proc/self/fd/" + std::to_string(fd);
            return;
        }
        std::abort();
    }
    ~ConfigFile() { ::close(fd); }

    void write(const std::uint8_t* data, std::size_t size) const {
        std::size_t done = 0;
        while (done < size) {
            ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
            if (n <= 0) std::abort();
            done += static_cast<std::size_t>(n);
        }
        if (::ftruncate(fd, static_cast<off_t>(size)) != 0) std::abort();
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static ConfigFile file;
    file.write(data, size);
    std::vector<std::string> warnings;
    try {
        dopt::agent::Config c = dopt::agent::load_config(file.path, warnings);
        (void)c;
    } catch (const dopt::agent::ConfigError&) {
        // The expected refusal.
    }
    return 0;
}
