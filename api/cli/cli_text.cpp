#include "api/cli/cli_text.h"

#include <cstdio>
#include <ctime>

namespace dopt::cli {

std::string human_bytes(std::uint64_t n) {
    if (n == UINT64_MAX) return "?";
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

int percent(const dopt_progress& p) {
    if (p.bytes_total == UINT64_MAX) return -1;
    if (p.bytes_total == 0) return p.files_total > 0 && p.files_transferred == p.files_total ? 100 : 0;
    return static_cast<int>(p.bytes_transferred >= p.bytes_total ? 100 : p.bytes_transferred * 100 / p.bytes_total);
}

std::string human_duration(std::uint64_t seconds) {
    char buf[48];
    std::uint64_t h = seconds / 3600, m = seconds / 60 % 60, s = seconds % 60;
    if (seconds < 60) std::snprintf(buf, sizeof buf, "%llu s", static_cast<unsigned long long>(s));
    else if (h == 0) std::snprintf(buf, sizeof buf, "%llu:%02llu", static_cast<unsigned long long>(m),
                                   static_cast<unsigned long long>(s));
    else std::snprintf(buf, sizeof buf, "%llu:%02llu:%02llu", static_cast<unsigned long long>(h),
                       static_cast<unsigned long long>(m), static_cast<unsigned long long>(s));
    return buf;
}

std::string transient_summary(const dopt_job_status* s) {
    const dopt_error* e = dopt_job_status_transient_error(s);
    if (!e) return "";
    long long wait = static_cast<long long>(dopt_error_next_retry(e)) - std::time(nullptr);
    return std::string("transient_error: ") + dopt_error_description(e) + "; next try " +
           (wait > 0 ? "in " + std::to_string(wait) + " s" : "now");
}

}  // namespace dopt::cli
