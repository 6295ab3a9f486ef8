/* The native kernels' thread pool (pool.c). */
#ifndef OPML_POOL_H
#define OPML_POOL_H
#include <stdint.h>

/* Runs fn(ctx, i0, i1) over `parts` contiguous ranges covering [0, n); returns 0, or -1 if any call did. */
typedef int (*opml_range_fn)(void *ctx, int64_t i0, int64_t i1);
int opml_parallel_for(opml_range_fn fn, void *ctx, int64_t n, int parts);

/* How long idle workers spin before sleeping (nanoseconds; 0: sleep at once). */
void opml_pool_set_spin_ns(int64_t ns);

#endif
