/*
 * bench_api_jobs: how fast jobs can be created through the C API.
 *
 *   bench_api_jobs SOCKET OUT_DIR [N] [URL]
 *
 * Connects with dopt_client_open, then N times: dopt_job_create,
 * dopt_job_add_file(URL?i=<n>, OUT_DIR/job-<n>), dopt_job_close. Jobs are
 * left SUSPENDED, so the URL is never fetched (default
 * http://127.0.0.1:9/never-fetched, the discard port). Prints the rate; the
 * goal is >= 2,000 jobs/s. bench/api-jobs runs it against an agent of its own.
 *
 * Last line of output: "jobs_per_second=<rate> jobs=<n> seconds=<s>".
 */
#define _POSIX_C_SOURCE 200809L

#include <dopt/dopt.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, int rc, long n)
{
    fprintf(stderr, "bench_api_jobs: %s failed at job %ld: %s (%d): %s\n", what, n,
            dopt_strerror(rc), rc, dopt_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s SOCKET OUT_DIR [N] [URL]\n", argv[0]);
        return 2;
    }
    const char *socket_path = argv[1];
    const char *out_dir = argv[2];
    long n = argc > 3 ? strtol(argv[3], NULL, 10) : 10000;
    const char *url = argc > 4 ? argv[4] : "http://127.0.0.1:9/never-fetched";
    if (n <= 0) {
        fprintf(stderr, "bench_api_jobs: N must be a positive integer\n");
        return 2;
    }

    dopt_client *client = NULL;
    int rc = dopt_client_open(&client, socket_path);
    if (rc != DOPT_OK)
        return fail("dopt_client_open", rc, 0);

    char job_url[4096];
    char path[4096];
    /* Slowest single job (create + add_file): a stall shows here. */
    double worst = 0.0;
    double t0 = now_seconds();
    for (long i = 0; i < n; i++) {
        double j0 = now_seconds();
        dopt_job *job = NULL;
        rc = dopt_job_create(&job, client, NULL);
        if (rc != DOPT_OK) {
            dopt_client_close(client);
            return fail("dopt_job_create", rc, i);
        }
        snprintf(job_url, sizeof job_url, "%s?i=%ld", url, i);
        snprintf(path, sizeof path, "%s/job-%ld", out_dir, i);
        rc = dopt_job_add_file(job, job_url, path);
        dopt_job_close(job);
        if (rc != DOPT_OK) {
            dopt_client_close(client);
            return fail("dopt_job_add_file", rc, i);
        }
        double dt = now_seconds() - j0;
        if (dt > worst)
            worst = dt;
        if ((i + 1) % 1000 == 0) {
            double so_far = now_seconds() - t0;
            fprintf(stderr, "  %ld jobs, %.0f jobs/s so far\n", i + 1, (double)(i + 1) / so_far);
        }
    }
    double seconds = now_seconds() - t0;
    dopt_client_close(client);

    double rate = (double)n / seconds;
    printf("created %ld jobs (create + add_file each) in %.3f s: %.0f jobs/s, "
           "mean %.0f us/job, slowest %.1f ms\n",
           n, seconds, rate, seconds / (double)n * 1e6, worst * 1e3);
    printf("jobs_per_second=%.0f jobs=%ld seconds=%.3f\n", rate, n, seconds);
    return 0;
}
