#include "apt/method_message.h"

#include <cctype>
#include <cstdlib>
#include <strings.h>

namespace dopt::apt {

std::string MethodMessage::field(const std::string& name) const {
    for (const auto& [n, v] : fields)
        if (strcasecmp(n.c_str(), name.c_str()) == 0) return v;
    return "";
}

bool MethodMessage::has(const std::string& name) const {
    for (const auto& f : fields)
        if (strcasecmp(f.first.c_str(), name.c_str()) == 0) return true;
    return false;
}

namespace {

std::string trim(const std::string& s) {
    std::size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
    return s.substr(b, e - b);
}

}  // namespace

MethodMessage parse_message(const std::string& text) {
    MethodMessage m;
    std::size_t pos = 0;
    bool first = true;
    while (pos <= text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string line = trim(text.substr(pos, end - pos));
        pos = end + 1;
        if (first) {
            first = false;
            char* after = nullptr;
            long code = std::strtol(line.c_str(), &after, 10);
            if (after == line.c_str() || code < 0 || code > 999) return m;  // code 0: malformed
            m.code = static_cast<int>(code);
            m.title = trim(after);
            continue;
        }
        if (line.empty()) continue;
        std::size_t colon = line.find(':');
        if (colon == std::string::npos) continue;  // apt's LookupTag skips such lines too
        m.fields.emplace_back(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
    }
    return m;
}

std::string dequote(const std::string& text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
            out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

void MessageReader::feed(const char* data, std::size_t n) { buffer_.append(data, n); }

std::optional<MethodMessage> MessageReader::next() {
    // Blank lines before a message are not part of it.
    std::size_t start = buffer_.find_first_not_of("\r\n");
    if (start == std::string::npos) {
        buffer_.clear();
        return std::nullopt;
    }
    for (std::size_t i = buffer_.find('\n', start); i != std::string::npos;
         i = buffer_.find('\n', i + 1)) {
        std::size_t next_line = i + 1;
        std::size_t blank_end = next_line;
        if (blank_end < buffer_.size() && buffer_[blank_end] == '\r') ++blank_end;
        if (blank_end < buffer_.size() && buffer_[blank_end] == '\n') {
            MethodMessage m = parse_message(buffer_.substr(start, i - start));
            buffer_.erase(0, blank_end + 1);
            return m;
        }
    }
    return std::nullopt;
}

std::string format_message(const std::string& header,
                           const std::vector<std::pair<std::string, std::string>>& fields) {
    std::string out = header + "\n";
    for (const auto& [name, value] : fields) {
        if (value.empty()) continue;
        std::string clean = value;
        for (char& c : clean) {
            unsigned char u = static_cast<unsigned char>(c);
            if ((u < 0x20 && c != '\t') || u == 0x7f) c = ' ';
        }
        out += name + ": " + clean + "\n";
    }
    return out + "\n";
}

}  // namespace dopt::apt
