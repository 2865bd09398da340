// dopt+http, dopt+https: the apt acquire method (README.md). apt starts it
// by the scheme of a sources.list line; its name (argv[0]) says which.
#include "apt/dopt_method.h"

#include <cstdio>
#include <string>
#include <unistd.h>

int main(int argc, char** argv) {
    std::string name = argc > 0 && argv[0] ? argv[0] : "";
    std::size_t slash = name.rfind('/');
    if (slash != std::string::npos) name.erase(0, slash + 1);
    if (name != "dopt+http" && name != "dopt+https") {
        std::fprintf(stderr,
                     "%s: an apt acquire method; apt runs it as dopt+http or dopt+https "
                     "(see apt/README.md)\n",
                     name.c_str());
        return 100;
    }
    return dopt::apt::DoptMethod(name, STDIN_FILENO, STDOUT_FILENO).run();
}
