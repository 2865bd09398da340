// The envelope of an IPC request (docs/protocol.md), apart from the ops
// (agent_requests.cpp) so that tests/fuzz can link it alone.
#include <string>

#include "agent/agent_internal.h"

namespace dopt::agent {

std::string decode_request(const std::string& body, Agent::Request* req) {
    try {
        req->body = json::parse(body);
    } catch (const json::exception&) {
        return "the request is not valid JSON";
    }
    if (!req->body.is_object() || !req->body.contains("op") || !req->body["op"].is_string() ||
        !req->body.contains("seq") || !req->body["seq"].is_number_integer())
        return "a request needs a string 'op' and an integer 'seq'";
    req->op = req->body["op"].get<std::string>();
    req->seq = req->body["seq"].get<std::int64_t>();
    return "";
}

}  // namespace dopt::agent
