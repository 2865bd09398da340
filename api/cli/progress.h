// The progress `dopt get` shows on stderr while its job runs.
#pragma once

#include "dopt/dopt.h"

#include <chrono>
#include <csignal>
#include <cstdint>
#include <string>

namespace dopt::cli {

// 1 while the bar's line is open on stderr: whoever writes a message then
// (the SIGINT handler too) starts it on a new line.
extern volatile std::sig_atomic_t g_bar_open;

class ProgressMeter {
public:
    // Bar: one line redrawn in place (\r) for a terminal, with the percent,
    // speed, ETA and the peer/origin split. Lines: plain lines for logs (no
    // \r, no escape codes): one every kLineSeconds, one when the state or
    // the reason of a wait changes, one at the end. Quiet: nothing.
    enum class Style { Bar, Lines, Quiet };
    static constexpr int kLineSeconds = 5;

    explicit ProgressMeter(Style style) : style_(style) {}

    // How long to wait for the job between two show() calls, in ms.
    int poll_ms() const { return style_ == Style::Bar ? 200 : 1000; }

    // Reads the job's status and shows it when due. `final`: the job has
    // ended; Lines always writes its last line, Bar redraws if it drew.
    void show(dopt_job* job, bool final = false);

    // Closes the bar's line (a newline) if it is open.
    void end();

private:
    using Clock = std::chrono::steady_clock;
    void update_rate(std::uint64_t bytes);
    void draw_bar(const dopt_progress& p, const std::string& state);
    void write_line(const dopt_progress& p, const std::string& state);

    Style style_;
    Clock::time_point last_sample_ = Clock::now();
    std::uint64_t last_bytes_ = 0;
    double rate_ = 0;  // bytes/s, smoothed
    bool drawn_ = false;
    Clock::time_point last_line_{};
    std::string last_line_key_;  // state and why it waits, at the last line
};

}  // namespace dopt::cli
