// The envelope of an IPC request (docs/protocol.md) and the typed reading of
// its fields, apart from the ops (agent_requests.cpp) so that tests/fuzz can
// link it alone.
#include <string>

#include "agent/agent_internal.h"

namespace dopt::agent {

std::string decode_request(const std::string& body, Agent::Request* req) {
    bool too_deep = false;
    try {
        req->body = json::parse(body, [&too_deep](int depth, json::parse_event_t, json&) {
            if (depth > kMaxRequestDepth) too_deep = true;
            return !too_deep;  // nothing more is kept once too deep
        });
    } catch (const json::exception&) {
        return "the request is not valid JSON";
    }
    if (too_deep) return "the request nests deeper than " + std::to_string(kMaxRequestDepth) + " levels";
    if (!req->body.is_object() || !req->body.contains("op") || !req->body["op"].is_string() ||
        !req->body.contains("seq") || !req->body["seq"].is_number_integer())
        return "a request needs a string 'op' and an integer 'seq'";
    req->op = req->body["op"].get<std::string>();
    req->seq = req->body["seq"].get<std::int64_t>();
    return "";
}

std::int64_t integer_field(const json& v, const char* name, std::int64_t lo, std::int64_t hi) {
    bool in_range = false;
    if (v.is_number_unsigned()) {
        std::uint64_t u = v.get<std::uint64_t>();
        in_range = hi >= 0 && u <= static_cast<std::uint64_t>(hi) && (lo <= 0 || u >= static_cast<std::uint64_t>(lo));
    } else if (v.is_number_integer()) {
        std::int64_t i = v.get<std::int64_t>();
        in_range = i >= lo && i <= hi;
    }
    if (!in_range)
        throw BadField(std::string(name) + " must be an integer from " + std::to_string(lo) + " to " +
                       std::to_string(hi));
    return v.get<std::int64_t>();
}

std::int64_t integer_member(const json& obj, const char* name, std::int64_t fallback, std::int64_t lo,
                            std::int64_t hi) {
    auto it = obj.find(name);  // end() unless obj is an object with that member
    return it == obj.end() ? fallback : integer_field(*it, name, lo, hi);
}

}  // namespace dopt::agent
