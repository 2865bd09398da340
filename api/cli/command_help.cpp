#include "api/cli/command_help.h"

#include <cstring>

namespace dopt::cli {

namespace {

struct CommandHelp {
    const char* names;  // the command, or several separated by '|'
    const char* text;
};

#define DOPT_JOB_OPTIONS                                                                  \
    "  --sha256 HEX                   expected SHA-256; the k-th applies to the k-th file\n" \
    "  --size BYTES                   expected size; the k-th applies to the k-th file\n"   \
    "  -H, --header \"Name: value\"     HTTP header sent to the origin (repeatable)\n"     \
    "  --name NAME                    the job's display name\n"                            \
    "  --metainfo URL|FILE            the content's metainfo (.torrent); default: the\n"   \
    "                                 origin's beside the content, if any\n"

#define DOPT_EXITS_JOB_ID                                                 \
    "exit codes: 0 done; 2 bad usage, or no such job (or another user's); 3 the\n" \
    "agent could not be reached.\n"

const CommandHelp kCommands[] = {
    {"get",
     "usage: dopt get URL (-o PATH | -O) [OPTIONS]\n"
     "\n"
     "Downloads one file in the foreground through the agent and waits until it\n"
     "is in place. On a terminal a bar shows percent, speed, ETA and the share\n"
     "from LAN peers and from the origin; otherwise a plain line every 5 s, at\n"
     "each change of state and at the end. While the job waits to retry, the\n"
     "progress says why and when it tries again. Ctrl-C detaches: the job goes on.\n"
     "\n"
     "options:\n"
     "  -o, --output PATH              destination (relative to the working directory)\n"
     "  -O, --remote-name              save in the working directory under the URL's\n"
     "                                 last path segment, percent-decoded\n"
     "  -q, --quiet                    no progress and no 'saved' line; errors still\n"
     "                                 go to stderr, exit codes are the same\n"
     "  --priority P                   foreground (default), high, normal, low\n"
     "  --no-progress-timeout SECONDS  give up after this long without progress\n"
     "                                 (default 300; 0: the agent's [jobs] default)\n"
     DOPT_JOB_OPTIONS
     "\n"
     "exit codes: 0 saved; 1 the job failed or gave up (its error printed; the job\n"
     "stays in state error); 2 bad usage or input; 3 the agent could not be\n"
     "reached; 130 Ctrl-C: detached, the job goes on.\n"},
    {"add",
     "usage: dopt add URL (-o PATH | -O) [URL -o PATH ...] [OPTIONS]\n"
     "\n"
     "Creates a job of one or more files, starts it in the background and prints\n"
     "its id. The k-th -o is the destination of the k-th URL.\n"
     "\n"
     "options:\n"
     "  -o, --output PATH              destination (relative to the working directory)\n"
     "  -O, --remote-name              every file in the working directory under its\n"
     "                                 URL's last path segment (instead of -o)\n"
     "  --priority P                   foreground, high, normal (default), low\n"
     "  --no-progress-timeout SECONDS  fail after this long without progress\n"
     "                                 (default: the agent's [jobs] no_progress_timeout)\n"
     DOPT_JOB_OPTIONS
     "  --auto-complete                deliver the files as soon as they are transferred\n"
     "\n"
     "exit codes: 0 the job runs; 2 bad usage or input; 3 the agent could not be\n"
     "reached.\n"},
    {"set",
     "usage: dopt set ID [--priority P] [--name NAME] [--no-progress-timeout SECONDS]\n"
     "\n"
     "Changes a job after it was made, also while it runs: the agent applies a\n"
     "new priority to its scheduling at once, and a new no-progress timeout to\n"
     "a job waiting to retry. At least one option.\n"
     "\n"
     "options:\n"
     "  --priority P                   foreground, high, normal, low\n"
     "  --name NAME                    the display name (\"\" clears it)\n"
     "  --no-progress-timeout SECONDS  0: the agent's [jobs] no_progress_timeout\n"
     "\n"
     "exit codes: 0 changed; 2 bad usage, no such job (or another user's), or a\n"
     "job already ended; 3 the agent could not be reached.\n"},
    {"list",
     "usage: dopt list [--json]\n"
     "\n"
     "The caller's jobs (root: everyone's), oldest first: id, state, percent, name.\n"
     "--json prints an array of job objects (docs/protocol.md).\n"
     "\n"
     "exit codes: 0 listed; 2 bad usage; 3 the agent could not be reached.\n"},
    {"status",
     "usage: dopt status ID [--json]\n"
     "\n"
     "One job: state, progress, bytes from peers and origin, times, files, why it\n"
     "waits and its error. --json prints the job object (docs/protocol.md).\n"
     "\n" DOPT_EXITS_JOB_ID},
    {"wait",
     "usage: dopt wait ID\n"
     "\n"
     "Waits until the job is transferred or acknowledged (exit 0) or ends in\n"
     "error or cancelled (exit 1, the error printed).\n"
     "\n"
     "exit codes: 0 transferred; 1 failed or cancelled; 2 bad usage, or no such job;\n"
     "3 the agent could not be reached.\n"},
    {"suspend|resume|cancel|complete",
     "usage: dopt suspend|resume|cancel|complete ID\n"
     "\n"
     "  suspend   stop the job's transfers; it keeps what it has\n"
     "  resume    queue it again (also retries a job in error)\n"
     "  cancel    end it and remove its partial files\n"
     "  complete  deliver a transferred job's files to their final names\n"
     "\n"
     "exit codes: 0 done; 2 bad usage, no such job (or another user's), or a state\n"
     "that does not allow it; 3 the agent could not be reached.\n"},
    {"stats",
     "usage: dopt stats [--json | --prometheus]\n"
     "\n"
     "Totals over the caller's jobs: jobs by state, bytes from the origin and from\n"
     "LAN peers, peer efficiency; the agent's bytes given to peers and connected\n"
     "peers.\n"
     "  --json        the same as a JSON object\n"
     "  --prometheus  the agent's metrics in Prometheus text format (docs/metrics.md)\n"
     "\n"
     "exit codes: 0; 2 bad usage; 3 the agent could not be reached.\n"},
    {"cache",
     "usage: dopt cache list [--json] | dopt cache clear\n"
     "\n"
     "  list   the caller's content in the agent's peer cache\n"
     "  clear  remove it (content a running job needs stays)\n"
     "\n"
     "exit codes: 0; 2 bad usage; 3 the agent could not be reached.\n"},
    {"publish",
     "usage: dopt publish FILE [--web-seed URL] [--v1] [-o OUT]\n"
     "\n"
     "Writes hybrid (v1+v2) metainfo for FILE, for an origin to serve beside it,\n"
     "and prints its info-hash and pieces. Needs no agent.\n"
     "\n"
     "options:\n"
     "  -o, --output OUT   where to write it (default FILE.torrent)\n"
     "  --web-seed URL     the file's URL, written as the metainfo's url-list\n"
     "  --v1               v1-only metainfo, for stock clients that get hybrid\n"
     "                     metainfo wrong (aria2 before 1.37)\n"
     "\n"
     "exit codes: 0 written; 1 writing failed; 2 bad usage or input.\n"},
    {"version",
     "usage: dopt version | dopt --version\n"
     "\n"
     "Prints the versions of dopt and libdopt, and of the agent when one answers\n"
     "(--socket, $DOPT_SOCKET, else the per-user then the system agent).\n"
     "\n"
     "exit codes: 0, whether an agent answers or not; 2 bad usage.\n"},
    {"help",
     "usage: dopt help [COMMAND] | dopt COMMAND --help\n"
     "\n"
     "Lists the commands, or prints one command's usage, options and exit codes.\n"},
};

#undef DOPT_JOB_OPTIONS
#undef DOPT_EXITS_JOB_ID

bool names_include(const char* names, const std::string& command) {
    for (const char* p = names; *p;) {
        const char* bar = std::strchr(p, '|');
        std::size_t n = bar ? static_cast<std::size_t>(bar - p) : std::strlen(p);
        if (command.size() == n && command.compare(0, n, p, n) == 0) return true;
        p += n + (bar ? 1 : 0);
    }
    return false;
}

}  // namespace

const char* command_help(const std::string& command) {
    for (const auto& c : kCommands)
        if (names_include(c.names, command)) return c.text;
    return nullptr;
}

}  // namespace dopt::cli
