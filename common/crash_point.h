// Named crash points for the crash-loop test (tests/reliability/
// test_crash_loop.py): a random SIGKILL rarely lands in a 2 ms window, so a
// test build marks the windows that matter and dies in them on request.
//
// Built with -DDOPT_CRASH_POINTS=ON, a process started with
//     DOPT_CRASH_AT=<name>[:<n>]
// kills itself with SIGKILL (raise(SIGKILL): no cleanup, no destructors, no
// flush) the n-th time (default: the first) the point `name` is reached, in
// whichever thread reaches it. At start it writes one line on stderr (the
// log) saying which point is armed; an unknown name or a bad n is refused
// there (exit 2). Every point is listed in kCrashPointNames
// (crash_point.cpp) and in agent/README.md "Crash points".
//
// Built without it (the default), DOPT_CRASH_POINT(name) compiles to
// nothing, crash_point.cpp to nothing, and DOPT_CRASH_AT is ignored.
//
// The points are called from agent/ and storage/ alike: crash_point.cpp is
// in dopt_common, below both, and uses nothing but libc.
#pragma once

#if defined(DOPT_CRASH_POINTS) && DOPT_CRASH_POINTS

namespace dopt::crash_point {

// Counts a visit of `name` (a string literal listed in kCrashPointNames);
// dies with SIGKILL when it is the armed point's n-th visit. Thread-safe;
// costs one relaxed atomic load when nothing is armed.
void reached(const char* name);

}  // namespace dopt::crash_point

#define DOPT_CRASH_POINT(name) ::dopt::crash_point::reached(name)

#else

#define DOPT_CRASH_POINT(name) ((void)0)

#endif
