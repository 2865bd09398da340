// Framing of the IPC protocol (docs/protocol.md): a 4-byte big-endian length,
// then that many bytes of JSON. Shared by libdopt and doptd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dopt::protocol {

constexpr int kVersion = 1;
constexpr std::size_t kMaxFrame = 1024 * 1024;  // body bytes

enum class FrameResult {
    Ok,
    Closed,     // orderly EOF before any byte of a frame
    TooLarge,   // announced length > kMaxFrame (body not read)
    IoError,    // read/write failed or EOF inside a frame; errno kept
};

// Blocking: reads one whole frame from `fd` into `body`.
FrameResult read_frame(int fd, std::string& body);
// Blocking: writes one whole frame. Bodies over kMaxFrame give TooLarge.
FrameResult write_frame(int fd, const std::string& body);

// Encodes the 4-byte header for `len` into out[0..3].
void encode_length(std::uint32_t len, unsigned char out[4]);
std::uint32_t decode_length(const unsigned char in[4]);

}  // namespace dopt::protocol
