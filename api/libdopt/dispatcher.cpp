// Callbacks (dopt_job_set_callbacks): per dopt_client, a second connection
// to the agent and one dispatcher thread that alone reads and writes it
// (docs/protocol.md, "Notifications").
//
// Threads and locks:
//  - The dispatcher thread owns `fd_`: it sends the queued requests
//    (subscribe / unsubscribe), reads replies and events, runs the callbacks
//    and sends `ack`s. Other threads only queue requests and wake it through
//    an eventfd.
//  - `mu_` guards the registrations, the request queue, the requests awaiting
//    a reply and `running_job_`. It is never held while a callback runs, and
//    the dispatcher never touches the client's main connection (or its
//    mutex), so a callback may call any dopt function, on its own job too.
//  - "No callback after unregister": the dispatcher looks a registration up
//    and marks its handle as running (`running_job_`) under `mu_`; removing a
//    registration from another thread erases it under `mu_` and then waits
//    until `running_job_` is no longer that handle. From the dispatcher
//    thread (inside a callback) nothing waits: the caller is the callback.
//  - Lifetime: the thread holds a shared_ptr to its Dispatcher, so
//    dopt_client_close from inside a callback can detach the thread and free
//    the client; the thread then ends after the callback returns.
//
// Registrations are per job id: registering a second handle of the same job
// on one client replaces the first (the agent subscribes a connection to a
// job, not a handle). Closing or unregistering a handle only removes the
// registration that handle made.
#include "api/libdopt/internal.h"

#include "protocol/frame.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <algorithm>
#include <deque>
#include <map>
#include <thread>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace dopt::client {

namespace {

namespace proto = dopt::protocol;
using Clock = std::chrono::steady_clock;

constexpr auto kReconnectEvery = std::chrono::seconds(1);
constexpr int kIoTimeoutSeconds = 5;  // a stalled agent counts as gone

// The notify bits of the callbacks that are set.
unsigned bits_of(const dopt_callbacks& cb) {
    unsigned bits = 0;
    if (cb.transferred) bits |= DOPT_NOTIFY_TRANSFERRED;
    if (cb.error) bits |= DOPT_NOTIFY_ERROR;
    if (cb.modification) bits |= DOPT_NOTIFY_MODIFICATION;
    if (cb.file_transferred) bits |= DOPT_NOTIFY_FILE_TRANSFERRED;
    return bits;
}

unsigned bit_of_event(const std::string& kind) {
    if (kind == "error") return DOPT_NOTIFY_ERROR;
    if (kind == "transferred") return DOPT_NOTIFY_TRANSFERRED;
    if (kind == "file_transferred") return DOPT_NOTIFY_FILE_TRANSFERRED;
    if (kind == "modification") return DOPT_NOTIFY_MODIFICATION;
    return 0;
}

}  // namespace

class Dispatcher : public std::enable_shared_from_this<Dispatcher> {
public:
    explicit Dispatcher(std::string path) : path_(std::move(path)) {}
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;
    ~Dispatcher() {
        if (fd_ >= 0) ::close(fd_);
        if (wake_fd_ >= 0) ::close(wake_fd_);
    }

    // Connects on the calling thread (so a missing agent is reported to the
    // caller at once) and starts the thread.
    int start() {
        wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake_fd_ < 0) return fail(DOPT_E_INTERNAL, "eventfd() failed for the callback dispatcher");
        int rc = connect_now();
        if (rc != DOPT_OK) return rc;
        auto self = shared_from_this();
        thread_ = std::thread([self] { self->run(); });
        thread_id_ = thread_.get_id();
        return DOPT_OK;
    }

    bool on_thread() const noexcept { return std::this_thread::get_id() == thread_id_.load(); }

    // Registers (or replaces) the job's callbacks and subscribes. From
    // another thread, waits for the agent's answer: its rc is returned and a
    // rejected job is not registered. From the dispatcher thread (inside a
    // callback), returns at once; a rejection then silently unregisters.
    int add(dopt_job* job, const dopt_callbacks& cb, void* userdata) {
        unsigned notify = cb.notify_flags ? cb.notify_flags : bits_of(cb);
        if (notify == 0) {  // nothing wanted: the same as unregistering
            remove(job);
            return DOPT_OK;
        }
        std::unique_lock<std::mutex> lock(mu_);
        if (stopping_) return fail(DOPT_E_INVALID_STATE, "the client is being closed");
        Registration& reg = regs_[job->id];
        reg = Registration{job, cb, userdata, notify, ++gen_};
        auto waiter = on_thread() ? nullptr : std::make_shared<Waiter>();
        queue_.push_back(Request{subscribe_request(reg), job->id, reg.gen, waiter});
        wake();
        if (!waiter) return DOPT_OK;
        cv_.wait(lock, [&] { return waiter->done; });
        if (waiter->rc == DOPT_OK) return DOPT_OK;
        if (waiter->rc == DOPT_E_DISCONNECTED) {
            // The agent went away before it answered. The registration stays;
            // the dispatcher subscribes again once it is back.
            auto it = regs_.find(job->id);
            if (it != regs_.end() && it->second.job == job) return DOPT_OK;
        }
        return fail(waiter->rc, waiter->message.empty() ? std::string(dopt_strerror(waiter->rc))
                                                        : waiter->message);
    }

    // Removes the registration this handle made (if any), and unless called
    // from the dispatcher thread, waits for a callback of it in flight.
    void remove(dopt_job* job) noexcept {
        std::unique_lock<std::mutex> lock(mu_);
        auto it = regs_.find(job->id);
        if (it != regs_.end() && it->second.job == job) {
            regs_.erase(it);
            try {
                queue_.push_back(Request{json{{"op", "unsubscribe"}, {"job", job->id}}, job->id, 0, nullptr});
                wake();
            } catch (...) {
                // Out of memory: the agent keeps sending events for the job;
                // they find no registration and are dropped (not acked).
            }
        }
        if (!on_thread()) cv_.wait(lock, [&] { return running_job_ != job; });
    }

    // Stops the thread: joins it, or detaches it when called from it (it
    // ends after the running callback returns).
    void stop() noexcept {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stopping_ = true;
            wake();
        }
        if (!thread_.joinable()) return;
        if (on_thread())
            thread_.detach();
        else
            thread_.join();
    }

private:
    struct Registration {
        dopt_job* job = nullptr;  // the handle that registered; callbacks get it
        dopt_callbacks cb{};
        void* userdata = nullptr;
        unsigned notify = 0;
        std::uint64_t gen = 0;  // tells a registration from its replacement
    };
    // A thread waiting in add() for the answer to its subscribe.
    struct Waiter {
        bool done = false;
        int rc = DOPT_OK;
        std::string message;
    };
    struct Request {
        json body;  // without seq
        std::string job_id;
        std::uint64_t gen = 0;
        std::shared_ptr<Waiter> waiter;  // may be null
    };
    struct Sent {
        std::int64_t seq = 0;
        std::string op;
        std::string job_id;
        std::uint64_t gen = 0;
        std::shared_ptr<Waiter> waiter;
    };

    static json subscribe_request(const Registration& reg) {
        auto at_least_1 = [](std::uint32_t v) { return v ? v : 1u; };
        return json{{"op", "subscribe"},
                    {"job", reg.job->id},
                    {"notify", reg.notify},
                    {"percent", at_least_1(reg.cb.modification_percent)},
                    {"seconds", at_least_1(reg.cb.modification_seconds)}};
    }

    // REQUIRES: mu_ held (or no other thread yet).
    void wake() noexcept {
        std::uint64_t one = 1;
        (void)!::write(wake_fd_, &one, sizeof one);
    }

    // REQUIRES: mu_ held.
    void release(const std::shared_ptr<Waiter>& w, int rc, std::string message) {
        if (!w) return;
        w->done = true;
        w->rc = rc;
        w->message = std::move(message);
        cv_.notify_all();
    }

    // Connects and says hello. Dispatcher thread only (or before it starts).
    int connect_now() {
        std::unique_ptr<dopt_client> c;
        int rc = open_connection(&c, path_);
        if (rc != DOPT_OK) return rc;
        fd_ = c->fd;
        c->fd = -1;
        timeval tv{kIoTimeoutSeconds, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        seq_ = 1;  // hello was seq 1
        return DOPT_OK;
    }

    // After a reconnect: subscribe every registered job again, so that what
    // the agent's outbox holds is delivered. REQUIRES: mu_ held.
    void resubscribe_all() {
        for (const auto& [id, reg] : regs_)
            queue_.push_back(Request{subscribe_request(reg), id, reg.gen, nullptr});
    }

    // Drops the connection; whoever waits for an answer on it is released.
    void disconnect() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& s : sent_) release(s.waiter, DOPT_E_DISCONNECTED, "the agent closed the connection");
        sent_.clear();
        for (auto& q : queue_) release(q.waiter, DOPT_E_DISCONNECTED, "the agent is not reachable");
        queue_.clear();
    }

    // Sends one request. false: the connection failed.
    bool send(Request req) {
        std::int64_t seq = ++seq_;
        req.body["seq"] = seq;
        std::string op = req.body.value("op", "");
        std::string text = req.body.dump();
        {
            std::lock_guard<std::mutex> lock(mu_);
            sent_.push_back(Sent{seq, op, req.job_id, req.gen, req.waiter});
        }
        return proto::write_frame(fd_, text) == proto::FrameResult::Ok;
    }

    // Sends everything queued. false: the connection failed.
    bool flush() {
        std::deque<Request> batch;
        {
            std::lock_guard<std::mutex> lock(mu_);
            batch.swap(queue_);
        }
        while (!batch.empty()) {
            Request r = std::move(batch.front());
            batch.pop_front();
            if (!send(std::move(r))) {
                std::lock_guard<std::mutex> lock(mu_);
                for (auto& q : batch) release(q.waiter, DOPT_E_DISCONNECTED, "sending to the agent failed");
                return false;
            }
        }
        return true;
    }

    // A reply to the oldest request awaiting one. false: protocol violation.
    bool on_reply(const json& m) {
        if (!m.contains("seq") || !m["seq"].is_number_integer() || !m.contains("rc") ||
            !m["rc"].is_number_integer())
            return false;
        std::int64_t seq = m["seq"].get<std::int64_t>();
        int rc = m["rc"].get<int>();
        std::string message = m.contains("message") && m["message"].is_string()
                                  ? m["message"].get<std::string>()
                                  : std::string();
        std::lock_guard<std::mutex> lock(mu_);
        if (sent_.empty() || sent_.front().seq != seq) return false;
        Sent s = std::move(sent_.front());
        sent_.pop_front();
        if (s.op == "subscribe" && rc != DOPT_OK) {
            // The agent refused the job (gone, another user's): forget it,
            // unless it was registered again meanwhile.
            auto it = regs_.find(s.job_id);
            if (it != regs_.end() && it->second.gen == s.gen) regs_.erase(it);
        }
        release(s.waiter, rc, std::move(message));
        return true;
    }

    // Runs the callback for one event and acks a durable one. false: the
    // connection failed.
    //
    // Acks. A durable event (error, transferred, file_transferred) is acked
    // with the callback's return value. When the job is registered but that
    // callback is not set (or its bit is not in notify_flags) the event is
    // acked with DOPT_OK: the application said it does not want it, and the
    // agent sends a job's notifications one at a time, so leaving it unacked
    // would hold back every later one (an `error` behind an unwanted
    // `file_transferred`). An event for a job with no registration here
    // (it was unregistered or its handle closed while the event was on its
    // way) is not acked: it stays in the agent's outbox and is delivered to
    // the next registration, as the delivery promise says. `modification`
    // is never acked.
    bool on_event(const json& m) {
        std::string kind = m["event"].is_string() ? m["event"].get<std::string>() : std::string();
        unsigned bit = bit_of_event(kind);
        if (bit == 0) return true;  // an event this libdopt does not know
        std::unique_ptr<dopt_job_status> status;
        std::int64_t notification = 0;
        std::int64_t file_index = -1;
        try {
            status = parse_job(m.at("job"));
            notification = m.value("notification", std::int64_t{0});
            if (m.contains("file_index") && m["file_index"].is_number_integer())
                file_index = m["file_index"].get<std::int64_t>();
        } catch (const std::exception&) {
            return true;  // malformed: not delivered, not acked
        }
        const bool durable = bit != DOPT_NOTIFY_MODIFICATION;

        Registration reg;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (stopping_) return true;
            auto it = regs_.find(status->id);
            if (it == regs_.end()) return true;  // not registered: not acked
            reg = it->second;
            running_job_ = reg.job;
        }
        int rc = DOPT_OK;
        if (reg.notify & bit) rc = invoke(reg, bit, *status, file_index);
        {
            std::lock_guard<std::mutex> lock(mu_);
            running_job_ = nullptr;
        }
        cv_.notify_all();
        if (!durable || notification <= 0) return true;
        return send(Request{json{{"op", "ack"}, {"notification", notification}, {"rc", rc}}, {}, 0, nullptr});
    }

    // Calls the callback for `bit` if it is set; DOPT_OK when it is not.
    // A C++ callback that throws counts as DOPT_E_INTERNAL (called again).
    static int invoke(const Registration& reg, unsigned bit, const dopt_job_status& status,
                      std::int64_t file_index) noexcept {
        try {
            switch (bit) {
                case DOPT_NOTIFY_ERROR: {
                    if (!reg.cb.error) return DOPT_OK;
                    dopt_error none;  // an error event without an error: agent bug
                    const dopt_error* e = status.error ? status.error.get() : &none;
                    return reg.cb.error(reg.job, e, reg.userdata);
                }
                case DOPT_NOTIFY_TRANSFERRED:
                    if (!reg.cb.transferred) return DOPT_OK;
                    return reg.cb.transferred(reg.job, reg.userdata);
                case DOPT_NOTIFY_FILE_TRANSFERRED: {
                    if (!reg.cb.file_transferred) return DOPT_OK;
                    dopt_file_info info{"", "", UINT64_MAX, 0};
                    if (file_index >= 0 && static_cast<std::size_t>(file_index) < status.files.size()) {
                        const auto& f = status.files[static_cast<std::size_t>(file_index)];
                        info = dopt_file_info{f.local_name.c_str(), f.remote_name.c_str(),
                                              f.bytes_total, f.bytes_transferred};
                    }
                    return reg.cb.file_transferred(reg.job, &info, reg.userdata);
                }
                case DOPT_NOTIFY_MODIFICATION:
                    if (reg.cb.modification) reg.cb.modification(reg.job, &status, reg.userdata);
                    return DOPT_OK;
                default:
                    return DOPT_OK;
            }
        } catch (...) {
            return DOPT_E_INTERNAL;
        }
    }

    // Reads one frame. false: the connection failed or broke the protocol.
    bool read_one() {
        std::string body;
        if (proto::read_frame(fd_, body) != proto::FrameResult::Ok) return false;
        json m = parse_tree(body);
        if (m.is_discarded() || !m.is_object()) return false;
        if (m.contains("event")) return on_event(m);
        return on_reply(m);
    }

    void run() noexcept {
        thread_id_ = std::this_thread::get_id();
        try {
            loop();
        } catch (...) {
            // Out of memory or the like: callbacks stop; waiters are released below.
        }
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& s : sent_) release(s.waiter, DOPT_E_DISCONNECTED, "the client is closed");
        for (auto& q : queue_) release(q.waiter, DOPT_E_DISCONNECTED, "the client is closed");
        sent_.clear();
        queue_.clear();
        stopping_ = true;
    }

    void loop() {
        Clock::time_point next_try = Clock::now() + kReconnectEvery;
        for (;;) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                if (stopping_) return;
            }
            if (fd_ < 0 && Clock::now() >= next_try) {
                if (connect_now() == DOPT_OK) {
                    std::lock_guard<std::mutex> lock(mu_);
                    resubscribe_all();
                } else {
                    next_try = Clock::now() + kReconnectEvery;
                }
            }
            if (fd_ < 0) {
                disconnect();  // releases requests queued meanwhile
            } else if (!flush()) {
                disconnect();
                next_try = Clock::now();
                continue;
            }
            pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {fd_, POLLIN, 0}};
            int timeout = -1;
            if (fd_ < 0) {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_try - Clock::now());
                timeout = static_cast<int>(std::max<std::int64_t>(0, left.count()));
            }
            int n = ::poll(fds, fd_ >= 0 ? 2 : 1, timeout);
            if (n < 0 && errno != EINTR) throw std::runtime_error("poll failed");
            if (n <= 0) continue;
            if (fds[0].revents & POLLIN) {
                std::uint64_t v;
                while (::read(wake_fd_, &v, sizeof v) > 0) {
                }
            }
            if (fd_ >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
                if (!read_one()) {
                    disconnect();
                    next_try = Clock::now();  // first retry at once, then every second
                }
            }
        }
    }

    const std::string path_;
    int fd_ = -1;       // dispatcher thread only
    int wake_fd_ = -1;  // written by anyone, read by the dispatcher thread
    std::int64_t seq_ = 0;  // dispatcher thread only
    std::thread thread_;
    std::atomic<std::thread::id> thread_id_{};

    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;                        // GUARDED_BY(mu_)
    std::uint64_t gen_ = 0;                        // GUARDED_BY(mu_)
    std::map<std::string, Registration> regs_;     // GUARDED_BY(mu_); by job id
    std::deque<Request> queue_;                    // GUARDED_BY(mu_); to send
    std::deque<Sent> sent_;                        // GUARDED_BY(mu_); awaiting replies, in order
    const dopt_job* running_job_ = nullptr;        // GUARDED_BY(mu_); whose callback runs
};

int set_callbacks(dopt_job* job, const dopt_callbacks* callbacks, void* userdata) {
    if (!callbacks) {
        forget_job(job);
        return DOPT_OK;
    }
    dopt_client* client = job->client;
    std::shared_ptr<Dispatcher> d;
    {
        std::lock_guard<std::mutex> lock(client->dispatcher_mu);
        if (!client->dispatcher) {
            auto fresh = std::make_shared<Dispatcher>(client->path);
            int rc = fresh->start();
            if (rc != DOPT_OK) return rc;
            client->dispatcher = std::move(fresh);
        }
        d = client->dispatcher;
    }
    return d->add(job, *callbacks, userdata);
}

void forget_job(dopt_job* job) noexcept {
    std::shared_ptr<Dispatcher> d;
    {
        std::lock_guard<std::mutex> lock(job->client->dispatcher_mu);
        d = job->client->dispatcher;
    }
    if (d) d->remove(job);
}

void stop_dispatcher(dopt_client* client) noexcept {
    std::shared_ptr<Dispatcher> d;
    {
        std::lock_guard<std::mutex> lock(client->dispatcher_mu);
        d.swap(client->dispatcher);
    }
    if (d) d->stop();
}

}  // namespace dopt::client
