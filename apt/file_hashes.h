// The hashes apt checks, computed over a file apt is handed.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dopt::apt {

// apt's names of the hashes it may expect ("SHA512", "SHA256", "SHA1",
// "MD5Sum"), in apt's order of preference.
const std::vector<std::string>& known_hash_kinds();

// Reads the file at `path` once and fills `fields` with the `201 URI Done`
// fields of each kind in `kinds` that known_hash_kinds() lists (unknown
// kinds are skipped), as apt names them: "SHA256-Hash: <lowercase hex>",
// ..., then "Checksum-FileSize-Hash: <size>". `size` gets the file's size.
// Returns false with `error` set ("reading PATH: <strerror>") when the file
// cannot be read.
bool hash_file(const std::string& path, const std::vector<std::string>& kinds,
               std::vector<std::pair<std::string, std::string>>& fields, std::uint64_t& size,
               std::string& error);

}  // namespace dopt::apt
