// How libdopt reads job objects (api/libdopt/objects.cpp, JsonReader) and
// how `dopt list --json` / `dopt status --json` print them: strings with
// quotes, backslashes, control characters and non-ASCII UTF-8 survive the
// trip; members come in any order and unknown ones are skipped; malformed
// replies give DOPT_E_PROTOCOL and never crash. Against a scripted agent
// that sends reply text verbatim (no agent, no network).
#include "dopt/dopt.h"

#include "protocol/frame.h"
#include "tests/support/json_frame.h"
#include "tests/support/sample_job.h"
#include "tests/support/unix_socket.h"
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

using nlohmann::json;

void write_body(int fd, const std::string& body) { (void)dopt::protocol::write_frame(fd, body); }

// Replaces every "@SEQ@" in `text` with `seq`.
std::string with_seq(std::string text, std::int64_t seq) {
    const std::string mark = "@SEQ@";
    for (auto at = text.find(mark); at != std::string::npos; at = text.find(mark, at))
        text.replace(at, mark.size(), std::to_string(seq));
    return text;
}

// A scripted agent on a Unix socket in a private directory. It serves any
// number of connections, one after the other: hello is answered for it,
// every other request gets reply(request) verbatim, with "@SEQ@" replaced
// by the request's seq.
class RawAgent {
public:
    using Reply = std::function<std::string(const json& request)>;

    explicit RawAgent(Reply reply) : reply_(std::move(reply)) {
        char tmpl[] = "/tmp/dopt-api-json-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/agent.sock";
        fd_ = dopt::test::listen_unix(path_, 8);
        thread_ = std::thread([this] { serve(); });
    }
    ~RawAgent() {
        ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
        thread_.join();
        ::close(fd_);
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    const std::string& path() const { return path_; }

    // The requests seen so far (hello excluded).
    std::vector<json> requests() {
        std::lock_guard<std::mutex> lock(mu_);
        return requests_;
    }

private:
    void serve() {
        for (;;) {
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) return;
            json req;
            while (dopt::test::read_json_frame(c, &req)) {
                std::int64_t seq = req.value("seq", std::int64_t{0});
                if (req["op"] == "hello") {
                    write_body(c, json{{"rc", 0}, {"seq", seq}, {"protocol", 1}, {"agent", "test"}}.dump());
                    continue;
                }
                {
                    std::lock_guard<std::mutex> lock(mu_);
                    requests_.push_back(req);
                }
                write_body(c, with_seq(reply_(req), seq));
            }
            ::close(c);
        }
    }

    Reply reply_;
    std::string dir_, path_;
    int fd_ = -1;
    std::thread thread_;
    std::mutex mu_;
    std::vector<json> requests_;  // GUARDED_BY(mu_)
};

// Strings that need escaping or are not ASCII.
const std::string kQuoted = "say \"hi\"";
const std::string kBackslash = "C:\\dir\\file";
const std::string kControl = std::string("tab\there\nnew\rret\bbs\fff\x01\x1f end");
const std::string kUtf8 = "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80 \xE2\x82\xAC";

// A job object as the agent writes it, with the given strings; its file
// is 4096 bytes, all transferred, and the error's file size is unknown
// (-1) with 7 bytes transferred.
json job_json(const std::string& id, const std::string& name, const std::string& local,
              const std::string& remote, const std::string& description) {
    json job = dopt::test::sample_job({id, name, "error", local, remote, description});
    job["files"][0]["bytes_total"] = 4096;
    job["files"][0]["bytes_transferred"] = 4096;
    job["error"]["file"]["bytes_total"] = -1;
    job["error"]["file"]["bytes_transferred"] = 7;
    return job;
}

json weird_job() {
    return job_json("job-" + kUtf8, kQuoted + kBackslash, "/tmp/" + kControl, "https://h/" + kUtf8,
                    kControl + kQuoted + kUtf8);
}

// A list reply of one page: {"rc":0,"seq":N,"jobs":[...],"more":false}.
std::string list_reply(const json& jobs, bool more = false) {
    return R"({"rc":0,"seq":@SEQ@,"jobs":)" + jobs.dump() + R"(,"more":)" +
           (more ? "true" : "false") + "}";
}

struct Listed {
    int rc = 0;
    std::string error;
    std::vector<dopt_job_status*> jobs;
    ~Listed() {
        for (auto* s : jobs) dopt_job_status_free(s);
    }
};

// Opens a client to `agent`, lists, closes.
void list_from(RawAgent& agent, Listed* out) {
    dopt_client* client = nullptr;
    REQUIRE(dopt_client_open(&client, agent.path().c_str()) == DOPT_OK);
    dopt_job_status** list = nullptr;
    size_t n = 0;
    out->rc = dopt_client_list_jobs(&list, &n, client);
    out->error = dopt_last_error();
    for (size_t i = 0; i < n; ++i) out->jobs.push_back(list[i]);
    delete[] list;  // the statuses are owned by out->jobs now
    dopt_client_close(client);
}

int list_rc(const std::string& body) {
    RawAgent agent([&](const json&) { return body; });
    Listed l;
    list_from(agent, &l);
    return l.rc;
}

void check_weird(const dopt_job_status* s) {
    json want = weird_job();
    CHECK(dopt_job_status_id(s) == want["id"].get<std::string>());
    CHECK(dopt_job_status_display_name(s) == want["display_name"].get<std::string>());
    CHECK(dopt_job_status_state(s) == DOPT_STATE_ERROR);
    dopt_file_info f{};
    REQUIRE(dopt_job_status_file(&f, s, 0) == DOPT_OK);
    CHECK(f.local_name == want["files"][0]["local_name"].get<std::string>());
    CHECK(f.remote_name == want["files"][0]["remote_name"].get<std::string>());
    const dopt_error* e = dopt_job_status_error(s);
    REQUIRE(e != nullptr);
    CHECK(dopt_error_description(e) == want["error"]["description"].get<std::string>());
    REQUIRE(dopt_error_file(&f, e) == DOPT_OK);
    CHECK(f.local_name == want["files"][0]["local_name"].get<std::string>());
    CHECK(f.bytes_total == UINT64_MAX);
    CHECK(f.bytes_transferred == 7);
}

// Runs the dopt CLI with `args` against `agent`; returns its stdout.
std::string run_cli(const RawAgent& agent, const std::string& args, int* status) {
    std::string cmd = std::string("'") + DOPT_CLI_PATH + "' --socket '" + agent.path() + "' " + args;
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    *status = ::pclose(p);
    return out;
}

}  // namespace

TEST_CASE("list reads escaped and non-ASCII strings exactly") {
    RawAgent agent([](const json&) { return list_reply(json::array({weird_job()})); });
    Listed l;
    list_from(agent, &l);
    REQUIRE(l.rc == DOPT_OK);
    REQUIRE(l.jobs.size() == 1);
    check_weird(l.jobs[0]);
}

TEST_CASE("list decodes \\u escapes and surrogate pairs to UTF-8") {
    std::string job = R"({"id":"a\u00e9\u65e5\ud83d\ude00\/\u0001","state":"queued",)"
                      R"("display_name":"q\"b\\n\n"})";
    RawAgent agent([&](const json&) { return R"({"rc":0,"seq":@SEQ@,"jobs":[)" + job + "]}"; });
    Listed l;
    list_from(agent, &l);
    REQUIRE(l.rc == DOPT_OK);
    REQUIRE(l.jobs.size() == 1);
    CHECK(std::string(dopt_job_status_id(l.jobs[0])) ==
          "a\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80/\x01");
    CHECK(std::string(dopt_job_status_display_name(l.jobs[0])) == "q\"b\\n\n");
}

TEST_CASE("status reads the same strings as list") {
    RawAgent agent([](const json& req) {
        return json{{"rc", 0}, {"seq", req["seq"]}, {"job", weird_job()}}.dump();
    });
    dopt_client* client = nullptr;
    REQUIRE(dopt_client_open(&client, agent.path().c_str()) == DOPT_OK);
    dopt_job* job = nullptr;
    REQUIRE(dopt_job_open(&job, client, "x") == DOPT_OK);
    dopt_job_status* s = nullptr;
    REQUIRE(dopt_job_fetch_status(&s, job) == DOPT_OK);
    check_weird(s);
    dopt_job_status_free(s);
    dopt_job_close(job);
    dopt_client_close(client);
}

// Found while fuzzing (tests/fuzz, fuzz_ipc): a reply read into a tree
// whose job or entries nest 500,000 levels deep (1 MB, within a frame)
// overflowed the stack in dump(), which recursed once per level.
TEST_CASE("replies nested too deeply are DOPT_E_PROTOCOL, not a stack overflow") {
    auto nested = [](std::size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); };
    std::string deep;
    RawAgent agent([&](const json& req) {
        if (req["op"] == "open") return R"({"rc":0,"seq":@SEQ@,"job":{"id":"x","state":"queued","d":)" + deep + "}}";
        if (req["op"] == "cache_list") return R"({"rc":0,"seq":@SEQ@,"entries":)" + deep + "}";
        return R"({"rc":0,"seq":@SEQ@,"peering":false,"d":)" + deep + "}";  // peer_stats
    });
    // A fresh client for each call: a protocol error breaks the connection.
    auto rcs = [&]() {
        std::vector<int> out;
        dopt_client* client = nullptr;
        REQUIRE(dopt_client_open(&client, agent.path().c_str()) == DOPT_OK);
        dopt_job* job = nullptr;
        out.push_back(dopt_job_open(&job, client, "x"));
        dopt_job_close(job);
        dopt_client_close(client);
        REQUIRE(dopt_client_open(&client, agent.path().c_str()) == DOPT_OK);
        char* text = nullptr;
        out.push_back(dopt_cache_list_json(&text, client));
        dopt_string_free(text);
        dopt_client_close(client);
        REQUIRE(dopt_client_open(&client, agent.path().c_str()) == DOPT_OK);
        out.push_back(dopt_peer_stats_json(&text, client));
        dopt_string_free(text);
        dopt_client_close(client);
        return out;
    };
    deep = nested(500000);
    CHECK(rcs() == std::vector<int>{DOPT_E_PROTOCOL, DOPT_E_PROTOCOL, DOPT_E_PROTOCOL});
    deep = nested(129);
    CHECK(rcs() == std::vector<int>{DOPT_E_PROTOCOL, DOPT_E_PROTOCOL, DOPT_E_PROTOCOL});
    deep = nested(100);  // deep, but within the limit
    CHECK(rcs() == std::vector<int>{DOPT_OK, DOPT_OK, DOPT_OK});
}

TEST_CASE("members in any order with unknown ones and nulls are read") {
    std::string job = R"( { "future" : {"a":[1,2.5e3,{"b":null}],"c":"\"}"} , "files" : [ )"
                      R"({"extra":[[]],"bytes_transferred":3,"remote_name":"r","local_name":"l"} ] ,)"
                      R"( "bytes_total" : null , "state" : "transferring" , "display_name" : null ,)"
                      R"( "priority" : 3 , "error" : null , "mode" : null , "created" : 1e3 ,)"
                      R"( "id" : "J" , "bytes_from_peers" : 2.0 , "owner_uid":7 } )";
    RawAgent agent([&](const json&) {
        return R"({"more":null,"x":[],"jobs":[)" + job + R"(],"rc":0,"seq":@SEQ@})";
    });
    Listed l;
    list_from(agent, &l);
    REQUIRE(l.rc == DOPT_OK);
    REQUIRE(l.jobs.size() == 1);
    const dopt_job_status* s = l.jobs[0];
    CHECK(std::string(dopt_job_status_id(s)) == "J");
    CHECK(std::string(dopt_job_status_display_name(s)).empty());
    CHECK(std::string(dopt_job_status_mode(s)) == "http_only");
    CHECK(dopt_job_status_state(s) == DOPT_STATE_TRANSFERRING);
    CHECK(dopt_job_status_priority(s) == DOPT_PRIORITY_LOW);
    CHECK(dopt_job_status_owner_uid(s) == 7);
    CHECK(dopt_job_status_error(s) == nullptr);
    dopt_progress p{};
    dopt_job_status_progress(&p, s);
    CHECK(p.bytes_total == UINT64_MAX);
    CHECK(p.bytes_from_peers == 2);
    CHECK(p.files_total == 1);
    dopt_times t{};
    dopt_job_status_times(&t, s);
    CHECK(t.created == 1000);
    dopt_file_info f{};
    REQUIRE(dopt_job_status_file(&f, s, 0) == DOPT_OK);
    CHECK(std::string(f.local_name) == "l");
    CHECK(std::string(f.remote_name) == "r");
    CHECK(f.bytes_total == UINT64_MAX);
    CHECK(f.bytes_transferred == 3);
}

TEST_CASE("list follows pages with after set to the last id") {
    RawAgent agent([](const json& req) {
        if (!req.contains("after"))
            return list_reply(json::array({job_json("A", "", "/a", "r", ""), job_json("B", "", "/b", "r", "")}),
                              true);
        return list_reply(json::array({job_json("C", "", "/c", "r", "")}), false);
    });
    Listed l;
    list_from(agent, &l);
    REQUIRE(l.rc == DOPT_OK);
    REQUIRE(l.jobs.size() == 3);
    CHECK(std::string(dopt_job_status_id(l.jobs[2])) == "C");
    auto reqs = agent.requests();
    REQUIRE(reqs.size() == 2);
    CHECK(reqs[1]["after"] == "B");
}

TEST_CASE("list gives the agent's rc and message before looking at jobs") {
    CHECK(list_rc(R"({"rc":-5,"seq":@SEQ@,"message":"no","jobs":[{"id":"x","state":"bogus"}]})") == -5);
    RawAgent agent([](const json&) { return std::string(R"({"seq":@SEQ@,"message":"denied","rc":-13})"); });
    Listed l;
    list_from(agent, &l);
    CHECK(l.rc == -13);
    CHECK(l.error == "denied");
}

TEST_CASE("list refuses well-formed replies with bad contents as DOPT_E_PROTOCOL") {
    const char* bodies[] = {
        R"({"rc":0,"seq":@SEQ@})",                                           // no jobs
        R"({"rc":0,"seq":@SEQ@,"jobs":{}})",                                 // not an array
        R"({"rc":0,"seq":@SEQ@,"jobs":[1]})",                                // job not an object
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"state":"queued"}]})",               // no id
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"bogus"}]})",       // unknown state
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","priority":9}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","bytes_transferred":-1}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","created":1.5}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","created":99999999999999999999}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":7,"state":"queued"}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","files":{}}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","error":"x"}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","transient_error":"x"}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","transient_error":{"next_retry":"soon"}}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","http_only_reason":7}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[],"more":"yes"})",
        R"({"rc":0,"seq":999999,"jobs":[]})",                                // wrong seq
        R"({"rc":"0","seq":@SEQ@,"jobs":[]})",
        R"([1,2])",
    };
    for (const char* body : bodies) {
        INFO(body);
        CHECK(list_rc(body) == DOPT_E_PROTOCOL);
    }
}

TEST_CASE("list refuses malformed JSON text as DOPT_E_PROTOCOL") {
    const std::string bad_utf8[] = {"\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF"};
    std::vector<std::string> bodies = {
        R"({"rc":0,"seq":@SEQ@,"jobs":[]} x)",
        R"({"rc":0,"seq":@SEQ@,"jobs":[],})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[,]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued",}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x\q","state":"queued"}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x\ud800","state":"queued"}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x\udc00\ud800","state":"queued"}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x\u12G4","state":"queued"}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","created":01}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","created":-}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","z":tru}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","z":'a'}]})",
        R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x","state":"queued","z":1.}]})",
        R"({"rc":0,"seq":@SEQ@ "jobs":[]})",
        "{\"rc\":0,\"seq\":@SEQ@,\"jobs\":[{\"id\":\"a\tb\",\"state\":\"queued\"}]}",
        std::string(R"({"rc":0,"seq":@SEQ@,"jobs":[],"deep":)") + std::string(100000, '[') +
            std::string(100000, ']') + "}",
    };
    for (const auto& b : bad_utf8)
        bodies.push_back(R"({"rc":0,"seq":@SEQ@,"jobs":[{"id":"x)" + b + R"(","state":"queued"}]})");
    for (const auto& body : bodies) {
        INFO(body.substr(0, 200));
        CHECK(list_rc(body) == DOPT_E_PROTOCOL);
    }
}

TEST_CASE("every truncation of a list reply is DOPT_E_PROTOCOL") {
    const std::string full = list_reply(json::array({weird_job()}));
    // One agent for all: each truncated reply goes to a fresh client.
    std::atomic<size_t> cut{0};
    RawAgent agent([&](const json&) { return full.substr(0, cut.load()); });
    for (size_t n = 0; n < full.size(); ++n) {
        cut = n;
        Listed l;
        list_from(agent, &l);
        INFO(full.substr(0, n));
        CHECK(l.rc == DOPT_E_PROTOCOL);
        CHECK(l.jobs.empty());
    }
}

TEST_CASE("dopt list --json prints the strings the agent sent") {
    json jobs = json::array({weird_job(), job_json("plain", "p", "/p", "https://h/p", "")});
    jobs[1]["error"] = nullptr;
    jobs[1]["bytes_total"] = 100;
    RawAgent agent([&](const json&) { return list_reply(jobs); });
    int status = -1;
    std::string out = run_cli(agent, "list --json", &status);
    REQUIRE(status == 0);
    json printed = json::parse(out);
    REQUIRE(printed.is_array());
    REQUIRE(printed.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
        const json& got = printed[i];
        const json& want = jobs[i];
        CHECK(got["id"] == want["id"]);
        CHECK(got["display_name"] == want["display_name"]);
        CHECK(got["state"] == want["state"]);
        CHECK(got["priority"] == "high");
        CHECK(got["files"][0]["local_name"] == want["files"][0]["local_name"]);
        CHECK(got["files"][0]["remote_name"] == want["files"][0]["remote_name"]);
        CHECK(got["files"][0]["bytes_total"] == 4096);
    }
    CHECK(printed[0]["bytes_total"] == -1);
    CHECK(printed[1]["bytes_total"] == 100);
    CHECK(printed[0]["error"]["description"] == jobs[0]["error"]["description"]);
    CHECK(printed[0]["error"]["file"]["bytes_total"] == -1);
    CHECK(printed[0]["error"]["file"]["bytes_transferred"] == 7);
    CHECK(printed[1]["error"].is_null());
    // Byte for byte what nlohmann's dump() makes of the same values.
    std::string first_line = out.substr(2, out.find('\n', 2) - 3);
    CHECK(nlohmann::ordered_json::parse(first_line).dump() == first_line);
}

TEST_CASE("dopt status --json prints the same job object as list") {
    RawAgent agent([](const json& req) {
        return json{{"rc", 0}, {"seq", req["seq"]}, {"job", weird_job()}}.dump();
    });
    int status = -1;
    json one = json::parse(run_cli(agent, "status x --json", &status));
    REQUIRE(status == 0);
    RawAgent lister([](const json&) { return list_reply(json::array({weird_job()})); });
    json listed = json::parse(run_cli(lister, "list --json", &status));
    REQUIRE(status == 0);
    REQUIRE(listed.size() == 1);
    CHECK(one == listed[0]);
    CHECK(one["display_name"] == weird_job()["display_name"]);
}

TEST_CASE("dopt list --json prints an empty array for no jobs") {
    RawAgent agent([](const json&) { return list_reply(json::array()); });
    int status = -1;
    CHECK(run_cli(agent, "list --json", &status) == "[]\n");
    CHECK(status == 0);
}
