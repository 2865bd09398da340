// A file fetched over HTTP after a content lookup, whole and verified
// against its SHA-256 X, goes into the peer cache to be seeded
// (docs/design.md "Content identity"): copied into a private folder of
// cache_dir and hashed for its deterministic metainfo. For a large file
// that takes seconds, so it runs on a worker thread; the agent's loop
// collects the result (Swarms::collect_cache_copies) and keeps answering
// meanwhile. The worker touches nothing but the file descriptor it was
// given, its own folder and the result: no job, no log, no job table.
#pragma once

#include <cstdint>
#include <future>
#include <string>

namespace dopt::agent {

struct CacheCopyResult {
    std::string dir;       // cache_dir/.content-<X>, holding <dir>/<X>; "" when it failed
    std::string metainfo;  // bencoded, p2p::make_content_metainfo of the copy
    std::string error;     // why it failed; "" when it did not
};

// Starts copying `size` bytes of the file open at `fd` (duplicated here: the
// caller may close its own at once) into `cache_dir`/.content-<sha256>/<sha256>
// and making its metainfo, which checks the copy against `sha256`. Ready
// when done; its destructor waits for the worker.
std::future<CacheCopyResult> start_cache_copy(int fd, std::uint64_t size, const std::string& cache_dir,
                                              const std::string& sha256);

}  // namespace dopt::agent
