// JsonWriter: appends JSON text to a string, for the replies the agent sends
// most (job objects, thousands per `list` page) and the CLI's `--json`
// (10,000 jobs) without building a tree.
// The caller keeps the structure valid (begin/end pairs, key before value);
// strings are escaped as nlohmann's dump() escapes them (\b \f \n \r \t,
// else \u00xx) and must be UTF-8 (every string the agent holds came through
// a JSON request or from the agent itself; libdopt hands out UTF-8 only).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dopt {

class JsonWriter {
public:
    explicit JsonWriter(std::string& out) : out_(out) {}

    JsonWriter& begin_object() { return open('{'); }
    JsonWriter& end_object() { return close('}'); }
    JsonWriter& begin_array() { return open('['); }
    JsonWriter& end_array() { return close(']'); }

    JsonWriter& key(std::string_view k) {
        comma();
        string(k);
        out_ += ':';
        after_key_ = true;
        return *this;
    }
    JsonWriter& value(std::string_view v) { comma(); string(v); return *this; }
    JsonWriter& value(const char* v) { return value(std::string_view(v)); }
    JsonWriter& value(bool v) { comma(); out_ += v ? "true" : "false"; return *this; }
    JsonWriter& value(std::int64_t v) { comma(); out_ += std::to_string(v); return *this; }
    JsonWriter& value(std::uint64_t v) { comma(); out_ += std::to_string(v); return *this; }
    JsonWriter& value(std::uint32_t v) { return value(std::uint64_t{v}); }
    JsonWriter& value(int v) { return value(std::int64_t{v}); }
    // A byte count: -1 for UINT64_MAX (unknown), as docs/protocol.md has it.
    JsonWriter& bytes(std::uint64_t v) { return v == UINT64_MAX ? value(std::int64_t{-1}) : value(v); }
    JsonWriter& null() { comma(); out_ += "null"; return *this; }
    // Already-serialized JSON, inserted as one value.
    JsonWriter& raw(std::string_view json) { comma(); out_ += json; return *this; }

    template <typename T>
    JsonWriter& field(std::string_view k, const T& v) { key(k); return value(v); }

private:
    JsonWriter& open(char c) { comma(); out_ += c; first_ = true; return *this; }
    JsonWriter& close(char c) { out_ += c; first_ = false; return *this; }
    void comma() {
        if (after_key_) after_key_ = false;
        else if (!first_) out_ += ',';
        first_ = false;
    }
    void string(std::string_view s) {
        static const char* hex = "0123456789abcdef";
        out_ += '"';
        std::size_t run = 0;  // the first byte not yet copied
        for (std::size_t i = 0; i < s.size(); ++i) {
            auto c = static_cast<unsigned char>(s[i]);
            if (c >= 0x20 && c != '"' && c != '\\') continue;
            out_.append(s.data() + run, i - run);
            run = i + 1;
            if (const char* e = short_escape(c)) {
                out_ += e;
            } else {
                out_ += "\\u00";
                out_ += hex[c >> 4];
                out_ += hex[c & 15];
            }
        }
        out_.append(s.data() + run, s.size() - run);
        out_ += '"';
    }
    static const char* short_escape(unsigned char c) {
        switch (c) {
            case '"': return "\\\"";
            case '\\': return "\\\\";
            case '\b': return "\\b";
            case '\f': return "\\f";
            case '\n': return "\\n";
            case '\r': return "\\r";
            case '\t': return "\\t";
            default: return nullptr;
        }
    }

    std::string& out_;
    bool first_ = true;
    bool after_key_ = false;
};

}  // namespace dopt
