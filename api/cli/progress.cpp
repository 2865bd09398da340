#include "api/cli/progress.h"

#include "api/cli/cli_text.h"

#include <cstdio>
#include <memory>

#include <sys/ioctl.h>
#include <unistd.h>

namespace dopt::cli {

volatile std::sig_atomic_t g_bar_open = 0;

namespace {

// "42% 12.0 MiB of 28.5 MiB" ("?" while the size is unknown).
std::string amount(const dopt_progress& p) {
    int pct = percent(p);
    return (pct < 0 ? std::string("?") : std::to_string(pct) + "%") + " " + human_bytes(p.bytes_transferred) +
           " of " + human_bytes(p.bytes_total);
}

// "3.1 MiB/s, eta 0:05"; "" while nothing moves. The ETA needs the size.
std::string speed(const dopt_progress& p, double rate) {
    if (rate < 1) return "";
    std::string out = human_bytes(static_cast<std::uint64_t>(rate)) + "/s";
    if (p.bytes_total != UINT64_MAX && p.bytes_total > p.bytes_transferred)
        out += ", eta " + human_duration(static_cast<std::uint64_t>(
                              static_cast<double>(p.bytes_total - p.bytes_transferred) / rate + 0.5));
    return out;
}

// The share of the bytes so far that came from LAN peers and from the origin.
std::string split_percent(const dopt_progress& p) {
    std::uint64_t all = p.bytes_from_peers + p.bytes_from_origin;
    if (all == 0) return "";
    int peers = static_cast<int>(p.bytes_from_peers * 100 / all);
    return "peers " + std::to_string(peers) + "% origin " + std::to_string(100 - peers) + "%";
}

// The terminal's width, or 0 when unknown.
std::size_t terminal_columns() {
    winsize ws{};
    return ::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
}

// Cuts `text` to `width` bytes without splitting a UTF-8 sequence: a line
// wider than the terminal would wrap and \r could not redraw it.
void fit(std::string& text, std::size_t width) {
    if (width == 0 || text.size() <= width) return;
    std::size_t n = width;
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
    text.resize(n);
}

}  // namespace

void ProgressMeter::show(dopt_job* job, bool final) {
    if (style_ == Style::Quiet || (final && style_ == Style::Bar && !drawn_)) return;
    dopt_job_status* raw = nullptr;
    if (dopt_job_fetch_status(&raw, job) != DOPT_OK) return;
    std::unique_ptr<dopt_job_status, void (*)(dopt_job_status*)> s(raw, dopt_job_status_free);
    dopt_progress p{};
    dopt_job_status_progress(&p, s.get());
    update_rate(p.bytes_transferred);
    std::string state = dopt_state_name(dopt_job_status_state(s.get()));
    std::string waiting = transient_summary(s.get());
    if (style_ == Style::Bar) return draw_bar(p, waiting.empty() ? state : waiting);

    const dopt_error* why = dopt_job_status_transient_error(s.get());
    std::string key = state + (why ? std::string(": ") + dopt_error_description(why) : "");
    auto now = Clock::now();
    if (!final && key == last_line_key_ && now - last_line_ < std::chrono::seconds(kLineSeconds)) return;
    last_line_key_ = key;
    last_line_ = now;
    write_line(p, waiting.empty() ? state : waiting);
}

void ProgressMeter::update_rate(std::uint64_t bytes) {
    auto now = Clock::now();
    double dt = std::chrono::duration<double>(now - last_sample_).count();
    if (dt > 0 && bytes >= last_bytes_) {
        double inst = static_cast<double>(bytes - last_bytes_) / dt;
        rate_ = rate_ == 0 ? inst : 0.7 * rate_ + 0.3 * inst;
    }
    last_sample_ = now;
    last_bytes_ = bytes;
}

// [#########                     ]  30%  6.0 MiB of 20.0 MiB  2.0 MiB/s, eta 0:07  peers 50% origin 50%
// with the state in place of the speed while the job does not transfer.
void ProgressMeter::draw_bar(const dopt_progress& p, const std::string& state) {
    int pct = percent(p);
    std::string bar(30, ' ');
    for (int i = 0; pct > 0 && i < pct * 30 / 100; ++i) bar[static_cast<std::size_t>(i)] = '#';
    std::string moving = state == "transferring" ? speed(p, rate_) : state;
    std::string line = "[" + bar + "] " + amount(p);
    for (const std::string& part : {moving, split_percent(p)})
        if (!part.empty()) line += "  " + part;
    std::size_t cols = terminal_columns();
    fit(line, cols > 1 ? cols - 1 : 0);
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    std::fflush(stderr);
    drawn_ = true;
    g_bar_open = 1;
}

// dopt: 30% 6.0 MiB of 20.0 MiB, 2.0 MiB/s, eta 0:07, from peers 3.0 MiB, from origin 3.0 MiB (transferring)
void ProgressMeter::write_line(const dopt_progress& p, const std::string& state) {
    std::string line = "dopt: " + amount(p);
    if (state == "transferring") {
        std::string s = speed(p, rate_);
        if (!s.empty()) line += ", " + s;
    }
    line += ", from peers " + human_bytes(p.bytes_from_peers) + ", from origin " +
            human_bytes(p.bytes_from_origin) + " (" + state + ")";
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
}

void ProgressMeter::end() {
    if (g_bar_open) std::fputc('\n', stderr);
    g_bar_open = 0;
}

}  // namespace dopt::cli
