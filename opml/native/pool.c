/* A small persistent thread pool for the native kernels: opml_parallel_for splits [0, n) into `parts`
 * contiguous ranges and runs them on the calling thread plus parts - 1 workers.
 *
 * Results cannot depend on it: every kernel that uses it writes disjoint outputs per range, each computed
 * by the same integer operations whichever thread runs it. Workers spin briefly on the job generation
 * (a kernel call at batch 1 takes ~0.1 ms, so waking a sleeping thread would cost a large share of it)
 * and then sleep on a condition variable. Parts are claimed, not assigned: the caller and the workers take
 * the next unclaimed part of the current job (one atomic word holds the job's generation and the next part),
 * so a worker that the OS has not scheduled yet delays nothing: the caller runs its parts itself and waits
 * only for parts another thread is running (yielding its CPU after a short spin). After fork() the child has none of the parent's threads: an
 * atfork handler forgets them, and the pool starts afresh on the child's first parallel call.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_WORKERS 15
/* how long an idle worker spins before it sleeps: the CPU time it may spend waiting after each job, and
 * the gap between two kernel calls below which the next call finds it awake (opml_pool_set_spin_ns) */
static atomic_int_fast64_t spin_ns = 200000;

void opml_pool_set_spin_ns(int64_t ns) { atomic_store(&spin_ns, ns < 0 ? 0 : ns); }

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* guards the job fields and sleeping */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER; /* one parallel call at a time */
static int started;                                           /* workers running */
static uint_fast64_t start_generation[MAX_WORKERS];           /* the generation each worker starts after */
static atomic_uint_fast64_t generation;                       /* bumped per job */
static atomic_int remaining;                                  /* ranges not finished */
static atomic_uint_fast64_t claim;                            /* generation << 16 | next part to claim */
static atomic_int failed;
static int sleeping;
static opml_range_fn job_fn;
static void *job_ctx;
static int64_t job_n;
static int job_parts;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void run_part(int part) {
    int64_t i0 = job_n * part / job_parts, i1 = job_n * (part + 1) / job_parts;
    if (i0 < i1 && job_fn(job_ctx, i0, i1)) atomic_store(&failed, 1);
    atomic_fetch_sub(&remaining, 1);
}

/* run unclaimed parts of job `gen` (of `parts` parts) until none is left or another job started */
static void run_claimed(uint_fast64_t gen, int parts) {
    uint_fast64_t c = atomic_load(&claim);
    for (;;) {
        if ((c >> 16) != (gen & 0xFFFFFFFFFFFFu) || (int)(c & 0xFFFF) >= parts) return;
        if (atomic_compare_exchange_weak(&claim, &c, c + 1)) {
            run_part((int)(c & 0xFFFF));
            c = atomic_load(&claim);
        }
    }
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg;
    uint_fast64_t seen = start_generation[index];
    for (;;) {
        int64_t until = now_ns() + (int64_t)atomic_load(&spin_ns);
        for (int spins = 0; atomic_load(&generation) == seen; spins++) {
            CPU_RELAX();
            if ((spins & 63) == 63 && now_ns() > until) break;
        }
        pthread_mutex_lock(&lock);
        if (atomic_load(&generation) == seen) {
            sleeping++;
            while (atomic_load(&generation) == seen) pthread_cond_wait(&wake, &lock);
            sleeping--;
        }
        /* the job fields and the generation change together under the lock: read one consistent job */
        seen = atomic_load(&generation);
        int parts = job_parts;
        pthread_mutex_unlock(&lock);
        run_claimed(seen, parts);
    }
    return NULL;
}

static void forget_threads(void) {
    /* in the child after fork: no worker exists; reinitialise the synchronisation objects */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    memcpy(&lock, &m, sizeof m);
    memcpy(&call_lock, &m, sizeof m);
    memcpy(&wake, &c, sizeof c);
    started = 0;
    sleeping = 0;
}

static void register_atfork(void) { pthread_atfork(NULL, NULL, forget_threads); }

int opml_parallel_for(opml_range_fn fn, void *ctx, int64_t n, int parts) {
    if (parts > MAX_WORKERS + 1) parts = MAX_WORKERS + 1;
    if (parts > n) parts = (int)n;
    if (parts <= 1) return n > 0 ? fn(ctx, 0, n) : 0;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&call_lock);
    while (started < parts - 1) { /* start missing workers (they wait for the next generation) */
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        start_generation[started] = atomic_load(&generation); /* the next job is the worker's first */
        int rc = pthread_create(&t, &attr, worker, (void *)(intptr_t)started);
        pthread_attr_destroy(&attr);
        if (rc) break;
        started++;
    }
    if (parts > started + 1) parts = started + 1; /* thread creation failed: fewer parts */
    if (parts <= 1) {
        pthread_mutex_unlock(&call_lock);
        return fn(ctx, 0, n);
    }
    pthread_mutex_lock(&lock);
    job_fn = fn;
    job_ctx = ctx;
    job_n = n;
    job_parts = parts;
    atomic_store(&failed, 0);
    atomic_store(&remaining, parts);
    uint_fast64_t gen = atomic_fetch_add(&generation, 1) + 1;
    atomic_store(&claim, (gen & 0xFFFFFFFFFFFFu) << 16);
    if (sleeping) pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    run_claimed(gen, parts);
    for (int spins = 0; atomic_load(&remaining) > 0; spins++) { /* parts other threads are running */
        if (spins < 4096) CPU_RELAX();
        else sched_yield();
    }
    int rc = atomic_load(&failed) ? -1 : 0;
    pthread_mutex_unlock(&call_lock);
    return rc;
}
