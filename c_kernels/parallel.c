/* Splitting a kernel's work over threads.
 *
 * No persistent pool: each call starts its helper threads and joins them before
 * returning, so nothing is left running across fork() (the Hogwild trainer forks)
 * and no state is shared between calls. Starting a thread costs tens of
 * microseconds, so callers pass work that is worth it (see ta_threads_for).
 * Without pthreads (TA_NO_THREADS) every call runs on the calling thread. */
#include "ta_internal.h"

#if !defined(TA_NO_THREADS) && (defined(__unix__) || defined(__APPLE__))
#include <pthread.h>
#define TA_HAVE_PTHREADS 1
#else
#define TA_HAVE_PTHREADS 0
#endif

typedef struct {
    ta_range_fn fn;
    void *ctx;
    int64_t begin, end;
} ta_chunk;

#if TA_HAVE_PTHREADS
static void *run_chunk(void *arg) {
    ta_chunk *c = (ta_chunk *)arg;
    c->fn(c->ctx, c->begin, c->end);
    return NULL;
}
#endif

int ta_threads_supported(void) { return TA_HAVE_PTHREADS; }

int ta_threads_for(int threads, int64_t ntasks, int64_t work_per_task, int64_t min_work) {
    int64_t total, t;
    if (threads < 1) threads = 1;
    if (threads > TA_MAX_THREADS) threads = TA_MAX_THREADS;
    if (ntasks < (int64_t)threads) threads = ntasks < 1 ? 1 : (int)ntasks;
    if (!ta_mul_ok(ntasks, work_per_task < 1 ? 1 : work_per_task, INT64_MAX, &total))
        return threads;
    if (min_work > 0) {
        t = total / min_work;
        if (t < threads) threads = t < 1 ? 1 : (int)t;
    }
    return threads;
}

void ta_parallel_for(int threads, int64_t ntasks, ta_range_fn fn, void *ctx) {
    ta_chunk chunks[TA_MAX_THREADS];
    int i, nt = threads;
    if (ntasks <= 0) return;
    if (nt < 1) nt = 1;
    if (nt > TA_MAX_THREADS) nt = TA_MAX_THREADS;
    if ((int64_t)nt > ntasks) nt = (int)ntasks;
    for (i = 0; i < nt; i++) {
        chunks[i].fn = fn;
        chunks[i].ctx = ctx;
        chunks[i].begin = ntasks * i / nt;
        chunks[i].end = ntasks * (i + 1) / nt;
    }
#if TA_HAVE_PTHREADS
    if (nt > 1) {
        pthread_t tid[TA_MAX_THREADS];
        int started[TA_MAX_THREADS];
        for (i = 1; i < nt; i++)
            started[i] = pthread_create(&tid[i], NULL, run_chunk, &chunks[i]) == 0;
        fn(ctx, chunks[0].begin, chunks[0].end);
        for (i = 1; i < nt; i++) {
            if (started[i]) pthread_join(tid[i], NULL);
            else fn(ctx, chunks[i].begin, chunks[i].end);  /* could not start: run it here */
        }
        return;
    }
#endif
    for (i = 0; i < nt; i++) fn(ctx, chunks[i].begin, chunks[i].end);
}
