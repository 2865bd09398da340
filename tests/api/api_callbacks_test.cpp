// The callback contract of dopt.h (dopt_job_set_callbacks), against a real
// doptd in a temporary directory (tests/api/agent_fixture.h) and the
// fault-injecting origin tests/origin/fault_origin.py (fault_origin_process.h),
// or the fixture's in-test origin where a transfer must be slow. Loopback
// and Unix sockets only.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include "agent_fixture.h"
#include "fault_origin_process.h"

#include <atomic>
#include <condition_variable>
#include <functional>

using namespace dopt_test;
using namespace std::chrono_literals;

namespace {

// What the callbacks of one job saw. Thread-safe: callbacks run on the
// dispatcher thread, the test reads from its own. Declare it (and whatever
// its callbacks touch) before the Job it records: the Job's destructor
// (dopt_job_close) waits for a callback in flight, so the Recorder must
// outlive it (ThreadSanitizer caught ~Recorder racing a callback's
// notify_all when it was declared after).
struct Recorder {
    struct SeenError {
        dopt_context context = DOPT_CONTEXT_NONE;
        std::int64_t code = 0;
        std::string description, local_name, remote_name;
        bool has_file = false;
    };
    struct SeenFile {
        std::string local_name, remote_name;
        std::uint64_t bytes_total = 0, bytes_transferred = 0;
    };

    std::mutex mu;
    std::condition_variable cv;
    std::vector<SeenError> errors;
    std::vector<SeenFile> files;
    std::vector<dopt_job_state> modifications;
    int transferred = 0;
    int last_error_rc = DOPT_OK;

    // What `error` returns: DOPT_E_INTERNAL for the first `fail_first` calls,
    // then DOPT_OK; or decided by `error_rc` when set.
    std::atomic<int> fail_first{0};
    std::function<int(Recorder&, int call)> error_rc;
    // Extra work inside callbacks (dopt calls on the job, a pause).
    std::function<int(dopt_job*)> on_transferred;
    std::chrono::milliseconds modification_pause{0};

    std::atomic<int> inside{0};  // callbacks running right now

    // Counts a running callback in `inside` for its lifetime.
    struct Running {
        explicit Running(void* ud) : r(static_cast<Recorder*>(ud)) { r->inside++; }
        ~Running() { r->inside--; }
        Recorder* r;
    };

    // Runs `update` with `mu` held, then wakes every waiter on `cv`; returns
    // what `update` returns.
    template <class Update>
    auto record(Update update) -> decltype(update()) {
        struct NotifyAfter {
            std::condition_variable& cv;
            ~NotifyAfter() { cv.notify_all(); }
        } notify{cv};
        std::lock_guard<std::mutex> lock(mu);  // released before the notify
        return update();
    }

    static int cb_error(dopt_job*, const dopt_error* e, void* ud) {
        Running running(ud);
        SeenError s;
        s.context = dopt_error_context(e);
        s.code = dopt_error_code(e);
        s.description = dopt_error_description(e);
        dopt_file_info f{};
        if (dopt_error_file(&f, e) == DOPT_OK) {
            s.has_file = true;
            s.local_name = f.local_name;
            s.remote_name = f.remote_name;
        }
        Recorder* r = running.r;
        return r->record([&] {
            r->errors.push_back(s);
            int call = static_cast<int>(r->errors.size());
            r->last_error_rc = r->error_rc ? r->error_rc(*r, call)
                                           : (call <= r->fail_first ? DOPT_E_INTERNAL : DOPT_OK);
            return r->last_error_rc;
        });
    }

    static int cb_transferred(dopt_job* job, void* ud) {
        Running running(ud);
        Recorder* r = running.r;
        int rc = r->on_transferred ? r->on_transferred(job) : DOPT_OK;
        r->record([&] { r->transferred++; });
        return rc;
    }

    static int cb_file(dopt_job*, const dopt_file_info* f, void* ud) {
        Running running(ud);
        Recorder* r = running.r;
        r->record([&] {
            r->files.push_back(SeenFile{f->local_name, f->remote_name, f->bytes_total,
                                        f->bytes_transferred});
        });
        return DOPT_OK;
    }

    static void cb_modification(dopt_job*, const dopt_job_status* s, void* ud) {
        Running running(ud);
        Recorder* r = running.r;
        r->record([&] { r->modifications.push_back(dopt_job_status_state(s)); });
        if (r->modification_pause.count() > 0) std::this_thread::sleep_for(r->modification_pause);
    }

    // Callbacks with every function set; notify_flags 0 (= all that are set).
    dopt_callbacks all(std::uint32_t percent = 0, std::uint32_t seconds = 0) const {
        return dopt_callbacks{DOPT_CALLBACKS_VERSION, /*notify_flags=*/0, cb_transferred, cb_error,
                              cb_modification, cb_file, percent, seconds};
    }
    dopt_callbacks durable_only() const {
        dopt_callbacks cb = all();
        cb.modification = nullptr;
        return cb;
    }

    // Waits (bounded) until `pred` holds; returns whether it did.
    template <typename Pred>
    bool wait_for(Pred pred, std::chrono::milliseconds timeout = 30s) {
        std::unique_lock<std::mutex> lock(mu);
        return cv.wait_for(lock, timeout, [&] { return pred(*this); });
    }
    int error_count_locked() const { return static_cast<int>(errors.size()); }
    int error_count() {
        std::lock_guard<std::mutex> lock(mu);
        return static_cast<int>(errors.size());
    }
    int transferred_count() {
        std::lock_guard<std::mutex> lock(mu);
        return transferred;
    }
    size_t modification_count() {
        std::lock_guard<std::mutex> lock(mu);
        return modifications.size();
    }
};

void set_callbacks(dopt_job* job, const dopt_callbacks& cb, Recorder& r) {
    int rc = dopt_job_set_callbacks(job, &cb, &r);
    INFO(dopt_last_error());
    REQUIRE(rc == DOPT_OK);
}

void add_file(dopt_job* job, const std::string& url, const std::string& dest) {
    int rc = dopt_job_add_file(job, url.c_str(), dest.c_str());
    INFO(url << " -> " << dest << ": " << dopt_last_error());
    REQUIRE(rc == DOPT_OK);
}

void resume(dopt_job* job) {
    int rc = dopt_job_resume(job);
    INFO(dopt_last_error());
    REQUIRE(rc == DOPT_OK);
}

// An agent, a docroot with a few files and the fault origin serving it.
struct CallbackFixture : AgentFixture {
    std::string docroot;
    std::unique_ptr<FaultOrigin> origin;
    const std::string small = random_bytes(20000, 7);

    CallbackFixture() {
        docroot = dir.path() + "/www";
        REQUIRE(::mkdir(docroot.c_str(), 0755) == 0);
        for (const char* name : {"a.bin", "b.bin", "c.bin", "d.bin"})
            write_file(docroot + "/" + name, small);
        origin = std::make_unique<FaultOrigin>(docroot);
    }

    // A job on `on` (default: the fixture's client) with one file from the
    // fault origin's `path`, saved as `name` in the files folder.
    Job job_for(const std::string& path, const std::string& name, dopt_client* on = nullptr) {
        Job job = create_job(on);
        add_file(job.get(), origin->url(path), files + "/" + name);
        return job;
    }

    // Registers for job `id` again, from a new client, and returns the first
    // error callback the agent delivers (within 20 s).
    Recorder::SeenError error_on_registering(const std::string& id) {
        Client client = open_client();
        Recorder r;
        Job job = open_job(id, client.get());
        set_callbacks(job.get(), r.durable_only(), r);
        REQUIRE(r.wait_for([](Recorder& x) { return !x.errors.empty(); }, 20s));
        std::lock_guard<std::mutex> lock(r.mu);
        return r.errors[0];
    }

    // Waits until the agent's notification backoff has run `periods` times
    // from now (1 s, then 2 s, ...): a control job's error callback fails
    // `periods` times, and the agent calls it again after each backoff, as
    // it would any notification it thought undelivered.
    void wait_callback_backoffs(int periods) {
        Recorder control;
        control.fail_first = periods;
        Job job = job_for("/status/403/a.bin", "control.bin");
        set_callbacks(job.get(), control.durable_only(), control);
        resume(job.get());
        REQUIRE(control.wait_for([&](Recorder& x) { return x.error_count_locked() > periods; },
                                 40s));
    }
};

}  // namespace

// ---- arguments ---------------------------------------------------------------

TEST_CASE("dopt_job_set_callbacks rejects a NULL job and an unknown struct version") {
    dopt_callbacks cb = DOPT_CALLBACKS_INIT;
    CHECK(dopt_job_set_callbacks(nullptr, &cb, nullptr) == DOPT_E_INVALID_ARG);
    CHECK(std::string(dopt_last_error()).find("NULL") != std::string::npos);
    CHECK(dopt_job_set_callbacks(nullptr, nullptr, nullptr) == DOPT_E_INVALID_ARG);

    AgentFixture f;
    Recorder r;
    Job job = f.create_job();
    cb = r.all();
    cb.version = 0;
    CHECK(dopt_job_set_callbacks(job.get(), &cb, &r) == DOPT_E_INVALID_ARG);
    cb.version = DOPT_CALLBACKS_VERSION + 1;
    CHECK(dopt_job_set_callbacks(job.get(), &cb, &r) == DOPT_E_INVALID_ARG);
    CHECK(std::string(dopt_last_error()).find("version") != std::string::npos);
    // Unregistering a handle that never registered is harmless.
    CHECK(dopt_job_set_callbacks(job.get(), nullptr, nullptr) == DOPT_OK);
    cb.version = DOPT_CALLBACKS_VERSION;
    CHECK(dopt_job_set_callbacks(job.get(), &cb, &r) == DOPT_OK);
}

// ---- errors --------------------------------------------------------------------

TEST_CASE("A 403 calls error once with REMOTE_FILE 403 and the file in progress") {
    CallbackFixture f;
    Recorder r;
    Job job = f.create_job();
    const std::string dest0 = f.files + "/first.bin", dest1 = f.files + "/second.bin";
    const std::string url0 = f.origin->url("/a.bin"), url1 = f.origin->url("/status/403/b.bin");
    add_file(job.get(), url0, dest0);
    add_file(job.get(), url1, dest1);
    set_callbacks(job.get(), r.durable_only(), r);
    resume(job.get());

    REQUIRE(r.wait_for([](Recorder& x) { return !x.errors.empty(); }));
    f.wait_callback_backoffs(2);  // a second call would have come by now
    std::lock_guard<std::mutex> lock(r.mu);
    REQUIRE(r.errors.size() == 1);
    const auto& e = r.errors[0];
    CHECK(e.context == DOPT_CONTEXT_REMOTE_FILE);
    CHECK(e.code == 403);
    CHECK_FALSE(e.description.empty());
    REQUIRE(e.has_file);
    CHECK(e.local_name == dest1);
    CHECK(e.remote_name == url1);
    // File 0 finished before file 1 failed, and was reported.
    REQUIRE(r.files.size() == 1);
    CHECK(r.files[0].local_name == dest0);
    CHECK(r.files[0].remote_name == url0);
    CHECK(r.files[0].bytes_total == f.small.size());
    CHECK(r.files[0].bytes_transferred == f.small.size());
    CHECK(r.transferred == 0);
}

TEST_CASE("An error callback that fails is called again until it returns DOPT_OK") {
    CallbackFixture f;
    Recorder r;
    Job job = f.job_for("/status/403/a.bin", "a.bin");
    r.fail_first = 2;  // DOPT_E_INTERNAL, DOPT_E_INTERNAL, DOPT_OK
    set_callbacks(job.get(), r.durable_only(), r);
    resume(job.get());

    REQUIRE(r.wait_for([](Recorder& x) { return x.errors.size() >= 3; }, 40s));
    // Backoff after the second failure is 2 s; wait well past it.
    std::this_thread::sleep_for(6s);
    CHECK(r.error_count() == 3);
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_ERROR);
}

TEST_CASE("Transient 503s then 200 never call error and call transferred once") {
    CallbackFixture f;
    Recorder r;
    Job job = f.job_for("/fail/3/503/c.bin", "c.bin");
    set_callbacks(job.get(), r.durable_only(), r);
    resume(job.get());

    REQUIRE(r.wait_for([](Recorder& x) { return x.transferred >= 1; }, 40s));
    f.wait_callback_backoffs(1);  // a second transferred would have come by now
    CHECK(r.transferred_count() == 1);
    CHECK(r.error_count() == 0);
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_TRANSFERRED);
}

// ---- durability ------------------------------------------------------------------

// The job fails with a 403 and its error callback keeps failing; the agent
// is killed with SIGKILL before any call succeeds.
TEST_CASE("An unacknowledged error is delivered again after kill -9 of the agent (same client)") {
    CallbackFixture f;
    Recorder r;
    std::atomic<bool> agent_dead{false};
    Job job = f.job_for("/status/403/a.bin", "a.bin");
    r.error_rc = [&](Recorder&, int) { return agent_dead ? DOPT_OK : DOPT_E_INTERNAL; };
    set_callbacks(job.get(), r.durable_only(), r);
    resume(job.get());
    REQUIRE(r.wait_for([](Recorder& x) { return !x.errors.empty(); }));

    f.agent.kill9();
    agent_dead = true;
    int before = r.error_count();
    f.agent.start();
    // libdopt reconnects its callback connection by itself (every second)
    // and subscribes again; the agent's outbox still holds the error.
    REQUIRE(r.wait_for([&](Recorder& x) { return static_cast<int>(x.errors.size()) > before; }, 30s));
    std::lock_guard<std::mutex> lock(r.mu);
    CHECK(r.errors.back().code == 403);
    CHECK(r.errors.back().context == DOPT_CONTEXT_REMOTE_FILE);
    CHECK(r.last_error_rc == DOPT_OK);
}

TEST_CASE("An unacknowledged error is delivered again after kill -9 of the agent (new client)") {
    CallbackFixture f;
    std::string id;
    {
        Recorder r;
        Job job = f.job_for("/status/403/a.bin", "a.bin");
        id = dopt_job_id(job.get());
        r.fail_first = 1000;  // never acknowledged
        set_callbacks(job.get(), r.durable_only(), r);
        resume(job.get());
        REQUIRE(r.wait_for([](Recorder& x) { return !x.errors.empty(); }));
        f.agent.kill9();
        // Handles closed with the agent gone: neither may hang.
    }
    f.client.reset();
    f.agent.start();
    CHECK(f.error_on_registering(id).code == 403);
}

TEST_CASE("An application that exits before acknowledging gets the error when it registers again") {
    CallbackFixture f;
    Job job = f.job_for("/status/403/a.bin", "a.bin");
    const std::string id = dopt_job_id(job.get());
    resume(job.get());
    REQUIRE(AgentFixture::wait_for(job.get()) == DOPT_STATE_ERROR);

    int report[2];
    REQUIRE(::pipe(report) == 0);
    const std::string socket = f.agent.socket();
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // The "application": registers, gets the error, fails it, and exits
        // without ever returning DOPT_OK. No Catch2 in here.
        ::close(report[0]);
        dopt_client* c = nullptr;
        dopt_job* j = nullptr;
        if (dopt_client_open(&c, socket.c_str()) != DOPT_OK) ::_exit(10);
        if (dopt_job_open(&j, c, id.c_str()) != DOPT_OK) ::_exit(11);
        static int fd;
        fd = report[1];
        dopt_callbacks cb = DOPT_CALLBACKS_INIT;
        cb.error = [](dopt_job*, const dopt_error* e, void*) -> int {
            char code = dopt_error_code(e) == 403 ? 'E' : 'X';
            (void)!::write(fd, &code, 1);
            return DOPT_E_INTERNAL;
        };
        if (dopt_job_set_callbacks(j, &cb, nullptr) != DOPT_OK) ::_exit(12);
        std::this_thread::sleep_for(3s);  // the error comes at once; the ack goes
        ::_exit(0);
    }
    ::close(report[1]);
    char got = 0;
    pollfd p{report[0], POLLIN, 0};
    REQUIRE(::poll(&p, 1, 15000) == 1);
    CHECK(::read(report[0], &got, 1) == 1);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    ::close(report[0]);  // only now: a retry's write must not meet EPIPE
    INFO("child status " << status);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(got == 'E');

    const Recorder::SeenError error = f.error_on_registering(id);
    CHECK(error.code == 403);
    CHECK(error.context == DOPT_CONTEXT_REMOTE_FILE);
}

TEST_CASE("Resume after a fixed error completes and calls transferred") {
    CallbackFixture f;
    // The fault origin answers 403 to the first request of this path only.
    Recorder r;
    Job job = f.job_for("/fail/1/403/d.bin", "d.bin");
    set_callbacks(job.get(), r.durable_only(), r);
    resume(job.get());
    REQUIRE(r.wait_for([](Recorder& x) { return !x.errors.empty(); }));
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_ERROR);

    resume(job.get());
    REQUIRE(r.wait_for([](Recorder& x) { return x.transferred >= 1; }));
    CHECK(r.error_count() == 1);
    REQUIRE(dopt_job_complete(job.get()) == DOPT_OK);
    CHECK(read_file(f.files + "/d.bin") == f.small);
}

// ---- modification ----------------------------------------------------------------

TEST_CASE("modification fires on state changes and progress and is throttled") {
    AgentFixture f;
    HttpOrigin origin;
    // 4 MiB in 64 KiB pieces 40 ms apart: about 2.6 s and 64 writes.
    origin.add("/slow.bin", Route{200, random_bytes(4 << 20, 3), 64 << 10, 40});
    Recorder r;
    Job job = f.create_job();
    add_file(job.get(), origin.url("/slow.bin"), f.files + "/slow.bin");
    set_callbacks(job.get(), r.all(/*percent=*/50, /*seconds=*/60), r);
    resume(job.get());
    REQUIRE(r.wait_for([](Recorder& x) { return x.transferred >= 1; }));
    // The change to TRANSFERRED is the job's last modification.
    REQUIRE(r.wait_for([](Recorder& x) {
        return !x.modifications.empty() && x.modifications.back() == DOPT_STATE_TRANSFERRED;
    }));

    std::lock_guard<std::mutex> lock(r.mu);
    INFO("modification calls: " << r.modifications.size());
    CHECK(r.modifications.size() >= 2);
    CHECK(r.modifications.size() <= 12);  // state changes plus ~2 progress steps
    auto seen = [&](dopt_job_state s) {
        return std::find(r.modifications.begin(), r.modifications.end(), s) != r.modifications.end();
    };
    CHECK(seen(DOPT_STATE_TRANSFERRING));
    CHECK(seen(DOPT_STATE_TRANSFERRED));
}

// ---- unregistering and reentrancy ------------------------------------------------

namespace {

// A slow transfer with modification every percent: events keep coming while
// `stop` (unregister or close, from this thread) runs; afterwards none.
void check_nothing_after(const std::function<void(Job&)>& stop) {
    AgentFixture f;
    HttpOrigin origin;
    origin.add("/slow.bin", Route{200, random_bytes(4 << 20, 5), 16 << 10, 20});
    Recorder r;
    Job job = f.create_job();
    add_file(job.get(), origin.url("/slow.bin"), f.files + "/slow.bin");
    r.modification_pause = 30ms;  // widen the window of a callback in flight
    set_callbacks(job.get(), r.all(/*percent=*/1, /*seconds=*/1), r);
    resume(job.get());
    REQUIRE(r.wait_for([](Recorder& x) { return x.modifications.size() >= 5; }));
    // A second client watches the same job: the progress it keeps seeing
    // after the stop is what the first would have been called for.
    Client watcher_client = f.open_client();
    Recorder watcher;
    Job watched = f.open_job(dopt_job_id(job.get()), watcher_client.get());
    set_callbacks(watched.get(), watcher.all(/*percent=*/1, /*seconds=*/1), watcher);

    stop(job);
    CHECK(r.inside == 0);
    size_t after = r.modification_count();
    const size_t watched_at_stop = watcher.modification_count();
    REQUIRE(watcher.wait_for([&](Recorder& x) { return x.modifications.size() >= watched_at_stop + 5; }));
    CHECK(r.modification_count() == after);
    CHECK(r.inside == 0);
}

}  // namespace

TEST_CASE("No callback runs after dopt_job_set_callbacks NULL returns") {
    check_nothing_after([](Job& job) { REQUIRE(dopt_job_set_callbacks(job.get(), nullptr, nullptr) == DOPT_OK); });
}

TEST_CASE("No callback runs after dopt_job_close returns") {
    check_nothing_after([](Job& job) { job.reset(); });
}

TEST_CASE("A callback may call dopt functions on its own job") {
    CallbackFixture f;
    Recorder r;
    std::atomic<int> state_rc{1}, complete_rc{1}, unregister_rc{1};
    std::atomic<int> state{-1};
    Job job = f.job_for("/c.bin", "c.bin");
    r.on_transferred = [&](dopt_job* j) {
        dopt_job_state s = DOPT_STATE_QUEUED;
        state_rc = dopt_job_fetch_state(&s, j);
        state = s;
        complete_rc = dopt_job_complete(j);
        unregister_rc = dopt_job_set_callbacks(j, nullptr, nullptr);
        return DOPT_OK;
    };
    set_callbacks(job.get(), r.durable_only(), r);
    resume(job.get());
    REQUIRE(r.wait_for([](Recorder& x) { return x.transferred >= 1; }));
    CHECK(state_rc == DOPT_OK);
    CHECK(state == DOPT_STATE_TRANSFERRED);
    CHECK(complete_rc == DOPT_OK);
    CHECK(unregister_rc == DOPT_OK);
    CHECK(AgentFixture::state_of(job.get()) == DOPT_STATE_ACKNOWLEDGED);
    CHECK(read_file(f.files + "/c.bin") == f.small);
}

TEST_CASE("A callback may close its job and its client") {
    AgentFixture f;
    HttpOrigin origin;
    origin.add("/slow.bin", Route{200, random_bytes(2 << 20, 9), 16 << 10, 20});
    Client client = f.open_client();
    Job job = f.create_job(client.get());
    add_file(job.get(), origin.url("/slow.bin"), f.files + "/slow.bin");
    struct Ctx {
        dopt_client* client;
        std::atomic<bool> armed{false};  // the test thread no longer uses the handles
        std::atomic<int> calls{0};        // calls once armed
        std::atomic<bool> closed{false};
    } ctx{client.release()};
    dopt_callbacks cb = DOPT_CALLBACKS_INIT;
    cb.modification = [](dopt_job* j, const dopt_job_status*, void* ud) {
        auto* c = static_cast<Ctx*>(ud);
        if (!c->armed) return;
        if (c->calls++ != 0) return;  // a second call would be a bug
        dopt_job_close(j);
        dopt_client_close(c->client);  // from the dispatcher thread: must not join itself
        c->closed = true;
    };
    REQUIRE(dopt_job_set_callbacks(job.get(), &cb, &ctx) == DOPT_OK);
    // The fixture's client watches the same job: the progress it keeps
    // seeing after the close is what the closed client would have been called for.
    Recorder watcher;
    Job watched = f.open_job(dopt_job_id(job.get()));
    set_callbacks(watched.get(), watcher.all(/*percent=*/1, /*seconds=*/1), watcher);
    resume(job.get());
    job.release();  // the callback closes it
    ctx.armed = true;
    for (int i = 0; i < 200 && !ctx.closed; ++i) std::this_thread::sleep_for(50ms);
    REQUIRE(ctx.closed);
    const size_t watched_at_close = watcher.modification_count();
    REQUIRE(watcher.wait_for([&](Recorder& x) { return x.modifications.size() >= watched_at_close + 5; }));
    CHECK(ctx.calls == 1);
}
