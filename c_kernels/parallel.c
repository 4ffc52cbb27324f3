/* Splitting a kernel's work over threads.
 *
 * No persistent pool: each call starts its helper threads. ta_parallel_for joins
 * them before returning; ta_parallel_units hands units out by an atomic counter and
 * returns when every unit is done (a helper the scheduler had not started by then
 * finds no unit, drops its reference and exits without touching the caller's data).
 * Either way no kernel work runs across fork() (the Hogwild trainer forks) and no
 * state is shared between calls. Starting a thread costs tens of microseconds, so
 * callers pass work that is worth it (see ta_threads_for). Without pthreads
 * (TA_NO_THREADS) every call runs on the calling thread. */
#include <stdlib.h>

#include "ta_internal.h"

#if !defined(TA_NO_THREADS) && (defined(__unix__) || defined(__APPLE__))
#include <pthread.h>
#include <sched.h>
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

/* ---- units from an atomic counter (ta_parallel_units) ---- */

#if TA_HAVE_PTHREADS
typedef struct unit_pool unit_pool;
typedef struct {
    unit_pool *pool;
    int tid;
} unit_helper;

struct unit_pool {
    ta_unit_fn fn;
    void *ctx;
    int64_t nunits, next, done; /* next: units handed out; done: units finished */
    int refs;                   /* the caller + helpers started */
    unit_helper helpers[TA_MAX_THREADS];
};

static void pool_work(unit_pool *p, int tid) {
    int64_t u;
    while ((u = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED)) < p->nunits) {
        p->fn(p->ctx, tid, u);
        __atomic_fetch_add(&p->done, 1, __ATOMIC_RELEASE);
    }
}

static void pool_release(unit_pool *p) {
    if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) free(p);
}

static void *unit_helper_main(void *arg) {
    unit_helper *h = (unit_helper *)arg;
    unit_pool *p = h->pool;
    pool_work(p, h->tid);
    pool_release(p);
    return NULL;
}
#endif

int ta_parallel_units(int threads, int64_t nunits, ta_unit_fn fn, void *ctx) {
    int nt = threads < 1 ? 1 : (threads > TA_MAX_THREADS ? TA_MAX_THREADS : threads);
    int64_t u;
    if (nunits <= 0) return TA_OK;
    if ((int64_t)nt > nunits) nt = (int)nunits;
#if TA_HAVE_PTHREADS
    if (nt > 1) {
        unit_pool *p = (unit_pool *)malloc(sizeof(unit_pool));
        pthread_attr_t attr;
        int i;
        if (p == NULL) return TA_ERR_NOMEM;
        p->fn = fn, p->ctx = ctx, p->nunits = nunits, p->next = 0, p->done = 0, p->refs = 1;
        if (pthread_attr_init(&attr) == 0) {
            if (pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0) {
                for (i = 1; i < nt; i++) {
                    pthread_t t;
                    p->helpers[i].pool = p;
                    p->helpers[i].tid = i;
                    __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
                    if (pthread_create(&t, &attr, unit_helper_main, &p->helpers[i]) != 0) {
                        __atomic_sub_fetch(&p->refs, 1, __ATOMIC_RELAXED); /* the caller does it */
                        break;
                    }
                }
            }
            pthread_attr_destroy(&attr);
        }
        pool_work(p, 0);
        while (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < nunits) sched_yield();
        pool_release(p);
        return TA_OK;
    }
#endif
    for (u = 0; u < nunits; u++) fn(ctx, 0, u);
    return TA_OK;
}
