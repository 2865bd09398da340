/*
 * download.c — fetch one URL to one path through the dopt C API, with
 * callbacks.
 *
 *   download URL PATH
 *
 * The agent (doptd) does the transfer; this program only creates the job,
 * waits for the `transferred` or `error` callback, and completes the job so
 * the file appears at PATH. The agent is found as dopt_client_open finds it
 * by default: $DOPT_SOCKET, then $XDG_RUNTIME_DIR/dopt/doptd.sock, then
 * /run/dopt/doptd.sock. Exit status: 0 when PATH holds the file, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <dopt/dopt.h>

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* What the callbacks tell main. They run on libdopt's dispatcher thread. */
struct outcome {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done; /* set once a callback has decided */
    int ok;   /* the file is at its final path */
};

static void finish(struct outcome *o, int ok) {
    pthread_mutex_lock(&o->mu);
    if (!o->done) {
        o->done = 1;
        o->ok = ok;
    }
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

/* The job is TRANSFERRED: Complete renames the file to its final name. A
 * durable notification may arrive twice (at least once), so a job that is
 * already ACKNOWLEDGED counts as done too. */
static int on_transferred(dopt_job *job, void *userdata) {
    int rc = dopt_job_complete(job);
    dopt_job_state state = DOPT_STATE_QUEUED;
    if (rc == DOPT_E_INVALID_STATE && dopt_job_fetch_state(&state, job) == DOPT_OK &&
        state == DOPT_STATE_ACKNOWLEDGED)
        rc = DOPT_OK;
    if (rc != DOPT_OK)
        fprintf(stderr, "download: complete failed: %s (%s)\n", dopt_strerror(rc),
                dopt_last_error());
    finish(userdata, rc == DOPT_OK);
    return DOPT_OK; /* handled: the agent need not call again */
}

/* The job is ERROR (never called for transient errors, which the agent
 * retries by itself). Print what the error object says. */
static int on_error(dopt_job *job, const dopt_error *error, void *userdata) {
    (void)job;
    fprintf(stderr, "download: error: context %s, code %" PRId64 "\n",
            dopt_context_name(dopt_error_context(error)), dopt_error_code(error));
    fprintf(stderr, "  %s\n", dopt_error_description(error));
    dopt_file_info file;
    if (dopt_error_file(&file, error) == DOPT_OK) {
        fprintf(stderr, "  file %s -> %s, %" PRIu64 " bytes transferred", file.remote_name,
                file.local_name, file.bytes_transferred);
        if (file.bytes_total != UINT64_MAX) fprintf(stderr, " of %" PRIu64, file.bytes_total);
        fputc('\n', stderr);
    }
    finish(userdata, 0);
    return DOPT_OK; /* seen: do not deliver it again */
}

/* Reports a failed call with the thread's last-error detail. */
static int check(int rc, const char *what) {
    if (rc != DOPT_OK)
        fprintf(stderr, "download: %s: %s (%s)\n", what, dopt_strerror(rc), dopt_last_error());
    return rc == DOPT_OK;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s URL PATH\n", argv[0]);
        return 1;
    }
    /* The agent needs an absolute destination. */
    char path[PATH_MAX];
    if (argv[2][0] == '/') {
        snprintf(path, sizeof path, "%s", argv[2]);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) ||
            snprintf(path, sizeof path, "%s/%s", cwd, argv[2]) >= (int)sizeof path) {
            fprintf(stderr, "download: cannot make %s absolute\n", argv[2]);
            return 1;
        }
    }

    struct outcome outcome = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    dopt_client *client = NULL;
    dopt_job *job = NULL;
    dopt_callbacks cb = DOPT_CALLBACKS_INIT;
    cb.transferred = on_transferred;
    cb.error = on_error;
    int ok = 0;

    if (!check(dopt_client_open(&client, NULL), "cannot reach the agent")) return 1;
    if (!check(dopt_job_create(&job, client, "download example"), "create")) goto out;
    if (!check(dopt_job_add_file(job, argv[1], path), "add_file")) goto out;
    if (!check(dopt_job_set_callbacks(job, &cb, &outcome), "set_callbacks")) goto out;
    if (!check(dopt_job_resume(job), "resume")) goto out;

    pthread_mutex_lock(&outcome.mu);
    while (!outcome.done) pthread_cond_wait(&outcome.cv, &outcome.mu);
    ok = outcome.ok;
    pthread_mutex_unlock(&outcome.mu);
    if (ok) printf("%s\n", path);

out:
    /* A job we give up on is cancelled: its partial file is removed. */
    if (job && !ok) dopt_job_cancel(job);
    dopt_job_close(job); /* no callback runs after this returns */
    dopt_client_close(client);
    pthread_cond_destroy(&outcome.cv);
    pthread_mutex_destroy(&outcome.mu);
    return ok ? 0 : 1;
}
