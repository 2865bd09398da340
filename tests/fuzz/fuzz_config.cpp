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

// One file, rewritten for each input and removed at exit.
struct ConfigFile {
    std::string path;
    ConfigFile() {
        char tmpl[] = "/tmp/dopt-fuzz-config-XXXXXX";
        int fd = ::mkstemp(tmpl);
        if (fd < 0) std::abort();
        ::close(fd);
        path = tmpl;
    }
    ~ConfigFile() { ::unlink(path.c_str()); }

    void write(const std::uint8_t* data, std::size_t size) const {
        int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0) std::abort();
        while (size > 0) {
            ssize_t n = ::write(fd, data, size);
            if (n <= 0) std::abort();
            data += n;
            size -= static_cast<std::size_t>(n);
        }
        ::close(fd);
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
