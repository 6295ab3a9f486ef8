/* A prepared execution plan's inner loop: a run of op records, each one call of an existing native
 * kernel (or a copy) on buffers the plan allocated once (opml/plan.py builds and validates the records).
 *
 * A record is OPML_PLAN_REC int64 words: the op code, then its operands (addresses, dimensions and
 * constants; layouts below, mirrored by opml/plan.py). The records are trusted: the Python builder
 * checked every dimension against the buffers it allocated and every constant against the bounds the
 * kernel needs, so this loop only dispatches; the kernels still check their own arguments, and a
 * refusal stops the run and reports which record refused (a bug in the builder, never a data error:
 * none of these ops has a data-dependent failure). Every kernel is the one the per-node path calls,
 * with the same arguments, so the bytes are the same; row splits over threads never change a bit.
 */
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

#define OPML_PLAN_REC 32
#define OPML_PLAN_MAX_DIMS 12
#define MIN_ELEMENTS_PER_PART ((int64_t)1 << 15) /* opml/parallel.py's MIN_ROWS_PER_WORKER_ELEMENTS */

enum {
    OP_GEMM = 1,      /* cfg, x, m, y                                                   (opml_qgemm_cfg) */
    OP_MATMUL = 2,    /* cfg, a, b, count, m, k, n, y                                 (opml_qmatmul_cfg) */
    OP_SOFTMAX = 3,   /* x, xsigned, rows, len, table, zp, lo, hi, y                      (opml_softmax) */
    OP_LAYERNORM = 4, /* x, xkind, xmax, rows, n, gamma, beta, eps, frac, g, mult, shift, zp, qmin, qmax, y */
    OP_LUT8 = 5,      /* table, x, y, count                                                  (opml_lut8) */
    OP_PAIR_LUT8 = 6, /* table, a, na, b, nb, y, count                              (opml_pair_lut8) */
    OP_TRANSPOSE = 7, /* x, y, itemsize, ndim, out shape[ndim], x strides (elements) per out dim[ndim] */
    OP_MAXPOOL = 8,   /* x, planes, h, w, kh, kw, sh, sw, dh, dw, pad top, pad left, oh, ow, xsigned, y */
    OP_CONV = 9,      /* x, b, c, h, w, pad top, pad left, hp, wp, zp byte, kh, kw, sh, sw, dh, dw, oh, ow,
                         xh, cols, cfg, y8, y, m, out itemsize                       (group 1, NCHW) */
};

#define PTR(i) ((void *)(intptr_t)r[i])

static int parts_for(int64_t rows, int64_t row_elements, int threads) {
    int64_t per = MIN_ELEMENTS_PER_PART / (row_elements > 0 ? row_elements : 1) + 1;
    int64_t most = rows / per;
    if (threads <= 1 || most <= 1) return 1;
    return threads < most ? threads : (int)most;
}

/* ------------------------------------------------------------------- row-split non-GEMM kernels */

static int softmax_range(void *ctx, int64_t r0, int64_t r1) {
    const int64_t *r = (const int64_t *)ctx;
    return opml_softmax(PTR(1), (int)r[2], r0, r1, r[4], PTR(5), r[6], r[7], r[8], PTR(9), (int)r[OPML_PLAN_REC - 1]);
}

static int layernorm_range(void *ctx, int64_t r0, int64_t r1) {
    const int64_t *r = (const int64_t *)ctx;
    return opml_layernorm(PTR(1), (int)r[2], r[3], r0, r1, r[5], PTR(6), PTR(7), r[8], (int)r[9], (int)r[10], r[11],
                          (int)r[12], r[13], r[14], r[15], PTR(16), (int)r[OPML_PLAN_REC - 1]);
}

static int lut8_range(void *ctx, int64_t i0, int64_t i1) {
    const int64_t *r = (const int64_t *)ctx;
    return opml_lut8(PTR(1), PTR(2), PTR(3), i0, i1, (int)r[OPML_PLAN_REC - 1]);
}

static int pair_lut8_range(void *ctx, int64_t i0, int64_t i1) {
    const int64_t *r = (const int64_t *)ctx;
    return opml_pair_lut8(PTR(1), PTR(2), r[3], PTR(4), r[5], PTR(6), i0, i1, (int)r[OPML_PLAN_REC - 1]);
}

/* ------------------------------------------------------------------------------ data movement */

/* One output row of a transpose: n elements of `size` bytes, read `stride` elements apart. */
static void gather_row(const uint8_t *x, uint8_t *y, int64_t n, int64_t stride, int64_t size) {
#define GATHER(T)                                                                                                     \
    do {                                                                                                              \
        const T *xs = (const T *)(const void *)x;                                                                     \
        T *ys = (T *)(void *)y;                                                                                       \
        for (int64_t i = 0; i < n; i++) ys[i] = xs[i * stride];                                                       \
    } while (0)
    switch (size) {
    case 1: GATHER(uint8_t); break;
    case 2: GATHER(uint16_t); break;
    case 4: GATHER(uint32_t); break;
    case 8: GATHER(uint64_t); break;
    default:
        for (int64_t i = 0; i < n; i++) memcpy(y + i * size, x + i * stride * size, (size_t)size);
    }
#undef GATHER
}

/* y (C order, shape[ndim]) = x read with strides[ndim] (elements): a transpose of x. The last
 * dimension is copied as one block when x's stride there is 1, else gathered with its stride. */
static void transpose(const uint8_t *x, uint8_t *y, int64_t size, int ndim, const int64_t *shape,
                      const int64_t *strides) {
    int64_t idx[OPML_PLAN_MAX_DIMS] = {0};
    int64_t total = 1;
    for (int d = 0; d < ndim; d++) total *= shape[d];
    if (!total) return;
    int last = ndim - 1;
    int64_t inner = ndim ? shape[last] : 1, istride = ndim ? strides[last] : 0;
    int64_t src = 0; /* element offset of idx in x */
    for (int64_t done = 0; done < total; done += inner) {
        if (istride == 1)
            memcpy(y, x + src * size, (size_t)(inner * size));
        else
            gather_row(x + src * size, y, inner, istride, size);
        y += inner * size;
        for (int d = last - 1; d >= 0; d--) { /* next index over the outer dimensions */
            src += strides[d];
            if (++idx[d] < shape[d]) break;
            src -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
}

static void maxpool(const int64_t *r) {
    const uint8_t *x = PTR(1);
    uint8_t *y = PTR(16);
    int64_t planes = r[2], h = r[3], w = r[4], kh = r[5], kw = r[6], sh = r[7], sw = r[8], dh = r[9], dw = r[10];
    int64_t pt = r[11], pl = r[12], oh = r[13], ow = r[14];
    int sgn = (int)r[15];
    int flip = sgn ? 0x80 : 0; /* int8 bytes compare as uint8 after flipping the sign bit */
    for (int64_t p = 0; p < planes; p++) {
        const uint8_t *xp = x + p * h * w;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                int m = 0; /* the dtype's minimum (the padding value), flipped */
                for (int64_t i = 0; i < kh; i++) {
                    int64_t iy = oy * sh + i * dh - pt;
                    if (iy < 0 || iy >= h) continue;
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t ix = ox * sw + j * dw - pl;
                        if (ix < 0 || ix >= w) continue;
                        int v = xp[iy * w + ix] ^ flip;
                        m = v > m ? v : m;
                    }
                }
                *y++ = (uint8_t)(m ^ flip);
            }
    }
}

/* The native conv of kernels.prepare_conv for one group: pad and reorder to NHWC, im2col, GEMM,
 * then [b, oh, ow, m] -> [b, m, oh, ow]. */
static int conv(const int64_t *r, int threads) {
    const uint8_t *x = PTR(1);
    int64_t b = r[2], c = r[3], h = r[4], w = r[5], pt = r[6], pl = r[7], hp = r[8], wp = r[9];
    uint8_t zp = (uint8_t)r[10];
    uint8_t *xh = PTR(19);
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t yy = 0; yy < hp; yy++)
            for (int64_t xx = 0; xx < wp; xx++) {
                uint8_t *dst = xh + ((bi * hp + yy) * wp + xx) * c;
                int64_t sy = yy - pt, sx = xx - pl;
                if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
                    memset(dst, zp, (size_t)c);
                    continue;
                }
                const uint8_t *src = x + (bi * c * h + sy) * w + sx;
                for (int64_t ci = 0; ci < c; ci++) dst[ci] = src[ci * h * w];
            }
    int64_t oh = r[17], ow = r[18], m = r[24], size = r[25];
    if (opml_im2col_nhwc(xh, b, hp, wp, c, r[11], r[12], r[13], r[14], r[15], r[16], oh, ow, 0, c, PTR(20)))
        return -1;
    if (b * oh * ow > 0 && m > 0 && opml_qgemm_cfg(PTR(21), PTR(20), b * oh * ow, PTR(22), threads)) return -1;
    int64_t shape[4] = {b, m, oh, ow}, strides[4] = {oh * ow * m, 1, ow * m, m};
    transpose(PTR(22), PTR(23), size, 4, shape, strides);
    return 0;
}

/* ---------------------------------------------------------------------------------------- loop */

static int run_one(const int64_t *r, int threads) {
    switch (r[0]) {
    case OP_GEMM:
        return r[3] ? opml_qgemm_cfg(PTR(1), PTR(2), r[3], PTR(4), threads) : 0;
    case OP_MATMUL:
        return r[4] && r[5] && r[7] ? opml_qmatmul_cfg(PTR(1), PTR(2), PTR(3), r[4], r[5], r[6], r[7], PTR(8), threads)
                                    : 0;
    case OP_SOFTMAX:
        return opml_parallel_for(softmax_range, (void *)r, r[3], parts_for(r[3], r[4], threads));
    case OP_LAYERNORM:
        return opml_parallel_for(layernorm_range, (void *)r, r[4], parts_for(r[4], r[5], threads));
    case OP_LUT8:
        return opml_parallel_for(lut8_range, (void *)r, r[4], parts_for(r[4], 1, threads));
    case OP_PAIR_LUT8:
        return opml_parallel_for(pair_lut8_range, (void *)r, r[7], parts_for(r[7], 1, threads));
    case OP_TRANSPOSE:
        if (r[4] < 0 || r[4] > OPML_PLAN_MAX_DIMS) return -1;
        transpose(PTR(1), PTR(2), r[3], (int)r[4], r + 5, r + 5 + r[4]);
        return 0;
    case OP_MAXPOOL:
        maxpool(r);
        return 0;
    case OP_CONV:
        return conv(r, threads);
    default:
        return -1;
    }
}

/* The record width (the Python builder checks it against its own). */
int64_t opml_plan_record_words(void) { return OPML_PLAN_REC; }

/* Runs records [0, count) in order. Returns 0, or 1 + the index of the first record whose kernel
 * refused its arguments (nothing after it ran). */
int64_t opml_plan_run(const int64_t *records, int64_t count, int threads) {
    for (int64_t i = 0; i < count; i++)
        if (run_one(records + i * OPML_PLAN_REC, threads)) return i + 1;
    return 0;
}
