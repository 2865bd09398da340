#include "apt/method_config.h"

#include <cstdlib>
#include <strings.h>

namespace dopt::apt {

namespace {

bool same(const std::string& a, const char* b) { return strcasecmp(a.c_str(), b) == 0; }

// apt's StringToBool.
void read_bool(const std::string& value, bool& out) {
    for (const char* yes : {"yes", "true", "with", "on", "enable", "1"})
        if (same(value, yes)) out = true;
    for (const char* no : {"no", "false", "without", "off", "disable", "0"})
        if (same(value, no)) out = false;
}

void read_priority(const std::string& value, dopt_priority& out) {
    if (same(value, "foreground")) out = DOPT_PRIORITY_FOREGROUND;
    if (same(value, "high")) out = DOPT_PRIORITY_HIGH;
    if (same(value, "normal")) out = DOPT_PRIORITY_NORMAL;
    if (same(value, "low")) out = DOPT_PRIORITY_LOW;
}

void read_seconds(const std::string& value, unsigned& out) {
    if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) return;
    unsigned long s = std::strtoul(value.c_str(), nullptr, 10);
    if (s >= 1 && s <= 366UL * 86400) out = static_cast<unsigned>(s);
}

}  // namespace

void read_configuration(const MethodMessage& message, MethodConfig& config) {
    for (const auto& [name, item] : message.fields) {
        if (!same(name, "Config-Item")) continue;
        std::size_t eq = item.find('=');
        if (eq == std::string::npos) continue;
        std::string key = dequote(item.substr(0, eq));
        std::string value = dequote(item.substr(eq + 1));
        if (same(key, "Acquire::dopt::Socket"))
            config.socket_path = value;
        else if (same(key, "Acquire::dopt::Timeout"))
            read_seconds(value, config.no_progress_timeout);
        else if (same(key, "Acquire::dopt::Fallback"))
            read_bool(value, config.fall_back);
        else if (same(key, "Acquire::dopt::Priority"))
            read_priority(value, config.priority);
        else if (same(key, "APT::Sandbox::User"))
            config.sandbox_user = value;
    }
}

}  // namespace dopt::apt
