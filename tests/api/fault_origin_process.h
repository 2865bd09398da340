// tests/origin/fault_origin.py as a child process of a C++ test: started on
// 127.0.0.1 with an OS-chosen port (its first stdout line, "PORT <n>"),
// stopped with the object. Behaviours by path: tests/origin/README.md.
#pragma once

#include "tests/support/program_path.h"

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdlib>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace dopt_test {

#ifndef DOPT_FAULT_ORIGIN
#define DOPT_FAULT_ORIGIN "tests/origin/fault_origin.py"
#endif

inline std::string fault_origin_script() {
    return dopt::test::program_path("DOPT_FAULT_ORIGIN", DOPT_FAULT_ORIGIN);
}

class FaultOrigin {
public:
    // Serves `docroot` (which must exist). Waits at most 10 s for the port.
    explicit FaultOrigin(const std::string& docroot) {
        int out[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        std::string script = fault_origin_script();
        pid_t parent = ::getpid();
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            ::dup2(out[1], 1);
            ::execlp("python3", "python3", script.c_str(), "--docroot", docroot.c_str(), "--port",
                     "0", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(out[1]);
        std::string line;
        while (line.find('\n') == std::string::npos) {
            pollfd p{out[0], POLLIN, 0};
            if (::poll(&p, 1, 10000) <= 0) break;
            char buf[64];
            ssize_t n = ::read(out[0], buf, sizeof buf);
            if (n <= 0) break;
            line.append(buf, static_cast<size_t>(n));
        }
        ::close(out[0]);  // it prints nothing more without --verbose
        INFO("fault_origin.py (" << script << ") said: " << line);
        REQUIRE(line.rfind("PORT ", 0) == 0);
        port_ = std::atoi(line.c_str() + 5);
        REQUIRE(port_ > 0);
    }
    FaultOrigin(const FaultOrigin&) = delete;
    FaultOrigin& operator=(const FaultOrigin&) = delete;
    ~FaultOrigin() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
    }

    std::string url(const std::string& path) const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }

private:
    pid_t pid_ = -1;
    int port_ = 0;
};

}  // namespace dopt_test
