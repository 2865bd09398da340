#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/hex.h"
#include "common/json_writer.h"
#include "common/sha256.h"

using dopt::is_hex;
using dopt::JsonWriter;
using dopt::Sha256;
using dopt::to_hex;

TEST_CASE("to_hex writes two lowercase digits a byte", "[hex]") {
    const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
    CHECK(to_hex(bytes, sizeof bytes) == "000fa5ff");
    CHECK(to_hex(bytes, 0).empty());
}

TEST_CASE("is_hex wants exactly that many digits", "[hex]") {
    CHECK(is_hex("09afAF", 6));
    CHECK_FALSE(is_hex("09afAF", 6, /*lowercase_only=*/true));
    CHECK(is_hex("09af", 4, /*lowercase_only=*/true));
    CHECK_FALSE(is_hex("09a", 4));
    CHECK_FALSE(is_hex("09afa", 4));
    CHECK_FALSE(is_hex("09ag", 4));
    CHECK_FALSE(is_hex("", 1));
    CHECK(is_hex("", 0));
}

TEST_CASE("Sha256 gives the FIPS 180-4 digests, in pieces or at once", "[sha256]") {
    Sha256 sha;
    CHECK(sha.finish_hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha.update("a", 1);
    sha.update("bc", 2);
    CHECK(sha.finish_hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // finish_hex() starts over; reset() forgets what was given.
    sha.update("junk", 4);
    sha.reset();
    sha.update("abc", 3);
    CHECK(sha.finish_hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("sha256_of_fd hashes the whole file from byte 0, whatever its offset", "[sha256]") {
    char path[] = "/tmp/dopt-common-test-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::unlink(path);
    // 2 MiB + 3: more than the 1 MiB read buffer.
    std::string body((2u << 20) + 3, 'x');
    for (std::size_t i = 0; i < body.size(); i += 4096) body[i] = static_cast<char>('a' + i / 4096 % 26);
    REQUIRE(::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size()));
    Sha256 expected;
    expected.update(body.data(), body.size());
    CHECK(dopt::sha256_of_fd(fd) == expected.finish_hex());
    ::close(fd);
    CHECK(dopt::sha256_of_fd(fd).empty());  // closed: cannot be read
}

TEST_CASE("JsonWriter writes compact JSON that a parser reads back", "[json]") {
    std::string out;
    JsonWriter w(out);
    w.begin_object()
        .field("s", std::string("q\"b\\s\n\t\x01\x7f" "\xc3\xa9"))
        .field("neg", std::int64_t{-5})
        .field("big", UINT64_MAX - 1)
        .field("yes", true);
    w.key("unknown").bytes(UINT64_MAX);
    w.key("known").bytes(7);
    w.key("list").begin_array().value(1).null().raw(R"({"x":[]})").begin_array().end_array().end_array();
    w.key("empty").begin_object().end_object();
    w.end_object();
    CHECK(out == R"({"s":"q\"b\\s\n\t\u0001)" "\x7f" "\xc3\xa9"
                 R"(","neg":-5,"big":18446744073709551614,"yes":true,"unknown":-1,"known":7,)"
                 R"("list":[1,null,{"x":[]},[]],"empty":{}})");
    // The same text as nlohmann's dump() of the parsed value.
    CHECK(nlohmann::ordered_json::parse(out).dump() == out);
}
