/*
 * bench_load_client: one application of the load benchmark (bench/load).
 *
 *   bench_load_client --socket PATH --out DIR --origin URL [options]
 *
 * Through libdopt, on one dopt_client:
 *  1. creates --jobs jobs; job i gets one file, ORIGIN/fast/f<i % files>.bin
 *     (or, for every --slow-every-th job, ORIGIN/slow/s<...>.bin, a location
 *     the origin sends at a limited rate, so transfers are still running while
 *     control requests are timed), destination DIR/job-<i>; registers the
 *     callbacks transferred, error, file_transferred and modification for
 *     it; then resumes every job;
 *  2. until every job is TRANSFERRED (its `transferred` callback arrived) or
 *     in ERROR (its `error` callback arrived), times control requests on the
 *     main connection, one every --interval-ms: dopt_job_fetch_state and
 *     dopt_job_fetch_status of a random job, dopt_client_list_jobs (every
 *     --list-every-th request), dopt_job_suspend + dopt_job_resume of a
 *     random unfinished job (every --suspend-every-th request);
 *  3. completes each transferred job (every --cancel-every-th one is
 *     cancelled instead), checks that a completed job's file is at its path
 *     with --fast-size / --slow-size bytes, and that each job's final state is
 *     ACKNOWLEDGED or CANCELLED.
 *
 * Prints one JSON object on stdout: jobs created, transferred, completed,
 * cancelled, errors, callbacks received, unexpected results, and latencies
 * (count, p50, p99, max in ms) per request kind and for all control requests
 * together ("control": get_state, status, list, suspend, resume, complete,
 * cancel). --latency-file PATH also writes every control latency (us), one a
 * line, so bench/load can take percentiles across clients.
 *
 * Exit status: 0 when every job was created, transferred, completed or
 * cancelled as asked, every job got its `transferred` callback and no request
 * gave an unexpected result; 1 otherwise (the JSON says what); 2 for usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <dopt/dopt.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- options ------------------------------------------------------------ */

struct options {
    const char *socket_path;
    const char *out_dir;
    const char *origin; /* http://127.0.0.1:PORT, no trailing slash */
    const char *tag;
    const char *latency_file;
    long jobs;
    long files;        /* distinct fast files on the origin (f0..f<files-1>) */
    long slow_files;   /* distinct slow files (s0..) */
    long slow_every;   /* 0: no slow jobs */
    long cancel_every; /* 0: complete every job */
    long list_every;   /* 0: never list */
    long suspend_every;
    long interval_ms;
    long timeout_s;
    long long fast_size; /* -1: do not check */
    long long slow_size;
};

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s --socket PATH --out DIR --origin URL [--jobs N] [--files N]\n"
            "       [--slow-files N] [--slow-every N] [--cancel-every N] [--list-every N]\n"
            "       [--suspend-every N] [--interval-ms MS] [--timeout S] [--fast-size B]\n"
            "       [--slow-size B] [--tag TEXT] [--latency-file PATH]\n",
            argv0);
}

static int parse_options(struct options *o, int argc, char **argv)
{
    *o = (struct options){.tag = "client", .jobs = 200, .files = 100, .slow_files = 10,
                          .slow_every = 20, .cancel_every = 10, .list_every = 100,
                          .suspend_every = 5, .interval_ms = 20, .timeout_s = 900,
                          .fast_size = -1, .slow_size = -1};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) {
            usage(argv[0]);
            return -1;
        }
        const char *v = argv[++i];
        char *end = NULL;
        long long n = strtoll(v, &end, 10);
        int numeric = end && *end == '\0' && end != v && n >= 0;
        if (!strcmp(k, "--socket")) o->socket_path = v;
        else if (!strcmp(k, "--out")) o->out_dir = v;
        else if (!strcmp(k, "--origin")) o->origin = v;
        else if (!strcmp(k, "--tag")) o->tag = v;
        else if (!strcmp(k, "--latency-file")) o->latency_file = v;
        else if (!numeric) {
            fprintf(stderr, "%s: %s needs a number >= 0, not %s\n", argv[0], k, v);
            return -1;
        } else if (!strcmp(k, "--jobs")) o->jobs = (long)n;
        else if (!strcmp(k, "--files")) o->files = (long)n;
        else if (!strcmp(k, "--slow-files")) o->slow_files = (long)n;
        else if (!strcmp(k, "--slow-every")) o->slow_every = (long)n;
        else if (!strcmp(k, "--cancel-every")) o->cancel_every = (long)n;
        else if (!strcmp(k, "--list-every")) o->list_every = (long)n;
        else if (!strcmp(k, "--suspend-every")) o->suspend_every = (long)n;
        else if (!strcmp(k, "--interval-ms")) o->interval_ms = (long)n;
        else if (!strcmp(k, "--timeout")) o->timeout_s = (long)n;
        else if (!strcmp(k, "--fast-size")) o->fast_size = n;
        else if (!strcmp(k, "--slow-size")) o->slow_size = n;
        else {
            fprintf(stderr, "%s: unknown option %s\n", argv[0], k);
            return -1;
        }
    }
    if (!o->socket_path || !o->out_dir || !o->origin || o->jobs <= 0 || o->files <= 0 ||
        o->slow_files <= 0) {
        usage(argv[0]);
        return -1;
    }
    return 0;
}

/* ---- time and latency samples ------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A growing array of latencies in microseconds. */
struct samples {
    double *v;
    size_t n, cap;
};

static void add_sample(struct samples *s, double us)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            fprintf(stderr, "bench_load_client: out of memory\n");
            exit(1);
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = us;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values; 0 when empty. */
static double percentile(const struct samples *s, double p)
{
    if (s->n == 0)
        return 0.0;
    size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return s->v[rank - 1];
}

static void print_stats(const char *name, struct samples *s, int last)
{
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    printf("\"%s\":{\"count\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}%s", name, s->n,
           percentile(s, 50) / 1e3, percentile(s, 99) / 1e3,
           s->n ? s->v[s->n - 1] / 1e3 : 0.0, last ? "" : ",");
}

/* ---- jobs and callbacks --------------------------------------------------- */

struct job_slot {
    long index;
    dopt_job *job;
    int slow;
    /* Written by the dispatcher thread, read by main: under `lock`. */
    int transferred; /* `transferred` callbacks received for this job */
    int errored;     /* `error` callbacks received */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t settled_cond = PTHREAD_COND_INITIALIZER;
static long settled;               /* jobs with a transferred or error callback */
static long callbacks_transferred; /* every call, repeats included */
static long callbacks_error;
static long callbacks_modification;
static long callbacks_file_transferred;

static int on_transferred(dopt_job *job, void *userdata)
{
    (void)job;
    struct job_slot *slot = userdata;
    pthread_mutex_lock(&lock);
    callbacks_transferred++;
    if (slot->transferred++ == 0 && slot->errored == 0) {
        settled++;
        pthread_cond_broadcast(&settled_cond);
    }
    pthread_mutex_unlock(&lock);
    return DOPT_OK;
}

static int on_error(dopt_job *job, const dopt_error *error, void *userdata)
{
    (void)job;
    struct job_slot *slot = userdata;
    fprintf(stderr, "bench_load_client: job %ld failed: %s\n", slot->index,
            dopt_error_description(error));
    pthread_mutex_lock(&lock);
    callbacks_error++;
    if (slot->errored++ == 0 && slot->transferred == 0) {
        settled++;
        pthread_cond_broadcast(&settled_cond);
    }
    pthread_mutex_unlock(&lock);
    return DOPT_OK;
}

static int on_file_transferred(dopt_job *job, const dopt_file_info *file, void *userdata)
{
    (void)job;
    (void)file;
    (void)userdata;
    pthread_mutex_lock(&lock);
    callbacks_file_transferred++;
    pthread_mutex_unlock(&lock);
    return DOPT_OK;
}

static void on_modification(dopt_job *job, const dopt_job_status *status, void *userdata)
{
    (void)job;
    (void)status;
    (void)userdata;
    pthread_mutex_lock(&lock);
    callbacks_modification++;
    pthread_mutex_unlock(&lock);
}

/* ---- the run -------------------------------------------------------------- */

enum kind { K_GET_STATE, K_STATUS, K_LIST, K_SUSPEND, K_RESUME, K_COMPLETE, K_CANCEL, K_COUNT };
static const char *const kind_names[K_COUNT] = {"get_state", "status", "list", "suspend",
                                                "resume", "complete", "cancel"};

static struct samples lat[K_COUNT];
static struct samples lat_control; /* all of the above */
static struct samples lat_create;  /* create + set_callbacks + add_file + resume, per job */
static long unexpected;            /* results a request should not have given */

static void record(enum kind k, double t0)
{
    double us = (now_s() - t0) * 1e6;
    add_sample(&lat[k], us);
    add_sample(&lat_control, us);
}

static void unexpected_rc(const char *what, long index, int rc)
{
    unexpected++;
    fprintf(stderr, "bench_load_client: %s of job %ld: %s (%d): %s\n", what, index,
            dopt_strerror(rc), rc, dopt_last_error());
}

/* xorshift: which job a control request goes to. */
static uint32_t rng_state = 2463534242u;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

int main(int argc, char **argv)
{
    struct options o;
    if (parse_options(&o, argc, argv) != 0)
        return 2;
    for (const char *p = o.tag; *p; p++)
        rng_state = rng_state * 31u + (unsigned char)*p;

    double t_start = now_s();
    dopt_client *client = NULL;
    int rc = dopt_client_open(&client, o.socket_path);
    if (rc != DOPT_OK) {
        fprintf(stderr, "bench_load_client: dopt_client_open(%s): %s: %s\n", o.socket_path,
                dopt_strerror(rc), dopt_last_error());
        return 1;
    }
    struct job_slot *slots = calloc((size_t)o.jobs, sizeof *slots);
    if (!slots)
        return 1;

    dopt_callbacks cb = DOPT_CALLBACKS_INIT;
    cb.transferred = on_transferred;
    cb.error = on_error;
    cb.modification = on_modification;
    cb.file_transferred = on_file_transferred;

    /* 1. create, register, add the file; then resume all. */
    long created = 0;
    char url[2048], path[4096];
    for (long i = 0; i < o.jobs; i++) {
        struct job_slot *s = &slots[i];
        s->index = i;
        s->slow = o.slow_every > 0 && i % o.slow_every == o.slow_every - 1;
        double t0 = now_s();
        char name[128];
        snprintf(name, sizeof name, "%s job %ld", o.tag, i);
        rc = dopt_job_create(&s->job, client, name);
        if (rc != DOPT_OK) {
            unexpected_rc("dopt_job_create", i, rc);
            break;
        }
        created++;
        rc = dopt_job_set_callbacks(s->job, &cb, s);
        if (rc != DOPT_OK)
            unexpected_rc("dopt_job_set_callbacks", i, rc);
        if (s->slow)
            snprintf(url, sizeof url, "%s/slow/s%ld.bin", o.origin, (i / o.slow_every) % o.slow_files);
        else
            snprintf(url, sizeof url, "%s/fast/f%ld.bin", o.origin, i % o.files);
        snprintf(path, sizeof path, "%s/job-%ld", o.out_dir, i);
        rc = dopt_job_add_file(s->job, url, path);
        if (rc != DOPT_OK)
            unexpected_rc("dopt_job_add_file", i, rc);
        add_sample(&lat_create, (now_s() - t0) * 1e6);
    }
    double t_created = now_s();
    for (long i = 0; i < created; i++) {
        rc = dopt_job_resume(slots[i].job);
        if (rc != DOPT_OK)
            unexpected_rc("dopt_job_resume", i, rc);
    }
    double t_resumed = now_s();

    /* 2. control requests until every job is settled (or the timeout). */
    double deadline = now_s() + (double)o.timeout_s;
    long requests = 0;
    int timed_out = 0;
    for (;;) {
        pthread_mutex_lock(&lock);
        long done = settled;
        pthread_mutex_unlock(&lock);
        if (done >= created)
            break;
        if (now_s() > deadline) {
            timed_out = 1;
            break;
        }
        requests++;
        struct job_slot *s = &slots[rnd() % (uint32_t)created];
        double t0 = now_s();
        if (o.list_every > 0 && requests % o.list_every == 0) {
            dopt_job_status **list = NULL;
            size_t count = 0;
            rc = dopt_client_list_jobs(&list, &count, client);
            record(K_LIST, t0);
            dopt_job_status_list_free(list, count);
            if (rc != DOPT_OK)
                unexpected_rc("dopt_client_list_jobs", -1, rc);
        } else if (o.suspend_every > 0 && requests % o.suspend_every == 0) {
            pthread_mutex_lock(&lock);
            int finished = s->transferred || s->errored;
            pthread_mutex_unlock(&lock);
            if (!finished) {
                rc = dopt_job_suspend(s->job);
                record(K_SUSPEND, t0);
                /* INVALID_STATE: the job became TRANSFERRED meanwhile. */
                if (rc == DOPT_OK) {
                    t0 = now_s();
                    rc = dopt_job_resume(s->job);
                    record(K_RESUME, t0);
                    if (rc != DOPT_OK)
                        unexpected_rc("dopt_job_resume after suspend", s->index, rc);
                } else if (rc != DOPT_E_INVALID_STATE) {
                    unexpected_rc("dopt_job_suspend", s->index, rc);
                }
            }
        } else if (requests % 2) {
            dopt_job_state st;
            rc = dopt_job_fetch_state(&st, s->job);
            record(K_GET_STATE, t0);
            if (rc != DOPT_OK)
                unexpected_rc("dopt_job_fetch_state", s->index, rc);
        } else {
            dopt_job_status *st = NULL;
            rc = dopt_job_fetch_status(&st, s->job);
            record(K_STATUS, t0);
            dopt_job_status_free(st);
            if (rc != DOPT_OK)
                unexpected_rc("dopt_job_fetch_status", s->index, rc);
        }
        if (o.interval_ms > 0) {
            /* Sleep, but wake early when the last job settles. */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += o.interval_ms * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            pthread_mutex_lock(&lock);
            if (settled < created)
                pthread_cond_timedwait(&settled_cond, &lock, &until);
            pthread_mutex_unlock(&lock);
        }
    }
    double t_settled = now_s();

    /* 3. complete (or cancel) each transferred job; check the results. */
    long transferred = 0, errors = 0, completed = 0, cancelled = 0, missing_files = 0;
    long wrong_final_state = 0, repeats = 0;
    for (long i = 0; i < created; i++) {
        struct job_slot *s = &slots[i];
        pthread_mutex_lock(&lock);
        int got_transferred = s->transferred, got_error = s->errored;
        pthread_mutex_unlock(&lock);
        if (got_transferred > 1)
            repeats += got_transferred - 1;
        if (got_error) {
            errors++;
            continue;
        }
        if (!got_transferred)
            continue;
        transferred++;
        int cancel = o.cancel_every > 0 && i % o.cancel_every == o.cancel_every - 1;
        double t0 = now_s();
        rc = cancel ? dopt_job_cancel(s->job) : dopt_job_complete(s->job);
        record(cancel ? K_CANCEL : K_COMPLETE, t0);
        if (rc != DOPT_OK) {
            unexpected_rc(cancel ? "dopt_job_cancel" : "dopt_job_complete", i, rc);
            continue;
        }
        dopt_job_state st = DOPT_STATE_QUEUED;
        rc = dopt_job_fetch_state(&st, s->job);
        if (rc != DOPT_OK || st != (cancel ? DOPT_STATE_CANCELLED : DOPT_STATE_ACKNOWLEDGED)) {
            wrong_final_state++;
            fprintf(stderr, "bench_load_client: job %ld is %s after %s (rc %d)\n", i,
                    dopt_state_name(st), cancel ? "cancel" : "complete", rc);
            continue;
        }
        if (cancel) {
            cancelled++;
            continue;
        }
        completed++;
        snprintf(path, sizeof path, "%s/job-%ld", o.out_dir, i);
        struct stat sb;
        long long want = s->slow ? o.slow_size : o.fast_size;
        if (stat(path, &sb) != 0 || (want >= 0 && (long long)sb.st_size != want)) {
            missing_files++;
            fprintf(stderr, "bench_load_client: job %ld: %s is missing or not %lld bytes\n", i,
                    path, want);
        }
    }
    double t_end = now_s();

    /* Close every job before the client (dopt.h); no callback runs after. */
    for (long i = 0; i < created; i++)
        dopt_job_close(slots[i].job);
    dopt_client_close(client);

    if (o.latency_file) {
        FILE *f = fopen(o.latency_file, "w");
        if (!f) {
            fprintf(stderr, "bench_load_client: %s: %s\n", o.latency_file, strerror(errno));
            unexpected++;
        } else {
            for (size_t k = 0; k < lat_control.n; k++)
                fprintf(f, "%.1f\n", lat_control.v[k]);
            fclose(f);
        }
    }

    int ok = !timed_out && created == o.jobs && transferred == created && errors == 0 &&
             completed + cancelled == created && unexpected == 0 && missing_files == 0 &&
             wrong_final_state == 0;
    printf("{\"client\":\"%s\",\"ok\":%s,\"jobs_requested\":%ld,\"jobs_created\":%ld,"
           "\"transferred\":%ld,\"completed\":%ld,\"cancelled\":%ld,\"errors\":%ld,"
           "\"timed_out\":%s,\"unexpected_results\":%ld,\"missing_files\":%ld,"
           "\"wrong_final_state\":%ld,\"control_requests\":%ld,",
           o.tag, ok ? "true" : "false", o.jobs, created, transferred, completed, cancelled,
           errors, timed_out ? "true" : "false", unexpected, missing_files, wrong_final_state,
           requests);
    pthread_mutex_lock(&lock);
    printf("\"callbacks\":{\"transferred\":%ld,\"transferred_repeats\":%ld,\"error\":%ld,"
           "\"modification\":%ld,\"file_transferred\":%ld},",
           callbacks_transferred, repeats, callbacks_error, callbacks_modification,
           callbacks_file_transferred);
    pthread_mutex_unlock(&lock);
    printf("\"seconds\":{\"create\":%.3f,\"resume\":%.3f,\"until_settled\":%.3f,\"finish\":%.3f,"
           "\"total\":%.3f},",
           t_created - t_start, t_resumed - t_created, t_settled - t_resumed,
           t_end - t_settled, t_end - t_start);
    printf("\"latency\":{");
    print_stats("create_job", &lat_create, 0);
    for (int k = 0; k < K_COUNT; k++)
        print_stats(kind_names[k], &lat[k], 0);
    print_stats("control", &lat_control, 1);
    printf("}}\n");
    return ok ? 0 : 1;
}
